//! Real ACME and DNS servers for the certificate tests: Pebble (Let's
//! Encrypt's test CA) and BIND 9 as the authoritative server of `apps.test`
//! with a TSIG key allowed to update it, each on free loopback ports; plus a
//! helper that starts a berth control server from a TOML string.

use super::{free_port, trace_init};
use berth::config::{FileConfig, Overrides, RoleDefaults, ServerConfig};
use berth::roles::Server;
use berth::tls::SwappableCert;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The zone BIND serves and berth's certificates cover.
pub const ZONE: &str = "apps.test";
/// The TSIG key's name.
pub const KEY_NAME: &str = "berth-test";

/// True when pebble, named and nsupdate are installed. Otherwise prints one
/// `SKIPPED:` line and returns false, unless `BERTH_REQUIRE_ACME_TOOLS` is
/// set (as in CI), where a missing tool fails the test.
pub fn tools_available(test: &str) -> bool {
    let missing: Vec<&str> = ["pebble", "named", "nsupdate"]
        .into_iter()
        .filter(|t| !in_path(t))
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("BERTH_REQUIRE_ACME_TOOLS").is_some() {
        panic!(
            "{test}: {} not installed and BERTH_REQUIRE_ACME_TOOLS is set (apt-get install pebble bind9 bind9-dnsutils)",
            missing.join(", ")
        );
    }
    println!(
        "SKIPPED: {test}: {} not installed (apt-get install pebble bind9 bind9-dnsutils)",
        missing.join(", ")
    );
    false
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| d.join(tool).is_file())
            || ["/usr/sbin", "/sbin"]
                .iter()
                .any(|d| Path::new(d).join(tool).is_file())
    })
}

fn named_bin() -> PathBuf {
    for d in ["/usr/sbin", "/sbin"] {
        let p = Path::new(d).join("named");
        if p.is_file() {
            return p;
        }
    }
    "named".into()
}

/// Waits until something accepts TCP connections on `addr`.
async fn wait_port(addr: SocketAddr, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {addr}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A PEM block.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes a chain and key as PEM files.
pub fn write_pair(ck: &berth::tls::CertAndKey, cert: &Path, key: &Path) {
    let chain: String = ck
        .chain
        .iter()
        .map(|c| pem_block("CERTIFICATE", c.as_ref()))
        .collect();
    std::fs::write(cert, chain).unwrap();
    std::fs::write(key, pem_block("PRIVATE KEY", ck.key.secret_der())).unwrap();
}

/// BIND 9 serving `apps.test` on a loopback port, updatable with the TSIG key.
pub struct Named {
    pub addr: SocketAddr,
    /// The TSIG secret, base64.
    pub secret: String,
    _child: Child,
}

impl Named {
    pub async fn start(dir: &Path) -> Named {
        let dir = dir.join("named");
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let secret = {
            use base64::Engine;
            let raw: [u8; 32] = rand::random();
            base64::engine::general_purpose::STANDARD.encode(raw)
        };
        let d = dir.display();
        std::fs::write(
            dir.join("named.conf"),
            format!(
                r#"options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{secret}"; }};
zone "{ZONE}" {{ type primary; file "{d}/{ZONE}.zone"; allow-update {{ key "{KEY_NAME}"; }}; }};
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{ZONE}.zone")),
            format!(
                "$TTL 60\n@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 60 60 600 60\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n"
            ),
        )
        .unwrap();
        let log = dir.join("named.log");
        let child = Command::new(named_bin())
            .arg("-g")
            .arg("-c")
            .arg(dir.join("named.conf"))
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("named.err")).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("start named");
        wait_port(addr, "named", &log).await;
        Named {
            addr,
            secret,
            _child: child,
        }
    }

    /// `nsupdate -y` key argument.
    pub fn nsupdate_key(&self) -> String {
        format!("hmac-sha256:{KEY_NAME}:{}", self.secret)
    }
}

/// Pebble on loopback ports, resolving through `dns`.
pub struct Pebble {
    /// `https://localhost:PORT/dir`
    pub directory: String,
    /// The CA file that verifies Pebble's own HTTPS.
    pub https_ca: PathBuf,
    /// Pebble's issuing root (from `/roots/0`).
    pub root_pem: PathBuf,
    _child: Child,
}

impl Pebble {
    /// Starts Pebble; `validity_secs` sets its certificates' lifetime.
    pub async fn start(dir: &Path, dns: SocketAddr, validity_secs: Option<u64>) -> Pebble {
        Self::start_with(dir, dns, validity_secs, &[]).await
    }

    /// Like [`Pebble::start`], refusing to issue for `blocked` domains.
    pub async fn start_with(
        dir: &Path,
        dns: SocketAddr,
        validity_secs: Option<u64>,
        blocked: &[&str],
    ) -> Pebble {
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = berth::tls::LocalCa::load_or_create(&dir.join("https-ca")).unwrap();
        let leaf = ca.issue(&["localhost".to_owned()]).unwrap();
        write_pair(&leaf, &dir.join("cert.pem"), &dir.join("key.pem"));
        let (port, mgmt) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": free_port(),
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "domainBlocklist": blocked,
            }
        });
        if let Some(v) = validity_secs {
            config["pebble"]["certificateValidityPeriod"] = v.into();
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let child = Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("pebble.err")).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble");
        wait_port(([127, 0, 0, 1], port).into(), "pebble", &log).await;
        wait_port(([127, 0, 0, 1], mgmt).into(), "pebble management", &log).await;
        let https_ca = ca.cert_path().to_owned();
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&https_ca).unwrap()).unwrap(),
            )
            .build()
            .unwrap();
        let root = client
            .get(format!("https://localhost:{mgmt}/roots/0"))
            .send()
            .await
            .expect("pebble /roots/0")
            .text()
            .await
            .unwrap();
        assert!(root.contains("BEGIN CERTIFICATE"), "{root}");
        let root_pem = dir.join("root.pem");
        std::fs::write(&root_pem, root).unwrap();
        Pebble {
            directory: format!("https://localhost:{port}/dir"),
            https_ca,
            root_pem,
            _child: child,
        }
    }
}

