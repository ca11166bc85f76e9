//! The edge's end of the tunnels: a registry of live agents, each with one
//! or more HTTP/2 client connections (an agent's set of `--tunnels N`, see
//! [`super::TUNNEL_SET_HEADER`]) on which the edge opens one `CONNECT`
//! stream per upstream TCP connection, and asks `GET /ports` for the
//! listening ports.

use super::protocol::ListeningPort;
use super::{
    PortsReply, Refusal, TunnelSlot, CONNECTION_WINDOW, ERROR_HEADER, MAX_FRAME, MAX_PORTS_REPLY,
    MAX_TUNNELS, MOVE_PATH, PING_INTERVAL, PING_TIMEOUT, PORTS_PATH, PORTS_TIMEOUT, STREAM_WINDOW,
};
use crate::auth::TokenHash;
use bytes::Bytes;
use dashmap::DashMap;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Why a stream to an agent's port could not be opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenError {
    /// The agent has no live tunnel.
    #[error("the agent is not connected")]
    Offline,
    /// The agent answered but could not reach the port.
    #[error("the agent could not reach port {port}: {}", .refusal.code())]
    Refused { port: u16, refusal: Refusal },
    /// The tunnel failed while opening the stream.
    #[error("tunnel error: {0}")]
    Tunnel(String),
}

/// Why an agent's listening ports could not be listed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PortsError {
    /// The agent has no live tunnel.
    #[error("the agent is not connected")]
    Offline,
    /// The agent predates `GET /ports` (it answered 404 or 405).
    #[error(
        "the agent is too old to list its ports (it answered {0}); upgrade berth on the workspace"
    )]
    Unsupported(StatusCode),
    /// The agent could not read its ports (its message).
    #[error("the agent could not list its ports: {0}")]
    Agent(String),
    /// No complete answer within [`PORTS_TIMEOUT`].
    #[error("the agent did not list its ports within {}s", PORTS_TIMEOUT.as_secs())]
    Timeout,
    /// The answer exceeded [`MAX_PORTS_REPLY`] bytes.
    #[error("the agent's port list is larger than {MAX_PORTS_REPLY} bytes")]
    TooLarge,
    /// The answer was not the expected JSON.
    #[error("the agent's port list is malformed: {0}")]
    BadReply(String),
    /// The tunnel failed during the request.
    #[error("tunnel error: {0}")]
    Tunnel(String),
}

/// One live tunnel.
#[derive(Clone, Debug)]
pub struct TunnelHandle {
    /// Distinguishes successive tunnels of one agent (pool keys include it).
    pub generation: u64,
    /// When the agent connected.
    pub since: Instant,
    /// The agent token the tunnel was opened with.
    pub token: TokenHash,
    /// Its place in the agent's set of tunnels (`None`: an agent that opens
    /// one tunnel only, older than sets).
    pub slot: Option<TunnelSlot>,
    /// The core whose runtime drives this tunnel's connection (per-core
    /// runtimes only): requests on that core prefer it.
    pub home: Option<u16>,
    sender: SendRequest<Empty<Bytes>>,
    kill: Arc<Notify>,
}

impl TunnelHandle {
    /// Opens a new byte stream to `port` on the agent's side.
    pub async fn open(&self, port: u16) -> Result<Upgraded, OpenError> {
        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri(format!("127.0.0.1:{port}"))
            .body(Empty::new())
            .expect("static request is valid");
        let mut sender = self.sender.clone();
        sender.ready().await.map_err(|_| OpenError::Offline)?;
        let mut res = sender
            .send_request(req)
            .await
            .map_err(|e| OpenError::Tunnel(e.to_string()))?;
        if !res.status().is_success() {
            let refusal = res
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(Refusal::from_code)
                .unwrap_or(Refusal::Unreachable);
            return Err(OpenError::Refused { port, refusal });
        }
        hyper::upgrade::on(&mut res)
            .await
            .map_err(|e| OpenError::Tunnel(e.to_string()))
    }

    /// The agent's listening TCP ports that it would dial (`GET /ports`),
    /// sorted by port. Reads at most [`MAX_PORTS_REPLY`] bytes and gives up
    /// after [`PORTS_TIMEOUT`].
    pub async fn listening_ports(&self) -> Result<Vec<ListeningPort>, PortsError> {
        let reply = tokio::time::timeout(PORTS_TIMEOUT, self.ports_reply())
            .await
            .map_err(|_| PortsError::Timeout)??;
        if reply.truncated {
            tracing::debug!(
                listed = reply.ports.len(),
                "the agent left out some listening ports"
            );
        }
        Ok(reply.ports)
    }

