//! Results: one row per (scenario, target), printed as a table and written
//! as JSON. Nothing here passes or fails on a number.

use serde::Serialize;

/// What one measurement produced.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    /// Successful requests per second (None for downloads)
    pub requests_per_s: Option<f64>,
    /// Request latency (downloads: time to first body byte), ms
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Response body bytes per second / 10^6
    pub mb_per_s: f64,
    /// Failed requests or short downloads in the measured window
    pub errors: u64,
    /// Length of the measured window
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    pub target: String,
    pub protocol: String,
    pub client: String,
    #[serde(flatten)]
    pub measured: Measured,
    /// berth / direct, on req/s (or MB/s for downloads)
    pub ratio_vs_direct: Option<f64>,
}

impl Row {
    /// The figure the ratio compares: req/s, or MB/s for downloads.
    pub fn headline(&self) -> f64 {
        self.measured
            .requests_per_s
            .unwrap_or(self.measured.mb_per_s)
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
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
        "MB/s",
        "errors",
        "vs direct",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            let m = &r.measured;
            [
                r.scenario.clone(),
                r.target.clone(),
                r.protocol.clone(),
                r.client.clone(),
                opt(m.requests_per_s, 0),
                opt(m.p50_ms, 3),
                opt(m.p99_ms, 3),
                format!("{:.1}", m.mb_per_s),
                m.errors.to_string(),
                r.ratio_vs_direct
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let numeric = |i: usize| i >= 4;
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
    let mut out = line(&header.map(String::from));
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
    for row in &cells {
        out += &line(row);
    }
    out
}
