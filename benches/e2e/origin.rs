//! The origin app: a minimal, fast hyper HTTP/1.1 server standing in for a
//! developer's web server. It runs in its own process (the bench binary
//! re-executed with `BERTH_BENCH_ROLE=origin`), so it shares no runtime with
//! the load generator or with berth.
//!
//! * `GET /1k` answers 1024 bytes.
//! * `GET /bytes?n=N` streams N bytes in 64 KiB chunks (with a Content-Length).
//! * `POST /upload` reads the whole request body and answers its length in
//!   an `x-received` header (empty body).
//! * `GET /ws` with `Upgrade: websocket` answers `101` and then keeps the
//!   connection open and idle until the client closes it (the idle
//!   WebSocket scenario; it reads and drops whatever arrives).
//!
//! It prints `listening <addr>` on stdout and exits when its stdin closes,
//! so it never outlives the bench, even when the bench is killed.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::net::TcpListener;

const CHUNK: usize = 64 * 1024;

/// A body of `remaining` bytes, sent as slices of one shared chunk.
struct Repeat {
    chunk: Bytes,
    remaining: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn handle(req: &Request<Incoming>, chunk: &Bytes) -> Response<Repeat> {
    let n = match req.uri().path() {
        "/1k" => Some(1024),
        "/bytes" => req.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("n="))
                .and_then(|v| v.parse::<u64>().ok())
        }),
        _ => None,
    };
    let (status, remaining) = match n {
        Some(n) => (StatusCode::OK, n),
        None => (StatusCode::NOT_FOUND, 0),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/octet-stream")
        .body(Repeat {
            chunk: chunk.clone(),
            remaining,
        })
        .expect("static response parts are valid")
}

/// Reads the body of an upload and answers how many bytes arrived.
async fn upload(req: Request<Incoming>) -> Response<Repeat> {
    use http_body_util::BodyExt as _;
    let mut body = req.into_body();
    let mut n = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            n += data.len() as u64;
        }
    }
    Response::builder()
        .header("x-received", n)
        .body(Repeat {
            chunk: Bytes::new(),
            remaining: 0,
        })
        .expect("static response parts are valid")
}

/// Accepts a WebSocket upgrade and holds the connection, idle, until the
/// client goes away. A request without `Sec-WebSocket-Key` gets a 400.
fn websocket(mut req: Request<Incoming>) -> Response<Repeat> {
    let empty = || Repeat {
        chunk: Bytes::new(),
        remaining: 0,
    };
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(empty())
            .expect("static response parts are valid");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrade.await {
            let _ = tokio::io::copy(&mut TokioIo::new(io), &mut tokio::io::sink()).await;
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "upgrade")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .body(empty())
        .expect("static response parts are valid")
}

/// Runs the origin until stdin closes.
pub fn run() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("origin: tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("origin: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("origin: local addr");
        println!("listening {addr}");
        std::io::stdout().flush().ok();
        // Exit when the parent goes away (stdin reaches EOF).
        std::thread::spawn(|| {
            let mut buf = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let chunk = chunk.clone();
                    async move {
                        match req.uri().path() {
                            "/upload" => return Ok::<_, Infallible>(upload(req).await),
                            "/ws" => return Ok(websocket(req)),
                            _ => {}
                        }
                        Ok(handle(&req, &chunk))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
}
