//! What sign-in through another identity service shares, whichever it is
//! (OpenID Connect in [`super::oidc`], GitHub in [`super::github`]): the
//! HTTPS client for the service, the round trip's cookies (the signed
//! `state` in `__Host-berth_oidc`, where to go back in
//! `__Host-berth_oidc_to`), the callback's rate limit, and finding or
//! creating the berth user by verified e-mail before the session starts.

use super::signin::{page, start_session, Back};
use super::ControlState;
use crate::auth::cookie::{self, Purpose, OIDC_COOKIE, OIDC_RETURN_COOKIE};
use crate::auth::oidc::{Flow, FLOW_TTL_SECS};
use crate::catalog::{Change, User};
use crate::html::escape_html;
use crate::store::{MemberSource, NewUser, Role};
use crate::tls::client::{client_config, fetch};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long one call to the service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the service.
const MAX_ANSWER: usize = 1024 * 1024;

/// An HTTPS client for an identity service's endpoints: JSON answers,
/// errors as sentences naming the URL.
pub(super) struct ServiceHttp {
    tls: Arc<rustls::ClientConfig>,
}

impl ServiceHttp {
    /// A client trusting `ca_file`, or the system's CAs.
    pub(super) fn new(ca_file: Option<&Path>) -> Result<ServiceHttp, crate::tls::TlsError> {
        Ok(ServiceHttp {
            tls: client_config(ca_file, &[b"http/1.1"])?,
        })
    }

    /// GET (or POST a form to) `url` over HTTPS with `Accept:
    /// application/json` and parse the JSON answer; errors are sentences
    /// naming the URL and the service's own `error` and
    /// `error_description` (OAuth) or `message` (GitHub's REST API).
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        url: &str,
        form: Option<&[(&str, &str)]>,
        auth: Option<String>,
    ) -> Result<T, String> {
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(url, form, auth))
            .await
            .map_err(|_| format!("{url} did not answer within {} s", CALL_TIMEOUT.as_secs()))?
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        url: &str,
        form: Option<&[(&str, &str)]>,
        auth: Option<String>,
    ) -> Result<T, String> {
        let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{url} is not https://"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url} has no host"))?;
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(443);
        let fail = |e: &dyn std::fmt::Display| format!("cannot reach {url}: {e}");
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut req = http::Request::builder()
            .uri(path)
            .header(header::HOST, authority.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let body = match form {
            Some(fields) => {
                req = req
                    .method(http::Method::POST)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(serde_urlencoded::to_string(fields).expect("strings always encode"))
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| fail(&e))?;
        let (status, raw) = fetch(host, port, self.tls.clone(), req, MAX_ANSWER).await?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ServiceError {
                #[serde(default)]
                error: Option<String>,
                #[serde(default)]
                error_description: Option<String>,
                #[serde(default)]
                message: Option<String>,
            }
            let said = serde_json::from_slice::<ServiceError>(&raw)
                .ok()
                .and_then(|e| match (e.error, e.error_description, e.message) {
                    (Some(e), Some(d), _) => Some(format!("{e} ({d})")),
                    (Some(e), None, _) => Some(e),
                    (None, _, Some(m)) => Some(m),
                    _ => None,
                });
            return Err(match said {
                Some(s) => format!("{url} answered {status}: {s}"),
                None => format!("{url} answered {status}"),
            });
        }
        serde_json::from_slice(&raw).map_err(|e| format!("{url} answered with unusable JSON: {e}"))
    }
}

pub(super) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `?return_to=https://{app-host}/path&state=...` (or the same as a form):
/// how a sign-in through a service starts.
#[derive(Deserialize)]
pub(crate) struct StartQuery {
    #[serde(default)]
    pub(super) return_to: Option<String>,
    #[serde(default)]
    pub(super) state: Option<String>,
}

/// What `__Host-berth_oidc_to` carries while the browser is at the
/// service: where to go back, the app host's sign-in state, and whether
/// the visitor started this from berth's own sign-in page.
#[derive(Deserialize, serde::Serialize, Default)]
struct Pending {
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    interactive: bool,
}

/// 503: the service cannot be used right now (logged with the reason).
pub(super) fn unavailable(why: &str) -> Response {
    tracing::warn!(error = why, "identity service unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        &format!(
            "<p>berth cannot use the identity service right now: {}</p><p><a href=\"/signin\">Try again</a> in a moment.</p>",
            escape_html(why)
        ),
    )
}

/// A refusal page with the way back to the sign-in page.
pub(super) fn start_again(status: StatusCode, title: &str, why: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p>{}</p><p><a href=\"/signin\">Sign in again</a>.</p>",
            escape_html(why)
        ),
    )
}

fn append_cookie(h: &mut HeaderMap, name: &str, value: &str, max_age: i64) {
    if let Ok(v) = HeaderValue::from_str(&cookie::set_cookie(name, value, max_age)) {
        h.append(header::SET_COOKIE, v);
    }
}

