//! The edge: terminates TLS, reads the app host, decides who may pass, and
//! forwards through the agent's tunnel.
//!
//! [`Frontdoor`] splits traffic by host: the base domain goes to the control
//! plane's API (when this process runs one), `/_berth/agent/connect` there
//! accepts agent tunnels, and every host under the wildcard goes through
//! [`proxy`]. [`server`] owns sockets, TLS and connection limits.

pub mod activity;
mod admit;
mod body;
mod connector;
pub(crate) mod cores;
pub mod cors;
mod framing;
mod h2c;
pub mod headers;
pub mod hops;
mod identity;
pub mod inspect;
pub mod pages;
mod paths;
mod program_links;
pub mod proxy;
mod public_limit;
pub(crate) mod relay;
pub mod revocation;
pub(crate) mod server;
mod signin;
pub mod streams;
mod tcp;
pub mod wake;

use crate::auth::signin::SignIn;
use crate::auth::{TokenHash, TokenKind};
use crate::catalog::{Catalog, Link, Session};
use crate::config::{Limits, ServerConfig};
use crate::host::Wildcard;
use crate::protocol::edge_api::{Exchange, WakeAnswer, WakeRequest};
use crate::telemetry::EdgeMetrics;
use crate::tunnel::{self, edge::Tunnels};
use axum::body::Body;
use connector::TunnelConnector;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The proxying half: routes, authorizes and forwards app-host requests.
pub struct Edge {
    /// Who and what exists.
    pub catalog: Arc<Catalog>,
    /// Live agent tunnels.
    pub tunnels: Arc<Tunnels>,
    /// The wildcard this edge serves.
    pub wildcard: Wildcard,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Metrics.
    pub metrics: EdgeMetrics,
    /// Cookie key, one-time codes, and where browsers sign in.
    pub signin: Arc<SignIn>,
    /// What only the control plane can do: redeem share links (it counts
    /// uses) and exchange one-time sign-in codes.
    pub control: Arc<dyn ControlCalls>,
    /// Links to the other servers holding agent tunnels.
    pub relay: Arc<relay::Relay>,
    /// Streams in flight per agent (`limits.max_streams_per_agent`).
    pub streams: Arc<streams::AgentStreams>,
    /// This process's mark on the requests it forwards (loop detection).
    pub mark: hops::Mark,
    /// Open WebSockets and long responses, closed when their access is
    /// revoked.
    pub revocation: Arc<revocation::Registry>,
    /// The exchanges this edge served, for the request inspector.
    pub inspector: Arc<inspect::Inspector>,
    /// When each port last served a request, for control.
    pub activity: Arc<activity::Activity>,
    /// Wake on visit: on when control calls a wake webhook.
    pub wake: wake::Wake,
    /// The keys `Berth-Jwt-Assertion` is signed with (control's, replaced
    /// as they rotate).
    pub identity: Arc<crate::auth::jwt::Identity>,
    /// Assertions recently signed, reused while fresh.
    assertions: identity::Assertions,
    /// Share links redeemed for programs (`Berth-Token: berth_link_...`).
    program_links: program_links::ProgramLinks,
    /// `sharing.public_rate_limit`, per source address.
    public_limit: public_limit::PublicLimit,
    client: Client<TunnelConnector, Body>,
    /// The HTTP/2 client for `h2c` ports ([`h2c`]).
    h2c_client: Client<TunnelConnector, Body>,
    _revocation_watcher: revocation::Watcher,
}

/// The other servers an edge talks to while serving.
pub struct Peers {
    /// The control plane (in-process or over HTTPS).
    pub control: Arc<dyn ControlCalls>,
    /// The servers holding the tunnels this edge has not.
    pub relay: Arc<relay::Relay>,
}

/// A [`ControlCalls`] answer: later, and `None` when control says no (or
/// cannot be asked).
pub type ControlAnswer<T> = futures_util::future::BoxFuture<'static, Option<T>>;

/// What an edge asks of the control plane: in-process for the built-in edge,
/// over HTTPS for a regional one.
pub trait ControlCalls: Send + Sync + 'static {
    /// Redeems the share-link token whose hash is `hash`, at `now` (unix
    /// seconds), for a visitor at `source` (for the audit log): counts one
    /// use and returns the link, or `None` when it does not exist, has
    /// expired, was revoked or is used up.
    fn redeem(&self, hash: TokenHash, now: i64, source: std::net::IpAddr) -> ControlAnswer<Link>;

    /// Exchanges a one-time sign-in code minted for its host and the
    /// sign-in state of the browser presenting it for the session it stands
    /// for; `None` if unknown, used, expired, or for another host or browser.
    fn take_code(&self, code: Exchange, now: i64) -> ControlAnswer<Session>;

    /// Someone who may wake it visited an app of an offline agent: control
    /// may call the wake webhook (it checks the visitor again and
    /// de-duplicates). `None` when control cannot be asked.
    fn wake(&self, visit: WakeRequest) -> ControlAnswer<WakeAnswer> {
        let _ = visit;
        Box::pin(async { None })
    }
}

