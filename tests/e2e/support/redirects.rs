//! Following berth's sign-in redirects by hand: where a response sends the
//! browser, and the sign-in `state` an app host hands out.

use reqwest::header;

/// A response's `Location`, made absolute.
pub fn location(res: &reqwest::Response) -> String {
    let loc = res.headers()[header::LOCATION].to_str().unwrap();
    if loc.starts_with('/') {
        let u = res.url();
        format!(
            "{}://{}:{}{loc}",
            u.scheme(),
            u.host_str().unwrap(),
            u.port().unwrap()
        )
    } else {
        loc.to_owned()
    }
}

/// The `state` parameter of a URL.
pub fn state_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// Asks `b` for `app_url` as a page, as a visitor who is not signed in
/// yet: the app host must send them to sign in (303); its `state`, kept
/// with its cookie in `b`'s jar.
pub async fn sent_to_sign_in(b: &reqwest::Client, app_url: &str) -> String {
    let res = b
        .get(app_url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    state_of(&location(&res))
}
