//! The server kinds, composed from the roles (the composition band: the
//! only place where the edge, control and the agent meet):
//!
//! - [`server`]: `berth dev` and `berth control` ([`Server`]);
//! - [`regional`]: `berth edge`, a regional edge ([`regional::RegionalEdge`]).
//!
//! This module holds what both build with: binding, the private data
//! directory, the tunnel sweeper, moving agents before a drain, leaf names.
//!
//! Each kind goes build (bind sockets, load state; report addresses) then
//! run (serve until shutdown, then drain), so tests can start one on port 0.

mod admin;
mod inspect;
pub mod regional;
mod server;

pub use admin::reset_password;
pub use server::Server;

use crate::catalog::Catalog;
use crate::config::ServerConfig;
use crate::edge::{self, Edge};
use crate::store::StoreError;
use crate::telemetry;
use crate::tls;
use crate::tunnel::edge::Tunnels;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How often live tunnels are checked against the catalog.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("tls.mode = \"acme\": {0}")]
    Acme(tls::acme::AcmeError),
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    #[error("{0}")]
    Control(String),
    #[error("cannot listen on {addr}: {source} (is another berth running? choose another with --listen)")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr} for metrics: {source} (choose another with --admin-listen, or \"off\")")]
    AdminListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Names a self-signed leaf must cover: the base domain and the wildcard.
pub(crate) fn leaf_names(cfg: &ServerConfig) -> Vec<String> {
    crate::host::cert_names(&cfg.base_domain, cfg.wildcard.as_str())
}

/// The most a stopping server waits for its agents to move elsewhere
/// before it stops accepting and drains (also bounded by the drain grace).
const MOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Resolves when `stopped` has and the agents connected here were asked to
/// move to another region and have done so (or [`MOVE_WAIT`] passed): the
/// server keeps accepting and serving meanwhile, so no request finds an
/// agent gone. Then the server stops accepting and drains.
pub(crate) async fn move_agents_then(
    stopped: impl Future<Output = ()>,
    edge: Arc<Edge>,
    limits: &crate::config::Limits,
) {
    let limit = MOVE_WAIT.min(limits.shutdown_grace);
    stopped.await;
    if edge.tunnels.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    // Moved: connected to another holder (as control reports it).
    let elsewhere = |agent_id| {
        let holders = edge.catalog.tunnels_at(agent_id);
        edge::relay::hop(None, &holders, &edge.relay.me) != edge::relay::Hop::Offline
    };
    let (asked, left) = edge.tunnels.move_all(limit, elsewhere).await;
    if asked > 0 {
        tracing::info!(agents = asked, moved = left, took = ?started.elapsed(), "asked the agents to move to another region");
    }
}

/// The shutdown, as many tasks wait for it: begun once the `shutdown`
/// future given to a server's `run` has resolved.
#[derive(Clone)]
pub(crate) struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// Begins when `shutdown` resolves.
    pub(crate) fn after(shutdown: impl Future<Output = ()> + Send + 'static) -> Stop {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        Stop(rx)
    }

    /// Resolves once the shutdown has begun.
    pub(crate) fn begun(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// What a built server serves with: its listeners, TLS and front door, and
/// the metrics its admin listener shows.
pub(crate) struct Serving {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    pub(crate) frontdoor: Arc<edge::Frontdoor>,
    registry: Arc<Registry>,
    admin: Option<TcpListener>,
    /// `server.runtime`.
    runtime: crate::config::RuntimeShape,
}

impl Serving {
    /// What `build` bound and made, ready to serve.
    pub(crate) fn new(
        listener: TcpListener,
        admin: Option<TcpListener>,
        tls: Arc<rustls::ServerConfig>,
        frontdoor: Arc<edge::Frontdoor>,
        registry: Registry,
        runtime: crate::config::RuntimeShape,
    ) -> Serving {
        Serving {
            listener,
            tls,
            frontdoor,
            registry: Arc::new(registry),
            admin,
            runtime,
        }
    }

    /// Serves `/metrics` on the admin listener (if bound) and the front door
    /// until `stop` has begun and the agents connected here have moved
    /// elsewhere ([`move_agents_then`]), then drains.
    pub(crate) async fn serve(self, stop: &Stop) {
        if let Some(admin) = self.admin {
            telemetry::serve_admin(admin, self.registry, stop.begun());
        }
        let edge = self.frontdoor.edge.clone();
        let limits = edge.limits.clone();
        let moved = move_agents_then(stop.begun(), edge, &limits);
        match self.runtime {
            crate::config::RuntimeShape::WorkStealing => {
                edge::server::serve(
                    self.listener,
                    self.tls,
                    self.frontdoor,
                    limits.clone(),
                    moved,
                )
                .await
            }
            crate::config::RuntimeShape::PerCore => {
                edge::cores::serve(
                    self.listener,
                    self.tls,
                    self.frontdoor,
                    limits.clone(),
                    moved,
                )
                .await
            }
        }
    }
}

/// Binds the public listener and, if configured, the admin listener (a busy
/// default admin port is a warning, an explicitly chosen one an error).
pub(crate) async fn bind(
    cfg: &ServerConfig,
) -> Result<
    (
        TcpListener,
        SocketAddr,
        Option<TcpListener>,
        Option<SocketAddr>,
    ),
    StartError,
> {
    let listen_err = |source| StartError::Listen {
        addr: cfg.listen,
        source,
    };
    let listener = match cfg.runtime {
        crate::config::RuntimeShape::WorkStealing => TcpListener::bind(cfg.listen).await,
        crate::config::RuntimeShape::PerCore => edge::cores::bind_shared(cfg.listen),
    }
    .map_err(listen_err)?;
    let local_addr = listener.local_addr().map_err(listen_err)?;
    let admin = match cfg.admin_listen {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(source) if cfg.admin_listen_explicit => {
                return Err(StartError::AdminListen { addr, source })
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "admin listener (metrics) not started: the default port is busy; set --admin-listen");
                None
            }
        },
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    Ok((listener, local_addr, admin, admin_addr))
}

/// Closes, every [`SWEEP_INTERVAL`], the tunnels of agents that were deleted
/// (or whose token was rotated) since they connected.
pub(crate) fn spawn_sweeper(
    tunnels: Arc<Tunnels>,
    catalog: Arc<Catalog>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            tunnels.sweep(|id, token| catalog.agent(id).is_some_and(|a| a.token_hash == *token));
        }
    })
}

/// Creates `dir` (mode 0700 on Unix) if it does not exist.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    let err = |source| StartError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
