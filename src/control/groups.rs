//! Berth groups (`/groups`, admins only): create, list, rename and delete
//! groups, add and remove members by user name. A share may name groups;
//! their members get through whatever the share's level. Every change goes
//! to the edges as one [`Change::Group`] with the group whole.

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath};
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use crate::catalog::Change;
use crate::store::{GroupRow, MemberSource, StoreError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

/// `POST /groups` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateGroup {
    name: String,
    /// Members to start with, by user name.
    #[serde(default)]
    members: Vec<String>,
}

/// `PATCH /groups/{group}` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateGroup {
    name: String,
}

/// A member as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct MemberJson {
    username: String,
    /// `berth` (an admin added them), `oidc` (the sign-in provider's
    /// groups claim did) or `github` (their GitHub teams did), at their
    /// last sign-in.
    source: MemberSource,
}

/// A group as the API shows it.
#[derive(Serialize, Debug)]
pub(crate) struct GroupJson {
    name: String,
    members: Vec<MemberJson>,
    created_at: String,
}

impl From<GroupRow> for GroupJson {
    fn from(g: GroupRow) -> Self {
        GroupJson {
            name: g.name,
            members: g
                .members
                .into_iter()
                .map(|(_, username, source)| MemberJson { username, source })
                .collect(),
            created_at: g.created_at,
        }
    }
}

/// The group named, or a 404 saying so.
async fn group_named(st: &ControlState, name: &str) -> Result<GroupRow, ApiError> {
    st.store.group_by_name(name).await.map_err(|e| match e {
        StoreError::NotFound(_) => ApiError::not_found(format!(
            "no group named {name:?} (`berth groups` lists them)"
        )),
        e => e.into(),
    })
}

/// The id of the user named, or a 422 naming the field and the user.
pub(crate) fn user_id_named(st: &ControlState, field: &str, name: &str) -> Result<i64, ApiError> {
    st.catalog.user_id_by_name(name).ok_or_else(|| {
        ApiError::invalid_field(field, format!("names {name:?}, and there is no such user"))
    })
}

/// Tells the edges what the group is now.
async fn publish(st: &ControlState, id: i64) -> Result<GroupRow, ApiError> {
    let row = st.store.group(id).await?;
    st.apply(Change::Group(row.to_catalog())).await;
    Ok(row)
}

/// Creates a group (with members, if given).
#[utoipa::path(post, path = "/groups", tag = "groups",
    summary = "Create a group, with members if given (site admins)",
    request_body = CreateGroup,
    responses((status = 201, description = "The group with its members"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "A field is invalid or a member does not exist; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, ApiError> {
    validate::group_name("name", &req.name)?;
    let members = req
        .members
        .iter()
        .map(|m| user_id_named(&st, "members", m))
        .collect::<Result<Vec<_>, _>>()?;
    let group = st.store.create_group(&req.name).await?;
    for m in members {
        st.store.add_group_member(group.id, m).await?;
    }
    let row = publish(&st, group.id).await?;
    st.audit(&caller.0.username, "group.created", &row.name)
        .await;
    Ok((StatusCode::CREATED, Json(GroupJson::from(row))))
}

/// Every group with its members.
#[utoipa::path(get, path = "/groups", tag = "groups",
    summary = "Every group with its members (site admins)",
    responses((status = 200, description = "Groups"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    _admin: Admin,
) -> Result<Json<Vec<GroupJson>>, ApiError> {
    let rows = st.store.list_groups().await?;
    Ok(Json(rows.into_iter().map(GroupJson::from).collect()))
}

/// One group with its members.
#[utoipa::path(get, path = "/groups/{group}", tag = "groups",
    summary = "One group with its members (site admins)",
    params(("group" = String, Path, description = "The group name")),
    responses((status = 200, description = "The group"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody)),
)]
pub(crate) async fn show(
    State(st): State<ControlState>,
    _admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<GroupJson>, ApiError> {
    Ok(Json(group_named(&st, &name).await?.into()))
}

/// Renames a group: the shares that name it keep it (by id), and a new
/// group given the old name gets none of them.
#[utoipa::path(patch, path = "/groups/{group}", tag = "groups",
    summary = "Rename a group; shares that name it keep it (site admins)",
    request_body = UpdateGroup,
    params(("group" = String, Path, description = "The group name")),
    responses((status = 200, description = "The renamed group"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody), (status = 409, description = "The new name is taken", body = ErrorBody), (status = 422, description = "The name is invalid", body = ErrorBody)),
)]
pub(crate) async fn rename(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateGroup>,
) -> Result<Json<GroupJson>, ApiError> {
    validate::group_name("name", &req.name)?;
    let group = group_named(&st, &name).await?;
    st.store.rename_group(&name, &req.name).await?;
    let row = publish(&st, group.id).await?;
    st.audit(
        &caller.0.username,
        "group.renamed",
        &format!("{name} -> {}", row.name),
    )
    .await;
    Ok(Json(row.into()))
}

