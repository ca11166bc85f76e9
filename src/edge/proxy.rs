//! One app-host request, in phases: parse the host, authenticate, resolve the
//! target, authorize, pick the tunnel, forward, log. Each decision is a pure
//! function elsewhere ([`crate::host`], [`crate::auth`], [`super::headers`]);
//! this file only strings them together and does the I/O.

use super::connector::{self, ConnectError};
use super::cors;
use super::pages::{self, ErrorPage};
use super::revocation::Admitted;
use super::{body::Counted, headers, relay, request_host, Edge};
use crate::auth::{self, cookie, Decision, ShareLevel, TokenHash};
use crate::catalog::{Change, Cors, Protocol, Resolved};
use crate::host::{self, Service};
use crate::telemetry::DirectionLabel;
use crate::tunnel::edge::OpenError;
use crate::tunnel::Refusal;
use axum::body::Body;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Instant;

/// Proxies one request to an app host; never fails: errors become pages.
pub async fn proxy(edge: &Edge, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let version = req.version();
    let host_log = request_host(&req).unwrap_or("").to_owned();
    let path_log = req.uri().path().to_owned();
    let html = pages::wants_html(req.headers());
    let res = match forward(edge, req, peer).await {
        Ok(res) => res,
        Err(page) => pages::render(&page, html),
    };
    edge.metrics.count(res.status());
    tracing::info!(
        target: "berth::access",
        %method,
        host = %host_log,
        path = %path_log,
        status = res.status().as_u16(),
        ms = started.elapsed().as_micros() as f64 / 1000.0,
        version = ?version,
        peer = %peer.ip(),
    );
    res
}

