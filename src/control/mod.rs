//! The control plane's HTTP API under `/api/v1` (SPEC §4): sign-in, users,
//! workspaces and agents, plus the first-run [`bootstrap`].
//!
//! Every handler writes through the [`Store`] and then applies the matching
//! [`catalog::Change`](crate::catalog::Change) to the shared [`Catalog`], so the
//! edge sees a new token, workspace or agent (or stops seeing a deleted one) as
//! soon as the API has answered. Callers are authenticated against the catalog,
//! not the database.
//!
//! Errors are always JSON, `{"error": "<code>", "message": "<sentence>"}` (see
//! [`ApiError`]), including for unknown routes, wrong methods, bodies that are
//! not JSON and bodies over [`BODY_LIMIT`]. A workspace the caller may not see
//! answers 404, exactly like one that does not exist.

mod access;
mod account;
pub mod activity;
mod bootstrap;
mod dashboard;
mod edges;
mod error;
mod extract;
mod federated;
mod github;
mod groups;
pub(crate) mod holders;
pub(crate) mod inspect;
mod inspector_page;
pub(crate) mod links;
pub(crate) mod login;
mod oidc;
mod openapi;
pub(crate) mod regions;
pub(crate) mod shares;
mod signin;
pub(crate) mod signing;
mod users;
mod validate;
pub mod wake;
pub mod webhook;
mod workspaces;

#[cfg(test)]
pub(crate) mod tests;

pub use bootstrap::{
    bootstrap, deployment_files, refuse_over_leftovers, Bootstrap, BootstrapError,
    ADMIN_TOKEN_FILE, DEV_AGENT_TOKEN_FILE,
};
pub use error::ApiError;
pub use extract::{Admin, ApiJson, ApiPath, Caller};
pub use github::GithubClient;
pub use inspect::{Inspection, Live, NoInspection};
pub use oidc::OidcClient;

use crate::catalog::{Catalog, Change};
use crate::config::SharingPolicy;
use crate::host::MAX_LABEL;
use crate::protocol::API_ROOT;
use crate::store::Store;
use crate::tunnel::protocol::ListeningPort;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body the API accepts (64 KiB); larger ones get a JSON 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the edge knows of agents right now: whether a tunnel is up, and the
/// ports the agent reports listening (asked over the tunnel).
pub trait Presence: Send + Sync + 'static {
    /// True while the agent with this id has a live tunnel.
    fn is_connected(&self, agent_id: i64) -> bool;

    /// The agent's listening ports; an error sentence when it cannot say.
    fn listening_ports(
        &self,
        agent_id: i64,
    ) -> futures_util::future::BoxFuture<'static, Result<Vec<ListeningPort>, String>> {
        let _ = agent_id;
        Box::pin(async { Err("the agent is not connected".to_owned()) })
    }
}

/// A [`Presence`] for when no edge is attached: every agent is disconnected.
#[derive(Clone, Copy, Debug, Default)]
pub struct NobodyConnected;

impl Presence for NobodyConnected {
    fn is_connected(&self, _agent_id: i64) -> bool {
        false
    }
}

/// Everything the API handlers share.
#[derive(Clone)]
pub struct ControlState {
    /// The source of truth.
    pub store: Store,
    /// The edge's in-memory picture; updated after every write.
    pub catalog: Arc<Catalog>,
    /// Which agents are connected.
    pub presence: Arc<dyn Presence>,
    /// How app URLs look, for responses and name-length limits.
    pub app_urls: AppUrls,
    /// What owners may share, and for how long.
    pub sharing: SharingPolicy,
    /// Browser sign-in: cookie key, one-time codes, where to send browsers.
    pub signin: Arc<crate::auth::signin::SignIn>,
    /// Sign-in through an OpenID Connect provider, when `[oidc]` is set.
    pub oidc: Option<Arc<OidcClient>>,
    /// Sign-in with GitHub, when `[github]` is set.
    pub github: Option<Arc<GithubClient>>,
    /// The local CA (`tls.mode = "self-signed"`), which also signs regional
    /// edges' certificates so one `ca.pem` covers the deployment.
    pub local_ca: Option<Arc<crate::tls::LocalCa>>,
    /// Regional edges' ACME certificates (`tls.mode = "acme"`), which
    /// control orders for them.
    pub region_certs: Option<Arc<crate::tls::acme::regions::RegionCerts>>,
    /// Password sign-in limits and hash slots (`[limits] login_*`).
    pub login: Arc<login::LoginGuard>,
    /// The request inspector's records, gathered from the edges.
    pub inspection: Arc<dyn Inspection>,
    /// Calls the wake webhook, when `[wake]` is set.
    pub waker: Option<Arc<wake::Waker>>,
    /// The keys identity assertions are signed with (shared with the
    /// built-in edge; sent to regional edges on the watch stream).
    pub identity: Arc<crate::auth::jwt::Identity>,
}

