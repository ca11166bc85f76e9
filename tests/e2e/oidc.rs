//! Sign-in through a real OpenID Provider (`oidc-provider` on Node.js):
//! discovery, authorization code with PKCE, state and nonce, users matched
//! or created by verified e-mail, allowed domains, and the ways a callback
//! can be forged or replayed.

use crate::support::idp::{Idp, CLIENT_ID, CLIENT_SECRET};
use crate::support::redirects::{location, sent_to_sign_in, state_of};
use crate::support::{apps, Berth, Loopback, Options};
use berth::config::OidcConfig;
use reqwest::header::LOCATION;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A browser: its own cookie jar, trusting berth's CA (which also signed
/// the provider's certificate), following no redirects by itself.
fn browser(berth: &Berth) -> reqwest::Client {
    let pem = std::fs::read(&berth.ca_pem).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .dns_resolver(Arc::new(Loopback))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// How a sign-in through the provider starts.
enum Start<'a> {
    /// `GET /signin/oidc`, going nowhere in particular.
    Plain,
    /// The sign-in page's button (a POST from control's own page), for
    /// `(app URL, the app host's sign-in state)`: the visitor's own choice.
    Button(&'a str, &'a str),
    /// A link (`GET /signin/oidc?return_to=...&state=...`) that any page
    /// may send a browser to.
    Link(&'a str, &'a str),
}

/// Starts sign-in at berth, signs in at the provider as `login`, and returns
/// berth's answer to the provider's redirect back (not followed further).
async fn sso(b: &reqwest::Client, berth: &Berth, login: &str, start: Start<'_>) -> Response {
    let res = match start {
        Start::Button(return_to, state) => b
            .post(berth.api_url("/signin/oidc"))
            .header("origin", berth.api_url(""))
            .form(&[("return_to", return_to), ("state", state)])
            .send()
            .await
            .unwrap(),
        Start::Link(return_to, state) => b
            .get(berth.api_url(&format!(
                "/signin/oidc?{}",
                serde_urlencoded::to_string([("return_to", return_to), ("state", state)]).unwrap()
            )))
            .send()
            .await
            .unwrap(),
        Start::Plain => b.get(berth.api_url("/signin/oidc")).send().await.unwrap(),
    };
    assert_eq!(res.status(), 303);
    let auth = location(&res);
    for want in [
        "response_type=code",
        &format!("client_id={CLIENT_ID}"),
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
    ] {
        assert!(auth.contains(want), "{want} in {auth}");
    }
    let mut url = auth;
    for _ in 0..10 {
        if url.starts_with(&berth.api_url("/signin/oidc/callback")) {
            return b.get(&url).send().await.unwrap();
        }
        let res = b.get(&url).send().await.unwrap();
        if res.status() == 200 && url.contains("/interaction/") {
            let action = format!("{}/login", url.split('?').next().unwrap());
            let res = b
                .post(&action)
                .form(&[("login", login)])
                .send()
                .await
                .unwrap();
            assert!(res.status().is_redirection(), "login: {}", res.status());
            url = location(&res);
            continue;
        }
        assert!(
            res.status().is_redirection(),
            "{url}: {} {}",
            res.status(),
            res.text().await.unwrap()
        );
        url = location(&res);
    }
    panic!("no way back to berth from the provider");
}

/// A berth (control + edge) whose `[oidc]` points at a provider started
/// right after it, with a certificate from berth's own CA (which berth's
/// OIDC client is told to trust through `oidc.ca_file`).
async fn with_provider(
    tmp: &tempfile::TempDir,
    tweak: impl FnOnce(&mut OidcConfig),
    no_dev_agent: bool,
) -> (Berth, Idp) {
    let (idp_port, issuer) = Idp::reserve();
    let dir = tmp.path().join("data");
    let mut oidc = OidcConfig {
        issuer,
        client_id: CLIENT_ID.into(),
        client_secret: berth::auth::Secret::new(CLIENT_SECRET),
        scopes: "openid email profile".into(),
        allowed_domains: vec![],
        organization: None,
        create_users: true,
        ca_file: Some(dir.join("ca.pem")),
        label: "SSO".into(),
        groups_claim: None,
    };
    tweak(&mut oidc);
    let berth = Berth::start_with(Options {
        dir: Some(dir.clone()),
        oidc: Some(oidc),
        no_dev_agent,
        ..Default::default()
    })
    .await;
    let idp = Idp::start(idp_port, &dir, &berth.api_url("/signin/oidc/callback")).await;
    (berth, idp)
}

