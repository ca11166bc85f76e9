//! `POST /login`, `GET /me` and the admin-only `/users` endpoints.

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use crate::catalog::Change;
use crate::store::{NewUser, Role, UserRow};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};

/// `POST /login` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    username: String,
    password: String,
}

/// `POST /login` answer: a new API token.
#[derive(Serialize)]
pub(crate) struct TokenResponse {
    token: String,
}

/// `GET /me` answer.
#[derive(Serialize)]
pub(crate) struct MeResponse {
    username: String,
    email: String,
    role: Role,
    organization: Option<String>,
    /// What this deployment lets owners share, so clients offer only that.
    sharing: SharingJson,
}

/// The sharing policy as `GET /me` shows it (`[sharing]` in the config).
#[derive(Serialize)]
pub(crate) struct SharingJson {
    /// The levels the caller's own ports may be shared at (`sharing.max_level`,
    /// and `organization` only with an organization).
    levels: Vec<crate::auth::ShareLevel>,
    /// The longest a share link may live (`sharing.max_link_ttl_secs`).
    max_link_ttl_secs: i64,
    /// The longest a `public` or `authenticated` share may last, or null.
    max_share_ttl_secs: Option<i64>,
}

/// `POST /users` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUser {
    username: String,
    email: String,
    password: String,
    role: String,
    #[serde(default)]
    organization: Option<String>,
}

/// A user as the API shows it (never the password hash).
#[derive(Serialize, Debug)]
pub(crate) struct UserJson {
    username: String,
    email: String,
    role: Role,
    organization: Option<String>,
    created_at: String,
}

impl From<UserRow> for UserJson {
    fn from(u: UserRow) -> Self {
        UserJson {
            username: u.username,
            email: u.email,
            role: u.role,
            organization: u.organization,
            created_at: u.created_at,
        }
    }
}

/// Exchanges a user name and password for a new API token (limited per
/// source and user name, see [`super::login`]).
#[utoipa::path(post, path = "/login", tag = "account",
    summary = "Exchange a user name and password for a new API token",
    request_body = LoginRequest,
    responses((status = 200, description = "A new API token: {\"token\": \"berth_api_...\"}"), (status = 401, description = "Wrong user name or password", body = ErrorBody), (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody)),
)]
pub(crate) async fn login(
    State(st): State<ControlState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let user = st
        .login
        .attempt(&st, &req.username, &req.password, "api")
        .await?;
    let (row, secret) = st.store.create_api_token(user.id, "login").await?;
    // The catalog may have missed the user only if it was created behind
    // control's back; make sure the token resolves.
    if st.catalog.user(user.id).is_none() {
        st.apply(Change::User(user.to_catalog())).await;
    }
    st.apply(Change::ApiToken {
        hash: row.token_hash,
        user_id: user.id,
    })
    .await;
    st.audit(&user.username, "token.created", "login").await;
    Ok(Json(TokenResponse {
        token: secret.expose().to_owned(),
    }))
}

/// The caller.
#[utoipa::path(get, path = "/me", tag = "account",
    summary = "Who the token belongs to",
    responses((status = 200, description = "username, email, role, organization, and sharing: the levels, link and share lifetimes the policy allows"), (status = 401, description = "No or an invalid API token", body = ErrorBody)),
)]
pub(crate) async fn me(State(st): State<ControlState>, Caller(u): Caller) -> Json<MeResponse> {
    Json(MeResponse {
        sharing: SharingJson {
            levels: st.sharing.levels_for(u.organization.is_some()),
            max_link_ttl_secs: st.sharing.max_link_ttl_secs,
            max_share_ttl_secs: st.sharing.max_share_ttl_secs,
        },
        username: u.username,
        email: u.email,
        role: if u.admin { Role::Admin } else { Role::Member },
        organization: u.organization,
    })
}

