//! `berth dev` and `berth control`: the control plane's API plus its
//! built-in edge on one TLS listener; `dev` adds an in-process agent for
//! this machine's loopback ports.

use super::{bind, create_private_dir, leaf_names, spawn_sweeper, Serving, StartError, Stop};
use crate::agent::{self, AgentConfig};
use crate::auth::cookie::CookieKey;
use crate::auth::signin::{Codes, SignIn, SESSION_TTL_SECS};
use crate::auth::TokenHash;
use crate::catalog::Link;
use crate::catalog::{Catalog, Session};
use crate::config::{ServerConfig, TlsMode};
use crate::control::{self, AppUrls, ControlState, Presence};
use crate::edge::relay::Relay;
use crate::edge::{self, ControlAnswer, ControlCalls, Edge, Frontdoor};
use crate::protocol::edge_api::{Exchange, WakeAnswer, WakeRequest};
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

/// How often the region list told to agents is read again.
const REGIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// How often the built-in edge's activity goes into the store.
const LOCAL_ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// The name of the cookie-signing key in the store's secrets.
const COOKIE_KEY: &str = "cookie-signing-key";

/// The built-in edge redeems share links in the store and takes sign-in
/// codes from the control plane's memory directly.
struct LocalControl {
    store: Store,
    signin: Arc<SignIn>,
    catalog: Arc<Catalog>,
    waker: Option<Arc<control::wake::Waker>>,
}

