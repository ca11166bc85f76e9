//! Idle connections: what one idle agent tunnel and one idle WebSocket cost
//! the edge in memory (issue 4: <= 30 KiB per tunnel, <= 20 KiB per
//! WebSocket).
//!
//! * **Tunnels**: a fresh `berth dev` (with its admin listener, to read
//!   `berth_edge_agents_connected`), N agents created through the API (real
//!   agent tokens), then a *swarm*: this bench binary re-executed with
//!   `BERTH_BENCH_ROLE=swarm`, running N real agent sessions in one process
//!   with berth's own [`berth::agent::run`] (TLS to the edge, the upgrade,
//!   then the HTTP/2 server of a tunnel). The swarm is its own process, so
//!   the edge's memory is measured alone.
//! * **WebSockets**: another fresh `berth dev` and `berth agent` processes
//!   (at most 5,000 streams each), then N WebSockets from this process over
//!   TLS (HTTP/1.1 Upgrade) through the edge and the tunnel to the origin's
//!   `/ws`, which answers 101 and stays idle.
//!
//! The figure is the edge process's resident memory (`VmRSS` of `berth dev`
//! from /proc) after all N are up and a short settle, minus before, over N.
//! Each measurement gets a fresh edge, so memory freed by an earlier load
//! cannot hide the cost.

use crate::net::{Proto, Target};
use crate::procs::{free_port, Berth, Proc};
use anyhow::{anyhow, bail, Context as _, Result};
use futures_util::{stream, StreamExt as _, TryStreamExt as _};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// At most this many WebSocket streams per agent (an agent serves up to
/// 10,000 concurrent tunnel streams; the edge keeps a pooled one warm).
const STREAMS_PER_AGENT: usize = 5_000;
/// Connections opened at the same time while setting up.
const SETUP_CONCURRENCY: usize = 64;
/// Agents created through the API at the same time.
const API_CONCURRENCY: usize = 8;

/// One idle-memory measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IdleRow {
    pub scenario: String,
    /// Connections asked for
    pub count: usize,
    /// Connections that were up when the edge was measured
    pub connected: usize,
    /// `VmRSS` of `berth dev` before and after, KiB
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// (after - before) / connected
    pub kib_per_connection: f64,
    /// The target, KiB per connection
    pub target_kib: f64,
    /// Time to open all of them, s
    pub setup_s: f64,
}

impl IdleRow {
    fn print(&self) {
        println!(
            "  {} | berth dev: {} up, RSS {:.1} -> {:.1} MiB, {:.1} KiB each (target <= {:.0} KiB), opened in {:.1} s",
            self.scenario,
            self.connected,
            self.rss_before_kib as f64 / 1024.0,
            self.rss_after_kib as f64 / 1024.0,
            self.kib_per_connection,
            self.target_kib,
            self.setup_s,
        );
    }
}

/// The idle rows as a Markdown table.
pub fn table(rows: &[IdleRow]) -> String {
    let mut out = String::from(
        "| scenario | up | edge RSS before MiB | after MiB | KiB each | target KiB | setup s |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} |\n",
            r.scenario,
            r.connected,
            r.rss_before_kib as f64 / 1024.0,
            r.rss_after_kib as f64 / 1024.0,
            r.kib_per_connection,
            r.target_kib,
            r.setup_s,
        );
    }
    out
}

/// Resident memory of a process, KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (Linux only)"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

/// Raises the soft open-files limit to the hard one (children inherit it):
/// 10,000 idle connections need more than the usual 1,024 descriptors.
pub fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if n < 20_000 => eprintln!(
            "e2e bench: the open-files limit is {n}; the full idle scenario needs ~20,000 (raise the hard limit: ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("e2e bench: cannot raise the open-files limit: {e}"),
    }
}

/// Lets the edge finish what the setup started (log lines, pings) before
/// its memory is read.
const SETTLE: Duration = Duration::from_secs(2);

