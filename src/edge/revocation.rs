//! Revocation of open connections (SPEC section 3): a WebSocket (any
//! upgraded connection) or a long response ends within seconds when what
//! admitted it no longer would: the share link is revoked or expires, the
//! session ends, the API token or the user goes, the share is lowered, the
//! workspace or agent is deleted.
//!
//! The proxy hands each upgraded connection to [`Registry::hold`] with what
//! admitted it ([`Admitted`]), and wraps each response body with
//! [`Registry::body`], which registers only once the response has streamed
//! for [`LONG_RESPONSE_TICKS`] ticks (server-sent events at once): short
//! requests never touch the registry nor read the clock. One task per edge ([`Registry::watch`]) follows the
//! catalog's change feed. Each change names the one key it touches (a link, a
//! session, a token, a user, a workspace, an agent, a port) and only the
//! connections indexed under that key are re-checked. A tick each second
//! re-checks those whose link or session has reached its expiry; a lagging
//! feed, and a sweep each minute, re-check them all.
//!
//! The re-check ([`recheck`]) is the proxy's own decision, `auth::authorize`,
//! taken again on the catalog as it is now. Regional edges apply the same
//! changes from control's watch stream, so this works alike on every edge.

use crate::auth::{self, Decision, LinkGrant, TokenHash, Visitor};
use crate::catalog::{Catalog, Change};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, oneshot};

/// How often expiries are looked at (links and sessions end by time).
pub const TICK: Duration = Duration::from_secs(1);

/// Every this many ticks, every connection is re-checked: a backstop for a
/// change that names no key this module knows.
pub const SWEEP_EVERY_TICKS: u32 = 60;

/// A response still streaming when this many ticks have passed since it
/// began (1 to 2 s) is tracked like a WebSocket. Responses that end sooner
/// (nearly all) never reach the registry.
pub const LONG_RESPONSE_TICKS: u64 = 2;

/// How long a revoked connection's ends are given to shut down cleanly.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How a signed-in visitor proved who they are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    /// An API token (`Authorization: Bearer`, `Berth-Token`), by its hash.
    Token(TokenHash),
    /// A browser session (the app-host cookie), by its id.
    Session(String),
}

/// The signed-in visitor a connection was admitted as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmittedVisitor {
    /// Who the app was told the visitor is (`X-Berth-User`).
    pub user_id: i64,
    /// What proved it; `None` is a credential this module cannot look at
    /// again, and fails closed.
    pub by: Option<Credential>,
}

/// What let one connection through: enough to take the same decision again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The signed-in visitor, if the request had one.
    pub visitor: Option<AdmittedVisitor>,
    /// The live share link whose cookie came with the request, by id.
    pub link: Option<String>,
    /// The agent reached.
    pub agent_id: i64,
    /// The port reached.
    pub port: u16,
}

impl Admitted {
    /// What the proxy knew when it let the request through: the visitor it
    /// found (from `token`, else from `session`), the live link, the target.
    pub fn new(
        visitor: Option<&Visitor>,
        token: Option<TokenHash>,
        session: Option<String>,
        link: Option<String>,
        agent_id: i64,
        port: u16,
    ) -> Self {
        let by = match token {
            Some(hash) => Some(Credential::Token(hash)),
            None => session.map(Credential::Session),
        };
        Admitted {
            visitor: visitor.map(|v| AdmittedVisitor {
                user_id: v.user_id,
                by,
            }),
            link,
            agent_id,
            port,
        }
    }
}

/// The outcome of [`recheck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still allowed; look again at `until` (unix seconds), when a link or
    /// session it relies on expires, if not before.
    Allowed { until: Option<i64> },
    /// No longer allowed, and why (for the log).
    Revoked(&'static str),
}

