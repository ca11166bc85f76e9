//! Resolution: the file and environment ([`FileConfig`]) and the flags
//! ([`Overrides`]) merged over the role's defaults ([`RoleDefaults`]) into a
//! checked [`ServerConfig`]. Every key is checked, and every problem found
//! is reported in one run, each naming its key.

use super::layers::Overrides;
use super::schema::{FileConfig, LimitsSection, TlsSection};
use super::{
    database, defaults, secs, AcmeSettings, ConfigError, GithubConfig, LoginLimits, OidcConfig,
    PoolSettings, Problems, SharingPolicy,
};
use super::{ActivityConfig, WakeConfig};
use crate::host::Wildcard;
use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

/// How the public listener uses the cores (`server.runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RuntimeShape {
    /// One multi-threaded, work-stealing runtime serves every connection.
    #[default]
    WorkStealing,
    /// One single-threaded runtime per core, each with its own
    /// `SO_REUSEPORT` listener: a connection stays on the core that
    /// accepted it, and prefers that core's tunnel of an agent.
    PerCore,
}

impl RuntimeShape {
    /// `server.runtime`: "work-stealing" (the default) or "per-core".
    fn parse(s: Option<String>) -> Result<RuntimeShape, ConfigError> {
        match s.as_deref() {
            None | Some("work-stealing") => Ok(RuntimeShape::WorkStealing),
            Some("per-core") => Ok(RuntimeShape::PerCore),
            Some(other) => Err(invalid(
                "server.runtime",
                format!("{other:?} is not \"work-stealing\" or \"per-core\""),
            )),
        }
    }
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
    /// `server.dev_agent_ports`: the ports `berth dev`'s agent lists.
    pub dev_agent_ports: Option<std::collections::BTreeSet<u16>>,
    /// `server.runtime`: how the public listener uses the cores.
    pub runtime: RuntimeShape,
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
    pub sharing: SharingPolicy,
    /// OpenID Connect sign-in, when `oidc.issuer` is set.
    pub oidc: Option<OidcConfig>,
    /// The request inspector (`[inspector]`).
    pub inspector: super::InspectorConfig,
    /// Activity tracking and the idle webhook (`[activity]`).
    pub activity: ActivityConfig,
    /// Wake on visit, when `wake.webhook_url` is set.
    pub wake: Option<WakeConfig>,
    /// The identity assertions apps receive, and their keys' rotation.
    pub jwt: super::JwtPolicy,
    /// GitHub sign-in, when `github.client_id` is set.
    pub github: Option<GithubConfig>,
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

impl ServerConfig {
    /// Merges file, environment (already in `file`) and flags over the
    /// role's defaults; checks every key and reports every problem.
    pub fn resolve(
        file: FileConfig,
        flags: Overrides,
        role: RoleDefaults,
    ) -> Result<ServerConfig, ConfigError> {
        let mut p = Problems::default();
        let s = file.server;
        let listen = p.take(listen(
            flags
                .listen
                .or(s.listen)
                .unwrap_or_else(|| role.listen.into()),
        ));
        let base_domain = p.take(base_domain(
            flags
                .base_domain
                .or(s.base_domain)
                .or(role.base_domain.map(Into::into)),
        ));
        let wildcard = match flags.wildcard.or(s.wildcard) {
            Some(w) => p.take(wildcard(&w)),
            // Without a base domain there is no default to check.
            None => base_domain
                .as_ref()
                .and_then(|b| p.take(wildcard(&format!("*.{b}")))),
        };
        let data_dir = flags
            .data_dir
            .or(s.data_dir)
            .unwrap_or_else(|| role.data_dir.into());
        let database_url = p.take(database::url(flags.database_url.or(s.database_url)));
        let relay_url = p.take(relay_url(s.relay_url));
        let trusted_proxies = p.take(trusted_proxies(s.trusted_proxies.unwrap_or_default()));
        let database_pool = p.take(database::pool(s.database_max_connections));
        let dev_agent_ports = p.take(
            s.dev_agent_ports
                .as_ref()
                .map(|l| super::parse_ports(&l.text()))
                .transpose()
                .map_err(|message| ConfigError::Invalid {
                    key: "server.dev_agent_ports",
                    message,
                }),
        );
        let runtime = p.take(RuntimeShape::parse(s.runtime.clone()));
        let tls = p.take(tls(
            file.tls,
            TlsFlags {
                mode: flags.tls_mode,
                cert_file: flags.cert_file,
                key_file: flags.key_file,
            },
        ));
        let admin_s = flags.admin_listen.or(file.admin.listen);
        let admin_listen_explicit = admin_s.is_some();
        let admin_listen = p.take(admin_listen(
            admin_s.unwrap_or_else(|| role.admin_listen.to_owned()),
        ));
        let login = p.take(LoginLimits::resolve(&file.limits));
        let limits = p.take(Limits::resolve(file.limits));
        let log_format = p.take(LogFormat::parse(flags.log_format.or(file.log.format)));
        let sharing = p.take(SharingPolicy::resolve(file.sharing));
        let oidc = p.take(OidcConfig::resolve(file.oidc));
        let inspector = p.take(super::InspectorConfig::resolve(file.inspector));
        let activity = p.take(ActivityConfig::resolve(file.activity));
        let wake = p.take(WakeConfig::resolve(file.wake));
        let jwt = p.take(super::JwtPolicy::resolve(file.jwt));
        let github = p.take(GithubConfig::resolve(file.github));
        let resolved = (|| {
            Some(ServerConfig {
                listen: listen?,
                base_domain: base_domain?,
                wildcard: wildcard?,
                data_dir,
                database_url: database_url?.map(Secret::new),
                database_pool: database_pool?,
                public_port: s.public_port,
                relay_url: relay_url?,
                trusted_proxies: trusted_proxies?,
                dev_agent_ports: dev_agent_ports?,
                runtime: runtime?,
                tls: tls?,
                admin_listen: admin_listen?,
                admin_listen_explicit,
                limits: limits?,
                login: login?,
                log_format: log_format?,
                sharing: sharing?,
                oidc: oidc?,
                inspector: inspector?,
                activity: activity?,
                wake: wake?,
                jwt: jwt?,
                github: github?,
            })
        })();
        p.finish(resolved)
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

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// `server.listen`
fn listen(s: String) -> Result<SocketAddr, ConfigError> {
    s.parse().map_err(|_| {
        invalid(
            "server.listen",
            format!("{s:?} is not an address:port such as 127.0.0.1:8443"),
        )
    })
}

/// `server.base_domain`, lower case, without a final dot.
fn base_domain(s: Option<String>) -> Result<String, ConfigError> {
    let s = s.ok_or_else(|| {
        invalid(
            "server.base_domain",
            "is required: the host name of the dashboard and API, e.g. berth.example.com".into(),
        )
    })?;
    let base_domain = s.trim_end_matches('.').to_ascii_lowercase();
    if base_domain.is_empty() || base_domain.contains(['/', ':', ' ', '*']) {
        return Err(invalid(
            "server.base_domain",
            format!("{base_domain:?} is not a host name"),
        ));
    }
    Ok(base_domain)
}

/// `server.wildcard`
fn wildcard(s: &str) -> Result<Wildcard, ConfigError> {
    Wildcard::parse(s).map_err(|e| invalid("server.wildcard", format!("{s:?}: {e}")))
}

/// `server.relay_url`, without a final slash.
fn relay_url(url: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(url) = url else {
        return Ok(None);
    };
    let ok = url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some() && u.path() == "/");
    if !ok {
        return Err(invalid(
            "server.relay_url",
            format!(
                "{url:?} is not an https://HOST[:PORT] URL (this process's own address, as other edges reach it)"
            ),
        ));
    }
    Ok(Some(url.trim_end_matches('/').to_owned()))
}

/// `server.trusted_proxies`: addresses or CIDR ranges.
fn trusted_proxies(list: Vec<String>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let mut p = Problems::default();
    let mut nets = Vec::new();
    for s in list {
        let net = s
            .parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                invalid(
                    "server.trusted_proxies",
                    format!("{s:?} is neither an IP address nor a CIDR range (e.g. 10.0.0.0/8)"),
                )
            });
        nets.extend(p.take(net).map(|n| n.trunc()));
    }
    p.finish(Some(nets))
}