async fn forward(
    edge: &Edge,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, ErrorPage> {
    // Phase 1: which app does the host name?
    let host_header = request_host(&req)
        .ok_or_else(|| ErrorPage::BadRequest {
            reason: "the request has no Host header".into(),
        })?
        .to_owned();
    let target =
        host::parse_host(&host_header, &edge.wildcard).map_err(|e| ErrorPage::UnknownHost {
            reason: e.to_string(),
        })?;
    if req.uri().path() == CALLBACK_PATH {
        return signin_callback(edge, &req, &host_header).await;
    }
    if req.uri().path().starts_with("/_berth/") {
        return Err(ErrorPage::NotFound);
    }

    // Phase 2: who is asking? A user by API token, and/or a visitor holding
    // a share link's cookie for this very host.
    let token = headers::api_token(req.headers());
    let now = unix_now();
    let bare = super::bare_host(&host_header).to_owned();
    let find_cookie = |name: &str| {
        req.headers()
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| cookie::find(c, name))
            .map(str::to_owned)
    };
    let token_hash = token.map(TokenHash::of);
    let mut session_id = None;
    let visitor = match &token_hash {
        Some(hash) => edge.catalog.visitor_for_token(hash),
        None => find_cookie(cookie::APP_COOKIE).and_then(|value| {
            let id = edge
                .signin
                .key
                .verify(cookie::Purpose::Session, &value, &bare, now)
                .ok()?;
            let visitor = edge.catalog.visitor_for_session(&id, now).map(|(v, _)| v);
            session_id = Some(id);
            visitor
        }),
    };
    let share_cookie = find_cookie(cookie::SHARE_COOKIE);
    let link = share_cookie.as_deref().and_then(|value| {
        let id = edge
            .signin
            .key
            .verify(cookie::Purpose::Share, value, &bare, now)
            .ok()?;
        edge.catalog.live_link(&id, now)
    });
    let link_grant = link.as_ref().map(|l| auth::LinkGrant {
        agent_id: l.agent_id,
        port: l.port,
    });

    // Phase 3: does it exist, and may they see it? (Both answers look alike.)
    let route = route(edge, &target);

    // A share link being redeemed: set the cookie, drop the token from the URL.
    if let Some(link_token) = headers::share_param(req.uri().query().unwrap_or("")) {
        return redeem(edge, &route, link_token, &bare, req.uri(), now, peer.ip()).await;
    }

    // CORS between one owner's apps: the edge answers preflights itself
    // (browsers send no credentials with them) and marks allowed responses,
    // unless the share hands CORS to the app (`passthru`): then preflights
    // go to the app unauthenticated, and the app's answers stand as they are.
    let passthru = route.cors() == Cors::Passthru;
    let preflight = cors::is_preflight(req.method(), req.headers());
    let same_owner_origin = !passthru
        && cors::origin_host(req.headers())
            .and_then(|o| host::parse_host(o, &edge.wildcard).ok())
            .is_some_and(|origin| origin.user == target.user);
    if preflight && !passthru {
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        *res.headers_mut() = cors::preflight_headers(req.headers(), same_owner_origin);
        return Ok(res);
    }
    let allowed_origin = same_owner_origin
        .then(|| req.headers().get(http::header::ORIGIN).cloned())
        .flatten();

    let access = route.access();
    let owner_org = access
        .and_then(|(owner_id, ..)| edge.catalog.user(owner_id))
        .and_then(|u| u.organization);
    let access = access.map(|(owner_id, agent_id, port, level)| auth::Target {
        agent_id,
        port,
        owner_id,
        owner_org: owner_org.as_deref(),
        level,
    });
    let decision = if preflight {
        // Only a passthru share gets here: its owner lets the app answer.
        Decision::Allow
    } else {
        auth::authorize(visitor.as_ref(), link_grant.as_ref(), access.as_ref())
    };
    match decision {
        Decision::Allow => {}
        Decision::Unauthenticated
            if token.is_none()
                && share_cookie.is_none()
                && pages::wants_html(req.headers())
                && matches!(*req.method(), Method::GET | Method::HEAD) =>
        {
            // A browser without a session: to the control plane's sign-in,
            // which sends it back here with a one-time code.
            let return_to = format!(
                "https://{host_header}{}",
                req.uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            let query = serde_urlencoded::to_string([("return_to", return_to.as_str())])
                .expect("strings always encode");
            return Ok(see_other(
                &format!("{}/signin?{query}", edge.signin.base_url),
                None,
            ));
        }
        Decision::Unauthenticated => {
            return Err(ErrorPage::Unauthenticated {
                reason: if share_cookie.is_some() && link.is_none() {
                    "This share link has expired or was revoked: ask the owner for a new one".into()
                } else if token.is_some() {
                    "The berth API token is not valid (revoked, or from another deployment)".into()
                } else {
                    "This app needs a berth API token: send Authorization: Bearer <token> or Berth-Token: <token>"
                        .into()
                },
            })
        }
        Decision::NotFound => return Err(ErrorPage::NotFound),
    }
    let (agent_id, port, tls) = match route {
        Route::Port {
            agent_id,
            port,
            tls,
            ..
        } => (agent_id, port, tls),
        Route::Ambiguous { agents, .. } => return Err(ErrorPage::Ambiguous { agents }),
        Route::Nothing => return Err(ErrorPage::NotFound),
    };
    // What let it through, to take the same decision again while an
    // upgraded connection or a long response stays open.
    let admitted = Admitted::new(
        visitor.as_ref(),
        token_hash,
        session_id,
        link.map(|l| l.id),
        agent_id,
        port,
    );

    // Phase 4: which way to the agent? Its tunnel here, or a relay to the
    // server that has it.
    let local = edge.tunnels.get(agent_id).map(|t| t.generation);
    let holders = match local {
        Some(_) => Vec::new(),
        None => edge.catalog.tunnels_at(agent_id),
    };
    let via = match relay::hop(local, &holders, &edge.relay.me) {
        relay::Hop::Local(generation) => connector::Via::Tunnel(generation),
        relay::Hop::Relay(holder) => connector::Via::Relay(edge.relay.holder_id(holder)),
        relay::Hop::Offline => {
            let agent = edge
                .catalog
                .agent(agent_id)
                .map(|a| a.name)
                .unwrap_or_default();
            return Err(ErrorPage::AgentOffline {
                agent,
                workspace: target.workspace.clone(),
            });
        }
    };

    // Phase 5: forward. An HTTP/1.1 upgrade passes through as it is; a
    // WebSocket over HTTP/2 (RFC 8441 extended CONNECT) becomes an HTTP/1.1
    // upgrade towards the app, and its 101 becomes the client's 200.
    let h2_websocket = headers::is_h2_websocket(&req);
    let upgrade =
        h2_websocket || (req.version() <= Version::HTTP_11 && headers::is_upgrade(req.headers()));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let host_only = host_header.clone();
    let (mut parts, body) = req.into_parts();
    headers::prepare_request(
        &mut parts.headers,
        &headers::Forwarded {
            client_ip: peer.ip(),
            host: super::bare_host(&host_only),
            host_header: &host_header,
            visitor: visitor.as_ref(),
            upgrade,
        },
    );
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let path = headers::strip_share_param(path);
    let scheme = if tls { "https" } else { "http" };
    parts.uri = Uri::try_from(format!(
        "{scheme}://{}{path}",
        connector::authority(agent_id, via, port)
    ))
    .map_err(|_| ErrorPage::BadRequest {
        reason: "the request target is not a valid path".into(),
    })?;
    parts.version = Version::HTTP_11;
    if h2_websocket {
        parts.method = Method::GET;
        headers::websocket_h2_to_h1(&mut parts.headers);
    } else if parts.method == Method::CONNECT {
        return Err(ErrorPage::BadRequest {
            reason: "CONNECT is not proxied to apps".into(),
        });
    }
    let body_in = Counted::new(
        body,
        edge.metrics
            .bytes
            .get_or_create(&DirectionLabel { direction: "in" })
            .clone(),
    );
    let up_req = Request::from_parts(parts, Body::new(body_in));

    let sent = Instant::now();
    let result =
        tokio::time::timeout(edge.limits.upstream_timeout, edge.client.request(up_req)).await;
    let mut res = match result {
        Err(_) => {
            return Err(ErrorPage::UpstreamTimeout {
                seconds: edge.limits.upstream_timeout.as_secs(),
            })
        }
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(res)) => res,
    };
    edge.metrics
        .upstream_seconds
        .observe(sent.elapsed().as_secs_f64());

    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ErrorPage::UpstreamFailed {
                detail: "the app switched protocols without being asked to".into(),
            });
        };
        let upstream_upgrade = hyper::upgrade::on(&mut res);
        let hold = edge.revocation.hold(admitted);
        tokio::spawn(async move {
            let (Ok(client), Ok(app)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            hold.splice(TokioIo::new(client), TokioIo::new(app)).await;
        });
        let (mut parts, _) = res.into_parts();
        headers::prepare_response(&mut parts.headers, true);
        if h2_websocket {
            parts.status = StatusCode::OK;
            headers::websocket_h1_to_h2(&mut parts.headers);
        }
        return Ok(Response::from_parts(parts, Body::empty()));
    }

    let (mut parts, body) = res.into_parts();
    headers::prepare_response(&mut parts.headers, false);
    if let Some(origin) = &allowed_origin {
        cors::allow_response(&mut parts.headers, origin);
    }
    let out = edge
        .metrics
        .bytes
        .get_or_create(&DirectionLabel { direction: "out" })
        .clone();
    let body = edge
        .revocation
        .body(Counted::new(body, out), admitted, &parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Redeems `?berth_share=TOKEN`: counts a use, sets the host-only visitor
/// cookie, and sends the browser to the same URL without the token.
async fn redeem(
    edge: &Edge,
    route: &Route,
    token: &str,
    host: &str,
    uri: &Uri,
    now: i64,
    source: std::net::IpAddr,
) -> Result<Response<Body>, ErrorPage> {
    let expired = || {
        ErrorPage::Unauthenticated {
        reason: "This share link has expired, was revoked, or has been used up: ask the owner for a new one".into(),
    }
    };
    let target = match route.access() {
        Some((_, agent_id, port, _)) if agent_id != 0 => (agent_id, port),
        _ => return Err(expired()),
    };
    let Some(link) = edge.control.redeem(TokenHash::of(token), now, source).await else {
        return Err(expired());
    };
    if (link.agent_id, link.port) != target {
        // A real link, but for another app: it opens nothing here.
        return Err(expired());
    }
    let value = edge
        .signin
        .key
        .sign(cookie::Purpose::Share, &link.id, host, link.expires_at);
    let path = headers::strip_share_param(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    Ok(see_other(
        &path,
        Some(cookie::set_cookie(
            cookie::SHARE_COOKIE,
            &value,
            link.expires_at - now,
        )),
    ))
}

/// Where the control plane sends a signed-in browser back with a code.
pub const CALLBACK_PATH: &str = "/_berth/auth/callback";

/// A `303 See Other` to `location`, optionally setting a cookie.
fn see_other(location: &str, set_cookie: Option<String>) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(http::header::LOCATION, location)
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::REFERRER_POLICY, "no-referrer");
    if let Some(c) = set_cookie {
        b = b.header(http::header::SET_COOKIE, c);
    }
    b.body(Body::empty()).unwrap_or_else(|_| {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r
    })
}

