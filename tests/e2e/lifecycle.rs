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
    let (s, _) = berth
        .api(
            Method::POST,
            "/api/v1/users",
            &berth.admin_token,
            Some(json!({"username": "carol", "email": "carol@example.com", "password": "carolcarol", "role": "member"})),
        )
        .await;
    assert_eq!(s, 201);
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
