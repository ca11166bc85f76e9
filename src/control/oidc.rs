//! Sign-in through an OpenID Connect provider on the control host:
//! `POST /signin/oidc` (the sign-in page's button) or `GET /signin/oidc` (a
//! link) sends the browser to the provider (authorization-code flow, PKCE
//! S256, state and nonce: see [`crate::auth::oidc`]);
//! `GET /signin/oidc/callback` exchanges the code, verifies the ID token,
//! finds the user by verified e-mail (or creates one), and starts the same
//! session a password sign-in does.

use super::signin::{cross_site, forbidden_cross_site, page, start_session, Back};
use super::ControlState;
use crate::auth::cookie::{self, Purpose, OIDC_COOKIE, OIDC_RETURN_COOKIE};
use crate::auth::oidc::{
    admit, authorization_url, username_for, verify_id_token, ClientAuth, Expected, Flow, IdClaims,
    Metadata, OidcError, UserInfo, FLOW_TTL_SECS,
};
use crate::catalog::{Change, User};
use crate::config::OidcConfig;
use crate::html::escape_html;
use crate::store::{NewUser, Role};
use crate::tls::client::{client_config, fetch};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use jsonwebtoken::jwk::JwkSet;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one call to the provider may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider.
const MAX_ANSWER: usize = 1024 * 1024;
/// Discovery and keys are fetched again after this long.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// An unknown key id refetches the key set at most this often.
const KEY_REFRESH_MIN: Duration = Duration::from_secs(30);

/// The provider as last fetched.
struct Cached {
    meta: Metadata,
    keys: JwkSet,
    fetched: Instant,
    keys_fetched: Instant,
}

