//! The `berth` binary: parse the command line, set up logging, load the
//! configuration, and run one role. The commands and flags are in
//! [`cli`].

mod cli;

use berth::agent::{self, AgentConfig};
use berth::auth::Secret;
use berth::config::{FileConfig, LogFormat, Overrides, RoleDefaults, ServerConfig};
use berth::roles::Server;
use berth::tunnel::agent::Upstream;
use clap::Parser;
use cli::{
    AdminCommand, AgentArgs, CertsCommand, CertsStatusArgs, Cli, Command, EdgeArgs,
    ResetPasswordArgs, ServerArgs,
};
use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: in the e2e bench (benches/RESULTS.md,
/// "Profile") it cut the edge's CPU per proxied request by ~8% (malloc and
/// free were ~10% of the edge's samples) and an idle tunnel's resident memory
/// from 35.6 to 30.9 KiB; mimalloc was faster still but held 50 KiB per idle
/// tunnel and 60-80 MiB at start.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
                let mut flags = Overrides {
                    base_domain: a.base_domain,
                    wildcard: a.wildcard,
                    database_url: a.database_url,
                    ..Default::default()
                };
                a.tls.apply(&mut flags);
                run_server(a.server, flags, RoleDefaults::CONTROL, false).await
            }
            Command::Edge(a) => run_edge(a).await,
            Command::Agent(a) => run_agent(a).await,
            Command::Certs(CertsCommand::Status(a)) => certs_status(a).await,
            Command::Admin(AdminCommand::ResetPassword(a)) => reset_password(a).await,
            Command::Client(c) => berth::client::run(c).await,
            Command::Completions { shell } => completions(shell),
            Command::Man { dir } => man_pages(&dir),
        }
    })
}

/// The configuration from the file, the environment and the flags; on a
/// problem, says every one and gives the exit code.
fn server_config(
    args: ServerArgs,
    mut flags: Overrides,
    role: RoleDefaults,
) -> Result<ServerConfig, ExitCode> {
    let file = args.apply(&mut flags);
    FileConfig::load(file.as_deref(), std::env::vars())
        .and_then(|file| ServerConfig::resolve(file, flags, role))
        .map_err(|e| {
            for problem in e.problems() {
                eprintln!("berth: configuration error: {problem}");
            }
            ExitCode::from(EXIT_CONFIG)
        })
}

async fn run_server(args: ServerArgs, flags: Overrides, role: RoleDefaults, dev: bool) -> ExitCode {
    let cfg = match server_config(args, flags, role) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _log = berth::telemetry::init_tracing(cfg.log_format);
    // Printed the moment the admin exists: a start that fails after this
    // (a busy port, a bad certificate) must not lose the password.
    let announce = |pw: &str| {
        println!("berth: created user admin with password {pw}   (shown once: note it now)");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    };
    let server = match Server::build_announcing(cfg, dev, &announce).await {
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
    let mut flags = Overrides {
        base_domain: a.base_domain,
        wildcard: a.wildcard,
        ..Default::default()
    };
    a.tls.apply(&mut flags);
    let cfg = match server_config(a.server, flags, RoleDefaults::EDGE) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _log = berth::telemetry::init_tracing(cfg.log_format);
    let link = berth::roles::regional::ControlLink {
        url: a.url,
        token: Secret::new(a.region_token),
        ca_file: a.ca_file,
    };
    let edge = match berth::roles::regional::RegionalEdge::build(
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
            "  local CA           {}   (`berth trust` installs it for browsers; curl: --cacert)",
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

/// `berth admin reset-password`: a new password for a user, set on the
/// deployment's database directly, printed once.
async fn reset_password(a: ResetPasswordArgs) -> ExitCode {
    let role = if a.config.is_some() {
        RoleDefaults::CONTROL
    } else {
        RoleDefaults::DEV
    };
    let args = ServerArgs {
        config: a.config,
        listen: None,
        data_dir: a.data_dir,
        admin_listen: None,
        log_format: None,
    };
    let flags = Overrides {
        database_url: a.database_url,
        ..Default::default()
    };
    let cfg = match server_config(args, flags, role) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match berth::roles::reset_password(&cfg, &a.user).await {
        Ok(pw) if a.json => {
            println!("{}", serde_json::json!({"user": a.user, "password": pw}));
            ExitCode::SUCCESS
        }
        Ok(pw) => {
            println!(
                "New password for {}: {pw}   (shown once: note it now)",
                a.user
            );
            println!("Sign in with it, then choose your own: berth users passwd");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth: admin reset-password: {e}");
            ExitCode::FAILURE
        }
    }
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
    upstream.list_ports = a.ports;
    let cfg = AgentConfig {
        url: a.url,
        token: Secret::new(token),
        ca_file: a.ca_file,
        connect_to: a.connect_to,
        upstream,
        region: a.region,
        standby: a.standby,
        tunnels: a.tunnels,
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
