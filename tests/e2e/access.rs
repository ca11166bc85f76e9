//! Routing, access decisions, and what the app receives.

use crate::support::{apps, Berth};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_token_reaches_the_app_over_http1_and_http2() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/hello?x=1");
    for (http1, want) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let res = berth
            .client(http1)
            .get(&url)
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), want);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["app"], "alpha");
        assert_eq!(body["uri"], "/hello?x=1");
        assert_eq!(
            body["headers"]["host"],
            format!(
                "{}--main--dev--admin.berth.localhost:{}",
                app.port(),
                berth.addr.port()
            ),
            "the app sees the same Host over HTTP/1.1 and HTTP/2 ({want:?})"
        );
        assert_eq!(
            body["version"], "HTTP/1.1",
            "the app always speaks HTTP/1.1"
        );
    }
    // The short form works while the workspace has one agent; Berth-Token works too.
    let short = berth.app_url(&format!("{}--dev--admin", app.port()), "/");
    let res = berth
        .client(true)
        .get(&short)
        .header("Berth-Token", &berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_app() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/p?keep=1");
    let res = berth
        .client(true)
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .header("Cookie", "berth_app=secret; theme=dark; berth_share=t")
        .header("X-Berth-User", "mallory")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Host", "evil.example")
        .header("Connection", "x-hop")
        .header("X-Hop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let h = &body["headers"];
    assert_eq!(body["uri"], "/p?keep=1");
    assert!(h.get("authorization").is_none(), "{h}");
    assert!(h.get("berth-token").is_none(), "{h}");
    assert_eq!(h["cookie"], "theme=dark");
    assert_eq!(h["x-berth-user"], "admin");
    assert_eq!(h["x-berth-email"], "admin@berth.localhost");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(
        h["x-forwarded-host"],
        format!("{}--main--dev--admin.berth.localhost", app.port())
    );
    assert!(h.get("x-hop").is_none());
    // The app's own Authorization passes through untouched.
    let res = berth
        .client(true)
        .get(&url)
        .header("Berth-Token", &berth.admin_token)
        .header("Authorization", "Bearer app-jwt")
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["headers"]["authorization"], "Bearer app-jwt");
    assert!(body["headers"].get("berth-token").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_401_or_404_and_learn_nothing() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let client = berth.client(true);
    let label = format!("{}--main--dev--admin", app.port());

    // No credentials: 401 JSON for programs, 303 to sign-in for browsers, and
    // an HTML 401 page for a browser that presented a bad token.
    let res = client.get(berth.app_url(&label, "/")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    let res = client
        .get(berth.app_url(&label, "/"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&berth.api_url("/signin?return_to=")));
    let res = client
        .get(berth.app_url(&label, "/"))
        .header("Accept", "text/html")
        .bearer_auth("berth_api_0000000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // A forged token is 401 as well.
    let res = client
        .get(berth.app_url(&label, "/"))
        .bearer_auth("berth_api_0000000000000000000000000000000000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Another user's token: 404, the same as for a workspace that does not exist.
    berth
        .add_user("bob", "hunter2hunter2", "member", None)
        .await;
    let res = client
        .post(berth.api_url("/api/v1/login"))
        .json(&json!({"username": "bob", "password": "hunter2hunter2"}))
        .send()
        .await
        .unwrap();
    let bob: Value = res.json().await.unwrap();
    let bob = bob["token"].as_str().unwrap().to_owned();
    let private = client
        .get(berth.app_url(&label, "/"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(private.status(), 404);
    let private_body = private.text().await.unwrap();
    let missing = client
        .get(berth.app_url(&format!("{}--main--nope--admin", app.port()), "/"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.text().await.unwrap(),
        private_body,
        "private and missing must look alike"
    );

    // Hosts that are not app hosts: 404 that says why.
    for (host_label, why) in [("3000--main", "expected"), ("0--main--dev--admin", "port")] {
        let res = client
            .get(berth.app_url(host_label, "/"))
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{host_label}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "unknown_host");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    // Edge-reserved paths never reach the app.
    let res = client
        .get(berth.app_url(&label, "/_berth/anything"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let client = berth.client(true);
    let res = client
        .get(berth.app_url(&format!("{}--main--dev--admin", app.port()), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let plain = reqwest::Client::new();
    let metrics = plain
        .get(format!("http://{}/metrics", berth.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_edge_requests_total{status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_agents_connected 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_tunnel_streams_opened_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_upstream_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_edge_body_bytes_total{direction=\"out\"}"),
        "{metrics}"
    );
    for url in [
        format!("http://{}/healthz", berth.admin),
        format!("http://{}/readyz", berth.admin),
    ] {
        assert_eq!(plain.get(&url).send().await.unwrap().status(), 200, "{url}");
    }
    for path in ["/healthz", "/readyz"] {
        let res = client.get(berth.api_url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}
