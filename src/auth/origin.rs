//! The Origin rule (SPEC section 3): every app host sits on one site
//! (`*.apps.example.com`), so `SameSite` cookies do not keep one owner's app
//! from making a browser write to another's. The edge therefore refuses a
//! WebSocket upgrade or a non-safe method that a berth cookie (`berth_app`
//! or `berth_share`) admitted, unless its `Origin` is the app's own origin or
//! an app host of the same owner, the origins the CORS rule allows.
//!
//! Requests admitted by an API token, or by no credential at all, are not
//! affected: a page cannot make a browser attach a token, and an anonymous
//! request carries no authority. Pure functions; the edge supplies the facts.

use crate::host::{self, Wildcard};
use http::Method;

/// What admitted a request, as far as the Origin rule cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A berth API token (`Authorization: Bearer` or `Berth-Token`): a
    /// browser never attaches one by itself.
    ApiToken,
    /// The signed-in browser's `berth_app` cookie.
    AppCookie,
    /// A redeemed share link's `berth_share` cookie.
    ShareCookie,
    /// Nothing: the port is public and the visitor anonymous.
    Anonymous,
}

impl Credential {
    /// The credential the edge acted on. `token_user`: a valid API token
    /// named the visitor; `cookie_user`: the `berth_app` cookie did;
    /// `link_needed`: the share cookie is what let the visitor in (without
    /// it the decision would not be Allow). A cookie that named or admitted
    /// the visitor wins over a token, so no cookie's authority escapes the
    /// rule by riding along with a token.
    pub fn of(token_user: bool, cookie_user: bool, link_needed: bool) -> Credential {
        if cookie_user {
            Credential::AppCookie
        } else if link_needed {
            Credential::ShareCookie
        } else if token_user {
            Credential::ApiToken
        } else {
            Credential::Anonymous
        }
    }

    /// True for the credentials a browser attaches on its own.
    pub fn is_cookie(self) -> bool {
        matches!(self, Credential::AppCookie | Credential::ShareCookie)
    }
}

/// The app host a request is for.
#[derive(Clone, Copy, Debug)]
pub struct App<'a> {
    /// The host as the client addressed it (`Host` / `:authority`), with its
    /// port if it had one.
    pub host: &'a str,
    /// The user label of that host (after [`host::parse_host`]).
    pub owner: &'a str,
    /// The wildcard the edge serves.
    pub wildcard: &'a Wildcard,
}

/// What an `Origin` header says about where a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginKind {
    /// The app's own origin (`https`, same host, same port).
    Own,
    /// Another app host of the same owner (`https`, same port).
    SameOwner,
    /// Anything else that is a well-formed origin: another owner's app host,
    /// the control host, a foreign site, `http://`, another port.
    Other,
    /// `Origin: null` (sandboxed frames, cross-site redirects, privacy).
    Null,
    /// Not an origin at all (a path, user info, bytes that are not ASCII,
    /// several values...).
    Malformed,
}

/// Classifies an `Origin` header value for `app`. Scheme, host and port
/// must all match: an origin is the triple, and berth serves only `https`.
pub fn classify(origin: &[u8], app: &App<'_>) -> OriginKind {
    let Ok(origin) = std::str::from_utf8(origin) else {
        return OriginKind::Malformed;
    };
    let origin = origin.trim();
    if origin.eq_ignore_ascii_case("null") {
        return OriginKind::Null;
    }
    let Some((scheme, host, port)) = parse_origin(origin) else {
        return OriginKind::Malformed;
    };
    if !scheme.eq_ignore_ascii_case("https") {
        return OriginKind::Other;
    }
    // The app host as addressed: berth serves `https`, so 443 by default.
    let Some((app_host, app_port)) = split_host(app.host) else {
        return OriginKind::Other;
    };
    if port != app_port.unwrap_or(443) {
        return OriginKind::Other;
    }
    if same_name(host, app_host) {
        return OriginKind::Own;
    }
    match host::parse_host(host, app.wildcard) {
        Ok(target) if target.user == app.owner => OriginKind::SameOwner,
        _ => OriginKind::Other,
    }
}

