//! Signing berth's webhook calls (`[activity]`, `[wake]`): each body goes
//! out with `Berth-Signature: t=UNIX,v1=HEX`, where HEX is the HMAC-SHA256,
//! keyed with the webhook's secret, of `"{t}.{body}"`. A receiver recomputes
//! it and refuses stale timestamps, so a captured call cannot be replayed
//! later. Pure functions, so receivers in tests use the same code.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "berth-signature";
/// The header naming the event (`workspace.idle`, `workspace.wake`).
pub const EVENT_HEADER: &str = "berth-event";

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `Berth-Signature` value for `body` sent at `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(mac(secret, t, body).finalize().into_bytes())
    )
}

/// True when `header` is a valid signature of `body` under `secret`, made
/// within `tolerance` seconds of `now` (either way).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance {
        return false;
    }
    mac(secret, t, body).verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_key_body_and_time() {
        let key = b"0123456789abcdef";
        let body = br#"{"user":"alice"}"#;
        let sig = sign(key, 1_000, body);
        assert!(sig.starts_with("t=1000,v1="));
        assert!(verify(key, &sig, body, 1_000, 300));
        assert!(verify(key, &sig, body, 1_299, 300));
        let cases: &[(&[u8], &str, &[u8], i64)] = &[
            (b"another key 1234", &sig, body, 1_000),
            (key, &sig, br#"{"user":"mallory"}"#, 1_000),
            (key, &sig, body, 1_301),
            (key, &sig, body, 699),
            (key, &sig.replace("t=1000", "t=1001"), body, 1_000),
            (key, "t=1000", body, 1_000),
            (key, "v1=00", body, 1_000),
            (key, "", body, 1_000),
            (key, "t=1000,v1=zz", body, 1_000),
            (key, &sig[..sig.len() - 2], body, 1_000),
        ];
        for (i, (k, h, b, now)) in cases.iter().enumerate() {
            assert!(!verify(k, h, b, *now, 300), "case {i}: {h}");
        }
    }
}
