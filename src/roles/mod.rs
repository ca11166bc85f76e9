//! Server roles composed from the parts: `berth control` is the control
//! plane's API plus its built-in edge on one TLS listener; `berth dev` adds an
//! in-process agent for this machine's loopback ports.
//!
//! Each role goes build (bind sockets, load state; report addresses) then
//! run (serve until shutdown, then drain), so tests can start one on port 0.

pub mod regional;

use crate::agent::{self, AgentConfig};
use crate::auth::cookie::CookieKey;
use crate::auth::signin::{Codes, SignIn, SESSION_TTL_SECS};
use crate::auth::TokenHash;
use crate::catalog::Link;
use crate::catalog::{Catalog, Session};
use crate::config::{ServerConfig, TlsMode};
use crate::control::{self, AppUrls, ControlState, Presence};
use crate::edge::relay::Relay;
use crate::edge::{self, ControlCalls, Edge, Frontdoor};
use crate::secret::Secret;
use crate::store::Store;
use crate::telemetry::{self, EdgeMetrics};
use crate::tls::{self, SwappableCert};
use crate::tunnel::edge::Tunnels;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;

/// How often the region list told to agents is read again.
const REGIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
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
    Store(#[from] crate::store::StoreError),
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

/// The name of the cookie-signing key in the store's secrets.
const COOKIE_KEY: &str = "cookie-signing-key";

/// The built-in edge redeems share links in the store and takes sign-in
/// codes from the control plane's memory directly.
struct LocalControl {
    store: Store,
    signin: Arc<SignIn>,
    catalog: Arc<Catalog>,
}

impl ControlCalls for LocalControl {
    fn redeem(
        &self,
        hash: TokenHash,
        now: i64,
        source: std::net::IpAddr,
    ) -> futures_util::future::BoxFuture<'static, Option<Link>> {
        let store = self.store.clone();
        Box::pin(async move {
            control::links::redeem_and_audit(&store, &hash, now, &source.to_string(), None)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "share link redemption failed");
                    None
                })
        })
    }

    fn take_code(
        &self,
        code: String,
        host: String,
        state: String,
        now: i64,
    ) -> futures_util::future::BoxFuture<'static, Option<Session>> {
        let session = self
            .signin
            .codes
            .take(&code, &host, &state, now)
            .and_then(|id| self.catalog.visitor_for_session(&id, now))
            .map(|(_, s)| s);
        Box::pin(async move { session })
    }
}

/// The built-in edge's tunnels answer the control plane directly; an agent
/// connected to another edge (or replica) is known from the catalog and
/// asked through the relay.
struct LocalPresence {
    tunnels: Arc<Tunnels>,
    catalog: Arc<Catalog>,
    relay: Arc<Relay>,
}

impl Presence for LocalPresence {
    fn is_connected(&self, agent_id: i64) -> bool {
        self.tunnels.is_connected(agent_id) || !self.catalog.tunnels_at(agent_id).is_empty()
    }