/// `scheme://host[:port]` with nothing else; the port defaults to 443 for
/// `https` and 80 for `http`. `None` when it is not an origin.
fn parse_origin(origin: &str) -> Option<(&str, &str, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest_ok = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !scheme_ok || !rest_ok {
        return None;
    }
    let (host, port) = split_host(rest)?;
    let port = match port {
        Some(p) => p,
        None if scheme.eq_ignore_ascii_case("http") => 80,
        None => 443,
    };
    Some((scheme, host, port))
}

/// Splits `host[:port]` into the host and its explicit port. `None` for an
/// empty host, an empty, zero or non-numeric port, or an unbracketed IPv6
/// address.
fn split_host(hostport: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if hostport.starts_with('[') {
        let end = hostport.find(']')?;
        let (h, rest) = hostport.split_at(end + 1);
        match rest {
            "" => (h, None),
            _ => (h, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// Host names compared as DNS does: case-insensitive, one trailing dot ignored.
fn same_name(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    !a.is_empty() && a.eq_ignore_ascii_case(b)
}

/// A request as the Origin rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The method the client sent (`CONNECT` for a WebSocket over HTTP/2).
    pub method: &'a Method,
    /// A WebSocket upgrade (HTTP/1.1 `Upgrade` or RFC 8441 extended CONNECT).
    pub upgrade: bool,
    /// What admitted it.
    pub credential: Credential,
    /// The `Origin` header values (`[]` when absent; more than one is malformed).
    pub origin: &'a [&'a [u8]],
    /// The `Sec-Fetch-Site` header, which browsers set and pages cannot.
    pub sec_fetch_site: Option<&'a [u8]>,
}

/// Why the rule refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The Origin is another owner's app, the control host or another site.
    CrossOrigin {
        /// The `Origin` as sent (shortened for messages).
        origin: String,
    },
    /// `Origin: null`, without a browser's word that the request is same-origin.
    NullOrigin,
    /// The `Origin` header is not an origin.
    Malformed,
    /// No `Origin` header, and the browser does not say it is same-origin.
    NoOrigin {
        /// `Sec-Fetch-Site`, when the browser sent one.
        site: Option<String>,
    },
}

/// The outcome of [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// 403 `cross_origin_refused`.
    Refuse(Refusal),
}

/// Safe methods (RFC 9110 9.2.1) that the rule leaves alone: reading is
/// guarded by CORS in the browser. Anything else may change state.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The Origin rule. A cookie-admitted WebSocket upgrade or non-safe method
/// passes only when its `Origin` is the app's own or another app host of
/// the same owner. Without an `Origin` (which modern browsers always send
/// on such requests) or with `Origin: null` (a `no-referrer` policy makes a
/// same-origin form post send it), `Sec-Fetch-Site: same-origin` (or
/// `none`, a user's own navigation) lets it pass; anything else is refused,
/// including a program replaying a cookie: programs use API tokens.
pub fn check(req: &Request<'_>, app: &App<'_>) -> Verdict {
    if !req.credential.is_cookie() || (!req.upgrade && is_safe(req.method)) {
        return Verdict::Allow;
    }
    let browser_says_same_origin = || {
        req.sec_fetch_site.is_some_and(|s| {
            let s = s.trim_ascii();
            s.eq_ignore_ascii_case(b"same-origin") || s.eq_ignore_ascii_case(b"none")
        })
    };
    let origin = match req.origin {
        [] => {
            return if browser_says_same_origin() {
                Verdict::Allow
            } else {
                Verdict::Refuse(Refusal::NoOrigin {
                    site: req
                        .sec_fetch_site
                        .map(|s| clip(&String::from_utf8_lossy(s))),
                })
            };
        }
        [one] => *one,
        _ => return Verdict::Refuse(Refusal::Malformed),
    };
    match classify(origin, app) {
        OriginKind::Own | OriginKind::SameOwner => Verdict::Allow,
        OriginKind::Null if browser_says_same_origin() => Verdict::Allow,
        OriginKind::Null => Verdict::Refuse(Refusal::NullOrigin),
        OriginKind::Malformed => Verdict::Refuse(Refusal::Malformed),
        OriginKind::Other => Verdict::Refuse(Refusal::CrossOrigin {
            origin: clip(&String::from_utf8_lossy(origin)),
        }),
    }
}

