//! The agent reports the workspace's listening ports over the tunnel
//! (`GET /ports`), read from the kernel's tables.

use crate::support::{apps, Berth};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_ports_follow_an_app_over_the_tunnel() {
    let berth = Berth::start().await;
    let tunnels = berth.server.tunnels.clone();
    let ids = tunnels.agent_ids();
    assert_eq!(ids.len(), 1, "the dev agent: {ids:?}");
    let agent_id = ids[0];

    let app = apps::start("127.0.0.1:0", "ports").await;
    let port = app.port();
    let ports = tunnels.listening_ports(agent_id).await.unwrap();
    let found = ports
        .iter()
        .find(|p| p.port == port)
        .unwrap_or_else(|| panic!("app port {port} not in {ports:?}"));
    assert!(found.reachable, "{found:?}");
    assert!(found.loopback_only, "{found:?}");
    assert!(ports.windows(2).all(|w| w[0].port < w[1].port));
    // berth's own public listener is in the same network namespace.
    assert!(ports.iter().any(|p| p.port == berth.addr.port()));

    drop(app);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ports = tunnels.listening_ports(agent_id).await.unwrap();
        if !ports.iter().any(|p| p.port == port) {
            break;
        }
        assert!(Instant::now() < deadline, "port {port} still listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_ports_of_an_unknown_agent_is_offline() {
    let berth = Berth::start().await;
    let err = berth
        .server
        .tunnels
        .listening_ports(i64::MAX)
        .await
        .unwrap_err();
    assert!(
        matches!(err, berth::tunnel::edge::PortsError::Offline),
        "{err}"
    );
}
