//! A browser's sign-in, step by step, for tests that need a signed-in
//! visitor: the app's redirect to sign-in (with its state cookie), the
//! password form at control, the one-time code, the callback on the app host.

use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};

/// The cookies a browser holds after signing in, each as `name=value`.
pub struct SignedIn {
    /// `__Host-berth_session` on the control host.
    pub session: String,
    /// `__Host-berth_app` on the app host.
    pub app: String,
}

/// Signs `user` in on the app at `app_url` the way a browser does, with
/// control at `control` (`https://host:port`); `c` must not follow
/// redirects (as `support::client_for` makes it).
pub async fn sign_in(
    c: &reqwest::Client,
    control: &str,
    app_url: &str,
    user: &str,
    password: &str,
) -> SignedIn {
    let res = c
        .get(app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "{app_url} did not send a browser to sign in"
    );
    let signin = location(res.headers());
    let state = pair(res.headers(), "__Host-berth_state");
    let mut fields: Vec<(String, String)> =
        serde_urlencoded::from_str(signin.split_once('?').map(|(_, q)| q).unwrap_or("")).unwrap();
    fields.push(("username".into(), user.into()));
    fields.push(("password".into(), password.into()));
    let res = c
        .post(format!("{control}/signin"))
        .header("origin", control)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in of {user} refused");
    let session = pair(res.headers(), "__Host-berth_session");
    let callback = location(res.headers());
    let res = c.get(&callback).header(COOKIE, state).send().await.unwrap();
    assert_eq!(res.status(), 303, "{callback}");
    SignedIn {
        session,
        app: pair(res.headers(), "__Host-berth_app"),
    }
}

fn location(h: &HeaderMap) -> String {
    h[LOCATION].to_str().unwrap().to_owned()
}

/// `name=value` of the `Set-Cookie` for `name`.
pub fn pair(h: &HeaderMap, name: &str) -> String {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.split_once('=').is_some_and(|(n, _)| n == name))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
}
