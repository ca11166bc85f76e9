//! Sharing a port (`.../ports/{port}/share`) and naming one (`.../apps/{app}`).
//! Owners and site admins manage both; everyone else gets the same 404 as for
//! a workspace that does not exist.

use super::access::agent_of;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::links::{now_unix, rfc3339};
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use crate::auth::ShareLevel;
use crate::catalog::{App, Change, Cors, Protocol, Share};
use crate::config::{SharingPolicy, MAX_SHARE_TTL_SECS};
use crate::host::is_port_like;
use crate::store::{AgentRow, WorkspaceRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `PUT .../share` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutShare {
    /// `"owner"`, `"organization"`, `"authenticated"` or `"public"`.
    #[schema(value_type = String)]
    level: ShareLevel,
    /// `"http"` (default), `"https"` or `"h2c"` (HTTP/2 without TLS, for gRPC).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    protocol: Protocol,
    /// `"berth"` (default) or `"passthru"`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    cors: Cors,
    /// Record the port's requests for the inspector (default true).
    #[serde(default = "crate::catalog::on")]
    inspect: bool,
    /// Users who get through whatever the level, by name.
    #[serde(default)]
    users: Vec<String>,
    /// Groups whose members get through whatever the level, by name.
    #[serde(default)]
    groups: Vec<String>,
    /// The share ends this many seconds from now: the port is `owner`
    /// again, nobody named (`sharing.max_share_ttl_secs` caps `public` and
    /// `authenticated` shares, and is their default when set).
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// Most users, and most groups, one share may name.
pub(crate) const MAX_NAMED: usize = 100;

/// `PUT .../apps/{app}` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutApp {
    port: u16,
    /// `"http"` (default), `"https"` or `"h2c"` (HTTP/2 without TLS, for gRPC).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    protocol: Protocol,
}

/// A share as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct ShareJson {
    port: u16,
    level: ShareLevel,
    protocol: Protocol,
    cors: Cors,
    inspect: bool,
    /// Users named, by name.
    users: Vec<String>,
    /// Groups named, by name.
    groups: Vec<String>,
    /// When the share ends (RFC 3339), or null.
    expires_at: Option<String>,
    /// Seconds until it ends, or null.
    expires_in_secs: Option<i64>,
    url: String,
}

/// An app as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct AppJson {
    name: String,
    port: u16,
    protocol: Protocol,
    url: String,
}

/// One port in `GET .../ports`.
#[derive(Serialize, Debug)]
pub(crate) struct PortJson {
    port: u16,
    /// The agent reports something listening on it.
    listening: bool,
    /// The agent can reach it (bound to loopback or to all addresses).
    reachable: bool,
    level: ShareLevel,
    protocol: Protocol,
    cors: Cors,
    /// The edges record its requests for the inspector.
    inspect: bool,
    /// Users the share names, by name.
    users: Vec<String>,
    /// Groups the share names, by name.
    groups: Vec<String>,
    /// When the share ends (RFC 3339), or null.
    expires_at: Option<String>,
    /// Seconds until it ends, or null.
    expires_in_secs: Option<i64>,
    url: String,
    /// The same app through each healthy region's edge, by region name (the
    /// dashboard offers the one nearest to the browser).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    region_urls: BTreeMap<String, String>,
    /// Names given to this port.
    apps: Vec<AppJson>,
}

/// `GET .../ports` answer.
#[derive(Serialize, Debug)]
pub(crate) struct PortsJson {
    agent: String,
    connected: bool,
    /// The levels these ports may be shared at: `sharing.max_level`, and
    /// `organization` only when the workspace owner has one.
    levels: Vec<ShareLevel>,
    /// Why `ports` lacks what is listening, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    ports: Vec<PortJson>,
}

