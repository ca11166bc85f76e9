//! App hosts share one site, so the edge guards the boundaries between
//! them: a berth cookie carries no write or WebSocket from another owner's
//! app (HTTP/1.1 and HTTP/2, forms, no-cors fetches, WebSockets), `h2c`
//! never reaches an app, share-link redirects stay on the host, paths that
//! normalize to `/_berth/` are the edge's, `X-Berth-*` trailers are dropped
//! both ways, and a `passthru` share lets through genuine preflights only.
//!
//! Requests carry the headers a browser sends with them (Chromium's
//! `Origin`, `Sec-Fetch-*`, `Accept`, `Content-Type`).

use crate::support::{apps, browser, raw, Berth};
use berth::auth::cookie::SHARE_COOKIE;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, protocol::Role, Message};

const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const FORM: &str = "application/x-www-form-urlencoded";

/// Bob, his private app on his own agent, and his browser's cookie for it.
struct Bob {
    berth: Berth,
    _app: apps::App,
    _agent: tokio::sync::oneshot::Sender<()>,
    /// Bob's API token.
    token: String,
    /// `{port}--main--web--bob`
    label: String,
    /// The app's port inside bob's workspace.
    port: u16,
    /// `berth_app=...` for bob's app host, from a real browser sign-in.
    cookie: String,
}

impl Bob {
    async fn start() -> Bob {
        let berth = Berth::start().await;
        let token = member(&berth, "bob").await;
        berth.add_workspace(&token, "bob", "web").await;
        let agent_token = berth.add_agent(&token, "bob", "web", "main").await;
        let agent = berth.spawn_agent(&agent_token, Default::default());
        berth.wait_agents(2).await;
        let app = apps::start("127.0.0.1:0", "bobs-app").await;
        let port = app.port();
        let label = format!("{port}--main--web--bob");
        let cookie = sign_in(&berth, "bob", &berth.app_url(&label, "/")).await;
        Bob {
            berth,
            _app: app,
            _agent: agent,
            token,
            label,
            port,
            cookie,
        }
    }

    fn url(&self, path: &str) -> String {
        self.berth.app_url(&self.label, path)
    }

    /// `https://{label}.berth.localhost:{port}`: an origin on this berth.
    fn origin(&self, label: &str) -> String {
        self.berth.app_url(label, "")
    }

    fn host(&self) -> String {
        format!("{}.berth.localhost", self.label)
    }
}

/// Creates a member with password `{name}-password`; returns an API token.
async fn member(berth: &Berth, name: &str) -> String {
    berth
        .user_token(name, &format!("{name}-password"), "member", None)
        .await
}

/// Signs `user` in the way a browser does; returns the app cookie as
/// `name=value`.
async fn sign_in(berth: &Berth, user: &str, app_url: &str) -> String {
    let c = berth.client(true);
    let password = format!("{user}-password");
    browser::sign_in(&c, &berth.api_url(""), app_url, user, &password)
        .await
        .app
}

/// `name=value` of the `Set-Cookie` for `name`.
fn set_cookie(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// What a browser sends along with a request from a page at `origin`.
#[derive(Clone, Copy)]
enum Sent {
    /// `<form method=post>` submitted (a navigation).
    Form,
    /// `fetch(url, {method: 'POST', mode: 'no-cors', credentials: 'include'})`.
    NoCors,
}

/// Sends `POST url` as Chromium would from a page at `origin` (None: no
/// Origin header), with `cookie`; `site` is `Sec-Fetch-Site`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    kind: Sent,
    origin: Option<&str>,
    site: Option<&str>,
    cookie: &str,
) -> reqwest::Response {
    let mut req = client.post(url).header("cookie", cookie);
    req = match kind {
        Sent::Form => req
            .header("accept", HTML)
            .header("content-type", FORM)
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .body("amount=100&to=carol"),
        Sent::NoCors => req
            .header("accept", "*/*")
            .header("content-type", "text/plain;charset=UTF-8")
            .header("sec-fetch-mode", "no-cors")
            .header("sec-fetch-dest", "empty")
            .body("amount=100&to=carol"),
    };
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(s) = site {
        req = req.header("sec-fetch-site", s);
    }
    req.send().await.unwrap()
}

