//! The identity an app can verify: `Berth-Jwt-Assertion`, an ES256 JWT the
//! edge signs for a visitor known to berth (a user, by API token or
//! session), published keys (`/.well-known/jwks.json`) and their rotation.
//!
//! Control makes and rotates the keys ([`rotation`] decides, the store
//! keeps them); every edge signs with the newest key of the [`Keyring`] it
//! holds (regional edges receive it on the authenticated watch stream).
//! Apps only ever see signed assertions and public keys.
//!
//! Crates: `jsonwebtoken` (already used for OIDC ID tokens) signs and
//! verifies; `rcgen` (already used for the local CA) makes P-256 keys and
//! reads their public points. Nothing here is hand-written crypto.

use super::Visitor;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The header an app receives the assertion in.
pub const ASSERTION_HEADER: http::HeaderName = http::HeaderName::from_static("berth-jwt-assertion");
/// Where every edge and control publish the public keys, on their own host.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("cannot make a signing key: {0}")]
    Generate(String),
    #[error("signing key {kid} is not a P-256 PKCS#8 key: {why}")]
    BadKey { kid: String, why: String },
}

/// One ES256 signing key: its id, when it was made, the private key
/// (PKCS#8 DER; never printed, never published) and its public point.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "KeyWire", into = "KeyWire")]
pub struct SigningKey {
    kid: String,
    created_at: i64,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    x: String,
    y: String,
}

/// [`SigningKey`] as it travels to regional edges: the private key in
/// standard base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyWire {
    kid: String,
    created_at: i64,
    private_key: String,
}

impl TryFrom<KeyWire> for SigningKey {
    type Error = JwtError;
    fn try_from(w: KeyWire) -> Result<Self, JwtError> {
        let der = STANDARD
            .decode(&w.private_key)
            .map_err(|e| JwtError::BadKey {
                kid: w.kid.clone(),
                why: e.to_string(),
            })?;
        SigningKey::from_pkcs8(w.kid, w.created_at, der)
    }
}

impl From<SigningKey> for KeyWire {
    fn from(k: SigningKey) -> Self {
        KeyWire {
            private_key: STANDARD.encode(&k.pkcs8),
            kid: k.kid,
            created_at: k.created_at,
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random P-256 key made at `now`, with a random id.
    pub fn generate(now: i64) -> Result<SigningKey, JwtError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| JwtError::Generate(e.to_string()))?;
        let kid = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 12]>());
        SigningKey::from_pkcs8(kid, now, kp.serialize_der())
    }

    /// A stored key; refused unless it is a P-256 key in PKCS#8 DER.
    pub fn from_pkcs8(kid: String, created_at: i64, der: Vec<u8>) -> Result<SigningKey, JwtError> {
        let bad = |why: String| JwtError::BadKey {
            kid: kid.clone(),
            why,
        };
        let kp = rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| bad(e.to_string()))?;
        if !kp.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(bad("another algorithm than ECDSA P-256".into()));
        }
        let raw = kp.public_key_raw();
        if raw.len() != 65 || raw[0] != 4 {
            return Err(bad("the public point is not uncompressed P-256".into()));
        }
        Ok(SigningKey {
            x: URL_SAFE_NO_PAD.encode(&raw[1..33]),
            y: URL_SAFE_NO_PAD.encode(&raw[33..65]),
            encoding: EncodingKey::from_ec_der(&der),
            kid,
            created_at,
            pkcs8: der,
        })
    }

    /// The key's id (the JWT header's `kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key was made (unix seconds).
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The private key, PKCS#8 DER, for the store.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (RFC 7517/7518): no private part.
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
            "kid": self.kid, "x": self.x, "y": self.y,
        })
    }
}

/// What an edge signs with: the issuer (control's base URL), the
/// assertions' lifetime and the published keys, newest (the one that
/// signs) first. No keys: no assertions (`jwt.enabled = false`, or a
/// regional edge that has not heard from control yet).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyring {
    pub issuer: String,
    pub ttl_secs: i64,
    pub keys: Vec<SigningKey>,
}

impl Keyring {
    /// A keyring of `keys` in any order: sorted newest first.
    pub fn new(issuer: String, ttl_secs: i64, mut keys: Vec<SigningKey>) -> Keyring {
        keys.sort_by(|a, b| (b.created_at, &b.kid).cmp(&(a.created_at, &a.kid)));
        Keyring {
            issuer,
            ttl_secs,
            keys,
        }
    }

