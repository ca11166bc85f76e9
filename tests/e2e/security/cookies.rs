//! Cookies and sign-in across the site boundary: every app host and the
//! control host share one site (`*.berth.localhost` under `berth.localhost`),
//! so an app can try to plant cookies for the others (cookie tossing), send
//! another browser through sign-in with its own code (login CSRF), sign a
//! visitor in silently to learn who they are, or frame berth's pages.
//!
//! Each test reproduces the attack with raw requests carrying what a browser
//! would send (two users, bob and carol, each with a workspace, an agent and
//! an app), and shows what the attack gets now.

use crate::support::{apps, Berth};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

const HTML: &str = "text/html,application/xhtml+xml";

/// An app that answers every request with the headers it received (JSON)
/// and with whatever `Set-Cookie` (and `Clear-Site-Data`) headers the test
/// gives it: carol's app, trying to plant cookies for the rest of the site.
struct Tosser {
    addr: SocketAddr,
    headers: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tosser {
    async fn start() -> Tosser {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let headers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let answer = headers.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let answer = answer.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let answer = answer.lock().unwrap().clone();
                        async move {
                            let seen: serde_json::Map<String, Value> = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                                .collect();
                            let mut res =
                                Response::builder().header("content-type", "application/json");
                            for (k, v) in &answer {
                                res = res.header(k.as_str(), v.as_str());
                            }
                            let body = json!({"app": "tosser", "headers": seen}).to_string();
                            Ok::<_, Infallible>(
                                res.body(
                                    Full::new(Bytes::from(body))
                                        .map_err(|e: Infallible| -> std::io::Error { match e {} })
                                        .boxed(),
                                )
                                .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Tosser {
            addr,
            headers,
            task,
        }
    }

    fn answer_with(&self, headers: &[(&str, &str)]) {
        *self.headers.lock().unwrap() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }
}

impl Drop for Tosser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Berth with two members, bob and carol, each owning a workspace with a
/// connected agent: bob's app is private (owner only), carol's is the
/// tossing app, shared publicly so bob's browser goes there; carol also has
/// a private port (nothing listening is needed to be sent to sign in).
struct World {
    berth: Berth,
    c: reqwest::Client,
    bob_app: String,
    carol_app: String,
    carol_private: String,
    tosser: Tosser,
    _bob_echo: apps::App,
    _agents: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl World {
    async fn start() -> World {
        let berth = Berth::start().await;
        let mut agents = Vec::new();
        for (user, ws, agent) in [("bob", "bws", "laptop"), ("carol", "cws", "box")] {
            let password = format!("{user}-password");
            berth.add_user(user, &password, "member", None).await;
            let admin = &berth.admin_token;
            berth.add_workspace(admin, user, ws).await;
            let token = berth.add_agent(admin, user, ws, agent).await;
            agents.push(berth.spawn_agent(&token, Default::default()));
        }
        berth.wait_agents(3).await;
        let bob_echo = apps::start("127.0.0.1:0", "bob-app").await;
        let tosser = Tosser::start().await;
        let bob_app = format!("{}--laptop--bws--bob", bob_echo.port());
        let carol_app = format!("{}--box--cws--carol", tosser.addr.port());
        let (s, b) = berth
            .api(
                Method::PUT,
                &format!(
                    "/api/v1/workspaces/carol/cws/agents/box/ports/{}/share",
                    tosser.addr.port()
                ),
                &berth.admin_token,
                Some(json!({"level": "public"})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let c = berth.client(true);
        World {
            berth,
            c,
            bob_app,
            carol_app,
            carol_private: "5173--box--cws--carol".into(),
            tosser,
            _bob_echo: bob_echo,
            _agents: agents,
        }
    }

    fn control(&self) -> String {
        self.berth.api_url("")
    }

    /// A control-host session for `user`, as the sign-in form gives it:
    /// the `name=value` pair of its cookie.
    async fn session(&self, user: &str) -> String {
        let res = self
            .c
            .post(self.berth.api_url("/signin"))
            .header("origin", self.control())
            .form(&[
                ("username", user),
                ("password", &format!("{user}-password")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        pair(res.headers(), "__Host-berth_session")
    }

    /// Opens app `label` in a browser without cookies: the sign-in URL and
    /// the `__Host-berth_state` cookie the edge set for it.
    async fn start_signin(&self, label: &str, path: &str) -> (String, String) {
        let res = self
            .c
            .get(self.berth.app_url(label, path))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        let signin = location(res.headers());
        assert!(
            signin.starts_with(&self.berth.api_url("/signin?")),
            "{signin}"
        );
        (signin, pair(res.headers(), "__Host-berth_state"))
    }

    /// Signs `user` in with a password from the sign-in URL `signin`
    /// (carrying `return_to` and `state`): the callback URL with the code.
    async fn password_signin(&self, user: &str, signin: &str) -> String {
        let mut fields = query(signin);
        fields.push(("username".into(), user.into()));
        fields.push(("password".into(), format!("{user}-password")));
        let res = self
            .c
            .post(self.berth.api_url("/signin"))
            .header("origin", self.control())
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        location(res.headers())
    }

    /// The whole sign-in of `user` on app `label`, as a browser does it:
    /// the `__Host-berth_app` pair for that host.
    async fn app_cookie(&self, user: &str, label: &str) -> String {
        let (signin, state) = self.start_signin(label, "/").await;
        let callback = self.password_signin(user, &signin).await;
        let res = self
            .c
            .get(&callback)
            .header(COOKIE, &state)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
        pair(res.headers(), "__Host-berth_app")
    }

    /// `GET /api/v1/me` with exactly `cookie` as the `Cookie` header.
    async fn me(&self, cookie: &str) -> (u16, Value) {
        let res = self
            .c
            .get(self.berth.api_url("/api/v1/me"))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }
}

fn location(h: &HeaderMap) -> String {
    h[LOCATION].to_str().unwrap().to_owned()
}

/// Every `Set-Cookie` of a response.
fn set_cookies(h: &HeaderMap) -> Vec<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// `name=value` of the `Set-Cookie` for `name`.
fn pair(h: &HeaderMap, name: &str) -> String {
    set_cookies(h)
        .into_iter()
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {h:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The value of a `name=value` pair.
fn value(pair: &str) -> &str {
    pair.split_once('=').unwrap().1
}

fn query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Carol's app answers with berth's cookie names in every spelling (her own
/// valid control-host session among them, for `/api` of the whole site):
/// the edge lets none of them reach the browser, and keeps her own cookie.
/// Before: every one passed, and Chromium stored the `Domain=` ones for the
/// control host and every app host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_cannot_set_berth_cookies_for_the_site() {
    let w = World::start().await;
    let carol_session = w.session("carol").await;
    let tossed_session = format!(
        "berth_session={}; Domain=berth.localhost; Path=/api; Secure",
        value(&carol_session)
    );
    let prefixed_session = format!("{carol_session}; Path=/; Secure");
    let tossed = [
        tossed_session.as_str(),
        "berth_app=forged.1.x; Domain=berth.localhost; Path=/deep; Secure",
        "berth_share=forged; Domain=berth.localhost; Path=/",
        prefixed_session.as_str(),
        "__host-berth_app=forged; Path=/; Secure",
        "=__Host-berth_session=forged; Path=/; Secure",
        "__Secure-berth_share=forged; Domain=berth.localhost; Secure",
        "BERTH_STATE=forged; Domain=berth.localhost",
        "berth_oidc=forged; Domain=berth.localhost",
    ];
    let mut answer: Vec<(&str, &str)> = tossed.iter().map(|t| ("set-cookie", *t)).collect();
    answer.push(("set-cookie", "theme=dark; Path=/"));
    answer.push(("clear-site-data", "\"cookies\", \"cache\""));
    w.tosser.answer_with(&answer);

    let res =
        w.c.get(w.berth.app_url(&w.carol_app, "/"))
            .header("accept", HTML)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(set_cookies(res.headers()), ["theme=dark; Path=/"]);
    // Her app may clear its own cache, not the site's cookies (which would
    // sign the visitor out of berth and every other app).
    assert_eq!(res.headers()["clear-site-data"], "\"cache\"");
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["app"], "tosser");
}

/// Bob's browser holds his own session and carol's, tossed for `/api` by her
/// app (with JavaScript, which the edge cannot stop). Browsers send the
/// longer path first; berth reads only the `__Host-` name, which no other
/// host can set, so `/api/v1/me` answers bob and a dashboard write creates
/// bob's workspace, not carol's. Before: berth read the first
/// `berth_session`, carol's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tossed_session_neither_replaces_nor_shadows_the_visitors_own() {
    let w = World::start().await;
    let bob = w.session("bob").await;
    let carol = w.session("carol").await;
    let (bob_v, carol_v) = (value(&bob), value(&carol));
    assert_eq!(w.me(&bob).await.1["username"], "bob");
    assert_eq!(w.me(&carol).await.1["username"], "carol");

    // What Chromium sent after the tossing: the tossed unprefixed copy first.
    let jar = format!("berth_session={carol_v}; {bob}");
    let (s, me) = w.me(&jar).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("bob")), "{me}");
    let res =
        w.c.post(w.berth.api_url("/api/v1/workspaces"))
            .header(COOKIE, &jar)
            .header("origin", w.control())
            .json(&json!({"name": "made-in-bobs-browser"}))
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 201);
    let ws: Value = res.json().await.unwrap();
    assert_eq!(ws["owner"], "bob", "{ws}");
    // Carol's session alone under the old name is nobody.
    assert_eq!(w.me(&format!("berth_session={carol_v}")).await.0, 401);

    // Several copies of the prefixed name (a browser that let one through):
    // a forged one never decides, in either order, and two valid sessions
    // of different users are nobody rather than whichever came first.
    let forged = format!("{bob_v}x");
    for (jar, want) in [
        (format!("__Host-berth_session={forged}; {bob}"), Some("bob")),
        (format!("{bob}; __Host-berth_session={forged}"), Some("bob")),
        (format!("__Host-berth_session=garbage; {bob}"), Some("bob")),
        (format!("{carol}; {bob}"), None),
        (format!("{bob}; {carol}"), None),
        (format!("{bob}; {bob}"), Some("bob")),
    ] {
        let (s, me) = w.me(&jar).await;
        match want {
            Some(user) => assert_eq!((s, me["username"].as_str()), (200, Some(user)), "{jar}"),
            None => assert_eq!(s, 401, "{jar}: {me}"),
        }
    }
    // The same over two Cookie header lines.
    let res =
        w.c.get(w.berth.api_url("/api/v1/me"))
            .header(COOKIE, &carol)
            .header(COOKIE, &bob)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);
    // A flood of copies is nobody too, and answered at once.
    let flood = vec![bob.as_str(); 100].join("; ");
    assert_eq!(w.me(&flood).await.0, 401);
}

/// On an app host: a tossed `berth_app` for a deeper path used to come
/// first and fail, so bob was sent to sign in again and again (a redirect
/// loop). Now a forged copy never decides, and carol's valid cookie for
/// the same host (if one ever got into bob's browser) does not make him
/// carol: two different sessions are nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tossed_app_cookie_neither_loops_nor_switches_users() {
    let w = World::start().await;
    // Bob's app is shared with signed-in users, so carol can have a cookie for it too.
    let port = w.bob_app.split("--").next().unwrap();
    let (s, b) = w
        .berth
        .api(
            Method::PUT,
            &format!("/api/v1/workspaces/bob/bws/agents/laptop/ports/{port}/share"),
            &w.berth.admin_token,
            Some(json!({"level": "authenticated"})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let bob = w.app_cookie("bob", &w.bob_app).await;
    let carol = w.app_cookie("carol", &w.bob_app).await;
    let get = |cookie: String| {
        let url = w.berth.app_url(&w.bob_app, "/deep/page");
        let req = w.c.get(url).header("accept", HTML).header(COOKIE, cookie);
        async move { req.send().await.unwrap() }
    };
    for jar in [
        format!("berth_app=forged.1.x; {bob}"),
        format!("__Host-berth_app=forged.1.x; {bob}"),
        format!("{bob}; __Host-berth_app=forged.1.x"),
        format!("__Host-berth_app={}x; {bob}", value(&bob)),
    ] {
        let res = get(jar.clone()).await;
        assert_eq!(res.status(), 200, "{jar}");
        let seen: Value = res.json().await.unwrap();
        assert_eq!(seen["headers"]["x-berth-user"], "bob", "{jar}");
        assert!(seen["headers"]["cookie"].is_null(), "{jar}: {seen}");
    }
    for jar in [format!("{carol}; {bob}"), format!("{bob}; {carol}")] {
        let res = get(jar.clone()).await;
        assert_eq!(res.status(), 303, "{jar}: sent to sign in, as nobody");
    }
    // Carol's cookie alone is carol's, on this host only.
    let res = get(carol.clone()).await;
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "carol");
}

/// Login CSRF: carol signs in for bob's app host herself and sends bob's
/// browser to the callback with her code. Before: bob's browser got carol's
/// session there (and bob, as carol, was locked out of his own app). Now the
/// code is bound to the sign-in state in carol's browser, and bob's browser
/// (with its own state, or none) gets a page that offers to sign in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_sign_in_code_signs_nobody_in() {
    let w = World::start().await;
    // Carol's code for bob's app host, bound to carol's state.
    let (carol_signin, carol_state) = w.start_signin(&w.bob_app, "/").await;
    let carol_callback = w.password_signin("carol", &carol_signin).await;
    assert!(carol_callback.contains("/_berth/auth/callback?code="));
    // Bob's browser opened his app earlier: it holds its own state there.
    let (_, bob_state) = w.start_signin(&w.bob_app, "/").await;
    assert_ne!(value(&bob_state), value(&carol_state));
    // A second tab of bob's keeps the state it has (neither undoes the other).
    let res =
        w.c.get(w.berth.app_url(&w.bob_app, "/other"))
            .header("accept", HTML)
            .header(COOKIE, &bob_state)
            .send()
            .await
            .unwrap();
    let again = query(&location(res.headers()))
        .into_iter()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1;
    assert!(
        value(&bob_state).starts_with(&format!("{again}.")),
        "{again} {bob_state}"
    );
    for jar in [Some(bob_state.as_str()), None] {
        let mut req = w.c.get(&carol_callback).header("accept", HTML);
        if let Some(j) = jar {
            req = req.header(COOKIE, j);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{jar:?}");
        assert!(
            !set_cookies(res.headers())
                .iter()
                .any(|c| c.starts_with("__Host-berth_app=")),
            "{jar:?}: {:?}",
            set_cookies(res.headers())
        );
        let page = res.text().await.unwrap();
        assert!(page.contains(">Sign in again</a>"), "{page}");
    }
    // Bob's attempt spent carol's code: not even carol's browser can use it.
    let res =
        w.c.get(&carol_callback)
            .header(COOKIE, &carol_state)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);

    // A code minted without any state (a sign-in not started by an app
    // host's edge) is good for no browser.
    let return_to = w.berth.app_url(&w.bob_app, "/");
    let res =
        w.c.post(w.berth.api_url("/signin"))
            .header("origin", w.control())
            .form(&[
                ("username", "carol"),
                ("password", "carol-password"),
                ("return_to", return_to.as_str()),
            ])
            .send()
            .await
            .unwrap();
    let stateless = location(res.headers());
    assert!(stateless.contains("/_berth/auth/callback?code="));
    let res =
        w.c.get(&stateless)
            .header(COOKIE, &bob_state)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 401);

    // A state that control did not make is refused before anything is minted.
    let res =
        w.c.get(format!(
            "{}?{}",
            w.berth.api_url("/signin"),
            serde_urlencoded::to_string([("return_to", return_to.as_str()), ("state", "x\"><b")])
                .unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // Bob's own sign-in, in his browser, still works (and spends the state).
    let (signin, state) = w.start_signin(&w.bob_app, "/mine?x=1").await;
    let callback = w.password_signin("bob", &signin).await;
    let res =
        w.c.get(&callback)
            .header(COOKIE, &state)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(location(res.headers()), "/mine?x=1");
    let cookies = set_cookies(res.headers());
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-berth_app=")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-berth_state=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    let app = pair(res.headers(), "__Host-berth_app");
    let res =
        w.c.get(w.berth.app_url(&w.bob_app, "/"))
            .header(COOKIE, &app)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["headers"]["x-berth-user"],
        "bob"
    );
}

/// A silent sign-in: any page sends bob's browser (signed in on the control
/// host) to sign-in with carol's app as the return. Before: straight back
/// with a code, and carol's app learned bob's name and address without bob
/// doing anything. Now control asks first (a page no other site can frame
/// or answer: the answer is a POST whose Origin must be control's); bob's
/// own apps, and a return he just typed his password for, go straight on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_app_cannot_learn_who_visits_without_asking() {
    let w = World::start().await;
    let bob = w.session("bob").await;
    let (signin, _) = w.start_signin(&w.carol_private, "/").await;
    let res = w.c.get(&signin).header(COOKIE, &bob).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get(LOCATION).is_none());
    let page = res.text().await.unwrap();
    assert!(!page.contains("/_berth/auth/callback"), "{page}");
    assert!(page.contains("belongs to <b>carol</b>"), "{page}");
    assert!(page.contains("action=\"/signin/continue\""), "{page}");

    // Carol's app cannot answer for him: its Origin is not control's.
    let fields = query(&signin);
    let carol_origin = w.berth.app_url(&w.carol_private, "");
    for origin in [carol_origin.as_str(), "null"] {
        let res =
            w.c.post(w.berth.api_url("/signin/continue"))
                .header(COOKIE, &bob)
                .header("origin", origin)
                .form(&fields)
                .send()
                .await
                .unwrap();
        assert_eq!(res.status(), 403, "{origin}");
    }
    // Bob says yes on control's own page: on to carol's app with a code.
    let res =
        w.c.post(w.berth.api_url("/signin/continue"))
            .header(COOKIE, &bob)
            .header("origin", w.control())
            .form(&fields)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(res.headers()).starts_with(&format!(
        "{}/_berth/auth/callback?code=",
        w.berth.app_url(&w.carol_private, "")
    )));
    // Without a session, the answer is the sign-in form (nothing minted).
    let res =
        w.c.post(w.berth.api_url("/signin/continue"))
            .header("origin", w.control())
            .form(&fields)
            .send()
            .await
            .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(res.headers()).starts_with("/signin?return_to="));

