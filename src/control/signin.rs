//! Browser sign-in on the control host: `GET /signin` (the form, or straight
//! back to the app when a session exists), `POST /signin` (username and
//! password), `POST /signout`. A signed-in browser sent here by an app host
//! is sent back to `https://{app-host}/_berth/auth/callback` with a one-time
//! code bound to that host (see [`crate::auth::signin`]).

use super::login::Refusal;
use super::ControlState;
use crate::auth::cookie::{self, Purpose, SESSION_COOKIE};
use crate::auth::Visitor;
use crate::catalog::{Change, Session};
use crate::html::escape_html;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use serde::Deserialize;

/// `?return_to=https://{app-host}/path&state=...`: where to go after
/// signing in, and the sign-in state the app host's edge gave the browser.
#[derive(Deserialize)]
pub(crate) struct SigninQuery {
    return_to: Option<String>,
    state: Option<String>,
    /// `1`: an app host's "sign in as someone else" (its 404 page): the
    /// form is shown even to a browser signed in here.
    #[serde(default)]
    switch: Option<String>,
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct SigninForm {
    username: String,
    password: String,
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// The consent form's fields (see [`consent`]).
#[derive(Deserialize)]
pub(crate) struct ContinueForm {
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

/// Where a sign-in goes back to: an app URL, and the app host's sign-in
/// state for the code (see [`crate::auth::signin`]). Both optional; empty
/// counts as absent.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Back<'a> {
    pub return_to: Option<&'a str>,
    pub state: Option<&'a str>,
}

impl<'a> Back<'a> {
    pub(crate) fn new(return_to: Option<&'a str>, state: Option<&'a str>) -> Self {
        Back {
            return_to: return_to.filter(|r| !r.is_empty()),
            state: state.filter(|s| !s.is_empty()),
        }
    }

    /// The query string that carries this on (`return_to=...&state=...`).
    pub(crate) fn query(&self) -> String {
        let mut q: Vec<(&str, &str)> = Vec::new();
        if let Some(r) = self.return_to {
            q.push(("return_to", r));
        }
        if let Some(s) = self.state {
            q.push(("state", s));
        }
        serde_urlencoded::to_string(q).expect("strings always encode")
    }

    /// Hidden form fields that carry this on.
    fn hidden(&self) -> String {
        [("return_to", self.return_to), ("state", self.state)]
            .into_iter()
            .filter_map(|(k, v)| {
                v.map(|v| {
                    format!(
                        "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                        escape_html(v)
                    )
                })
            })
            .collect()
    }

    /// Refuses a return that is not an app on this berth, or a state that
    /// is not one an edge makes, with the page that says so.
    pub(crate) async fn check(&self, st: &ControlState) -> Result<(), Response> {
        if let Some(r) = self.return_to {
            if st.return_target(r).await.is_none() {
                return Err(bad_return_to());
            }
        }
        if self
            .state
            .is_some_and(|s| !crate::auth::signin::valid_state(s))
        {
            return Err(page(
                StatusCode::BAD_REQUEST,
                "Not a berth sign-in",
                "<p>The page that sent you here passed a sign-in state that berth did not make. Open the app again to sign in.</p>",
            ));
        }
        Ok(())
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The browser's session on the control host, if it has a live one. Every
/// copy of `__Host-berth_session` is checked; one that fails never decides,
/// and two different live sessions count as none (see [`cookie::decide`]).
pub(crate) fn session_of(st: &ControlState, headers: &HeaderMap) -> Option<(Visitor, Session)> {
    let now = now_unix();
    let values = cookie::copies(headers, SESSION_COOKIE);
    let id = cookie::decide(&values, |value| {
        let id = st
            .signin
            .key
            .verify(Purpose::Session, value, &st.signin.base_domain, now)
            .ok()?;
        st.catalog.visitor_for_session(&id, now).map(|_| id)
    })
    .ok()?;
    st.catalog.visitor_for_session(&id, now)
}

fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · berth</title><style>\
         body{{font-family:system-ui,sans-serif;background:#f5f6f8;color:#1d2127;margin:0}}\
         main{{max-width:380px;margin:10vh auto;background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:28px}}\
         h1{{font-size:20px;margin:0 0 16px}}label{{display:block;margin:12px 0 4px;font-size:14px}}\
         input{{width:100%;box-sizing:border-box;padding:8px;border:1px solid #c5cbd3;border-radius:4px;font-size:15px}}\
         button{{margin-top:18px;width:100%;padding:9px;border:0;border-radius:4px;background:#2453d4;color:#fff;font-size:15px}}\
         .err{{color:#b42318;font-size:14px}} .hint{{color:#5b6472;font-size:13px}}\
         .sso,button.sso{{display:block;width:100%;box-sizing:border-box;text-align:center;margin-top:14px;padding:8px;border:1px solid #2453d4;border-radius:4px;background:#fff;color:#2453d4;text-decoration:none;font-size:15px}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape_html(title),
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

fn form(st: &ControlState, back: Back<'_>, error: Option<&str>) -> String {
    let err = error
        .map(|e| format!("<p class=\"err\">{}</p>", escape_html(e)))
        .unwrap_or_default();
    let hidden = back.hidden();
    // The provider's button posts (from this page only, Origin checked), so
    // that no other page can start a sign-in that finishes without the
    // visitor's say (see `needs_consent`).
    let sso = st
        .oidc
        .as_ref()
        .map(|o| {
            format!(
                "<form method=\"post\" action=\"/signin/oidc\">{hidden}<button class=\"sso\" type=\"submit\">{}</button></form>",
                escape_html(o.label())
            )
        })
        .unwrap_or_default();
    let github = st
        .github
        .as_ref()
        .map(|g| {
            format!(
                "<form method=\"post\" action=\"/signin/github\">{hidden}<button class=\"sso\" type=\"submit\">{}</button></form>",
                escape_html(g.label())
            )
        })
        .unwrap_or_default();
    let to = back
        .return_to
        .and_then(|r| r.strip_prefix("https://"))
        .map(|r| r.split(['/', '?', '#']).next().unwrap_or(r))
        .map(|host| {
            format!(
                "<p class=\"hint\">Then on to <b>{}</b>, which will see your user name and e-mail address.</p>",
                escape_html(host)
            )
        })
        .unwrap_or_default();
    format!(
        "{err}<form method=\"post\" action=\"/signin\">{hidden}\
         <label for=\"u\">User name</label><input id=\"u\" name=\"username\" autocomplete=\"username\" required autofocus>\
         <label for=\"p\">Password</label><input id=\"p\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>{sso}{github}{to}\
         <p class=\"hint\">Sign in to open apps shared with you.</p>"
    )
}

/// Where a signed-in browser goes next: back to the app host with a code
/// bound to the host and the app host's sign-in state, or to the control
/// host's front page. Before another user's app learns who the visitor is,
/// the visitor is asked, unless they have just signed in for it
/// (`interactive`).
async fn continue_to(
    st: &ControlState,
    username: &str,
    session: &Session,
    back: Back<'_>,
    interactive: bool,
) -> Response {
    let target = match back.return_to {
        Some(r) => st.return_target(r).await,
        None => None,
    };
    let Some(target) = target else {
        return see_other("/");
    };
    if crate::auth::signin::needs_consent(&target.owner, username, interactive) {
        return consent(username, &target, back);
    }
    let host = target
        .authority
        .split(':')
        .next()
        .unwrap_or(target.authority);
    let code = st
        .signin
        .codes
        .mint(&session.id, host, back.state.unwrap_or(""), now_unix());
    let query = serde_urlencoded::to_string([("code", code.as_str()), ("path", target.path)])
        .expect("strings always encode");
    see_other(&format!(
        "https://{}/_berth/auth/callback?{query}",
        target.authority
    ))
}

/// The question before sending a signed-in visitor to another user's app:
/// a form that posts back here (Origin checked, and this page cannot be
/// framed), so no other page can answer it for them.
fn consent(username: &str, target: &crate::auth::signin::ReturnTo<'_>, back: Back<'_>) -> Response {
    let host = target
        .authority
        .split(':')
        .next()
        .unwrap_or(target.authority);
    page(
        StatusCode::OK,
        "Open this app?",
        &format!(
            "<p>You are signed in as <b>{user}</b>. <b>{host}</b> belongs to <b>{owner}</b>; \
             opening it tells the app your user name and e-mail address.</p>\
             <form method=\"post\" action=\"/signin/continue\">{hidden}\
             <button type=\"submit\">Continue as {user}</button></form>\
             <p class=\"hint\"><a href=\"/\">Cancel</a> if you did not mean to open it.</p>",
            user = escape_html(username),
            host = escape_html(host),
            owner = escape_html(&target.owner),
            hidden = back.hidden(),
        ),
    )
}

pub(super) fn bad_return_to() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Not a berth app",
        "<p>The page that sent you here asked to return to an address that is not an app on this berth, so berth will not go there.</p>",
    )
}

/// `GET /signin`
pub(crate) async fn show(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Query(q): Query<SigninQuery>,
) -> Response {
    let back = Back::new(q.return_to.as_deref(), q.state.as_deref());
    if let Err(res) = back.check(&st).await {
        return res;
    }
    if let Some((visitor, session)) = session_of(&st, &headers) {
        if q.switch.as_deref() != Some("1") {
            return continue_to(&st, &visitor.username, &session, back, false).await;
        }
        let signed_in = format!(
            "<p class=\"hint\">You are signed in as <b>{user}</b>. Sign in as someone else \
             below, or <a href=\"/signin?{query}\">continue as {user}</a>.</p>",
            user = escape_html(&visitor.username),
            query = escape_html(&back.query()),
        );
        return page(
            StatusCode::OK,
            "Sign in to berth",
            &format!("{signed_in}{}", form(&st, back, None)),
        );
    }
    page(StatusCode::OK, "Sign in to berth", &form(&st, back, None))
}

/// `POST /signin/continue`: the visitor said yes to [`consent`].
pub(crate) async fn proceed(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Form(f): Form<ContinueForm>,
) -> Response {
    if cross_site(&st, &headers) {
        return forbidden_cross_site();
    }
    let back = Back::new(f.return_to.as_deref(), f.state.as_deref());
    if let Err(res) = back.check(&st).await {
        return res;
    }
    match session_of(&st, &headers) {
        Some((visitor, session)) => continue_to(&st, &visitor.username, &session, back, true).await,
        None => see_other(&format!("/signin?{}", back.query())),
    }
}

/// True when a form post comes from another site: browsers send `Origin`
/// with every POST, so one that is not the control host's is refused (no
/// login CSRF, no cross-site sign-out).
pub(super) fn cross_site(st: &ControlState, headers: &HeaderMap) -> bool {
    headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() != st.signin.base_url.as_bytes())
}

pub(super) fn forbidden_cross_site() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Refused",
        "<p>This form was sent from another site. Open berth's sign-in page and try again.</p>",
    )
}

/// 429 with `Retry-After`: too many sign-in attempts from this address or
/// for this user name.
pub(super) fn too_many_attempts(retry_after_secs: u64) -> Response {
    let mut res = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many attempts",
        &format!(
            "<p>There were too many sign-in attempts from your address or for this user name.</p>\
             <p>Wait {retry_after_secs} seconds, then <a href=\"/signin\">try again</a>.</p>"
        ),
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    res
}

/// 503 with `Retry-After: 1`: every password-check slot is taken.
fn busy() -> Response {
    let mut res = page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in busy",
        "<p>Too many sign-ins are being checked at once. <a href=\"/signin\">Try again</a> in a moment.</p>",
    );
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// `POST /signin`
pub(crate) async fn submit(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    if cross_site(&st, &headers) {
        return forbidden_cross_site();
    }
    let back = Back::new(f.return_to.as_deref(), f.state.as_deref());
    if let Err(res) = back.check(&st).await {
        return res;
    }
    let user = match st
        .login
        .attempt(&st, &f.username, &f.password, "form")
        .await
    {
        Ok(u) => u,
        Err(Refusal::WrongCredentials) => {
            return page(
                StatusCode::UNAUTHORIZED,
                "Sign in to berth",
                &form(&st, back, Some("Wrong user name or password.")),
            )
        }
        Err(Refusal::RateLimited { retry_after }) => {
            return too_many_attempts(Refusal::retry_after_secs(retry_after))
        }
        Err(Refusal::Busy) => return busy(),
        Err(Refusal::Store(e)) => {
            tracing::error!(error = %e, "sign-in failed");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "<p>Try again in a moment.</p>",
            );
        }
    };
    start_session(&st, &user.to_catalog(), "password", back, true).await
}

/// Starts a browser session for `user` (signed in by `method`), sets
/// `__Host-berth_session`, and sends the browser on (see [`continue_to`]).
pub(super) async fn start_session(
    st: &ControlState,
    user: &crate::catalog::User,
    method: &str,
    back: Back<'_>,
    interactive: bool,
) -> Response {
    let now = now_unix();
    let session = match st
        .store
        .create_session(user.id, now + st.signin.session_ttl_secs)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot store session");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "<p>Try again in a moment.</p>",
            );
        }
    };
    st.apply(Change::Session(session.clone())).await;
    st.audit(&user.username, "session.started", method).await;
    let value = st.signin.key.sign(
        Purpose::Session,
        &session.id,
        &st.signin.base_domain,
        session.expires_at,
    );
    let mut res = continue_to(st, &user.username, &session, back, interactive).await;
    if let Ok(v) = cookie::set_cookie(SESSION_COOKIE, &value, session.expires_at - now).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `POST /signout`: ends the session everywhere (app-host cookies included).
pub(crate) async fn signout(State(st): State<ControlState>, headers: HeaderMap) -> Response {
    if cross_site(&st, &headers) {
        return forbidden_cross_site();
    }
    if let Some((visitor, session)) = session_of(&st, &headers) {
        if let Err(e) = st.store.delete_session(&session.id).await {
            tracing::error!(error = %e, "cannot delete session");
        }
        st.apply(Change::SessionRemoved(session.id)).await;
        st.audit(&visitor.username, "session.ended", "sign-out")
            .await;
    }
    let mut res = see_other("/signin");
    if let Ok(v) = cookie::clear_cookie(SESSION_COOKIE).parse() {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}
