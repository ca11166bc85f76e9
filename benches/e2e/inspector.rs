//! The request inspector's cost on the hot path (issue 16): the same 1 KiB
//! HTTP/1.1 load through `berth dev` and a separate agent, with the
//! inspector off, on with headers only (`inspector.body_bytes = 0`), and on
//! with bodies (the default 4 KiB), each in a fresh process; and the edge's
//! resident memory after each run (the rings are full by then).

use crate::load::{self, Load};
use crate::net::Proto;
use crate::procs;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// Resident memory of a process, from /proc (KiB).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs the three cases and prints one line each, with the change in
/// requests/s against "off".
pub async fn compare(
    scratch: &Path,
    app_port: u16,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<()> {
    let cases: [(&str, &[(&str, &str)]); 3] = [
        ("inspector off", &[("BERTH_INSPECTOR_ENABLED", "false")]),
        (
            "inspector on, headers only",
            &[("BERTH_INSPECTOR_BODY_BYTES", "0")],
        ),
        ("inspector on, bodies (4 KiB)", &[]),
    ];
    let mut base = None;
    for (i, (name, env)) in cases.iter().enumerate() {
        let dir = scratch.join(format!("inspector-{i}"));
        std::fs::create_dir_all(&dir)?;
        let mut berth = procs::Berth::start_with_env(&dir, app_port, None, env).await?;
        let target = berth.start_agent(app_port).await?;
        let m = load::run(
            &target,
            &Load {
                proto: Proto::H1,
                connections,
                streams: 1,
                warmup,
                duration,
                path: "/1k",
            },
        )
        .await?;
        let rate = m.requests_per_s.unwrap_or(0.0);
        let change = match base {
            None => {
                base = Some(rate);
                String::new()
            }
            Some(b) if b > 0.0 => format!(" ({:+.1}% vs off)", (rate / b - 1.0) * 100.0),
            Some(_) => String::new(),
        };
        let rss = rss_kib(berth.dev.pid())
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or("?".into());
        println!(
            "  {name:<30} {rate:>8.0} req/s{change}, p99 {} ms, {} errors, edge RSS {rss}",
            m.p99_ms.map(|p| format!("{p:.3}")).unwrap_or("-".into()),
            m.errors,
        );
    }
    Ok(())
}
