//! The command line: every `berth` command and flag (clap), and how the
//! flags become configuration [`Overrides`]. `main.rs` runs what it parsed.

use berth::config::Overrides;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

/// berth: workspace ports at their own HTTPS subdomains, through outbound agent tunnels.
#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version = berth::LONG_VERSION,
    about,
    long_about = None,
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Run everything on this machine: control plane, edge and an agent for
    /// this machine's loopback ports, with SQLite and a local CA. No set-up needed.
    Dev(DevArgs),
    /// Run the control plane (API, users, workspaces) with its built-in edge,
    /// for a real deployment on your own domain.
    Control(ControlArgs),
    /// Run a regional edge: serve apps under a region's wildcard and accept
    /// agents there, following the control plane (no database needed).
    Edge(EdgeArgs),
    /// Run inside a workspace: dial out to berth and serve this workspace's ports.
    Agent(AgentArgs),
    /// Inspect the TLS certificates a server holds.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Recover a deployment on its own machine (works on the data directory
    /// or database, not through the API).
    #[command(subcommand)]
    Admin(AdminCommand),
    #[command(flatten)]
    Client(berth::client::Command),
    /// Print a completion script for SHELL (the Debian package installs them).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (berth.1, berth-dev.1, ...) into DIR.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ServerArgs {
    /// TOML configuration file (see config/); environment BERTH_{SECTION}_{KEY} and flags override it
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address for the public HTTPS listener [dev default: 127.0.0.1:8443]
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Directory for the database, CA and tokens [dev default: .berth]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address for /metrics, /healthz and /readyz, off the public port ("off" to disable)
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin_listen: Option<String>,
    /// Log lines as "text" or "json"
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}

/// How a server gets its certificate (`berth control`, `berth edge`).
#[derive(Args, Debug, Clone)]
pub(crate) struct TlsArgs {
    /// "self-signed" (a local CA in the data dir; a regional edge gets its certificate
    /// from the control plane's), "files" (--cert-file, --key-file) or "acme" ([tls.acme]
    /// in --config; the control plane only)
    #[arg(long, value_name = "MODE")]
    pub(crate) tls_mode: Option<String>,
    /// PEM certificate chain (tls mode "files")
    #[arg(long, value_name = "FILE")]
    pub(crate) cert_file: Option<PathBuf>,
    /// PEM private key (tls mode "files")
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
}

