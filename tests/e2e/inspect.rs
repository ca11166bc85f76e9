//! The request inspector (issue 16) through a real edge, tunnel and app:
//! what is recorded, in which order, without berth's credentials; bounds;
//! WebSockets and event streams as one entry; the live stream; replay.

use crate::support::{apps, Berth, Options};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `/api/v1/workspaces/admin/dev/agents/main/ports/{port}/requests{rest}`
fn requests_path(port: u16, rest: &str) -> String {
    format!("/api/v1/workspaces/admin/dev/agents/main/ports/{port}/requests{rest}")
}

/// The port's recorded exchanges as the admin sees them, waiting up to
/// 10 s for at least `n` (an exchange is kept when its response ends).
async fn wait_requests(berth: &Berth, port: u16, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, b) = berth
            .api(
                Method::GET,
                &requests_path(port, ""),
                &berth.admin_token,
                None,
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let list = b["requests"].as_array().unwrap().clone();
        if list.len() >= n || Instant::now() > deadline {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_are_recorded_newest_first_without_berths_credentials() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "inspected").await;
    let port = app.port();
    let client = berth.client(true);
    let label = format!("{port}--main--dev--admin");
    let res = client
        .get(berth.app_url(&label, "/hello?x=1"))
        .bearer_auth(&berth.admin_token)
        .header("cookie", "theirs=1; __Host-berth_app=forged")
        .header("x-trace", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    let res = client
        .post(berth.app_url(&label, "/upload"))
        .header("berth-token", &berth.admin_token)
        .body("hello inspector")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let uploaded: Value = res.json().await.unwrap();

    let list = wait_requests(&berth, port, 2).await;
    assert_eq!(list.len(), 2, "{list:?}");
    // Newest first.
    let (post, get) = (&list[0], &list[1]);
    assert_eq!(post["method"], "POST");
    assert_eq!(get["method"], "GET");
    assert_eq!(
        get["url"],
        berth.app_url(&label, "/hello?x=1").as_str(),
        "{get}"
    );
    assert_eq!(get["status"], 200);
    assert_eq!(get["kind"], "http");
    assert!(get["ttfb_ms"].as_f64().unwrap() > 0.0, "{get}");
    assert!(get["duration_ms"].as_f64().unwrap() >= get["ttfb_ms"].as_f64().unwrap());
    let headers = get["request_headers"].as_array().unwrap();
    assert!(headers.contains(&json!(["x-trace", "abc"])), "{headers:?}");
    assert!(
        headers.contains(&json!(["cookie", "theirs=1"])),
        "{headers:?}"
    );
    assert_eq!(post["request_body"]["data"], "hello inspector");
    assert_eq!(post["request_bytes"], 15);
    let answer: Value =
        serde_json::from_str(post["response_body"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(answer, uploaded);
    assert_ne!(post["id"], get["id"]);

    // Berth's credentials appear nowhere in what is kept.
    let all = serde_json::to_string(&list).unwrap();
    assert!(!all.contains(&berth.admin_token), "token kept: {all}");
    assert!(!all.contains("forged"), "berth cookie kept: {all}");
    assert!(!all.to_ascii_lowercase().contains("berth-token"), "{all}");

    // One of them by id.
    let id = get["id"].as_str().unwrap();
    let (s, one) = berth
        .api(
            Method::GET,
            &requests_path(port, &format!("/{id}")),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(&one, get);
    let (s, b) = berth
        .api(
            Method::GET,
            &requests_path(port, "/nope-1"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
    // ?limit
    let (s, b) = berth
        .api(
            Method::GET,
            &requests_path(port, "?limit=1"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["requests"].as_array().unwrap().len(), 1);
    assert_eq!(b["requests"][0]["method"], "POST");

    // An edge error page is recorded too, with its code.
    let closed = apps::start("127.0.0.1:0", "gone").await;
    let closed_port = closed.port();
    drop(closed);
    let res = client
        .get(berth.app_url(&format!("{closed_port}--main--dev--admin"), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    assert!(status >= 500, "{status}");
    let list = wait_requests(&berth, closed_port, 1).await;
    assert_eq!(list[0]["status"], status);
    assert!(list[0]["error"].is_string(), "{}", list[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_keeps_only_its_bound_and_bodies_can_be_off() {
    let berth = Berth::start_with(Options {
        config: Some("[inspector]\nmax_entries_per_port = 5\nbody_bytes = 0\n".into()),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "bounded").await;
    let port = app.port();
    let client = berth.client(true);
    let label = format!("{port}--main--dev--admin");
    for i in 0..20 {
        let res = client
            .post(berth.app_url(&label, &format!("/upload?i={i}")))
            .bearer_auth(&berth.admin_token)
            .body("some body")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
    // Wait for the last one, then check the bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let list = wait_requests(&berth, port, 5).await;
        if list[0]["url"].as_str().unwrap().ends_with("i=19") || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(list.len(), 5);
    let urls: Vec<&str> = list.iter().map(|e| e["url"].as_str().unwrap()).collect();
    for (n, url) in urls.iter().enumerate() {
        assert!(url.ends_with(&format!("i={}", 19 - n)), "{urls:?}");
    }
    for e in &list {
        assert!(e.get("request_body").is_none(), "{e}");
        assert!(e.get("response_body").is_none(), "{e}");
        assert_eq!(e["request_bytes"], 9);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_for_the_deployment_records_nothing() {
    let berth = Berth::start_with(Options {
        config: Some("[inspector]\nenabled = false\n".into()),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "unseen").await;
    let port = app.port();
    let res = berth
        .client(true)
        .get(berth.app_url(&format!("{port}--main--dev--admin"), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, b) = berth
        .api(
            Method::GET,
            &requests_path(port, ""),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["requests"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_event_streams_are_one_entry_with_their_duration() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "streams").await;
    let port = app.port();
    let label = format!("{port}--main--dev--admin");

    // An event stream: 3 events 300 ms apart.
    let res = berth
        .client(true)
        .get(berth.app_url(&label, "/sse?n=3&gap_ms=300"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(text.contains("event 2"), "{text}");

    // A WebSocket held open for 500 ms.
    let host = format!("{label}.berth.localhost");
    let tls = crate::streaming::tls_to(&berth, &host, b"http/1.1").await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://{host}:{}/ws", berth.addr.port()),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", berth.admin_token).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text("ping"))
        .await
        .unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.to_text().unwrap(), "ping");
    tokio::time::sleep(Duration::from_millis(500)).await;
    ws.close(None).await.unwrap();
    drop(ws);

    let list = wait_requests(&berth, port, 2).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let ws = list.iter().find(|e| e["kind"] == "websocket").expect("ws");
    let sse = list.iter().find(|e| e["kind"] == "stream").expect("sse");
    assert_eq!(ws["status"], 101);
    assert!(ws["duration_ms"].as_f64().unwrap() >= 500.0, "{ws}");
    assert_eq!(sse["status"], 200);
    assert!(sse["duration_ms"].as_f64().unwrap() >= 600.0, "{sse}");
    assert!(
        sse["response_body"]["data"]
            .as_str()
            .unwrap()
            .contains("event 2"),
        "{sse}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_sends_new_exchanges_of_its_port() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "live").await;
    let other = apps::start("127.0.0.1:0", "other").await;
    let port = app.port();
    let client = berth.client(true);
    let mut live = client
        .get(berth.api_url(&requests_path(port, "")))
        .bearer_auth(&berth.admin_token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    // Another port's request first: not on this stream.
    for (p, path) in [(other.port(), "/not-this"), (port, "/this-one")] {
        let res = client
            .get(berth.app_url(&format!("{p}--main--dev--admin"), path))
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        res.bytes().await.unwrap();
    }
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = live.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("/this-one") {
                return;
            }
        }
    })
    .await;
    assert!(got.is_ok(), "no event within 10 s: {seen}");
    assert!(!seen.contains("/not-this"), "{seen}");
    let data = seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("/this-one"))
        .unwrap();
    let e: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(e["status"], 200);
    assert!(seen.contains("event: exchange"), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_the_request_again_as_its_owner() {
    let berth = Berth::start().await;
    // The port belongs to alice; the admin replays it, as alice.
    let alice = berth
        .user_token("alice", "correct-horse", "member", None)
        .await;
    berth.add_workspace(&alice, "alice", "api").await;
    let token = berth.add_agent(&alice, "alice", "api", "main").await;
    let _agent = berth.spawn_agent(&token, Default::default());
    berth.wait_agents(2).await;
    let app = apps::start("127.0.0.1:0", "replayed").await;
    let port = app.port();
    let label = format!("{port}--main--api--alice");
    let client = berth.client(true);
    let res = client
        .post(berth.app_url(&label, "/upload"))
        .bearer_auth(&alice)
        .body("first body")
        .send()
        .await
        .unwrap();
    let first: Value = res.json().await.unwrap();
    let res = client
        .get(berth.app_url(&label, "/echo"))
        .bearer_auth(&alice)
        .header("x-keep", "yes")
        .send()
        .await
        .unwrap();
    res.bytes().await.unwrap();
    let base = format!("/api/v1/workspaces/alice/api/agents/main/ports/{port}/requests");
    let deadline = Instant::now() + Duration::from_secs(10);
    let list = loop {
        let (s, b) = berth.api(Method::GET, &base, &alice, None).await;
        assert_eq!(s, 200, "{b}");
        let list = b["requests"].as_array().unwrap().clone();
        if list.len() >= 2 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (get, post) = (&list[0], &list[1]);

    // As recorded: the same body, the same answer.
    let (s, again) = berth
        .api(
            Method::POST,
            &format!("{base}/{}/replay", post["id"].as_str().unwrap()),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 201, "{again}");
    assert_eq!(again["replay_of"], post["id"]);
    assert_eq!(again["status"], 200);
    let answer: Value =
        serde_json::from_str(again["response_body"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(answer, first);

    // Edited: another body and path.
    let (s, edited) = berth
        .api(
            Method::POST,
            &format!("{base}/{}/replay", post["id"].as_str().unwrap()),
            &alice,
            Some(json!({"body": "second body", "path": "/upload?edited=1"})),
        )
        .await;
    assert_eq!(s, 201, "{edited}");
    let answer: Value =
        serde_json::from_str(edited["response_body"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(answer["bytes"], 11);
    assert!(edited["url"]
        .as_str()
        .unwrap()
        .ends_with("/upload?edited=1"));

    // The GET, replayed: the app sees the owner, the recorded headers, and
    // never a berth token.
    let (s, echoed) = berth
        .api(
            Method::POST,
            &format!("{base}/{}/replay", get["id"].as_str().unwrap()),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 201, "{echoed}");
    let seen: Value =
        serde_json::from_str(echoed["response_body"]["data"].as_str().unwrap()).unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["x-keep"], "yes", "{seen}");
    assert_eq!(seen["method"], "GET");
    let text = seen.to_string();
    assert!(!text.contains(&alice) && !text.contains(&berth.admin_token));

    // Replays are recorded too.
    let (_, b) = berth.api(Method::GET, &base, &alice, None).await;
    let replays = b["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["replay_of"].is_string())
        .count();
    assert_eq!(replays, 3);

    // What cannot be sent is a 422 naming the field.
    for (edit, field) in [
        (json!({"method": "BAD METHOD"}), "method"),
        (json!({"path": "no-slash"}), "path"),
        (json!({"headers": [["bad name", "x"]]}), "headers"),
        (json!({"body": "a", "body_base64": "YQ=="}), "body"),
        (json!({"unknown": 1}), "unknown"),
    ] {
        let (s, b) = berth
            .api(
                Method::POST,
                &format!("{base}/{}/replay", get["id"].as_str().unwrap()),
                &alice,
                Some(edit.clone()),
            )
            .await;
        assert_eq!(s, 422, "{edit} -> {b}");
        assert!(
            b["message"].as_str().unwrap().contains(field),
            "{edit} -> {b}"
        );
    }
}

/// A request served by a regional edge is kept there; control's API
/// gathers it (with its own edge's) over the relay link, and replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_gathers_the_exchanges_a_regional_edge_served() {
    use crate::support::{client_for, free_port};
    let berth = Berth::start().await;
    let admin = berth.admin_token.clone();
    let eu_port = free_port();
    let (s, r) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(
                json!({"name": "eu", "url": format!("https://eu.berth.localhost:{eu_port}"),
                        "wildcard": "*.eu.berth.localhost"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let dir = tempfile::tempdir().unwrap();
    let region_token = r["region_token"].as_str().unwrap().to_owned();
    let (eu, stop_eu, eu_rx) =
        crate::regions::start_edge(&berth, "eu", &region_token, eu_port, dir.path()).await;
    let eu_catalog = eu.catalog.clone();
    let eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    // The dev agent is on control's edge; eu relays to it.
    let app = apps::start("127.0.0.1:0", "far").await;
    let port = app.port();
    let deadline = Instant::now() + Duration::from_secs(10);
    while eu_catalog.tunnels_at(1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "eu never learnt where the agent is"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = client_for(&berth.ca_pem, false);
    let res = c
        .post(format!(
            "https://{port}--main--dev--admin.eu.berth.localhost:{eu_port}/upload?via=eu"
        ))
        .bearer_auth(&admin)
        .body("from europe")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let res = c
        .get(berth.app_url(&format!("{port}--main--dev--admin"), "/via-control"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    res.bytes().await.unwrap();

    // Regions are asked once they sent a heartbeat.
    let deadline = Instant::now() + Duration::from_secs(15);
    let list = loop {
        let list = wait_requests(&berth, port, 2).await;
        if list.len() >= 2 || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list[0]["url"].as_str().unwrap().ends_with("/via-control"));
    let far = &list[1];
    assert!(
        far["url"].as_str().unwrap().contains(".eu.berth.localhost"),
        "{far}"
    );
    assert_eq!(far["request_body"]["data"], "from europe");
    assert!(!serde_json::to_string(&list).unwrap().contains(&admin));
    // By id, and replayed (from control, through the tunnel).
    let id = far["id"].as_str().unwrap();
    let (s, one) = berth
        .api(
            Method::GET,
            &requests_path(port, &format!("/{id}")),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(&one, far);
    let (s, again) = berth
        .api(
            Method::POST,
            &requests_path(port, &format!("/{id}/replay")),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 201, "{again}");
    assert_eq!(again["status"], 200);
    assert_eq!(again["request_bytes"], 11);

    // The regional edge hands its records only to a caller with the relay
    // secret (derived from the deployment's cookie key).
    for secret in [None, Some("0".repeat(64))] {
        let mut req = c
            .get(format!(
                "https://eu.berth.localhost:{eu_port}/_berth/relay/inspect"
            ))
            .header("berth-relay-agent", "1")
            .header("berth-relay-port", port.to_string());
        if let Some(s) = &secret {
            req = req.header("berth-relay-auth", s);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{secret:?}");
        assert!(!res.text().await.unwrap().contains("from europe"));
    }
    let _ = stop_eu.send(());
    let _ = eu_task.await;
}

/// A share can turn recording off for its port (`"inspect": false`), and on
/// again; the ports list says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_turns_recording_off_for_its_port() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "quiet").await;
    let port = app.port();
    let client = berth.client(true);
    let label = format!("{port}--main--dev--admin");
    let visit = |path: &'static str| {
        let req = client
            .get(berth.app_url(&label, path))
            .bearer_auth(&berth.admin_token);
        async move { req.send().await.unwrap().bytes().await.unwrap() }
    };
    let b = berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "owner", "inspect": false}),
        )
        .await;
    assert_eq!(b["inspect"], false, "{b}");
    let (_, ports) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/admin/dev/agents/main/ports",
            &berth.admin_token,
            None,
        )
        .await;
    let listed = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap()
        .clone();
    assert_eq!(listed["inspect"], false, "{listed}");
    visit("/unrecorded").await;
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "owner"}),
        )
        .await;
    visit("/recorded").await;
    let list = wait_requests(&berth, port, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let list = if list.is_empty() {
        list
    } else {
        wait_requests(&berth, port, 1).await
    };
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0]["url"].as_str().unwrap().ends_with("/recorded"));
}

/// The live stream carries what a regional edge serves too: control
/// follows each fresh region's records over the relay link. Requests go
/// through the regional edge (the agent's tunnel is on control's edge)
/// until one shows up on the stream; the relay's follow path is closed
/// to anyone without the relay secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_carries_exchanges_a_regional_edge_served() {
    use crate::support::{client_for, free_port};
    let berth = Berth::start().await;
    let admin = berth.admin_token.clone();
    let eu_port = free_port();
    let (s, r) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(
                json!({"name": "eu", "url": format!("https://eu.berth.localhost:{eu_port}"),
                        "wildcard": "*.eu.berth.localhost"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let dir = tempfile::tempdir().unwrap();
    let region_token = r["region_token"].as_str().unwrap().to_owned();
    let (eu, stop_eu, eu_rx) =
        crate::regions::start_edge(&berth, "eu", &region_token, eu_port, dir.path()).await;
    let eu_catalog = eu.catalog.clone();
    let eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    let app = apps::start("127.0.0.1:0", "far").await;
    let port = app.port();
    let deadline = Instant::now() + Duration::from_secs(10);
    while eu_catalog.tunnels_at(1).is_empty() {
        assert!(
            Instant::now() < deadline,
            "eu never learnt where the agent is"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The region is followed once it has sent a heartbeat.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, regions) = berth
            .api(Method::GET, "/api/v1/regions", &admin, None)
            .await;
        if regions[0]["healthy"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "eu never healthy: {regions}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut live = berth
        .client(true)
        .get(berth.api_url(&requests_path(port, "")))
        .bearer_auth(&admin)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let c = client_for(&berth.ca_pem, false);
    let far = format!("https://{port}--main--dev--admin.eu.berth.localhost:{eu_port}");
    let started = Instant::now();
    let mut seen = String::new();
    let mut sent = 0;
    let got = loop {
        sent += 1;
        let res = c
            .post(format!("{far}/upload?n={sent}"))
            .bearer_auth(&admin)
            .body("live from europe")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        let until = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(until);
        loop {
            tokio::select! {
                chunk = live.chunk() => match chunk.unwrap() {
                    Some(c) => seen.push_str(&String::from_utf8_lossy(&c)),
                    None => panic!("the live stream ended: {seen}"),
                },
                _ = &mut until => break,
            }
            if seen.contains(".eu.berth.localhost") {
                break;
            }
        }
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("data: ") && l.contains(".eu.berth.localhost"))
        {
            break serde_json::from_str::<Value>(&line["data: ".len()..]).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no exchange of the regional edge on the live stream after {sent} requests: {seen}"
        );
    };
    assert_eq!(got["request_body"]["data"], "live from europe", "{got}");
    assert_eq!(got["status"], 200);
    assert!(!seen.contains(&admin), "the token is on the stream");
    eprintln!(
        "first regional exchange on the live stream after {sent} request(s), {:?}",
        started.elapsed()
    );

    // Without the relay secret, the follow path answers 403 and nothing.
    for secret in [None, Some("0".repeat(64))] {
        let mut req = c
            .get(format!(
                "https://eu.berth.localhost:{eu_port}/_berth/relay/inspect/follow"
            ))
            .header("berth-relay-agent", "1")
            .header("berth-relay-port", port.to_string());
        if let Some(s) = &secret {
            req = req.header("berth-relay-auth", s);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{secret:?}");
    }
    drop(live);
    let _ = stop_eu.send(());
    let _ = eu_task.await;
}