    // Bob's own app: no question.
    let (signin, _) = w.start_signin(&w.bob_app, "/").await;
    let res = w.c.get(&signin).header(COOKIE, &bob).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(res.headers()).contains("/_berth/auth/callback?code="));
}

/// Control's pages (sign-in, consent, dashboard, API) cannot be framed by
/// an app (no clickjacking of the consent or share buttons) and tell the
/// browser to stay on HTTPS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_pages_cannot_be_framed() {
    let w = World::start().await;
    let bob = w.session("bob").await;
    let (consent, _) = w.start_signin(&w.carol_private, "/").await;
    for (path, cookie) in [
        (w.berth.api_url("/signin"), None),
        (consent, Some(&bob)),
        (w.berth.api_url("/"), Some(&bob)),
        (w.berth.api_url("/api/v1/me"), Some(&bob)),
        (w.berth.api_url("/api/v1/nope"), None),
    ] {
        let mut req = w.c.get(&path);
        if let Some(c) = cookie {
            req = req.header(COOKIE, c);
        }
        let res = req.send().await.unwrap();
        let h = res.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        let hsts = h["strict-transport-security"].to_str().unwrap();
        assert!(hsts.starts_with("max-age=31536000"), "{path}: {hsts}");
    }
}

/// Odd addresses: refused at user creation with a 422 naming the field, and
/// one that is already stored (from before addresses were checked) never
/// reaches an app in `X-Berth-Email`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_email_addresses_are_refused_and_never_forwarded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let berth = Berth::start_with(crate::support::Options {
        dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    for (i, email) in [
        "<script>@x.y",
        "\u{202E}moc.elpmaxe@ecila",
        "alice@exa\u{200B}mple.com",
        "\"a b\"@x.y",
        "a@b@c",
    ]
    .into_iter()
    .enumerate()
    {
        let (s, body) = berth
            .api(
                Method::POST,
                "/api/v1/users",
                &berth.admin_token,
                Some(json!({"username": format!("odd{i}"), "email": email, "password": "odd-password", "role": "member"})),
            )
            .await;
        assert_eq!(s, 422, "{email:?}: {body}");
        assert_eq!(body["error"], "invalid_field");
        assert!(
            body["message"].as_str().unwrap().starts_with("email: "),
            "{body}"
        );
    }
    let (_, users) = berth
        .api(Method::GET, "/api/v1/users", &berth.admin_token, None)
        .await;
    assert_eq!(users.as_array().unwrap().len(), 1, "{users}");

    // A user stored with such an address before this check existed.
    let tmp_kept = berth.stop().await;
    let store = berth::store::Store::open(&dir).await.unwrap();
    let legacy = store
        .create_user(berth::store::NewUser {
            username: "legacy".into(),
            email: "\u{202E}moc.elpmaxe@ecila".into(),
            password: "legacy-password".into(),
            role: berth::store::Role::Member,
            organization: None,
        })
        .await
        .unwrap();
    let (_, token) = store.create_api_token(legacy.id, "test").await.unwrap();
    drop(store);
    let berth = Berth::start_with(crate::support::Options {
        dir: Some(dir.clone()),
        ..Default::default()
    })
    .await;
    let app = apps::start("127.0.0.1:0", "echo").await;
    let (s, _) = berth
        .api(
            Method::PUT,
            &format!(
                "/api/v1/workspaces/admin/dev/agents/main/ports/{}/share",
                app.port()
            ),
            &berth.admin_token,
            Some(json!({"level": "authenticated"})),
        )
        .await;
    assert_eq!(s, 200);
    let res = berth
        .client(true)
        .get(berth.app_url(&format!("{}--main--dev--admin", app.port()), "/"))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "legacy");
    assert!(seen["headers"]["x-berth-email"].is_null(), "{seen}");
    drop(tmp_kept);
}
