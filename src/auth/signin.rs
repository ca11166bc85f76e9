//! Browser sign-in on app hosts (SPEC section 3): the control plane, where the
//! browser has a session, mints a one-time code bound to one app host and
//! valid for 60 s; the app host's edge exchanges it for a host-only
//! `berth_app` cookie. Codes live in memory here (control and the built-in
//! edge share this process); a regional edge will exchange them over the API.

use crate::host::Wildcard;
use dashmap::DashMap;
use rand::RngCore;

/// What sign-in needs on both sides (control and the built-in edge).
#[derive(Debug)]
pub struct SignIn {
    /// Signs `berth_session` and `berth_app`.
    pub key: crate::auth::cookie::CookieKey,
    /// Outstanding one-time codes.
    pub codes: Codes,
    /// App hosts the control plane may send browsers back to.
    pub wildcard: Wildcard,
    /// The control host (no port), where `berth_session` lives.
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

/// One minted code: whose session, for which host, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Code {
    session_id: String,
    host: String,
    expires_at: i64,
}

/// Outstanding one-time codes.
#[derive(Debug, Default)]
pub struct Codes {
    codes: DashMap<String, Code>,
}

impl Codes {
    /// Mints a code for `session_id` usable once on `host` until `now + 60 s`.
    pub fn mint(&self, session_id: &str, host: &str, now: i64) -> String {
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
                expires_at: now + CODE_TTL_SECS,
            },
        );
        code
    }

    /// Takes a code presented on `host`: the session id if the code exists,
    /// was minted for this host and has not expired. A code works once.
    pub fn take(&self, code: &str, host: &str, now: i64) -> Option<String> {
        let (_, c) = self.codes.remove(code)?;
        (c.host == host.to_ascii_lowercase() && c.expires_at > now).then_some(c.session_id)
    }
}

/// Splits a sign-in `return_to` URL into (host, path) if it is an `https://`
/// URL on an app host under `wildcard` (optionally with `:port`); anything
/// else is refused, so the control plane never redirects elsewhere.
pub fn return_target<'a>(url: &'a str, wildcard: &Wildcard) -> Option<(&'a str, &'a str)> {
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
    crate::host::parse_host(authority, wildcard).ok()?;
    Some((authority, path))
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
        let c = codes.mint("s1", "3000--m--w--u.apps.x:8443", 100);
        assert_eq!(
            codes.take(&c, "3001--m--w--u.apps.x:8443", 101),
            None,
            "other host"
        );
        assert_eq!(
            codes.take(&c, "3000--m--w--u.apps.x:8443", 101),
            None,
            "spent by the failed try"
        );
        let c = codes.mint("s1", "h", 100);
        assert_eq!(codes.take(&c, "H", 159), Some("s1".into()));
        assert_eq!(codes.take(&c, "h", 159), None, "once");
        let c = codes.mint("s1", "h", 100);
        assert_eq!(codes.take(&c, "h", 160), None, "expired");
        assert_eq!(codes.take("nope", "h", 100), None);
    }

    #[test]
    fn return_to_stays_under_the_wildcard() {
        let w = Wildcard::parse("*.apps.example.com").unwrap();
        assert_eq!(
            return_target("https://3000--m--w--u.apps.example.com/a?b=1", &w),
            Some(("3000--m--w--u.apps.example.com", "/a?b=1"))
        );
        assert_eq!(
            return_target("https://3000--m--w--u.apps.example.com:8443", &w),
            Some(("3000--m--w--u.apps.example.com:8443", "/"))
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
