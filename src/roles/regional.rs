//! A regional edge (`berth edge`, SPEC §6): serves apps under its region's
//! wildcard and accepts agent tunnels, with no database. It asks control
//! who it is (`/api/v1/edge/hello`, with the region token), follows the
//! catalog through the watch stream (a snapshot, then every change), sends a
//! heartbeat every few seconds, and redeems share links through control.
//!
//! When control is unreachable the edge keeps serving from what it knows,
//! and says so in `/readyz` (`"control": "unreachable"`) and in the metric
//! `berth_edge_control_connected`.

use super::StartError;
use crate::auth::cookie::CookieKey;
use crate::auth::signin::{Codes, SignIn, SESSION_TTL_SECS};
use crate::auth::{Secret, TokenHash};
use crate::catalog::{Catalog, Change, Link, Session};
use crate::config::{ServerConfig, TlsMode};
use crate::edge::relay::Relay;
use crate::edge::{ControlCalls, ControlStatus, Edge, Frontdoor};
use crate::protocol::edge_api::{
    self, EdgeCertificate, Exchange, Heartbeat, Hello, Redeem, WatchLine, HEARTBEAT_EVERY,
};
use crate::protocol::API_ROOT;
use crate::telemetry::{self, EdgeMetrics};
use crate::tls::client::{client_config, send};
use crate::tls::{self, SwappableCert};
use crate::tunnel::edge::Tunnels;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long one call to control may take (the watch stream excepted).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A watch stream silent this long (pings come every 5 s) is dead.
const WATCH_SILENCE: Duration = Duration::from_secs(15);
/// The least time between two heartbeats sent for arrivals or departures.
const BEAT_SPACING: Duration = Duration::from_millis(50);
/// Largest single answer or watch line read from control.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

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
    async fn send(
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

    /// A JSON call: `Ok(None)` for 404, `Err` for any other failure.
    async fn call<T: DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, String> {
        let body = body.map(|b| serde_json::to_vec(&b).expect("JSON serializes"));
        let work = async {
            let (status, body) = self.send(method, path, body).await?;
            let raw = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| format!("control at {}: {e}", self.link.url))?
                .to_bytes();
            if status == http::StatusCode::NOT_FOUND {
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
        };
        tokio::time::timeout(CALL_TIMEOUT, work)
            .await
            .map_err(|_| format!("control at {} did not answer {path} in time", self.link.url))?
    }

    /// A certificate for this region's host and wildcard from control: from
    /// its local CA (`self-signed`), or the one it ordered from its ACME CA
    /// for the region (`acme`); `None` while that order is pending.
    pub async fn certificate(&self) -> Result<Option<tls::CertAndKey>, String> {
        use base64::Engine;
        let path = edge_api::CERTIFICATE;
        let (status, body) =
            tokio::time::timeout(CALL_TIMEOUT, self.send(http::Method::GET, path, None))
                .await
                .map_err(|_| {
                    format!("control at {} did not answer {path} in time", self.link.url)
                })??;
        let raw = Limited::new(body, MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("control at {}: {e}", self.link.url))?
            .to_bytes();
        if status == http::StatusCode::SERVICE_UNAVAILABLE {
            return Ok(None);
        }
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&raw)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!("control answered {path} with {status}: {msg}"));
        }
        let c: EdgeCertificate = serde_json::from_slice(&raw)
            .map_err(|e| format!("control answered {path} with unusable JSON: {e}"))?;
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
        self.call(http::Method::GET, edge_api::HELLO, None)
            .await?
            .ok_or_else(|| "control does not know /api/v1/edge/hello (an older version?)".into())
    }
}

/// Share links and sign-in codes, through control.
struct RemoteControl(ControlClient);

impl ControlCalls for RemoteControl {
    fn redeem(
        &self,
        hash: TokenHash,
        _now: i64,
        source: std::net::IpAddr,
    ) -> futures_util::future::BoxFuture<'static, Option<Link>> {
        let client = self.0.clone();
        Box::pin(async move {
            let body = serde_json::to_value(Redeem {
                token_hash: hash.to_hex(),
                source: source.to_string(),
            })
            .expect("JSON serializes");
            client
                .call::<Link>(http::Method::POST, edge_api::REDEEM, Some(body))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "share link redemption failed");
                    None
                })
        })
    }

    fn take_code(
        &self,
        code: String,
        host: String,
        state: String,
        _now: i64,
    ) -> futures_util::future::BoxFuture<'static, Option<Session>> {
        let client = self.0.clone();
        Box::pin(async move {
            let body =
                serde_json::to_value(Exchange { code, host, state }).expect("JSON serializes");
            client
                .call::<Session>(http::Method::POST, edge_api::EXCHANGE, Some(body))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "sign-in code exchange failed");
                    None
                })
        })
    }
}

