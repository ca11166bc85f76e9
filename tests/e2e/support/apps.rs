//! The little apps that stand in for a developer's web server: an echo
//! server that reports what it received, streams downloads, hashes uploads,
//! sends server-sent events, echoes WebSocket messages and reports the
//! trailers it received.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

type AppBody = BoxBody<Bytes, std::io::Error>;

/// A running fake app.
pub struct App {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the echo app on `bind` (e.g. "127.0.0.1:0"); `name` is reported in
/// every answer so tests can tell apps apart.
pub async fn start(bind: &str, name: &str) -> App {
    let listener = TcpListener::bind(bind).await.expect("bind app");
    let addr = listener.local_addr().unwrap();
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(req, name));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    App { addr, task }
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<AppBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(
            Full::new(body.into())
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .unwrap()
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

/// The deterministic byte at offset `i` of a download.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i >> 13) % 251) as u8
}

async fn handle(
    mut req: Request<Incoming>,
    name: &'static str,
) -> Result<Response<AppBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let res = match path.as_str() {
        "/download" => {
            let total: u64 = query(&req, "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let stream = futures_util::stream::unfold(0u64, move |off| async move {
                if off >= total {
                    return None;
                }
                let n = (total - off).min(64 * 1024);
                let chunk: Vec<u8> = (off..off + n).map(pattern).collect();
                Some((
                    Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk))),
                    off + n,
                ))
            });
            Response::builder()
                .header("content-type", "application/octet-stream")
                .header("content-length", total.to_string())
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "broken upload"));
                };
                if let Some(d) = frame.data_ref() {
                    len += d.len() as u64;
                    hasher.update(d);
                }
            }
            let out = serde_json::json!({"bytes": len, "sha256": hex::encode(hasher.finalize())});
            full(StatusCode::OK, "application/json", out.to_string())
        }
        "/sse" => {
            let count: u64 = query(&req, "n").and_then(|v| v.parse().ok()).unwrap_or(5);
            let gap: u64 = query(&req, "gap_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let stream = futures_util::stream::unfold(0u64, move |i| async move {
                if i >= count {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(gap)).await;
                }
                let ev = format!("id: {i}\ndata: event {i}\n\n");
                Some((Ok::<_, std::io::Error>(Frame::data(Bytes::from(ev))), i + 1))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .unwrap()
        }
        "/trailers" => {
            // What arrived after the body: the request's trailers.
            let mut body = req.into_body();
            let mut trailers = serde_json::Map::new();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else {
                    return Ok(full(StatusCode::BAD_REQUEST, "text/plain", "broken body"));
                };
                if let Some(t) = frame.trailers_ref() {
                    for (k, v) in t {
                        trailers.insert(k.as_str().to_owned(), v.to_str().unwrap_or("?").into());
                    }
                }
            }
            let out = serde_json::json!({"trailers": trailers});
            full(StatusCode::OK, "application/json", out.to_string())
        }
        "/slow" => {
            let ms: u64 = query(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, "text/plain", "slow")
        }
        "/ws" => {
            let key = req.headers().get("sec-websocket-key").cloned();
            let Some(key) = key else {
                return Ok(full(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "not a websocket request",
                ));
            };
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on_upgrade.await else { return };
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    } else if msg.is_close() {
                        let _ = tx.close().await;
                        break;
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(
                    Full::new(Bytes::new())
                        .map_err(|e: Infallible| match e {})
                        .boxed(),
                )
                .unwrap()
        }
        _ => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or("<binary>").into(),
                    )
                })
                .collect();
            let out = serde_json::json!({
                "app": name,
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "version": format!("{:?}", req.version()),
                "headers": headers,
            });
            full(StatusCode::OK, "application/json", out.to_string())
        }
    };
    Ok(res)
}
