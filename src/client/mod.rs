//! The client CLI (SPEC §1): `berth login`, `ports`, `share`, `unshare`,
//! `open` and `link`, speaking the HTTP API (SPEC §4) with the token that
//! `berth login` saved (see [`credentials`]).
//!
//! Exit codes: 0 on success, 1 when the server refused or could not be
//! reached (`berth: <message>`), 64 for usage and configuration errors
//! such as not being signed in.

mod commands;
mod credentials;
mod format;
mod http;

pub use http::Session;

use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 64;

/// What went wrong in a client command.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or configuration (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error (exit 1).
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or answered nonsense (exit 1).
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => EXIT_USAGE,
            ClientError::Api { .. } | ClientError::Transport(_) => 1,
        }
    }
}

/// The client subcommands, flattened into `berth`'s own.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign in to a berth control plane and save the API token
    /// (in $BERTH_CONFIG_DIR, else $XDG_CONFIG_HOME/berth, else ~/.config/berth).
    Login(LoginArgs),
    /// List a workspace agent's listening, shared and named ports with their URLs.
    Ports(PortsArgs),
    /// Share a port: set who may open its URL.
    Share(ShareArgs),
    /// Make a port private again (owner and site admins only).
    Unshare(UnshareArgs),
    /// Print a port's URL, and with --browser open it.
    Open(OpenArgs),
    /// Create, list and revoke share links (expiring links to one port).
    Link(LinkArgs),
    /// List regions with their health; admins create and delete them.
    Regions(RegionsArgs),
    /// Show a port's recent requests, then new ones as they arrive.
    Inspect(InspectArgs),
    /// List berth groups and their members; admins create, rename and delete
    /// them and add and remove members (shares may name groups).
    Groups(GroupsArgs),
    /// Choose the current workspace (and agent) that ports, share, link
    /// and open use when no --workspace is given; without an argument, show it.
    Use(UseArgs),
    /// List your workspaces; create (with a ready `berth agent` command) and delete them.
    #[command(alias = "workspace")]
    Workspaces(WorkspacesArgs),
    /// List a workspace's agents; create one and print its `berth agent` command.
    #[command(alias = "agent-tokens")]
    Agents(AgentsArgs),
    /// Change your password; admins list, create and delete users.
    #[command(alias = "user")]
    Users(UsersArgs),
    /// Install the local CA (berth dev's .berth/ca.pem) into this machine's
    /// browsers (NSS databases, via certutil) and system store, like mkcert -install
    Trust(TrustArgs),
}

/// `berth inspect`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth inspect 3000\n  \
    berth inspect 3000 --json | jq .status\n  \
    berth inspect 3000 -n 50 --no-follow")]
pub struct InspectArgs {
    /// The port whose requests to show
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How many recent requests to show first
    #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=10000))]
    pub lines: u16,
    /// Print the recent requests and stop, instead of following new ones
    #[arg(long)]
    pub no_follow: bool,
    /// One JSON object a line (each request as the API returns it)
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `berth groups`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth groups\n  \
    berth groups create eng --member bob --member carol\n  \
    berth groups add eng dave\n  \
    berth groups remove eng carol\n  \
    berth groups rename eng platform\n  \
    berth groups rm platform")]
pub struct GroupsArgs {
    #[command(subcommand)]
    pub command: Option<GroupsCommand>,
    /// Print the API's JSON answer instead of a table
    #[arg(long, global = true)]
    pub json: bool,
}

/// The `berth groups` subcommands (none: list).
#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Create a group, with members if given
    Create {
        /// The group's name, e.g. eng
        #[arg(value_name = "NAME")]
        name: String,
        /// A member, by user name (repeat for more)
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
    /// Show one group and its members
    Show {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Rename a group: shares that name it keep it
    Rename {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "NEW_NAME")]
        new_name: String,
    },
    /// Add users to a group
    Add {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// Take users out of a group: they lose what only the group gave them
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_name = "USER", required = true)]
        users: Vec<String>,
    },
    /// Delete a group: it drops out of every share that named it
    #[command(alias = "delete")]
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `berth trust`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth trust --data-dir .berth\n  \
    berth trust --ca-file ca.pem --no-system\n  \
    berth trust --uninstall --data-dir .berth")]
pub struct TrustArgs {
    /// The CA certificate (PEM) [default: DIR/ca.pem with --data-dir, else the one
    /// `berth login` saved, else .berth/ca.pem]
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// berth dev's data directory, whose ca.pem to trust
    #[arg(long, value_name = "DIR", conflicts_with = "ca_file")]
    pub data_dir: Option<PathBuf>,
    /// Remove it again
    #[arg(long)]
    pub uninstall: bool,
    /// Leave the system store alone (only the browsers' NSS databases)
    #[arg(long)]
    pub no_system: bool,
}

