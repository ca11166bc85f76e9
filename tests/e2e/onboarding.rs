//! Issue 15, the first hour and daily use through the `berth` binary: the
//! admin never lost, passwords changed and reset, workspaces and agents
//! made with one command that prints a ready `berth agent` line, the
//! current workspace (`berth use`), `--json`, link TTLs within the policy,
//! the organization level refused without an organization, and a clear
//! word when an agent does not trust the server's CA.

use crate::cli::{berth_cmd, drain};
use crate::support::berth_cli::{assert_exit, cli, err, out};
use crate::support::{apps, free_port, Berth, Options};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const EXIT_USAGE: i32 = 64;

fn json_out(o: &Output) -> Value {
    assert_exit(o, 0);
    serde_json::from_str(&out(o)).unwrap_or_else(|e| panic!("{e}: {}", out(o)))
}

/// Signs the CLI in to `berth` as the admin, with the CA.
async fn login_admin(berth: &Berth, dir: &Path) {
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--token",
            &berth.admin_token,
            "--ca-file",
            berth.ca_pem.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
}

/// `POST /api/v1/login`'s status.
async fn login_status(berth: &Berth, user: &str, password: &str) -> u16 {
    berth
        .client(true)
        .post(berth.api_url("/api/v1/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A first `berth dev` that cannot bind its port makes nothing, so the next
/// start is still the first run and shows the admin's password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_on_the_first_run_does_not_lose_the_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let first = tokio::time::timeout(
        Duration::from_secs(60),
        berth_cmd()
            .arg("dev")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{busy_port}")])
            .args(["--admin-listen", "off"])
            .output(),
    )
    .await
    .expect("berth dev gives up")
    .unwrap();
    assert!(!first.status.success());
    assert!(err(&first).contains("cannot listen"), "{}", err(&first));
    drop(busy);

    let port = free_port();
    let mut child = berth_cmd()
        .arg("dev")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _stderr = drain(child.stderr.take().unwrap());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("curl ") {
                return;
            }
        }
        panic!("stdout ended before the banner's end:\n{banner}");
    })
    .await
    .expect("a banner within 60 s");
    let password = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("admin password"))
        .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("the second start is the first run: {banner}"));
    assert!(
        banner.contains(&format!("created user admin with password {password}")),
        "the password comes out the moment the admin exists: {banner}"
    );
    crate::cli::sigterm(&child).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
}

/// `berth admin reset-password` on the data directory, while the server
/// runs; then `berth users passwd` through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_password_is_reset_on_the_data_dir_and_changed_by_its_owner() {
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    let data = berth.dir.to_str().unwrap();

    let o = cli(
        dir,
        &["admin", "reset-password", "--data-dir", data, "--json"],
        "",
    )
    .await;
    let reset = json_out(&o);
    assert_eq!(reset["user"], "admin");
    let first = reset["password"].as_str().unwrap().to_owned();
    assert_eq!(login_status(&berth, "admin", &first).await, 200);

    let o = cli(dir, &["admin", "reset-password", "--data-dir", data], "").await;
    assert_exit(&o, 0);
    assert!(out(&o).contains("New password for admin: "), "{}", out(&o));
    let second = out(&o)
        .split("New password for admin: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(login_status(&berth, "admin", &first).await, 401);
    assert_eq!(login_status(&berth, "admin", &second).await, 200);

    // A data directory without a database is refused, not created.
    let empty = tempfile::tempdir().unwrap();
    let o = cli(
        dir,
        &[
            "admin",
            "reset-password",
            "--data-dir",
            empty.path().to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("no berth database"), "{}", err(&o));
    assert!(!empty.path().join("berth.db").exists());
    let o = cli(
        dir,
        &["admin", "reset-password", "nobody", "--data-dir", data],
        "",
    )
    .await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("no user named nobody"), "{}", err(&o));

    // The owner changes it: the current one must be right.
    login_admin(&berth, dir).await;
    let o = cli(
        dir,
        &["users", "passwd", "--password-stdin"],
        "not-it\nnew-password-1\n",
    )
    .await;
    assert_exit(&o, 1);
    assert!(
        err(&o).contains("current password is not right"),
        "{}",
        err(&o)
    );
    let o = cli(
        dir,
        &["users", "passwd", "--password-stdin"],
        &format!("{second}\nshort\n"),
    )
    .await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("new_password"), "{}", err(&o));
    let o = cli(
        dir,
        &["users", "passwd", "--password-stdin", "--json"],
        &format!("{second}\nnew-password-1\n"),
    )
    .await;
    assert_eq!(json_out(&o)["changed"], true);
    assert_eq!(login_status(&berth, "admin", &second).await, 401);
    assert_eq!(login_status(&berth, "admin", "new-password-1").await, 200);
}

