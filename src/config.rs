//! Configuration: a TOML file, then `BERTH_{SECTION}_{KEY}` environment
//! variables, then command-line flags (later wins), checked once at start-up.
//!
//! Every key has a default in [`defaults`]; unknown keys, in the file or in
//! `BERTH_*` variables, are errors that name the key.

use crate::auth::Secret;
use crate::host::Wildcard;
use crate::store::{redact_url, PoolSettings, DEFAULT_MAX_CONNECTIONS};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
}

/// The file's shape. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub server: ServerSection,
    pub tls: TlsSection,
    pub admin: AdminSection,
    pub limits: LimitsSection,
    pub log: LogSection,
    pub sharing: SharingSection,
    pub oidc: OidcSection,
}

/// `[oidc]`: sign-in through an OpenID Connect provider (off unless
/// `issuer` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSection {
    /// The provider's issuer URL, exactly as its discovery document says.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Requested scopes (default "openid email profile").
    pub scopes: Option<String>,
    /// E-mail domains admitted (default: any verified address).
    pub allowed_domains: Option<Vec<String>>,
    /// Organization given to users created at their first sign-in.
    pub organization: Option<String>,
    /// Create a user at first sign-in when no user has the address (default true).
    pub create_users: Option<bool>,
    /// PEM file of CAs to trust for the provider (default: SSL_CERT_FILE or the system store).
    pub ca_file: Option<PathBuf>,
    /// The sign-in button's text (default "Sign in with single sign-on").
    pub label: Option<String>,
}

/// `[sharing]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SharingSection {
    /// The widest level owners may choose: "owner", "organization",
    /// "authenticated" or "public" (default).
    pub max_level: Option<String>,
    /// The longest a share link may live, in seconds (default 30 days).
    pub max_link_ttl_secs: Option<i64>,
}

/// `[server]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Option<String>,
    pub base_domain: Option<String>,
    pub wildcard: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    /// (control only); default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// The most PostgreSQL connections this process opens (default 10).
    pub database_max_connections: Option<u32>,
    /// The port that appears in public URLs, when it differs from `listen`'s
    /// (behind a load balancer or NAT). Default: `listen`'s port.
    pub public_port: Option<u16>,
    /// `https://HOST[:PORT]` where other edges reach this very process to
    /// relay requests to the agents connected to it. Default: the base
    /// URL; set it per replica when several share one load balancer.
    pub relay_url: Option<String>,
    /// Load balancers in front of this server (addresses or CIDR ranges):
    /// from them, `X-Forwarded-For` names the client. Default: none.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub mode: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub acme: Option<AcmeSection>,
}

/// `[tls.acme]`: where `tls.mode = "acme"` orders its certificate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSection {
    /// The CA's ACME directory URL.
    pub directory: Option<String>,
    /// Contact address given to the CA (expiry and policy mail).
    pub email: Option<String>,
    /// A CA certificate (PEM) to trust for the directory's own HTTPS, for
    /// test CAs such as Pebble.
    pub ca_file: Option<PathBuf>,
    /// Renew this many days before expiry (fractions allowed; default 30).
    pub renew_before_days: Option<f64>,
    pub dns: Option<AcmeDnsSection>,
}

/// `[tls.acme.dns]`: how DNS-01 TXT records are published.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeDnsSection {
    /// "exec" or "rfc2136".
    pub provider: Option<String>,
    /// exec: the operator's script, run as `command present|cleanup FQDN VALUE`.
    pub command: Option<PathBuf>,
    /// Where to confirm the TXT record before asking the CA ("IP:PORT").
    pub resolvers: Option<Vec<String>>,
    /// rfc2136: the primary server that accepts updates ("IP:PORT").
    pub server: Option<String>,
    /// rfc2136: the zone to update, e.g. "example.com".
    pub zone: Option<String>,
    /// rfc2136: the TSIG key's name, as the server knows it.
    pub tsig_key_name: Option<String>,
    /// rfc2136: "hmac-sha256" (default), "hmac-sha384" or "hmac-sha512".
    pub tsig_algorithm: Option<String>,
    /// rfc2136: the TSIG secret, base64 (prefer `tsig_secret_file`).
    pub tsig_secret: Option<String>,
    /// rfc2136: a file holding the base64 TSIG secret.
    pub tsig_secret_file: Option<PathBuf>,
    /// How long to wait for the TXT record to be visible, in seconds (default 120).
    pub propagation_timeout_secs: Option<f64>,
}

/// `[admin]`: the listener for `/metrics`, off the public port.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// e.g. "127.0.0.1:9443"; "off" disables it.
    pub listen: Option<String>,
}