tokio::task_local! {
    /// The address of the client whose request the control plane is
    /// handling, for [`ControlState::audit`]; set around each request from
    /// the `ConnectInfo` the front door puts in its extensions.
    static CLIENT_ADDR: std::net::IpAddr;
}

/// Runs the rest of the request with [`CLIENT_ADDR`] set, when the front
/// door said who the client is.
async fn with_client_addr(req: axum::extract::Request, next: Next) -> axum::response::Response {
    let addr = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    match addr {
        Some(ip) => CLIENT_ADDR.scope(ip, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The client address of the request being handled, when the front door
/// set one (honouring `server.trusted_proxies`).
pub(crate) fn client_addr() -> Option<std::net::IpAddr> {
    CLIENT_ADDR.try_with(|a| *a).ok()
}

impl ControlState {
    /// Applies a committed change to this replica's catalog and publishes it
    /// to the other control replicas on the same PostgreSQL database (a no-op
    /// on SQLite). A failed publish is logged: the write itself stands, and
    /// the others catch up when their listener next rebuilds.
    pub async fn apply(&self, change: Change) {
        if let Err(e) = self.store.apply_and_publish(&self.catalog, change).await {
            tracing::error!(error = %e, "cannot tell other control replicas about a change");
        }
    }

    /// Where a browser may be sent back to after sign-in: authority, path
    /// and owner of an `https://` app host under this deployment's wildcard
    /// or a region's; `None` for anything else (no open redirect).
    pub async fn return_target<'a>(
        &self,
        url: &'a str,
    ) -> Option<crate::auth::signin::ReturnTo<'a>> {
        if let Some(t) = crate::auth::signin::return_target(url, &self.signin.wildcard) {
            return Some(t);
        }
        let regions = self.store.list_regions().await.ok()?;
        regions
            .iter()
            .filter_map(|r| crate::host::Wildcard::parse(&r.wildcard).ok())
            .find_map(|w| crate::auth::signin::return_target(url, &w))
    }

    /// Records a security-relevant action in the audit log (and the log
    /// stream, target `berth::audit`), with the client's address when the
    /// request came through the front door. A failure to store it is
    /// logged, not fatal: the action itself has already happened.
    pub async fn audit(&self, actor: &str, action: &str, target: &str) {
        let source = client_addr().map(|a| a.to_string()).unwrap_or_default();
        self.audit_from(actor, action, target, &source).await;
    }

    /// [`ControlState::audit`] with the source given (for events gathered
    /// from several requests).
    pub async fn audit_from(&self, actor: &str, action: &str, target: &str, source: &str) {
        tracing::info!(target: "berth::audit", actor, action, target, source);
        if let Err(e) = self.store.record_audit(actor, action, target, source).await {
            tracing::error!(error = %e, actor, action, target, "cannot store audit event");
        }
    }
}

/// How to build app URLs for responses: `https://{label}{wildcard_suffix}[:port]`.
///
/// For the wildcard `*.berth.localhost` served on 8443 that is
/// `wildcard_suffix: ".berth.localhost", port: Some(8443)`; for a prefix-form
/// wildcard `*--apps.example.com` the suffix is `"--apps.example.com"`, whose
/// first part then counts against the 63-character DNS label too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUrls {
    /// What follows the app label, starting with `.` or `--`.
    pub wildcard_suffix: String,
    /// The public HTTPS port, when not 443.
    pub port: Option<u16>,
}

impl AppUrls {
    /// From a wildcard such as `*.apps.example.com` and the public port
    /// (443 is left out of URLs).
    pub fn from_wildcard(wildcard: &str, port: u16) -> Self {
        AppUrls {
            wildcard_suffix: wildcard.strip_prefix('*').unwrap_or(wildcard).to_owned(),
            port: (port != 443).then_some(port),
        }
    }

