//! The edge's in-memory picture of who and what exists: users, API tokens,
//! workspaces and agents, as a set of concurrent maps.
//!
//! The edge answers every request from here, never from the database. Control
//! fills it at start ([`Change`]s from the store's snapshot) and applies a
//! [`Change`] after each write it commits, so the two never disagree for long.
//! Removals cascade: removing a user removes their tokens, workspaces and agents.

use crate::auth::{ShareLevel, TokenHash, Visitor};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// A user as the edge needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub admin: bool,
    pub organization: Option<String>,
}

/// A workspace: a named group of agents owned by one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: i64,
    pub owner_id: i64,
    pub name: String,
}

/// An agent: one tunnel end inside a workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: i64,
    pub workspace_id: i64,
    pub name: String,
    /// Hash of the agent's token, which it presents when it dials in.
    pub token_hash: TokenHash,
}

/// How the edge speaks to an app's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Plain HTTP (most dev servers).
    #[default]
    Http,
    /// HTTPS, without verifying the app's certificate (it is loopback).
    Https,
    /// HTTP/2 with prior knowledge, without TLS (gRPC servers on loopback).
    H2c,
}

impl Protocol {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::H2c => "h2c",
        }
    }
    /// Parses the stored and wire name.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "h2c" => Some(Protocol::H2c),
            _ => None,
        }
    }
}

/// Who answers CORS for a shared port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Cors {
    /// The edge answers preflights and allows only the owner's other app
    /// hosts, with credentials (the default).
    #[default]
    Berth,
    /// Preflights go to the app (without credentials, as browsers send
    /// them), which answers CORS itself.
    Passthru,
}

impl Cors {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cors::Berth => "berth",
            Cors::Passthru => "passthru",
        }
    }
    /// Parses the stored and wire name.
    pub fn parse(s: &str) -> Option<Cors> {
        match s {
            "berth" => Some(Cors::Berth),
            "passthru" => Some(Cors::Passthru),
            _ => None,
        }
    }
}

/// How one port of one agent is shared (absent: `owner`, over HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub agent_id: i64,
    pub port: u16,
    /// The floor: who gets in besides the people named.
    pub level: ShareLevel,
    pub protocol: Protocol,
    pub cors: Cors,
    /// Users named, by id: they get in whatever the level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<i64>,
    /// Groups named, by id: their members get in whatever the level.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<i64>,
    /// When the audience (level and names) ends, unix seconds: from then on
    /// the port is `owner` again (its protocol and CORS stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// The edges record this port's requests for the inspector (absent
    /// from older senders: on).
    #[serde(default = "crate::catalog::on")]
    pub inspect: bool,
}

/// `true`, for fields that default to on.
pub(crate) fn on() -> bool {
    true
}

/// Who a share lets in: its level, and the users and groups it names.
pub type Audience<'a> = (ShareLevel, &'a [i64], &'a [i64]);

impl Share {
    /// True while the share's audience lasts at `now` (unix seconds).
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    /// Who the share lets in at `now`: its level and the users and groups it
    /// names; once it has ended, `owner` and nobody named.
    pub fn audience(&self, now: i64) -> Audience<'_> {
        if self.live(now) {
            (self.level, &self.users, &self.groups)
        } else {
            (ShareLevel::Owner, &[], &[])
        }
    }
}

/// A berth group: users a share can name together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: i64,
    pub name: String,
    /// Members' user ids (added by an admin or from the sign-in provider).
    pub members: Vec<i64>,
}

/// A name the owner gave to one port of one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub agent_id: i64,
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// A live share link: who redeemed it may reach one port until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The public id (not the token).
    pub id: String,
    pub agent_id: i64,
    pub port: u16,
    /// Unix seconds.
    pub expires_at: i64,
    /// The user who made it (their deletion revokes it).
    pub created_by: i64,
}

/// A signed-in browser session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random id, carried in signed cookies.
    pub id: String,
    pub user_id: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// One update to the catalog. Serializable, because control replicas on one
