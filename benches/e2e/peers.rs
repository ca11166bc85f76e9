//! The peers berth is compared with, run as child processes on free
//! loopback ports with configurations generated into the run's temporary
//! directory:
//!
//! * **nginx one hop**: nginx terminates TLS (an ECDSA P-256 certificate
//!   issued by the run's berth CA, so the same client trust works for
//!   both) and proxies to the origin over HTTP/1.1 with upstream
//!   keep-alive; `worker_processes auto`.
//! * **nginx + rathole**: the same nginx proxies to a rathole server's
//!   service port; a rathole client forwards to the origin: what a team
//!   would put together by hand to reach an app behind NAT.
//!
//! Both stream bodies in each direction (`proxy_buffering off`,
//! `proxy_request_buffering off`) as berth does, so a 1 GiB upload is not
//! first spooled to disk. nginx writes an access log line per request to a
//! file, as berth does at `info`. rathole's tunnel uses its default
//! transport, plain TCP: unencrypted, unlike berth's TLS tunnel, which
//! favours rathole.
//!
//! A peer that is not installed is skipped with one line; nothing here ever
//! installs anything (that is `benches/peers.sh`).

use crate::net::{Target, Tls};
use crate::procs::{free_port, Proc};
use crate::tools::which;
use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use http::Method;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The host name the peers are asked for (SNI and `Host`); the certificate
/// covers `*.berth.localhost`.
const PEER_HOST: &str = "peer.berth.localhost";

/// An nginx master process, stopped with SIGQUIT then SIGTERM on drop:
/// SIGKILL on the master would leave its workers running.
pub struct Nginx {
    proc: Option<Proc>,
    pub port: u16,
    pid_file: PathBuf,
}

impl Nginx {
    /// Starts nginx in `dir` proxying to `upstream`; `None` (with a line on
    /// stdout) if nginx is not installed.
    pub async fn start(dir: &Path, name: &str, upstream: SocketAddr) -> Result<Option<Nginx>> {
        let Some(exe) = which("nginx") else {
            println!("  nginx not installed: run benches/peers.sh ({name} skipped)");
            return Ok(None);
        };
        let dir = nginx_dir(dir, name);
        for sub in ["tmp", "logs"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        let pid_file = dir.join("nginx.pid");
        std::fs::write(&conf, nginx_conf(&dir, port, upstream, &pid_file))?;
        let mut cmd = Command::new(exe);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("logs/error.log"));
        let proc = Proc::spawn("nginx", cmd, dir.join("logs/stdout.log"))?;
        Ok(Some(Nginx {
            proc: Some(proc),
            port,
            pid_file,
        }))
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// The worker processes' pids (children of the master).
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    /// The load target for this nginx, with the client trust of `tls`
    /// (the berth CA that issued nginx's certificate).
    pub fn target(&self, name: &'static str, tls: &Tls, auth: &str) -> Target {
        Target {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            authority: format!("{PEER_HOST}:{}", self.port),
            tls: Some(Tls {
                host: PEER_HOST.into(),
                ..tls.clone()
            }),
            auth: auth.to_owned(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.pid();
        // Graceful stop first (workers finish and exit), then the hard way.
        signal("QUIT", pid);
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && self.pid_file.exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let workers = children_of(pid);
        signal("TERM", pid);
        for w in workers {
            signal("KILL", w);
        }
        drop(self.proc.take());
    }
}

fn signal(sig: &str, pid: u32) {
    if pid != 0 {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Pids whose parent is `parent` (from /proc; Linux only).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let ppid = s.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_owned();
                    ppid.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

fn nginx_conf(dir: &Path, port: u16, upstream: SocketAddr, pid_file: &Path) -> String {
    let d = dir.display();
    format!(
        r#"# Generated by the berth e2e bench.
daemon off;
master_process on;
worker_processes auto;
pid {pid};
error_log {d}/logs/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/client;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    upstream origin {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {d}/cert.pem;
        ssl_certificate_key {d}/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"#,
        pid = pid_file.display(),
    )
}

/// Issues nginx's certificate (ECDSA P-256, `*.berth.localhost`) from the
/// berth CA in `ca_dir` and writes `cert.pem` / `key.pem` into each nginx
/// directory that `Nginx::start` uses.
pub fn write_cert(ca_dir: &Path, nginx_dirs: &[PathBuf]) -> Result<()> {
    let ca = berth::tls::ca::LocalCa::load_or_create(ca_dir).context("loading the run's CA")?;
    let ck = ca
        .issue(&["*.berth.localhost".to_owned()])
        .context("issuing nginx's certificate")?;
    let mut chain = String::new();
    for c in &ck.chain {
        chain += &pem("CERTIFICATE", c.as_ref());
    }
    let key = pem("PRIVATE KEY", ck.key.secret_der());
    for d in nginx_dirs {
        std::fs::create_dir_all(d)?;
        std::fs::write(d.join("cert.pem"), &chain)?;
        std::fs::write(d.join("key.pem"), &key)?;
    }
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out += std::str::from_utf8(line).expect("base64 is ascii");
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// The directory `Nginx::start(dir, name, ..)` uses.
pub fn nginx_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.replace([' ', '+'], "-"))
}

/// A rathole server and client forwarding the server's service port to
/// `origin`.
pub struct Rathole {
    pub server: Proc,
    pub client: Proc,
    /// Where the server accepts visitors for the tunnelled service.
    pub service: SocketAddr,
}

impl Rathole {
    /// Starts both ends; `None` (with a line) if rathole is not installed.
    pub fn start(dir: &Path, origin: SocketAddr) -> Result<Option<Rathole>> {
        let exe = which("rathole").or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
            Some(home.join("bin/rathole")).filter(|p| p.is_file())
        });
        let Some(exe) = exe else {
            println!("  rathole not installed: run benches/peers.sh (nginx + rathole skipped)");
            return Ok(None);
        };
        let dir = dir.join("rathole");
        std::fs::create_dir_all(&dir)?;
        let control = free_port()?;
        let service = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let server_toml = dir.join("server.toml");
        let client_toml = dir.join("client.toml");
        std::fs::write(
            &server_toml,
            format!(
                "[server]\nbind_addr = \"127.0.0.1:{control}\"\ndefault_token = \"berth-bench\"\n\n\
                 [server.services.origin]\nbind_addr = \"{service}\"\n"
            ),
        )?;
        std::fs::write(
            &client_toml,
            format!(
                "[client]\nremote_addr = \"127.0.0.1:{control}\"\ndefault_token = \"berth-bench\"\n\n\
                 [client.services.origin]\nlocal_addr = \"{origin}\"\n"
            ),
        )?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--server")
            .arg(&server_toml)
            .env("RUST_LOG", "warn");
        let server = Proc::spawn("rathole server", cmd, dir.join("server.log"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("--client")
            .arg(&client_toml)
            .env("RUST_LOG", "warn");
        let client = Proc::spawn("rathole client", cmd, dir.join("client.log"))?;
        Ok(Some(Rathole {
            server,
            client,
            service,
        }))
    }
}

/// Waits until `target` answers `GET /1k` with 1024 bytes.
pub async fn wait_ready(target: &Target, log_hint: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match target.once(Method::GET, "/1k", None).await {
            Ok((200, body)) if body.len() == 1024 => return Ok(()),
            Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!(
                "{} is not ready after 30 s (last answer: {last}); see {log_hint}",
                target.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