/// Follows control's watch stream into `catalog` until `stop`, reconnecting
/// with back-off; each (re)connection starts with a full snapshot.
async fn follow(client: ControlClient, catalog: Arc<Catalog>, state: Arc<ControlStatus>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&client, &catalog, &state).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => tracing::debug!(error = %e, "watch stream ended"),
        }
        state.set(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn watch_once(
    client: &ControlClient,
    catalog: &Catalog,
    state: &ControlStatus,
) -> Result<(), String> {
    let (status, mut body) = tokio::time::timeout(
        CALL_TIMEOUT,
        client.send(http::Method::GET, edge_api::WATCH, None),
    )
    .await
    .map_err(|_| "control did not answer the watch in time".to_owned())??;
    if !status.is_success() {
        return Err(format!("control refused the watch: {status}"));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut snapshot: Option<Vec<Change>> = None;
    loop {
        let frame = tokio::time::timeout(WATCH_SILENCE, body.frame())
            .await
            .map_err(|_| "the watch stream went silent".to_owned())?;
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > MAX_ANSWER {
            return Err("a watch line is too long".into());
        }
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let parsed: WatchLine =
                serde_json::from_slice(&line).map_err(|e| format!("unusable watch line: {e}"))?;
            match parsed {
                WatchLine::Reset => snapshot = Some(Vec::new()),
                WatchLine::Change { change } => match snapshot.as_mut() {
                    Some(s) => s.push(change),
                    None => catalog.apply(change),
                },
                WatchLine::Ready => {
                    if let Some(s) = snapshot.take() {
                        catalog.resync(s);
                    }
                    state.set(true);
                }
                WatchLine::Ping => {}
            }
        }
    }
}

/// Sends a heartbeat every [`HEARTBEAT_EVERY`], and soon after an agent
/// arrives or leaves (at most every [`BEAT_SPACING`]), so that other edges
/// learn within moments where to relay its requests.
async fn beat(client: ControlClient, tunnels: Arc<Tunnels>, relay_url: Option<String>) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let mut events = tunnels.events();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            event = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return;
                }
                // Let a burst of arrivals settle into one beat.
                tokio::time::sleep(BEAT_SPACING).await;
                while !events.is_empty() {
                    let _ = events.try_recv();
                }
            }
        }
        send_beat(&client, tunnels.agent_ids(), relay_url.clone()).await;
    }
}

/// One heartbeat listing the agents whose tunnels this edge holds.
async fn send_beat(client: &ControlClient, tunnels: Vec<i64>, relay_url: Option<String>) {
    let body = serde_json::to_value(Heartbeat {
        version: env!("CARGO_PKG_VERSION").into(),
        agents: tunnels.len() as i64,
        tunnels,
        relay_url,
    })
    .expect("JSON serializes");
    if let Err(e) = client
        .call::<serde_json::Value>(http::Method::POST, edge_api::HEARTBEAT, Some(body))
        .await
    {
        tracing::debug!(error = %e, "heartbeat not delivered");
    }
}

/// How often a `self-signed` edge checks its certificate from control.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// ...and how soon it tries again after control failed to issue one.
const CERT_RETRY: Duration = Duration::from_secs(300);
/// How often an edge serving a temporary certificate asks for the real one.
const CERT_PENDING_RETRY: Duration = Duration::from_secs(2);

/// Whether a certificate valid from `not_before` to `not_after` (unix
/// seconds) should be replaced at `now`: in the last third of its life, as
/// cert-manager does (day 60 of a 90-day leaf), which leaves weeks for
/// retries while control is away.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= not_after - (not_after - not_before).max(0) / 3
}

