//! The server role on PostgreSQL: the same API, tunnels and sharing as on
//! SQLite, and the data survives a restart because it lives in the database.
//! Skipped (one `SKIPPED` line) where no PostgreSQL server can be had; see
//! `support::postgres`.

use crate::support::{apps, postgres, Berth, Options};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_serves_a_shared_app_and_keeps_it_across_a_restart() {
    let Some(db) = postgres::fresh_database().await else {
        return;
    };
    let berth = Berth::start_with(Options {
        database_url: Some(db.url.clone()),
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let dir = berth.dir.clone();
    assert!(
        !dir.join(berth::store::DB_FILE).exists(),
        "the data must go to PostgreSQL, not to SQLite in the data dir"
    );
    let admin_token = berth.admin_token.clone();
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/users",
            &admin_token,
            Some(json!({"username": "carol", "email": "carol@example.com",
                        "password": "carolcarol", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let agent_token = berth.create_agent("api", "vm").await;
    let app = apps::start("127.0.0.1:0", "on-postgres").await;
    let port = app.port();
    let agent = berth.spawn_agent(&agent_token, Default::default());
    berth.wait_agents(1).await;
    berth
        .share(
            &admin_token,
            "admin/api/vm",
            port,
            json!({"level": "public", "protocol": "http"}),
        )
        .await;
    let label = format!("{port}--vm--api--admin");
    let fetch_anonymously = |berth: &Berth| {
        let req = berth.client(true).get(berth.app_url(&label, "/hello"));
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    let (s, body) = fetch_anonymously(&berth).await;
    assert_eq!(s, 200, "public share through the tunnel: {body}");
    assert!(body.contains("on-postgres"), "{body}");
    drop(agent);
    let tmp = berth.stop().await;

    // Same database, same data dir (for the CA): users, tokens, the agent and
    // its share all come back from PostgreSQL.
    let berth = Berth::start_with(Options {
        dir: Some(dir.clone()),
        database_url: Some(db.url.clone()),
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        berth.admin_token, admin_token,
        "no new admin token was needed"
    );
    let (s, users) = berth
        .api(Method::GET, "/api/v1/users", &admin_token, None)
        .await;
    assert_eq!(s, 200);
    assert!(users.to_string().contains("carol"), "{users}");
    let _agent = berth.spawn_agent(&agent_token, Default::default());
    berth.wait_agents(1).await;
    let (s, body) = fetch_anonymously(&berth).await;
    assert_eq!(s, 200, "the share survived the restart: {body}");
    assert!(body.contains("on-postgres"), "{body}");
    assert!(!dir.join(berth::store::DB_FILE).exists());
    drop(tmp);
}

/// Polls `status()` every 50 ms until it returns `want`; fails after 5 s
/// (SPEC §6: changes reach every edge within 5 s).
async fn within_5s<F, Fut>(what: &str, want: u16, mut status: F) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let started = std::time::Instant::now();
    loop {
        let got = status().await;
        if got == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{what}: still {got} after 5 s, want {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Two `berth control` replicas on one database: what is written through A
/// reaches B's catalog (and B's edge) by LISTEN/NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_follow_each_others_shares_and_revocations() {
    let Some(db) = postgres::fresh_database().await else {
        return;
    };
    // One data directory, hence one local CA: replicas relay to each other
    // over TLS and must trust each other's certificates.
    let shared = tempfile::tempdir().unwrap();
    let replica = || {
        Berth::start_with(Options {
            database_url: Some(db.url.clone()),
            dir: Some(shared.path().to_owned()),
            no_dev_agent: true,
            ..Default::default()
        })
    };
    let a = replica().await;
    let b = replica().await;
    // Made through A; B learns of the agent and accepts its tunnel.
    let agent_token = a.create_agent("api", "vm").await;
    let app = apps::start("127.0.0.1:0", "replicated").await;
    let port = app.port();
    let _agent = b.spawn_agent(&agent_token, Default::default());
    b.wait_agents(1).await;
    let label = format!("{port}--vm--api--admin");
    let anon = b.client(true);
    let on_b = |cookie: Option<String>| {
        let mut req = anon.get(b.app_url(&label, "/"));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(on_b(None).await, 401, "unshared: B asks for credentials");

    let share_path = format!("/api/v1/workspaces/admin/api/agents/vm/ports/{port}/share");
    a.share_at(
        &a.admin_token,
        &share_path,
        json!({"level": "public", "protocol": "http"}),
    )
    .await;
    let took = within_5s("share set on A, seen on B", 200, || on_b(None)).await;
    eprintln!("share reached replica B in {took:?}");
    let (s, _) = a
        .api(Method::DELETE, &share_path, &a.admin_token, None)
        .await;
    assert_eq!(s, 204);
    within_5s("share removed on A, seen on B", 401, || on_b(None)).await;

    // A link made on A is redeemed on B, then revoked on A.
    let link = a
        .share_link(
            &a.admin_token,
            json!({"user": "admin", "workspace": "api", "agent": "vm", "port": port}),
        )
        .await;
    let token = link["url"]
        .as_str()
        .unwrap()
        .split_once("berth_share=")
        .unwrap()
        .1
        .to_owned();
    // B's catalog needs the link before it lets the cookie in.
    let redeem = || {
        let req = anon.get(b.app_url(&label, &format!("/?berth_share={token}")));
        async move { req.send().await.unwrap() }
    };
    let res = redeem().await;
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    within_5s("link made on A, used on B", 200, || {
        on_b(Some(cookie.clone()))
    })
    .await;
    let id = link["id"].as_str().unwrap();
    let (s, _) = a
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &a.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let took = within_5s("link revoked on A, refused on B", 401, || {
        on_b(Some(cookie.clone()))
    })
    .await;
    eprintln!("revocation reached replica B in {took:?}");

    // The agent's tunnel is on B; A relays to it. (Behind one load
    // balancer each replica sets `server.relay_url` to its own address;
    // here each has its own port, which the default URL names.)
    let via_a = || {
        let req = a
            .client(true)
            .get(a.app_url(&label, "/hello"))
            .bearer_auth(&a.admin_token);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let took = within_5s("A relays to B's tunnel", 200, via_a).await;
    eprintln!("replica A relayed to B's tunnel {took:?} after the first try");
    assert_eq!(a.server.tunnels.len(), 0, "the tunnel is on B only");
    // B stops: A stops relaying to it within moments.
    b.stop().await;
    within_5s("A knows B is gone", 502, via_a).await;
}
