//! Sign-in with GitHub against a stand-in that speaks GitHub's documented
//! OAuth and REST endpoints (`support::github`): users created or matched
//! by their verified primary address, organizations and teams that admit
//! or refuse, and the way back to the app.

use crate::support::github::{browser, location, sign_in, with_github, Account};
use crate::support::redirects::{sent_to_sign_in, state_of};
use crate::support::{apps, Berth};
use reqwest::header::LOCATION;
use reqwest::Method;
use serde_json::{json, Value};

async fn users(berth: &Berth) -> Vec<Value> {
    let (s, body) = berth
        .api(Method::GET, "/api/v1/users", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200);
    body.as_array().unwrap().clone()
}

async fn audit(berth: &Berth) -> Vec<Value> {
    let (s, log) = berth
        .api(
            Method::GET,
            "/api/v1/audit?limit=100",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{log}");
    log.as_array().unwrap().clone()
}

async fn me(b: &reqwest::Client, berth: &Berth) -> Option<String> {
    let res = b.get(berth.api_url("/api/v1/me")).send().await.unwrap();
    if res.status() != 200 {
        return None;
    }
    let me: Value = res.json().await.unwrap();
    me["username"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_creates_or_matches_users_by_verified_primary_email() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |g| g.organization = Some("example".into()), false).await;

    // The sign-in page offers GitHub.
    let b = browser(&berth);
    let form = b
        .get(berth.api_url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("Sign in with GitHub"), "{form}");
    assert!(form.contains("action=\"/signin/github\""), "{form}");

    // Alice has no berth account. Her GitHub account has an older verified
    // address and an unverified one besides her verified primary: berth
    // takes the primary, and names her after her GitHub login.
    gh.add(
        Account {
            emails: vec![
                ("old@example.org".into(), true, false),
                ("Alice@Example.com".into(), true, true),
                ("spoof@example.net".into(), false, false),
            ],
            ..Account::new("Alice-GH", 101, "")
        }
        .in_org("Acme"),
    );
    let app = apps::start("127.0.0.1:0", "gh").await;
    let port = app.port();
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "authenticated"}),
        )
        .await;
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/deep/page?q=1");
    // The app host sends her to sign in, with its state in her cookie jar.
    let state = sent_to_sign_in(&b, &app_url).await;
    let (res, _) = sign_in(&b, &berth, &gh, "Alice-GH", Some((&app_url, &state))).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let back = location(&res);
    assert!(
        back.starts_with(&berth.app_url(&label, "/_berth/auth/callback?code=")),
        "{back}"
    );
    let res = b.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/deep/page?q=1");
    let res = b
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice-gh");
    assert_eq!(seen["headers"]["x-berth-email"], "alice@example.com");
    let alice = users(&berth)
        .await
        .into_iter()
        .find(|u| u["username"] == "alice-gh")
        .expect("alice was created");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["role"], "member");
    assert_eq!(alice["organization"], "example");
    // berth asked for the scopes it reads with, and the stand-in checked
    // its PKCE verifier.
    assert_eq!(gh.scopes(), ["read:user user:email read:org"]);
    assert_eq!((gh.pkce_verified(), gh.pkce_refused()), (1, 0));

    // A second sign-in matches the same user; nobody new is created.
    let before = users(&berth).await.len();
    let b2 = browser(&berth);
    let (res, _) = sign_in(&b2, &berth, &gh, "Alice-GH", None).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/");
    assert_eq!(me(&b2, &berth).await.as_deref(), Some("alice-gh"));
    assert_eq!(users(&berth).await.len(), before);

    // Carol has a password account (carol@example.com); her GitHub login
    // is another name, her verified primary the same address, capitalised
    // differently: she is matched, not duplicated.
    berth
        .add_user("carol", "carol-password", "member", None)
        .await;
    gh.add(Account::new("cgh", 102, "Carol@EXAMPLE.com").in_org("acme"));
    let b3 = browser(&berth);
    let (res, _) = sign_in(&b3, &berth, &gh, "cgh", None).await;
    assert_eq!(res.status(), 303);
    assert_eq!(me(&b3, &berth).await.as_deref(), Some("carol"));
    assert_eq!(users(&berth).await.len(), before + 1);
    assert!(users(&berth).await.iter().all(|u| u["username"] != "cgh"));

    let log = audit(&berth).await;
    let has = |actor: &str, action: &str, target: &str| {
        log.iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["target"] == target)
    };
    assert!(has("alice-gh", "user.created", "github"), "{log:?}");
    assert!(has("alice-gh", "session.started", "github"), "{log:?}");
    assert!(has("carol", "session.started", "github"), "{log:?}");
    assert_eq!(gh.pkce_verified(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_refuses_outsiders_and_unverified_primary_addresses() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(
        &tmp,
        |g| g.allowed_teams = vec!["partner/dev-team".into()],
        true,
    )
    .await;
    let before = users(&berth).await.len();

    // Bob is in another organization, in a team with the allowed team's
    // name there.
    gh.add(
        Account::new("bob", 201, "bob@example.com")
            .in_org("other")
            .in_team("other", "dev-team"),
    );
    let b = browser(&berth);
    let (res, _) = sign_in(&b, &berth, &gh, "bob", None).await;
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("the GitHub user bob is not in an organization or team this berth admits (acme, partner/dev-team)"),
        "{page}"
    );
    assert_eq!(me(&b, &berth).await, None);

    // Eve is in the organization, but her primary address is unverified;
    // a verified secondary address does not stand in for it.
    gh.add(
        Account {
            emails: vec![
                ("eve@example.com".into(), false, true),
                ("eve@example.org".into(), true, false),
            ],
            ..Account::new("eve", 202, "")
        }
        .in_org("acme"),
    );
    let b = browser(&berth);
    let (res, _) = sign_in(&b, &berth, &gh, "eve", None).await;
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("GitHub has not verified your primary e-mail address eve@example.com"),
        "{page}"
    );
    assert_eq!(me(&b, &berth).await, None);

    // Frank is in the team's organization, but in another team of it.
    gh.add(
        Account::new("frank", 203, "frank@example.com")
            .in_org("partner")
            .in_team("partner", "ops"),
    );
    let (res, _) = sign_in(&browser(&berth), &berth, &gh, "frank", None).await;
    assert_eq!(res.status(), 403);

    // Nobody was created, and each refusal is in the audit log.
    assert_eq!(users(&berth).await.len(), before);
    let (s, log) = berth
        .api(
            Method::GET,
            "/api/v1/audit?limit=100",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200);
    for actor in ["github:bob", "github:eve", "github:frank"] {
        assert!(
            log.as_array()
                .unwrap()
                .iter()
                .any(|e| e["actor"] == actor && e["action"] == "session.refused"),
            "{actor}: {log}"
        );
    }

    // Dave is in the allowed team (and not in acme): he is let in.
    gh.add(Account::new("dave", 204, "dave@example.com").in_team("Partner", "dev-team"));
    let b = browser(&berth);
    let (res, _) = sign_in(&b, &berth, &gh, "dave", None).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(me(&b, &berth).await.as_deref(), Some("dave"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_lands_on_an_app_at_a_regional_edge() {
    use crate::regions::{start_edge, within};
    use crate::support::{client_for, free_port, run_agent};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |_| {}, true).await;
    let admin = berth.admin_token.clone();
    let edge_port = free_port();
    let (s, created) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(json!({
                "name": "eu",
                "url": format!("https://eu.berth.localhost:{edge_port}"),
                "wildcard": "*.eu.berth.localhost",
            })),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let token = created["region_token"].as_str().unwrap().to_owned();
    let edge_dir = tempfile::tempdir().unwrap();
    let (edge, _stop_edge, stopped) =
        start_edge(&berth, "eu", &token, edge_port, edge_dir.path()).await;
    let (control, tunnels) = (edge.control.clone(), edge.tunnels.clone());
    let _edge_task = tokio::spawn(edge.run(async {
        let _ = stopped.await;
    }));
    within(Duration::from_secs(5), "edge follows control", || {
        let c = control.clone();
        async move { c.connected() }
    })
    .await;
    let agent_token = berth.create_agent("api", "laptop").await;
    let app = apps::start("127.0.0.1:0", "eu-app").await;
    let _agent = run_agent(berth::agent::AgentConfig {
        url: format!("https://eu.berth.localhost:{edge_port}"),
        ..berth.agent_config(&agent_token, edge_port)
    });
    within(Duration::from_secs(10), "agent on the edge", || {
        let t = tunnels.clone();
        async move { t.len() == 1 }
    })
    .await;
    let port = app.port();
    berth
        .share_at(
            &admin,
            &format!("/api/v1/workspaces/admin/api/agents/laptop/ports/{port}/share"),
            json!({"level": "authenticated"}),
        )
        .await;
    let url = format!("https://{port}--laptop--api--admin.eu.berth.localhost:{edge_port}/hello");
    let probe = client_for(&berth.ca_pem, true);
    within(Duration::from_secs(5), "share reaches the edge", || async {
        let res = probe
            .get(&url)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        res.status() == 303
    })
    .await;

    // Alice opens the app at the edge, is sent to control, signs in with
    // GitHub there, and comes back to the edge with a code for its host.
    gh.add(Account::new("alice", 1, "alice@example.com").in_org("acme"));
    let b = browser(&berth);
    let res = b
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let signin = location(&res);
    assert!(
        signin.starts_with(&berth.api_url("/signin?return_to=")),
        "{signin}"
    );
    let state = state_of(&signin);
    let (res, _) = sign_in(&b, &berth, &gh, "alice", Some((&url, &state))).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let back = location(&res);
    let edge_origin = format!("https://{port}--laptop--api--admin.eu.berth.localhost:{edge_port}");
    assert!(
        back.starts_with(&format!("{edge_origin}/_berth/auth/callback?code=")),
        "{back}"
    );
    let res = b.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/hello");
    let res = b
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["app"], "eu-app");
    assert_eq!(seen["headers"]["x-berth-user"], "alice");
    assert_eq!(seen["headers"]["x-berth-email"], "alice@example.com");
}

