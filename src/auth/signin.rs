//! Browser sign-in on app hosts (SPEC section 3): the control plane, where the
//! browser has a session, mints a one-time code bound to one app host and
//! valid for 60 s; the app host's edge exchanges it for a host-only
//! `__Host-berth_app` cookie. Codes live in memory here (control and the
//! built-in edge share this process); a regional edge exchanges them over
//! the API.
//!
//! A code is also bound to the `state` that the app host's edge gave the
//! browser when it sent it to sign in (a random nonce, kept in the
//! browser's `__Host-berth_state` cookie on that host): another user's code,
//! sent to this browser's callback, is refused (no login CSRF).

use crate::host::Wildcard;
use dashmap::DashMap;
use rand::RngCore;

/// What sign-in needs on both sides (control and the built-in edge).
#[derive(Debug)]
pub struct SignIn {
    /// Signs `__Host-berth_session`, `__Host-berth_app` and the others.
    pub key: crate::auth::cookie::CookieKey,
    /// Outstanding one-time codes.
    pub codes: Codes,
    /// App hosts the control plane may send browsers back to.
    pub wildcard: Wildcard,
    /// The control host (no port), where `__Host-berth_session` lives.
    pub base_domain: String,
    /// `https://base_domain[:port]`, where browsers are sent to sign in.
    pub base_url: String,
    /// How long a browser session lasts.
    pub session_ttl_secs: i64,
}

/// A browser session lasts this long unless configured otherwise (SPEC: as
/// long as the user's session, default 24 h).
pub const SESSION_TTL_SECS: i64 = 24 * 3600;

/// How long a one-time code is valid.
pub const CODE_TTL_SECS: i64 = 60;

/// How long a browser may take to sign in once an app host sent it to
/// (the life of `__Host-berth_state`): typing a password, or a trip to an
/// identity provider.
pub const STATE_TTL_SECS: i64 = 600;

/// One minted code: whose session, for which host and sign-in state, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Code {
    session_id: String,
    host: String,
    state: String,
    expires_at: i64,
}

/// Outstanding one-time codes.
#[derive(Debug, Default)]
pub struct Codes {
    codes: DashMap<String, Code>,
}

impl Codes {
    /// Mints a code for `session_id` usable once on `host`, by the browser
    /// whose sign-in `state` it is (empty: a sign-in an edge of an older
    /// version started), until `now + 60 s`.
    pub fn mint(&self, session_id: &str, host: &str, state: &str, now: i64) -> String {
        // Drop stale codes as new ones are made, so the map stays small.
        self.codes.retain(|_, c| c.expires_at > now);
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let code = hex::encode(raw);
        self.codes.insert(
            code.clone(),
            Code {
                session_id: session_id.to_owned(),
                host: host.to_ascii_lowercase(),
                state: state.to_owned(),
                expires_at: now + CODE_TTL_SECS,
            },
        );
        code
    }

    /// Takes a code presented on `host` by a browser whose sign-in state is
    /// `state`: the session id if the code exists, was minted for this host
    /// and this state, and has not expired. A code works once, whether or
    /// not it matched.
    pub fn take(&self, code: &str, host: &str, state: &str, now: i64) -> Option<String> {
        let (_, c) = self.codes.remove(code)?;
        let state_matches: bool =
            subtle::ConstantTimeEq::ct_eq(c.state.as_bytes(), state.as_bytes()).into();
        (c.host == host.to_ascii_lowercase() && state_matches && c.expires_at > now)
            .then_some(c.session_id)
    }
}

/// A sign-in state as the edge makes it (a random nonce, 32 hex digits):
/// what control accepts in `state` and carries to the code.
pub fn valid_state(state: &str) -> bool {
    (16..=64).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A fresh sign-in state (128 random bits, hex).
pub fn new_state() -> String {
    let mut raw = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Whether control must ask before sending a signed-in browser on to an app
/// host (and so telling that app who the visitor is): not for the visitor's
/// own apps, not right after they typed their password for this very
/// return (`interactive`), otherwise yes: any page can send a browser to
/// sign-in with any app as the return, and must not learn its user silently.
pub fn needs_consent(app_owner: &str, visitor: &str, interactive: bool) -> bool {
    !interactive && !app_owner.eq_ignore_ascii_case(visitor)
}

/// Where a sign-in returns to: an app host (with port, if any), the path on
/// it, and the user who owns the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnTo<'a> {
    /// `host[:port]` as in the URL.
    pub authority: &'a str,
    /// The path and query, at least `/`.
    pub path: &'a str,
    /// The `{user}` part of the app host: who the app would tell about the visitor.
    pub owner: String,
}

/// Splits a sign-in `return_to` URL into (host, path, owner) if it is an
/// `https://` URL on an app host under `wildcard` (optionally with `:port`);
/// anything else is refused, so the control plane never redirects elsewhere.
pub fn return_target<'a>(url: &'a str, wildcard: &Wildcard) -> Option<ReturnTo<'a>> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.contains(['@', '\\', '?', '#'])
        || path.starts_with("//")
        || path.contains('\\')
        || path.bytes().any(|b| b.is_ascii_control())
    {
        return None;
    }
    let target = crate::host::parse_host(authority, wildcard).ok()?;
    Some(ReturnTo {
        authority,
        path,
        owner: target.user,
    })
}