    fn listening_ports(
        &self,
        agent_id: i64,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<Vec<crate::tunnel::protocol::ListeningPort>, String>,
    > {
        let (tunnels, relay) = (self.tunnels.clone(), self.relay.clone());
        let holders = self.catalog.tunnels_at(agent_id);
        Box::pin(async move {
            let local = tunnels.get(agent_id).map(|t| t.generation);
            let answer = match edge::relay::hop(local, &holders, &relay.me) {
                edge::relay::Hop::Relay(holder) => relay.listening_ports(holder, agent_id).await,
                _ => tunnels.listening_ports(agent_id).await,
            };
            answer.map_err(|e| e.to_string())
        })
    }
}

/// A built server, bound and ready to run.
pub struct Server {
    cfg: ServerConfig,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    frontdoor: Arc<Frontdoor>,
    registry: Arc<Registry>,
    admin: Option<TcpListener>,
    /// The admin listener's address (`/metrics`), if it runs.
    pub admin_addr: Option<SocketAddr>,
    /// The public address actually bound.
    pub local_addr: SocketAddr,
    /// Set for `dev`: the agent token of workspace `dev`, agent `main`.
    pub dev_agent_token: Option<Secret>,
    /// Printed once: the admin password made on the first run.
    pub admin_password: Option<String>,
    /// Where the admin token was written.
    pub admin_token_path: PathBuf,
    /// The CA certificate file (self-signed mode).
    pub ca_path: Option<PathBuf>,
    /// The certificate resolver, for reloads.
    pub certs: Arc<SwappableCert>,
    /// Live tunnels.
    pub tunnels: Arc<Tunnels>,
    /// The edge's catalog.
    pub catalog: Arc<Catalog>,
    /// The control plane's state (store, catalog, and publishing changes).
    state: ControlState,
    /// The store, for following other control replicas' changes.
    store: Store,
    /// The ACME manager (`tls.mode = "acme"`), started by [`Server::run`].
    acme: Option<Arc<tls::acme::Manager>>,
}

/// Names a self-signed leaf must cover: the base domain and the wildcard.
pub(crate) fn leaf_names(cfg: &ServerConfig) -> Vec<String> {
    crate::host::cert_names(&cfg.base_domain, cfg.wildcard.as_str())
}

impl Server {
    /// Creates the data dir, loads TLS and the store, bootstraps the admin
    /// (and, for `dev`, the local workspace), and binds the listener.
    pub async fn build(cfg: ServerConfig, dev: bool) -> Result<Server, StartError> {
        create_private_dir(&cfg.data_dir)?;
        // Before anything is created: a lost database must not become a
        // new deployment over the old one's tokens and CA.
        let store = open_store(&cfg).await?;
        let (cert, local_ca) = match &cfg.tls {
            TlsMode::SelfSigned => {
                let ca = tls::LocalCa::load_or_create(&cfg.data_dir)?;
                (ca.issue(&leaf_names(&cfg))?, Some(Arc::new(ca)))
            }
            TlsMode::Files {
                cert_file,
                key_file,
            } => (tls::load_files(cert_file, key_file)?, None),
            // Served until the stored or newly ordered certificate is in.
            TlsMode::Acme(_) => (tls::acme::temporary_cert(&leaf_names(&cfg))?, None),
        };
        let ca_path = local_ca.as_ref().map(|ca| ca.cert_path().to_owned());
        let certs = SwappableCert::new(cert)?;
        let tls_config = tls::server_config(certs.clone())?;

        let acme = match &cfg.tls {
            TlsMode::Acme(settings) => {
                let manager = tls::acme::Manager::new(
                    (**settings).clone(),
                    leaf_names(&cfg),
                    store.clone(),
                    certs.clone(),
                )
                .map_err(StartError::Acme)?;
                // A valid stored certificate is served from the first
                // handshake, with no order.
                manager.serve_stored().await.map_err(StartError::Acme)?;
                Some(Arc::new(manager))
            }
            _ => None,
        };
        // Bootstrap fills the catalog from the store's snapshot.
        let catalog = Arc::new(Catalog::new());
        let boot = control::bootstrap(&store, &catalog, &cfg.data_dir, dev)
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;

        let (listener, local_addr, admin, admin_addr) = bind(&cfg).await?;
        let mut cfg = cfg;
        if cfg.listen.port() == 0 {
            cfg.listen = local_addr;
        }

        let signin = Arc::new(SignIn {
            key: CookieKey::new(store.secret_key(COOKIE_KEY).await?),
            codes: Codes::default(),
            wildcard: cfg.wildcard.clone(),
            base_domain: cfg.base_domain.clone(),
            base_url: cfg.base_url(),
            session_ttl_secs: SESSION_TTL_SECS,
        });
        let tunnels = Tunnels::new();
        let mut registry = Registry::default();
        let metrics = EdgeMetrics::new(&mut registry, &tunnels);
        let login = Arc::new(control::login::LoginGuard::new(cfg.login));
        login.register(&mut registry);
        telemetry::register_cert_expiry(&mut registry, certs.clone());
        // Other edges' certificates come from this CA in self-signed mode.
        let relay = Arc::new(Relay::new(
            cfg.relay_url(),
            &signin.key,
            tls::client::client_config(ca_path.as_deref(), &[b"h2"])?,
        ));
        let edge = Arc::new(Edge::new(
            catalog.clone(),
            tunnels.clone(),
            cfg.wildcard.clone(),
            cfg.limits.clone(),
            metrics,
            signin.clone(),
            edge::Peers {
                control: Arc::new(LocalControl {
                    store: store.clone(),
                    signin: signin.clone(),
                    catalog: catalog.clone(),
                }),
                relay: relay.clone(),
            },
        ));
        let wildcard_suffix = cfg.wildcard.host_for("");
        let oidc = match cfg.oidc.clone() {
            Some(o) => Some(Arc::new(control::OidcClient::new(o, &cfg.base_url())?)),
            None => None,
        };
        let state = ControlState {
            login,
            oidc,
            local_ca,
            region_certs: match &cfg.tls {
                TlsMode::Acme(settings) => Some(Arc::new(tls::acme::regions::RegionCerts::new(
                    (**settings).clone(),
                    store.clone(),
                ))),
                _ => None,
            },
            store: store.clone(),
            catalog: catalog.clone(),
            presence: Arc::new(LocalPresence {
                tunnels: tunnels.clone(),
                catalog: catalog.clone(),
                relay,
            }),
            sharing: cfg.sharing,
            signin,
            app_urls: AppUrls {
                wildcard_suffix,
                port: cfg.url_port(),
            },
        };
        let frontdoor = Arc::new(Frontdoor {
            edge,
            base_domain: cfg.base_domain.clone(),
            control: Some(control::router(state.clone())),
            control_state: None,
            regions: Default::default(),
            trusted_proxies: cfg.trusted_proxies.clone(),
        });
        Ok(Server {
            state,
            listener,
            tls: tls_config,
            frontdoor,
            registry: Arc::new(registry),
            admin,
            admin_addr,
            local_addr,
            dev_agent_token: boot.dev_agent_token,
            admin_password: boot.admin_password,
            admin_token_path: boot.admin_token_path,
            ca_path,
            certs,
            tunnels,
            catalog,
            store,
            acme,
            cfg,
        })
    }

