//! The `berth` binary: parse the command line, set up logging, load the
//! configuration, and run one role.

use berth::agent::{self, AgentConfig};
use berth::auth::Secret;
use berth::config::{FileConfig, LogFormat, Overrides, RoleDefaults, ServerConfig};
use berth::roles::Server;
use berth::tunnel::agent::Upstream;
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: in the e2e bench (benches/RESULTS.md,
/// "Profile") it cut the edge's CPU per proxied request by ~8% (malloc and
/// free were ~10% of the edge's samples) and an idle tunnel's resident memory
/// from 35.6 to 30.9 KiB; mimalloc was faster still but held 50 KiB per idle
/// tunnel and 60-80 MiB at start.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// berth: workspace ports at their own HTTPS subdomains, through outbound agent tunnels.
#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version = berth::LONG_VERSION,
    about,
    long_about = None,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
struct ServerArgs {
    /// TOML configuration file (see config/); environment BERTH_{SECTION}_{KEY} and flags override it
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for the public HTTPS listener [dev default: 127.0.0.1:8443]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the database, CA and tokens [dev default: .berth]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address for /metrics, /healthz and /readyz, off the public port ("off" to disable)
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<String>,
    /// Log lines as "text" or "json"
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

#[derive(Args, Debug)]
struct DevArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args, Debug)]
struct ControlArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Host name of the dashboard and API, e.g. berth.example.com
    #[arg(long, value_name = "HOST")]
    base_domain: Option<String>,
    /// App hosts served by the built-in edge, e.g. "*.apps.example.com" [default: *.<base-domain>]
    #[arg(long, value_name = "PATTERN")]
    wildcard: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (postgresql:// too); prefer BERTH_SERVER_DATABASE_URL for a password [default: SQLite in the data dir]
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// "self-signed" (a local CA in the data dir), "files" (--cert-file, --key-file) or "acme" ([tls.acme] in --config)
    #[arg(long, value_name = "MODE")]
    tls_mode: Option<String>,
    /// PEM certificate chain (tls mode "files")
    #[arg(long, value_name = "FILE")]
    cert_file: Option<PathBuf>,
    /// PEM private key (tls mode "files")
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// List each certificate (names, issuer, expiry, next renewal); works while the server runs
    Status(CertsStatusArgs),
}

#[derive(Args, Debug)]
struct CertsStatusArgs {
    /// The server's TOML configuration file
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The server's data directory [default: from --config, else /var/lib/berth with --config, else .berth]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EdgeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The control plane, e.g. https://berth.example.com
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    url: String,
    /// The region token from `berth regions create` (berth_region_...); prefer BERTH_REGION_TOKEN
    #[arg(
        long,
        env = "BERTH_REGION_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    region_token: String,
    /// Trust this CA certificate (PEM) for the control plane, instead of SSL_CERT_FILE or the system store
    #[arg(long, env = "BERTH_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// This edge's own host name (health checks, agents connect here), e.g. eu.apps.example.com
    #[arg(long, value_name = "HOST")]
    base_domain: Option<String>,
    /// App hosts this edge serves: the region's wildcard, e.g. "*.eu.apps.example.com"
    #[arg(long, value_name = "PATTERN")]
    wildcard: Option<String>,
    /// "self-signed" (a local CA in the data dir) or "files" (--cert-file, --key-file)
    #[arg(long, value_name = "MODE")]
    tls_mode: Option<String>,
    /// PEM certificate chain (tls mode "files")
    #[arg(long, value_name = "FILE")]
    cert_file: Option<PathBuf>,
    /// PEM private key (tls mode "files")
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// The control plane or edge to dial, e.g. https://berth.example.com
    #[arg(long, env = "BERTH_URL", value_name = "URL")]
    url: String,
    /// The agent token (berth_agent_...); prefer --token-file or BERTH_TOKEN over the command line
    #[arg(
        long,
        env = "BERTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true,
        required_unless_present = "token_file"
    )]
    token: Option<String>,
    /// Read the agent token from this file
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for the edge, instead of SSL_CERT_FILE or the system store
    #[arg(long, env = "BERTH_CA_FILE", value_name = "PEM")]
    ca_file: Option<PathBuf>,
    /// Dial this address (IP:PORT) instead of resolving the URL's host; TLS still verifies the URL's host
    #[arg(long, value_name = "ADDR")]
    connect_to: Option<std::net::SocketAddr>,
    /// Addresses the agent may dial for workspace ports, in order [default: 127.0.0.1 and ::1]
    #[arg(long = "upstream-host", value_name = "IP")]
    upstream_hosts: Vec<IpAddr>,
    /// Only these ports may be reached, e.g. "3000,8000-8100" [default: all]
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    allow_ports: Option<BTreeSet<u16>>,
    /// Dial only this region's edges ("control" for the control plane's own);
    /// without it, the fastest healthy region, moving on when it fails
    #[arg(long, value_name = "NAME")]
    region: Option<String>,
    /// Keep a second tunnel to the next nearest region, so the apps stay
    /// reachable the moment the first region's edge fails (not with --region)
    #[arg(long, conflicts_with = "region")]
    standby: bool,
    /// Log lines as "text" or "json"
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    log_format: String,
}

