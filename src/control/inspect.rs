//! The request inspector's API (issue 16) under
//! `/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/requests`:
//! the exchanges the edges recorded for a port (newest first), one of
//! them, a live stream of new ones (SSE), and replaying one through the
//! tunnel as the port's owner.
//!
//! Only the owner and site admins may look ([`auth::inspect::may_inspect`]);
//! everyone else gets the 404 of a port that does not exist. Control does
//! not hold exchanges: [`Inspection`] gathers them from the edges.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::ControlState;
use crate::auth::inspect::{self as rule, Verdict, Via, Viewer};
use crate::auth::Visitor;
use crate::protocol::inspect::{Exchange, Replay, ReplayRefused};
use crate::store::StoreError;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A comment line this often keeps a quiet live stream open through
/// proxies.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Where the recorded exchanges are: the edges. Implemented where the
/// roles are composed (the built-in edge, and the regional edges asked
/// over the relay link).
pub trait Inspection: Send + Sync + 'static {
    /// Every exchange any edge holds for `port` of `agent_id`, newest first.
    fn list(&self, agent_id: i64, port: u16) -> BoxFuture<'static, Vec<Exchange>>;

    /// New exchanges of `port` of `agent_id` as any edge records them
    /// (this one's, and the regional edges' over the relay link).
    fn follow(&self, agent_id: i64, port: u16) -> BoxStream<'static, Live>;

    /// Sends `original`, changed by `edits`, to its port again as `owner`;
    /// the new exchange.
    fn replay(
        &self,
        original: Exchange,
        edits: Replay,
        owner: Visitor,
    ) -> BoxFuture<'static, Result<Exchange, ReplayRefused>>;
}

/// What a live follower of a port gets.
#[derive(Clone, Debug)]
pub enum Live {
    /// A new exchange of the port.
    Exchange(Arc<Exchange>),
    /// The follower fell behind: this many exchanges were skipped.
    Lagged(u64),
}

/// An [`Inspection`] with no edge: nothing recorded, nothing to replay.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoInspection;

impl Inspection for NoInspection {
    fn list(&self, _agent_id: i64, _port: u16) -> BoxFuture<'static, Vec<Exchange>> {
        Box::pin(async { Vec::new() })
    }

    fn follow(&self, _agent_id: i64, _port: u16) -> BoxStream<'static, Live> {
        Box::pin(futures_util::stream::pending())
    }

    fn replay(
        &self,
        _original: Exchange,
        _edits: Replay,
        _owner: Visitor,
    ) -> BoxFuture<'static, Result<Exchange, ReplayRefused>> {
        Box::pin(async { Err(ReplayRefused::Unreachable("no edge runs here".into())) })
    }
}

/// The agent a path names, if the caller may inspect its port: the same
/// 404 as for a port that does not exist otherwise.
pub(super) async fn inspectable(
    st: &ControlState,
    caller: &Caller,
    headers: &HeaderMap,
    (user, workspace, agent, port): &(String, String, String, u16),
) -> Result<i64, ApiError> {
    let hidden = || {
        ApiError::not_found(format!(
            "no port {port} of {user}/{workspace}/{agent} to inspect, or not yours"
        ))
    };
    let ws = match st.store.workspace_by_name(user, workspace).await {
        Ok(ws) => ws,
        Err(StoreError::NotFound(_)) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    let agent_id = match st.store.agent_by_name(ws.id, agent).await {
        Ok(a) => a.id,
        Err(StoreError::NotFound(_)) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    let viewer = Viewer {
        // The caller got in by a bearer token or by the dashboard's session.
        via: if headers.contains_key(header::AUTHORIZATION) {
            Via::ApiToken
        } else {
            Via::Session
        },
        user_id: Some(caller.0.id),
        admin: caller.0.admin,
    };
    let level = st
        .catalog
        .share(agent_id, *port)
        .map(|s| s.level)
        .unwrap_or_default();
    let port_rule = rule::Port {
        owner_id: ws.owner_id,
        level,
    };
    match rule::may_inspect(viewer, port_rule) {
        Verdict::Allow => Ok(agent_id),
        Verdict::Unauthenticated => Err(ApiError::unauthenticated()),
        Verdict::NotFound => Err(hidden()),
    }
}

/// `GET .../requests` answer.
#[derive(Serialize)]
pub(crate) struct RequestsJson {
    requests: Vec<Exchange>,
}

pub(super) type PortPath = (String, String, String, u16);

/// The port's recorded exchanges, newest first (`?limit=N`); with `Accept:
/// text/event-stream`, a live stream of new ones instead.
#[utoipa::path(get, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/requests", tag = "inspector",
    summary = "The port's recorded requests, newest first (owner and site admins); with Accept: text/event-stream, a live stream of new ones",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("port" = u16, Path, description = "The port, 1-65535"), ("limit" = Option<u32>, Query, description = "At most this many")),
    responses((status = 200, description = "{\"requests\": [...]}, or an event stream"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such port, or not yours to inspect (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(path): ApiPath<PortPath>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let agent_id = inspectable(&st, &caller, &headers, &path).await?;
    let port = path.3;
    if wants_events(&headers) {
        return Ok(live(&st, agent_id, port));
    }
    let limit = limit(query.as_deref())?;
    let mut requests = st.inspection.list(agent_id, port).await;
    requests.truncate(limit);
    Ok(Json(RequestsJson { requests }).into_response())
}

/// `?limit=N` (1 to 10,000; default all).
fn limit(query: Option<&str>) -> Result<usize, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| ApiError::invalid_field("query", "is not a valid query string"))?;
    match pairs.iter().find(|(k, _)| k == "limit") {
        None => Ok(usize::MAX),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid_field(
                "limit",
                format!("{v:?} is not a number from 1 to 10000"),
            )),
        },
    }
}

fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// Server-sent events: `event: exchange` with the JSON record, for each new
/// exchange of this port; a comment line every 15 s meanwhile.
fn live(st: &ControlState, agent_id: i64, port: u16) -> Response {
    let mut feed = st.inspection.follow(agent_id, port);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        if tx.send(Bytes::from_static(b": live\n\n")).await.is_err() {
            return;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let line = tokio::select! {
                got = feed.next() => match got {
                    Some(Live::Exchange(e)) => {
                        let json = serde_json::to_string(&*e).unwrap_or_default();
                        format!("event: exchange\nid: {}\ndata: {json}\n\n", e.id)
                    }
                    Some(Live::Lagged(n)) => {
                        format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n")
                    }
                    None => return,
                },
                _ = keepalive.tick() => ": keep-alive\n\n".to_owned(),
                _ = tx.closed() => return,
            };
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One recorded exchange.
#[utoipa::path(get, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/requests/{id}", tag = "inspector",
    summary = "One recorded request and its response (owner and site admins)",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("port" = u16, Path, description = "The port, 1-65535"), ("id" = String, Path, description = "The recorded request's id")),
    responses((status = 200, description = "The exchange"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such port, or not yours to inspect (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn get_one(
    State(st): State<ControlState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((user, workspace, agent, port, id)): ApiPath<(String, String, String, u16, String)>,
) -> Result<Json<Exchange>, ApiError> {
    let path = (user, workspace, agent, port);
    let agent_id = inspectable(&st, &caller, &headers, &path).await?;
    find(&st, agent_id, port, &id).await.map(Json)
}

async fn find(st: &ControlState, agent_id: i64, port: u16, id: &str) -> Result<Exchange, ApiError> {
    st.inspection
        .list(agent_id, port)
        .await
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no recorded request {id} on this port (the edges keep only the most recent ones)"
            ))
        })
}

/// Sends a recorded request again, through the tunnel, as the port's
/// owner; answers with the new exchange (also recorded).
#[utoipa::path(post, path = "/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/requests/{id}/replay", tag = "inspector",
    summary = "Send a recorded request again as the port's owner, optionally edited (method, path, headers, body)",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name"), ("agent" = String, Path, description = "The agent name"), ("port" = u16, Path, description = "The port, 1-65535"), ("id" = String, Path, description = "The recorded request's id")),
    responses((status = 201, description = "The new exchange"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such port, or not yours to inspect (the same answer)", body = ErrorBody), (status = 422, description = "An edit is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn replay(
    State(st): State<ControlState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((user, workspace, agent, port, id)): ApiPath<(String, String, String, u16, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<Exchange>), ApiError> {
    let path = (user, workspace, agent, port);
    let agent_id = inspectable(&st, &caller, &headers, &path).await?;
    // An empty body replays as recorded; otherwise it is a JSON object.
    let edits = if body.iter().all(u8::is_ascii_whitespace) {
        Replay::default()
    } else {
        let req = axum::http::Request::builder()
            .header(header::CONTENT_TYPE, content_type(&headers))
            .body(Body::from(body))
            .map_err(|e| ApiError::internal(&e))?;
        let ApiJson(edits) =
            <ApiJson<Replay> as axum::extract::FromRequest<()>>::from_request(req, &()).await?;
        edits
    };
    let original = find(&st, agent_id, port, &id).await?;
    let ws = st
        .store
        .workspace_by_name(&path.0, &path.1)
        .await
        .map_err(ApiError::from)?;
    let owner = st
        .catalog
        .user(ws.owner_id)
        .ok_or_else(|| ApiError::not_found("the port's owner no longer exists"))?;
    let owner = Visitor {
        user_id: owner.id,
        username: owner.username.clone(),
        email: owner.email.clone(),
        admin: owner.admin,
        organization: owner.organization.clone(),
        group_ids: st.catalog.group_ids_of(owner.id),
    };
    let what = format!("{}/{}/{}:{port} {id}", path.0, path.1, path.2);
    match st.inspection.replay(original, edits, owner).await {
        Ok(exchange) => {
            st.audit(&caller.0.username, "request.replayed", &what)
                .await;
            Ok((StatusCode::CREATED, Json(exchange)))
        }
        Err(ReplayRefused::Invalid(m)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_replay",
            m,
        )),
        Err(ReplayRefused::Unreachable(m)) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, "replay_failed", m))
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_parse_or_name_the_problem() {
        assert_eq!(super::limit(None).unwrap(), usize::MAX);
        assert_eq!(super::limit(Some("limit=5")).unwrap(), 5);
        for bad in ["limit=0", "limit=x", "limit=10001", "limit=-1"] {
            assert!(super::limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
