//! Share links for programs: `Berth-Token: berth_link_...` or
//! `Authorization: Bearer berth_link_...` with plain HTTP clients (reqwest
//! without cookies, curl), counted once per client address, never passed to
//! the app, on the built-in edge and a regional edge.

use crate::identity::Region;
use crate::support::{apps, client_for, Berth, Loopback};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A cookie-less client from `source` (a loopback address) trusting `berth`'s CA.
pub fn client_from(berth: &Berth, source: [u8; 4]) -> reqwest::Client {
    let pem = std::fs::read(&berth.ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .dns_resolver(Arc::new(Loopback))
        .local_address(std::net::IpAddr::from(source))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A link to `port` of admin/dev/main with `max_uses`: (id, token).
pub async fn link(berth: &Berth, port: u16, max_uses: Option<i64>) -> (String, String) {
    let mut body = json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port});
    if let Some(m) = max_uses {
        body["max_uses"] = json!(m);
    }
    let l = berth.share_link(&berth.admin_token, body).await;
    let url = l["url"].as_str().unwrap();
    let token = url.split_once("berth_share=").unwrap().1.to_owned();
    assert!(token.starts_with("berth_link_"));
    (l["id"].as_str().unwrap().to_owned(), token)
}

async fn uses(berth: &Berth, id: &str) -> i64 {
    let (s, b) = berth
        .api(Method::GET, "/api/v1/share-links", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200, "{b}");
    let all = b
        .as_array()
        .cloned()
        .unwrap_or_else(|| b["links"].as_array().unwrap().clone());
    all.iter().find(|l| l["id"] == id).unwrap()["uses"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_opens_a_private_port_with_a_link_in_a_header_counted_once_per_client() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "hooks").await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/hook?x=1");
    let (id, token) = link(&berth, app.port(), Some(2)).await;
    let one = client_from(&berth, [127, 0, 0, 1]);

    // Without the link: 401, as for any private port.
    assert_eq!(one.get(&url).send().await.unwrap().status(), 401);
    // Berth-Token, and Authorization: Bearer, on GET and POST: all in,
    // the app sees neither the token nor berth's headers for it.
    for i in 0..6 {
        let req = if i % 2 == 0 {
            one.get(&url).header("Berth-Token", &token)
        } else {
            one.post(&url)
                .bearer_auth(&token)
                .body("{\"event\":\"push\"}")
        };
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        assert!(
            res.headers().get("set-cookie").is_none(),
            "no cookie for programs"
        );
        let seen = res.text().await.unwrap();
        assert!(
            !seen.contains("berth_link_"),
            "the token reached the app: {seen}"
        );
        let seen: Value = serde_json::from_str(&seen).unwrap();
        assert_eq!(seen["app"], "hooks");
        assert!(seen["headers"].get("authorization").is_none());
        assert!(seen["headers"].get("berth-token").is_none());
        assert!(
            seen["headers"].get("x-berth-user").is_none(),
            "a link names nobody"
        );
        assert!(seen["headers"].get("berth-jwt-assertion").is_none());
    }
    assert_eq!(uses(&berth, &id).await, 1, "one client, one use");

    // curl, from a second address: the second use.
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--interface", "127.0.0.2", "--cacert"])
        .arg(&berth.ca_pem)
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", berth.addr.port()))
        .args([
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("https://{host}:{}/from-curl", berth.addr.port()))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("\n200"),
        "curl: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("berth_link_"));
    assert_eq!(uses(&berth, &id).await, 2);

    // Used up: a third address is refused; the first two still get in.
    let three = client_from(&berth, [127, 0, 0, 3]);
    let res = three
        .get(&url)
        .header("Berth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("used up"),
        "{body}"
    );
    assert_eq!(
        one.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Concurrent first requests from one address count one use.
    let (id2, token2) = link(&berth, app.port(), Some(1)).await;
    let four = client_from(&berth, [127, 0, 0, 4]);
    let burst: Vec<_> = (0..16)
        .map(|_| four.get(&url).header("Berth-Token", &token2).send())
        .collect();
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.unwrap().status(), 200);
    }
    assert_eq!(uses(&berth, &id2).await, 1);

    // For another port of the same owner the link opens nothing.
    let other = berth.app_url("9--main--dev--admin", "/");
    assert_eq!(
        one.get(&other)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Revoked: out at once, for every client.
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        one.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Nonsense in the header: 401 naming the link, not a 5xx.
    let res = one
        .get(&url)
        .header("Berth-Token", "berth_link_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_link_works_on_a_regional_edge() {
    let berth = Berth::start().await;
    let region = Region::start(&berth).await;
    let app = apps::start("127.0.0.1:0", "eu").await;
    let l = berth
        .share_link(
            &berth.admin_token,
            json!({"user": "admin", "workspace": "api", "agent": "laptop", "port": app.port()}),
        )
        .await;
    let token = l["url"]
        .as_str()
        .unwrap()
        .split_once("berth_share=")
        .unwrap()
        .1
        .to_owned();
    let url = format!("https://{}:{}/", region.app_host(app.port()), region.port);
    let c = client_for(&berth.ca_pem, false);
    // The link reaches the edge on the watch stream within moments.
    let t0 = std::time::Instant::now();
    loop {
        let res = c
            .get(&url)
            .header("Berth-Token", &token)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            let seen = res.text().await.unwrap();
            assert!(!seen.contains("berth_link_"), "{seen}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", res.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        c.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
