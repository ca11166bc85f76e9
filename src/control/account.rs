//! `PUT /me/password`: a signed-in user changes their own password. The
//! current one is checked through the sign-in limiter, so a stolen token
//! cannot be used to guess it quickly.

use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::login::Refusal;
use super::openapi::ErrorBody;
use super::{validate, ControlState};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

/// `PUT /me/password` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// Replaces the caller's password after checking the current one; API
/// tokens already issued keep working.
#[utoipa::path(put, path = "/me/password", tag = "account",
    summary = "Change one's own password (the current one is checked, rate-limited like sign-in)",
    request_body = ChangePassword,
    responses((status = 204, description = "Changed"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 403, description = "The current password is wrong", body = ErrorBody), (status = 429, description = "Too many attempts", body = ErrorBody), (status = 422, description = "A field is invalid; the message names it", body = ErrorBody)),
)]
pub(crate) async fn change_password(
    State(st): State<ControlState>,
    caller: Caller,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    let username = caller.0.username.clone();
    validate::password(&req.new_password)
        .map_err(|_| ApiError::invalid_field("new_password", password_rule()))?;
    match st
        .login
        .attempt(&st, &username, &req.current_password, "passwd")
        .await
    {
        Ok(_) => {}
        Err(Refusal::WrongCredentials) => return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is not right (an admin can reset it: berth admin reset-password)",
        )),
        Err(other) => return Err(other.into()),
    }
    st.store.set_password(&username, &req.new_password).await?;
    st.audit(&username, "user.password_changed", &username)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The rule [`validate::password`] applies, as a sentence.
fn password_rule() -> String {
    format!(
        "must have {} to {} characters",
        validate::MIN_PASSWORD,
        validate::MAX_PASSWORD
    )
}