/// `[limits]`: durations in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub upstream_timeout_secs: Option<f64>,
    pub connect_timeout_secs: Option<f64>,
    pub header_read_timeout_secs: Option<f64>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_concurrent_streams: Option<u32>,
    pub max_streams_per_agent: Option<usize>,
    pub client_write_timeout_secs: Option<f64>,
    pub shutdown_grace_secs: Option<f64>,
    /// Password sign-in attempts per minute, per source address and per
    /// user name (default 10).
    pub login_per_minute: Option<u32>,
    /// Attempts allowed at once before the rate applies (default 10).
    pub login_burst: Option<u32>,
    /// Password hashes (argon2, 19 MiB each) computed at once (default: the
    /// number of CPU cores).
    pub max_password_hashes: Option<usize>,
    /// Sign-ins that may wait for a hash slot; more get 503 at once (default 32).
    pub password_hash_queue: Option<usize>,
}

/// `[log]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// "text" (default) or "json".
    pub format: Option<String>,
}

/// Every key, as (section, key); `BERTH_{SECTION}_{KEY}` sets it.
const KEYS: &[(&str, &str)] = &[
    ("server", "listen"),
    ("server", "base_domain"),
    ("server", "wildcard"),
    ("server", "data_dir"),
    ("server", "database_url"),
    ("server", "database_max_connections"),
    ("server", "public_port"),
    ("server", "relay_url"),
    ("server", "trusted_proxies"),
    ("tls", "mode"),
    ("tls", "cert_file"),
    ("tls", "key_file"),
    ("admin", "listen"),
    ("limits", "upstream_timeout_secs"),
    ("limits", "connect_timeout_secs"),
    ("limits", "header_read_timeout_secs"),
    ("limits", "max_header_bytes"),
    ("limits", "max_connections"),
    ("limits", "max_concurrent_streams"),
    ("limits", "max_streams_per_agent"),
    ("limits", "client_write_timeout_secs"),
    ("limits", "shutdown_grace_secs"),
    ("limits", "login_per_minute"),
    ("limits", "login_burst"),
    ("limits", "max_password_hashes"),
    ("limits", "password_hash_queue"),
    ("log", "format"),
    ("sharing", "max_level"),
    ("sharing", "max_link_ttl_secs"),
    ("oidc", "issuer"),
    ("oidc", "client_id"),
    ("oidc", "client_secret"),
    ("oidc", "scopes"),
    ("oidc", "allowed_domains"),
    ("oidc", "organization"),
    ("oidc", "create_users"),
    ("oidc", "ca_file"),
    ("oidc", "label"),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[(&str, &str)] = &[("oidc", "allowed_domains"), ("server", "trusted_proxies")];

/// Variables that belong to the command line, not to the file's keys.
const CLI_VARS: &[&str] = &[
    "BERTH_URL",
    "BERTH_TOKEN",
    "BERTH_CA_FILE",
    "BERTH_CONFIG",
    "BERTH_REGION_TOKEN",
];

impl FileConfig {
    /// Reads `path` (if given) and overlays `BERTH_*` variables from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<FileConfig, ConfigError> {
        let (text, shown) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                p.to_owned(),
            ),
            None => (String::new(), PathBuf::from("<none>")),
        };
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix("BERTH_") else {
                continue;
            };
            if CLI_VARS.contains(&var.as_str()) || var.starts_with("BERTH_AGENT_") {
                continue;
            }
            let Some((section, key)) = KEYS
                .iter()
                .find(|(s, k)| rest.eq_ignore_ascii_case(&format!("{s}_{k}")))
            else {
                let known = [
                    "SERVER_", "TLS_", "ADMIN_", "LIMITS_", "LOG_", "SHARING_", "OIDC_",
                ];
                if known.iter().any(|p| rest.starts_with(p)) {
                    return Err(ConfigError::Env {
                        var,
                        message: "unknown key: see config/ for the keys berth reads".into(),
                    });
                }
                continue;
            };
            let sec = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()));
            let toml::Value::Table(sec) = sec else {
                return Err(ConfigError::Env {
                    var,
                    message: format!("[{section}] in the file is not a table"),
                });
            };
            let value = if LIST_KEYS.contains(&(*section, *key)) {
                toml::Value::Array(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| toml::Value::String(v.to_owned()))
                        .collect(),
                )
            } else {
                env_value(&value)
            };
            sec.insert(key.to_string(), value);
        }
        FileConfig::deserialize(table).map_err(|e| ConfigError::Parse {
            path: shown,
            message: e.to_string(),
        })
    }
}

/// An environment value as TOML: numbers and booleans as such, else a string.
fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = v.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_owned())
    }
}

/// How the public listener gets its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// A local CA in the data dir signs a wildcard leaf.
    SelfSigned,
    /// PEM files supplied by the operator, reloaded when they change.
    Files {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// A certificate ordered from an ACME CA with DNS-01, kept in the store.
    Acme(Box<AcmeSettings>),
}

