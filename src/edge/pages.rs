//! Error responses of the edge (SPEC section 3): JSON
//! `{"error": code, "message": message}` for programs, a small self-contained
//! page for browsers.
//!
//! [`ErrorPage`] is the edge's one error type: the proxy, the front door and
//! the sign-in callback return it, and [`render`] is the one place it becomes
//! a status and a page. Each knows whose [`Fault`] it is (for the access log),
//! and the wording of every refusal lives here.

use crate::auth::origin::Refusal;
use crate::html::escape_html;
use axum::body::Body;
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

/// Every way the edge refuses or fails a request on an app host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorPage {
    /// 404: the host is outside every wildcard or its label is malformed;
    /// `reason` is the [`crate::host::HostError`] text.
    UnknownHost { reason: String },
    /// 404: nothing there, or nothing the visitor may see (indistinguishable).
    NotFound,
    /// 404: the short form was used while the workspace has several agents.
    Ambiguous { agents: Vec<String> },
    /// 401: credentials are needed.
    Unauthenticated { reason: String },
    /// 401: a sign-in callback this browser cannot use (expired, used,
    /// another browser's); the page links to `retry`, a path on this host,
    /// which starts sign-in again.
    SigninAgain { reason: String, retry: String },
    /// 502: the workspace's agent is not connected.
    AgentOffline { agent: String, workspace: String },
    /// 502: the agent is connected but nothing listens on the port.
    PortClosed { port: u16 },
    /// 403: the agent's `--allow-ports` refuses the port.
    PortNotAllowed { port: u16 },
    /// 504: the app did not answer in time.
    UpstreamTimeout { seconds: u64 },
    /// 502: talking to the app failed; `fault` says where (the tunnel, the
    /// app, or berth's own routing).
    UpstreamFailed { fault: Fault, detail: String },
    /// 400: the request itself is unusable.
    BadRequest { reason: String },
    /// 403: a berth cookie admitted a WebSocket upgrade or a non-safe
    /// method from another origin ([`crate::auth::origin::check`]);
    /// `request` names it ("POST request", "WebSocket upgrade").
    CrossOrigin { request: String, refusal: Refusal },
    /// 503 with `Retry-After`: the agent has `limit` requests in flight
    /// already (`limits.max_streams_per_agent`).
    AgentBusy { limit: usize },
    /// 508: the port leads back to berth, so the request would loop.
    Loop { port: u16 },
    /// 429 with `Retry-After`: this address sent more requests to public
    /// shares or share links than `sharing.public_rate_limit` allows.
    RateLimited { retry_after_secs: u64 },
    /// 401 `invalid_token` at the tunnel endpoint: no agent has that token.
    AgentToken,
    /// 404 on a regional edge's own host: the API is on the control plane.
    NoApiHere,
}

/// Whose doing an [`ErrorPage`] is: the client's request, the tunnel to the
/// agent, the app behind it, or berth itself (logged with each refusal).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request: its host, credentials, origin, framing.
    Client,
    /// The agent or its tunnel: offline, refused the port, failed.
    Tunnel,
    /// The app: closed port, no answer, bad HTTP, timeout.
    App,
    /// berth itself: a limit, a loop, an internal error.
    Berth,
}

impl Fault {
    /// The word the access log carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Client => "client",
            Fault::Tunnel => "tunnel",
            Fault::App => "app",
            Fault::Berth => "berth",
        }
    }
}

/// Why a request without enough credentials is refused (the words are
/// [`ErrorPage::unauthenticated`]'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// A share-link cookie was presented but names no live link.
    ExpiredLink,
    /// An API token was presented but names nobody.
    BadToken,
    /// Nothing was presented.
    Nothing,
}

/// `Retry-After` on a 503 for a busy agent, in seconds.
pub const BUSY_RETRY_AFTER_SECS: u32 = 1;

/// Title, explanation and (optional) what to do, as plain text.
struct Text {
    title: &'static str,
    explanation: String,
    hint: Option<String>,
}

/// How often the "workspace offline" page reloads itself (seconds): an
/// agent reconnects within a few seconds of starting.
const OFFLINE_RETRY_SECS: u32 = 5;