/// Deletes a group: it drops out of every share that named it.
#[utoipa::path(delete, path = "/groups/{group}", tag = "groups",
    summary = "Delete a group; it drops out of every share that named it (site admins)",
    params(("group" = String, Path, description = "The group name")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such group", body = ErrorBody)),
)]
pub(crate) async fn delete(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let group = group_named(&st, &name).await?;
    st.store.delete_group(&name).await?;
    st.apply(Change::GroupRemoved(group.id)).await;
    st.audit(&caller.0.username, "group.deleted", &name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts a user in a group (as an admin's choice: the sign-in provider's
/// claim no longer takes them out).
#[utoipa::path(put, path = "/groups/{group}/members/{user}", tag = "groups",
    summary = "Put a user in a group (site admins)",
    params(("group" = String, Path, description = "The group name"), ("user" = String, Path, description = "The user name")),
    responses((status = 200, description = "The group with its members"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such group or user", body = ErrorBody)),
)]
pub(crate) async fn add_member(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath((name, user)): ApiPath<(String, String)>,
) -> Result<Json<GroupJson>, ApiError> {
    let group = group_named(&st, &name).await?;
    let user_id = st
        .catalog
        .user_id_by_name(&user)
        .ok_or_else(|| ApiError::not_found(format!("no user named {user:?}")))?;
    st.store.add_group_member(group.id, user_id).await?;
    let row = publish(&st, group.id).await?;
    st.audit(
        &caller.0.username,
        "group.member_added",
        &format!("{user} to {name}"),
    )
    .await;
    Ok(Json(row.into()))
}

/// Takes a user out of a group; the edges stop letting them through where
/// only the group did, open connections included, within seconds.
#[utoipa::path(delete, path = "/groups/{group}/members/{user}", tag = "groups",
    summary = "Take a user out of a group (site admins)",
    params(("group" = String, Path, description = "The group name"), ("user" = String, Path, description = "The user name")),
    responses((status = 200, description = "The group with its members"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such group or user", body = ErrorBody)),
)]
pub(crate) async fn remove_member(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath((name, user)): ApiPath<(String, String)>,
) -> Result<Json<GroupJson>, ApiError> {
    let group = group_named(&st, &name).await?;
    let missing = || ApiError::not_found(format!("{user:?} is not a member of {name:?}"));
    let user_id = st.catalog.user_id_by_name(&user).ok_or_else(missing)?;
    if !st.store.remove_group_member(group.id, user_id).await? {
        return Err(missing());
    }
    let row = publish(&st, group.id).await?;
    st.audit(
        &caller.0.username,
        "group.member_removed",
        &format!("{user} from {name}"),
    )
    .await;
    Ok(Json(row.into()))
}

/// Makes a user's group memberships from a sign-in provider (`source`:
/// the ID token's groups claim, or GitHub teams) what it says now (creating
/// groups it names that do not exist yet), and tells the edges. Names that
/// are not valid group names are skipped, and at most [`MAX_CLAIM_GROUPS`]
/// are taken.
pub(crate) async fn sync_from_provider(
    st: &ControlState,
    source: MemberSource,
    user_id: i64,
    username: &str,
    names: &[String],
) -> Result<(), ApiError> {
    let mut wanted: Vec<String> = Vec::new();
    for n in names {
        if let Some(problem) = validate::group_name_problem(n) {
            tracing::warn!(user = username, group = %n.escape_debug(), problem, "a group in the sign-in provider's claim is skipped");
        } else if !wanted.contains(n) {
            wanted.push(n.clone());
        }
    }
    if wanted.len() > MAX_CLAIM_GROUPS {
        tracing::warn!(
            user = username,
            groups = wanted.len(),
            "the sign-in provider's groups claim has more than {MAX_CLAIM_GROUPS} groups; the rest are skipped"
        );
        wanted.truncate(MAX_CLAIM_GROUPS);
    }
    let changed = st
        .store
        .sync_provider_groups(user_id, source, &wanted)
        .await?;
    for id in changed {
        publish(st, id).await?;
    }
    Ok(())
}

/// Most groups taken from one sign-in's claim.
pub(crate) const MAX_CLAIM_GROUPS: usize = 256;
