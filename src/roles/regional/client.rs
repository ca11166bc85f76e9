//! The regional edge's client of control's edge API
//! ([`crate::protocol::edge_api`]): every call carries the region token,
//! is bounded in time and size, and turns control's JSON errors into one
//! sentence.

use crate::auth::TokenHash;
use crate::catalog::{Link, Session};
use crate::edge::{ControlAnswer, ControlCalls};
use crate::protocol::edge_api::{
    self, EdgeCertificate, Exchange, Hello, Redeem, WakeAnswer, WakeRequest,
};
use crate::protocol::API_ROOT;
use crate::secret::Secret;
use crate::tls::{self, client::client_config, client::send};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one call to control may take (the watch stream excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest single answer or watch line read from control.
pub(super) const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Where control is and how to prove this edge's region.
#[derive(Clone, Debug)]
pub struct ControlLink {
    /// e.g. `https://berth.example.com`
    pub url: String,
    pub token: Secret,
    /// CA to trust for control (else SSL_CERT_FILE or the system store).
    pub ca_file: Option<PathBuf>,
}

/// Calls to control with the region token.
#[derive(Clone)]
pub struct ControlClient {
    link: ControlLink,
    tls: Arc<rustls::ClientConfig>,
    host: String,
    port: u16,
    authority: String,
}

impl ControlClient {
    /// A client for `link`; errors name the URL or the CA file.
    pub fn new(link: ControlLink) -> Result<ControlClient, String> {
        let uri: http::Uri = link
            .url
            .parse()
            .map_err(|_| format!("{:?} is not a URL", link.url))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!("{} must be an https:// URL", link.url));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{} has no host", link.url))?
            .clone();
        let tls =
            client_config(link.ca_file.as_deref(), &[b"http/1.1"]).map_err(|e| e.to_string())?;
        Ok(ControlClient {
            host: authority.host().to_owned(),
            port: authority.port_u16().unwrap_or(443),
            authority: authority.as_str().to_owned(),
            link,
            tls,
        })
    }

    /// Sends one request; returns the status and the response body.
    pub(super) async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(http::StatusCode, hyper::body::Incoming), String> {
        let fail = |e: &dyn std::fmt::Display| format!("control at {}: {e}", self.link.url);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{API_ROOT}{path}"))
            .header(http::header::HOST, &self.authority)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.link.token.expose()),
            )
            .header(
                http::header::USER_AGENT,
                concat!("berth-edge/", env!("CARGO_PKG_VERSION")),
            );
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(&e))?;
        let res = send(&self.host, self.port, self.tls.clone(), req).await?;
        Ok((res.status(), res.into_body()))
    }

    /// One call, bounded by [`CALL_TIMEOUT`]: the status and the whole
    /// answer (at most [`MAX_ANSWER`] bytes).
    async fn round_trip(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), String> {
        let work = async {
            let (status, body) = self.send(method, path, body).await?;
            let raw = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("control at {}: {e}", self.link.url))?
                .to_bytes();
            Ok((status, raw))
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| format!("control at {} did not answer {path} in time", self.link.url))?
    }

    /// A JSON call: `Ok(None)` when control answers `absent` (it has no
    /// such thing, or not yet), `Err` for any other failure, with control's
    /// own message when it sent one.
    async fn call_unless<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        absent: StatusCode,
    ) -> Result<Option<T>, String> {
        let body = body.map(|b| serde_json::to_vec(&b).expect("JSON serializes"));
        let (status, raw) = self.round_trip(method, path, body).await?;
        if status == absent {
            return Ok(None);
        }
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!("control answered {path} with {status}: {msg}"));
        }
        if raw.is_empty() {
            return serde_json::from_str("null")
                .map(Some)
                .map_err(|e| e.to_string());
        }
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| format!("control answered {path} with unusable JSON: {e}"))
    }

    /// A JSON call: `Ok(None)` for 404, `Err` for any other failure.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, String> {
        self.call_unless(method, path, body, StatusCode::NOT_FOUND)
            .await
    }

    /// A certificate for this region's host and wildcard from control: from
    /// its local CA (`self-signed`), or the one it ordered from its ACME CA
    /// for the region (`acme`); `None` while that order is pending (503).
    pub async fn certificate(&self) -> Result<Option<tls::CertAndKey>, String> {
        use base64::Engine;
        let Some(c) = self
            .call_unless::<EdgeCertificate>(
                Method::GET,
                edge_api::CERTIFICATE,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
            )
            .await?
        else {
            return Ok(None);
        };
        let dec = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| "control sent an unusable certificate".to_owned())
        };
        let chain = c
            .chain
            .iter()
            .map(|d| dec(d).map(rustls_pki_types::CertificateDer::from))
            .collect::<Result<Vec<_>, _>>()?;
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(dec(&c.key)?.into());
        Ok(Some(tls::CertAndKey { chain, key }))
    }

    /// Who this edge is, and the cookie key.
    pub async fn hello(&self) -> Result<Hello, String> {
        self.call(Method::GET, edge_api::HELLO, None)
            .await?
            .ok_or_else(|| "control does not know /api/v1/edge/hello (an older version?)".into())
    }

    /// The CA file this client trusts for control, if any (the relay to
    /// other edges trusts the same).
    pub(super) fn ca_file(&self) -> Option<&std::path::Path> {
        self.link.ca_file.as_deref()
    }
}

/// Share links and sign-in codes, through control.
pub(super) struct RemoteControl(pub(super) ControlClient);

impl ControlCalls for RemoteControl {
    fn redeem(&self, hash: TokenHash, _now: i64, source: std::net::IpAddr) -> ControlAnswer<Link> {
        let client = self.0.clone();
        Box::pin(async move {
            let body = serde_json::to_value(Redeem {
                token_hash: hash.to_hex(),
                source: source.to_string(),
            })
            .expect("JSON serializes");
            client
                .call::<Link>(Method::POST, edge_api::REDEEM, Some(body))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "share link redemption failed");
                    None
                })
        })
    }

    fn take_code(&self, code: Exchange, _now: i64) -> ControlAnswer<Session> {
        let client = self.0.clone();
        Box::pin(async move {
            let body = serde_json::to_value(code).expect("JSON serializes");
            client
                .call::<Session>(Method::POST, edge_api::EXCHANGE, Some(body))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "sign-in code exchange failed");
                    None
                })
        })
    }

    fn wake(&self, visit: WakeRequest) -> ControlAnswer<WakeAnswer> {
        let client = self.0.clone();
        Box::pin(async move {
            let body = serde_json::to_value(visit).expect("JSON serializes");
            client
                .call::<WakeAnswer>(Method::POST, edge_api::WAKE, Some(body))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "asking control to wake a workspace failed");
                    None
                })
        })
    }
}
