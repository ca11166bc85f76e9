//! The built-in load generator (used when wrk / h2load are not installed):
//! N connections, each looping requests for a fixed time, every latency
//! recorded; and the large-download measurement, which always uses it.

use crate::net::{Proto, Target};
use crate::report::Measured;
use anyhow::{bail, Result};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::{Duration, Instant};

/// What one closed-loop run should do.
pub struct Load {
    pub proto: Proto,
    /// TCP (and TLS) connections
    pub connections: usize,
    /// Requests in flight per connection (HTTP/2 streams; 1 for HTTP/1.1)
    pub streams: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub path: &'static str,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    body_bytes: u64,
    errors: u64,
}

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

async fn open(target: &Target, proto: Proto) -> Result<Sender> {
    let io = TokioIo::new(target.dial(proto).await?);
    Ok(match proto {
        Proto::H1 => {
            let (send, conn) = http1::handshake(io).await?;
            tokio::spawn(conn);
            Sender::H1(send)
        }
        Proto::H2 => {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(32 << 20)
                .handshake(io)
                .await?;
            tokio::spawn(conn);
            Sender::H2(send)
        }
    })
}

/// One request; returns the body length, or an error for a failure or a non-200.
async fn request(sender: &mut Sender, target: &Target, proto: Proto, path: &str) -> Result<u64> {
    let req = target.request(proto, Method::GET, path, Empty::new());
    let res = match sender {
        Sender::H1(s) => {
            s.ready().await?;
            s.send_request(req).await?
        }
        Sender::H2(s) => {
            s.ready().await?;
            s.send_request(req).await?
        }
    };
    let status = res.status();
    let mut body = res.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n += data.len() as u64;
        }
    }
    if status != http::StatusCode::OK {
        bail!("status {status}");
    }
    Ok(n)
}

/// Runs `load` against `target` and measures the window after the warm-up.
pub async fn run(target: &Target, load: &Load) -> Result<Measured> {
    let mut senders = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        senders.push(open(target, load.proto).await?);
    }
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let mut tasks = Vec::new();
    let mut per_stream = Vec::new();
    for sender in senders {
        match sender {
            Sender::H1(s) => per_stream.push(Sender::H1(s)),
            Sender::H2(s) => {
                per_stream.extend((0..load.streams).map(|_| Sender::H2(s.clone())));
            }
        }
    }
    for mut sender in per_stream {
        let target = target.clone();
        let (proto, path) = (load.proto, load.path);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = request(&mut sender, &target, proto, path).await;
                let t1 = Instant::now();
                let counted = t0 >= start && t1 <= end;
                match result {
                    Ok(n) if counted => {
                        tally.latencies_us.push((t1 - t0).as_micros() as u32);
                        tally.body_bytes += n;
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if counted {
                            tally.errors += 1;
                        }
                        // The connection may be gone: dial again.
                        if sender.is_closed() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if let Ok(s) = open(&target, proto).await {
                                sender = s;
                            }
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.latencies_us.extend(t.latencies_us);
        all.body_bytes += t.body_bytes;
        all.errors += t.errors;
    }
    all.latencies_us.sort_unstable();
    let secs = load.duration.as_secs_f64();
    Ok(Measured {
        requests_per_s: Some(all.latencies_us.len() as f64 / secs),
        p50_ms: percentile_ms(&all.latencies_us, 50.0),
        p99_ms: percentile_ms(&all.latencies_us, 99.0),
        p999_ms: percentile_ms(&all.latencies_us, 99.9),
        mb_per_s: all.body_bytes as f64 / secs / 1e6,
        errors: all.errors,
        seconds: secs,
    })
}

/// The `p`th percentile (nearest rank) of sorted microseconds, in ms.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    Some(f64::from(sorted_us[i]) / 1000.0)
}

