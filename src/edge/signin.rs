//! The edge's half of browser sign-in on app hosts (SPEC section 3), and the
//! reading of berth's cookies there.
//!
//! A browser without a session is sent to control's `/signin` with a fresh
//! sign-in state: a random nonce in the URL and, signed, in a host-only
//! `__Host-berth_state` cookie. Control binds the one-time code it mints to
//! that state, and `/_berth/auth/callback` exchanges a code only together
//! with the state in this browser's cookie, so a code that another user
//! obtained (and sent this browser to) signs nobody in here.

use super::pages::ErrorPage;
use super::{see_other, Edge};
use crate::auth::cookie::{self, Copies, Purpose};
use crate::auth::link_cookie::{self, LinkState};
use crate::auth::{self, Visitor};
use crate::catalog::{Change, Link};
use crate::protocol::edge_api::Exchange;
use axum::body::Body;
use http::{HeaderMap, Response};

/// Where the control plane sends a signed-in browser back with a code.
pub(crate) const CALLBACK_PATH: &str = "/_berth/auth/callback";

/// Where the edge's pages link to sign in (`?path=...`, and `&switch=1` to
/// sign in as someone else): the browser is sent to sign in whatever
/// cookies it holds here.
pub(crate) const SIGNIN_PATH: &str = "/_berth/auth/signin";

/// The signed-in visitor of `__Host-berth_app` on `host`, with the id of their session
/// (what an open connection is re-checked against when sessions end): every copy is
/// verified (signature for this host, expiry, live session); one that fails
/// never decides, and two different live sessions count as none.
pub(crate) fn app_session(
    edge: &Edge,
    headers: &HeaderMap,
    host: &str,
    now: i64,
) -> Option<(Visitor, String)> {
    let values = cookie::copies(headers, cookie::APP_COOKIE);
    let id = cookie::decide(&values, |value| {
        let id = edge
            .signin
            .key
            .verify(Purpose::Session, value, host, now)
            .ok()?;
        edge.catalog.visitor_for_session(&id, now).map(|_| id)
    })
    .ok()?;
    let visitor = edge.catalog.visitor_for_session(&id, now).map(|(v, _)| v)?;
    Some((visitor, id))
}

/// The share link of `__Host-berth_share` on `host`, verified like
/// [`app_session`]'s session; [`Copies::Invalid`] tells a visitor whose
/// link has expired or was revoked from one who never had one.
pub(crate) fn share_link(edge: &Edge, headers: &HeaderMap, host: &str, now: i64) -> Copies<Link> {
    let values = cookie::copies(headers, cookie::SHARE_COOKIE);
    let found = cookie::decide(&values, |value| {
        let id = edge
            .signin
            .key
            .verify(Purpose::Share, value, host, now)
            .ok()?;
        edge.catalog.live_link(&id, now).map(|_| id)
    });
    match found {
        Copies::One(id) => edge
            .catalog
            .live_link(&id, now)
            .map_or(Copies::Invalid, Copies::One),
        Copies::Absent => Copies::Absent,
        Copies::Invalid => Copies::Invalid,
        Copies::Ambiguous => Copies::Ambiguous,
    }
}

/// The nonce of this browser's sign-in on `host`, from `__Host-berth_state`.
fn state_of(edge: &Edge, headers: &HeaderMap, host: &str, now: i64) -> Option<String> {
    let values = cookie::copies(headers, cookie::STATE_COOKIE);
    cookie::decide(&values, |value| {
        edge.signin
            .key
            .verify(Purpose::State, value, host, now)
            .ok()
    })
    .ok()
}

/// Sends a browser without a session to the control plane's sign-in, which
/// sends it back here to `return_to` (this host's URL) with a code. The
/// sign-in state rides in the URL and in `__Host-berth_state`; a state
/// the browser already holds for this host is kept (with a fresh expiry),
/// so two tabs signing in at once do not undo each other.
pub(crate) fn to_signin(
    edge: &Edge,
    headers: &HeaderMap,
    host: &str,
    return_to: &str,
    now: i64,
) -> Response<Body> {
    send_to_signin(edge, headers, host, return_to, now, false)
}

/// [`to_signin`]; with `switch`, control shows its sign-in form even to a
/// browser signed in there, so that someone else may sign in.
fn send_to_signin(
    edge: &Edge,
    headers: &HeaderMap,
    host: &str,
    return_to: &str,
    now: i64,
    switch: bool,
) -> Response<Body> {
    let state = state_of(edge, headers, host, now).unwrap_or_else(auth::signin::new_state);
    let ttl = auth::signin::STATE_TTL_SECS;
    let value = edge
        .signin
        .key
        .sign(Purpose::State, &state, host, now + ttl);
    let mut query = vec![("return_to", return_to), ("state", state.as_str())];
    if switch {
        query.push(("switch", "1"));
    }
    let query = serde_urlencoded::to_string(query).expect("strings always encode");
    see_other(
        &format!("{}/signin?{query}", edge.signin.base_url),
        Some(cookie::set_cookie(cookie::STATE_COOKIE, &value, ttl)),
    )
}

