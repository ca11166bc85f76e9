//! A regional edge for region `eu` built in-process, following a running
//! control, for tests that watch changes reach an edge.

use super::wait::eventually;
use super::{free_port, Berth};
use reqwest::Method;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Region `eu` registered at control and its edge running in this process,
/// following control.
pub struct EuEdge {
    /// The edge's public port (`https://eu.berth.localhost:{port}`).
    pub port: u16,
    /// Its live tunnels.
    pub tunnels: Arc<berth::tunnel::edge::Tunnels>,
    /// Send (or drop) to stop the edge.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The edge's task, ending once it has stopped.
    pub task: tokio::task::JoinHandle<()>,
    /// Its data directory, removed when dropped.
    pub _dir: tempfile::TempDir,
}

/// Registers region `eu` at `berth` (201), starts its edge and waits (10 s)
/// until it follows control.
pub async fn start_eu_edge(berth: &Berth) -> EuEdge {
    let port = free_port();
    let (s, created) = berth
        .api(
            Method::POST,
            "/api/v1/regions",
            &berth.admin_token,
            Some(
                json!({"name": "eu", "url": format!("https://eu.berth.localhost:{port}"),
                        "wildcard": "*.eu.berth.localhost"}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let dir = tempfile::tempdir().unwrap();
    let edge = start_edge(
        berth,
        created["region_token"].as_str().unwrap(),
        port,
        dir.path(),
    )
    .await;
    let (control, tunnels) = (edge.control.clone(), edge.tunnels.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(edge.run(async {
        let _ = stopped.await;
    }));
    eventually(Duration::from_secs(10), "the edge follows control", || {
        let c = control.clone();
        async move { c.connected() }
    })
    .await;
    EuEdge {
        port,
        tunnels,
        stop,
        task,
        _dir: dir,
    }
}

/// A regional edge for region `eu`, following control at `berth`.
pub async fn start_edge(
    berth: &Berth,
    token: &str,
    port: u16,
    dir: &std::path::Path,
) -> berth::roles::regional::RegionalEdge {
    use berth::config::{FileConfig, Overrides, RoleDefaults, ServerConfig};
    let cfg = ServerConfig::resolve(
        FileConfig::default(),
        Overrides {
            listen: Some(format!("127.0.0.1:{port}")),
            data_dir: Some(dir.join("eu")),
            admin_listen: Some("off".into()),
            base_domain: Some("eu.berth.localhost".into()),
            wildcard: Some("*.eu.berth.localhost".into()),
            ..Default::default()
        },
        RoleDefaults::EDGE,
    )
    .unwrap();
    let link = berth::roles::regional::ControlLink {
        url: berth.api_url(""),
        token: berth::auth::Secret::new(token),
        ca_file: Some(berth.ca_pem.clone()),
    };
    berth::roles::regional::RegionalEdge::build(cfg, link, Duration::from_secs(10))
        .await
        .unwrap()
}