/// The control plane's OpenID Connect client: configuration, a TLS client
/// for the provider, and its discovery document and keys, cached.
pub struct OidcClient {
    cfg: OidcConfig,
    tls: Arc<rustls::ClientConfig>,
    redirect_uri: String,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.cfg.issuer)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl OidcClient {
    /// A client for `cfg`, answering at `{base_url}/signin/oidc/callback`.
    pub fn new(cfg: OidcConfig, base_url: &str) -> Result<OidcClient, crate::tls::TlsError> {
        let tls = client_config(cfg.ca_file.as_deref(), &[b"http/1.1"])?;
        Ok(OidcClient {
            cfg,
            tls,
            redirect_uri: format!("{base_url}/signin/oidc/callback"),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// The sign-in button's text.
    pub fn label(&self) -> &str {
        &self.cfg.label
    }

    /// The provider's metadata and keys; `refresh_keys` fetches the keys
    /// again (an unknown key id: the provider rotated).
    async fn provider(&self, refresh_keys: bool) -> Result<(Metadata, JwkSet), String> {
        let mut cache = self.cache.lock().await;
        let stale = cache
            .as_ref()
            .is_none_or(|c| c.fetched.elapsed() > CACHE_TTL);
        if stale {
            let url = format!(
                "{}/.well-known/openid-configuration",
                self.cfg.issuer.trim_end_matches('/')
            );
            let meta: Metadata = self.call(&url, None, None).await?;
            meta.check(&self.cfg.issuer).map_err(|e| e.to_string())?;
            let keys: JwkSet = self.call(&meta.jwks_uri, None, None).await?;
            let now = Instant::now();
            *cache = Some(Cached {
                meta,
                keys,
                fetched: now,
                keys_fetched: now,
            });
        } else if let Some(c) = cache
            .as_mut()
            .filter(|c| refresh_keys && c.keys_fetched.elapsed() > KEY_REFRESH_MIN)
        {
            c.keys = self.call(&c.meta.jwks_uri, None, None).await?;
            c.keys_fetched = Instant::now();
        }
        let c = cache.as_ref().expect("filled above");
        Ok((c.meta.clone(), c.keys.clone()))
    }

    /// GET (or POST a form to) `url` over HTTPS and parse the JSON answer;
    /// errors are sentences naming the URL and, for OAuth errors, the
    /// provider's own `error` and `error_description`.
    async fn call<T: DeserializeOwned>(
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
            struct OAuthError {
                error: String,
                #[serde(default)]
                error_description: Option<String>,
            }
            return Err(match serde_json::from_slice::<OAuthError>(&raw) {
                Ok(e) => format!(
                    "{url} answered {status}: {}{}",
                    e.error,
                    e.error_description
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
                Err(_) => format!("{url} answered {status}"),
            });
        }
        serde_json::from_slice(&raw).map_err(|e| format!("{url} answered with unusable JSON: {e}"))
    }

    /// Exchanges the code; returns the verified ID token's claims and the
    /// access token.
    async fn exchange(
        &self,
        code: &str,
        flow: &Flow,
    ) -> Result<(IdClaims, Option<String>), String> {
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            access_token: Option<String>,
        }
        let (meta, keys) = self.provider(false).await?;
        let secret = self.cfg.client_secret.expose();
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", flow.verifier.as_str()),
        ];
        let auth = match meta.client_auth() {
            ClientAuth::Basic => {
                // RFC 6749 §2.3.1: both parts form-encoded before Basic.
                let enc = |s: &str| {
                    serde_urlencoded::to_string([("", s)]).expect("strings always encode")[1..]
                        .to_owned()
                };
                let pair = format!("{}:{}", enc(&self.cfg.client_id), enc(secret));
                Some(format!("Basic {}", STANDARD.encode(pair)))
            }
            ClientAuth::Post => {
                form.push(("client_id", &self.cfg.client_id));
                form.push(("client_secret", secret));
                None
            }
        };
        let answer: TokenAnswer = self.call(&meta.token_endpoint, Some(&form), auth).await?;
        let id_token = answer
            .id_token
            .ok_or("the provider's token answer has no id_token (is \"openid\" in oidc.scopes?)")?;
        let expected = Expected {
            issuer: &self.cfg.issuer,
            client_id: &self.cfg.client_id,
            nonce: &flow.nonce,
        };
        let claims = match verify_id_token(&id_token, &keys, &expected) {
            Err(OidcError::IdToken(m)) if m.starts_with("no key") => {
                let (_, keys) = self.provider(true).await?;
                verify_id_token(&id_token, &keys, &expected)
            }
            other => other,
        }
        .map_err(|e| e.to_string())?;
        Ok((claims, answer.access_token))
    }

    /// The verified e-mail claims: from the ID token, else from userinfo
    /// (whose `sub` must be the ID token's).
    async fn email_of(
        &self,
        claims: &IdClaims,
        access_token: Option<&str>,
    ) -> Result<(Option<String>, Option<bool>), String> {
        if claims.email.is_some() {
            return Ok((claims.email.clone(), claims.email_verified));
        }
        let (meta, _) = self.provider(false).await?;
        let (Some(url), Some(token)) = (meta.userinfo_endpoint, access_token) else {
            return Ok((None, None));
        };
        let info: UserInfo = self
            .call(&url, None, Some(format!("Bearer {token}")))
            .await?;
        if info.sub != claims.sub {
            return Err("the provider's userinfo answer is about another subject".into());
        }
        Ok((info.email, info.email_verified))
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `?return_to=https://{app-host}/path&state=...` (or the same as a form).
#[derive(Deserialize)]
pub(crate) struct StartQuery {
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// What `__Host-berth_oidc_to` carries while the browser is at the
/// provider: where to go back, the app host's sign-in state, and whether
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

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Single sign-on is off",
        "<p>This berth has no identity provider configured. <a href=\"/signin\">Sign in with a password</a>.</p>",
    )
}

fn unavailable(why: &str) -> Response {
    tracing::warn!(error = why, "OpenID provider unavailable");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in unavailable",
        &format!(
            "<p>berth cannot use the identity provider right now: {}</p><p><a href=\"/signin\">Try again</a> in a moment.</p>",
            escape_html(why)
        ),
    )
}

/// `GET /signin/oidc`: off to the provider. Any page may link here, so
/// the visitor is asked before the sign-in ends on another user's app.
pub(crate) async fn start(State(st): State<ControlState>, Query(q): Query<StartQuery>) -> Response {
    begin(&st, q, false).await
}

/// `POST /signin/oidc`: the sign-in page's button (Origin checked), so the
/// visitor chose to sign in for the app they are going to.
pub(crate) async fn start_from_page(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Form(q): Form<StartQuery>,
) -> Response {
    if cross_site(&st, &headers) {
        return forbidden_cross_site();
    }
    begin(&st, q, true).await
}

async fn begin(st: &ControlState, q: StartQuery, interactive: bool) -> Response {
    let Some(oidc) = st.oidc.clone() else {
        return not_configured();
    };
    let back = Back::new(q.return_to.as_deref(), q.state.as_deref());
    if let Err(res) = back.check(st).await {
        return res;
    }
    let (meta, _) = match oidc.provider(false).await {
        Ok(p) => p,
        Err(e) => return unavailable(&e),
    };
    let flow = Flow::start(&st.signin.key);
    let url = authorization_url(
        &meta,
        &oidc.cfg.client_id,
        &oidc.redirect_uri,
        &oidc.cfg.scopes,
        &flow,
    );
    let signed = st.signin.key.sign(
        Purpose::Oidc,
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

fn append_cookie(h: &mut HeaderMap, name: &str, value: &str, max_age: i64) {
    if let Ok(v) = HeaderValue::from_str(&cookie::set_cookie(name, value, max_age)) {
        h.append(header::SET_COOKIE, v);
    }
}

/// The provider's redirect back.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// The one value of cookie `name`, if the request carries exactly one
/// (several copies, whichever is whose, count as none).
fn cookie_value<'a>(headers: &'a HeaderMap, name: &'a str) -> Option<&'a str> {
    match cookie::copies(headers, name)[..] {
        [one] => Some(one),
        _ => None,
    }
}

fn start_again(status: StatusCode, title: &str, why: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p>{}</p><p><a href=\"/signin\">Sign in again</a>.</p>",
            escape_html(why)
        ),
    )
}

/// `GET /signin/oidc/callback`: the provider sends the browser back here.
pub(crate) async fn callback(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = st.oidc.clone() else {
        return not_configured();
    };
    // Each callback may cost a request to the provider: limited per source
    // like password sign-ins (no user name is known yet).
    let source = super::client_addr().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if let Err(wait) = st.login.admit(source, None) {
        return super::signin::too_many_attempts(super::login::Refusal::retry_after_secs(wait));
    }
    let mut res = finish(&st, &oidc, &headers, q).await;
    // The attempt is over either way: a second visit must start again.
    append_cookie(res.headers_mut(), OIDC_COOKIE, "", 0);
    append_cookie(res.headers_mut(), OIDC_RETURN_COOKIE, "", 0);
    res
}

async fn finish(
    st: &ControlState,
    oidc: &OidcClient,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    let now = now_unix();
    let values = cookie::copies(headers, OIDC_COOKIE);
    let started = cookie::decide(&values, |v| {
        st.signin
            .key
            .verify(Purpose::Oidc, v, &st.signin.base_domain, now)
            .ok()
    })
    .ok();
    let Some(state) = started.filter(|s| q.state.as_deref() == Some(s.as_str())) else {
        return start_again(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started in this browser, was already used, or took longer than 10 minutes.",
        );
    };
    if q.iss.as_deref().is_some_and(|i| i != oidc.cfg.issuer) {
        return start_again(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "The answer came from another identity provider than the one berth sent you to.",
        );
    }
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return start_again(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            &format!("The identity provider did not sign you in: {error}. {detail}"),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return start_again(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "The identity provider sent you back without a code.",
        );
    };
    let flow = Flow::resume(&st.signin.key, &state);
    let (claims, access) = match oidc.exchange(&code, &flow).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "OpenID sign-in failed");
            return start_again(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                &format!("berth could not complete the sign-in: {e}"),
            );
        }
    };
    let (email, verified) = match oidc.email_of(&claims, access.as_deref()).await {
        Ok(e) => e,
        Err(e) => return unavailable(&e),
    };
    let email = match admit(email.as_deref(), verified, &oidc.cfg.allowed_domains) {
        Ok(e) => e,
        Err(refusal) => {
            st.audit(
                &format!("oidc:{}", claims.sub),
                "session.refused",
                &refusal.to_string(),
            )
            .await;
            return start_again(StatusCode::FORBIDDEN, "Not allowed", &refusal.to_string());
        }
    };
    let user = match user_for(st, oidc, &email).await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let pending: Pending = cookie_value(headers, OIDC_RETURN_COOKIE)
        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
        .and_then(|b| serde_urlencoded::from_bytes(&b).ok())
        .unwrap_or_default();
    let back = Back::new(pending.return_to.as_deref(), pending.state.as_deref());
    if let Err(res) = back.check(st).await {
        return res;
    }
    start_session(st, &user, "oidc", back, pending.interactive).await
}

/// The berth user signing in as `email`: the one user with that address,
/// or a new member when `oidc.create_users` allows.
async fn user_for(st: &ControlState, oidc: &OidcClient, email: &str) -> Result<User, Response> {
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
    if !oidc.cfg.create_users {
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
    let username = username_for(email, max_len, |n| st.catalog.has_user_named(n));
    // A password nobody knows: this user signs in through the provider.
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let created = st
        .store
        .create_user(NewUser {
            username,
            email: email.to_owned(),
            password: hex::encode(raw),
            role: Role::Member,
            organization: oidc.cfg.organization.clone(),
        })
        .await;
    match created {
        Ok(row) => {
            let user = row.to_catalog();
            st.apply(Change::User(user.clone())).await;
            st.audit(&user.username, "user.created", "oidc").await;
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