    async fn ports_reply(&self) -> Result<PortsReply, PortsError> {
        let req = http::Request::builder()
            .method(http::Method::GET)
            .uri(PORTS_PATH)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .expect("static request is valid");
        let mut sender = self.sender.clone();
        sender.ready().await.map_err(|_| PortsError::Offline)?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| PortsError::Tunnel(e.to_string()))?;
        let status = res.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(PortsError::Unsupported(status));
        }
        let body = Limited::new(res.into_body(), MAX_PORTS_REPLY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    PortsError::TooLarge
                } else {
                    PortsError::Tunnel(e.to_string())
                }
            })?
            .to_bytes();
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("it answered {status}"));
            return Err(PortsError::Agent(message));
        }
        serde_json::from_slice(&body).map_err(|e| PortsError::BadReply(e.to_string()))
    }

    /// Asks the agent to move to another region (the edge is shutting
    /// down); true if it will (it answered 204), false if it has nowhere
    /// else to go, is too old to know the request, or did not answer.
    pub async fn ask_to_move(&self) -> bool {
        let req = http::Request::builder()
            .method(http::Method::POST)
            .uri(MOVE_PATH)
            .body(Empty::new())
            .expect("static request is valid");
        let mut sender = self.sender.clone();
        let ask = async {
            sender.ready().await.ok()?;
            sender.send_request(req).await.ok()
        };
        matches!(
            tokio::time::timeout(PORTS_TIMEOUT, ask).await,
            Ok(Some(res)) if res.status() == StatusCode::NO_CONTENT
        )
    }

    /// True while the tunnel's connection is up.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// Counters the registry keeps for metrics (registered by the telemetry module).
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Streams opened over all tunnels (a warm request opens none).
    pub streams_opened: Counter,
    /// Agents with a live tunnel.
    pub connected: Gauge,
}

/// An agent's first tunnel to this edge opened (`up`), or its last closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelEvent {
    pub agent_id: i64,
    pub up: bool,
}

/// How long a tunnel replaced by a newer one of the same agent may finish
/// its open streams (a little over the agent's own retire grace).
const REPLACED_GRACE: Duration = Duration::from_secs(20);

/// Replaced tunnels of one agent kept in their grace period at most (a
/// whole set can be replaced at once); an older one beyond is closed at once.
const MAX_EARLIER: usize = MAX_TUNNELS as usize;

/// An agent's tunnels here: the newest set, which takes new streams
/// (`current` and its `siblings`, the other connections of the same
/// [`TunnelSlot::set`]), and the ones it replaced that are still finishing
/// theirs (oldest first). When `current` ends, an open sibling takes its
/// place, so losing one connection of a set costs only its own streams.
/// When the whole set is gone, the newest earlier one that is still open
/// takes over at once: a replacement that dies (a second connection with
/// the same token, a standby's edge restarting) must not leave the agent
/// unreachable while its first tunnel is alive.
#[derive(Debug)]
struct AgentTunnels {
    current: TunnelHandle,
    siblings: Vec<TunnelHandle>,
    earlier: Vec<TunnelHandle>,
}

impl AgentTunnels {
    /// The newest set's connections: `current`, then its siblings.
    fn set(&self) -> impl Iterator<Item = &TunnelHandle> {
        std::iter::once(&self.current).chain(&self.siblings)
    }

    /// Every connection the agent has here.
    fn all(&self) -> impl Iterator<Item = &TunnelHandle> {
        self.set().chain(&self.earlier)
    }

    /// Takes in a newly arrived tunnel: it joins the current set, taking
    /// over its slot if another has it, or it replaces the set. Returns the
    /// generations it displaced (closed after their grace).
    fn arrive(&mut self, handle: TunnelHandle) -> Vec<u64> {
        let displaced: Vec<TunnelHandle> = if TunnelSlot::joins(self.current.slot, handle.slot) {
            let index = handle.slot.map(|s| s.index);
            if self.current.slot.map(|s| s.index) == index {
                vec![std::mem::replace(&mut self.current, handle)]
            } else if let Some(i) = self
                .siblings
                .iter()
                .position(|h| h.slot.map(|s| s.index) == index)
            {
                vec![std::mem::replace(&mut self.siblings[i], handle)]
            } else {
                self.siblings.push(handle);
                Vec::new()
            }
        } else {
            let old = std::mem::replace(&mut self.current, handle);
            std::iter::once(old)
                .chain(std::mem::take(&mut self.siblings))
                .collect()
        };
        let generations = displaced.iter().map(|h| h.generation).collect();
        self.earlier.extend(displaced);
        self.trim_earlier();
        generations
    }