/// Parses "3000,8000-8100" into a set of ports.
fn parse_ports(s: &str) -> Result<BTreeSet<u16>, String> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let port = |p: &str| -> Result<u16, String> {
            match p.trim().parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{p:?} is not a port (1-65535)")),
            }
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("{part:?}: the range is backwards"));
                }
                set.extend(a..=b);
            }
            None => {
                set.insert(port(part)?);
            }
        }
    }
    if set.is_empty() {
        return Err("no ports given".into());
    }
    Ok(set)
}

/// Exit code for configuration errors (EX_CONFIG-like, as linkerd uses 64).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A server holds a descriptor per connection: use what the kernel
    // allows (the soft limit up to the hard one). The default of
    // limits.max_connections is sized below the limit this leaves.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("berth: cannot raise the open-files limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(a) => {
                run_server(a.server, Overrides::default(), RoleDefaults::DEV, true).await
            }
            Command::Control(a) => {
                let flags = Overrides {
                    base_domain: a.base_domain,
                    wildcard: a.wildcard,
                    database_url: a.database_url,
                    tls_mode: a.tls_mode,
                    cert_file: a.cert_file,
                    key_file: a.key_file,
                    ..Default::default()
                };
                run_server(a.server, flags, RoleDefaults::CONTROL, false).await
            }
            Command::Edge(a) => run_edge(a).await,
            Command::Agent(a) => run_agent(a).await,
            Command::Certs(CertsCommand::Status(a)) => certs_status(a).await,
            Command::Client(c) => berth::client::run(c).await,
            Command::Completions { shell } => completions(shell),
            Command::Man { dir } => man_pages(&dir),
        }
    })
}

async fn run_server(
    args: ServerArgs,
    mut flags: Overrides,
    role: RoleDefaults,
    dev: bool,
) -> ExitCode {
    flags.listen = args.listen;
    flags.data_dir = args.data_dir;
    flags.admin_listen = args.admin_listen;
    flags.log_format = args.log_format;
    let cfg = FileConfig::load(args.config.as_deref(), std::env::vars())
        .and_then(|file| ServerConfig::resolve(file, flags, role));
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log = berth::telemetry::init_tracing(cfg.log_format);
    let server = match Server::build(cfg, dev).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_banner(&server, dev);
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_edge(a: EdgeArgs) -> ExitCode {
    let flags = Overrides {
        listen: a.server.listen,
        data_dir: a.server.data_dir,
        admin_listen: a.server.admin_listen,
        log_format: a.server.log_format,
        base_domain: a.base_domain,
        wildcard: a.wildcard,
        tls_mode: a.tls_mode,
        cert_file: a.cert_file,
        key_file: a.key_file,
        ..Default::default()
    };
    let cfg = FileConfig::load(a.server.config.as_deref(), std::env::vars())
        .and_then(|file| ServerConfig::resolve(file, flags, RoleDefaults::EDGE));
    let cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log = berth::telemetry::init_tracing(cfg.log_format);
    let link = berth::edge::regional::ControlLink {
        url: a.url,
        token: Secret::new(a.region_token),
        ca_file: a.ca_file,
    };
    let edge = match berth::edge::regional::RegionalEdge::build(
        cfg,
        link,
        std::time::Duration::from_secs(60),
    )
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "berth {} edge for region {} is running",
        env!("CARGO_PKG_VERSION"),
        edge.region
    );
    println!("  listening on       {}", edge.local_addr);
    edge.run(shutdown_signal()).await;
    ExitCode::SUCCESS
}

