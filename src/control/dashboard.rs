//! The dashboard on the control host: `GET /` (the page, or the sign-in form
//! without a session), `GET /dashboard.js` and `GET /dashboard.css`. Plain
//! HTML, script and style over the same API as the CLI, with the session.
//! The page runs no inline script or style: its Content-Security-Policy
//! allows only these two files (and connections to the regions' edges).

use super::signin::session_of;
use super::ControlState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

/// The page: a frame the script fills in.
const PAGE: &str = include_str!("dashboard/dashboard.html");
/// Everything the page does (see the file's head for its parts).
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
/// Its look.
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// `GET /`: the dashboard, or a redirect to the sign-in form.
pub(crate) async fn home(State(st): State<ControlState>, headers: HeaderMap) -> Response {
    if session_of(&st, &headers).is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/signin")]).into_response();
    }
    // The page times each region's edge from the browser: it may connect
    // to those origins, and nowhere else.
    let regions = st.store.list_regions().await.unwrap_or_default();
    let csp = csp(regions.iter().map(|r| r.url.as_str()));
    let csp = HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(STRICTEST));
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::CONTENT_SECURITY_POLICY, csp),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// `GET /dashboard.js` (not secret: the same for everyone).
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard.css`.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// A file of the page; browsers check with control before reusing it, so a
/// new berth's page never runs an old script.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The policy without any region: also the fallback should a region's URL
/// ever fail to make a header value.
const STRICTEST: &str = "default-src 'none'; connect-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The dashboard's Content-Security-Policy: only its own script and style
/// (nothing inline), and `connect-src` for its own origin plus the origins of
/// the regions' edges (`https://` URLs only, as `scheme://host[:port]`;
/// anything else is left out).
fn csp<'a>(region_urls: impl Iterator<Item = &'a str>) -> String {
    let origins: String = region_urls
        .filter_map(|u| {
            let uri: http::Uri = u.parse().ok()?;
            (uri.scheme_str() == Some("https")).then_some(())?;
            let authority = uri.authority()?.as_str();
            authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
                .then(|| format!(" https://{authority}"))
        })
        .collect();
    STRICTEST.replacen(
        "connect-src 'self'",
        &format!("connect-src 'self'{origins}"),
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::{csp, PAGE, STRICTEST};

    #[test]
    fn the_dashboard_may_connect_to_region_edges_and_nowhere_else() {
        assert_eq!(csp(std::iter::empty()), STRICTEST);
        let csp = csp([
            "https://eu.apps.example.com",
            "https://us.apps.example.com:8443/",
            "http://plain.example.com",
            "https://evil.example.com; script-src *",
            "not a url",
        ]
        .into_iter());
        assert!(
            csp.contains(
                "connect-src 'self' https://eu.apps.example.com https://us.apps.example.com:8443;"
            ),
            "{csp}"
        );
        assert!(
            !csp.contains("plain") && !csp.contains("evil") && !csp.contains("script-src *"),
            "{csp}"
        );
    }

    #[test]
    fn no_inline_script_or_style_is_allowed_and_the_page_has_none() {
        for directive in ["script-src 'self';", "style-src 'self';"] {
            assert!(STRICTEST.contains(directive), "{STRICTEST}");
        }
        assert!(!STRICTEST.contains("unsafe"), "{STRICTEST}");
        // The page itself: only external script and style, no handlers or
        // style attributes the policy would block.
        let lower = PAGE.to_ascii_lowercase();
        assert!(lower.contains("<script src=\"/dashboard.js\""), "{PAGE}");
        for inline in [
            "<script>",
            "<style",
            " style=\"",
            " onclick=",
            " onload=",
            " onchange=",
        ] {
            assert!(!lower.contains(inline), "inline {inline:?} in the page");
        }
    }
}
