//! The identity an app can verify (`Berth-Jwt-Assertion`): checked here as
//! an app would, with a standard JWT library (`jsonwebtoken`) against the
//! published JWK set, through the built-in edge and a regional edge, and
//! across a key rotation.

use crate::support::{apps, client_for, free_port, run_agent, Berth, Options};
use berth::config::{FileConfig, JwtPolicy, Overrides, RoleDefaults, ServerConfig};
use berth::roles::regional::{ControlLink, RegionalEdge};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// An app's check of an assertion: signature by a published key, issuer,
/// audience (its own host), expiry.
pub fn verify(token: &str, jwks: &JwkSet, iss: &str, aud: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[iss]);
    v.set_audience(&[aud]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// The JWK set published at `base` (`https://host:port`).
pub async fn jwks(c: &reqwest::Client, base: &str) -> JwkSet {
    let res = c
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    for k in v["keys"].as_array().unwrap() {
        assert!(k.get("d").is_none(), "a private key is published: {k}");
    }
    serde_json::from_value(v).unwrap()
}

/// `kid` of an assertion.
pub fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// What the echo app at `url` received under `Berth-Jwt-Assertion`, asked
/// with `token`.
pub async fn assertion(c: &reqwest::Client, url: &str, token: &str) -> Option<String> {
    let res = c.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200, "{url}");
    let body: Value = res.json().await.unwrap();
    body["headers"]["berth-jwt-assertion"]
        .as_str()
        .map(str::to_owned)
}

/// A regional edge `eu` serving `*.eu.berth.localhost` with an agent
/// (`admin/api/laptop`) connected to it.
pub struct Region {
    pub port: u16,
    pub identity: std::sync::Arc<berth::auth::jwt::Identity>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _stop_agent: tokio::sync::oneshot::Sender<()>,
}