/// `/_berth/auth/callback?code=...&path=...`: exchanges the one-time code for
/// a host-only `berth_app` cookie that lasts as long as the session.
async fn signin_callback(
    edge: &Edge,
    req: &Request<Incoming>,
    host_header: &str,
) -> Result<Response<Body>, ErrorPage> {
    #[derive(serde::Deserialize)]
    struct Callback {
        code: String,
        #[serde(default)]
        path: Option<String>,
    }
    let refused = || ErrorPage::Unauthenticated {
        reason: "This sign-in link has expired or was already used: open the app again to sign in"
            .into(),
    };
    let cb: Callback =
        serde_urlencoded::from_str(req.uri().query().unwrap_or("")).map_err(|_| refused())?;
    let host = super::bare_host(host_header);
    let now = unix_now();
    let session = edge
        .control
        .take_code(cb.code, host.to_owned(), now)
        .await
        .ok_or_else(refused)?;
    // The session may not have reached a regional edge's catalog yet.
    edge.catalog.apply(Change::Session(session.clone()));
    let (_, session) = edge
        .catalog
        .visitor_for_session(&session.id, now)
        .ok_or_else(refused)?;
    let value = edge.signin.key.sign(
        cookie::Purpose::Session,
        &session.id,
        host,
        session.expires_at,
    );
    let path = cb
        .path
        .as_deref()
        .and_then(auth::signin::safe_path)
        .unwrap_or("/");
    Ok(see_other(
        path,
        Some(cookie::set_cookie(
            cookie::APP_COOKIE,
            &value,
            session.expires_at - now,
        )),
    ))
}