/// The agent's listening ports, and every shared or named port, each with
/// its share level and URLs.
#[utoipa::path(get, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports", tag = "sharing",
    summary = "What the agent reports listening, and every shared or named port, with levels and URLs",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name")),
    responses((status = 200, description = "agent, connected, warning, ports"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn list_ports(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, workspace, agent)): ApiPath<(String, String, String)>,
) -> Result<Json<PortsJson>, ApiError> {
    let (ws, agent) = agent_of(&st, &caller, &user, &workspace, &agent).await?;
    let regions = super::regions::healthy_app_urls(st.store.list_regions().await?);
    let connected = st.presence.is_connected(agent.id);
    let (listening, warning) = if connected {
        match st.presence.listening_ports(agent.id).await {
            Ok(p) => (p, None),
            Err(e) => (
                vec![],
                Some(format!("could not ask the agent for its ports: {e}")),
            ),
        }
    } else {
        (
            vec![],
            Some("the agent is not connected; only shared and named ports are listed".into()),
        )
    };
    let shares: BTreeMap<u16, Share> = st
        .store
        .list_shares(agent.id)
        .await?
        .into_iter()
        .map(|s| (s.port, s))
        .collect();
    let apps = st.store.list_apps(agent.id).await?;
    let mut ports: BTreeMap<u16, PortJson> = BTreeMap::new();
    let now = now_unix();
    let blank = |port: u16| {
        let share = shares.get(&port);
        let live = share.filter(|s| s.live(now));
        let protocol = share.map(|s| s.protocol).unwrap_or_default();
        PortJson {
            port,
            listening: false,
            reachable: false,
            level: live.map(|s| s.level).unwrap_or_default(),
            protocol,
            cors: share.map(|s| s.cors).unwrap_or_default(),
            inspect: share.is_none_or(|s| s.inspect),
            users: live.map(|s| user_names(&st, &s.users)).unwrap_or_default(),
            groups: live
                .map(|s| group_names(&st, &s.groups))
                .unwrap_or_default(),
            expires_at: live.and_then(|s| s.expires_at).map(rfc3339),
            expires_in_secs: live.and_then(|s| s.expires_at).map(|t| t - now),
            url: st.app_urls.url(&port_label(port, &agent, &ws)),
            region_urls: regions
                .iter()
                .map(|(name, urls)| (name.clone(), urls.url(&port_label(port, &agent, &ws))))
                .collect(),
            apps: vec![],
        }
    };
    for l in &listening {
        let p = ports.entry(l.port).or_insert_with(|| blank(l.port));
        p.listening = true;
        p.reachable = l.reachable;
    }
    for port in shares.keys() {
        ports.entry(*port).or_insert_with(|| blank(*port));
    }
    for app in apps {
        let label = format!("{}--{}--{}--{}", app.name, agent.name, ws.name, ws.owner);
        ports
            .entry(app.port)
            .or_insert_with(|| blank(app.port))
            .apps
            .push(AppJson {
                url: st.app_urls.url(&label),
                name: app.name,
                port: app.port,
                protocol: app.protocol,
            });
    }
    let owner_has_org = st
        .catalog
        .user(ws.owner_id)
        .is_some_and(|u| u.organization.is_some());
    Ok(Json(PortsJson {
        levels: st.sharing.levels_for(owner_has_org),
        agent: agent.name,
        connected,
        warning,
        ports: ports.into_values().collect(),
    }))
}

fn check_port(port: u16) -> Result<(), ApiError> {
    if port == 0 {
        return Err(ApiError::invalid_field("port", "must be 1-65535"));
    }
    Ok(())
}

/// The app label of a port; a share's protocol applies to it, so the plain
/// `{port}` form serves HTTPS apps too once shared with `protocol: https`.
fn port_label(port: u16, agent: &AgentRow, ws: &WorkspaceRow) -> String {
    format!("{port}--{}--{}--{}", agent.name, ws.name, ws.owner)
}

/// The names of users, by id (ones gone meanwhile left out).
fn user_names(st: &ControlState, ids: &[i64]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .filter_map(|id| st.catalog.user(*id))
        .map(|u| u.username)
        .collect();
    names.sort();
    names
}

/// The names of groups, by id (ones gone meanwhile left out).
fn group_names(st: &ControlState, ids: &[i64]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .filter_map(|id| st.catalog.group(*id))
        .map(|g| g.name)
        .collect();
    names.sort();
    names
}

