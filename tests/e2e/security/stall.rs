//! Nothing a client does may freeze an agent: readers that stop reading,
//! pending requests to an app that never answers, a port that leads back to
//! the edge, a replacement tunnel that dies, an agent that goes silent.

use crate::support::{apps, raw, relay::Relay, Berth, Options};
use berth::config::Limits;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a test app saw.
#[derive(Default)]
struct Seen {
    /// Bytes the app wrote.
    written: AtomicU64,
    accepted: AtomicU64,
    /// Connections that ended (the peer closed, or a write failed).
    closed: AtomicU64,
    /// Requests whose head arrived, on connections still open.
    in_flight: AtomicU64,
}

impl Seen {
    fn open(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst) - self.closed.load(Ordering::SeqCst)
    }
}

/// A test app on 127.0.0.1 that runs `serve` for every connection.
struct RawApp {
    port: u16,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawApp {
    async fn start<F, Fut>(serve: F) -> RawApp
    where
        F: Fn(TcpStream, Arc<Seen>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Seen::default());
        let serve = Arc::new(serve);
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    seen.accepted.fetch_add(1, Ordering::SeqCst);
                    let (serve, seen) = (serve.clone(), seen.clone());
                    conns.spawn(async move {
                        serve(tcp, seen.clone()).await;
                        seen.closed.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        };
        RawApp { port, seen, task }
    }

    /// Answers every request with an endless download (a 1 TiB
    /// `Content-Length`), written as fast as the connection takes it.
    async fn firehose() -> RawApp {
        RawApp::start(|mut tcp, seen| async move {
            if read_head(&mut tcp).await.is_none() {
                return;
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 1099511627776\r\n\r\n";
            if tcp.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 256 * 1024];
            while tcp.write_all(&chunk).await.is_ok() {
                seen.written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        })
        .await
    }

    /// Reads requests and never answers; a connection ends when the peer
    /// closes it. Counts the requests in flight: a connection that never
    /// carries a request (a client's spare) is no request.
    async fn silent() -> RawApp {
        RawApp::start(|mut tcp, seen| async move {
            if read_head(&mut tcp).await.is_none() {
                return;
            }
            seen.in_flight.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            seen.in_flight.fetch_sub(1, Ordering::SeqCst);
        })
        .await
    }

    /// Reads a request head, then nothing more (an upload it ignores).
    async fn deaf() -> RawApp {
        RawApp::start(|mut tcp, _| async move {
            if read_head(&mut tcp).await.is_some() {
                std::future::pending::<()>().await;
            }
        })
        .await
    }
}

/// Reads up to the end of an HTTP head; `None` if the stream ended first.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return None;
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn label(port: u16) -> String {
    format!("{port}--main--dev--admin")
}

/// Opens a download on a fresh TLS connection, reads the response head,
/// and returns the connection unread from there on.
async fn stalled_download(berth: &Berth, port: u16) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = raw::tls(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
    let req = format!(
        "GET /download HTTP/1.1\r\nHost: {}.berth.localhost:{}\r\nAuthorization: Bearer {}\r\n\r\n",
        label(port),
        berth.addr.port(),
        berth.admin_token
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut tls))
        .await
        .expect("response head in time")
        .expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    tls
}

/// Waits until `seen.written` has not grown for a second (the stalled
/// streams hold all they can); returns it.
async fn until_stalled(seen: &Seen, limit: Duration) -> u64 {
    let started = Instant::now();
    let mut last = (seen.written.load(Ordering::SeqCst), Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = seen.written.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= Duration::from_secs(1) {
            return now;
        }
        assert!(started.elapsed() < limit, "still writing after {limit:?}");
    }
}

/// GET `/` of the echo app at `port` through berth; panics unless it
/// answers 200 within `limit`. Returns how long it took.
async fn answers_within(berth: &Berth, http1: bool, port: u16, limit: Duration) -> Duration {
    let client = berth.client(http1);
    let started = Instant::now();
    let res = tokio::time::timeout(
        limit,
        client
            .get(berth.app_url(&label(port), "/probe"))
            .bearer_auth(&berth.admin_token)
            .send(),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer within {limit:?}: the agent is frozen"))
    .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = tokio::time::timeout(limit, res.json())
        .await
        .expect("body in time")
        .unwrap();
    assert_eq!(body["uri"], "/probe");
    started.elapsed()
}

fn limits(f: impl FnOnce(&mut Limits)) -> Options {
    let mut l = Limits::default();
    f(&mut l);
    Options {
        limits: Some(l),
        ..Default::default()
    }
}

const MIB: u64 = 1024 * 1024;

/// The scenario: downloads whose clients stop reading. Each stalled
/// stream holds a full 64 MiB window at the edge; with the old 128 MiB
/// connection window three of them froze every port of the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_downloads_do_not_freeze_the_agents_other_ports() {
    // No write timeout in the way: the windows alone must keep it working.
    let berth = Berth::start_with(limits(|l| {
        l.client_write_timeout = Duration::from_secs(600);
    }))
    .await;
    let big = RawApp::firehose().await;
    let other = apps::start("127.0.0.1:0", "other").await;
    answers_within(&berth, true, other.port(), Duration::from_secs(5)).await;

    const STALLED: u64 = 4;
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        stalled.push(stalled_download(&berth, big.port).await);
    }
    let held = until_stalled(&big.seen, Duration::from_secs(90)).await;
    println!(
        "{STALLED} stalled readers: the app wrote {} MiB before they all stopped",
        held / MIB
    );
    // Other ports of the same agent answer at once, over HTTP/1.1 and 2.
    for i in 0..6 {
        let took = answers_within(&berth, i % 2 == 0, other.port(), Duration::from_secs(3)).await;
        println!("probe {i} answered in {took:?}");
    }
    // Each stalled stream held (at least) a whole stream window.
    assert!(
        held >= STALLED * 64 * MIB,
        "the app wrote only {} MiB: the streams were not each given their window",
        held / MIB
    );
    assert_eq!(
        big.seen.open(),
        STALLED,
        "the stalled downloads are still there"
    );
    drop(stalled);
}