/// Where logs go and how they look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Limits and timeouts, resolved.
#[derive(Clone, Debug)]
pub struct Limits {
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Client connections per listener; the default depends on the
    /// open-files limit ([`defaults::max_connections`]).
    pub max_connections: usize,
    /// HTTP/2 streams per client connection.
    pub max_concurrent_streams: u32,
    /// Requests in flight and open upgraded connections per agent.
    pub max_streams_per_agent: usize,
    /// A client (or, at the agent, an app) that takes none of the bytes
    /// waiting for it for this long is dropped.
    pub client_write_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            upstream_timeout: defaults::UPSTREAM_TIMEOUT,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            header_read_timeout: defaults::HEADER_READ_TIMEOUT,
            max_header_bytes: defaults::MAX_HEADER_BYTES,
            max_connections: defaults::max_connections(defaults::open_files_limit()),
            max_concurrent_streams: defaults::MAX_CONCURRENT_STREAMS,
            max_streams_per_agent: defaults::MAX_STREAMS_PER_AGENT,
            client_write_timeout: defaults::CLIENT_WRITE_TIMEOUT,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
        }
    }
}

/// Limits on password sign-in (`POST /api/v1/login`, `POST /signin`),
/// resolved from `[limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Attempts per minute, per source address and per user name.
    pub per_minute: std::num::NonZeroU32,
    /// Attempts allowed at once before the rate applies.
    pub burst: std::num::NonZeroU32,
    /// Password hashes computed at once.
    pub max_hashes: usize,
    /// Sign-ins that may wait for a hash slot.
    pub queue: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_minute: std::num::NonZeroU32::new(defaults::LOGIN_PER_MINUTE).expect("non-zero"),
            burst: std::num::NonZeroU32::new(defaults::LOGIN_BURST).expect("non-zero"),
            max_hashes: default_max_hashes(),
            queue: defaults::PASSWORD_HASH_QUEUE,
        }
    }
}

/// One argon2 verification per CPU core: more at once only adds memory
/// (19 MiB each) and latency, not throughput.
fn default_max_hashes() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl LoginLimits {
    fn resolve(l: &LimitsSection) -> Result<LoginLimits, ConfigError> {
        let d = LoginLimits::default();
        let count = |key: &'static str, v: Option<u32>, default: std::num::NonZeroU32| match v {
            None => Ok(default),
            Some(n) if n <= 100_000 => {
                std::num::NonZeroU32::new(n).ok_or_else(|| ConfigError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                })
            }
            Some(n) => Err(ConfigError::Invalid {
                key,
                message: format!("{n} is outside 1..=100000"),
            }),
        };
        Ok(LoginLimits {
            per_minute: count("limits.login_per_minute", l.login_per_minute, d.per_minute)?,
            burst: count("limits.login_burst", l.login_burst, d.burst)?,
            max_hashes: match l.max_password_hashes {
                None => d.max_hashes,
                Some(n) if (1..=1024).contains(&n) => n,
                Some(n) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.max_password_hashes",
                        message: format!("{n} is outside 1..=1024 (each hash takes 19 MiB)"),
                    })
                }
            },
            queue: match l.password_hash_queue {
                None => d.queue,
                Some(n) if n <= 100_000 => n,
                Some(n) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.password_hash_queue",
                        message: format!("{n} is outside 0..=100000"),
                    })
                }
            },
        })
    }
}

/// Everything a server role (dev, control) needs, checked.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub base_domain: String,
    pub wildcard: Wildcard,
    pub data_dir: PathBuf,
    /// Where the store lives, if not SQLite in `data_dir`. A [`Secret`]: the
    /// URL may carry a password, so `Debug` must not print it.
    pub database_url: Option<Secret>,
    /// Pool limits for a PostgreSQL store.
    pub database_pool: PoolSettings,
    pub public_port: Option<u16>,
    /// Where other edges reach this process (see [`ServerSection::relay_url`]).
    pub relay_url: Option<String>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub tls: TlsMode,
    pub admin_listen: Option<SocketAddr>,
    /// False when `admin_listen` is only the role's default: then a busy port
    /// is a warning, not a failure to start.
    pub admin_listen_explicit: bool,
    pub limits: Limits,
    /// Password sign-in limits (control).
    pub login: LoginLimits,
    pub log_format: LogFormat,
    /// What owners may share, and for how long.
    pub sharing: crate::control::SharingPolicy,
    /// OpenID Connect sign-in, when `oidc.issuer` is set.
    pub oidc: Option<OidcConfig>,
}

/// `[oidc]`, checked.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: crate::auth::Secret,
    pub scopes: String,
    /// Lower-case domains; empty admits any verified address.
    pub allowed_domains: Vec<String>,
    pub organization: Option<String>,
    pub create_users: bool,
    pub ca_file: Option<PathBuf>,
    pub label: String,
}

