//! End-to-end benchmark: the same load sent directly to a small fast origin
//! app and through berth (edge + HTTP/2 tunnel + agent), with every role in
//! its own process. Prints a table and writes `target/bench-e2e.json`.
//!
//! ```text
//! cargo bench --bench e2e                # full: 10 s per load, 1 GiB downloads
//! cargo bench --bench e2e -- --quick     # ~1 s per load, 64 MiB downloads
//! cargo bench --bench e2e -- --builtin   # ignore wrk / h2load even if installed
//! ```
//!
//! It reports numbers; it never passes or fails on them. See benches/README.md.

mod load;
mod net;
mod origin;
mod procs;
mod report;
mod tools;

use anyhow::{bail, Result};
use load::Load;
use net::{Proto, Target};
use report::{Measured, Row};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Opts {
    quick: bool,
    builtin: bool,
    /// Also measure through `berth dev`'s in-process agent
    inproc: bool,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut o = Opts {
            quick: false,
            builtin: false,
            inproc: true,
        };
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--builtin" => o.builtin = true,
                "--no-inproc" => o.inproc = false,
                // cargo bench passes --bench to every bench binary
                "--bench" => {}
                "-h" | "--help" => {
                    println!(
                        "usage: cargo bench --bench e2e -- [--quick] [--builtin] [--no-inproc]"
                    );
                    std::process::exit(0);
                }
                other if other.starts_with('-') => bail!("unknown option {other}"),
                // a name filter from `cargo bench NAME`: this bench has one scenario set
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Sizes and durations for one run.
struct Plan {
    warmup: Duration,
    duration: Duration,
    connections: usize,
    h2_connections: usize,
    h2_streams: usize,
    big: u64,
    parallel: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            warmup: Duration::from_secs(if quick { 1 } else { 2 }),
            duration: Duration::from_secs(if quick { 1 } else { 10 }),
            connections: 64,
            h2_connections: 4,
            h2_streams: 16,
            big: if quick { 64 << 20 } else { 1 << 30 },
            parallel: 4,
        }
    }
}