/// A stalled reader is dropped after `limits.client_write_timeout_secs`,
/// over HTTP/1.1 (its socket stops), HTTP/2 (one stream stops while the
/// connection lives on) and a WebSocket; a quiet WebSocket is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_takes_nothing_is_dropped_after_the_write_timeout() {
    let timeout = Duration::from_secs(2);
    let berth = Berth::start_with(limits(|l| l.client_write_timeout = timeout)).await;
    let big = RawApp::firehose().await;
    let echo = apps::start("127.0.0.1:0", "echo").await;

    // HTTP/1.1: the client reads the head and stops.
    let mut h1 = stalled_download(&berth, big.port).await;
    let started = Instant::now();
    wait_for(
        Duration::from_secs(20),
        "the HTTP/1.1 download ends",
        || big.seen.closed.load(Ordering::SeqCst) == 1,
    )
    .await;
    let took = started.elapsed();
    println!("stalled HTTP/1.1 reader dropped (the app's connection closed) after {took:?}");
    assert!(took >= timeout, "dropped before the timeout: {took:?}");
    // Reading now: what was buffered, then the end, well short of 1 TiB.
    let ex = raw::read_to_end(&mut h1, Duration::from_secs(20)).await;
    println!(
        "the HTTP/1.1 client then read {} MiB and the end ({:?})",
        ex.bytes.len() as u64 / MIB,
        ex.error
    );
    assert!((ex.bytes.len() as u64) < 1 << 40);

    // HTTP/2: one stream is left unread; its connection stays in use.
    let client = berth.client(false);
    let res = client
        .get(berth.app_url(&label(big.port), "/download"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    let started = Instant::now();
    // Meanwhile the same connection serves other requests.
    for _ in 0..3 {
        let r = client
            .get(berth.app_url(&label(echo.port()), "/"))
            .bearer_auth(&berth.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_for(
        Duration::from_secs(20),
        "the HTTP/2 stream's upstream ends",
        || big.seen.closed.load(Ordering::SeqCst) == 2,
    )
    .await;
    let took = started.elapsed();
    println!("stalled HTTP/2 stream's upstream dropped after {took:?}");
    assert!(took >= timeout, "dropped before the timeout: {took:?}");
    let rest = tokio::time::timeout(Duration::from_secs(20), res.bytes()).await;
    assert!(
        matches!(rest, Ok(Err(_))),
        "the stalled HTTP/2 stream ended cleanly: {rest:?}"
    );
    let r = client
        .get(berth.app_url(&label(echo.port()), "/after"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the HTTP/2 connection still works");

    // A quiet WebSocket outlives several timeouts.
    let mut quiet = websocket(&berth, echo.port()).await;
    tokio::time::sleep(timeout * 3).await;
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    quiet.send(Message::text("still there?")).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), quiet.next())
        .await
        .expect("an echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "still there?");

    // A WebSocket client that sends and never reads the echoes: the edge's
    // writes to it block, and it is dropped.
    let flood = websocket(&berth, echo.port()).await;
    let (mut tx, _rx) = flood.split();
    let started = Instant::now();
    let sent = tokio::time::timeout(Duration::from_secs(60), async {
        let msg = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        while tx.send(Message::binary(msg.clone())).await.is_ok() {
            n += 1;
        }
        n
    })
    .await
    .expect("the WebSocket that reads nothing was never dropped");
    println!(
        "a WebSocket that read nothing was dropped {:?} after it started sending ({} MiB sent)",
        started.elapsed(),
        sent * 64 / 1024
    );
}

/// The agent's side of the same stall: an app that stops reading an
/// upload. The agent drops the stream after its write timeout, so the
/// request ends long before `upstream_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_stops_reading_an_upload_is_dropped_by_the_agent() {
    let berth = Berth::start_with(limits(|l| {
        l.upstream_timeout = Duration::from_secs(600);
        l.client_write_timeout = Duration::from_secs(600);
    }))
    .await;
    let deaf = RawApp::deaf().await;
    let token = berth.create_agent("uploads", "main").await;
    let _agent = berth.spawn_agent(
        &token,
        berth::tunnel::agent::Upstream {
            write_timeout: Some(Duration::from_secs(2)),
            ..Default::default()
        },
    );
    berth.wait_agents(2).await;
    let body = vec![b'u'; 256 * 1024 * 1024];
    let started = Instant::now();
    // Nothing else would end it for a long while: upstream_timeout and
    // the edge's own write timeout are 600 s.
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        berth
            .client(true)
            .post(berth.app_url(&format!("{}--main--uploads--admin", deaf.port), "/upload"))
            .bearer_auth(&berth.admin_token)
            .body(body)
            .send(),
    )
    .await
    .expect("the upload to an app that stopped reading never ended");
    println!(
        "upload to an app that stopped reading ended after {:?}: {:?}",
        started.elapsed(),
        res.as_ref().map(|r| r.status())
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ended before the agent's write timeout"
    );
    if let Ok(r) = res {
        assert_eq!(r.status(), 502);
    }
}

/// Requests pending on an app that never answers are capped per agent: the
/// ones beyond get a 503 with Retry-After at once, other agents are not
/// affected, and the count goes down as requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_per_agent_are_capped_with_a_503() {
    const CAP: usize = 8;
    let berth = Berth::start_with(limits(|l| {
        l.max_streams_per_agent = CAP;
        l.upstream_timeout = Duration::from_secs(600);
    }))
    .await;
    let silent = RawApp::silent().await;
    let echo = apps::start("127.0.0.1:0", "echo").await;
    let token = berth.create_agent("second", "main").await;
    let _agent = berth.spawn_agent(&token, Default::default());
    berth.wait_agents(2).await;

    let opened_before = berth.server.tunnels.stats.streams_opened.get();
    let client = berth.client(true);
    let url = berth.app_url(&label(silent.port), "/never");
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..CAP + 12 {
        let req = client.get(&url).bearer_auth(&berth.admin_token);
        pending.spawn(async move { req.send().await });
    }
    let mut busy = 0;
    let started = Instant::now();
    while busy < 12 {
        let res = tokio::time::timeout(Duration::from_secs(10), pending.join_next())
            .await
            .expect("the requests over the cap are answered at once")
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["retry-after"], "1");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "agent_busy", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{CAP} requests")),
            "{body}"
        );
        busy += 1;
    }
    println!(
        "12 requests over the cap got 503 within {:?}",
        started.elapsed()
    );
    wait_for(
        Duration::from_secs(10),
        "the capped requests reach the app",
        || silent.seen.open() == CAP as u64,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        silent.seen.open(),
        CAP as u64,
        "more than the cap reached the app"
    );
    let opened = berth.server.tunnels.stats.streams_opened.get() - opened_before;
    assert!(opened <= CAP as u64, "{opened} tunnel streams opened");

    // The same agent's other ports wait for room too; another agent does not.
    let res = client
        .get(berth.app_url(&label(echo.port()), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let res = client
        .get(berth.app_url(&format!("{}--main--second--admin", echo.port()), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "another agent is not affected");

    // The pending requests give up: room again.
    pending.abort_all();
    wait_for(
        Duration::from_secs(10),
        "the app's connections close",
        || silent.seen.open() == 0,
    )
    .await;
    answers_within(&berth, true, echo.port(), Duration::from_secs(5)).await;
}

/// `limits.max_concurrent_streams` holds for one HTTP/2 connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_gets_at_most_its_stream_cap() {
    let berth = Berth::start_with(limits(|l| {
        l.max_concurrent_streams = 5;
        l.upstream_timeout = Duration::from_secs(600);
    }))
    .await;
    let silent = RawApp::silent().await;
    // Exactly one HTTP/2 connection (a pooling client such as reqwest may
    // open a second one when the first is at its stream limit, which would
    // let more through without the edge breaking its cap).
    let host = format!("{}.berth.localhost", label(silent.port));
    let cfg = berth::tls::client::client_config(Some(&berth.ca_pem), &[b"h2"]).unwrap();
    let tls = berth::tls::client::connect(&host, berth.addr.port(), cfg)
        .await
        .unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<bytes::Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
    tokio::spawn(conn);
    let url = format!("https://{host}:{}/never", berth.addr.port());
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let req = http::Request::get(&url)
            .header("authorization", format!("Bearer {}", berth.admin_token))
            .body(http_body_util::Empty::new())
            .unwrap();
        let mut sender = sender.clone();
        pending.spawn(async move { sender.send_request(req).await });
    }
    let in_flight = || silent.seen.in_flight.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(10), "5 requests reach the app", || {
        in_flight() == 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(in_flight(), 5, "more streams than the cap");
    if silent.seen.open() != 5 {
        println!(
            "{} connections open at the app for 5 requests",
            silent.seen.open()
        );
    }
    pending.abort_all();
}

/// A public port that is the edge's own listener: the agent refuses to dial
/// it (508 at once). Through a proxy in front of the edge, which the agent
/// cannot recognise, the edge's hop marks stop the loop after a few passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_leads_back_to_the_edge_gets_508_quickly() {
    let berth = Berth::start().await;
    let front = Relay::start(0, berth.addr).await;
    for port in [berth.addr.port(), front.addr.port()] {
        berth
            .share(
                &berth.admin_token,
                "admin/dev/main",
                port,
                json!({"level": "public"}),
            )
            .await;
    }
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    // `{port}s`: HTTPS to the "app", which is the edge itself.
    for (port, what) in [
        (berth.addr.port(), "the edge's own port"),
        (front.addr.port(), "a proxy in front of the edge"),
    ] {
        let before = fds();
        let started = Instant::now();
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            berth
                .client(true)
                .get(berth.app_url(&format!("{port}s--main--dev--admin"), "/"))
                .send(),
        )
        .await
        .expect("the loop was not stopped")
        .unwrap();
        let took = started.elapsed();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        let after = fds();
        println!(
            "{what}: {status} after {took:?}, {} more descriptors open",
            after as i64 - before as i64
        );
        assert_eq!(status, 508, "{body}");
        assert_eq!(body["error"], "loop_detected");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("Port {port}")) && message.contains("leads back to berth"),
            "{message}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(after < before + 100, "{before} -> {after} descriptors");
    }
    // The page a browser gets says it too.
    let res = berth
        .client(true)
        .get(berth.app_url(&format!("{}s--main--dev--admin", front.addr.port()), "/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 508);
    let page = res.text().await.unwrap();
    assert!(page.contains("Request loop"), "{page}");
}

/// A second connection with the agent's token replaces its tunnel; when
/// that replacement dies, the agent's first tunnel serves again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_tunnel_serves_again_when_its_replacement_dies() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "replaced").await;
    let token = berth.create_agent("twice", "main").await;
    let dev = berth.server.tunnels.agent_ids();
    let _first = berth.spawn_agent(&token, Default::default());
    berth.wait_agents(2).await;
    let agent_id = berth
        .server
        .tunnels
        .agent_ids()
        .into_iter()
        .find(|id| !dev.contains(id))
        .unwrap();
    let url = berth.app_url(&format!("{}--main--twice--admin", app.port()), "/");
    let get = || async {
        let res = tokio::time::timeout(
            Duration::from_secs(5),
            berth
                .client(true)
                .get(&url)
                .bearer_auth(&berth.admin_token)
                .send(),
        )
        .await
        .expect("an answer in time")
        .unwrap();
        res.status().as_u16()
    };
    assert_eq!(get().await, 200);
    let first = berth.server.tunnels.get(agent_id).unwrap().generation;

    // The replacement: same token, a separate connection.
    let second = berth.spawn_agent(&token, Default::default());
    wait_for(
        Duration::from_secs(10),
        "the second tunnel replaces the first",
        || {
            berth
                .server
                .tunnels
                .get(agent_id)
                .is_some_and(|h| h.generation != first)
        },
    )
    .await;
    assert_eq!(get().await, 200);

    // It dies; the first one is still there.
    drop(second);
    let died = Instant::now();
    wait_for(Duration::from_secs(5), "the first tunnel is back", || {
        berth
            .server
            .tunnels
            .get(agent_id)
            .is_some_and(|h| h.generation == first)
    })
    .await;
    assert_eq!(get().await, 200);
    println!(
        "the first tunnel served again {:?} after its replacement died",
        died.elapsed()
    );
    assert!(
        died.elapsed() < Duration::from_secs(3),
        "{:?}",
        died.elapsed()
    );
    // And it stays: the replaced tunnel's grace period does not close it.
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert_eq!(
        berth.server.tunnels.get(agent_id).unwrap().generation,
        first
    );
    assert_eq!(get().await, 200);
}

