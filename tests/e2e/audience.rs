//! Shares that name users and groups, and shares that end, through the
//! built-in edge and a regional edge (`berth edge`, following control's
//! watch stream): every change at control reaches both within 5 s.

use crate::support::regional::{start_eu_edge, EuEdge};
use crate::support::wait::eventually;
use crate::support::{apps, client_for, run_agent, Berth, Options};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Changes must reach every edge within this.
const REACH: Duration = Duration::from_secs(5);

/// A control plane with its built-in edge, a regional edge `eu`, and
/// workspace `alice/api` with agent `home` on the built-in edge and agent
/// `eu` on the regional one, both serving one app.
pub struct World {
    pub berth: Berth,
    pub edge_port: u16,
    pub alice: String,
    pub port: u16,
    _app: apps::App,
    _agents: Vec<tokio::sync::oneshot::Sender<()>>,
    _edge: EuEdge,
}

/// Which edge a request goes through.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// Control's built-in edge (agent `home`).
    Control,
    /// The regional edge `eu` (agent `eu`).
    Region,
}

impl World {
    /// Starts it all with `config` (TOML) for control; `alice` is in `acme`.
    pub async fn start(config: Option<&str>) -> World {
        let berth = Berth::start_with(Options {
            no_dev_agent: true,
            config: config.map(str::to_owned),
            ..Default::default()
        })
        .await;
        let edge = start_eu_edge(&berth).await;
        let (edge_port, tunnels) = (edge.port, edge.tunnels.clone());
        let alice = berth
            .user_token("alice", "correct-horse", "member", Some("acme"))
            .await;
        berth.add_workspace(&alice, "alice", "api").await;
        let home = berth.add_agent(&alice, "alice", "api", "home").await;
        let eu = berth.add_agent(&alice, "alice", "api", "eu").await;
        let mut agents = vec![berth.spawn_agent(&home, Default::default())];
        agents.push(run_agent(berth::agent::AgentConfig {
            url: format!("https://eu.berth.localhost:{edge_port}"),
            token: berth::auth::Secret::new(&eu),
            ca_file: Some(berth.ca_pem.clone()),
            connect_to: None,
            upstream: Default::default(),
            region: None,
            standby: false,
            tunnels: berth::agent::DEFAULT_TUNNELS,
        }));
        berth.wait_agents(1).await;
        eventually(Duration::from_secs(10), "the agent on the edge", || {
            let t = tunnels.clone();
            async move { t.len() == 1 }
        })
        .await;
        let app = apps::start("127.0.0.1:0", "shared").await;
        World {
            port: app.port(),
            berth,
            edge_port,
            alice,
            _app: app,
            _agents: agents,
            _edge: edge,
        }
    }

    /// The app's URL through `via`.
    pub fn url(&self, via: Via) -> String {
        match via {
            Via::Control => self
                .berth
                .app_url(&format!("{}--home--api--alice", self.port), "/"),
            Via::Region => format!(
                "https://{}--eu--api--alice.eu.berth.localhost:{}/",
                self.port, self.edge_port
            ),
        }
    }

    /// The share's API path for the agent behind `via`.
    pub fn share_path(&self, via: Via) -> String {
        let agent = match via {
            Via::Control => "home",
            Via::Region => "eu",
        };
        format!(
            "/api/v1/workspaces/alice/api/agents/{agent}/ports/{}/share",
            self.port
        )
    }

