//! Which agent a command is about: the user, workspace and agent given on
//! the command line, the ones not given filled in from the API when there
//! is only one to choose.

use crate::client::{ClientError, Session, Target};
use serde_json::Value;

/// A fully named agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    pub user: String,
    pub workspace: String,
    pub agent: String,
}

impl Resolved {
    pub(super) fn agent_path(&self) -> String {
        format!(
            "/api/v1/workspaces/{}/{}/agents/{}",
            self.user, self.workspace, self.agent
        )
    }

    pub(super) fn ports_path(&self) -> String {
        format!("{}/ports", self.agent_path())
    }

    pub(super) fn share_path(&self, port: u16) -> String {
        format!("{}/ports/{port}/share", self.agent_path())
    }
}

/// Checks a name before it goes into a URL path.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), ClientError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ClientError::Usage(format!(
            "{name:?} is not a valid {what} name (lower-case letters, digits and -)"
        )));
    }
    Ok(())
}

/// The target with the current workspace and agent (`berth use`) filled
/// in where neither `--user` nor `--workspace` was given; the saved agent
/// belongs to the saved workspace, so it applies only with it.
pub(super) fn with_current(t: &Target, s: &Session) -> Target {
    let mut t = t.clone();
    if t.user.is_none() && t.workspace.is_none() {
        if let Some(w) = &s.workspace {
            t.workspace = Some(w.clone());
            if t.agent.is_none() {
                t.agent.clone_from(&s.agent);
            }
        }
    }
    t
}

/// Fills in the user, workspace and agent that were not given: from the
/// flags, else the current ones (`berth use`), else the only one there is.
pub(super) async fn resolve_target(s: &Session, t: &Target) -> Result<Resolved, ClientError> {
    let t = &with_current(t, s);
    let user = match &t.user {
        Some(u) => u.clone(),
        None => {
            let me = s.get_ok("/api/v1/me").await?;
            me["username"]
                .as_str()
                .ok_or_else(|| {
                    ClientError::Transport("GET /api/v1/me did not name the caller".into())
                })?
                .to_owned()
        }
    };
    check_name("user", &user)?;
    let (workspace, agents) = match &t.workspace {
        Some(w) => {
            check_name("workspace", w)?;
            (w.clone(), None)
        }
        None => {
            let all = s.get_ok("/api/v1/workspaces").await?;
            let (w, agents) = only_workspace(&all, &user)?;
            (w, Some(agents))
        }
    };
    let agent = match &t.agent {
        Some(a) => a.clone(),
        None => {
            let agents = match agents {
                Some(a) => a,
                None => {
                    let list = s
                        .get_ok(&format!("/api/v1/workspaces/{user}/{workspace}/agents"))
                        .await?;
                    names(&list)
                }
            };
            only_agent(&agents, &user, &workspace)?
        }
    };
    check_name("agent", &agent)?;
    Ok(Resolved {
        user,
        workspace,
        agent,
    })
}

/// The user and workspace of an agents command: from the flags, else the
/// current workspace (`berth use`), else the caller's only one.
pub(super) async fn resolve_workspace(
    s: &Session,
    user: Option<&str>,
    workspace: Option<&str>,
) -> Result<(String, String), ClientError> {
    let t = Target {
        user: user.map(str::to_owned),
        workspace: workspace.map(str::to_owned),
        agent: None,
    };
    let t = with_current(&t, s);
    let user = match t.user {
        Some(u) => u,
        None => me(s).await?,
    };
    check_name("user", &user)?;
    let ws = match t.workspace {
        Some(w) => w,
        None => only_workspace(&s.get_ok("/api/v1/workspaces").await?, &user)?.0,
    };
    check_name("workspace", &ws)?;
    Ok((user, ws))
}

/// The caller's user name.
pub(super) async fn me(s: &Session) -> Result<String, ClientError> {
    let me = s.get_ok("/api/v1/me").await?;
    Ok(me["username"]
        .as_str()
        .ok_or_else(|| ClientError::Transport("GET /api/v1/me did not name the caller".into()))?
        .to_owned())
}