/// The ids of the users and groups a share names, each checked: a name that
/// does not exist is a 422 naming it. Under `sharing.max_level` below
/// `authenticated`, a user outside the owner's organization is refused
/// (403, naming the policy): the admin keeps such deployments inside.
async fn named(
    st: &ControlState,
    req: &PutShare,
    owner_org: Option<&str>,
) -> Result<(Vec<i64>, Vec<i64>), ApiError> {
    for (field, list) in [("users", &req.users), ("groups", &req.groups)] {
        if list.len() > MAX_NAMED {
            return Err(ApiError::invalid_field(
                field,
                format!(
                    "names {} entries, more than {MAX_NAMED}: use a group",
                    list.len()
                ),
            ));
        }
    }
    let mut users = Vec::new();
    for name in &req.users {
        let id = super::groups::user_id_named(st, "users", name)?;
        let org = st.catalog.user(id).and_then(|u| u.organization);
        let same_org = owner_org.is_some() && org.as_deref() == owner_org;
        if !same_org && st.sharing.max_level < ShareLevel::Authenticated {
            return Err(ApiError::forbidden(format!(
                "{name} is not in the workspace owner's organization, and this deployment \
                 shares only up to \"{}\" (sharing.max_level)",
                st.sharing.max_level.as_str()
            )));
        }
        if !users.contains(&id) {
            users.push(id);
        }
    }
    let mut groups = Vec::new();
    for name in &req.groups {
        let id = match st.store.group_by_name(name).await {
            Ok(g) => g.id,
            Err(crate::store::StoreError::NotFound(_)) => {
                return Err(ApiError::invalid_field(
                    "groups",
                    format!("names {name:?}, and there is no such group (admins create groups with `berth groups create`)"),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    Ok((users, groups))
}

/// How long a share lasts: `ttl_seconds` as asked, checked against
/// `sharing.max_share_ttl_secs` for `public` and `authenticated` shares
/// (which, when set, is also their default); `None`: it does not end.
fn share_ttl(
    policy: &SharingPolicy,
    level: ShareLevel,
    asked: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    if let Some(t) = asked {
        if !(1..=MAX_SHARE_TTL_SECS).contains(&t) {
            return Err(ApiError::invalid_field(
                "ttl_seconds",
                format!("must be between 1 and {MAX_SHARE_TTL_SECS} (ten years), or left out for a share that does not end"),
            ));
        }
    }
    let capped = level >= ShareLevel::Authenticated;
    match (policy.max_share_ttl_secs, asked) {
        (Some(max), Some(t)) if capped && t > max => Err(ApiError::invalid_field(
            "ttl_seconds",
            format!(
                "is {t}, and this deployment lets \"{}\" shares last at most {max} seconds \
                 (sharing.max_share_ttl_secs): ask for less, or share with your organization, \
                 named users or groups",
                level.as_str()
            ),
        )),
        (Some(max), None) if capped => Ok(Some(max)),
        (_, asked) => Ok(asked),
    }
}

/// Ends shares whose time is up, each second: the store makes them `owner`
/// with nobody named (one replica wins each), the edges hear it, and the
/// audit log records `port.share_ended`. The edges do not wait for this:
/// they stop honouring a share at its `expires_at` by their own clocks.
pub(crate) async fn end_expired(st: ControlState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ended = match st.store.end_expired_shares(now_unix()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot end expired shares; trying again");
                continue;
            }
        };
        for share in ended {
            let what = match where_is(&st, share.agent_id) {
                Some((owner, ws, agent)) => format!("{owner}/{ws}/{agent}:{}", share.port),
                None => format!("agent {} port {}", share.agent_id, share.port),
            };
            st.apply(Change::Share(share)).await;
            st.audit_from("berth", "port.share_ended", &what, "").await;
        }
    }
}

/// Owner, workspace and agent names of an agent, from the catalog.
fn where_is(st: &ControlState, agent_id: i64) -> Option<(String, String, String)> {
    let agent = st.catalog.agent(agent_id)?;
    let ws = st.catalog.workspace(agent.workspace_id)?;
    let owner = st.catalog.user(ws.owner_id)?;
    Some((owner.username, ws.name, agent.name))
}

/// Sets who may reach a port.
#[utoipa::path(put, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/share", tag = "sharing",
    summary = "Set who may open a port: owner, organization, authenticated or public",
    request_body = PutShare,
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("port" = u16, Path, description = "The port, 1-65535")),
    responses((status = 200, description = "The share with its URL"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Above sharing.max_level", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 409, description = "Level organization while the owner has no organization", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn put_share(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, workspace, agent, port)): ApiPath<(String, String, String, u16)>,
    ApiJson(req): ApiJson<PutShare>,
) -> Result<Json<ShareJson>, ApiError> {
    check_port(port)?;
    let (ws, agent) = agent_of(&st, &caller, &user, &workspace, &agent).await?;
    if req.level > st.sharing.max_level {
        return Err(ApiError::forbidden(format!(
            "this deployment allows sharing up to \"{}\"; \"{}\" is above it (sharing.max_level)",
            st.sharing.max_level.as_str(),
            req.level.as_str()
        )));
    }
    let owner_org = st.catalog.user(ws.owner_id).and_then(|u| u.organization);
    let (users, groups) = named(&st, &req, owner_org.as_deref()).await?;
    let ttl = share_ttl(&st.sharing, req.level, req.ttl_seconds)?;
    let now = now_unix();
    if req.level == ShareLevel::Organization {
        let owner = st.store.user_by_name(&ws.owner).await?;
        if owner.organization.is_none() {
            return Err(ApiError::conflict(format!(
                "{} has no organization, so level \"organization\" would let nobody but the \
                 owner in; an admin sets one with PATCH /api/v1/users/{} {{\"organization\": \
                 \"...\"}}, or choose \"authenticated\"",
                ws.owner, ws.owner
            )));
        }
    }
    let share = Share {
        agent_id: agent.id,
        port,
        level: req.level,
        protocol: req.protocol,
        cors: req.cors,
        inspect: req.inspect,
        users,
        groups,
        expires_at: ttl.map(|t| now + t),
    };
    st.store.put_share(&share).await?;
    st.apply(Change::Share(share.clone())).await;
    let (user_list, group_list) = (
        user_names(&st, &share.users),
        group_names(&st, &share.groups),
    );
    let mut what = format!(
        "{}/{}/{}:{port} {}",
        ws.owner,
        ws.name,
        agent.name,
        share.level.as_str()
    );
    if !user_list.is_empty() {
        what.push_str(&format!(" users {}", user_list.join(",")));
    }
    if !group_list.is_empty() {
        what.push_str(&format!(" groups {}", group_list.join(",")));
    }
    if let Some(t) = ttl {
        what.push_str(&format!(" for {t} s"));
    }
    st.audit(&caller.0.username, "port.shared", &what).await;
    Ok(Json(ShareJson {
        port,
        level: share.level,
        protocol: share.protocol,
        cors: share.cors,
        inspect: share.inspect,
        users: user_list,
        groups: group_list,
        expires_at: share.expires_at.map(rfc3339),
        expires_in_secs: ttl,
        url: st.app_urls.url(&port_label(port, &agent, &ws)),
    }))
}

/// Puts a port back to `owner`.
#[utoipa::path(delete, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/share", tag = "sharing",
    summary = "Make a port private again (owner level)",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("port" = u16, Path, description = "The port, 1-65535")),
    responses((status = 204, description = "Private again"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn delete_share(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, workspace, agent, port)): ApiPath<(String, String, String, u16)>,
) -> Result<StatusCode, ApiError> {
    check_port(port)?;
    let (ws, agent) = agent_of(&st, &caller, &user, &workspace, &agent).await?;
    st.store.delete_share(agent.id, port).await?;
    st.apply(Change::ShareRemoved {
        agent_id: agent.id,
        port,
    })
    .await;
    let what = format!("{}/{}/{}:{port}", ws.owner, ws.name, agent.name);
    st.audit(&caller.0.username, "port.unshared", &what).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Names a port: `{app}--{agent}--{workspace}--{user}`.
#[utoipa::path(put, path = "/workspaces/{user}/{workspace}/agents/{agent}/apps/{app}", tag = "sharing",
    summary = "Name a port: {app}--{agent}--{workspace}--{user}",
    request_body = PutApp,
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("app" = String, Path, description = "The app name")),
    responses((status = 200, description = "The app with its URL"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn put_app(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, workspace, agent, app)): ApiPath<(String, String, String, String)>,
    ApiJson(req): ApiJson<PutApp>,
) -> Result<Json<AppJson>, ApiError> {
    check_port(req.port)?;
    let (ws, agent) = agent_of(&st, &caller, &user, &workspace, &agent).await?;
    validate::name("app", &app)?;
    if is_port_like(&app) {
        return Err(ApiError::invalid_field(
            "app",
            "must not look like a port (digits, or digits and \"s\"): it would be read as one",
        ));
    }
    let label = format!("{app}--{}--{}--{}", agent.name, ws.name, ws.owner);
    if label.len() > st.app_urls.label_budget() {
        return Err(ApiError::invalid_field(
            "app",
            format!(
                "is too long: its host name label {label} would be {} characters, more than {}",
                label.len(),
                st.app_urls.label_budget()
            ),
        ));
    }
    let named = App {
        agent_id: agent.id,
        name: app,
        port: req.port,
        protocol: req.protocol,
    };
    st.store.put_app(&named).await?;
    st.apply(Change::App(named.clone())).await;
    let what = format!("{label} -> port {}", named.port);
    st.audit(&caller.0.username, "app.named", &what).await;
    Ok(Json(AppJson {
        url: st.app_urls.url(&label),
        name: named.name,
        port: named.port,
        protocol: named.protocol,
    }))
}

/// Takes a name off a port: `{app}--...` stops answering; the port's own
/// URL and share are untouched.
#[utoipa::path(delete, path = "/workspaces/{user}/{workspace}/agents/{agent}/apps/{app}", tag = "sharing",
    summary = "Take a name off a port (un-name an app)",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("app" = String, Path, description = "The app name")),
    responses((status = 204, description = "The name is gone"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such app, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn delete_app(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, workspace, agent, app)): ApiPath<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let (ws, agent) = agent_of(&st, &caller, &user, &workspace, &agent).await?;
    if !st.store.delete_app(agent.id, &app).await? {
        return Err(ApiError::not_found(format!(
            "no app named {app} on {}/{}/{}",
            ws.owner, ws.name, agent.name
        )));
    }
    st.apply(Change::AppRemoved {
        agent_id: agent.id,
        name: app.clone(),
    })
    .await;
    let what = format!("{app}--{}--{}--{}", agent.name, ws.name, ws.owner);
    st.audit(&caller.0.username, "app.unnamed", &what).await;
    Ok(StatusCode::NO_CONTENT)
}
