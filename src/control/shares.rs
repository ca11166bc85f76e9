//! Sharing a port (`.../ports/{port}/share`) and naming one (`.../apps/{app}`).
//! Owners and site admins manage both; everyone else gets the same 404 as for
//! a workspace that does not exist.

use super::access::agent_of;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::{validate, ControlState};
use crate::auth::ShareLevel;
use crate::catalog::{App, Change, Cors, Protocol, Share};
use crate::host::is_port_like;
use crate::store::{AgentRow, WorkspaceRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `PUT .../share` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutShare {
    level: ShareLevel,
    #[serde(default)]
    protocol: Protocol,
    /// `"berth"` (default) or `"passthru"`.
    #[serde(default)]
    cors: Cors,
    /// Record the port's requests for the inspector (default true).
    #[serde(default = "crate::catalog::on")]
    inspect: bool,
}

/// `PUT .../apps/{app}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutApp {
    port: u16,
    #[serde(default)]
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
    /// Why `ports` lacks what is listening, when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
    ports: Vec<PortJson>,
}

/// The agent's listening ports, and every shared or named port, each with
/// its share level and URLs.
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
    let blank = |port: u16| {
        let share = shares.get(&port);
        let protocol = share.map(|s| s.protocol).unwrap_or_default();
        PortJson {
            port,
            listening: false,
            reachable: false,
            level: share.map(|s| s.level).unwrap_or_default(),
            protocol,
            cors: share.map(|s| s.cors).unwrap_or_default(),
            inspect: share.is_none_or(|s| s.inspect),
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
    Ok(Json(PortsJson {
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

/// Sets who may reach a port.
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
    let share = Share {
        agent_id: agent.id,
        port,
        level: req.level,
        protocol: req.protocol,
        cors: req.cors,
        inspect: req.inspect,
    };
    st.store.put_share(&share).await?;
    st.apply(Change::Share(share.clone())).await;
    let what = format!(
        "{}/{}/{}:{port} {}",
        ws.owner,
        ws.name,
        agent.name,
        share.level.as_str()
    );
    st.audit(&caller.0.username, "port.shared", &what).await;
    Ok(Json(ShareJson {
        port,
        level: share.level,
        protocol: share.protocol,
        cors: share.cors,
        inspect: share.inspect,
        url: st.app_urls.url(&port_label(port, &agent, &ws)),
    }))
}

/// Puts a port back to `owner`.
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
