//! Open connections end when their access does (SPEC section 3: "revoking a
//! link (or the share, or deleting the user or workspace) cuts off every
//! visitor on every edge within 5 seconds"): WebSockets over HTTP/1.1 and
//! HTTP/2, server-sent events and long downloads, admitted by a share link,
//! an app-host sign-in, an API token or a public share, on the built-in edge
//! and on a regional one. Connections that stay allowed stay open.

use crate::support::regional::start_eu_edge;
use crate::support::wait::eventually;
use crate::support::{apps, browser, client_for, run_agent, Berth, Options};
use futures_util::{SinkExt, Stream, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::{self, protocol::Role, Message};

/// Every visitor is cut off within this (SPEC section 3).
const CUT_OFF: Duration = Duration::from_secs(5);

/// An app host on an edge.
pub(crate) struct Target {
    /// The edge's listener.
    pub(crate) addr: SocketAddr,
    /// The CA that signs the edge's certificate.
    pub(crate) ca: PathBuf,
    /// `{label}.{wildcard}`, without port.
    pub(crate) host: String,
}

impl Target {
    /// `label` on a `berth dev`'s built-in edge.
    fn dev(berth: &Berth, label: &str) -> Target {
        Target {
            addr: berth.addr,
            ca: berth.ca_pem.clone(),
            host: format!("{label}.berth.localhost"),
        }
    }

    fn origin(&self) -> String {
        format!("https://{}:{}", self.host, self.addr.port())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }
}

/// What a visitor shows.
#[derive(Clone, Copy)]
pub(crate) enum Cred<'a> {
    Anonymous,
    Token(&'a str),
    /// `name=value` of a berth cookie.
    Cookie(&'a str),
}

impl Cred<'_> {
    /// The request headers that carry it, with the app's own `Origin` as a
    /// browser sends it.
    fn headers(self, t: &Target) -> Vec<(&'static str, String)> {
        let mut h = vec![("origin", t.origin())];
        match self {
            Cred::Anonymous => {}
            Cred::Token(tok) => h.push(("authorization", format!("Bearer {tok}"))),
            Cred::Cookie(c) => h.push(("cookie", c.to_owned())),
        }
        h
    }
}

async fn tls_to(t: &Target, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    crate::support::raw::tls_alpn(t.addr, &t.ca, &t.host, alpn).await
}

pub(crate) type H1Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
type H2Ws = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A WebSocket to the echo app's `/ws` over HTTP/1.1.
pub(crate) async fn ws_h1(t: &Target, cred: Cred<'_>) -> H1Ws {
    use tungstenite::client::IntoClientRequest;
    let tls = tls_to(t, b"http/1.1").await;
    let mut req = format!("wss://{}:{}/ws", t.host, t.addr.port())
        .into_client_request()
        .unwrap();
    for (k, v) in cred.headers(t) {
        req.headers_mut().insert(k, v.parse().unwrap());
    }
    let (ws, res) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("the WebSocket opens");
    assert_eq!(res.status(), 101);
    ws
}

/// A WebSocket to `/ws` over HTTP/2 (RFC 8441); keep the sender while the
/// socket is in use.
async fn ws_h2(
    t: &Target,
    cred: Cred<'_>,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    H2Ws,
) {
    let tls = tls_to(t, b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(TokioExecutor::new(), TokioIo::new(tls))
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = |method: http::Method, path: &str| {
        let mut b = http::Request::builder().method(method).uri(t.url(path));
        for (k, v) in cred.headers(t) {
            b = b.header(k, v);
        }
        b
    };
    // Let the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive.
    let warm = request(http::Method::GET, "/")
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(sender.send_request(warm).await.unwrap().status(), 200);
    let mut req = request(http::Method::CONNECT, "/ws")
        .header("sec-websocket-version", "13")
        .body(http_body_util::Empty::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let stream = hyper::upgrade::on(&mut res).await.unwrap();
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(stream),
        Role::Client,
        None,
    )
    .await;
    (sender, ws)
}

/// The socket echoes `text` (it is open and reaches the app).
pub(crate) async fn echoes<S>(ws: &mut S, text: &str)
where
    S: Stream<Item = Result<Message, tungstenite::Error>>
        + futures_util::Sink<Message, Error = tungstenite::Error>
        + Unpin,
{
    ws.send(Message::text(text)).await.expect("send");
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap_or_else(|_| panic!("no echo of {text:?}"))
        .expect("open")
        .expect("a message");
    assert_eq!(back.into_text().unwrap().as_str(), text);
}

/// Waits until the edge ends the socket, at most [`CUT_OFF`] after `since`
/// (which may lie ahead); returns how long after `since` it ended.
pub(crate) async fn closes_within<S>(ws: &mut S, since: Instant, what: &str) -> Duration
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    let deadline = since + CUT_OFF;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => panic!("{what}: still open {CUT_OFF:?} after its access ended"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                return since.elapsed();
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// `name=value` of the `Set-Cookie` whose name ends with `name` (a
/// `__Host-` prefix or not).
fn set_cookie(h: &HeaderMap, name: &str) -> String {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.split_once('=').is_some_and(|(n, _)| n.ends_with(name)))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
}

/// Makes a share link with `body` at control and redeems it at `t`;
/// returns its id and the visitor cookie.
async fn new_link(berth: &Berth, t: &Target, body: Value) -> (String, String) {
    let made = berth.share_link(&berth.admin_token, body).await;
    let query = made["url"]
        .as_str()
        .unwrap()
        .split_once('?')
        .unwrap()
        .1
        .to_owned();
    let res = client_for(&t.ca, true)
        .get(t.url(&format!("/?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    (
        made["id"].as_str().unwrap().to_owned(),
        set_cookie(res.headers(), "berth_share"),
    )
}

async fn revoke_link(berth: &Berth, id: &str) {
    let (s, b) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{id}"),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
}

/// Sets the share of `port` on the admin's agent `agent` in `workspace`.
async fn share(berth: &Berth, workspace: &str, agent: &str, port: u16, level: &str) {
    let agent = format!("admin/{workspace}/{agent}");
    let level = json!({"level": level});
    berth.share(&berth.admin_token, &agent, port, level).await;
}

/// Creates a user (`role` member or admin) and returns their API token.
async fn user(berth: &Berth, name: &str, role: &str) -> String {
    berth.user_token(name, "correct-horse", role, None).await
}

/// Signs `name` in with the browser flow for the app at `t`; returns the
/// control host's session cookie and the app host's cookie.
async fn sign_in(berth: &Berth, t: &Target, name: &str) -> (String, String) {
    let c = client_for(&t.ca, true);
    let s = browser::sign_in(&c, &berth.api_url(""), &t.url("/"), name, "correct-horse").await;
    (s.session, s.app)
}

/// The value of an unlabelled sample in berth's `/metrics`.
async fn metric(berth: &Berth, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", berth.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// The status of a plain `GET /` with `cred`.
async fn status(t: &Target, cred: Cred<'_>) -> u16 {
    let mut req = client_for(&t.ca, true).get(t.url("/"));
    for (k, v) in cred.headers(t) {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_websocket_closes_within_5s_of_revoking_the_link() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let (id, cookie) = new_link(
        &berth,
        &t,
        json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port}),
    )
    .await;
    let mut h1 = ws_h1(&t, Cred::Cookie(&cookie)).await;
    let (_conn, mut h2) = ws_h2(&t, Cred::Cookie(&cookie)).await;
    let mut owner = ws_h1(&t, Cred::Token(&berth.admin_token)).await;
    echoes(&mut h1, "by link, HTTP/1.1").await;
    echoes(&mut h2, "by link, HTTP/2").await;
    echoes(&mut owner, "by the owner's token").await;
    assert_eq!(metric(&berth, "berth_edge_tracked_connections").await, 3.0);

    let since = Instant::now();
    revoke_link(&berth, &id).await;
    let took_h1 = closes_within(&mut h1, since, "link WebSocket over HTTP/1.1").await;
    let took_h2 = closes_within(&mut h2, since, "link WebSocket over HTTP/2").await;
    println!("closed {took_h1:?} (HTTP/1.1) and {took_h2:?} (HTTP/2) after the revocation");
    echoes(&mut owner, "the owner's socket stays").await;
    assert_eq!(status(&t, Cred::Cookie(&cookie)).await, 401);
    assert_eq!(
        metric(&berth, "berth_edge_revoked_connections_total").await,
        2.0
    );
    assert_eq!(metric(&berth, "berth_edge_tracked_connections").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cookie_websocket_closes_within_5s_of_signing_out() {
    let berth = Berth::start().await;
    let bob = user(&berth, "bob", "member").await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    share(&berth, "dev", "main", port, "authenticated").await;
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let (session, app_cookie) = sign_in(&berth, &t, "bob").await;
    let mut h1 = ws_h1(&t, Cred::Cookie(&app_cookie)).await;
    let (_conn, mut h2) = ws_h2(&t, Cred::Cookie(&app_cookie)).await;
    let mut by_token = ws_h1(&t, Cred::Token(&bob)).await;
    echoes(&mut h1, "signed in, HTTP/1.1").await;
    echoes(&mut h2, "signed in, HTTP/2").await;

    let since = Instant::now();
    let res = client_for(&t.ca, true)
        .post(berth.api_url("/signout"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let took_h1 = closes_within(&mut h1, since, "signed-in WebSocket over HTTP/1.1").await;
    let took_h2 = closes_within(&mut h2, since, "signed-in WebSocket over HTTP/2").await;
    println!("closed {took_h1:?} (HTTP/1.1) and {took_h2:?} (HTTP/2) after sign-out");
    assert_eq!(status(&t, Cred::Cookie(&app_cookie)).await, 401);
    // Bob's API token is another credential: signing out of the browser
    // leaves it (and its socket) alone.
    echoes(&mut by_token, "the token's socket stays").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowering_a_share_closes_anonymous_websockets_but_not_the_owners() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    share(&berth, "dev", "main", port, "public").await;
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let mut h1 = ws_h1(&t, Cred::Anonymous).await;
    let (_conn, mut h2) = ws_h2(&t, Cred::Anonymous).await;
    let mut owner = ws_h1(&t, Cred::Token(&berth.admin_token)).await;
    echoes(&mut h1, "anonymous, HTTP/1.1").await;
    echoes(&mut h2, "anonymous, HTTP/2").await;

    let since = Instant::now();
    share(&berth, "dev", "main", port, "owner").await;
    let took_h1 = closes_within(&mut h1, since, "anonymous WebSocket over HTTP/1.1").await;
    let took_h2 = closes_within(&mut h2, since, "anonymous WebSocket over HTTP/2").await;
    println!("closed {took_h1:?} (HTTP/1.1) and {took_h2:?} (HTTP/2) after lowering the share");
    echoes(&mut owner, "the owner's socket stays").await;
    assert_eq!(status(&t, Cred::Anonymous).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_websockets_close_when_their_user_is_demoted_or_deleted() {
    let berth = Berth::start().await;
    let dave = user(&berth, "dave", "admin").await;
    let carol = user(&berth, "carol", "member").await;
    let bob = user(&berth, "bob", "member").await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let mut owner = ws_h1(&t, Cred::Token(&berth.admin_token)).await;

    // An admin sees every private port, until they are no longer an admin.
    let mut as_admin = ws_h1(&t, Cred::Token(&dave)).await;
    echoes(&mut as_admin, "dave, admin").await;
    let since = Instant::now();
    let (s, b) = berth
        .api(
            Method::PATCH,
            "/api/v1/users/dave",
            &berth.admin_token,
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let took = closes_within(&mut as_admin, since, "a demoted admin's WebSocket").await;
    println!("closed {took:?} after the demotion");

    // A user let in by an `authenticated` share, until the user is deleted.
    share(&berth, "dev", "main", port, "authenticated").await;
    let mut carols = ws_h1(&t, Cred::Token(&carol)).await;
    let (_conn, mut carols_h2) = ws_h2(&t, Cred::Token(&carol)).await;
    let mut bobs = ws_h1(&t, Cred::Token(&bob)).await;
    echoes(&mut carols, "carol").await;
    echoes(&mut carols_h2, "carol over HTTP/2").await;
    let since = Instant::now();
    let (s, b) = berth
        .api(
            Method::DELETE,
            "/api/v1/users/carol",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    let took = closes_within(&mut carols, since, "a deleted user's WebSocket").await;
    closes_within(
        &mut carols_h2,
        since,
        "a deleted user's WebSocket over HTTP/2",
    )
    .await;
    println!("closed {took:?} after deleting the user");
    echoes(&mut bobs, "another user's socket stays").await;
    echoes(&mut owner, "the owner's socket stays").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_workspace_or_its_owner_closes_every_websocket_into_it() {
    let berth = Berth::start().await;
    let alice = user(&berth, "alice", "member").await;
    for ws in ["api", "web"] {
        berth.add_workspace(&alice, "alice", ws).await;
    }
    let mut agents = Vec::new();
    for ws in ["api", "web"] {
        let token = berth.add_agent(&alice, "alice", ws, "main").await;
        agents.push(berth.spawn_agent(&token, Default::default()));
    }
    berth.wait_agents(3).await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    let api = Target::dev(&berth, &format!("{port}--main--api--alice"));
    let web = Target::dev(&berth, &format!("{port}--main--web--alice"));
    let mut owner = ws_h1(&api, Cred::Token(&alice)).await;
    let mut admin = ws_h1(&api, Cred::Token(&berth.admin_token)).await;
    let mut other_ws = ws_h1(&web, Cred::Token(&alice)).await;
    echoes(&mut owner, "alice in api").await;

    let since = Instant::now();
    let (s, b) = berth
        .api(Method::DELETE, "/api/v1/workspaces/alice/api", &alice, None)
        .await;
    assert_eq!(s, 204, "{b}");
    closes_within(&mut owner, since, "the owner's WebSocket").await;
    closes_within(&mut admin, since, "an admin's WebSocket").await;
    echoes(&mut other_ws, "her other workspace stays").await;

    // Deleting the owner takes the rest, and the links she made.
    let (_, cookie) = new_link(
        &berth,
        &web,
        json!({"user": "alice", "workspace": "web", "agent": "main", "port": port}),
    )
    .await;
    let mut visitor = ws_h1(&web, Cred::Cookie(&cookie)).await;
    echoes(&mut visitor, "by alice's link").await;
    let since = Instant::now();
    let (s, b) = berth
        .api(
            Method::DELETE,
            "/api/v1/users/alice",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    closes_within(&mut other_ws, since, "the deleted owner's WebSocket").await;
    closes_within(&mut visitor, since, "a link visitor of the deleted owner").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_websocket_closes_when_the_link_expires() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let made = Instant::now();
    let (_, cookie) = new_link(
        &berth,
        &t,
        json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port, "ttl_seconds": 3}),
    )
    .await;
    let mut ws = ws_h1(&t, Cred::Cookie(&cookie)).await;
    echoes(&mut ws, "before the link expires").await;
    // Expiry is in whole seconds: by made + 4 s it has passed for sure.
    closes_within(
        &mut ws,
        made + Duration::from_secs(4),
        "an expired link's WebSocket",
    )
    .await;
    let open_for = made.elapsed();
    println!("closed {open_for:?} after a 3 s link was made");
    assert!(
        open_for >= Duration::from_secs(2),
        "closed early: {open_for:?}"
    );
    assert_eq!(status(&t, Cred::Cookie(&cookie)).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_that_stay_allowed_survive_unrelated_changes() {
    let berth = Berth::start().await;
    let bob = user(&berth, "bob", "member").await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    share(&berth, "dev", "main", port, "public").await;
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    let (_, cookie) = new_link(
        &berth,
        &t,
        json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port}),
    )
    .await;
    let mut sockets = [
        ws_h1(&t, Cred::Anonymous).await,
        ws_h1(&t, Cred::Cookie(&cookie)).await,
        ws_h1(&t, Cred::Token(&bob)).await,
        ws_h1(&t, Cred::Token(&berth.admin_token)).await,
    ];
    let (_conn, mut h2) = ws_h2(&t, Cred::Cookie(&cookie)).await;

    // Another link to the same port, revoked; another port shared and
    // unshared; another user created and deleted; another workspace.
    let (other, _) = new_link(
        &berth,
        &t,
        json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port}),
    )
    .await;
    revoke_link(&berth, &other).await;
    share(&berth, "dev", "main", port + 1, "public").await;
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!(
                "/api/v1/workspaces/admin/dev/agents/main/ports/{}/share",
                port + 1
            ),
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    user(&berth, "eve", "member").await;
    let (s, _) = berth
        .api(
            Method::DELETE,
            "/api/v1/users/eve",
            &berth.admin_token,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = berth
        .api(
            Method::POST,
            "/api/v1/workspaces",
            &bob,
            Some(json!({"name": "scratch"})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = berth
        .api(Method::DELETE, "/api/v1/workspaces/bob/scratch", &bob, None)
        .await;
    assert_eq!(s, 204);
    // Changing the share without lowering it is no reason either.
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "public", "cors": "passthru"}),
        )
        .await;
    // Past several expiry ticks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, ws) in sockets.iter_mut().enumerate() {
        echoes(ws, &format!("socket {i} still open")).await;
    }
    echoes(&mut h2, "HTTP/2 socket still open").await;
    assert_eq!(metric(&berth, "berth_edge_tracked_connections").await, 5.0);
    assert_eq!(
        metric(&berth, "berth_edge_revoked_connections_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_closes_within_5s_of_revoking_its_link() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "sse").await;
    let port = app.port();
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    for http1 in [true, false] {
        let (id, cookie) = new_link(
            &berth,
            &t,
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port}),
        )
        .await;
        let res = client_for(&t.ca, http1)
            .get(t.url("/sse?n=100000&gap_ms=100"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut stream = res.bytes_stream();
        let mut events = 0;
        while events < 3 {
            let chunk = stream.next().await.unwrap().unwrap();
            events += chunk.windows(2).filter(|w| w == b"\n\n").count();
        }
        let since = Instant::now();
        revoke_link(&berth, &id).await;
        loop {
            let left = (since + CUT_OFF).saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Err(_) => {
                    panic!("events still flow {CUT_OFF:?} after the revocation (HTTP/1.1: {http1})")
                }
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        println!(
            "event stream (HTTP/1.1: {http1}) ended {:?} after the revocation",
            since.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_download_stops_within_5s_of_revoking_its_link() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "bulk").await;
    let port = app.port();
    let t = Target::dev(&berth, &format!("{port}--main--dev--admin"));
    for http1 in [true, false] {
        let (id, cookie) = new_link(
            &berth,
            &t,
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port}),
        )
        .await;
        let total: u64 = 1 << 40;
        let res = client_for(&t.ca, http1)
            .get(t.url(&format!("/download?bytes={total}")))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let mut stream = res.bytes_stream();
        // Read slowly past the point where a response counts as long.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            stream.next().await.unwrap().unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let since = Instant::now();
        revoke_link(&berth, &id).await;
        loop {
            let left = (since + CUT_OFF).saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, stream.next()).await {
                Err(_) => {
                    panic!("still downloading {CUT_OFF:?} after the revocation (HTTP/1.1: {http1})")
                }
                Ok(None) => panic!("the download ended as if complete"),
                Ok(Some(Err(_))) => break,
                Ok(Some(Ok(_))) => {}
            }
        }
        println!(
            "download (HTTP/1.1: {http1}) cut {:?} after the revocation",
            since.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regional_edge_closes_websockets_when_a_link_is_revoked_or_a_share_lowered() {
    let berth = Berth::start_with(Options {
        no_dev_agent: true,
        ..Default::default()
    })
    .await;
    let edge = start_eu_edge(&berth).await;
    let (edge_port, tunnels) = (edge.port, edge.tunnels.clone());
    let agent_token = berth.create_agent("api", "laptop").await;
    let stop_agent = run_agent(berth::agent::AgentConfig {
        url: format!("https://eu.berth.localhost:{edge_port}"),
        token: berth::auth::Secret::new(&agent_token),
        ca_file: Some(berth.ca_pem.clone()),
        connect_to: None,
        upstream: Default::default(),
        region: None,
        standby: false,
        tunnels: berth::agent::DEFAULT_TUNNELS,
    });
    eventually(Duration::from_secs(10), "the agent on the edge", || {
        let t = tunnels.clone();
        async move { t.len() == 1 }
    })
    .await;
    let app = apps::start("127.0.0.1:0", "ws").await;
    let port = app.port();
    let t = Target {
        addr: SocketAddr::from(([127, 0, 0, 1], edge_port)),
        ca: berth.ca_pem.clone(),
        host: format!("{port}--laptop--api--admin.eu.berth.localhost"),
    };

    // A link made at control, redeemed at the edge, revoked at control.
    let (id, cookie) = new_link(
        &berth,
        &t,
        json!({"user": "admin", "workspace": "api", "agent": "laptop", "port": port}),
    )
    .await;
    let mut linked = ws_h1(&t, Cred::Cookie(&cookie)).await;
    let (_conn, mut linked_h2) = ws_h2(&t, Cred::Cookie(&cookie)).await;
    let mut owner = ws_h1(&t, Cred::Token(&berth.admin_token)).await;
    echoes(&mut linked, "by link at the edge").await;
    let since = Instant::now();
    revoke_link(&berth, &id).await;
    let took = closes_within(&mut linked, since, "a link WebSocket at the regional edge").await;
    closes_within(
        &mut linked_h2,
        since,
        "a link WebSocket over HTTP/2 at the regional edge",
    )
    .await;
    println!("closed {took:?} after the revocation at control");
    echoes(&mut owner, "the owner's socket stays").await;

    // A public share lowered at control.
    share(&berth, "api", "laptop", port, "public").await;
    eventually(Duration::from_secs(5), "the share reaches the edge", || {
        let t = &t;
        async move { status(t, Cred::Anonymous).await == 200 }
    })
    .await;
    let mut anon = ws_h1(&t, Cred::Anonymous).await;
    echoes(&mut anon, "anonymous at the edge").await;
    let since = Instant::now();
    share(&berth, "api", "laptop", port, "owner").await;
    let took = closes_within(
        &mut anon,
        since,
        "an anonymous WebSocket at the regional edge",
    )
    .await;
    println!("closed {took:?} after lowering the share at control");
    echoes(&mut owner, "the owner's socket stays").await;

    let _ = stop_agent.send(());
    let _ = edge.stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), edge.task).await;
}