    /// Shares the port of both agents with `body`, as alice; the answers.
    pub async fn share_both(&self, body: Value) -> Vec<Value> {
        let mut out = Vec::new();
        for via in [Via::Control, Via::Region] {
            let (s, b) = self
                .berth
                .api(
                    Method::PUT,
                    &self.share_path(via),
                    &self.alice,
                    Some(body.clone()),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            out.push(b);
        }
        out
    }

    /// The status of a GET through `via` as `token` (anonymous without).
    pub async fn status(&self, via: Via, token: Option<&str>) -> u16 {
        let c = client_for(&self.berth.ca_pem, true);
        let mut req = c.get(self.url(via));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// Waits until `token` gets `want` through both edges, at most
    /// [`REACH`]; returns how long the slower edge took.
    pub async fn reaches(&self, what: &str, token: Option<&str>, want: u16) -> Duration {
        let t0 = Instant::now();
        let mut slowest = Duration::ZERO;
        for via in [Via::Control, Via::Region] {
            loop {
                let got = self.status(via, token).await;
                if got == want {
                    break;
                }
                assert!(
                    t0.elapsed() < REACH,
                    "{what} via {via:?}: {got}, not {want} within {REACH:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            slowest = slowest.max(t0.elapsed());
        }
        slowest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_users_and_groups_get_through_every_edge_and_lose_it_within_seconds() {
    let w = World::start(None).await;
    let b = &w.berth;
    let admin = b.admin_token.clone();
    let bob = b
        .user_token("bob", "correct-horse", "member", Some("acme"))
        .await;
    let carol = b
        .user_token("carol", "correct-horse", "member", Some("globex"))
        .await;
    let dave = b
        .user_token("dave", "correct-horse", "member", Some("globex"))
        .await;

    // Groups are for admins; members are named by user name.
    let (s, _) = b
        .api(
            Method::POST,
            "/api/v1/groups",
            &bob,
            Some(json!({"name": "eng"})),
        )
        .await;
    assert_eq!(s, 403, "members do not manage groups");
    let (s, g) = b
        .api(
            Method::POST,
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "eng", "members": ["carol"]})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(
        g["members"],
        json!([{"username": "carol", "source": "berth"}])
    );
    let (s, e) = b
        .api(
            Method::POST,
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "ops", "members": ["nobody"]})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(e["message"].as_str().unwrap().contains("nobody"), "{e}");

    // A name that does not exist is refused, naming it.
    for bad in [
        json!({"level": "owner", "users": ["zed"]}),
        json!({"level": "owner", "groups": ["zed"]}),
    ] {
        let (s, e) = b
            .api(
                Method::PUT,
                &w.share_path(Via::Control),
                &w.alice,
                Some(bad),
            )
            .await;
        assert_eq!(s, 422, "{e}");
        assert!(e["message"].as_str().unwrap().contains("zed"), "{e}");
    }

    // Private, but bob by name and the group eng (carol) get through.
    let answers = w
        .share_both(json!({"level": "owner", "users": ["bob"], "groups": ["eng"]}))
        .await;
    assert_eq!(answers[0]["users"], json!(["bob"]));
    assert_eq!(answers[0]["groups"], json!(["eng"]));
    let took = w.reaches("bob, named", Some(&bob), 200).await;
    println!("a named share reached both edges in {took:?}");
    w.reaches("carol, in eng (another organization)", Some(&carol), 200)
        .await;
    w.reaches("dave, nobody named him", Some(&dave), 404).await;
    w.reaches("anonymous", None, 401).await;
    w.reaches("alice, the owner", Some(&w.alice), 200).await;
    let ports: Value = b
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/eu/ports",
            &w.alice,
            None,
        )
        .await
        .1;
    let entry = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == w.port)
        .unwrap()
        .clone();
    assert_eq!(
        (entry["users"].clone(), entry["groups"].clone()),
        (json!(["bob"]), json!(["eng"]))
    );

    // A renamed group keeps its shares; a new group with the old name
    // gets none of them.
    let (s, g) = b
        .api(
            Method::PATCH,
            "/api/v1/groups/eng",
            &admin,
            Some(json!({"name": "platform"})),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let (s, g) = b
        .api(
            Method::POST,
            "/api/v1/groups",
            &admin,
            Some(json!({"name": "eng", "members": ["dave"]})),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for via in [Via::Control, Via::Region] {
        assert_eq!(
            w.status(via, Some(&carol)).await,
            200,
            "renamed group via {via:?}"
        );
        assert_eq!(
            w.status(via, Some(&dave)).await,
            404,
            "new group, old name via {via:?}"
        );
    }
    let (_, a) = b
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/home/ports",
            &w.alice,
            None,
        )
        .await;
    assert!(a.to_string().contains("\"groups\":[\"platform\"]"), "{a}");

    // Taken out of the group: out within 5 s on every edge, and her open
    // WebSocket at the regional edge is closed.
    use crate::security::revocation::{closes_within, echoes, ws_h1, Cred, Target};
    let regional = Target {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], w.edge_port)),
        ca: b.ca_pem.clone(),
        host: format!("{}--eu--api--alice.eu.berth.localhost", w.port),
    };
    let mut carols = ws_h1(&regional, Cred::Token(&carol)).await;
    let mut alices = ws_h1(&regional, Cred::Token(&w.alice)).await;
    echoes(&mut carols, "carol, through the group").await;
    let since = Instant::now();
    let (s, g) = b
        .api(
            Method::DELETE,
            "/api/v1/groups/platform/members/carol",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200, "{g}");
    let took = w
        .reaches("carol, removed from the group", Some(&carol), 404)
        .await;
    println!("a removal from a group reached both edges in {took:?}");
    let closed = closes_within(&mut carols, since, "carol's WebSocket, out of the group").await;
    println!("her WebSocket at the regional edge closed {closed:?} after the removal");
    echoes(&mut alices, "the owner's socket stays").await;

