//! The configuration file's shape: every section and key, all optional.
//! Unknown keys are refused by name (`deny_unknown_fields`).

use serde::Deserialize;
use std::path::PathBuf;

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
    pub jwt: JwtSection,
    pub inspector: InspectorSection,
    pub github: GithubSection,
    pub activity: ActivitySection,
    pub wake: WakeSection,
}

/// `[activity]`: the idle webhook (off unless `webhook_url` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivitySection {
    /// Called once when a workspace has been idle `idle_after`.
    pub webhook_url: Option<String>,
    /// Signs each call (`Berth-Signature`); required with `webhook_url`.
    pub webhook_secret: Option<String>,
    /// Seconds without a request or open WebSocket that count as idle (default 1800).
    pub idle_after: Option<i64>,
}

/// `[wake]`: wake on visit (off unless `webhook_url` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WakeSection {
    /// Called when an allowed visitor reaches an offline workspace.
    pub webhook_url: Option<String>,
    /// Signs each call (`Berth-Signature`); required with `webhook_url`.
    pub webhook_secret: Option<String>,
    /// The least seconds between two calls for one workspace (default 60).
    pub cooldown_secs: Option<i64>,
}

/// `[inspector]`: the request inspector's recording and its bounds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectorSection {
    /// Record exchanges for the inspector (default true).
    pub enabled: Option<bool>,
    /// Bytes kept of each body; 0 keeps none (default 4096).
    pub body_bytes: Option<i64>,
    /// Exchanges kept per agent port (default 100).
    pub max_entries_per_port: Option<i64>,
    /// Bytes kept per agent port (default 1 MiB).
    pub max_bytes_per_port: Option<i64>,
    /// Bytes kept per edge (default 64 MiB).
    pub max_bytes_per_edge: Option<i64>,
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
    /// The ID token claim listing the user's groups (e.g. "groups"); at
    /// each sign-in it sets their provider-given berth group memberships.
    pub groups_claim: Option<String>,
}

/// `[jwt]`: the signed identity apps receive (`Berth-Jwt-Assertion`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSection {
    /// Send `Berth-Jwt-Assertion` to apps (default true).
    pub enabled: Option<bool>,
    /// How long an assertion is valid, in seconds (default 300).
    pub ttl_secs: Option<i64>,
    /// A new signing key this often, in seconds (default 7 days).
    pub rotation_secs: Option<i64>,
    /// How long a replaced key stays published, in seconds (default 1 day).
    pub grace_secs: Option<i64>,
}

/// `[github]`: sign-in with GitHub or GitHub Enterprise (off unless
/// `client_id` is set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubSection {
    /// The OAuth app's client id.
    pub client_id: Option<String>,
    /// The OAuth app's client secret (prefer `client_secret_file` or
    /// `BERTH_GITHUB_CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// A file holding the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// GitHub's web address (default https://github.com; GitHub Enterprise
    /// Server: https://github.example.com).
    pub url: Option<String>,
    /// GitHub's REST API (default https://api.github.com, or `{url}/api/v3`
    /// when `url` is set).
    pub api_url: Option<String>,
    /// Organizations whose members may sign in.
    pub allowed_organizations: Option<Vec<String>>,
    /// Teams (`org/team-slug`) whose members may sign in.
    pub allowed_teams: Option<Vec<String>>,
    /// Organization given to users created at their first sign-in.
    pub organization: Option<String>,
    /// Create a user at first sign-in when no user has the address (default true).
    pub create_users: Option<bool>,
    /// PEM file of CAs to trust for GitHub (default: SSL_CERT_FILE or the system store).
    pub ca_file: Option<PathBuf>,
    /// The sign-in button's text (default "Sign in with GitHub").
    pub label: Option<String>,
    /// Make the person's teams (`org/team-slug`) their berth groups at each
    /// sign-in (default false).
    pub teams_as_groups: Option<bool>,
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
    /// The longest a `public` or `authenticated` share may last, in seconds
    /// (default: no limit).
    pub max_share_ttl_secs: Option<i64>,
    /// Requests a minute one address may send to public shares and share
    /// links (default: off).
    pub public_rate_limit: Option<u32>,
    /// How many of those may come at once (default: `public_rate_limit`).
    pub public_rate_burst: Option<u32>,
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
    /// `berth dev`'s agent lists only these ports, e.g. `"3000-3999,5432"`
    /// (default: every listening port but berth's own).
    pub dev_agent_ports: Option<PortList>,
    /// How the public listener uses the cores: `"work-stealing"` (the
    /// default: one multi-threaded runtime) or `"per-core"` (one
    /// single-threaded runtime and `SO_REUSEPORT` listener per core).
    pub runtime: Option<String>,
}

/// A port list as written: `"3000-3999,5432"`, or one bare port (`8080`,
/// which is what `BERTH_SERVER_DEV_AGENT_PORTS=8080` reads as).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PortList {
    Text(String),
    One(i64),
}

impl PortList {
    /// As text, for [`super::parse_ports`].
    pub fn text(&self) -> String {
        match self {
            PortList::Text(t) => t.clone(),
            PortList::One(n) => n.to_string(),
        }
    }
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
