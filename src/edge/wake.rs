//! Wake on visit, the edge's half (control's is `control::wake`): when
//! control calls a wake webhook and someone who may wake it
//! ([`crate::auth::wake::may_wake`]) visits an app of an offline agent, the
//! edge asks control to wake the workspace (at most once per agent every
//! [`ASK_EVERY`] from this edge; control de-duplicates across edges) and
//! answers `503` with `Retry-After`: browsers get a page that follows the
//! start (waiting, agent connected, port listening) by polling the same URL
//! with `Berth-Wake: status`, and reloads into the app once the port
//! answers; programs get JSON.

use super::pages::wants_html;
use super::{relay, Edge};
use crate::auth::wake::may_wake;
use crate::auth::{LinkGrant, Target, Visitor};
use crate::catalog::Link;
use crate::html::escape_html;
use crate::protocol::edge_api::WakeRequest;
use axum::body::Body;
use dashmap::DashMap;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The request header of the waiting page's status polls.
pub const STATUS_HEADER: &str = "berth-wake";
/// What programs are told to wait before trying again (seconds).
pub const RETRY_AFTER_SECS: u64 = 5;
/// This edge asks control about one agent at most this often.
pub const ASK_EVERY: Duration = Duration::from_secs(5);
/// How long the status poll waits for the port to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Above this many remembered agents, old entries are dropped.
const MAX_REMEMBERED: usize = 10_000;

/// Whether wake on visit is on at this edge, and when it last asked.
#[derive(Debug, Default)]
pub struct Wake {
    enabled: bool,
    asked: DashMap<i64, Instant>,
}

impl Wake {
    /// On when control calls a wake webhook.
    pub fn new(enabled: bool) -> Wake {
        Wake {
            enabled,
            asked: DashMap::new(),
        }
    }

    /// True when this visit should ask control (not asked within
    /// [`ASK_EVERY`] for this agent); remembers it.
    fn should_ask(&self, agent_id: i64, now: Instant) -> bool {
        if self.asked.len() > MAX_REMEMBERED {
            self.asked
                .retain(|_, at| now.duration_since(*at) < ASK_EVERY);
        }
        let mut fresh = false;
        self.asked
            .entry(agent_id)
            .and_modify(|at| {
                if now.duration_since(*at) >= ASK_EVERY {
                    *at = now;
                    fresh = true;
                }
            })
            .or_insert_with(|| {
                fresh = true;
                now
            });
        fresh
    }
}

/// The admitted visit, as the proxy knows it.
pub(super) struct Visit<'a> {
    pub agent_id: i64,
    pub port: u16,
    pub visitor: Option<&'a Visitor>,
    pub link: Option<&'a Link>,
    pub target: Option<&'a Target<'a>>,
    pub workspace: &'a str,
    pub source: IpAddr,
}

/// The answer for an admitted request when wake on visit takes it: a status
/// poll, or a visit to an offline agent by someone who may wake it. `None`
/// (the proxy carries on) otherwise, and always when wake is off.
pub(super) async fn visit<B>(
    edge: &Edge,
    req: &Request<B>,
    v: &Visit<'_>,
) -> Option<Response<Body>> {
    if !edge.wake.enabled {
        return None;
    }
    if req.headers().contains_key(STATUS_HEADER) {
        return Some(status(edge, v.agent_id, v.port).await);
    }
    if edge.tunnels.get(v.agent_id).is_some() || !edge.catalog.tunnels_at(v.agent_id).is_empty() {
        return None;
    }
    let grant = v.link.map(|l| LinkGrant {
        agent_id: l.agent_id,
        port: l.port,
    });
    if !may_wake(v.visitor, grant.as_ref(), v.target) {
        return None;
    }
    if edge.wake.should_ask(v.agent_id, Instant::now()) {
        let ask = edge.control.wake(WakeRequest {
            agent_id: v.agent_id,
            port: v.port,
            user_id: v.visitor.map(|u| u.user_id),
            link_id: v.link.map(|l| l.id.clone()),
            source: v.source.to_string(),
        });
        tokio::spawn(async move {
            if let Some(answer) = ask.await {
                tracing::debug!(called = answer.called, "asked control to wake a workspace");
            }
        });
    }
    let browser = wants_html(req.headers()) && matches!(*req.method(), Method::GET | Method::HEAD);
    Some(waiting(v.workspace, v.port, browser))
}