pub(super) fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The only workspace of `user` in a `GET /workspaces` answer, with its agents.
pub(super) fn only_workspace(
    all: &Value,
    user: &str,
) -> Result<(String, Vec<String>), ClientError> {
    let empty = vec![];
    let mine: Vec<&Value> = all
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|w| w["owner"].as_str() == Some(user))
        .collect();
    match mine.as_slice() {
        [w] => Ok((
            w["name"].as_str().unwrap_or_default().to_owned(),
            names(&w["agents"]),
        )),
        [] => Err(ClientError::Usage(format!(
            "{user} has no workspace you can see; create one with `berth workspaces create NAME`, or name one with --workspace"
        ))),
        many => {
            let list: Vec<&str> = many.iter().filter_map(|w| w["name"].as_str()).collect();
            Err(ClientError::Usage(format!(
                "{user} has {} workspaces ({}); choose one with `berth use WORKSPACE` (or --workspace, BERTH_WORKSPACE)",
                many.len(),
                list.join(", ")
            )))
        }
    }
}

/// The only agent in `agents`.
pub(super) fn only_agent(agents: &[String], user: &str, ws: &str) -> Result<String, ClientError> {
    match agents {
        [a] => Ok(a.clone()),
        [] => Err(ClientError::Usage(format!(
            "workspace {user}/{ws} has no agent yet; create one with `berth agents create NAME --workspace {ws}`"
        ))),
        many => Err(ClientError::Usage(format!(
            "workspace {user}/{ws} has {} agents ({}); choose one with `berth use {ws}/AGENT` (or --agent, BERTH_AGENT)",
            many.len(),
            many.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn choosing_the_workspace_and_agent() {
        let all = json!([
            {"owner": "admin", "name": "dev", "agents": [{"name": "main"}]},
            {"owner": "alice", "name": "api", "agents": [{"name": "a"}, {"name": "b"}]},
            {"owner": "alice", "name": "web", "agents": []},
        ]);
        assert_eq!(
            only_workspace(&all, "admin").unwrap(),
            ("dev".to_owned(), vec!["main".to_owned()])
        );
        let e = only_workspace(&all, "alice").unwrap_err().to_string();
        assert!(
            e.contains("2 workspaces (api, web)") && e.contains("--workspace"),
            "{e}"
        );
        assert!(matches!(
            only_workspace(&all, "bob"),
            Err(ClientError::Usage(_))
        ));
        let e = only_agent(&["a".into(), "b".into()], "alice", "api")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 agents (a, b)") && e.contains("--agent"),
            "{e}"
        );
        assert!(only_agent(&[], "alice", "web").is_err());
    }

    #[test]
    fn the_current_workspace_fills_in_only_what_was_not_given() {
        let s = Session {
            url: "https://b".into(),
            token: String::new(),
            ca_file: None,
            workspace: Some("api".into()),
            agent: Some("main".into()),
        };
        let t = |u: Option<&str>, w: Option<&str>, a: Option<&str>| Target {
            user: u.map(Into::into),
            workspace: w.map(Into::into),
            agent: a.map(Into::into),
        };
        let got = |x: Target| (x.user, x.workspace, x.agent);
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(
            got(with_current(&t(None, None, None), &s)),
            (None, some("api"), some("main"))
        );
        assert_eq!(
            got(with_current(&t(None, None, Some("b")), &s)),
            (None, some("api"), some("b"))
        );
        // A workspace on the command line: nothing saved applies.
        assert_eq!(
            got(with_current(&t(None, Some("web"), None), &s)),
            (None, some("web"), None)
        );
        // Another user's workspaces: nothing saved applies.
        assert_eq!(
            got(with_current(&t(Some("alice"), None, None), &s)),
            (some("alice"), None, None)
        );
        let none = Session {
            workspace: None,
            agent: None,
            ..s
        };
        assert_eq!(
            got(with_current(&t(None, None, None), &none)),
            (None, None, None)
        );
    }
}