fn main() -> ExitCode {
    if std::env::var("BERTH_BENCH_ROLE").as_deref() == Ok("origin") {
        origin::run();
        return ExitCode::SUCCESS;
    }
    let result = Opts::parse().and_then(|opts| {
        // Two workers: the load generator gets the same share as wrk -t2.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(bench(opts))
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

/// The processes whose CPU use is sampled around each measurement.
struct Watch(Vec<(&'static str, u32)>);

impl Watch {
    /// Runs `f` and returns its result with each process's CPU use, in % of one core.
    async fn measure<F: std::future::Future<Output = Result<Measured>>>(
        &self,
        f: F,
    ) -> Result<(Measured, BTreeMap<&'static str, f64>)> {
        let before: Vec<Option<f64>> = self.0.iter().map(|(_, p)| cpu_seconds(*p)).collect();
        let t0 = Instant::now();
        let m = f.await?;
        let wall = t0.elapsed().as_secs_f64();
        let mut cpu = BTreeMap::new();
        for ((name, pid), b) in self.0.iter().zip(before) {
            if let (Some(b), Some(a)) = (b, cpu_seconds(*pid)) {
                cpu.insert(*name, (a - b) / wall * 100.0);
            }
        }
        Ok((m, cpu))
    }
}

struct Clients {
    wrk: Option<PathBuf>,
    h2load: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct JsonRow {
    #[serde(flatten)]
    row: Row,
    /// CPU use per process during the measurement, % of one core
    cpu_percent: BTreeMap<&'static str, f64>,
}

async fn bench(opts: Opts) -> Result<()> {
    let plan = Plan::new(opts.quick);
    let clients = if opts.builtin {
        Clients {
            wrk: None,
            h2load: None,
        }
    } else {
        Clients {
            wrk: tools::which("wrk"),
            h2load: tools::which("h2load"),
        }
    };
    let show = |p: &Option<PathBuf>, what: &str| match p {
        Some(p) => format!("{} ({what})", p.display()),
        None => format!("built-in hyper client ({what}: not installed or --builtin)"),
    };
    println!(
        "berth e2e bench ({} mode)",
        if opts.quick { "quick" } else { "full" }
    );
    println!("  berth binary  {}", procs::berth_exe().display());
    println!("  HTTP/1.1 load {}", show(&clients.wrk, "wrk"));
    println!("  HTTP/2 load   {}", show(&clients.h2load, "h2load"));
    println!("  downloads     built-in hyper client");

    let tmp = tempfile::tempdir()?;
    let scratch = tmp.path();
    let origin = procs::Origin::start()?;
    let app_port = origin.addr.port();
    println!(
        "  origin app    http://{} (pid {})",
        origin.addr,
        origin.pid()
    );
    let mut berth = procs::Berth::start(scratch, app_port).await?;
    println!(
        "  berth dev     https://berth.localhost:{} (pid {})",
        berth.port,
        berth.dev.pid()
    );
    let via_agent = berth.start_agent(app_port).await?;
    let agent_pid = berth.agent.as_ref().map(procs::Proc::pid).unwrap_or(0);
    println!("  berth agent   workspace bench (pid {agent_pid})");
    println!();

    let direct = Target {
        name: "direct",
        addr: origin.addr,
        authority: origin.addr.to_string(),
        tls: None,
        auth: format!("Bearer {}", berth.token),
    };
    let mut targets = vec![direct.clone(), via_agent];
    if opts.inproc {
        targets.push(berth.app("berth (in-process agent)", "dev", app_port));
    }
    let watch = Watch(vec![
        ("origin", origin.pid()),
        ("berth dev", berth.dev.pid()),
        ("berth agent", agent_pid),
    ]);

    let mut rows: Vec<JsonRow> = Vec::new();
    let mut record =
        |scenario: &str,
         target: &Target,
         protocol: &str,
         client: &str,
         (measured, cpu): (Measured, BTreeMap<&'static str, f64>)| {
            let cpu_text: Vec<String> = cpu.iter().map(|(k, v)| format!("{k} {v:.0}%")).collect();
            println!(
            "  {scenario} | {} | {protocol} | {client}: {} req/s, p50 {} ms, p99 {} ms, {:.1} MB/s, {} errors  [cpu: {}]",
            target.name,
            measured.requests_per_s.map(|r| format!("{r:.0}")).unwrap_or("-".into()),
            measured.p50_ms.map(|r| format!("{r:.3}")).unwrap_or("-".into()),
            measured.p99_ms.map(|r| format!("{r:.3}")).unwrap_or("-".into()),
            measured.mb_per_s,
            measured.errors,
            cpu_text.join(", "),
        );
            let row = Row {
                scenario: scenario.to_owned(),
                target: target.name.to_owned(),
                protocol: protocol.to_owned(),
                client: client.to_owned(),
                measured,
                ratio_vs_direct: None,
            };
            rows.push(JsonRow {
                row,
                cpu_percent: cpu,
            });
        };

    // 1. 1 KiB responses, 64 keep-alive HTTP/1.1 connections.
    let small = format!("1 KiB, {} conns", plan.connections);
    for t in &targets {
        let protocol = if t.tls.is_some() {
            "HTTP/1.1 TLS"
        } else {
            "HTTP/1.1"
        };
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
            record(&small, t, protocol, "wrk", m);
        } else {
            let m = watch.measure(load::run(t, &h1)).await?;
            record(&small, t, protocol, "built-in", m);
        }
    }

    // 2. The same over HTTP/2 through berth; the origin speaks only
    //    HTTP/1.1, so its baseline is HTTP/1.1 cleartext with the same
    //    number of requests in flight.
    let h2_total = plan.h2_connections * plan.h2_streams;
    let h2_scenario = format!(
        "1 KiB, h2 {}x{} streams",
        plan.h2_connections, plan.h2_streams
    );
    for t in &targets {
        let is_direct = t.tls.is_none();
        let (proto, conns, streams, protocol) = if is_direct {
            (Proto::H1, h2_total, 1, "HTTP/1.1 (origin has no h2)")
        } else {
            (
                Proto::H2,
                plan.h2_connections,
                plan.h2_streams,
                "HTTP/2 TLS",
            )
        };
        if let Some(h2load) = &clients.h2load {
            let m = watch
                .measure(tools::h2load(
                    h2load,
                    scratch,
                    t,
                    "/1k",
                    is_direct,
                    conns,
                    streams,
                    plan.warmup,
                    plan.duration,
                    1024,
                ))
                .await?;
            record(&h2_scenario, t, protocol, "h2load", m);
        } else {
            let l = Load {
                proto,
                connections: conns,
                streams,
                warmup: plan.warmup,
                duration: plan.duration,
                path: "/1k",
            };
            let m = watch.measure(load::run(t, &l)).await?;
            record(&h2_scenario, t, protocol, "built-in", m);
        }
    }

    // 3. Large downloads: one stream, then several in parallel.
    let mib = |b: u64| b >> 20;
    let one = format!("download {} MiB x1", mib(plan.big));
    let each = plan.big / plan.parallel as u64;
    let many = format!("download {} MiB x{}", mib(each), plan.parallel);
    for t in &targets {
        let protocol = if t.tls.is_some() {
            "HTTP/1.1 TLS"
        } else {
            "HTTP/1.1"
        };
        let m = watch.measure(load::download(t, plan.big, 1)).await?;
        record(&one, t, protocol, "built-in", m);
        let m = watch
            .measure(load::download(t, each, plan.parallel))
            .await?;
        record(&many, t, protocol, "built-in", m);
    }

    // Ratios against the direct row of the same scenario.
    let direct_of: BTreeMap<String, f64> = rows
        .iter()
        .filter(|r| r.row.target == direct.name)
        .map(|r| (r.row.scenario.clone(), r.row.headline()))
        .collect();
    for r in &mut rows {
        if r.row.target != direct.name {
            if let Some(d) = direct_of.get(&r.row.scenario).filter(|d| **d > 0.0) {
                r.row.ratio_vs_direct = Some(r.row.headline() / d);
            }
        }
    }

    let table_rows: Vec<Row> = rows.iter().map(|r| r.row.clone()).collect();
    println!();
    print!("{}", report::table(&table_rows));
    println!();
    println!("req/s counts 200 answers only; MB/s is response body bytes / 10^6 per second.");
    println!("p50/p99: request latency; for downloads, time to the first body byte.");
    println!("vs direct: berth / direct on req/s (downloads: on MB/s). The HTTP/2 scenario's");
    println!("direct baseline is HTTP/1.1 cleartext: the origin app speaks only HTTP/1.1.");
    println!("Every process shares this machine's cores with the load generator.");

    let json = serde_json::json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "commit": git_commit(),
        "warmup_s": plan.warmup.as_secs_f64(),
        "duration_s": plan.duration.as_secs_f64(),
        "rows": rows,
    });
    let out = target_dir().join("bench-e2e.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json)?)?;
    println!("wrote {}", out.display());
    drop(berth);
    drop(origin);
    Ok(())
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
