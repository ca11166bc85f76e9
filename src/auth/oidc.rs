//! OpenID Connect sign-in, the parts that decide: provider metadata checks,
//! the authorization request (code flow, PKCE S256, state and nonce), ID
//! token verification, and who may become which berth user. The control
//! plane ([`crate::control`]) does the HTTP around it.
//!
//! Nothing is stored while a browser is away at the provider: `state` is
//! random and rides in a signed, host-only cookie (`berth_oidc`); the nonce
//! and the PKCE verifier are derived from it with the cookie key, so only
//! this deployment can compute them and any control replica can finish.

use super::cookie::CookieKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a browser may take at the provider (the `berth_oidc` cookie's life).
pub const FLOW_TTL_SECS: i64 = 600;

/// Clock skew tolerated on `exp`, `nbf` and `iat` of ID tokens.
pub const LEEWAY_SECS: u64 = 60;

/// Signature algorithms berth accepts on ID tokens (never `none` or HMAC:
/// the client secret is not a signing key berth wants to rely on).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why a sign-in through the provider did not go through.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    /// The provider's discovery document is unusable (message says why).
    #[error("the OpenID provider's configuration is unusable: {0}")]
    Metadata(String),
    /// The ID token failed a check (message says which).
    #[error("the ID token was refused: {0}")]
    IdToken(String),
}

/// The parts of `/.well-known/openid-configuration` berth uses.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// How the client secret goes to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`, the default).
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

impl Metadata {
    /// Checks the document against the configured issuer (OpenID Connect
    /// Discovery §4.3: they must match exactly) and that every endpoint is
    /// HTTPS and PKCE with S256 is possible.
    pub fn check(&self, configured_issuer: &str) -> Result<(), OidcError> {
        if self.issuer != configured_issuer {
            return Err(OidcError::Metadata(format!(
                "it names the issuer {:?}, but oidc.issuer is {configured_issuer:?}; they must match exactly (check for a trailing slash)",
                self.issuer
            )));
        }
        let endpoints = [
            ("authorization_endpoint", Some(&self.authorization_endpoint)),
            ("token_endpoint", Some(&self.token_endpoint)),
            ("jwks_uri", Some(&self.jwks_uri)),
            ("userinfo_endpoint", self.userinfo_endpoint.as_ref()),
        ];
        for (name, url) in endpoints {
            if let Some(url) = url {
                if !url.starts_with("https://") {
                    return Err(OidcError::Metadata(format!(
                        "{name} {url:?} is not an https:// URL"
                    )));
                }
            }
        }
        if !self.code_challenge_methods_supported.is_empty()
            && !self
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
        {
            return Err(OidcError::Metadata(
                "it does not offer PKCE with S256, which berth requires".into(),
            ));
        }
        Ok(())
    }

    /// `client_secret_basic` unless the provider only takes `client_secret_post`.
    pub fn client_auth(&self) -> ClientAuth {
        let m = &self.token_endpoint_auth_methods_supported;
        if !m.is_empty()
            && !m.iter().any(|x| x == "client_secret_basic")
            && m.iter().any(|x| x == "client_secret_post")
        {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }
}

/// One sign-in attempt: `state` (random, in the browser's cookie and the
/// provider's round trip) and what is derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    /// PKCE `code_verifier`: 43 characters of base64url (RFC 7636 §4.1).
    pub verifier: String,
}

impl Flow {
    /// A new attempt with a random 128-bit state.
    pub fn start(key: &CookieKey) -> Flow {
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        Flow::resume(key, &hex::encode(raw))
    }

    /// The attempt whose state came back in the cookie.
    pub fn resume(key: &CookieKey, state: &str) -> Flow {
        Flow {
            state: state.to_owned(),
            nonce: URL_SAFE_NO_PAD.encode(key.derive("oidc-nonce", state)),
            verifier: URL_SAFE_NO_PAD.encode(key.derive("oidc-pkce", state)),
        }
    }