impl Edge {
    /// An edge over `catalog` and `tunnels`, serving `cfg.wildcard` within
    /// `cfg.limits`. Starts the task that closes revoked connections, so
    /// call it within a tokio runtime.
    pub fn new(
        catalog: Arc<Catalog>,
        tunnels: Arc<Tunnels>,
        cfg: &ServerConfig,
        metrics: EdgeMetrics,
        signin: Arc<SignIn>,
        Peers { control, relay }: Peers,
    ) -> Self {
        let connector = TunnelConnector::new(
            tunnels.clone(),
            relay.clone(),
            crate::tls::client::insecure_client_config(&[b"http/1.1"]),
        );
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .set_host(false)
            .build(connector.clone());
        let h2c_client = h2c::client(connector, POOL_IDLE);
        let (revocation, watcher) = revocation::Registry::start(
            catalog.clone(),
            metrics.tracked_connections.clone(),
            metrics.revoked_connections.clone(),
        );
        let public_limit = public_limit::PublicLimit::new(
            cfg.sharing.public_rate,
            metrics.public_rate_limited.clone(),
        );
        Edge {
            catalog,
            tunnels,
            wildcard: cfg.wildcard.clone(),
            streams: streams::AgentStreams::new(cfg.limits.max_streams_per_agent),
            mark: hops::Mark::random(),
            limits: cfg.limits.clone(),
            metrics,
            signin,
            control,
            relay,
            revocation,
            inspector: inspect::Inspector::new(cfg.inspector),
            activity: Default::default(),
            wake: Default::default(),
            identity: Arc::default(),
            assertions: Default::default(),
            program_links: Default::default(),
            public_limit,
            client,
            h2c_client,
            _revocation_watcher: watcher,
        }
    }
}

impl Edge {
    /// The same edge, waking offline workspaces on visits when `on`
    /// (control calls a wake webhook).
    pub fn with_wake(mut self, on: bool) -> Self {
        self.wake = wake::Wake::new(on);
        self
    }
}

/// Dispatches each request by host and path.
pub struct Frontdoor {
    /// The proxy for app hosts.
    pub edge: Arc<Edge>,
    /// This role's own host name (lower case, no port).
    pub base_domain: String,
    /// The control plane's API, when this process runs one.
    pub control: Option<axum::Router>,
    /// A regional edge's link to control, for `/readyz`.
    pub control_state: Option<Arc<ControlStatus>>,
    /// The healthy regions, told to every agent when its tunnel opens.
    pub regions: Arc<RegionDirectory>,
    /// Load balancers whose `X-Forwarded-For` names the client
    /// (`server.trusted_proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Whether a regional edge follows control's watch stream right now, for
/// `/readyz` and the metric `berth_edge_control_connected`.
#[derive(Debug, Default)]
pub struct ControlStatus {
    connected: AtomicBool,
    gauge: Gauge,
}

impl ControlStatus {
    /// True while the watch stream is following control.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Records whether the watch stream is up (logged when it changes).
    pub fn set(&self, up: bool) {
        if self.connected.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("following control's changes");
            } else {
                tracing::warn!("control unreachable: serving from what this edge knows");
            }
        }
        self.gauge.set(i64::from(up));
    }

    /// The gauge that follows [`ControlStatus::connected`], for a registry.
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }
}

/// The healthy regions an edge tells its agents about (refreshed by the
/// control role from the store; empty on a regional edge).
#[derive(Debug, Default)]
pub struct RegionDirectory(std::sync::RwLock<String>);

impl RegionDirectory {
    /// Replaces the list.
    pub fn set(&self, regions: &[crate::protocol::regions::Candidate]) {
        *self.0.write().expect("region list lock") = crate::protocol::regions::to_header(regions);
    }

    fn header(&self) -> Option<http::HeaderValue> {
        let v = self.0.read().expect("region list lock");
        (!v.is_empty()).then(|| http::HeaderValue::from_str(&v).ok())?
    }
}

/// The host (with its port, if any) a request was sent to: `:authority`
/// (HTTP/2) or `Host` (HTTP/1.1). The app gets the same `Host` either way.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// `Host` without port and trailing dot, for comparing with a domain.
fn bare_host(host: &str) -> &str {
    let no_port = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    no_port.strip_suffix('.').unwrap_or(no_port)
}

