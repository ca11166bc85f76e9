//! What each client command does: one module per command, and here the
//! dispatch and what they share (the saved session, API errors, output).

mod current;
mod groups;
mod inspect;
mod link;
mod login;
mod open;
mod ports;
mod regions;
mod share;
mod target;
mod trust;
mod users;
mod workspaces;

use super::credentials;
use super::http::Session;
use super::{ClientError, Command, LinkCommand};
use http::{Method, StatusCode};
use serde_json::Value;

pub(super) async fn run(command: Command) -> Result<(), ClientError> {
    match command {
        Command::Login(a) => login::login(a).await,
        Command::Ports(a) => ports::ports(a).await,
        Command::Share(a) => share::share(a).await,
        Command::Unshare(a) => share::unshare(a).await,
        Command::Open(a) => open::open(a).await,
        Command::Link(l) => match l.command {
            LinkCommand::Create(a) => link::create(a).await,
            LinkCommand::Ls(a) => link::ls(a).await,
            LinkCommand::Rm(a) => link::rm(a).await,
        },
        Command::Regions(r) => regions::regions(r).await,
        Command::Inspect(a) => inspect::inspect(a).await,
        Command::Groups(g) => groups::groups(g).await,
        Command::Use(a) => current::use_(a).await,
        Command::Workspaces(w) => workspaces::workspaces(w).await,
        Command::Agents(g) => workspaces::agents(g).await,
        Command::Users(u) => users::users(u).await,
        Command::Trust(a) => trust::trust(a).await,
    }
}

/// Prints an API answer as pretty JSON (`--json`).
fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON serializes")
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