/// `berth use`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth use api\n  \
    berth use api/laptop\n  \
    berth use --clear")]
pub struct UseArgs {
    /// WORKSPACE or WORKSPACE/AGENT (one of yours)
    #[arg(value_name = "WORKSPACE[/AGENT]", conflicts_with = "clear")]
    pub target: Option<String>,
    /// Forget the current workspace and agent
    #[arg(long)]
    pub clear: bool,
    /// Print the current choice as JSON
    #[arg(long)]
    pub json: bool,
}

/// `berth workspaces`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth workspaces\n  \
    berth workspaces create api\n  \
    berth workspaces rm api")]
pub struct WorkspacesArgs {
    #[command(subcommand)]
    pub command: Option<WorkspacesCommand>,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The `berth workspaces` subcommands (none: list).
#[derive(Subcommand, Debug)]
pub enum WorkspacesCommand {
    /// Create a workspace with one agent, and print the `berth agent` command to run on its machine
    Create(WorkspaceCreateArgs),
    /// Delete a workspace with its agents, shares and links
    #[command(alias = "delete")]
    Rm(WorkspaceRmArgs),
}

/// `berth workspaces create`.
#[derive(Args, Debug)]
pub struct WorkspaceCreateArgs {
    /// The workspace's name (lower-case letters, digits and -)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The name of its first agent
    #[arg(long, value_name = "AGENT", default_value = "main")]
    pub agent: String,
    /// Owner [default: you; site admins may name anyone]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Print the API's answers as JSON, with the agent command
    #[arg(long)]
    pub json: bool,
}

/// `berth workspaces rm`.
#[derive(Args, Debug)]
pub struct WorkspaceRmArgs {
    /// The workspace's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Owner [default: you]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `berth agents`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth agents\n  \
    berth agents create laptop --workspace api")]
pub struct AgentsArgs {
    #[command(subcommand)]
    pub command: Option<AgentsCommand>,
    #[command(flatten)]
    pub target: WorkspaceTarget,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The `berth agents` subcommands (none: list).
#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Create an agent and print the `berth agent` command to run on its machine
    Create(AgentCreateArgs),
}

/// `berth agents create`.
#[derive(Args, Debug)]
pub struct AgentCreateArgs {
    /// The agent's name (lower-case letters, digits and -)
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub target: WorkspaceTarget,
    /// Print the API's answer as JSON, with the agent command
    #[arg(long)]
    pub json: bool,
}

/// Which workspace an agents command is about.
#[derive(Args, Debug, Clone, Default)]
pub struct WorkspaceTarget {
    /// Workspace name [default: the current one (berth use), else your only workspace]
    #[arg(long, short = 'w', env = "BERTH_WORKSPACE", value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    /// Owner of the workspace [default: you; site admins may name anyone]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `berth users`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth users passwd\n  \
    berth users\n  \
    berth users create alice --email alice@example.com\n  \
    berth users rm alice")]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: Option<UsersCommand>,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The `berth users` subcommands (none: list, admins only).
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Change your own password (asks for the current one and the new one)
    Passwd(PasswdArgs),
    /// Create a user (admins); prints a generated password unless one is given
    Create(UserCreateArgs),
    /// Delete a user with their workspaces and tokens (admins)
    #[command(alias = "delete")]
    Rm(UserRmArgs),
}

/// `berth users passwd`.
#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// Read the current password, then the new one, from two lines of standard input
    #[arg(long)]
    pub password_stdin: bool,
    /// Print {"changed": true} as JSON
    #[arg(long)]
    pub json: bool,
}

/// `berth users create`.
#[derive(Args, Debug)]
pub struct UserCreateArgs {
    /// The user name (lower-case letters, digits and -)
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Their e-mail address
    #[arg(long, value_name = "EMAIL")]
    pub email: String,
    /// "member" or "admin"
    #[arg(long, value_name = "ROLE", default_value = "member")]
    pub role: String,
    /// Their organization (for shares at level organization)
    #[arg(long, value_name = "ORG")]
    pub organization: Option<String>,
    /// Read the password from standard input instead of generating one
    #[arg(long)]
    pub password_stdin: bool,
    /// Print the API's answer (and any generated password) as JSON
    #[arg(long)]
    pub json: bool,
}

/// `berth users rm`.
#[derive(Args, Debug)]
pub struct UserRmArgs {
    /// The user name
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `berth regions`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth regions\n  \
    berth regions create eu --url https://eu.apps.example.com --wildcard '*.eu.apps.example.com'\n  \
    berth regions rm eu")]
pub struct RegionsArgs {
    #[command(subcommand)]
    pub command: Option<RegionsCommand>,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The `berth regions` subcommands (none: list).
#[derive(Subcommand, Debug)]
pub enum RegionsCommand {
    /// Create a region and print its token, once (start `berth edge` with it)
    Create(RegionCreateArgs),
    /// Delete a region: its edges are refused from then on
    #[command(alias = "delete")]
    Rm(RegionRmArgs),
}

/// `berth regions create`.
#[derive(Args, Debug)]
pub struct RegionCreateArgs {
    /// The region's name, e.g. eu
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where its edges answer, e.g. https://eu.apps.example.com
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// The app hosts its edges serve, e.g. "*.eu.apps.example.com"
    #[arg(long, value_name = "PATTERN")]
    pub wildcard: String,
    /// Print the API's JSON answer
    #[arg(long)]
    pub json: bool,
}

/// `berth regions rm`.
#[derive(Args, Debug)]
pub struct RegionRmArgs {
    /// The region's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// `berth login`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    berth login https://berth.localhost:8443 --ca-file .berth/ca.pem\n  \
    berth login https://berth.example.com --username alice --password-stdin < password.txt\n  \
    berth login https://berth.localhost:8443 --token \"$(cat .berth/admin-token)\"")]
pub struct LoginArgs {
    /// The control plane's URL, e.g. https://berth.localhost:8443
    #[arg(value_name = "URL")]
    pub url: String,
    /// User name [default: asked on the terminal]
    #[arg(long, short = 'u', value_name = "USER", conflicts_with = "token")]
    pub username: Option<String>,
    /// Read the password from the first line of standard input instead of asking
    #[arg(long, conflicts_with = "token")]
    pub password_stdin: bool,
    /// Use this existing API token (berth_api_...) instead of a user name and password
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this CA certificate (PEM), e.g. berth dev's .berth/ca.pem, instead of
    /// SSL_CERT_FILE or the system store; remembered for later commands
    #[arg(long, env = "BERTH_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Print {"url": ..., "user": ...} as JSON
    #[arg(long)]
    pub json: bool,
}

/// Which agent a port command is about.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Workspace name [default: the current one (berth use), else your only workspace]
    #[arg(long, short = 'w', env = "BERTH_WORKSPACE", value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    /// Agent name [default: the current one (berth use), else the workspace's only agent]
    #[arg(long, short = 'a', env = "BERTH_AGENT", value_name = "AGENT")]
    pub agent: Option<String>,
    /// Owner of the workspace [default: you; site admins may name anyone]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

/// `berth ports`.
#[derive(Args, Debug)]
pub struct PortsArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Who may open a shared port (SPEC §3).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The workspace owner and site admins only
    Owner,
    /// Members of the owner's organization (refused while the owner has none)
    Organization,
    /// Anyone signed in to this berth
    Authenticated,
    /// Anyone, no sign-in
    Public,
}

impl Level {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Owner => "owner",
            Level::Organization => "organization",
            Level::Authenticated => "authenticated",
            Level::Public => "public",
        }
    }
}

/// How the edge speaks to the port.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Plain HTTP
    Http,
    /// HTTPS (the app's own certificate is not checked: it is on loopback)
    Https,
    /// HTTP/2 without TLS (prior knowledge), what gRPC servers speak
    H2c,
}

