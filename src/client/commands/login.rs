//! `berth login`: signs in and saves the API token.

use crate::client::credentials;
use crate::client::http::parse_url;
use crate::client::{ClientError, LoginArgs, Session};
use http::Method;
use serde_json::json;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// `berth login`.
pub(super) async fn login(a: LoginArgs) -> Result<(), ClientError> {
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
        workspace: None,
        agent: None,
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
    if a.json {
        super::print_json(&json!({"url": url, "user": user}));
    } else {
        println!("Signed in to {url} as {user}.");
    }
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
pub(super) async fn read_line() -> Result<String, ClientError> {
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
pub(super) async fn prompt_password(prompt: &str) -> Result<String, ClientError> {
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