    /// Keeps `earlier` within [`MAX_EARLIER`], closing the oldest.
    fn trim_earlier(&mut self) {
        while self.earlier.len() > MAX_EARLIER {
            self.earlier.remove(0).kill.notify_one();
        }
    }
}

thread_local! {
    /// The core this thread serves with `server.runtime = "per-core"`.
    static CORE: std::cell::Cell<Option<u16>> = const { std::cell::Cell::new(None) };
}

/// Marks this thread as serving core `core` (its runtime's only thread).
pub fn set_core(core: u16) {
    CORE.with(|c| c.set(Some(core)));
}

/// The core this thread serves, if it is one of a per-core runtime's.
pub fn core() -> Option<u16> {
    CORE.with(std::cell::Cell::get)
}

/// Spreads requests over an agent's tunnels: the same `affinity` (one
/// client connection) keeps to the same tunnel, so its warm requests reuse
/// that tunnel's pooled connections.
pub fn affinity(peer: std::net::SocketAddr) -> u64 {
    let ip = match peer.ip() {
        std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
        std::net::IpAddr::V6(v6) => u128::from(v6) as u64,
    };
    ip.rotate_left(16) ^ u64::from(peer.port())
}

/// What ending one tunnel did to its agent.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// It was the last: the agent is gone from this edge.
    Last,
    /// It was the newest; an earlier, still open tunnel of that generation
    /// took over.
    Reinstated(u64),
    /// It was the newest set's first; another open tunnel of the set (of
    /// that generation) took its place.
    Promoted(u64),
    /// It was one of the newest set's other tunnels.
    Sibling,
    /// It had been replaced, or was already forgotten.
    Earlier,
}

/// Events a slow [`Tunnels::events`] receiver may fall behind by.
const EVENTS_CAPACITY: usize = 4096;

/// Every agent connected to this edge, by agent id.
#[derive(Debug)]
pub struct Tunnels {
    live: DashMap<i64, AgentTunnels>,
    next_generation: AtomicU64,
    /// Flipped to true by [`Tunnels::close_all`]; every tunnel task watches it.
    closing: tokio::sync::watch::Sender<bool>,
    /// Agents arriving and leaving, for whoever tells control where they are.
    events: tokio::sync::broadcast::Sender<TunnelEvent>,
    /// Metrics.
    pub stats: TunnelStats,
}

