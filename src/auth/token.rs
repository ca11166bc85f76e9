//! Bearer tokens: `berth_{kind}_{base62}` with 256 bits of randomness.
//!
//! The kind prefix lets the edge and secret scanners recognise a berth token
//! without a lookup. Only the SHA-256 of a token is ever stored: tokens are
//! high-entropy, so a fast hash is enough (no salt or stretching needed).

use crate::secret::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;

/// Every token berth issues starts with this.
pub const PREFIX: &str = "berth_";

/// What a token grants; encoded in its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A user's API token (CLI, programs, `Authorization: Bearer`).
    Api,
    /// An agent's tunnel credential.
    Agent,
    /// A regional edge's credential.
    Region,
    /// A share link.
    Link,
}

impl TokenKind {
    /// The full prefix, e.g. `berth_api_`.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Api => "berth_api_",
            TokenKind::Agent => "berth_agent_",
            TokenKind::Region => "berth_region_",
            TokenKind::Link => "berth_link_",
        }
    }

    /// The kind named by a token's prefix, if it is a berth token.
    pub fn of(token: &str) -> Option<TokenKind> {
        [
            TokenKind::Api,
            TokenKind::Agent,
            TokenKind::Region,
            TokenKind::Link,
        ]
        .into_iter()
        .find(|k| token.starts_with(k.prefix()))
    }
}

/// The SHA-256 of a token, as stored and as used for lookups.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
    /// Lower-case hex, the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses the stored form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(TokenHash(out))
    }
}

/// On the wire (between control replicas) a hash is its stored hex form.
impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TokenHash::from_hex(&hex)
            .ok_or_else(|| serde::de::Error::custom("a token hash is 64 hex digits"))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Mints a new token of `kind` with 256 random bits (43 base62 characters).
pub fn generate(kind: TokenKind) -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("{}{}", kind.prefix(), base62(&bytes)))
}

/// Random bytes as base62 (big-endian number), used for tokens.
fn base62(bytes: &[u8; 32]) -> String {
    // Repeated division of a big-endian number; 32 bytes need 43 digits.
    let mut num = bytes.to_vec();
    let mut out = Vec::with_capacity(43);
    for _ in 0..43 {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(BASE62[rem as usize]);
    }
    out.reverse();
    String::from_utf8(out).expect("base62 is ascii")
}

/// True if `s` looks like a token of `kind`: the prefix, then 43 base62 characters.
pub fn is_well_formed(s: &str, kind: TokenKind) -> bool {
    s.strip_prefix(kind.prefix())
        .is_some_and(|rest| rest.len() == 43 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_carry_their_kind_and_differ() {
        for kind in [
            TokenKind::Api,
            TokenKind::Agent,
            TokenKind::Region,
            TokenKind::Link,
        ] {
            let a = generate(kind);
            let b = generate(kind);
            assert_ne!(a, b);
            assert_eq!(TokenKind::of(a.expose()), Some(kind));
            assert!(is_well_formed(a.expose(), kind), "{}", a.expose());
        }
    }

    #[test]
    fn foreign_tokens_have_no_kind() {
        assert_eq!(TokenKind::of("eyJhbGciOi.x.y"), None);
        assert_eq!(TokenKind::of("berth_"), None);
        assert_eq!(TokenKind::of("berth_apix"), None);
        assert!(!is_well_formed("berth_api_short", TokenKind::Api));
        assert!(!is_well_formed(
            "berth_api_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            TokenKind::Api
        ));
    }

    #[test]
    fn hash_round_trips_and_secret_debug_is_masked() {
        let t = generate(TokenKind::Api);
        let h = TokenHash::of(t.expose());
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_ne!(TokenHash::of("a"), TokenHash::of("b"));
        assert!(!format!("{t:?}").contains("berth_"));
    }

    #[test]
    fn base62_of_zero_and_max() {
        assert_eq!(base62(&[0u8; 32]), "0".repeat(43));
        assert_eq!(base62(&[255u8; 32]).len(), 43);
    }
}
