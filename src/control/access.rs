//! Which workspace and agent a request's path names, if the caller may
//! manage them: the one check every handler under `/workspaces/...` and
//! `/share-links` makes first. What the caller may not see answers 404,
//! exactly like what does not exist.

use super::error::ApiError;
use super::extract::Caller;
use super::ControlState;
use crate::store::{AgentRow, StoreError, WorkspaceRow};

/// The workspace `user/name` if the caller may manage it; otherwise the same
/// 404 as for one that does not exist.
pub(super) async fn visible(
    st: &ControlState,
    caller: &Caller,
    user: &str,
    name: &str,
) -> Result<WorkspaceRow, ApiError> {
    let hidden = || ApiError::not_found(format!("workspace {user}/{name} not found, or not yours"));
    match st.store.workspace_by_name(user, name).await {
        Ok(ws) if caller.may_manage(ws.owner_id) => Ok(ws),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(hidden()),
        Err(e) => Err(e.into()),
    }
}

/// The workspace and agent named by a path, if the caller may manage them.
pub(super) async fn agent_of(
    st: &ControlState,
    caller: &Caller,
    user: &str,
    workspace: &str,
    agent: &str,
) -> Result<(WorkspaceRow, AgentRow), ApiError> {
    let ws = visible(st, caller, user, workspace).await?;
    match st.store.agent_by_name(ws.id, agent).await {
        Ok(a) => Ok((ws, a)),
        Err(StoreError::NotFound(_)) => Err(ApiError::not_found(format!(
            "workspace {user}/{workspace} has no agent named {agent}"
        ))),
        Err(e) => Err(e.into()),
    }
}