/// Creates a user (admins only).
#[utoipa::path(post, path = "/users", tag = "users",
    summary = "Create a user (site admins)",
    request_body = CreateUser,
    responses((status = 201, description = "The user"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 409, description = "The name is taken", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn create(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<impl IntoResponse, ApiError> {
    validate::name("username", &req.username)?;
    validate::label_fits(
        "username",
        &req.username,
        ("a", "a", &req.username),
        st.app_urls.label_budget(),
    )?;
    validate::email(&req.email)?;
    validate::password(&req.password)?;
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::invalid_field("role", "must be \"admin\" or \"member\""))?;
    if let Some(org) = &req.organization {
        validate::organization(org)?;
    }
    let user = st
        .store
        .create_user(NewUser {
            username: req.username,
            email: req.email,
            password: req.password,
            role,
            organization: req.organization,
        })
        .await?;
    st.apply(Change::User(user.to_catalog())).await;
    st.audit(&caller.0.username, "user.created", &user.username)
        .await;
    Ok((StatusCode::CREATED, Json(UserJson::from(user))))
}

/// Every user (admins only).
#[utoipa::path(get, path = "/users", tag = "users",
    summary = "Every user (site admins)",
    responses((status = 200, description = "The users, by name"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody)),
)]
pub(crate) async fn list(
    State(st): State<ControlState>,
    _admin: Admin,
) -> Result<Json<Vec<UserJson>>, ApiError> {
    let users = st.store.list_users().await?;
    Ok(Json(users.into_iter().map(UserJson::from).collect()))
}

/// `PATCH /users/{user}` body: only the fields given change;
/// `"organization": null` clears it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateUser {
    #[serde(default)]
    role: Option<String>,
    /// A name, or null to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    organization: Option<Option<String>>,
}

/// Tells a field that is `null` (`Some(None)`) from one that is absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Changes a user's role or organization (admins only; not one's own role).
/// The edge sees the change at once: organization shares follow it.
#[utoipa::path(patch, path = "/users/{user}", tag = "users",
    summary = "Change a user's role or organization (site admins)",
    request_body = UpdateUser,
    params(("user" = String, Path, description = "The user name")),
    responses((status = 200, description = "The user"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 409, description = "Taking away one's own admin role", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn update(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<UserJson>, ApiError> {
    let role =
        match req.role.as_deref() {
            None => None,
            Some(r) => Some(Role::parse(r).ok_or_else(|| {
                ApiError::invalid_field("role", "must be \"admin\" or \"member\"")
            })?),
        };
    if let Some(Some(org)) = &req.organization {
        validate::organization(org)?;
    }
    if username == caller.0.username && role == Some(Role::Member) {
        return Err(ApiError::conflict(
            "you cannot take away your own admin role; ask another admin",
        ));
    }
    let current = st.store.user_by_name(&username).await?;
    let organization = match req.organization {
        Some(org) => org,
        None => current.organization,
    };
    let user = st
        .store
        .update_user(&username, role, organization.as_deref())
        .await?;
    st.apply(Change::User(user.to_catalog())).await;
    let what = format!(
        "{} role={} organization={}",
        user.username,
        user.role.as_str(),
        user.organization.as_deref().unwrap_or("-")
    );
    st.audit(&caller.0.username, "user.updated", &what).await;
    Ok(Json(UserJson::from(user)))
}

/// Deletes a user with their tokens, workspaces and agents (admins only; not
/// oneself, so that a deployment keeps an admin who can undo mistakes).
#[utoipa::path(delete, path = "/users/{user}", tag = "users",
    summary = "Delete a user with their tokens and workspaces (site admins; not oneself)",
    params(("user" = String, Path, description = "The user name")),
    responses((status = 204, description = "Deleted"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody), (status = 409, description = "Deleting oneself", body = ErrorBody)),
)]
pub(crate) async fn delete(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if username == caller.0.username {
        return Err(ApiError::conflict(
            "you cannot delete your own account; ask another admin",
        ));
    }
    let user = st.store.delete_user(&username).await?;
    st.apply(Change::UserRemoved(user.id)).await;
    st.audit(&caller.0.username, "user.deleted", &user.username)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log, newest first (admins only): `?limit=N`, 1 to 1,000, default 200.
#[utoipa::path(get, path = "/audit", tag = "users",
    summary = "The audit log, newest first (site admins)",
    params(("limit" = Option<i64>, Query, description = "1 to 1000, default 200")),
    responses((status = 200, description = "Audit events"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "Not a site admin", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn audit(
    State(st): State<ControlState>,
    _admin: Admin,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<Vec<crate::store::AuditRow>>, ApiError> {
    let limit = match query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("limit="))
    {
        None => 200,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", "must be a number between 1 and 1000")
            })?,
    };
    Ok(Json(st.store.list_audit(limit).await?))
}
