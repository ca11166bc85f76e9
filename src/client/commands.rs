//! What each client command does.

use super::credentials;
use super::format;
use super::http::{parse_url, Session};
use super::{ClientError, Command, LinkCommand, RegionsCommand, Target};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

pub(super) async fn run(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Login(a) => login(a).await,
        Command::Ports(a) => {
            let s = signed_in()?;
            let t = resolve_target(&s, &a.target).await?;
            let answer = s.get_ok(&t.ports_path()).await?;
            if a.json {
                print_json(&answer);
            } else {
                if let Some(w) = answer["warning"].as_str() {
                    eprintln!("berth: note: {w}");
                }
                print!("{}", format::ports_table(&answer));
            }
            Ok(())
        }
        Command::Share(a) => {
            let s = signed_in()?;
            let t = resolve_target(&s, &a.target).await?;
            let mut body = json!({ "level": a.level.as_str() });
            if let Some(p) = a.protocol {
                body["protocol"] = json!(match p {
                    super::Protocol::Http => "http",
                    super::Protocol::Https => "https",
                });
            }
            if let Some(c) = a.cors {
                body["cors"] = json!(match c {
                    super::CorsMode::Berth => "berth",
                    super::CorsMode::Passthru => "passthru",
                });
            }
            let answer = s
                .expect_ok(Method::PUT, &t.share_path(a.port), Some(&body))
                .await?;
            let level = answer["level"].as_str().unwrap_or(a.level.as_str());
            println!(
                "Port {} is shared with level {level} ({}):",
                a.port,
                format::level_meaning(level)
            );
            println!("  {}", answer["url"].as_str().unwrap_or("-"));
            Ok(())
        }
        Command::Unshare(a) => {
            let s = signed_in()?;
            let t = resolve_target(&s, &a.target).await?;
            s.expect_ok(Method::DELETE, &t.share_path(a.port), None)
                .await?;
            println!("Port {} is private again (owner only).", a.port);
            Ok(())
        }
        Command::Open(a) => {
            let s = signed_in()?;
            let t = resolve_target(&s, &a.target).await?;
            let url = port_url(&s, &t, a.port).await?;
            println!("{url}");
            if a.browser {
                open_browser(&url).await;
            }
            Ok(())
        }
        Command::Link(l) => match l.command {
            LinkCommand::Create(a) => {
                let s = signed_in()?;
                let t = resolve_target(&s, &a.target).await?;
                let answer = s
                    .expect_ok(
                        Method::POST,
                        "/api/v1/share-links",
                        Some(&link_body(&t, a.port, a.ttl, a.max_uses)),
                    )
                    .await?;
                if a.json {
                    print_json(&answer);
                } else {
                    print!("{}", format::link_created(&answer, a.port, a.max_uses));
                }
                Ok(())
            }
            LinkCommand::Ls(a) => {
                let s = signed_in()?;
                let answer = s.get_ok("/api/v1/share-links").await?;
                if a.json {
                    print_json(&answer);
                } else {
                    print!("{}", format::links_table(&answer, unix_now()));
                }
                Ok(())
            }
            LinkCommand::Rm(a) => {
                let s = signed_in()?;
                check_link_id(&a.id)?;
                s.expect_ok(
                    Method::DELETE,
                    &format!("/api/v1/share-links/{}", a.id),
                    None,
                )
                .await?;
                println!(
                    "Share link {} is revoked; its visitors lose access within seconds.",
                    a.id
                );
                Ok(())
            }
        },
        Command::Regions(r) => {
            let s = signed_in()?;
            match r.command {
                None => {
                    let answer = s.get_ok("/api/v1/regions").await?;
                    if r.json {
                        print_json(&answer);
                    } else {
                        print!("{}", format::regions_table(&answer));
                    }
                }
                Some(RegionsCommand::Create(a)) => {
                    check_name("region", &a.name)?;
                    let body = json!({"name": a.name, "url": a.url, "wildcard": a.wildcard});
                    let answer = s
                        .expect_ok(Method::POST, "/api/v1/regions", Some(&body))
                        .await?;
                    if a.json {
                        print_json(&answer);
                    } else {
                        println!(
                            "Region {} created. Its token, shown only now:\n  {}\nStart its edges with:\n  BERTH_REGION_TOKEN=... berth edge --url {} --base-domain HOST --wildcard '{}'",
                            a.name,
                            answer["region_token"].as_str().unwrap_or("-"),
                            s.url,
                            answer["wildcard"].as_str().unwrap_or("-"),
                        );
                    }
                }
                Some(RegionsCommand::Rm(a)) => {
                    check_name("region", &a.name)?;
                    s.expect_ok(Method::DELETE, &format!("/api/v1/regions/{}", a.name), None)
                        .await?;
                    println!(
                        "Region {} is deleted; its edges are refused from now on.",
                        a.name
                    );
                }
            }
            Ok(())
        }
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `POST /share-links` body.
pub(super) fn link_body(t: &Resolved, port: u16, ttl: Option<u64>, max_uses: Option<u64>) -> Value {
    let mut body = json!({
        "user": t.user, "workspace": t.workspace, "agent": t.agent, "port": port,
    });
    if let Some(ttl) = ttl {
        body["ttl_seconds"] = json!(ttl);
    }
    if let Some(n) = max_uses {
        body["max_uses"] = json!(n);
    }
    body
}

/// A link ID must be safe to put in a URL path as it is.
fn check_link_id(id: &str) -> Result<(), ClientError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ClientError::Usage(format!(
            "{id:?} is not a share link ID (see `berth link ls`)"
        )));
    }
    Ok(())
}

