//! Browser sign-in on app hosts: redirect to control, one-time code bound to
//! the host and the browser's sign-in state, host-only `__Host-berth_app`
//! cookie, sign-out, open-redirect refusal.

use crate::support::{apps, Berth};
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};

fn location(h: &HeaderMap) -> String {
    h[LOCATION].to_str().unwrap().to_owned()
}

/// `name=value` of the Set-Cookie for `name`, checking its attributes.
fn cookie(h: &HeaderMap, name: &str) -> String {
    let set = h
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"));
    for want in ["Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(want), "{set}");
    }
    assert!(
        !set.to_ascii_lowercase().contains("domain="),
        "host-only: {set}"
    );
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_once_and_lands_on_the_app() {
    let berth = Berth::start().await;
    berth.add_user("bob", "bob-password", "member", None).await;
    let app = apps::start("127.0.0.1:0", "signed").await;
    let port = app.port();
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "authenticated"}),
        )
        .await;
    let c = berth.client(true);
    let app_url = berth.app_url(&format!("{port}--main--dev--admin"), "/page?x=1");
    let html = "text/html,application/xhtml+xml";

    // 1. No session: 303 to the control plane's sign-in, carrying the way
    // back and this browser's sign-in state (also in a host-only cookie).
    let res = c.get(&app_url).header("accept", html).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let signin = location(res.headers());
    assert!(
        signin.starts_with(&berth.api_url("/signin?return_to=")),
        "{signin}"
    );
    let state_cookie = cookie(res.headers(), "__Host-berth_state");
    let state = reqwest::Url::parse(&signin)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state in the sign-in URL");
    assert_eq!(state.len(), 32, "{state}");

    // 2. The form (without [oidc], no single sign-on button, and its URL is 404).
    let res = c.get(&signin).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let form = res.text().await.unwrap();
    assert!(form.contains("name=\"return_to\""), "{form}");
    assert!(
        form.contains(&format!("name=\"state\" value=\"{state}\"")),
        "{form}"
    );
    assert!(!form.contains("/signin/oidc"), "{form}");
    let res = c.get(berth.api_url("/signin/oidc")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // 3. Wrong password: the form again, 401.
    let post = |user: &str, pw: &str| {
        c.post(berth.api_url("/signin"))
            .form(&[
                ("username", user),
                ("password", pw),
                ("return_to", app_url.as_str()),
                ("state", state.as_str()),
            ])
            .send()
    };
    assert_eq!(post("bob", "nope").await.unwrap().status(), 401);

    // 4. Right password: session cookie on the control host, code for the app host.
    let res = post("bob", "bob-password").await.unwrap();
    assert_eq!(res.status(), 303);
    let session = cookie(res.headers(), "__Host-berth_session");
    let callback = location(res.headers());
    let app_origin = berth.app_url(&format!("{port}--main--dev--admin"), "");
    assert!(
        callback.starts_with(&format!("{app_origin}/_berth/auth/callback?code=")),
        "{callback}"
    );

    // 5. The callback, in the browser holding the state, sets the app
    // cookie and returns to the original path.
    let res = c
        .get(&callback)
        .header(COOKIE, &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), "/page?x=1");
    let app_cookie = cookie(res.headers(), "__Host-berth_app");
    // A code works once.
    let res = c
        .get(&callback)
        .header(COOKIE, &state_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // 6. The app, as bob, never seeing berth's cookies.
    let res = c
        .get(&app_url)
        .header("accept", html)
        .header(COOKIE, format!("{app_cookie}; theme=dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["app"], "signed");
    assert_eq!(body["headers"]["x-berth-user"], "bob");
    assert_eq!(body["headers"]["cookie"], "theme=dark");

    // 7. The cookie is bound to its host: another app host sends to sign-in,
    // where the session makes it one question (the app is admin's, not
    // bob's: it would learn who bob is) and one hop back with a new code.
    let other = berth.app_url(&format!("{}--main--dev--admin", port + 1), "/");
    let res = c
        .get(&other)
        .header("accept", html)
        .header(COOKIE, &app_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let signin = reqwest::Url::parse(&location(res.headers())).unwrap();
    let res = c
        .get(signin.clone())
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("action=\"/signin/continue\""), "{page}");
    let fields: Vec<(String, String)> = signin.query_pairs().into_owned().collect();
    let res = c
        .post(berth.api_url("/signin/continue"))
        .header(COOKIE, &session)
        .header("origin", berth.api_url(""))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(res.headers()).contains("/_berth/auth/callback?code="));

    // 8. Programs still get 401, never a redirect.
    assert_eq!(c.get(&app_url).send().await.unwrap().status(), 401);

    // 9. Signing out ends the app-host cookie too.
    let res = c
        .post(berth.api_url("/signout"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = c
        .get(&app_url)
        .header("accept", html)
        .header(COOKIE, &app_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "session revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_never_redirects_outside_the_wildcard() {
    let berth = Berth::start().await;
    let c = berth.client(true);
    for evil in [
        "https://evil.example/",
        "http://3000--main--dev--admin.berth.localhost/",
        "https://3000--main--dev--admin.berth.localhost@evil.example/",
        "https://3000--main--dev--admin.berth.localhost.evil.example/",
        "//evil.example/",
        "https://berth.localhost/",
    ] {
        let url = format!(
            "{}?{}",
            berth.api_url("/signin"),
            serde_urlencoded::to_string([("return_to", evil)]).unwrap()
        );
        let res = c.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{evil}");
        let res = c
            .post(berth.api_url("/signin"))
            .form(&[
                ("username", "admin"),
                ("password", "x"),
                ("return_to", evil),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{evil}");
    }
    // A sign-in form posted from another site is refused (login CSRF).
    let res = c
        .post(berth.api_url("/signin"))
        .header("origin", "https://evil.example")
        .form(&[("username", "admin"), ("password", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // A forged or foreign code sets nothing.
    let res = c
        .get(berth.app_url(
            "3000--main--dev--admin",
            "/_berth/auth/callback?code=00&path=//evil.example",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get(SET_COOKIE).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uses_the_session_and_refuses_cross_site_writes() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "dash").await;
    let port = app.port();
    let c = berth.client(true);
    // Without a session the front page is the sign-in form.
    let res = c.get(berth.api_url("/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), "/signin");
    // The admin's password is only printed once; make a user to sign in as.
    berth.add_user("dora", "dora-password", "admin", None).await;
    let res = c
        .post(berth.api_url("/signin"))
        .header("origin", berth.api_url(""))
        .form(&[("username", "dora"), ("password", "dora-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), "/");
    let session = cookie(res.headers(), "__Host-berth_session");
    let res = c
        .get(berth.api_url("/"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Share links"));

    // The API answers the session: reads freely, writes only from the control host.
    let me: Value = c
        .get(berth.api_url("/api/v1/me"))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "dora");
    let share = berth.api_url(&format!(
        "/api/v1/workspaces/admin/dev/agents/main/ports/{port}/share"
    ));
    for origin in [None, Some("https://evil.example")] {
        let mut req = c
            .put(&share)
            .header(COOKIE, &session)
            .json(&json!({"level": "public"}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), 403, "{origin:?}");
    }
    let res = c
        .put(&share)
        .header(COOKIE, &session)
        .header("origin", berth.api_url(""))
        .json(&json!({"level": "public"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let anon = c
        .get(berth.app_url(&format!("{port}--main--dev--admin"), "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 200, "shared from the dashboard's session");
}
