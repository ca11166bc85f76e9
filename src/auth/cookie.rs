//! Signed cookies: `berth_share` (a redeemed share link), `berth_app` (a
//! signed-in browser on one app host) and `berth_session` (the control host).
//! The edge verifies them alone, with a key it holds, and asks the catalog
//! only whether the link or session still exists; nothing in them is secret.
//!
//! Value: `{id}.{expires_unix}.{base64url(hmac)}` where the HMAC-SHA256 covers
//! `v1|{purpose}|{id}|{host}|{expires}`, so a cookie is bound to one purpose
//! and to the one host that set it, and cannot be replayed elsewhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The visitor cookie a redeemed share link sets.
pub const SHARE_COOKIE: &str = "berth_share";
/// The cookie of a signed-in browser on one app host.
pub const APP_COOKIE: &str = "berth_app";
/// The control host's session cookie.
pub const SESSION_COOKIE: &str = "berth_session";
/// The control host's cookie for an OpenID Connect sign-in in progress.
pub const OIDC_COOKIE: &str = "berth_oidc";

/// What a signed value is for; part of the MAC, so values cannot cross over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// `berth_share`: the id is a share link's.
    Share,
    /// `berth_app` and `berth_session`: the id is a session's.
    Session,
    /// `berth_oidc`: the id is the `state` of an OpenID Connect sign-in
    /// this browser started.
    Oidc,
}

impl Purpose {
    fn tag(self) -> &'static str {
        match self {
            Purpose::Share => "share",
            Purpose::Session => "session",
            Purpose::Oidc => "oidc",
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
        Ok(id.to_owned())
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

/// The value of cookie `name` in a `Cookie` header, if present.
pub fn find<'a>(cookie_header: &'a str, name: &str) -> Option<&'a str> {
    cookie_header.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// A `Set-Cookie` value: host-only (no Domain), `Secure; HttpOnly; SameSite=Lax`.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!(
        "{name}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        max_age_secs.max(0)
    )
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
        assert_eq!(
            find("a=1; berth_share=x.1.y; b=2", SHARE_COOKIE),
            Some("x.1.y")
        );
        assert_eq!(find("berth_shared=1", SHARE_COOKIE), None);
        let s = set_cookie(SHARE_COOKIE, "v", 60);
        assert!(s.contains("Secure") && s.contains("HttpOnly") && s.contains("SameSite=Lax"));
        assert!(!s.to_ascii_lowercase().contains("domain="), "host-only");
    }
}
