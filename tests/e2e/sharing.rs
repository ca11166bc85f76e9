//! Share levels, named apps and the ports list, through the real edge.

use crate::support::{apps, Berth};
use reqwest::Method;
use serde_json::{json, Value};

/// Creates a member and returns their API token.
async fn member(berth: &Berth, name: &str, org: Option<&str>) -> String {
    let mut body = json!({"username": name, "email": format!("{name}@example.com"),
                          "password": "correct-horse", "role": "member"});
    if let Some(org) = org {
        body["organization"] = json!(org);
    }
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/users",
            &berth.admin_token,
            Some(body),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let res = berth
        .client(true)
        .post(berth.api_url("/api/v1/login"))
        .json(&json!({"username": name, "password": "correct-horse"}))
        .send()
        .await
        .unwrap();
    let b: Value = res.json().await.unwrap();
    b["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_levels_decide_who_gets_through() {
    let berth = Berth::start().await;
    let alice = member(&berth, "alice", Some("acme")).await;
    let bob = member(&berth, "bob", Some("acme")).await;
    let carol = member(&berth, "carol", Some("globex")).await;
    let (s, _) = berth
        .api(
            Method::POST,
            "/api/v1/workspaces",
            &alice,
            Some(json!({"name": "api"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/workspaces/alice/api/agents",
            &alice,
            Some(json!({"name": "main"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let _agent = berth.spawn_agent(b["agent_token"].as_str().unwrap(), Default::default());
    berth.wait_agents(2).await;
    let app = apps::start("127.0.0.1:0", "alices-app").await;
    let port = app.port();
    let url = berth.app_url(&format!("{port}--main--api--alice"), "/");
    let share_path = format!("/api/v1/workspaces/alice/api/agents/main/ports/{port}/share");
    let client = berth.client(true);
    let status = |token: Option<&str>| {
        let req = client.get(&url);
        let req = match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        async move { req.send().await.unwrap().status().as_u16() }
    };

    // owner (unshared): alice and the admin only.
    let expect = |a, b, c, anon| [a, b, c, anon];
    let cases = [
        (None, expect(200, 404, 404, 401)),
        (Some("organization"), expect(200, 200, 404, 401)),
        (Some("authenticated"), expect(200, 200, 200, 401)),
        (Some("public"), expect(200, 200, 200, 200)),
    ];
    for (level, want) in cases {
        if let Some(level) = level {
            let (s, b) = berth
                .api(
                    Method::PUT,
                    &share_path,
                    &alice,
                    Some(json!({"level": level, "protocol": "http"})),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            assert_eq!(b["level"], level);
        }
        let got = [
            status(Some(&alice)).await,
            status(Some(&bob)).await,
            status(Some(&carol)).await,
            status(None).await,
        ];
        assert_eq!(got, want, "level {level:?}: alice, bob, carol, anonymous");
        assert_eq!(
            status(Some(&berth.admin_token)).await,
            200,
            "admins pass everywhere"
        );
    }

    // A public visitor is anonymous to the app; a known one is named.
    let body: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(body["headers"].get("x-berth-user").is_none());
    let body: Value = client
        .get(&url)
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["headers"]["x-berth-user"], "carol");

    // Only the owner (or an admin) may change the share; others learn nothing.
    let (s, _) = berth
        .api(
            Method::PUT,
            &share_path,
            &bob,
            Some(json!({"level": "owner"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, b) = berth
        .api(
            Method::PUT,
            &share_path,
            &alice,
            Some(json!({"level": "everyone"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");

    // Unsharing cuts the others off at once.
    let (s, _) = berth.api(Method::DELETE, &share_path, &alice, None).await;
    assert_eq!(s, 204);
    assert_eq!(status(None).await, 401);
    assert_eq!(status(Some(&bob)).await, 404);

    // A named app reaches the same port, and follows its port's share.
    let (s, b) = berth
        .api(
            Method::PUT,
            "/api/v1/workspaces/alice/api/agents/main/apps/docs",
            &alice,
            Some(json!({"port": port})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["url"]
        .as_str()
        .unwrap()
        .starts_with("https://docs--main--api--alice.berth.localhost:"));
    let named = berth.app_url("docs--main--api--alice", "/n");
    let res = client.get(&named).bearer_auth(&alice).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["app"], "alices-app");
    assert_eq!(
        client
            .get(&named)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let (s, _) = berth
        .api(
            Method::PUT,
            "/api/v1/workspaces/alice/api/agents/main/apps/3000",
            &alice,
            Some(json!({"port": port})),
        )
        .await;
    assert_eq!(s, 422, "an app name that looks like a port is refused");

    // The ports list shows what listens, with share level and URLs.
    let (s, b) = berth
        .api(
            Method::PUT,
            &share_path,
            &alice,
            Some(json!({"level": "organization"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, list) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/main/ports",
            &alice,
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["connected"], true);
    let entry = list["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("port {port} missing from {list}"));
    assert_eq!(entry["listening"], true);
    assert_eq!(entry["level"], "organization");
    assert_eq!(entry["apps"][0]["name"], "docs");
    assert_eq!(
        entry["url"],
        format!(
            "https://{port}--main--api--alice.berth.localhost:{}",
            berth.addr.port()
        )
    );
    let (s, _) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/main/ports",
            &carol,
            None,
        )
        .await;
    assert_eq!(s, 404);
}