    /// The PKCE `code_challenge`: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        pkce_challenge(&self.verifier)
    }
}

/// RFC 7636 S256: base64url without padding of the verifier's SHA-256.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The URL to send the browser to at the provider.
pub fn authorization_url(
    meta: &Metadata,
    client_id: &str,
    redirect_uri: &str,
    scopes: &str,
    flow: &Flow,
) -> String {
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scopes),
        ("state", flow.state.as_str()),
        ("nonce", flow.nonce.as_str()),
        ("code_challenge", flow.challenge().as_str()),
        ("code_challenge_method", "S256"),
    ])
    .expect("strings always encode");
    let sep = if meta.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{query}", meta.authorization_endpoint)
}

/// What an ID token must say to be accepted.
#[derive(Clone, Copy, Debug)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
}

/// `aud`: one string or a list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The ID token claims berth reads (`iss`, `aud`, `exp` are checked by the
/// JWT library against [`Expected`]).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    pub aud: Audience,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    /// Every other claim, for `oidc.groups_claim` ([`IdClaims::groups`]).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl IdClaims {
    /// The group names in claim `claim`: a list of strings (other entries
    /// skipped) or one string; nothing when the claim is absent or neither.
    pub fn groups(&self, claim: &str) -> Vec<String> {
        groups_in(self.other.get(claim))
    }

    /// Whether the ID token carries `claim` at all.
    pub fn has(&self, claim: &str) -> bool {
        self.other.contains_key(claim)
    }

    /// The group names in `claim`: the ID token's when it has the claim,
    /// else the userinfo answer's (providers may send claims there only,
    /// OpenID Connect Core §5.4), else none.
    pub fn groups_or_userinfo(&self, claim: &str, info: Option<&UserInfo>) -> Vec<String> {
        if self.has(claim) {
            self.groups(claim)
        } else {
            groups_in(info.and_then(|i| i.other.get(claim)))
        }
    }
}

/// A groups claim's names: a list of strings (other entries skipped) or
/// one string; nothing when absent or neither.
fn groups_in(claim: Option<&serde_json::Value>) -> Vec<String> {
    match claim {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Some providers send `"email_verified": "true"`; anything else but a
/// boolean or `"true"`/`"false"` reads as absent (not verified).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Some(b),
        serde_json::Value::String(s) if s == "true" => Some(true),
        serde_json::Value::String(s) if s == "false" => Some(false),
        _ => None,
    })
}