/// Would the request that opened this connection still be let through, with
/// the same credentials, by the catalog as it is at `now` (unix seconds)?
///
/// The same inputs as the proxy's (the visitor from the token or session, the
/// live link, the target's owner and share level), the same
/// [`auth::authorize`]. One rule more: a connection admitted as a signed-in
/// user lasts only while that user's credential does, even where the share
/// would now let anyone in, because the app was told who the visitor is.
pub fn recheck(a: &Admitted, catalog: &Catalog, now: i64) -> Verdict {
    let mut until: Option<i64> = None;
    let mut expires_at = |t: i64| until = Some(until.map_or(t, |u: i64| u.min(t)));
    let visitor = match &a.visitor {
        None => None,
        Some(admitted) => {
            let found = match &admitted.by {
                Some(Credential::Token(hash)) => catalog.visitor_for_token(hash),
                Some(Credential::Session(id)) => {
                    catalog.visitor_for_session(id, now).map(|(v, session)| {
                        expires_at(session.expires_at);
                        v
                    })
                }
                None => None,
            };
            match found {
                Some(v) if v.user_id == admitted.user_id => Some(v),
                _ => return Verdict::Revoked(SIGNED_OUT),
            }
        }
    };
    let link = a
        .link
        .as_deref()
        .and_then(|id| catalog.live_link(id, now))
        .map(|l| {
            expires_at(l.expires_at);
            LinkGrant {
                agent_id: l.agent_id,
                port: l.port,
            }
        });
    let owner_id = catalog.workspace_owner_of_agent(a.agent_id);
    let owner_org = owner_id
        .and_then(|id| catalog.user(id))
        .and_then(|u| u.organization);
    let share = catalog.share(a.agent_id, a.port);
    if let Some(ends) = share
        .as_ref()
        .and_then(|s| s.expires_at)
        .filter(|t| *t > now)
    {
        expires_at(ends);
    }
    let (level, users, groups) =
        share
            .as_ref()
            .map(|s| s.audience(now))
            .unwrap_or((auth::ShareLevel::Owner, &[], &[]));
    let target = owner_id.map(|owner_id| auth::Target {
        agent_id: a.agent_id,
        port: a.port,
        owner_id,
        owner_org: owner_org.as_deref(),
        level,
        users,
        groups,
    });
    match auth::authorize(visitor.as_ref(), link.as_ref(), target.as_ref()) {
        Decision::Allow => Verdict::Allowed { until },
        _ if a.link.is_some() && link.is_none() => Verdict::Revoked(LINK_ENDED),
        _ => Verdict::Revoked(NOT_SHARED),
    }
}

const SIGNED_OUT: &str = "the visitor's session or API token ended";
const LINK_ENDED: &str = "the share link expired or was revoked";
const NOT_SHARED: &str = "the port is no longer shared with this visitor";

/// What a connection's access depends on, and what a change touches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A user: the visitor, the workspace owner, a link's maker.
    User(i64),
    /// The visitor's token or session.
    Credential(Credential),
    /// A share link.
    Link(String),
    /// The target's workspace.
    Workspace(i64),
    /// The target's agent.
    Agent(i64),
    /// The target's port (its share).
    Port(i64, u16),
    /// A group the visitor is in or the share names.
    Group(i64),
}

/// The key a change touches: only connections indexed under it are
/// re-checked. Exhaustive on purpose, so a new kind of change needs a choice.
fn touched(change: &Change) -> Option<Key> {
    Some(match change {
        Change::User(u) => Key::User(u.id),
        Change::UserRemoved(id) => Key::User(*id),
        Change::ApiToken { hash, .. } | Change::ApiTokenRemoved(hash) => {
            Key::Credential(Credential::Token(*hash))
        }
        Change::Workspace(w) => Key::Workspace(w.id),
        Change::WorkspaceRemoved(id) => Key::Workspace(*id),
        Change::Agent(a) => Key::Agent(a.id),
        Change::AgentRemoved(id) => Key::Agent(*id),
        Change::Share(s) => Key::Port(s.agent_id, s.port),
        Change::ShareRemoved { agent_id, port } => Key::Port(*agent_id, *port),
        Change::Link(l) => Key::Link(l.id.clone()),
        Change::LinkRemoved(id) => Key::Link(id.clone()),
        Change::Session(s) => Key::Credential(Credential::Session(s.id.clone())),
        Change::SessionRemoved(id) => Key::Credential(Credential::Session(id.clone())),
        Change::Group(g) => Key::Group(g.id),
        Change::GroupRemoved(id) => Key::Group(*id),
        // Names and where tunnels are decide nothing about access (the
        // connection is tied to the agent and port, not to the name).
        Change::App(_)
        | Change::AppRemoved { .. }
        | Change::TunnelAt { .. }
        | Change::TunnelGone { .. } => return None,
    })
}

