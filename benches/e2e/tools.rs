//! External load generators, used when installed because they are fast C
//! clients: `wrk` for HTTP/1.1 and `h2load` (nghttp2-client) for HTTP/2 (and
//! for the HTTP/1.1 baseline of the HTTP/2 scenario, with `--h1`).
//!
//! Neither checks certificates (fine for a benchmark). wrk resolves host
//! names itself, so it is given `https://127.0.0.1:PORT` with a `Host`
//! header; berth serves its one wildcard certificate whatever the SNI.
//! h2load gets the real URL and `--connect-to 127.0.0.1:PORT`.

use crate::load::percentile_ms;
use crate::net::Target;
use crate::report::Measured;
use anyhow::{anyhow, bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The full path of `name` if it is on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn secs_arg(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BERTH_BENCH %d %d %d %d %d %d\n",
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// `wrk -t2 -c{connections} -d{duration}`: closed-loop HTTP/1.1 keep-alive.
pub async fn wrk(
    exe: &Path,
    scratch: &Path,
    target: &Target,
    path: &str,
    connections: usize,
    duration: Duration,
    body_bytes: u64,
) -> Result<Measured> {
    let script = scratch.join("wrk-report.lua");
    std::fs::write(&script, WRK_SCRIPT)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-t2")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}", secs_arg(duration)))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script)
        .arg("-H")
        .arg(format!("Host: {}", target.authority))
        .arg("-H")
        .arg(format!("Authorization: {}", target.auth))
        .arg(target.ip_url(path));
    let out = run(cmd).await?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("BERTH_BENCH "))
        .ok_or_else(|| anyhow!("wrk printed no report:\n{out}"))?;
    let n: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("wrk report {line:?}"))?;
    let [requests, duration_us, io_errors, status_errors, p50_us, p99_us] = n[..] else {
        bail!("wrk report {line:?}");
    };
    let secs = duration_us / 1e6;
    let ok = requests - status_errors;
    Ok(Measured {
        requests_per_s: Some(ok / secs),
        p50_ms: Some(p50_us / 1000.0),
        p99_ms: Some(p99_us / 1000.0),
        p999_ms: None,
        mb_per_s: ok * body_bytes as f64 / secs / 1e6,
        errors: (io_errors + status_errors) as u64,
        seconds: secs,
    })
}

/// `h2load -c{connections} -m{streams}` for a fixed time after a warm-up;
/// `h1` forces HTTP/1.1 (for the cleartext origin). Latencies come from
/// h2load's per-request log.
#[allow(clippy::too_many_arguments)]
pub async fn h2load(
    exe: &Path,
    scratch: &Path,
    target: &Target,
    path: &str,
    h1: bool,
    connections: usize,
    streams: usize,
    warmup: Duration,
    duration: Duration,
    body_bytes: u64,
) -> Result<Measured> {
    let log = scratch.join("h2load.log");
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(exe);
    cmd.arg(format!("--clients={connections}"))
        .arg(format!("--max-concurrent-streams={streams}"))
        .arg("--threads=2")
        .arg(format!("--duration={}", secs_arg(duration)))
        .arg(format!("--warm-up-time={}", secs_arg(warmup)))
        .arg(format!("--connect-to={}", target.addr))
        .arg(format!("--log-file={}", log.display()))
        .arg("--header")
        .arg(format!("authorization: {}", target.auth));
    if h1 {
        cmd.arg("--h1");
    }
    cmd.arg(target.url(path));
    let out = run(cmd).await?;
    // "finished in 10.00s, 12345.60 req/s, 12.34MB/s"
    let secs: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split('s').next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("h2load printed no summary:\n{out}"))?;
    // Keep the requests started in the last `secs` of the log, so warm-up
    // requests are left out whether or not h2load logs them.
    let mut entries = Vec::new();
    for line in std::fs::read_to_string(&log)?.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let [start, status, us] = cols[..] else {
            bail!("h2load log line {line:?}");
        };
        entries.push((
            start.parse::<u64>()?,
            status.parse::<i32>()?,
            us.trim().parse::<u32>()?,
        ));
    }
    let last = entries.iter().map(|e| e.0).max().unwrap_or(0);
    let from = last.saturating_sub((secs * 1e6) as u64);
    let mut ok_us = Vec::new();
    let mut errors = 0u64;
    for &(start, status, us) in &entries {
        if start < from {
            continue;
        }
        if status == 200 {
            ok_us.push(us);
        } else {
            errors += 1;
        }
    }
    // Errors that never reached the log (connection failures).
    if let Some(l) = out.lines().find(|l| l.starts_with("requests: ")) {
        let failed: u64 = l
            .split(", ")
            .find_map(|p| p.strip_suffix(" errored"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        errors = errors.max(failed);
    }
    ok_us.sort_unstable();
    let ok = ok_us.len() as f64;
    Ok(Measured {
        requests_per_s: Some(ok / secs),
        p50_ms: percentile_ms(&ok_us, 50.0),
        p99_ms: percentile_ms(&ok_us, 99.0),
        p999_ms: percentile_ms(&ok_us, 99.9),
        mb_per_s: ok * body_bytes as f64 / secs / 1e6,
        errors,
        seconds: secs,
    })
}

async fn run(mut cmd: Command) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .with_context(|| format!("cannot run {desc}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{desc} failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// `oha` at a fixed rate (`-q`) with coordinated-omission correction
/// (`--latency-correction`: each latency is measured from when the request
/// was due, not from when a busy connection got round to sending it), over
/// `connections` HTTP/1.1 keep-alive connections. Reports the rate achieved
/// and p50/p99/p99.9.
pub async fn oha(
    exe: &Path,
    target: &Target,
    path: &str,
    rate: f64,
    connections: usize,
    duration: Duration,
    body_bytes: u64,
) -> Result<Measured> {
    let mut cmd = Command::new(exe);
    cmd.arg("-z")
        .arg(secs_arg(duration))
        .arg("-q")
        .arg(format!("{}", rate.round().max(1.0)))
        .arg("-c")
        .arg(connections.to_string())
        .arg("--latency-correction")
        .arg("--no-tui")
        .arg("--output-format")
        .arg("json")
        .arg("--insecure")
        .arg("-H")
        .arg(format!("Host: {}", target.authority))
        .arg("-H")
        .arg(format!("Authorization: {}", target.auth))
        .arg(target.ip_url(path));
    let out = run(cmd).await?;
    let json_start = out.find('{').unwrap_or(0);
    let v: serde_json::Value = serde_json::from_str(&out[json_start..])
        .with_context(|| format!("oha printed no JSON:\n{out}"))?;
    let ms = |k: &str| v["latencyPercentiles"][k].as_f64().map(|s| s * 1000.0);
    let ok = v["statusCodeDistribution"]["200"].as_f64().unwrap_or(0.0);
    let all_status: f64 = v["statusCodeDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|n| n.as_f64()).sum())
        .unwrap_or(0.0);
    let io_errors: f64 = v["errorDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|n| n.as_f64()).sum())
        .unwrap_or(0.0);
    let secs = v["summary"]["total"]
        .as_f64()
        .unwrap_or(duration.as_secs_f64());
    Ok(Measured {
        requests_per_s: Some(ok / secs),
        p50_ms: ms("p50"),
        p99_ms: ms("p99"),
        p999_ms: ms("p99.9"),
        mb_per_s: ok * body_bytes as f64 / secs / 1e6,
        errors: (all_status - ok + io_errors) as u64,
        seconds: secs,
    })
}
