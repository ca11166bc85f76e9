//! Signed cookies: `__Host-berth_share` (a redeemed share link),
//! `__Host-berth_app` (a signed-in browser on one app host),
//! `__Host-berth_session` (the control host), `__Host-berth_state` (a sign-in
//! started on an app host) and `__Host-berth_oidc` (an OpenID Connect sign-in
//! in progress). The edge verifies them alone, with a key it holds, and asks
//! the catalog only whether the link or session still exists; nothing in
//! them is secret.
//!
//! Value: `{id}.{expires_unix}.{base64url(hmac)}` where the HMAC-SHA256 covers
//! `v1|{purpose}|{id}|{host}|{expires}`, so a cookie is bound to one purpose
//! and to the one host that set it, and cannot be replayed elsewhere.
//!
//! Every app host and the control host share one site, so an app can set
//! cookies for all of them (`Domain=` the parent) unless berth's names carry
//! the `__Host-` prefix, which browsers accept only host-only, `Secure`,
//! `Path=/` and from the host itself. berth sets and reads only the prefixed
//! names, and where a name still appears more than once (an old browser, a
//! cookie of another path) [`decide`] lets no unverified copy choose.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The visitor cookie a redeemed share link sets.
pub const SHARE_COOKIE: &str = "__Host-berth_share";
/// The cookie of a signed-in browser on one app host.
pub const APP_COOKIE: &str = "__Host-berth_app";
/// The control host's session cookie.
pub const SESSION_COOKIE: &str = "__Host-berth_session";
/// The control host's cookie for an OpenID Connect sign-in in progress.
pub const OIDC_COOKIE: &str = "__Host-berth_oidc";
/// The control host's cookie carrying where an OpenID Connect sign-in goes
/// back to (the app host and the app host's sign-in state).
pub const OIDC_RETURN_COOKIE: &str = "__Host-berth_oidc_to";
/// An app host's cookie for a sign-in this browser started there: the
/// one-time code is accepted only with the state it names (no login CSRF).
pub const STATE_COOKIE: &str = "__Host-berth_state";

/// More copies of one berth cookie than this in a request are not looked
/// at (each costs an HMAC and a catalog look-up): the request is treated as
/// carrying none, as with two valid copies. A browser sends one, or a few.
pub const MAX_COPIES: usize = 8;

/// What a signed value is for; part of the MAC, so values cannot cross over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `__Host-berth_share`: the id is a share link's.
    Share,
    /// `__Host-berth_app` and `__Host-berth_session`: the id is a session's.
    Session,
    /// `__Host-berth_oidc`: the id is the `state` of an OpenID Connect
    /// sign-in this browser started.
    Oidc,
    /// `__Host-berth_oidc` too: the id is the `state` of a GitHub sign-in
    /// this browser started (a state of one never finishes the other).
    GitHub,
    /// `__Host-berth_state`: the id is the nonce of a sign-in this browser
    /// started on an app host.
    State,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Share => "share",
            Purpose::Session => "session",
            Purpose::Oidc => "oidc",
            Purpose::GitHub => "github",
            Purpose::State => "state",
        }
    }
}

/// A key for signing cookies (32 random bytes, kept in the store).
#[derive(Clone)]
pub struct CookieKey([u8; 32]);

impl CookieKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        CookieKey(bytes)
    }

    fn mac(&self, purpose: Purpose, id: &str, host: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        let host = host.to_ascii_lowercase();
        mac.update(format!("v1|{}|{id}|{host}|{expires}", purpose.tag()).as_bytes());
        mac
    }

    /// The cookie value for `id` on `host`, valid until `expires` (unix s).
    pub fn sign(&self, purpose: Purpose, id: &str, host: &str, expires: i64) -> String {
        let tag = self.mac(purpose, id, host, expires).finalize().into_bytes();
        format!("{id}.{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The key itself, for handing to a regional edge (over TLS, to a holder
    /// of a region token) so that it verifies and sets cookies alone.
    pub fn expose_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// A secret derived from the key for `label` and `input` (HMAC-SHA256),
    /// e.g. an OpenID Connect nonce from its state: what only this key's
    /// holder can compute, kept nowhere.
    pub fn derive(&self, label: &str, input: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(format!("v1|derive|{label}|{input}").as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Checks a cookie value for `host` at time `now`; returns the id.
    pub fn verify(
        &self,
        purpose: Purpose,
        value: &str,
        host: &str,
        now: i64,
    ) -> Result<String, CookieError> {
        self.verify_until(purpose, value, host, now)
            .map(|(id, _)| id)
    }

    /// [`CookieKey::verify`], also returning the signed expiry.
    pub fn verify_until(
        &self,
        purpose: Purpose,
        value: &str,
        host: &str,
        now: i64,
    ) -> Result<(String, i64), CookieError> {
        let mut parts = value.splitn(3, '.');
        let (Some(id), Some(exp), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CookieError::Malformed);
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(CookieError::Malformed);
        }
        let expires: i64 = exp.parse().map_err(|_| CookieError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CookieError::Malformed)?;
        self.mac(purpose, id, host, expires)
            .verify_slice(&tag)
            .map_err(|_| CookieError::BadSignature)?;
        if now >= expires {
            return Err(CookieError::Expired);
        }
        Ok((id.to_owned(), expires))
    }
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(****)")
    }
}

/// Why a cookie was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("the cookie is malformed")]
    Malformed,
    #[error("the cookie's signature does not match (another host, or forged)")]
    BadSignature,
    #[error("the cookie has expired")]
    Expired,
}