/// The saved session, or the usage error that says to sign in.
fn signed_in() -> Result<Session, ClientError> {
    let path = credentials::default_path()?;
    credentials::load(&path)?.ok_or_else(|| {
        ClientError::Usage(
            "not signed in: run `berth login https://...` first (e.g. `berth login https://berth.localhost:8443 --ca-file .berth/ca.pem`)".into(),
        )
    })
}

impl Session {
    /// [`Session::call`], with any non-2xx answer turned into an error.
    pub async fn expect_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let (status, value) = self.call(method, path, body).await?;
        if status.is_success() {
            return Ok(value);
        }
        Err(api_error(status, &value, !self.token.is_empty()))
    }

    async fn get_ok(&self, path: &str) -> Result<Value, ClientError> {
        self.expect_ok(Method::GET, path, None).await
    }
}

/// An error answer as a [`ClientError::Api`], with a hint where one helps.
pub(super) fn api_error(status: StatusCode, body: &Value, had_token: bool) -> ClientError {
    let code = body["error"].as_str().unwrap_or("").to_owned();
    let mut message = match (body["message"].as_str(), body.as_str()) {
        (Some(m), _) => m.to_owned(),
        (None, Some(text)) if !text.trim().is_empty() && text.len() < 300 => {
            format!("the server answered {status}: {}", text.trim())
        }
        _ => format!("the server answered {status}"),
    };
    if status == StatusCode::UNAUTHORIZED && had_token && code != "invalid_credentials" {
        message.push_str(" (your saved token was refused: run `berth login` again)");
    }
    if status == StatusCode::NOT_FOUND && code == "not_found" && message == "no such API endpoint" {
        message.push_str(" (is this berth too old for this command?)");
    }
    ClientError::Api {
        status: status.as_u16(),
        code,
        message,
    }
}

/// A fully named agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Resolved {
    pub user: String,
    pub workspace: String,
    pub agent: String,
}

impl Resolved {
    fn agent_path(&self) -> String {
        format!(
            "/api/v1/workspaces/{}/{}/agents/{}",
            self.user, self.workspace, self.agent
        )
    }

    fn ports_path(&self) -> String {
        format!("{}/ports", self.agent_path())
    }

    fn share_path(&self, port: u16) -> String {
        format!("{}/ports/{port}/share", self.agent_path())
    }
}

/// Checks a name before it goes into a URL path.
fn check_name(what: &str, name: &str) -> Result<(), ClientError> {
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

/// Fills in the user, workspace and agent that were not given.
async fn resolve_target(s: &Session, t: &Target) -> Result<Resolved, ClientError> {
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

fn names(list: &Value) -> Vec<String> {
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
            "{user} has no workspace you can see; create one, or name one with --workspace"
        ))),
        many => {
            let list: Vec<&str> = many.iter().filter_map(|w| w["name"].as_str()).collect();
            Err(ClientError::Usage(format!(
                "{user} has {} workspaces ({}); choose one with --workspace or BERTH_WORKSPACE",
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
            "workspace {user}/{ws} has no agent yet; create one with POST /api/v1/workspaces/{user}/{ws}/agents"
        ))),
        many => Err(ClientError::Usage(format!(
            "workspace {user}/{ws} has {} agents ({}); choose one with --agent or BERTH_AGENT",
            many.len(),
            many.join(", ")
        ))),
    }
}

/// The URL of a port: from the ports list, else from the agent's URL template.
async fn port_url(s: &Session, t: &Resolved, port: u16) -> Result<String, ClientError> {
    let ports = s.get_ok(&t.ports_path()).await?;
    let listed = ports["ports"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        })
        .and_then(|p| p["url"].as_str());
    if let Some(url) = listed {
        return Ok(url.to_owned());
    }
    let agents = s
        .get_ok(&format!(
            "/api/v1/workspaces/{}/{}/agents",
            t.user, t.workspace
        ))
        .await?;
    let template = agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"].as_str() == Some(&t.agent)))
        .and_then(|a| a["url_template"].as_str())
        .ok_or_else(|| {
            ClientError::Transport(format!("the server did not say what port {port}'s URL is"))
        })?;
    eprintln!(
        "berth: note: nothing is listening on port {port} of {}/{}/{} yet",
        t.user, t.workspace, t.agent
    );
    Ok(template.replace("{port}", &port.to_string()))
}

/// Tries `xdg-open`, then `open`; says so on stderr if neither works.
async fn open_browser(url: &str) {
    for opener in ["xdg-open", "open"] {
        let status = tokio::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        if matches!(status, Ok(s) if s.success()) {
            return;
        }
    }
    eprintln!(
        "berth: note: could not open a browser (no xdg-open or open); open the URL above yourself"
    );
}