/// The keys a connection's access depends on, as the catalog stands now.
/// Removals cascade in the catalog without a change for every removed row
/// (a user's tokens, sessions and links), so the user is a key too.
fn keys_of(a: &Admitted, catalog: &Catalog) -> Vec<Key> {
    let mut keys = vec![Key::Agent(a.agent_id), Key::Port(a.agent_id, a.port)];
    let mut add = |k: Key| {
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    if let Some(agent) = catalog.agent(a.agent_id) {
        add(Key::Workspace(agent.workspace_id));
        if let Some(ws) = catalog.workspace(agent.workspace_id) {
            add(Key::User(ws.owner_id));
        }
    }
    if let Some(share) = catalog.share(a.agent_id, a.port) {
        for g in share.groups {
            add(Key::Group(g));
        }
    }
    if let Some(v) = &a.visitor {
        add(Key::User(v.user_id));
        for g in catalog.group_ids_of(v.user_id) {
            add(Key::Group(g));
        }
        if let Some(c) = &v.by {
            add(Key::Credential(c.clone()));
        }
    }
    if let Some(id) = &a.link {
        add(Key::Link(id.clone()));
        if let Some(l) = catalog.live_link(id, i64::MIN) {
            add(Key::User(l.created_by));
        }
    }
    keys
}

/// One tracked connection.
struct Entry {
    admitted: Admitted,
    keys: Vec<Key>,
    /// When to look again regardless of changes (an expiry).
    until: Option<i64>,
    /// Sent (or dropped) to end the connection.
    close: oneshot::Sender<()>,
}

/// The tracked connections and the index from key to connections.
#[derive(Default)]
struct State {
    next_id: u64,
    conns: HashMap<u64, Entry>,
    index: HashMap<Key, HashSet<u64>>,
}

impl State {
    fn index(&mut self, id: u64, keys: &[Key]) {
        for k in keys {
            self.index.entry(k.clone()).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: u64, keys: &[Key]) {
        for k in keys {
            if let Some(ids) = self.index.get_mut(k) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.index.remove(k);
                }
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.conns.remove(&id)?;
        self.unindex(id, &entry.keys);
        Some(entry)
    }
}

/// The live connections of one edge that must end when their access does.
pub struct Registry {
    catalog: Arc<Catalog>,
    state: Mutex<State>,
    /// `berth_edge_tracked_connections`
    tracked: Gauge,
    /// `berth_edge_revoked_connections`
    revoked: Counter,
    /// Ticks so far: a clock for response bodies that costs one load.
    ticks: AtomicU64,
}

/// Stops the registry's watcher when dropped (with the edge that owns it).
pub struct Watcher(tokio::task::JoinHandle<()>);

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Registry {
    /// A registry over `catalog` and its watcher task (call within a tokio
    /// runtime); `tracked` and `revoked` are the metrics it keeps.
    pub fn start(catalog: Arc<Catalog>, tracked: Gauge, revoked: Counter) -> (Arc<Self>, Watcher) {
        let feed = catalog.subscribe();
        let registry = Arc::new(Registry {
            catalog,
            state: Mutex::new(State::default()),
            tracked,
            revoked,
            ticks: AtomicU64::new(0),
        });
        let task = tokio::spawn(registry.clone().watch(feed));
        (registry, Watcher(task))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent maps.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tracks a connection admitted by `admitted` until the returned [`Hold`]
    /// is dropped. Checked at once, under the lock the watcher takes, so a
    /// change between the proxy's decision and now is not missed: the hold
    /// of a connection no longer allowed is already revoked.
    pub fn hold(self: &Arc<Self>, admitted: Admitted) -> Hold {
        let (close, closed) = oneshot::channel();
        let mut st = self.lock();
        match recheck(&admitted, &self.catalog, unix_now()) {
            Verdict::Revoked(why) => {
                drop(st);
                self.count_revoked(&admitted, why);
                drop(close);
                Hold {
                    id: None,
                    registry: self.clone(),
                    closed,
                }
            }
            Verdict::Allowed { until } => {
                let id = st.next_id;
                st.next_id += 1;
                let keys = keys_of(&admitted, &self.catalog);
                st.index(id, &keys);
                st.conns.insert(
                    id,
                    Entry {
                        admitted,
                        keys,
                        until,
                        close,
                    },
                );
                self.tracked.inc();
                Hold {
                    id: Some(id),
                    registry: self.clone(),
                    closed,
                }
            }
        }
    }

    /// Wraps a response body: once it has streamed for
    /// [`LONG_RESPONSE_TICKS`] (server-sent events: at once), it is tracked, and it ends with an
    /// error when revoked (HTTP/1.1 closes the connection, HTTP/2 resets
    /// the stream). `headers` are the response's.
    pub fn body<B>(
        self: &Arc<Self>,
        inner: B,
        admitted: Admitted,
        headers: &http::HeaderMap,
    ) -> Watched<B> {
        let from_tick = if is_event_stream(headers) {
            0
        } else {
            self.ticks.load(Ordering::Relaxed) + LONG_RESPONSE_TICKS
        };
        Watched {
            inner,
            state: Watch::Waiting {
                registry: self.clone(),
                admitted,
                from_tick,
            },
        }
    }

    /// Number of tracked connections.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// True when nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follows `feed` (the catalog's changes) and a [`TICK`], closing what is
    /// no longer allowed; ends when the catalog is gone.
    pub async fn watch(self: Arc<Self>, mut feed: broadcast::Receiver<Change>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = feed.recv() => match change {
                    Ok(change) => self.on_change(&change, unix_now()),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.recheck_all(unix_now()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let ticks = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
                    if ticks % u64::from(SWEEP_EVERY_TICKS) == 0 {
                        self.recheck_all(unix_now());
                    } else {
                        self.on_tick(unix_now());
                    }
                }
            }
        }
    }

    /// Re-checks the connections indexed under the key `change` touches.
    fn on_change(&self, change: &Change, now: i64) {
        let Some(key) = touched(change) else {
            return;
        };
        let mut st = self.lock();
        let ids: Vec<u64> = match st.index.get(&key) {
            Some(ids) => ids.iter().copied().collect(),
            None => return,
        };
        self.recheck_ids(&mut st, ids, now);
    }

    /// Re-checks the connections whose link or session expires by `now`.
    fn on_tick(&self, now: i64) {
        let mut st = self.lock();
        let due: Vec<u64> = st
            .conns
            .iter()
            .filter(|(_, e)| e.until.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        if !due.is_empty() {
            self.recheck_ids(&mut st, due, now);
        }
    }

    /// Re-checks every connection (the feed lagged, or the sweep).
    fn recheck_all(&self, now: i64) {
        let mut st = self.lock();
        let all: Vec<u64> = st.conns.keys().copied().collect();
        self.recheck_ids(&mut st, all, now);
    }

    fn recheck_ids(&self, st: &mut State, ids: Vec<u64>, now: i64) {
        for id in ids {
            let Some(entry) = st.conns.get_mut(&id) else {
                continue;
            };
            match recheck(&entry.admitted, &self.catalog, now) {
                Verdict::Allowed { until } => {
                    entry.until = until;
                    // What it depends on may have moved (an agent to
                    // another workspace): index it under the keys of now.
                    let keys = keys_of(&entry.admitted, &self.catalog);
                    if keys != entry.keys {
                        let old = std::mem::replace(&mut entry.keys, keys.clone());
                        st.unindex(id, &old);
                        st.index(id, &keys);
                    }
                }
                Verdict::Revoked(why) => {
                    if let Some(entry) = st.remove(id) {
                        self.tracked.dec();
                        self.count_revoked(&entry.admitted, why);
                        let _ = entry.close.send(());
                    }
                }
            }
        }
    }

    fn count_revoked(&self, a: &Admitted, why: &'static str) {
        self.revoked.inc();
        tracing::info!(
            target: "berth::access",
            agent = a.agent_id,
            port = a.port,
            user = a.visitor.as_ref().map(|v| v.user_id),
            link = a.link.as_deref(),
            why,
            "closed an open connection: access revoked"
        );
    }

    fn release(&self, id: u64) {
        if self.lock().remove(id).is_some() {
            self.tracked.dec();
        }
    }
}

/// A tracked connection: untracked when dropped; [`Hold::revoked`] resolves
/// when access ends.
pub struct Hold {
    /// `None`: revoked before it was tracked.
    id: Option<u64>,
    registry: Arc<Registry>,
    closed: oneshot::Receiver<()>,
}

impl Hold {
    /// Resolves when the connection must end. Await it once.
    pub async fn revoked(&mut self) {
        let _ = (&mut self.closed).await;
    }

    /// Copies bytes between the two ends of an upgraded connection until
    /// either ends or access is revoked; then both are shut down (a peer
    /// that does not read gets [`SHUTDOWN_GRACE`]) and dropped, which closes
    /// the client's connection (HTTP/1.1) or stream (HTTP/2).
    pub async fn splice<C, A>(mut self, mut client: C, mut app: A, stall: Option<Duration>)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        A: AsyncRead + AsyncWrite + Unpin,
    {
        let revoked = tokio::select! {
            _ = crate::tunnel::copy::bidirectional_with_stall(&mut client, &mut app, stall) => false,
            _ = self.revoked() => true,
        };
        if revoked {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
                let _ = tokio::join!(client.shutdown(), app.shutdown());
            })
            .await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.registry.release(id);
        }
    }
}

/// True for `Content-Type: text/event-stream` (server-sent events).
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    const SSE: &[u8] = b"text/event-stream";
    headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .is_some_and(|v| v.len() >= SSE.len() && v[..SSE.len()].eq_ignore_ascii_case(SSE))
}

