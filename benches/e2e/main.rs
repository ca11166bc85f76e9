//! End-to-end benchmark: the same load sent, in one run, directly to a small
//! fast origin app, through berth (edge + HTTP/2 tunnel + agent, each its
//! own process), through nginx one hop, and through nginx + rathole. Prints
//! a table with ratios, writes `target/bench-e2e.json` and
//! `target/bench-e2e.svg`.
//!
//! ```text
//! cargo bench --bench e2e                # full: 10 s per load, 1 GiB transfers
//! cargo bench --bench e2e -- --quick     # ~1 s per load, 64 MiB, no peers (CI smoke)
//! cargo bench --bench e2e -- --builtin   # ignore wrk / h2load even if installed
//! cargo bench --bench e2e -- --hold      # start origin, berth, agent; print a wrk line; wait
//! cargo bench --bench e2e -- --inspector-only   # request inspector off / headers / bodies
//! ```
//!
//! It reports numbers; it never passes or fails on them. See benches/README.md.

// The harness shares its helpers between its own modules with `pub`;
// the unreachable_pub lint is for the library's modules.
#![allow(unreachable_pub)]

mod idle;
mod inspector;
mod load;
mod net;
mod origin;
mod peers;
mod procs;
mod relay;
mod report;
mod tools;

use anyhow::{bail, Result};
use load::Load;
use net::{Proto, Target};
use report::{Kind, Measured, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Opts {
    quick: bool,
    builtin: bool,
    /// Also measure through `berth dev`'s in-process agent
    inproc: bool,
    /// Run nginx and nginx + rathole (default: yes in full mode, no in quick)
    peers: bool,
    /// Run the idle tunnels / WebSockets scenario
    idle: bool,
    /// Run only the idle scenario
    idle_only: bool,
    /// Start the processes, print how to load them, and wait (for profiling)
    hold: bool,
    /// Run only the inspector on/off comparison
    inspector_only: bool,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut o = Opts {
            quick: false,
            builtin: false,
            inproc: true,
            peers: true,
            idle: true,
            idle_only: false,
            hold: false,
            inspector_only: false,
        };
        let mut peers = None;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--builtin" => o.builtin = true,
                "--no-inproc" => o.inproc = false,
                "--peers" => peers = Some(true),
                "--no-peers" => peers = Some(false),
                "--no-idle" => o.idle = false,
                "--idle-only" => o.idle_only = true,
                "--hold" => o.hold = true,
                "--inspector-only" => o.inspector_only = true,
                // cargo bench passes --bench to every bench binary
                "--bench" => {}
                "-h" | "--help" => {
                    println!(
                        "usage: cargo bench --bench e2e -- [--quick] [--builtin] [--no-inproc] [--peers|--no-peers] [--no-idle|--idle-only] [--inspector-only] [--hold]"
                    );
                    std::process::exit(0);
                }
                other if other.starts_with('-') => bail!("unknown option {other}"),
                // a name filter from `cargo bench NAME`: this bench has one scenario set
                _ => {}
            }
        }
        // The quick smoke must not depend on what is installed: no peers
        // unless asked for.
        o.peers = peers.unwrap_or(!o.quick);
        Ok(o)
    }
}

/// Sizes and durations for one run.
struct Plan {
    warmup: Duration,
    duration: Duration,
    /// HTTP/1.1 keep-alive connections (and the HTTP/2 scenario's connections)
    connections: usize,
    /// Concurrent streams per HTTP/2 connection
    h2_streams: usize,
    /// Connections oha may use at the fixed rate
    latency_connections: usize,
    /// Loops each opening a new connection per request
    handshake_concurrency: usize,
    big: u64,
    parallel: usize,
    /// Idle agent tunnels, and idle WebSockets, in the idle scenario
    idle: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            warmup: Duration::from_secs(if quick { 1 } else { 2 }),
            duration: Duration::from_secs(if quick { 1 } else { 10 }),
            connections: 64,
            h2_streams: 10,
            latency_connections: 64,
            handshake_concurrency: 32,
            big: if quick { 64 << 20 } else { 1 << 30 },
            parallel: 4,
            idle: if quick { 200 } else { 10_000 },
        }
    }
}