impl ErrorPage {
    /// The 401 for a request that `missing` something.
    pub fn unauthenticated(missing: Missing) -> ErrorPage {
        let reason = match missing {
            Missing::ExpiredLink => {
                "This share link has expired or was revoked: ask the owner for a new one"
            }
            Missing::BadToken => {
                "The berth API token is not valid (revoked, or from another deployment)"
            }
            Missing::Nothing => {
                "This app needs a berth API token: send Authorization: Bearer <token> or \
                 Berth-Token: <token>"
            }
        };
        ErrorPage::Unauthenticated {
            reason: reason.into(),
        }
    }

    /// The 401 for a share link that opens nothing (any more): redeemed by
    /// URL or sent by a program in place of an API token.
    pub fn link_refused() -> ErrorPage {
        ErrorPage::Unauthenticated {
            reason: "This share link has expired, was revoked, or has been used up: ask the \
                     owner for a new one"
                .into(),
        }
    }

    /// Whose doing it is.
    pub fn fault(&self) -> Fault {
        match self {
            ErrorPage::UnknownHost { .. }
            | ErrorPage::NotFound
            | ErrorPage::Ambiguous { .. }
            | ErrorPage::Unauthenticated { .. }
            | ErrorPage::SigninAgain { .. }
            | ErrorPage::BadRequest { .. }
            | ErrorPage::CrossOrigin { .. }
            | ErrorPage::AgentToken
            | ErrorPage::NoApiHere
            | ErrorPage::RateLimited { .. } => Fault::Client,
            ErrorPage::AgentOffline { .. } | ErrorPage::PortNotAllowed { .. } => Fault::Tunnel,
            ErrorPage::PortClosed { .. } | ErrorPage::UpstreamTimeout { .. } => Fault::App,
            ErrorPage::UpstreamFailed { fault, .. } => *fault,
            ErrorPage::AgentBusy { .. } | ErrorPage::Loop { .. } => Fault::Berth,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorPage::UnknownHost { .. }
            | ErrorPage::NotFound
            | ErrorPage::Ambiguous { .. }
            | ErrorPage::NoApiHere => StatusCode::NOT_FOUND,
            ErrorPage::Unauthenticated { .. }
            | ErrorPage::SigninAgain { .. }
            | ErrorPage::AgentToken => StatusCode::UNAUTHORIZED,
            ErrorPage::AgentOffline { .. }
            | ErrorPage::PortClosed { .. }
            | ErrorPage::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            ErrorPage::PortNotAllowed { .. } | ErrorPage::CrossOrigin { .. } => {
                StatusCode::FORBIDDEN
            }
            ErrorPage::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ErrorPage::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ErrorPage::AgentBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ErrorPage::Loop { .. } => StatusCode::LOOP_DETECTED,
            ErrorPage::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The machine-readable `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            ErrorPage::UnknownHost { .. } => "unknown_host",
            ErrorPage::NotFound => "not_found",
            ErrorPage::Ambiguous { .. } => "agent_required",
            ErrorPage::Unauthenticated { .. } | ErrorPage::SigninAgain { .. } => "unauthenticated",
            ErrorPage::AgentOffline { .. } => "workspace_offline",
            ErrorPage::PortClosed { .. } => "port_closed",
            ErrorPage::PortNotAllowed { .. } => "port_not_allowed",
            ErrorPage::UpstreamTimeout { .. } => "upstream_timeout",
            ErrorPage::UpstreamFailed { .. } => "upstream_error",
            ErrorPage::BadRequest { .. } => "bad_request",
            ErrorPage::CrossOrigin { .. } => "cross_origin_refused",
            ErrorPage::AgentBusy { .. } => "agent_busy",
            ErrorPage::Loop { .. } => "loop_detected",
            ErrorPage::AgentToken => "invalid_token",
            ErrorPage::NoApiHere => "not_found",
            ErrorPage::RateLimited { .. } => "rate_limited",
        }
    }

    /// The human-readable `message` field: what went wrong and what to do.
    pub fn message(&self) -> String {
        let text = self.text();
        match text.hint {
            Some(hint) => format!("{} {hint}", text.explanation),
            None => text.explanation,
        }
    }

    fn text(&self) -> Text {
        let (title, explanation, hint) = match self {
            ErrorPage::UnknownHost { reason } => (
                "Unknown app host",
                sentence(reason),
                Some(
                    "App hosts look like {port}--{agent}--{workspace}--{user} under this \
                     edge's domain; check the address."
                        .to_string(),
                ),
            ),
            ErrorPage::NotFound => (
                "Not found",
                "Not found, or not shared with you.".to_string(),
                Some(
                    "If you expected to see this app, ask the workspace owner to share it \
                     with you."
                        .to_string(),
                ),
            ),
            ErrorPage::Ambiguous { agents } => {
                let list = if agents.is_empty() {
                    "several agents".to_string()
                } else {
                    let quoted: Vec<String> = agents.iter().map(|a| format!("'{a}'")).collect();
                    format!("several agents ({})", quoted.join(", "))
                };
                let example = agents.first().map(String::as_str).unwrap_or("{agent}");
                (
                    "Agent required",
                    format!(
                        "This workspace has {list}, so the short form \
                         {{port}}--{{workspace}}--{{user}} does not say which one to use."
                    ),
                    Some(format!(
                        "Name the agent with the full form {{port}}--{{agent}}--{{workspace}}--{{user}}, \
                         for example {{port}}--{example}--{{workspace}}--{{user}}."
                    )),
                )
            }
            // The caller says what is needed (a token, an expired share link...).
            ErrorPage::Unauthenticated { reason } => ("Sign-in required", sentence(reason), None),
            ErrorPage::SigninAgain { reason, .. } => (
                "Sign-in not completed",
                sentence(reason),
                Some("Open the app again to sign in.".to_string()),
            ),
            ErrorPage::AgentOffline { agent, workspace } => (
                "Workspace offline",
                format!(
                    "The agent '{agent}' of workspace '{workspace}' is not connected to berth."
                ),
                Some(format!(
                    "Start the workspace, or run `berth agent` inside it; this page retries \
                     every {OFFLINE_RETRY_SECS} seconds."
                )),
            ),
            ErrorPage::PortClosed { port } => (
                "Nothing on this port",
                format!("Nothing is listening on port {port} in the workspace."),
                Some(format!(
                    "Start your server on port {port} (listening on localhost is enough); \
                     this page retries every 2 seconds."
                )),
            ),
            ErrorPage::PortNotAllowed { port } => (
                "Port not allowed",
                format!("The workspace's agent does not allow port {port} to be forwarded."),
                Some(
                    "The agent was started with --allow-ports, which leaves this port out; \
                     restart it with the port included."
                        .to_string(),
                ),
            ),
            ErrorPage::UpstreamTimeout { seconds } => (
                "App timed out",
                format!("The app did not answer within {seconds} seconds."),
                Some("Check that your server is not stuck, then try again.".to_string()),
            ),
            ErrorPage::UpstreamFailed { detail, .. } => (
                "App error",
                format!(
                    "berth could not get an answer from the app: {}",
                    sentence(detail)
                ),
                Some("Check the app's logs in the workspace, then try again.".to_string()),
            ),
            ErrorPage::BadRequest { reason } => ("Bad request", sentence(reason), None),
            ErrorPage::CrossOrigin { request, refusal } => {
                let why = match refusal {
                    Refusal::CrossOrigin { origin } => format!(
                        "it comes from {origin}, which is neither this app nor another app \
                         of the same owner"
                    ),
                    Refusal::NullOrigin => "its Origin is null (a sandboxed frame, a redirect \
                                            from another site, or a referrer policy), so berth \
                                            cannot tell that it comes from this app"
                        .to_string(),
                    Refusal::Malformed => "its Origin header is not a valid origin".to_string(),
                    Refusal::NoOrigin { site: Some(site) } => format!(
                        "it has no Origin header and the browser says it comes from \
                         elsewhere (Sec-Fetch-Site: {site})"
                    ),
                    Refusal::NoOrigin { site: None } => "it has no Origin header, so berth \
                                                         cannot tell that it comes from this \
                                                         app's own pages"
                        .to_string(),
                };
                (
                    "Cross-origin request refused",
                    format!(
                        "berth refused this {request}: it is signed in with a berth cookie, \
                         and {why}."
                    ),
                    Some(
                        "With a cookie, only this app's own pages and the other apps of its \
                         owner may send writes and open WebSockets here; a program should send \
                         an API token instead (Authorization: Bearer <token>)."
                            .to_string(),
                    ),
                )
            }
            ErrorPage::RateLimited { retry_after_secs } => (
                "Too many requests",
                "Your address sent more requests to this shared app than berth lets one \
                 address send (sharing.public_rate_limit)."
                    .to_string(),
                Some(format!(
                    "Try again in {retry_after_secs} s; a signed-in user or an API token is \
                     not limited this way."
                )),
            ),
            ErrorPage::AgentBusy { limit } => (
                "Too many requests in flight",
                format!(
                    "This workspace's agent already has {limit} requests or connections in \
                     flight through berth, the most it may have at once."
                ),
                Some(format!(
                    "Try again in a moment. If the app leaves requests unanswered, fix that \
                     (they end after limits.upstream_timeout_secs); an operator can raise \
                     limits.max_streams_per_agent (now {limit})."
                )),
            ),
            ErrorPage::AgentToken => (
                "Agent not recognized",
                "The agent token is missing, malformed, or unknown.".to_string(),
                Some(
                    "Give `berth agent` the token printed when the agent was created \
                     (--token-file), or create the agent again."
                        .to_string(),
                ),
            ),
            ErrorPage::NoApiHere => (
                "Not found",
                "This edge serves apps only; the API is on the control plane.".to_string(),
                None,
            ),
            ErrorPage::Loop { port } => (
                "Request loop",
                format!(
                    "Port {port} in the workspace leads back to berth itself (berth's own \
                     listener, or a proxy in front of it), so this request kept coming back \
                     instead of reaching an app."
                ),
                Some(format!(
                    "Use the port your app listens on instead of {port}; if the app proxies \
                     to another berth address, make sure it is not its own."
                )),
            ),
        };
        Text {
            title,
            explanation,
            hint,
        }
    }
}

/// Makes `s` end like a sentence.
fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        "No further detail.".to_string()
    } else if s.ends_with(['.', '!', '?']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// True when the client takes HTML (a browser): an `Accept` media range of
/// `text/html` without `q=0`.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            media.eq_ignore_ascii_case("text/html")
                && !params.any(|p| {
                    p.split_once('=').is_some_and(|(k, v)| {
                        k.trim().eq_ignore_ascii_case("q")
                            && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                    })
                })
        })
}

const STYLE: &str = "\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;\
background:#f6f7f9;color:#1f2328}\
main{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;\
border:1px solid #d8dee4;border-radius:8px}\
h1{margin:0 0 .75rem;font-size:1.35rem}\
p{margin:.5rem 0}\
.code{color:#656d76;font:13px ui-monospace,SFMono-Regular,Menlo,monospace}\
.hint{color:#424a53}\
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}\
main{background:#161b22;border-color:#30363d}.hint{color:#c9d1d9}.code{color:#8b949e}}";

fn html_page(page: &ErrorPage) -> String {
    let text = page.text();
    // Pages about something the developer is fixing reload by themselves.
    let refresh = match page {
        ErrorPage::PortClosed { .. } => "<meta http-equiv=\"refresh\" content=\"2\">\n".to_owned(),
        ErrorPage::AgentOffline { .. } => {
            format!("<meta http-equiv=\"refresh\" content=\"{OFFLINE_RETRY_SECS}\">\n")
        }
        _ => String::new(),
    };
    let hint = match (page, text.hint) {
        (ErrorPage::SigninAgain { retry, .. }, _) => format!(
            "<p class=\"hint\"><a href=\"{}\">Sign in again</a> to open the app.</p>\n",
            escape_html(retry)
        ),
        (_, Some(h)) => format!("<p class=\"hint\">{}</p>\n", escape_html(&h)),
        (_, None) => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n\
         {refresh}<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n<p>{explanation}</p>\n{hint}\
         <p class=\"code\">{status} · {code} · berth</p>\n</main>\n</body>\n</html>\n",
        title = escape_html(text.title),
        explanation = escape_html(&text.explanation),
        status = page.status().as_u16(),
        code = page.code(),
    )
}

fn json_body(page: &ErrorPage) -> String {
    serde_json::json!({ "error": page.code(), "message": page.message() }).to_string()
}

/// The response for `page`: an HTML page when `html`, else JSON.
pub fn render(page: &ErrorPage, html: bool) -> Response<Body> {
    let (body, content_type) = if html {
        (html_page(page), "text/html; charset=utf-8")
    } else {
        (json_body(page), "application/json")
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = page.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if matches!(
        page,
        ErrorPage::Unauthenticated { .. } | ErrorPage::SigninAgain { .. } | ErrorPage::AgentToken
    ) {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"berth\""),
        );
    }
    if matches!(page, ErrorPage::AgentBusy { .. }) {
        headers.insert(http::header::RETRY_AFTER, BUSY_RETRY_AFTER_SECS.into());
    }
    if let ErrorPage::RateLimited { retry_after_secs } = page {
        headers.insert(http::header::RETRY_AFTER, (*retry_after_secs).into());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn all() -> Vec<(ErrorPage, u16, &'static str)> {
        vec![
            (
                ErrorPage::UnknownHost {
                    reason: "The host 'x' is not under this edge's domain.".into(),
                },
                404,
                "unknown_host",
            ),
            (ErrorPage::NotFound, 404, "not_found"),
            (
                ErrorPage::Ambiguous {
                    agents: vec!["main".into(), "gpu".into()],
                },
                404,
                "agent_required",
            ),
            (
                ErrorPage::Unauthenticated {
                    reason: "this app needs a berth API token".into(),
                },
                401,
                "unauthenticated",
            ),
            (
                ErrorPage::AgentOffline {
                    agent: "main".into(),
                    workspace: "dev".into(),
                },
                502,
                "workspace_offline",
            ),
            (
                ErrorPage::SigninAgain {
                    reason: "not started in this browser".into(),
                    retry: "/page?x=1".into(),
                },
                401,
                "unauthenticated",
            ),
            (ErrorPage::PortClosed { port: 3000 }, 502, "port_closed"),
            (
                ErrorPage::PortNotAllowed { port: 22 },
                403,
                "port_not_allowed",
            ),
            (
                ErrorPage::UpstreamTimeout { seconds: 30 },
                504,
                "upstream_timeout",
            ),
            (
                ErrorPage::UpstreamFailed {
                    fault: Fault::App,
                    detail: "connection reset".into(),
                },
                502,
                "upstream_error",
            ),
            (
                ErrorPage::BadRequest {
                    reason: "bad path".into(),
                },
                400,
                "bad_request",
            ),
            (
                ErrorPage::CrossOrigin {
                    request: "POST request".into(),
                    refusal: Refusal::CrossOrigin {
                        origin: "https://5173--main--dev--carol.apps.x".into(),
                    },
                },
                403,
                "cross_origin_refused",
            ),
            (
                ErrorPage::CrossOrigin {
                    request: "WebSocket upgrade".into(),
                    refusal: Refusal::NoOrigin { site: None },
                },
                403,
                "cross_origin_refused",
            ),
            (ErrorPage::AgentBusy { limit: 1000 }, 503, "agent_busy"),
            (ErrorPage::Loop { port: 8443 }, 508, "loop_detected"),
            (ErrorPage::AgentToken, 401, "invalid_token"),
            (ErrorPage::NoApiHere, 404, "not_found"),
        ]
    }

    async fn body_of(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn status_and_code_per_variant() {
        for (page, status, code) in all() {
            assert_eq!(page.status().as_u16(), status, "{page:?}");
            assert_eq!(page.code(), code, "{page:?}");
            let message = page.message();
            assert!(message.ends_with('.'), "{message}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let m = ErrorPage::NotFound.message();
        assert!(m.starts_with("Not found, or not shared with you."), "{m}");
        assert!(m.contains("ask the workspace owner to share it"), "{m}");
        let m = ErrorPage::PortClosed { port: 3000 }.message();
        assert!(m.contains("Nothing is listening on port 3000"), "{m}");
        let m = ErrorPage::Ambiguous {
            agents: vec!["main".into(), "gpu".into()],
        }
        .message();
        assert!(m.contains("'main', 'gpu'"), "{m}");
        assert!(m.contains("{port}--main--{workspace}--{user}"), "{m}");
        let m = ErrorPage::AgentOffline {
            agent: "main".into(),
            workspace: "dev".into(),
        }
        .message();
        assert!(m.contains("'main'") && m.contains("'dev'") && m.contains("berth agent"));
        let m = ErrorPage::PortNotAllowed { port: 22 }.message();
        assert!(m.contains("port 22") && m.contains("--allow-ports"), "{m}");
        let m = ErrorPage::UpstreamTimeout { seconds: 30 }.message();
        assert!(m.contains("30 seconds"), "{m}");
        let m = ErrorPage::CrossOrigin {
            request: "WebSocket upgrade".into(),
            refusal: Refusal::CrossOrigin {
                origin: "https://5173--main--dev--carol.apps.x".into(),
            },
        }
        .message();
        assert!(
            m.starts_with("berth refused this WebSocket upgrade: it is signed in with a berth cookie, and it comes from https://5173--main--dev--carol.apps.x, which is neither this app nor another app of the same owner."),
            "{m}"
        );
        assert!(m.contains("API token"), "{m}");
        for (refusal, says) in [
            (Refusal::NullOrigin, "Origin is null"),
            (Refusal::Malformed, "not a valid origin"),
            (
                Refusal::NoOrigin {
                    site: Some("cross-site".into()),
                },
                "Sec-Fetch-Site: cross-site",
            ),
            (Refusal::NoOrigin { site: None }, "no Origin header"),
        ] {
            let m = ErrorPage::CrossOrigin {
                request: "POST request".into(),
                refusal,
            }
            .message();
            assert!(m.contains(says), "{m}");
        }
        assert_eq!(
            ErrorPage::BadRequest { reason: "".into() }.message(),
            "No further detail."
        );
        let m = ErrorPage::AgentBusy { limit: 8 }.message();
        assert!(
            m.contains("8 requests") && m.contains("max_streams_per_agent"),
            "{m}"
        );
        let m = ErrorPage::Loop { port: 8443 }.message();
        assert!(
            m.contains("8443") && m.contains("leads back to berth"),
            "{m}"
        );
    }

    #[test]
    fn every_page_names_whose_fault_it_is() {
        use Fault::*;
        let table = [
            (ErrorPage::NotFound, Client),
            (ErrorPage::unauthenticated(Missing::BadToken), Client),
            (ErrorPage::BadRequest { reason: "x".into() }, Client),
            (ErrorPage::AgentToken, Client),
            (
                ErrorPage::AgentOffline {
                    agent: "a".into(),
                    workspace: "w".into(),
                },
                Tunnel,
            ),
            (ErrorPage::PortNotAllowed { port: 22 }, Tunnel),
            (ErrorPage::PortClosed { port: 3000 }, App),
            (ErrorPage::UpstreamTimeout { seconds: 1 }, App),
            (
                ErrorPage::UpstreamFailed {
                    fault: Tunnel,
                    detail: "x".into(),
                },
                Tunnel,
            ),
            (
                ErrorPage::UpstreamFailed {
                    fault: Berth,
                    detail: "x".into(),
                },
                Berth,
            ),
            (ErrorPage::AgentBusy { limit: 1 }, Berth),
            (ErrorPage::Loop { port: 1 }, Berth),
        ];
        for (page, fault) in table {
            assert_eq!(page.fault(), fault, "{page:?}");
        }
    }

    #[test]
    fn unauthenticated_says_what_is_missing() {
        for (missing, says) in [
            (Missing::ExpiredLink, "share link has expired"),
            (Missing::BadToken, "token is not valid"),
            (
                Missing::Nothing,
                "Authorization: Bearer <token> or Berth-Token: <token>",
            ),
        ] {
            let page = ErrorPage::unauthenticated(missing);
            assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
            assert!(page.message().contains(says), "{}", page.message());
        }
    }

    #[test]
    fn a_busy_agent_says_when_to_retry() {
        let r = render(&ErrorPage::AgentBusy { limit: 8 }, false);
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "1");
        let r = render(&ErrorPage::Loop { port: 1 }, false);
        assert!(r.headers().get(http::header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn json_bodies() {
        for (page, status, code) in all() {
            let response = render(&page, false);
            assert_eq!(response.status().as_u16(), status);
            let h = response.headers();
            assert_eq!(h[CONTENT_TYPE], "application/json");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            let v: serde_json::Value = serde_json::from_str(&body_of(response).await).unwrap();
            assert_eq!(v["error"], code);
            assert_eq!(v["message"], page.message());
            assert_eq!(v.as_object().unwrap().len(), 2);
        }
    }

    #[tokio::test]
    async fn html_bodies() {
        for (page, status, code) in all() {
            let response = render(&page, true);
            assert_eq!(response.status().as_u16(), status);
            let h = response.headers();
            assert_eq!(h[CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(h[CACHE_CONTROL], "no-store");
            let body = body_of(response).await;
            assert!(body.starts_with("<!doctype html>"));
            assert!(body.contains("<title>"));
            assert!(body.contains(code));
            if !matches!(page, ErrorPage::CrossOrigin { .. }) {
                // Only the refused origin, quoted as text, may look like a URL.
                assert!(!body.contains("http://") && !body.contains("https://"));
            }
            assert!(!body.contains("<script"), "no JS needed");
            let refresh = match page {
                ErrorPage::PortClosed { .. } => Some("2"),
                ErrorPage::AgentOffline { .. } => Some("5"),
                _ => None,
            };
            for secs in ["2", "5"] {
                let found = body.contains(&format!("http-equiv=\"refresh\" content=\"{secs}\""));
                assert_eq!(found, refresh == Some(secs), "{code}: refresh {secs}");
            }
            if let Some(secs) = refresh {
                assert!(
                    body.contains(&format!("retries every {secs} seconds")),
                    "{body}"
                );
            }
        }
    }

    #[tokio::test]
    async fn html_escapes_interpolated_text() {
        let evil = "<script>alert('x')</script> & \"q\"";
        let pages = [
            ErrorPage::UnknownHost {
                reason: evil.into(),
            },
            ErrorPage::Unauthenticated {
                reason: evil.into(),
            },
            ErrorPage::UpstreamFailed {
                fault: Fault::Tunnel,
                detail: evil.into(),
            },
            ErrorPage::BadRequest {
                reason: evil.into(),
            },
            ErrorPage::SigninAgain {
                reason: evil.into(),
                retry: "/".into(),
            },
            ErrorPage::AgentOffline {
                agent: evil.into(),
                workspace: evil.into(),
            },
            ErrorPage::Ambiguous {
                agents: vec![evil.into()],
            },
        ];
        for page in pages {
            let body = body_of(render(&page, true)).await;
            assert!(!body.contains("<script"), "{body}");
            assert!(body
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"));
            // JSON carries the text as is (it is data, not markup).
            let v: serde_json::Value =
                serde_json::from_str(&body_of(render(&page, false)).await).unwrap();
            assert!(v["message"].as_str().unwrap().contains(evil));
        }
    }

    #[test]
    fn unauthenticated_names_the_scheme() {
        let response = render(&ErrorPage::Unauthenticated { reason: "x".into() }, false);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"berth\""
        );
        let response = render(&ErrorPage::NotFound, false);
        assert!(!response.headers().contains_key(WWW_AUTHENTICATE));
    }

    #[tokio::test]
    async fn a_refused_sign_in_offers_to_start_again_on_this_host() {
        let page = ErrorPage::SigninAgain {
            reason: "not started in this browser".into(),
            retry: "/a?b=1&c=\"><script>".into(),
        };
        let body = body_of(render(&page, true)).await;
        assert!(
            body.contains("<a href=\"/a?b=1&amp;c=&quot;&gt;&lt;script&gt;\">Sign in again</a>"),
            "{body}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&body_of(render(&page, false)).await).unwrap();
        assert_eq!(v["error"], "unauthenticated");
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("Open the app again"));
    }

    #[test]
    fn wants_html_for_browsers_only() {
        let accept = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(ACCEPT, HeaderValue::from_str(v).unwrap());
            }
            wants_html(&h)
        };
        // Firefox, Chrome, Safari navigations.
        assert!(accept(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ]));
        assert!(accept(&["text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"]));
        assert!(accept(&["TEXT/HTML"]));
        assert!(accept(&["application/json", "text/html;q=0.5"]));
        assert!(accept(&["application/json, text/html ; q=0.1"]));
        // curl, fetch(), programs.
        assert!(!accept(&[]));
        assert!(!accept(&["*/*"]));
        assert!(!accept(&["application/json"]));
        assert!(!accept(&["application/json, text/plain, */*"]));
        assert!(!accept(&["text/html;q=0"]));
        assert!(!accept(&["text/html; q=0.0, application/json"]));
        assert!(!accept(&["text/htmlx"]));
    }
}
