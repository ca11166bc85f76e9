//! CORS between a user's own apps (SPEC section 3): a preflight is never sent
//! to sign-in (browsers send no cookies with it); the edge answers it, and
//! allows, with credentials, origins that are app hosts of the same owner
//! ([`crate::auth::origin::classify`], the same test the Origin rule uses).
//! Actual responses to such origins get the matching allow headers.
//!
//! Pure functions over headers; the proxy supplies who owns what.

use http::header::{self, HeaderMap, HeaderValue};

/// True for a genuine CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`, and no body (`body_empty`: the request
/// declared none). Only such a request skips sign-in, since browsers send
/// it without credentials; on a `passthru` share it reaches the app
/// unauthenticated, so an `OPTIONS` that carries anything more is not one.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap, body_empty: bool) -> bool {
    method == http::Method::OPTIONS
        && body_empty
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to a preflight from an allowed origin (`allowed = true`), or a
/// bare 204 that lets the browser refuse.
pub fn preflight_headers(request: &HeaderMap, allowed: bool) -> HeaderMap {
    let mut out = HeaderMap::new();
    out.insert(header::VARY, HeaderValue::from_static("Origin"));
    if !allowed {
        return out;
    }
    if let Some(origin) = request.get(header::ORIGIN) {
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    if let Some(m) = request.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m.clone());
    }
    if let Some(h) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone());
    }
    out.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    out
}

/// Adds allow headers to an app's response for an allowed origin, unless
/// the app already answered CORS itself.
pub fn allow_response(response: &mut HeaderMap, origin: &HeaderValue) {
    if response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        return;
    }
    response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    response.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    response.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn preflights_are_recognised() {
        let pre = h(&[
            ("origin", "https://a.x"),
            ("access-control-request-method", "PUT"),
        ]);
        assert!(is_preflight(&http::Method::OPTIONS, &pre, true));
        assert!(!is_preflight(&http::Method::GET, &pre, true));
        assert!(!is_preflight(&http::Method::POST, &pre, true));
        assert!(
            !is_preflight(&http::Method::OPTIONS, &pre, false),
            "a body makes it an ordinary OPTIONS"
        );
        assert!(!is_preflight(
            &http::Method::OPTIONS,
            &h(&[("origin", "https://a.x")]),
            true
        ));
        assert!(!is_preflight(
            &http::Method::OPTIONS,
            &h(&[("access-control-request-method", "PUT")]),
            true
        ));
        assert!(!is_preflight(
            &http::Method::OPTIONS,
            &HeaderMap::new(),
            true
        ));
    }

    #[test]
    fn allowed_and_refused_preflights() {
        let req = h(&[
            ("origin", "https://5173--m--w--u.apps.x"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, x-csrf"),
        ]);
        let ok = preflight_headers(&req, true);
        assert_eq!(
            ok["access-control-allow-origin"],
            "https://5173--m--w--u.apps.x"
        );
        assert_eq!(ok["access-control-allow-credentials"], "true");
        assert_eq!(ok["access-control-allow-methods"], "POST");
        assert_eq!(ok["access-control-allow-headers"], "content-type, x-csrf");
        let no = preflight_headers(&req, false);
        assert!(no.get("access-control-allow-origin").is_none());
        assert_eq!(no["vary"], "Origin");
    }

    #[test]
    fn the_apps_own_cors_answer_wins() {
        let origin: HeaderValue = "https://a.x".parse().unwrap();
        let mut own = h(&[("access-control-allow-origin", "*")]);
        allow_response(&mut own, &origin);
        assert_eq!(own["access-control-allow-origin"], "*");
        let mut plain = HeaderMap::new();
        allow_response(&mut plain, &origin);
        assert_eq!(plain["access-control-allow-origin"], "https://a.x");
        assert_eq!(plain["access-control-allow-credentials"], "true");
    }
}
