//! Results: one row per (scenario, target), printed as a Markdown table with
//! ratios to direct and to each peer, written as JSON, and drawn as an SVG
//! bar chart (by hand: no plotting dependency). Nothing here passes or
//! fails on a number.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What one measurement produced.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Successful requests per second (None for downloads and uploads)
    pub requests_per_s: Option<f64>,
    /// Request latency (downloads: time to first body byte; uploads: the
    /// whole request), ms
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// 99.9th percentile latency, ms (when the client reports it)
    pub p999_ms: Option<f64>,
    /// Response (uploads: request) body bytes per second / 10^6
    pub mb_per_s: f64,
    /// Failed requests or short transfers in the measured window
    pub errors: u64,
    /// Length of the measured window
    pub seconds: f64,
}

/// What a scenario's headline figure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Requests (or handshakes) per second; higher is better.
    Rate,
    /// MB/s; higher is better.
    Bytes,
    /// Latency at a fixed request rate; p99 is the headline, lower is better.
    Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub kind: Kind,
    pub target: String,
    pub protocol: String,
    pub client: String,
    #[serde(flatten)]
    pub measured: Measured,
    /// This row's headline / the named row's headline in the same scenario
    /// ("direct", "nginx", "nginx + rathole"); for latency rows, the p99
    /// difference in ms instead (this row minus the named row).
    pub ratios: BTreeMap<String, f64>,
}

/// Row labels of the baseline and the peers.
pub const DIRECT: &str = "direct";
pub const NGINX: &str = "nginx";
pub const NGINX_RATHOLE: &str = "nginx + rathole";

impl Row {
    /// The figure the ratio compares: req/s, MB/s, or p99 for latency.
    pub fn headline(&self) -> f64 {
        match self.kind {
            Kind::Rate => self.measured.requests_per_s.unwrap_or(0.0),
            Kind::Bytes => self.measured.mb_per_s,
            Kind::Latency => self.measured.p99_ms.unwrap_or(f64::NAN),
        }
    }

    fn is_berth(&self) -> bool {
        self.target.starts_with("berth")
    }
}

/// Fills `ratios`: every row against direct; berth's rows also against
/// each peer.
pub fn add_ratios(rows: &mut [Row]) {
    let headline = |rows: &[Row], scenario: &str, target: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.target == target)
            .map(Row::headline)
            .filter(|h| h.is_finite())
    };
    for i in 0..rows.len() {
        let mut against = vec![DIRECT];
        if rows[i].is_berth() {
            against.extend([NGINX, NGINX_RATHOLE]);
        }
        let mine = rows[i].headline();
        for other in against {
            if rows[i].target == other || !mine.is_finite() {
                continue;
            }
            let Some(theirs) = headline(rows, &rows[i].scenario, other) else {
                continue;
            };
            let value = match rows[i].kind {
                Kind::Latency => mine - theirs,
                _ if theirs > 0.0 => mine / theirs,
                _ => continue,
            };
            rows[i].ratios.insert(other.to_owned(), value);
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

fn ratio(r: &Row, other: &str) -> String {
    match (r.ratios.get(other), r.kind) {
        (None, _) => "-".into(),
        (Some(d), Kind::Latency) => format!("{d:+.2} ms"),
        (Some(x), _) => format!("{x:.2}x"),
    }
}

/// A Markdown table (readable in a terminal too).
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "target",
        "protocol",
        "client",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "MB/s",
        "errors",
        "vs direct",
        "vs nginx",
        "vs nginx+rathole",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let m = &r.measured;
            vec![
                r.scenario.clone(),
                r.target.clone(),
                r.protocol.clone(),
                r.client.clone(),
                opt(m.requests_per_s, 0),
                opt(m.p50_ms, 3),
                opt(m.p99_ms, 3),
                opt(m.p999_ms, 3),
                format!("{:.1}", m.mb_per_s),
                m.errors.to_string(),
                ratio(r, DIRECT),
                ratio(r, NGINX),
                ratio(r, NGINX_RATHOLE),
            ]
        })
        .collect();
    markdown(&header, &cells, 4)
}

/// A Markdown table with its columns padded to their widest cell; columns
/// from `numeric_from` on are right-aligned.
pub fn markdown(header: &[&str], cells: &[Vec<String>], numeric_from: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric = |i: usize| i >= numeric_from;
    let line = |row: &[String]| {
        let mut s = String::from("|");
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if numeric(i) {
                s += &format!(" {c:>w$} |");
            } else {
                s += &format!(" {c:<w$} |");
            }
        }
        s + "\n"
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = line(&header);
    out += "|";
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(w.saturating_sub(1));
        out += &if numeric(i) {
            format!(" {dashes}: |")
        } else {
            format!(" {dashes}- |")
        };
    }
    out += "\n";
    for row in cells {
        out += &line(row);
    }
    out
}

