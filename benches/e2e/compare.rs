//! `--compare inspector|shapes`: the same 1 KiB HTTP/1.1 load (scenario 1's)
//! through several configurations of `berth dev` + a separate `berth agent`,
//! all started up front (each in its own data dir) and loaded in turn in
//! every round, so that drift on the machine hits every case alike. Prints a
//! line per run and a table of medians: req/s and its change against the
//! first case, the edge's and the agent's CPU microseconds per request, p99,
//! errors, and the edge's resident memory after the last round.
//!
//! * `inspector` (issue 16): the request inspector off, on with headers
//!   only (`inspector.body_bytes = 0`), on with bodies (the default 4 KiB).
//! * `shapes` (issue 13): the edge's `server.runtime` (work-stealing or
//!   per-core) crossed with the agent's `--tunnels` (2, the default, or 1).

use crate::procs::{Berth, Proc};
use crate::report;
use crate::{median, small_h1, Plan, Sample, Watch};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Which comparison to run.
#[derive(Clone, Copy, Debug)]
pub enum Which {
    Inspector,
    Shapes,
}

/// One configuration under comparison.
struct Case {
    name: &'static str,
    /// Environment of `berth dev` (config overrides, `BERTH_{SECTION}_{KEY}`)
    env: &'static [(&'static str, &'static str)],
    /// Extra `berth agent` arguments
    agent_args: &'static [&'static str],
    /// The edge must say in its log that it serves on one runtime per core
    per_core: bool,
}

const PER_CORE: &[(&str, &str)] = &[("BERTH_SERVER_RUNTIME", "per-core")];

fn cases(which: Which) -> Vec<Case> {
    let case = |name, env, agent_args, per_core| Case {
        name,
        env,
        agent_args,
        per_core,
    };
    match which {
        Which::Inspector => vec![
            case(
                "inspector off",
                &[("BERTH_INSPECTOR_ENABLED", "false")],
                &[],
                false,
            ),
            case(
                "inspector on, headers only",
                &[("BERTH_INSPECTOR_BODY_BYTES", "0")],
                &[],
                false,
            ),
            case("inspector on, bodies (4 KiB)", &[], &[], false),
        ],
        Which::Shapes => vec![
            case("work-stealing, 2 tunnels", &[], &[], false),
            case("per-core, 2 tunnels", PER_CORE, &[], true),
            case("work-stealing, 1 tunnel", &[], &["--tunnels", "1"], false),
            case("per-core, 1 tunnel", PER_CORE, &["--tunnels", "1"], true),
        ],
    }
}

/// What the edge logs once it serves on one runtime per core.
const PER_CORE_LOG: &str = "serving on one runtime per core";

