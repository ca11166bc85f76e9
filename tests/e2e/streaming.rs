//! Bodies streamed both ways, server-sent events and WebSockets.

use crate::support::{apps, Berth};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_download_and_upload_arrive_intact() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "bulk").await;
    let label = format!("{}--main--dev--admin", app.port());
    for http1 in [true, false] {
        let client = berth.client(http1);
        // Download: hash as it streams in, never holding it whole.
        let total = 100 * MIB;
        let res = client
            .get(berth.app_url(&label, &format!("/download?bytes={total}")))
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut stream = res.bytes_stream();
        let mut got = Sha256::new();
        let mut want = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            let expected: Vec<u8> = (n..n + chunk.len() as u64).map(apps::pattern).collect();
            want.update(&expected);
            got.update(&chunk);
            n += chunk.len() as u64;
        }
        assert_eq!(n, total);
        assert_eq!(got.finalize(), want.finalize());

        // Upload: a generated stream of 100 MiB, sent chunked.
        let chunks = futures_util::stream::iter((0..100u64).map(|i| {
            let block: Vec<u8> = (i * MIB..(i + 1) * MIB).map(apps::pattern).collect();
            Ok::<_, std::io::Error>(bytes::Bytes::from(block))
        }));
        let mut expect = Sha256::new();
        for i in 0..100u64 {
            let block: Vec<u8> = (i * MIB..(i + 1) * MIB).map(apps::pattern).collect();
            expect.update(&block);
        }
        let res = client
            .post(berth.app_url(&label, "/upload"))
            .bearer_auth(&berth.admin_token)
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["bytes"], total);
        assert_eq!(body["sha256"], hex::encode(expect.finalize()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_arrive_one_by_one() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "sse").await;
    let label = format!("{}--main--dev--admin", app.port());
    for http1 in [true, false] {
        let res = berth
            .client(http1)
            .get(berth.app_url(&label, "/sse?n=5&gap_ms=300"))
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let start = Instant::now();
        let mut stream = res.bytes_stream();
        let mut buf = String::new();
        let mut arrivals = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                arrivals.push((event, start.elapsed()));
            }
        }
        assert_eq!(arrivals.len(), 5);
        for (i, (event, at)) in arrivals.iter().enumerate() {
            assert!(event.contains(&format!("data: event {i}")), "{event}");
            // Event i is sent at about i*300 ms: it must not wait for the next.
            let sent = Duration::from_millis(300 * i as u64);
            assert!(
                *at < sent + Duration::from_millis(250),
                "event {i} arrived at {at:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echoes_a_thousand_messages() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let tls = tls_to(&berth, &host, b"http/1.1").await;
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://{host}:{}/ws", berth.addr.port()),
    )
    .unwrap();
    let mut req = req;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", berth.admin_token).parse().unwrap(),
    );
    let (mut ws, res) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(res.status(), 101);
    use tokio_tungstenite::tungstenite::Message;
    for i in 0..1000 {
        let text = format!("message {i} {}", "x".repeat(i % 200));
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

/// A TLS connection to berth, trusting its CA, offering `alpn`.
pub(crate) async fn tls_to(
    berth: &Berth,
    host: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    crate::support::raw::tls_alpn(berth.addr, &berth.ca_pem, host, alpn).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio_tungstenite::tungstenite::{protocol::Role, Message};
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let tls = tls_to(&berth, &host, b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioExecutor::new(), TokioIo::new(tls))
    .await
    .unwrap();
    tokio::spawn(conn);
    // Let the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive.
    let warm = http::Request::get(format!("https://{host}:{}/", berth.addr.port()))
        .header("authorization", format!("Bearer {}", berth.admin_token))
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(warm).await.unwrap().status(), 200);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{host}:{}/ws", berth.addr.port()))
        .header("authorization", format!("Bearer {}", berth.admin_token))
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("sec-websocket-accept").is_none());
    let stream = hyper::upgrade::on(&mut res).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(stream),
        Role::Client,
        None,
    )
    .await;
    for i in 0..100 {
        let text = format!("h2 message {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text);
    }
}
