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
//! cargo bench --bench e2e -- --rounds 5 # 5 interleaved rounds of the 1 KiB h1 / h2 loads
//! cargo bench --bench e2e -- --compare inspector   # request inspector off / headers / bodies
//! cargo bench --bench e2e -- --compare shapes      # work-stealing / per-core x 2 / 1 tunnels
//! cargo bench --bench e2e -- --help      # every flag
//! ```
//!
//! It reports numbers; it never passes or fails on them. See benches/README.md.

// The harness shares its helpers between its own modules with `pub`;
// the unreachable_pub lint is for the library's modules.
#![allow(unreachable_pub)]

mod compare;
mod idle;
mod load;
mod net;
mod origin;
mod peers;
mod procs;
mod relay;
mod report;
mod tools;

use anyhow::{anyhow, bail, Result};
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
    /// Rounds of the 1 KiB h1 / h2 scenarios, or of `--compare` (default:
    /// 3, 1 with `--quick`; 5 for `--compare`)
    rounds: Option<usize>,
    /// Run only this side-by-side comparison (`--compare`)
    compare: Option<compare::Which>,
    /// Seconds per measured load (default 10, 1 with `--quick`)
    seconds: Option<u64>,
}

const HELP: &str = "\
usage: cargo bench --bench e2e -- [OPTIONS]

  --quick              ~1 s per load, 64 MiB transfers, 200 idle connections,
                       1 round, no peers (the CI smoke)
  --rounds N           rounds of the 1 KiB h1 and h2 scenarios, every target
                       loaded in turn in each round; the median round is
                       recorded (default 3, 1 with --quick); with --compare,
                       its rounds (default 5)
  --seconds N          seconds per measured load (default 10, 1 with --quick);
                       shorter loads with more rounds pair the cases of
                       --compare more closely in time
  --compare inspector  only compare the request inspector off / headers only /
                       bodies, each case its own berth dev + berth agent
  --compare shapes     only compare work-stealing / per-core edge runtimes with
                       2 and with 1 agent tunnels
  --inspector-only     the same as --compare inspector
  --builtin            the built-in Rust client even if wrk / h2load exist
  --no-inproc          skip the \"in-process agent\" rows
  --peers              run nginx and nginx + rathole (default: not with --quick)
  --no-peers           skip nginx and nginx + rathole
  --no-idle            skip the idle tunnels / WebSockets scenario
  --idle-only          run only the idle tunnels / WebSockets scenario
  --hold               start origin, berth dev, berth agent; print a wrk and a
                       perf line; wait for Ctrl-C (for profiling)
  -h, --help           this text
