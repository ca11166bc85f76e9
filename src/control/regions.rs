//! Regions (SPEC §6): the registry admins manage (`/regions`), which of
//! them are healthy, and that list for agents (`/agent/regions`). What the
//! regions' edges themselves call is in [`super::edges`].

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use crate::auth::{token, TokenHash, TokenKind};
use crate::host::Wildcard;
use crate::protocol::regions::{Candidate, CONTROL};
use crate::store::RegionRow;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

/// A region is healthy while its edges' last heartbeat is this recent.
pub(crate) const HEALTHY_WITHIN_SECS: i64 = 30;

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `POST /regions` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRegion {
    name: String,
    url: String,
    wildcard: String,
}

/// A region as `GET /regions` shows it (SPEC §6).
#[derive(Serialize, Debug)]
pub(crate) struct RegionJson {
    name: String,
    url: String,
    wildcard: String,
    healthy: bool,
    /// RFC 3339, UTC.
    last_heartbeat: Option<String>,
    agents: i64,
    version: Option<String>,
}

impl RegionJson {
    fn from_row(r: RegionRow, now: i64) -> Self {
        RegionJson {
            healthy: is_healthy(&r, now),
            last_heartbeat: r.last_heartbeat.and_then(|t| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .ok()?
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            name: r.name,
            url: r.url,
            wildcard: r.wildcard,
            agents: r.agents,
            version: r.version,
        }
    }
}

/// `POST /regions` answer: the region and its token, shown once.
#[derive(Serialize)]
pub(crate) struct CreatedRegion {
    #[serde(flatten)]
    region: RegionJson,
    region_token: String,
}

/// Creates a region (admins only); its token is in the answer, once.
#[utoipa::path(post, path = "/regions", tag = "regions",
    summary = "Create a region and its token, shown once (site admins)",
    request_body = CreateRegion,
    responses((status = 201, description = "The region and region_token"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<CreateRegion>,
) -> Result<impl IntoResponse, ApiError> {
    validate::name("name", &req.name)?;
    if req.name == CONTROL {
        return Err(ApiError::invalid_field(
            "name",
            "\"control\" is reserved for the control plane's own edge",
        ));
    }
    let url_ok = req
        .url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
    if !url_ok {
        return Err(ApiError::invalid_field(
            "url",
            "must be the https:// URL of the region's edges, e.g. https://eu.apps.example.com",
        ));
    }
    Wildcard::parse(&req.wildcard).map_err(|e| ApiError::invalid_field("wildcard", e))?;
    let (row, secret) = st
        .store
        .create_region(&req.name, req.url.trim_end_matches('/'), &req.wildcard)
        .await?;
    st.audit(&caller.0.username, "region.created", &row.name)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedRegion {
            region: RegionJson::from_row(row, now_unix()),
            region_token: secret.expose().to_owned(),
        }),
    ))
}

/// Every region with its health (any signed-in user: the dashboard offers
/// the nearest).
#[utoipa::path(get, path = "/regions", tag = "regions",
    summary = "Regions with their health",
    responses((status = 200, description = "Regions"), (status = 401, description = "No or an invalid API token", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    _caller: Caller,
) -> Result<Json<Vec<RegionJson>>, ApiError> {
    let now = now_unix();
    let rows = st.store.list_regions().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RegionJson::from_row(r, now))
            .collect(),
    ))
}

/// Deletes a region (admins only); its edges are refused from then on.
#[utoipa::path(delete, path = "/regions/{name}", tag = "regions",
    summary = "Delete a region; its edges are refused from then on (site admins)",
    params(("name" = String, Path, description = "The region name")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn delete(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.store.delete_region(&name).await?;
    st.audit(&caller.0.username, "region.deleted", &name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A region is healthy while one of its edges beat within
/// [`HEALTHY_WITHIN_SECS`] of `now`.
fn is_healthy(r: &RegionRow, now: i64) -> bool {
    r.last_heartbeat
        .is_some_and(|t| now - t <= HEALTHY_WITHIN_SECS)
}

/// How app URLs look in each healthy region, by name.
pub(crate) fn healthy_app_urls(rows: Vec<RegionRow>) -> Vec<(String, super::AppUrls)> {
    let now = now_unix();
    rows.into_iter()
        .filter(|r| is_healthy(r, now))
        .filter_map(|r| {
            let port = r.url.parse::<http::Uri>().ok()?.port_u16().unwrap_or(443);
            Some((r.name, super::AppUrls::from_wildcard(&r.wildcard, port)))
        })
        .collect()
}

/// The regions whose edges sent a heartbeat lately, as agents see them.
pub(crate) fn healthy(rows: Vec<RegionRow>) -> Vec<Candidate> {
    let now = now_unix();
    rows.into_iter()
        .filter(|r| is_healthy(r, now))
        .map(|r| Candidate {
            name: r.name,
            url: r.url,
        })
        .collect()
}

/// `GET /agent/regions`: the healthy regions, for an agent (its own token)
/// choosing where to dial.
#[utoipa::path(get, path = "/agent/regions", tag = "internal",
    summary = "For agents (agent token): the healthy regions to dial",
    responses((status = 200, description = "name and url of each region"), (status = 401, description = "Not an agent token", body = ErrorBody)),
)]
pub(crate) async fn for_agent(
    State(st): State<ControlState>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Vec<Candidate>>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthenticated)?;
    if !token::is_well_formed(token, TokenKind::Agent)
        || st.catalog.agent_for_token(&TokenHash::of(token)).is_none()
    {
        return Err(ApiError::invalid_token());
    }
    Ok(Json(healthy(st.store.list_regions().await?)))
}
