//! Request smuggling and desync: a corpus of requests that split, hide or
//! re-route requests (CL/TE variants, obfuscated `Transfer-Encoding`, broken
//! chunking, odd request targets, HTTP/2 requests that would turn into
//! something else as HTTP/1.1), sent over raw TLS to a running `berth dev`.
//!
//! Each case is checked from both ends: berth answers with a clean 4xx or
//! the app's normal answer (never a 5xx), and the app, which records every
//! byte that reaches it (`support::recorder`), saw exactly the one
//! well-formed request the case allows, or none: never a second request
//! hidden in a body, never a request for another app's host, never bytes
//! an HTTP/1.1 parser could read two ways. The corpus runs through the
//! `dev` role's own agent and through a separate `berth agent`.
//! docs/conformance.md lists the cases and their outcomes.

use crate::support::h2raw::{self, Outcome, H2};
use crate::support::recorder::{Parsed, Recorder, Seen};
use crate::support::{raw, Berth};
use std::time::Duration;

/// A berth with two recording apps: `app` shared publicly, `private` not
/// shared (owner only), both through the dev agent and through a second,
/// separate agent.
struct Setup {
    berth: Berth,
    app: Recorder,
    private: Recorder,
    _agent: tokio::sync::oneshot::Sender<()>,
}

/// The two ways to an app: the dev role's agent and a separate agent.
const AGENTS: [&str; 2] = ["main--dev--admin", "laptop--smuggle--admin"];

impl Setup {
    async fn start() -> Setup {
        let berth = Berth::start().await;
        let app = Recorder::start().await;
        let private = Recorder::start().await;
        let token = berth.create_agent("smuggle", "laptop").await;
        let agent = berth.spawn_agent(&token, Default::default());
        berth.wait_agents(2).await;
        for (ws, agent) in [("dev", "main"), ("smuggle", "laptop")] {
            let (s, body) = berth
                .api(
                    reqwest::Method::PUT,
                    &format!(
                        "/api/v1/workspaces/admin/{ws}/agents/{agent}/ports/{}/share",
                        app.port()
                    ),
                    &berth.admin_token,
                    Some(serde_json::json!({"level": "public"})),
                )
                .await;
            assert_eq!(s, 200, "{body}");
        }
        Setup {
            berth,
            app,
            private,
            _agent: agent,
        }
    }

    /// `{port}--{agent}.berth.localhost:{edge port}` for `app` through `agent`.
    fn host(&self, app: &Recorder, agent: &str) -> String {
        format!(
            "{}--{agent}.berth.localhost:{}",
            app.port(),
            self.berth.addr.port()
        )
    }

    fn clear(&self) {
        self.app.clear();
        self.private.clear();
    }
}

/// What a case must come to.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// The app gets one request for `/case` with this body, and its answer
    /// reaches the client.
    Pass(&'static [u8]),
    /// berth answers with this status and the app gets no complete request
    /// (a head and part of a body may have been forwarded before the body
    /// turned out to be broken; the app then sees the connection end).
    Refused(u16),
    /// HTTP/2 only: the stream is reset with PROTOCOL_ERROR (a malformed
    /// request, RFC 9113 section 8.1.1), and the app gets no complete request.
    Reset,
}