/// `berth share`.
#[derive(Args, Debug)]
pub struct ShareArgs {
    /// The port to share (1-65535)
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Who may open it
    #[arg(long, short = 'l', value_enum, value_name = "LEVEL")]
    pub level: Level,
    /// How the edge speaks to the port [default: http]
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub protocol: Option<Protocol>,
    /// Who answers CORS: berth (allows the owner's other apps) or the app
    /// itself, which then also gets preflights without credentials
    /// [default: berth]
    #[arg(long, value_enum, value_name = "WHO")]
    pub cors: Option<CorsMode>,
    /// Also let this user in, whatever the level (repeat for more; `--user`
    /// names the workspace's owner, as in every port command)
    #[arg(long = "with-user", value_name = "USER")]
    pub users: Vec<String>,
    /// Also let this group's members in, whatever the level (repeat for more)
    #[arg(long = "group", visible_alias = "with-group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// End the share after this long (90s, 30m, 2h, 1d, 1h30m, or seconds):
    /// then only you again [default: never, or the deployment's
    /// sharing.max_share_ttl_secs for public and authenticated]
    #[arg(long, value_name = "DURATION", value_parser = format::parse_ttl)]
    pub ttl: Option<u64>,
    /// Print the API's JSON answer
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `berth share --cors`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorsMode {
    /// berth answers preflights and allows the owner's other app hosts
    Berth,
    /// the app answers CORS itself
    Passthru,
}

/// `berth unshare`.
#[derive(Args, Debug)]
pub struct UnshareArgs {
    /// The port to make private again
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `berth open`.
#[derive(Args, Debug)]
pub struct OpenArgs {
    /// The port to open
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// Also open the URL in a browser (xdg-open or open), if there is one
    #[arg(long, short = 'b')]
    pub browser: bool,
    /// Print {"port": ..., "url": ...} as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `berth link`.
#[derive(Args, Debug)]
pub struct LinkArgs {
    #[command(subcommand)]
    pub command: LinkCommand,
}

/// The `berth link` subcommands.
#[derive(Subcommand, Debug)]
pub enum LinkCommand {
    /// Mint a link that lets anyone holding it open one port until it expires
    Create(LinkCreateArgs),
    /// List your share links
    #[command(alias = "list")]
    Ls(LinkLsArgs),
    /// Revoke a share link: its visitors lose access within seconds
    #[command(alias = "revoke")]
    Rm(LinkRmArgs),
}

/// `berth link create`.
#[derive(Args, Debug)]
pub struct LinkCreateArgs {
    /// The port the link opens
    #[arg(value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// How long the link works: 90s, 30m, 2h, 1d, 1h30m, or seconds [server default:
    /// 24h, or sharing.max_link_ttl_secs when that is shorter]
    #[arg(long, value_name = "DURATION", value_parser = format::parse_ttl)]
    pub ttl: Option<u64>,
    /// How many times the link may be redeemed [default: unlimited]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_uses: Option<u64>,
    /// Print the API's JSON answer
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

/// `berth link ls`.
#[derive(Args, Debug)]
pub struct LinkLsArgs {
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `berth link rm`.
#[derive(Args, Debug)]
pub struct LinkRmArgs {
    /// The link's ID, as `berth link ls` shows it
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// Runs one client command; prints errors as `berth: <message>`.
pub async fn run(command: Command) -> ExitCode {
    match commands::run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied())).map(|c| c.command)
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn link_arguments() {
        let Command::Link(LinkArgs {
            command: LinkCommand::Create(a),
        }) = parse(&[
            "link",
            "create",
            "5173",
            "--ttl",
            "2h",
            "--max-uses",
            "3",
            "-w",
            "dev",
        ])
        .unwrap()
        else {
            panic!("not link create")
        };
        assert_eq!((a.port, a.ttl, a.max_uses), (5173, Some(7200), Some(3)));
        assert_eq!(a.target.workspace.as_deref(), Some("dev"));

        let Command::Link(LinkArgs {
            command: LinkCommand::Create(a),
        }) = parse(&["link", "create", "80"]).unwrap()
        else {
            panic!("not link create")
        };
        assert_eq!((a.ttl, a.max_uses), (None, None));

        for bad in [
            &["link", "create", "5173", "--ttl", "2w"][..],
            &["link", "create", "5173", "--ttl", "0s"],
            &["link", "create", "0"],
            &["link", "create", "5173", "--max-uses", "0"],
            &["link", "rm"],
            &["link"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let Command::Link(LinkArgs {
            command: LinkCommand::Rm(r),
        }) = parse(&["link", "rm", "abc123"]).unwrap()
        else {
            panic!("not link rm")
        };
        assert_eq!(r.id, "abc123");
        assert!(matches!(
            parse(&["link", "ls", "--json"]).unwrap(),
            Command::Link(LinkArgs {
                command: LinkCommand::Ls(LinkLsArgs { json: true })
            })
        ));
    }

    #[test]
    fn share_arguments() {
        let Command::Share(s) = parse(&["share", "3000", "--level", "public"]).unwrap() else {
            panic!("not share")
        };
        assert_eq!((s.port, s.level, s.protocol), (3000, Level::Public, None));
        let Command::Share(s) =
            parse(&["share", "3000", "-l", "owner", "--cors", "passthru"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(s.cors, Some(CorsMode::Passthru));
        assert!(parse(&["share", "3000"]).is_err(), "--level is required");
        assert!(parse(&["share", "3000", "--level", "everyone"]).is_err());
        assert!(parse(&["share", "70000", "--level", "public"]).is_err());
        assert!(parse(&["login", "https://x", "--token", "t", "--username", "u"]).is_err());
    }
}
