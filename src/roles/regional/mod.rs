//! A regional edge (`berth edge`, SPEC §6): serves apps under its region's
//! wildcard and accepts agent tunnels, with no database. It asks control
//! who it is (`/api/v1/edge/hello`, with the region token), follows the
//! catalog through the watch stream (a snapshot, then every change), sends a
//! heartbeat every few seconds, and redeems share links through control.
//!
//! When control is unreachable the edge keeps serving from what it knows,
//! and says so in `/readyz` (`"control": "unreachable"`) and in the metric
//! `berth_edge_control_connected`.
//!
//! [`client`] calls control's edge API; [`follow`] keeps the catalog and
//! control's records current; [`certs`] keeps a `self-signed` edge's
//! certificate from control current.

mod certs;
mod client;
mod follow;

pub use certs::{renew_if_due, renewal_due};
pub use client::{ControlClient, ControlLink};

use super::{Serving, StartError, Stop};
use crate::auth::cookie::CookieKey;
use crate::auth::signin::{Codes, SignIn, SESSION_TTL_SECS};
use crate::catalog::Catalog;
use crate::config::{ServerConfig, TlsMode};
use crate::edge::relay::Relay;
use crate::edge::{ControlStatus, Edge, Frontdoor};
use crate::telemetry::{self, EdgeMetrics};
use crate::tls::client::client_config;
use crate::tls::{self, SwappableCert};
use crate::tunnel::edge::Tunnels;
use client::RemoteControl;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A built regional edge, bound and ready to run.
pub struct RegionalEdge {
    cfg: ServerConfig,
    serving: Serving,
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
    /// When its ports last served a request, reported to control.
    activity: Arc<crate::edge::activity::Activity>,
    /// The identity keyring, from the watch stream.
    pub identity: Arc<crate::auth::jwt::Identity>,
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
                    crate::tls::client::explain_once(&e.to_string());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    let hint = crate::tls::client::unknown_issuer_hint(&e.to_string());
                    let msg = match hint {
                        Some(h) => format!("{e}: {h}"),
                        None => e.to_string(),
                    };
                    return Err(StartError::Control(msg));
                }
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
            client_config(client.ca_file(), &[b"h2"])?,
        ));
        let edge = Arc::new(
            Edge::new(
                catalog.clone(),
                tunnels.clone(),
                &cfg,
                metrics,
                signin,
                crate::edge::Peers {
                    control: Arc::new(RemoteControl(client.clone())),
                    relay,
                },
            )
            .with_wake(hello.wake),
        );
        let activity = edge.activity.clone();
        let identity = edge.identity.clone();
        let frontdoor = Arc::new(Frontdoor {
            edge,
            base_domain: cfg.base_domain.clone(),
            control: None,
            control_state: Some(control.clone()),
            regions: Default::default(),
            trusted_proxies: cfg.trusted_proxies.clone(),
        });
        let mut cfg = cfg;
        let runtime = cfg.runtime;
        if cfg.listen.port() == 0 {
            cfg.listen = local_addr;
        }
        Ok(RegionalEdge {
            cfg,
            serving: Serving::new(listener, admin, tls_config, frontdoor, registry, runtime),
            client,
            certs,
            pending_cert,
            region: hello.region,
            local_addr,
            admin_addr,
            tunnels,
            catalog,
            control,
            activity,
            identity,
        })
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop = Stop::after(shutdown);
        let follower = tokio::spawn(follow::follow(
            self.client.clone(),
            self.catalog.clone(),
            self.control.clone(),
            self.identity.clone(),
        ));
        let heart = tokio::spawn(follow::beat(
            self.client.clone(),
            self.tunnels.clone(),
            self.cfg.relay_url.clone(),
        ));
        let reporter = tokio::spawn(follow::report_activity(
            self.client.clone(),
            self.activity.clone(),
        ));
        let sweeper = super::spawn_sweeper(self.tunnels.clone(), self.catalog.clone());
        let renewer = matches!(self.cfg.tls, TlsMode::SelfSigned).then(|| {
            tokio::spawn(certs::renew_certificates(
                self.client.clone(),
                self.certs.clone(),
                self.pending_cert,
            ))
        });
        self.serving.serve(&stop).await;
        follower.abort();
        heart.abort();
        reporter.abort();
        sweeper.abort();
        if let Some(r) = renewer {
            r.abort();
        }
        self.tunnels.close_all();
        // Gone: other edges stop relaying here at once, not when the
        // records expire.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            follow::send_beat(&self.client, Vec::new(), self.cfg.relay_url.clone()),
        )
        .await;
    }
}