/// The userinfo endpoint's answer (OpenID Connect Core §5.3).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    /// Every other claim, for `oidc.groups_claim` when the ID token lacks it.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// Verifies an ID token's signature against the provider's keys and its
/// claims against `expected` (issuer, audience, authorized party, expiry,
/// nonce), at the current time with [`LEEWAY_SECS`] of skew.
///
/// `Err(IdToken("no key ..."))` means the key id is unknown: the caller may
/// fetch the key set again (the provider rotated) and retry once.
pub fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<IdClaims, OidcError> {
    let bad = |m: String| OidcError::IdToken(m);
    let header = jsonwebtoken::decode_header(token).map_err(|e| bad(format!("{e}")))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(bad(format!(
            "it is signed with {:?}, which berth does not accept",
            header.alg
        )));
    }
    let candidates: Vec<_> = match &header.kid {
        Some(kid) => keys
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => keys.keys.iter().collect(),
    };
    let fits = |k: &&jsonwebtoken::jwk::Jwk| {
        let family_ok = matches!(
            (&k.algorithm, header.alg),
            (
                AlgorithmParameters::RSA(_),
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (
                AlgorithmParameters::EllipticCurve(_),
                Algorithm::ES256 | Algorithm::ES384
            ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
        );
        let alg_ok = k
            .common
            .key_algorithm
            .is_none_or(|a| format!("{a:?}") == format!("{:?}", header.alg));
        family_ok && alg_ok
    };
    let candidates: Vec<_> = candidates.into_iter().filter(fits).collect();
    if candidates.is_empty() {
        return Err(bad(format!(
            "no key in the provider's key set matches it (kid {:?}, {:?})",
            header.kid.as_deref().unwrap_or("none"),
            header.alg
        )));
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    let mut last = None;
    let mut claims = None;
    for jwk in candidates {
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("a provider key: {e}")))?;
        match jsonwebtoken::decode::<IdClaims>(token, &key, &validation) {
            Ok(data) => {
                claims = Some(data.claims);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let claims = match (claims, last) {
        (Some(c), _) => c,
        (None, Some(e)) => return Err(bad(describe(&e))),
        (None, None) => unreachable!("at least one candidate key was tried"),
    };
    if let Audience::Many(list) = &claims.aud {
        if list.len() > 1 && claims.azp.as_deref() != Some(expected.client_id) {
            return Err(bad(
                "it has several audiences and berth is not its authorized party (azp)".into(),
            ));
        }
    }
    if let Some(azp) = &claims.azp {
        if azp != expected.client_id {
            return Err(bad(format!("it was issued to {azp:?}, not to this client")));
        }
    }
    if claims.nonce.as_deref() != Some(expected.nonce) {
        return Err(bad(
            "its nonce does not match the sign-in this browser started".into(),
        ));
    }
    Ok(claims)
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => "its signature does not verify".into(),
        K::ExpiredSignature => "it has expired".into(),
        K::ImmatureSignature => "it is not valid yet (nbf)".into(),
        K::InvalidIssuer => "it was issued by another issuer".into(),
        K::InvalidAudience => "it is meant for another client (aud)".into(),
        K::MissingRequiredClaim(c) => format!("it has no {c:?} claim"),
        _ => e.to_string(),
    }
}

/// Why a verified identity may not sign in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the identity provider did not give an e-mail address; make sure the \"email\" scope is allowed for berth")]
    NoEmail,
    #[error("the identity provider has not verified {0}; verify the address there first")]
    Unverified(String),
    #[error("{email} is not in a domain this berth admits ({allowed}); ask an administrator")]
    Domain { email: String, allowed: String },
    #[error("the identity provider's e-mail address for you is not one berth accepts (it {0}); ask an administrator")]
    Odd(super::email::EmailError),
}

/// Decides from the provider's claims whether the person may sign in, and
/// with which address (lower-cased): it must be present, a plain address
/// ([`super::email::check`]: it reaches apps in a header), verified, and,
/// when `allowed_domains` is not empty, in one of them (exact domain,
/// case-insensitive; subdomains are not implied).
pub fn admit(
    email: Option<&str>,
    verified: Option<bool>,
    allowed_domains: &[String],
) -> Result<String, Refusal> {
    let email = email
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or(Refusal::NoEmail)?
        .to_ascii_lowercase();
    super::email::check(&email).map_err(Refusal::Odd)?;
    if verified != Some(true) {
        return Err(Refusal::Unverified(email));
    }
    if !allowed_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if !allowed_domains
            .iter()
            .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
        {
            return Err(Refusal::Domain {
                email,
                allowed: allowed_domains.join(", "),
            });
        }
    }
    Ok(email)
}

/// A user name for a new user signing in as `email`: its local part made
/// into a valid name part (`[a-z0-9-]`, no `--`, at most `max_len`), with
/// `-2`, `-3`, ... appended while `taken` says the name exists.
pub fn username_for(email: &str, max_len: usize, taken: impl Fn(&str) -> bool) -> String {
    username_from(email.split('@').next().unwrap_or(""), max_len, taken)
}

