//! Attacks on the GitHub sign-in's round trip: a callback with another
//! state, a callback carried to another browser or replayed, and a code
//! from one sign-in injected into another's (which PKCE stops: the
//! stand-in checks the verifier as GitHub does).

use crate::support::github::{
    browser, github_session, location, sign_in, state_of, with_github, Account, GitHub, CLIENT_ID,
    CLIENT_SECRET,
};
use crate::support::Berth;
use serde_json::Value;

async fn signed_in(b: &reqwest::Client, berth: &Berth) -> bool {
    b.get(berth.api_url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

/// Starts a GitHub sign-in in `b`; the authorization URL berth sent it to.
async fn start(b: &reqwest::Client, berth: &Berth) -> String {
    let res = b.get(berth.api_url("/signin/github")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

/// Follows `authorize` at the stand-in (signed in there as `b`'s session)
/// up to the callback URL, without visiting it.
async fn callback_url(b: &reqwest::Client, authorize: &str) -> String {
    let res = b.get(authorize).send().await.unwrap();
    assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
    location(&res)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_callbacks_with_another_state_or_in_another_browser_sign_nobody_in() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |_| {}, true).await;
    gh.add(Account::new("alice", 1, "alice@example.com").in_org("acme"));

    // A state that is not the one this browser's sign-in carries: refused,
    // and the attempt is spent, so its own state no longer works either.
    let victim = browser(&berth);
    github_session(&victim, &gh, "alice").await;
    let authorize = start(&victim, &berth).await;
    let state = state_of(&authorize);
    let cb = callback_url(&victim, &authorize).await;
    let tampered = cb.replace(&format!("state={state}"), &format!("state={state}x"));
    assert_ne!(tampered, cb);
    let res = victim.get(&tampered).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("Sign-in expired"));
    let res = victim.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(!signed_in(&victim, &berth).await);
    // The refused callbacks never reached the token endpoint.
    assert_eq!((gh.pkce_verified(), gh.pkce_refused()), (0, 0));

    // A real callback URL carried to another browser (no state cookie):
    // refused there; replayed in its own browser after use: refused too.
    let alice = browser(&berth);
    let (res, cb) = sign_in(&alice, &berth, &gh, "alice", None).await;
    assert_eq!(res.status(), 303);
    assert!(signed_in(&alice, &berth).await);
    let attacker = browser(&berth);
    let res = attacker.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(!signed_in(&attacker, &berth).await);
    let res = alice.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 400);

    // GitHub says no (the user cancelled): a clear 401.
    let b = browser(&berth);
    let state = state_of(&start(&b, &berth).await);
    let res = b
        .get(berth.api_url(&format!(
            "/signin/github/callback?error=access_denied&error_description=The+user+has+denied+your+application+access.&state={state}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("access_denied"));
    assert!(!signed_in(&b, &berth).await);

    // Cross-site button presses are refused before GitHub is involved.
    let res = b
        .post(berth.api_url("/signin/github"))
        .header("origin", "https://evil.example")
        .form(&[("return_to", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

/// Redeems `code` at the stand-in's token endpoint as a program holding
/// the client secret would, with `verifier` (or none).
async fn redeem(
    gh: &GitHub,
    b: &reqwest::Client,
    berth: &Berth,
    code: &str,
    verifier: Option<&str>,
) -> Value {
    let redirect = berth.api_url("/signin/github/callback");
    let mut form = vec![
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("code", code),
        ("redirect_uri", redirect.as_str()),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    b.post(format!("{}/login/oauth/access_token", gh.url()))
        .header("accept", "application/json")
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_code_injected_into_another_sign_in_fails_its_pkce_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (berth, gh) = with_github(&tmp, |_| {}, true).await;
    gh.add(Account::new("mallory", 666, "mallory@example.com").in_org("acme"));
    gh.add(Account::new("alice", 1, "alice@example.com").in_org("acme"));

    // Mallory gets a code for his own account (he never visits berth's
    // callback with it) and gets it into Alice's browser, on the callback
    // of the sign-in Alice started herself (her state, her cookie).
    let mallory = browser(&berth);
    github_session(&mallory, &gh, "mallory").await;
    let his = callback_url(&mallory, &start(&mallory, &berth).await).await;
    let code = reqwest::Url::parse(&his)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let alice = browser(&berth);
    let state = state_of(&start(&alice, &berth).await);
    let injected = berth.api_url(&format!(
        "/signin/github/callback?code={code}&state={state}"
    ));
    let res = alice.get(&injected).send().await.unwrap();
    // berth redeemed it with the verifier of Alice's sign-in, which is not
    // the one Mallory's code was issued for: GitHub refuses, so does berth.
    assert_eq!(res.status(), 401);
    let page = res.text().await.unwrap();
    assert!(page.contains("code_verifier does not match"), "{page}");
    assert!(!signed_in(&alice, &berth).await);
    assert_eq!((gh.pkce_verified(), gh.pkce_refused()), (0, 1));

    // The stand-in checks PKCE as GitHub does: a code redeemed without its
    // verifier (by someone holding the client secret, say) is refused.
    let b = browser(&berth);
    github_session(&b, &gh, "mallory").await;
    let cb = callback_url(&b, &start(&b, &berth).await).await;
    let code = reqwest::Url::parse(&cb)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let answer = redeem(&gh, &b, &berth, &code, None).await;
    assert_eq!(answer["error"], "bad_verification_code", "{answer}");
    assert!(answer["access_token"].is_null());
    assert_eq!(gh.pkce_refused(), 2);
    // ...and the code is spent by that attempt: berth cannot use it either.
    let res = b.get(&cb).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(!signed_in(&b, &berth).await);
}
