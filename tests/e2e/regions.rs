//! A regional edge (`berth edge`) next to the control plane: the region
//! registry, the watch stream (shares, tokens and link revocations arrive
//! within seconds), heartbeats and health, share links redeemed through
//! control, and serving from cache while control is down.

use crate::support::{apps, client_for, free_port, run_agent, Berth, Options};
use berth::config::{FileConfig, Overrides, RoleDefaults, ServerConfig};
use berth::roles::regional::{ControlLink, RegionalEdge};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Polls `f` every 50 ms until it is true, for at most `limit`; returns how long it took.
pub(crate) async fn within<F, Fut>(limit: Duration, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

/// A regional edge for `region` (already created at control, token given),
/// serving `*.{region}.berth.localhost` on `port`; stops when the sender
/// is used or dropped.
pub(crate) async fn start_edge(
    berth: &Berth,
    region: &str,
    token: &str,
    port: u16,
    dir: &std::path::Path,
) -> (
    RegionalEdge,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let cfg = ServerConfig::resolve(
        FileConfig::default(),
        Overrides {
            listen: Some(format!("127.0.0.1:{port}")),
            data_dir: Some(dir.join(region)),
            admin_listen: Some("off".into()),
            base_domain: Some(format!("{region}.berth.localhost")),
            wildcard: Some(format!("*.{region}.berth.localhost")),
            ..Default::default()
        },
        RoleDefaults::EDGE,
    )
    .unwrap();
    let link = ControlLink {
        url: berth.api_url(""),
        token: berth::auth::Secret::new(token),
        ca_file: Some(berth.ca_pem.clone()),
    };
    let edge = RegionalEdge::build(cfg, link, Duration::from_secs(10))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (edge, tx, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_edge_follows_control_and_serves_from_cache_when_it_is_down() {
    let control_dir = tempfile::tempdir().unwrap();
    let control_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let berth = Berth::start_with(Options {
        dir: Some(control_dir.path().join("data")),
        listen: Some(control_addr),
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();

    // The registry: admins create regions; the token is shown once.
    let edge_port = free_port();
    let region = json!({
        "name": "eu",
        "url": format!("https://eu.berth.localhost:{edge_port}"),
        "wildcard": "*.eu.berth.localhost",
    });
    let (s, created) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(region.clone()),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let token = created["region_token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("berth_region_"));
    assert_eq!(created["healthy"], false);
    let (s, _) = berth
        .api(Method::POST, "/api/v1/regions", &admin, Some(region))
        .await;
    assert_eq!(s, 409);
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(json!({"name": "us", "url": "http://us", "wildcard": "*.us.berth.localhost"})),
        )
        .await;
    assert_eq!(s, 422);
    assert!(b["message"].as_str().unwrap().starts_with("url"), "{b}");
    // A wrong region token gets nothing from the edge API.
    let (s, _) = berth
        .api(Method::GET, "/api/v1/edge/hello", "berth_region_nope", None)
        .await;
    assert_eq!(s, 401);

    // The edge: its own host and wildcard, trusting control's CA.
    let edge_dir = tempfile::tempdir().unwrap();
    let (edge, stop_edge, stopped) =
        start_edge(&berth, "eu", &token, edge_port, edge_dir.path()).await;
    assert_eq!(edge.region, "eu");
    // Its certificate comes from control's CA: one ca.pem for everything.
    let edge_ca = berth.ca_pem.clone();
    let (control_state, tunnels) = (edge.control.clone(), edge.tunnels.clone());
    // Its certificate is renewed from control in the last third of its life.
    let serial = |c: &berth::tls::SwappableCert| {
        berth::tls::info::cert_info(&c.current_chain()[0])
            .unwrap()
            .serial
    };
    let before = serial(&edge.certs);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let renew = |at| berth::roles::regional::renew_if_due(&edge.client, &edge.certs, at);
    assert!(!renew(now).await.unwrap(), "a new certificate is not due");
    assert_eq!(serial(&edge.certs), before);
    assert!(
        renew(now + 61 * 86_400).await.unwrap(),
        "due on day 61 of 90"
    );
    assert_ne!(serial(&edge.certs), before, "a new certificate is served");
    let edge_task = tokio::spawn(edge.run(async {
        let _ = stopped.await;
    }));
    within(Duration::from_secs(5), "edge follows control", || {
        let c = control_state.clone();
        async move { c.connected() }
    })
    .await;

    // An agent dials the edge, not control; the app is reached through it.
    let agent_token = berth.create_agent("api", "laptop").await;
    let app = apps::start("127.0.0.1:0", "eu-app").await;
    let agent_cfg = berth::agent::AgentConfig {
        url: format!("https://eu.berth.localhost:{edge_port}"),
        token: berth::auth::Secret::new(&agent_token),
        ca_file: Some(edge_ca.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: None,
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    };
    let stop_agent = run_agent(agent_cfg);
    within(Duration::from_secs(10), "agent on the edge", || {
        let t = tunnels.clone();
        async move { t.len() == 1 }
    })
    .await;
    let port = app.port();
    let url = format!("https://{port}--laptop--api--admin.eu.berth.localhost:{edge_port}/hello");
    let c = client_for(&edge_ca, true);
    let get = |token: Option<&str>, cookie: Option<&str>| {
        let mut r = c.get(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(k) = cookie {
            r = r.header(COOKIE, k);
        }
        async move { r.send().await.unwrap() }
    };
    // The owner's API token works at the edge (it came with the snapshot);
    // strangers get 401 for a private port.
    let res = get(Some(&admin), None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["app"], "eu-app");
    assert_eq!(get(None, None).await.status(), 401);

    // A share made at control reaches the edge within 5 s; so does unsharing.
    let share = format!("/api/v1/workspaces/admin/api/agents/laptop/ports/{port}/share");
    berth
        .share_at(&admin, &share, json!({"level": "public"}))
        .await;
    let took = within(Duration::from_secs(5), "share reaches the edge", || async {
        get(None, None).await.status() == 200
    })
    .await;
    println!("share reached the edge in {took:?}");
    let (s, _) = berth.api(Method::DELETE, &share, &admin, None).await;
    assert_eq!(s, 204);
    within(
        Duration::from_secs(5),
        "unshare reaches the edge",
        || async { get(None, None).await.status() == 401 },
    )
    .await;

    // A share link is redeemed at the edge through control, and its
    // revocation cuts the visitor off within 5 s.
    let made = berth
        .share_link(
            &admin,
            json!({"user": "admin", "workspace": "api", "agent": "laptop", "port": port}),
        )
        .await;
    let query = made["url"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let res = c.get(format!("{url}?{query}")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/hello");
    let cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(get(None, Some(&cookie)).await.status(), 200);
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{}", made["id"].as_str().unwrap()),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 204);
    within(
        Duration::from_secs(5),
        "revocation reaches the edge",
        || async { get(None, Some(&cookie)).await.status() == 401 },
    )
    .await;

    // A browser signs in at control and lands on the app at the edge: the
    // one-time code is exchanged through control, bound to the edge's host.
    let (s, _) = berth
        .api(
            Method::POST,
            "/api/v1/users",
            &admin,
            Some(json!({"username": "bob", "email": "bob@example.com", "password": "bob-password", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201);
    berth
        .share_at(&admin, &share, json!({"level": "authenticated"}))
        .await;
    let html = "text/html";
    within(
        Duration::from_secs(5),
        "authenticated share at the edge",
        || async {
            c.get(&url)
                .header("accept", html)
                .send()
                .await
                .unwrap()
                .status()
                == 303
        },
    )
    .await;
    let res = c.get(&url).header("accept", html).send().await.unwrap();
    let signin = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        signin.starts_with(&berth.api_url("/signin?return_to=")),
        "{signin}"
    );
    // The regional edge's sign-in state: in the URL, and in a cookie on its host.
    let state_cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        state_cookie.starts_with("__Host-berth_state="),
        "{state_cookie}"
    );
    let state = reqwest::Url::parse(&signin)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let res = berth
        .client(true)
        .post(berth.api_url("/signin"))
        .form(&[
            ("username", "bob"),
            ("password", "bob-password"),
            ("return_to", url.as_str()),
            ("state", state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let callback = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let edge_origin = format!("https://{port}--laptop--api--admin.eu.berth.localhost:{edge_port}");
    assert!(
        callback.starts_with(&format!("{edge_origin}/_berth/auth/callback?code=")),
        "{callback}"
    );
    // Exchanged over HTTPS with control, with the browser's state.
    let callback_with_state = || c.get(&callback).header(COOKIE, &state_cookie).send();
    let res = callback_with_state().await.unwrap();
    assert_eq!(res.status(), 303);
    let app_cookie = res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(app_cookie.starts_with("__Host-berth_app="), "{app_cookie}");
    // A code works once.
    assert_eq!(callback_with_state().await.unwrap().status(), 401);
    let res = get(None, Some(&app_cookie)).await;
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "bob");
    // A return_to under no region's wildcard is still refused.
    let res = berth
        .client(true)
        .get(berth.api_url("/signin?return_to=https%3A%2F%2F3000--a--b--c.evil.example%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Heartbeats: the region is healthy, with one agent.
    within(
        Duration::from_secs(10),
        "region healthy with its agent",
        || async {
            let (_, list) = berth
                .api(Method::GET, "/api/v1/regions", &admin, None)
                .await;
            list[0]["healthy"] == true && list[0]["agents"] == 1
        },
    )
    .await;
    let (_, list) = berth
        .api(Method::GET, "/api/v1/regions", &admin, None)
        .await;
    assert_eq!(list[0]["name"], "eu");
    assert_eq!(list[0]["version"], env!("CARGO_PKG_VERSION"));
    assert!(list[0]["last_heartbeat"].as_str().unwrap().ends_with('Z'));

    // Control goes away: the edge keeps serving what it knows, and says so.
    berth
        .share_at(&admin, &share, json!({"level": "public"}))
        .await;
    within(Duration::from_secs(5), "share reaches the edge", || async {
        get(None, None).await.status() == 200
    })
    .await;
    let readyz = format!("https://eu.berth.localhost:{edge_port}/readyz");
    let ready = |c: reqwest::Client, u: String| async move {
        let r = c.get(u).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(
        ready(c.clone(), readyz.clone()).await.1["control"],
        "connected"
    );
    let kept = berth.stop().await;
    within(
        Duration::from_secs(20),
        "edge notices control is gone",
        || {
            let c = control_state.clone();
            async move { !c.connected() }
        },
    )
    .await;
    let (status, body) = ready(c.clone(), readyz.clone()).await;
    assert_eq!((status, &body["control"]), (200, &json!("unreachable")));
    assert_eq!(get(None, None).await.status(), 200, "served from cache");

    // Control comes back on the same data and address: the edge follows again.
    let berth = Berth::start_with(Options {
        dir: Some(control_dir.path().join("data")),
        listen: Some(control_addr),
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    within(
        Duration::from_secs(15),
        "edge follows control again",
        || {
            let c = control_state.clone();
            async move { c.connected() }
        },
    )
    .await;
    assert_eq!(ready(c.clone(), readyz).await.1["control"], "connected");
    drop(kept);
    drop(berth);
    let _ = stop_agent.send(());
    let _ = stop_edge.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), edge_task).await;
}

/// The status of `GET /` on app port `port` of admin/api/laptop at `host`
/// (0 when the request fails).
async fn through(c: &reqwest::Client, port: u16, host: &str) -> u16 {
    c.get(format!("https://{port}--laptop--api--admin.{host}/"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Two regions and control, at different distances (delay lines on
/// loopback): the agent moves to the nearest, and when that edge dies it is
/// back through the next nearest within seconds, with no one's help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_picks_the_nearest_region_and_fails_over_when_its_edge_dies() {
    use crate::support::delay::Delay;
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    // Control is 80 ms away from the agent, eu 160 ms, us next door.
    let to_control = Delay::start(berth.addr, Duration::from_millis(80)).await;
    let (eu_port, us_port) = (free_port(), free_port());
    let to_eu = Delay::start(
        format!("127.0.0.1:{eu_port}").parse().unwrap(),
        Duration::from_millis(160),
    )
    .await;
    let mut tokens = Vec::new();
    for (name, url) in [
        (
            "eu",
            format!("https://eu.berth.localhost:{}", to_eu.addr.port()),
        ),
        ("us", format!("https://us.berth.localhost:{us_port}")),
    ] {
        let (s, r) = berth
            .api(
                Method::POST,
                "/api/v1/regions",
                &admin,
                Some(json!({"name": name, "url": url, "wildcard": format!("*.{name}.berth.localhost")})),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        tokens.push(r["region_token"].as_str().unwrap().to_owned());
    }
    let dir = tempfile::tempdir().unwrap();
    let (eu, stop_eu, eu_rx) = start_edge(&berth, "eu", &tokens[0], eu_port, dir.path()).await;
    let (us, stop_us, us_rx) = start_edge(&berth, "us", &tokens[1], us_port, dir.path()).await;
    let (eu_tunnels, us_tunnels) = (eu.tunnels.clone(), us.tunnels.clone());
    let eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    let us_task = tokio::spawn(us.run(async {
        let _ = us_rx.await;
    }));
    within(Duration::from_secs(10), "both regions healthy", || async {
        let (_, list) = berth
            .api(Method::GET, "/api/v1/regions", &admin, None)
            .await;
        list.as_array()
            .is_some_and(|l| l.len() == 2 && l.iter().all(|r| r["healthy"] == true))
    })
    .await;
    // Control refreshes the list it gives agents every 2 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The agent is told only control's URL (through its 80 ms path).
    let agent_token = berth.create_agent("api", "laptop").await;
    let app = apps::start("127.0.0.1:0", "roaming").await;
    let cfg = berth::agent::AgentConfig {
        url: format!("https://berth.localhost:{}", to_control.addr.port()),
        token: berth::auth::Secret::new(&agent_token),
        ca_file: Some(berth.ca_pem.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: None,
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    };
    let stop_agent = run_agent(cfg);
    let took = within(Duration::from_secs(15), "agent settles on us", || {
        let (u, e, c) = (
            us_tunnels.clone(),
            eu_tunnels.clone(),
            berth.server.tunnels.clone(),
        );
        async move { u.len() == 1 && e.is_empty() && c.is_empty() }
    })
    .await;
    println!("the agent settled on the nearest region (us) after {took:?}");
    let share = format!(
        "/api/v1/workspaces/admin/api/agents/laptop/ports/{}/share",
        app.port()
    );
    berth
        .share_at(&admin, &share, json!({"level": "public"}))
        .await;
    let c = client_for(&berth.ca_pem, true);
    let port = app.port();
    let us_host = format!("us.berth.localhost:{us_port}");
    within(Duration::from_secs(5), "app through us", || async {
        through(&c, port, &us_host).await == 200
    })
    .await;

    // us dies: the agent is back through control (80 ms) before eu (160 ms).
    let died = Instant::now();
    let _ = stop_us.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), us_task).await;
    let control_host = format!("berth.localhost:{}", berth.addr.port());
    within(
        Duration::from_secs(10),
        "agent back through control",
        || {
            let c = berth.server.tunnels.clone();
            async move { c.len() == 1 }
        },
    )
    .await;
    within(Duration::from_secs(5), "app through control", || async {
        through(&c, port, &control_host).await == 200
    })
    .await;
    println!(
        "fail-over: reachable again {:?} after the us edge died",
        died.elapsed()
    );
    assert!(
        died.elapsed() < Duration::from_secs(10),
        "{:?}",
        died.elapsed()
    );
    assert!(eu_tunnels.is_empty());

    // Pinned to eu, an agent goes there and nowhere else.
    let pinned_token = berth.create_agent("api", "pinned").await;
    let cfg = berth::agent::AgentConfig {
        url: format!("https://berth.localhost:{}", to_control.addr.port()),
        token: berth::auth::Secret::new(&pinned_token),
        ca_file: Some(berth.ca_pem.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: Some("eu".into()),
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    };
    let stop_pinned = run_agent(cfg);
    within(Duration::from_secs(10), "pinned agent on eu", || {
        let e = eu_tunnels.clone();
        async move { e.len() == 1 }
    })
    .await;
    assert_eq!(
        berth.server.tunnels.len(),
        1,
        "only the roaming agent on control"
    );

    let _ = stop_agent.send(());
    let _ = stop_pinned.send(());
    let _ = stop_eu.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), eu_task).await;
}

/// Sends a `CONNECT` to `host:port` over HTTP/2 with the relay headers, as
/// another edge would, and returns the status and its `berth-error`.
async fn forged_relay(
    ca: &std::path::Path,
    host: &str,
    port: u16,
    agent_id: i64,
    secret: Option<&str>,
) -> (u16, String) {
    use http_body_util::Empty;
    let tls = berth::tls::client::client_config(Some(ca), &[b"h2"]).unwrap();
    let stream = berth::tls::client::connect(host, port, tls).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{host}:{port}"))
        .header("berth-relay-agent", agent_id)
        .header("berth-relay-port", 1);
    if let Some(s) = secret {
        req = req.header("berth-relay-auth", s);
    }
    let res = sender
        .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let code = res
        .headers()
        .get("berth-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (res.status().as_u16(), code)
}

/// An agent connected to one region's edge is reachable through every
/// other edge (control's own included): they relay to the edge that holds
/// its tunnel, over an authenticated HTTP/2 link, with the bytes intact.
/// When that edge stops, the others learn at once and say the agent is
/// offline instead of relaying into nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_region_relays_to_the_edge_that_holds_the_agent() {
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    let (eu_port, us_port) = (free_port(), free_port());
    let mut tokens = Vec::new();
    for (name, port) in [("eu", eu_port), ("us", us_port)] {
        let (s, r) = berth
            .api(
                Method::POST,
                "/api/v1/regions",
                &admin,
                Some(json!({"name": name, "url": format!("https://{name}.berth.localhost:{port}"), "wildcard": format!("*.{name}.berth.localhost")})),
            )
            .await;
        assert_eq!(s, 201, "{r}");
        tokens.push(r["region_token"].as_str().unwrap().to_owned());
    }
    let dir = tempfile::tempdir().unwrap();
    let (eu, stop_eu, eu_rx) = start_edge(&berth, "eu", &tokens[0], eu_port, dir.path()).await;
    let (us, stop_us, us_rx) = start_edge(&berth, "us", &tokens[1], us_port, dir.path()).await;
    let (eu_tunnels, us_tunnels, us_catalog) =
        (eu.tunnels.clone(), us.tunnels.clone(), us.catalog.clone());
    let eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    let us_task = tokio::spawn(us.run(async {
        let _ = us_rx.await;
    }));

    // The agent is pinned to eu.
    let agent_token = berth.create_agent("api", "laptop").await;
    let app = apps::start("127.0.0.1:0", "relayed").await;
    let stop_agent = run_agent(berth::agent::AgentConfig {
        url: berth.api_url(""),
        token: berth::auth::Secret::new(&agent_token),
        ca_file: Some(berth.ca_pem.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: Some("eu".into()),
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    });
    within(Duration::from_secs(10), "agent on eu", || {
        let e = eu_tunnels.clone();
        async move { e.len() == 1 }
    })
    .await;
    let agent_id = eu_tunnels.agent_ids()[0];
    let eu_url = format!("https://eu.berth.localhost:{eu_port}");
    let took = within(
        Duration::from_secs(5),
        "us learns where the agent is",
        || {
            let (c, u) = (us_catalog.clone(), eu_url.clone());
            async move { c.tunnels_at(agent_id) == vec![u] }
        },
    )
    .await;
    println!("us learnt the agent is on eu {took:?} after it connected");
    assert_eq!(berth.server.tunnels.len(), 0);
    assert!(us_tunnels.is_empty());
    // Control reports it connected, though not to control.
    let (s, a) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/admin/api/agents",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a[0]["connected"], true, "{a}");
    // ...and lists its listening ports, asked through the relay.
    let (s, ports) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/admin/api/agents/laptop/ports",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200, "{ports}");
    assert!(
        ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["port"] == app.port()),
        "{ports}"
    );

    let port = app.port();
    let c = client_for(&berth.ca_pem, false);
    let control_host = format!("berth.localhost:{}", berth.addr.port());
    let us_host = format!("us.berth.localhost:{us_port}");
    let eu_host = format!("eu.berth.localhost:{eu_port}");
    for host in [&eu_host, &us_host, &control_host] {
        let res = c
            .get(format!("https://{port}--laptop--api--admin.{host}/hello"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "through {host}");
        assert_eq!(res.json::<Value>().await.unwrap()["app"], "relayed");
        // Authorization still happens at the first edge.
        let res = c
            .get(format!("https://{port}--laptop--api--admin.{host}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "through {host}");
    }
    // 32 MiB through the relay, byte for byte, over HTTP/2 and HTTP/1.1.
    for client in [
        client_for(&berth.ca_pem, false),
        client_for(&berth.ca_pem, true),
    ] {
        let n: u64 = 32 * 1024 * 1024;
        let t0 = Instant::now();
        let body = client
            .get(format!(
                "https://{port}--laptop--api--admin.{us_host}/download?bytes={n}"
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len() as u64, n);
        assert!(body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == apps::pattern(i as u64)));
        println!("32 MiB through us -> eu in {:?}", t0.elapsed());
    }
    // The link itself: nothing without the deployment's secret, and a
    // holder serves only its own tunnels (no second hop).
    assert_eq!(
        forged_relay(&berth.ca_pem, "eu.berth.localhost", eu_port, agent_id, None).await,
        (403, "relay-refused".into())
    );
    assert_eq!(
        forged_relay(
            &berth.ca_pem,
            "eu.berth.localhost",
            eu_port,
            agent_id,
            Some("0123abcd")
        )
        .await,
        (403, "relay-refused".into())
    );
    let store = berth::store::Store::open(&berth.dir).await.unwrap();
    let key = store.secret_key("cookie-signing-key").await.unwrap();
    let secret = hex::encode(berth::auth::cookie::CookieKey::new(key).derive("relay", "v1"));
    assert_eq!(
        forged_relay(
            &berth.ca_pem,
            "us.berth.localhost",
            us_port,
            agent_id,
            Some(&secret)
        )
        .await,
        (404, "not-here".into())
    );

    // eu stops: the others stop relaying at once and say the agent is away.
    let _ = stop_eu.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), eu_task).await;
    let took = within(Duration::from_secs(5), "us forgets eu's tunnel", || {
        let c = us_catalog.clone();
        async move { c.tunnels_at(agent_id).is_empty() }
    })
    .await;
    println!("us forgot eu's tunnel {took:?} after eu stopped");
    let res = c
        .get(format!(
            "https://{port}--laptop--api--admin.{us_host}/hello"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);

    let _ = stop_agent.send(());
    let _ = stop_us.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), us_task).await;
}

/// SIGTERM on an edge: it first asks its agents to move (they dial another
/// region and retire the old tunnel gracefully), then drains. A stream in
/// flight through the stopping edge finishes whole, the agent is on the
/// other region before the edge is gone, and requests through the other
/// region (relayed to the stopping edge, then served locally) never fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_edge_moves_its_agents_first() {
    use crate::support::delay::Delay;
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    // Control is 80 ms from the agent, eu next door: the agent picks eu.
    let to_control = Delay::start(berth.addr, Duration::from_millis(80)).await;
    let eu_port = free_port();
    let (s, r) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &admin,
            Some(json!({"name": "eu", "url": format!("https://eu.berth.localhost:{eu_port}"), "wildcard": "*.eu.berth.localhost"})),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let dir = tempfile::tempdir().unwrap();
    let token = r["region_token"].as_str().unwrap().to_owned();
    let (eu, stop_eu, eu_rx) = start_edge(&berth, "eu", &token, eu_port, dir.path()).await;
    let eu_tunnels = eu.tunnels.clone();
    let eu_task = tokio::spawn(eu.run(async {
        let _ = eu_rx.await;
    }));
    within(Duration::from_secs(10), "eu healthy", || async {
        let (_, list) = berth
            .api(Method::GET, "/api/v1/regions", &admin, None)
            .await;
        list[0]["healthy"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let agent_token = berth.create_agent("api", "laptop").await;
    let app = apps::start("127.0.0.1:0", "moving").await;
    let stop_agent = run_agent(berth::agent::AgentConfig {
        url: format!("https://berth.localhost:{}", to_control.addr.port()),
        token: berth::auth::Secret::new(&agent_token),
        ca_file: Some(berth.ca_pem.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: None,
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    });
    within(Duration::from_secs(15), "agent settles on eu", || {
        let (e, c) = (eu_tunnels.clone(), berth.server.tunnels.clone());
        async move { e.len() == 1 && c.is_empty() }
    })
    .await;
    let port = app.port();
    let share = format!("/api/v1/workspaces/admin/api/agents/laptop/ports/{port}/share");
    berth
        .share_at(&admin, &share, json!({"level": "public"}))
        .await;
    let c = client_for(&berth.ca_pem, true);
    let control_host = format!("berth.localhost:{}", berth.addr.port());
    let eu_host = format!("eu.berth.localhost:{eu_port}");
    within(
        Duration::from_secs(5),
        "app through control, relayed to eu",
        || async { through(&c, port, &control_host).await == 200 },
    )
    .await;

    // Requests through control all along, and a 2-second stream through eu.
    let stop_polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (c, host, stop) = (c.clone(), control_host.clone(), stop_polling.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match through(&c, port, &host).await {
                    200 => ok += 1,
                    other => failed.push(other),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        })
    };
    let stream = {
        let c = c.clone();
        let url = format!("https://{port}--laptop--api--admin.{eu_host}/sse?n=20&gap_ms=100");
        tokio::spawn(async move { c.get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped = Instant::now();
    let _ = stop_eu.send(());
    let moved = within(Duration::from_secs(10), "agent moves to control", || {
        let c = berth.server.tunnels.clone();
        async move { c.len() == 1 }
    })
    .await;
    assert!(!eu_task.is_finished(), "the agent moved before eu was gone");
    let _ = tokio::time::timeout(Duration::from_secs(20), eu_task).await;
    let gone = stopped.elapsed();
    println!("SIGTERM on eu: the agent was on control after {moved:?}; eu exited after {gone:?}");
    let body = stream.await.unwrap();
    assert_eq!(
        body.matches("data: event").count(),
        20,
        "the stream through eu finished whole: {body}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_polling.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = poller.await.unwrap();
    println!(
        "{ok} requests through control during the move, {} failed",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests failed during the move: {failed:?}"
    );
    assert!(ok > 10);
    assert!(eu_tunnels.is_empty());
    let _ = stop_agent.send(());
}
