//! The configuration's own tests: layering, every key's check, the
//! example files.

use super::*;
use crate::secret::Secret;
use std::path::Path;

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
fn github_from_file_environment_and_secret_file() {
    let f = load(
        "[github]\nclient_id = \"Iv1.abc\"\n",
        &[
            ("BERTH_GITHUB_CLIENT_SECRET", "gh-from-env"),
            ("BERTH_GITHUB_ALLOWED_ORGANIZATIONS", "Acme, partner ,"),
            ("BERTH_GITHUB_ALLOWED_TEAMS", "Acme/Platform"),
        ],
    )
    .unwrap();
    let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
    let g = c.github.unwrap();
    assert_eq!(g.client_secret.expose(), "gh-from-env");
    assert_eq!(g.allowed_organizations, ["acme", "partner"]);
    assert_eq!(g.allowed_teams, ["acme/platform"]);
    assert_eq!(g.url, "https://github.com");
    assert_eq!(g.api_url, "https://api.github.com");
    assert_eq!(g.label, "Sign in with GitHub");
    assert!(g.create_users);
    assert!(!format!("{g:?}").contains("gh-from-env"));

    // GitHub Enterprise Server: the API defaults to {url}/api/v3.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "gh-from-file\n").unwrap();
    let text = format!(
        "[github]\nclient_id = \"x\"\nclient_secret_file = {:?}\nurl = \"https://github.example.com/\"\ncreate_users = false\n",
        secret.display().to_string()
    );
    let c = ServerConfig::resolve(
        load(&text, &[]).unwrap(),
        Overrides::default(),
        RoleDefaults::DEV,
    )
    .unwrap();
    let g = c.github.unwrap();
    assert_eq!(g.client_secret.expose(), "gh-from-file");
    assert_eq!(g.url, "https://github.example.com");
    assert_eq!(g.api_url, "https://github.example.com/api/v3");
    let none = ServerConfig::resolve(
        load("", &[]).unwrap(),
        Overrides::default(),
        RoleDefaults::DEV,
    );
    assert!(none.unwrap().github.is_none());
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
        ("[sharing]\npublic_rate_limit = 0", "sharing.public_rate_limit"),
        (
            "[sharing]\npublic_rate_limit = 10\npublic_rate_burst = 0",
            "sharing.public_rate_burst",
        ),
        ("[sharing]\npublic_rate_burst = 10", "sharing.public_rate_burst"),
        ("[jwt]\nttl_secs = 5", "jwt.ttl_secs"),
        ("[jwt]\nttl_secs = 600\ngrace_secs = 300", "jwt.grace_secs"),
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
        ("[github]\nclient_secret = \"s\"", "github.client_id"),
        (
            "[github]\nclient_id = \"c\"\nallowed_organizations = [\"acme\"]",
            "github.client_secret",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"\nclient_secret_file = \"/x\"\nallowed_organizations = [\"acme\"]",
            "github.client_secret_file",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret_file = \"/nonexistent/secret\"\nallowed_organizations = [\"acme\"]",
            "github.client_secret_file",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"",
            "github.allowed_organizations",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"\nallowed_organizations = [\"acme/x\"]",
            "github.allowed_organizations",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"\nallowed_teams = [\"platform\"]",
            "github.allowed_teams",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"\ncreate_users = false\nurl = \"http://github.example.com\"",
            "github.url",
        ),
        (
            "[github]\nclient_id = \"c\"\nclient_secret = \"s\"\ncreate_users = false\napi_url = \"https://api.example.com/?x=1\"",
            "github.api_url",
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

#[test]
fn every_problem_is_reported_in_one_run() {
    let text = "[server]\nlisten = \"nope\"\ndatabase_max_connections = 0\n\
                [tls]\nmode = \"files\"\n\
                [limits]\nmax_connections = 0\nshutdown_grace_secs = -1\n\
                [log]\nformat = \"xml\"\n\
                [sharing]\nmax_level = \"world\"\nmax_link_ttl_secs = 0\nmax_share_ttl_secs = 0\n\
                [oidc]\nissuer = \"http://idp\"\ngroups_claim = \" groups\"\n";
    let e = ServerConfig::resolve(
        load(text, &[]).unwrap(),
        Overrides::default(),
        RoleDefaults::DEV,
    )
    .unwrap_err();
    let keys: Vec<String> = e
        .problems()
        .iter()
        .map(|p| p.to_string().split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "server.database_max_connections",
            "tls.cert_file",
            "tls.key_file",
            "limits.max_connections",
            "limits.shutdown_grace_secs",
            "log.format",
            "sharing.max_level",
            "sharing.max_link_ttl_secs",
            "sharing.max_share_ttl_secs",
            "oidc.issuer",
            "oidc.client_id",
            "oidc.client_secret",
            "oidc.groups_claim",
        ]
    );
    // One a line, in that order.
    assert_eq!(e.to_string().lines().count(), keys.len(), "{e}");
    let acme = "[tls]\nmode = \"acme\"\n[tls.acme]\nrenew_before_days = -1\n[tls.acme.dns]\nresolvers = [\"x\"]\n";
    let e = ServerConfig::resolve(
        load(acme, &[]).unwrap(),
        Overrides::default(),
        RoleDefaults::DEV,
    )
    .unwrap_err()
    .to_string();
    for key in [
        "tls.acme.directory",
        "tls.acme.renew_before_days",
        "tls.acme.dns.resolvers",
        "tls.acme.dns.provider",
    ] {
        assert!(e.contains(&format!("{key}: ")), "{key} missing in: {e}");
    }
}

#[test]
fn dev_agent_ports_from_file_and_env_and_refused_when_malformed() {
    let f = load("[server]\ndev_agent_ports = \"3000-3002,5432\"\n", &[]).unwrap();
    let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
    assert_eq!(c.dev_agent_ports, Some([3000, 3001, 3002, 5432].into()));
    let f = load("", &[("BERTH_SERVER_DEV_AGENT_PORTS", "8080")]).unwrap();
    let c = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap();
    assert_eq!(c.dev_agent_ports, Some([8080].into()));
    let c = ServerConfig::resolve(
        load("", &[]).unwrap(),
        Overrides::default(),
        RoleDefaults::DEV,
    )
    .unwrap();
    assert_eq!(c.dev_agent_ports, None, "default: every port");
    let f = load("[server]\ndev_agent_ports = \"9-3\"\n", &[]).unwrap();
    let e = ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV).unwrap_err();
    assert!(e.to_string().contains("server.dev_agent_ports"), "{e}");
}

#[test]
fn runtime_shape_from_file_and_env_and_refused_when_unknown() {
    use super::RuntimeShape;
    let resolve = |f| ServerConfig::resolve(f, Overrides::default(), RoleDefaults::DEV);
    let c = resolve(load("", &[]).unwrap()).unwrap();
    assert_eq!(c.runtime, RuntimeShape::WorkStealing, "the default");
    let c = resolve(load("[server]\nruntime = \"per-core\"\n", &[]).unwrap()).unwrap();
    assert_eq!(c.runtime, RuntimeShape::PerCore);
    let c = resolve(load("", &[("BERTH_SERVER_RUNTIME", "work-stealing")]).unwrap()).unwrap();
    assert_eq!(c.runtime, RuntimeShape::WorkStealing);
    for bad in ["percore", "Per-Core", "", "per-core "] {
        let f = load("", &[("BERTH_SERVER_RUNTIME", bad)]).unwrap();
        let e = resolve(f).unwrap_err().to_string();
        assert!(
            e.contains("server.runtime") && e.contains("per-core"),
            "{bad:?}: {e}"
        );
    }
}
