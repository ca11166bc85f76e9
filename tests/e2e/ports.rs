//! The agent reports the workspace's listening ports over the tunnel
//! (`GET /ports`), read from the kernel's tables.

use crate::support::{apps, Berth};
use reqwest::Method;
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
    // berth's own listeners share the network namespace but are no app:
    // the dev agent leaves them out.
    assert!(!ports
        .iter()
        .any(|p| p.port == berth.addr.port() || p.port == berth.admin.port()));

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

/// The dev agent lists neither berth's own HTTPS nor its metrics port, and
/// names the process behind each port it lists (from `/proc`): here a
/// Python program in a process of its own, as `process` and `command` in
/// the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_agent_hides_berths_own_ports_and_names_the_listening_process() {
    let berth = Berth::start().await;
    let mut app = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import socket,sys,time\n\
             s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen()\n\
             print(s.getsockname()[1], flush=True)\n\
             time.sleep(120)",
            "berth-test-app",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (the test app)");
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(
        &mut tokio::io::BufReader::new(app.stdout.take().unwrap()),
        &mut line,
    )
    .await
    .unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", app.id().unwrap())).unwrap();

    let (s, body) = berth
        .api(
            Method::GET,
            "/api/v1/workspaces/admin/dev/agents/main/ports",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let ports = body["ports"].as_array().unwrap();
    let listed = |p: u16| ports.iter().find(|x| x["port"] == p);
    let found = listed(port).unwrap_or_else(|| panic!("port {port} not in {body}"));
    assert_eq!(found["process"], comm.trim_end(), "{found}");
    let command = found["command"].as_str().unwrap_or_default();
    assert!(command.contains("berth-test-app"), "{found}");
    for own in [berth.addr.port(), berth.admin.port()] {
        assert!(
            listed(own).is_none(),
            "berth's own port {own} listed: {body}"
        );
    }
    let _ = app.kill().await;
}