/// Asserts a 403 `cross_origin_refused` in the form the client asked for,
/// naming `says`.
async fn assert_refused(res: reqwest::Response, html: bool, says: &str, case: &str) {
    assert_eq!(res.status(), 403, "{case}");
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.text().await.unwrap();
    assert!(
        !body.contains("bobs-app"),
        "{case}: the app answered: {body}"
    );
    if html {
        assert!(ct.starts_with("text/html"), "{case}: {ct}");
        assert!(
            body.contains("Cross-origin request refused"),
            "{case}: {body}"
        );
        assert!(body.contains("cross_origin_refused"), "{case}: {body}");
    } else {
        assert_eq!(ct, "application/json", "{case}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "cross_origin_refused", "{case}: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(says), "{case}: {m}");
        assert!(m.contains("API token"), "{case}: {m}");
    }
}

/// Asserts the app answered, and saw `user` (None: anonymous).
async fn assert_reached(res: reqwest::Response, user: Option<&str>, case: &str) -> Value {
    assert_eq!(res.status(), 200, "{case}");
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["app"], "bobs-app", "{case}");
    assert_eq!(seen["method"], "POST", "{case}");
    assert_eq!(
        seen["headers"].get("x-berth-user").and_then(Value::as_str),
        user,
        "{case}"
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_carries_no_write_from_another_owners_app() {
    let bob = Bob::start().await;
    let carol = bob.origin("5173--main--lab--carol");
    let url = bob.url("/transfer");
    for http1 in [true, false] {
        let c = bob.berth.client(http1);
        let v = if http1 { "HTTP/1.1" } else { "HTTP/2" };

        // Carol's page: a form and a no-cors fetch, with bob's cookie.
        let res = post(
            &c,
            &url,
            Sent::Form,
            Some(&carol),
            Some("same-site"),
            &bob.cookie,
        )
        .await;
        assert_refused(res, true, "", &format!("{v} form from carol")).await;
        let res = post(
            &c,
            &url,
            Sent::NoCors,
            Some(&carol),
            Some("same-site"),
            &bob.cookie,
        )
        .await;
        assert_refused(res, false, &carol, &format!("{v} no-cors from carol")).await;

        // Other origins that are not bob's apps.
        for (name, origin) in [
            ("the control host", bob.berth.api_url("")),
            ("a foreign site", "https://evil.example".to_owned()),
            (
                "bob's host over http",
                bob.origin(&bob.label).replace("https:", "http:"),
            ),
            (
                "bob's host on another port",
                format!("https://{}:1", bob.host()),
            ),
            (
                "a lookalike",
                format!("https://{}.evil.example", bob.host()),
            ),
            ("a sandboxed frame", "null".to_owned()),
            ("garbage", "bob".to_owned()),
        ] {
            let res = post(
                &c,
                &url,
                Sent::NoCors,
                Some(&origin),
                Some("cross-site"),
                &bob.cookie,
            )
            .await;
            assert_refused(res, false, "", &format!("{v} {name}")).await;
        }
        // No Origin: refused unless the browser says it is same-origin.
        for site in [None, Some("same-site"), Some("cross-site")] {
            let res = post(&c, &url, Sent::NoCors, None, site, &bob.cookie).await;
            assert_refused(
                res,
                false,
                "no Origin header",
                &format!("{v} no Origin, {site:?}"),
            )
            .await;
        }
        let res = post(&c, &url, Sent::Form, None, Some("same-origin"), &bob.cookie).await;
        assert_reached(res, Some("bob"), &format!("{v} no Origin, same-origin")).await;
        // `Referrer-Policy: no-referrer` makes a same-origin form send `null`.
        let res = post(
            &c,
            &url,
            Sent::Form,
            Some("null"),
            Some("same-origin"),
            &bob.cookie,
        )
        .await;
        assert_reached(res, Some("bob"), &format!("{v} null, same-origin")).await;

        // Bob's own pages, and his other apps (named, short form): through.
        for label in [
            bob.label.clone(),
            "docs--main--web--bob".to_owned(),
            "5173--web--bob".to_owned(),
            format!("{}--main--web--bob", bob.port + 1),
        ] {
            let origin = bob.origin(&label);
            for kind in [Sent::Form, Sent::NoCors] {
                let res = post(
                    &c,
                    &url,
                    kind,
                    Some(&origin),
                    Some("same-site"),
                    &bob.cookie,
                )
                .await;
                assert_reached(res, Some("bob"), &format!("{v} from {label}")).await;
            }
        }
        // Reading is CORS's business: a GET from carol's page passes (the
        // browser keeps the answer from her).
        let res = c
            .get(&url)
            .header("cookie", &bob.cookie)
            .header("origin", &carol)
            .header("sec-fetch-site", "same-site")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{v} GET");
        // A program with bob's API token is not a browser: through.
        let res = c
            .post(&url)
            .bearer_auth(&bob.token)
            .header("origin", &carol)
            .body("x")
            .send()
            .await
            .unwrap();
        assert_reached(res, Some("bob"), &format!("{v} API token")).await;
    }
}

/// A TLS connection to berth for `host`, offering `alpn`.
async fn tls(
    berth: &Berth,
    host: &str,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cfg = berth::tls::client::client_config(Some(&berth.ca_pem), &[alpn]).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        berth::tls::client::connect(host, berth.addr.port(), cfg),
    )
    .await
    .unwrap()
    .unwrap()
}