impl OidcConfig {
    /// Checks `[oidc]`; `None` when no issuer is set (and nothing else is).
    fn resolve(o: OidcSection) -> Result<Option<OidcConfig>, ConfigError> {
        let Some(issuer) = o.issuer.filter(|i| !i.is_empty()) else {
            if o.client_id.is_some() || o.client_secret.is_some() {
                return Err(ConfigError::Invalid {
                    key: "oidc.issuer",
                    message: "is required when oidc.client_id or oidc.client_secret is set".into(),
                });
            }
            return Ok(None);
        };
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        match issuer.parse::<http::Uri>() {
            Ok(u)
                if u.scheme_str() == Some("https")
                    && u.host().is_some_and(|h| !h.is_empty())
                    && u.query().is_none() => {}
            _ => {
                return Err(invalid(
                    "oidc.issuer",
                    format!("{issuer:?} is not an https:// URL without a query, such as https://accounts.example.com"),
                ))
            }
        }
        let client_id = o.client_id.filter(|c| !c.is_empty()).ok_or_else(|| {
            invalid(
                "oidc.client_id",
                "is required: the client id berth is registered with at the provider".into(),
            )
        })?;
        let client_secret = o.client_secret.filter(|c| !c.is_empty()).ok_or_else(|| {
            invalid("oidc.client_secret", "is required: the client secret from the provider (BERTH_OIDC_CLIENT_SECRET keeps it out of the file)".into())
        })?;
        let scopes = o.scopes.unwrap_or_else(|| "openid email profile".into());
        let words: Vec<&str> = scopes.split_whitespace().collect();
        if !words.contains(&"openid") || !words.contains(&"email") {
            return Err(invalid(
                "oidc.scopes",
                format!("{scopes:?} must include \"openid\" and \"email\" (berth matches users by verified e-mail)"),
            ));
        }
        let mut allowed_domains = Vec::new();
        for d in o.allowed_domains.unwrap_or_default() {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains(['@', '/', ' ', '*']) || !d.contains('.') {
                return Err(invalid(
                    "oidc.allowed_domains",
                    format!("{d:?} is not a domain such as example.com"),
                ));
            }
            allowed_domains.push(d);
        }
        if let Some(org) = &o.organization {
            if org.trim() != org || org.is_empty() || org.len() > 100 {
                return Err(invalid(
                    "oidc.organization",
                    format!(
                        "{org:?} must be 1 to 100 characters without leading or trailing spaces"
                    ),
                ));
            }
        }
        Ok(Some(OidcConfig {
            issuer,
            client_id,
            client_secret: crate::auth::Secret::new(client_secret),
            scopes,
            allowed_domains,
            organization: o.organization,
            create_users: o.create_users.unwrap_or(true),
            ca_file: o.ca_file,
            label: o
                .label
                .unwrap_or_else(|| "Sign in with single sign-on".into()),
        }))
    }
}

/// Flag values that override the file and environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub base_domain: Option<String>,
    pub wildcard: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub tls_mode: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub log_format: Option<String>,
}

/// Role defaults that differ between `dev` and `control`.
#[derive(Clone, Copy, Debug)]
pub struct RoleDefaults {
    pub listen: &'static str,
    pub admin_listen: &'static str,
    pub base_domain: Option<&'static str>,
    pub data_dir: &'static str,
}

impl RoleDefaults {
    /// `berth dev`: loopback, `berth.localhost`, `.berth/`.
    pub const DEV: RoleDefaults = RoleDefaults {
        listen: defaults::DEV_LISTEN,
        admin_listen: defaults::ADMIN_LISTEN,
        base_domain: Some(defaults::DEV_BASE_DOMAIN),
        data_dir: defaults::DEV_DATA_DIR,
    };
    /// `berth control`: the operator names the domain.
    pub const CONTROL: RoleDefaults = RoleDefaults {
        listen: "0.0.0.0:443",
        admin_listen: defaults::ADMIN_LISTEN,
        base_domain: None,
        data_dir: "/var/lib/berth",
    };
    /// `berth edge`: a regional edge; the operator names its host.
    pub const EDGE: RoleDefaults = RoleDefaults {
        listen: "0.0.0.0:443",
        admin_listen: defaults::ADMIN_LISTEN,
        base_domain: None,
        data_dir: "/var/lib/berth-edge",
    };
}

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

mod acme;
pub use acme::{AcmeSettings, DnsSettings};

