//! Activity: every edge (the built-in one and a regional `berth edge`)
//! records when each port last served a request or held an open WebSocket;
//! control shows it to owners and admins, exports it as a metric, and calls
//! the `[activity]` webhook once when a workspace has been idle.

use crate::support::hooks::{signed, Receiver};
use crate::support::{apps, client_for, free_port, run_agent, Berth, Options};
use berth::config::{FileConfig, Overrides, RoleDefaults, ServerConfig};
use berth::roles::regional::{ControlLink, RegionalEdge};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "activity-secret-0123456789";

/// Polls `f` every 100 ms until it is true, for at most `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The activity of `admin/ws` as `token`: (status, body).
async fn activity(berth: &Berth, token: &str) -> (u16, Value) {
    berth
        .api(
            Method::GET,
            "/api/v1/workspaces/admin/ws/activity",
            token,
            None,
        )
        .await
}

/// The entry for `agent`'s `port`, if control knows one.
fn port_entry(body: &Value, agent: &str, port: u16) -> Option<Value> {
    body["ports"]
        .as_array()?
        .iter()
        .find(|p| p["agent"] == agent && p["port"] == port)
        .cloned()
}

/// Creates region `name` at control and runs a regional `berth edge` for
/// it on loopback (`*.{name}.berth.localhost`); returns its port, its
/// tunnels, the sender that stops it and its data dir.
pub(crate) async fn start_region(
    berth: &Berth,
    name: &str,
) -> (
    u16,
    Arc<berth::tunnel::edge::Tunnels>,
    tokio::sync::oneshot::Sender<()>,
    tempfile::TempDir,
) {
    let edge_port = free_port();
    let (s, region) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &berth.admin_token,
            Some(
                json!({"name": name, "url": format!("https://{name}.berth.localhost:{edge_port}"),
                        "wildcard": format!("*.{name}.berth.localhost")}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{region}");
    let edge_dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig::resolve(
        FileConfig::default(),
        Overrides {
            listen: Some(format!("127.0.0.1:{edge_port}")),
            data_dir: Some(edge_dir.path().join(name)),
            admin_listen: Some("off".into()),
            base_domain: Some(format!("{name}.berth.localhost")),
            wildcard: Some(format!("*.{name}.berth.localhost")),
            ..Default::default()
        },
        RoleDefaults::EDGE,
    )
    .unwrap();
    let link = ControlLink {
        url: berth.api_url(""),
        token: berth::auth::Secret::new(region["region_token"].as_str().unwrap()),
        ca_file: Some(berth.ca_pem.clone()),
    };
    let edge = RegionalEdge::build(cfg, link, Duration::from_secs(10))
        .await
        .unwrap();
    let (tunnels, control) = (edge.tunnels.clone(), edge.control.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(edge.run(async {
        let _ = stopped.await;
    }));
    within(Duration::from_secs(10), "the edge follows control", || {
        let c = control.clone();
        async move { c.connected() }
    })
    .await;
    (edge_port, tunnels, stop, edge_dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_served_through_every_edge_count_and_an_idle_workspace_is_reported_once() {
    let hook = Receiver::start(1, None).await;
    let control_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let berth = Berth::start_with(Options {
        listen: Some(control_addr),
        no_dev_agent: true,
        config: Some(format!(
            "[activity]\nwebhook_url = \"{}\"\nwebhook_secret = \"{SECRET}\"\nidle_after = 5\n",
            hook.url("/idle")
        )),
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();

    // Agent `main` on control's built-in edge, agent `laptop` on a regional edge.
    let main_app = apps::start("127.0.0.1:0", "main-app").await;
    let laptop_app = apps::start("127.0.0.1:0", "laptop-app").await;
    let main_token = berth.create_agent("ws", "main").await;
    let laptop_token = berth.create_agent("ws", "laptop").await;
    let _main = run_agent(berth.agent_config(&main_token, berth.addr.port()));

    let (edge_port, edge_tunnels, _stop_edge, _edge_dir) = start_region(&berth, "eu").await;
    let _laptop = run_agent(berth::agent::AgentConfig {
        url: format!("https://eu.berth.localhost:{edge_port}"),
        ..berth.agent_config(&laptop_token, edge_port)
    });
    berth.wait_agents(1).await;
    within(Duration::from_secs(15), "laptop on the edge", || {
        let t = edge_tunnels.clone();
        async move { t.len() == 1 }
    })
    .await;

    // Nothing served yet: no activity. Strangers see no workspace at all.
    let (s, body) = activity(&berth, &admin).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["last_activity"], Value::Null);
    assert_eq!(body["ports"], json!([]));
    berth
        .add_user("eve", "password-eve-1", "member", None)
        .await;
    let eve = berth.login("eve", "password-eve-1").await;
    assert_eq!(activity(&berth, &eve).await.0, 404);
    assert_eq!(activity(&berth, "").await.0, 401);

    // An open WebSocket through control's edge counts while it is open,
    // though nothing crosses it: the workspace never goes idle meanwhile.
    let host = format!("{}--main--ws--admin.berth.localhost", main_app.port());
    let tls = crate::support::raw::tls(&berth.ca_pem, &host, berth.addr.port()).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://{host}:{}/ws", berth.addr.port()),
    )
    .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {admin}").parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(res.status(), 101);
    // Meanwhile, a request through the regional edge counts (reported to
    // control).
    let c = client_for(&berth.ca_pem, true);
    let url = format!(
        "https://{}--laptop--ws--admin.eu.berth.localhost:{edge_port}/hello",
        laptop_app.port()
    );
    let res = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    within(
        Duration::from_secs(15),
        "the regional edge's report",
        || async {
            port_entry(
                &activity(&berth, &admin).await.1,
                "laptop",
                laptop_app.port(),
            )
            .is_some()
        },
    )
    .await;

    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let body = activity(&berth, &admin).await.1;
        if let Some(p) = port_entry(&body, "main", main_app.port()) {
            assert!(
                p["idle_seconds"].as_i64().unwrap() <= 3,
                "an open WebSocket is activity: {body}"
            );
        }
    }
    let body = activity(&berth, &admin).await.1;
    assert!(
        port_entry(&body, "main", main_app.port()).is_some(),
        "{body}"
    );
    assert!(body["idle_seconds"].as_i64().unwrap() <= 3, "{body}");
    assert!(
        hook.calls().is_empty(),
        "not idle while a WebSocket is open: {:?}",
        hook.calls()
    );
    ws.send(tokio_tungstenite::tungstenite::Message::text("bye"))
        .await
        .unwrap();
    let _ = ws.next().await;
    ws.close(None).await.unwrap();
    drop(ws);

    // The metric follows.
    let metrics = c
        .get(format!("http://{}/metrics", berth.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("berth_workspace_last_activity_seconds{")
                && l.contains("user=\"admin\"")
                && l.contains("workspace=\"ws\"")
        })
        .unwrap_or_else(|| panic!("no activity metric in:\n{metrics}"));
    let value: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now - value).abs() <= 10, "{line}");

    // Idle for 5 s: the webhook is called (the first attempt fails with a
    // 500 and is retried), signed, once.
    let calls = hook.wait_accepted(1, Duration::from_secs(20)).await;
    let call = &calls[0];
    assert_eq!(call.path, "/idle");
    assert_eq!(call.headers["berth-event"], "workspace.idle");
    assert!(signed(call, SECRET), "{call:?}");
    assert!(!signed(call, "another-secret-0123456789"));
    assert_eq!(call.body["user"], "admin");
    assert_eq!(call.body["workspace"], "ws");
    assert!(
        call.body["idle_seconds"].as_i64().unwrap() >= 5,
        "{:?}",
        call.body
    );
    assert_eq!(hook.calls().len(), 2, "one failed attempt, one retry");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        hook.calls().len(),
        2,
        "not called again without new activity"
    );

    // New activity, then idle again: called again.
    let res = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let calls = hook.wait_accepted(2, Duration::from_secs(30)).await;
    assert!(signed(&calls[1], SECRET));
}