async fn users(berth: &Berth) -> Vec<Value> {
    let (s, body) = berth
        .api(Method::GET, "/api/v1/users", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200);
    body.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_a_real_openid_provider() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, _idp) = with_provider(
        &tmp,
        |o| {
            o.allowed_domains = vec!["example.com".into()];
            o.organization = Some("example".into());
            o.label = "Sign in with Example SSO".into();
        },
        false,
    )
    .await;

    // The sign-in page offers the provider.
    let b = browser(&berth);
    let form = b
        .get(berth.api_url("/signin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains("Sign in with Example SSO"), "{form}");
    assert!(form.contains("action=\"/signin/oidc\""), "{form}");

    // Alice has no berth account: she gets one (named from her address, in
    // the configured organization) and lands on the app she was going to.
    let app = apps::start("127.0.0.1:0", "sso").await;
    let port = app.port();
    // Level organization needs an owner in one (berth refuses it otherwise).
    let (s, body) = berth
        .api(
            Method::PATCH,
            "/api/v1/users/admin",
            &berth.admin_token,
            Some(json!({"organization": "staff"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "organization"}),
        )
        .await;
    let (s, body) = berth
        .api(Method::GET, "/api/v1/me", &berth.admin_token, None)
        .await;
    assert_eq!(s, 200, "{body}");
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/deep/page?q=1");
    // The app host sends her to sign in with its state (kept in her cookie jar).
    let state = sent_to_sign_in(&b, &app_url).await;
    let res = sso(&b, &berth, "alice", Start::Button(&app_url, &state)).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let back = location(&res);
    assert!(
        back.starts_with(&berth.app_url(&label, "/_berth/auth/callback?code=")),
        "{back}"
    );
    let res = b.get(&back).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/deep/page?q=1");
    let alice = users(&berth)
        .await
        .into_iter()
        .find(|u| u["email"] == "alice@example.com")
        .expect("alice was created");
    assert_eq!(alice["username"], "alice");
    assert_eq!(alice["role"], "member");
    assert_eq!(alice["organization"], "example");
    // The app is shared with the admin's organization, which alice is not
    // in: she is signed in but refused, as a stranger.
    let res = b
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Shared with every signed-in user, she reaches it as herself.
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "authenticated"}),
        )
        .await;
    let res = b
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice");
    assert_eq!(seen["headers"]["x-berth-email"], "alice@example.com");
    for h in ["authorization", "cookie"] {
        assert!(seen["headers"][h].is_null(), "{h}: {seen}");
    }

    // A sign-in through a link (which any page can send a browser to, and
    // which the provider may complete without a click) does not tell the
    // admin's app who she is until she says so on berth's own page.
    let b4 = browser(&berth);
    let res = b4
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let state = state_of(&location(&res));
    let res = sso(&b4, &berth, "alice", Start::Link(&app_url, &state)).await;
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("action=\"/signin/continue\""), "{page}");
    assert!(!page.contains("/_berth/auth/callback"), "{page}");

    // A second sign-in matches the same user; nobody new is created.
    let before = users(&berth).await.len();
    let b2 = browser(&berth);
    let res = sso(&b2, &berth, "alice", Start::Plain).await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[LOCATION], "/");
    assert_eq!(users(&berth).await.len(), before);

    // Carol exists with a password account; the provider spells her address
    // differently (Carol@Example.com). She is matched, not duplicated.
    berth
        .add_user("carol", "carol-password", "member", None)
        .await;
    let b3 = browser(&berth);
    let res = sso(&b3, &berth, "carol", Start::Plain).await;
    assert_eq!(res.status(), 303);
    let me = b3
        .get(berth.api_url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(me["username"], "carol", "{me}");
    assert_eq!(users(&berth).await.len(), before + 1);

    // Bob's address is outside the allowed domains; Eve's is unverified.
    let res = sso(&browser(&berth), &berth, "bob", Start::Plain).await;
    assert_eq!(res.status(), 403);
    let page = res.text().await.unwrap();
    assert!(page.contains("bob@other.org is not in a domain"), "{page}");
    let res = sso(&browser(&berth), &berth, "eve", Start::Plain).await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("has not verified"));
    let emails: Vec<Value> = users(&berth)
        .await
        .iter()
        .map(|u| u["email"].clone())
        .collect();
    assert!(!emails.contains(&json!("bob@other.org")), "{emails:?}");
    assert!(!emails.contains(&json!("eve@example.com")), "{emails:?}");
    assert_eq!(users(&berth).await.len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_refused_callbacks_sign_nobody_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, _idp) = with_provider(
        &tmp,
        |o| {
            o.scopes = "openid email".into();
            o.create_users = false;
        },
        true,
    )
    .await;
    let signed_in = |b: &reqwest::Client| {
        let b = b.clone();
        let url = berth.api_url("/api/v1/me");
        async move { b.get(url).send().await.unwrap().status() == 200 }
    };

    // With create_users off, an address no user has is refused.
    let b = browser(&berth);
    let res = sso(&b, &berth, "alice", Start::Plain).await;
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("No berth user has the address alice@example.com"));
    assert!(!signed_in(&b).await);

    // The admin (admin@berth.localhost) is not at the provider; give carol
    // an account so a sign-in can succeed.
    berth
        .add_user("carol", "carol-password", "member", None)
        .await;

    // A callback URL is good once, in the browser that started it: the
    // attacker's browser (no __Host-berth_oidc cookie) gets nothing from it, and a
    // tampered state is refused even with the cookie.
    let victim = browser(&berth);
    let start = victim
        .get(berth.api_url("/signin/oidc"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let auth = location(&start);
    let state = state_of(&auth);
    let forged = berth.api_url(&format!("/signin/oidc/callback?code=abc&state={state}x"));
    let res = victim.get(&forged).send().await.unwrap();
    assert_eq!(res.status(), 400);
    // ...and that attempt is now spent: its state no longer works either.
    let res = victim
        .get(berth.api_url(&format!("/signin/oidc/callback?code=abc&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // A real code, carried to another browser: refused there.
    let carol = browser(&berth);
    let res = sso(&carol, &berth, "carol", Start::Plain).await;
    assert_eq!(res.status(), 303);
    assert!(signed_in(&carol).await);
    let attacker = browser(&berth);
    let stolen = res.url().to_string();
    let res = attacker.get(&stolen).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(!signed_in(&attacker).await);
    // Replayed in carol's own browser, the spent attempt is refused too.
    let res = carol.get(&stolen).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // The provider says no (the user cancelled): a clear 401.
    let b = browser(&berth);
    let start = b.get(berth.api_url("/signin/oidc")).send().await.unwrap();
    let auth = location(&start);
    let state = state_of(&auth);
    let res = b
        .get(berth.api_url(&format!(
            "/signin/oidc/callback?error=access_denied&error_description=cancelled&state={state}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("access_denied"));
    assert!(!signed_in(&b).await);

    // A state that is right but an answer from another issuer (mix-up): refused.
    let start = b.get(berth.api_url("/signin/oidc")).send().await.unwrap();
    let auth = location(&start);
    let state = state_of(&auth);
    let res = b
        .get(berth.api_url(&format!(
            "/signin/oidc/callback?code=abc&state={state}&iss=https%3A%2F%2Fevil.example"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // A return_to outside the app wildcard is refused before the provider.
    let res = b
        .get(berth.api_url("/signin/oidc?return_to=https%3A%2F%2Fevil.example%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// `name=value` of the app session cookie an edge's sign-in callback set.
fn app_cookie(res: &Response) -> String {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-berth_app="))
        .unwrap_or_else(|| panic!("no app cookie in {:?}", res.headers()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_groups_in_the_id_token_let_a_share_in_and_a_dropped_group_is_left_at_sign_in() {
    idp_groups_let_a_share_in_until_dropped(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_groups_from_userinfo_let_a_share_in_and_a_dropped_group_is_left_at_sign_in() {
    idp_groups_let_a_share_in_until_dropped(false).await;
}

/// `oidc.groups_claim` through the real flow: the provider sends the
/// claim in the ID token (`in_id_token`) or only at its userinfo endpoint.
async fn idp_groups_let_a_share_in_until_dropped(in_id_token: bool) {
    use crate::regions::within;
    use crate::security::revocation::{closes_within, echoes, ws_h1, Cred, Target};
    let tmp = tempfile::tempdir().unwrap();
    let (idp_port, issuer) = Idp::reserve();
    let dir = tmp.path().join("data");
    let oidc = OidcConfig {
        issuer,
        client_id: CLIENT_ID.into(),
        client_secret: berth::auth::Secret::new(CLIENT_SECRET),
        scopes: "openid email profile groups".into(),
        allowed_domains: vec![],
        organization: None,
        create_users: true,
        ca_file: Some(dir.join("ca.pem")),
        label: "SSO".into(),
        groups_claim: Some("groups".into()),
    };
    let berth = Berth::start_with(Options {
        dir: Some(dir.clone()),
        oidc: Some(oidc),
        ..Default::default()
    })
    .await;
    let idp = Idp::start_with(
        idp_port,
        &dir,
        &berth.api_url("/signin/oidc/callback"),
        in_id_token,
    )
    .await;
    let admin = berth.admin_token.clone();
    let members = |group: &'static str| {
        let berth = &berth;
        async move {
            let (s, g) = berth
                .api(
                    Method::GET,
                    &format!("/api/v1/groups/{group}"),
                    &berth.admin_token,
                    None,
                )
                .await;
            assert_eq!(s, 200, "{group}: {g}");
            g["members"].clone()
        }
    };

    // At the provider, alice is in eng-platform and staff. Her first
    // sign-in makes both berth groups, with her in them from the claim.
    idp.set_groups("alice", &["eng-platform", "staff"]).await;
    let b = browser(&berth);
    let res = sso(&b, &berth, "alice", Start::Plain).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let alice_is_in = json!([{"username": "alice", "source": "oidc"}]);
    assert_eq!(members("eng-platform").await, alice_is_in);
    assert_eq!(members("staff").await, alice_is_in);

    // The admin's app is private but for @eng-platform: alice signs in at
    // the app host through the provider and gets in.
    let app = apps::start("127.0.0.1:0", "idp-groups").await;
    let port = app.port();
    berth
        .share(
            &admin,
            "admin/dev/main",
            port,
            json!({"level": "owner", "groups": ["eng-platform"]}),
        )
        .await;
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/in");
    let state = sent_to_sign_in(&b, &app_url).await;
    let res = sso(&b, &berth, "alice", Start::Button(&app_url, &state)).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let res = b.get(location(&res)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = app_cookie(&res);
    let res = b.get(&app_url).send().await.unwrap();
    assert_eq!(res.status(), 200, "alice, in @eng-platform at the provider");
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "alice");
    // ...and opens a WebSocket through it with her app cookie.
    let target = Target {
        addr: berth.addr,
        ca: berth.ca_pem.clone(),
        host: format!("{label}.berth.localhost"),
    };
    let mut ws = ws_h1(&target, Cred::Cookie(&cookie)).await;
    echoes(&mut ws, "alice, through the group").await;

    // The provider's admin takes her out of eng-platform. Her next sign-in
    // takes her out of the berth group; the app turns her away at once and
    // her open WebSocket is closed.
    idp.set_groups("alice", &["staff"]).await;
    let since = std::time::Instant::now();
    let res = sso(&browser(&berth), &berth, "alice", Start::Plain).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(members("eng-platform").await, json!([]));
    assert_eq!(members("staff").await, alice_is_in);
    let took = within(Duration::from_secs(5), "alice's access ends", || async {
        b.get(&app_url).send().await.unwrap().status() == 404
    })
    .await;
    println!("the dropped group closed the app to her in {took:?}");
    let closed = closes_within(&mut ws, since, "alice's WebSocket, out of the group").await;
    println!("her WebSocket closed {closed:?} after the sign-in began");
}
