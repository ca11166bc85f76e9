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
    let (s, b) = berth
        .api(
            Method::PUT,
            &format!("/api/v1/workspaces/admin/api/agents/vm/ports/{port}/share"),
            &admin_token,
            Some(json!({"level": "public", "protocol": "http"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
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
