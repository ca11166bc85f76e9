//! One app-host request, in named phases over one [`Ctx`] built once:
//!
//! [`host`] -> [`authenticate`] -> [`route`] -> [`authorize`] -> [`wake`] ->
//! [`way`] -> [`forward`] -> [`respond`] (metrics and the access log).
//!
//! Each phase is a short function; the decisions are pure functions
//! elsewhere ([`crate::host`], [`super::admit`], [`super::headers`]). A phase
//! fails with an [`ErrorPage`], which [`proxy`] renders in one place. A hook
//! (a header for the app, a capture of the exchange, waking an agent) is one
//! call in the phase it belongs to, with its logic in its own module.

use super::admit::{self, Admission, Ask, Found, Pass, Route, Who};
use super::body::{Counted, Scrubbed};
use super::connector::{self, ConnectError};
use super::cors;
use super::inspect::{self, Tap};
use super::pages::{self, ErrorPage, Fault};
use super::public_limit::Kind;
use super::revocation::Admitted;
use super::{framing, headers, paths, relay, request_host, see_other, signin, unix_now, Edge};
use crate::auth::{cookie, origin, TokenHash, TokenKind};
use crate::catalog::Resolved;
use crate::host::{self, AppTarget, Service};
use crate::tunnel::edge::OpenError;
use crate::tunnel::Refusal;
use axum::body::Body;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Instant;

/// Proxies one request to an app host; never fails: errors become pages.
pub async fn proxy(edge: &Edge, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let cx = Ctx::new(edge, &req, peer);
    // The inspector's record of an admitted request, kept when it ends.
    let mut tap = None;
    let answer = handle(&cx, req, &mut tap).await;
    let fault = answer.as_ref().err().map(ErrorPage::fault);
    let res = inspect::finish(tap, answer, cx.html);
    respond(&cx, &res, fault);
    res
}

/// What every phase of one request needs, worked out once.
pub(crate) struct Ctx<'e> {
    pub(crate) edge: &'e Edge,
    /// The client (behind trusted proxies, the one they name).
    pub(crate) peer: SocketAddr,
    pub(crate) started: Instant,
    /// Unix seconds, for cookie and session expiry.
    pub(crate) now: i64,
    /// `Host` (`:authority` over HTTP/2) as sent, port included.
    pub(crate) host: Option<String>,
    /// The client takes HTML: errors as pages, sign-in as a redirect.
    pub(crate) html: bool,
    method: Method,
    version: Version,
    /// The request target, for the access log (a cheap clone: shared bytes).
    uri: Uri,
}

impl<'e> Ctx<'e> {
    fn new<B>(edge: &'e Edge, req: &Request<B>, peer: SocketAddr) -> Self {
        Ctx {
            edge,
            peer,
            started: Instant::now(),
            now: unix_now(),
            host: request_host(req).map(str::to_owned),
            html: pages::wants_html(req.headers()),
            method: req.method().clone(),
            version: req.version(),
            uri: req.uri().clone(),
        }
    }

    /// The host without port and trailing dot (what cookies are bound to).
    pub(crate) fn bare_host(&self) -> &str {
        super::bare_host(self.host.as_deref().unwrap_or(""))
    }
}

/// The phases in order; an early answer (sign-in, a preflight, a share
/// link's redirect, a waking workspace) or a refusal ends the request where
/// it is decided. `tap` records what was admitted, for the inspector.
async fn handle(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    tap: &mut Option<Tap>,
) -> Result<Response<Body>, ErrorPage> {
    let target = host(cx, &req)?;
    if req.uri().path() == signin::CALLBACK_PATH {
        return signin::callback(cx.edge, req.uri(), req.headers(), cx.bare_host()).await;
    }
    if req.uri().path() == signin::SIGNIN_PATH {
        let host = cx.host.as_deref().unwrap_or("");
        return Ok(signin::start(
            cx.edge,
            req.uri(),
            req.headers(),
            cx.bare_host(),
            host,
        ));
    }
    if paths::is_edge_path(req.uri().path()) {
        return Err(ErrorPage::NotFound);
    }
    let who = authenticate(cx, req.headers()).await?;
    let route = route(cx, &target);
    // A share link being redeemed: set the cookie, drop the token from the URL.
    if let Some(link_token) = headers::share_param(req.uri().query().unwrap_or("")) {
        cx.edge.public_limit.check(cx.peer.ip(), Kind::Link)?;
        return redeem(cx, &route, link_token, req.uri()).await;
    }
    let pass = match authorize(cx, &req, &who, &route, &target)? {
        Authorized::Forward(pass) => pass,
        Authorized::Answer(res) => return Ok(res),
    };
    *tap = Tap::start(cx.edge, &pass, &req, cx.host.as_deref().unwrap_or(""));
    if let Some(res) = wake(cx, &req, &who, &route, &pass, &target).await {
        return Ok(res);
    }
    let via = way(cx, &pass, &target)?;
    // `berth port-forward`: a raw TCP stream instead of an HTTP exchange.
    if super::tcp::wanted(&req) {
        return super::tcp::forward(cx.edge, req, &who, &pass, via).await;
    }
    forward(cx, req, who, pass, via, tap).await
}