";

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
            rounds: None,
            compare: None,
            seconds: None,
        };
        let mut peers = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            // `--flag value` or `--flag=value`
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            // (cargo appends `--bench`: a flag is never taken as a value)
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next().filter(|v| !v.starts_with("--")))
                    .ok_or_else(|| anyhow!("{flag} needs a value (see --help)"))
            };
            match flag.as_str() {
                "--quick" => o.quick = true,
                "--builtin" => o.builtin = true,
                "--no-inproc" => o.inproc = false,
                "--peers" => peers = Some(true),
                "--no-peers" => peers = Some(false),
                "--no-idle" => o.idle = false,
                "--idle-only" => o.idle_only = true,
                "--hold" => o.hold = true,
                "--inspector-only" => o.compare = Some(compare::Which::Inspector),
                "--compare" => {
                    o.compare = Some(match value()?.as_str() {
                        "inspector" => compare::Which::Inspector,
                        "shapes" => compare::Which::Shapes,
                        other => bail!("--compare {other}: give inspector or shapes"),
                    })
                }
                "--rounds" => {
                    let v = value()?;
                    o.rounds = match v.parse::<usize>() {
                        Ok(n) if n >= 1 => Some(n),
                        _ => bail!("--rounds {v}: give a whole number, 1 or more"),
                    };
                }
                "--seconds" => {
                    let v = value()?;
                    o.seconds = match v.parse::<u64>() {
                        Ok(n) if n >= 1 => Some(n),
                        _ => bail!("--seconds {v}: give a whole number of seconds, 1 or more"),
                    };
                }
                // cargo bench passes --bench to every bench binary
                "--bench" => {}
                "-h" | "--help" => {
                    print!("{HELP}");
                    std::process::exit(0);
                }
                other if other.starts_with('-') => bail!("unknown option {other} (see --help)"),
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

/// One measurement and the CPU each watched process used during it, in %
/// of one core.
type Sample = (Measured, BTreeMap<&'static str, f64>);

/// The processes whose CPU use is sampled around each measurement; a name
/// may stand for several processes (nginx's workers), summed.
struct Watch(Vec<(&'static str, Vec<u32>)>);

impl Watch {
    /// Runs `f` and returns its result with each process's CPU use, in % of one core.
    async fn measure<F: std::future::Future<Output = Result<Measured>>>(
        &self,
        f: F,
    ) -> Result<Sample> {
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

/// CPU microseconds per request of each process: its CPU % / 100 * 10^6 /
/// req/s (empty without a request rate).
fn cpu_us_per_request((m, cpu): &Sample) -> BTreeMap<&'static str, f64> {
    match m.requests_per_s {
        Some(rate) if rate > 0.0 => cpu
            .iter()
            .map(|(k, pct)| (*k, pct / 100.0 * 1e6 / rate))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The index of the median of `values` (the lower middle one for an even
/// count).
fn median_index(values: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    order[(values.len().max(1) - 1) / 2]
}

/// The median of `values` (the mean of the two middle ones for an even
/// count), None if empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
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
    /// CPU microseconds per request per process (rows with a req/s)
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    cpu_us_per_request: BTreeMap<&'static str, f64>,
    /// req/s of every round, in order (the row is the median round)
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<Vec<f64>>,
}

/// The protocol a scenario speaks to a target, for the table.
fn protocol(target: &Target, scenario: &str) -> &'static str {
    match (&target.tls, scenario.contains("h2")) {
        (None, true) => "HTTP/1.1 (origin has no h2)",
        (None, false) => "HTTP/1.1",
        (Some(_), true) => "HTTP/2 TLS",
        (Some(_), false) => "HTTP/1.1 TLS",
    }
}

/// The rows measured so far, each also printed as one line when it lands.
#[derive(Default)]
struct Rows(Vec<JsonRow>);

impl Rows {
    /// Prints one measurement as a line (`prefix` first, e.g. `round 2/3 | `).
    fn show(prefix: &str, scenario: &str, target: &Target, client: &str, (measured, cpu): &Sample) {
        let f = |v: Option<f64>, d: usize| v.map(|r| format!("{r:.d$}")).unwrap_or("-".into());
        let cpu_text: Vec<String> = cpu.iter().map(|(k, v)| format!("{k} {v:.0}%")).collect();
        println!(
            "  {prefix}{scenario} | {} | {} | {client}: {} req/s, p50 {} ms, p99 {} ms, p99.9 {} ms, {:.1} MB/s, {} errors  [cpu: {}]",
            target.name,
            protocol(target, scenario),
            f(measured.requests_per_s, 0),
            f(measured.p50_ms, 3),
            f(measured.p99_ms, 3),
            f(measured.p999_ms, 3),
            measured.mb_per_s,
            measured.errors,
            cpu_text.join(", "),
        );
    }

    /// Prints a single measurement and records it as the row of (scenario, target).
    fn record(
        &mut self,
        scenario: &str,
        kind: Kind,
        target: &Target,
        client: &str,
        sample: Sample,
    ) {
        Rows::show("", scenario, target, client, &sample);
        self.push(scenario, kind, target, client, sample, None);
    }

    /// Records the round with the median req/s of `samples` (already
    /// printed, one per round) as the row of (scenario, target).
    fn record_rounds(
        &mut self,
        scenario: &str,
        kind: Kind,
        target: &Target,
        client: &str,
        mut samples: Vec<Sample>,
    ) {
        let rates: Vec<f64> = samples
            .iter()
            .map(|(m, _)| m.requests_per_s.unwrap_or(0.0))
            .collect();
        if samples.is_empty() {
            return;
        }
        let sample = samples.swap_remove(median_index(&rates));
        self.push(scenario, kind, target, client, sample, Some(rates));
    }

    fn push(
        &mut self,
        scenario: &str,
        kind: Kind,
        target: &Target,
        client: &str,
        sample: Sample,
        rounds: Option<Vec<f64>>,
    ) {
        let cpu_us_per_request = cpu_us_per_request(&sample);
        let (measured, cpu) = sample;
        self.0.push(JsonRow {
            row: Row {
                scenario: scenario.to_owned(),
                kind,
                target: target.name.to_owned(),
                protocol: protocol(target, scenario).to_owned(),
                client: client.to_owned(),
                measured,
                ratios: BTreeMap::new(),
            },
            cpu_percent: cpu,
            cpu_us_per_request,
            rounds,
        });
    }

    fn rate_of(&self, scenario: &str, target: &str) -> Option<f64> {
        self.0
            .iter()
            .find(|r| r.row.scenario == scenario && r.row.target == target)
            .and_then(|r| r.row.measured.requests_per_s)
    }

    /// "CPU per request (us, median round)" for `scenarios`: a row per
    /// (scenario, target), a column per process that served some target
    /// (empty where it did not serve that one), and their total.
    fn cpu_table(&self, scenarios: &[&str]) -> String {
        const COLUMNS: [(&str, &str); 7] = [
            ("berth dev", "berth dev (edge)"),
            ("berth agent", "berth agent"),
            ("nginx", "nginx"),
            ("nginx (rathole)", "nginx (rathole)"),
            ("rathole server", "rathole server"),
            ("rathole client", "rathole client"),
            ("origin", "origin"),
        ];
        let rows: Vec<&JsonRow> = self
            .0
            .iter()
            .filter(|r| scenarios.contains(&r.row.scenario.as_str()))
            .collect();
        let cell = |r: &JsonRow, process: &str| {
            served_by(&r.row.target)
                .contains(&process)
                .then(|| r.cpu_us_per_request.get(process).copied())
                .flatten()
                .filter(|us| *us > 0.0)
        };
        let used: Vec<(&str, &str)> = COLUMNS
            .into_iter()
            .filter(|(p, _)| rows.iter().any(|r| cell(r, p).is_some()))
            .collect();
        let mut header = vec!["scenario", "target"];
        header.extend(used.iter().map(|(_, label)| *label));
        header.push("total");
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut line = vec![r.row.scenario.clone(), r.row.target.clone()];
                let mut total = 0.0;
                for (p, _) in &used {
                    line.push(match cell(r, p) {
                        Some(us) => {
                            total += us;
                            format!("{us:.1}")
                        }
                        None => String::new(),
                    });
                }
                line.push(format!("{total:.1}"));
                line
            })
            .collect();
        report::markdown(&header, &cells, 2)
    }
}

/// The watched processes that serve a target's requests (the others idle
/// while it is loaded).
fn served_by(target: &str) -> &'static [&'static str] {
    match target {
        report::DIRECT => &["origin"],
        "berth (agent process)" => &["berth dev", "berth agent", "origin"],
        "berth (in-process agent)" => &["berth dev", "origin"],
        report::NGINX => &["nginx", "origin"],
        report::NGINX_RATHOLE => &[
            "nginx (rathole)",
            "rathole server",
            "rathole client",
            "origin",
        ],
        _ => &[],
    }
}

/// Scenario 1's load on `target`: 1 KiB over `plan.connections` HTTP/1.1
/// keep-alive connections, with wrk after a warm-up by the built-in client
/// (wrk has none of its own), else with the built-in client. Returns the
/// sample and the client's name.
async fn small_h1(
    target: &Target,
    plan: &Plan,
    wrk: Option<&Path>,
    scratch: &Path,
    watch: &Watch,
) -> Result<(Sample, &'static str)> {
    let h1 = Load {
        proto: Proto::H1,
        connections: plan.connections,
        streams: 1,
        warmup: plan.warmup,
        duration: plan.duration,
        path: "/1k",
    };
    let Some(wrk) = wrk else {
        return Ok((watch.measure(load::run(target, &h1)).await?, "built-in"));
    };
    load::run(
        target,
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
            target,
            "/1k",
            plan.connections,
            plan.duration,
            1024,
        ))
        .await?;
    Ok((m, "wrk"))
}

/// Scenario 2's load on `target`: 1 KiB over HTTP/2, `plan.h2_streams`
/// streams on each of `plan.connections` connections, with h2load or the
/// built-in client; the cleartext origin gets HTTP/1.1, one request per
/// connection at a time.
async fn small_h2(
    target: &Target,
    plan: &Plan,
    h2load: Option<&Path>,
    scratch: &Path,
    watch: &Watch,
) -> Result<(Sample, &'static str)> {
    let is_direct = target.tls.is_none();
    let (proto, streams) = if is_direct {
        (Proto::H1, 1)
    } else {
        (Proto::H2, plan.h2_streams)
    };
    if let Some(h2load) = h2load {
        let m = watch
            .measure(tools::h2load(
                h2load,
                scratch,
                target,
                "/1k",
                is_direct,
                plan.connections,
                streams,
                plan.warmup,
                plan.duration,
                1024,
            ))
            .await?;
        return Ok((m, "h2load"));
    }
    let l = Load {
        proto,
        connections: plan.connections,
        streams,
        warmup: plan.warmup,
        duration: plan.duration,
        path: "/1k",
    };
    Ok((watch.measure(load::run(target, &l)).await?, "built-in"))
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
    let mut plan = Plan::new(opts.quick);
    if let Some(s) = opts.seconds {
        plan.duration = Duration::from_secs(s);
    }
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
    if let Some(which) = opts.compare {
        println!();
        return compare::run(
            which,
            scratch,
            app_port,
            &plan,
            opts.rounds.unwrap_or(5),
            clients.wrk.as_deref(),
        )
        .await;
    }
    let rounds = opts.rounds.unwrap_or(if opts.quick { 1 } else { 3 });
    println!(
        "  rounds        {rounds} of the 1 KiB h1 and h2 scenarios (targets interleaved; the median round is recorded)"
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

    // 1. 1 KiB responses, 64 keep-alive HTTP/1.1 connections; and
    // 2. the same over HTTP/2, `h2_streams` streams per connection (the
    //    origin speaks only HTTP/1.1, so its baseline is HTTP/1.1 cleartext
    //    with one request per connection at a time).
    // Each in `rounds` rounds, every target loaded in turn in each round so
    // that drift on the machine hits every target alike; the round with the
    // median req/s becomes the row.
    let small = format!("1 KiB, h1 {} conns", plan.connections);
    let h2_scenario = format!("1 KiB, h2 {}x{} streams", plan.connections, plan.h2_streams);
    for (scenario, h2) in [(&small, false), (&h2_scenario, true)] {
        let mut samples: Vec<Vec<Sample>> = targets.iter().map(|_| Vec::new()).collect();
        let mut client = "";
        for round in 1..=rounds {
            for (t, runs) in targets.iter().zip(&mut samples) {
                let (sample, c) = if h2 {
                    small_h2(t, &plan, clients.h2load.as_deref(), scratch, &watch).await?
                } else {
                    small_h1(t, &plan, clients.wrk.as_deref(), scratch, &watch).await?
                };
                Rows::show(
                    &format!("round {round}/{rounds} | "),
                    scenario,
                    t,
                    c,
                    &sample,
                );
                client = c;
                runs.push(sample);
            }
        }
        for (t, runs) in targets.iter().zip(samples) {
            rows.record_rounds(scenario, Kind::Rate, t, client, runs);
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
            &[],
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
    println!();
    println!("CPU per request (us, median round): CPU time (user + system, /proc) of each");
    println!("process that served the target, over the requests it answered.");
    println!();
    print!("{}", rows.cpu_table(&[&small, &h2_scenario]));
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
        "rounds": rounds,
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
