//! Bad input never gets a 5xx from berth, never takes the server down, and
//! slow clients are cut off while everyone else is served.

use crate::support::{apps, raw, Berth, Options};
use berth::config::Limits;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A normal request through the edge still gets its 200.
async fn still_serving(berth: &Berth, app: &apps::App) {
    let res = berth
        .client(true)
        .get(berth.app_url(&format!("{}--main--dev--admin", app.port()), "/ok"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["uri"], "/ok");
}

/// One raw request on a fresh TLS connection; returns how it ended.
async fn raw_request(berth: &Berth, request: &[u8]) -> raw::Exchange {
    let mut tls = raw::tls(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
    raw::exchange(&mut tls, request, Duration::from_secs(10)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_gets_431_and_others_are_still_served() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "big").await;
    let host = format!(
        "{}--main--dev--admin.berth.localhost:{}",
        app.port(),
        berth.addr.port()
    );
    // One 70 KiB header, above the 64 KiB default.
    let big = "a".repeat(70 * 1024);
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nX-Big: {big}\r\n\r\n",
        berth.admin_token
    );
    let ex = raw_request(&berth, req.as_bytes()).await;
    let responses = ex.responses();
    assert_eq!(
        responses.len(),
        1,
        "want one 431 then a close; got {:?} (error {:?})",
        String::from_utf8_lossy(&ex.bytes[..ex.bytes.len().min(300)]),
        ex.error
    );
    assert_eq!(responses[0].status, 431, "{responses:?}");
    still_serving(&berth, &app).await;

    // Many small headers that add up past the limit: the same.
    let many: String = (0..2000)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(40)))
        .collect();
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{many}\r\n");
    let ex = raw_request(&berth, req.as_bytes()).await;
    let responses = ex.responses();
    assert_eq!(responses.len(), 1, "{:?}", ex.error);
    assert_eq!(responses[0].status, 431);
    still_serving(&berth, &app).await;

    // Over HTTP/2 the header list is capped too, and the server keeps serving.
    let res = berth
        .client(false)
        .get(berth.app_url(&format!("{}--main--dev--admin", app.port()), "/"))
        .bearer_auth(&berth.admin_token)
        .header("X-Big", &big)
        .send()
        .await;
    // (h2 answers an oversized header block with a 431 of its own.)
    let res = res.expect("HTTP/2 huge header: a response, not a reset");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 431);
    still_serving(&berth, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_hosts_get_4xx_never_5xx() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "hosts").await;
    let long = format!("{}.berth.localhost", "a".repeat(300));
    let cases: Vec<(String, &[u16], Option<&str>)> = vec![
        // A control character is not a valid header value: hyper answers 400.
        ("x\x01y.berth.localhost".into(), &[400], None),
        (long.clone(), &[404], Some("unknown_host")),
        ("a".repeat(300), &[404], Some("unknown_host")),
        ("[::1]".into(), &[404], Some("unknown_host")),
        ("[::1]:443".into(), &[404], Some("unknown_host")),
        ("127.0.0.1".into(), &[404], Some("unknown_host")),
        ("--.berth.localhost".into(), &[404], Some("unknown_host")),
        (
            "3000--main--dev--admin.other.example".into(),
            &[404],
            Some("unknown_host"),
        ),
        (
            "99999--main--dev--admin.berth.localhost".into(),
            &[404],
            Some("unknown_host"),
        ),
        ("berth.localhost:notaport".into(), &[400, 404], None),
        ("".into(), &[400, 404], None),
    ];
    for (host, want, code) in &cases {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            berth.admin_token
        );
        let ex = raw_request(&berth, req.as_bytes()).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "Host {host:?}: {:?}", ex);
        let res = &responses[0];
        assert!(
            want.contains(&res.status),
            "Host {host:?}: {} {:?}",
            res.status,
            String::from_utf8_lossy(&res.body)
        );
        if let Some(code) = code {
            assert!(
                res.header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "Host {host:?}: {:?}",
                res.headers
            );
            assert_eq!(res.json()["error"], *code, "Host {host:?}");
        }
    }
    still_serving(&berth, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_a_4xx() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "nohost").await;
    for req in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET /healthz HTTP/1.0\r\nUser-Agent: old\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let ex = raw_request(&berth, req.as_bytes()).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "{req:?}: {ex:?}");
        let res = &responses[0];
        assert!(
            res.status == 400 || res.status == 404,
            "{req:?}: {} {:?}",
            res.status,
            String::from_utf8_lossy(&res.body)
        );
    }
    still_serving(&berth, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "pipe").await;
    let host = format!(
        "{}--main--dev--admin.berth.localhost:{}",
        app.port(),
        berth.addr.port()
    );
    let auth = format!("Authorization: Bearer {}", berth.admin_token);
    let mut req = String::new();
    for i in 0..3 {
        req.push_str(&format!(
            "GET /p{i} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n"
        ));
    }
    req.push_str(&format!(
        "GET /p3 HTTP/1.1\r\nHost: {host}\r\n{auth}\r\nConnection: close\r\n\r\n"
    ));
    let ex = raw_request(&berth, req.as_bytes()).await;
    let responses = ex.responses();
    assert_eq!(responses.len(), 4, "{ex:?}");
    for (i, res) in responses.iter().enumerate() {
        assert_eq!(res.status, 200);
        assert_eq!(res.json()["uri"], format!("/p{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_while_others_are_served() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let berth = Berth::start_with(Options {
        limits: Some(limits),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "slow").await;
    let host = format!(
        "{}--main--dev--admin.berth.localhost:{}",
        app.port(),
        berth.addr.port()
    );

    // A partial request head, then nothing.
    let mut slow = raw::tls(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let started = Instant::now();
    let watcher = tokio::spawn(async move {
        let ex = raw::read_to_end(&mut slow, Duration::from_secs(10)).await;
        (started.elapsed(), ex)
    });
    // A TCP connection that never even starts TLS.
    let mut silent = tokio::net::TcpStream::connect(berth.addr).await.unwrap();
    let silent_started = Instant::now();
    let silent_watcher = tokio::spawn(async move {
        let ex = raw::read_to_end(&mut silent, Duration::from_secs(10)).await;
        (silent_started.elapsed(), ex)
    });

    // Meanwhile everyone else is served.
    for _ in 0..3 {
        still_serving(&berth, &app).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (took, ex) = watcher.await.unwrap();
    println!(
        "slowloris cut off after {took:?} ({} bytes, error {:?})",
        ex.bytes.len(),
        ex.error
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    for res in ex.responses() {
        assert!(res.status < 500, "{res:?}");
    }
    let (took, ex) = silent_watcher.await.unwrap();
    println!("silent TCP cut off after {took:?} ({ex:?})");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    still_serving(&berth, &app).await;
}