    // A deleted user's name on a new account gets nothing of the old one's.
    let (s, _) = b
        .api(Method::DELETE, "/api/v1/users/bob", &admin, None)
        .await;
    assert_eq!(s, 204);
    let new_bob = b
        .user_token("bob", "correct-horse", "member", Some("acme"))
        .await;
    w.reaches("a new account named bob", Some(&new_bob), 404)
        .await;
    let (_, a) = b
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/eu/ports",
            &w.alice,
            None,
        )
        .await;
    assert!(
        a.to_string().contains("\"users\":[]"),
        "the deleted bob left the share: {a}"
    );

    // A deleted group leaves the shares that named it.
    let (s, _) = b
        .api(
            Method::PUT,
            "/api/v1/groups/platform/members/dave",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 200);
    w.reaches("dave, now in platform", Some(&dave), 200).await;
    let (s, _) = b
        .api(Method::DELETE, "/api/v1/groups/platform", &admin, None)
        .await;
    assert_eq!(s, 204);
    w.reaches("dave, his group deleted", Some(&dave), 404).await;
    let (s, list) = b.api(Method::GET, "/api/v1/groups", &admin, None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_that_ends_is_private_again_on_every_edge_and_closes_what_it_let_in() {
    use crate::security::revocation::{closes_within, echoes, ws_h1, Cred, Target};
    let w = World::start(Some("[sharing]\nmax_share_ttl_secs = 60\n")).await;
    let b = &w.berth;

    // The policy: public and authenticated shares last at most 60 s here.
    let (s, e) = b
        .api(
            Method::PUT,
            &w.share_path(Via::Control),
            &w.alice,
            Some(json!({"level": "public", "ttl_seconds": 120})),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("sharing.max_share_ttl_secs"),
        "{e}"
    );
    for bad in [json!(0), json!(-1), json!("1h")] {
        let (s, e) = b
            .api(
                Method::PUT,
                &w.share_path(Via::Control),
                &w.alice,
                Some(json!({"level": "owner", "ttl_seconds": bad})),
            )
            .await;
        assert_eq!(s, 422, "{e}");
    }
    let a = w.share_both(json!({"level": "authenticated"})).await;
    assert_eq!(
        a[0]["expires_in_secs"], 60,
        "the cap is the default: {}",
        a[0]
    );
    let a = w.share_both(json!({"level": "organization"})).await;
    assert_eq!(
        (a[0]["expires_at"].clone(), a[0]["expires_in_secs"].clone()),
        (Value::Null, Value::Null)
    );

    // Public for 4 s, on both edges.
    const TTL: u64 = 4;
    let a = w
        .share_both(json!({"level": "public", "ttl_seconds": TTL}))
        .await;
    let ends = Instant::now() + Duration::from_secs(TTL);
    assert!(
        a[1]["expires_at"].as_str().unwrap().ends_with('Z'),
        "{}",
        a[1]
    );
    w.reaches("anonymous, while public", None, 200).await;
    let (_, ports) = b
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/eu/ports",
            &w.alice,
            None,
        )
        .await;
    let entry = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == w.port)
        .unwrap()
        .clone();
    let left = entry["expires_in_secs"].as_i64().unwrap();
    assert!((1..=TTL as i64).contains(&left), "{entry}");
    assert_eq!(entry["level"], "public");

    // Open WebSockets through both edges, anonymous: they end with the share.
    let regional = Target {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], w.edge_port)),
        ca: b.ca_pem.clone(),
        host: format!("{}--eu--api--alice.eu.berth.localhost", w.port),
    };
    let builtin = Target {
        addr: b.addr,
        ca: b.ca_pem.clone(),
        host: format!("{}--home--api--alice.berth.localhost", w.port),
    };
    let mut at_region = ws_h1(&regional, Cred::Anonymous).await;
    let mut at_control = ws_h1(&builtin, Cred::Anonymous).await;
    let mut owners = ws_h1(&regional, Cred::Token(&w.alice)).await;
    echoes(&mut at_region, "public, at the regional edge").await;
    echoes(&mut at_control, "public, at the built-in edge").await;
    let late = closes_within(
        &mut at_region,
        ends,
        "an anonymous WebSocket at the regional edge",
    )
    .await;
    println!("the regional edge closed the WebSocket {late:?} after the share ended");
    let late = closes_within(
        &mut at_control,
        ends,
        "an anonymous WebSocket at the built-in edge",
    )
    .await;
    println!("the built-in edge closed the WebSocket {late:?} after the share ended");
    echoes(&mut owners, "the owner's socket stays").await;

    // Private again on every edge: no wait beyond the end itself.
    let took = w.reaches("anonymous, after the end", None, 401).await;
    println!(
        "private again on both edges {:?} after the end",
        ends.elapsed().min(took)
    );
    assert!(
        ends.elapsed() < Duration::from_secs(3),
        "private within 3 s of the end"
    );

    // The owner sees it as private; the audit log says it ended, once per port.
    eventually(
        Duration::from_secs(5),
        "the audit log records the end",
        || async {
            let (_, log) = b
                .api(Method::GET, "/api/v1/audit", &b.admin_token, None)
                .await;
            let ended: Vec<String> = log
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "port.share_ended")
                .map(|e| e["target"].as_str().unwrap().to_owned())
                .collect();
            ended.len() == 2
                && ended.contains(&format!("alice/api/eu:{}", w.port))
                && ended.contains(&format!("alice/api/home:{}", w.port))
        },
    )
    .await;
    let (_, ports) = b
        .api(
            Method::GET,
            "/api/v1/workspaces/alice/api/agents/home/ports",
            &w.alice,
            None,
        )
        .await;
    let entry = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == w.port)
        .unwrap()
        .clone();
    assert_eq!(
        (entry["level"].clone(), entry["expires_at"].clone()),
        (json!("owner"), Value::Null),
        "{entry}"
    );

    // A named share ends too: bob by name for 2 s.
    let bob = b
        .user_token("bob", "correct-horse", "member", Some("globex"))
        .await;
    w.share_both(json!({"level": "owner", "users": ["bob"], "ttl_seconds": 2}))
        .await;
    w.reaches("bob, named for 2 s", Some(&bob), 200).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.reaches("bob, after the end", Some(&bob), 404).await;
}