/// The TLS flags, over `[tls]`.
struct TlsFlags {
    mode: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// `tls.mode` and what that mode needs.
fn tls(t: TlsSection, flags: TlsFlags) -> Result<TlsMode, ConfigError> {
    let mode = flags
        .mode
        .or(t.mode)
        .unwrap_or_else(|| "self-signed".into());
    match mode.as_str() {
        "self-signed" => Ok(TlsMode::SelfSigned),
        "files" => {
            let mut p = Problems::default();
            let needed = |key| invalid(key, "is required when tls.mode = \"files\"".into());
            let cert_file = p.take(
                flags
                    .cert_file
                    .or(t.cert_file)
                    .ok_or_else(|| needed("tls.cert_file")),
            );
            let key_file = p.take(
                flags
                    .key_file
                    .or(t.key_file)
                    .ok_or_else(|| needed("tls.key_file")),
            );
            let files = (|| {
                Some(TlsMode::Files {
                    cert_file: cert_file?,
                    key_file: key_file?,
                })
            })();
            p.finish(files)
        }
        "acme" => Ok(TlsMode::Acme(Box::new(super::acme::settings(
            t.acme.unwrap_or_default(),
        )?))),
        other => Err(invalid(
            "tls.mode",
            format!("{other:?} is not one of \"self-signed\", \"files\", \"acme\""),
        )),
    }
}

/// `admin.listen`: an address, or "off".
fn admin_listen(s: String) -> Result<Option<SocketAddr>, ConfigError> {
    match s.as_str() {
        "off" => Ok(None),
        a => a.parse().map(Some).map_err(|_| {
            invalid(
                "admin.listen",
                format!("{a:?} is not an address:port (or \"off\")"),
            )
        }),
    }
}

impl Limits {
    /// `[limits]`, every key checked: each one set replaces its default.
    fn resolve(l: LimitsSection) -> Result<Limits, ConfigError> {
        let mut p = Problems::default();
        let mut out = Limits::default();
        // `$field` from `limits.$key` with `$check(key, value, default)`.
        macro_rules! key {
            ($field:ident, $key:ident, $check:expr) => {
                let key = concat!("limits.", stringify!($key));
                if let Some(v) = p.take($check(key, l.$key, out.$field)) {
                    out.$field = v;
                }
            };
        }
        key!(upstream_timeout, upstream_timeout_secs, secs);
        key!(connect_timeout, connect_timeout_secs, secs);
        key!(header_read_timeout, header_read_timeout_secs, secs);
        key!(max_header_bytes, max_header_bytes, header_bytes);
        key!(max_connections, max_connections, at_least_one);
        key!(max_concurrent_streams, max_concurrent_streams, at_least_one);
        key!(max_streams_per_agent, max_streams_per_agent, at_least_one);
        key!(client_write_timeout, client_write_timeout_secs, secs);
        key!(shutdown_grace, shutdown_grace_secs, secs);
        p.finish(Some(out))
    }
}

/// `limits.max_header_bytes`: 8 KiB to 16 MiB.
fn header_bytes(key: &'static str, n: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match n {
        Some(n) if !(8192..=16 * 1024 * 1024).contains(&n) => {
            Err(invalid(key, format!("{n} is outside 8192..=16777216")))
        }
        n => Ok(n.unwrap_or(default)),
    }
}

/// A count that must be at least 1, or its default.
fn at_least_one<T: Copy + PartialEq + From<u8>>(
    key: &'static str,
    n: Option<T>,
    default: T,
) -> Result<T, ConfigError> {
    match n {
        Some(n) if n == T::from(0) => Err(invalid(key, "must be at least 1".into())),
        n => Ok(n.unwrap_or(default)),
    }
}

impl LogFormat {
    /// `log.format`: "text" (the default) or "json".
    fn parse(s: Option<String>) -> Result<LogFormat, ConfigError> {
        match s.as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(invalid(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            )),
        }
    }
}
