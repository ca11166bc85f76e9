//! A stand-in for GitHub (or GitHub Enterprise Server) for the sign-in
//! tests, over HTTPS on loopback as `https://github.localhost:PORT`, with a
//! certificate from the berth's own CA. It speaks the documented endpoints
//! with their documented shapes:
//!
//! - `GET /login/oauth/authorize` (the OAuth web flow: `client_id`,
//!   `redirect_uri`, `scope`, `state`, `code_challenge` with
//!   `code_challenge_method=S256`), answering with a redirect to
//!   `redirect_uri?code=...&state=...` for the browser's GitHub session;
//! - `POST /login/oauth/access_token` (form: `client_id`, `client_secret`,
//!   `code`, `redirect_uri`, `code_verifier`), JSON when asked with
//!   `Accept: application/json` (form-encoded otherwise, as GitHub does),
//!   errors as status 200 with `error` / `error_description`, the PKCE
//!   verifier checked against the challenge (RFC 7636 S256);
//! - the REST API under `/api/v3` (GitHub Enterprise Server's prefix):
//!   `/user`, `/user/emails`, `/user/orgs`, `/user/teams`, with
//!   `Authorization: Bearer TOKEN` or `token TOKEN`, and `401 {"message":
//!   "Requires authentication"}` / `"Bad credentials"` otherwise.
//!
//! "Signing in to GitHub" is `POST /session` (form `login`), which sets the
//! stand-in's session cookie in that browser, as github.com's own sign-in
//! would.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use berth::tls::LocalCa;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The OAuth app berth is registered as.
pub const CLIENT_ID: &str = "Iv1.berthtest";
/// ...and its secret.
pub const CLIENT_SECRET: &str = "gh-s3cret/with+odd=chars";

/// A GitHub account as the stand-in knows it.
#[derive(Clone, Debug, Default)]
pub struct Account {
    pub login: String,
    pub id: i64,
    /// (address, verified, primary)
    pub emails: Vec<(String, bool, bool)>,
    pub orgs: Vec<String>,
    /// (organization, team slug)
    pub teams: Vec<(String, String)>,
}

impl Account {
    /// `login` with one verified primary address.
    pub fn new(login: &str, id: i64, email: &str) -> Account {
        Account {
            login: login.into(),
            id,
            emails: vec![(email.into(), true, true)],
            ..Default::default()
        }
    }

    pub fn in_org(mut self, org: &str) -> Account {
        self.orgs.push(org.into());
        self
    }

    pub fn in_team(mut self, org: &str, slug: &str) -> Account {
        self.teams.push((org.into(), slug.into()));
        self
    }
}

/// A code GitHub handed out and what it was for.
struct Grant {
    login: String,
    redirect_uri: String,
    challenge: String,
}

#[derive(Default)]
struct Shared {
    redirect_uri: Mutex<String>,
    accounts: Mutex<HashMap<String, Account>>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, String>>,
    /// Token requests whose `code_verifier` matched the code's challenge.
    pkce_verified: AtomicUsize,
    /// ...and those refused because it did not (or was missing).
    pkce_refused: AtomicUsize,
    /// Authorization requests, and the scopes they asked for.
    scopes: Mutex<Vec<String>>,
}

/// The running stand-in.
pub struct GitHub {
    port: u16,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for GitHub {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

fn random() -> String {
    let mut raw = [0u8; 20];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    hex::encode(raw)
}

impl GitHub {
    /// Binds the port (so berth can be configured with the URLs first).
    pub async fn bind() -> GitHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        GitHub {
            port: listener.local_addr().unwrap().port(),
            shared: Arc::default(),
            listener: Some(listener),
            task: None,
        }
    }

    /// The web address (`github.url`).
    pub fn url(&self) -> String {
        format!("https://github.localhost:{}", self.port)
    }

    /// The REST API address (`github.api_url`), GitHub Enterprise style.
    pub fn api_url(&self) -> String {
        format!("{}/api/v3", self.url())
    }

    /// Adds (or replaces) an account.
    pub fn add(&self, account: Account) {
        self.shared
            .accounts
            .lock()
            .unwrap()
            .insert(account.login.clone(), account);
    }

    pub fn pkce_verified(&self) -> usize {
        self.shared.pkce_verified.load(Ordering::SeqCst)
    }

    pub fn pkce_refused(&self) -> usize {
        self.shared.pkce_refused.load(Ordering::SeqCst)
    }

    /// The `scope` of every authorization request so far.
    pub fn scopes(&self) -> Vec<String> {
        self.shared.scopes.lock().unwrap().clone()
    }

    /// Starts serving, with a certificate for `github.localhost` from the
    /// CA in `ca_dir`, accepting `redirect_uri` for [`CLIENT_ID`].
    pub fn start(&mut self, ca_dir: &Path, redirect_uri: &str) {
        *self.shared.redirect_uri.lock().unwrap() = redirect_uri.to_owned();
        let ca = LocalCa::load_or_create(ca_dir).unwrap();
        let leaf = ca.issue(&["github.localhost".to_owned()]).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let app = Router::new()
            .route("/session", post(session))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/api/v3/user", get(user))
            .route("/api/v3/user/emails", get(emails))
            .route("/api/v3/user/orgs", get(orgs))
            .route("/api/v3/user/teams", get(teams))
            .with_state(self.shared.clone());
        let listener = self.listener.take().expect("started once");
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        }));
    }
}