    /// The URL of an app label, e.g. `https://3000--main--api--alice.berth.localhost:8443`.
    pub fn url(&self, label: &str) -> String {
        match self.port {
            Some(p) => format!("https://{label}{}:{p}", self.wildcard_suffix),
            None => format!("https://{label}{}", self.wildcard_suffix),
        }
    }

    /// The longest app label (as [`host::port_label_len`](crate::host::port_label_len)
    /// counts it) that still fits in one DNS label with this wildcard.
    pub fn label_budget(&self) -> usize {
        let in_label = self.wildcard_suffix.split('.').next().unwrap_or("").len();
        MAX_LABEL.saturating_sub(in_label)
    }
}

/// The `/api/v1` routes (paths relative to it), each from its handler's
/// `#[utoipa::path]`: the router and the OpenAPI document
/// ([`openapi::document`]) both come from this one list.
pub(crate) fn api_routes() -> OpenApiRouter<ControlState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(openapi::serve))
        .routes(routes!(users::login))
        .routes(routes!(users::me))
        .routes(routes!(account::change_password))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::delete, users::update))
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::delete))
        .routes(routes!(activity::show))
        .routes(routes!(workspaces::create_agent, workspaces::list_agents))
        .routes(routes!(shares::list_ports))
        .routes(routes!(shares::put_share, shares::delete_share))
        .routes(routes!(shares::put_app, shares::delete_app))
        .routes(routes!(inspect::list))
        .routes(routes!(inspect::get_one))
        .routes(routes!(inspect::replay))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::show, groups::rename, groups::delete))
        .routes(routes!(groups::add_member, groups::remove_member))
        .routes(routes!(links::create, links::list))
        .routes(routes!(links::revoke))
        .routes(routes!(users::audit))
        .routes(routes!(regions::create, regions::list))
        .routes(routes!(regions::delete))
        .routes(routes!(edges::hello))
        .routes(routes!(edges::heartbeat))
        .routes(routes!(edges::watch))
        .routes(routes!(edges::redeem))
        .routes(routes!(edges::exchange))
        .routes(routes!(edges::certificate))
        .routes(routes!(activity::report))
        .routes(routes!(wake::from_edge))
        .routes(routes!(regions::for_agent))
}

/// The `/api/v1` routes, with their state. Has no fallback of its own outside
/// `/api/v1`, so it merges with other routers (dashboard, health).
pub fn router(state: ControlState) -> Router {
    let (api, _doc) = api_routes().split_for_parts();
    let api = api
        .fallback(|| async { ApiError::not_found("no such API endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not support that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new()
        .nest(API_ROOT, api)
        .route("/", get(dashboard::home))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/signin", get(signin::show).post(signin::submit))
        .route("/signin/continue", post(signin::proceed))
        .route("/signout", post(signin::signout))
        .route("/signin/oidc", get(oidc::start).post(oidc::start_from_page))
        .route("/signin/oidc/callback", get(oidc::callback))
        .route(
            "/signin/github",
            get(github::start).post(github::start_from_page),
        )
        .route("/signin/github/callback", get(github::callback))
        .route(
            "/dashboard/inspect/{user}/{workspace}/{agent}/{port}",
            get(inspector_page::page),
        )
        .route("/dashboard/inspector.js", get(inspector_page::script))
        .route("/dashboard/inspector.css", get(inspector_page::style))
        .with_state(state)
        .layer(middleware::map_response(page_headers))
        .layer(middleware::from_fn(with_client_addr))
}

/// How long browsers keep to HTTPS for the control host once told
/// (`Strict-Transport-Security`; a year, the usual, without subdomains:
/// the base domain may have siblings berth does not serve).
const HSTS: &str = "max-age=31536000";

/// Headers on every control-host answer: no framing by any other page
/// (so nobody can trick a click on the dashboard, sign-in or consent page),
/// and HTTPS only from now on. A page's own Content-Security-Policy (the
/// dashboard's) is kept; it says `frame-ancestors 'none'` too.
async fn page_headers(mut res: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static("frame-ancestors 'none'"));
    h.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