/// N idle agent tunnels from a swarm process to a fresh `berth dev`.
pub async fn tunnels(scratch: &Path, app_port: u16, count: usize) -> Result<IdleRow> {
    let dir = scratch.join("idle-tunnels");
    std::fs::create_dir_all(&dir)?;
    let admin = free_port()?;
    let mut berth = Berth::start_with_admin(&dir, app_port, Some(admin)).await?;
    let pid = berth.dev.pid();

    // Real agents with real tokens, through the API.
    let t0 = Instant::now();
    berth.create_workspace("swarm").await?;
    let tokens: Vec<String> = stream::iter(0..count)
        .map(|i| {
            let berth = &berth;
            async move { berth.create_agent("swarm", &format!("a{i}")).await }
        })
        .buffer_unordered(API_CONCURRENCY)
        .try_collect()
        .await?;
    let created = t0.elapsed();
    println!(
        "  idle tunnels: created {count} agents through the API in {:.1} s ({:.0}/s)",
        created.as_secs_f64(),
        count as f64 / created.as_secs_f64()
    );
    let token_file = dir.join("swarm-tokens");
    std::fs::write(&token_file, tokens.join("\n"))?;

    let connected = || connected_agents(admin);
    let base = connected().await?;
    tokio::time::sleep(SETTLE).await;
    let before = rss_kib(pid)?;

    let t0 = Instant::now();
    let swarm = Swarm::start(&dir, berth.port, &berth.ca_file(), &token_file)?;
    let deadline = t0 + Duration::from_secs(30 + count as u64 / 50);
    let mut up = 0;
    while up < count {
        berth.dev.check_alive()?;
        if Instant::now() > deadline {
            bail!(
                "only {up} of {count} swarm tunnels connected within {:?}\nberth dev log:\n{}",
                deadline - t0,
                berth.dev.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        up = connected().await?.saturating_sub(base);
    }
    let setup = t0.elapsed();
    tokio::time::sleep(SETTLE).await;
    let up = connected().await?.saturating_sub(base);
    let after = rss_kib(pid)?;
    drop(swarm);
    drop(berth);
    let row = row(
        format!("{count} idle agent tunnels"),
        count,
        up,
        before,
        after,
        30.0,
        setup,
    );
    row.print();
    Ok(row)
}

/// N idle WebSockets through a fresh `berth dev` and its agents.
pub async fn websockets(scratch: &Path, app_port: u16, count: usize) -> Result<IdleRow> {
    let dir = scratch.join("idle-websockets");
    std::fs::create_dir_all(&dir)?;
    let mut berth = Berth::start(&dir, app_port).await?;
    let pid = berth.dev.pid();
    let mut targets = Vec::new();
    let mut agents: Vec<Proc> = Vec::new();
    for i in 0..count.div_ceil(STREAMS_PER_AGENT).max(1) {
        let (t, p) = berth
            .start_agent_in(
                "berth (agent process)",
                &format!("ws{i}"),
                berth.port,
                app_port,
                &[],
            )
            .await?;
        targets.push(t);
        agents.push(p);
    }
    tokio::time::sleep(SETTLE).await;
    let before = rss_kib(pid)?;

    let t0 = Instant::now();
    let sockets: Vec<_> = stream::iter(0..count)
        .map(|i| websocket(&targets[i % targets.len()]))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    let setup = t0.elapsed();
    tokio::time::sleep(SETTLE).await;
    berth.dev.check_alive()?;
    let after = rss_kib(pid)?;
    let up = sockets.len();
    drop(sockets);
    drop(agents);
    drop(berth);
    let row = row(
        format!("{count} idle WebSockets"),
        count,
        up,
        before,
        after,
        20.0,
        setup,
    );
    row.print();
    Ok(row)
}

fn row(
    scenario: String,
    count: usize,
    connected: usize,
    before: u64,
    after: u64,
    target_kib: f64,
    setup: Duration,
) -> IdleRow {
    IdleRow {
        scenario,
        count,
        connected,
        rss_before_kib: before,
        rss_after_kib: after,
        kib_per_connection: (after as f64 - before as f64) / connected.max(1) as f64,
        target_kib,
        setup_s: setup.as_secs_f64(),
    }
}

/// Opens one WebSocket to the origin's `/ws` through `target` (TLS,
/// HTTP/1.1 Upgrade) and returns it, open and idle.
async fn websocket(
    target: &Target,
) -> Result<tokio_tungstenite::WebSocketStream<crate::net::BoxIo>> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let io = target.dial(Proto::H1).await?;
    let mut req = format!("wss://{}/ws", target.authority).into_client_request()?;
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, target.auth.parse()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async(req, io),
    )
    .await
    .map_err(|_| anyhow!("WebSocket through {} not open within 30 s", target.name))?
    .with_context(|| format!("WebSocket through {}", target.name))?;
    Ok(ws)
}