/// `/_berth/auth/callback?code=...&path=...`: exchanges the one-time code,
/// with this browser's sign-in state, for a host-only `__Host-berth_app`
/// cookie that lasts as long as the session.
pub(crate) async fn callback(
    edge: &Edge,
    uri: &http::Uri,
    headers: &HeaderMap,
    host: &str,
) -> Result<Response<Body>, ErrorPage> {
    #[derive(serde::Deserialize)]
    struct Callback {
        code: String,
        #[serde(default)]
        path: Option<String>,
    }
    let query: Option<Callback> = serde_urlencoded::from_str(uri.query().unwrap_or("")).ok();
    let path = query
        .as_ref()
        .and_then(|q| q.path.as_deref())
        .and_then(auth::signin::safe_path)
        .unwrap_or("/")
        .to_owned();
    let refused = || ErrorPage::SigninAgain {
        reason: "This sign-in link has expired, was already used, or was made for another browser"
            .into(),
        retry: path.clone(),
    };
    let cb = query.ok_or_else(refused)?;
    let now = super::unix_now();
    let Some(state) = state_of(edge, headers, host, now) else {
        // Not started in this browser (or too long ago): whoever made the
        // link, its code is not this browser's to use.
        return Err(ErrorPage::SigninAgain {
            reason: "This sign-in was not started in this browser, or took longer than 10 minutes"
                .into(),
            retry: path.clone(),
        });
    };
    let session = edge
        .control
        .take_code(
            Exchange {
                code: cb.code,
                host: host.to_owned(),
                state,
            },
            now,
        )
        .await
        .ok_or_else(refused)?;
    // The session may not have reached a regional edge's catalog yet.
    edge.catalog.apply(Change::Session(session.clone()));
    let (_, session) = edge
        .catalog
        .visitor_for_session(&session.id, now)
        .ok_or_else(refused)?;
    let value = edge
        .signin
        .key
        .sign(Purpose::Session, &session.id, host, session.expires_at);
    let mut res = see_other(
        &path,
        Some(cookie::set_cookie(
            cookie::APP_COOKIE,
            &value,
            session.expires_at - now,
        )),
    );
    // The state is spent: a later code needs a new sign-in.
    if let Ok(v) = http::HeaderValue::from_str(&cookie::clear_cookie(cookie::STATE_COOKIE)) {
        res.headers_mut().append(http::header::SET_COOKIE, v);
    }
    Ok(res)
}

/// `GET {SIGNIN_PATH}?path=/p[&switch=1]` on `host_header`: a page's sign-in
/// link; sends the browser to sign in and back to `path` on this host.
pub(crate) fn start(
    edge: &Edge,
    uri: &http::Uri,
    headers: &HeaderMap,
    host: &str,
    host_header: &str,
) -> Response<Body> {
    #[derive(serde::Deserialize)]
    struct Start {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        switch: Option<String>,
    }
    let q: Option<Start> = serde_urlencoded::from_str(uri.query().unwrap_or("")).ok();
    let path = q
        .as_ref()
        .and_then(|q| q.path.as_deref())
        .and_then(auth::signin::safe_path)
        .unwrap_or("/");
    let switch = q.as_ref().and_then(|q| q.switch.as_deref()) == Some("1");
    let return_to = format!("https://{host_header}{path}");
    send_to_signin(edge, headers, host, &return_to, super::unix_now(), switch)
}

/// The link to [`start`] back to this request's path (without a share
/// link's token), as someone else when `switch`.
fn signin_link(uri: &http::Uri, switch: bool) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let path = super::headers::strip_share_param(path);
    let mut query = vec![("path", path.as_ref())];
    if switch {
        query.push(("switch", "1"));
    }
    format!(
        "{SIGNIN_PATH}?{}",
        serde_urlencoded::to_string(query).expect("strings always encode")
    )
}

/// The 404 for a request the decision turned away: a visitor signed in on
/// this host with its cookie is told as whom, and offered to sign in as
/// someone else; anyone else (anonymous, or a program's token) gets the
/// plain page, which names nobody.
pub(crate) fn not_found(visitor: Option<&Visitor>, by_cookie: bool, uri: &http::Uri) -> ErrorPage {
    match visitor {
        Some(v) if by_cookie => ErrorPage::NotFoundSignedIn {
            username: v.username.clone(),
            switch: signin_link(uri, true),
        },
        _ => ErrorPage::NotFound,
    }
}

/// A refusal from [`super::admit::admit`], said for this visitor: a 404
/// names whom a browser is signed in as ([`not_found`]); a 401 for a share
/// cookie that opens nothing says whether its link expired or was revoked
/// ([`link_ended`]). Anything else stays as it is.
pub(crate) fn explain<B>(
    edge: &Edge,
    req: &http::Request<B>,
    who: &super::admit::Who,
    host: &str,
    now: i64,
    page: ErrorPage,
) -> ErrorPage {
    match page {
        ErrorPage::NotFound => not_found(who.visitor.as_ref(), who.session.is_some(), req.uri()),
        ErrorPage::Unauthenticated { .. } if who.share_cookie && who.link.is_none() => {
            link_ended(edge, req.headers(), host, now, req.uri())
        }
        page => page,
    }
}

/// The page for a browser whose `__Host-berth_share` on `host` opens
/// nothing: the link expired or was revoked ([`link_cookie::state`]; the
/// cookie outlives its link to say so), with a sign-in link; or, when no
/// copy verifies at all, that the link is not valid here.
pub(crate) fn link_ended(
    edge: &Edge,
    headers: &HeaderMap,
    host: &str,
    now: i64,
    uri: &http::Uri,
) -> ErrorPage {
    let ended = cookie::copies(headers, cookie::SHARE_COOKIE)
        .into_iter()
        .take(cookie::MAX_COPIES)
        .filter_map(|value| {
            let (id, until) = edge
                .signin
                .key
                .verify_until(Purpose::Share, value, host, now)
                .ok()?;
            Some(link_cookie::state(
                until,
                edge.catalog.link_expiry(&id),
                now,
            ))
        })
        .find(|s| *s != LinkState::Live);
    match ended {
        Some(state) => ErrorPage::LinkEnded {
            expired: state == LinkState::Expired,
            signin: signin_link(uri, false),
        },
        None => ErrorPage::Unauthenticated {
            reason: "This share link has expired or was revoked: ask the owner for a new one"
                .into(),
        },
    }
}