/// A berth control server started from a TOML file.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub certs: Arc<SwappableCert>,
    pub acme: Option<Arc<berth::tls::acme::Manager>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Builds and runs `berth control` with `toml` (listeners on port 0).
    pub async fn start(toml: &str, dir: &Path) -> Running {
        trace_init();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("berth-{}.toml", rand::random::<u32>()));
        std::fs::write(&path, toml).unwrap();
        let file = FileConfig::load(Some(&path), []).unwrap();
        let flags = Overrides {
            listen: Some("127.0.0.1:0".into()),
            admin_listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        };
        let cfg = ServerConfig::resolve(file, flags, RoleDefaults::CONTROL).unwrap();
        let server = Server::build(cfg, false).await.expect("berth starts");
        let (addr, admin, certs) = (
            server.local_addr,
            server.admin_addr.unwrap(),
            server.certs.clone(),
        );
        let acme = server.acme();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Running {
            addr,
            admin,
            certs,
            acme,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The leaf currently served, parsed.
    pub fn leaf(&self) -> berth::tls::info::CertInfo {
        berth::tls::info::cert_info(&self.certs.current_chain()[0]).unwrap()
    }

    /// Waits until the served leaf is no longer berth's temporary one.
    pub async fn wait_issued(&self, limit: Duration) -> berth::tls::info::CertInfo {
        let deadline = Instant::now() + limit;
        loop {
            let leaf = self.leaf();
            if !leaf.issuer.contains("temporary") {
                return leaf;
            }
            assert!(Instant::now() < deadline, "no certificate after {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops and drains.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A TLS handshake with `127.0.0.1:port` as `sni`, trusting only `root`;
/// returns the chain the server sent (the handshake verified it).
pub async fn served_chain(
    root: &Path,
    sni: &str,
    port: u16,
) -> std::io::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    let cfg = berth::tls::client::client_config(Some(root), &[b"http/1.1"]).unwrap();
    let addrs = [SocketAddr::from(([127, 0, 0, 1], port))];
    let tls = tokio::time::timeout(
        Duration::from_secs(10),
        berth::tls::client::connect_to(sni, port, &addrs, cfg),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .to_vec())
}

/// Keeps `workers` clients sending requests (a new TLS connection each) to
/// `url` until stopped; counts successes and failures.
pub struct Load {
    pub ok: Arc<std::sync::atomic::AtomicU64>,
    pub failed: Arc<std::sync::atomic::AtomicU64>,
    pub errors: Arc<std::sync::Mutex<Vec<String>>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(root: &Path, url: String, workers: usize) -> Load {
        use std::sync::atomic::Ordering;
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let pem = std::fs::read(root).unwrap();
        let tasks = (0..workers)
            .map(|_| {
                let client = reqwest::Client::builder()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                    .resolve_to_addrs(
                        reqwest::Url::parse(&url).unwrap().host_str().unwrap(),
                        &[SocketAddr::from(([127, 0, 0, 1], 0))],
                    )
                    .pool_max_idle_per_host(0)
                    .http1_only()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let (ok, failed, errors, rx, url) = (
                    ok.clone(),
                    failed.clone(),
                    errors.clone(),
                    rx.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    while !*rx.borrow() {
                        match client.get(&url).send().await {
                            Ok(r) => {
                                let _ = r.bytes().await;
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.lock().unwrap().push(format!("{e:?}"));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load {
            ok,
            failed,
            errors,
            stop,
            tasks,
        }
    }

    /// Stops the workers; returns (succeeded, failed, first errors).
    pub async fn finish(self) -> (u64, u64, Vec<String>) {
        use std::sync::atomic::Ordering;
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let errors = self
            .errors
            .lock()
            .unwrap()
            .iter()
            .take(3)
            .cloned()
            .collect();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            errors,
        )
    }
}
