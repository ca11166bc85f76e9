//! `berth port-forward` as a real child process: local listeners whose TCP
//! connections go through the edge (`Upgrade: berth-tcp`) and the agent's
//! tunnel to a workspace port, with the port's own access rule, through a
//! regional relay too.

use crate::regions::{start_edge, within};
use crate::support::{free_port, postgres, run_agent, Berth, Options};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// `berth ARGS` with `BERTH_CONFIG_DIR=config` and none of the caller's
/// `BERTH_*` settings.
fn berth_cmd(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") || k == "SSL_CERT_FILE" || k == "XDG_CONFIG_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd.env("BERTH_CONFIG_DIR", config)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `berth login URL --token TOKEN` into `config`.
async fn login(berth: &Berth, config: &Path, token: &str) {
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let o = berth_cmd(
        config,
        &[
            "login",
            &url,
            "--token",
            token,
            "--ca-file",
            berth.ca_pem.to_str().unwrap(),
        ],
    )
    .output()
    .await
    .unwrap();
    assert!(o.status.success(), "{o:?}");
}

/// A running `berth port-forward` and the local addresses it printed.
struct Forwarder {
    child: Child,
    listening: Vec<SocketAddr>,
    /// What it said on stdout before listening.
    banner: String,
}

/// Starts `berth port-forward ARGS`; the forwarder once it printed its
/// listeners, or its exit code, stdout and stderr if it ended first.
async fn forward(config: &Path, args: &[&str]) -> Result<Forwarder, (i32, String, String)> {
    let mut all = vec!["port-forward"];
    all.extend_from_slice(args);
    let mut child = berth_cmd(config, &all).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let mut listening = Vec::new();
    let read = async {
        while let Some(line) = out.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if let Some(rest) = line.strip_prefix("Forwarding ") {
                listening.push(rest.split(' ').next().unwrap().parse().unwrap());
            }
            if line.starts_with("Press Ctrl-C") {
                return true;
            }
        }
        false
    };
    let started = tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("port-forward printed its listeners or ended in time");
    if started {
        return Ok(Forwarder {
            child,
            listening,
            banner,
        });
    }
    let status = child.wait().await.unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    Err((status.code().unwrap_or(-1), banner, err))
}

impl Forwarder {
    /// Stops it; what it wrote on stderr.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err).await;
        }
        err
    }
}

/// The byte at `i` of stream `seed`.
fn pattern(seed: u8, i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed
}

fn chunk(seed: u8, from: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|k| pattern(seed, from + k)).collect()
}

const CHUNK: usize = 64 * 1024;

/// A TCP "app": per connection it reads `n` bytes (hashing them) while
/// writing `n` bytes of stream 2, then writes the SHA-256 of what it read.
async fn transfer_app(n: u64) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let writer = tokio::spawn(async move {
                    let mut sent = 0u64;
                    while sent < n {
                        let len = CHUNK.min((n - sent) as usize);
                        if w.write_all(&chunk(2, sent, len)).await.is_err() {
                            return None;
                        }
                        sent += len as u64;
                    }
                    Some(w)
                });
                let mut h = Sha256::new();
                let mut got = 0u64;
                let mut buf = vec![0; CHUNK];
                while got < n {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            h.update(&buf[..k]);
                            got += k as u64;
                        }
                    }
                }
                if let Ok(Some(mut w)) = writer.await {
                    let _ = w.write_all(&h.finalize()).await;
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (port, task)
}

/// Sends `n` bytes of stream 1 to `addr` while reading `n` bytes and a
/// digest back; checks both SHA-256s and returns how long it took.
async fn transfer(addr: SocketAddr, n: u64) -> Duration {
    let t0 = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut h = Sha256::new();
        let mut sent = 0u64;
        while sent < n {
            let len = CHUNK.min((n - sent) as usize);
            let c = chunk(1, sent, len);
            h.update(&c);
            w.write_all(&c).await.unwrap();
            sent += len as u64;
        }
        (h.finalize().to_vec(), w)
    });
    let mut got = Sha256::new();
    let mut want = Sha256::new();
    let mut read = 0u64;
    let mut buf = vec![0; CHUNK];
    while read < n {
        let k = r
            .read(&mut buf[..CHUNK.min((n - read) as usize)])
            .await
            .unwrap();
        assert!(k > 0, "the stream ended after {read} of {n} bytes");
        got.update(&buf[..k]);
        want.update(chunk(2, read, k));
        read += k as u64;
    }
    assert_eq!(
        got.finalize(),
        want.finalize(),
        "the app's {n} bytes arrived changed"
    );
    let mut digest = Vec::new();
    r.read_to_end(&mut digest).await.unwrap();
    let (sent_digest, _w) = writer.await.unwrap();
    assert_eq!(digest, sent_digest, "the app got our {n} bytes changed");
    t0.elapsed()
}

