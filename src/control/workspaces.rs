//! `/workspaces` and their `/agents`. Callers see and manage their own
//! workspaces; site admins see and manage all. Anything else is a 404 that
//! reads exactly like a workspace that does not exist.

use super::access::visible;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use crate::catalog::Change;
use crate::store::{AgentRow, StoreError, WorkspaceRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `POST /workspaces` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateWorkspace {
    name: String,
    /// Defaults to the caller; only admins may name someone else.
    #[serde(default)]
    owner: Option<String>,
}

/// `POST .../agents` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAgent {
    name: String,
}

/// A workspace as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct WorkspaceJson {
    owner: String,
    name: String,
    created_at: String,
    agents: Vec<AgentJson>,
}

/// An agent as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct AgentJson {
    name: String,
    connected: bool,
    created_at: String,
    /// The app URL of any port, with `{port}` to fill in.
    url_template: String,
}

/// `POST .../agents` answer; the token is shown only here.
#[derive(Serialize)]
pub(crate) struct CreatedAgent {
    name: String,
    agent_token: String,
    url_template: String,
    /// The one line that starts this agent on another machine (the
    /// dashboard shows it to copy): control's URL, the token and, with the
    /// local CA, that CA's path here.
    command: String,
}

/// `berth agent --url URL --token TOKEN [--ca-file PATH]`, the path quoted
/// for a POSIX shell when it needs it.
pub(crate) fn agent_command(url: &str, token: &str, ca_file: Option<&str>) -> String {
    let mut cmd = format!("berth agent --url {url} --token {token}");
    if let Some(ca) = ca_file {
        cmd.push_str(" --ca-file ");
        if ca
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b))
        {
            cmd.push_str(ca);
        } else {
            cmd.push_str(&format!("'{}'", ca.replace('\'', "'\\''")));
        }
    }
    cmd
}

fn url_template(st: &ControlState, agent: &str, ws: &WorkspaceRow) -> String {
    st.app_urls
        .url(&format!("{{port}}--{agent}--{}--{}", ws.name, ws.owner))
}

fn agent_json(st: &ControlState, ws: &WorkspaceRow, a: AgentRow) -> AgentJson {
    AgentJson {
        connected: st.presence.is_connected(a.id),
        url_template: url_template(st, &a.name, ws),
        name: a.name,
        created_at: a.created_at,
    }
}

fn workspace_json(st: &ControlState, ws: WorkspaceRow, agents: Vec<AgentRow>) -> WorkspaceJson {
    let agents = agents.into_iter().map(|a| agent_json(st, &ws, a)).collect();
    WorkspaceJson {
        owner: ws.owner,
        name: ws.name,
        created_at: ws.created_at,
        agents,
    }
}