    /// The key that signs: the newest.
    pub fn current(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    /// The JWK set apps verify with: every key still published.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": self.keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>(),
        })
    }

    /// How long an assertion is valid, in seconds.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// The assertion for `visitor` (in the groups named `groups`) on app
    /// `host` at `now`, or `None` without a key.
    pub fn assert(
        &self,
        visitor: &Visitor,
        groups: &[String],
        host: &str,
        now: i64,
    ) -> Option<String> {
        let key = self.current()?;
        let claims = Claims::of(visitor, groups, &self.issuer, host, now, self.ttl_secs);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        match jsonwebtoken::encode(&header, &claims, &key.encoding) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(kid = %key.kid, error = %e, "cannot sign an identity assertion");
                None
            }
        }
    }
}

/// The assertion's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Control's base URL, e.g. `https://berth.example.com`.
    pub iss: String,
    /// The app host, lower case, without port: an assertion is for one app.
    pub aud: String,
    /// The user's id at berth (stable across renames), as a string.
    pub sub: String,
    /// The user name (as in `X-Berth-User`).
    pub name: String,
    /// The e-mail address (as in `X-Berth-Email`; absent unless plain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The names of the user's berth groups, sorted.
    pub groups: Vec<String>,
    /// The user's organization, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// The claims for `visitor` (in the groups named `groups`) on `host`,
    /// issued by `issuer` at `now`, valid `ttl_secs`.
    pub fn of(
        visitor: &Visitor,
        groups: &[String],
        issuer: &str,
        host: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Claims {
        Claims {
            iss: issuer.to_owned(),
            aud: host.to_ascii_lowercase(),
            sub: visitor.user_id.to_string(),
            name: visitor.username.clone(),
            email: super::email::is_plain(&visitor.email).then(|| visitor.email.clone()),
            groups: groups.to_vec(),
            organization: visitor.organization.clone(),
            iat: now,
            exp: now + ttl_secs,
        }
    }
}

/// The keyring an edge signs with right now, replaced as keys rotate;
/// watchers (control's watch streams) learn of every replacement.
#[derive(Debug)]
pub struct Identity(tokio::sync::watch::Sender<Arc<Keyring>>);

impl Default for Identity {
    fn default() -> Self {
        Identity(tokio::sync::watch::Sender::new(Arc::default()))
    }
}

impl Identity {
    /// The keyring now.
    pub fn get(&self) -> Arc<Keyring> {
        self.0.borrow().clone()
    }

    /// Replaces the keyring.
    pub fn set(&self, ring: Keyring) {
        self.0.send_replace(Arc::new(ring));
    }

    /// A receiver that sees every replacement.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<Keyring>> {
        self.0.subscribe()
    }
}

/// What a rotation pass does with the stored keys.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// Make a new key (none yet, or the newest is `rotation_secs` old).
    pub generate: bool,
    /// Keys to delete: replaced more than `grace_secs` ago.
    pub retire: Vec<String>,
}