/// PostgreSQL database send each other the changes they apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    User(User),
    UserRemoved(i64),
    ApiToken {
        hash: TokenHash,
        user_id: i64,
    },
    ApiTokenRemoved(TokenHash),
    Workspace(Workspace),
    WorkspaceRemoved(i64),
    Agent(Agent),
    AgentRemoved(i64),
    Share(Share),
    ShareRemoved {
        agent_id: i64,
        port: u16,
    },
    App(App),
    AppRemoved {
        agent_id: i64,
        name: String,
    },
    Link(Link),
    LinkRemoved(String),
    Session(Session),
    SessionRemoved(String),
    /// A group, new or changed (renamed, members added or removed), whole.
    Group(Group),
    GroupRemoved(i64),
    /// The server at `holder` (its relay URL) holds a tunnel of the agent.
    TunnelAt {
        agent_id: i64,
        holder: String,
    },
    /// ...and no longer does.
    TunnelGone {
        agent_id: i64,
        holder: String,
    },
}

/// What an app host's names resolve to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// One agent of a workspace owned by `owner_id`.
    Agent { owner_id: i64, agent_id: i64 },
    /// The short form named a workspace that has several agents (or none).
    Ambiguous { owner_id: i64, agents: Vec<String> },
    /// Nothing by those names.
    Nothing,
}

/// The concurrent maps behind the edge's lookups.
#[derive(Default, Debug)]
pub struct Catalog {
    users: DashMap<i64, User>,
    user_ids: DashMap<String, i64>,
    api_tokens: DashMap<TokenHash, i64>,
    workspaces: DashMap<i64, Workspace>,
    /// (owner id, workspace name) -> workspace id
    workspace_ids: DashMap<(i64, String), i64>,
    agents: DashMap<i64, Agent>,
    /// (workspace id, agent name) -> agent id
    agent_ids: DashMap<(i64, String), i64>,
    agent_tokens: DashMap<TokenHash, i64>,
    /// (agent id, port) -> share; absent means `owner`.
    shares: DashMap<(i64, u16), Share>,
    /// (agent id, app name) -> app
    apps: DashMap<(i64, String), App>,
    /// link id -> live share link
    links: DashMap<String, Link>,
    /// session id -> browser session
    sessions: DashMap<String, Session>,
    /// agent id -> relay URLs of the servers holding one of its tunnels
    tunnels_at: DashMap<i64, Vec<String>>,
    /// group id -> group
    groups: DashMap<i64, Group>,
    /// user id -> ids of the groups they are in
    user_groups: DashMap<i64, Vec<i64>>,
    /// Every applied change, for watchers (the control plane's stream to
    /// regional edges).
    feed: Feed,
}

/// The broadcast end of [`Catalog::subscribe`].
#[derive(Debug)]
struct Feed(tokio::sync::broadcast::Sender<Change>);

impl Default for Feed {
    fn default() -> Self {
        Feed(tokio::sync::broadcast::channel(FEED_CAPACITY).0)
    }
}

