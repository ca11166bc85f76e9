//! Wake on visit and activity against those who may not use them: an
//! anonymous visitor of a public app does not wake the workspace, a
//! stranger learns nothing from the status poll or the activity API, an API
//! token is no region token for `/edge/wake`, and a flood of visits makes
//! one webhook call.

use crate::support::hooks::Receiver;
use crate::support::{Berth, Options};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_those_who_may_see_an_app_wake_it_and_a_flood_makes_one_call() {
    let hook = Receiver::start(0, None).await;
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        config: Some(format!(
            "[wake]\nwebhook_url = \"{}\"\nwebhook_secret = \"wake-secret-0123456789\"\n",
            hook.url("/wake")
        )),
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    berth.create_agent("ws", "main").await;
    berth
        .share_at(
            &admin,
            "/api/v1/workspaces/admin/ws/agents/main/ports/3000/share",
            json!({"level": "public"}),
        )
        .await;
    berth
        .add_user("eve", "password-eve-1", "member", None)
        .await;
    let eve = berth.login("eve", "password-eve-1").await;
    let c = berth.client(true);
    let public = berth.app_url("3000--main--ws--admin", "/");
    let private = berth.app_url("3001--main--ws--admin", "/");

    // Anonymous on a public app: the usual offline answer, no wake.
    let res = c.get(&public).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap()["error"],
        "workspace_offline"
    );
    // A stranger: the same 404 as for nothing, for visits and status polls.
    for status_poll in [false, true] {
        let mut r = c.get(&private).bearer_auth(&eve);
        if status_poll {
            r = r.header("berth-wake", "status");
        }
        assert_eq!(r.send().await.unwrap().status(), 404);
    }
    assert_eq!(
        berth
            .api(
                Method::GET,
                "/api/v1/workspaces/admin/ws/activity",
                &eve,
                None
            )
            .await
            .0,
        404
    );
    // A user's API token is not a region token.
    let (s, _) = berth
        .api(
            Method::POST,
            "/api/v1/edge/wake",
            &admin,
            Some(json!({"agent_id": 1, "port": 3001})),
        )
        .await;
    assert_eq!(s, 401);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(hook.calls().is_empty(), "{:?}", hook.calls());

    // The owner, 50 visits at once: all wait, one call.
    let visits = (0..50).map(|_| {
        let (c, url, admin) = (c.clone(), private.clone(), admin.clone());
        async move {
            c.get(&url)
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures_util::future::join_all(visits).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    hook.wait_accepted(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.calls().len(), 1, "{:?}", hook.calls());
}
