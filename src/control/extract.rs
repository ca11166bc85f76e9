//! Request extractors whose failures are always [`ApiError`]s, so axum's
//! plain-text rejections never reach a client.

use super::error::ApiError;
use super::ControlState;
use crate::auth::{token, TokenHash, TokenKind};
use crate::catalog;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

/// A JSON request body. Unlike `axum::Json`, every failure is an [`ApiError`]:
/// 415 for a body not declared as JSON, 413 past the body limit, 400
/// `invalid_json` for a body that does not parse, 422 `invalid_field` for a
/// well-formed body whose fields do not fit (the message names the field).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the body is larger than the limit of {} bytes",
                        super::BODY_LIMIT
                    ),
                )
            } else {
                ApiError::invalid_json(format!("the body could not be read: {r}"))
            }
        })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid_json(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::invalid_field("body", "must be a JSON object"));
        }
        // Parse again through axum, which tracks the path of a failing field.
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(t)) => Ok(ApiJson(t)),
            Err(rejection) => {
                let detail = std::error::Error::source(&rejection)
                    .map_or_else(|| rejection.body_text(), |s| s.to_string());
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_field",
                    field_first(&strip_position(&detail)),
                ))
            }
        }
    }
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Drops serde_json's " at line L column C" (the body is one small document).
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i)
            if msg[i + 9..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            msg[..i].to_owned()
        }
        _ => msg.to_owned(),
    }
}

/// Rewrites serde's "missing field `x`" as "x: is required", so that every
/// 422 message starts with the field's name.
fn field_first(msg: &str) -> String {
    msg.strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
        .map_or_else(|| msg.to_owned(), |field| format!("{field}: is required"))
}

/// The signed-in caller, from `Authorization: Bearer <berth_api_...>` or the
/// control host's session cookie, looked up in the catalog (never the database). 401 `unauthenticated` without the
/// header, 401 `invalid_token` for anything that names nobody.
#[derive(Clone, Debug)]
pub struct Caller(pub catalog::User);

impl Caller {
    /// 403 unless the caller is a site admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("only site admins may do this"))
        }
    }

    /// Whether the caller may see and manage what `owner_id` owns.
    pub fn may_manage(&self, owner_id: i64) -> bool {
        self.0.admin || self.0.id == owner_id
    }
}

impl FromRequestParts<ControlState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ControlState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            // The dashboard: a browser session on the control host. Writes
            // must come from the control host's own pages (Origin checked),
            // so another site cannot act with the visitor's cookie.
            let Some((visitor, _)) = super::signin::session_of(state, &parts.headers) else {
                return Err(ApiError::unauthenticated());
            };
            let safe = matches!(
                parts.method,
                axum::http::Method::GET | axum::http::Method::HEAD
            );
            let same_origin = parts
                .headers
                .get(header::ORIGIN)
                .is_some_and(|o| o.as_bytes() == state.signin.base_url.as_bytes());
            if !safe && !same_origin {
                return Err(ApiError::forbidden(
                    "cross-site request refused: send Origin of the control host, or use an API token",
                ));
            }
            return state
                .catalog
                .user(visitor.user_id)
                .map(Caller)
                .ok_or_else(ApiError::unauthenticated);
        };
        let value = value.to_str().map_err(|_| ApiError::invalid_token())?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || !token::is_well_formed(token, TokenKind::Api) {
            return Err(ApiError::invalid_token());
        }
        let visitor = state
            .catalog
            .visitor_for_token(&TokenHash::of(token))
            .ok_or_else(ApiError::invalid_token)?;
        let user = state
            .catalog
            .user(visitor.user_id)
            .ok_or_else(ApiError::invalid_token)?;
        Ok(Caller(user))
    }
}

/// A caller who is a site admin; 403 `forbidden` otherwise. Checked before the
/// body is read, so a member learns nothing from body validation.
#[derive(Clone, Debug)]
pub struct Admin(pub Caller);

impl FromRequestParts<ControlState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ControlState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(Admin(caller))
    }
}

/// Path parameters, with a JSON 400 when they cannot be decoded.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(r) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                r.body_text(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (ct, want) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("+json", false),
            ("text/x+json", false),
        ] {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(is_json(&h), want, "{ct}");
        }
    }

    #[test]
    fn strips_serde_positions_only() {
        assert_eq!(
            strip_position("missing field `name` at line 1 column 2"),
            "missing field `name`"
        );
        assert_eq!(strip_position("name: at line x"), "name: at line x");
        assert_eq!(field_first("missing field `name`"), "name: is required");
        assert_eq!(field_first("name: bad"), "name: bad");
    }
}
