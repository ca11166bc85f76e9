//! Password guessing against `POST /api/v1/login` and `POST /signin`:
//! limited per source address and per user name (429 with `Retry-After`),
//! at most a few password hashes at once whatever the flood, and every
//! failure in the audit log.

use crate::support::{Berth, Options};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Sources are told apart by a trusted load balancer's `X-Forwarded-For`
/// (every test client is 127.0.0.1).
fn behind_balancer(config: &str) -> Options {
    Options {
        trusted_proxies: vec!["127.0.0.1/32".into()],
        config: Some(config.into()),
        ..Default::default()
    }
}

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn login(berth: &Berth, source: &str, user: &str, password: &str) -> Answer {
    let res = berth
        .client(true)
        .post(berth.api_url("/api/v1/login"))
        .header("x-forwarded-for", source)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("Retry-After in seconds"));
    let body = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        body,
    }
}

async fn create_user(berth: &Berth, name: &str) {
    let password = format!("{name}-password");
    berth.add_user(name, &password, "member", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_limited_per_source_and_per_user_name() {
    // Three at once, then one every 10 s.
    let berth = Berth::start_with(behind_balancer(
        "[limits]\nlogin_burst = 3\nlogin_per_minute = 6\n",
    ))
    .await;
    for name in ["bob", "carol", "dave"] {
        create_user(&berth, name).await;
    }
    let (a, b, c, d) = (
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    );

    // The allowance: three wrong passwords are checked (401).
    for i in 0..3 {
        let r = login(&berth, a, "bob", &format!("guess-{i}")).await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    // Then 429 with Retry-After, even for the right password.
    let refused = login(&berth, a, "bob", "bob-password").await;
    let started = Instant::now();
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"], "rate_limited", "{}", refused.body);
    let wait = refused.retry_after.expect("Retry-After");
    assert!((1..=10).contains(&wait), "Retry-After: {wait}");
    // The source is limited, whichever user it names...
    assert_eq!(
        login(&berth, a, "carol", "carol-password").await.status,
        429
    );
    // ...and the user name, whichever source tries it.
    assert_eq!(login(&berth, b, "bob", "bob-password").await.status, 429);
    // Another source for another user is unaffected.
    let ok = login(&berth, c, "carol", "carol-password").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body["token"].as_str().unwrap().starts_with("berth_api_"));

    // A name that does not exist is limited the same way, and the refusal
    // reads the same: nothing tells whether the user exists.
    for i in 0..3 {
        assert_eq!(
            login(&berth, d, "nosuchuser", &format!("g{i}"))
                .await
                .status,
            401
        );
    }
    let unknown = login(&berth, d, "nosuchuser", "g").await;
    assert_eq!(unknown.status, 429);
    assert_eq!(unknown.body["error"], refused.body["error"]);
    assert!(unknown.retry_after.is_some());

    // Once the window has passed, the right password works again.
    tokio::time::sleep(Duration::from_secs(wait).saturating_sub(started.elapsed())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let back = login(&berth, a, "bob", "bob-password").await;
    assert_eq!(back.status, 200, "after {wait} s: {}", back.body);

    // The audit log names who was tried and from where.
    let (s, log) = berth
        .api(Method::GET, "/api/v1/audit", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200);
    let rows = log.as_array().unwrap();
    let count = |actor: &str, action: &str, source: &str| {
        rows.iter()
            .filter(|r| r["actor"] == actor && r["action"] == action && r["source"] == source)
            .count()
    };
    assert_eq!(count("bob", "signin.failed", a), 3, "{log}");
    assert_eq!(count("nosuchuser", "signin.failed", d), 3, "{log}");
    assert_eq!(
        count("bob", "signin.rate_limited", a),
        1,
        "first refusal: {log}"
    );
    assert_eq!(
        count("carol", "signin.rate_limited", a),
        0,
        "later refusals from a source are counted, not one row each: {log}"
    );
    assert!(
        rows.iter()
            .any(|r| r["action"] == "signin.failed" && r["target"] == "password (api)"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_is_limited_with_a_readable_page() {
    let berth = Berth::start_with(behind_balancer(
        "[limits]\nlogin_burst = 2\nlogin_per_minute = 1\n",
    ))
    .await;
    create_user(&berth, "erin").await;
    let post = |source: &'static str, pw: &'static str| {
        berth
            .client(true)
            .post(berth.api_url("/signin"))
            .header("x-forwarded-for", source)
            .form(&[("username", "erin"), ("password", pw)])
            .send()
    };
    for _ in 0..2 {
        assert_eq!(post("203.0.113.5", "nope").await.unwrap().status(), 401);
    }
    let res = post("203.0.113.5", "erin-password").await.unwrap();
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    assert!(page.contains("Too many attempts"), "{page}");
    assert!(page.contains(&format!("Wait {wait} seconds")), "{page}");
    // The API login for the same name is limited too: one limit per name.
    let r = login(&berth, "203.0.113.6", "erin", "erin-password").await;
    assert_eq!(r.status, 429, "{}", r.body);
    let (_, log) = berth
        .api(Method::GET, "/api/v1/audit", &berth.admin_token, None)
        .await;
    let failed = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["action"] == "signin.failed"
                && r["actor"] == "erin"
                && r["target"] == "password (form)"
                && r["source"] == "203.0.113.5"
        })
        .count();
    assert_eq!(failed, 2, "{log}");
}

/// 128 concurrent attempts (each let through by generous rate limits) used
/// to run 128 argon2 hashes at once, 19 MiB each (979 MiB RSS measured).
/// Now two run at once, eight wait, and the rest get 503 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_concurrent_attempts_keeps_memory_bounded() {
    use super::dev_process::DevProcess;
    const FLOOD: usize = 128;
    const MIB: u64 = 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let dev = DevProcess::start(
        &tmp.path().join("data"),
        Some(
            "[limits]\nlogin_burst = 100000\nlogin_per_minute = 100000\n\
             max_password_hashes = 2\npassword_hash_queue = 8\n",
        ),
    )
    .await;
    let before = dev.peak_rss();
    let client = dev.client();
    let started = Instant::now();
    let attempts = (0..FLOOD).map(|i| {
        let req = client
            .post(dev.url("/api/v1/login"))
            .json(&json!({"username": format!("user{i}"), "password": "wrong-password"}))
            .send();
        async move {
            let res = req.await.unwrap();
            let retry = res.headers().get("retry-after").cloned();
            (res.status().as_u16(), retry)
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let took = started.elapsed();
    let after = dev.peak_rss();
    let checked = answers.iter().filter(|(s, _)| *s == 401).count();
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    println!(
        "{FLOOD} concurrent attempts in {took:?}: {checked} checked (401), {busy} busy (503); \
         peak RSS {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    assert_eq!(checked + busy, FLOOD, "only 401 or 503: {answers:?}");
    assert!(checked >= 2 && busy >= 1, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, r)| r.as_ref().is_some_and(|v| v == "1")),
        "503 says Retry-After: 1"
    );
    assert!(
        after < before + 120 * MIB,
        "peak RSS grew from {} to {} MiB",
        before / MIB,
        after / MIB
    );
    let metrics = dev.metrics().await;
    let counted = crate::cli::sample(
        &metrics,
        "berth_login_attempts_total",
        Some("outcome=\"busy\""),
    )
    .unwrap_or_else(|| panic!("no busy count:\n{metrics}"));
    assert_eq!(counted as usize, busy, "{metrics}");
    assert_eq!(
        crate::cli::sample(&metrics, "berth_login_password_hashes_in_progress", None),
        Some(0.0),
        "{metrics}"
    );
    let (status, err) = dev.stop().await;
    assert!(status.success(), "{status}\n{err}");
}