impl Region {
    pub async fn start(berth: &Berth) -> Region {
        let port = free_port();
        let (s, created) = berth
            .api(
                Method::POST,
                "/api/v1/regions",
                &berth.admin_token,
                Some(json!({
                    "name": "eu",
                    "url": format!("https://eu.berth.localhost:{port}"),
                    "wildcard": "*.eu.berth.localhost",
                })),
            )
            .await;
        assert_eq!(s, 201, "{created}");
        let dir = berth.dir.with_extension("eu");
        let cfg = ServerConfig::resolve(
            FileConfig::default(),
            Overrides {
                listen: Some(format!("127.0.0.1:{port}")),
                data_dir: Some(dir),
                admin_listen: Some("off".into()),
                base_domain: Some("eu.berth.localhost".into()),
                wildcard: Some("*.eu.berth.localhost".into()),
                ..Default::default()
            },
            RoleDefaults::EDGE,
        )
        .unwrap();
        let link = ControlLink {
            url: berth.api_url(""),
            token: berth::auth::Secret::new(created["region_token"].as_str().unwrap()),
            ca_file: Some(berth.ca_pem.clone()),
        };
        let edge = RegionalEdge::build(cfg, link, Duration::from_secs(10))
            .await
            .unwrap();
        let (tunnels, identity) = (edge.tunnels.clone(), edge.identity.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(edge.run(async {
            let _ = rx.await;
        }));
        let agent_token = berth.create_agent("api", "laptop").await;
        let stop_agent = run_agent(berth::agent::AgentConfig {
            url: format!("https://eu.berth.localhost:{port}"),
            token: berth::auth::Secret::new(&agent_token),
            ca_file: Some(berth.ca_pem.clone()),
            connect_to: None,
            upstream: Default::default(),
            region: None,
            standby: false,
            tunnels: berth::agent::DEFAULT_TUNNELS,
        });
        let t0 = Instant::now();
        while tunnels.is_empty() || identity.get().current().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "agent on the edge, keys from control"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Region {
            port,
            identity,
            _stop: tx,
            _stop_agent: stop_agent,
        }
    }

    /// The app at `app_port` of `admin/api/laptop`, through this edge.
    pub fn app_host(&self, app_port: u16) -> String {
        format!("{app_port}--laptop--api--admin.eu.berth.localhost")
    }

    pub fn base(&self) -> String {
        format!("https://eu.berth.localhost:{}", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_verifies_the_assertion_from_the_local_and_a_regional_edge() {
    let berth = Berth::start().await;
    let c = berth.client(true);
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let iss = berth.api_url("");
    let control_keys = jwks(&c, &iss).await;
    assert_eq!(control_keys.keys.len(), 1);

    // Through the built-in edge, for the owner (by API token).
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let url = format!("https://{host}:{}/who", berth.addr.port());
    let t = assertion(&c, &url, &berth.admin_token)
        .await
        .expect("an assertion");
    let claims = verify(&t, &control_keys, &iss, &host).unwrap();
    assert_eq!(claims["iss"], iss);
    assert_eq!(claims["aud"], host);
    assert_eq!(claims["name"], "admin");
    assert_eq!(claims["email"], "admin@berth.localhost");
    assert_eq!(claims["groups"], json!([]));
    assert!(
        claims["sub"].as_str().unwrap().parse::<i64>().is_ok(),
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 300, "minutes, not hours");

    // Another user of an organization, with a public share: the visitor's
    // identity, not the owner's; an anonymous visitor gets none.
    let bob = berth
        .user_token("bob", "bob-password-1", "member", Some("acme"))
        .await;
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            app.port(),
            json!({"level": "public"}),
        )
        .await;
    let t = assertion(&c, &url, &bob).await.unwrap();
    let claims = verify(&t, &control_keys, &iss, &host).unwrap();
    assert_eq!(claims["name"], "bob");
    assert_eq!(claims["organization"], "acme");
    let anonymous: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(anonymous["headers"].get("berth-jwt-assertion").is_none());
    assert!(anonymous["headers"].get("x-berth-user").is_none());

    // Groups: bob's next assertion names the group he was just put in
    // (not the one signed a moment ago, before he was in it).
    let made = c
        .post(berth.api_url("/api/v1/groups"))
        .bearer_auth(&berth.admin_token)
        .json(&json!({"name": "eng", "members": ["bob", "admin"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    let t = assertion(&c, &url, &bob).await.unwrap();
    let claims = verify(&t, &control_keys, &iss, &host).unwrap();
    assert_eq!(claims["groups"], json!(["eng"]));

    // Through a regional edge: the same issuer and key, and the edge
    // publishes the same set on its own host.
    let region = Region::start(&berth).await;
    let edge_c = client_for(&berth.ca_pem, true);
    let eu_app = apps::start("127.0.0.1:0", "eu").await;
    let eu_host = region.app_host(eu_app.port());
    let eu_url = format!("https://{eu_host}:{}/who", region.port);
    let t = assertion(&edge_c, &eu_url, &berth.admin_token)
        .await
        .expect("an assertion at the regional edge");
    let claims = verify(&t, &control_keys, &iss, &eu_host).unwrap();
    assert_eq!(claims["name"], "admin");
    assert_eq!(
        claims["groups"],
        json!(["eng"]),
        "groups reach the regional edge"
    );
    let edge_keys = jwks(&edge_c, &region.base()).await;
    verify(&t, &edge_keys, &iss, &eu_host).unwrap();
    assert_eq!(kid(&t), control_keys.keys[0].common.key_id.clone().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_on_every_edge_and_the_old_key_verifies_during_its_grace() {
    // A new key every 6 s; a replaced one stays published 6 s more.
    let berth = Berth::start_with(Options {
        jwt: Some(JwtPolicy {
            enabled: true,
            ttl_secs: 300,
            rotation_secs: 6,
            grace_secs: 6,
        }),
        ..Default::default()
    })
    .await;
    let c = berth.client(true);
    let iss = berth.api_url("");
    let region = Region::start(&berth).await;
    let app = apps::start("127.0.0.1:0", "alpha").await;
    let eu_app = apps::start("127.0.0.1:0", "eu").await;
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let url = format!("https://{host}:{}/", berth.addr.port());
    let eu_host = region.app_host(eu_app.port());
    let eu_url = format!("https://{eu_host}:{}/", region.port);
    let token = &berth.admin_token;

    // Wait for a fresh key, so the windows below are whole.
    let first = kid(&assertion(&c, &url, token).await.unwrap());
    let t0 = Instant::now();
    let old_kid = loop {
        let k = kid(&assertion(&c, &url, token).await.unwrap());
        if k != first {
            break k;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no rotation within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rotated_at = Instant::now();
    let old = assertion(&c, &url, token).await.unwrap();
    let old_eu = assertion(&c, &eu_url, token).await.unwrap();
    // Both edges sign with the current key (the regional one may need the
    // watch line's moment).
    let t1 = Instant::now();
    while kid(&assertion(&c, &eu_url, token).await.unwrap()) != old_kid {
        assert!(
            t1.elapsed() < Duration::from_secs(2),
            "the regional edge signs with another key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The next rotation: a new key signs on both edges; the old assertions
    // still verify against what is published (their key is in its grace).
    let new_kid = loop {
        let k = kid(&assertion(&c, &url, token).await.unwrap());
        if k != old_kid {
            break k;
        }
        assert!(
            rotated_at.elapsed() < Duration::from_secs(10),
            "no second rotation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = rotated_at.elapsed();
    println!("rotated after {took:?}");
    let t2 = Instant::now();
    loop {
        let t = assertion(&c, &eu_url, token).await.unwrap();
        if kid(&t) == new_kid {
            verify(&t, &jwks(&c, &region.base()).await, &iss, &eu_host).unwrap();
            break;
        }
        assert!(
            t2.elapsed() < Duration::from_secs(2),
            "the regional edge did not take the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let published = jwks(&c, &iss).await;
    assert!(published.find(&old_kid).is_some() && published.find(&new_kid).is_some());
    verify(&old, &published, &iss, &host).expect("the replaced key verifies during its grace");
    verify(&old_eu, &jwks(&c, &region.base()).await, &iss, &eu_host).unwrap();

    // After the grace, the replaced key is gone everywhere: its assertions
    // no longer verify, though they have not expired.
    let t3 = Instant::now();
    while jwks(&c, &iss).await.find(&old_kid).is_some() {
        assert!(
            t3.elapsed() < Duration::from_secs(10),
            "the old key stays published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = verify(&old, &jwks(&c, &iss).await, &iss, &host).unwrap_err();
    assert!(e.contains("not published"), "{e}");
    let t4 = Instant::now();
    while jwks(&c, &region.base()).await.find(&old_kid).is_some() {
        assert!(
            t4.elapsed() < Duration::from_secs(2),
            "the regional edge still publishes the old key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(region
        .identity
        .get()
        .keys
        .iter()
        .all(|k| k.kid() != old_kid));
}
