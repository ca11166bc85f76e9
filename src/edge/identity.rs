//! The identity an app can verify: `Berth-Jwt-Assertion` on requests of a
//! visitor known to berth, and the public keys at `/.well-known/jwks.json`
//! (the signing and the keys are [`crate::auth::jwt`]'s).

use super::Edge;
use crate::auth::jwt::ASSERTION_HEADER;
use crate::auth::Visitor;
use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// Sets the assertion for `visitor` on app `host` in the headers going to
/// the app; whatever the client sent under that name is gone either way.
pub(super) fn assert(
    edge: &Edge,
    headers: &mut HeaderMap,
    visitor: Option<&Visitor>,
    host: &str,
    now: i64,
) {
    headers.remove(ASSERTION_HEADER);
    let Some(visitor) = visitor else {
        return;
    };
    let Some(token) = edge.identity.get().assert(visitor, host, now) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&token) {
        headers.insert(ASSERTION_HEADER, v);
    }
}

/// `GET /.well-known/jwks.json` on the edge's own host: the public keys.
pub(super) fn jwks(edge: &Edge) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        // Apps may cache it briefly; a key stays published long after it
        // stops signing, and a new one signs at once (refetch on an unknown kid).
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Body::from(edge.identity.get().jwks().to_string()))
        .expect("static response is valid")
}
