//! Header rewriting between a client and an app (SPEC section 3, RFC 9110
//! section 7.6.1): pure functions over header maps, tested on their own.
//!
//! Going in, the app never sees a berth credential (`Berth-Token`, an
//! `Authorization` carrying a berth token, `berth_*` cookies with or without
//! `__Host-`, the `berth_share` parameter), nor any `X-Berth-*` /
//! `X-Forwarded-*` header the client sent; it always gets
//! `X-Forwarded-{For,Proto,Host}` and, for a known visitor, `X-Berth-User`
//! and `X-Berth-Email` (only a plain address); `Berth-Jwt-Assertion` is
//! stripped here and set by [`super::identity`]. Coming out, the app cannot
//! set berth's cookies, nor clear the cookies of the whole site. Hop-by-hop
//! headers are dropped both ways, except what an upgrade needs.

use crate::auth::{cookie, email, TokenKind, Visitor};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// `Berth-Token: <api token>`: the alternative to `Authorization: Bearer`.
pub const BERTH_TOKEN: HeaderName = HeaderName::from_static("berth-token");
const X_BERTH_USER: HeaderName = HeaderName::from_static("x-berth-user");
const X_BERTH_EMAIL: HeaderName = HeaderName::from_static("x-berth-email");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Hop-by-hop headers (RFC 9110 7.6.1 and their older kin).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The berth API token a request carries, from `Authorization: Bearer` or
/// `Berth-Token`. A bearer that is not a berth token is the app's own.
pub fn api_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers.get(&BERTH_TOKEN).and_then(|v| v.to_str().ok()) {
        return Some(t.trim());
    }
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(bearer)
        .find(|t| TokenKind::of(t).is_some())
}

fn bearer(v: &str) -> Option<&str> {
    let (scheme, rest) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// True if an HTTP/1.1 request asks to become a WebSocket (`Connection:
/// upgrade` and `websocket` among the `Upgrade` protocols). That is the only
/// upgrade the edge forwards: any other (`h2c`, `TLS/1.0`...) is stripped
/// with the hop-by-hop headers, and the request goes on as a plain one, so an
/// anonymous client can never switch the app's connection to a protocol in
/// which berth no longer sees the requests.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    connection_has(headers, "upgrade")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including those named in `Connection`.
/// With `websocket`, `Upgrade: websocket` and `Connection: upgrade` are set:
/// a WebSocket is the one protocol the edge lets an exchange switch to.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, websocket: bool) {
    // Most messages carry none: one pass over the names present instead of
    // a hashed removal for each hop-by-hop name (`Connection` is one of
    // them, so nothing is named in it either).
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named.iter().chain(HOP_BY_HOP.iter()) {
            headers.remove(name);
        }
    }
    if websocket {
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Drops the trailer fields that must not cross the edge in either
/// direction: whatever the edge sets or strips in headers (`X-Berth-*`,
/// `X-Forwarded-*`, `Forwarded`, `Berth-*`), credentials (`Authorization`,
/// `Cookie`, `Set-Cookie`), and hop-by-hop fields. A trailer arrives after
/// the headers were checked, so an app that merges trailers into headers
/// would otherwise believe a client's `X-Berth-User` (RFC 9110 6.5.1).
pub fn scrub_trailers(trailers: &mut HeaderMap) {
    let dropped: Vec<HeaderName> = trailers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("x-berth-")
                || k.starts_with("x-forwarded-")
                || k.starts_with("berth-")
                || matches!(
                    k,
                    "forwarded" | "authorization" | "cookie" | "set-cookie" | "host" | "trailer"
                )
                || HOP_BY_HOP.iter().any(|h| h.as_str() == k)
        })
        .cloned()
        .collect();
    for k in dropped {
        trailers.remove(k);
    }
}

/// A `Cookie` header without berth's cookies (`berth_*`, with or without
/// `__Host-`/`__Secure-`); `None` if nothing is left.
pub fn strip_berth_cookies(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| !cookie::is_berth_name(c.split('=').next().unwrap_or("")))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// False only when no cookie in a `Cookie` value can be one of berth's
/// (their names all contain `berth_`, in any case): a cheap test before
/// [`strip_berth_cookies`].
fn may_hold_berth_cookie(value: &str) -> bool {
    value
        .as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"berth_"))
}