/// Phase 1, host: which app the host names, and whether the request is
/// well-formed enough to go anywhere.
fn host(cx: &Ctx<'_>, req: &Request<Incoming>) -> Result<AppTarget, ErrorPage> {
    let name = cx.host.as_deref().ok_or_else(|| ErrorPage::BadRequest {
        reason: "the request has no Host header".into(),
    })?;
    let target = host::parse_host(name, &cx.edge.wildcard).map_err(|e| ErrorPage::UnknownHost {
        reason: e.to_string(),
    })?;
    framing::check_request(req.version(), req.method(), req.uri(), req.headers()).map_err(|e| {
        ErrorPage::BadRequest {
            reason: e.to_string(),
        }
    })?;
    Ok(target)
}

/// Phase 2, authenticate: who is asking. A user by API token, or by the
/// app cookie of this host; and/or a visitor holding a share link's
/// cookie for this very host, or a program sending a share link in place
/// of an API token (redeemed once per client address, `program_links`,
/// and counted by `sharing.public_rate_limit`; it never reaches the app).
async fn authenticate(cx: &Ctx<'_>, headers: &HeaderMap) -> Result<Who, ErrorPage> {
    let (edge, bare, now) = (cx.edge, cx.bare_host(), cx.now);
    let token = headers::api_token(headers);
    let program_link = match token.filter(|t| TokenKind::of(t) == Some(TokenKind::Link)) {
        Some(t) => {
            edge.public_limit.check(cx.peer.ip(), Kind::Link)?;
            let link = edge.program_links.admit(edge, t, cx.peer.ip(), now).await;
            Some(link.ok_or_else(ErrorPage::link_refused)?)
        }
        None => None,
    };
    let by_program = program_link.is_some();
    let token = token.filter(|_| !by_program).map(TokenHash::of);
    let (visitor, session) = match &token {
        Some(hash) => (edge.catalog.visitor_for_token(hash), None),
        None => match signin::app_session(edge, headers, bare, now) {
            Some((visitor, id)) => (Some(visitor), Some(id)),
            None => (None, None),
        },
    };
    let share = signin::share_link(edge, headers, bare, now);
    Ok(Who {
        token,
        visitor,
        session,
        share_cookie: share.is_present(),
        link: program_link.or(share.ok()),
        by_program,
    })
}

/// Phase 3, route: the port a parsed app host leads to, its protocol, its
/// owner, and who its share lets in now.
fn route(cx: &Ctx<'_>, target: &AppTarget) -> Route {
    let catalog = &cx.edge.catalog;
    let (owner_id, agent_id) =
        match catalog.resolve(&target.user, &target.workspace, target.agent.as_deref()) {
            Resolved::Agent { owner_id, agent_id } => (owner_id, agent_id),
            Resolved::Ambiguous { owner_id, agents } => {
                return Route::Ambiguous { owner_id, agents }
            }
            Resolved::Nothing => return Route::Nothing,
        };
    let (port, named_protocol) = match &target.service {
        Service::Port(p) => (*p, None),
        Service::App(name) => match catalog.app(agent_id, name) {
            Some(app) => (app.port, Some(app.protocol)),
            None => return Route::Nothing,
        },
    };
    let share = catalog.share(agent_id, port);
    Route::port(
        Found {
            owner_id,
            owner_org: catalog.organization_of(owner_id),
            agent_id,
            port,
            tls_asked: target.tls,
            named_protocol,
            share: share.as_ref(),
        },
        cx.now,
    )
}

/// What the authorize phase lets happen.
enum Authorized {
    /// On to the app.
    Forward(Pass),
    /// The edge answers itself: a CORS preflight, or the way to sign-in.
    Answer(Response<Body>),
}