/// `berth_edge_agents_connected` from the admin listener's `/metrics`.
async fn connected_agents(admin: u16) -> Result<usize> {
    let t = Target {
        name: "berth admin",
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], admin)),
        authority: format!("127.0.0.1:{admin}"),
        tls: None,
        auth: String::new(),
    };
    let (status, body) = t.once(http::Method::GET, "/metrics", None).await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix("berth_edge_agents_connected "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as usize)
        .ok_or_else(|| anyhow!("no berth_edge_agents_connected in /metrics"))
}

/// The swarm process: many agent sessions in one process. Stopped on drop.
struct Swarm {
    child: Child,
}

impl Swarm {
    fn start(dir: &Path, edge_port: u16, ca: &Path, tokens: &Path) -> Result<Swarm> {
        let log = std::fs::File::create(dir.join("swarm.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .env("BERTH_BENCH_ROLE", "swarm")
            .env("BERTH_BENCH_SWARM_PORT", edge_port.to_string())
            .env("BERTH_BENCH_SWARM_CA", ca)
            .env("BERTH_BENCH_SWARM_TOKENS", tokens)
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the swarm (this bench, re-executed)")?;
        Ok(Swarm { child })
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Agents the swarm starts per batch, and the pause between batches, so
/// the edge's accept queue is not flooded.
const SWARM_BATCH: usize = 50;
const SWARM_PAUSE: Duration = Duration::from_millis(10);

/// The swarm role (`BERTH_BENCH_ROLE=swarm`): runs one [`berth::agent::run`]
/// per token in `BERTH_BENCH_SWARM_TOKENS`, dialing the edge on
/// 127.0.0.1:`BERTH_BENCH_SWARM_PORT` and trusting `BERTH_BENCH_SWARM_CA`,
/// until its stdin closes.
pub fn swarm() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("swarm: {k} is not set"));
    let port: u16 = var("BERTH_BENCH_SWARM_PORT")
        .parse()
        .expect("swarm: BERTH_BENCH_SWARM_PORT is a port");
    let ca = std::path::PathBuf::from(var("BERTH_BENCH_SWARM_CA"));
    let tokens = std::fs::read_to_string(var("BERTH_BENCH_SWARM_TOKENS"))
        .expect("swarm: cannot read the token file");
    // Exit when the bench goes away (stdin reaches EOF).
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("swarm: tokio runtime");
    runtime.block_on(async move {
        let tokens: Vec<&str> = tokens.lines().filter(|l| !l.is_empty()).collect();
        println!("swarm: {} agents to 127.0.0.1:{port}", tokens.len());
        let _ = std::io::stdout().flush();
        for batch in tokens.chunks(SWARM_BATCH) {
            for token in batch {
                let cfg = berth::agent::AgentConfig {
                    url: format!("https://berth.localhost:{port}"),
                    token: berth::auth::Secret::new(*token),
                    ca_file: Some(ca.clone()),
                    connect_to: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
                    upstream: Default::default(),
                    region: None,
                    standby: false,
                    tunnels: berth::agent::DEFAULT_TUNNELS,
                };
                tokio::spawn(async move {
                    if let Err(e) = berth::agent::run(cfg, std::future::pending()).await {
                        println!("swarm: agent stopped: {e}");
                    }
                });
            }
            tokio::time::sleep(SWARM_PAUSE).await;
        }
        std::future::pending::<()>().await;
    });
}