/// `POST /session`: this browser is now signed in to "GitHub" as `login`.
async fn session(Form(f): Form<HashMap<String, String>>) -> Response {
    let login = f.get("login").cloned().unwrap_or_default();
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            format!("user_session={login}; Path=/; Secure; HttpOnly"),
        )],
    )
        .into_response()
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("user_session=").map(str::to_owned))
        .filter(|l| !l.is_empty())
}

fn error_page(status: StatusCode, text: &str) -> Response {
    (status, text.to_owned()).into_response()
}

/// `GET /login/oauth/authorize`
async fn authorize(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID {
        return error_page(StatusCode::NOT_FOUND, "unknown client_id");
    }
    let registered = s.redirect_uri.lock().unwrap().clone();
    if get("redirect_uri") != registered {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The redirect_uri is not associated with this application.",
        );
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        return error_page(
            StatusCode::BAD_REQUEST,
            "this stand-in requires PKCE with S256 (berth must send it)",
        );
    }
    s.scopes.lock().unwrap().push(get("scope").to_owned());
    let Some(login) = session_of(&headers) else {
        return error_page(StatusCode::OK, "Sign in to GitHub");
    };
    let code = random()[..20].to_owned();
    s.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            login,
            redirect_uri: registered.clone(),
            challenge: get("code_challenge").to_owned(),
        },
    );
    let query =
        serde_urlencoded::to_string([("code", code.as_str()), ("state", get("state"))]).unwrap();
    (
        StatusCode::FOUND,
        [(header::LOCATION, format!("{registered}?{query}"))],
    )
        .into_response()
}

/// `POST /login/oauth/access_token`
async fn access_token(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let json_wanted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let answer = |fields: Vec<(&str, String)>| -> Response {
        if json_wanted {
            let map: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::String(v)))
                .collect();
            Json(Value::Object(map)).into_response()
        } else {
            (
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                serde_urlencoded::to_string(fields).unwrap(),
            )
                .into_response()
        }
    };
    let error = |code: &str, description: &str| {
        answer(vec![
            ("error", code.to_owned()),
            ("error_description", description.to_owned()),
            (
                "error_uri",
                "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors".to_owned(),
            ),
        ])
    };
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    // A code is good once, whatever happens next.
    let Some(grant) = s.codes.lock().unwrap().remove(get("code")) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if get("redirect_uri") != grant.redirect_uri {
        return error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    let verifier = get("code_verifier");
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if verifier.len() < 43 || computed != grant.challenge {
        s.pkce_refused.fetch_add(1, Ordering::SeqCst);
        return error(
            "bad_verification_code",
            "The code_verifier does not match the code_challenge.",
        );
    }
    s.pkce_verified.fetch_add(1, Ordering::SeqCst);
    let token = format!("gho_{}", random());
    s.tokens
        .lock()
        .unwrap()
        .insert(token.clone(), grant.login.clone());
    answer(vec![
        ("access_token", token),
        ("token_type", "bearer".to_owned()),
        ("scope", "read:org,read:user,user:email".to_owned()),
    ])
}

/// The account the request's token belongs to, or GitHub's 401.
fn caller(s: &Shared, headers: &HeaderMap) -> Result<Account, (StatusCode, Json<Value>)> {
    let unauthorized = |message: &str| {
        (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"message": message, "documentation_url": "https://docs.github.com/rest", "status": "401"}),
            ),
        )
    };
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized("Requires authentication"));
    };
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "))
        .unwrap_or("");
    let login = s.tokens.lock().unwrap().get(token).cloned();
    let account = login.and_then(|l| s.accounts.lock().unwrap().get(&l).cloned());
    account.ok_or_else(|| unauthorized("Bad credentials"))
}

fn org_json(login: &str) -> Value {
    json!({"login": login, "id": login.len() as i64 * 1000, "node_id": "O_x",
           "url": format!("https://api.github.com/orgs/{login}"), "description": null})
}