/// Opens a WebSocket over HTTP/1.1 with `headers`; Ok: it echoes; Err: the status.
async fn websocket_h1(bob: &Bob, headers: &[(&str, &str)]) -> Result<(), u16> {
    let host = bob.host();
    let stream = tls(&bob.berth, &host, b"http/1.1").await;
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "wss://{host}:{}/ws",
        bob.berth.addr.port()
    ))
    .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse::<http::HeaderValue>().unwrap(),
        );
    }
    match tokio_tungstenite::client_async(req, stream).await {
        Ok((mut ws, _)) => {
            ws.send(Message::text("secret?")).await.unwrap();
            let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(back.into_text().unwrap().as_str(), "secret?");
            Ok(())
        }
        Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

/// Opens a WebSocket over HTTP/2 (RFC 8441) with `headers`, as Chromium
/// does; Ok: it echoes; Err: the status.
async fn websocket_h2(bob: &Bob, headers: &[(&str, &str)]) -> Result<(), u16> {
    let host = bob.host();
    let stream = tls(&bob.berth, &host, b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // Let the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) arrive.
    let warm = http::Request::get(format!("https://{host}:{}/", bob.berth.addr.port()))
        .body(Empty::new())
        .unwrap();
    sender.send_request(warm).await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("https://{host}:{}/ws", bob.berth.addr.port()))
        .header("sec-websocket-version", "13");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Empty::new()).unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let mut res = sender.send_request(req).await.unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let stream = hyper::upgrade::on(&mut res).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(stream),
        Role::Client,
        None,
    )
    .await;
    ws.send(Message::text("secret?")).await.unwrap();
    let back = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back.into_text().unwrap().as_str(), "secret?");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_from_another_owners_app_are_refused_over_http1_and_http2() {
    let bob = Bob::start().await;
    let carol = bob.origin("5173--main--lab--carol");
    let own = bob.origin(&bob.label);
    let docs = bob.origin("docs--main--web--bob");
    let bearer = format!("Bearer {}", bob.token);
    let cookie = bob.cookie.as_str();
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Headers, Result<(), u16>); 6] = [
        (
            "carol's page, bob's cookie",
            vec![
                ("origin", carol.as_str()),
                ("cookie", cookie),
                ("sec-fetch-site", "same-site"),
            ],
            Err(403),
        ),
        (
            "a foreign site, bob's cookie",
            vec![("origin", "https://evil.example"), ("cookie", cookie)],
            Err(403),
        ),
        (
            "no Origin, bob's cookie",
            vec![("cookie", cookie)],
            Err(403),
        ),
        (
            "bob's own page",
            vec![
                ("origin", own.as_str()),
                ("cookie", cookie),
                ("sec-fetch-site", "same-origin"),
            ],
            Ok(()),
        ),
        (
            "bob's other app",
            vec![
                ("origin", docs.as_str()),
                ("cookie", cookie),
                ("sec-fetch-site", "same-site"),
            ],
            Ok(()),
        ),
        (
            "bob's API token, carol's origin",
            vec![
                ("origin", carol.as_str()),
                ("authorization", bearer.as_str()),
            ],
            Ok(()),
        ),
    ];
    for (case, headers, want) in &cases {
        assert_eq!(websocket_h1(&bob, headers).await, *want, "HTTP/1.1: {case}");
        assert_eq!(websocket_h2(&bob, headers).await, *want, "HTTP/2: {case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_cookie_is_a_berth_cookie_too() {
    let bob = Bob::start().await;
    let link = bob
        .berth
        .share_link(
            &bob.token,
            json!({"user": "bob", "workspace": "web", "agent": "main", "port": bob.port}),
        )
        .await;
    let c = bob.berth.client(true);
    let res = c.get(link["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let visitor = set_cookie(res.headers(), SHARE_COOKIE);
    let carol = bob.origin("5173--main--lab--carol");
    let url = bob.url("/form");
    let res = post(
        &c,
        &url,
        Sent::NoCors,
        Some(&carol),
        Some("same-site"),
        &visitor,
    )
    .await;
    assert_refused(res, false, &carol, "share cookie from carol").await;
    let res = post(
        &c,
        &url,
        Sent::Form,
        Some(&carol),
        Some("same-site"),
        &visitor,
    )
    .await;
    assert_refused(res, true, "", "share cookie, form from carol").await;
    let own = bob.origin(&bob.label);
    let res = post(
        &c,
        &url,
        Sent::Form,
        Some(&own),
        Some("same-origin"),
        &visitor,
    )
    .await;
    assert_reached(res, None, "share cookie, own page").await;

    // A public app: an anonymous visitor carries no authority, and passes;
    // bob's cookie names bob to the app, so it does not.
    let (s, b) = bob
        .berth
        .api(
            Method::PUT,
            &format!(
                "/api/v1/workspaces/bob/web/agents/main/ports/{}/share",
                bob.port
            ),
            &bob.token,
            Some(json!({"level": "public"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let res = c
        .post(&url)
        .header("origin", &carol)
        .header("sec-fetch-site", "same-site")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_reached(res, None, "anonymous on a public app").await;
    let res = post(
        &c,
        &url,
        Sent::NoCors,
        Some(&carol),
        Some("same-site"),
        &visitor,
    )
    .await;
    assert_reached(res, None, "a share cookie the public app does not need").await;
    let res = post(
        &c,
        &url,
        Sent::NoCors,
        Some(&carol),
        Some("same-site"),
        &bob.cookie,
    )
    .await;
    assert_refused(res, false, &carol, "bob's cookie on his public app").await;
}

/// Sends `request` over a fresh TLS connection to `host` and returns the
/// first response.
async fn raw_exchange(berth: &Berth, host: &str, request: &str) -> raw::Response {
    let mut stream = raw::tls(&berth.ca_pem, host, berth.addr.port()).await;
    let ex = raw::exchange(&mut stream, request.as_bytes(), Duration::from_secs(20)).await;
    ex.responses()
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no response in {:?}", String::from_utf8_lossy(&ex.bytes)))
}

/// A raw app on loopback: for each connection it reads the request head,
/// records it, writes what `reply` makes of it, and closes.
async fn raw_app(reply: fn(&str) -> String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                seen.lock().unwrap().push(head.clone());
                let _ = tcp.write_all(reply(&head).as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, heads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrades_never_reach_the_app() {
    let berth = Berth::start().await;
    // An h2c-capable app: switches whenever asked, else answers with the
    // request head it received.
    let (port, heads) = raw_app(|head| {
        if head.to_ascii_lowercase().contains("upgrade: h2c") {
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\
             now speaking h2c, no berth in between"
                .to_owned()
        } else {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{head}",
                head.len()
            )
        }
    })
    .await;
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "public"}),
        )
        .await;
    let host = format!("{port}--main--dev--admin.berth.localhost");
    for upgrade in ["h2c", "H2C", "h2c, foo"] {
        let res = raw_exchange(
            &berth,
            &host,
            &format!(
                "GET / HTTP/1.1\r\nHost: {host}:{}\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
                 Upgrade: {upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
                 X-Berth-User: admin\r\n\r\n",
                berth.addr.port()
            ),
        )
        .await;
        assert_eq!(res.status, 200, "{upgrade}: no 101 comes back");
        let head = heads
            .lock()
            .unwrap()
            .pop()
            .expect("the app got the request");
        let lower = head.to_ascii_lowercase();
        for gone in ["upgrade", "http2-settings", "x-berth-user"] {
            assert!(
                !lower.contains(gone),
                "{upgrade}: the app saw {gone}: {head}"
            );
        }
        assert_eq!(String::from_utf8_lossy(&res.body), head);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_redirects_stay_on_the_app_host() {
    let berth = Berth::start().await;
    let link = berth
        .share_link(
            &berth.admin_token,
            json!({"user": "admin", "workspace": "dev", "agent": "main", "port": 4000}),
        )
        .await;
    let url = link["url"].as_str().unwrap();
    let token = url.split("berth_share=").nth(1).unwrap();
    let host = "4000--main--dev--admin.berth.localhost";
    for (path, want) in [
        ("//evil.com/", "/evil.com/"),
        ("/\\evil.com/", "/evil.com/"),
        ("/\\/evil.com", "/evil.com"),
        ("///evil.com/x?a=1&", "/evil.com/x?a=1"),
        ("/ok/", "/ok/"),
    ] {
        let sep = if path.contains('?') { "" } else { "?" };
        let res = raw_exchange(
            &berth,
            host,
            &format!(
                "GET {path}{sep}berth_share={token} HTTP/1.1\r\nHost: {host}:{}\r\n\
                 Connection: close\r\n\r\n",
                berth.addr.port()
            ),
        )
        .await;
        assert_eq!(res.status, 303, "{path}");
        assert_eq!(res.header("location"), Some(want), "{path}");
        assert!(res.header("set-cookie").is_some(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_normalize_to_berth_belong_to_the_edge() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "paths").await;
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: Bearer {}\r\n\
             Connection: close\r\n\r\n",
            berth.addr.port(),
            berth.admin_token
        )
    };
    for path in [
        "/_berth/x",
        "/_berth",
        "/%5Fberth/x",
        "/%5fberth/auth/callback?code=1",
        "/%255Fberth/x",
        "//_berth/x",
        "/./_berth/x",
        "/%2e/_berth/x",
        "/a/../_berth/x",
        "/\\_berth/x",
        "/%5C_berth/x",
        "/_BERTH/x",
        "/_berth;v=1/x",
    ] {
        let res = raw_exchange(&berth, &host, &get(path)).await;
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.json()["error"], "not_found", "{path}");
    }
    for path in ["/berth/x", "/x/_berth", "/_berthday"] {
        let res = raw_exchange(&berth, &host, &get(path)).await;
        assert_eq!(res.status, 200, "{path}");
        assert_eq!(res.json()["app"], "paths", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_trailers_never_cross_the_edge() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "trailers").await;
    let host = format!("{}--main--dev--admin.berth.localhost", app.port());
    // Client to app: a chunked body with trailers.
    let res = raw_exchange(
        &berth,
        &host,
        &format!(
            "POST /trailers HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\nTrailer: X-Berth-User, X-Forwarded-For, X-Checksum\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Berth-User: root\r\n\
             X-Forwarded-For: 6.6.6.6\r\nX-Checksum: abc\r\n\r\n",
            berth.addr.port(),
            berth.admin_token
        ),
    )
    .await;
    assert_eq!(res.status, 200);
    let seen = res.json();
    assert_eq!(seen["trailers"], json!({"x-checksum": "abc"}), "{seen}");

    // App to client (HTTP/2 carries trailers to any client), from an app
    // that sends them whether asked or not.
    let (port, _) = raw_app(|_| {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
         Trailer: X-Berth-User, X-Checksum\r\nConnection: close\r\n\r\n\
         4\r\nbody\r\n0\r\nX-Berth-User: from-the-app\r\nX-Checksum: abc\r\n\r\n"
            .to_owned()
    })
    .await;
    let host = format!("{port}--main--dev--admin.berth.localhost");
    let stream = tls(&berth, &host, b"h2").await;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{host}:{}/trailers-out", berth.addr.port()))
        .header("authorization", format!("Bearer {}", berth.admin_token))
        .body(Empty::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap();
    let trailers = body.trailers().cloned().expect("trailers arrive");
    assert_eq!(body.to_bytes(), "body");
    assert_eq!(trailers.get("x-checksum").unwrap(), "abc");
    assert!(trailers.get("x-berth-user").is_none(), "{trailers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthru_share_passes_only_genuine_preflights() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "passthru").await;
    let port = app.port();
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "owner", "cors": "passthru"}),
        )
        .await;
    let origin = "https://app.example.org";
    for http1 in [true, false] {
        let c = berth.client(http1);
        let preflight = |path: &str| {
            c.request(
                Method::OPTIONS,
                berth.app_url(&format!("{port}--main--dev--admin"), path),
            )
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
        };
        // A browser's preflight, on any path: the app answers it.
        for path in ["/data", "/admin/delete-everything"] {
            let res = preflight(path).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let seen: Value = res.json().await.unwrap();
            assert_eq!(seen["app"], "passthru");
        }
        // An OPTIONS with a body is not a preflight: it needs credentials.
        let res = preflight("/data").body("payload").send().await.unwrap();
        assert_eq!(res.status(), 401, "http1={http1}: with a body");
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from("payload"))]);
        let res = preflight("/data")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "http1={http1}: with a streamed body");
        let res = preflight("/data")
            .bearer_auth(&berth.admin_token)
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "http1={http1}: the owner may send one");
    }
}