/// The agent command `berth workspaces create` prints, run as printed,
/// connects; with two workspaces `berth use` picks one; users and
/// workspaces are listed, created and deleted, also as JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_agents_users_and_the_current_workspace() {
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    login_admin(&berth, dir).await;
    let url = format!("https://berth.localhost:{}", berth.addr.port());

    let o = cli(dir, &["workspaces", "create", "api"], "").await;
    assert_exit(&o, 0);
    let printed = out(&o);
    let command = printed
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("berth agent "))
        .unwrap_or_else(|| panic!("no agent command: {printed}"));
    assert!(
        command.contains(&format!("--url {url} --token berth_agent_")),
        "{command}"
    );
    assert!(
        command.contains(&format!("--ca-file {}", berth.ca_pem.display())),
        "{command}"
    );
    // Run it exactly as printed (the CA path has no spaces here).
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let mut agent = berth_cmd()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let agent_log = drain(agent.stderr.take().unwrap());
    let _agent_out = drain(agent.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = cli(dir, &["agents", "--workspace", "api", "--json"], "").await;
        let list = json_out(&o);
        if list[0]["connected"] == true {
            assert_eq!(list[0]["name"], "main");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the printed agent never connected: {list}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Two workspaces: the port commands ask for a choice, and `berth use` makes it.
    let o = cli(dir, &["ports"], "").await;
    assert_exit(&o, EXIT_USAGE);
    assert!(
        err(&o).contains("2 workspaces") && err(&o).contains("berth use"),
        "{}",
        err(&o)
    );
    for bad in ["nope", "api/nope", "Bad Name"] {
        let o = cli(dir, &["use", bad], "").await;
        assert_exit(&o, EXIT_USAGE);
    }
    let o = cli(dir, &["use", "api", "--json"], "").await;
    assert_eq!(json_out(&o), json!({"workspace": "api", "agent": null}));
    let app = apps::start("127.0.0.1:0", "current").await;
    let port = app.port().to_string();
    let o = cli(dir, &["open", &port, "--json"], "").await;
    let opened = json_out(&o);
    assert!(
        opened["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("https://{port}--main--api--admin.")),
        "{opened}"
    );
    let o = cli(
        dir,
        &["share", &port, "--level", "authenticated", "--json"],
        "",
    )
    .await;
    assert_eq!(json_out(&o)["level"], "authenticated");
    let o = cli(dir, &["ports", "--json"], "").await;
    let ports = json_out(&o);
    assert!(
        ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["url"].as_str().unwrap().contains("--main--api--admin.")),
        "{ports}"
    );
    // --workspace still wins over the current one.
    let o = cli(dir, &["open", &port, "--workspace", "dev", "--json"], "").await;
    assert!(json_out(&o)["url"]
        .as_str()
        .unwrap()
        .contains("--main--dev--admin."));
    let o = cli(dir, &["unshare", &port, "--json"], "").await;
    assert_eq!(json_out(&o)["level"], "owner");

    // A second agent in the current workspace: its command, as JSON.
    let o = cli(dir, &["agents", "create", "laptop", "--json"], "").await;
    let created = json_out(&o);
    assert_eq!(created["name"], "laptop");
    assert!(
        created["command"]
            .as_str()
            .unwrap()
            .starts_with(&format!("berth agent --url {url} --token berth_agent_")),
        "{created}"
    );
    let o = cli(dir, &["use", "api/laptop"], "").await;
    assert_exit(&o, 0);
    assert!(out(&o).contains("api, agent laptop"), "{}", out(&o));
    let o = cli(dir, &["workspaces", "--json"], "").await;
    let all = json_out(&o);
    let api = all
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "api")
        .unwrap();
    assert_eq!(api["agents"].as_array().unwrap().len(), 2, "{all}");
    let o = cli(dir, &["workspaces"], "").await;
    assert!(out(&o).contains("laptop (down), main (up)"), "{}", out(&o));

    // Users, by an admin.
    let o = cli(
        dir,
        &[
            "users",
            "create",
            "bob",
            "--email",
            "bob@example.com",
            "--json",
        ],
        "",
    )
    .await;
    let bob = json_out(&o);
    assert_eq!(bob["username"], "bob");
    let bob_pw = bob["password"].as_str().unwrap();
    assert_eq!(login_status(&berth, "bob", bob_pw).await, 200);
    let o = cli(dir, &["users", "--json"], "").await;
    let users = json_out(&o);
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["username"] == "bob"));
    let o = cli(dir, &["users", "rm", "bob"], "").await;
    assert_exit(&o, 0);
    assert_eq!(login_status(&berth, "bob", bob_pw).await, 401);

    let o = cli(dir, &["workspaces", "rm", "api"], "").await;
    assert_exit(&o, 0);
    let o = cli(dir, &["workspaces", "--json"], "").await;
    assert!(!json_out(&o)
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["name"] == "api"));
    let o = cli(dir, &["use", "--clear", "--json"], "").await;
    assert_eq!(json_out(&o), json!({"workspace": null, "agent": null}));

    let _ = agent.start_kill();
    let _ = agent.wait().await;
    let log = agent_log.await.unwrap();
    assert!(
        log.contains("admin/api") && log.contains("--main--api--admin."),
        "the agent says which workspace it serves, and where: {log}"
    );
}

