//! `/share-links`: links to one port that anyone holding them may open until
//! they expire, run out of uses, or are revoked. Owners and site admins make
//! them; their creator, the workspace owner and site admins revoke them.

use super::access::agent_of;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::ControlState;
use crate::catalog::Change;
use crate::config::DEFAULT_LINK_TTL_SECS;
use crate::store::{LinkRow, StoreError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `POST /share-links` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateLink {
    user: String,
    workspace: String,
    agent: String,
    port: u16,
    #[serde(default)]
    ttl_seconds: Option<i64>,
    #[serde(default)]
    max_uses: Option<i64>,
}

/// `POST /share-links` answer; the URL with its token is shown only here.
#[derive(Serialize)]
pub(crate) struct CreatedLink {
    id: String,
    url: String,
    expires_at: String,
    max_uses: Option<i64>,
}

/// A link as listed (without its token, which berth does not keep).
#[derive(Serialize, Debug)]
pub(crate) struct LinkJson {
    id: String,
    url: String,
    user: String,
    workspace: String,
    agent: String,
    port: i64,
    created_at: String,
    expires_at: String,
    max_uses: Option<i64>,
    uses: i64,
    revoked: bool,
    expired: bool,
    /// `"active"`, `"used_up"`, `"expired"` or `"revoked"` (see [`status`]).
    status: LinkStatus,
}

/// Where a link stands, as the dashboard and CLI show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LinkStatus {
    /// Opens the app.
    Active,
    /// Opened `max_uses` times: no more.
    UsedUp,
    /// Past its expiry.
    Expired,
    /// Revoked by its creator, the owner or an admin.
    Revoked,
}

/// A link's status: revoked wins (a person acted), then used up (uses
/// happen only before expiry, so that came first), then expired.
pub(crate) fn status(
    revoked: bool,
    expires_at: i64,
    now: i64,
    uses: i64,
    max_uses: Option<i64>,
) -> LinkStatus {
    if revoked {
        LinkStatus::Revoked
    } else if max_uses.is_some_and(|m| uses >= m) {
        LinkStatus::UsedUp
    } else if expires_at <= now {
        LinkStatus::Expired
    } else {
        LinkStatus::Active
    }
}

pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn app_url(st: &ControlState, row: &LinkRow) -> String {
    st.app_urls.url(&format!(
        "{}--{}--{}--{}",
        row.port, row.agent, row.workspace, row.owner
    ))
}

fn link_json(st: &ControlState, row: LinkRow, now: i64) -> LinkJson {
    LinkJson {
        status: status(row.revoked, row.expires_at, now, row.uses, row.max_uses),
        url: format!("{}/", app_url(st, &row)),
        expired: row.expires_at <= now,
        expires_at: rfc3339(row.expires_at),
        id: row.id,
        user: row.owner,
        workspace: row.workspace,
        agent: row.agent,
        port: row.port,
        created_at: row.created_at,
        max_uses: row.max_uses,
        uses: row.uses,
        revoked: row.revoked,
    }
}

/// Makes a share link.
#[utoipa::path(post, path = "/share-links", tag = "sharing",
    summary = "Mint a share link to one port; its URL (with the token) is in this answer only",
    request_body = CreateLink,
    responses((status = 201, description = "id, url, expires_at, max_uses"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create(
    State(st): State<ControlState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateLink>,
) -> Result<impl IntoResponse, ApiError> {
    if req.port == 0 {
        return Err(ApiError::invalid_field("port", "must be 1-65535"));
    }
    let max_ttl = st.sharing.max_link_ttl_secs;
    // Without a ttl, the default, cut to what the policy allows.
    let ttl = req
        .ttl_seconds
        .unwrap_or(DEFAULT_LINK_TTL_SECS.min(max_ttl));
    if ttl < 1 || ttl > max_ttl {
        return Err(ApiError::invalid_field(
            "ttl_seconds",
            format!("must be between 1 and {max_ttl} (sharing.max_link_ttl_secs)"),
        ));
    }
    if req.max_uses.is_some_and(|n| n < 1) {
        return Err(ApiError::invalid_field(
            "max_uses",
            "must be at least 1 (or left out for no limit)",
        ));
    }
    let (_, agent) = agent_of(&st, &caller, &req.user, &req.workspace, &req.agent).await?;
    let expires_at = now_unix() + ttl;
    let (row, secret) = st
        .store
        .create_link(agent.id, req.port, caller.0.id, expires_at, req.max_uses)
        .await?;
    if let Some(link) = row.to_catalog() {
        st.apply(Change::Link(link)).await;
    }
    let what = format!(
        "{} for {}/{}/{}:{} ({ttl} s)",
        row.id, row.owner, row.workspace, row.agent, row.port
    );
    st.audit(&caller.0.username, "link.created", &what).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedLink {
            url: format!("{}/?berth_share={}", app_url(&st, &row), secret.expose()),
            expires_at: rfc3339(row.expires_at),
            max_uses: row.max_uses,
            id: row.id,
        }),
    ))
}

