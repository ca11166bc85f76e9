//! Many agents, errors when an agent or port is not there, reconnection.

use crate::support::{apps, Berth, Options};
use berth::tunnel::agent::Upstream;
use reqwest::Method;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_each_answer_for_their_own_workspace() {
    let berth = Berth::start().await;
    // Every agent dials its own loopback address (127.0.0.2, .3, ...) on the
    // same port, where an app that names its workspace listens: a pooled
    // connection that crossed agents would answer with the wrong name.
    let first = apps::start("127.0.0.2:0", "ws0").await;
    let port = first.port();
    let mut apps_alive = vec![first];
    for i in 1..50u8 {
        apps_alive.push(apps::start(&format!("127.0.0.{}:{port}", i + 2), &format!("ws{i}")).await);
    }
    let mut stops = Vec::new();
    for i in 0..50u8 {
        let token = berth.create_agent(&format!("ws{i}"), "main").await;
        let upstream = Upstream {
            hosts: vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, i + 2))],
            ..Default::default()
        };
        stops.push(berth.spawn_agent(&token, upstream));
    }
    berth.wait_agents(51).await;

    let client = berth.client(false);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for round in 0..10 {
        for i in 0..50u8 {
            let client = client.clone();
            let url = berth.app_url(
                &format!("{port}--main--ws{i}--admin"),
                &format!("/r{round}"),
            );
            let token = berth.admin_token.clone();
            let permit = sem.clone().acquire_owned().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                let res = client.get(&url).bearer_auth(token).send().await.unwrap();
                assert_eq!(res.status(), 200, "{url}");
                let body: Value = res.json().await.unwrap();
                assert_eq!(
                    body["app"],
                    format!("ws{i}"),
                    "{url} answered by the wrong workspace"
                );
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Warm requests reuse pooled connections: far fewer streams than requests.
    let opened = berth.server.tunnels.stats.streams_opened.get();
    assert!(
        opened < 500,
        "{opened} streams for 500 requests: the pool is not reused"
    );
    drop(stops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_requests_open_no_new_stream() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "warm").await;
    let client = berth.client(true);
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/");
    let res = client
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    let before = berth.server.tunnels.stats.streams_opened.get();
    for _ in 0..20 {
        let res = client
            .get(&url)
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
    }
    assert_eq!(berth.server.tunnels.stats.streams_opened.get(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_and_offline_agent_explain_themselves() {
    let berth = Berth::start().await;
    let client = berth.client(true);
    // A port nothing listens on: find one by binding and closing.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let res = client
        .get(berth.app_url(&format!("{port}--main--dev--admin"), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "port_closed");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(&port.to_string()));

    // The browser page retries by itself.
    let res = client
        .get(berth.app_url(&format!("{port}--main--dev--admin"), "/"))
        .bearer_auth(&berth.admin_token)
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let page = res.text().await.unwrap();
    assert!(page.contains(&port.to_string()));
    assert!(
        page.contains("refresh") || page.contains("reload"),
        "{page}"
    );

    // An agent that was never started: workspace offline.
    let _token = berth.create_agent("idle", "main").await;
    let res = client
        .get(berth.app_url("3000--main--idle--admin", "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "workspace_offline");
    // Its browser page retries by itself too, until the agent is up.
    let res = client
        .get(berth.app_url("3000--main--idle--admin", "/"))
        .bearer_auth(&berth.admin_token)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{page}"
    );

    // Two agents: the short form must name them.
    let _t2 = berth.create_agent("idle", "gpu").await;
    let res = client
        .get(berth.app_url("3000--idle--admin", "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("gpu"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504() {
    let limits = berth::config::Limits {
        upstream_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let berth = Berth::start_with(Options {
        limits: Some(limits),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "slow").await;
    let res = berth
        .client(true)
        .get(berth.app_url(
            &format!("{}--main--dev--admin", app.port()),
            "/slow?ms=3000",
        ))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reconnects_after_the_edge_restarts() {
    let berth = Berth::start().await;
    let addr = berth.addr;
    let dir = berth.dir.clone();
    let app = apps::start("127.0.0.1:0", "again").await;
    let token = berth.create_agent("remote", "laptop").await;
    let _stop = berth.spawn_agent(&token, Upstream::default());
    berth.wait_agents(2).await;
    let tmp = berth.stop().await;

    // Same data dir, same port: the agent finds its way back by itself.
    let berth = Berth::start_with(Options {
        dir: Some(dir),
        listen: Some(addr),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    berth.wait_agents(2).await;
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "reconnect took {:?}",
        started.elapsed()
    );
    let res = berth
        .client(true)
        .get(berth.app_url(&format!("{}--laptop--remote--admin", app.port()), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["app"], "again");
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_workspace_closes_its_agents_tunnel() {
    let berth = Berth::start().await;
    let token = berth.create_agent("doomed", "main").await;
    let _stop = berth.spawn_agent(&token, Upstream::default());
    berth.wait_agents(2).await;
    let (s, _) = berth
        .api(
            Method::DELETE,
            "/api/v1/workspaces/admin/doomed",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let started = Instant::now();
    while berth.server.tunnels.len() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the tunnel outlived its workspace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it cannot come back: its token is gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(berth.server.tunnels.len(), 1);
}