impl Frontdoor {
    /// Handles one request from `peer`.
    pub async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if let Some(res) = inspect::relay_answer(&self.edge, &req) {
            return res;
        }
        if relay::is_relay(&req) {
            let stall = Some(self.edge.limits.client_write_timeout);
            return relay::accept(&self.edge.relay, &self.edge.tunnels, req, stall).await;
        }
        // Behind a trusted load balancer, the client is who it says it saw.
        let peer = if self.trusted_proxies.is_empty() {
            peer
        } else {
            let ip = headers::client_ip(peer.ip(), req.headers(), &self.trusted_proxies);
            SocketAddr::new(ip, peer.port())
        };
        let host = request_host(&req).map(bare_host).unwrap_or("");
        if !host.eq_ignore_ascii_case(&self.base_domain) {
            return proxy::proxy(&self.edge, req, peer).await;
        }
        match req.uri().path() {
            tunnel::CONNECT_PATH => self.accept_agent(req),
            "/healthz" => text(StatusCode::OK, "ok\n"),
            crate::auth::jwt::JWKS_PATH => identity::jwks(&self.edge),
            // Ready while it can serve, even from cache (a load balancer must
            // not drop an edge because control is away); the body says which.
            "/readyz" => {
                let up = self.control_state.as_ref().is_none_or(|c| c.connected());
                json(
                    StatusCode::OK,
                    serde_json::json!({
                        "status": "ready",
                        "control": if up { "connected" } else { "unreachable" },
                    }),
                )
            }
            _ => match &self.control {
                Some(router) => {
                    use tower::ServiceExt;
                    // Who the client is travels with the request.
                    let mut req = req;
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    match router.clone().oneshot(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    }
                }
                None => pages::render(
                    &pages::ErrorPage::NoApiHere,
                    pages::wants_html(req.headers()),
                ),
            },
        }
    }

    /// Upgrades an agent's connection into a tunnel after checking its token.
    fn accept_agent(&self, mut req: Request<Incoming>) -> Response<Body> {
        let wants = req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(tunnel::UPGRADE_PROTOCOL));
        if !wants || req.version() != http::Version::HTTP_11 {
            let reason = format!(
                "agents connect here with HTTP/1.1 and Upgrade: {}",
                tunnel::UPGRADE_PROTOCOL
            );
            return pages::render(&pages::ErrorPage::BadRequest { reason }, false);
        }
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| TokenKind::of(t) == Some(TokenKind::Agent));
        let Some(agent) = token.and_then(|t| self.edge.catalog.agent_for_token(&TokenHash::of(t)))
        else {
            return pages::render(&pages::ErrorPage::AgentToken, false);
        };
        let slot = match req.headers().get(tunnel::TUNNEL_SET_HEADER).map(|v| {
            v.to_str()
                .map_err(|_| format!("{} is not ASCII", tunnel::TUNNEL_SET_HEADER))
                .and_then(tunnel::TunnelSlot::parse)
        }) {
            None => None,
            Some(Ok(slot)) => Some(slot),
            Some(Err(reason)) => {
                return pages::render(&pages::ErrorPage::BadRequest { reason }, false)
            }
        };
        let serving = self.serving(&agent);
        let on_upgrade = hyper::upgrade::on(&mut req);
        let tunnels = self.edge.tunnels.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => tunnels.serve(agent.id, agent.token_hash, slot, io).await,
                Err(e) => tracing::warn!(agent = %agent.name, error = %e, "agent upgrade failed"),
            }
        });
        let mut res = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, tunnel::UPGRADE_PROTOCOL)
            .body(Body::empty())
            .expect("static response is valid");
        if let Some(regions) = self.regions.header() {
            res.headers_mut()
                .insert(crate::protocol::regions::REGIONS_HEADER, regions);
        }
        if let Some(v) = serving {
            res.headers_mut().insert(crate::protocol::SERVING_HEADER, v);
        }
        res
    }

    /// The [`crate::protocol::SERVING_HEADER`] for `agent`, when the
    /// catalog knows its workspace and owner.
    fn serving(&self, agent: &crate::catalog::Agent) -> Option<http::HeaderValue> {
        let catalog = &self.edge.catalog;
        let ws = catalog.workspace(agent.workspace_id)?;
        let owner = catalog.user(ws.owner_id)?.username;
        let host = self
            .edge
            .wildcard
            .host_for(&format!("{{port}}--{}--{}--{owner}", agent.name, ws.name));
        let value = crate::protocol::serving(&owner, &ws.name, &agent.name, &host);
        http::HeaderValue::from_str(&value).ok()
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A `303 See Other` to `location`, optionally setting a cookie.
pub(super) fn see_other(location: &str, set_cookie: Option<String>) -> Response<Body> {
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

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(body))
        .expect("static response is valid")
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .expect("static response is valid")
}

#[cfg(test)]
mod tests {
    #[test]
    fn bare_host_strips_port_and_dot() {
        assert_eq!(super::bare_host("berth.localhost:8443"), "berth.localhost");
        assert_eq!(super::bare_host("berth.localhost."), "berth.localhost");
        assert_eq!(super::bare_host("[::1]:443"), "[::1]");
        assert_eq!(super::bare_host("[::1]"), "[::1]");
    }
}