/// `GET /user`
async fn user(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match caller(&s, &headers) {
        Ok(a) => Json(json!({
            "login": a.login, "id": a.id, "node_id": "U_x", "type": "User",
            "site_admin": false, "name": null, "email": null,
        }))
        .into_response(),
        Err(unauthorized) => unauthorized.into_response(),
    }
}

/// `GET /user/emails`
async fn emails(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match caller(&s, &headers) {
        Ok(a) => Json(
            a.emails
                .iter()
                .map(|(e, verified, primary)| {
                    json!({"email": e, "verified": verified, "primary": primary, "visibility": "private"})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(unauthorized) => unauthorized.into_response(),
    }
}

/// `GET /user/orgs`
async fn orgs(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match caller(&s, &headers) {
        Ok(a) => Json(a.orgs.iter().map(|o| org_json(o)).collect::<Vec<_>>()).into_response(),
        Err(unauthorized) => unauthorized.into_response(),
    }
}

/// `GET /user/teams`
async fn teams(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match caller(&s, &headers) {
        Ok(a) => Json(
            a.teams
                .iter()
                .enumerate()
                .map(|(i, (org, slug))| {
                    json!({"id": i + 1, "node_id": "T_x", "name": slug, "slug": slug,
                           "privacy": "closed", "permission": "pull",
                           "organization": org_json(org)})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(unauthorized) => unauthorized.into_response(),
    }
}

/// A berth (control + edge) signing in with the stand-in, whose `[github]`
/// is `GithubConfig` as `tweak` leaves it (allowed organization `acme` by
/// default), trusting the stand-in's certificate through `github.ca_file`.
pub async fn with_github(
    tmp: &tempfile::TempDir,
    tweak: impl FnOnce(&mut berth::config::GithubConfig),
    no_dev_agent: bool,
) -> (super::Berth, GitHub) {
    let mut gh = GitHub::bind().await;
    let dir = tmp.path().join("data");
    let mut cfg = berth::config::GithubConfig {
        client_id: CLIENT_ID.into(),
        client_secret: berth::auth::Secret::new(CLIENT_SECRET),
        url: gh.url(),
        api_url: gh.api_url(),
        allowed_organizations: vec!["acme".into()],
        allowed_teams: vec![],
        organization: None,
        create_users: true,
        ca_file: Some(dir.join("ca.pem")),
        label: "Sign in with GitHub".into(),
        teams_as_groups: false,
    };
    tweak(&mut cfg);
    let berth = super::Berth::start_with(super::Options {
        dir: Some(dir.clone()),
        github: Some(cfg),
        no_dev_agent,
        ..Default::default()
    })
    .await;
    gh.start(&dir, &berth.api_url("/signin/github/callback"));
    (berth, gh)
}

/// A browser: its own cookie jar, trusting berth's CA (which also signed
/// the stand-in's certificate), following no redirects by itself.
pub fn browser(berth: &super::Berth) -> reqwest::Client {
    let pem = std::fs::read(&berth.ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .dns_resolver(Arc::new(super::Loopback))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .http1_only()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

pub use super::redirects::{location, state_of};

/// Signs browser `b` in to the stand-in as `login` (GitHub's own session).
pub async fn github_session(b: &reqwest::Client, gh: &GitHub, login: &str) {
    let res = b
        .post(format!("{}/session", gh.url()))
        .form(&[("login", login)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

/// Presses berth's "Sign in with GitHub" button (for an app URL and its
/// sign-in state, when given) and follows the redirects through the
/// stand-in, as `login`, up to berth's callback; returns berth's answer to
/// the callback (not followed further) and the callback URL.
pub async fn sign_in(
    b: &reqwest::Client,
    berth: &super::Berth,
    gh: &GitHub,
    login: &str,
    back: Option<(&str, &str)>,
) -> (reqwest::Response, String) {
    github_session(b, gh, login).await;
    let mut form = vec![];
    if let Some((return_to, state)) = back {
        form = vec![("return_to", return_to), ("state", state)];
    }
    let res = b
        .post(berth.api_url("/signin/github"))
        .header("origin", berth.api_url(""))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let mut url = location(&res);
    assert!(
        url.starts_with(&format!("{}/login/oauth/authorize?", gh.url())),
        "{url}"
    );
    for _ in 0..5 {
        if url.starts_with(&berth.api_url("/signin/github/callback")) {
            let res = b.get(&url).send().await.unwrap();
            return (res, url);
        }
        let res = b.get(&url).send().await.unwrap();
        assert!(
            res.status().is_redirection(),
            "{url}: {} {}",
            res.status(),
            res.text().await.unwrap()
        );
        url = location(&res);
    }
    panic!("no way back to berth from the stand-in");
}