#[derive(Args, Debug)]
pub(crate) struct ControlArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// Host name of the dashboard and API, e.g. berth.example.com
    #[arg(long, value_name = "HOST")]
    pub(crate) base_domain: Option<String>,
    /// App hosts served by the built-in edge, e.g. "*.apps.example.com" [default: *.<base-domain>]
    #[arg(long, value_name = "PATTERN")]
    pub(crate) wildcard: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (postgresql:// too); prefer BERTH_SERVER_DATABASE_URL for a password [default: SQLite in the data dir]
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// List each certificate (names, issuer, expiry, next renewal); works while the server runs
    Status(CertsStatusArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CertsStatusArgs {
    /// The server's TOML configuration file
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The server's data directory [default: from --config, else /var/lib/berth with --config, else .berth]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCommand {
    /// Give a user (admin by default) a new random password and print it;
    /// for a lost admin password
    #[command(after_help = "Examples:\n  \
        berth admin reset-password --data-dir .berth\n  \
        berth admin reset-password alice --config /etc/berth/control.toml")]
    ResetPassword(ResetPasswordArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ResetPasswordArgs {
    /// The user whose password to replace
    #[arg(value_name = "USER", default_value = "admin")]
    pub(crate) user: String,
    /// The server's TOML configuration file
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The server's data directory [default: from --config, else .berth]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The server's database URL, when it is not SQLite in the data directory
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// Print {"user": ..., "password": ...} as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct EdgeArgs {
    #[command(flatten)]
    pub(crate) server: ServerArgs,
    /// The control plane, e.g. https://berth.example.com
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub(crate) url: String,
    /// The region token from `berth regions create` (berth_region_...); prefer BERTH_REGION_TOKEN
    #[arg(
        long,
        env = "BERTH_REGION_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) region_token: String,
    /// Trust this CA certificate (PEM) for the control plane, instead of SSL_CERT_FILE or the system store
    #[arg(long, env = "BERTH_CA_FILE", value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// This edge's own host name (health checks, agents connect here), e.g. eu.apps.example.com
    #[arg(long, value_name = "HOST")]
    pub(crate) base_domain: Option<String>,
    /// App hosts this edge serves: the region's wildcard, e.g. "*.eu.apps.example.com"
    #[arg(long, value_name = "PATTERN")]
    pub(crate) wildcard: Option<String>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// The control plane or edge to dial, e.g. https://berth.example.com
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    pub(crate) url: String,
    /// The agent token (berth_agent_...); prefer --token-file or BERTH_TOKEN over the command line
    #[arg(
        long,
        env = "BERTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    pub(crate) token: Option<String>,
    /// Read the agent token from this file
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    pub(crate) token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the edge, instead of SSL_CERT_FILE or the system store
    #[arg(long, env = "BERTH_CA_FILE", value_name = "PEM")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Dial this address (IP:PORT) instead of resolving the URL's host; TLS still verifies the URL's host
    #[arg(long, value_name = "ADDR")]
    pub(crate) connect_to: Option<std::net::SocketAddr>,
    /// Addresses the agent may dial for workspace ports, in order [default: 127.0.0.1 and ::1]
    #[arg(long = "upstream-host", value_name = "IP")]
    pub(crate) upstream_hosts: Vec<IpAddr>,
    /// Only these ports may be reached, e.g. "3000,8000-8100" [default: all]
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub(crate) allow_ports: Option<BTreeSet<u16>>,
    /// List only these ports (the dashboard, `berth ports`), e.g. "3000-3999,5432"
    /// [default: every listening port]; --allow-ports decides what may be reached
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub(crate) ports: Option<BTreeSet<u16>>,
    /// Dial only this region's edges ("control" for the control plane's own);
    /// without it, the fastest healthy region, moving on when it fails
    #[arg(long, value_name = "NAME")]
    pub(crate) region: Option<String>,
    /// Keep a second tunnel to the next nearest region, so the apps stay
    /// reachable the moment the first region's edge fails (not with --region)
    #[arg(long, conflicts_with = "region")]
    pub(crate) standby: bool,
    /// Tunnel connections to the edge, 1 to 16: the edge spreads requests
    /// over them, and losing one costs only the requests on it
    #[arg(
        long,
        env = "BERTH_TUNNELS",
        value_name = "N",
        default_value_t = berth::agent::DEFAULT_TUNNELS,
        value_parser = clap::value_parser!(u16).range(1..=berth::tunnel::MAX_TUNNELS as i64)
    )]
    pub(crate) tunnels: u16,
    /// Log lines as "text" or "json"
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub(crate) log_format: String,
}

impl ServerArgs {
    /// These flags over `flags`; also returns the config file to read.
    pub(crate) fn apply(self, flags: &mut Overrides) -> Option<PathBuf> {
        flags.listen = self.listen;
        flags.data_dir = self.data_dir;
        flags.admin_listen = self.admin_listen;
        flags.log_format = self.log_format;
        self.config
    }
}

impl TlsArgs {
    /// These flags over `flags`.
    pub(crate) fn apply(self, flags: &mut Overrides) {
        flags.tls_mode = self.tls_mode;
        flags.cert_file = self.cert_file;
        flags.key_file = self.key_file;
    }
}

/// Parses "3000,8000-8100" into a set of ports.
pub(crate) fn parse_ports(s: &str) -> Result<BTreeSet<u16>, String> {
    berth::config::parse_ports(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports() {
        assert_eq!(super::parse_ports("3000, 8000-8002").unwrap().len(), 4);
        assert!(super::parse_ports("0").is_err());
        assert!(super::parse_ports("9-3").is_err());
        assert!(super::parse_ports("x").is_err());
        assert!(super::parse_ports("").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
