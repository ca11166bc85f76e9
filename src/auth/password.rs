//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes).

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

/// Hashes a password into a PHC string for storage.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default params cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC string; false for a malformed hash.
pub fn verify(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A password hash to verify against when the user does not exist, so that a
/// sign-in for an unknown name costs as much as one with a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash("berth-dummy-password"));

/// Checks a password against a user's stored hash, or against a dummy hash
/// when there is no such user: either way one argon2 verification, so the
/// time taken does not tell whether the user exists.
pub fn verify_or_dummy(password: &str, stored: Option<&str>) -> bool {
    let ok = verify(password, stored.unwrap_or(&DUMMY_HASH));
    ok && stored.is_some()
}

/// Computes the dummy hash now (it takes as long as a sign-in), so the first
/// sign-in for an unknown user is not slower than the others.
pub fn warm_up() {
    std::sync::LazyLock::force(&DUMMY_HASH);
}

/// A random password for bootstrap accounts: 20 base62 characters (~119 bits).
pub fn generate() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifies_only_the_right_password() {
        let h = super::hash("correct horse");
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("correct horse ", &h));
        assert!(!super::verify("correct horse", "not-a-phc-string"));
        assert_ne!(super::hash("x"), super::hash("x"), "salted");
    }

    #[test]
    fn no_user_never_verifies_even_with_the_dummy_password() {
        let h = super::hash("correct horse");
        assert!(super::verify_or_dummy("correct horse", Some(&h)));
        assert!(!super::verify_or_dummy("wrong", Some(&h)));
        assert!(!super::verify_or_dummy("berth-dummy-password", None));
        assert!(!super::verify_or_dummy("", None));
    }
}