/// Phase 4, authorize: [`admit::admit`] decides; this gathers what it needs
/// and turns its early answers (a preflight, sign-in) into responses.
fn authorize(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
    who: &Who,
    route: &Route,
    target: &AppTarget,
) -> Result<Authorized, ErrorPage> {
    let h = req.headers();
    let origins: Vec<&[u8]> = h
        .get_all(http::header::ORIGIN)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let body_empty = req.body().size_hint().exact() == Some(0);
    let ask = Ask {
        method: req.method(),
        html: cx.html,
        upgrade: is_upgrade(req),
        preflight: cors::is_preflight(req.method(), h, body_empty),
        origin: &origins,
        sec_fetch_site: h.get("sec-fetch-site").map(|v| v.as_bytes()),
    };
    let app = origin::App {
        host: cx.host.as_deref().unwrap_or(""),
        owner: &target.user,
        wildcard: &cx.edge.wildcard,
    };
    match admit::admit(who, route, &ask, &app) {
        Admission::Pass(pass) => {
            // What is open to the world is limited per address.
            if pass.credential == origin::Credential::Anonymous {
                cx.edge.public_limit.check(cx.peer.ip(), Kind::Public)?;
            }
            cx.edge.mark.check(h, pass.port)?;
            Ok(Authorized::Forward(pass))
        }
        Admission::Preflight { allowed } => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            *res.headers_mut() = cors::preflight_headers(h, allowed);
            Ok(Authorized::Answer(res))
        }
        Admission::SignIn => {
            // To the control plane's sign-in, which sends the browser back
            // here with a one-time code.
            let return_to = format!(
                "https://{}{}",
                app.host,
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            Ok(Authorized::Answer(signin::to_signin(
                cx.edge,
                h,
                cx.bare_host(),
                &return_to,
                cx.now,
            )))
        }
        Admission::Refuse(page) => {
            if let ErrorPage::CrossOrigin { refusal, .. } = &page {
                tracing::info!(host = %app.host, method = %req.method(), upgrade = ask.upgrade,
                    refusal = ?refusal, "cross-origin request refused");
            }
            // Said for this visitor: who they are, or that their link ended.
            Err(signin::explain(
                cx.edge,
                req,
                who,
                cx.bare_host(),
                cx.now,
                page,
            ))
        }
    }
}

/// A WebSocket: HTTP/1.1 `Upgrade: websocket`, or RFC 8441 over HTTP/2. No
/// other upgrade is forwarded (`h2c` would hand the app's connection to a
/// client the edge no longer sees).
fn is_upgrade<B>(req: &Request<B>) -> bool {
    headers::is_h2_websocket(req)
        || (req.version() <= Version::HTTP_11 && headers::is_websocket_upgrade(req.headers()))
}

/// Between authorize and the way: when the agent is offline and wake on
/// visit is on, someone who may wake it gets a waiting page (or, asking
/// with [`super::wake::STATUS_HEADER`], the status) while control is asked
/// to start the workspace ([`super::wake`]).
async fn wake(
    cx: &Ctx<'_>,
    req: &Request<Incoming>,
    who: &Who,
    route: &Route,
    pass: &Pass,
    target: &AppTarget,
) -> Option<Response<Body>> {
    let access = route.target();
    let visit = super::wake::Visit {
        agent_id: pass.agent_id,
        port: pass.port,
        visitor: who.visitor.as_ref(),
        link: who.link.as_ref(),
        target: access.as_ref(),
        workspace: &target.workspace,
        source: cx.peer.ip(),
    };
    super::wake::visit(cx.edge, req, &visit).await
}

/// Phase 5, way: this server's tunnel of the agent, or a relay to the
/// server that has it.
fn way(cx: &Ctx<'_>, pass: &Pass, target: &AppTarget) -> Result<connector::Via, ErrorPage> {
    let edge = cx.edge;
    let affinity = crate::tunnel::edge::affinity(cx.peer);
    if let Some(tunnel) = edge.tunnels.pick(pass.agent_id, affinity) {
        return Ok(connector::Via::Tunnel(tunnel.generation));
    }
    let holders = edge.catalog.tunnels_at(pass.agent_id);
    match relay::hop(None, &holders, &edge.relay.me) {
        relay::Hop::Local(generation) => Ok(connector::Via::Tunnel(generation)),
        relay::Hop::Relay(holder) => Ok(connector::Via::Relay(edge.relay.holder_id(holder))),
        relay::Hop::Offline => Err(ErrorPage::AgentOffline {
            agent: edge
                .catalog
                .agent(pass.agent_id)
                .map(|a| a.name)
                .unwrap_or_default(),
            workspace: target.workspace.clone(),
        }),
    }
}