/// With `sharing.max_link_ttl_secs` under a day, a link without `--ttl`
/// gets the policy's longest; level organization is refused for an owner
/// without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_ttl_defaults_to_the_policy_and_organization_needs_one() {
    let berth = Berth::start_with(Options {
        config: Some("[sharing]\nmax_link_ttl_secs = 3600\n".into()),
        ..Default::default()
    })
    .await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    login_admin(&berth, dir).await;
    let app = apps::start("127.0.0.1:0", "short").await;
    let port = app.port().to_string();

    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let now = time::OffsetDateTime::now_utc();
    let o = cli(dir, &["link", "create", &port, "--json"], "").await;
    let link = json_out(&o);
    let expires = link["expires_at"].as_str().unwrap();
    assert!(
        expires > fmt(now + time::Duration::seconds(3590)).as_str()
            && expires <= fmt(now + time::Duration::seconds(3630)).as_str(),
        "an hour from now: {link}"
    );
    let o = cli(dir, &["link", "create", &port, "--ttl", "2h"], "").await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("sharing.max_link_ttl_secs"), "{}", err(&o));
    let id = link["id"].as_str().unwrap();
    let o = cli(dir, &["link", "rm", id, "--json"], "").await;
    assert_eq!(json_out(&o), json!({"id": id, "revoked": true}));

    // The admin has no organization: refused, saying what to do.
    let o = cli(dir, &["share", &port, "--level", "organization"], "").await;
    assert_exit(&o, 1);
    assert!(
        err(&o).contains("admin has no organization") && err(&o).contains("PATCH"),
        "{}",
        err(&o)
    );
    let (s, _) = berth
        .api(
            Method::PATCH,
            "/api/v1/users/admin",
            &berth.admin_token,
            Some(json!({"organization": "staff"})),
        )
        .await;
    assert_eq!(s, 200);
    let o = cli(
        dir,
        &["share", &port, "--level", "organization", "--json"],
        "",
    )
    .await;
    assert_eq!(json_out(&o)["level"], "organization");
}