/// `berth login`.
async fn login(a: super::LoginArgs) -> Result<(), ClientError> {
    let url = a.url.trim_end_matches('/').to_owned();
    parse_url(&url)?;
    let ca_file = match a.ca_file {
        Some(p) => Some(absolute(&p)?),
        None => None,
    };
    let mut session = Session {
        url: url.clone(),
        token: String::new(),
        ca_file,
    };
    let token = match a.token {
        Some(t) => {
            let t = t.trim().to_owned();
            if !crate::auth::token::is_well_formed(&t, crate::auth::TokenKind::Api) {
                return Err(ClientError::Usage(
                    "--token must be an API token (berth_api_...)".into(),
                ));
            }
            t
        }
        None => {
            let (username, password) = ask_credentials(a.username, a.password_stdin).await?;
            let answer = session
                .expect_ok(
                    Method::POST,
                    "/api/v1/login",
                    Some(&json!({ "username": username, "password": password })),
                )
                .await?;
            answer["token"]
                .as_str()
                .ok_or_else(|| {
                    ClientError::Transport(format!("{url} answered the login without a token"))
                })?
                .to_owned()
        }
    };
    session.token = token;
    let me = session.get_ok("/api/v1/me").await?;
    let user = me["username"].as_str().unwrap_or("?").to_owned();
    let path = credentials::default_path()?;
    credentials::save(&path, &session)?;
    println!("Signed in to {url} as {user}.");
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf, ClientError> {
    std::fs::canonicalize(p).map_err(|e| {
        ClientError::Usage(format!(
            "cannot read CA file {}: {e} (check --ca-file)",
            p.display()
        ))
    })
}

/// The user name and password: from the flags, stdin or the terminal.
async fn ask_credentials(
    username: Option<String>,
    password_stdin: bool,
) -> Result<(String, String), ClientError> {
    let tty = std::io::stdin().is_terminal();
    let username = match username {
        Some(u) => u,
        None if tty && !password_stdin => prompt_line("Username: ").await?,
        None => {
            return Err(ClientError::Usage(
                "--username is required when the password comes from standard input".into(),
            ))
        }
    };
    if username.is_empty() {
        return Err(ClientError::Usage("the user name is empty".into()));
    }
    let password = if tty && !password_stdin {
        prompt_password("Password: ").await?
    } else {
        read_line().await?
    };
    if password.is_empty() {
        return Err(ClientError::Usage("the password is empty".into()));
    }
    Ok((username, password))
}

/// One line of stdin without its line ending.
async fn read_line() -> Result<String, ClientError> {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| {
            let trimmed = line.trim_end_matches(['\r', '\n']).len();
            line.truncate(trimmed);
            line
        })
    })
    .await
    .expect("the reading task does not panic")
    .map_err(|e| ClientError::Usage(format!("cannot read standard input: {e}")))
}

async fn prompt_line(prompt: &str) -> Result<String, ClientError> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    Ok(read_line().await?.trim().to_owned())
}

/// Asks for a password with the terminal's echo off (through `stty`, so no
/// extra dependency); echo comes back afterwards, also on Ctrl-C.
async fn prompt_password(prompt: &str) -> Result<String, ClientError> {
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let hidden = stty("-echo");
    let line = tokio::select! {
        line = read_line() => line,
        _ = tokio::signal::ctrl_c() => {
            if hidden {
                stty("echo");
            }
            eprintln!();
            std::process::exit(130);
        }
    };
    if hidden {
        stty("echo");
        eprintln!();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn link_request_body() {
        let t = Resolved {
            user: "admin".into(),
            workspace: "dev".into(),
            agent: "main".into(),
        };
        assert_eq!(
            link_body(&t, 5173, Some(7200), None),
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 5173,
                   "ttl_seconds": 7200})
        );
        assert_eq!(
            link_body(&t, 1, None, Some(3)),
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 1,
                   "max_uses": 3})
        );
        assert_eq!(
            t.share_path(3000),
            "/api/v1/workspaces/admin/dev/agents/main/ports/3000/share"
        );
        assert!(check_link_id("a1_b-2").is_ok());
        assert!(check_link_id("../x").is_err());
        assert!(check_link_id("").is_err());
    }

    #[test]
    fn api_errors() {
        let e = api_error(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_credentials", "message": "wrong user name or password"}),
            false,
        );
        assert_eq!(e.to_string(), "wrong user name or password");
        assert_eq!(e.exit_code(), 1);
        let e = api_error(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_token", "message": "the token is not valid"}),
            true,
        );
        assert!(e.to_string().contains("run `berth login` again"), "{e}");
        let e = api_error(StatusCode::BAD_GATEWAY, &json!("upstream down"), true);
        assert_eq!(
            e.to_string(),
            "the server answered 502 Bad Gateway: upstream down"
        );
        let e = api_error(StatusCode::BAD_GATEWAY, &Value::Null, true);
        assert_eq!(e.to_string(), "the server answered 502 Bad Gateway");
    }
}
