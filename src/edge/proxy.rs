//! One app-host request, in phases: parse the host, authenticate, resolve the
//! target, authorize, pick the tunnel, forward, log. Each decision is a pure
//! function elsewhere ([`crate::host`], [`crate::auth`], [`super::headers`]);
//! this file only strings them together and does the I/O.

use super::body::{Counted, Scrubbed};
use super::connector::{self, ConnectError};
use super::cors;
use super::pages::{self, ErrorPage};
use super::public_limit::Kind;
use super::revocation::Admitted;
use super::{framing, headers, paths, relay, request_host, see_other, signin, unix_now, Edge};
use crate::auth::origin::{self, Credential};
use crate::auth::{self, cookie, Decision, ShareLevel, TokenHash, TokenKind};
use crate::catalog::{Cors, Protocol, Resolved};
use crate::host::{self, Service};
use crate::telemetry::DirectionLabel;
use crate::tunnel::edge::OpenError;
use crate::tunnel::Refusal;
use axum::body::Body;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
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
    let mut tap = None;
    let answer = forward(edge, req, peer, &mut tap).await;
    let res = super::inspect::finish(tap, answer, html);
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
    tap: &mut Option<super::inspect::Tap>,
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
    framing::check_request(req.version(), req.method(), req.uri(), req.headers()).map_err(|e| {
        ErrorPage::BadRequest {
            reason: e.to_string(),
        }
    })?;
    if req.uri().path() == signin::CALLBACK_PATH {
        let host = super::bare_host(&host_header);
        return signin::callback(edge, req.uri(), req.headers(), host).await;
    }
    if req.uri().path() == signin::SIGNIN_PATH {
        let host = super::bare_host(&host_header);
        return Ok(signin::start(
            edge,
            req.uri(),
            req.headers(),
            host,
            &host_header,
        ));
    }
    if paths::is_edge_path(req.uri().path()) {
        return Err(ErrorPage::NotFound);
    }

    // Phase 2: who is asking? A user by API token, and/or a visitor holding
    // a share link's cookie for this very host.
    let token = headers::api_token(req.headers());
    let now = unix_now();
    // A share link sent by a program instead of an API token (counted once
    // per client address: `program_links`); it never reaches the app either.
    let program_link = match token.filter(|t| TokenKind::of(t) == Some(TokenKind::Link)) {
        Some(t) => {
            edge.public_limit.check(peer.ip(), Kind::Link)?;
            let link = edge.program_links.admit(edge, t, peer.ip(), now).await;
            Some(link.ok_or_else(link_refused)?)
        }
        None => None,
    };
    let token = token.filter(|_| program_link.is_none());
    let bare = super::bare_host(&host_header).to_owned();
    let token_hash = token.map(TokenHash::of);
    let mut session_id = None;
    let visitor = match &token_hash {
        Some(hash) => edge.catalog.visitor_for_token(hash),
        None => signin::app_session(edge, req.headers(), &bare, now).map(|(v, id)| {
            session_id = Some(id);
            v
        }),
    };
    let share_cookie = signin::share_link(edge, req.headers(), &bare, now);
    let has_share_cookie = share_cookie.is_present();
    let by_program = program_link.is_some();
    let link = program_link.or(share_cookie.ok());
    let link_grant = link.as_ref().map(|l| auth::LinkGrant {
        agent_id: l.agent_id,
        port: l.port,
    });

    // Phase 3: does it exist, and may they see it? (Both answers look alike.)
    let route = route(edge, &target);

    // A share link being redeemed: set the cookie, drop the token from the URL.
    if let Some(link_token) = headers::share_param(req.uri().query().unwrap_or("")) {
        edge.public_limit.check(peer.ip(), Kind::Link)?;
        return redeem(edge, &route, link_token, &bare, req.uri(), now, peer.ip()).await;
    }

    // CORS between one owner's apps: the edge answers preflights itself
    // (browsers send no credentials with them) and marks allowed responses,
    // unless the share hands CORS to the app (`passthru`): then preflights
    // go to the app unauthenticated, and the app's answers stand as they are.
    let passthru = route.cors() == Cors::Passthru;
    let body_empty = req.body().size_hint().exact() == Some(0);
    let preflight = cors::is_preflight(req.method(), req.headers(), body_empty);
    let app = origin::App {
        host: &host_header,
        owner: &target.user,
        wildcard: &edge.wildcard,
    };
    let same_owner_origin = !passthru
        && req.headers().get(http::header::ORIGIN).is_some_and(|o| {
            matches!(
                origin::classify(o.as_bytes(), &app),
                origin::OriginKind::Own | origin::OriginKind::SameOwner
            )
        });
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
    let access = access.map(
        |(owner_id, agent_id, port, (level, users, groups))| auth::Target {
            agent_id,
            port,
            owner_id,
            owner_org: owner_org.as_deref(),
            level,
            users,
            groups,
        },
    );
    let decision = if preflight {
        // Only a passthru share gets here: its owner lets the app answer.
        Decision::Allow
    } else {
        auth::authorize(visitor.as_ref(), link_grant.as_ref(), access.as_ref())
    };
    // A WebSocket: HTTP/1.1 `Upgrade: websocket`, or RFC 8441 over HTTP/2.
    // No other upgrade is forwarded (`h2c` would hand the app's connection
    // to a client the edge no longer sees).
    let h2_websocket = headers::is_h2_websocket(&req);
    let upgrade = h2_websocket
        || (req.version() <= Version::HTTP_11 && headers::is_websocket_upgrade(req.headers()));
    match decision {
        Decision::Allow => {}
        Decision::Unauthenticated
            if token.is_none()
                && !has_share_cookie
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
            return Ok(signin::to_signin(
                edge,
                req.headers(),
                &bare,
                &return_to,
                now,
            ));
        }
        Decision::Unauthenticated if has_share_cookie && link.is_none() => {
            return Err(signin::link_ended(
                edge,
                req.headers(),
                &bare,
                now,
                req.uri(),
            ));
        }
        Decision::Unauthenticated => {
            return Err(ErrorPage::Unauthenticated {
                reason: if token.is_some() {
                    "The berth API token is not valid (revoked, or from another deployment)".into()
                } else {
                    "This app needs a berth API token: send Authorization: Bearer <token> or Berth-Token: <token>"
                        .into()
                },
            })
        }
        Decision::NotFound => {
            return Err(signin::not_found(
                visitor.as_ref(),
                session_id.is_some(),
                req.uri(),
            ))
        }
    }
    // Admitted; but a cookie's authority does not extend to other origins.
    // A link in a header is a program's credential, like an API token.
    let credential = Credential::of(
        (token.is_some() && visitor.is_some()) || by_program,
        token.is_none() && visitor.is_some(),
        !by_program
            && link_grant.is_some()
            && auth::authorize(visitor.as_ref(), None, access.as_ref()) != Decision::Allow,
    );
    if credential == Credential::Anonymous {
        edge.public_limit.check(peer.ip(), Kind::Public)?;
    }
    check_origin(&req, upgrade, credential, &app)?;
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
    edge.mark.check(req.headers(), port)?;
    *tap = super::inspect::Tap::start(edge, agent_id, port, tls, &req, &host_header);
    let visit = super::wake::Visit {
        agent_id,
        port,
        visitor: visitor.as_ref(),
        link: link.as_ref(),
        target: access.as_ref(),
        workspace: &target.workspace,
        source: peer.ip(),
    };
    if let Some(res) = super::wake::visit(edge, &req, &visit).await {
        return Ok(res);
    }
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

    // Active while it lasts (a WebSocket: while it is open).
    let active = edge.activity.begin(agent_id, port);

    // Phase 5: forward. An HTTP/1.1 WebSocket upgrade passes through as it
    // is; a WebSocket over HTTP/2 (RFC 8441 extended CONNECT) becomes an
    // HTTP/1.1 upgrade towards the app, and its 101 becomes the client's 200.
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let stall = super::streams::stall_timeout(edge, req.version());
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
    super::identity::assert(edge, &mut parts.headers, visitor.as_ref(), &bare, now);
    framing::canonical_content_length(&mut parts.headers);
    edge.mark.stamp(&mut parts.headers);
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
        http_body_util::BodyExt::map_err(body, framing::ClientBodyError::new),
        edge.metrics
            .bytes
            .get_or_create(&DirectionLabel { direction: "in" })
            .clone(),
    );
    let body_in = super::inspect::tee(tap.as_ref(), Body::new(Scrubbed::new(body_in)));
    let up_req = Request::from_parts(parts, body_in);

    let permit = edge.streams.acquire(agent_id)?;
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
        let stall = Some(edge.limits.client_write_timeout);
        let hold = edge.revocation.hold(admitted);
        let seen = super::inspect::upgraded(tap.take(), &res);
        tokio::spawn(async move {
            let (_permit, _active, _seen) = (permit, active, seen);
            let (Ok(client), Ok(app)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            hold.splice(TokioIo::new(client), TokioIo::new(app), stall)
                .await;
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
    let body = edge.revocation.body(
        Scrubbed::new(Counted::new(body, out)),
        admitted,
        &parts.headers,
    );
    let body = super::streams::guard(body, permit, stall);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The Origin rule ([`origin::check`]) for an admitted request: a 403 page
/// when a berth cookie let in a WebSocket upgrade or a non-safe method from
/// an origin other than the app's own or another app of its owner.
fn check_origin(
    req: &Request<Incoming>,
    upgrade: bool,
    credential: Credential,
    app: &origin::App<'_>,
) -> Result<(), ErrorPage> {
    let origins: Vec<&[u8]> = req
        .headers()
        .get_all(http::header::ORIGIN)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let verdict = origin::check(
        &origin::Request {
            method: req.method(),
            upgrade,
            credential,
            origin: &origins,
            sec_fetch_site: req.headers().get("sec-fetch-site").map(|v| v.as_bytes()),
        },
        app,
    );
    let origin::Verdict::Refuse(refusal) = verdict else {
        return Ok(());
    };
    tracing::info!(
        host = %app.host,
        method = %req.method(),
        upgrade,
        credential = ?credential,
        refusal = ?refusal,
        "cross-origin request refused"
    );
    Err(ErrorPage::CrossOrigin {
        request: if upgrade {
            "WebSocket upgrade".to_owned()
        } else {
            format!("{} request", req.method())
        },
        refusal,
    })
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
    // The cookie outlives the link, to tell a returning browser it ended.
    let until = auth::link_cookie::cookie_expiry(link.expires_at);
    let value = edge
        .signin
        .key
        .sign(cookie::Purpose::Share, &link.id, host, until);
    let path = headers::strip_share_param(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    Ok(see_other(
        &paths::same_origin_location(&path),
        Some(cookie::set_cookie(
            cookie::SHARE_COOKIE,
            &value,
            until - now,
        )),
    ))
}

/// A program's share link that opens nothing (any more).
fn link_refused() -> ErrorPage {
    ErrorPage::Unauthenticated {
        reason: "This share link has expired, was revoked, or has been used up: ask the owner for a new one".into(),
    }
}

/// Where an app host leads, as far as the catalog knows.
enum Route {
    /// A port of a connected-or-not agent, with how it is shared.
    Port {
        owner_id: i64,
        agent_id: i64,
        port: u16,
        tls: bool,
        /// The share's level and who it names, as of this request.
        audience: (ShareLevel, Vec<i64>, Vec<i64>),
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
    fn access(&self) -> Option<(i64, i64, u16, crate::catalog::Audience<'_>)> {
        match self {
            Route::Port {
                owner_id,
                agent_id,
                port,
                audience: (level, users, groups),
                ..
            } => Some((*owner_id, *agent_id, *port, (*level, users, groups))),
            Route::Ambiguous { owner_id, .. } => {
                Some((*owner_id, 0, 0, (ShareLevel::Owner, &[], &[])))
            }
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
        audience: share
            .as_ref()
            .map(|s| {
                let (level, users, groups) = s.audience(unix_now());
                (level, users.to_vec(), groups.to_vec())
            })
            .unwrap_or_default(),
        cors: share.map(|s| s.cors).unwrap_or_default(),
    }
}

/// Maps a failed upstream request to the page that explains it.
fn classify(err: &hyper_util::client::legacy::Error) -> ErrorPage {
    if let Some(client) = framing::client_fault(err) {
        return ErrorPage::BadRequest {
            reason: client.to_string(),
        };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(ce) = e.downcast_ref::<ConnectError>() {
            return match ce {
                ConnectError::Open(OpenError::Offline) => ErrorPage::UpstreamFailed {
                    detail: "the agent disconnected".into(),
                },
                ConnectError::Open(OpenError::Refused { port, refusal }) => match refusal {
                    Refusal::NotAllowed => ErrorPage::PortNotAllowed { port: *port },
                    Refusal::Loop => ErrorPage::Loop { port: *port },
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
