//! `berth use`: the current workspace and agent, kept in the saved
//! credentials so that `ports`, `share`, `link` and `open` need no
//! `--workspace` once a user has several.

use super::target::{check_name, names};
use super::{print_json, signed_in};
use crate::client::{credentials, ClientError, UseArgs};
use serde_json::json;

/// `berth use [WORKSPACE[/AGENT]] [--clear]`.
pub(super) async fn use_(a: UseArgs) -> Result<(), ClientError> {
    let mut s = signed_in()?;
    let path = credentials::default_path()?;
    if a.clear {
        s.workspace = None;
        s.agent = None;
        credentials::save(&path, &s)?;
    } else if let Some(target) = &a.target {
        let (ws, agent) = match target.split_once('/') {
            Some((w, a)) => (w.to_owned(), Some(a.to_owned())),
            None => (target.clone(), None),
        };
        check_name("workspace", &ws)?;
        if let Some(agent) = &agent {
            check_name("agent", agent)?;
        }
        // Only what exists: a typo would otherwise surface on a later command.
        let me = s.get_ok("/api/v1/me").await?;
        let user = me["username"].as_str().unwrap_or_default().to_owned();
        let agents = s
            .get_ok(&format!("/api/v1/workspaces/{user}/{ws}/agents"))
            .await
            .map_err(|e| match e {
                ClientError::Api { status: 404, .. } => ClientError::Usage(format!(
                    "you have no workspace named {ws} (see `berth workspaces`)"
                )),
                e => e,
            })?;
        if let Some(agent) = &agent {
            if !names(&agents).contains(agent) {
                return Err(ClientError::Usage(format!(
                    "workspace {ws} has no agent named {agent} (see `berth agents --workspace {ws}`)"
                )));
            }
        }
        s.workspace = Some(ws);
        s.agent = agent;
        credentials::save(&path, &s)?;
    }
    if a.json {
        print_json(&json!({"workspace": s.workspace, "agent": s.agent}));
        return Ok(());
    }
    match (&s.workspace, &s.agent) {
        (None, _) => println!(
            "No current workspace: commands use --workspace, or your only workspace. Choose one with `berth use WORKSPACE[/AGENT]`."
        ),
        (Some(w), None) => println!("Current workspace: {w} (its only agent, or --agent)."),
        (Some(w), Some(ag)) => println!("Current workspace: {w}, agent {ag}."),
    }
    Ok(())
}