fn main() -> ExitCode {
    // Children (origin, berth, swarm) inherit the raised limit.
    idle::raise_nofile_limit();
    match std::env::var("BERTH_BENCH_ROLE").as_deref() {
        Ok("origin") => {
            origin::run();
            return ExitCode::SUCCESS;
        }
        Ok("swarm") => {
            idle::swarm();
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let result = Opts::parse().and_then(|opts| {
        // Two workers: the load generator gets the same share as wrk -t2.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(async {
                // On Ctrl-C the bench future is dropped, and with it every
                // child process handle, which stops the child.
                tokio::select! {
                    r = bench(opts) => r,
                    _ = tokio::signal::ctrl_c() => bail!("interrupted; child processes stopped"),
                }
            })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// CPU time (user + system) of a process so far, from /proc (Linux only).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that ends the command name; utime and stime are
    // fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The processes whose CPU use is sampled around each measurement; a name
/// may stand for several processes (nginx's workers), summed.
struct Watch(Vec<(&'static str, Vec<u32>)>);

impl Watch {
    /// Runs `f` and returns its result with each process's CPU use, in % of one core.
    async fn measure<F: std::future::Future<Output = Result<Measured>>>(
        &self,
        f: F,
    ) -> Result<(Measured, BTreeMap<&'static str, f64>)> {
        let sum = |pids: &[u32]| -> Option<f64> {
            pids.iter().map(|p| cpu_seconds(*p)).sum::<Option<f64>>()
        };
        let before: Vec<Option<f64>> = self.0.iter().map(|(_, p)| sum(p)).collect();
        let t0 = Instant::now();
        let m = f.await?;
        let wall = t0.elapsed().as_secs_f64();
        let mut cpu = BTreeMap::new();
        for ((name, pids), b) in self.0.iter().zip(before) {
            if let (Some(b), Some(a)) = (b, sum(pids)) {
                cpu.insert(*name, (a - b) / wall * 100.0);
            }
        }
        Ok((m, cpu))
    }
}

struct Clients {
    wrk: Option<PathBuf>,
    h2load: Option<PathBuf>,
    oha: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct JsonRow {
    #[serde(flatten)]
    row: Row,
    /// CPU use per process during the measurement, % of one core
    cpu_percent: BTreeMap<&'static str, f64>,
}

/// The rows measured so far, each also printed as one line when it lands.
#[derive(Default)]
struct Rows(Vec<JsonRow>);

impl Rows {
    fn record(
        &mut self,
        scenario: &str,
        kind: Kind,
        target: &Target,
        client: &str,
        (measured, cpu): (Measured, BTreeMap<&'static str, f64>),
    ) {
        let protocol = match (kind, &target.tls, scenario.contains("h2")) {
            (_, None, true) => "HTTP/1.1 (origin has no h2)",
            (_, None, false) => "HTTP/1.1",
            (_, Some(_), true) => "HTTP/2 TLS",
            (_, Some(_), false) => "HTTP/1.1 TLS",
        };
        let f = |v: Option<f64>, d: usize| v.map(|r| format!("{r:.d$}")).unwrap_or("-".into());
        let cpu_text: Vec<String> = cpu.iter().map(|(k, v)| format!("{k} {v:.0}%")).collect();
        println!(
            "  {scenario} | {} | {protocol} | {client}: {} req/s, p50 {} ms, p99 {} ms, p99.9 {} ms, {:.1} MB/s, {} errors  [cpu: {}]",
            target.name,
            f(measured.requests_per_s, 0),
            f(measured.p50_ms, 3),
            f(measured.p99_ms, 3),
            f(measured.p999_ms, 3),
            measured.mb_per_s,
            measured.errors,
            cpu_text.join(", "),
        );
        self.0.push(JsonRow {
            row: Row {
                scenario: scenario.to_owned(),
                kind,
                target: target.name.to_owned(),
                protocol: protocol.to_owned(),
                client: client.to_owned(),
                measured,
                ratios: BTreeMap::new(),
            },
            cpu_percent: cpu,
        });
    }

    fn rate_of(&self, scenario: &str, target: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|r| r.row.scenario == scenario && r.row.target == target)
            .and_then(|r| r.row.measured.requests_per_s)
    }
}

/// What this machine is and how busy it was, for the report.
fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs ({model})")
}

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn bench(opts: Opts) -> Result<()> {
    let plan = Plan::new(opts.quick);
    let found = |name: &str| (!opts.builtin).then(|| tools::which(name)).flatten();
    let clients = Clients {
        wrk: found("wrk"),
        h2load: found("h2load"),
        oha: tools::which("oha").or_else(|| {
            let p = PathBuf::from(std::env::var_os("HOME")?).join(".cargo/bin/oha");
            p.is_file().then_some(p)
        }),
    };
    let show = |p: &Option<PathBuf>, what: &str| match p {
        Some(p) => format!("{} ({what})", p.display()),
        None => format!("built-in hyper client ({what}: not installed or --builtin)"),
    };
    let started = time::OffsetDateTime::now_utc();
    let load_before = load_average();
    println!(
        "berth e2e bench ({} mode), {}, {}, load average {}",
        if opts.quick { "quick" } else { "full" },
        started
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        machine(),
        load_before.map(|l| format!("{l:.2}")).unwrap_or("?".into()),
    );
    println!("  berth binary  {}", procs::berth_exe().display());
    println!("  HTTP/1.1 load {}", show(&clients.wrk, "wrk"));
    println!("  HTTP/2 load   {}", show(&clients.h2load, "h2load"));
    match &clients.oha {
        Some(p) => println!("  fixed rate    {} (oha)", p.display()),
        None => println!(
            "  fixed rate    oha not installed: run benches/peers.sh (latency scenario skipped)"
        ),
    }
    println!("  handshakes, downloads, uploads: built-in hyper client");

    let tmp = tempfile::tempdir()?;
    let scratch = tmp.path();
    let origin = procs::Origin::start()?;
    let app_port = origin.addr.port();
    println!(
        "  origin app    http://{} (pid {})",
        origin.addr,
        origin.pid()
    );
    if opts.idle_only {
        println!();
        let idle_rows = idle_scenarios(scratch, app_port, &plan).await?;
        println!();
        print!("{}", idle::table(&idle_rows));
        return Ok(());
    }
    if opts.inspector_only {
        println!();
        println!(
            "request inspector, 1 KiB over HTTP/1.1, {} connections:",
            plan.connections
        );
        return inspector::compare(
            scratch,
            app_port,
            plan.connections,
            plan.warmup,
            plan.duration,
        )
        .await;
    }
    let mut berth = procs::Berth::start(scratch, app_port).await?;
    println!(
        "  berth dev     https://berth.localhost:{} (pid {})",
        berth.port,
        berth.dev.pid()
    );
    let via_agent = berth.start_agent(app_port).await?;
    let agent_pid = berth.agent.as_ref().map(procs::Proc::pid).unwrap_or(0);
    println!("  berth agent   workspace bench (pid {agent_pid})");
    if opts.hold {
        // For profiling by hand (see benches/README.md): the same processes
        // the measurements use, until Ctrl-C.
        println!(
            "\n  load:  wrk -t2 -c{} -d10s -H 'Host: {}' -H 'Authorization: {}' {}",
            plan.connections,
            via_agent.authority,
            via_agent.auth,
            via_agent.ip_url("/1k")
        );
        println!(
            "  perf:  perf record -F 2000 -g -p {},{agent_pid} -- sleep 10",
            berth.dev.pid()
        );
        println!("  holding until Ctrl-C");
        std::future::pending::<()>().await;
    }

    let direct = Target {
        name: report::DIRECT,
        addr: origin.addr,
        authority: origin.addr.to_string(),
        tls: None,
        auth: format!("Bearer {}", berth.token),
    };
    let mut targets = vec![direct.clone(), via_agent.clone()];
    if opts.inproc {
        targets.push(berth.app("berth (in-process agent)", "dev", app_port));
    }
    let mut watch = Watch(vec![
        ("origin", vec![origin.pid()]),
        ("berth dev", vec![berth.dev.pid()]),
        ("berth agent", vec![agent_pid]),
    ]);

    // The peers, each skipped with one line if not installed.
    let (mut nginx, mut nginx_rh, mut rathole) = (None, None, None);
    if opts.peers {
        let tls = via_agent.tls.clone().expect("berth targets use TLS");
        let dirs = [
            peers::nginx_dir(scratch, report::NGINX),
            peers::nginx_dir(scratch, report::NGINX_RATHOLE),
        ];
        if tools::which("nginx").is_some() {
            peers::write_cert(&scratch.join("data"), &dirs)?;
        }
        if let Some(n) = peers::Nginx::start(scratch, report::NGINX, origin.addr).await? {
            let t = n.target(report::NGINX, &tls, &direct.auth);
            peers::wait_ready(&t, &dirs[0].display().to_string()).await?;
            println!(
                "  nginx         https://{} (master pid {})",
                t.addr,
                n.pid()
            );
            watch.0.push(("nginx", n.worker_pids()));
            targets.push(t);
            nginx = Some(n);
        }
        if nginx.is_some() {
            if let Some(r) = peers::Rathole::start(scratch, origin.addr)? {
                let n = peers::Nginx::start(scratch, report::NGINX_RATHOLE, r.service)
                    .await?
                    .expect("nginx is installed");
                let t = n.target(report::NGINX_RATHOLE, &tls, &direct.auth);
                peers::wait_ready(&t, &scratch.join("rathole").display().to_string()).await?;
                println!(
                    "  nginx+rathole https://{} -> rathole {} (pids {}, {})",
                    t.addr,
                    r.service,
                    r.server.pid(),
                    r.client.pid()
                );
                watch.0.push(("nginx (rathole)", n.worker_pids()));
                watch.0.push(("rathole server", vec![r.server.pid()]));
                watch.0.push(("rathole client", vec![r.client.pid()]));
                targets.push(t);
                nginx_rh = Some(n);
                rathole = Some(r);
            }
        } else {
            println!("  rathole: skipped with nginx");
        }
    } else {
        println!("  peers (nginx, nginx + rathole) skipped in quick mode (--peers runs them)");
    }
    println!();

    let mut rows = Rows::default();

    // 1. 1 KiB responses, 64 keep-alive HTTP/1.1 connections.
    let small = format!("1 KiB, h1 {} conns", plan.connections);
    for t in &targets {
        let h1 = Load {
            proto: Proto::H1,
            connections: plan.connections,
            streams: 1,
            warmup: plan.warmup,
            duration: plan.duration,
            path: "/1k",
        };
        if let Some(wrk) = &clients.wrk {
            // wrk has no warm-up of its own: warm the pools with the built-in client.
            load::run(
                t,
                &Load {
                    duration: Duration::ZERO,
                    ..h1
                },
            )
            .await?;
            let m = watch
                .measure(tools::wrk(
                    wrk,
                    scratch,
                    t,
                    "/1k",
                    plan.connections,
                    plan.duration,
                    1024,
                ))
                .await?;
            rows.record(&small, Kind::Rate, t, "wrk", m);
        } else {
            let m = watch.measure(load::run(t, &h1)).await?;
            rows.record(&small, Kind::Rate, t, "built-in", m);
        }
    }

    // 2. The same over HTTP/2, `h2_streams` streams per connection; the
    //    origin speaks only HTTP/1.1, so its baseline is HTTP/1.1 cleartext
    //    with one request per connection.
    let h2_scenario = format!("1 KiB, h2 {}x{} streams", plan.connections, plan.h2_streams);
    for t in &targets {
        let is_direct = t.tls.is_none();
        let (proto, streams) = if is_direct {
            (Proto::H1, 1)
        } else {
            (Proto::H2, plan.h2_streams)
        };
        if let Some(h2load) = &clients.h2load {
            let m = watch
                .measure(tools::h2load(
                    h2load,
                    scratch,
                    t,
                    "/1k",
                    is_direct,
                    plan.connections,
                    streams,
                    plan.warmup,
                    plan.duration,
                    1024,
                ))
                .await?;
            rows.record(&h2_scenario, Kind::Rate, t, "h2load", m);
        } else {
            let l = Load {
                proto,
                connections: plan.connections,
                streams,
                warmup: plan.warmup,
                duration: plan.duration,
                path: "/1k",
            };
            let m = watch.measure(load::run(t, &l)).await?;
            rows.record(&h2_scenario, Kind::Rate, t, "built-in", m);
        }
    }

    // 3. Latency at a fixed rate: half of berth's peak from scenario 1.
    match (&clients.oha, rows.rate_of(&small, via_agent.name)) {
        (Some(oha), Some(peak)) => {
            let rate = (peak / 2.0).round();
            let scenario = format!("1 KiB, h1 at {rate:.0} req/s");
            for t in &targets {
                let m = watch
                    .measure(tools::oha(
                        oha,
                        t,
                        "/1k",
                        rate,
                        plan.latency_connections,
                        plan.duration,
                        1024,
                    ))
                    .await?;
                rows.record(&scenario, Kind::Latency, t, "oha", m);
            }
        }
        (None, _) => println!(
            "  latency at half of berth's peak: skipped (oha not installed: run benches/peers.sh)"
        ),
        (_, None) => println!("  latency at half of berth's peak: skipped (no peak measured)"),
    }

    // 4. New connection (and full TLS handshake) per request.
    let hs = format!("new conn per request, {} loops", plan.handshake_concurrency);
    for t in &targets {
        let m = watch
            .measure(load::handshakes(
                t,
                plan.handshake_concurrency,
                plan.warmup,
                plan.duration,
                "/1k",
            ))
            .await?;
        rows.record(&hs, Kind::Rate, t, "built-in", m);
    }

    // 5. Large transfers: one download, several in parallel, one upload.
    let mib = |b: u64| b >> 20;
    let one = format!("download {} MiB x1", mib(plan.big));
    let each = plan.big / plan.parallel as u64;
    let many = format!("download {} MiB x{}", mib(each), plan.parallel);
    let up = format!("upload {} MiB x1", mib(plan.big));
    for t in &targets {
        let m = watch.measure(load::download(t, plan.big, 1)).await?;
        rows.record(&one, Kind::Bytes, t, "built-in", m);
        let m = watch
            .measure(load::download(t, each, plan.parallel))
            .await?;
        rows.record(&many, Kind::Bytes, t, "built-in", m);
        let m = watch.measure(load::upload(t, plan.big)).await?;
        rows.record(&up, Kind::Bytes, t, "built-in", m);
    }

    // 6. One download across a 120 ms round trip: berth with its tunnel
    //    (edge <-> a third agent) through the delay relay, against plain TCP
    //    from the client to the origin through the same kind of relay (the
    //    "direct" row of this scenario). The relays run in this process.
    let one_way = Duration::from_millis(60);
    let far_bytes = plan.big / 4;
    let far_scenario = format!("download {} MiB x1, 120 ms RTT", mib(far_bytes));
    let origin_relay = relay::start(origin.addr, one_way).await?;
    let tcp_via_relay = Target {
        addr: origin_relay.addr,
        ..direct.clone()
    };
    let edge_relay = relay::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], berth.port)),
        one_way,
    )
    .await?;
    let (far, far_agent) = berth
        .start_agent_in(
            "berth (agent via relay)",
            "far",
            edge_relay.addr.port(),
            app_port,
        )
        .await?;
    watch
        .0
        .push(("berth agent (via relay)", vec![far_agent.pid()]));
    for t in [&tcp_via_relay, &far] {
        let m = watch.measure(load::download(t, far_bytes, 1)).await?;
        rows.record(&far_scenario, Kind::Bytes, t, "built-in", m);
    }
    drop(far_agent);
    drop((edge_relay, origin_relay));

    // 7. Idle agent tunnels and idle WebSockets: the edge's memory for each.
    let idle_rows = if opts.idle {
        idle_scenarios(scratch, app_port, &plan).await?
    } else {
        Vec::new()
    };

    let load_after = load_average();
    let mut table_rows: Vec<Row> = rows.0.iter().map(|r| r.row.clone()).collect();
    report::add_ratios(&mut table_rows);
    for (j, r) in rows.0.iter_mut().zip(&table_rows) {
        j.row.ratios = r.ratios.clone();
    }
    println!();
    print!("{}", report::table(&table_rows));
    println!();
    println!("req/s counts 200 answers only (new conn per request: connections/s); MB/s is");
    println!("body bytes / 10^6 per second. p50/p99/p99.9: request latency; downloads: time to");
    println!("the first body byte; uploads: the whole request. Ratios: this row / that row on");
    println!("req/s or MB/s; on the fixed-rate row, p99 difference in ms. The h2 scenario's");
    println!("direct baseline is HTTP/1.1 cleartext: the origin app speaks only HTTP/1.1.");
    println!("Every process shares this machine's cores with the load generator.");
    if !idle_rows.is_empty() {
        println!();
        print!("{}", idle::table(&idle_rows));
        println!();
        println!("Idle connections: resident memory (VmRSS) of a fresh berth dev after all were");
        println!(
            "up, minus before, over their number (the agents and clients are other processes)."
        );
    }

    let commit = git_commit();
    let date = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let json = serde_json::json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "commit": commit,
        "date": date,
        "machine": machine(),
        "load_average_1m": { "before": load_before, "after": load_after },
        "warmup_s": plan.warmup.as_secs_f64(),
        "duration_s": plan.duration.as_secs_f64(),
        "rows": rows.0,
        "idle": idle_rows,
    });
    let out = target_dir().join("bench-e2e.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!("wrote {}", out.display());
    let title = format!(
        "berth e2e ({} mode), {}, commit {}, {}",
        if opts.quick { "quick" } else { "full" },
        &date[..date.len().min(16)],
        commit.as_deref().unwrap_or("?"),
        machine()
    );
    let svg_out = target_dir().join("bench-e2e.svg");
    std::fs::write(&svg_out, report::svg(&table_rows, &title))?;
    println!("wrote {}", svg_out.display());
    // Peers first (nginx stops gracefully), then berth and the origin.
    drop((nginx, nginx_rh, rathole));
    drop(berth);
    drop(origin);
    Ok(())
}

/// The idle tunnels and idle WebSockets measurements, each on a fresh edge.
async fn idle_scenarios(scratch: &Path, app_port: u16, plan: &Plan) -> Result<Vec<idle::IdleRow>> {
    Ok(vec![
        idle::tunnels(scratch, app_port, plan.idle).await?,
        idle::websockets(scratch, app_port, plan.idle).await?,
    ])
}

/// `$CARGO_TARGET_DIR`, else the `target/` this bench binary lives in
/// (`target/release/deps/e2e-…`).
fn target_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