/// An agent that goes silent mid-download is dropped in about 10 s (the
/// edge's 5 s pings and 5 s ping timeout), as the docs say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_is_dropped_within_about_ten_seconds() {
    let berth = Berth::start().await;
    let big = RawApp::firehose().await;
    let token = berth.create_agent("silent", "main").await;
    let path = Relay::start(0, berth.addr).await;
    let _agent = crate::support::run_agent(berth.agent_config(&token, path.addr.port()));
    berth.wait_agents_exactly(2, Duration::from_secs(10)).await;
    // A download is in flight when the path goes silent.
    let client = berth.client(true);
    let res = client
        .get(berth.app_url(&format!("{}--main--silent--admin", big.port), "/"))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reading = tokio::spawn(async move {
        let mut body = res.bytes_stream();
        use futures_util::StreamExt;
        while let Some(Ok(_)) = body.next().await {}
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    path.freeze();
    let took = berth.wait_agents_exactly(1, Duration::from_secs(20)).await;
    println!("a silent agent (download in flight) was dropped after {took:?}");
    assert!(took <= Duration::from_secs(11), "{took:?}");
    reading.abort();
}

async fn websocket(
    berth: &Berth,
    port: u16,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = format!("{}.berth.localhost", label(port));
    let tls = raw::tls(&berth.ca_pem, &host, berth.addr.port()).await;
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("wss://{host}:{}/ws", berth.addr.port()),
    )
    .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", berth.admin_token).parse().unwrap(),
    );
    let (ws, res) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(res.status(), 101);
    ws
}

