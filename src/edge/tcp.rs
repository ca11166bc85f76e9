//! `berth port-forward`'s edge half: a raw TCP stream to a workspace port,
//! carried in an HTTP/1.1 upgrade on the port's own app host.
//!
//! The client sends `GET /` with `Connection: upgrade`, `Upgrade: berth-tcp`
//! and its API token to `https://PORT--AGENT--WS--USER.<wildcard>`. The
//! proxy authorizes it exactly as any request to that host (same decision,
//! same share rules, relayed to the holder of the tunnel like any request)
//! and only then hands it here: this module opens a tunnel stream to the
//! port (a closed port is a 502 page, before anything is switched), answers
//! `101 Switching Protocols` and splices the upgraded connection into the
//! stream. The connection counts against `limits.max_streams_per_agent`,
//! keeps the port active while open, is bounded by
//! `limits.client_write_timeout_secs` like a WebSocket, and is closed by
//! [`super::revocation`] when the access that let it in ends.
//!
//! With `Berth-Tcp-Probe: 1` the edge answers `204` once the request is
//! authorized and the agent reachable, without opening anything: the CLI
//! checks access before it listens.

use super::admit::{Pass, Who};
use super::connector::Via;
use super::pages::{ErrorPage, Fault};
use super::revocation::Admitted;
use super::Edge;
use crate::auth::origin::Credential;
use crate::protocol::tcp::{PROBE_HEADER, UPGRADE};
use crate::tunnel::edge::OpenError;
use crate::tunnel::Refusal;
use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// Whether `req` asks for a raw TCP stream (`Upgrade: berth-tcp` on an
/// HTTP/1.1 `GET`, with `Connection: upgrade`) or probes for one.
pub(super) fn wanted(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11 && req.method() == Method::GET && asks(req.headers())
}

fn asks(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, UPGRADE)
}

/// Who may open a raw TCP stream, once the port's own rule let them in: a
/// program's credential (an API token or a share link in a header) or an
/// anonymous visitor of a public port. Never a browser cookie: a cookie's
/// authority stays with the browser's own requests to the app (browsers
/// cannot send this upgrade, and the edge does not rely on that).
pub(super) fn admit(credential: Credential) -> Result<(), ErrorPage> {
    match credential {
        Credential::ApiToken | Credential::Anonymous => Ok(()),
        Credential::AppCookie | Credential::ShareCookie => Err(ErrorPage::Unauthenticated {
            reason:
                "A TCP port-forward needs a berth API token (`berth login`), not a browser cookie"
                    .into(),
        }),
    }
}

/// Answers an authorized port-forward request: `204` for a probe, else the
/// `101` whose connection is spliced into a tunnel stream to the port
/// (`via`: this server's tunnel or a relay, as for any request).
pub(super) async fn forward(
    edge: &Edge,
    mut req: Request<Incoming>,
    who: &Who,
    pass: &Pass,
    via: Via,
) -> Result<Response<Body>, ErrorPage> {
    admit(pass.credential)?;
    if req.headers().contains_key(PROBE_HEADER) {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        return Ok(res);
    }
    let (agent_id, port) = (pass.agent_id, pass.port);
    // What let it through, taken again while the stream stays open.
    let admitted = Admitted::new(
        who.visitor.as_ref(),
        who.token,
        who.session.clone(),
        who.link.as_ref().map(|l| l.id.clone()),
        agent_id,
        port,
    );
    let permit = edge.streams.acquire(agent_id)?;
    // In a task of its own, like the pooled connector's: a client that goes
    // away mid-open must not reset the CONNECT (h2's rapid-reset defence
    // would count it against the whole tunnel or relay link).
    let (tunnels, relay) = (edge.tunnels.clone(), edge.relay.clone());
    let open = tokio::spawn(async move {
        match via {
            Via::Tunnel(generation) => tunnels.open(agent_id, generation, port).await,
            Via::Relay(id) => {
                let holder = relay.holder_url(id).ok_or(OpenError::Offline)?;
                relay.open(&holder, agent_id, port).await
            }
        }
    });
    let open = async {
        open.await
            .map_err(|e| OpenError::Tunnel(format!("opening the stream failed: {e}")))?
    };
    let stream = match tokio::time::timeout(edge.limits.upstream_timeout, open).await {
        Err(_) => {
            return Err(ErrorPage::UpstreamTimeout {
                seconds: edge.limits.upstream_timeout.as_secs(),
            })
        }
        Ok(Err(e)) => return Err(open_failed(e)),
        Ok(Ok(stream)) => stream,
    };
    let client = hyper::upgrade::on(&mut req);
    let hold = edge.revocation.hold(admitted);
    let stall = Some(edge.limits.client_write_timeout);
    // Active while it lasts, like a WebSocket.
    let active = edge.activity.begin(agent_id, port);
    tokio::spawn(async move {
        let (_permit, _active) = (permit, active);
        let Ok(client) = client.await else { return };
        hold.splice(TokioIo::new(client), TokioIo::new(stream), stall)
            .await;
    });
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
    Ok(res)
}

/// The page for a tunnel stream that could not be opened.
fn open_failed(e: OpenError) -> ErrorPage {
    match e {
        OpenError::Offline => ErrorPage::UpstreamFailed {
            fault: Fault::Tunnel,
            detail: "the agent disconnected".into(),
        },
        OpenError::Refused { port, refusal } => match refusal {
            Refusal::NotAllowed => ErrorPage::PortNotAllowed { port },
            Refusal::Loop => ErrorPage::Loop { port },
            Refusal::Refused | Refusal::Timeout | Refusal::Unreachable => {
                ErrorPage::PortClosed { port }
            }
        },
        OpenError::Tunnel(detail) => ErrorPage::UpstreamFailed {
            fault: Fault::Tunnel,
            detail: format!("the tunnel failed: {detail}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_programs_and_public_visitors_open_tcp_streams() {
        for (credential, ok) in [
            (Credential::ApiToken, true),
            (Credential::Anonymous, true),
            (Credential::AppCookie, false),
            (Credential::ShareCookie, false),
        ] {
            assert_eq!(admit(credential).is_ok(), ok, "{credential:?}");
        }
        let Err(page) = admit(Credential::AppCookie) else {
            unreachable!()
        };
        assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
        assert!(page.message().contains("API token"), "{}", page.message());
    }

    #[test]
    fn the_upgrade_is_recognised_only_when_asked_for() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        assert!(asks(&h(&[
            ("connection", "Upgrade"),
            ("upgrade", "berth-tcp")
        ])));
        assert!(asks(&h(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "h2c, BERTH-TCP")
        ])));
        assert!(!asks(&h(&[("upgrade", "berth-tcp")])), "no Connection");
        assert!(!asks(&h(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!asks(&h(&[
            ("connection", "upgrade"),
            ("upgrade", "berth-tcpx")
        ])));
        assert!(!asks(&h(&[
            ("connection", "close"),
            ("upgrade", "berth-tcp")
        ])));
        assert!(!asks(&h(&[])));
    }
}
