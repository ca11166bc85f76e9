//! `[inspector]`: what each edge keeps of the requests it serves, for the
//! request inspector (owners see their ports' recent exchanges and replay
//! them). Memory is bounded per port and per edge.

use super::schema::InspectorSection;
use super::{ConfigError, Problems};

/// The inspector's settings, from `[inspector]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InspectorConfig {
    /// Record exchanges at all (`inspector.enabled`; a share can still turn
    /// its port's recording off).
    pub enabled: bool,
    /// Bytes kept of each request and response body; 0 keeps none
    /// (`inspector.body_bytes`).
    pub body_bytes: usize,
    /// Exchanges kept per (agent, port) (`inspector.max_entries_per_port`).
    pub max_entries_per_port: usize,
    /// Bytes kept per (agent, port) (`inspector.max_bytes_per_port`).
    pub max_bytes_per_port: usize,
    /// Bytes kept by one edge for all ports (`inspector.max_bytes_per_edge`).
    pub max_bytes_per_edge: usize,
}

/// Defaults: on, 4 KiB of each body, 100 exchanges or 1 MiB per port,
/// 64 MiB per edge.
impl Default for InspectorConfig {
    fn default() -> Self {
        InspectorConfig {
            enabled: true,
            body_bytes: 4096,
            max_entries_per_port: 100,
            max_bytes_per_port: 1 << 20,
            max_bytes_per_edge: 64 << 20,
        }
    }
}

impl InspectorConfig {
    /// Checks `[inspector]`.
    pub(super) fn resolve(s: InspectorSection) -> Result<InspectorConfig, ConfigError> {
        let d = InspectorConfig::default();
        let mut p = Problems::default();
        let mut within = |key: &'static str, v: Option<i64>, default: usize, lo: i64, hi: i64| {
            p.take(match v {
                None => Ok(default),
                Some(n) if (lo..=hi).contains(&n) => Ok(n as usize),
                Some(n) => Err(ConfigError::Invalid {
                    key,
                    message: format!("{n} is not between {lo} and {hi}"),
                }),
            })
        };
        let body_bytes = within(
            "inspector.body_bytes",
            s.body_bytes,
            d.body_bytes,
            0,
            1 << 20,
        );
        let entries = within(
            "inspector.max_entries_per_port",
            s.max_entries_per_port,
            d.max_entries_per_port,
            1,
            100_000,
        );
        let port_bytes = within(
            "inspector.max_bytes_per_port",
            s.max_bytes_per_port,
            d.max_bytes_per_port,
            4096,
            1 << 30,
        );
        let edge_bytes = within(
            "inspector.max_bytes_per_edge",
            s.max_bytes_per_edge,
            d.max_bytes_per_edge,
            4096,
            1 << 34,
        );
        let cfg = (|| {
            Some(InspectorConfig {
                enabled: s.enabled.unwrap_or(d.enabled),
                body_bytes: body_bytes?,
                max_entries_per_port: entries?,
                max_bytes_per_port: port_bytes?,
                max_bytes_per_edge: edge_bytes?,
            })
        })();
        p.finish(cfg)
    }
}
