//! Error pages that lead somewhere (issue 15), through a real edge: an app
//! host's 404 says who the visitor is signed in as and offers to sign in as
//! someone else; a browser coming back with a share link that expired or
//! was revoked is told so, with a way to sign in, and is never let in.

use crate::support::browser::{pair, sign_in};
use crate::support::github::{browser, location};
use crate::support::{apps, Berth};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_404_names_the_signed_in_visitor_and_offers_to_switch_account() {
    let berth = Berth::start().await;
    berth.add_user("bob", "bob-password", "member", None).await;
    berth
        .add_user("carol", "carol-password", "member", None)
        .await;
    let app = apps::start("127.0.0.1:0", "private").await;
    let port = app.port();
    // The admin's app, for carol only.
    berth
        .share(
            &berth.admin_token,
            "admin/dev/main",
            port,
            json!({"level": "owner", "users": ["carol"]}),
        )
        .await;
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/report?q=1");
    let c = berth.client(true);
    let control = berth.api_url("");

    // Bob signs in on the app host; it is not his to see.
    let bob = sign_in(&c, &control, &app_url, "bob", "bob-password").await;
    let res = c
        .get(&app_url)
        .header("accept", "text/html")
        .header(COOKIE, &bob.app)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let page = res.text().await.unwrap();
    assert!(page.contains("You are signed in as bob."), "{page}");
    let switch = "/_berth/auth/signin?path=%2Freport%3Fq%3D1&amp;switch=1";
    assert!(
        page.contains(&format!("<a href=\"{switch}\">sign in as someone else</a>")),
        "{page}"
    );
    assert!(!page.contains("private"), "nothing of the app: {page}");
    // A program gets the words too, as JSON.
    let res = c
        .get(&app_url)
        .header(COOKIE, &bob.app)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("signed in as bob"),
        "{body}"
    );
    // Bob's API token is not a browser's sign-in: the plain 404 names nobody.
    let token = berth.login("bob", "bob-password").await;
    let res = c
        .get(&app_url)
        .header("accept", "text/html")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let page = res.text().await.unwrap();
    assert!(!page.contains("signed in as"), "{page}");
    assert!(!page.contains("bob"), "{page}");

    // "Sign in as someone else": to control's sign-in, which shows its form
    // (not bob's session going straight back) and says who is signed in.
    let res = c
        .get(berth.app_url(&label, &switch.replace("&amp;", "&")))
        .header(COOKIE, &bob.app)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let state = pair(res.headers(), "__Host-berth_state");
    let to = res.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with(&format!("{control}/signin?")), "{to}");
    assert!(to.ends_with("&switch=1"), "{to}");
    let res = c
        .get(&to)
        .header(COOKIE, &bob.session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let form = res.text().await.unwrap();
    assert!(
        form.contains("You are signed in as <b>bob</b>. Sign in as someone else below"),
        "{form}"
    );
    assert!(form.contains("name=\"password\""), "{form}");
    // Carol signs in there and lands on the app, as herself.
    let mut fields: Vec<(String, String)> =
        serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
    fields.retain(|(k, _)| k != "switch");
    fields.push(("username".into(), "carol".into()));
    fields.push(("password".into(), "carol-password".into()));
    let res = c
        .post(format!("{control}/signin"))
        .header("origin", &control)
        .header(COOKIE, &bob.session)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let callback = res.headers()[LOCATION].to_str().unwrap().to_owned();
    let res = c
        .get(&callback)
        .header(COOKIE, &state)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{callback}");
    assert_eq!(res.headers()[LOCATION], "/report?q=1");
    let carol = pair(res.headers(), "__Host-berth_app");
    let res = c.get(&app_url).header(COOKIE, &carol).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    assert_eq!(seen["headers"]["x-berth-user"], "carol");
}

