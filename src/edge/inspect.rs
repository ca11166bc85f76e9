//! The request inspector's edge half (issue 16): every exchange this edge
//! serves for an app port is kept, without berth's credentials, in a
//! bounded ring per (agent, port), and announced to whoever follows live.
//!
//! The proxy calls in at three points: [`Tap::start`] once a request is
//! admitted, [`tee`] on the body sent to the app, and [`finish`] on what
//! goes back (or [`upgraded`] for a WebSocket). Bodies are never buffered
//! nor delayed: the wrappers copy the first `body_bytes` of each frame as it
//! passes and count the rest. An exchange enters the ring when its response
//! body ends (or the client goes), so a WebSocket or an event stream is one
//! entry with its whole duration.
//!
//! Memory is bounded twice: per port (`max_entries_per_port`,
//! `max_bytes_per_port`) and per edge (`max_bytes_per_edge`, the oldest
//! entries of any port go first).

use super::pages::{self, ErrorPage};
use super::Edge;
use crate::auth::Visitor;
use crate::config::InspectorConfig;
use crate::protocol::inspect::{
    CapturedBody, Exchange, HeaderList, Held, Kind, Replay, ReplayRefused, RELAY_FOLLOW_PATH,
    RELAY_PATH,
};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::broadcast;

/// How many new exchanges a slow live follower may fall behind.
const LIVE_BACKLOG: usize = 1024;

/// What the ring holds for its port.
type Key = (i64, u16);

/// This edge's recorded exchanges.
pub struct Inspector {
    cfg: InspectorConfig,
    /// Starts every id, so ids from different edges never collide.
    tag: String,
    seq: AtomicU64,
    rings: Mutex<Rings>,
    live: broadcast::Sender<Arc<Exchange>>,
}

#[derive(Default)]
struct Rings {
    ports: HashMap<Key, Ring>,
    /// Every kept entry's (sequence, port), oldest first, for the per-edge
    /// bound; entries already dropped by their port's bound are skipped
    /// when met (and swept out when they pile up).
    order: VecDeque<(u64, Key)>,
    bytes: usize,
    count: usize,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Kept>,
    bytes: usize,
}

struct Kept {
    seq: u64,
    weight: usize,
    exchange: Arc<Exchange>,
}