/// The caller's links (all of them for site admins).
#[utoipa::path(get, path = "/share-links", tag = "sharing",
    summary = "The caller's share links (every one for site admins)",
    responses((status = 200, description = "Links with uses, expiry and revocation"), (status = 401, description = "No or an invalid API token", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    caller: Caller,
) -> Result<Json<Vec<LinkJson>>, ApiError> {
    let by = (!caller.0.admin).then_some(caller.0.id);
    let now = now_unix();
    let rows = st.store.list_links(by).await?;
    Ok(Json(
        rows.into_iter().map(|r| link_json(&st, r, now)).collect(),
    ))
}

/// Revokes a link: every visitor who redeemed it is cut off at once.
#[utoipa::path(delete, path = "/share-links/{id}", tag = "sharing",
    summary = "Revoke a share link; its visitors lose access within seconds",
    params(("id" = String, Path, description = "The link id")),
    responses((status = 204, description = "Revoked"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn revoke(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let hidden = || ApiError::not_found(format!("no share link {id}, or not yours"));
    let row = match st.store.link(&id).await {
        Ok(r) => r,
        Err(StoreError::NotFound(_)) => return Err(hidden()),
        Err(e) => return Err(e.into()),
    };
    let owner_id = st.catalog.workspace_owner_of_agent(row.agent_id);
    if !(caller.0.admin || row.created_by == caller.0.id || owner_id == Some(caller.0.id)) {
        return Err(hidden());
    }
    st.store.revoke_link(&id).await?;
    st.apply(Change::LinkRemoved(id.clone())).await;
    st.audit(&caller.0.username, "link.revoked", &id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Redeems a share-link token (one use counted in the store) and records
/// `link.redeemed` in the audit log with the visitor's address and, for a
/// regional edge, its region. `None` when the link is not live.
pub(crate) async fn redeem_and_audit(
    store: &crate::store::Store,
    hash: &crate::auth::TokenHash,
    now: i64,
    source: &str,
    region: Option<&str>,
) -> Result<Option<crate::catalog::Link>, crate::store::StoreError> {
    let Some(link) = store.redeem_link(hash, now).await? else {
        return Ok(None);
    };
    let mut target = format!(
        "link {} (agent {} port {})",
        link.id, link.agent_id, link.port
    );
    if let Some(r) = region {
        target.push_str(&format!(" via {r}"));
    }
    tracing::info!(target: "berth::audit", actor = "visitor", action = "link.redeemed", target, source);
    if let Err(e) = store
        .record_audit("visitor", "link.redeemed", &target, source)
        .await
    {
        tracing::error!(error = %e, "cannot store audit event");
    }
    Ok(Some(link))
}

#[cfg(test)]
mod tests {
    use super::{status, LinkStatus::*};

    #[test]
    fn a_links_status_names_why_it_no_longer_opens() {
        let now = 1_000;
        // (revoked, expires_at, uses, max_uses) -> status
        for (revoked, exp, uses, max, want) in [
            (false, now + 1, 0, None, Active),
            (false, now + 1, 1_000_000, None, Active),
            (false, now + 1, 2, Some(3), Active),
            (false, now + 1, 3, Some(3), UsedUp),
            (false, now + 1, 4, Some(3), UsedUp),
            (false, now + 1, 0, Some(0), UsedUp),
            (false, now, 0, None, Expired),
            (false, now - 1, 3, Some(3), UsedUp),
            (false, now - 1, 2, Some(3), Expired),
            (false, i64::MIN, 0, None, Expired),
            (true, now + 1, 0, None, Revoked),
            (true, now - 1, 3, Some(3), Revoked),
        ] {
            assert_eq!(
                status(revoked, exp, now, uses, max),
                want,
                "revoked {revoked}, expires {exp}, uses {uses}/{max:?}"
            );
        }
    }
}