/// Bar colour of a target, the same in every group.
fn colour(target: &str) -> &'static str {
    match target {
        DIRECT => "#9e9e9e",
        "berth (agent process)" | "berth (agent via relay)" => "#1f5fa8",
        "berth (in-process agent)" => "#7fb0e0",
        NGINX => "#2e9e44",
        NGINX_RATHOLE => "#e8852a",
        _ => "#aa66cc",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Short form of a figure for a bar label: 18.3k, 512, 0.73.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// An SVG chart of `rows`: on top, each throughput scenario as a group of
/// bars, one per target, as a fraction of direct (labelled with the measured
/// figure); below, the fixed-rate latency scenario as p50 / p99 / p99.9 bars
/// per target, in ms. `title` goes on top (machine, date, commit).
pub fn svg(rows: &[Row], title: &str) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for r in rows {
        if r.kind != Kind::Latency && !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let latency: Vec<&Row> = rows.iter().filter(|r| r.kind == Kind::Latency).collect();

    let (left, plot_h, group_w, bar_w) = (60.0, 260.0, 150.0, 22.0);
    let width = (left + group_w * scenarios.len().max(3) as f64 + 20.0).max(720.0);
    let lat_h = if latency.is_empty() {
        0.0
    } else {
        70.0 + 26.0 * latency.len() as f64
    };
    let height = 60.0 + plot_h + 90.0 + lat_h + 30.0 * targets.len().div_ceil(3) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="38">Throughput as a fraction of direct (bar labels: req/s or MB/s as measured)</text>"#
    );

    // Throughput panel, y = fraction of direct.
    let top = 50.0;
    let bottom = top + plot_h;
    let frac = |r: &Row| match r.target.as_str() {
        DIRECT => Some(1.0),
        _ => r.ratios.get(DIRECT).copied(),
    };
    let max = rows
        .iter()
        .filter(|r| r.kind != Kind::Latency)
        .filter_map(frac)
        .fold(1.0_f64, f64::max);
    let y = |f: f64| bottom - f / max * plot_h;
    for tick in 0..=4 {
        let f = max * f64::from(tick) / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#e0e0e0"/><text x="{:.0}" y="{:.1}" text-anchor="end">{f:.2}</text>"##,
            width - 10.0,
            left - 4.0,
            y(f) + 4.0,
            yy = y(f),
        );
    }
    for (g, scenario) in scenarios.iter().enumerate() {
        let x0 = left + group_w * g as f64 + 8.0;
        let in_group: Vec<&Row> = rows.iter().filter(|r| r.scenario == *scenario).collect();
        for (i, r) in in_group.iter().enumerate() {
            let Some(f) = frac(r) else { continue };
            let x = x0 + bar_w * i as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                y(f),
                bar_w - 3.0,
                bottom - y(f),
                colour(&r.target),
                esc(&r.target),
                short(r.headline()),
            );
            let _ = writeln!(
                s,
                r#"<text transform="translate({:.1},{:.1}) rotate(-90)" font-size="9">{}</text>"#,
                x + bar_w / 2.0 + 2.0,
                y(f) - 3.0,
                short(r.headline()),
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x0 + group_w / 2.0 - 8.0,
            bottom + 16.0,
            esc(scenario)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" x2="{:.0}" y1="{bottom}" y2="{bottom}" stroke="#444"/>"##,
        width - 10.0
    );

    // Latency panel: horizontal bars, ms.
    let mut ly = bottom + 50.0;
    if !latency.is_empty() {
        let rate = latency
            .first()
            .map(|r| r.scenario.as_str())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<text x="{left}" y="{ly:.0}">{}: p50 / p99 / p99.9 latency, ms (corrected for coordinated omission)</text>"#,
            esc(rate)
        );
        ly += 12.0;
        let lmax = latency
            .iter()
            .filter_map(|r| r.measured.p999_ms.or(r.measured.p99_ms))
            .fold(0.001_f64, f64::max);
        let (lx, lw) = (left + 150.0, width - left - 150.0 - 60.0);
        for r in &latency {
            let _ = writeln!(
                s,
                r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
                lx - 6.0,
                ly + 15.0,
                esc(&r.target)
            );
            let m = &r.measured;
            for (j, (v, opacity)) in [(m.p999_ms, 0.35), (m.p99_ms, 0.65), (m.p50_ms, 1.0)]
                .into_iter()
                .enumerate()
            {
                let Some(v) = v else { continue };
                let _ = writeln!(
                    s,
                    r#"<rect x="{lx:.1}" y="{:.1}" width="{:.1}" height="20" fill="{}" fill-opacity="{opacity}"><title>{}</title></rect>"#,
                    ly + 2.0,
                    (v / lmax * lw).max(1.0),
                    colour(&r.target),
                    ["p99.9", "p99", "p50"][j],
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-size="9">{} / {} / {}</text>"#,
                lx + (m.p999_ms.or(m.p99_ms).unwrap_or(0.0) / lmax * lw) + 4.0,
                ly + 15.0,
                opt(m.p50_ms, 2),
                opt(m.p99_ms, 2),
                opt(m.p999_ms, 2),
            );
            ly += 26.0;
        }
        ly += 20.0;
    }

    // Legend.
    for (i, t) in targets.iter().enumerate() {
        let x = left + 220.0 * (i % 3) as f64;
        let yy = ly + 30.0 * (i / 3) as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="{yy:.0}" width="12" height="12" fill="{}"/><text x="{:.0}" y="{:.0}">{}</text>"#,
            colour(t),
            x + 16.0,
            yy + 10.0,
            esc(t)
        );
    }
    s + "</svg>\n"
}