    /// The ACME manager, when `tls.mode = "acme"` (to ask how it is doing).
    pub fn acme(&self) -> Option<Arc<tls::acme::Manager>> {
        self.acme.clone()
    }

    /// The configuration in force (with the bound port filled in).
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Serves until `shutdown` resolves, then drains. With a dev agent token,
    /// also runs the local agent against this very listener, through a real
    /// TLS tunnel like any other agent.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
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
        if let Some(token) = self.dev_agent_token.clone() {
            let cfg = AgentConfig {
                url: format!(
                    "https://{}:{}",
                    self.cfg.base_domain,
                    self.local_addr.port()
                ),
                token,
                ca_file: self.ca_path.clone(),
                connect_to: None,
                upstream: Default::default(),
                // It serves this machine's ports through this very process:
                // never moved to a regional edge.
                region: Some(crate::protocol::regions::CONTROL.into()),
                standby: false,
            };
            let stop = stopped();
            tokio::spawn(async move {
                if let Err(e) = agent::run(cfg, stop).await {
                    tracing::error!(error = %e, "local agent stopped");
                }
            });
        }
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        if let Some(acme) = self.acme.clone() {
            tokio::spawn(acme.run(stopped()));
        }
        if let TlsMode::Files {
            cert_file,
            key_file,
        } = &self.cfg.tls
        {
            tokio::spawn(tls::files::watch(
                cert_file.clone(),
                key_file.clone(),
                self.certs.clone(),
                tls::files::WATCH_INTERVAL,
                stopped(),
            ));
        }
        let sweeper = spawn_sweeper(self.tunnels.clone(), self.catalog.clone());
        let login_upkeep = tokio::spawn(control::login::upkeep(self.state.clone()));
        // Where this process's agents are, for the other edges' relays.
        let tracker = tokio::spawn(control::holders::track_local_tunnels(
            self.state.clone(),
            self.tunnels.clone(),
            self.cfg.relay_url(),
        ));
        // The healthy regions, told to agents as their tunnels open.
        let (store, directory) = (self.store.clone(), self.frontdoor.regions.clone());
        let regions_task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REGIONS_REFRESH);
            loop {
                tick.tick().await;
                if let Ok(rows) = store.list_regions().await {
                    directory.set(&control::regions::healthy(rows));
                }
            }
        });
        // Other control replicas on the same PostgreSQL database publish the
        // changes they make; apply them here too (returns at once on SQLite).
        let (store, catalog) = (self.store.clone(), self.catalog.clone());
        let follower = tokio::spawn(async move { store.follow_changes(&catalog).await });
        let tunnels = self.tunnels.clone();
        let edge = self.frontdoor.edge.clone();
        edge::server::serve(
            self.listener,
            self.tls,
            self.frontdoor,
            self.cfg.limits.clone(),
            move_agents_then(stopped(), edge, &self.cfg.limits),
        )
        .await;
        follower.abort();
        regions_task.abort();
        sweeper.abort();
        tracker.abort();
        if let Some(certs) = &self.state.region_certs {
            certs.shutdown();
        }
        tunnels.close_all();
        // Gone: other edges stop relaying here at once, not when the
        // records expire.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            control::holders::forget_holder(&self.state, &self.cfg.relay_url()),
        )
        .await;
        login_upkeep.abort();
        self.state.login.upkeep(&self.state).await;
        // Last: SQLite's write-ahead log goes into berth.db, so the file
        // alone is the whole database.
        match tokio::time::timeout(std::time::Duration::from_secs(5), self.store.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "closing the database failed"),
            Err(_) => tracing::warn!("closing the database took over 5 s; left it"),
        }
        Ok(())
    }
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

/// Opens the configured database, refusing (before creating anything) a
/// new database next to the files of an earlier deployment; see
/// [`control::refuse_over_leftovers`].
async fn open_store(cfg: &ServerConfig) -> Result<Store, StartError> {
    let leftovers = control::deployment_files(&cfg.data_dir);
    let refuse = |new: bool, database: &str| {
        control::refuse_over_leftovers(new, &leftovers, database, &cfg.data_dir)
            .map_err(|e| StartError::Bootstrap(e.to_string()))
    };
    let store = match &cfg.database_url {
        Some(url) => {
            let store = Store::connect(url.expose(), cfg.database_pool).await?;
            refuse(
                store.user_count().await? == 0,
                &crate::config::redact_url(url.expose()),
            )?;
            store
        }
        None => {
            let file = cfg.data_dir.join(crate::store::DB_FILE);
            let shown = file.display().to_string();
            // A missing file is refused before SQLite creates it.
            refuse(!file.exists(), &shown)?;
            let store = Store::open(&cfg.data_dir).await?;
            refuse(store.user_count().await? == 0, &shown)?;
            store
        }
    };
    Ok(store)
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
    let listener = TcpListener::bind(cfg.listen).await.map_err(listen_err)?;
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