/// A path to send a browser back to on its own host: must be absolute and
/// must not become another host (`//evil`, `/\evil`).
pub fn safe_path(path: &str) -> Option<&str> {
    (path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.bytes().any(|b| b.is_ascii_control()))
    .then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_work_once_on_their_host_within_a_minute() {
        let codes = Codes::default();
        let c = codes.mint("s1", "3000--m--w--u.apps.x:8443", "st", 100);
        assert_eq!(
            codes.take(&c, "3001--m--w--u.apps.x:8443", "st", 101),
            None,
            "other host"
        );
        assert_eq!(
            codes.take(&c, "3000--m--w--u.apps.x:8443", "st", 101),
            None,
            "spent by the failed try"
        );
        let c = codes.mint("s1", "h", "st", 100);
        assert_eq!(codes.take(&c, "H", "st", 159), Some("s1".into()));
        assert_eq!(codes.take(&c, "h", "st", 159), None, "once");
        let c = codes.mint("s1", "h", "st", 100);
        assert_eq!(codes.take(&c, "h", "st", 160), None, "expired");
        assert_eq!(codes.take("nope", "h", "st", 100), None);
    }

    /// Login CSRF: a code minted for one browser's sign-in state is good
    /// only with that state, and one minted without a state only without.
    #[test]
    fn codes_work_only_for_the_browser_that_asked() {
        let codes = Codes::default();
        let cases = [
            ("bob-state", "bob-state", true),
            ("carol-state", "bob-state", false),
            ("carol-state", "", false),
            ("", "bob-state", false),
            ("bob-state", "bob-stat", false),
            ("bob-state", "bob-state ", false),
            ("", "", true),
        ];
        for (minted, presented, ok) in cases {
            let c = codes.mint("s", "h", minted, 100);
            assert_eq!(
                codes.take(&c, "h", presented, 101).is_some(),
                ok,
                "{minted:?} taken with {presented:?}"
            );
        }
        assert!(valid_state(&new_state()));
        assert_ne!(new_state(), new_state());
        for bad in [
            "",
            "short",
            "x".repeat(65).as_str(),
            "0123456789abcdef-",
            "0123456789abcdef\n",
        ] {
            assert!(!valid_state(bad), "{bad:?}");
        }
    }

    #[test]
    fn consent_is_asked_before_telling_another_users_app() {
        let cases = [
            // (app owner, visitor, just typed a password for this return, ask?)
            ("bob", "bob", false, false),
            ("bob", "bob", true, false),
            ("carol", "bob", true, false),
            ("carol", "bob", false, true),
            ("admin", "bob", false, true),
            ("bob", "admin", false, true),
            ("Bob", "bob", false, false),
            ("bobby", "bob", false, true),
            ("", "bob", false, true),
        ];
        for (owner, visitor, interactive, ask) in cases {
            assert_eq!(
                needs_consent(owner, visitor, interactive),
                ask,
                "{owner} {visitor} {interactive}"
            );
        }
    }

    #[test]
    fn return_to_stays_under_the_wildcard() {
        let w = Wildcard::parse("*.apps.example.com").unwrap();
        assert_eq!(
            return_target("https://3000--m--w--u.apps.example.com/a?b=1", &w),
            Some(ReturnTo {
                authority: "3000--m--w--u.apps.example.com",
                path: "/a?b=1",
                owner: "u".into()
            })
        );
        assert_eq!(
            return_target("https://docs--m--w--carol.apps.example.com:8443", &w),
            Some(ReturnTo {
                authority: "docs--m--w--carol.apps.example.com:8443",
                path: "/",
                owner: "carol".into()
            })
        );
        for bad in [
            "http://3000--m--w--u.apps.example.com/",
            "https://evil.com/",
            "https://apps.example.com/",
            "https://x.apps.example.com.evil.com/",
            "https://3000--m--w--u.apps.example.com@evil.com/",
            "https://evil.com#3000--m--w--u.apps.example.com",
            "https://3000--m--w--u.apps.example.com//evil.com",
            "https://3000--m--w--u.apps.example.com/\\evil.com",
            "//evil.com",
            "/relative",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(return_target(bad, &w), None, "{bad}");
        }
    }

    #[test]
    fn safe_paths() {
        assert_eq!(safe_path("/a?b"), Some("/a?b"));
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "https://evil.com",
            "",
            "a",
            "/x\r\nSet-Cookie: y",
        ] {
            assert_eq!(safe_path(bad), None, "{bad:?}");
        }
    }
}