/// True for an app's `Set-Cookie` that would set one of berth's cookies
/// (see [`cookie::is_berth_name`]), whatever its attributes: the name as a
/// browser will send it back, so a nameless cookie (`=__Host-berth_app=x`,
/// sent back as `__Host-berth_app=x` by older browsers) counts too.
pub fn sets_berth_cookie(set_cookie: &[u8]) -> bool {
    let value = String::from_utf8_lossy(set_cookie);
    let pair = value.split(';').next().unwrap_or("");
    let pair = pair.trim_start_matches(|c: char| c == '=' || c.is_whitespace());
    cookie::is_berth_name(pair.split('=').next().unwrap_or(""))
}

/// An app's `Clear-Site-Data` without `"cookies"` and `"*"`: browsers
/// clear cookies for the whole site, which is every app host and the
/// control host (the visitor would be signed out of all of them). What is
/// the app's own (`"cache"`, `"storage"`, ...) stays; `None` if nothing does.
pub fn own_site_data(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter(|d| {
            let d = d.trim_matches('"').trim();
            !(d.eq_ignore_ascii_case("cookies") || d == "*")
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// The `berth_share` token of a query string, if it has one.
pub fn share_param(query: &str) -> Option<&str> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k == "berth_share" && !v.is_empty()).then_some(v)
    })
}

/// A path-and-query without any `berth_share` parameter.
pub fn strip_share_param(path_and_query: &str) -> std::borrow::Cow<'_, str> {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.into();
    };
    if !query.contains("berth_share") {
        return path_and_query.into();
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| p.split('=').next() != Some("berth_share"))
        .collect();
    if kept.is_empty() {
        path.to_owned().into()
    } else {
        format!("{path}?{}", kept.join("&")).into()
    }
}

/// What the edge knows about a request when it forwards it.
#[derive(Debug)]
pub struct Forwarded<'a> {
    /// The client's address.
    pub client_ip: IpAddr,
    /// The app host as the client addressed it (without port).
    pub host: &'a str,
    /// The `Host` header to send: the client's, with port if it had one.
    pub host_header: &'a str,
    /// The verified visitor, if any.
    pub visitor: Option<&'a Visitor>,
    /// Whether this request is a WebSocket upgrade.
    pub upgrade: bool,
}

/// Rewrites a client's request headers for the app.
pub fn prepare_request(headers: &mut HeaderMap, fwd: &Forwarded<'_>) {
    strip_hop_by_hop(headers, fwd.upgrade);
    // One pass over the names present finds what has to go: berth's
    // credentials (`Berth-Token`), a client's claim to be berth's identity
    // assertion (the edge sets its own), and whatever the client claimed
    // about itself or its forwarding. Each header below is rewritten only
    // when it holds something of berth's.
    let mut dropped: Vec<HeaderName> = Vec::new();
    let (mut authorization, mut cookie) = (false, false);
    for k in headers.keys() {
        if *k == header::AUTHORIZATION {
            authorization = true;
        } else if *k == header::COOKIE {
            cookie = true;
        } else {
            let s = k.as_str();
            if *k == BERTH_TOKEN
                || s == crate::auth::jwt::ASSERTION_HEADER
                || s.starts_with("x-berth-")
                || s.starts_with("x-forwarded-")
                || s == "forwarded"
            {
                dropped.push(k.clone());
            }
        }
    }
    for k in dropped {
        headers.remove(k);
    }
    let is_berth_bearer = |v: &HeaderValue| {
        v.to_str()
            .ok()
            .and_then(bearer)
            .is_some_and(|t| TokenKind::of(t).is_some())
    };
    if authorization
        && headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(is_berth_bearer)
    {
        let app_auth: Vec<HeaderValue> = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter(|v| !is_berth_bearer(v))
            .cloned()
            .collect();
        headers.remove(header::AUTHORIZATION);
        for v in app_auth {
            headers.append(header::AUTHORIZATION, v);
        }
    }
    // One `Cookie` without berth's stays as it is; several become one (as
    // HTTP/1.1 wants), without berth's.
    let rewrite_cookies = cookie && {
        let mut values = headers.get_all(header::COOKIE).iter();
        match (values.next(), values.next()) {
            (Some(one), None) => one.to_str().map_or(true, may_hold_berth_cookie),
            _ => true,
        }
    };
    if rewrite_cookies {
        let cookies: Vec<String> = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(strip_berth_cookies)
            .collect();
        headers.remove(header::COOKIE);
        if !cookies.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
                headers.insert(header::COOKIE, v);
            }
        }
    }
    headers.insert(X_FORWARDED_FOR, ip_value(fwd.client_ip));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    if let Ok(h) = HeaderValue::from_str(fwd.host) {
        headers.insert(X_FORWARDED_HOST, h);
    }
    if let Ok(h) = HeaderValue::from_str(fwd.host_header) {
        headers.insert(header::HOST, h);
    }
    if let Some(v) = fwd.visitor {
        if let Ok(u) = HeaderValue::from_str(&v.username) {
            headers.insert(X_BERTH_USER, u);
        }
        // Only a plain address (one stored before addresses were checked
        // may not be): never markup, control or text-direction characters.
        if email::is_plain(&v.email) {
            if let Ok(e) = HeaderValue::from_str(&v.email) {
                headers.insert(X_BERTH_EMAIL, e);
            }
        }
    }
}