/// The checks every case shares, from the app's side: every byte parsed as
/// well-formed requests, none for `/smuggled`, every one for `host`, the
/// private app untouched; returns the complete requests other than the
/// sentinel.
fn app_side(setup: &Setup, name: &str, host: &str, seen: &[Parsed]) -> Vec<Seen> {
    let mut complete = Vec::new();
    for conn in seen {
        assert!(
            conn.garbage.is_empty(),
            "{name}: the app got bytes that are not a well-formed request: {:?}",
            String::from_utf8_lossy(&conn.garbage)
        );
        for req in &conn.requests {
            assert!(
                !req.target.contains("smuggled"),
                "{name}: a smuggled request reached the app: {req:?}"
            );
            assert_eq!(
                req.host().as_deref(),
                Some(host),
                "{name}: the app got a request for another host: {req:?}"
            );
            assert!(
                req.header("x-berth-user").is_none(),
                "{name}: a client's X-Berth-User reached the app: {req:?}"
            );
            if let Some(len) = req.header("content-length") {
                assert_eq!(
                    Some(len),
                    req.body.as_ref().map(|b| b.len().to_string()),
                    "{name}: Content-Length not in plain digits, or not the body's: {req:?}"
                );
            }
            if req.body.is_some() && req.target != "/sentinel" {
                complete.push(req.clone());
            }
        }
    }
    assert!(
        setup.private.raw().is_empty(),
        "{name}: the private app was reached: {:?}",
        setup.private.parsed()
    );
    complete
}

/// Checks a case's complete requests at the app against `want`.
fn app_got(name: &str, want: Want, complete: &[Seen]) {
    match want {
        Want::Pass(body) => {
            assert_eq!(complete.len(), 1, "{name}: {complete:?}");
            assert_eq!(complete[0].target, "/case", "{name}");
            assert_eq!(
                complete[0].body.as_deref(),
                Some(body),
                "{name}: the app got another body"
            );
        }
        Want::Refused(_) | Want::Reset => {
            assert!(complete.is_empty(), "{name}: {complete:?}")
        }
    }
}

/// True if `body` is the recording app's answer.
fn from_app(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["recorder"] == true)
}

/// One HTTP/1.1 case: its bytes, with `{H}` standing for the app host.
struct H1 {
    name: &'static str,
    bytes: &'static [u8],
    want: Want,
}

const fn h1(name: &'static str, bytes: &'static [u8], want: Want) -> H1 {
    H1 { name, bytes, want }
}

fn fill(template: &[u8], host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.windows(3).position(|w| w == b"{H}") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(host.as_bytes());
        rest = &rest[i + 3..];
    }
    out.extend_from_slice(rest);
    out
}

