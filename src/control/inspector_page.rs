//! The request inspector's page in the dashboard (issue 16):
//! `/dashboard/inspect/{user}/{workspace}/{agent}/{port}` shows a port's
//! recorded exchanges live, their detail, replay (as recorded or edited),
//! copy as curl and a HAR export. The page is static HTML with its own
//! script and style files (so its Content-Security-Policy allows no inline
//! script at all); everything it shows comes from the inspector's API with
//! the session, which decides who may look.
//!
//! Only the owner and site admins get the page: anyone else gets the same
//! 404 as for a port that does not exist; without a session, the sign-in.

use super::extract::Caller;
use super::ControlState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

const PAGE: &str = include_str!("inspector.html");
const SCRIPT: &str = include_str!("inspector.js");
const STYLE: &str = include_str!("inspector.css");

/// The page's policy: its own script and style files, API calls to its own
/// origin, nothing inline, no framing, no plugins, forms only to itself.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /dashboard/inspect/{user}/{workspace}/{agent}/{port}`.
pub(super) async fn page(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Path((user, workspace, agent, port)): Path<(String, String, String, String)>,
) -> Response {
    if super::signin::session_of(&st, &headers).is_none() {
        return (StatusCode::SEE_OTHER, [(header::LOCATION, "/signin")]).into_response();
    }
    let hidden = || {
        super::signin::page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>No such port, or it is not yours to inspect. Only the owner of a workspace and site admins see its requests.</p><p><a href=\"/\">Back to the dashboard</a></p>",
        )
    };
    let Ok(port) = port.parse::<u16>() else {
        return hidden();
    };
    // The session, as the API sees it (headers without Authorization).
    let mut parts = axum::http::Request::new(()).into_parts().0;
    parts.headers = headers.clone();
    parts.headers.remove(header::AUTHORIZATION);
    let Ok(caller) = <Caller as axum::extract::FromRequestParts<ControlState>>::from_request_parts(
        &mut parts, &st,
    )
    .await
    else {
        return hidden();
    };
    let path = (user, workspace, agent, port);
    if super::inspect::inspectable(&st, &caller, &parts.headers, &path)
        .await
        .is_err()
    {
        return hidden();
    }
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// `GET /dashboard/inspector.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /dashboard/inspector.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

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

#[cfg(test)]
mod tests {
    use super::{CSP, PAGE, SCRIPT};

    #[test]
    fn the_page_needs_nothing_inline_and_its_policy_allows_nothing_inline() {
        assert!(!CSP.contains("unsafe"), "{CSP}");
        assert!(CSP.contains("script-src 'self';") && CSP.contains("frame-ancestors 'none'"));
        // Scripts only from files, no inline style or event handlers: all
        // of it would be refused by the policy.
        assert!(!PAGE.contains("<script>") && !PAGE.contains("<style"));
        for attr in [" style=", " onclick=", " onload=", " onsubmit="] {
            assert!(!PAGE.contains(attr), "{attr}");
        }
        // Text from recorded requests is set as text, never parsed as HTML.
        assert!(!SCRIPT.contains("innerHTML"));
    }
}