/// Decides a rotation pass over the stored keys `(kid, created_at)` at
/// `now`: the newest key signs until it is `rotation_secs` old; a replaced
/// key (replaced when the next one was made) stays published for
/// `grace_secs` after that, then goes.
pub fn rotation(keys: &[(String, i64)], now: i64, rotation_secs: i64, grace_secs: i64) -> Plan {
    let mut sorted: Vec<&(String, i64)> = keys.iter().collect();
    sorted.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let generate = sorted
        .first()
        .is_none_or(|(_, made)| now.saturating_sub(*made) >= rotation_secs);
    let retire = sorted
        .windows(2)
        .filter(|w| now.saturating_sub(w[0].1) >= grace_secs)
        .map(|w| w[1].0.clone())
        .collect();
    Plan { generate, retire }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation};

    fn alice() -> Visitor {
        Visitor {
            user_id: 7,
            username: "alice".into(),
            email: "alice@example.com".into(),
            admin: false,
            organization: Some("acme".into()),
            group_ids: vec![],
        }
    }

    fn verify(token: &str, jwks: &serde_json::Value, aud: &str) -> Result<Claims, String> {
        let set: JwkSet = serde_json::from_value(jwks.clone()).unwrap();
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|e| e.to_string())?
            .kid
            .ok_or("no kid")?;
        let jwk = set.find(&kid).ok_or("unknown kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[aud]);
        v.set_issuer(&["https://berth.example.com"]);
        jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| e.to_string())
    }

    fn ring(keys: Vec<SigningKey>) -> Keyring {
        Keyring::new("https://berth.example.com".into(), 300, keys)
    }

    #[test]
    fn an_assertion_verifies_against_the_published_keys_for_its_host_only() {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let ring = ring(vec![SigningKey::generate(now).unwrap()]);
        let host = "3000--main--api--alice.apps.example.com";
        let groups = ["eng".to_string(), "ops".to_string()];
        let t = ring
            .assert(&alice(), &groups, &host.to_uppercase(), now)
            .unwrap();
        let c = verify(&t, &ring.jwks(), host).unwrap();
        assert_eq!(c.sub, "7");
        assert_eq!(c.name, "alice");
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.organization.as_deref(), Some("acme"));
        assert_eq!(c.groups, ["eng", "ops"]);
        assert_eq!(c.exp - c.iat, 300);
        // Replayed to another app, it fails.
        let e = verify(
            &t,
            &ring.jwks(),
            "3000--main--api--mallory.apps.example.com",
        );
        assert!(e.unwrap_err().contains("Audience"));
        // Signed by a key that is not published, it fails.
        let forger = Keyring::new(
            ring.issuer.clone(),
            300,
            vec![SigningKey::generate(now).unwrap()],
        );
        let mut forged_ring = forger.clone();
        forged_ring.keys[0].kid = ring.keys[0].kid.clone();
        let forged = forged_ring.assert(&alice(), &[], host, now).unwrap();
        assert!(verify(&forged, &ring.jwks(), host).is_err());
        // A changed payload breaks the signature.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c2 = c.clone();
        c2.name = "admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c2).unwrap());
        assert!(verify(&parts.join("."), &ring.jwks(), host).is_err());
        // An unsigned token ("alg": "none") is refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert!(verify(&none, &ring.jwks(), host).is_err());
        // Expired, it fails.
        let old = ring.assert(&alice(), &[], host, now - 1000).unwrap();
        assert!(verify(&old, &ring.jwks(), host)
            .unwrap_err()
            .contains("Expired"));
    }

    #[test]
    fn the_published_set_has_no_private_part_and_keys_travel_whole() {
        let k = SigningKey::generate(5).unwrap();
        let jwks = ring(vec![k.clone()]).jwks().to_string();
        assert!(!jwks.contains("\"d\""), "{jwks}");
        assert!(!format!("{k:?}").contains(&STANDARD.encode(k.pkcs8())));
        let back: SigningKey = serde_json::from_value(serde_json::to_value(&k).unwrap()).unwrap();
        assert_eq!(back.public_jwk(), k.public_jwk());
        let bad = serde_json::json!({"kid": "x", "created_at": 1, "private_key": "AAAA"});
        assert!(serde_json::from_value::<SigningKey>(bad).is_err());
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        assert!(SigningKey::from_pkcs8("e".into(), 1, rsa.serialize_der()).is_err());
    }

    #[test]
    fn the_newest_key_signs() {
        let old = SigningKey::generate(100).unwrap();
        let new = SigningKey::generate(200).unwrap();
        let r = ring(vec![old.clone(), new.clone()]);
        assert_eq!(r.current().unwrap().kid(), new.kid());
        assert_eq!(r.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(Keyring::default().assert(&alice(), &[], "h", 1).is_none());
    }

    #[test]
    fn rotation_makes_a_key_when_due_and_retires_replaced_keys_after_the_grace() {
        let k = |id: &str, at: i64| (id.to_owned(), at);
        let plan = |keys: &[(String, i64)], now| rotation(keys, now, 100, 30);
        let none: Vec<String> = vec![];
        // (keys, now) -> (generate, retire)
        type Row = (Vec<(String, i64)>, i64, bool, Vec<String>);
        let table: Vec<Row> = vec![
            (vec![], 0, true, none.clone()),
            (vec![k("a", 0)], 99, false, none.clone()),
            (vec![k("a", 0)], 100, true, none.clone()),
            // a replaced at 100: kept until 130.
            (vec![k("a", 0), k("b", 100)], 129, false, none.clone()),
            (vec![k("a", 0), k("b", 100)], 130, false, vec!["a".into()]),
            // Order of the input does not matter.
            (vec![k("b", 100), k("a", 0)], 130, false, vec!["a".into()]),
            // Several old keys, a clock far ahead.
            (
                vec![k("a", 0), k("b", 100), k("c", 200)],
                10_000,
                true,
                vec!["b".into(), "a".into()],
            ),
            // A key from the future (another replica's clock) still signs
            // and replaces the older one only after the grace.
            (vec![k("a", 0), k("b", 500)], 100, false, none.clone()),
            // Two keys made at the same second: the larger id signs.
            (vec![k("a", 100), k("b", 100)], 129, false, none.clone()),
            (vec![k("a", 100), k("b", 100)], 130, false, vec!["a".into()]),
        ];
        for (keys, now, generate, retire) in table {
            assert_eq!(
                plan(&keys, now),
                Plan { generate, retire },
                "{keys:?} at {now}"
            );
        }
    }
}