impl Inspector {
    /// An inspector with these settings.
    pub fn new(cfg: InspectorConfig) -> Arc<Inspector> {
        Arc::new(Inspector {
            cfg,
            tag: format!("{:08x}", rand::random::<u32>()),
            seq: AtomicU64::new(1),
            rings: Mutex::new(Rings::default()),
            live: broadcast::channel(LIVE_BACKLOG).0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &InspectorConfig {
        &self.cfg
    }

    /// The exchanges kept for `(agent_id, port)`, newest first.
    pub fn list(&self, agent_id: i64, port: u16) -> Vec<Exchange> {
        let rings = self.lock();
        rings
            .ports
            .get(&(agent_id, port))
            .map_or_else(Vec::new, |r| {
                r.entries
                    .iter()
                    .rev()
                    .map(|k| (*k.exchange).clone())
                    .collect()
            })
    }

    /// New exchanges of every port, as they are kept.
    pub fn follow(&self) -> broadcast::Receiver<Arc<Exchange>> {
        self.live.subscribe()
    }

    /// Bytes held (as [`Exchange::weight`] counts them) and entries, over
    /// every port.
    pub fn held(&self) -> (usize, usize) {
        let rings = self.lock();
        (rings.bytes, rings.count)
    }

    /// The bytes held for one port.
    pub fn held_for(&self, agent_id: i64, port: u16) -> usize {
        self.lock()
            .ports
            .get(&(agent_id, port))
            .map_or(0, |r| r.bytes)
    }

    fn next_id(&self) -> (u64, String) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        (
            seq,
            concat(&[&self.tag, "-", itoa::Buffer::new().format(seq)]),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `exchange` (numbered `seq`) within every bound and tells the
    /// live followers.
    fn keep(&self, seq: u64, mut exchange: Exchange) {
        let mut weight = exchange.weight();
        if weight > self.cfg.max_bytes_per_port {
            // Bodies go first; a record whose headers alone overflow a
            // port's bound is not kept.
            exchange.request_body = exchange.request_body.take().map(|_| empty_truncated());
            exchange.response_body = exchange.response_body.take().map(|_| empty_truncated());
            weight = exchange.weight();
            if weight > self.cfg.max_bytes_per_port {
                return;
            }
        }
        let exchange = Arc::new(exchange);
        let key = (exchange.agent_id, exchange.port);
        {
            let mut rings = self.lock();
            let rings = &mut *rings;
            let ring = rings.ports.entry(key).or_default();
            ring.entries.push_back(Kept {
                seq,
                weight,
                exchange: exchange.clone(),
            });
            ring.bytes += weight;
            rings.bytes += weight;
            rings.count += 1;
            rings.order.push_back((seq, key));
            while ring.entries.len() > self.cfg.max_entries_per_port
                || ring.bytes > self.cfg.max_bytes_per_port
            {
                let Some(old) = ring.entries.pop_front() else {
                    break;
                };
                ring.bytes -= old.weight;
                rings.bytes -= old.weight;
                rings.count -= 1;
            }
            while rings.bytes > self.cfg.max_bytes_per_edge {
                let Some((seq, key)) = rings.order.pop_front() else {
                    break;
                };
                let Some(ring) = rings.ports.get_mut(&key) else {
                    continue;
                };
                if ring.entries.front().is_some_and(|k| k.seq == seq) {
                    let old = ring.entries.pop_front().expect("front exists");
                    ring.bytes -= old.weight;
                    rings.bytes -= old.weight;
                    rings.count -= 1;
                    if ring.entries.is_empty() {
                        rings.ports.remove(&key);
                    }
                }
            }
            // Entries dropped by their port's bound leave their place in
            // `order` behind; sweep those out before they add up.
            if rings.order.len() > 2 * rings.count + 1024 {
                let ports = &rings.ports;
                rings.order.retain(|(seq, key)| {
                    ports
                        .get(key)
                        .is_some_and(|r| r.entries.front().is_some_and(|f| f.seq <= *seq))
                });
            }
        }
        // Sending takes the channel's lock even with nobody following.
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(exchange);
        }
    }
}

/// `parts` joined, in one allocation (cheaper than `format!`).
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

fn empty_truncated() -> CapturedBody {
    CapturedBody::of(b"", true)
}

/// The first bytes of a body, shared between its wrapper and the record.
struct Captured {
    limit: usize,
    kept: Mutex<Vec<u8>>,
    total: AtomicU64,
    truncated: AtomicBool,
}

impl Captured {
    fn new(limit: usize) -> Arc<Captured> {
        Arc::new(Captured {
            limit,
            kept: Mutex::new(Vec::new()),
            total: AtomicU64::new(0),
            truncated: AtomicBool::new(false),
        })
    }

    fn see(&self, data: &[u8]) {
        self.total.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.limit == 0 || data.is_empty() || self.truncated.load(Ordering::Relaxed) {
            return;
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.limit - kept.len();
        kept.extend_from_slice(&data[..data.len().min(room)]);
        if data.len() > room {
            self.truncated.store(true, Ordering::Relaxed);
        }
    }

    fn body(&self) -> Option<CapturedBody> {
        if self.limit == 0 {
            return None;
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        Some(CapturedBody::of(
            &kept,
            self.truncated.load(Ordering::Relaxed),
        ))
    }
}

/// One exchange being recorded: what was known when the request was
/// admitted.
pub struct Tap {
    inspector: Arc<Inspector>,
    started: Instant,
    record: Exchange,
    seq: u64,
    request: Arc<Captured>,
}

impl Tap {
    /// Starts recording a request `pass` admitted, unless recording is off
    /// for this edge or for the port's share.
    pub(super) fn start<B>(
        edge: &Edge,
        pass: &super::admit::Pass,
        req: &Request<B>,
        host: &str,
    ) -> Option<Tap> {
        let inspector = &edge.inspector;
        if !inspector.cfg.enabled || !pass.inspect {
            return None;
        }
        let (agent_id, port, app_tls) = (pass.agent_id, pass.port, pass.tls);
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let path = super::headers::strip_share_param(path);
        let (seq, id) = inspector.next_id();
        Some(Tap {
            inspector: inspector.clone(),
            started: Instant::now(),
            seq,
            request: Captured::new(inspector.cfg.body_bytes),
            record: Exchange {
                id,
                agent_id,
                port,
                started_at_ms: unix_ms(),
                kind: Kind::Http,
                method: req.method().as_str().to_owned(),
                url: concat(&["https://", host, &path]),
                status: 0,
                error: None,
                ttfb_ms: None,
                duration_ms: 0.0,
                request_bytes: 0,
                response_bytes: 0,
                request_headers: request_headers(req.headers()),
                response_headers: HeaderList::default(),
                request_body: None,
                response_body: None,
                app_tls,
                replay_of: None,
            },
        })
    }

    /// The record, completed with the response's head.
    fn answered(mut self, status: StatusCode, headers: &HeaderMap, error: Option<&str>) -> Self {
        self.record.status = status.as_u16();
        self.record.error = error.map(str::to_owned);
        if error.is_none() {
            self.record.ttfb_ms = Some(ms(self.started));
        }
        self.record.response_headers = response_headers(headers);
        self
    }

    /// Keeps the record, with what the response body's wrapper saw; a
    /// copy of it (for a replay's answer; [`Tap::close`] keeps it only).
    fn done(mut self, response: Option<&Captured>) -> Exchange {
        self.complete(response);
        let copy = self.record.clone();
        self.inspector.keep(self.seq, self.record);
        copy
    }

    /// Keeps the record, with what the response body's wrapper saw.
    fn close(mut self, response: Option<&Captured>) {
        self.complete(response);
        self.inspector.keep(self.seq, self.record);
    }

    /// The record's duration, sizes and bodies, as the exchange ends.
    fn complete(&mut self, response: Option<&Captured>) {
        self.record.duration_ms = ms(self.started);
        self.record.request_bytes = self.request.total.load(Ordering::Relaxed);
        self.record.request_body = self.request.body();
        if let Some(r) = response {
            self.record.response_bytes = r.total.load(Ordering::Relaxed);
            self.record.response_body = r.body();
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_micros() as f64 / 1000.0
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The client's request headers without berth's credentials: `Berth-Token`,
/// an `Authorization` carrying a berth token, berth's cookies.
pub fn request_headers(headers: &HeaderMap) -> HeaderList {
    let mut out = HeaderList::with_capacity(list_bytes(headers));
    for (name, value) in headers {
        if *name == super::headers::BERTH_TOKEN {
            continue;
        }
        let value = text(value);
        if *name == http::header::AUTHORIZATION && carries_berth_token(&value) {
            continue;
        }
        if *name == http::header::COOKIE {
            if let Some(kept) = super::headers::strip_berth_cookies(&value) {
                out.push(name.as_str(), &kept);
            }
            continue;
        }
        out.push(name.as_str(), &value);
    }
    out
}

/// A header value as text: as it is when it is visible ASCII (nearly
/// always, and cheap to check), else with invalid UTF-8 replaced.
fn text(value: &http::HeaderValue) -> std::borrow::Cow<'_, str> {
    match value.to_str() {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(value.as_bytes()),
    }
}

/// The room `headers` take in a [`HeaderList`].
fn list_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 2)
        .sum()
}

/// True for an `Authorization` value whose credential is a berth token of
/// any kind (the app's own schemes and tokens are kept).
fn carries_berth_token(value: &str) -> bool {
    value
        .split_whitespace()
        .any(|word| crate::auth::TokenKind::of(word).is_some())
}

/// The response headers as the client got them, without any cookie of
/// berth's being set.
fn response_headers(headers: &HeaderMap) -> HeaderList {
    let mut out = HeaderList::with_capacity(list_bytes(headers));
    for (name, value) in headers {
        if *name == http::header::SET_COOKIE && super::headers::sets_berth_cookie(value.as_bytes())
        {
            continue;
        }
        out.push(name.as_str(), &text(value));
    }
    out
}

/// The request body on its way to the app, seen by `tap` (unchanged when
/// nothing is recorded).
pub(super) fn tee(tap: Option<&Tap>, body: Body) -> Body {
    match tap {
        Some(tap) => Body::new(Tee {
            inner: body,
            seen: tap.request.clone(),
            done: None,
        }),
        None => body,
    }
}

/// The answer to a recorded request: the app's response, whose body is
/// seen on its way to the client and whose end keeps the record, or an
/// error page (rendered here, `html` or JSON), kept at once.
pub(super) fn finish(
    tap: Option<Tap>,
    answer: Result<Response<Body>, ErrorPage>,
    html: bool,
) -> Response<Body> {
    let Some(tap) = tap else {
        return answer.unwrap_or_else(|page| pages::render(&page, html));
    };
    match answer {
        Err(page) => {
            let res = pages::render(&page, html);
            tap.answered(res.status(), res.headers(), Some(page.code()))
                .close(None);
            res
        }
        Ok(res) => {
            let mut tap = tap.answered(res.status(), res.headers(), None);
            if is_event_stream(res.headers()) {
                tap.record.kind = Kind::Stream;
            }
            let seen = Captured::new(tap.inspector.cfg.body_bytes);
            let (parts, body) = res.into_parts();
            let body = Body::new(Tee {
                inner: body,
                seen,
                done: Some(tap),
            });
            Response::from_parts(parts, body)
        }
    }
}

/// A WebSocket the app accepted: recorded, with its duration, when the
/// returned guard is dropped (when the connection ends).
pub(super) fn upgraded<B>(tap: Option<Tap>, res: &Response<B>) -> Option<Upgraded> {
    let mut tap = tap?.answered(res.status(), res.headers(), None);
    tap.record.kind = Kind::Websocket;
    Some(Upgraded(Some(tap)))
}

/// See [`upgraded`].
pub struct Upgraded(Option<Tap>);

impl Drop for Upgraded {
    fn drop(&mut self) {
        if let Some(tap) = self.0.take() {
            tap.close(None);
        }
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        })
}

pin_project_lite::pin_project! {
    /// A body passed through unchanged while [`Captured`] sees its bytes;
    /// with a [`Tap`], the record is kept when the body ends or is dropped.
    struct Tee {
        #[pin]
        inner: Body,
        seen: Arc<Captured>,
        done: Option<Tap>,
    }

    impl PinnedDrop for Tee {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(tap) = this.done.take() {
                tap.close(Some(this.seen));
            }
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen.see(data);
                }
            }
            Poll::Ready(None) => {
                if let Some(tap) = this.done.take() {
                    tap.close(Some(this.seen));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The answer to another server asking, over the relay link, for what this
/// edge recorded for one port (`GET` [`RELAY_PATH`] with the relay's agent
/// and port headers and secret); `None` for any other request.
pub(super) fn relay_answer<B>(edge: &Edge, req: &Request<B>) -> Option<Response<Body>> {
    let follow = req.uri().path() == RELAY_FOLLOW_PATH;
    if req.method() != http::Method::GET || !(follow || req.uri().path() == RELAY_PATH) {
        return None;
    }
    let number = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    let status = |s: StatusCode| {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = s;
        res
    };
    if req.version() != http::Version::HTTP_2 || !edge.relay.authorized(req) {
        return Some(status(StatusCode::FORBIDDEN));
    }
    let (Some(agent_id), Some(port)) = (
        number(super::relay::AGENT_HEADER),
        number(super::relay::PORT_HEADER).and_then(|p| u16::try_from(p).ok()),
    ) else {
        return Some(status(StatusCode::BAD_REQUEST));
    };
    if follow {
        return Some(followed(edge, agent_id, port));
    }
    let held = Held {
        exchanges: edge.inspector.list(agent_id, port),
    };
    let mut res = Response::new(Body::from(
        serde_json::to_vec(&held).expect("exchanges serialize"),
    ));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Some(res)
}

/// The answer to [`RELAY_FOLLOW_PATH`]: each exchange this edge keeps for
/// `port` of `agent_id` from now on, as a JSON line, until the asker goes.
/// A follower that falls behind skips what it missed.
fn followed(edge: &Edge, agent_id: i64, port: u16) -> Response<Body> {
    use tokio::sync::broadcast::error::RecvError;
    let feed = edge.inspector.follow();
    let lines = futures_util::stream::unfold(feed, move |mut feed| async move {
        loop {
            match feed.recv().await {
                Ok(e) if e.agent_id == agent_id && e.port == port => {
                    let mut line = serde_json::to_vec(&*e).expect("exchanges serialize");
                    line.push(b'\n');
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), feed));
                }
                Ok(_) | Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let mut res = Response::new(Body::from_stream(lines));
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-ndjson"),
    );
    res
}

/// Sends `original` again to its port, changed by `edits`, as `owner`
/// (the app sees the owner's `X-Berth-User`), and records it (with
/// `replay_of`) like any exchange; the new record. The whole response is
/// read, within `limits.upstream_timeout_secs`; its first `body_bytes`
/// are kept.
pub async fn replay(
    edge: &Edge,
    original: &Exchange,
    edits: Replay,
    owner: &Visitor,
) -> Result<Exchange, ReplayRefused> {
    use http_body_util::BodyExt;
    let invalid = |m: String| ReplayRefused::Invalid(m);
    if original.kind == Kind::Websocket {
        return Err(invalid(
            "a WebSocket cannot be replayed: open it again from the app".into(),
        ));
    }
    let method = edits.method.as_deref().unwrap_or(&original.method);
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid(format!("method: {method:?} is not an HTTP method")))?;
    if method == http::Method::CONNECT {
        return Err(invalid("method: CONNECT is not proxied to apps".into()));
    }
    let recorded: http::Uri = original
        .url
        .parse()
        .map_err(|_| invalid("the recorded URL does not parse".into()))?;
    let host_header = recorded
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| invalid("the recorded URL has no host".into()))?;
    let path = match &edits.path {
        Some(p) if p.starts_with('/') => p.clone(),
        Some(p) => return Err(invalid(format!("path: {p:?} must start with /"))),
        None => recorded
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
    };
    let path = super::headers::strip_share_param(&path).into_owned();
    let body = match (&edits.body, &edits.body_base64) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "body, body_base64: send one of them, not both".into(),
            ))
        }
        (Some(text), None) => Bytes::from(text.clone().into_bytes()),
        (None, Some(b64)) => {
            use base64::Engine as _;
            Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| invalid("body_base64: is not valid base64".into()))?,
            )
        }
        (None, None) => match &original.request_body {
            Some(b) if b.truncated => {
                return Err(invalid(format!(
                    "the recorded request body was cut after {} bytes (inspector.body_bytes): send the body to replay it",
                    edge.inspector.cfg.body_bytes
                )))
            }
            Some(b) => Bytes::from(
                b.bytes()
                    .ok_or_else(|| invalid("the recorded body does not decode".into()))?,
            ),
            None if original.request_bytes > 0 => {
                return Err(invalid(
                    "request bodies are not recorded here (inspector.body_bytes = 0): send the body to replay it"
                        .into(),
                ))
            }
            None => Bytes::new(),
        },
    };
    let mut headers = HeaderMap::new();
    let edited = edits
        .headers
        .as_ref()
        .map(|h| h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect());
    for (name, value) in edited.as_ref().unwrap_or(&original.request_headers).iter() {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("headers: {name:?} is not a header name")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(format!("headers: the value of {name} is not valid")))?;
        headers.append(name, value);
    }
    for name in [
        http::header::HOST,
        http::header::CONTENT_LENGTH,
        http::header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    let (agent_id, port) = (original.agent_id, original.port);

    // The record, as for a request the edge admitted.
    let inspector = &edge.inspector;
    let (seq, id) = inspector.next_id();
    let mut tap = Tap {
        inspector: inspector.clone(),
        started: Instant::now(),
        seq,
        request: Captured::new(inspector.cfg.body_bytes),
        record: Exchange {
            id,
            agent_id,
            port,
            started_at_ms: unix_ms(),
            kind: Kind::Http,
            method: method.as_str().to_owned(),
            url: format!("https://{host_header}{path}"),
            status: 0,
            error: None,
            ttfb_ms: None,
            duration_ms: 0.0,
            request_bytes: 0,
            response_bytes: 0,
            request_headers: request_headers(&headers),
            response_headers: HeaderList::default(),
            request_body: None,
            response_body: None,
            app_tls: original.app_tls,
            replay_of: Some(original.id.clone()),
        },
    };
    tap.request.see(&body);

    // Which way to the agent: as the proxy's phase 4.
    let local = edge.tunnels.get(agent_id).map(|t| t.generation);
    let holders = match local {
        Some(_) => Vec::new(),
        None => edge.catalog.tunnels_at(agent_id),
    };
    let via = match super::relay::hop(local, &holders, &edge.relay.me) {
        super::relay::Hop::Local(g) => super::connector::Via::Tunnel(g),
        super::relay::Hop::Relay(h) => super::connector::Via::Relay(edge.relay.holder_id(h)),
        super::relay::Hop::Offline => {
            let page = ErrorPage::UpstreamFailed {
                fault: pages::Fault::Tunnel,
                detail: "the agent is not connected".into(),
            };
            tap.answered(page.status(), &HeaderMap::new(), Some(page.code()))
                .close(None);
            return Err(ReplayRefused::Unreachable(
                "the agent is not connected".into(),
            ));
        }
    };
    super::headers::prepare_request(
        &mut headers,
        &super::headers::Forwarded {
            client_ip: std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            host: super::bare_host(&host_header),
            host_header: &host_header,
            visitor: Some(owner),
            upgrade: false,
        },
    );
    edge.mark.stamp(&mut headers);
    if !body.is_empty() || !matches!(method, http::Method::GET | http::Method::HEAD) {
        headers.insert(http::header::CONTENT_LENGTH, body.len().into());
    }
    let scheme = if original.app_tls { "https" } else { "http" };
    let uri: http::Uri = format!(
        "{scheme}://{}{path}",
        super::connector::authority(agent_id, via, port)
    )
    .parse()
    .map_err(|_| invalid(format!("path: {path:?} is not a valid request target")))?;
    let mut req = Request::new(Body::from(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;

    let unreachable = |tap: Tap, detail: String| {
        let page = ErrorPage::UpstreamFailed {
            fault: pages::Fault::App,
            detail: detail.clone(),
        };
        tap.answered(page.status(), &HeaderMap::new(), Some(page.code()))
            .close(None);
        ReplayRefused::Unreachable(detail)
    };
    let _permit = match edge.streams.acquire(agent_id) {
        Ok(p) => p,
        Err(page) => return Err(unreachable(tap, page.message())),
    };
    let deadline = tokio::time::Instant::now() + edge.limits.upstream_timeout;
    let res = match tokio::time::timeout_at(deadline, edge.client.request(req)).await {
        Err(_) => return Err(unreachable(tap, "the app did not answer in time".into())),
        Ok(Err(e)) => return Err(unreachable(tap, format!("the app did not answer: {e}"))),
        Ok(Ok(res)) => res,
    };
    let (mut parts, mut incoming) = res.into_parts();
    super::headers::prepare_response(&mut parts.headers, false);
    tap = tap.answered(parts.status, &parts.headers, None);
    if is_event_stream(&parts.headers) {
        tap.record.kind = Kind::Stream;
    }
    let seen = Captured::new(inspector.cfg.body_bytes);
    // Read to the end (or the deadline), keeping what the limit allows.
    let _ = tokio::time::timeout_at(deadline, async {
        while let Some(Ok(frame)) = incoming.frame().await {
            if let Some(data) = frame.data_ref() {
                seen.see(data);
            }
        }
    })
    .await;
    Ok(tap.done(Some(&seen)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(agent_id: i64, port: u16, body: usize) -> Exchange {
        Exchange {
            id: String::new(),
            agent_id,
            port,
            started_at_ms: 0,
            kind: Kind::Http,
            method: "GET".into(),
            url: "https://x/".into(),
            status: 200,
            error: None,
            ttfb_ms: Some(1.0),
            duration_ms: 1.0,
            request_bytes: 0,
            response_bytes: body as u64,
            request_headers: [("accept", "*/*")].into_iter().collect(),
            response_headers: HeaderList::default(),
            request_body: None,
            response_body: Some(CapturedBody::of(&vec![b'a'; body], false)),
            app_tls: false,
            replay_of: None,
        }
    }

    fn fill(ins: &Inspector, agent_id: i64, port: u16, body: usize) {
        let (seq, id) = ins.next_id();
        let mut e = exchange(agent_id, port, body);
        e.id = id;
        ins.keep(seq, e);
    }

    fn cfg(entries: usize, port: usize, edge: usize) -> InspectorConfig {
        InspectorConfig {
            enabled: true,
            body_bytes: 4096,
            max_entries_per_port: entries,
            max_bytes_per_port: port,
            max_bytes_per_edge: edge,
        }
    }

    /// Newest first, and at most `max_entries_per_port` of them.
    #[test]
    fn a_port_keeps_its_newest_entries() {
        let ins = Inspector::new(cfg(3, 1 << 20, 1 << 30));
        for _ in 0..10 {
            fill(&ins, 1, 3000, 10);
        }
        let list = ins.list(1, 3000);
        assert_eq!(list.len(), 3);
        let seqs: Vec<u64> = list
            .iter()
            .map(|e| e.id.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(seqs, [10, 9, 8]);
        assert!(ins.list(1, 3001).is_empty());
        assert_eq!(ins.held().1, 3);
    }

    /// Filling many ports with large entries: no port ever holds more than
    /// its bound and the edge never more than its own, checked after every
    /// insertion; the bookkeeping stays small.
    #[test]
    fn memory_stays_within_the_port_and_edge_bounds() {
        let (port_bound, edge_bound) = (64 * 1024, 512 * 1024);
        let ins = Inspector::new(cfg(1000, port_bound, edge_bound));
        for i in 0..20_000u32 {
            let port = 3000 + (i % 37) as u16;
            fill(
                &ins,
                1 + i64::from(i % 3),
                port,
                100 + (i as usize * 7919) % 4000,
            );
            let (bytes, count) = ins.held();
            assert!(bytes <= edge_bound, "edge holds {bytes} after {i}");
            assert!(ins.held_for(1 + i64::from(i % 3), port) <= port_bound);
            assert!(count > 0);
            let order = ins.lock().order.len();
            assert!(order <= 2 * count + 1025, "order grew to {order}");
        }
        let (bytes, _) = ins.held();
        // Full, not empty: the bound is used.
        assert!(bytes > edge_bound / 2, "{bytes}");
    }

    /// A record bigger than a port's bound keeps its headers without its
    /// bodies.
    #[test]
    fn an_oversized_record_loses_its_bodies() {
        let ins = Inspector::new(cfg(10, 4096, 1 << 20));
        fill(&ins, 1, 1, 8000);
        let list = ins.list(1, 1);
        assert_eq!(list.len(), 1);
        let body = list[0].response_body.as_ref().unwrap();
        assert!(body.truncated && body.data.is_empty());
    }

    #[test]
    fn captures_keep_the_first_bytes_and_count_all() {
        let c = Captured::new(5);
        c.see(b"abc");
        c.see(b"defgh");
        c.see(b"ij");
        let b = c.body().unwrap();
        assert_eq!((b.data.as_str(), b.truncated), ("abcde", true));
        assert_eq!(c.total.load(Ordering::Relaxed), 10);
        let off = Captured::new(0);
        off.see(b"abc");
        assert_eq!(off.body(), None);
        assert_eq!(off.total.load(Ordering::Relaxed), 3);
    }

    /// Berth's credentials never reach a record; the app's own stay.
    #[test]
    fn records_lose_berths_credentials_only() {
        let mut h = HeaderMap::new();
        h.insert("berth-token", "berth_api_secret1".parse().unwrap());
        h.append("authorization", "Bearer berth_api_secret2".parse().unwrap());
        h.append("authorization", "Bearer app-own-token".parse().unwrap());
        h.append(
            "cookie",
            "__Host-berth_app=secret3; theirs=1; berth_share=secret4"
                .parse()
                .unwrap(),
        );
        h.append("cookie", "__Host-berth_share=secret5".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        let list = request_headers(&h);
        let text = format!("{list:?}");
        let out: Vec<(&str, &str)> = list.iter().collect();
        for s in ["secret1", "secret2", "secret3", "secret4", "secret5"] {
            assert!(!text.contains(s), "{s} in {text}");
        }
        assert!(out.contains(&("authorization", "Bearer app-own-token")));
        assert!(out.contains(&("cookie", "theirs=1")));
        assert!(out.contains(&("x-app", "kept")));

        let mut r = HeaderMap::new();
        r.append("set-cookie", "__Host-berth_app=x; Path=/".parse().unwrap());
        r.append("set-cookie", "theirs=1".parse().unwrap());
        assert_eq!(
            response_headers(&r).iter().collect::<Vec<_>>(),
            vec![("set-cookie", "theirs=1")]
        );
    }
}
