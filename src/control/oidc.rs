//! Sign-in through an OpenID Connect provider on the control host:
//! `POST /signin/oidc` (the sign-in page's button) or `GET /signin/oidc` (a
//! link) sends the browser to the provider (authorization-code flow, PKCE
//! S256, state and nonce: see [`crate::auth::oidc`]);
//! `GET /signin/oidc/callback` exchanges the code, verifies the ID token,
//! finds the user by verified e-mail (or creates one), and starts the same
//! session a password sign-in does.

use super::federated::{self, start_again, CallbackQuery, Service, ServiceHttp, StartQuery};
use super::signin::{cross_site, forbidden_cross_site, page};
use super::ControlState;
use crate::auth::cookie::Purpose;
use crate::auth::oidc::{
    admit, authorization_url, verify_id_token, ClientAuth, Expected, Flow, IdClaims, Metadata,
    OidcError, UserInfo,
};
use crate::config::OidcConfig;
use crate::store::MemberSource;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use std::time::{Duration, Instant};

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
    http: ServiceHttp,
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
        Ok(OidcClient {
            http: ServiceHttp::new(cfg.ca_file.as_deref())?,
            cfg,
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
            let meta: Metadata = self.http.call(&url, None, None).await?;
            meta.check(&self.cfg.issuer).map_err(|e| e.to_string())?;
            let keys: JwkSet = self.http.call(&meta.jwks_uri, None, None).await?;
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
            c.keys = self.http.call(&c.meta.jwks_uri, None, None).await?;
            c.keys_fetched = Instant::now();
        }
        let c = cache.as_ref().expect("filled above");
        Ok((c.meta.clone(), c.keys.clone()))
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
        let answer: TokenAnswer = self
            .http
            .call(&meta.token_endpoint, Some(&form), auth)
            .await?;
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

    /// The userinfo answer (OpenID Connect Core §5.3), asked only when the
    /// ID token lacks the e-mail or the groups claim berth reads; its `sub`
    /// must be the ID token's. `None` without an endpoint or access token.
    async fn userinfo(
        &self,
        claims: &IdClaims,
        access_token: Option<&str>,
    ) -> Result<Option<UserInfo>, String> {
        let lacks_groups = self
            .cfg
            .groups_claim
            .as_deref()
            .is_some_and(|c| !claims.has(c));
        if claims.email.is_some() && !lacks_groups {
            return Ok(None);
        }
        let (meta, _) = self.provider(false).await?;
        let (Some(url), Some(token)) = (meta.userinfo_endpoint, access_token) else {
            return Ok(None);
        };
        let info: UserInfo = self
            .http
            .call(&url, None, Some(format!("Bearer {token}")))
            .await?;
        if info.sub != claims.sub {
            return Err("the provider's userinfo answer is about another subject".into());
        }
        Ok(Some(info))
    }
}

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Single sign-on is off",
        "<p>This berth has no identity provider configured. <a href=\"/signin\">Sign in with a password</a>.</p>",
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
    federated::begin(st, &*oidc, q, interactive).await
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
    federated::callback(&st, &*oidc, &headers, q).await
}

/// The provider's part of the callback: a verified ID token (and userinfo
/// when it lacks a claim), its issuer checked.
impl Service for OidcClient {
    const PURPOSE: Purpose = Purpose::Oidc;
    const NAME: &'static str = "The identity provider";
    const METHOD: &'static str = "oidc";
    type Token = (IdClaims, Option<String>);

    async fn authorization_url(&self, flow: &Flow) -> Result<String, String> {
        let (meta, _) = self.provider(false).await?;
        Ok(authorization_url(
            &meta,
            &self.cfg.client_id,
            &self.redirect_uri,
            &self.cfg.scopes,
            flow,
        ))
    }

    fn check(&self, q: &CallbackQuery) -> Option<Response> {
        q.iss
            .as_deref()
            .is_some_and(|i| i != self.cfg.issuer)
            .then(|| {
                start_again(
                StatusCode::BAD_REQUEST,
                "Sign-in refused",
                "The answer came from another identity provider than the one berth sent you to.",
            )
            })
    }

    async fn exchange(&self, code: &str, flow: &Flow) -> Result<Self::Token, String> {
        OidcClient::exchange(self, code, flow).await
    }

    async fn identify(
        &self,
        (claims, access): Self::Token,
    ) -> Result<(String, Result<federated::Admitted, String>), String> {
        let info = self.userinfo(&claims, access.as_deref()).await?;
        // The e-mail claims from the ID token, else from userinfo.
        let (email, verified) = match (&claims.email, &info) {
            (Some(e), _) => (Some(e.clone()), claims.email_verified),
            (None, Some(i)) => (i.email.clone(), i.email_verified),
            (None, None) => (None, None),
        };
        let admitted = admit(email.as_deref(), verified, &self.cfg.allowed_domains)
            .map(|email| federated::Admitted {
                email,
                wanted_name: None,
                groups: self.cfg.groups_claim.as_ref().map(|claim| {
                    (
                        MemberSource::Oidc,
                        claims.groups_or_userinfo(claim, info.as_ref()),
                    )
                }),
            })
            .map_err(|refusal| refusal.to_string());
        Ok((format!("oidc:{}", claims.sub), admitted))
    }

    fn accounts(&self) -> (bool, Option<&str>) {
        (self.cfg.create_users, self.cfg.organization.as_deref())
    }
}