/// Downloads `bytes` on each of `streams` HTTP/1.1 connections at once and
/// reports the aggregate MB/s over the wall time; p50/p99 are the time to
/// the first body byte.
pub async fn download(target: &Target, bytes: u64, streams: usize) -> Result<Measured> {
    let path: &'static str = Box::leak(format!("/bytes?n={bytes}").into_boxed_str());
    let mut senders = Vec::new();
    for _ in 0..streams {
        senders.push(open(target, Proto::H1).await?);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for mut sender in senders {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let req = target.request(Proto::H1, Method::GET, path, Empty::<Bytes>::new());
            let Sender::H1(s) = &mut sender else {
                unreachable!("download uses HTTP/1.1")
            };
            let res = s.send_request(req).await?;
            if res.status() != http::StatusCode::OK {
                bail!("status {}", res.status());
            }
            let mut body = res.into_body();
            let mut first = None;
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                if let Some(data) = frame?.data_ref() {
                    first.get_or_insert_with(|| started.elapsed());
                    n += data.len() as u64;
                }
            }
            Ok::<_, anyhow::Error>((n, first.unwrap_or_default()))
        }));
    }
    let mut total = 0u64;
    let mut ttfb_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        match t.await? {
            Ok((n, first)) => {
                total += n;
                ttfb_us.push(first.as_micros() as u32);
                if n != bytes {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    ttfb_us.sort_unstable();
    Ok(Measured {
        requests_per_s: None,
        p50_ms: percentile_ms(&ttfb_us, 50.0),
        p99_ms: percentile_ms(&ttfb_us, 99.0),
        p999_ms: None,
        mb_per_s: total as f64 / secs / 1e6,
        errors,
        seconds: secs,
    })
}

/// Uploads `bytes` in one HTTP/1.1 POST (64 KiB chunks, with a
/// Content-Length) and reports MB/s over the wall time; p50/p99 are the
/// whole request's time. The origin answers how many bytes it received; a
/// short count is an error.
pub async fn upload(target: &Target, bytes: u64) -> Result<Measured> {
    use futures_util::stream;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![b'u'; CHUNK as usize]);
    let frames = stream::iter((0..bytes.div_ceil(CHUNK)).map(move |i| {
        let n = (bytes - i * CHUNK).min(CHUNK) as usize;
        Ok::<_, std::convert::Infallible>(Frame::data(chunk.slice(..n)))
    }));
    let io = TokioIo::new(target.dial(Proto::H1).await?);
    let (mut send, conn) = http1::handshake(io).await?;
    tokio::spawn(conn);
    let mut req = target.request(Proto::H1, Method::POST, "/upload", StreamBody::new(frames));
    req.headers_mut()
        .insert(http::header::CONTENT_LENGTH, bytes.into());
    let t0 = Instant::now();
    let res = send.send_request(req).await?;
    let status = res.status();
    let received: Option<u64> = res
        .headers()
        .get("x-received")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    res.into_body().collect().await?;
    let secs = t0.elapsed().as_secs_f64();
    let ok = status == http::StatusCode::OK && received == Some(bytes);
    let ms = Some(secs * 1000.0);
    Ok(Measured {
        requests_per_s: None,
        p50_ms: ms,
        p99_ms: ms,
        p999_ms: None,
        mb_per_s: if ok { bytes as f64 / secs / 1e6 } else { 0.0 },
        errors: u64::from(!ok),
        seconds: secs,
    })
}

/// New connection per request: `concurrency` loops, each dialing (TCP, and
/// a full TLS handshake without session resumption for TLS targets),
/// sending one `GET {path}` with `Connection: close`, reading the answer and
/// dropping the connection. req/s here is handshakes (connections) per
/// second.
pub async fn handshakes(
    target: &Target,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    path: &'static str,
) -> Result<Measured> {
    let target = target.without_resumption();
    let start = Instant::now() + warmup;
    let end = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let result = async {
                    let mut sender = open(&target, Proto::H1).await?;
                    let Sender::H1(s) = &mut sender else {
                        unreachable!("opened as HTTP/1.1")
                    };
                    let mut req = target.request(Proto::H1, Method::GET, path, Empty::new());
                    req.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                    let res = s.send_request(req).await?;
                    let status = res.status();
                    let n = res.into_body().collect().await?.to_bytes().len() as u64;
                    if status != http::StatusCode::OK {
                        bail!("status {status}");
                    }
                    Ok::<_, anyhow::Error>(n)
                }
                .await;
                let t1 = Instant::now();
                if t0 >= start && t1 <= end {
                    match result {
                        Ok(n) => {
                            tally.latencies_us.push((t1 - t0).as_micros() as u32);
                            tally.body_bytes += n;
                        }
                        Err(_) => tally.errors += 1,
                    }
                } else if result.is_err() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await?;
        all.latencies_us.extend(t.latencies_us);
        all.body_bytes += t.body_bytes;
        all.errors += t.errors;
    }
    all.latencies_us.sort_unstable();
    let secs = duration.as_secs_f64();
    Ok(Measured {
        requests_per_s: Some(all.latencies_us.len() as f64 / secs),
        p50_ms: percentile_ms(&all.latencies_us, 50.0),
        p99_ms: percentile_ms(&all.latencies_us, 99.0),
        p999_ms: percentile_ms(&all.latencies_us, 99.9),
        mb_per_s: all.body_bytes as f64 / secs / 1e6,
        errors: all.errors,
        seconds: secs,
    })
}