/// Replaces the served certificate with a new one from control's CA if it
/// is due at `now` (unix seconds); `Ok(true)` when it did.
pub async fn renew_if_due(
    client: &ControlClient,
    certs: &SwappableCert,
    now: i64,
) -> Result<bool, String> {
    let chain = certs.current_chain();
    let info = chain
        .first()
        .map(|leaf| tls::info::cert_info(leaf))
        .transpose()
        .map_err(|e| e.to_string())?;
    if info.is_some_and(|i| !renewal_due(i.not_before, i.not_after, now)) {
        return Ok(false);
    }
    match client.certificate().await? {
        Some(fresh) => {
            certs.set(fresh).map_err(|e| e.to_string())?;
            Ok(true)
        }
        None => Err("control is still ordering the region's certificate".into()),
    }
}

/// Keeps a `self-signed` edge's certificate from control current; while
/// it serves a temporary one (`pending`: control's ACME order was not done
/// at start), asks every few seconds.
async fn renew_certificates(client: ControlClient, certs: Arc<SwappableCert>, mut pending: bool) {
    loop {
        let wait = if pending {
            match client.certificate().await {
                Ok(Some(fresh)) => match certs.set(fresh) {
                    Ok(()) => {
                        tracing::info!("serving the region's certificate from control");
                        pending = false;
                        CERT_CHECK_EVERY
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control sent an unusable certificate");
                        CERT_RETRY
                    }
                },
                Ok(None) => CERT_PENDING_RETRY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get the region's certificate yet; retrying");
                    CERT_PENDING_RETRY
                }
            }
        } else {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match renew_if_due(&client, &certs, now).await {
                Ok(true) => {
                    tracing::info!("renewed this edge's certificate from control");
                    CERT_CHECK_EVERY
                }
                Ok(false) => CERT_CHECK_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew this edge's certificate yet; retrying");
                    CERT_RETRY
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// A built regional edge, bound and ready to run.
pub struct RegionalEdge {
    cfg: ServerConfig,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    frontdoor: Arc<Frontdoor>,
    registry: Arc<Registry>,
    admin: Option<TcpListener>,
    /// The link to control.
    pub client: ControlClient,
    /// The certificate served (replaced when renewed).
    pub certs: Arc<SwappableCert>,
    /// Serving a temporary certificate until control's ACME order is done.
    pending_cert: bool,
    /// The region, as control named it.
    pub region: String,
    /// The public address actually bound.
    pub local_addr: SocketAddr,
    /// The admin listener's address, if it runs.
    pub admin_addr: Option<SocketAddr>,
    /// Live tunnels.
    pub tunnels: Arc<Tunnels>,
    /// What this edge knows, from the watch stream.
    pub catalog: Arc<Catalog>,
    /// Whether it is following control right now.
    pub control: Arc<ControlStatus>,
}

impl RegionalEdge {
    /// Says hello to control (retrying until `hello_timeout`), loads TLS and
    /// binds. The edge serves `cfg.wildcard`, which should be the region's.
    pub async fn build(
        cfg: ServerConfig,
        link: ControlLink,
        hello_timeout: Duration,
    ) -> Result<RegionalEdge, StartError> {
        let client = ControlClient::new(link).map_err(StartError::Control)?;
        let deadline = tokio::time::Instant::now() + hello_timeout;
        let hello = loop {
            match client.hello().await {
                Ok(h) => break h,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "cannot reach control yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(StartError::Control(e)),
            }
        };
        if hello.wildcard != cfg.wildcard.as_str() {
            tracing::warn!(
                region = %hello.region,
                registered = %hello.wildcard,
                serving = %cfg.wildcard.as_str(),
                "this edge serves another wildcard than its region was created with"
            );
        }
        let mut key = [0u8; 32];
        hex::decode_to_slice(&hello.cookie_key, &mut key)
            .map_err(|_| StartError::Control("control sent an unusable cookie key".into()))?;
        super::create_private_dir(&cfg.data_dir)?;
        let mut pending_cert = false;
        let cert = match &cfg.tls {
            // From control: signed by its local CA, which clients already
            // trust, or ordered from its ACME CA for this region (served
            // temporarily self-signed until that order is done).
            TlsMode::SelfSigned => match client.certificate().await.map_err(StartError::Control)? {
                Some(cert) => cert,
                None => {
                    tracing::info!("control is ordering this region's certificate; serving a temporary one meanwhile");
                    pending_cert = true;
                    tls::acme::temporary_cert(&super::leaf_names(&cfg))?
                }
            },
            TlsMode::Files {
                cert_file,
                key_file,
            } => tls::load_files(cert_file, key_file)?,
            TlsMode::Acme(_) => {
                return Err(StartError::Control(
                    "a regional edge does not run ACME itself: leave tls.mode at \"self-signed\" and the edge serves the certificate control orders for its region when control runs tls.mode = \"acme\" (or use \"files\")".into(),
                ))
            }
        };
        let certs = SwappableCert::new(cert)?;
        let tls_config = tls::server_config(certs.clone())?;
        let (listener, local_addr, admin, admin_addr) = super::bind(&cfg).await?;
        let catalog = Arc::new(Catalog::new());
        let tunnels = Tunnels::new();
        let mut registry = Registry::default();
        let metrics = EdgeMetrics::new(&mut registry, &tunnels);
        telemetry::register_cert_expiry(&mut registry, certs.clone());
        let control = Arc::new(ControlStatus::default());
        registry.register(
            "berth_edge_control_connected",
            "1 while this edge follows the control plane's changes, 0 while it serves from cache",
            control.gauge(),
        );
        let signin = Arc::new(SignIn {
            key: CookieKey::new(key),
            codes: Codes::default(),
            wildcard: cfg.wildcard.clone(),
            base_domain: cfg.base_domain.clone(),
            base_url: hello.signin_url.clone(),
            session_ttl_secs: SESSION_TTL_SECS,
        });
        let relay = Arc::new(Relay::new(
            cfg.relay_url.clone().unwrap_or(hello.url.clone()),
            &signin.key,
            client_config(client.link.ca_file.as_deref(), &[b"h2"])?,
        ));
        let edge = Arc::new(Edge::new(
            catalog.clone(),
            tunnels.clone(),
            cfg.wildcard.clone(),
            cfg.limits.clone(),
            metrics,
            signin,
            crate::edge::Peers {
                control: Arc::new(RemoteControl(client.clone())),
                relay,
            },
        ));
        let frontdoor = Arc::new(Frontdoor {
            edge,
            base_domain: cfg.base_domain.clone(),
            control: None,
            control_state: Some(control.clone()),
            regions: Default::default(),
            trusted_proxies: cfg.trusted_proxies.clone(),
        });
        let mut cfg = cfg;
        if cfg.listen.port() == 0 {
            cfg.listen = local_addr;
        }
        Ok(RegionalEdge {
            cfg,
            listener,
            tls: tls_config,
            frontdoor,
            registry: Arc::new(registry),
            admin,
            client,
            certs,
            pending_cert,
            region: hello.region,
            local_addr,
            admin_addr,
            tunnels,
            catalog,
            control,
        })
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        if let Some(listener) = self.admin.take() {
            telemetry::serve_admin(listener, self.registry.clone(), stopped());
        }
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let follower = tokio::spawn(follow(
            self.client.clone(),
            self.catalog.clone(),
            self.control.clone(),
        ));
        let heart = tokio::spawn(beat(
            self.client.clone(),
            self.tunnels.clone(),
            self.cfg.relay_url.clone(),
        ));
        let sweeper = super::spawn_sweeper(self.tunnels.clone(), self.catalog.clone());
        let renewer = matches!(self.cfg.tls, TlsMode::SelfSigned).then(|| {
            tokio::spawn(renew_certificates(
                self.client.clone(),
                self.certs.clone(),
                self.pending_cert,
            ))
        });
        let edge = self.frontdoor.edge.clone();
        crate::edge::server::serve(
            self.listener,
            self.tls,
            self.frontdoor,
            self.cfg.limits.clone(),
            super::move_agents_then(stopped(), edge, &self.cfg.limits),
        )
        .await;
        follower.abort();
        heart.abort();
        sweeper.abort();
        if let Some(r) = renewer {
            r.abort();
        }
        self.tunnels.close_all();
        // Gone: other edges stop relaying here at once, not when the
        // records expire.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            send_beat(&self.client, Vec::new(), self.cfg.relay_url.clone()),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::renewal_due;

    #[test]
    fn renewal_is_due_in_the_last_third_of_a_certificates_life() {
        let day = 86_400;
        let (from, to) = (1_000_000, 1_000_000 + 90 * day);
        assert!(!renewal_due(from, to, from));
        assert!(!renewal_due(from, to, from + 59 * day));
        assert!(renewal_due(from, to, from + 60 * day));
        assert!(renewal_due(from, to, to + day), "expired: due");
        assert!(!renewal_due(from, to, from - day));
        // A nonsensical certificate (ends before it starts) is due at once.
        assert!(renewal_due(to, from, from));
    }
}