/// A `psql` binary, or `None` (after a `SKIPPED` line) where PostgreSQL is
/// not required; with `BERTH_REQUIRE_POSTGRES=1` a missing one fails.
fn psql() -> Option<&'static str> {
    let found = std::process::Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("psql");
    }
    assert!(
        std::env::var("BERTH_REQUIRE_POSTGRES").as_deref() != Ok("1"),
        "BERTH_REQUIRE_POSTGRES=1 but psql is not installed (apt-get install postgresql-client)"
    );
    eprintln!("SKIPPED: psql not installed");
    None
}

/// A real `psql` session with a real PostgreSQL as the workspace app, and
/// 100 MiB each way with SHA-256 checked, through `berth port-forward`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_and_100_mib_each_way_through_port_forward() {
    let Some(db) = postgres::fresh_database().await else {
        return;
    };
    let Some(psql) = psql() else { return };
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let agent_token = berth.create_agent("api", "vm").await;
    let _agent = berth.spawn_agent(&agent_token, Default::default());
    berth.wait_agents(1).await;
    let n: u64 = 100 * 1024 * 1024;
    let (app_port, _app) = transfer_app(n).await;
    let pg: reqwest::Url = db.url.parse().unwrap();
    let pg_port = pg.port().unwrap();

    let cfg = tempfile::tempdir().unwrap();
    login(&berth, cfg.path(), &berth.admin_token).await;
    let fwd = forward(
        cfg.path(),
        &[
            "api/vm",
            "--tcp",
            &format!("0:{pg_port}"),
            "--tcp",
            &format!("0:{app_port}"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("port-forward did not start: {e:?}"));
    assert_eq!(fwd.listening.len(), 2, "{}", fwd.banner);
    assert!(
        fwd.banner
            .contains(&format!("-> port {pg_port} of admin/api/vm")),
        "{}",
        fwd.banner
    );
    assert!(fwd.listening.iter().all(|a| a.ip().is_loopback()));

    // psql, against the forwarded port, as it would against the real one.
    let mut local = pg.clone();
    local.set_port(Some(fwd.listening[0].port())).unwrap();
    let o = tokio::process::Command::new(psql)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            local.as_str(),
        ])
        .args([
            "-c",
            "CREATE TABLE pets (name text)",
            "-c",
            "INSERT INTO pets VALUES ('rex'), ('tom')",
            "-c",
            "SELECT string_agg(name, ',' ORDER BY name) FROM pets",
            "-c",
            "SELECT current_database()",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "psql: {stdout} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"rex,tom"), "{stdout}");
    assert!(
        lines.contains(&pg.path().trim_start_matches('/')),
        "{stdout}"
    );

    // 100 MiB both ways at once, byte for byte.
    let took = transfer(fwd.listening[1], n).await;
    println!(
        "port-forward: 100 MiB each way in {took:?} ({:.0} MiB/s each way)",
        100.0 / took.as_secs_f64()
    );
    let err = fwd.stop().await;
    assert!(!err.contains("berth:"), "{err}");
}

/// The port's own rule: a visitor without access is refused before
/// anything listens (exit 1, the edge's answer); once the port is shared
/// with signed-in users she gets through, and loses an open connection
/// within seconds when the share is lowered again. A closed port is
/// reported per connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_follows_the_ports_access_rule() {
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let agent_token = berth.create_agent("api", "vm").await;
    let _agent = berth.spawn_agent(&agent_token, Default::default());
    berth.wait_agents(1).await;
    let (app_port, _app) = transfer_app(1 << 40).await;
    let bob = berth.user_token("bob", "bobbobbob", "member", None).await;
    let cfg = tempfile::tempdir().unwrap();
    login(&berth, cfg.path(), &bob).await;
    let spec = format!("0:{app_port}");
    let args = ["api/vm", "--user", "admin", "--tcp", &spec];

    // Not shared: refused before listening, with the edge's words.
    let Err((code, out, err)) = forward(cfg.path(), &args).await else {
        panic!("bob may not forward admin's private port");
    };
    assert_eq!(code, 1, "{out} {err}");
    assert!(!out.contains("Forwarding"), "{out}");
    assert!(err.contains(&format!("port {app_port}")), "{err}");
    assert!(err.contains("404"), "{err}");

    // Shared with signed-in users: bob gets through.
    berth
        .share(
            &berth.admin_token,
            "admin/api/vm",
            app_port,
            json!({"level": "authenticated"}),
        )
        .await;
    let fwd = forward(cfg.path(), &args)
        .await
        .unwrap_or_else(|e| panic!("bob may forward an authenticated share: {e:?}"));
    let mut conn = TcpStream::connect(fwd.listening[0]).await.unwrap();
    let mut buf = vec![0; 4096];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, chunk(2, 0, 4096), "the app's first bytes");
    let metrics = reqwest::get(format!("http://{}/metrics", berth.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_edge_tracked_connections 1"),
        "tracked for revocation like a WebSocket: {metrics}"
    );

    // Private again: the open connection ends within seconds.
    let t0 = Instant::now();
    let (s, b) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/workspaces/admin/api/agents/vm/ports/{app_port}/share"),
            &berth.admin_token,
            None,
        )
        .await;
    assert!((200..300).contains(&s), "{s} {b}");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the forwarded connection outlived the share");
    println!(
        "forwarded connection closed {:?} after the unshare",
        t0.elapsed()
    );

    // A closed port: access is fine, each connection is told and closed.
    let closed = free_port();
    berth
        .share(
            &berth.admin_token,
            "admin/api/vm",
            closed,
            json!({"level": "authenticated"}),
        )
        .await;
    let spec = format!("0:{closed}");
    let fwd2 = forward(cfg.path(), &["api/vm", "--user", "admin", "--tcp", &spec])
        .await
        .unwrap_or_else(|e| panic!("access to a closed port is still access: {e:?}"));
    let mut c = TcpStream::connect(fwd2.listening[0]).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
        .await
        .expect("the local connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let err = fwd2.stop().await;
    assert!(
        err.contains(&format!("port {closed}")) && err.contains("502"),
        "{err}"
    );
    fwd.stop().await;
}