fn ip_value(ip: IpAddr) -> HeaderValue {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let mut text = Vec::with_capacity(15);
    crate::telemetry::access::write_ip(&mut text, ip);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .expect("an IP address is a valid header value")
}

/// True for a WebSocket opened over HTTP/2 with extended CONNECT (RFC 8441).
pub fn is_h2_websocket<B>(req: &http::Request<B>) -> bool {
    req.version() == http::Version::HTTP_2
        && req.method() == http::Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// Turns an RFC 8441 WebSocket request's headers into an HTTP/1.1 upgrade
/// (RFC 6455): HTTP/2 carries no key, so the edge makes one; the app's
/// `Sec-WebSocket-Accept` answers it and goes no further.
pub fn websocket_h2_to_h1(headers: &mut HeaderMap) {
    use base64::Engine;
    let key: [u8; 16] = rand::random();
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_KEY,
        HeaderValue::from_str(&key).expect("base64 is a valid header value"),
    );
    headers
        .entry(header::SEC_WEBSOCKET_VERSION)
        .or_insert(HeaderValue::from_static("13"));
}

/// Turns an app's `101` WebSocket answer into the headers of an HTTP/2 `200`.
pub fn websocket_h1_to_h2(headers: &mut HeaderMap) {
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
    ] {
        headers.remove(h);
    }
}

/// Rewrites an app's response headers for the client: hop-by-hop headers
/// go, and so does every `Set-Cookie` for one of berth's cookies (an app
/// host shares its site with the others and the control host, so such a
/// cookie could be tossed onto them) and `Clear-Site-Data` for cookies
/// (`websocket`: the app's `101` to a WebSocket upgrade).
pub fn prepare_response(headers: &mut HeaderMap, websocket: bool) {
    strip_hop_by_hop(headers, websocket);
    if let header::Entry::Occupied(e) = headers.entry(header::SET_COOKIE) {
        if e.iter().any(|v| sets_berth_cookie(v.as_bytes())) {
            let (_, all) = e.remove_entry_mult();
            let kept: Vec<HeaderValue> = all.filter(|v| !sets_berth_cookie(v.as_bytes())).collect();
            for v in kept {
                headers.append(header::SET_COOKIE, v);
            }
        }
    }
    const CLEAR_SITE_DATA: HeaderName = HeaderName::from_static("clear-site-data");
    let clear: Vec<HeaderValue> = headers.get_all(&CLEAR_SITE_DATA).iter().cloned().collect();
    if !clear.is_empty() {
        headers.remove(&CLEAR_SITE_DATA);
        for v in clear {
            let own = v
                .to_str()
                .ok()
                .and_then(own_site_data)
                .and_then(|o| HeaderValue::from_str(&o).ok());
            if let Some(o) = own {
                headers.append(&CLEAR_SITE_DATA, o);
            }
        }
    }
}