/// Installs tests/browser's npm packages (playwright-core) once.
fn browser_npm_ci() -> std::path::PathBuf {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    DONE.get_or_init(|| {
        if dir.join("node_modules/playwright-core").exists() {
            return;
        }
        let ok = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| panic!("this test needs Node.js and npm: {e}"))
            .success();
        assert!(ok, "npm ci in {} failed", dir.display());
    });
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sign_in_in_chromium() {
    let dir = browser_npm_ci();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "this test needs Chromium and certutil (apt-get install chromium libnss3-tools)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |_| {}, false).await;
    gh.add(Account::new("alice", 1, "alice@example.com").in_org("acme"));
    let app = apps::start("127.0.0.1:0", "chromium").await;
    let port = app.port();
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "authenticated"}),
        )
        .await;
    let app_url = berth.app_url(&format!("{port}--main--dev--admin"), "/hello");
    let out = tokio::process::Command::new("node")
        .arg(dir.join("github_signin.mjs"))
        .env("CHROMIUM", &chromium)
        .env("CA_PEM", &berth.ca_pem)
        .env("APP_URL", &app_url)
        .env("GITHUB_URL", gh.url())
        .env("GITHUB_LOGIN", "alice")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(90), out)
        .await
        .expect("the Chromium run finishes within 90 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let landing: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(landing["url"], app_url, "{landing}");
    assert_eq!(landing["status"], 200, "{landing}");
    let seen: Value = serde_json::from_str(landing["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice");
    assert_eq!(seen["headers"]["x-berth-email"], "alice@example.com");
    assert_eq!(gh.pkce_verified(), 1);
}

/// The members of a group, as (user name, source).
async fn members(berth: &Berth, group: &str) -> Vec<(String, String)> {
    let path = format!("/api/v1/groups/{}", group.replace('/', "%2F"));
    let (s, g) = berth
        .api(Method::GET, &path, &berth.admin_token, None)
        .await;
    assert_eq!(s, 200, "{path}: {g}");
    g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["username"].as_str().unwrap().to_owned(),
                m["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_teams_become_groups_that_shares_name_and_a_left_team_is_left_at_sign_in() {
    use crate::regions::within;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |g| g.teams_as_groups = true, false).await;
    let admin = berth.admin_token.clone();
    let pair = |u: &str, s: &str| (u.to_owned(), s.to_owned());

    // Alice is in acme's Backend team, and in a team of an organization
    // berth does not know. Her sign-in makes the group acme/backend (GitHub
    // slugs compare lower-case) with her in it, and nothing for the other.
    let alice = Account::new("alice", 1, "alice@example.com")
        .in_org("acme")
        .in_team("Acme", "Backend")
        .in_team("elsewhere", "backend");
    gh.add(alice.clone());
    let b = browser(&berth);
    let (res, _) = sign_in(&b, &berth, &gh, "alice", None).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(
        members(&berth, "acme/backend").await,
        [pair("alice", "github")]
    );
    let (s, _) = berth
        .api(
            Method::GET,
            "/api/v1/groups/elsewhere%2Fbackend",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 404);

    // Carol signs in (acme, no team); an admin then puts her in the group
    // by hand. Her next GitHub sign-in leaves that membership alone.
    gh.add(Account::new("carol", 2, "carol@example.com").in_org("acme"));
    let (res, _) = sign_in(&browser(&berth), &berth, &gh, "carol", None).await;
    assert_eq!(res.status(), 303);
    let (s, g) = berth
        .api(
            Method::PUT,
            "/api/v1/groups/acme%2Fbackend/members/carol",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let (res, _) = sign_in(&browser(&berth), &berth, &gh, "carol", None).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        members(&berth, "acme/backend").await,
        [pair("alice", "github"), pair("carol", "berth")]
    );

    // The admin's app, private but for the group.
    let app = apps::start("127.0.0.1:0", "team-app").await;
    let port = app.port();
    let shared = berth
        .share(
            &admin,
            "admin/dev/main",
            port,
            json!({"level": "owner", "groups": ["acme/backend"]}),
        )
        .await;
    assert_eq!(shared["groups"], json!(["acme/backend"]), "{shared}");
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/team");
    let state = sent_to_sign_in(&b, &app_url).await;
    let (res, _) = sign_in(&b, &berth, &gh, "alice", Some((&app_url, &state))).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let res = b.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let res = b.get(&app_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "alice, in the team");
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice");

    // Alice leaves the team on GitHub. Her app cookie still works until
    // she next signs in with GitHub: then she is out of the group, and the
    // app (at the edge, with the same cookie) is no longer hers to see.
    let mut left = alice.clone();
    left.teams.retain(|(o, _)| o != "Acme");
    gh.add(left);
    let (res, _) = sign_in(&b, &berth, &gh, "alice", None).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        members(&berth, "acme/backend").await,
        [pair("carol", "berth")]
    );
    let took = within(Duration::from_secs(5), "alice's access ends", || async {
        b.get(&app_url).send().await.unwrap().status() == 404
    })
    .await;
    println!("a left team closed the app to her in {took:?}");
    let log = audit(&berth).await;
    assert!(
        log.iter()
            .any(|e| e["actor"] == "alice" && e["action"] == "session.started"),
        "{log:?}"
    );
}