/// Where an app host leads, as far as the catalog knows.
enum Route {
    /// A port of a connected-or-not agent, with how it is shared.
    Port {
        owner_id: i64,
        agent_id: i64,
        port: u16,
        tls: bool,
        level: ShareLevel,
        cors: Cors,
    },
    /// The short form named a workspace with several agents.
    Ambiguous { owner_id: i64, agents: Vec<String> },
    /// Nothing by those names.
    Nothing,
}

impl Route {
    /// What the decision needs: owner, agent, port and share level. A
    /// workspace-wide answer (the list of agents) is the owner's business, and
    /// no link matches it (agent 0 does not exist).
    fn access(&self) -> Option<(i64, i64, u16, ShareLevel)> {
        match self {
            Route::Port {
                owner_id,
                agent_id,
                port,
                level,
                ..
            } => Some((*owner_id, *agent_id, *port, *level)),
            Route::Ambiguous { owner_id, .. } => Some((*owner_id, 0, 0, ShareLevel::Owner)),
            Route::Nothing => None,
        }
    }

    /// Who answers CORS: the app only when its share says `passthru`.
    fn cors(&self) -> Cors {
        match self {
            Route::Port { cors, .. } => *cors,
            _ => Cors::Berth,
        }
    }
}

/// Resolves a parsed app host to a port, its protocol and its share level.
fn route(edge: &Edge, target: &host::AppTarget) -> Route {
    let (owner_id, agent_id) =
        match edge
            .catalog
            .resolve(&target.user, &target.workspace, target.agent.as_deref())
        {
            Resolved::Agent { owner_id, agent_id } => (owner_id, agent_id),
            Resolved::Ambiguous { owner_id, agents } => {
                return Route::Ambiguous { owner_id, agents }
            }
            Resolved::Nothing => return Route::Nothing,
        };
    let (port, named_protocol) = match &target.service {
        Service::Port(p) => (*p, None),
        Service::App(name) => match edge.catalog.app(agent_id, name) {
            Some(app) => (app.port, Some(app.protocol)),
            None => return Route::Nothing,
        },
    };
    let share = edge.catalog.share(agent_id, port);
    // `{port}s` always means HTTPS; otherwise the app's or the share's protocol.
    let protocol = named_protocol
        .or(share.as_ref().map(|s| s.protocol))
        .unwrap_or_default();
    Route::Port {
        owner_id,
        agent_id,
        port,
        tls: target.tls || protocol == Protocol::Https,
        level: share.as_ref().map(|s| s.level).unwrap_or_default(),
        cors: share.map(|s| s.cors).unwrap_or_default(),
    }
}

/// Maps a failed upstream request to the page that explains it.
fn classify(err: &hyper_util::client::legacy::Error) -> ErrorPage {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(ce) = e.downcast_ref::<ConnectError>() {
            return match ce {
                ConnectError::Open(OpenError::Offline) => ErrorPage::UpstreamFailed {
                    detail: "the agent disconnected".into(),
                },
                ConnectError::Open(OpenError::Refused { port, refusal }) => match refusal {
                    Refusal::NotAllowed => ErrorPage::PortNotAllowed { port: *port },
                    Refusal::Refused | Refusal::Timeout | Refusal::Unreachable => {
                        ErrorPage::PortClosed { port: *port }
                    }
                },
                ConnectError::Open(OpenError::Tunnel(detail)) => ErrorPage::UpstreamFailed {
                    detail: format!("the tunnel failed: {detail}"),
                },
                ConnectError::AppTls(e) => ErrorPage::UpstreamFailed {
                    detail: format!("HTTPS to the app failed: {e}"),
                },
                ConnectError::BadAuthority(_) => ErrorPage::UpstreamFailed {
                    detail: "internal routing error".into(),
                },
            };
        }
        source = e.source();
    }
    ErrorPage::UpstreamFailed {
        detail: format!("the app did not answer: {err}"),
    }
}