/// The start-up banner, written in one piece (a reader waiting for its last
/// line sees all of it, and log lines cannot land in the middle).
fn print_banner(server: &Server, dev: bool) {
    use std::fmt::Write as _;
    let mut out = String::new();
    let cfg = server.config();
    let base = cfg.base_url();
    let port = cfg.url_port().map(|p| format!(":{p}")).unwrap_or_default();
    let token_path = server.admin_token_path.display();
    let _ = writeln!(out, "berth {} is running", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "  dashboard and API  {base}");
    let _ = writeln!(
        out,
        "  apps               https://{}{port}",
        cfg.wildcard.as_str()
    );
    if let Some(ca) = &server.ca_path {
        let _ = writeln!(
            out,
            "  local CA           {}   (trust it in your browser, or pass --cacert to curl)",
            ca.display()
        );
    }
    let _ = writeln!(out, "  admin API token    {token_path}");
    if let Some(admin) = server.admin_addr {
        let _ = writeln!(out, "  metrics            http://{admin}/metrics");
    }
    if let Some(pw) = &server.admin_password {
        let _ = writeln!(out, "  admin password     {pw}   (shown once: note it now)");
    }
    if dev {
        let app = cfg.wildcard.host_for("3000--main--dev--admin");
        let cacert = server
            .ca_path
            .as_ref()
            .map(|p| format!("--cacert {} ", p.display()))
            .unwrap_or_default();
        let _ = writeln!(out);
        let _ = writeln!(out, "Start any web server on 127.0.0.1:3000, then:");
        let _ = writeln!(
            out,
            "  curl {cacert}-H \"Authorization: Bearer $(cat {token_path})\" https://{app}{port}/"
        );
    }
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

async fn certs_status(a: CertsStatusArgs) -> ExitCode {
    match berth::tls::status::collect(a.config.as_deref(), a.data_dir.as_deref()).await {
        Ok(certs) if a.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&certs).unwrap_or_else(|e| e.to_string())
            );
            ExitCode::SUCCESS
        }
        Ok(certs) => {
            print!("{}", berth::tls::status::render(&certs));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: certs status: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_agent(a: AgentArgs) -> ExitCode {
    let format = match a.log_format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            eprintln!("berth: --log-format {other:?} is not \"text\" or \"json\"");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _log = berth::telemetry::init_tracing(format);
    let token = match (a.token, a.token_file) {
        (Some(t), _) => t,
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                eprintln!("berth: cannot read --token-file {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
        (None, None) => unreachable!("clap requires --token or --token-file"),
    };
    if !berth::auth::token::is_well_formed(&token, berth::auth::TokenKind::Agent) {
        eprintln!("berth: the agent token must look like berth_agent_... (create one with POST /api/v1/workspaces/USER/WORKSPACE/agents)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let mut upstream = Upstream::default();
    if !a.upstream_hosts.is_empty() {
        upstream.hosts = a.upstream_hosts;
    }
    upstream.allow_ports = a.allow_ports;
    let cfg = AgentConfig {
        url: a.url,
        token: Secret::new(token),
        ca_file: a.ca_file,
        connect_to: a.connect_to,
        upstream,
        region: a.region,
        standby: a.standby,
    };
    match agent::run(cfg, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `berth completions SHELL`: the completion script on stdout.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "berth", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// `berth man DIR`: a roff page per command, berth.1 and berth-COMMAND.1.
fn man_pages(dir: &std::path::Path) -> ExitCode {
    let cmd = <Cli as clap::CommandFactory>::command();
    match std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "berth: man: cannot write the pages to {}: {e}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
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