/// `Max-Age` of the `__Host-berth_share` cookie a redemption set.
fn share_cookie_max_age(res: &reqwest::Response) -> i64 {
    let set = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__Host-berth_share="))
        .expect("a share cookie");
    set.split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .expect("Max-Age")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_back_after_its_share_link_ended_is_told_so_and_not_let_in() {
    let berth = Berth::start().await;
    let admin = berth.admin_token.clone();
    let app = apps::start("127.0.0.1:0", "linked").await;
    let port = app.port();
    let label = format!("{port}--main--dev--admin");
    let app_url = berth.app_url(&label, "/page?q=1");
    let link = |ttl: i64| {
        let berth = &berth;
        let admin = &admin;
        async move {
            berth
                .share_link(
                    admin,
                    json!({"user": "admin", "workspace": "dev", "agent": "main", "port": port, "ttl_seconds": ttl}),
                )
                .await
        }
    };
    let week = 7 * 86_400;

    // A browser (with a cookie jar that honours Max-Age) opens a 2 s link.
    let b = browser(&berth);
    let short = link(2).await;
    let res = b.get(short["url"].as_str().unwrap()).send().await.unwrap();
    let redeemed = Instant::now();
    assert_eq!(res.status(), 303);
    let max_age = share_cookie_max_age(&res);
    assert!(
        (week..=week + 2).contains(&max_age),
        "the cookie outlives the link by a week, no more: Max-Age={max_age}"
    );
    let res = b.get(&app_url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["app"], "linked");

    // Back after the link expired: told so, with a sign-in link; the app is
    // not reached, for pages or programs.
    tokio::time::sleep(
        Duration::from_secs(2).saturating_sub(redeemed.elapsed()) + Duration::from_millis(1100),
    )
    .await;
    let res = b
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Share link expired</h1>"), "{page}");
    assert!(
        page.contains("The share link that opened this app for you has expired."),
        "{page}"
    );
    let signin = "/_berth/auth/signin?path=%2Fpage%3Fq%3D1";
    assert!(
        page.contains(&format!("<a href=\"{signin}\">sign in</a>")),
        "{page}"
    );
    assert!(!page.contains("linked"), "{page}");
    let res = b.get(&app_url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");
    assert!(
        body["message"].as_str().unwrap().contains("has expired"),
        "{body}"
    );
    let res = b
        .request(Method::POST, &app_url)
        .header("origin", berth.app_url(&label, ""))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no method gets through");
    // The sign-in link starts a sign-in that comes back to the page.
    let res = b.get(berth.app_url(&label, signin)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert!(to.starts_with(&berth.api_url("/signin?return_to=")), "{to}");
    let back: Vec<(String, String)> =
        serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
    assert_eq!(back[0], ("return_to".into(), app_url.clone()));
    // It leads back to this host only: any other path is this host's root.
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "x",
    ] {
        let query = serde_urlencoded::to_string([("path", evil)]).unwrap();
        let res = b
            .get(berth.app_url(&label, &format!("/_berth/auth/signin?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{evil}");
        let to = location(&res);
        let back: Vec<(String, String)> =
            serde_urlencoded::from_str(to.split_once('?').unwrap().1).unwrap();
        assert_eq!(
            back[0],
            ("return_to".into(), berth.app_url(&label, "/")),
            "{evil}"
        );
    }

    // A link revoked while the browser holds it: "was revoked".
    let b = browser(&berth);
    let long = link(3600).await;
    let res = b.get(long["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(b.get(&app_url).send().await.unwrap().status(), 200);
    let (s, _) = berth
        .api(
            Method::DELETE,
            &format!("/api/v1/share-links/{}", long["id"].as_str().unwrap()),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let res = b
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Share link revoked</h1>"), "{page}");
    assert!(page.contains("was revoked"), "{page}");
    assert!(
        page.contains(&format!("<a href=\"{signin}\">sign in</a>")),
        "{page}"
    );

    // A browser that never had a link is sent to sign in, as before.
    let res = browser(&berth)
        .get(&app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with(&berth.api_url("/signin?")));
}
