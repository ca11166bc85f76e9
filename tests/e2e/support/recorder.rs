//! An app that records every byte that reaches it, for the smuggling tests:
//! whatever the edge sends is kept per connection and parsed again here with
//! a strict HTTP/1.1 parser of our own (httparse for the head, exact
//! `Content-Length` or chunked framing), so a test can say from the app's
//! side exactly which requests arrived, and that nothing else did.
//!
//! It answers each request (hyper, HTTP/1.1) with `200` and a JSON summary,
//! after reading the whole body; an `Upgrade: h2c` request gets `101`, as an
//! app with an h2c handler would answer, and then everything the client sends
//! is recorded as it comes.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

type Log = Arc<Mutex<Vec<u8>>>;

/// A running recording app.
pub struct Recorder {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<Log>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request as the app received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Header names in lower case, values as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body after framing; `None` when the connection ended first.
    pub body: Option<Vec<u8>>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    pub fn host(&self) -> Option<String> {
        self.header("host")
    }
}

/// Everything one connection carried, parsed.
#[derive(Debug, Default)]
pub struct Parsed {
    pub requests: Vec<Seen>,
    /// Bytes that are not (the start of) a well-formed request.
    pub garbage: Vec<u8>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Log>>> = Arc::default();
        let all = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let log = Log::default();
                all.lock().unwrap().push(log.clone());
                tokio::spawn(serve(Tee { inner: tcp, log }));
            }
        });
        Recorder { addr, conns, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Forgets what was recorded so far (call it while no request is in flight).
    pub fn clear(&self) {
        for c in self.conns.lock().unwrap().iter() {
            c.lock().unwrap().clear();
        }
    }

    /// The raw bytes of each connection since the last [`Recorder::clear`].
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.conns
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.lock().unwrap().clone())
            .filter(|b| !b.is_empty())
            .collect()
    }

    /// Every connection's bytes, parsed.
    pub fn parsed(&self) -> Vec<Parsed> {
        self.raw().iter().map(|b| parse_stream(b)).collect()
    }

    /// Waits until nothing new arrived for 150 ms (at most 3 s), then
    /// returns every connection's bytes, parsed.
    pub async fn settle(&self) -> Vec<Parsed> {
        let total = || self.raw().iter().map(Vec::len).sum::<usize>();
        let mut last = total();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let now = total();
            if now == last {
                break;
            }
            last = now;
        }
        self.parsed()
    }
}

/// A TCP stream that appends every byte read to `log`.
struct Tee {
    inner: TcpStream,
    log: Log,
}

impl AsyncRead for Tee {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res {
            self.log
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
        }
        res
    }
}

impl AsyncWrite for Tee {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve(io: Tee) {
    let svc = hyper::service::service_fn(handle);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let h2c = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"h2c"));
    if h2c {
        // Read whatever comes after the switch (the tee records it).
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on_upgrade.await {
                let mut io = TokioIo::new(up);
                let mut sink = Vec::new();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut sink)).await;
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "h2c")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Full::new(Bytes::from_static(b"broken body")))
                .unwrap())
        }
    };
    let out = serde_json::json!({
        "recorder": true,
        "method": method,
        "path": path,
        "body": String::from_utf8_lossy(&body),
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out.to_string())))
        .unwrap())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a connection's bytes as a sequence of HTTP/1.1 requests, strictly:
/// CRLF line endings, `Content-Length` as plain digits, `Transfer-Encoding`
/// only as `chunked`. Whatever does not fit is `garbage`.
pub fn parse_stream(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(head_end) = find(rest, b"\r\n\r\n").map(|i| i + 4) else {
            // A head cut short by a closed connection: not a request.
            out.garbage.extend_from_slice(rest);
            break;
        };
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&rest[..head_end]) {
            Ok(httparse::Status::Complete(n)) if n == head_end => {}
            _ => {
                out.garbage.extend_from_slice(rest);
                break;
            }
        }
        // httparse accepts bare LF; this parser does not.
        if rest[..head_end]
            .iter()
            .enumerate()
            .any(|(i, &b)| b == b'\n' && (i == 0 || rest[i - 1] != b'\r'))
        {
            out.garbage.extend_from_slice(rest);
            break;
        }
        let mut seen = Seen {
            method: req.method.unwrap_or_default().to_owned(),
            target: req.path.unwrap_or_default().to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
            body: None,
        };
        let body_start = &rest[head_end..];
        let te: Vec<String> = seen
            .headers
            .iter()
            .filter(|(k, _)| k == "transfer-encoding")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        let cl: Vec<String> = seen
            .headers
            .iter()
            .filter(|(k, _)| k == "content-length")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        let framed = match (te.as_slice(), cl.as_slice()) {
            ([], []) => Some((Some(Vec::new()), 0)),
            ([], [len]) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                let len: usize = len.parse().unwrap_or(usize::MAX);
                if body_start.len() >= len {
                    Some((Some(body_start[..len].to_vec()), len))
                } else {
                    Some((None, body_start.len()))
                }
            }
            ([te], []) if te == "chunked" => Some(dechunk(body_start)),
            _ => None,
        };
        let Some((body, used)) = framed else {
            // Framing an app could read two ways: the worst case.
            out.garbage.extend_from_slice(rest);
            break;
        };
        let complete = body.is_some();
        seen.body = body;
        out.requests.push(seen);
        rest = &body_start[used..];
        if !complete {
            break;
        }
    }
    out
}

/// Decodes a chunked body: (body, bytes used); the body is `None` if the
/// bytes end first or break the grammar (then all bytes count as used).
fn dechunk(buf: &[u8]) -> (Option<Vec<u8>>, usize) {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return (None, buf.len());
        };
        let line = &buf[pos..pos + line_end];
        let size = std::str::from_utf8(line)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|s| usize::from_str_radix(s, 16).ok());
        let Some(size) = size else {
            return (None, buf.len());
        };
        pos += line_end + 2;
        if size == 0 {
            // Trailer section: lines until an empty one.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n") else {
                    return (None, buf.len());
                };
                pos += end + 2;
                if end == 0 {
                    return (Some(body), pos);
                }
            }
        }
        if buf.len() < pos + size + 2 || &buf[pos + size..pos + size + 2] != b"\r\n" {
            return (None, buf.len());
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

#[test]
fn the_strict_parser_reads_what_hyper_writes_and_nothing_else() {
    let ok = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n";
    let p = parse_stream(ok);
    assert!(p.garbage.is_empty(), "{p:?}");
    assert_eq!(p.requests.len(), 2);
    assert_eq!(p.requests[0].body.as_deref(), Some(&b"abc"[..]));
    assert_eq!(p.requests[1].target, "/b");
    assert_eq!(p.requests[1].body.as_deref(), Some(&b"xyz"[..]));
    // A body cut short: one incomplete request.
    let p = parse_stream(b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\nabc");
    assert_eq!(p.requests.len(), 1);
    assert!(p.requests[0].body.is_none());
    // Both framings, a bare LF, an odd length: garbage, never a guess.
    for bad in [
        &b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
            [..],
        b"POST /a HTTP/1.1\nhost: x\r\n\r\n",
        b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 03a\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00",
    ] {
        let p = parse_stream(bad);
        assert!(!p.garbage.is_empty(), "{:?}", String::from_utf8_lossy(bad));
    }
}
