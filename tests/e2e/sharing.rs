//! Share levels, named apps and the ports list, through the real edge.

use crate::support::{apps, Berth};
use reqwest::Method;
use serde_json::{json, Value};

/// Creates a member and returns their API token.
async fn member(berth: &Berth, name: &str, org: Option<&str>) -> String {
    berth.user_token(name, "correct-horse", "member", org).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_levels_decide_who_gets_through() {
    let berth = Berth::start().await;
    let alice = member(&berth, "alice", Some("acme")).await;
    let bob = member(&berth, "bob", Some("acme")).await;
    let carol = member(&berth, "carol", Some("globex")).await;
    berth.add_workspace(&alice, "alice", "api").await;
    let token = berth.add_agent(&alice, "alice", "api", "main").await;
    let _agent = berth.spawn_agent(&token, Default::default());
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
            let b = berth
                .share_at(
                    &alice,
                    &share_path,
                    json!({"level": level, "protocol": "http"}),
                )
                .await;
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
    berth
        .share_at(&alice, &share_path, json!({"level": "organization"}))
        .await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_open_one_port_until_revoked_expired_or_used_up() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "linked").await;
    let port = app.port();
    let new_link = |ttl: Option<i64>, max_uses: Option<i64>| {
        let mut body = json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port});
        if let Some(t) = ttl {
            body["ttl_seconds"] = json!(t);
        }
        if let Some(m) = max_uses {
            body["max_uses"] = json!(m);
        }
        let berth = &berth;
        async move { berth.share_link(&berth.admin_token, body).await }
    };
    let link = new_link(None, None).await;
    let url = link["url"].as_str().unwrap().to_owned();
    assert!(url.contains("?berth_share=berth_link_"), "{url}");
    let anon = berth.client(true);

    // Redemption: 303 to the same URL without the token, host-only cookie.
    let res = anon.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let set_cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for want in [
        "berth_share=",
        "Secure",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/",
    ] {
        assert!(set_cookie.contains(want), "{set_cookie}");
    }
    assert!(
        !set_cookie.to_ascii_lowercase().contains("domain"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let app_url = berth.app_url(&format!("{port}--main--dev--admin"), "/x");
    let res = anon
        .get(&app_url)
        .header("cookie", format!("{cookie}; mine=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["app"], "linked");
    assert_eq!(
        body["headers"]["cookie"], "mine=1",
        "the app never sees berth_share"
    );
    assert!(body["headers"].get("x-berth-user").is_none());

    // The cookie opens only this port of this agent.
    let other = berth.app_url(&format!("{}--main--dev--admin", port + 1), "/");
    let res = anon
        .get(&other)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Listing shows it (without the token); others cannot revoke it.
    let (s, list) = berth
        .api(Method::GET, "/api/v1/share-links", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200);
    assert!(
        !list.to_string().contains("berth_link_"),
        "tokens are never listed: {list}"
    );
    assert_eq!(list[0]["uses"], 1);
    let id = link["id"].as_str().unwrap();
    let eve = member(&berth, "eve", None).await;
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &eve,
            None,
        )
        .await;
    assert_eq!(s, 404);

    // Revoking cuts the visitor off on the next request, with a page saying why.
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let res = anon
        .get(&app_url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("revoked"),
        "{body}"
    );
    assert_eq!(
        anon.get(&url).send().await.unwrap().status(),
        401,
        "a revoked link redeems no more"
    );

    // Max uses counts redemptions.
    let once = new_link(None, Some(1)).await;
    let once_url = once["url"].as_str().unwrap();
    assert_eq!(anon.get(once_url).send().await.unwrap().status(), 303);
    assert_eq!(anon.get(once_url).send().await.unwrap().status(), 401);

    // A one-second link stops working by itself.
    let short = new_link(Some(1), None).await;
    let res = anon
        .get(short["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let c = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = anon
        .get(&app_url)
        .header("cookie", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Bad requests name the field.
    let (s, b) = berth
        .api(
            Method::POST,
            "/api/v1/share-links",
            &berth.admin_token,
            Some(json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port, "ttl_seconds": 0})),
        )
        .await;
    assert_eq!(s, 422);
    assert!(
        b["message"].as_str().unwrap().starts_with("ttl_seconds"),
        "{b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_between_one_owners_apps() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "api").await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/data");
    let own = format!(
        "https://5173--main--dev--admin.berth.localhost:{}",
        berth.addr.port()
    );
    let foreign = format!(
        "https://5173--main--dev--mallory.berth.localhost:{}",
        berth.addr.port()
    );
    let client = berth.client(true);
    // Preflights carry no credentials and are answered by the edge.
    for (origin, allowed) in [
        (&own, true),
        (&foreign, false),
        (&"https://evil.example".to_owned(), false),
    ] {
        let res = client
            .request(Method::OPTIONS, &url)
            .header("origin", origin.as_str())
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{origin}");
        let acao = res
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            acao.as_deref(),
            allowed.then_some(origin.as_str()),
            "{origin}"
        );
        if allowed {
            assert_eq!(res.headers()["access-control-allow-credentials"], "true");
            assert_eq!(res.headers()["access-control-allow-methods"], "PUT");
        }
    }
    // The actual request from an own origin gets the allow headers.
    let res = client
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .header("origin", own.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], own.as_str());
    let res = client
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .header("origin", foreign.as_str())
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthru_share_lets_the_app_answer_cors() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "own-cors").await;
    let port = app.port();
    let share = format!("/api/v1/workspaces/admin/dev/agents/main/ports/{port}/share");
    let b = berth
        .share_at(
            &berth.admin_token,
            &share,
            json!({"level": "owner", "cors": "passthru"}),
        )
        .await;
    assert_eq!(b["cors"], "passthru");
    let (s, b) = berth
        .api(
            Method::PUT,
            &share,
            &berth.admin_token,
            Some(json!({"level": "owner", "cors": "sometimes"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let url = berth.app_url(&format!("{port}--main--dev--admin"), "/data");
    let origin = "https://app.example.org";
    let client = berth.client(true);
    // The preflight (no credentials) reaches the app, which answers it.
    let res = client
        .request(Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["app"], "own-cors");
    assert_eq!(seen["method"], "OPTIONS");
    // Anything else still needs the owner's credentials.
    let res = client
        .request(Method::OPTIONS, &url)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .get(&url)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // The edge adds no allow headers of its own, even for the owner's origin.
    let own = format!(
        "https://5173--main--dev--admin.berth.localhost:{}",
        berth.addr.port()
    );
    let res = client
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .header("origin", own.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    // Back to the default: the edge answers preflights again.
    berth
        .share_at(&berth.admin_token, &share, json!({"level": "owner"}))
        .await;
    let res = client
        .request(Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_who_shared_and_revoked() {
    let berth = Berth::start().await;
    let bob = member(&berth, "bob", None).await;
    let share = "/api/v1/workspaces/admin/dev/agents/main/ports/4000/share";
    let (s, _) = berth
        .api(
            Method::PUT,
            share,
            &berth.admin_token,
            Some(json!({"level": "public"})),
        )
        .await;
    assert_eq!(s, 200);
    let link = berth
        .share_link(
            &berth.admin_token,
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 4000}),
        )
        .await;
    let id = link["id"].as_str().unwrap();
    // A visitor redeems it (the app need not be up: the cookie comes first).
    let res = berth
        .client(true)
        .get(link["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, log) = berth
        .api(
            Method::GET,
            "/api/v1/audit?limit=10",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{log}");
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..5],
        [
            "link.revoked",
            "link.redeemed",
            "link.created",
            "port.shared",
            "token.created"
        ],
        "{log}"
    );
    assert_eq!(log[3]["target"], "admin/dev/main:4000 public");
    assert_eq!(log[3]["actor"], "admin");
    assert_eq!(log[1]["actor"], "visitor");
    assert!(
        log[1]["target"]
            .as_str()
            .unwrap()
            .starts_with(&format!("link {id} ")),
        "{log}"
    );
    // Each event says where it came from (the test's loopback client).
    for e in log.as_array().unwrap().iter().take(4) {
        assert_eq!(e["source"], "127.0.0.1", "{e}");
    }
    // Members may not read it; bad limits name the field.
    let (s, _) = berth.api(Method::GET, "/api/v1/audit", &bob, None).await;
    assert_eq!(s, 403);
    let (s, b) = berth
        .api(
            Method::GET,
            "/api/v1/audit?limit=0",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 422, "{b}");
}

/// Behind a load balancer named in `server.trusted_proxies`, the client's
/// address comes from `X-Forwarded-For` (the rightmost hop the balancer
/// did not add itself), for the audit log and for the app; from anyone
/// else the header is the client's own word and is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_trusted_load_balancer_names_the_client() {
    let app = crate::support::apps::start("127.0.0.1:0", "whoami").await;
    let port = app.port();
    for (trusted, want) in [
        (vec!["127.0.0.1/32".to_owned()], "198.51.100.7"),
        (vec![], "127.0.0.1"),
    ] {
        let berth = Berth::start_with(crate::support::Options {
            trusted_proxies: trusted.clone(),
            ..Default::default()
        })
        .await;
        // A client lying at the front of the chain; the balancer appended
        // the address it saw.
        let xff = "6.6.6.6, 198.51.100.7";
        let share = format!("/api/v1/workspaces/admin/dev/agents/main/ports/{port}/share");
        let res = berth
            .client(true)
            .put(berth.api_url(&share))
            .bearer_auth(&berth.admin_token)
            .header("x-forwarded-for", xff)
            .json(&json!({"level": "public"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let (_, log) = berth
            .api(
                Method::GET,
                "/api/v1/audit?limit=1",
                &berth.admin_token,
                None,
            )
            .await;
        assert_eq!(log[0]["action"], "port.shared", "{log}");
        assert_eq!(log[0]["source"], want, "trusted {trusted:?}: {log}");
        let seen: Value = berth
            .client(true)
            .get(berth.app_url(&format!("{port}--main--dev--admin"), "/"))
            .header("x-forwarded-for", xff)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            seen["headers"]["x-forwarded-for"], want,
            "trusted {trusted:?}: {seen}"
        );
    }
}
