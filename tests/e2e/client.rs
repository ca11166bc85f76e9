//! The client CLI (`berth login`, `ports`, `share`, `unshare`, `open`) as a
//! real child process against a running berth, with its own config directory.

use crate::support::berth_cli::{assert_exit, cli, client_cmd, err, out};
use crate::support::{apps, client_for, Berth};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

const EXIT_USAGE: i32 = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_ports_share_unshare_open() {
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();

    // Before login: a usage error that says what to do.
    let o = cli(dir, &["ports"], "").await;
    assert_exit(&o, EXIT_USAGE);
    assert!(
        err(&o).starts_with("berth: not signed in: run `berth login"),
        "{}",
        err(&o)
    );

    // A wrong password: exit 1 and the server's sentence, nothing saved.
    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--username",
            "admin",
            "--password-stdin",
            "--ca-file",
            ca,
        ],
        "not-the-password\n",
    )
    .await;
    assert_exit(&o, 1);
    assert_eq!(err(&o).trim(), "berth: wrong user name or password");
    assert!(!dir.join("credentials.toml").exists());

    // A token that is not an API token is refused before any request.
    let o = cli(
        dir,
        &["login", &url, "--token", "nope", "--ca-file", ca],
        "",
    )
    .await;
    assert_exit(&o, EXIT_USAGE);

    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--token",
            &berth.admin_token,
            "--ca-file",
            ca,
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(out(&o).trim(), format!("Signed in to {url} as admin."));
    let saved = dir.join("credentials.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.contains(&berth.admin_token) && text.contains("ca_file"),
        "{text}"
    );

    let app = apps::start("127.0.0.1:0", "cli-app").await;
    let port = app.port();
    let p = port.to_string();
    let app_url = berth.app_url(&format!("{port}--main--dev--admin"), "");

    // `berth ports`: the app's port, listening, private.
    let o = cli(dir, &["ports"], "").await;
    assert_exit(&o, 0);
    let table = out(&o);
    assert!(table.starts_with("PORT "), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{p} ")))
        .unwrap_or_else(|| panic!("port {port} not listed:\n{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..6],
        ["yes", "owner", "-", "http", app_url.as_str()],
        "{row}"
    );

    let o = cli(
        dir,
        &["ports", "--json", "--workspace", "dev", "--agent", "main"],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let v: Value = serde_json::from_str(&out(&o)).unwrap();
    assert!(
        v["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["port"] == json!(port)),
        "{v}"
    );

    let o = cli(dir, &["ports", "--workspace", "nope"], "").await;
    assert_exit(&o, 1);
    assert!(
        err(&o).contains("workspace admin/nope not found"),
        "{}",
        err(&o)
    );

    let anon = client_for(&berth.ca_pem, true);
    let anon_status = || async { anon.get(&app_url).send().await.unwrap().status().as_u16() };
    assert_eq!(anon_status().await, 401);

    // share → anyone gets through.
    let o = cli(dir, &["share", &p, "--level", "public"], "").await;
    assert_exit(&o, 0);
    let said = out(&o);
    assert!(
        said.contains("level public") && said.contains(&app_url),
        "{said}"
    );
    assert_eq!(anon_status().await, 200);
    let o = cli(dir, &["ports"], "").await;
    assert!(
        out(&o)
            .lines()
            .any(|l| l.starts_with(&format!("{p} ")) && l.contains(" public ")),
        "{}",
        out(&o)
    );

    // unshare → private again.
    let o = cli(dir, &["unshare", &p], "").await;
    assert_exit(&o, 0);
    assert_eq!(
        out(&o).trim(),
        format!("Port {port} is private again (owner only).")
    );
    assert_eq!(anon_status().await, 401);

    // open prints the URL.
    let o = cli(dir, &["open", &p], "").await;
    assert_exit(&o, 0);
    assert_eq!(out(&o).trim(), app_url);

    // A revoked or damaged token: exit 1 with a hint to sign in again.
    std::fs::write(
        &saved,
        text.replace(&berth.admin_token, &format!("berth_api_{}", "x".repeat(43))),
    )
    .unwrap();
    let o = cli(dir, &["ports"], "").await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("berth login"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_and_a_user_without_workspaces() {
    let berth = Berth::start().await;
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/users",
            &berth.admin_token,
            Some(json!({"username": "alice", "email": "alice@example.com",
                        "password": "correct-horse", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path().join("nested").join("berth");
    let url = format!("https://berth.localhost:{}/", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();

    let o = cli(
        &dir,
        &[
            "login",
            &url,
            "-u",
            "alice",
            "--password-stdin",
            "--ca-file",
            ca,
        ],
        "correct-horse\n",
    )
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        out(&o).trim(),
        format!("Signed in to {} as alice.", url.trim_end_matches('/'))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    let o = cli(&dir, &["share", "3000", "--level", "public"], "").await;
    assert_exit(&o, EXIT_USAGE);
    assert!(err(&o).contains("alice has no workspace"), "{}", err(&o));

    // Someone else's workspace looks like no workspace at all.
    let o = cli(
        &dir,
        &[
            "ports",
            "--user",
            "admin",
            "--workspace",
            "dev",
            "--agent",
            "main",
        ],
        "",
    )
    .await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("not found"), "{}", err(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_create_ls_rm() {
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();
    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--token",
            &berth.admin_token,
            "--ca-file",
            ca,
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let app = apps::start("127.0.0.1:0", "linked").await;
    let port = app.port().to_string();

    let o = cli(
        dir,
        &[
            "link",
            "create",
            &port,
            "--ttl",
            "2h",
            "--max-uses",
            "3",
            "--json",
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let created: Value = serde_json::from_str(&out(&o)).unwrap();
    let link_url = created["url"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(link_url.contains("berth_share=berth_link_"), "{link_url}");

    // The link works for someone with no account.
    let anon = client_for(&berth.ca_pem, true);
    let res = anon.get(&link_url).send().await.unwrap();
    assert_eq!(res.status(), 303);

    let o = cli(dir, &["link", "ls"], "").await;
    assert_exit(&o, 0);
    assert!(out(&o).contains(&id), "{}", out(&o));
    assert!(out(&o).contains("active"), "{}", out(&o));

    let o = cli(dir, &["link", "rm", &id], "").await;
    assert_exit(&o, 0);
    let (s, list) = berth
        .api(Method::GET, "/api/v1/share-links", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["revoked"], json!(true), "{list}");
    assert_eq!(anon.get(&link_url).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_shares_naming_people_from_the_cli() {
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();
    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--token",
            &berth.admin_token,
            "--ca-file",
            ca,
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let bob = berth
        .user_token("bob", "correct-horse", "member", None)
        .await;
    berth
        .add_user("carol", "correct-horse", "member", None)
        .await;

    let o = cli(
        dir,
        &[
            "groups",
            "create",
            "Platform Team",
            "--member",
            "carol",
            "--json",
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let g: Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(g["members"][0]["username"], "carol");
    let o = cli(dir, &["groups", "add", "Platform Team", "bob"], "").await;
    assert_exit(&o, 0);
    let o = cli(dir, &["groups"], "").await;
    assert_exit(&o, 0);
    assert!(
        out(&o).contains("Platform Team") && out(&o).contains("bob, carol"),
        "{}",
        out(&o)
    );
    let o = cli(dir, &["groups", "add", "nope", "bob"], "").await;
    assert_exit(&o, 1);
    assert!(err(&o).contains("no group named \"nope\""), "{}", err(&o));

    // berth dev's own agent serves admin/dev; bob gets in through the group.
    let app = apps::start("127.0.0.1:0", "cli-app").await;
    let port = app.port().to_string();
    let o = cli(
        dir,
        &[
            "share",
            &port,
            "-l",
            "owner",
            "--with-user",
            "carol",
            "--group",
            "Platform Team",
            "--ttl",
            "1h",
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    assert!(
        out(&o).contains("and users carol and groups Platform Team")
            && out(&o).contains("It ends at"),
        "{}",
        out(&o)
    );
    let o = cli(dir, &["ports"], "").await;
    assert_exit(&o, 0);
    assert!(
        out(&o).contains("owner +carol +@Platform Team"),
        "{}",
        out(&o)
    );
    let c = client_for(&berth.ca_pem, true);
    let o = cli(dir, &["ports", "--json"], "").await;
    let ports: Value = serde_json::from_str(&out(&o)).unwrap();
    let app_url = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == app.port())
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = |t: String| {
        let r = c.get(&app_url).bearer_auth(t);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(bob.clone()).await, 200);
    let o = cli(dir, &["groups", "remove", "Platform Team", "bob"], "").await;
    assert_exit(&o, 0);
    assert_eq!(status(bob.clone()).await, 404);
    let o = cli(dir, &["groups", "rm", "Platform Team", "--json"], "").await;
    assert_exit(&o, 0);
    let (_, list) = berth
        .api(Method::GET, "/api/v1/groups", &berth.admin_token, None)
        .await;
    assert_eq!(list, json!([]));
}

/// `berth inspect PORT`: the recent requests, then new ones live, as lines
/// or JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_tails_a_ports_requests() {
    use tokio::io::AsyncBufReadExt;
    let berth = Berth::start().await;
    let cfg = tempfile::tempdir().unwrap();
    let dir = cfg.path();
    let url = format!("https://berth.localhost:{}", berth.addr.port());
    let ca = berth.ca_pem.to_str().unwrap();
    let o = cli(
        dir,
        &[
            "login",
            &url,
            "--token",
            &berth.admin_token,
            "--ca-file",
            ca,
        ],
        "",
    )
    .await;
    assert_exit(&o, 0);
    let app = apps::start("127.0.0.1:0", "tailed").await;
    let port = app.port().to_string();
    let client = client_for(&berth.ca_pem, true);
    let get = |path: &'static str| {
        let req = client
            .get(berth.app_url(&format!("{port}--main--dev--admin"), path))
            .bearer_auth(&berth.admin_token);
        async move { req.send().await.unwrap().bytes().await.unwrap() }
    };
    get("/before").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The recent ones, and stop.
    let o = cli(dir, &["inspect", &port, "-w", "dev", "--no-follow"], "").await;
    assert_exit(&o, 0);
    let text = out(&o);
    assert!(
        text.contains("GET") && text.contains("200") && text.contains("/before"),
        "{text}"
    );

    // Live, as JSON lines.
    let mut child = client_cmd(dir)
        .args(["inspect", &port, "--json", "-w", "dev", "-a", "main"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the recent request within 10 s")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        first["url"].as_str().unwrap().ends_with("/before"),
        "{first}"
    );
    // The stream is open once the recent ones are printed.
    get("/live-one").await;
    let next: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the new request within 10 s")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(
        next["url"].as_str().unwrap().ends_with("/live-one"),
        "{next}"
    );
    assert_eq!(next["status"], 200);
    child.kill().await.unwrap();

    // Someone else's port: the API's 404, exit 1.
    let o = cli(
        dir,
        &[
            "inspect",
            &port,
            "-w",
            "nope",
            "--user",
            "admin",
            "--no-follow",
        ],
        "",
    )
    .await;
    assert_exit(&o, 1);
}