async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `berth dev` as a process under an open-files limit of `limit` (a shell
/// `ulimit` argument: `-n 256` for soft and hard, `-S -n 256` for soft).
async fn dev_process(limit: &str, dir: &std::path::Path) -> (tokio::process::Child, u16) {
    let port = crate::support::free_port();
    let admin = crate::support::free_port();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_berth"))
        .arg("dev")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")]);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, port)
}

/// The child's stderr, collected in the background.
fn collect(
    child: &mut tokio::process::Child,
) -> (Arc<std::sync::Mutex<String>>, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncBufReadExt;
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    let task = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    (log, task)
}

async fn log_has(log: &std::sync::Mutex<String>, what: &str, limit: Duration) {
    let started = Instant::now();
    while !log.lock().unwrap().contains(what) {
        assert!(
            started.elapsed() < limit,
            "no {what:?} in the log within {limit:?}:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server raises its soft open-files limit to the hard one, and its
/// default connection cap stays below the limit: a flood of idle
/// connections waits in the listen backlog instead of making `accept` fail
/// (EMFILE) and starving the process (its own agent's connections to apps
/// need descriptors too), and it serves again as soon as they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_exhaust_the_open_files_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();

    // A low soft limit is raised to the hard one.
    let (mut raised, _) = dev_process("-S -n 256", &tmp.path().join("raised")).await;
    let (log, _drain) = collect(&mut raised);
    log_has(
        &log,
        &format!("open_files_limit={hard}"),
        Duration::from_secs(20),
    )
    .await;
    drop(raised);

    // A hard limit of 256: the default cap is 128 connections.
    let dir = tmp.path().join("low");
    let (mut child, port) = dev_process("-n 256", &dir).await;
    let pid = child.id().unwrap();
    let (log, _drain) = collect(&mut child);
    log_has(&log, "agent connected", Duration::from_secs(20)).await;
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count()
    };
    let before = fds();
    // 240: more than the 256-descriptor limit leaves after start-up, but
    // within what the listen backlog holds beyond the 128 accepted (more
    // would wait on SYN retries for a minute).
    let mut flood = Vec::new();
    for _ in 0..240 {
        flood.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = fds();
    println!("descriptors: {before} before, {during} with 240 idle connections (limit 256)");
    assert!(during < 256, "{during} descriptors open");
    assert!(
        !log.lock().unwrap().contains("accept failed"),
        "{}",
        log.lock().unwrap()
    );
    drop(flood);

    // Served again, through its own agent: its app connections need
    // descriptors too.
    let app = apps::start("127.0.0.1:0", "after").await;
    let token = std::fs::read_to_string(dir.join("admin-token")).unwrap();
    let client = crate::support::client_for(&dir.join("ca.pem"), true);
    let url = format!("https://{}.berth.localhost:{port}/after", label(app.port()));
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        client.get(&url).bearer_auth(token.trim()).send(),
    )
    .await
    .expect("served again in time")
    .unwrap();
    assert_eq!(res.status(), 200);
    println!("served again {:?} after the flood left", started.elapsed());
    let log = log.lock().unwrap();
    assert!(!log.contains("accept failed"), "{log}");
    assert!(log.contains("max_connections=128"), "{log}");
}