impl Tunnels {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Tunnels {
            live: DashMap::new(),
            next_generation: AtomicU64::new(0),
            closing: tokio::sync::watch::channel(false).0,
            events: tokio::sync::broadcast::channel(EVENTS_CAPACITY).0,
            stats: TunnelStats::default(),
        })
    }

    /// Every agent arriving or leaving from now on. A receiver that lags
    /// misses events, and should fall back on [`Tunnels::agent_ids`].
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<TunnelEvent> {
        self.events.subscribe()
    }

    /// Closes the tunnels for which `still_valid(agent_id, token)` is false:
    /// agents deleted, or whose token was rotated, since they connected.
    pub fn sweep(&self, still_valid: impl Fn(i64, &TokenHash) -> bool) {
        for entry in self.live.iter() {
            let agent_id = *entry.key();
            for h in entry.all().filter(|h| !still_valid(agent_id, &h.token)) {
                tracing::info!(agent_id, "closing the tunnel of a removed agent");
                h.kill.notify_one();
            }
        }
    }

    /// Asks every agent to move elsewhere (this edge is shutting down) and
    /// waits, at most `limit`, until each that agreed has left or has a
    /// tunnel `elsewhere` (its old one here may wait for idle pooled
    /// streams until the drain ends); requests keep flowing meanwhile.
    /// Returns how many agreed and how many got away in time.
    pub async fn move_all(
        &self,
        limit: Duration,
        elsewhere: impl Fn(i64) -> bool,
    ) -> (usize, usize) {
        let handles: Vec<(i64, TunnelHandle)> = self
            .live
            .iter()
            .map(|e| (*e.key(), e.current.clone()))
            .collect();
        let asks = handles
            .iter()
            .map(|(id, h)| async move { h.ask_to_move().await.then_some((*id, h.generation)) });
        let moving: Vec<(i64, u64)> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let still_here = |moving: &[(i64, u64)]| {
            moving
                .iter()
                .filter(|(id, generation)| {
                    self.get(*id).is_some_and(|h| h.generation == *generation) && !elsewhere(*id)
                })
                .count()
        };
        let deadline = tokio::time::Instant::now() + limit;
        while still_here(&moving) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (moving.len(), moving.len() - still_here(&moving))
    }

    /// Closes every tunnel (on shutdown), so agents reconnect elsewhere or
    /// to this edge's successor at once instead of waiting for a ping timeout.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// The agent's live tunnel, if any: the newest, or (while the newest
    /// has closed and not yet been cleared) the newest earlier one open.
    pub fn get(&self, agent_id: i64) -> Option<TunnelHandle> {
        let agent = self.live.get(&agent_id)?;
        let found = agent
            .set()
            .chain(agent.earlier.iter().rev())
            .find(|h| h.is_open())
            .cloned();
        found
    }

    /// The tunnel for a request with this [`affinity`]: on a per-core
    /// runtime's thread, the newest set's open connection that this core
    /// drives, if any; else one of the set's open connections (the same
    /// one for the same affinity while the set stays), or [`Tunnels::get`]'s
    /// when none is open.
    pub fn pick(&self, agent_id: i64, affinity: u64) -> Option<TunnelHandle> {
        let agent = self.live.get(&agent_id)?;
        if let Some(core) = core() {
            let home = agent
                .set()
                .find(|h| h.home == Some(core) && h.is_open())
                .cloned();
            if home.is_some() {
                return home;
            }
        }
        let open = || agent.set().filter(|h| h.is_open());
        let n = open().count();
        if n > 1 {
            // The k-th by slot index, so the choice does not depend on
            // arrival order (a set has at most MAX_TUNNELS: no allocation).
            let k = (affinity % n as u64) as usize;
            let index = |h: &TunnelHandle| h.slot.map(|s| s.index);
            let kth = open().find(|h| open().filter(|o| index(o) < index(h)).count() == k);
            if let Some(h) = kth {
                return Some(h.clone());
            }
        }
        drop(agent);
        self.get(agent_id)
    }

    /// The generations of the agent's newest set that are open, by slot.
    pub fn set_generations(&self, agent_id: i64) -> Vec<u64> {
        let Some(agent) = self.live.get(&agent_id) else {
            return Vec::new();
        };
        let mut set: Vec<&TunnelHandle> = agent.set().filter(|h| h.is_open()).collect();
        set.sort_unstable_by_key(|h| h.slot.map(|s| s.index));
        set.into_iter().map(|h| h.generation).collect()
    }

    /// The ids of the agents with a live tunnel, sorted.
    pub fn agent_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .live
            .iter()
            .filter(|e| e.all().any(TunnelHandle::is_open))
            .map(|e| *e.key())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The listening ports of `agent_id`'s workspace (see
    /// [`TunnelHandle::listening_ports`]).
    pub async fn listening_ports(&self, agent_id: i64) -> Result<Vec<ListeningPort>, PortsError> {
        let handle = self.get(agent_id).ok_or(PortsError::Offline)?;
        handle.listening_ports().await
    }

    /// Whether the agent is connected.
    pub fn is_connected(&self, agent_id: i64) -> bool {
        self.get(agent_id).is_some()
    }

    /// Number of live tunnels.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when no agent is connected.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Forgets the tunnel `generation` of `agent_id`, which ended; when it
    /// was the newest, an open one of its set takes over, else the newest
    /// earlier one still open.
    fn end(&self, agent_id: i64, generation: u64) -> Ended {
        let dashmap::Entry::Occupied(mut e) = self.live.entry(agent_id) else {
            return Ended::Earlier;
        };
        let agent = e.get_mut();
        if agent.current.generation != generation {
            if let Some(i) = agent
                .siblings
                .iter()
                .position(|h| h.generation == generation)
            {
                agent.siblings.remove(i);
                return Ended::Sibling;
            }
            agent.earlier.retain(|h| h.generation != generation);
            return Ended::Earlier;
        }
        agent.siblings.retain(TunnelHandle::is_open);
        if !agent.siblings.is_empty() {
            agent.current = agent.siblings.remove(0);
            return Ended::Promoted(agent.current.generation);
        }
        // The newest earlier one still open serves again, with the open
        // ones of its set, the lowest slot first.
        agent.earlier.retain(TunnelHandle::is_open);
        if let Some(newest) = agent.earlier.pop() {
            let set = newest.slot.map(|s| s.set);
            let (mut back, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut agent.earlier)
                .into_iter()
                .partition(|h| set.is_some() && h.slot.map(|s| s.set) == set);
            agent.earlier = rest;
            back.push(newest);
            back.sort_by_key(|h| h.slot.map(|s| s.index));
            agent.current = back.remove(0);
            agent.siblings = back;
            return Ended::Reinstated(agent.current.generation);
        }
        e.remove();
        Ended::Last
    }

    /// Closes the tunnel `generation` of `agent_id` unless it is the
    /// agent's newest (again).
    fn close_if_replaced(&self, agent_id: i64, generation: u64) {
        let Some(agent) = self.live.get(&agent_id) else {
            return;
        };
        if agent.set().any(|h| h.generation == generation) {
            return;
        }
        if let Some(h) = agent.earlier.iter().find(|h| h.generation == generation) {
            h.kill.notify_one();
        }
    }

    /// Opens a stream to `port` on `agent_id`, counting it.
    pub async fn open(
        &self,
        agent_id: i64,
        generation: u64,
        port: u16,
    ) -> Result<Upgraded, OpenError> {
        let in_set = self.live.get(&agent_id).and_then(|a| {
            a.set()
                .find(|h| h.generation == generation && h.is_open())
                .cloned()
        });
        let handle = in_set
            .or_else(|| self.get(agent_id).filter(|h| h.generation == generation))
            .ok_or(OpenError::Offline)?;
        self.stats.streams_opened.inc();
        handle.open(port).await
    }

    /// Runs an agent's tunnel over an upgraded connection until it ends. A
    /// tunnel of the agent's current set (same [`TunnelSlot::set`]) joins
    /// it, taking over its slot if that was taken; any other is the newest
    /// and replaces the set, which finishes its streams meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        agent_id: i64,
        token: TokenHash,
        slot: Option<TunnelSlot>,
        io: Upgraded,
    ) {
        let result = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake::<_, Empty<Bytes>>(io)
            .await;
        let (sender, conn) = match result {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(agent_id, error = %e, "tunnel handshake failed");
                return;
            }
        };
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let kill = Arc::new(Notify::new());
        let handle = TunnelHandle {
            generation,
            since: Instant::now(),
            token,
            slot,
            home: core(),
            sender,
            kill: kill.clone(),
        };
        let replaced = match self.live.entry(agent_id) {
            dashmap::Entry::Occupied(mut e) => Some(e.get_mut().arrive(handle)),
            dashmap::Entry::Vacant(e) => {
                e.insert(AgentTunnels {
                    current: handle,
                    siblings: Vec::new(),
                    earlier: Vec::new(),
                });
                None
            }
        };
        let first = replaced.is_none();
        if let Some(replaced) = replaced.filter(|r| !r.is_empty()) {
            // The agent reconnected (or promoted its standby tunnel here):
            // new streams go to the new tunnel at once; the old one keeps
            // its open streams a while (the agent retires it gracefully, or
            // it was dead and its pings time out), then is closed, unless
            // it has become the newest again meanwhile. (A tunnel that
            // joined its set displaced nothing.)
            let tunnels = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(REPLACED_GRACE).await;
                for old_generation in replaced {
                    tunnels.close_if_replaced(agent_id, old_generation);
                }
            });
        } else if first {
            self.stats.connected.inc();
            let _ = self.events.send(TunnelEvent { agent_id, up: true });
        }
        tracing::info!(agent_id, generation, "agent connected");
        let mut closing = self.closing.subscribe();
        let outcome = tokio::select! {
            r = conn => r,
            _ = closing.wait_for(|c| *c) => Ok(()),
            () = kill.notified() => Ok(()),
        };
        match self.end(agent_id, generation) {
            Ended::Last => {
                self.stats.connected.dec();
                let _ = self.events.send(TunnelEvent {
                    agent_id,
                    up: false,
                });
            }
            Ended::Reinstated(earlier) => tracing::info!(
                agent_id,
                generation = earlier,
                "the agent's newest tunnel ended; its earlier one, still open, serves again"
            ),
            Ended::Promoted(other) => tracing::info!(
                agent_id,
                generation = other,
                "one of the agent's tunnels ended; the others keep serving"
            ),
            Ended::Sibling | Ended::Earlier => {}
        }
        match outcome {
            Ok(()) => tracing::info!(agent_id, generation, "agent disconnected"),
            Err(e) => tracing::info!(agent_id, generation, error = %e, "agent disconnected"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;

    /// A tunnel to a fake agent whose every answer is `status` with `body`.
    async fn tunnel_to(status: StatusCode, body: Vec<u8>) -> TunnelHandle {
        let (edge, agent) = tokio::io::duplex(64 * 1024);
        let body = Bytes::from(body);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: http::Request<_>| {
                assert_eq!(req.method(), http::Method::GET);
                assert_eq!(req.uri().path(), PORTS_PATH);
                let res = http::Response::builder()
                    .status(status)
                    .body(Full::new(body.clone()))
                    .unwrap();
                async move { Ok::<_, std::convert::Infallible>(res) }
            });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(agent), service)
                .await;
        });
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(edge))
            .await
            .unwrap();
        tokio::spawn(conn);
        TunnelHandle {
            generation: 1,
            since: Instant::now(),
            token: TokenHash([0; 32]),
            slot: None,
            home: None,
            sender,
            kill: Arc::new(Notify::new()),
        }
    }

    /// A handle of `generation` whose connection is already gone.
    async fn closed(generation: u64) -> TunnelHandle {
        let (edge, _agent) = tokio::io::duplex(64 * 1024);
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Empty<Bytes>>(TokioIo::new(edge))
            .await
            .unwrap();
        drop(conn);
        let handle = TunnelHandle {
            generation,
            since: Instant::now(),
            token: TokenHash([0; 32]),
            slot: None,
            home: None,
            sender,
            kill: Arc::new(Notify::new()),
        };
        assert!(!handle.is_open());
        handle
    }

    async fn open(generation: u64) -> TunnelHandle {
        TunnelHandle {
            generation,
            ..tunnel_to(StatusCode::OK, Vec::new()).await
        }
    }

    #[tokio::test]
    async fn when_the_newest_tunnel_ends_an_earlier_open_one_takes_over() {
        let t = Tunnels::new();
        t.live.insert(
            7,
            AgentTunnels {
                current: open(3).await,
                siblings: Vec::new(),
                earlier: vec![open(1).await, closed(2).await],
            },
        );
        assert_eq!(t.get(7).unwrap().generation, 3);
        // The newest ends: generation 2 is closed, so 1 serves again.
        assert_eq!(t.end(7, 3), Ended::Reinstated(1));
        assert_eq!(t.get(7).unwrap().generation, 1);
        assert_eq!(t.agent_ids(), [7]);
        // A replaced one ending changes nothing for the others.
        t.live.get_mut(&7).unwrap().earlier.push(open(4).await);
        assert_eq!(t.end(7, 4), Ended::Earlier);
        assert_eq!(t.get(7).unwrap().generation, 1);
        // The last one ends: the agent is gone.
        assert_eq!(t.end(7, 1), Ended::Last);
        assert!(t.get(7).is_none() && t.is_empty());
        assert_eq!(t.end(7, 1), Ended::Earlier, "already forgotten");
    }

    #[tokio::test]
    async fn a_closed_newest_tunnel_is_skipped_before_it_is_cleared() {
        let t = Tunnels::new();
        t.live.insert(
            1,
            AgentTunnels {
                current: closed(5).await,
                siblings: Vec::new(),
                earlier: vec![open(4).await],
            },
        );
        assert_eq!(t.get(1).unwrap().generation, 4);
        assert_eq!(t.end(1, 5), Ended::Reinstated(4));
    }

    #[tokio::test]
    async fn a_replaced_tunnel_is_closed_after_its_grace_unless_newest_again() {
        let t = Tunnels::new();
        let (one, two) = (open(1).await, open(2).await);
        let (kill1, kill2) = (one.kill.clone(), two.kill.clone());
        t.live.insert(
            3,
            AgentTunnels {
                current: two,
                siblings: Vec::new(),
                earlier: vec![one],
            },
        );
        t.close_if_replaced(3, 1);
        tokio::time::timeout(Duration::from_secs(1), kill1.notified())
            .await
            .expect("the replaced tunnel is told to close");
        t.close_if_replaced(3, 2);
        let newest = tokio::time::timeout(Duration::from_millis(100), kill2.notified()).await;
        assert!(newest.is_err(), "the newest tunnel was closed");
    }

    async fn in_slot(generation: u64, set: u64, index: u16) -> TunnelHandle {
        TunnelHandle {
            slot: Some(TunnelSlot { set, index }),
            ..open(generation).await
        }
    }

    #[tokio::test]
    async fn a_set_shares_the_load_and_losing_one_costs_only_that_one() {
        let t = Tunnels::new();
        t.live.insert(
            9,
            AgentTunnels {
                current: in_slot(1, 0xa, 0).await,
                siblings: Vec::new(),
                earlier: Vec::new(),
            },
        );
        let mut agent = t.live.get_mut(&9).unwrap();
        // The set's second tunnel joins; nothing is displaced.
        assert!(agent.arrive(in_slot(2, 0xa, 1).await).is_empty());
        drop(agent);
        assert_eq!(t.set_generations(9), [1, 2]);
        // Each affinity keeps to one tunnel; both are used.
        let picked: Vec<u64> = (0..4).map(|a| t.pick(9, a).unwrap().generation).collect();
        assert_eq!(picked, [1, 2, 1, 2]);
        assert_eq!(
            t.pick(9, 7).unwrap().generation,
            t.pick(9, 7).unwrap().generation
        );
        // Streams open on either tunnel of the set.
        assert!(t.live.get(&9).unwrap().set().any(|h| h.generation == 2));
        // The first one ends: the other takes its place, the agent stays.
        assert_eq!(t.end(9, 1), Ended::Promoted(2));
        assert_eq!(t.set_generations(9), [2]);
        assert_eq!(t.pick(9, 0).unwrap().generation, 2);
        // The agent redials slot 0 with the same set: it joins again.
        let mut agent = t.live.get_mut(&9).unwrap();
        assert!(agent.arrive(in_slot(3, 0xa, 0).await).is_empty());
        drop(agent);
        assert_eq!(t.set_generations(9), [3, 2], "by slot index");
        // A redial of a slot still held displaces the old connection.
        let mut agent = t.live.get_mut(&9).unwrap();
        assert_eq!(agent.arrive(in_slot(4, 0xa, 1).await), [2]);
        drop(agent);
        assert_eq!(t.set_generations(9), [3, 4]);
        // A sibling ending leaves the rest as they are.
        assert_eq!(t.end(9, 3), Ended::Sibling);
        assert_eq!(t.set_generations(9), [4]);
        assert_eq!(t.agent_ids(), [9]);
    }

    #[tokio::test]
    async fn on_a_core_a_request_prefers_the_tunnel_that_core_drives() {
        let t = Tunnels::new();
        let homed = |h: TunnelHandle, core| TunnelHandle {
            home: Some(core),
            ..h
        };
        t.live.insert(
            6,
            AgentTunnels {
                current: homed(in_slot(1, 0xa, 0).await, 1),
                siblings: vec![homed(in_slot(2, 0xa, 1).await, 0)],
                earlier: Vec::new(),
            },
        );
        // Not a core's thread: by affinity.
        assert_eq!(t.pick(6, 0).unwrap().generation, 1);
        // Each core its own tunnel, whatever the affinity.
        std::thread::scope(|s| {
            for (core, want) in [(0, 2), (1, 1)] {
                let t = &t;
                s.spawn(move || {
                    set_core(core);
                    for affinity in 0..4 {
                        assert_eq!(t.pick(6, affinity).unwrap().generation, want);
                    }
                });
            }
            // A core that drives none of them: by affinity again.
            s.spawn(|| {
                set_core(5);
                assert_eq!(t.pick(6, 1).unwrap().generation, 2);
            });
        });
    }

    #[tokio::test]
    async fn a_replaced_set_serves_again_whole_when_its_replacement_dies() {
        let t = Tunnels::new();
        t.live.insert(
            4,
            AgentTunnels {
                current: in_slot(1, 0xa, 0).await,
                siblings: vec![in_slot(2, 0xa, 1).await],
                earlier: vec![open(7).await],
            },
        );
        let mut agent = t.live.get_mut(&4).unwrap();
        assert_eq!(agent.arrive(in_slot(3, 0xb, 0).await), [1, 2]);
        drop(agent);
        assert_eq!(t.end(4, 3), Ended::Reinstated(1));
        assert_eq!(t.set_generations(4), [1, 2], "slot 0 first");
        assert_eq!(t.get(4).unwrap().generation, 1);
        let agent = t.live.get(&4).unwrap();
        let earlier: Vec<u64> = agent.earlier.iter().map(|h| h.generation).collect();
        assert_eq!(earlier, [7], "another set stays earlier");
    }

    #[tokio::test]
    async fn another_set_or_an_older_agent_replaces_the_whole_set() {
        let t = Tunnels::new();
        t.live.insert(
            5,
            AgentTunnels {
                current: in_slot(1, 0xa, 0).await,
                siblings: vec![in_slot(2, 0xa, 1).await],
                earlier: Vec::new(),
            },
        );
        let mut agent = t.live.get_mut(&5).unwrap();
        assert_eq!(agent.arrive(in_slot(3, 0xb, 0).await), [1, 2]);
        assert_eq!(agent.earlier.len(), 2);
        drop(agent);
        assert_eq!(t.set_generations(5), [3]);
        // Replaced tunnels are closed after their grace, the new set's not.
        let kill2 = t.live.get(&5).unwrap().earlier[1].kill.clone();
        t.close_if_replaced(5, 2);
        tokio::time::timeout(Duration::from_secs(1), kill2.notified())
            .await
            .expect("the replaced sibling is told to close");
        // An older agent's tunnel (no slot) replaces a set too.
        let mut agent = t.live.get_mut(&5).unwrap();
        assert_eq!(agent.arrive(open(4).await), [3]);
        drop(agent);
        assert_eq!(t.set_generations(5), [4]);
        // However many arrive, at most MAX_EARLIER are kept.
        for g in 10..10 + 2 * MAX_EARLIER as u64 {
            t.live.get_mut(&5).unwrap().arrive(in_slot(g, g, 0).await);
        }
        assert_eq!(t.live.get(&5).unwrap().earlier.len(), MAX_EARLIER);
        // A slot index cannot grow a set beyond MAX_TUNNELS connections:
        // each index holds one.
        for g in 100..100 + 3 * MAX_TUNNELS as u64 {
            let index = (g % MAX_TUNNELS as u64) as u16;
            t.live
                .get_mut(&5)
                .unwrap()
                .arrive(in_slot(g, 0xc, index).await);
        }
        assert!(t.set_generations(5).len() <= MAX_TUNNELS as usize);
    }

    #[tokio::test]
    async fn ports_from_an_agent() {
        let body = br#"{"ports":[{"port":3000,"loopback_only":true,"reachable":true,"families":["ipv4"],"addresses":["127.0.0.1"]}],"truncated":false}"#;
        let t = tunnel_to(StatusCode::OK, body.to_vec()).await;
        let ports = t.listening_ports().await.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].port, 3000);
        assert!(ports[0].reachable && ports[0].loopback_only);
    }

    #[tokio::test]
    async fn an_older_agent_is_unsupported() {
        for status in [StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_FOUND] {
            let t = tunnel_to(status, Vec::new()).await;
            let err = t.listening_ports().await.unwrap_err();
            assert!(
                matches!(err, PortsError::Unsupported(s) if s == status),
                "{err}"
            );
            assert!(err.to_string().contains("too old"), "{err}");
        }
    }

    #[tokio::test]
    async fn agent_errors_and_bad_answers() {
        let t = tunnel_to(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"cannot read the listening ports: no /proc"}"#.to_vec(),
        )
        .await;
        let err = t.listening_ports().await.unwrap_err();
        assert!(
            matches!(&err, PortsError::Agent(m) if m.contains("no /proc")),
            "{err}"
        );

        let t = tunnel_to(StatusCode::BAD_GATEWAY, b"<html>".to_vec()).await;
        let err = t.listening_ports().await.unwrap_err();
        assert!(
            matches!(&err, PortsError::Agent(m) if m.contains("502")),
            "{err}"
        );

        let t = tunnel_to(StatusCode::OK, b"[1,2,3]".to_vec()).await;
        let err = t.listening_ports().await.unwrap_err();
        assert!(matches!(err, PortsError::BadReply(_)), "{err}");

        let t = tunnel_to(StatusCode::OK, vec![b' '; MAX_PORTS_REPLY + 1]).await;
        let err = t.listening_ports().await.unwrap_err();
        assert!(matches!(err, PortsError::TooLarge), "{err}");
    }
}