/// [`username_for`] from a wanted name (such as a GitHub login) rather
/// than an address: made valid the same way, suffixed while taken.
pub fn username_from(wanted: &str, max_len: usize, taken: impl Fn(&str) -> bool) -> String {
    let mut base = String::new();
    for c in wanted.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (base.is_empty() || base.ends_with('-'))) {
            base.push(c);
        }
    }
    let max_len = max_len.max(8);
    base.truncate(max_len - 4);
    let mut base = base.trim_end_matches('-').to_owned();
    if base.is_empty() || crate::host::is_port_like(&base) {
        base.insert_str(0, "user-");
        base = base.trim_end_matches('-').to_owned();
    }
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken(n))
        .expect("some suffix is free")
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_claim_reads_a_list_or_one_name_and_nothing_else() {
        let claims = |extra: serde_json::Value| -> super::IdClaims {
            let mut v = serde_json::json!({"sub": "s", "aud": "berth"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let c = claims(
            serde_json::json!({"groups": ["eng", 7, "Platform Team", null], "roles": "ops"}),
        );
        assert_eq!(c.groups("groups"), ["eng", "Platform Team"]);
        assert_eq!(c.groups("roles"), ["ops"]);
        assert!(c.groups("missing").is_empty());
        let c = claims(serde_json::json!({"groups": {"eng": true}}));
        assert!(c.groups("groups").is_empty(), "an object names no groups");
        // The claims berth reads itself are not groups.
        assert!(c.groups("sub").is_empty());
    }

    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    fn meta() -> Metadata {
        serde_json::from_value(json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "userinfo_endpoint": "https://idp.example.com/me",
            "code_challenge_methods_supported": ["plain", "S256"]
        }))
        .unwrap()
    }

    #[test]
    fn metadata_must_name_the_configured_issuer_and_use_https() {
        let m = meta();
        assert_eq!(m.check("https://idp.example.com"), Ok(()));
        assert!(m.check("https://idp.example.com/").is_err());
        assert!(m.check("https://evil.example.com").is_err());
        let mut plain = m.clone();
        plain.token_endpoint = "http://idp.example.com/token".into();
        let err = plain.check("https://idp.example.com").unwrap_err();
        assert!(err.to_string().contains("token_endpoint"), "{err}");
        let mut no_s256 = m.clone();
        no_s256.code_challenge_methods_supported = vec!["plain".into()];
        assert!(no_s256.check("https://idp.example.com").is_err());
        assert_eq!(m.client_auth(), ClientAuth::Basic);
        let mut post = m;
        post.token_endpoint_auth_methods_supported = vec!["client_secret_post".into()];
        assert_eq!(post.client_auth(), ClientAuth::Post);
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn flows_derive_secrets_only_the_key_holder_can() {
        let k = CookieKey::new([7; 32]);
        let f = Flow::start(&k);
        assert_eq!(f.state.len(), 32);
        assert_eq!(f.verifier.len(), 43);
        assert_eq!(Flow::resume(&k, &f.state), f);
        assert_ne!(Flow::resume(&CookieKey::new([8; 32]), &f.state), f);
        assert_ne!(Flow::start(&k).state, f.state);
        assert_ne!(f.nonce, f.verifier);
        let url = authorization_url(&meta(), "berth", "https://b/cb", "openid email", &f);
        assert!(url.starts_with("https://idp.example.com/auth?response_type=code&client_id=berth&redirect_uri=https%3A%2F%2Fb%2Fcb&scope=openid+email&state="));
        assert!(url.contains(&format!("code_challenge={}", f.challenge())));
        assert!(url.ends_with("code_challenge_method=S256"));
        assert!(!url.contains(&f.verifier));
    }

    /// An ES256 key pair as (signing key, the JWK set that publishes it).
    fn es256(kid: &str) -> (EncodingKey, JwkSet) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        let set: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        }]}))
        .unwrap();
        (EncodingKey::from_ec_der(&kp.serialize_der()), set)
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn token(key: &EncodingKey, kid: &str, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims, key).unwrap()
    }

    fn good() -> serde_json::Value {
        json!({
            "iss": "https://idp.example.com", "aud": "berth", "sub": "u1",
            "exp": now() + 300, "iat": now(), "nonce": "n-1",
            "email": "alice@example.com", "email_verified": true
        })
    }

    const EXPECTED: Expected<'static> = Expected {
        issuer: "https://idp.example.com",
        client_id: "berth",
        nonce: "n-1",
    };

    fn with(mut v: serde_json::Value, k: &str, x: serde_json::Value) -> serde_json::Value {
        v[k] = x;
        v
    }

    #[test]
    fn id_tokens_are_checked_claim_by_claim() {
        let (key, set) = es256("k1");
        let c = verify_id_token(&token(&key, "k1", good()), &set, &EXPECTED).unwrap();
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.email_verified, Some(true));

        let refused = |claims: serde_json::Value, why: &str| {
            let err = verify_id_token(&token(&key, "k1", claims), &set, &EXPECTED).unwrap_err();
            assert!(err.to_string().contains(why), "{err} should say {why}");
        };
        refused(with(good(), "nonce", json!("n-2")), "nonce");
        refused(with(good(), "nonce", serde_json::Value::Null), "nonce");
        refused(with(good(), "iss", json!("https://evil")), "issuer");
        refused(with(good(), "aud", json!("other-client")), "another client");
        refused(with(good(), "exp", json!(now() - 3600)), "expired");
        refused(with(good(), "nbf", json!(now() + 3600)), "not valid yet");
        refused(with(good(), "aud", json!(["berth", "other"])), "azp");
        refused(with(good(), "azp", json!("other")), "issued to");
        let ok = with(
            with(good(), "aud", json!(["berth", "other"])),
            "azp",
            json!("berth"),
        );
        assert!(verify_id_token(&token(&key, "k1", ok), &set, &EXPECTED).is_ok());
        let mut no_exp = good();
        no_exp.as_object_mut().unwrap().remove("exp");
        refused(no_exp, "exp");
    }

    #[test]
    fn id_tokens_signed_by_another_key_or_alg_are_refused() {
        let (key, set) = es256("k1");
        let (other, _) = es256("k1");
        let forged = token(&other, "k1", good());
        let err = verify_id_token(&forged, &set, &EXPECTED).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        // An unknown kid: the caller refetches the set.
        let err = verify_id_token(&token(&key, "k9", good()), &set, &EXPECTED).unwrap_err();
        assert!(err.to_string().contains("no key"), "{err}");
        // HS256 signed with some secret: refused before any key is tried.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good(),
            &EncodingKey::from_secret(b"client-secret"),
        )
        .unwrap();
        let err = verify_id_token(&hs, &set, &EXPECTED).unwrap_err();
        assert!(err.to_string().contains("HS256"), "{err}");
        // alg "none", hand-made.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(good().to_string())
        );
        assert!(verify_id_token(&none, &set, &EXPECTED).is_err());
        for garbage in ["", "a.b.c", "....", "eyJ.eyJ.x"] {
            assert!(
                verify_id_token(garbage, &set, &EXPECTED).is_err(),
                "{garbage}"
            );
        }
    }

    #[test]
    fn only_verified_addresses_in_allowed_domains_are_admitted() {
        let none: &[String] = &[];
        let example = &["example.com".to_owned(), "@corp.example".to_owned()];
        assert_eq!(
            admit(Some("Alice@Example.COM"), Some(true), none),
            Ok("alice@example.com".into())
        );
        assert_eq!(admit(None, Some(true), none), Err(Refusal::NoEmail));
        assert_eq!(admit(Some(" "), Some(true), none), Err(Refusal::NoEmail));
        assert!(matches!(
            admit(Some("a@example.com"), Some(false), none),
            Err(Refusal::Unverified(_))
        ));
        assert!(matches!(
            admit(Some("a@example.com"), None, none),
            Err(Refusal::Unverified(_))
        ));
        assert!(admit(Some("a@example.com"), Some(true), example).is_ok());
        assert!(admit(Some("a@corp.example"), Some(true), example).is_ok());
        for outside in [
            "a@other.org",
            "a@sub.example.com",
            "a@example.com.evil.org",
            "a@evilexample.com",
            "example.com@evil.org",
        ] {
            assert!(
                matches!(
                    admit(Some(outside), Some(true), example),
                    Err(Refusal::Domain { .. })
                ),
                "{outside}"
            );
        }
    }

    #[test]
    fn odd_addresses_are_refused_before_anything_else() {
        let none: &[String] = &[];
        for odd in [
            "no-at-sign",
            "<script>@x.y",
            "\u{202E}moc.elpmaxe@ecila",
            "a b@example.com",
        ] {
            let r = admit(Some(odd), Some(false), none);
            assert!(matches!(r, Err(Refusal::Odd(_))), "{odd:?}: {r:?}");
            // The refusal does not repeat the address itself.
            let text = r.unwrap_err().to_string();
            assert!(!text.contains(odd.trim()), "{text}");
        }
    }

    #[test]
    fn groups_come_from_the_id_token_and_from_userinfo_only_when_it_lacks_the_claim() {
        let id = |extra: serde_json::Value| -> IdClaims {
            let mut v = json!({"sub": "alice", "aud": "berth"});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::from_value(v).unwrap()
        };
        let info: UserInfo =
            serde_json::from_value(json!({"sub": "alice", "groups": ["from-userinfo"]})).unwrap();
        // The ID token's claim wins, even an empty one (the provider says
        // "no groups"): userinfo does not add to it.
        let with = id(json!({"groups": ["eng"]}));
        assert_eq!(with.groups_or_userinfo("groups", Some(&info)), ["eng"]);
        let empty = id(json!({"groups": []}));
        assert!(empty.groups_or_userinfo("groups", Some(&info)).is_empty());
        // Without the claim in the ID token, userinfo's counts.
        let without = id(json!({}));
        assert_eq!(
            without.groups_or_userinfo("groups", Some(&info)),
            ["from-userinfo"]
        );
        assert!(without.groups_or_userinfo("groups", None).is_empty());
        // Another claim's name finds nothing in either.
        assert!(with.groups_or_userinfo("roles", Some(&info)).is_empty());
    }

    #[test]
    fn email_verified_may_be_a_string() {
        let c: UserInfo =
            serde_json::from_value(json!({"sub": "x", "email_verified": "true"})).unwrap();
        assert_eq!(c.email_verified, Some(true));
        let c: UserInfo =
            serde_json::from_value(json!({"sub": "x", "email_verified": "yes"})).unwrap();
        assert_eq!(c.email_verified, None);
    }

    #[test]
    fn user_names_come_from_the_local_part_and_stay_valid() {
        let free = |_: &str| false;
        assert_eq!(username_for("alice@example.com", 40, free), "alice");
        assert_eq!(username_for("A.B_c+tag@x", 40, free), "a-b-c-tag");
        assert_eq!(username_for("--x--@x", 40, free), "x");
        assert_eq!(username_for("...@x", 40, free), "user");
        assert_eq!(username_for("3000@x", 40, free), "user-3000");
        assert_eq!(username_for("é@x", 40, free), "user");
        let taken = |n: &str| n == "alice" || n == "alice-2";
        assert_eq!(username_for("alice@x", 40, taken), "alice-3");
        assert_eq!(username_from("Octo-Cat", 40, free), "octo-cat");
        assert_eq!(username_from("alice", 40, taken), "alice-3");
        assert_eq!(username_from("8080", 40, free), "user-8080");
        let long = "a".repeat(100) + "@x";
        let name = username_for(&long, 20, |n| n.len() == 16);
        assert_eq!(name.len(), 18);
        for email in ["alice@x", "A.B_c+tag@x", "--x--@x", "3000@x", &long] {
            let n = username_for(email, 20, taken);
            assert!(crate::host::validate_name(&n).is_ok(), "{n}");
            assert!(!crate::host::is_port_like(&n), "{n}");
        }
    }
}