/// An agent that does not trust the server's CA says once which flag fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_without_the_ca_says_once_to_pass_ca_file() {
    let berth = Berth::start().await;
    let token = berth.create_agent("dev", "untrusting").await;
    let mut agent = berth_cmd()
        .arg("agent")
        .args([
            "--url",
            &format!("https://berth.localhost:{}", berth.addr.port()),
        ])
        .args(["--token", &token])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = drain(agent.stderr.take().unwrap());
    let _out = drain(agent.stdout.take().unwrap());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = agent.start_kill();
    let _ = agent.wait().await;
    let log = log.await.unwrap();
    let failures = log.matches("UnknownIssuer").count();
    let hints = log.matches("Pass --ca-file").count();
    assert!(failures >= 2, "it kept retrying: {log}");
    assert_eq!(hints, 1, "the hint comes exactly once: {log}");
}

/// `berth trust` puts the CA into a browser's NSS database (a temporary
/// HOME's `~/.pki/nssdb`, as Chromium keeps it) and takes it out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_installs_the_ca_into_nss_and_uninstalls_it() {
    if std::process::Command::new("certutil")
        .arg("-H")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: certutil not installed (apt-get install libnss3-tools)");
        return;
    }
    let berth = Berth::start().await;
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let made = std::process::Command::new("certutil")
        .args(["-N", "--empty-password", "-d", &db])
        .status()
        .unwrap();
    assert!(made.success());
    let listed = || {
        let o = std::process::Command::new("certutil")
            .args(["-L", "-d", &db])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let trust = |extra: &'static [&'static str]| {
        let mut cmd = berth_cmd();
        cmd.env("HOME", home.path())
            .env("BERTH_CONFIG_DIR", home.path().join("cfg"))
            .arg("trust")
            .arg("--ca-file")
            .arg(&berth.ca_pem)
            .arg("--no-system")
            .args(extra);
        async move {
            tokio::time::timeout(Duration::from_secs(30), cmd.output())
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert!(!listed().contains("berth local CA"));
    let o = trust(&[]).await;
    assert_exit(&o, 0);
    assert!(
        out(&o).contains(&format!("ok     NSS database {}", nssdb.display())),
        "{}",
        out(&o)
    );
    let after = listed();
    let line = after
        .lines()
        .find(|l| l.starts_with("berth local CA"))
        .unwrap_or_else(|| panic!("not in the NSS database: {after}"));
    assert!(
        line.trim_end().ends_with("C,,"),
        "trusted for TLS servers: {line}"
    );
    // Again: still one entry.
    assert_exit(&trust(&[]).await, 0);
    assert_eq!(listed().matches("berth local CA").count(), 1);

    let o = trust(&["--uninstall"]).await;
    assert_exit(&o, 0);
    assert!(out(&o).starts_with("Removed"), "{}", out(&o));
    assert!(!listed().contains("berth local CA"), "{}", listed());

    let o = cli(
        home.path(),
        &["trust", "--ca-file", "/nonexistent/ca.pem", "--no-system"],
        "",
    )
    .await;
    assert_exit(&o, EXIT_USAGE);
    assert!(err(&o).contains("cannot read the CA"), "{}", err(&o));
}

/// Signs `user` in with the CLI in a config directory of their own.
async fn login_as(berth: &Berth, user: &str, password: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();
    let o = cli(
        dir.path(),
        &[
            "login",
            &url,
            "--username",
            user,
            "--password-stdin",
            "--ca-file",
            ca,
        ],
        &format!("{password}\n"),
    )
    .await;
    assert_exit(&o, 0);
    dir
}

/// The token `berth login` saved in a config directory.
fn saved_token(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("credentials.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("token")).unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

/// The dashboard's journey with the CLI alone: the admin adds bob and
/// carol; bob signs in, creates a workspace, runs the agent command it
/// prints (a second agent), and shares a port on it with carol only;
/// carol, signed in with the CLI, gets the same 404 as for nothing before
/// the share and the app after; a third user still gets the 404. Bob's
/// links list their status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journey_with_the_cli_alone_shares_an_app_on_a_second_agent() {
    let berth = Berth::start().await;
    let admin = tempfile::tempdir().unwrap();
    login_admin(&berth, admin.path()).await;
    let mut passwords = std::collections::HashMap::new();
    for name in ["bob", "carol", "dave"] {
        let email = format!("{name}@example.com");
        let o = cli(
            admin.path(),
            &["users", "create", name, "--email", &email, "--json"],
            "",
        )
        .await;
        let pw = json_out(&o)["password"].as_str().unwrap().to_owned();
        passwords.insert(name, pw);
    }
    let bob = login_as(&berth, "bob", &passwords["bob"]).await;
    let carol = login_as(&berth, "carol", &passwords["carol"]).await;
    let dave = login_as(&berth, "dave", &passwords["dave"]).await;

    let o = cli(
        bob.path(),
        &["workspaces", "create", "laptop", "--json"],
        "",
    )
    .await;
    let created = json_out(&o);
    let command = created["command"].as_str().unwrap().to_owned();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let mut agent = berth_cmd()
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let agent_out = drain(agent.stdout.take().unwrap());
    let agent_err = drain(agent.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = cli(bob.path(), &["agents", "--json"], "").await;
        if json_out(&o)[0]["connected"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "bob's agent never connected");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let app = apps::start("127.0.0.1:0", "bobs-app").await;
    let port = app.port().to_string();
    let url = berth.app_url(&format!("{port}--main--laptop--bob"), "/");
    let c = berth.client(true);
    let visit = |dir: &Path| {
        let token = saved_token(dir);
        let req = c.get(&url).bearer_auth(token);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    assert_eq!(visit(carol.path()).await.0, 404, "before the share");
    let o = cli(
        bob.path(),
        &[
            "share",
            &port,
            "--level",
            "owner",
            "--with-user",
            "carol",
            "--json",
        ],
        "",
    )
    .await;
    assert_eq!(json_out(&o)["users"], json!(["carol"]));
    let (status, body) = visit(carol.path()).await;
    assert_eq!(status, 200, "carol after the share: {body}");
    assert!(body.contains("bobs-app"), "{body}");
    assert_eq!(visit(dave.path()).await.0, 404, "dave is not named");

    // Links as the dashboard lists them: active, then revoked.
    let o = cli(
        bob.path(),
        &["link", "create", &port, "--max-uses", "2", "--json"],
        "",
    )
    .await;
    let id = json_out(&o)["id"].as_str().unwrap().to_owned();
    let o = cli(bob.path(), &["link", "ls", "--json"], "").await;
    assert_eq!(json_out(&o)[0]["status"], "active", "{}", out(&o));
    let o = cli(bob.path(), &["link", "rm", &id], "").await;
    assert_exit(&o, 0);
    let o = cli(bob.path(), &["link", "ls", "--json"], "").await;
    assert_eq!(json_out(&o)[0]["status"], "revoked", "{}", out(&o));

    let _ = agent.start_kill();
    let _ = agent.wait().await;
    // The agent said which workspace it serves and where its ports are.
    let log = agent_out.await.unwrap() + &agent_err.await.unwrap();
    assert!(
        log.contains("serving workspace bob/laptop/")
            && log.contains("https://{port}--")
            && log.contains("--laptop--bob."),
        "the agent never said what it serves:\n{log}"
    );
}