/// Waits (up to 10 s) for the edge's log to say it serves per core, and
/// returns that line.
async fn confirm_per_core(edge: &Proc) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = edge.log_text().lines().find(|l| l.contains(PER_CORE_LOG)) {
            return Ok(line.trim().to_owned());
        }
        if Instant::now() > deadline {
            bail!(
                "berth dev was started with BERTH_SERVER_RUNTIME=per-core but its log does not say \
                 {PER_CORE_LOG:?} (does BERTH_BENCH_RUST_LOG hide `info`?); last log lines:\n{}",
                edge.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A started case: its processes, the target through its agent, and the
/// watch over its edge and agent.
struct Running {
    berth: Berth,
    target: crate::net::Target,
    watch: Watch,
    samples: Vec<Sample>,
}

/// Starts every case, runs `rounds` rounds, prints a line per run and the
/// table of medians.
pub async fn run(
    which: Which,
    scratch: &Path,
    app_port: u16,
    plan: &Plan,
    rounds: usize,
    wrk: Option<&Path>,
) -> Result<()> {
    let cases = cases(which);
    let width = cases.iter().map(|c| c.name.len()).max().unwrap_or(0);
    println!(
        "{} comparison: 1 KiB over HTTP/1.1, {} connections, {} s per run, {rounds} round{}, {} client",
        match which {
            Which::Inspector => "request inspector",
            Which::Shapes => "edge runtime x agent tunnels",
        },
        plan.connections,
        plan.duration.as_secs(),
        if rounds == 1 { "" } else { "s" },
        if wrk.is_some() { "wrk" } else { "built-in" },
    );
    let mut running = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let dir = scratch.join(format!("compare-{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut berth = Berth::start_with_env(&dir, app_port, None, case.env).await?;
        let target = berth.start_agent_with(app_port, case.agent_args).await?;
        let agent = berth.agent.as_ref().map(Proc::pid).unwrap_or(0);
        let mut setup = format!(
            "  {:<width$}  berth dev pid {}, berth agent pid {agent}",
            case.name,
            berth.dev.pid()
        );
        for (k, v) in case.env {
            setup += &format!(", {k}={v}");
        }
        if !case.agent_args.is_empty() {
            setup += &format!(", agent {}", case.agent_args.join(" "));
        }
        if case.per_core {
            setup += &format!(
                "\n  {:<width$}  edge log: {}",
                "",
                confirm_per_core(&berth.dev).await?
            );
        }
        println!("{setup}");
        let watch = Watch(vec![
            ("berth dev", vec![berth.dev.pid()]),
            ("berth agent", vec![agent]),
        ]);
        running.push(Running {
            berth,
            target,
            watch,
            samples: Vec::new(),
        });
    }
    println!();

    let mut client = "";
    let n = running.len();
    for round in 1..=rounds {
        // Each round starts one case later, so no case is always first
        // (right after another's load) or always last.
        for i in (0..n).map(|k| (k + round - 1) % n) {
            let (case, r) = (&cases[i], &mut running[i]);
            r.berth.dev.check_alive()?;
            let (sample, c) = small_h1(&r.target, plan, wrk, scratch, &r.watch).await?;
            client = c;
            let us = crate::cpu_us_per_request(&sample);
            let (m, _) = &sample;
            println!(
                "  round {round}/{rounds} | {:<width$} | {c}: {} req/s, p99 {} ms, {} errors  [edge {} us/req, agent {} us/req]",
                case.name,
                opt(m.requests_per_s, 0),
                opt(m.p99_ms, 3),
                m.errors,
                opt(us.get("berth dev").copied(), 1),
                opt(us.get("berth agent").copied(), 1),
            );
            r.samples.push(sample);
        }
    }

    let header = [
        "case",
        "client",
        "req/s (median)",
        "vs first",
        "vs first, paired",
        "edge us/req",
        "agent us/req",
        "p99 ms",
        "errors",
        "edge RSS MiB",
        "req/s per round",
    ];
    let mut base = None;
    let mut cells = Vec::new();
    let rate_of = |s: &Sample| s.0.requests_per_s;
    for (case, r) in cases.iter().zip(&running) {
        let of =
            |f: &dyn Fn(&Sample) -> Option<f64>| median(r.samples.iter().filter_map(f).collect());
        let rate = of(&|(m, _): &Sample| m.requests_per_s);
        let change = match (base, rate) {
            (None, _) => {
                base = rate;
                "-".to_owned()
            }
            (Some(b), Some(x)) if b > 0.0 => format!("{:+.1}%", (x / b - 1.0) * 100.0),
            _ => "-".to_owned(),
        };
        // The median, over the rounds, of this case's req/s over the first
        // case's in the same round: drift between rounds cancels out.
        let paired = median(
            r.samples
                .iter()
                .zip(&running[0].samples)
                .filter_map(|(s, f)| Some(rate_of(s)? / rate_of(f)?))
                .collect(),
        );
        let paired = match paired {
            Some(p) if !std::ptr::eq(r, &running[0]) => format!("{:+.1}%", (p - 1.0) * 100.0),
            _ => "-".to_owned(),
        };
        let us = |process: &'static str| {
            of(&move |s: &Sample| crate::cpu_us_per_request(s).get(process).copied())
        };
        let rss = crate::idle::rss_kib(r.berth.dev.pid())
            .map(|k| format!("{:.1}", k as f64 / 1024.0))
            .unwrap_or("?".into());
        let per_round: Vec<String> = r
            .samples
            .iter()
            .map(|(m, _)| opt(m.requests_per_s, 0))
            .collect();
        cells.push(vec![
            case.name.to_owned(),
            client.to_owned(),
            opt(rate, 0),
            change,
            paired,
            opt(us("berth dev"), 1),
            opt(us("berth agent"), 1),
            opt(of(&|(m, _): &Sample| m.p99_ms), 3),
            r.samples
                .iter()
                .map(|(m, _)| m.errors)
                .sum::<u64>()
                .to_string(),
            rss,
            per_round.join(" "),
        ]);
    }
    println!();
    print!("{}", report::markdown(&header, &cells, 2));
    println!();
    println!("Medians over the rounds; \"vs first\": this case's median req/s against the first");
    println!("case's; \"paired\": the median over the rounds of this case's req/s over the first");
    println!("case's in the same round (each round starts one case later). us/req: CPU time (user + system, /proc) of that process over the requests");
    println!("answered. errors: summed over the rounds. edge RSS: VmRSS of berth dev after the");
    println!(
        "last round. Every case's processes run all along; the others idle while one is loaded."
    );
    drop(running);
    Ok(())
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}