impl ControlCalls for LocalControl {
    fn redeem(&self, hash: TokenHash, now: i64, source: std::net::IpAddr) -> ControlAnswer<Link> {
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

    fn take_code(&self, code: Exchange, now: i64) -> ControlAnswer<Session> {
        let session = self
            .signin
            .codes
            .take(&code.code, &code.host, &code.state, now)
            .and_then(|id| self.catalog.visitor_for_session(&id, now))
            .map(|(_, s)| s);
        Box::pin(async move { session })
    }

    fn wake(&self, visit: WakeRequest) -> ControlAnswer<WakeAnswer> {
        let waker = self.waker.clone();
        Box::pin(async move { Some(waker?.wake(&visit).await) })
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
    serving: Serving,
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
    /// `berth_workspace_last_activity_seconds`, kept by the idle watcher.
    last_activity: control::activity::LastActivity,
    /// The client webhooks are called with, when one is configured.
    webhooks: Option<control::webhook::Webhooks>,
}

impl Server {
    /// Creates the data dir, loads TLS and the store, bootstraps the admin
    /// (and, for `dev`, the local workspace), and binds the listener.
    pub async fn build(cfg: ServerConfig, dev: bool) -> Result<Server, StartError> {
        Self::build_announcing(cfg, dev, &|_| {}).await
    }

    /// [`Server::build`], calling `announce` with the admin's password the
    /// moment the first run has made it, before anything else can fail
    /// (`berth dev` prints it there, so a failed start never loses it).
    pub async fn build_announcing(
        cfg: ServerConfig,
        dev: bool,
        announce: &(dyn Fn(&str) + Sync),
    ) -> Result<Server, StartError> {
        create_private_dir(&cfg.data_dir)?;
        // Bound first: a busy port fails the start before a first run
        // makes anything (the database, the CA, the admin whose password
        // is shown only once), so the next start is still the first run.
        let (listener, local_addr, admin, admin_addr) = bind(&cfg).await?;
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
        let boot = control::bootstrap(&store, &catalog, &cfg.data_dir, dev, announce)
            .await
            .map_err(|e| StartError::Bootstrap(e.to_string()))?;
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
        let last_activity = control::activity::LastActivity::default();
        registry.register(
            "berth_workspace_last_activity_seconds",
            "When each workspace last served a request or held an open WebSocket (unix seconds)",
            last_activity.clone(),
        );
        // Other edges' certificates come from this CA in self-signed mode.
        let relay = Arc::new(Relay::new(
            cfg.relay_url(),
            &signin.key,
            tls::client::client_config(ca_path.as_deref(), &[b"h2"])?,
        ));
        let webhooks = match (&cfg.activity.webhook, &cfg.wake) {
            (None, None) => None,
            _ => Some(control::webhook::Webhooks::new().map_err(StartError::Control)?),
        };
        let waker = match (&cfg.wake, &webhooks) {
            (Some(wake), Some(hooks)) => Some(Arc::new(control::wake::Waker::new(
                store.clone(),
                catalog.clone(),
                wake.clone(),
                hooks.clone(),
            ))),
            _ => None,
        };
        let edge = Arc::new(
            Edge::new(
                catalog.clone(),
                tunnels.clone(),
                &cfg,
                metrics,
                signin.clone(),
                edge::Peers {
                    control: Arc::new(LocalControl {
                        store: store.clone(),
                        signin: signin.clone(),
                        catalog: catalog.clone(),
                        waker: waker.clone(),
                    }),
                    relay: relay.clone(),
                },
            )
            .with_wake(waker.is_some()),
        );
        let wildcard_suffix = cfg.wildcard.host_for("");
        let oidc = match cfg.oidc.clone() {
            Some(o) => Some(Arc::new(control::OidcClient::new(o, &cfg.base_url())?)),
            None => None,
        };
        let github = match cfg.github.clone() {
            Some(g) => Some(Arc::new(control::GithubClient::new(g, &cfg.base_url())?)),
            None => None,
        };
        let state = ControlState {
            waker,
            login,
            oidc,
            github,
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
            identity: edge.identity.clone(),
            inspection: Arc::new(super::inspect::EdgeInspection {
                edge: edge.clone(),
                store: store.clone(),
            }),
            signin,
            app_urls: AppUrls {
                wildcard_suffix,
                port: cfg.url_port(),
            },
        };
        // The first keys before the first request: assertions from the start.
        control::signing::rotate_once(
            &store,
            &state.identity,
            &cfg.jwt,
            &cfg.base_url(),
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .await?;
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
            serving: Serving::new(
                listener,
                admin,
                tls_config,
                frontdoor,
                registry,
                cfg.runtime,
            ),
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
            last_activity,
            webhooks,
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
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let stop = Stop::after(shutdown);
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
                upstream: crate::tunnel::agent::Upstream {
                    list_ports: self.cfg.dev_agent_ports.clone(),
                    // Not berth's own listeners: they are no app to share.
                    hide_ports: [Some(self.local_addr), self.admin_addr]
                        .into_iter()
                        .flatten()
                        .map(|a| a.port())
                        .collect(),
                    ..Default::default()
                },
                // It serves this machine's ports through this very process:
                // never moved to a regional edge.
                region: Some(crate::protocol::regions::CONTROL.into()),
                standby: false,
                tunnels: crate::agent::DEFAULT_TUNNELS,
            };
            let stop = stop.begun();
            tokio::spawn(async move {
                if let Err(e) = agent::run(cfg, stop).await {
                    tracing::error!(error = %e, "local agent stopped");
                }
            });
        }
        if let Some(acme) = self.acme.clone() {
            tokio::spawn(acme.run(stop.begun()));
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
                stop.begun(),
            ));
        }
        let sweeper = spawn_sweeper(self.tunnels.clone(), self.catalog.clone());
        // The built-in edge's activity into the store, and the idle watcher.
        let (state, activity) = (
            self.state.clone(),
            self.serving.frontdoor.edge.activity.clone(),
        );
        let reporter = tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOCAL_ACTIVITY_EVERY);
            loop {
                tick.tick().await;
                let pending = activity.pending();
                match control::activity::record(&state, &pending).await {
                    Ok(()) => activity.acknowledge(&pending),
                    Err(e) => tracing::warn!(error = %e, "cannot record activity"),
                }
            }
        });
        let idle_watcher = tokio::spawn(control::activity::watch(
            self.state.clone(),
            self.cfg.activity.clone(),
            self.webhooks.clone(),
            self.last_activity.clone(),
        ));
        let login_upkeep = tokio::spawn(control::login::upkeep(self.state.clone()));
        let share_ends = tokio::spawn(control::shares::end_expired(self.state.clone()));
        let keys = tokio::spawn(control::signing::keep_keys(
            self.state.clone(),
            self.cfg.jwt,
            self.cfg.base_url(),
        ));
        // Where this process's agents are, for the other edges' relays.
        let tracker = tokio::spawn(control::holders::track_local_tunnels(
            self.state.clone(),
            self.tunnels.clone(),
            self.cfg.relay_url(),
        ));
        // The healthy regions, told to agents as their tunnels open.
        let (store, directory) = (self.store.clone(), self.serving.frontdoor.regions.clone());
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
        self.serving.serve(&stop).await;
        follower.abort();
        keys.abort();
        regions_task.abort();
        sweeper.abort();
        tracker.abort();
        reporter.abort();
        idle_watcher.abort();
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
        share_ends.abort();
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
