//! An agent's set of tunnels (`berth agent --tunnels N`): the edge spreads
//! requests over them, and losing one connection costs only its own
//! in-flight requests.

use crate::support::{apps, relay::Relay, Berth};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until the agent's set at the edge has `n` open tunnels.
async fn set_of(berth: &Berth, agent: i64, n: usize) -> Vec<u64> {
    let started = Instant::now();
    loop {
        let set = berth.server.tunnels.set_generations(agent);
        if set.len() == n {
            return set;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the agent's set has {set:?}, not {n} tunnels"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_of_two_tunnels_fails_only_its_own_requests() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "sets").await;
    let token = berth.create_agent("sets", "main").await;
    // The agent's connections pass a relay that can cut one of them.
    let relay = Relay::start(0, berth.addr).await;
    let cfg = berth.agent_config(&token, relay.addr.port());
    assert_eq!(cfg.tunnels, 2, "the default");
    let _agent = crate::support::run_agent(cfg);
    berth.wait_agents(2).await;
    let agent = *berth.server.tunnels.agent_ids().last().unwrap();
    set_of(&berth, agent, 2).await;
    assert_eq!(relay.accepted(), 2, "one connection per tunnel");
    let url = berth.app_url(&format!("{}--main--sets--admin", app.port()), "/");

    // Steady load: each worker its own client connection, one request at
    // a time, so at most one request per worker is in flight at any moment.
    const WORKERS: u64 = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, url, token) = (berth.client(true), url.clone(), berth.admin_token.clone());
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answered = match client.get(&url).bearer_auth(&token).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if answered { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // Round 0 cuts the agent's first connection (its primary tunnel, which
    // its main loop redials), round 1 the second (a tunnel of the set that
    // redials on its own).
    let lost = 2;
    for (round, cut) in [0, 1].into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = set_of(&berth, agent, 2).await;
        relay.cut(cut);
        set_of(&berth, agent, 1).await;
        // At once, before the agent could have redialed: new client
        // connections (new affinities) all reach the app.
        let mut fresh = Vec::new();
        for _ in 0..16 {
            let (client, url, token) = (berth.client(true), url.clone(), berth.admin_token.clone());
            fresh.push(tokio::spawn(async move {
                let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
                res.status()
            }));
        }
        for f in fresh {
            assert_eq!(
                f.await.unwrap(),
                200,
                "round {round}: a request after the loss failed"
            );
        }
        // The agent redials the lost one into the same set.
        let again = set_of(&berth, agent, 2).await;
        assert_eq!(
            again.iter().filter(|g| before.contains(g)).count(),
            1,
            "round {round}: {again:?} after {before:?}"
        );
    }
    assert_eq!(relay.accepted(), 4, "each lost tunnel dialed once more");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("{ok} requests answered, {failed} failed over {lost} lost tunnels");
    assert!(ok > 100, "only {ok} requests answered");
    // Only a request in flight on a lost tunnel may fail: one per worker
    // at most, each time.
    assert!(
        failed <= WORKERS * lost,
        "{failed} requests failed; at most {} were in flight on the lost tunnels",
        WORKERS * lost
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_tunnel_set_header_is_refused_with_400() {
    let berth = Berth::start().await;
    let token = berth.create_agent("badset", "main").await;
    let url = format!(
        "https://berth.localhost:{}/_berth/agent/connect",
        berth.addr.port()
    );
    for bad in [
        "",
        "1/0",
        "00c0ffee00c0ffee/16",
        "00c0ffee00c0ffee/x",
        "zz/1",
    ] {
        let res = berth
            .client(true)
            .get(&url)
            .header("connection", "upgrade")
            .header("upgrade", berth::tunnel::UPGRADE_PROTOCOL)
            .header(berth::tunnel::TUNNEL_SET_HEADER, bad)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad:?}");
        let body = res.text().await.unwrap();
        assert!(
            body.contains(berth::tunnel::TUNNEL_SET_HEADER),
            "{bad:?}: {body}"
        );
    }
    assert_eq!(berth.server.tunnels.len(), 1, "only berth dev's own agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_core_runtimes_serve_and_drive_the_tunnels_they_accepted() {
    let berth = Berth::start_with(crate::support::Options {
        config: Some("[server]\nruntime = \"per-core\"\n".into()),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "cores").await;
    berth.wait_agents(1).await;
    let agent = berth.server.tunnels.agent_ids()[0];
    set_of(&berth, agent, 2).await;
    // Each tunnel is driven by the core that accepted its connection.
    let homes: Vec<Option<u16>> = (0..2)
        .map(|a| berth.server.tunnels.pick(agent, a).unwrap().home)
        .collect();
    assert!(homes.iter().all(Option::is_some), "{homes:?}");
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/");
    let mut fresh = Vec::new();
    for _ in 0..32 {
        let (client, url, token) = (berth.client(true), url.clone(), berth.admin_token.clone());
        fresh.push(tokio::spawn(async move {
            let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }));
    }
    for f in fresh {
        let (status, body) = f.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("cores"), "{body}");
    }
    // HTTP/2 too, on the same listeners.
    let res = berth
        .client(false)
        .get(&url)
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
}
