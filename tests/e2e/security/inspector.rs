//! The request inspector holds other people's traffic: only the port's
//! owner and site admins may read it, replay it or follow it live, whatever
//! the share level, and never someone holding only a share link (issue 16).

use crate::support::{apps, Berth};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_and_admins_see_a_ports_requests() {
    let berth = Berth::start().await;
    let alice = berth
        .user_token("alice", "correct-horse", "member", Some("acme"))
        .await;
    // bob is in alice's organization and may use her app.
    let bob = berth
        .user_token("bob", "correct-horse", "member", Some("acme"))
        .await;
    berth.add_workspace(&alice, "alice", "api").await;
    let token = berth.add_agent(&alice, "alice", "api", "main").await;
    let _agent = berth.spawn_agent(&token, Default::default());
    berth.wait_agents(2).await;
    let app = apps::start("127.0.0.1:0", "private-traffic").await;
    let port = app.port();
    berth
        .share(&alice, "alice/api/main", port, json!({"level": "public"}))
        .await;
    let url = berth.app_url(&format!("{port}--main--api--alice"), "/secret-path");
    // bob uses the app (allowed: it is public).
    let res = berth
        .client(true)
        .get(&url)
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();

    let base = format!("/api/v1/workspaces/alice/api/agents/main/ports/{port}/requests");
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let (s, b) = berth.api(Method::GET, &base, &alice, None).await;
        assert_eq!(s, 200, "{b}");
        if let Some(id) = b["requests"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(Instant::now() < deadline, "nothing recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The admin too.
    let (s, b) = berth
        .api(Method::GET, &base, &berth.admin_token, None)
        .await;
    assert_eq!(s, 200, "{b}");

    // What a port that does not exist answers, for comparison.
    let (missing_status, missing) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/nope/agents/main/ports/1/requests",
            &bob,
            None,
        )
        .await;
    assert_eq!(missing_status, 404);

    // bob, although he may use the app, sees none of it: the 404 of a port
    // that does not exist, for the list, one entry, a replay and the live
    // stream alike.
    let paths = [
        (Method::GET, base.clone()),
        (Method::GET, format!("{base}/{id}")),
        (Method::POST, format!("{base}/{id}/replay")),
    ];
    for (method, path) in &paths {
        let (s, b) = berth.api(method.clone(), path, &bob, None).await;
        assert_eq!(s, 404, "{method} {path}: {b}");
        assert_eq!(b["error"], missing["error"], "{b}");
        assert!(!b.to_string().contains("secret-path"), "{b}");
    }
    let res = berth
        .client(true)
        .get(berth.api_url(&base))
        .bearer_auth(&bob)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Nobody at all: 401.
    let res = berth
        .client(true)
        .get(berth.api_url(&base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // A share link: neither its token as a bearer, nor its cookie (on the
    // control host or anywhere) opens the inspector.
    let link = berth
        .share_link(
            &alice,
            json!({"user": "alice", "workspace": "api", "agent": "main", "port": port}),
        )
        .await;
    let link_url = link["url"].as_str().unwrap();
    let link_token = link_url.split("berth_share=").nth(1).unwrap().to_owned();
    let visitor = berth.client(true);
    let res = visitor.get(link_url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for attempt in [
        visitor.get(berth.api_url(&base)).bearer_auth(&link_token),
        visitor
            .get(berth.api_url(&base))
            .header("berth-token", &link_token),
        visitor.get(berth.api_url(&base)).header("cookie", &cookie),
        visitor
            .get(berth.api_url(&format!("{base}/{id}")))
            .header("cookie", &cookie),
    ] {
        let res = attempt.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or_default();
        assert!(status == 401 || status == 404, "{status} {body}");
        assert!(!body.to_string().contains("secret-path"), "{body}");
    }
    // ...nor a replay from the app host with the link's cookie: app hosts
    // serve no API.
    let res = visitor
        .post(berth.app_url(
            &format!("{port}--main--api--alice"),
            &format!("{base}/{id}/replay"),
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    let text = res.text().await.unwrap();
    assert!(!text.contains("replay_of"), "{text}");
}