/// `{"agent": "offline"|"connected", "port": "waiting"|"listening", "ready"}`:
/// the port is listening when a stream to it opens now.
async fn status(edge: &Edge, agent_id: i64, port: u16) -> Response<Body> {
    let local = edge.tunnels.get(agent_id).map(|t| t.generation);
    let holders = edge.catalog.tunnels_at(agent_id);
    let probe = async {
        match relay::hop(local, &holders, &edge.relay.me) {
            relay::Hop::Local(generation) => {
                edge.tunnels.open(agent_id, generation, port).await.is_ok()
            }
            relay::Hop::Relay(holder) => edge.relay.open(holder, agent_id, port).await.is_ok(),
            relay::Hop::Offline => false,
        }
    };
    let connected = local.is_some() || !holders.is_empty();
    let listening = connected
        && tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .unwrap_or(false);
    let body = serde_json::json!({
        "agent": if connected { "connected" } else { "offline" },
        "port": if listening { "listening" } else { "waiting" },
        "ready": listening,
    });
    respond(StatusCode::OK, "application/json", body.to_string(), false)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    retry: bool,
) -> Response<Body> {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if retry {
        h.insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    }
    res
}

/// The `503` while the workspace starts: the page for browsers, JSON for
/// programs.
fn waiting(workspace: &str, port: u16, browser: bool) -> Response<Body> {
    if !browser {
        let body = serde_json::json!({
            "error": "workspace_starting",
            "message": format!("workspace {workspace} is starting: try again in a few seconds (Retry-After)"),
        });
        return respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            body.to_string(),
            true,
        );
    }
    let page = PAGE
        .replace("{workspace}", &escape_html(workspace))
        .replace("{port}", &port.to_string());
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html; charset=utf-8",
        page,
        true,
    )
}

/// The waiting page: three steps, marked as the status polls report them.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Starting your workspace</title>
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f6f7f9;color:#1f2328}
main{max-width:34rem;margin:12vh auto;padding:2rem;background:#fff;border:1px solid #d8dee4;border-radius:8px}
h1{margin:0 0 .75rem;font-size:1.35rem}
ol{padding-left:1.2rem}li{margin:.3rem 0;color:#656d76}li.done{color:#1a7f37}li.now{color:#1f2328;font-weight:600}
.code{color:#656d76;font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}main{background:#161b22;border-color:#30363d}li.now{color:#e6edf3}}
</style>
</head>
<body>
<main>
<h1>Starting your workspace</h1>
<p>Workspace <b>{workspace}</b> was not running: berth asked for it to be started. This page opens the app by itself once it answers.</p>
<ol>
<li id="step-wait" class="now">Waiting for the workspace to start</li>
<li id="step-agent">Agent connected</li>
<li id="step-port">Port {port} listening</li>
</ol>
<p id="state" class="code">503 · workspace_starting · berth</p>
</main>
<script>
(function () {
  var mark = function (id, cls) { document.getElementById(id).className = cls; };
  function poll() {
    fetch(location.href, { headers: { "Berth-Wake": "status" }, cache: "no-store", credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        var agent = s.agent === "connected";
        mark("step-wait", agent ? "done" : "now");
        mark("step-agent", agent ? "done" : "");
        mark("step-port", s.ready ? "done" : (agent ? "now" : ""));
        document.getElementById("state").textContent = "agent " + s.agent + " · port " + s.port;
        if (s.ready) { location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 1000);
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ask_per_agent_every_few_seconds() {
        let w = Wake::new(true);
        let t0 = Instant::now();
        assert!(w.should_ask(1, t0));
        assert!(!w.should_ask(1, t0 + Duration::from_secs(1)));
        assert!(w.should_ask(2, t0 + Duration::from_secs(1)), "per agent");
        assert!(w.should_ask(1, t0 + ASK_EVERY));
    }

    #[test]
    fn programs_get_json_and_browsers_the_page_both_with_retry_after() {
        let r = waiting("<dev>", 3000, false);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = waiting("<dev>", 3000, true);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
}