/// The one value of cookie `name`, if the request carries exactly one
/// (several copies, whichever is whose, count as none).
fn cookie_value<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    match cookie::copies(headers, name)[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// Sends the browser to the service's authorization `url` for `flow`,
/// remembering the flow's state (signed for `purpose`, so one service's
/// state never finishes at another's callback) and where to go back.
fn send_to_service(
    st: &ControlState,
    purpose: Purpose,
    flow: &Flow,
    url: String,
    back: Back<'_>,
    interactive: bool,
) -> Response {
    let signed = st.signin.key.sign(
        purpose,
        &flow.state,
        &st.signin.base_domain,
        now_unix() + FLOW_TTL_SECS,
    );
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response();
    let h = res.headers_mut();
    append_cookie(h, OIDC_COOKIE, &signed, FLOW_TTL_SECS);
    let pending = Pending {
        return_to: back.return_to.map(str::to_owned),
        state: back.state.map(str::to_owned),
        interactive,
    };
    let pending = serde_urlencoded::to_string(&pending).expect("strings always encode");
    append_cookie(
        h,
        OIDC_RETURN_COOKIE,
        &URL_SAFE_NO_PAD.encode(pending),
        FLOW_TTL_SECS,
    );
    res
}

/// The callback's guard: each callback may cost requests to the service,
/// so they are limited per source like password sign-ins (no user name is
/// known yet). `Some(429 page)` when over the limit.
pub(super) fn over_limit(st: &ControlState) -> Option<Response> {
    let source = super::client_addr().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    st.login
        .admit(source, None)
        .err()
        .map(|wait| super::signin::too_many_attempts(super::login::Refusal::retry_after_secs(wait)))
}

/// Ends the attempt on the answer: a second visit must start again.
pub(super) fn end_attempt(res: &mut Response) {
    append_cookie(res.headers_mut(), OIDC_COOKIE, "", 0);
    append_cookie(res.headers_mut(), OIDC_RETURN_COOKIE, "", 0);
}

/// The flow this browser started for `purpose`, when the callback's
/// `state` is the one in its signed cookie (else answer [`expired`]).
pub(super) fn resume(
    st: &ControlState,
    headers: &HeaderMap,
    purpose: Purpose,
    state: Option<&str>,
) -> Option<Flow> {
    let now = now_unix();
    let values = cookie::copies(headers, OIDC_COOKIE);
    let started = cookie::decide(&values, |v| {
        st.signin
            .key
            .verify(purpose, v, &st.signin.base_domain, now)
            .ok()
    })
    .ok();
    started
        .filter(|s| state == Some(s.as_str()))
        .map(|s| Flow::resume(&st.signin.key, &s))
}

/// The page for a callback that [`resume`] did not recognise.
pub(super) fn expired() -> Response {
    start_again(
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in was not started in this browser, was already used, or took longer than 10 minutes.",
    )
}

/// How a service's sign-ins become berth users.
pub(super) struct Accounts<'a> {
    /// `"oidc"`, `"github"`: the session's method and the audit's word.
    pub method: &'static str,
    pub create_users: bool,
    /// Organization given to users created here.
    pub organization: Option<&'a str>,
    /// The name a new user would like (GitHub's login); else the address's
    /// local part.
    pub wanted_name: Option<&'a str>,
}

/// The berth user signing in as `email`: the one user with that address,
/// or a new member when `accounts.create_users` allows.
pub(super) async fn user_for(
    st: &ControlState,
    email: &str,
    accounts: &Accounts<'_>,
) -> Result<User, Response> {
    let mut found = st.catalog.users_with_email(email);
    match found.len() {
        1 => return Ok(found.remove(0)),
        0 => {}
        _ => {
            return Err(start_again(
                StatusCode::CONFLICT,
                "Ambiguous account",
                &format!("Several berth users have the address {email}; an administrator must give each their own."),
            ))
        }
    }
    if !accounts.create_users {
        return Err(start_again(
            StatusCode::FORBIDDEN,
            "No account",
            &format!("No berth user has the address {email}; ask an administrator to create one."),
        ));
    }
    let max_len = st
        .app_urls
        .label_budget()
        .saturating_sub(crate::host::port_label_len("a", "a", ""));
    let taken = |n: &str| st.catalog.has_user_named(n);
    let username = match accounts.wanted_name {
        Some(name) => crate::auth::oidc::username_from(name, max_len, taken),
        None => crate::auth::oidc::username_for(email, max_len, taken),
    };
    // A password nobody knows: this user signs in through the service.
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let created = st
        .store
        .create_user(NewUser {
            username,
            email: email.to_owned(),
            password: hex::encode(raw),
            role: Role::Member,
            organization: accounts.organization.map(str::to_owned),
        })
        .await;
    match created {
        Ok(row) => {
            let user = row.to_catalog();
            st.apply(Change::User(user.clone())).await;
            st.audit(&user.username, "user.created", accounts.method)
                .await;
            Ok(user)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot create user at first sign-in");
            Err(unavailable(
                "the new account could not be stored; try again",
            ))
        }
    }
}