/// Every value of cookie `name` in one `Cookie` header, in order.
pub fn find_all<'a>(cookie_header: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    cookie_header.split(';').filter_map(move |c| {
        let (k, v) = c.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// Every value of cookie `name` in a request's `Cookie` headers (HTTP/2
/// may split them over several), in order.
pub fn copies<'a>(headers: &'a http::HeaderMap, name: &'a str) -> Vec<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| find_all(c, name))
        .collect()
}

/// What the copies of one cookie name in a request amount to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copies<T> {
    /// No copy at all.
    Absent,
    /// Copies, none of which verified (forged, expired, revoked, another
    /// host's).
    Invalid,
    /// Copies that verify to different credentials, or more than
    /// [`MAX_COPIES`]: someone put a cookie there that the browser's own
    /// does not match, and nobody can tell which is whose. No credential.
    Ambiguous,
    /// Every copy that verified names this one credential.
    One(T),
}

impl<T> Copies<T> {
    /// The credential, when exactly one verified.
    pub fn ok(self) -> Option<T> {
        match self {
            Copies::One(t) => Some(t),
            _ => None,
        }
    }

    /// True when the request carried the cookie at all.
    pub fn is_present(&self) -> bool {
        !matches!(self, Copies::Absent)
    }
}

/// Decides what the `values` of one cookie name stand for, given `verify`
/// (signature, expiry, and whether what it names still exists): a copy
/// that fails never decides, one credential verified (however many times)
/// is that credential, and two different ones are none ([`Copies::Ambiguous`]),
/// so a cookie tossed in from elsewhere can neither replace nor shadow the
/// browser's own.
pub fn decide<T: PartialEq>(
    values: &[&str],
    mut verify: impl FnMut(&str) -> Option<T>,
) -> Copies<T> {
    if values.is_empty() {
        return Copies::Absent;
    }
    if values.len() > MAX_COPIES {
        return Copies::Ambiguous;
    }
    let mut found: Option<T> = None;
    for v in values {
        let Some(t) = verify(v) else { continue };
        match &found {
            None => found = Some(t),
            Some(f) if *f == t => {}
            Some(_) => return Copies::Ambiguous,
        }
    }
    found.map_or(Copies::Invalid, Copies::One)
}

/// True for a cookie name that is berth's: `berth_` followed by anything,
/// in any case, with or without a `__Host-` or `__Secure-` prefix. Apps may
/// neither set such cookies (the edge drops them) nor receive them.
pub fn is_berth_name(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    let bare = name
        .strip_prefix("__host-")
        .or_else(|| name.strip_prefix("__secure-"))
        .unwrap_or(&name);
    bare.starts_with("berth_")
}