/// Phase 6, forward: the request goes to the app, and its answer (or its
/// upgraded connection) comes back. An HTTP/1.1 WebSocket upgrade passes
/// through as it is; a WebSocket over HTTP/2 (RFC 8441 extended CONNECT)
/// becomes an HTTP/1.1 upgrade towards the app, and its 101 the client's 200.
async fn forward(
    cx: &Ctx<'_>,
    mut req: Request<Incoming>,
    who: Who,
    pass: Pass,
    via: connector::Via,
    tap: &mut Option<Tap>,
) -> Result<Response<Body>, ErrorPage> {
    let edge = cx.edge;
    let h2_websocket = headers::is_h2_websocket(&req);
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let stall = super::streams::stall_timeout(edge, req.version());
    let cors_origin = pass
        .cors_origin
        .then(|| req.headers().get(http::header::ORIGIN).cloned())
        .flatten();
    let up_req = upstream_request(cx, req, &who, &pass, via, upgrade, h2_websocket)?;
    let up_req = up_req.map(|body| inspect::tee(tap.as_ref(), body));
    // What let it through, to take the same decision again while an
    // upgraded connection or a long response stays open.
    let admitted = Admitted::new(
        who.visitor.as_ref(),
        who.token,
        who.session,
        who.link.map(|l| l.id),
        pass.agent_id,
        pass.port,
    );
    let permit = edge.streams.acquire(pass.agent_id)?;
    // Active while it lasts (a WebSocket: while it is open).
    let active = edge.activity.begin(pass.agent_id, pass.port);
    let sent = Instant::now();
    // An `h2c` port gets HTTP/2 (a WebSocket still goes over HTTP/1.1).
    let client = if pass.h2c && !upgrade {
        &edge.h2c_client
    } else {
        &edge.client
    };
    let res = tokio::time::timeout(edge.limits.upstream_timeout, client.request(up_req))
        .await
        .map_err(|_| ErrorPage::UpstreamTimeout {
            seconds: edge.limits.upstream_timeout.as_secs(),
        })?
        .map_err(|e| classify(&e))?;
    edge.metrics
        .upstream_seconds
        .observe(sent.elapsed().as_secs_f64());
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ErrorPage::UpstreamFailed {
                fault: Fault::App,
                detail: "the app switched protocols without being asked to".into(),
            });
        };
        let seen = inspect::upgraded(tap.take(), &res);
        let open = Open {
            permit,
            admitted,
            _active: active,
            _seen: seen,
        };
        return Ok(splice(cx, res, client_upgrade, open, h2_websocket));
    }
    let (mut parts, body) = res.into_parts();
    headers::prepare_response(&mut parts.headers, false);
    if let Some(origin) = &cors_origin {
        cors::allow_response(&mut parts.headers, origin);
    }
    let body = edge.revocation.body(
        Scrubbed::new(Counted::new(body, edge.metrics.bytes_out.clone())),
        admitted,
        &parts.headers,
    );
    let body = super::streams::guard(body, permit, stall);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// The request as the app gets it: credentials and spoofable headers gone,
/// `X-Forwarded-*` and the visitor added, addressed to the pooled
/// connection of (agent, way, port).
fn upstream_request(
    cx: &Ctx<'_>,
    req: Request<Incoming>,
    who: &Who,
    pass: &Pass,
    via: connector::Via,
    upgrade: bool,
    h2_websocket: bool,
) -> Result<Request<Body>, ErrorPage> {
    let edge = cx.edge;
    let host = cx.host.as_deref().unwrap_or("");
    let (mut parts, body) = req.into_parts();
    let trailers = pass.h2c && super::h2c::asks_trailers(&parts.headers);
    headers::prepare_request(
        &mut parts.headers,
        &headers::Forwarded {
            client_ip: cx.peer.ip(),
            host: cx.bare_host(),
            host_header: host,
            visitor: who.visitor.as_ref(),
            upgrade,
        },
    );
    super::identity::assert(
        edge,
        &mut parts.headers,
        who.visitor.as_ref(),
        cx.bare_host(),
        cx.now,
    );
    framing::canonical_content_length(&mut parts.headers);
    edge.mark.stamp(&mut parts.headers);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let path = headers::strip_share_param(path);
    let scheme = if pass.tls { "https" } else { "http" };
    parts.uri = Uri::try_from(connector::upstream_uri(
        scheme,
        pass.agent_id,
        via,
        pass.port,
        &path,
    ))
    .map_err(|_| ErrorPage::BadRequest {
        reason: "the request target is not a valid path".into(),
    })?;
    parts.version = Version::HTTP_11;
    if pass.h2c && !upgrade {
        super::h2c::to_app(&mut parts.version, &mut parts.headers, trailers);
    }
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
        edge.metrics.bytes_in.clone(),
    );
    Ok(Request::from_parts(
        parts,
        Body::new(Scrubbed::new(body_in)),
    ))
}

