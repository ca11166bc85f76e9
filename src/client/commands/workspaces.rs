//! `berth workspaces [create|rm]` and `berth agents [create]`: adding a
//! machine in one command, which prints the `berth agent` line to paste on it.

use super::target::{check_name, me, resolve_workspace};
use super::{print_json, signed_in};
use crate::client::{
    format, AgentCreateArgs, AgentsArgs, AgentsCommand, ClientError, Session, WorkspacesArgs,
    WorkspacesCommand,
};
use http::Method;
use serde_json::{json, Value};

/// `berth workspaces`, and its subcommands.
pub(super) async fn workspaces(w: WorkspacesArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    match w.command {
        None => {
            let answer = s.get_ok("/api/v1/workspaces").await?;
            if w.json {
                print_json(&answer);
            } else {
                print!("{}", format::workspaces_table(&answer));
            }
        }
        Some(WorkspacesCommand::Create(a)) => {
            check_name("workspace", &a.name)?;
            check_name("agent", &a.agent)?;
            let mut body = json!({"name": a.name});
            if let Some(u) = &a.user {
                check_name("user", u)?;
                body["owner"] = json!(u);
            }
            let ws = s
                .expect_ok(Method::POST, "/api/v1/workspaces", Some(&body))
                .await?;
            let owner = ws["owner"].as_str().unwrap_or_default().to_owned();
            let agent = create_agent(&s, &owner, &a.name, &a.agent).await?;
            let command = agent_command(&s, &agent);
            if a.json {
                print_json(&json!({"workspace": ws, "agent": agent, "command": command}));
            } else {
                println!(
                    "Workspace {owner}/{} created with agent {}.",
                    a.name, a.agent
                );
                print_agent_help(&s, &agent, &command);
            }
        }
        Some(WorkspacesCommand::Rm(a)) => {
            check_name("workspace", &a.name)?;
            let user = match a.user {
                Some(u) => u,
                None => me(&s).await?,
            };
            check_name("user", &user)?;
            s.expect_ok(
                Method::DELETE,
                &format!("/api/v1/workspaces/{user}/{}", a.name),
                None,
            )
            .await?;
            println!(
                "Workspace {user}/{} is deleted, with its agents, shares and links.",
                a.name
            );
        }
    }
    Ok(())
}

/// `berth agents`, and `berth agents create`.
pub(super) async fn agents(g: AgentsArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    match g.command {
        None => {
            let (user, ws) =
                resolve_workspace(&s, g.target.user.as_deref(), g.target.workspace.as_deref())
                    .await?;
            let answer = s
                .get_ok(&format!("/api/v1/workspaces/{user}/{ws}/agents"))
                .await?;
            if g.json {
                print_json(&answer);
            } else {
                print!("{}", format::agents_table(&answer));
            }
        }
        Some(AgentsCommand::Create(a)) => create(&s, a, g.target, g.json).await?,
    }
    Ok(())
}

async fn create(
    s: &Session,
    a: AgentCreateArgs,
    outer: crate::client::WorkspaceTarget,
    json: bool,
) -> Result<(), ClientError> {
    check_name("agent", &a.name)?;
    let user = a.target.user.or(outer.user);
    let workspace = a.target.workspace.or(outer.workspace);
    let (user, ws) = resolve_workspace(s, user.as_deref(), workspace.as_deref()).await?;
    let agent = create_agent(s, &user, &ws, &a.name).await?;
    let command = agent_command(s, &agent);
    if a.json || json {
        let mut out = agent.clone();
        out["command"] = json!(command);
        print_json(&out);
    } else {
        println!("Agent {} created in workspace {user}/{ws}.", a.name);
        print_agent_help(s, &agent, &command);
    }
    Ok(())
}

async fn create_agent(s: &Session, user: &str, ws: &str, name: &str) -> Result<Value, ClientError> {
    s.expect_ok(
        Method::POST,
        &format!("/api/v1/workspaces/{user}/{ws}/agents"),
        Some(&json!({"name": name})),
    )
    .await
}

/// The one line that starts this agent on another machine: the URL this
/// CLI signed in to, the new token, and the CA this CLI trusts, if any.
pub(crate) fn agent_command(s: &Session, created: &Value) -> String {
    let token = created["agent_token"].as_str().unwrap_or("berth_agent_...");
    let mut cmd = format!("berth agent --url {} --token {token}", s.url);
    if let Some(ca) = &s.ca_file {
        cmd.push_str(&format!(
            " --ca-file {}",
            shell_quote(&ca.display().to_string())
        ));
    }
    cmd
}

fn print_agent_help(s: &Session, created: &Value, command: &str) {
    println!("On the machine whose ports it should serve, run (the token is shown only now):");
    println!("  {command}");
    if let Some(ca) = &s.ca_file {
        println!(
            "(copy {} to that machine first, or change --ca-file to where it is there)",
            ca.display()
        );
    }
    if let Some(t) = created["url_template"].as_str() {
        println!("Its ports are then at {t}");
    }
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_command_names_url_token_and_ca() {
        let mut s = Session {
            url: "https://berth.localhost:8443".into(),
            token: String::new(),
            ca_file: Some("/home/a b/.berth/ca.pem".into()),
            workspace: None,
            agent: None,
        };
        let created = json!({"name": "main", "agent_token": "berth_agent_x"});
        assert_eq!(
            agent_command(&s, &created),
            "berth agent --url https://berth.localhost:8443 --token berth_agent_x --ca-file '/home/a b/.berth/ca.pem'"
        );
        s.ca_file = None;
        assert_eq!(
            agent_command(&s, &created),
            "berth agent --url https://berth.localhost:8443 --token berth_agent_x"
        );
    }
}
