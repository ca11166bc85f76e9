//! `berth dev` across restarts: nothing lost, nothing regenerated.

use crate::support::{Berth, Options};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_the_same_data_dir_keeps_users_tokens_and_ca() {
    let berth = Berth::start().await;
    let dir = berth.dir.clone();
    let ca_before = std::fs::read_to_string(&berth.ca_pem).unwrap();
    let token_before = berth.admin_token.clone();
    berth.add_user("carol", "carolcarol", "member", None).await;
    let tmp = berth.stop().await;

    let berth = Berth::start_with(Options {
        dir: Some(dir),
        ..Default::default()
    })
    .await;
    assert_eq!(std::fs::read_to_string(&berth.ca_pem).unwrap(), ca_before);
    assert_eq!(berth.admin_token, token_before);
    let (s, users) = berth
        .api(Method::GET, "/api/v1/users", &token_before, None)
        .await;
    assert_eq!(s, 200);
    assert!(users.to_string().contains("carol"), "{users}");
    // The old CA still verifies the new server: the client built from the old file connects.
    let res = crate::support::client_for(&berth.ca_pem, true)
        .get(berth.api_url("/api/v1/me"))
        .bearer_auth(&token_before)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(tmp);
}

/// `berth control` on its own domain with `tls.mode = "files"`: the API and an
/// app behind a separately started agent, through the operator's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_role_serves_an_operator_certificate() {
    use berth::config::{FileConfig, Overrides, RoleDefaults, ServerConfig};
    crate::support::trace_init();
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec![
        "berth.example.test".to_owned(),
        "*.apps.example.test".to_owned(),
    ])
    .unwrap();
    let cert_file = tmp.path().join("cert.pem");
    let key_file = tmp.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let flags = Overrides {
        listen: Some("127.0.0.1:0".into()),
        base_domain: Some("berth.example.test".into()),
        wildcard: Some("*.apps.example.test".into()),
        data_dir: Some(tmp.path().join("data")),
        tls_mode: Some("files".into()),
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file),
        admin_listen: Some("off".into()),
        ..Default::default()
    };
    let cfg = ServerConfig::resolve(FileConfig::default(), flags, RoleDefaults::CONTROL).unwrap();
    let server = berth::roles::Server::build(cfg, false).await.unwrap();
    assert!(
        server.dev_agent_token.is_none(),
        "control makes no local agent"
    );
    assert!(server.ca_path.is_none());
    let port = server.local_addr.port();
    let admin = std::fs::read_to_string(&server.admin_token_path).unwrap();
    let tunnels = server.tunnels.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    let client = crate::support::client_for(&cert_file, true);
    let api = |p: &str| format!("https://berth.example.test:{port}{p}");
    let res = client
        .get(api("/api/v1/me"))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(api("/api/v1/workspaces"))
        .bearer_auth(admin.trim())
        .json(&json!({"name": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = client
        .post(api("/api/v1/workspaces/admin/api/agents"))
        .bearer_auth(admin.trim())
        .json(&json!({"name": "vm"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let token: serde_json::Value = res.json().await.unwrap();
    // The agent verifies the operator's certificate for berth.example.test
    // while dialing loopback (no DNS here): --connect-to.
    let app = crate::support::apps::start("127.0.0.1:0", "control").await;
    let agent_cfg = berth::agent::AgentConfig {
        url: format!("https://berth.example.test:{port}"),
        token: berth::auth::Secret::new(token["agent_token"].as_str().unwrap()),
        ca_file: Some(cert_file.clone()),
        connect_to: Some(([127, 0, 0, 1], port).into()),
        upstream: Default::default(),
        region: None,
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    };
    let (agent_stop, agent_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(berth::agent::run(agent_cfg, async {
        let _ = agent_rx.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tunnels.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "agent did not connect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let res = client
        .get(format!(
            "https://{}--vm--api--admin.apps.example.test:{port}/x",
            app.port()
        ))
        .bearer_auth(admin.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["app"], "control");
    assert_eq!(
        body["headers"]["x-forwarded-host"],
        format!("{}--vm--api--admin.apps.example.test", app.port())
    );
    drop(agent_stop);
    drop(stop_tx);
}