/// The app agreed to a WebSocket: both upgraded connections are spliced in
/// a task of their own (watched for revocation) and the client gets the
/// app's `101` (its `200` over HTTP/2).
/// What an upgraded connection holds while it is open.
struct Open {
    /// Its place among the agent's streams.
    permit: super::streams::StreamPermit,
    /// What let it in, checked again on revocation.
    admitted: Admitted,
    /// The port counts as active.
    _active: super::activity::Active,
    /// The inspector's record, kept when it closes.
    _seen: Option<inspect::Upgraded>,
}

fn splice(
    cx: &Ctx<'_>,
    mut res: Response<Incoming>,
    client_upgrade: OnUpgrade,
    open: Open,
    h2_websocket: bool,
) -> Response<Body> {
    let upstream_upgrade = hyper::upgrade::on(&mut res);
    let stall = Some(cx.edge.limits.client_write_timeout);
    let Open {
        permit,
        admitted,
        _active,
        _seen,
    } = open;
    let hold = cx.edge.revocation.hold(admitted);
    tokio::spawn(async move {
        let _held = (permit, _active, _seen);
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
    Response::from_parts(parts, Body::empty())
}

/// Phase 7, respond: the request counts in the metrics and gets its
/// access-log line (with whose fault a refusal was).
fn respond(cx: &Ctx<'_>, res: &Response<Body>, fault: Option<Fault>) {
    cx.edge.metrics.count(res.status());
    crate::telemetry::access::log(&crate::telemetry::access::Access {
        method: cx.method.as_str(),
        host: cx.host.as_deref().unwrap_or(""),
        path: cx.uri.path(),
        status: res.status().as_u16(),
        micros: cx.started.elapsed().as_micros() as u64,
        version: cx.version,
        peer: cx.peer.ip(),
        fault: fault.map(Fault::as_str),
    });
}

/// Redeems `?berth_share=TOKEN`: counts a use, sets the host-only visitor
/// cookie, and sends the browser to the same URL without the token.
async fn redeem(
    cx: &Ctx<'_>,
    route: &Route,
    token: &str,
    uri: &Uri,
) -> Result<Response<Body>, ErrorPage> {
    let (edge, now) = (cx.edge, cx.now);
    let expired = ErrorPage::link_refused;
    let target = match route.target() {
        Some(t) if t.agent_id != 0 => (t.agent_id, t.port),
        _ => return Err(expired()),
    };
    let Some(link) = edge
        .control
        .redeem(TokenHash::of(token), now, cx.peer.ip())
        .await
    else {
        return Err(expired());
    };
    if (link.agent_id, link.port) != target {
        // A real link, but for another app: it opens nothing here.
        return Err(expired());
    }
    // The cookie outlives the link, to tell a returning browser it ended.
    let until = crate::auth::link_cookie::cookie_expiry(link.expires_at);
    let value = edge
        .signin
        .key
        .sign(cookie::Purpose::Share, &link.id, cx.bare_host(), until);
    let path = headers::strip_share_param(uri.path_and_query().map_or("/", |p| p.as_str()));
    Ok(see_other(
        &paths::same_origin_location(&path),
        Some(cookie::set_cookie(
            cookie::SHARE_COOKIE,
            &value,
            until - now,
        )),
    ))
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
                ConnectError::Open(open) => open_failed(open),
                ConnectError::AppTls(e) => ErrorPage::UpstreamFailed {
                    fault: Fault::App,
                    detail: format!("HTTPS to the app failed: {e}"),
                },
                ConnectError::BadAuthority(_) => ErrorPage::UpstreamFailed {
                    fault: Fault::Berth,
                    detail: "internal routing error".into(),
                },
            };
        }
        source = e.source();
    }
    ErrorPage::UpstreamFailed {
        fault: Fault::App,
        detail: format!("the app did not answer: {err}"),
    }
}

/// The page for a tunnel stream that could not be opened.
fn open_failed(err: &OpenError) -> ErrorPage {
    match err {
        OpenError::Offline => ErrorPage::UpstreamFailed {
            fault: Fault::Tunnel,
            detail: "the agent disconnected".into(),
        },
        OpenError::Refused { port, refusal } => match refusal {
            Refusal::NotAllowed => ErrorPage::PortNotAllowed { port: *port },
            Refusal::Loop => ErrorPage::Loop { port: *port },
            Refusal::Refused | Refusal::Timeout | Refusal::Unreachable => {
                ErrorPage::PortClosed { port: *port }
            }
        },
        OpenError::Tunnel(detail) => ErrorPage::UpstreamFailed {
            fault: Fault::Tunnel,
            detail: format!("the tunnel failed: {detail}"),
        },
    }
}