/// An agent on a regional edge, the CLI signed in at control: control's
/// edge relays each forwarded connection to the edge that holds the tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_goes_through_a_regional_relay() {
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    let eu_port = free_port();
    let (s, r) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(json!({"name": "eu", "url": format!("https://eu.berth.localhost:{eu_port}"), "wildcard": "*.eu.berth.localhost"})),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let dir = tempfile::tempdir().unwrap();
    let token = r["region_token"].as_str().unwrap().to_owned();
    let (eu, _stop_eu, eu_rx) = start_edge(&berth, "eu", &token, eu_port, dir.path()).await;
    let eu_tunnels = eu.tunnels.clone();
    let _eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    let agent_token = berth.create_agent("api", "laptop").await;
    let _agent = run_agent(berth::agent::AgentConfig {
        region: Some("eu".into()),
        ..berth.agent_config(&agent_token, berth.addr.port())
    });
    within(Duration::from_secs(10), "agent on eu", || {
        let e = eu_tunnels.clone();
        async move { e.len() == 1 }
    })
    .await;
    within(
        Duration::from_secs(5),
        "control knows it is connected",
        || {
            let (berth, admin) = (&berth, &admin);
            async move {
                let (_, a) = berth
                    .api(
                        Method::GET,
                        "/api/v1/workspaces/admin/api/agents",
                        admin,
                        None,
                    )
                    .await;
                a[0]["connected"] == true
            }
        },
    )
    .await;
    assert_eq!(berth.server.tunnels.len(), 0, "not at control: relayed");

    let n: u64 = 16 * 1024 * 1024;
    let (app_port, _app) = transfer_app(n).await;
    let cfg = tempfile::tempdir().unwrap();
    login(&berth, cfg.path(), &admin).await;
    let spec = format!("0:{app_port}");
    let fwd = forward(cfg.path(), &["api/laptop", "--tcp", &spec])
        .await
        .unwrap_or_else(|e| panic!("port-forward did not start: {e:?}"));
    assert!(
        fwd.banner
            .contains(&format!("berth.localhost:{}", berth.addr.port())),
        "through control's edge: {}",
        fwd.banner
    );
    let took = transfer(fwd.listening[0], n).await;
    println!("port-forward through a relay: 16 MiB each way in {took:?}");
    let err = fwd.stop().await;
    assert!(!err.contains("berth:"), "{err}");
}