/// A `Set-Cookie` value for one of berth's `__Host-` cookies: host-only
/// (no Domain), `Path=/`, `Secure; HttpOnly; SameSite=Lax`.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    debug_assert!(
        name.starts_with("__Host-"),
        "{name} lacks the __Host- prefix"
    );
    format!(
        "{name}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        max_age_secs.max(0)
    )
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> CookieKey {
        CookieKey::new([b; 32])
    }

    #[test]
    fn signed_values_verify_only_where_and_while_they_should() {
        let k = key(7);
        let v = k.sign(
            Purpose::Share,
            "abc123",
            "3000--main--api--alice.apps.example.com",
            2_000,
        );
        assert_eq!(
            k.verify(
                Purpose::Share,
                &v,
                "3000--main--api--alice.apps.example.com",
                1_000
            ),
            Ok("abc123".into())
        );
        assert_eq!(
            k.verify(
                Purpose::Share,
                &v,
                "3000--MAIN--api--alice.apps.example.com",
                1_000
            ),
            Ok("abc123".into())
        );
        assert_eq!(
            k.verify(
                Purpose::Share,
                &v,
                "3001--main--api--alice.apps.example.com",
                1_000
            ),
            Err(CookieError::BadSignature)
        );
        assert_eq!(
            k.verify(
                Purpose::Share,
                &v,
                "3000--main--api--alice.apps.example.com",
                2_000
            ),
            Err(CookieError::Expired)
        );
        assert_eq!(
            key(8).verify(
                Purpose::Share,
                &v,
                "3000--main--api--alice.apps.example.com",
                1_000
            ),
            Err(CookieError::BadSignature)
        );
    }

    #[test]
    fn purposes_do_not_cross() {
        let k = key(3);
        let v = k.sign(Purpose::Share, "abc", "h", 2_000);
        assert_eq!(
            k.verify(Purpose::Session, &v, "h", 1_000),
            Err(CookieError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_caught() {
        let k = key(1);
        let v = k.sign(Purpose::Share, "abc", "h", 2_000);
        // Extending the expiry or swapping the id breaks the signature.
        let later = v.replacen("2000", "9999", 1);
        assert_eq!(
            k.verify(Purpose::Share, &later, "h", 1_000),
            Err(CookieError::BadSignature)
        );
        let other = v.replacen("abc", "abd", 1);
        assert_eq!(
            k.verify(Purpose::Share, &other, "h", 1_000),
            Err(CookieError::BadSignature)
        );
        for bad in [
            "",
            "abc",
            "abc.2000",
            "abc.x.y",
            "a-b.2000.AAAA",
            ".2000.AAAA",
            "abc.2000.!!!",
        ] {
            assert!(
                k.verify(Purpose::Share, bad, "h", 1_000).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cookie_header_helpers() {
        let all = |h: &'static str, n: &'static str| find_all(h, n).collect::<Vec<_>>();
        assert_eq!(
            all("a=1; __Host-berth_share=x.1.y; b=2", SHARE_COOKIE),
            ["x.1.y"]
        );
        assert_eq!(all("__Host-berth_shared=1", SHARE_COOKIE), [""; 0]);
        // Only the prefixed name counts; every copy is found.
        assert_eq!(
            all(
                "berth_app=tossed; __Host-berth_app=a; __host-berth_app=b; __Host-berth_app=c",
                APP_COOKIE
            ),
            ["a", "c"]
        );
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "x=1; __Host-berth_app=a".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "__Host-berth_app=b".parse().unwrap());
        assert_eq!(copies(&h, APP_COOKIE), ["a", "b"]);
        for name in [
            SHARE_COOKIE,
            APP_COOKIE,
            SESSION_COOKIE,
            OIDC_COOKIE,
            OIDC_RETURN_COOKIE,
            STATE_COOKIE,
        ] {
            assert!(name.starts_with("__Host-berth_"), "{name}");
            let s = set_cookie(name, "v", 60);
            assert!(s.contains("Secure") && s.contains("HttpOnly") && s.contains("SameSite=Lax"));
            assert!(s.contains("; Path=/;"), "{s}");
            assert!(!s.to_ascii_lowercase().contains("domain="), "host-only");
        }
        assert!(clear_cookie(APP_COOKIE).contains("Max-Age=0"));
    }

    #[test]
    fn berth_names_with_or_without_prefix() {
        for name in [
            "berth_app",
            "berth_session",
            "BERTH_SHARE",
            "__Host-berth_session",
            "__host-berth_app",
            "__Secure-berth_share",
            "__SECURE-berth_state",
            " berth_oidc ",
            "berth_",
        ] {
            assert!(is_berth_name(name), "{name}");
        }
        for name in [
            "theme",
            "berth",
            "xberth_app",
            "__Host-theme",
            "_berth_app",
            "__Host_berth_app",
            "",
        ] {
            assert!(!is_berth_name(name), "{name}");
        }
    }

    /// The decision over several copies of one name, as an attacker would
    /// try to bend it: `verify` accepts "bob", "bob2" and "carol" (each a
    /// valid credential of its own), and nothing else.
    #[test]
    fn no_forged_copy_decides() {
        let verify = |v: &str| match v {
            "bob" | "bob-again" => Some("bob"),
            "carol" => Some("carol"),
            _ => None,
        };
        let run = |vals: &[&str]| decide(vals, verify);
        let cases: &[(&[&str], Copies<&str>)] = &[
            (&[], Copies::Absent),
            (&["bob"], Copies::One("bob")),
            (&["forged"], Copies::Invalid),
            (&["", "x.1.y"], Copies::Invalid),
            // A forged copy before or after the browser's own never decides.
            (&["forged", "bob"], Copies::One("bob")),
            (&["bob", "forged"], Copies::One("bob")),
            (&["forged", "bob", "expired"], Copies::One("bob")),
            // The same credential twice (two values of one session) is it.
            (&["bob", "bob-again"], Copies::One("bob")),
            // Carol's valid cookie beside bob's: nobody, in either order.
            (&["carol", "bob"], Copies::Ambiguous),
            (&["bob", "carol"], Copies::Ambiguous),
            (&["forged", "carol", "x", "bob"], Copies::Ambiguous),
            // Flooding with copies: nobody, without verifying them all.
            (&["bob"; MAX_COPIES], Copies::One("bob")),
            (&["bob"; MAX_COPIES + 1], Copies::Ambiguous),
        ];
        for (vals, want) in cases {
            assert_eq!(&run(vals), want, "{vals:?}");
        }
        let mut calls = 0;
        let _ = decide(&["x"; 1000], |_| {
            calls += 1;
            None::<()>
        });
        assert_eq!(calls, 0, "a flood is refused before verifying");
        assert!(!Copies::<()>::Absent.is_present());
        assert!(Copies::<()>::Invalid.is_present());
        assert_eq!(Copies::One(1).ok(), Some(1));
        assert_eq!(Copies::<i32>::Ambiguous.ok(), None);
    }
}
