//! `sharing.public_rate_limit`: floods of anonymous requests to a public
//! share and of share-link redemptions, from real concurrent clients on
//! several source addresses, are cut to the configured rate per address
//! with 429 and `Retry-After`, and counted; signed-in users are not.

use crate::program_links::{client_from, link};
use crate::support::{apps, Berth, Options};
use serde_json::json;

/// Fires `n` requests at once from `source`; their statuses and
/// `Retry-After` values.
async fn burst(berth: &Berth, source: [u8; 4], url: &str, n: usize) -> Vec<(u16, Option<u64>)> {
    let c = client_from(berth, source);
    let all: Vec<_> = (0..n).map(|_| c.get(url).send()).collect();
    futures_util::future::join_all(all)
        .await
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse().unwrap());
            (r.status().as_u16(), retry)
        })
        .collect()
}

async fn metric(berth: &Berth, kind: &str) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", berth.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let name = format!("berth_edge_public_rate_limited_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&name))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_on_public_shares_and_links_get_429_per_address() {
    // 6 a minute (one every 10 s), 10 at once.
    let berth = Berth::start_with(Options {
        config: Some("[sharing]\npublic_rate_limit = 6\npublic_rate_burst = 10\n".into()),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "open").await;
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            app.port(),
            json!({"level": "public"}),
        )
        .await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/");

    // Two addresses flood at once: each gets its own 10, the rest 429.
    let (a, b) = tokio::join!(
        burst(&berth, [127, 0, 0, 21], &url, 40),
        burst(&berth, [127, 0, 0, 22], &url, 40)
    );
    let mut refused = 0;
    for statuses in [&a, &b] {
        let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
        assert!((10..=11).contains(&ok), "{ok} passed: {statuses:?}");
        for (s, retry) in statuses.iter().filter(|(s, _)| *s != 200) {
            assert_eq!(*s, 429);
            let retry = retry.expect("Retry-After on a 429");
            assert!((1..=10).contains(&retry), "Retry-After {retry}");
            refused += 1;
        }
    }
    assert_eq!(metric(&berth, "public").await, refused);

    // The refusal explains itself to programs.
    let c = client_from(&berth, [127, 0, 0, 21]);
    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 429);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("sharing.public_rate_limit"));
    // A signed-in user from the same address is not limited.
    for _ in 0..20 {
        let res = c
            .get(&url)
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    // Link redemptions (by URL, and by a program's header) share the
    // address's budget: refused before control is asked, so no use counts.
    let private = apps::start("127.0.0.1:0", "private").await;
    let (_, token) = link(&berth, private.port(), None).await;
    let purl = berth.app_url(&format!("{}--main--dev--admin", private.port()), "/");
    let res = c
        .get(format!("{purl}?berth_share={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    let res = c
        .get(&purl)
        .header("Berth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    // A flood of guessed link tokens from a fresh address stops at its burst.
    let fresh = client_from(&berth, [127, 0, 0, 23]);
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            fresh
                .get(&purl)
                .header("Berth-Token", format!("berth_link_guess{i}"))
                .send()
        })
        .collect();
    let statuses: Vec<u16> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let tried = statuses.iter().filter(|s| **s == 401).count();
    assert!((10..=11).contains(&tried), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 30 - tried);
    assert_eq!(metric(&berth, "link").await, 2 + (30 - tried) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_shares_are_not_limited_by_default() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "open").await;
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            app.port(),
            json!({"level": "public"}),
        )
        .await;
    let url = berth.app_url(&format!("{}--main--dev--admin", app.port()), "/");
    let statuses = burst(&berth, [127, 0, 0, 31], &url, 100).await;
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    assert_eq!(metric(&berth, "public").await, 0);
}
