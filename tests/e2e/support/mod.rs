//! Test harness: real berth roles on loopback port 0, real clients.

pub mod acme;
pub mod apps;
pub mod berth_cli;
pub mod browser;
pub mod delay;
pub mod github;
pub mod h2raw;
pub mod hooks;
pub mod idp;
pub mod netns;
/// A PostgreSQL server and a fresh database per test (the store's unit tests
/// use the same file).
#[path = "../../../src/store/test_pg.rs"]
pub mod postgres;
pub mod raw;
pub mod recorder;
pub mod redirects;
pub mod regional;
pub mod relay;
pub mod setup;
pub mod wait;

use berth::config::{FileConfig, Limits, Overrides, RoleDefaults, ServerConfig};
use berth::roles::Server;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Installs a test log subscriber once (RUST_LOG=debug to see it).
pub fn trace_init() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running `berth dev` (control + edge + local agent).
pub struct Berth {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`).
    pub admin: SocketAddr,
    pub dir: PathBuf,
    pub admin_token: String,
    pub ca_pem: PathBuf,
    pub server: Arc<ServerHandles>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

/// What the test may inspect of a running server.
pub struct ServerHandles {
    pub tunnels: Arc<berth::tunnel::edge::Tunnels>,
}

/// Options for [`Berth::start_with`].
#[derive(Default)]
pub struct Options {
    pub dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub limits: Option<Limits>,
    /// false: control mode (no local agent)
    pub no_dev_agent: bool,
    /// Sign-in through an OpenID provider.
    pub oidc: Option<berth::config::OidcConfig>,
    /// Sign-in with GitHub (a stand-in: [`github`]).
    pub github: Option<berth::config::GithubConfig>,
    /// `server.database_url`; default: SQLite in the data dir.
    pub database_url: Option<String>,
    /// `server.trusted_proxies`.
    pub trusted_proxies: Vec<String>,
    /// A config file's text (e.g. `[limits]` keys), read as `--config` would.
    pub config: Option<String>,
    /// `[jwt]`, unchecked (a rotation of seconds, for the rotation tests).
    pub jwt: Option<berth::config::JwtPolicy>,
}

impl Berth {
    pub async fn start() -> Berth {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Berth {
        trace_init();
        let (tmp, dir) = match opts.dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let flags = Overrides {
            listen: Some(
                opts.listen
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "127.0.0.1:0".into()),
            ),
            data_dir: Some(dir.clone()),
            admin_listen: Some("127.0.0.1:0".into()),
            database_url: opts.database_url,
            ..Default::default()
        };
        let file = match &opts.config {
            None => FileConfig::default(),
            Some(text) => {
                let path = dir.with_extension("toml");
                std::fs::write(&path, text).unwrap();
                FileConfig::load(Some(&path), []).unwrap()
            }
        };
        let mut cfg = ServerConfig::resolve(file, flags, RoleDefaults::DEV).unwrap();
        if let Some(l) = opts.limits {
            cfg.limits = l;
        }
        cfg.oidc = opts.oidc;
        if let Some(jwt) = opts.jwt {
            cfg.jwt = jwt;
        }
        cfg.github = opts.github;
        cfg.trusted_proxies = opts
            .trusted_proxies
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let server = Server::build(cfg, !opts.no_dev_agent)
            .await
            .expect("berth starts");
        let addr = server.local_addr;
        let admin = server.admin_addr.expect("admin listener");
        let handles = Arc::new(ServerHandles {
            tunnels: server.tunnels.clone(),
        });
        let admin_token = std::fs::read_to_string(&server.admin_token_path)
            .unwrap()
            .trim()
            .to_owned();
        let ca_pem = server.ca_path.clone().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let b = Berth {
            addr,
            admin,
            dir,
            admin_token,
            ca_pem,
            server: handles,
            stop: Some(tx),
            task: Some(task),
            _tmp: tmp,
        };
        if !opts.no_dev_agent {
            b.wait_agents(1).await;
        }
        b
    }

    /// Waits until `n` agents are connected.
    pub async fn wait_agents(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.server.tunnels.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} agents connected",
                self.server.tunnels.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server and waits for it to drain; keeps the data dir.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        self._tmp.take()
    }

    /// `https://{label}.berth.localhost:{port}{path}`
    pub fn app_url(&self, label: &str, path: &str) -> String {
        format!("https://{label}.berth.localhost:{}{path}", self.addr.port())
    }

    /// `https://berth.localhost:{port}{path}`
    pub fn api_url(&self, path: &str) -> String {
        format!("https://berth.localhost:{}{path}", self.addr.port())
    }

    /// An HTTP client trusting this berth's CA, resolving every name to loopback.
    pub fn client(&self, http1_only: bool) -> reqwest::Client {
        client_for(&self.ca_pem, http1_only)
    }

    /// Creates workspace `workspace` (if needed) and agent `agent` in it for
    /// the admin; returns the agent token.
    pub async fn create_agent(&self, workspace: &str, agent: &str) -> String {
        let admin = &self.admin_token;
        self.try_add_workspace(admin, "admin", workspace).await;
        self.add_agent(admin, "admin", workspace, agent).await
    }

    /// An agent's settings for `token`, dialing `berth.localhost:{port}` (this
    /// server's port, or a relay's in front of it) and trusting this CA.
    pub fn agent_config(&self, token: &str, port: u16) -> berth::agent::AgentConfig {
        berth::agent::AgentConfig {
            url: format!("https://berth.localhost:{port}"),
            token: berth::auth::Secret::new(token),
            ca_file: Some(self.ca_pem.clone()),
            connect_to: None,
            upstream: Default::default(),
            region: None,
            standby: false,
            tunnels: berth::agent::DEFAULT_TUNNELS,
        }
    }

    /// Starts an in-process `berth agent` for `token`; it stops when the
    /// returned sender is dropped.
    pub fn spawn_agent(
        &self,
        token: &str,
        upstream: berth::tunnel::agent::Upstream,
    ) -> oneshot::Sender<()> {
        let cfg = berth::agent::AgentConfig {
            upstream,
            ..self.agent_config(token, self.addr.port())
        };
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            berth::agent::run(cfg, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        tx
    }

    /// Waits until exactly `n` agents are connected, at most `limit`;
    /// returns how long it took.
    pub async fn wait_agents_exactly(&self, n: usize, limit: Duration) -> Duration {
        let started = Instant::now();
        while self.server.tunnels.len() != n {
            assert!(
                started.elapsed() < limit,
                "{} agents connected after {limit:?}, want {n}",
                self.server.tunnels.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// Calls the API as `token` and returns (status, JSON).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .client(true)
            .request(method, self.api_url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        )
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Loopback;

impl reqwest::dns::Resolve for Loopback {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async {
            let addrs: reqwest::dns::Addrs =
                Box::new(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter());
            Ok(addrs)
        })
    }
}

/// A reqwest client trusting `ca` and resolving everything to 127.0.0.1.
pub fn client_for(ca: &Path, http1_only: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .dns_resolver(Arc::new(Loopback))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120));
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

/// Runs an in-process `berth agent` with `cfg` until the returned sender is
/// used or dropped.
pub fn run_agent(cfg: berth::agent::AgentConfig) -> oneshot::Sender<()> {
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = berth::agent::run(cfg, async {
            let _ = rx.await;
        })
        .await;
    });
    tx
}

/// A loopback port that was free a moment ago (bind port 0, then close).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