/// Shortens what a client sent before it goes into a message.
fn clip(s: &str) -> String {
    const MAX: usize = 100;
    let s = s.trim();
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Credential::*;

    const HOST: &str = "3000--main--dev--bob.berth.localhost:8443";

    fn wildcard() -> Wildcard {
        Wildcard::parse("*.berth.localhost").unwrap()
    }

    fn verdict(
        method: &Method,
        upgrade: bool,
        credential: Credential,
        origin: Option<&str>,
        site: Option<&str>,
    ) -> Verdict {
        let w = wildcard();
        let app = App {
            host: HOST,
            owner: "bob",
            wildcard: &w,
        };
        let origins: Vec<&[u8]> = origin.iter().map(|o| o.as_bytes()).collect();
        check(
            &Request {
                method,
                upgrade,
                credential,
                origin: &origins,
                sec_fetch_site: site.map(str::as_bytes),
            },
            &app,
        )
    }

    /// Origins the rule must tell apart, and whether each may write with
    /// bob's cookie to bob's app at `HOST`.
    const ORIGINS: &[(&str, Option<&str>, bool)] = &[
        ("missing", None, false),
        ("null", Some("null"), false),
        ("NULL", Some("NULL"), false),
        (
            "own",
            Some("https://3000--main--dev--bob.berth.localhost:8443"),
            true,
        ),
        (
            "own, upper case",
            Some("HTTPS://3000--MAIN--dev--bob.Berth.Localhost:8443"),
            true,
        ),
        (
            "own, trailing dot",
            Some("https://3000--main--dev--bob.berth.localhost.:8443"),
            true,
        ),
        (
            "own, no port",
            Some("https://3000--main--dev--bob.berth.localhost"),
            false,
        ),
        (
            "own, other port",
            Some("https://3000--main--dev--bob.berth.localhost:9443"),
            false,
        ),
        (
            "own, port 443",
            Some("https://3000--main--dev--bob.berth.localhost:443"),
            false,
        ),
        (
            "own, http",
            Some("http://3000--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "own, wss",
            Some("wss://3000--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "own, path",
            Some("https://3000--main--dev--bob.berth.localhost:8443/"),
            false,
        ),
        (
            "own, userinfo",
            Some("https://x@3000--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "own, empty port",
            Some("https://3000--main--dev--bob.berth.localhost:"),
            false,
        ),
        (
            "own, port 0",
            Some("https://3000--main--dev--bob.berth.localhost:0"),
            false,
        ),
        (
            "same owner, other port",
            Some("https://5173--main--dev--bob.berth.localhost:8443"),
            true,
        ),
        (
            "same owner, named app",
            Some("https://docs--main--dev--bob.berth.localhost:8443"),
            true,
        ),
        (
            "same owner, short form",
            Some("https://5173--dev--bob.berth.localhost:8443"),
            true,
        ),
        (
            "same owner, https port",
            Some("https://5173s--gpu--ml--bob.berth.localhost:8443"),
            true,
        ),
        (
            "same owner, wrong port",
            Some("https://5173--main--dev--bob.berth.localhost:8444"),
            false,
        ),
        (
            "same owner, http",
            Some("http://5173--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "other owner",
            Some("https://5173--main--dev--carol.berth.localhost:8443"),
            false,
        ),
        (
            "other owner named bob-ish",
            Some("https://3000--main--dev--bobby.berth.localhost:8443"),
            false,
        ),
        (
            "owner in another part",
            Some("https://bob--main--dev--carol.berth.localhost:8443"),
            false,
        ),
        ("control host", Some("https://berth.localhost:8443"), false),
        (
            "nested under an app host",
            Some("https://x.3000--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "malformed label",
            Some("https://3000--bob.berth.localhost:8443"),
            false,
        ),
        (
            "lookalike suffix",
            Some("https://3000--main--dev--bob.berth.localhost.evil.example:8443"),
            false,
        ),
        ("foreign site", Some("https://evil.example"), false),
        (
            "foreign site, same port",
            Some("https://evil.example:8443"),
            false,
        ),
        ("IPv6", Some("https://[::1]:8443"), false),
        ("empty", Some(""), false),
        ("garbage", Some("bob"), false),
        (
            "no scheme",
            Some("//3000--main--dev--bob.berth.localhost:8443"),
            false,
        ),
        (
            "spaces inside",
            Some("https://3000--main--dev--bob.berth.localhost :8443"),
            false,
        ),
        ("file", Some("file://"), false),
    ];

    #[test]
    fn the_origin_table() {
        let post = Method::POST;
        let get = Method::GET;
        for &(name, origin, own_or_same_owner) in ORIGINS {
            // The cases the rule guards: a cookie writing, a cookie upgrading.
            for cred in [AppCookie, ShareCookie] {
                for (method, upgrade) in [(&post, false), (&get, true)] {
                    let got = verdict(method, upgrade, cred, origin, None);
                    assert_eq!(
                        got == Verdict::Allow,
                        own_or_same_owner,
                        "{name}: {cred:?} {method} upgrade={upgrade}: {got:?}"
                    );
                }
            }
            // Tokens and anonymous visitors are never refused; safe methods
            // without an upgrade are never refused.
            for cred in [ApiToken, Anonymous] {
                for (method, upgrade) in [(&post, false), (&get, true)] {
                    assert_eq!(
                        verdict(method, upgrade, cred, origin, Some("cross-site")),
                        Verdict::Allow,
                        "{name}: {cred:?}"
                    );
                }
            }
            for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
                assert_eq!(
                    verdict(&m, false, AppCookie, origin, Some("cross-site")),
                    Verdict::Allow,
                    "{name}: {m}"
                );
            }
        }
    }

    #[test]
    fn every_unsafe_method_is_guarded() {
        let carol = Some("https://5173--main--dev--carol.berth.localhost:8443");
        for m in [
            "POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT", "PROPFIND", "X-ANY",
        ] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(
                matches!(
                    verdict(&m, false, AppCookie, carol, None),
                    Verdict::Refuse(Refusal::CrossOrigin { .. })
                ),
                "{m}"
            );
        }
        // A WebSocket over HTTP/2 is a CONNECT; with an upgrade, even a GET.
        for m in [Method::CONNECT, Method::GET, Method::HEAD, Method::OPTIONS] {
            assert_ne!(
                verdict(&m, true, ShareCookie, carol, None),
                Verdict::Allow,
                "{m} upgrade"
            );
        }
    }

    #[test]
    fn without_an_origin_only_the_browsers_word_lets_it_pass() {
        let post = Method::POST;
        for (origin, site, allowed) in [
            (None, None, false),
            (None, Some("same-origin"), true),
            (None, Some(" Same-Origin "), true),
            (None, Some("none"), true),
            (None, Some("same-site"), false),
            (None, Some("cross-site"), false),
            (None, Some("bogus"), false),
            (None, Some(""), false),
            (Some("null"), None, false),
            (Some("null"), Some("same-origin"), true),
            (Some("null"), Some("same-site"), false),
            (Some("null"), Some("cross-site"), false),
            // The browser's word never rescues a foreign or broken origin.
            (Some("https://evil.example"), Some("same-origin"), false),
            (
                Some("https://5173--main--dev--carol.berth.localhost:8443"),
                Some("same-origin"),
                false,
            ),
            (Some("https://x/"), Some("same-origin"), false),
            // ... nor does it refuse one of the owner's apps (a wildcard on a
            // public suffix makes them cross-site to each other).
            (
                Some("https://5173--main--dev--bob.berth.localhost:8443"),
                Some("cross-site"),
                true,
            ),
        ] {
            for cred in [AppCookie, ShareCookie] {
                let got = verdict(&post, false, cred, origin, site);
                assert_eq!(
                    got == Verdict::Allow,
                    allowed,
                    "{origin:?} {site:?}: {got:?}"
                );
            }
        }
        assert_eq!(
            verdict(&post, false, AppCookie, None, Some("cross-site")),
            Verdict::Refuse(Refusal::NoOrigin {
                site: Some("cross-site".into())
            })
        );
    }

    #[test]
    fn several_or_binary_origins_are_malformed() {
        let w = wildcard();
        let app = App {
            host: HOST,
            owner: "bob",
            wildcard: &w,
        };
        let own: &[u8] = b"https://3000--main--dev--bob.berth.localhost:8443";
        let req = |origin: &[&[u8]]| {
            check(
                &Request {
                    method: &Method::POST,
                    upgrade: false,
                    credential: AppCookie,
                    origin,
                    sec_fetch_site: Some(b"same-origin"),
                },
                &app,
            )
        };
        assert_eq!(req(&[own]), Verdict::Allow);
        assert_eq!(req(&[own, own]), Verdict::Refuse(Refusal::Malformed));
        assert_eq!(
            req(&[b"https://3000--main--dev--bob.berth.localhost:8443\xff"]),
            Verdict::Refuse(Refusal::Malformed)
        );
        assert_eq!(req(&[b"\xc3\xa9"]), Verdict::Refuse(Refusal::Malformed));
    }

    #[test]
    fn the_app_host_without_port_means_443() {
        let w = Wildcard::parse("*.apps.example.com").unwrap();
        for (host, origin, want) in [
            (
                "3000--m--w--bob.apps.example.com",
                "https://docs--m--w--bob.apps.example.com",
                OriginKind::SameOwner,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "https://3000--m--w--bob.apps.example.com",
                OriginKind::Own,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "https://3000--m--w--bob.apps.example.com:443",
                OriginKind::Own,
            ),
            (
                "3000--m--w--bob.apps.example.com:443",
                "https://3000--m--w--bob.apps.example.com",
                OriginKind::Own,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "https://3000--m--w--bob.apps.example.com:8443",
                OriginKind::Other,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "http://3000--m--w--bob.apps.example.com:443",
                OriginKind::Other,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "https://5173--m--w--carol.apps.example.com",
                OriginKind::Other,
            ),
            (
                "3000--m--w--bob.apps.example.com",
                "https://apps.example.com",
                OriginKind::Other,
            ),
        ] {
            let app = App {
                host,
                owner: "bob",
                wildcard: &w,
            };
            assert_eq!(
                classify(origin.as_bytes(), &app),
                want,
                "{host} <- {origin}"
            );
        }
        // The prefix form of wildcard: one label carries app and base.
        let w = Wildcard::parse("*--apps.example.com").unwrap();
        let app = App {
            host: "3000--m--w--bob--apps.example.com",
            owner: "bob",
            wildcard: &w,
        };
        assert_eq!(
            classify(b"https://docs--m--w--bob--apps.example.com", &app),
            OriginKind::SameOwner
        );
        assert_eq!(
            classify(b"https://docs--m--w--carol--apps.example.com", &app),
            OriginKind::Other
        );
    }

    #[test]
    fn the_credential_that_counts() {
        // (token user, cookie user, link needed) -> credential
        for (t, c, l, want) in [
            (false, false, false, Anonymous),
            (true, false, false, ApiToken),
            (false, true, false, AppCookie),
            (false, false, true, ShareCookie),
            // A token riding with a share cookie that the token alone
            // would not get through: the cookie is what counts.
            (true, false, true, ShareCookie),
            (false, true, true, AppCookie),
            (true, true, true, AppCookie),
        ] {
            assert_eq!(Credential::of(t, c, l), want, "{t} {c} {l}");
        }
        assert!(AppCookie.is_cookie() && ShareCookie.is_cookie());
        assert!(!ApiToken.is_cookie() && !Anonymous.is_cookie());
    }

    #[test]
    fn refusals_quote_the_origin_briefly() {
        let long = format!("https://{}.example", "a".repeat(300));
        let Verdict::Refuse(Refusal::CrossOrigin { origin }) =
            verdict(&Method::POST, false, AppCookie, Some(&long), None)
        else {
            panic!("not refused");
        };
        assert!(
            origin.chars().count() <= 101 && origin.ends_with('…'),
            "{origin}"
        );
    }
}