/// Starts `user`'s session and sends the browser where the sign-in was
/// going (from `__Host-berth_oidc_to`, checked again).
pub(super) async fn sign_in(
    st: &ControlState,
    headers: &HeaderMap,
    user: &User,
    method: &str,
) -> Response {
    let pending: Pending = cookie_value(headers, OIDC_RETURN_COOKIE)
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|b| serde_urlencoded::from_bytes(&b).ok())
        .unwrap_or_default();
    let back = Back::new(pending.return_to.as_deref(), pending.state.as_deref());
    if let Err(res) = back.check(st).await {
        return res;
    }
    start_session(st, user, method, back, pending.interactive).await
}

/// A service's redirect back to its callback.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207's issuer, which an OpenID Connect provider may add.
    pub(super) iss: Option<String>,
}

/// Who a service says signed in, once its own rules admitted them.
pub(super) struct Admitted {
    /// The verified address the berth user is found (or created) by.
    pub email: String,
    /// The name a new user would like (see [`Accounts::wanted_name`]).
    pub wanted_name: Option<String>,
    /// The groups the service puts them in, when berth mirrors them.
    pub groups: Option<(MemberSource, Vec<String>)>,
}

/// What differs between identity services at the callback; [`finish`]
/// does the rest the same way for each.
pub(super) trait Service {
    /// What the round trip's state is signed for.
    const PURPOSE: Purpose;
    /// The service as pages name it at the start of a sentence.
    const NAME: &'static str;
    /// `"oidc"`, `"github"`: the session's method and the audit's word.
    const METHOD: &'static str;
    /// What the code is exchanged for.
    type Token;

    /// Where to send the browser to sign in for `flow` (`Err`: the
    /// service cannot be used now).
    async fn authorization_url(&self, flow: &Flow) -> Result<String, String>;

    /// A refusal page when the redirect itself is wrong (before the code
    /// is used).
    fn check(&self, _q: &CallbackQuery) -> Option<Response> {
        None
    }

    /// Exchanges the code (with the flow's PKCE verifier) for tokens.
    async fn exchange(&self, code: &str, flow: &Flow) -> Result<Self::Token, String>;

    /// Reads who the tokens belong to: `Err` when the service cannot be
    /// used, else who asked (for the audit) and whether they may sign in.
    async fn identify(
        &self,
        token: Self::Token,
    ) -> Result<(String, Result<Admitted, String>), String>;

    /// Whether and how this service creates berth users.
    fn accounts(&self) -> (bool, Option<&str>);
}

/// Starts a sign-in at `service`: checks where it goes back, then sends
/// the browser to the service with a new flow.
pub(super) async fn begin<S: Service>(
    st: &ControlState,
    service: &S,
    q: StartQuery,
    interactive: bool,
) -> Response {
    let back = Back::new(q.return_to.as_deref(), q.state.as_deref());
    if let Err(res) = back.check(st).await {
        return res;
    }
    let flow = Flow::start(&st.signin.key);
    let url = match service.authorization_url(&flow).await {
        Ok(url) => url,
        Err(e) => return unavailable(&e),
    };
    send_to_service(st, S::PURPOSE, &flow, url, back, interactive)
}

/// The callback: checks the round trip, exchanges the code, lets the
/// service identify the person, finds (or creates) the berth user, mirrors
/// their groups and starts the session. Rate limited, and the attempt's
/// cookies are cleared on every answer.
pub(super) async fn callback<S: Service>(
    st: &ControlState,
    service: &S,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    if let Some(res) = over_limit(st) {
        return res;
    }
    let mut res = finish(st, service, headers, q).await;
    end_attempt(&mut res);
    res
}

async fn finish<S: Service>(
    st: &ControlState,
    service: &S,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    let Some(flow) = resume(st, headers, S::PURPOSE, q.state.as_deref()) else {
        return expired();
    };
    if let Some(res) = service.check(&q) {
        return res;
    }
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return start_again(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            &format!("{} did not sign you in: {error}. {detail}", S::NAME),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return start_again(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            &format!("{} sent you back without a code.", S::NAME),
        );
    };
    let token = match service.exchange(&code, &flow).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, method = S::METHOD, "federated sign-in failed");
            return start_again(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                &format!("berth could not complete the sign-in: {e}"),
            );
        }
    };
    let (who, admitted) = match service.identify(token).await {
        Ok(x) => x,
        Err(e) => return unavailable(&e),
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            st.audit(&who, "session.refused", &refusal).await;
            return start_again(StatusCode::FORBIDDEN, "Not allowed", &refusal);
        }
    };
    let (create_users, organization) = service.accounts();
    let accounts = Accounts {
        method: S::METHOD,
        create_users,
        organization,
        wanted_name: admitted.wanted_name.as_deref(),
    };
    let user = match user_for(st, &admitted.email, &accounts).await {
        Ok(user) => user,
        Err(res) => return res,
    };
    if let Some((source, names)) = &admitted.groups {
        if let Err(e) =
            super::groups::sync_from_provider(st, *source, user.id, &user.username, names).await
        {
            tracing::error!(error = ?e, user = %user.username, method = S::METHOD, "cannot update group memberships from the sign-in provider");
            return unavailable("your group memberships could not be stored; try again");
        }
    }
    sign_in(st, headers, &user, S::METHOD).await
}
