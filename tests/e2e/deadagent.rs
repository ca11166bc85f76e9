//! A network partition between an agent and the edge: nothing is closed,
//! bytes just stop. The edge must notice by its own pings and drop the agent,
//! and the agent must find its way back once the path works again.

use crate::support::{apps, relay::Relay, Berth};
use berth::agent;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn get_status(berth: &Berth, url: &str) -> (u16, Value) {
    let res = berth
        .client(true)
        .get(url)
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_drops_a_partitioned_agent_and_it_comes_back() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "far").await;
    let token = berth.create_agent("far", "main").await;
    let relay = Relay::start(0, berth.addr).await;

    // The agent dials berth.localhost at the relay's port; the relay
    // forwards to the real listener.
    let cfg = berth.agent_config(&token, relay.addr.port());
    let cfg_tunnels = cfg.tunnels;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent::run(cfg, async {
        let _ = stopped.await;
    }));
    berth.wait_agents_exactly(2, Duration::from_secs(10)).await;
    // One connection per tunnel of the agent's set.
    let tunnels = usize::from(cfg_tunnels);
    while relay.accepted() < tunnels {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(relay.accepted(), tunnels);
    let url = berth.app_url(&format!("{}--main--far--admin", app.port()), "/before");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["app"], "far");

    // Partition.
    relay.freeze();
    let took = berth.wait_agents_exactly(1, Duration::from_secs(15)).await;
    println!("the edge dropped the partitioned agent after {took:?}");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(body["error"], "workspace_offline");

    // Heal: what the edge sent meanwhile (its close) reaches the agent, which
    // dials again through the relay by itself.
    let healed = Instant::now();
    relay.thaw();
    berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    println!(
        "the agent was back {:?} after the partition healed ({} connections through the relay)",
        healed.elapsed(),
        relay.accepted()
    );
    assert!(relay.accepted() >= 2, "the agent did not dial again");
    let url = berth.app_url(&format!("{}--main--far--admin", app.port()), "/after");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["uri"], "/after");

    let _ = stop.send(());
    agent_task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_path_is_used_after_the_old_one_went_dead() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "moved").await;
    let token = berth.create_agent("moved", "main").await;
    let relay = Relay::start(0, berth.addr).await;
    let port = relay.addr.port();
    let cfg = berth.agent_config(&token, port);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent::run(cfg, async {
        let _ = stopped.await;
    }));
    berth.wait_agents_exactly(2, Duration::from_secs(10)).await;

    // The path goes dead for good and stays open; the edge drops the agent.
    relay.freeze();
    let took = berth.wait_agents_exactly(1, Duration::from_secs(15)).await;
    println!("the edge dropped the agent after {took:?}");

    // A new path on the same port: the old relay (and its frozen
    // connections) is gone, a fresh one forwards normally.
    relay.close().await;
    let relay = Relay::start(port, berth.addr).await;
    let replaced = Instant::now();
    berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    println!(
        "the agent was back {:?} after the path was replaced",
        replaced.elapsed()
    );
    assert!(relay.accepted() >= 1);
    let url = berth.app_url(&format!("{}--main--moved--admin", app.port()), "/again");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["app"], "moved");

    let _ = stop.send(());
    agent_task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_notices_a_dead_path_by_itself_and_redials() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "stuck").await;
    let token = berth.create_agent("stuck", "main").await;
    let relay = Relay::start(0, berth.addr).await;
    let cfg = berth.agent_config(&token, relay.addr.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent_task = tokio::spawn(agent::run(cfg, async {
        let _ = stopped.await;
    }));
    berth.wait_agents_exactly(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One connection per tunnel of the agent's set.
    let dialed = relay.accepted();

    // The tunnel's connection goes dead and stays open forever: nothing
    // the edge does reaches the agent, so the agent must find out by its
    // own pings. New connections through the relay work.
    let frozen_at = Instant::now();
    relay.freeze_existing();
    berth.wait_agents_exactly(1, Duration::from_secs(15)).await;
    println!("the edge dropped the agent after {:?}", frozen_at.elapsed());
    let deadline = Duration::from_secs(25);
    while relay.accepted() <= dialed {
        assert!(
            frozen_at.elapsed() < deadline,
            "the agent did not redial within {deadline:?} of the path going dead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    berth.wait_agents_exactly(2, Duration::from_secs(5)).await;
    println!(
        "the agent noticed by itself and was back {:?} after the path went dead",
        frozen_at.elapsed()
    );
    let url = berth.app_url(&format!("{}--main--stuck--admin", app.port()), "/");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["app"], "stuck");

    let _ = stop.send(());
    agent_task.await.unwrap().unwrap();
}

/// A path that accepts TCP and then swallows everything (a black-holed
/// load balancer, a half-dead NAT): the agent must give up on that dial and
/// try again, like after any other failure, not wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_gives_up_on_a_dial_that_never_answers() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "blackhole").await;
    let token = berth.create_agent("blackhole", "main").await;
    let relay = Relay::start(0, berth.addr).await;
    relay.freeze();
    let cfg = berth.agent_config(&token, relay.addr.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let agent_task = tokio::spawn(agent::run(cfg, async {
        let _ = stopped.await;
    }));
    let limit = Duration::from_secs(20);
    while relay.accepted() < 2 {
        assert!(
            started.elapsed() < limit,
            "the agent is still waiting on its first dial after {limit:?} ({} connection(s) \
             accepted): a dial whose TLS handshake never completes is never abandoned",
            relay.accepted()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "the agent redialed {:?} after a black-holed dial",
        started.elapsed()
    );

    // Once the path works, the agent connects.
    relay.thaw();
    berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    let url = berth.app_url(&format!("{}--main--blackhole--admin", app.port()), "/");
    let (s, body) = get_status(&berth, &url).await;
    assert_eq!(s, 200, "{body}");
    let _ = stop.send(());
    agent_task.await.unwrap().unwrap();
}