/// The HTTP/1.1 corpus. Bodies that hide a request carry `/smuggled`.
const H1_CASES: &[H1] = &[
    // Content-Length and Transfer-Encoding together: hyper frames by
    // Transfer-Encoding (RFC 9112 section 6.3), drops Content-Length, answers,
    // and closes the connection, so what follows is never read as a request.
    h1(
        "CL.TE",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n",
        Want::Pass(b""),
    ),
    h1(
        "TE.CL",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
        Want::Pass(b"SMUGGLED"),
    ),
    h1(
        "duplicate Content-Length, different values",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: {H}\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "duplicate Content-Length, same value",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        Want::Pass(b"abc"),
    ),
    h1(
        "Content-Length list",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3, 3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "Content-Length with a plus sign",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: +3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "negative Content-Length",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: -1\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "hexadecimal Content-Length",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 0x3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "Content-Length over 2^64",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 18446744073709551619\r\n\r\nabc",
        Want::Refused(400),
    ),
    // Accepted (1*DIGIT allows them) and sent on as `3`.
    h1(
        "Content-Length with leading zeros",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 003\r\n\r\nabc",
        Want::Pass(b"abc"),
    ),
    h1(
        "Content-Length with spaces",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nContent-Length:   3  \r\n\r\nabc",
        Want::Pass(b"abc"),
    ),
    h1(
        "Transfer-Encoding: xchunked",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "Transfer-Encoding: chunked, identity",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "Transfer-Encoding: identity, chunked",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: identity, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "Transfer-Encoding with a leading space",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "Transfer-Encoding with a tab",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding:\tchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "Transfer-Encoding with a vertical tab",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding:\x0bchunked\r\nContent-Length: 3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "Transfer-Encoding with a space before the colon",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "Transfer-Encoding in upper case",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTRANSFER-ENCODING: CHUNKED\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "Transfer-Encoding twice",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "Transfer-Encoding twice, identity last",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "Transfer-Encoding on HTTP/1.0",
        b"POST /case HTTP/1.0\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    // Trailers are not forwarded: framing fields in them reach nobody.
    h1(
        "Transfer-Encoding and Content-Length in trailers",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "chunk size over 2^64",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "chunk size of 17 hex digits",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF5\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "chunk size not hexadecimal",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "chunk longer than its size",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcGET /smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "chunk extensions",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0;x=y\r\n\r\n",
        Want::Pass(b"hello"),
    ),
    h1(
        "chunk extension with a bare LF",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nX\r\nhello\r\n0\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "chunks with bare LF",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
        Want::Refused(400),
    ),
    // hyper reads a head with bare LF line endings; the app gets a fresh
    // head with CRLF, so nothing downstream can read it another way.
    h1(
        "head with bare LF",
        b"POST /case HTTP/1.1\nHost: {H}\nContent-Length: 3\n\nabc",
        Want::Pass(b"abc"),
    ),
    h1(
        "obs-fold continuation",
        b"GET /case HTTP/1.1\r\nHost: {H}\r\nX-A: a\r\n b\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "obs-fold hiding Transfer-Encoding",
        b"POST /case HTTP/1.1\r\nHost: {H}\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        Want::Refused(400),
    ),
    h1(
        "CR inside a header value",
        b"GET /case HTTP/1.1\r\nHost: {H}\r\nX-A: a\rGET /smuggled HTTP/1.1\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "NUL inside a header value",
        b"GET /case HTTP/1.1\r\nHost: {H}\r\nX-A: a\x00b\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "two Host headers",
        b"GET /case HTTP/1.1\r\nHost: {H}\r\nHost: {H}\r\n\r\n",
        Want::Refused(400),
    ),
    h1(
        "absolute-form target",
        b"POST https://{H}/case HTTP/1.1\r\nHost: {H}\r\nContent-Length: 3\r\n\r\nabc",
        Want::Pass(b"abc"),
    ),
    // `*` names no path on any app.
    h1(
        "OPTIONS *",
        b"OPTIONS * HTTP/1.1\r\nHost: {H}\r\n\r\n",
        Want::Refused(400),
    ),
];

/// Sends one case and then a sentinel request on the same connection; the
/// sentinel is answered only if berth read the case exactly as one request.
async fn run_h1(setup: &Setup, agent: &str, case: &H1) {
    let host = setup.host(&setup.app, agent);
    let name = format!("{} (via {agent})", case.name);
    setup.clear();
    let mut bytes = fill(case.bytes, &host);
    bytes.extend_from_slice(
        format!("GET /sentinel HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut tls = raw::tls(
        &setup.berth.ca_pem,
        "berth.localhost",
        setup.berth.addr.port(),
    )
    .await;
    let ex = raw::exchange(&mut tls, &bytes, Duration::from_secs(15)).await;
    let responses = ex.responses();
    let seen = setup.app.settle().await;
    let text = String::from_utf8_lossy(&ex.bytes);
    assert!(!responses.is_empty(), "{name}: no response: {ex:?}");
    for r in &responses {
        assert!(r.status < 500, "{name}: a 5xx from berth: {text}");
    }
    // At most the case's answer and the sentinel's, in that order.
    assert!(responses.len() <= 2, "{name}: {text}");
    if let Some(second) = responses.get(1) {
        assert_eq!(second.status, 200, "{name}: {text}");
        assert_eq!(second.json()["path"], "/sentinel", "{name}: {text}");
    }
    let first = &responses[0];
    match case.want {
        Want::Pass(_) => {
            assert_eq!(first.status, 200, "{name}: {text}");
            assert_eq!(first.json()["path"], "/case", "{name}: {text}");
        }
        Want::Refused(status) => {
            assert_eq!(first.status, status, "{name}: {text}");
            // berth's own answer, not the app's.
            assert!(!from_app(&first.body), "{name}: {text}");
        }
        Want::Reset => unreachable!("HTTP/2 only"),
    }
    let complete = app_side(setup, &name, &host, &seen);
    app_got(&name, case.want, &complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_smuggling_corpus_reaches_the_app_as_one_clean_request_or_not_at_all() {
    let setup = Setup::start().await;
    for agent in AGENTS {
        for case in H1_CASES {
            run_h1(&setup, agent, case).await;
        }
    }
}

/// One HTTP/2 case: the request's header fields in order (`{H}` is the app
/// host), an optional DATA frame, and trailers.
struct H2Case {
    name: &'static str,
    fields: &'static [(&'static [u8], &'static [u8])],
    data: Option<&'static [u8]>,
    trailers: &'static [(&'static [u8], &'static [u8])],
    want: Want,
}

const POST: (&[u8], &[u8]) = (b":method", b"POST");
const GET: (&[u8], &[u8]) = (b":method", b"GET");
const HTTPS: (&[u8], &[u8]) = (b":scheme", b"https");
const CASE: (&[u8], &[u8]) = (b":path", b"/case");
const AUTHORITY: (&[u8], &[u8]) = (b":authority", b"{H}");

const fn h2c(
    name: &'static str,
    fields: &'static [(&'static [u8], &'static [u8])],
    data: Option<&'static [u8]>,
    want: Want,
) -> H2Case {
    H2Case {
        name,
        fields,
        data,
        trailers: &[],
        want,
    }
}

/// The HTTP/2 corpus: what would become another request, or another host,
/// once the edge speaks HTTP/1.1 to the app.
const H2_CASES: &[H2Case] = &[
    h2c(
        "a plain POST",
        &[POST, HTTPS, CASE, AUTHORITY, (b"content-length", b"5")],
        Some(b"hello"),
        Want::Pass(b"hello"),
    ),
    // The DATA frame holds a whole HTTP/1.1 request: the app must get it
    // as the body of the one POST, framed by Content-Length or chunked.
    h2c(
        "a request inside a DATA frame, with content-length",
        &[POST, HTTPS, CASE, AUTHORITY, (b"content-length", b"35")],
        Some(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Want::Pass(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    ),
    h2c(
        "a request inside a DATA frame, no content-length",
        &[POST, HTTPS, CASE, AUTHORITY],
        Some(b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Want::Pass(b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    ),
    h2c(
        "content-length below the DATA length",
        &[POST, HTTPS, CASE, AUTHORITY, (b"content-length", b"1")],
        Some(b"aGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Want::Reset,
    ),
    h2c(
        "content-length above the DATA length",
        &[POST, HTTPS, CASE, AUTHORITY, (b"content-length", b"100")],
        Some(b"hello"),
        Want::Reset,
    ),
    h2c(
        "transfer-encoding: chunked",
        &[
            POST,
            HTTPS,
            CASE,
            AUTHORITY,
            (b"transfer-encoding", b"chunked"),
        ],
        Some(b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
        Want::Reset,
    ),
    h2c(
        "connection header",
        &[GET, HTTPS, CASE, AUTHORITY, (b"connection", b"keep-alive")],
        None,
        Want::Reset,
    ),
    h2c(
        "keep-alive header",
        &[GET, HTTPS, CASE, AUTHORITY, (b"keep-alive", b"timeout=5")],
        None,
        Want::Reset,
    ),
    h2c(
        "upgrade header",
        &[GET, HTTPS, CASE, AUTHORITY, (b"upgrade", b"websocket")],
        None,
        Want::Reset,
    ),
    h2c(
        "proxy-connection header",
        &[
            GET,
            HTTPS,
            CASE,
            AUTHORITY,
            (b"proxy-connection", b"keep-alive"),
        ],
        None,
        Want::Reset,
    ),
    h2c(
        "te: chunked",
        &[GET, HTTPS, CASE, AUTHORITY, (b"te", b"chunked")],
        None,
        Want::Reset,
    ),
    // The one `te` HTTP/2 allows; it is hop-by-hop and not sent on.
    h2c(
        "te: trailers",
        &[GET, HTTPS, CASE, AUTHORITY, (b"te", b"trailers")],
        None,
        Want::Pass(b""),
    ),
    h2c(
        "CRLF in a header value",
        &[
            GET,
            HTTPS,
            CASE,
            AUTHORITY,
            (b"x-a", b"a\r\nTransfer-Encoding: chunked"),
        ],
        None,
        Want::Reset,
    ),
    h2c(
        "LF in a header value",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a", b"a\nx-b: c")],
        None,
        Want::Reset,
    ),
    h2c(
        "CR in a header value",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a", b"a\rb")],
        None,
        Want::Reset,
    ),
    h2c(
        "NUL in a header value",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a", b"a\x00b")],
        None,
        Want::Reset,
    ),
    h2c(
        "CRLF in a header name",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a\r\nx-b", b"c")],
        None,
        Want::Reset,
    ),
    h2c(
        "NUL in a header name",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a\x00", b"c")],
        None,
        Want::Reset,
    ),
    h2c(
        "colon in a header name",
        &[GET, HTTPS, CASE, AUTHORITY, (b"x-a:b", b"c")],
        None,
        Want::Reset,
    ),
    h2c(
        "upper case header name",
        &[GET, HTTPS, CASE, AUTHORITY, (b"X-A", b"c")],
        None,
        Want::Reset,
    ),
    h2c(
        "request line inside :method",
        &[
            (b":method", b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\nGET"),
            HTTPS,
            CASE,
            AUTHORITY,
        ],
        None,
        Want::Reset,
    ),
    h2c(
        "request line inside :path",
        &[
            GET,
            HTTPS,
            (b":path", b"/case HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled"),
            AUTHORITY,
        ],
        None,
        Want::Reset,
    ),
    h2c(
        ":path with a space",
        &[GET, HTTPS, (b":path", b"/case /smuggled"), AUTHORITY],
        None,
        Want::Reset,
    ),
    h2c(
        ":path without a leading slash",
        &[GET, HTTPS, (b":path", b"case"), AUTHORITY],
        None,
        Want::Reset,
    ),
    h2c(
        ":path of only a query",
        &[GET, HTTPS, (b":path", b"?x=1"), AUTHORITY],
        None,
        Want::Refused(400),
    ),
    h2c(
        "empty :path",
        &[GET, HTTPS, (b":path", b""), AUTHORITY],
        None,
        Want::Reset,
    ),
    h2c(
        ":path *",
        &[(b":method", b"OPTIONS"), HTTPS, (b":path", b"*"), AUTHORITY],
        None,
        Want::Refused(400),
    ),
    h2c(
        "two :path",
        &[GET, HTTPS, CASE, (b":path", b"/smuggled"), AUTHORITY],
        None,
        Want::Reset,
    ),
    h2c(
        "pseudo-header after a regular one",
        &[GET, HTTPS, AUTHORITY, (b"x-a", b"b"), CASE],
        None,
        Want::Reset,
    ),
    h2c(
        "a made-up pseudo-header",
        &[GET, HTTPS, CASE, AUTHORITY, (b":host", b"x")],
        None,
        Want::Reset,
    ),
    h2c(
        ":authority with userinfo",
        &[GET, HTTPS, CASE, (b":authority", b"user@{H}")],
        None,
        Want::Refused(404),
    ),
    h2c(
        ":authority and the same host",
        &[GET, HTTPS, CASE, AUTHORITY, (b"host", b"{H}")],
        None,
        Want::Pass(b""),
    ),
    h2c(
        "CONNECT",
        &[(b":method", b"CONNECT"), (b":authority", b"{H}")],
        None,
        Want::Refused(400),
    ),
    // Trailers are not sent on to the app (it speaks HTTP/1.1 and did not
    // ask for them); framing fields in them are refused outright.
    H2Case {
        name: "trailers with a pseudo-header",
        fields: &[POST, HTTPS, CASE, AUTHORITY],
        data: Some(b"hello"),
        trailers: &[(b":path", b"/smuggled"), (b"x-t", b"1")],
        want: Want::Pass(b"hello"),
    },
    H2Case {
        name: "content-length in trailers",
        fields: &[POST, HTTPS, CASE, AUTHORITY],
        data: Some(b"hello"),
        trailers: &[(b"content-length", b"40")],
        want: Want::Pass(b"hello"),
    },
    H2Case {
        name: "transfer-encoding in trailers",
        fields: &[POST, HTTPS, CASE, AUTHORITY],
        data: Some(b"hello"),
        trailers: &[(b"transfer-encoding", b"chunked")],
        want: Want::Reset,
    },
];

/// Sends one HTTP/2 case on stream 1 of a fresh connection, then a plain
/// request on stream 3 if the connection lives on.
async fn run_h2(setup: &Setup, agent: &str, case: &H2Case) {
    let host = setup.host(&setup.app, agent);
    let name = format!("{} (via {agent}, HTTP/2)", case.name);
    setup.clear();
    let berth = &setup.berth;
    let mut h2 = H2::connect(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
    let fields: Vec<(Vec<u8>, Vec<u8>)> = case
        .fields
        .iter()
        .map(|(k, v)| (k.to_vec(), fill(v, &host)))
        .collect();
    let fields: Vec<(&[u8], &[u8])> = fields
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let ends_with_headers = case.data.is_none() && case.trailers.is_empty();
    let mut out = h2.headers(1, &fields, ends_with_headers);
    if let Some(data) = case.data {
        out.extend(H2::data(1, data, case.trailers.is_empty()));
    }
    if !case.trailers.is_empty() {
        out.extend(h2.headers(1, case.trailers, true));
    }
    h2.send(&out).await;
    let outcome = h2.outcome(1, Duration::from_secs(15)).await;
    if let Some(status) = outcome.status() {
        assert!(status < 500, "{name}: a 5xx from berth: {outcome:?}");
    }
    match case.want {
        Want::Pass(_) => {
            assert_eq!(outcome.status(), Some(200), "{name}: {outcome:?}");
            assert_eq!(outcome.json()["path"], "/case", "{name}");
        }
        Want::Refused(status) => {
            assert_eq!(outcome.status(), Some(status), "{name}: {outcome:?}");
            if let Outcome::Response { body, .. } = &outcome {
                assert!(!from_app(body), "{name}: {outcome:?}");
            }
        }
        Want::Reset => assert!(
            matches!(
                outcome,
                Outcome::Reset(h2raw::PROTOCOL_ERROR) | Outcome::GoAway(h2raw::PROTOCOL_ERROR)
            ),
            "{name}: want a PROTOCOL_ERROR reset: {outcome:?}"
        ),
    }
    // The connection still serves, and only the request it is asked.
    if !matches!(outcome, Outcome::GoAway(_) | Outcome::Closed) {
        let next = h2.headers(
            3,
            &[
                GET,
                HTTPS,
                (b":path", b"/sentinel"),
                (b":authority", host.as_bytes()),
            ],
            true,
        );
        h2.send(&next).await;
        let sentinel = h2.outcome(3, Duration::from_secs(15)).await;
        assert_eq!(sentinel.status(), Some(200), "{name}: {sentinel:?}");
        assert_eq!(sentinel.json()["path"], "/sentinel", "{name}");
    }
    let seen = setup.app.settle().await;
    let complete = app_side(setup, &name, &host, &seen);
    app_got(&name, case.want, &complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_downgrade_corpus_reaches_the_app_as_one_clean_request_or_not_at_all() {
    let setup = Setup::start().await;
    for agent in AGENTS {
        for case in H2_CASES {
            run_h2(&setup, agent, case).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_decides_where_a_request_goes() {
    let setup = Setup::start().await;
    let berth = &setup.berth;
    let public = setup.host(&setup.app, AGENTS[0]);
    let private = setup.host(&setup.private, AGENTS[0]);

    // HTTP/2: `:authority` and `Host` naming two apps is a 400, whichever
    // way round; neither app hears of it.
    for (authority, host) in [(&public, &private), (&private, &public)] {
        setup.clear();
        let mut h2 = H2::connect(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
        let req = h2.headers(
            1,
            &[
                GET,
                HTTPS,
                CASE,
                (b":authority", authority.as_bytes()),
                (b"host", host.as_bytes()),
            ],
            true,
        );
        h2.send(&req).await;
        let outcome = h2.outcome(1, Duration::from_secs(15)).await;
        assert_eq!(outcome.status(), Some(400), "{outcome:?}");
        assert!(
            outcome.json()["message"]
                .as_str()
                .unwrap()
                .contains(":authority and Host"),
            "{outcome:?}"
        );
        setup.app.settle().await;
        assert!(setup.app.raw().is_empty() && setup.private.raw().is_empty());
    }

    // HTTP/1.1 absolute-form: the target names the app (RFC 9112 section
    // 3.2.2), for routing, for access and for the Host the app gets.
    let cases: [(String, u16, bool); 3] = [
        // The private app, reached with the public one in Host: sign-in
        // needed, and nobody reached.
        (
            format!("GET https://{private}/case HTTP/1.1\r\nHost: {public}\r\nConnection: close\r\n\r\n"),
            401,
            false,
        ),
        // The public app, with the private one in Host: the public app,
        // told its own host.
        (
            format!("GET https://{public}/case HTTP/1.1\r\nHost: {private}\r\nConnection: close\r\n\r\n"),
            200,
            true,
        ),
        // Two Host headers: refused.
        (
            format!("GET /case HTTP/1.1\r\nHost: {public}\r\nHost: {private}\r\nConnection: close\r\n\r\n"),
            400,
            false,
        ),
    ];
    for (req, status, reached) in cases {
        setup.clear();
        let mut tls = raw::tls(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
        let ex = raw::exchange(&mut tls, req.as_bytes(), Duration::from_secs(15)).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "{req:?}: {ex:?}");
        assert_eq!(responses[0].status, status, "{req:?}: {ex:?}");
        let seen = setup.app.settle().await;
        let complete = app_side(&setup, &req, &public, &seen);
        assert_eq!(
            complete.len(),
            usize::from(reached),
            "{req:?}: {complete:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_never_gives_the_client_a_raw_pipe_to_the_app() {
    let setup = Setup::start().await;
    for agent in AGENTS {
        setup.clear();
        let host = setup.host(&setup.app, agent);
        // If berth passed the upgrade on, the app (which speaks h2c) would
        // answer 101, and the next bytes would reach it unread by berth,
        // X-Berth-User and all.
        let req = format!(
            "GET /case HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n\
             GET /after HTTP/1.1\r\nHost: {host}\r\nX-Berth-User: admin\r\nConnection: close\r\n\r\n"
        );
        let mut tls = raw::tls(
            &setup.berth.ca_pem,
            "berth.localhost",
            setup.berth.addr.port(),
        )
        .await;
        let ex = raw::exchange(&mut tls, req.as_bytes(), Duration::from_secs(15)).await;
        let responses = ex.responses();
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200], "via {agent}: {ex:?}");
        assert_eq!(responses[0].json()["path"], "/case");
        assert_eq!(responses[1].json()["path"], "/after");
        let seen = setup.app.settle().await;
        let complete = app_side(&setup, agent, &host, &seen);
        let paths: Vec<&str> = complete.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(paths, ["/case", "/after"], "via {agent}");
        for r in &complete {
            assert_eq!(r.method, "GET", "via {agent}: {r:?}");
            assert!(r.header("upgrade").is_none(), "via {agent}: {r:?}");
            assert!(r.header("http2-settings").is_none(), "via {agent}: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_chose_h2_is_never_answered_in_http1() {
    let setup = Setup::start().await;
    let host = setup.host(&setup.app, AGENTS[0]);
    let berth = &setup.berth;
    // RFC 9113 section 3.4: after ALPN `h2` the client must send the HTTP/2
    // preface; HTTP/1.1 bytes there are a connection error, not a request.
    let mut tls = h2raw::tls(
        &berth.ca_pem,
        "berth.localhost",
        berth.addr.port(),
        &[b"h2"],
    )
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let req = format!("GET /case HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let ex = raw::exchange(&mut tls, req.as_bytes(), Duration::from_secs(15)).await;
    assert!(
        !ex.bytes.starts_with(b"HTTP/1"),
        "answered in HTTP/1.1 on an h2 connection: {:?}",
        String::from_utf8_lossy(&ex.bytes)
    );
    setup.app.settle().await;
    assert!(setup.app.raw().is_empty(), "{:?}", setup.app.parsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_by_a_visitor_never_close_the_agents_tunnel() {
    let setup = Setup::start().await;
    let berth = &setup.berth;
    let tunnels = &berth.server.tunnels;
    let generations = || {
        let mut g: Vec<(i64, u64)> = tunnels
            .agent_ids()
            .into_iter()
            .filter_map(|id| tunnels.get(id).map(|t| (id, t.generation)))
            .collect();
        g.sort();
        g
    };
    let before = generations();
    assert_eq!(before.len(), 2);
    for agent in AGENTS {
        let host = setup.host(&setup.app, agent);
        // Rounds of 50 requests, each reset a moment later: the edge has
        // begun opening tunnel streams for them, and drops them half-way.
        let mut stream = 1u32;
        let mut h2 = H2::connect(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
        for round in 0..24u32 {
            let mut burst = Vec::new();
            let first = stream;
            for _ in 0..50 {
                burst.extend(h2.headers(
                    stream,
                    &[GET, HTTPS, CASE, (b":authority", host.as_bytes())],
                    true,
                ));
                stream += 2;
            }
            h2.send(&burst).await;
            tokio::time::sleep(Duration::from_micros(u64::from(round % 6) * 400)).await;
            let resets: Vec<u8> = (first..stream)
                .step_by(2)
                .flat_map(|s| H2::rst(s, h2raw::CANCEL))
                .collect();
            h2.send(&resets).await;
            if round % 4 == 3 {
                // A fresh connection now and then (the edge may have had
                // enough of this one).
                h2 = H2::connect(&berth.ca_pem, "berth.localhost", berth.addr.port()).await;
                stream = 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        generations(),
        before,
        "a visitor's resets closed an agent's tunnel"
    );
    // And the apps still answer through both.
    for agent in AGENTS {
        let res = berth
            .client(false)
            .get(format!("https://{}/ok", setup.host(&setup.app, agent)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_star_and_broken_chunked_bodies_get_a_clear_400() {
    let setup = Setup::start().await;
    let host = setup.host(&setup.app, AGENTS[1]);
    let cases = [
        (
            format!("OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            "OPTIONS /",
        ),
        (
            format!(
                "POST /case HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
            ),
            "request body was malformed",
        ),
        (
            format!(
                "POST /case HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
            ),
            "request body was malformed",
        ),
        (
            format!(
                "POST /case HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"
            ),
            "request body was malformed",
        ),
    ];
    for (req, says) in cases {
        let mut tls = raw::tls(
            &setup.berth.ca_pem,
            "berth.localhost",
            setup.berth.addr.port(),
        )
        .await;
        let ex = raw::exchange(&mut tls, req.as_bytes(), Duration::from_secs(15)).await;
        let responses = ex.responses();
        assert_eq!(responses.len(), 1, "{req:?}: {ex:?}");
        let res = &responses[0];
        assert_eq!(
            res.status,
            400,
            "{req:?}: {:?}",
            String::from_utf8_lossy(&res.body)
        );
        let body = res.json();
        assert_eq!(body["error"], "bad_request", "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(says), "{req:?}: {message}");
        println!("{message}");
    }
}