/// Creates a workspace for the caller, or (admins) for `owner`.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces",
    summary = "Create a workspace for the caller (or, site admins, for owner)",
    request_body = CreateWorkspace,
    responses((status = 201, description = "The workspace, with no agents"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Naming another owner without being a site admin", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create(
    State(st): State<ControlState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWorkspace>,
) -> Result<impl IntoResponse, ApiError> {
    let owner_name = req.owner.as_deref().unwrap_or(&caller.0.username);
    if owner_name != caller.0.username && !caller.0.admin {
        return Err(ApiError::forbidden(
            "only site admins may create a workspace for another user",
        ));
    }
    validate::name("name", &req.name)?;
    validate::label_fits(
        "name",
        &req.name,
        ("a", &req.name, owner_name),
        st.app_urls.label_budget(),
    )?;
    let owner_id = if owner_name == caller.0.username {
        caller.0.id
    } else {
        match st.store.user_by_name(owner_name).await {
            Ok(u) => u.id,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::invalid_field(
                    "owner",
                    format!("there is no user named {owner_name}"),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    };
    let ws = st.store.create_workspace(owner_id, &req.name).await?;
    st.apply(Change::Workspace(ws.to_catalog())).await;
    st.audit(
        &caller.0.username,
        "workspace.created",
        &format!("{}/{}", ws.owner, ws.name),
    )
    .await;
    Ok((StatusCode::CREATED, Json(workspace_json(&st, ws, vec![]))))
}

/// The workspaces the caller may see (own; all for admins), with their agents.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces",
    summary = "The caller's workspaces (every one for site admins), with agents and whether each is connected",
    responses((status = 200, description = "Workspaces"), (status = 401, description = "No or an invalid API token", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    caller: Caller,
) -> Result<Json<Vec<WorkspaceJson>>, ApiError> {
    let owner = (!caller.0.admin).then_some(caller.0.id);
    let workspaces = st.store.list_workspaces(owner).await?;
    let mut agents: HashMap<i64, Vec<AgentRow>> = HashMap::new();
    for a in st.store.list_all_agents().await? {
        agents.entry(a.workspace_id).or_default().push(a);
    }
    let out = workspaces
        .into_iter()
        .map(|ws| {
            let a = agents.remove(&ws.id).unwrap_or_default();
            workspace_json(&st, ws, a)
        })
        .collect();
    Ok(Json(out))
}

/// Deletes a workspace and its agents (owner or admin).
#[utoipa::path(delete, path = "/workspaces/{user}/{workspace}", tag = "workspaces",
    summary = "Delete a workspace with its agents, shares and links",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn delete(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let ws = visible(&st, &caller, &user, &name).await?;
    st.store.delete_workspace(ws.id).await?;
    st.apply(Change::WorkspaceRemoved(ws.id)).await;
    st.audit(
        &caller.0.username,
        "workspace.deleted",
        &format!("{}/{}", ws.owner, ws.name),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an agent; its token is in this answer and nowhere else.
#[utoipa::path(post, path = "/workspaces/{user}/{workspace}/agents", tag = "workspaces",
    summary = "Create an agent; its token is in this answer only",
    request_body = CreateAgent,
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name")),
    responses((status = 201, description = "name, agent_token, url_template"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create_agent(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateAgent>,
) -> Result<impl IntoResponse, ApiError> {
    let ws = visible(&st, &caller, &user, &name).await?;
    validate::name("name", &req.name)?;
    validate::label_fits(
        "name",
        &req.name,
        (&req.name, &ws.name, &ws.owner),
        st.app_urls.label_budget(),
    )?;
    let (agent, secret) = st.store.create_agent(ws.id, &req.name).await?;
    st.apply(Change::Agent(agent.to_catalog())).await;
    st.audit(
        &caller.0.username,
        "agent.created",
        &format!("{}/{}/{}", ws.owner, ws.name, agent.name),
    )
    .await;
    let ca = st
        .local_ca
        .as_ref()
        .map(|c| c.cert_path().display().to_string());
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgent {
            command: agent_command(&st.signin.base_url, secret.expose(), ca.as_deref()),
            url_template: url_template(&st, &agent.name, &ws),
            name: agent.name,
            agent_token: secret.expose().to_owned(),
        }),
    ))
}

/// A workspace's agents, each with whether its tunnel is up.
#[utoipa::path(get, path = "/workspaces/{user}/{workspace}/agents", tag = "workspaces",
    summary = "A workspace's agents, each with whether its tunnel is up",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name")),
    responses((status = 200, description = "Agents"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn list_agents(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, name)): ApiPath<(String, String)>,
) -> Result<Json<Vec<AgentJson>>, ApiError> {
    let ws = visible(&st, &caller, &user, &name).await?;
    let agents = st.store.list_agents(ws.id).await?;
    Ok(Json(
        agents
            .into_iter()
            .map(|a| agent_json(&st, &ws, a))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::agent_command;

    #[test]
    fn the_agent_command_quotes_only_what_a_shell_would_split() {
        let u = "https://berth.localhost:8443";
        assert_eq!(
            agent_command(u, "berth_agent_x", None),
            "berth agent --url https://berth.localhost:8443 --token berth_agent_x"
        );
        assert_eq!(
            agent_command(u, "t", Some("/home/a/.berth/ca.pem")),
            "berth agent --url https://berth.localhost:8443 --token t --ca-file /home/a/.berth/ca.pem"
        );
        assert_eq!(
            agent_command(u, "t", Some("/home/a b/it's.pem")),
            "berth agent --url https://berth.localhost:8443 --token t --ca-file '/home/a b/it'\\''s.pem'"
        );
        assert!(agent_command(u, "t", Some("/x;rm -rf ~/$(id)")).ends_with("'/x;rm -rf ~/$(id)'"));
    }
}
