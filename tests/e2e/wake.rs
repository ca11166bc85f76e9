//! Wake on visit: a visit to an app of a workspace whose agent is offline
//! calls the `[wake]` webhook once (signed), browsers get a page that
//! follows the start and programs a 503 with `Retry-After`; here the test's
//! webhook receiver starts a real `berth agent` process, and the app opens.

use crate::support::hooks::{signed, Receiver};
use crate::support::{apps, Berth, Options};
use reqwest::Method;
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "wake-secret-0123456789abcdef";
const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// `berth agent` processes the receiver started; killed on drop.
#[derive(Default)]
struct Agents(Mutex<Vec<Child>>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in self.0.lock().unwrap().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_to_an_offline_workspace_wakes_it_once_and_the_app_opens_once_it_runs() {
    let app = apps::start("127.0.0.1:0", "woken").await;
    // What the receiver runs when called: `berth agent`, two seconds later
    // (so the visits below see the workspace still starting).
    let agent_args: Arc<Mutex<Vec<String>>> = Arc::default();
    let agents = Arc::new(Agents::default());
    let (args, procs) = (agent_args.clone(), agents.clone());
    let hook = Receiver::start(
        0,
        Some(Arc::new(move |_call| {
            let (args, procs) = (args.lock().unwrap().clone(), procs.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                let child = Command::new(BIN)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                procs.0.lock().unwrap().push(child);
            });
        })),
    )
    .await;
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        config: Some(format!(
            "[wake]\nwebhook_url = \"{}\"\nwebhook_secret = \"{SECRET}\"\ncooldown_secs = 60\n",
            hook.url("/wake")
        )),
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    let token = berth.create_agent("ws", "main").await;
    *agent_args.lock().unwrap() = vec![
        "agent".into(),
        "--url".into(),
        format!("https://berth.localhost:{}", berth.addr.port()),
        "--token".into(),
        token,
        "--ca-file".into(),
        berth.ca_pem.display().to_string(),
    ];
    berth
        .add_user("eve", "password-eve-1", "member", None)
        .await;
    let eve = berth.login("eve", "password-eve-1").await;
    let url = berth.app_url(&format!("{}--main--ws--admin", app.port()), "/hello");
    let c = berth.client(true);

    // Who may not see the app cannot wake it: strangers get the same 404
    // as for nothing, the anonymous a 401; no call.
    let res = c.get(&url).bearer_auth(&eve).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.calls().is_empty(), "{:?}", hook.calls());

    // The owner's browser: the waiting page, 503 with Retry-After.
    let res = c
        .get(&url)
        .bearer_auth(&admin)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let page = res.text().await.unwrap();
    assert!(page.contains("Starting your workspace"), "{page}");
    assert!(
        page.contains(&format!("Port {} listening", app.port())),
        "{page}"
    );

    // A program: JSON, 503, Retry-After.
    let res = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "workspace_starting", "{body}");

    // The webhook: called once, signed, saying who asked for what.
    let calls = hook.wait_accepted(1, Duration::from_secs(10)).await;
    let call = &calls[0];
    assert_eq!(call.path, "/wake");
    assert_eq!(call.headers["berth-event"], "workspace.wake");
    assert!(signed(call, SECRET), "{call:?}");
    assert_eq!(call.body["user"], "admin");
    assert_eq!(call.body["workspace"], "ws");
    assert_eq!(call.body["agent"], "main");
    assert_eq!(call.body["port"], app.port());
    assert_eq!(call.body["requested_by"]["user"], "admin");

    // The page's status poll follows the start: offline, then connected
    // with the port listening.
    let status = || async {
        let res = c
            .get(&url)
            .bearer_auth(&admin)
            .header("berth-wake", "status")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()
    };
    let first = status().await;
    assert_eq!(first["agent"], "offline", "{first}");
    assert_eq!(first["ready"], false);
    let t0 = Instant::now();
    let mut visits = 0;
    loop {
        let s = status().await;
        if s["ready"] == true {
            assert_eq!(s["agent"], "connected");
            assert_eq!(s["port"], "listening");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "never ready: {s}");
        // Programs keep retrying meanwhile: no second call.
        let _ = c.get(&url).bearer_auth(&admin).send().await.unwrap();
        visits += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(visits > 0);

    // The app answers now.
    let res = c.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["app"], "woken");
    assert_eq!(hook.calls().len(), 1, "one call for all those visits");
    assert_eq!(agents.0.lock().unwrap().len(), 1);

    // The audit log records the wake.
    let (s, audit) = berth.api(Method::GET, "/api/v1/audit", &admin, None).await;
    assert_eq!(s, 200);
    let woken: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "workspace.woken")
        .collect();
    assert_eq!(woken.len(), 1, "{audit}");
    assert_eq!(woken[0]["actor"], "admin");
    assert_eq!(
        woken[0]["target"],
        format!("admin/ws/main:{}", app.port()).as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_through_a_regional_edge_asks_control_which_calls_once_for_all_edges() {
    let hook = Receiver::start(0, None).await;
    let control_addr = format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .unwrap();
    let berth = Berth::start_with(Options {
        listen: Some(control_addr),
        no_dev_agent: true,
        config: Some(format!(
            "[wake]\nwebhook_url = \"{}\"\nwebhook_secret = \"{SECRET}\"\n",
            hook.url("/wake")
        )),
        ..Default::default()
    })
    .await;
    let admin = berth.admin_token.clone();
    berth.create_agent("ws", "main").await;
    let (edge_port, _tunnels, _stop, _dir) = crate::activity::start_region(&berth, "eu").await;
    let c = berth.client(true);
    let label = "3000--main--ws--admin";
    let via_edge = format!("https://{label}.eu.berth.localhost:{edge_port}/");
    let via_control = berth.app_url(label, "/");

    // The regional edge learned from control that wake is on, and asks it.
    let res = c.get(&via_edge).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let calls = hook.wait_accepted(1, Duration::from_secs(10)).await;
    assert!(signed(&calls[0], SECRET));
    assert_eq!(calls[0].body["workspace"], "ws");
    assert_eq!(calls[0].body["requested_by"]["user"], "admin");

    // More visits, through both edges: control has called already.
    for url in [&via_edge, &via_control, &via_edge, &via_control] {
        let res = c.get(url).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(res.status(), 503);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let res = c.get(&via_edge).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(res.status(), 503);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.calls().len(), 1, "{:?}", hook.calls());
    let (_, audit) = berth.api(Method::GET, "/api/v1/audit", &admin, None).await;
    let woken = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "workspace.woken")
        .count();
    assert_eq!(woken, 1, "{audit}");
}
