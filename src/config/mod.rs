//! Configuration: a TOML file, then `BERTH_{SECTION}_{KEY}` environment
//! variables, then command-line flags (later wins), checked once at start-up.
//!
//! Every key has a default in [`defaults`]; unknown keys, in the file or in
//! `BERTH_*` variables, are errors that name the key. Resolution checks
//! every key and reports every problem it finds in one run.
//!
//! - [`schema`]: the file's sections and keys;
//! - [`layers`]: reading the file and the environment over it
//!   ([`FileConfig::load`]), and the flags ([`Overrides`]);
//! - [`resolve`]: the checked [`ServerConfig`] a server role runs with;
//! - one file per section with more to check: `acme` (`[tls.acme]`),
//!   `database` (`server.database_*`), `github`, `hooks` (`[activity]`,
//!   `[wake]`), `jwt`, `login` (the sign-in limits of `[limits]`), `oidc`,
//!   `sharing`.

mod acme;
mod database;
mod github;
mod hooks;
mod inspector;
mod jwt;
mod layers;
mod login;
mod oidc;
mod ports;
mod resolve;
mod schema;
mod sharing;
#[cfg(test)]
mod tests;

pub use acme::{AcmeSettings, DnsSettings};
pub use database::{redact_url, PoolSettings, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS};
pub use github::GithubConfig;
pub use hooks::{ActivityConfig, WakeConfig, Webhook, DEFAULT_IDLE_AFTER, DEFAULT_WAKE_COOLDOWN};
pub use inspector::InspectorConfig;
pub use jwt::{JwtPolicy, DEFAULT_JWT_GRACE_SECS, DEFAULT_JWT_ROTATION_SECS, DEFAULT_JWT_TTL_SECS};
pub use layers::Overrides;
pub use login::LoginLimits;
pub use oidc::OidcConfig;
pub use ports::parse_ports;
pub use resolve::{Limits, LogFormat, RoleDefaults, RuntimeShape, ServerConfig, TlsMode};
pub use schema::{
    AcmeDnsSection, AcmeSection, ActivitySection, AdminSection, FileConfig, GithubSection,
    JwtSection, LimitsSection, LogSection, OidcSection, ServerSection, SharingSection, TlsSection,
    WakeSection,
};
pub use sharing::{
    PublicRate, SharingPolicy, DEFAULT_LINK_TTL_SECS, DEFAULT_MAX_LINK_TTL_SECS, MAX_SHARE_TTL_SECS,
};

use std::path::PathBuf;
use std::time::Duration;

/// Defaults, with units in their types.
pub mod defaults {
    use std::time::Duration;
    /// `berth dev` listens here.
    pub const DEV_LISTEN: &str = "127.0.0.1:8443";
    /// `berth dev` base domain; browsers resolve `*.localhost` to loopback.
    pub const DEV_BASE_DOMAIN: &str = "berth.localhost";
    /// `berth dev` data directory.
    pub const DEV_DATA_DIR: &str = ".berth";
    /// The admin listener (metrics), loopback only.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9443";
    /// How long the edge waits for an app's response headers.
    pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
    /// How long an agent tries to reach a workspace port.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// How long a client may take to send its request headers.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Largest request head accepted from a client.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// The most simultaneous client connections per listener by default,
    /// however high the open-files limit (idle TLS connections cost tens of
    /// KiB each; 20,000 of them a few hundred MiB). See [`max_connections`].
    pub const MAX_CONNECTIONS: usize = 20_000;
    /// Concurrent HTTP/2 streams per client connection.
    pub const MAX_CONCURRENT_STREAMS: u32 = 250;
    /// Requests in flight (and open WebSockets) per agent at one edge,
    /// beyond which it answers 503: 20,000 pending requests to an app that
    /// never answers cost ~430 MiB, so 1,000 cost ~21 MiB.
    pub const MAX_STREAMS_PER_AGENT: usize = 1_000;
    /// A client that takes none of the bytes waiting for it for this long
    /// is dropped (nginx's `send_timeout` is 60 s too); the tunnel stream
    /// it held is released.
    pub const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The default `limits.max_connections` under an open-files limit of
    /// `open_files` (after berth raised its soft limit to the hard one):
    /// room is kept for what else the process opens (the in-process agent's
    /// connections to apps, relay links, the database, log files): a fifth
    /// of the limit, at least 1,024 but at most half. Never above
    /// [`MAX_CONNECTIONS`]. With the limit itself as the cap (as before),
    /// `accept` failed with EMFILE before the cap was reached.
    pub fn max_connections(open_files: u64) -> usize {
        let headroom = (open_files / 5).max(1024).min(open_files / 2);
        let n = open_files.saturating_sub(headroom).max(1);
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(MAX_CONNECTIONS)
    }

    /// The process's soft open-files limit (`u64::MAX` where unknown).
    pub fn open_files_limit() -> u64 {
        #[cfg(unix)]
        if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
            return soft;
        }
        u64::MAX
    }
    /// In-flight requests get this long after SIGTERM.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
    /// Password sign-in attempts per minute, per source address and per user name.
    pub const LOGIN_PER_MINUTE: u32 = 10;
    /// Attempts allowed at once (per source, per user name) before the rate applies.
    pub const LOGIN_BURST: u32 = 10;
    /// Sign-ins that may wait for a free password-hash slot; more get 503.
    pub const PASSWORD_HASH_QUEUE: usize = 32;
    /// ACME certificates are renewed this long before they expire.
    pub const ACME_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
    /// How long a DNS-01 TXT record may take to become visible.
    pub const ACME_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
}

/// A configuration problem, always naming the key and, where useful, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// More than one problem, in the order the keys were checked; shown one
    /// a line.
    #[error("{}", lines(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// Every single problem this error holds (itself, unless it holds several).
    pub fn problems(&self) -> Vec<&ConfigError> {
        match self {
            ConfigError::Several(all) => all.iter().flat_map(ConfigError::problems).collect(),
            one => vec![one],
        }
    }
}

fn lines(all: &[ConfigError]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Collects the problems of a resolution, so one run reports them all:
/// each key's check goes through [`Problems::take`], and [`Problems::finish`]
/// gives the resolved value or every problem.
#[derive(Debug, Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    /// The checked value, or `None` with its problem(s) noted.
    fn take<T>(&mut self, checked: Result<T, ConfigError>) -> Option<T> {
        match checked {
            Ok(v) => Some(v),
            Err(ConfigError::Several(all)) => {
                self.0.extend(all);
                None
            }
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Notes a problem found outside a `take`.
    fn note(&mut self, problem: ConfigError) {
        self.0.push(problem);
    }

    /// `value` (built from what was taken) when nothing went wrong; else
    /// the one problem, or all of them.
    fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        let mut all = self.0;
        match (all.len(), value) {
            (0, Some(v)) => Ok(v),
            (0, None) => unreachable!("a value was left out without a problem"),
            (1, _) => Err(all.remove(0)),
            _ => Err(ConfigError::Several(all)),
        }
    }
}

/// A number of seconds (`key`), or `default` when it is not set.
fn secs(key: &'static str, v: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(ConfigError::Invalid {
            key,
            message: format!("{s} is not a positive number of seconds"),
        }),
    }
}