/// The address of the client behind `peer`: `peer` itself unless it is one
/// of the `trusted` proxies (a load balancer in front of the edge), in
/// which case the `X-Forwarded-For` chain is walked from the right (the
/// hop nearest to us) past trusted proxies to the first address that is
/// not one. A malformed entry stops the walk at the last trusted hop seen,
/// so a client can never choose its own address by writing the header.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.into_iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            return client;
        };
        // An IPv4 client seen through an IPv6 socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    const API: &str = "berth_api_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg";

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn visitor() -> Visitor {
        Visitor {
            group_ids: vec![],
            user_id: 1,
            username: "alice".into(),
            email: "alice@example.com".into(),
            admin: false,
            organization: None,
        }
    }

    #[test]
    fn finds_berth_tokens_only() {
        assert_eq!(
            api_token(&map(&[("authorization", &format!("Bearer {API}"))])),
            Some(API)
        );
        assert_eq!(
            api_token(&map(&[("authorization", &format!("bearer   {API} "))])),
            Some(API)
        );
        assert_eq!(api_token(&map(&[("berth-token", API)])), Some(API));
        assert_eq!(
            api_token(&map(&[("authorization", "Bearer eyJhbGciOi.abc.def")])),
            None
        );
        assert_eq!(
            api_token(&map(&[("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")])),
            None
        );
        // The app's own bearer beside ours: ours is found.
        assert_eq!(
            api_token(&map(&[
                ("authorization", "Bearer app"),
                ("authorization", &format!("Bearer {API}"))
            ])),
            Some(API)
        );
    }

    #[test]
    fn request_loses_credentials_and_spoofed_headers() {
        let mut h = map(&[
            ("authorization", &format!("Bearer {API}")),
            ("berth-token", API),
            ("Berth-Jwt-Assertion", "eyJhbGciOiJub25lIn0.e30."),
            ("cookie", "berth_app=s1; theme=dark; __Host-berth_app=s2"),
            (
                "cookie",
                "BERTH_share=x; sid=42; __Host-berth_state=n; __secure-berth_x=1",
            ),
            ("x-berth-user", "root"),
            ("X-Berth-Email", "root@evil"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil.com"),
            ("forwarded", "for=6.6.6.6"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "hop"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "text/html"),
        ]);
        let v = visitor();
        prepare_request(
            &mut h,
            &Forwarded {
                client_ip: "::ffff:10.0.0.7".parse().unwrap(),
                host: "3000--main--api--alice.apps.example.com",
                host_header: "3000--main--api--alice.apps.example.com:8443",
                visitor: Some(&v),
                upgrade: false,
            },
        );
        assert!(h.get("authorization").is_none());
        assert!(h.get("berth-token").is_none());
        assert!(
            h.get("berth-jwt-assertion").is_none(),
            "only the edge sets it"
        );
        assert_eq!(h.get("cookie").unwrap(), "theme=dark; sid=42");
        assert_eq!(h.get("x-berth-user").unwrap(), "alice");
        assert_eq!(h.get("x-berth-email").unwrap(), "alice@example.com");
        assert_eq!(h.get_all("x-berth-user").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "10.0.0.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(
            h.get("x-forwarded-host").unwrap(),
            "3000--main--api--alice.apps.example.com"
        );
        assert_eq!(
            h.get("host").unwrap(),
            "3000--main--api--alice.apps.example.com:8443"
        );
        for gone in ["forwarded", "connection", "x-secret", "keep-alive", "te"] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
        assert_eq!(h.get("accept").unwrap(), "text/html");
    }

    /// The fast paths (a header rewritten only when it holds something of
    /// berth's) keep the app's own values as sent, and never miss one of
    /// berth's, whatever its case or place.
    #[test]
    fn only_what_is_berths_is_rewritten() {
        let fwd = Forwarded {
            client_ip: "10.0.0.7".parse().unwrap(),
            host: "h",
            host_header: "h",
            visitor: None,
            upgrade: false,
        };
        let mut h = map(&[
            ("cookie", "a=1;b=2;;"),
            ("authorization", "Bearer app-own-token"),
            ("authorization", "Basic YTpi"),
        ]);
        prepare_request(&mut h, &fwd);
        assert_eq!(
            h.get("cookie").unwrap(),
            "a=1;b=2;;",
            "the app's own, as sent"
        );
        let auth: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer app-own-token", "Basic YTpi"]);
        for (cookie, left) in [
            ("a=1; Berth_App=x", Some("a=1")),
            ("__HOST-BERTH_APP=x", None),
            ("a=1;__secure-berth_share=y;b=2", Some("a=1; b=2")),
        ] {
            let mut h = map(&[
                ("cookie", cookie),
                ("authorization", &format!("bearer {API}")),
                ("authorization", "Basic YTpi"),
                ("X-BERTH-GROUPS", "admins"),
            ]);
            prepare_request(&mut h, &fwd);
            assert_eq!(
                h.get("cookie").map(|v| v.to_str().unwrap()),
                left,
                "{cookie}"
            );
            let auth: Vec<_> = h.get_all("authorization").iter().collect();
            assert_eq!(auth, ["Basic YTpi"]);
            assert!(h.get("x-berth-groups").is_none());
        }
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        prepare_request(&mut h, &fwd);
        assert_eq!(h.get_all("cookie").iter().collect::<Vec<_>>(), ["a=1; b=2"]);
    }

    #[test]
    fn odd_addresses_are_never_forwarded() {
        for odd in [
            "<script>@x.y",
            "\u{202E}moc.elpmaxe@ecila",
            "a@b\u{200B}.c",
            "alice@example.com\u{85}X-Berth-User: root",
        ] {
            let mut h = HeaderMap::new();
            let v = Visitor {
                email: odd.into(),
                ..visitor()
            };
            prepare_request(
                &mut h,
                &Forwarded {
                    client_ip: "127.0.0.1".parse().unwrap(),
                    host: "h",
                    host_header: "h",
                    visitor: Some(&v),
                    upgrade: false,
                },
            );
            assert!(h.get("x-berth-email").is_none(), "{odd:?}");
            assert_eq!(h.get("x-berth-user").unwrap(), "alice");
        }
    }

    /// Cookie tossing: an app answering with berth's cookie names, in every
    /// spelling a browser would store, gets none of them through; its own
    /// cookies pass untouched.
    #[test]
    fn apps_cannot_set_berth_cookies() {
        let tossed = [
            "berth_app=x; Domain=berth.localhost; Path=/deep",
            "berth_session=s.1.t; Domain=berth.localhost; Path=/api; Secure",
            "berth_share=x; Path=/",
            "berth_oidc=x",
            "berth_state=x",
            "BERTH_SESSION=x; domain=.berth.localhost",
            "__Host-berth_app=x; Path=/; Secure",
            "__host-berth_session=x; Path=/; Secure",
            "__Secure-berth_share=x; Domain=berth.localhost; Secure",
            "__Host-berth_state=x; Path=/; Secure",
            "__Host-berth_oidc_to=x; Path=/; Secure",
            " berth_app = x",
            "=__Host-berth_session=x; Path=/",
            "= berth_app=x",
            "__Host-berth_app",
            "berth_anything_else=1",
        ];
        let own = [
            "theme=dark; Path=/",
            "sid=42; HttpOnly; Secure; SameSite=Strict",
            "__Host-sid=1; Path=/; Secure",
            "myberth_app=1",
            "x=berth_app",
        ];
        for t in tossed {
            assert!(sets_berth_cookie(t.as_bytes()), "{t}");
        }
        for o in own {
            assert!(!sets_berth_cookie(o.as_bytes()), "{o}");
        }
        assert!(sets_berth_cookie(b"berth_app=\xff\xfe; Path=/"));
        let mut h = HeaderMap::new();
        for v in tossed.iter().chain(own.iter()) {
            h.append(header::SET_COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h.append(
            header::SET_COOKIE,
            HeaderValue::from_bytes(b"berth_app=\xff; Path=/").unwrap(),
        );
        h.insert("content-type", HeaderValue::from_static("text/html"));
        prepare_response(&mut h, false);
        let left: Vec<&str> = h
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, own);
        assert_eq!(h.get("content-type").unwrap(), "text/html");
        // Nothing to drop: the headers stay as they were.
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        prepare_response(&mut h, false);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 2);
    }

    #[test]
    fn apps_cannot_clear_the_sites_cookies() {
        assert_eq!(own_site_data("\"cookies\""), None);
        assert_eq!(own_site_data("\"*\""), None);
        assert_eq!(
            own_site_data("\"cache\", \"Cookies\", \"storage\"").as_deref(),
            Some("\"cache\", \"storage\"")
        );
        assert_eq!(own_site_data("\"cache\"").as_deref(), Some("\"cache\""));
        let mut h = HeaderMap::new();
        h.insert(
            "clear-site-data",
            HeaderValue::from_static("\"cookies\", \"cache\""),
        );
        prepare_response(&mut h, false);
        assert_eq!(h.get("clear-site-data").unwrap(), "\"cache\"");
        let mut h = HeaderMap::new();
        h.insert("clear-site-data", HeaderValue::from_static("\"*\""));
        prepare_response(&mut h, false);
        assert!(h.get("clear-site-data").is_none());
    }

    #[test]
    fn app_authorization_and_anonymous_visitors() {
        let mut h = map(&[
            ("authorization", "Bearer app-own-jwt"),
            ("cookie", "berth_app=1"),
        ]);
        prepare_request(
            &mut h,
            &Forwarded {
                client_ip: "127.0.0.1".parse().unwrap(),
                host: "h",
                host_header: "h",
                visitor: None,
                upgrade: false,
            },
        );
        assert_eq!(h.get("authorization").unwrap(), "Bearer app-own-jwt");
        assert!(h.get("cookie").is_none());
        assert!(h.get("x-berth-user").is_none());
    }

    #[test]
    fn upgrades_keep_what_they_need() {
        let mut h = map(&[
            ("connection", "Upgrade, keep-alive"),
            ("upgrade", "websocket"),
        ]);
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        let mut h = map(&[("connection", "close"), ("upgrade", "websocket")]);
        assert!(!is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty());
    }

    #[test]
    fn only_websocket_upgrades_are_forwarded() {
        for (connection, upgrade, websocket) in [
            ("upgrade", "websocket", true),
            ("keep-alive, Upgrade", "WebSocket", true),
            ("upgrade", "h2c, websocket", true),
            ("Upgrade, HTTP2-Settings", "h2c", false),
            ("upgrade", "TLS/1.0", false),
            ("upgrade", "websocketx", false),
            ("upgrade", "", false),
            ("keep-alive", "websocket", false),
        ] {
            let h = map(&[("connection", connection), ("upgrade", upgrade)]);
            assert_eq!(
                is_websocket_upgrade(&h),
                websocket,
                "{connection} / {upgrade}"
            );
        }
        // An h2c attempt loses every trace of it on the way to the app.
        let mut h = map(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("accept", "*/*"),
        ]);
        prepare_request(
            &mut h,
            &Forwarded {
                client_ip: "127.0.0.1".parse().unwrap(),
                host: "h",
                host_header: "h",
                visitor: None,
                upgrade: is_websocket_upgrade(&map(&[
                    ("connection", "Upgrade, HTTP2-Settings"),
                    ("upgrade", "h2c"),
                ])),
            },
        );
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(h.get(gone).is_none(), "{gone} survived");
        }
        // A list naming websocket among others becomes websocket alone.
        let mut h = map(&[("connection", "upgrade"), ("upgrade", "h2c, websocket")]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
    }

    #[test]
    fn trailers_lose_what_headers_lose() {
        let mut t = map(&[
            ("x-berth-user", "root"),
            ("X-Berth-Email", "root@evil"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("berth-token", API),
            ("berth-jwt-assertion", "eyJ"),
            ("authorization", "Bearer x"),
            ("cookie", "berth_app=1"),
            ("set-cookie", "berth_app=1"),
            ("host", "evil"),
            ("transfer-encoding", "chunked"),
            ("x-checksum", "abc"),
            ("grpc-status", "0"),
            ("server-timing", "db;dur=53"),
        ]);
        scrub_trailers(&mut t);
        let mut left: Vec<&str> = t.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["grpc-status", "server-timing", "x-checksum"]);
    }

    #[test]
    fn h2_websocket_translation() {
        let mut h = map(&[("sec-websocket-protocol", "chat"), ("origin", "https://x")]);
        websocket_h2_to_h1(&mut h);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("sec-websocket-version").unwrap(), "13");
        assert_eq!(h.get("sec-websocket-key").unwrap().len(), 24);
        assert_eq!(h.get("sec-websocket-protocol").unwrap(), "chat");
        let mut r = map(&[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-accept", "x"),
            ("sec-websocket-protocol", "chat"),
        ]);
        websocket_h1_to_h2(&mut r);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get("sec-websocket-protocol").unwrap(), "chat");
    }

    #[test]
    fn share_param_and_cookies() {
        assert_eq!(strip_share_param("/a?berth_share=x"), "/a");
        assert_eq!(strip_share_param("/a?x=1&berth_share=t&y=2"), "/a?x=1&y=2");
        assert_eq!(strip_share_param("/a?berth_shared=1"), "/a?berth_shared=1");
        assert_eq!(strip_share_param("/plain"), "/plain");
        assert_eq!(share_param("a=1&berth_share=tok"), Some("tok"));
        assert_eq!(share_param("berth_share="), None);
        assert_eq!(share_param("berth_shared=x"), None);
        assert_eq!(strip_berth_cookies("berth_app=1"), None);
        assert_eq!(strip_berth_cookies("__Host-berth_app=1"), None);
        assert_eq!(
            strip_berth_cookies("__Host-berth_session=1; __Host-sid=2").as_deref(),
            Some("__Host-sid=2")
        );
        assert_eq!(
            strip_berth_cookies("a=1;berth_x=2; b=3").as_deref(),
            Some("a=1; b=3")
        );
        assert_eq!(strip_berth_cookies("").as_deref(), None);
    }

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        let nets: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let with = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            }
            h
        };
        // Not through a trusted proxy: the header is the client's word, ignored.
        assert_eq!(
            client_ip(ip("203.0.113.9"), &with(&["1.2.3.4"]), &nets),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), &with(&[]), &[]),
            ip("203.0.113.9")
        );
        // Through the load balancer: the address it saw.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &with(&["198.51.100.7"]), &nets),
            ip("198.51.100.7")
        );
        // A client prepending a lie: the rightmost untrusted entry wins.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &with(&["6.6.6.6, 198.51.100.7"]), &nets),
            ip("198.51.100.7")
        );
        // Several proxies, several header lines.
        assert_eq!(
            client_ip(
                ip("10.1.1.1"),
                &with(&["6.6.6.6", "198.51.100.7, 10.2.2.2"]),
                &nets
            ),
            ip("198.51.100.7")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(ip("10.1.1.1"), &with(&["1.2.3.4, nonsense"]), &nets),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.1.1.1"), &with(&["nonsense, 10.3.3.3"]), &nets),
            ip("10.3.3.3")
        );
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_ip(ip("10.1.1.1"), &with(&[]), &nets), ip("10.1.1.1"));
        // Only trusted hops: the leftmost.
        assert_eq!(
            client_ip(ip("::1"), &with(&["10.9.9.9"]), &nets),
            ip("10.9.9.9")
        );
        // IPv4-mapped addresses are compared as IPv4.
        assert_eq!(
            client_ip(
                ip("10.1.1.1"),
                &with(&["::ffff:10.4.4.4, ::ffff:198.51.100.8"]),
                &nets
            ),
            ip("198.51.100.8")
        );
    }
}