/// Why a watched body ended early.
#[derive(Debug, thiserror::Error)]
#[error("closed by the edge: access to this app was revoked")]
pub struct Revoked;

enum Watch {
    /// Not tracked yet; tracked from the first frame asked for once the
    /// registry's tick count reaches `from_tick`.
    Waiting {
        registry: Arc<Registry>,
        admitted: Admitted,
        from_tick: u64,
    },
    Held(Hold),
    /// Revoked: the body ended with an error.
    Ended,
}

pin_project_lite::pin_project! {
    /// A response body that ends with [`Revoked`] when access is revoked
    /// (see [`Registry::body`]).
    pub struct Watched<B> {
        #[pin]
        inner: B,
        state: Watch,
    }
}

impl<B> Body for Watched<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if matches!(this.state, Watch::Waiting { registry, from_tick, .. }
            if registry.ticks.load(Ordering::Relaxed) >= *from_tick)
        {
            if let Watch::Waiting {
                registry, admitted, ..
            } = std::mem::replace(this.state, Watch::Ended)
            {
                *this.state = Watch::Held(registry.hold(admitted));
            }
        }
        match this.state {
            Watch::Ended => return Poll::Ready(Some(Err(Revoked.into()))),
            // Polled each time, so a revocation wakes an idle stream.
            Watch::Held(hold) => {
                if Pin::new(&mut hold.closed).poll(cx).is_ready() {
                    *this.state = Watch::Ended;
                    return Poll::Ready(Some(Err(Revoked.into())));
                }
            }
            Watch::Waiting { .. } => {}
        }
        this.inner.poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ShareLevel;
    use crate::catalog::{Agent, Cors, Link, Protocol, Session, Share, User, Workspace};
    use http_body_util::BodyExt;

    /// In the future, so that what the seed makes is live on the real clock
    /// too (the registry reads it).
    const NOW: i64 = 4_000_000_000;
    const ALICE: i64 = 1; // owns workspace 10, agent 100; organization acme
    const BOB: i64 = 2; // acme
    const CAROL: i64 = 3; // globex
    const ADMIN: i64 = 4;
    const AGENT: i64 = 100;
    const PORT: u16 = 3000;

    fn user(id: i64, name: &str, admin: bool, org: Option<&str>) -> Change {
        Change::User(User {
            id,
            username: name.into(),
            email: format!("{name}@example.com"),
            admin,
            organization: org.map(Into::into),
        })
    }

    fn token(user: i64) -> TokenHash {
        TokenHash::of(&format!("berth_api_user{user}"))
    }

    fn share(port: u16, level: ShareLevel) -> Change {
        Change::Share(Share {
            agent_id: AGENT,
            port,
            level,
            protocol: Protocol::Http,
            cors: Cors::Berth,
            inspect: true,
            users: vec![],
            groups: vec![],
            expires_at: None,
        })
    }

    fn link(id: &str, port: u16, expires_at: i64) -> Change {
        Change::Link(Link {
            id: id.into(),
            agent_id: AGENT,
            port,
            expires_at,
            created_by: ALICE,
        })
    }

    fn session(id: &str, user_id: i64, expires_at: i64) -> Change {
        Change::Session(Session {
            id: id.into(),
            user_id,
            expires_at,
        })
    }

    /// Alice's workspace with one agent, four users with tokens, two links
    /// and two sessions.
    fn seed() -> Catalog {
        let c = Catalog::new();
        for change in [
            user(ALICE, "alice", false, Some("acme")),
            user(BOB, "bob", false, Some("acme")),
            user(CAROL, "carol", false, Some("globex")),
            user(ADMIN, "root", true, None),
            Change::Workspace(Workspace {
                id: 10,
                owner_id: ALICE,
                name: "api".into(),
            }),
            Change::Agent(Agent {
                id: AGENT,
                workspace_id: 10,
                name: "main".into(),
                token_hash: TokenHash::of("berth_agent_x"),
            }),
            link("l1", PORT, NOW + 100),
            link("l2", PORT + 1, NOW + 100),
            session("s-bob", BOB, NOW + 3600),
            session("s-carol", CAROL, NOW + 3600),
        ] {
            c.apply(change);
        }
        for u in [ALICE, BOB, CAROL, ADMIN] {
            c.apply(Change::ApiToken {
                hash: token(u),
                user_id: u,
            });
        }
        c
    }

    fn by_token(user_id: i64) -> Admitted {
        Admitted {
            visitor: Some(AdmittedVisitor {
                user_id,
                by: Some(Credential::Token(token(user_id))),
            }),
            link: None,
            agent_id: AGENT,
            port: PORT,
        }
    }

    fn by_session(user_id: i64, id: &str) -> Admitted {
        Admitted {
            visitor: Some(AdmittedVisitor {
                user_id,
                by: Some(Credential::Session(id.into())),
            }),
            ..by_token(user_id)
        }
    }

    fn by_link(id: &str) -> Admitted {
        Admitted {
            visitor: None,
            link: Some(id.into()),
            agent_id: AGENT,
            port: PORT,
        }
    }

    fn anonymous() -> Admitted {
        Admitted {
            visitor: None,
            link: None,
            agent_id: AGENT,
            port: PORT,
        }
    }

    /// (name, admitted as, share level at the time, changes since, now, open?)
    type Row = (&'static str, Admitted, ShareLevel, Vec<Change>, i64, bool);

    /// Each row: a connection admitted under `level`, then `changes` and
    /// the clock at `now`: is it still allowed? Every row is allowed before
    /// the changes (it was admitted); the table tries to keep a revoked one
    /// open and to close one that should stay.
    #[test]
    fn recheck_takes_the_same_decision_again() {
        use ShareLevel::*;
        const OPEN: bool = true;
        const CLOSED: bool = false;
        let none: Vec<Change> = Vec::new();
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            ("link: revoked", by_link("l1"), Owner, vec![Change::LinkRemoved("l1".into())], NOW, CLOSED),
            ("link: expired by time", by_link("l1"), Owner, none.clone(), NOW + 100, CLOSED),
            ("link: a second before expiry", by_link("l1"), Owner, none.clone(), NOW + 99, OPEN),
            ("link: its maker deleted", by_link("l1"), Owner, vec![Change::UserRemoved(ALICE)], NOW, CLOSED),
            ("link: agent deleted", by_link("l1"), Owner, vec![Change::AgentRemoved(AGENT)], NOW, CLOSED),
            ("link: another link revoked", by_link("l1"), Owner, vec![Change::LinkRemoved("l2".into())], NOW, OPEN),
            ("link: revoked, port now public", by_link("l1"), Owner,
                vec![share(PORT, Public), Change::LinkRemoved("l1".into())], NOW, OPEN),
            ("link for another port", by_link("l2"), Public, vec![share(PORT, Owner)], NOW, CLOSED),
            ("anonymous: public lowered to owner", anonymous(), Public, vec![share(PORT, Owner)], NOW, CLOSED),
            ("anonymous: unshared", anonymous(), Public,
                vec![Change::ShareRemoved { agent_id: AGENT, port: PORT }], NOW, CLOSED),
            ("anonymous: lowered to authenticated", anonymous(), Public, vec![share(PORT, Authenticated)], NOW, CLOSED),
            ("anonymous: another port unshared", anonymous(), Public, vec![share(PORT + 1, Owner)], NOW, OPEN),
            ("session: signed out", by_session(BOB, "s-bob"), Authenticated,
                vec![Change::SessionRemoved("s-bob".into())], NOW, CLOSED),
            ("session: expired by time", by_session(BOB, "s-bob"), Authenticated, none.clone(), NOW + 3600, CLOSED),
            ("session: another user signed out", by_session(BOB, "s-bob"), Authenticated,
                vec![Change::SessionRemoved("s-carol".into())], NOW, OPEN),
            ("session: signed out of a public port", by_session(BOB, "s-bob"), Public,
                vec![Change::SessionRemoved("s-bob".into())], NOW, CLOSED),
            ("session: user deleted", by_session(BOB, "s-bob"), Authenticated, vec![Change::UserRemoved(BOB)], NOW, CLOSED),
            ("token: user deleted", by_token(CAROL), Authenticated, vec![Change::UserRemoved(CAROL)], NOW, CLOSED),
            ("token: revoked", by_token(CAROL), Authenticated, vec![Change::ApiTokenRemoved(token(CAROL))], NOW, CLOSED),
            ("token: now another user's", by_token(CAROL), Public,
                vec![Change::ApiToken { hash: token(CAROL), user_id: BOB }], NOW, CLOSED),
            ("token: organization left", by_token(BOB), Organization, vec![user(BOB, "bob", false, Some("globex"))], NOW, CLOSED),
            ("token: owner's organization changed", by_token(BOB), Organization,
                vec![user(ALICE, "alice", false, Some("initech"))], NOW, CLOSED),
            ("token: someone else's organization changed", by_token(BOB), Organization,
                vec![user(CAROL, "carol", false, Some("acme"))], NOW, OPEN),
            ("token: admin demoted", by_token(ADMIN), Owner, vec![user(ADMIN, "root", false, None)], NOW, CLOSED),
            ("token: renamed, same user", by_token(BOB), Authenticated, vec![user(BOB, "robert", false, Some("acme"))], NOW, OPEN),
            ("owner: workspace deleted", by_token(ALICE), Owner, vec![Change::WorkspaceRemoved(10)], NOW, CLOSED),
            ("owner: deleted", by_token(ALICE), Owner, vec![Change::UserRemoved(ALICE)], NOW, CLOSED),
            ("owner: share lowered", by_token(ALICE), Public, vec![share(PORT, Owner)], NOW, OPEN),
            ("owner: everything else", by_token(ALICE), Owner, vec![
                Change::UserRemoved(CAROL), Change::LinkRemoved("l1".into()),
                Change::SessionRemoved("s-bob".into()), share(PORT + 1, Public),
                Change::AppRemoved { agent_id: AGENT, name: "docs".into() },
            ], NOW + 10_000, OPEN),
        ];
        for (name, admitted, level, changes, now, want) in table {
            let c = seed();
            c.apply(share(PORT, level));
            assert!(
                matches!(recheck(&admitted, &c, NOW), Verdict::Allowed { .. }),
                "{name}: not allowed to begin with"
            );
            for change in changes {
                c.apply(change);
            }
            let got = recheck(&admitted, &c, now);
            assert_eq!(
                matches!(got, Verdict::Allowed { .. }),
                want,
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn recheck_fails_closed_and_says_when_to_look_again() {
        let c = seed();
        c.apply(share(PORT, ShareLevel::Public));
        // A user admitted by a credential it cannot name is not kept open.
        let unknown = Admitted {
            visitor: Some(AdmittedVisitor {
                user_id: BOB,
                by: None,
            }),
            ..anonymous()
        };
        assert_eq!(recheck(&unknown, &c, NOW), Verdict::Revoked(SIGNED_OUT));
        // The earliest expiry among the credentials it relies on.
        c.apply(session("s-short", BOB, NOW + 50));
        let both = Admitted {
            link: Some("l1".into()),
            ..by_session(BOB, "s-short")
        };
        assert_eq!(
            recheck(&both, &c, NOW),
            Verdict::Allowed {
                until: Some(NOW + 50)
            }
        );
        assert_eq!(
            recheck(&by_token(BOB), &c, NOW),
            Verdict::Allowed { until: None }
        );
        // Why, for the log.
        c.apply(share(PORT, ShareLevel::Owner));
        assert_eq!(
            recheck(&by_link("l1"), &c, NOW + 100),
            Verdict::Revoked(LINK_ENDED)
        );
        assert_eq!(recheck(&anonymous(), &c, NOW), Verdict::Revoked(NOT_SHARED));
    }

    #[test]
    fn admitted_names_the_credential_the_proxy_used() {
        let c = seed();
        let bob = c.visitor_for_token(&token(BOB)).unwrap();
        let a = Admitted::new(
            Some(&bob),
            Some(token(BOB)),
            None,
            Some("l1".into()),
            AGENT,
            PORT,
        );
        assert_eq!(a.visitor.unwrap().by, Some(Credential::Token(token(BOB))));
        let a = Admitted::new(Some(&bob), None, Some("s-bob".into()), None, AGENT, PORT);
        assert_eq!(
            a.visitor.unwrap().by,
            Some(Credential::Session("s-bob".into()))
        );
        // An invalid token on a public port: nobody to re-check.
        let a = Admitted::new(None, Some(token(99)), None, None, AGENT, PORT);
        assert_eq!(a.visitor, None);
    }

    fn metrics() -> (Gauge, Counter) {
        (Gauge::default(), Counter::default())
    }

    async fn closes_within(hold: &mut Hold, limit: Duration) -> bool {
        tokio::time::timeout(limit, hold.revoked()).await.is_ok()
    }

    #[tokio::test]
    async fn a_change_closes_only_the_connections_it_touches() {
        let catalog = Arc::new(seed());
        catalog.apply(share(PORT, ShareLevel::Authenticated));
        let (tracked, revoked) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), revoked.clone());
        let mut linked = registry.hold(by_link("l1"));
        let mut owner = registry.hold(by_token(ALICE));
        let mut bob = registry.hold(by_session(BOB, "s-bob"));
        assert_eq!(tracked.get(), 3);

        catalog.apply(Change::LinkRemoved("l2".into()));
        catalog.apply(Change::SessionRemoved("s-carol".into()));
        catalog.apply(share(PORT + 1, ShareLevel::Public));
        catalog.apply(Change::UserRemoved(CAROL));
        catalog.apply(Change::LinkRemoved("l1".into()));
        assert!(closes_within(&mut linked, Duration::from_secs(2)).await);
        assert_eq!((tracked.get(), revoked.get()), (2, 1));

        catalog.apply(Change::SessionRemoved("s-bob".into()));
        assert!(closes_within(&mut bob, Duration::from_secs(2)).await);
        assert!(!closes_within(&mut owner, Duration::from_millis(300)).await);
        assert_eq!((tracked.get(), revoked.get()), (1, 2));

        // Dropping a hold forgets it, index and all.
        drop(owner);
        assert_eq!(tracked.get(), 0);
        let st = registry.lock();
        assert!(st.conns.is_empty() && st.index.is_empty());
    }

    #[tokio::test]
    async fn a_change_before_the_hold_is_not_missed() {
        let catalog = Arc::new(seed());
        let (tracked, revoked) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), revoked.clone());
        // Revoked between the proxy's decision and the app's 101.
        catalog.apply(Change::LinkRemoved("l1".into()));
        let mut hold = registry.hold(by_link("l1"));
        assert!(closes_within(&mut hold, Duration::from_millis(10)).await);
        assert_eq!((tracked.get(), revoked.get()), (0, 1));
        drop(hold);
        assert_eq!(tracked.get(), 0);
    }

    #[tokio::test]
    async fn deleting_an_owner_closes_through_the_cascade() {
        let catalog = Arc::new(seed());
        let (tracked, revoked) = metrics();
        let (registry, _watcher) = Registry::start(catalog.clone(), tracked, revoked);
        catalog.apply(share(PORT, ShareLevel::Public));
        let mut anon = registry.hold(anonymous());
        let mut linked = registry.hold(by_link("l1"));
        // The catalog removes workspaces, agents, links and tokens with the
        // user; only some of that is announced one by one.
        catalog.apply(Change::UserRemoved(ALICE));
        assert!(closes_within(&mut anon, Duration::from_secs(2)).await);
        assert!(closes_within(&mut linked, Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn expiry_is_checked_on_the_tick() {
        let catalog = Arc::new(seed());
        let (tracked, revoked) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), revoked.clone());
        // A link that expires soon on the real clock.
        let now = unix_now();
        catalog.apply(link("soon", PORT, now + 5));
        let mut hold = registry.hold(by_link("soon"));
        registry.on_tick(now + 4);
        assert!(!closes_within(&mut hold, Duration::from_millis(50)).await);
        registry.on_tick(now + 5);
        assert!(closes_within(&mut hold, Duration::from_millis(50)).await);
        assert_eq!((tracked.get(), revoked.get()), (0, 1));
    }

    #[tokio::test]
    async fn a_lagging_feed_rechecks_everything() {
        let catalog = Arc::new(seed());
        let (registry, _watcher) =
            Registry::start(catalog.clone(), Gauge::default(), Counter::default());
        let mut hold = registry.hold(by_link("l1"));
        // On this single-threaded runtime the watcher runs only when the
        // test awaits: the revocation is pushed out of the feed before then.
        catalog.apply(Change::LinkRemoved("l1".into()));
        for i in 0..crate::catalog::FEED_CAPACITY + 10 {
            catalog.apply(Change::TunnelGone {
                agent_id: AGENT,
                holder: format!("https://edge{i}"),
            });
        }
        assert!(closes_within(&mut hold, Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn an_event_stream_is_tracked_at_once_and_ends_with_an_error() {
        let catalog = Arc::new(seed());
        let (tracked, revoked) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), revoked.clone());
        let (tx, inner) = channel_body();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            "Text/Event-Stream; charset=utf-8".parse().unwrap(),
        );
        let mut body = registry.body(inner, by_link("l1"), &headers);
        tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))))
            .await
            .unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "data: 1\n\n");
        assert_eq!(tracked.get(), 1);
        // Idle (no event pending) when the link is revoked: it still ends.
        catalog.apply(Change::LinkRemoved("l1".into()));
        let end = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("ends")
            .unwrap();
        assert!(end.unwrap_err().is::<Revoked>());
        assert_eq!((tracked.get(), revoked.get()), (0, 1));
    }

    type Sender = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>;

    /// A response body that sends what the test sends, and never ends.
    fn channel_body() -> (Sender, impl Body<Data = Bytes, Error = std::io::Error>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let body = http_body_util::StreamBody::new(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async { rx.recv().await.map(|f| (f, rx)) },
        )));
        (tx, body)
    }

    #[tokio::test]
    async fn a_response_still_streaming_after_two_ticks_is_tracked() {
        let catalog = Arc::new(seed());
        let (tracked, revoked) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), revoked.clone());
        let (tx, inner) = channel_body();
        let mut body = registry.body(inner, by_link("l1"), &http::HeaderMap::new());
        let chunk = || Ok(Frame::data(Bytes::from_static(b"0123456789")));
        tx.send(chunk()).await.unwrap();
        body.frame().await.unwrap().unwrap();
        assert!(registry.is_empty(), "not yet: a response that may end soon");
        registry
            .ticks
            .fetch_add(LONG_RESPONSE_TICKS, Ordering::Relaxed);
        tx.send(chunk()).await.unwrap();
        body.frame().await.unwrap().unwrap();
        assert_eq!(tracked.get(), 1);
        catalog.apply(Change::LinkRemoved("l1".into()));
        let end = tokio::time::timeout(Duration::from_secs(2), body.frame())
            .await
            .expect("ends")
            .unwrap();
        assert!(end.unwrap_err().is::<Revoked>());
        assert_eq!((tracked.get(), revoked.get()), (0, 1));
    }

    #[tokio::test]
    async fn a_short_response_never_reaches_the_registry() {
        let catalog = Arc::new(seed());
        let (tracked, _) = metrics();
        let (registry, _watcher) =
            Registry::start(catalog.clone(), tracked.clone(), Counter::default());
        let inner = http_body_util::Full::new(Bytes::from_static(b"hello"));
        let mut body = registry.body(inner, by_token(ALICE), &http::HeaderMap::new());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert!(body.frame().await.is_none());
        assert!(registry.is_empty());
        assert_eq!(tracked.get(), 0);
    }
}