impl ServerConfig {
    /// Merges file, environment (already in `file`) and flags; validates all.
    pub fn resolve(
        file: FileConfig,
        flags: Overrides,
        role: RoleDefaults,
    ) -> Result<ServerConfig, ConfigError> {
        let s = file.server;
        let listen_s = flags
            .listen
            .or(s.listen)
            .unwrap_or_else(|| role.listen.into());
        let listen: SocketAddr = listen_s.parse().map_err(|_| ConfigError::Invalid {
            key: "server.listen",
            message: format!("{listen_s:?} is not an address:port such as 127.0.0.1:8443"),
        })?;
        let base_domain = flags
            .base_domain
            .or(s.base_domain)
            .or(role.base_domain.map(Into::into))
            .ok_or(ConfigError::Invalid {
                key: "server.base_domain",
                message:
                    "is required: the host name of the dashboard and API, e.g. berth.example.com"
                        .into(),
            })?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if base_domain.is_empty() || base_domain.contains(['/', ':', ' ', '*']) {
            return Err(ConfigError::Invalid {
                key: "server.base_domain",
                message: format!("{base_domain:?} is not a host name"),
            });
        }
        let wildcard_s = flags
            .wildcard
            .or(s.wildcard)
            .unwrap_or_else(|| format!("*.{base_domain}"));
        let wildcard = Wildcard::parse(&wildcard_s).map_err(|e| ConfigError::Invalid {
            key: "server.wildcard",
            message: format!("{wildcard_s:?}: {e}"),
        })?;
        let data_dir = flags
            .data_dir
            .or(s.data_dir)
            .unwrap_or_else(|| role.data_dir.into());
        let database_url = flags.database_url.or(s.database_url);
        if let Some(url) = &database_url {
            if !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
            {
                return Err(ConfigError::Invalid {
                    key: "server.database_url",
                    message: format!(
                        "{:?} is not supported: use sqlite://PATH or \
                         postgres://USER:PASSWORD@HOST:PORT/DATABASE (postgresql:// also works)",
                        redact_url(url)
                    ),
                });
            }
        }
        if let Some(url) = &s.relay_url {
            let ok = url.parse::<http::Uri>().ok().is_some_and(|u| {
                u.scheme_str() == Some("https") && u.host().is_some() && u.path() == "/"
            });
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "server.relay_url",
                    message: format!(
                        "{url:?} is not an https://HOST[:PORT] URL (this process's own address, as other edges reach it)"
                    ),
                });
            }
        }
        let mut trusted_proxies = Vec::new();
        for p in s.trusted_proxies.iter().flatten() {
            let net = p
                .parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    key: "server.trusted_proxies",
                    message: format!(
                        "{p:?} is neither an IP address nor a CIDR range (e.g. 10.0.0.0/8)"
                    ),
                })?;
            trusted_proxies.push(net.trunc());
        }
        let database_pool = match s.database_max_connections {
            Some(n) if !(1..=1000).contains(&n) => {
                return Err(ConfigError::Invalid {
                    key: "server.database_max_connections",
                    message: format!("{n} is outside 1..=1000"),
                })
            }
            n => PoolSettings {
                max_connections: n.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                ..PoolSettings::default()
            },
        };
        let t = file.tls;
        let mode = flags
            .tls_mode
            .or(t.mode)
            .unwrap_or_else(|| "self-signed".into());
        let tls = match mode.as_str() {
            "self-signed" => TlsMode::SelfSigned,
            "files" => {
                let cert_file = flags
                    .cert_file
                    .or(t.cert_file)
                    .ok_or(ConfigError::Invalid {
                        key: "tls.cert_file",
                        message: "is required when tls.mode = \"files\"".into(),
                    })?;
                let key_file = flags.key_file.or(t.key_file).ok_or(ConfigError::Invalid {
                    key: "tls.key_file",
                    message: "is required when tls.mode = \"files\"".into(),
                })?;
                TlsMode::Files {
                    cert_file,
                    key_file,
                }
            }
            "acme" => TlsMode::Acme(Box::new(acme::settings(t.acme.unwrap_or_default())?)),
            other => {
                return Err(ConfigError::Invalid {
                    key: "tls.mode",
                    message: format!(
                        "{other:?} is not one of \"self-signed\", \"files\", \"acme\""
                    ),
                })
            }
        };
        let admin_s = flags.admin_listen.or(file.admin.listen);
        let admin_listen_explicit = admin_s.is_some();
        let admin_s = admin_s.unwrap_or_else(|| role.admin_listen.to_owned());
        let admin_listen = match Some(admin_s.as_str()) {
            None => None,
            Some("off") => None,
            Some(a) => Some(a.parse().map_err(|_| ConfigError::Invalid {
                key: "admin.listen",
                message: format!("{a:?} is not an address:port (or \"off\")"),
            })?),
        };
        let l = file.limits;
        let login = LoginLimits::resolve(&l)?;
        let d = Limits::default();
        let limits = Limits {
            upstream_timeout: secs(
                "limits.upstream_timeout_secs",
                l.upstream_timeout_secs,
                d.upstream_timeout,
            )?,
            connect_timeout: secs(
                "limits.connect_timeout_secs",
                l.connect_timeout_secs,
                d.connect_timeout,
            )?,
            header_read_timeout: secs(
                "limits.header_read_timeout_secs",
                l.header_read_timeout_secs,
                d.header_read_timeout,
            )?,
            max_header_bytes: match l.max_header_bytes {
                Some(n) if !(8192..=16 * 1024 * 1024).contains(&n) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.max_header_bytes",
                        message: format!("{n} is outside 8192..=16777216"),
                    })
                }
                n => n.unwrap_or(d.max_header_bytes),
            },
            max_connections: match l.max_connections {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.max_connections",
                        message: "must be at least 1".into(),
                    })
                }
                n => n.unwrap_or(d.max_connections),
            },
            max_concurrent_streams: match l.max_concurrent_streams {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.max_concurrent_streams",
                        message: "must be at least 1".into(),
                    })
                }
                n => n.unwrap_or(d.max_concurrent_streams),
            },
            max_streams_per_agent: match l.max_streams_per_agent {
                Some(0) => {
                    return Err(ConfigError::Invalid {
                        key: "limits.max_streams_per_agent",
                        message: "must be at least 1".into(),
                    })
                }
                n => n.unwrap_or(d.max_streams_per_agent),
            },
            client_write_timeout: secs(
                "limits.client_write_timeout_secs",
                l.client_write_timeout_secs,
                d.client_write_timeout,
            )?,
            shutdown_grace: secs(
                "limits.shutdown_grace_secs",
                l.shutdown_grace_secs,
                d.shutdown_grace,
            )?,
        };
        let log_format = match flags.log_format.or(file.log.format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "log.format",
                    message: format!("{other:?} is not \"text\" or \"json\""),
                })
            }
        };
        let max_share_level = match file.sharing.max_level.as_deref() {
            None => crate::auth::ShareLevel::Public,
            Some(l) => crate::auth::ShareLevel::parse(l).ok_or_else(|| ConfigError::Invalid {
                key: "sharing.max_level",
                message: format!(
                    "{l:?} is not one of \"owner\", \"organization\", \"authenticated\", \"public\""
                ),
            })?,
        };
        let max_link_ttl_secs = match file.sharing.max_link_ttl_secs {
            None => crate::control::DEFAULT_MAX_LINK_TTL_SECS,
            Some(n) if (1..=10 * 365 * 24 * 3600).contains(&n) => n,
            Some(n) => {
                return Err(ConfigError::Invalid {
                    key: "sharing.max_link_ttl_secs",
                    message: format!("{n} is not between 1 and 315360000 (ten years)"),
                })
            }
        };
        let oidc = OidcConfig::resolve(file.oidc)?;
        Ok(ServerConfig {
            oidc,
            sharing: crate::control::SharingPolicy {
                max_level: max_share_level,
                max_link_ttl_secs,
            },
            listen,
            base_domain,
            wildcard,
            data_dir,
            database_url: database_url.map(Secret::new),
            database_pool,
            public_port: s.public_port,
            relay_url: s.relay_url.map(|u| u.trim_end_matches('/').to_owned()),
            trusted_proxies,
            tls,
            admin_listen,
            admin_listen_explicit,
            limits,
            login,
            log_format,
        })
    }

    /// The port shown in public URLs (`None` for 443).
    pub fn url_port(&self) -> Option<u16> {
        match self.public_port.unwrap_or(self.listen.port()) {
            443 => None,
            p => Some(p),
        }
    }

    /// Where other edges reach this process for relaying.
    pub fn relay_url(&self) -> String {
        self.relay_url.clone().unwrap_or_else(|| self.base_url())
    }

    /// `https://base_domain[:port]`
    pub fn base_url(&self) -> String {
        match self.url_port() {
            Some(p) => format!("https://{}:{p}", self.base_domain),
            None => format!("https://{}", self.base_domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<FileConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        FileConfig::load(
            Some(&p),
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n",
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("listen_addr"), "{e}");
        let e = load("[serverx]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("serverx"), "{e}");
        let e = load("", &[("BERTH_SERVER_LISTN", "x")]).unwrap_err();
        assert!(e.to_string().contains("BERTH_SERVER_LISTN"), "{e}");
    }

    #[test]
    fn env_overrides_file_and_flags_override_env() {
        let f = load(
            "[server]\nlisten = \"127.0.0.1:1000\"\ndata_dir = \"/a\"\n",
            &[
                ("BERTH_SERVER_LISTEN", "127.0.0.1:2000"),
                ("BERTH_SERVER_DATA_DIR", "/b"),
            ],
        )
        .unwrap();
        let c = ServerConfig::resolve(
            f,
            Overrides {
                data_dir: Some("/c".into()),
                ..Default::default()
            },
            RoleDefaults::DEV,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(c.data_dir, PathBuf::from("/c"));
        assert_eq!(c.wildcard.as_str(), "*.berth.localhost");
        assert_eq!(c.base_url(), "https://berth.localhost:2000");
        assert_eq!(
            c.relay_url(),
            c.base_url(),
            "relays reach the base URL by default"
        );
        let f = load("[server]\nrelay_url = \"https://10.0.3.17:8443/\"", &[]).unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        assert_eq!(c.relay_url(), "https://10.0.3.17:8443");
        let f = load(
            "[server]\ntrusted_proxies = [\"10.1.2.3/8\", \"192.0.2.1\", \"fd00::/8\"]",
            &[],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        let nets: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "fd00::/8"]);
    }

    #[test]
    fn login_limits_default_and_come_from_file_and_environment() {
        let c = ServerConfig::resolve(
            load("", &[]).unwrap(),
            Overrides::default(),
            RoleDefaults::DEV,
        )
        .unwrap();
        assert_eq!(c.login.per_minute.get(), defaults::LOGIN_PER_MINUTE);
        assert_eq!(c.login.burst.get(), defaults::LOGIN_BURST);
        assert!(c.login.max_hashes >= 1);
        assert_eq!(c.login.queue, defaults::PASSWORD_HASH_QUEUE);
        let f = load(
            "[limits]\nlogin_per_minute = 6\nmax_password_hashes = 3\n",
            &[
                ("BERTH_LIMITS_LOGIN_BURST", "4"),
                ("BERTH_LIMITS_PASSWORD_HASH_QUEUE", "0"),
            ],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        assert_eq!(
            (
                c.login.per_minute.get(),
                c.login.burst.get(),
                c.login.max_hashes,
                c.login.queue
            ),
            (6, 4, 3, 0)
        );
    }

    #[test]
    fn oidc_from_file_and_environment() {
        let f = load(
            "[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"berth\"\n",
            &[
                ("BERTH_OIDC_CLIENT_SECRET", "from-env"),
                ("BERTH_OIDC_ALLOWED_DOMAINS", "Example.com, @corp.example ,"),
            ],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        let o = c.oidc.unwrap();
        assert_eq!(o.client_secret.expose(), "from-env");
        assert_eq!(o.allowed_domains, ["example.com", "corp.example"]);
        assert_eq!(o.scopes, "openid email profile");
        assert!(o.create_users);
        assert!(!format!("{o:?}").contains("from-env"));
        let none = ServerConfig::resolve(
            load("", &[]).unwrap(),
            Overrides::default(),
            RoleDefaults::DEV,
        );
        assert!(none.unwrap().oidc.is_none());
        let e = load("", &[("BERTH_OIDC_ISSUERR", "x")]).unwrap_err();
        assert!(e.to_string().contains("BERTH_OIDC_ISSUERR"), "{e}");
    }

    #[test]
    fn postgres_urls_are_accepted_and_never_printed() {
        let f = load(
            "[server]\ndatabase_url = \"postgresql://berth:hunter2@db:5432/berth\"\n",
            &[("BERTH_SERVER_DATABASE_MAX_CONNECTIONS", "25")],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        assert_eq!(
            c.database_url.as_ref().map(Secret::expose),
            Some("postgresql://berth:hunter2@db:5432/berth")
        );
        assert_eq!(c.database_pool.max_connections, 25);
        assert!(!format!("{c:?}").contains("hunter2"));
        let e = ServerConfig::resolve(
            load("[server]\ndatabase_url = \"pg://u:hunter2@db/x\"", &[]).unwrap(),
            Overrides::default(),
            RoleDefaults::DEV,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sqlite://") && e.contains("postgres://"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (text, key) in [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            (
                "[server]\nwildcard = \"apps.example.com\"",
                "server.wildcard",
            ),
            ("[tls]\nmode = \"files\"", "tls.cert_file"),
            ("[tls]\nmode = \"magic\"", "tls.mode"),
            (
                "[limits]\nupstream_timeout_secs = -1",
                "limits.upstream_timeout_secs",
            ),
            (
                "[limits]\nclient_write_timeout_secs = 0",
                "limits.client_write_timeout_secs",
            ),
            (
                "[limits]\nmax_streams_per_agent = 0",
                "limits.max_streams_per_agent",
            ),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[limits]\nlogin_per_minute = 0", "limits.login_per_minute"),
            ("[limits]\nlogin_burst = 1000001", "limits.login_burst"),
            ("[limits]\nmax_password_hashes = 0", "limits.max_password_hashes"),
            (
                "[limits]\npassword_hash_queue = 100001",
                "limits.password_hash_queue",
            ),
            ("[sharing]\nmax_level = \"world\"", "sharing.max_level"),
            ("[oidc]\nclient_id = \"b\"", "oidc.issuer"),
            (
                "[oidc]\nissuer = \"http://idp.example.com\"\nclient_id = \"b\"\nclient_secret = \"s\"",
                "oidc.issuer",
            ),
            (
                "[oidc]\nissuer = \"https://idp.example.com\"\nclient_secret = \"s\"",
                "oidc.client_id",
            ),
            (
                "[oidc]\nissuer = \"https://idp.example.com\"\nclient_id = \"b\"",
                "oidc.client_secret",
            ),
            (
                "[oidc]\nissuer = \"https://i.example\"\nclient_id = \"b\"\nclient_secret = \"s\"\nscopes = \"openid\"",
                "oidc.scopes",
            ),
            (
                "[oidc]\nissuer = \"https://i.example\"\nclient_id = \"b\"\nclient_secret = \"s\"\nallowed_domains = [\"*.example.com\"]",
                "oidc.allowed_domains",
            ),
            (
                "[server]\ndatabase_url = \"mysql://root:pw@db/berth\"",
                "server.database_url",
            ),
            (
                "[server]\ndatabase_max_connections = 0",
                "server.database_max_connections",
            ),
            ("[server]\nrelay_url = \"http://10.0.0.1\"", "server.relay_url"),
            (
                "[server]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "server.trusted_proxies",
            ),
            (
                "[server]\ntrusted_proxies = [\"lb.example.com\"]",
                "server.trusted_proxies",
            ),
            ("[server]\nrelay_url = \"https://\"", "server.relay_url"),
            (
                "[server]\nrelay_url = \"https://10.0.0.1/path\"",
                "server.relay_url",
            ),
            ("[tls]\nmode = \"acme\"", "tls.acme.directory"),
            (
                "[tls]\nmode = \"acme\"\n[tls.acme]\ndirectory = \"https://ca/dir\"",
                "tls.acme.dns.provider",
            ),
            (
                "[tls]\nmode = \"acme\"\n[tls.acme]\ndirectory = \"https://ca/dir\"\n[tls.acme.dns]\nprovider = \"rfc2136\"\nserver = \"127.0.0.1:53\"\nzone = \"a.test\"\ntsig_key_name = \"k\"\ntsig_secret = \"not base64!\"",
                "tls.acme.dns.tsig_secret",
            ),
            (
                "[tls]\nmode = \"acme\"\n[tls.acme]\ndirectory = \"https://ca/dir\"\nrenew_before_days = -1\n[tls.acme.dns]\nprovider = \"exec\"\ncommand = \"/x\"",
                "tls.acme.renew_before_days",
            ),
        ] {
            let e = ServerConfig::resolve(
                load(text, &[]).unwrap(),
                Overrides::default(),
                RoleDefaults::DEV,
            )
            .unwrap_err();
            assert!(e.to_string().starts_with(key), "{text}: {e}");
        }
        let e = ServerConfig::resolve(
            FileConfig::default(),
            Overrides::default(),
            RoleDefaults::CONTROL,
        )
        .unwrap_err();
        assert!(e.to_string().contains("server.base_domain"));
    }

    #[test]
    fn acme_settings_resolve_with_defaults() {
        let f = load(
            "[tls]\nmode = \"acme\"\n[tls.acme]\ndirectory = \"https://ca/dir\"\n[tls.acme.dns]\nprovider = \"exec\"\ncommand = \"/etc/berth/dns-hook\"\nresolvers = [\"127.0.0.1:53\"]\n",
            &[],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        let TlsMode::Acme(a) = c.tls else {
            panic!("{:?}", c.tls)
        };
        assert_eq!(a.renew_before, defaults::ACME_RENEW_BEFORE);
        assert_eq!(a.resolvers, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(
            a.dns,
            DnsSettings::Exec {
                command: "/etc/berth/dns-hook".into()
            }
        );
    }

    #[test]
    fn max_connections_leaves_room_under_the_open_files_limit() {
        use defaults::{max_connections, MAX_CONNECTIONS};
        for (limit, want) in [
            // The machine the issue was measured on: 20,000 open files.
            (20_000, 16_000),
            (1_024, 512),
            (4_096, 3_072),
            (10_000, 8_000),
            (65_536, MAX_CONNECTIONS),
            (1 << 20, MAX_CONNECTIONS),
            (u64::MAX, MAX_CONNECTIONS),
            (2, 1),
            (1, 1),
            (0, 1),
        ] {
            let n = max_connections(limit);
            assert_eq!(n, want, "open files {limit}");
            assert!(n as u64 <= limit.max(1), "open files {limit}: {n}");
        }
        // Always below the limit itself: accept must not hit EMFILE first.
        for limit in [256u64, 1000, 2048, 20_000, 40_000] {
            assert!((max_connections(limit) as u64) < limit, "{limit}");
        }
    }

    #[test]
    fn limits_from_file_and_environment() {
        let f = load(
            "[limits]\nclient_write_timeout_secs = 2.5\nmax_streams_per_agent = 7\nmax_connections = 99",
            &[("BERTH_LIMITS_MAX_CONCURRENT_STREAMS", "5")],
        )
        .unwrap();
        let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
        assert_eq!(c.limits.client_write_timeout, Duration::from_millis(2500));
        assert_eq!(c.limits.max_streams_per_agent, 7);
        assert_eq!(c.limits.max_connections, 99);
        assert_eq!(c.limits.max_concurrent_streams, 5);
        let d = ServerConfig::resolve(
            FileConfig::default(),
            Overrides::default(),
            RoleDefaults::DEV,
        )
        .unwrap();
        assert_eq!(
            d.limits.client_write_timeout,
            defaults::CLIENT_WRITE_TIMEOUT
        );
        assert_eq!(
            d.limits.max_streams_per_agent,
            defaults::MAX_STREAMS_PER_AGENT
        );
        assert_eq!(
            d.limits.max_connections,
            defaults::max_connections(defaults::open_files_limit())
        );
    }

    #[test]
    fn example_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "toml") {
                FileConfig::load(Some(&p), []).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                n += 1;
            }
        }
        assert!(n >= 2, "expected example configs in config/");
    }
}