/// Changes a slow watcher may fall behind by before it must start over.
pub const FEED_CAPACITY: usize = 16 * 1024;

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every change applied from now on (cascaded removals included), each
    /// sent once it is applied, so the catalog already shows it. A receiver
    /// that falls [`FEED_CAPACITY`] behind gets `Lagged` and must start over
    /// from a snapshot.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.feed.0.subscribe()
    }

    /// Applies one change, then tells subscribers (see [`Catalog::subscribe`];
    /// a cascade's inner removals go out before the change that caused them).
    pub fn apply(&self, change: Change) {
        let announce = (self.feed.0.receiver_count() > 0).then(|| change.clone());
        match change {
            Change::User(u) => {
                if let Some(old) = self.users.get(&u.id).map(|o| o.username.clone()) {
                    self.user_ids.remove(&old);
                }
                self.user_ids.insert(u.username.clone(), u.id);
                self.users.insert(u.id, u);
            }
            Change::UserRemoved(id) => {
                if let Some((_, u)) = self.users.remove(&id) {
                    self.user_ids.remove(&u.username);
                }
                self.api_tokens.retain(|_, uid| *uid != id);
                self.links.retain(|_, l| l.created_by != id);
                self.user_groups.remove(&id);
                for mut g in self.groups.iter_mut() {
                    g.members.retain(|m| *m != id);
                }
                for mut s in self.shares.iter_mut() {
                    s.users.retain(|u| *u != id);
                }
                self.sessions.retain(|_, s| s.user_id != id);
                let owned: Vec<i64> = self
                    .workspaces
                    .iter()
                    .filter(|w| w.owner_id == id)
                    .map(|w| w.id)
                    .collect();
                for ws in owned {
                    self.apply(Change::WorkspaceRemoved(ws));
                }
            }
            Change::ApiToken { hash, user_id } => {
                self.api_tokens.insert(hash, user_id);
            }
            Change::ApiTokenRemoved(hash) => {
                self.api_tokens.remove(&hash);
            }
            Change::Workspace(w) => {
                self.workspace_ids
                    .insert((w.owner_id, w.name.clone()), w.id);
                self.workspaces.insert(w.id, w);
            }
            Change::WorkspaceRemoved(id) => {
                if let Some((_, w)) = self.workspaces.remove(&id) {
                    self.workspace_ids.remove(&(w.owner_id, w.name));
                }
                let agents: Vec<i64> = self
                    .agents
                    .iter()
                    .filter(|a| a.workspace_id == id)
                    .map(|a| a.id)
                    .collect();
                for a in agents {
                    self.apply(Change::AgentRemoved(a));
                }
            }
            Change::Agent(a) => {
                if let Some(old) = self.agents.get(&a.id).map(|o| o.token_hash) {
                    self.agent_tokens.remove(&old);
                }
                self.agent_ids
                    .insert((a.workspace_id, a.name.clone()), a.id);
                self.agent_tokens.insert(a.token_hash, a.id);
                self.agents.insert(a.id, a);
            }
            Change::AgentRemoved(id) => {
                if let Some((_, a)) = self.agents.remove(&id) {
                    self.agent_ids.remove(&(a.workspace_id, a.name));
                    self.agent_tokens.remove(&a.token_hash);
                }
                self.shares.retain(|(agent, _), _| *agent != id);
                self.apps.retain(|(agent, _), _| *agent != id);
                self.links.retain(|_, l| l.agent_id != id);
                self.tunnels_at.remove(&id);
            }
            Change::Share(share) => {
                self.shares.insert((share.agent_id, share.port), share);
            }
            Change::ShareRemoved { agent_id, port } => {
                self.shares.remove(&(agent_id, port));
            }
            Change::App(app) => {
                self.apps.insert((app.agent_id, app.name.clone()), app);
            }
            Change::AppRemoved { agent_id, name } => {
                self.apps.remove(&(agent_id, name));
            }
            Change::Link(link) => {
                self.links.insert(link.id.clone(), link);
            }
            Change::LinkRemoved(id) => {
                self.links.remove(&id);
            }
            Change::Session(session) => {
                self.sessions.insert(session.id.clone(), session);
            }
            Change::SessionRemoved(id) => {
                self.sessions.remove(&id);
            }
            Change::Group(group) => {
                self.unindex_group(group.id);
                for m in &group.members {
                    let mut of = self.user_groups.entry(*m).or_default();
                    if !of.contains(&group.id) {
                        of.push(group.id);
                    }
                }
                self.groups.insert(group.id, group);
            }
            Change::GroupRemoved(id) => {
                self.unindex_group(id);
                self.groups.remove(&id);
                for mut s in self.shares.iter_mut() {
                    s.groups.retain(|g| *g != id);
                }
            }
            Change::TunnelAt { agent_id, holder } => {
                if self.agents.contains_key(&agent_id) {
                    let mut at = self.tunnels_at.entry(agent_id).or_default();
                    if !at.contains(&holder) {
                        at.push(holder);
                    }
                }
            }
            Change::TunnelGone { agent_id, holder } => {
                self.tunnels_at.remove_if_mut(&agent_id, |_, at| {
                    at.retain(|h| *h != holder);
                    at.is_empty()
                });
            }
        }
        if let Some(change) = announce {
            let _ = self.feed.0.send(change);
        }
    }

    /// Forgets which users are in group `id` (before it changes or goes).
    fn unindex_group(&self, id: i64) {
        let Some(old) = self.groups.get(&id).map(|g| g.members.clone()) else {
            return;
        };
        for m in old {
            self.user_groups.remove_if_mut(&m, |_, of| {
                of.retain(|g| *g != id);
                of.is_empty()
            });
        }
    }

    /// Makes the catalog hold exactly what `snapshot` (from
    /// [`crate::store::Store::snapshot`]) holds: applies every change, then
    /// removes whatever the snapshot no longer has. Lookups keep working
    /// throughout, unlike clearing and refilling. Used when a replica may have
    /// missed changes (its listener reconnected).
    pub fn resync(&self, snapshot: Vec<Change>) {
        use std::collections::HashSet;
        let mut users = HashSet::new();
        let mut tokens = HashSet::new();
        let mut workspaces = HashSet::new();
        let mut agents = HashSet::new();
        let mut shares = HashSet::new();
        let mut apps = HashSet::new();
        let mut links = HashSet::new();
        let mut sessions = HashSet::new();
        let mut tunnels = HashSet::new();
        let mut groups = HashSet::new();
        for change in &snapshot {
            match change {
                Change::User(u) => drop(users.insert(u.id)),
                Change::ApiToken { hash, .. } => drop(tokens.insert(*hash)),
                Change::Workspace(w) => drop(workspaces.insert(w.id)),
                Change::Agent(a) => drop(agents.insert(a.id)),
                Change::Share(s) => drop(shares.insert((s.agent_id, s.port))),
                Change::App(a) => drop(apps.insert((a.agent_id, a.name.clone()))),
                Change::Link(l) => drop(links.insert(l.id.clone())),
                Change::Session(s) => drop(sessions.insert(s.id.clone())),
                Change::Group(g) => drop(groups.insert(g.id)),
                Change::TunnelAt { agent_id, holder } => {
                    tunnels.insert((*agent_id, holder.clone()));
                }
                _ => {}
            }
        }
        for change in snapshot {
            self.apply(change);
        }
        // Collected first (no map guard is held while applying); removals go
        // through apply, so the secondary indexes and cascades follow.
        let mut gone: Vec<Change> = Vec::new();
        gone.extend(
            self.users
                .iter()
                .map(|e| *e.key())
                .filter(|k| !users.contains(k))
                .map(Change::UserRemoved),
        );
        gone.extend(
            self.api_tokens
                .iter()
                .map(|e| *e.key())
                .filter(|k| !tokens.contains(k))
                .map(Change::ApiTokenRemoved),
        );
        gone.extend(
            self.workspaces
                .iter()
                .map(|e| *e.key())
                .filter(|k| !workspaces.contains(k))
                .map(Change::WorkspaceRemoved),
        );
        gone.extend(
            self.agents
                .iter()
                .map(|e| *e.key())
                .filter(|k| !agents.contains(k))
                .map(Change::AgentRemoved),
        );
        gone.extend(
            self.shares
                .iter()
                .map(|e| *e.key())
                .filter(|k| !shares.contains(k))
                .map(|(agent_id, port)| Change::ShareRemoved { agent_id, port }),
        );
        gone.extend(
            self.apps
                .iter()
                .map(|e| e.key().clone())
                .filter(|k| !apps.contains(k))
                .map(|(agent_id, name)| Change::AppRemoved { agent_id, name }),
        );
        gone.extend(
            self.links
                .iter()
                .map(|e| e.key().clone())
                .filter(|k| !links.contains(k))
                .map(Change::LinkRemoved),
        );
        gone.extend(
            self.sessions
                .iter()
                .map(|e| e.key().clone())
                .filter(|k| !sessions.contains(k))
                .map(Change::SessionRemoved),
        );
        gone.extend(
            self.groups
                .iter()
                .map(|e| *e.key())
                .filter(|k| !groups.contains(k))
                .map(Change::GroupRemoved),
        );
        for entry in self.tunnels_at.iter() {
            for holder in entry.value() {
                if !tunnels.contains(&(*entry.key(), holder.clone())) {
                    gone.push(Change::TunnelGone {
                        agent_id: *entry.key(),
                        holder: holder.clone(),
                    });
                }
            }
        }
        for change in gone {
            self.apply(change);
        }
    }

    /// The visitor an API token belongs to.
    pub fn visitor_for_token(&self, hash: &TokenHash) -> Option<Visitor> {
        let user_id = *self.api_tokens.get(hash)?;
        self.visitor(user_id)
    }

    /// How a port is shared, if it is.
    pub fn share(&self, agent_id: i64, port: u16) -> Option<Share> {
        self.shares.get(&(agent_id, port)).map(|s| s.clone())
    }

    /// A user as the access decision sees them.
    pub fn visitor(&self, user_id: i64) -> Option<Visitor> {
        let u = self.users.get(&user_id)?;
        Some(Visitor {
            user_id: u.id,
            username: u.username.clone(),
            email: u.email.clone(),
            admin: u.admin,
            organization: u.organization.clone(),
            group_ids: self.group_ids_of(u.id),
        })
    }

    /// The ids of the groups a user is in.
    pub fn group_ids_of(&self, user_id: i64) -> Vec<i64> {
        self.user_groups
            .get(&user_id)
            .map(|g| g.clone())
            .unwrap_or_default()
    }

    /// A group by id.
    pub fn group(&self, id: i64) -> Option<Group> {
        self.groups.get(&id).map(|g| g.clone())
    }

    /// The expiry of a share link the catalog holds, expired or not (a link
    /// revoked, or forgotten after it expired, is not held).
    pub fn link_expiry(&self, id: &str) -> Option<i64> {
        self.links.get(id).map(|l| l.expires_at)
    }

    /// A share link that exists and has not expired at `now` (unix seconds).
    pub fn live_link(&self, id: &str, now: i64) -> Option<Link> {
        self.links
            .get(id)
            .filter(|l| l.expires_at > now)
            .map(|l| l.clone())
    }

    /// The user who owns the workspace an agent belongs to.
    pub fn workspace_owner_of_agent(&self, agent_id: i64) -> Option<i64> {
        let ws = self.agents.get(&agent_id)?.workspace_id;
        self.workspaces.get(&ws).map(|w| w.owner_id)
    }

    /// A named app of an agent.
    pub fn app(&self, agent_id: i64, name: &str) -> Option<App> {
        self.apps
            .get(&(agent_id, name.to_owned()))
            .map(|a| a.clone())
    }

    /// The visitor a browser session belongs to, if it is live at `now`.
    pub fn visitor_for_session(&self, id: &str, now: i64) -> Option<(Visitor, Session)> {
        let session = self
            .sessions
            .get(id)
            .filter(|s| s.expires_at > now)?
            .clone();
        let visitor = self.visitor(session.user_id)?;
        Some((visitor, session))
    }

    /// The agent a tunnel token belongs to.
    pub fn agent_for_token(&self, hash: &TokenHash) -> Option<Agent> {
        let id = *self.agent_tokens.get(hash)?;
        self.agents.get(&id).map(|a| a.clone())
    }

    /// The relay URLs of the servers holding a tunnel of the agent, oldest
    /// first.
    pub fn tunnels_at(&self, agent_id: i64) -> Vec<String> {
        self.tunnels_at
            .get(&agent_id)
            .map(|at| at.clone())
            .unwrap_or_default()
    }

    /// An agent by id.
    pub fn agent(&self, id: i64) -> Option<Agent> {
        self.agents.get(&id).map(|a| a.clone())
    }

    /// A workspace by id.
    pub fn workspace(&self, id: i64) -> Option<Workspace> {
        self.workspaces.get(&id).map(|w| w.clone())
    }

    /// A user by id.
    pub fn user(&self, id: i64) -> Option<User> {
        self.users.get(&id).map(|u| u.clone())
    }

    /// A user's organization (without copying the rest of the user).
    pub fn organization_of(&self, id: i64) -> Option<String> {
        self.users.get(&id)?.organization.clone()
    }

    /// The id of the user with this name.
    pub fn user_id_by_name(&self, username: &str) -> Option<i64> {
        self.user_ids.get(username).map(|r| *r)
    }

    /// True when a user has this name.
    pub fn has_user_named(&self, username: &str) -> bool {
        self.user_ids.contains_key(username)
    }

    /// Users whose e-mail address is `email`, ignoring ASCII case (a scan:
    /// only sign-in through a provider asks, once per sign-in).
    pub fn users_with_email(&self, email: &str) -> Vec<User> {
        self.users
            .iter()
            .filter(|u| u.email.eq_ignore_ascii_case(email))
            .map(|u| u.clone())
            .collect()
    }

    /// Resolves `agent--workspace--user` (or the short form, `agent = None`).
    pub fn resolve(&self, user: &str, workspace: &str, agent: Option<&str>) -> Resolved {
        let Some(owner_id) = self.user_ids.get(user).map(|r| *r) else {
            return Resolved::Nothing;
        };
        let Some(ws_id) = self
            .workspace_ids
            .get(&(owner_id, workspace.to_owned()))
            .map(|r| *r)
        else {
            return Resolved::Nothing;
        };
        match agent {
            Some(name) => match self.agent_ids.get(&(ws_id, name.to_owned())) {
                Some(id) => Resolved::Agent {
                    owner_id,
                    agent_id: *id,
                },
                None => Resolved::Nothing,
            },
            None => {
                let mut agents: Vec<(String, i64)> = self
                    .agents
                    .iter()
                    .filter(|a| a.workspace_id == ws_id)
                    .map(|a| (a.name.clone(), a.id))
                    .collect();
                if agents.len() == 1 {
                    let (_, agent_id) = agents.pop().expect("one agent");
                    Resolved::Agent { owner_id, agent_id }
                } else {
                    agents.sort();
                    Resolved::Ambiguous {
                        owner_id,
                        agents: agents.into_iter().map(|(n, _)| n).collect(),
                    }
                }
            }
        }
    }

    /// Number of agents known (for metrics and tests).
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Catalog {
        let c = Catalog::new();
        c.apply(Change::User(User {
            id: 1,
            username: "alice".into(),
            email: "a@x".into(),
            admin: false,
            organization: None,
        }));
        c.apply(Change::ApiToken {
            hash: TokenHash::of("t1"),
            user_id: 1,
        });
        c.apply(Change::Workspace(Workspace {
            id: 10,
            owner_id: 1,
            name: "api".into(),
        }));
        c.apply(Change::Agent(Agent {
            id: 100,
            workspace_id: 10,
            name: "main".into(),
            token_hash: TokenHash::of("a1"),
        }));
        c
    }

    #[test]
    fn resolves_full_and_short_forms() {
        let c = seed();
        let want = Resolved::Agent {
            owner_id: 1,
            agent_id: 100,
        };
        assert_eq!(c.resolve("alice", "api", Some("main")), want);
        assert_eq!(c.resolve("alice", "api", None), want);
        assert_eq!(c.resolve("alice", "api", Some("other")), Resolved::Nothing);
        assert_eq!(c.resolve("bob", "api", Some("main")), Resolved::Nothing);
        c.apply(Change::Agent(Agent {
            id: 101,
            workspace_id: 10,
            name: "gpu".into(),
            token_hash: TokenHash::of("a2"),
        }));
        assert_eq!(
            c.resolve("alice", "api", None),
            Resolved::Ambiguous {
                owner_id: 1,
                agents: vec!["gpu".into(), "main".into()]
            }
        );
    }

    #[test]
    fn resync_drops_what_the_snapshot_lacks_and_changes_round_trip_as_json() {
        let c = seed();
        let link = Link {
            id: "l1".into(),
            agent_id: 100,
            port: 3000,
            expires_at: i64::MAX,
            created_by: 1,
        };
        c.apply(Change::Link(link.clone()));
        c.apply(Change::ApiToken {
            hash: TokenHash::of("t2"),
            user_id: 1,
        });
        // The snapshot: the same user, workspace and agent, no link, only t1.
        let fresh = seed();
        let snapshot = vec![
            Change::User(fresh.users.get(&1).unwrap().clone()),
            Change::ApiToken {
                hash: TokenHash::of("t1"),
                user_id: 1,
            },
            Change::Workspace(fresh.workspaces.get(&10).unwrap().clone()),
            Change::Agent(fresh.agents.get(&100).unwrap().clone()),
        ];
        c.resync(snapshot);
        assert!(c.live_link("l1", 0).is_none(), "revoked while away");
        assert!(c.visitor_for_token(&TokenHash::of("t2")).is_none());
        assert!(c.visitor_for_token(&TokenHash::of("t1")).is_some());
        assert!(c.agent_for_token(&TokenHash::of("a1")).is_some());
        c.resync(Vec::new());
        assert_eq!(c.agent_count(), 0);
        assert!(c.visitor_for_token(&TokenHash::of("t1")).is_none());

        let change = Change::Link(link);
        let json = serde_json::to_string(&change).unwrap();
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
        let token = Change::ApiToken {
            hash: TokenHash::of("t1"),
            user_id: 1,
        };
        let json = serde_json::to_string(&token).unwrap();
        assert!(json.contains(&TokenHash::of("t1").to_hex()), "{json}");
        assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), token);
    }

    #[test]
    fn removing_a_user_cascades() {
        let c = seed();
        assert!(c.visitor_for_token(&TokenHash::of("t1")).is_some());
        assert!(c.agent_for_token(&TokenHash::of("a1")).is_some());
        c.apply(Change::UserRemoved(1));
        assert!(c.visitor_for_token(&TokenHash::of("t1")).is_none());
        assert!(c.agent_for_token(&TokenHash::of("a1")).is_none());
        assert_eq!(c.resolve("alice", "api", Some("main")), Resolved::Nothing);
        assert_eq!(c.agent_count(), 0);
    }

    #[test]
    fn shares_and_apps_follow_their_agent() {
        let c = seed();
        c.apply(Change::Share(Share {
            agent_id: 100,
            port: 3000,
            level: ShareLevel::Public,
            protocol: Protocol::Http,
            cors: Cors::Passthru,
            inspect: true,
            users: vec![],
            groups: vec![],
            expires_at: None,
        }));
        c.apply(Change::App(App {
            agent_id: 100,
            name: "docs".into(),
            port: 3000,
            protocol: Protocol::Https,
        }));
        assert_eq!(c.share(100, 3000).unwrap().level, ShareLevel::Public);
        assert_eq!(c.app(100, "docs").unwrap().port, 3000);
        c.apply(Change::ShareRemoved {
            agent_id: 100,
            port: 3000,
        });
        assert!(c.share(100, 3000).is_none());
        c.apply(Change::WorkspaceRemoved(10));
        assert!(c.app(100, "docs").is_none());
    }

    /// What the edge decides from: a visitor's groups follow group changes,
    /// and deleting a user or group takes them out of shares and groups.
    #[test]
    fn groups_and_named_shares_follow_their_users_and_groups() {
        let c = seed();
        let bob = User {
            id: 2,
            username: "bob".into(),
            email: "b@x".into(),
            admin: false,
            organization: None,
        };
        c.apply(Change::User(bob.clone()));
        c.apply(Change::ApiToken {
            hash: TokenHash::of("t2"),
            user_id: 2,
        });
        let eng = |members: Vec<i64>, name: &str| Group {
            id: 7,
            name: name.into(),
            members,
        };
        c.apply(Change::Group(eng(vec![1, 2], "eng")));
        c.apply(Change::Share(Share {
            agent_id: 100,
            port: 3000,
            level: ShareLevel::Owner,
            protocol: Protocol::Http,
            cors: Cors::Berth,
            users: vec![2],
            groups: vec![7],
            expires_at: Some(1_000),
            inspect: true,
        }));
        let groups_of_bob = || c.visitor_for_token(&TokenHash::of("t2")).unwrap().group_ids;
        assert_eq!(groups_of_bob(), vec![7]);
        // Renamed: same id, same members.
        c.apply(Change::Group(eng(vec![1, 2], "platform")));
        assert_eq!(groups_of_bob(), vec![7]);
        // Bob taken out of the group.
        c.apply(Change::Group(eng(vec![1], "platform")));
        assert!(groups_of_bob().is_empty());
        assert_eq!(c.group_ids_of(1), vec![7]);
        // The share's audience lasts until its end, then it is `owner`, nobody named.
        let share = c.share(100, 3000).unwrap();
        assert_eq!(share.audience(999), (ShareLevel::Owner, &[2][..], &[7][..]));
        assert_eq!(share.audience(1_000), (ShareLevel::Owner, &[][..], &[][..]));
        // Deleting bob takes him out of the share; deleting the group too.
        c.apply(Change::UserRemoved(2));
        assert!(c.share(100, 3000).unwrap().users.is_empty());
        c.apply(Change::GroupRemoved(7));
        assert!(c.share(100, 3000).unwrap().groups.is_empty());
        assert!(c.group_ids_of(1).is_empty());
        // A resync without the group forgets it; the change round-trips as JSON.
        c.apply(Change::Group(eng(vec![1], "eng")));
        let json = serde_json::to_string(&Change::Group(eng(vec![1], "eng"))).unwrap();
        assert_eq!(
            serde_json::from_str::<Change>(&json).unwrap(),
            Change::Group(eng(vec![1], "eng"))
        );
        c.resync(vec![Change::User(c.user(1).unwrap())]);
        assert!(c.group(7).is_none() && c.group_ids_of(1).is_empty());
    }
}
