//! `[jwt]`: the signed identity (`Berth-Jwt-Assertion`) the edge hands an
//! app for a visitor known to berth, and how often its signing key turns.

use super::schema::JwtSection;
use super::{ConfigError, Problems};

/// How assertions are made, from `[jwt]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwtPolicy {
    /// Whether apps get `Berth-Jwt-Assertion` at all (`jwt.enabled`).
    pub enabled: bool,
    /// How long an assertion is valid, in seconds (`jwt.ttl_secs`).
    pub ttl_secs: i64,
    /// A new signing key this often, in seconds (`jwt.rotation_secs`).
    pub rotation_secs: i64,
    /// How long a replaced key stays published, in seconds
    /// (`jwt.grace_secs`): at least `ttl_secs`, so that every assertion it
    /// signed still verifies until it expires.
    pub grace_secs: i64,
}

/// Assertions live 5 minutes.
pub const DEFAULT_JWT_TTL_SECS: i64 = 300;
/// A new key every 7 days.
pub const DEFAULT_JWT_ROTATION_SECS: i64 = 7 * 24 * 3600;
/// The replaced key stays published one day (apps cache JWK sets for hours).
pub const DEFAULT_JWT_GRACE_SECS: i64 = 24 * 3600;

impl Default for JwtPolicy {
    fn default() -> Self {
        JwtPolicy {
            enabled: true,
            ttl_secs: DEFAULT_JWT_TTL_SECS,
            rotation_secs: DEFAULT_JWT_ROTATION_SECS,
            grace_secs: DEFAULT_JWT_GRACE_SECS,
        }
    }
}

impl JwtPolicy {
    /// Checks `[jwt]`.
    pub(super) fn resolve(s: JwtSection) -> Result<JwtPolicy, ConfigError> {
        let mut p = Problems::default();
        let range = |key: &'static str, v: Option<i64>, default: i64, lo: i64, hi: i64| match v {
            None => Ok(default),
            Some(n) if (lo..=hi).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::Invalid {
                key,
                message: format!("{n} is not between {lo} and {hi} seconds"),
            }),
        };
        let ttl = p.take(range(
            "jwt.ttl_secs",
            s.ttl_secs,
            DEFAULT_JWT_TTL_SECS,
            30,
            3600,
        ));
        let rotation = p.take(range(
            "jwt.rotation_secs",
            s.rotation_secs,
            DEFAULT_JWT_ROTATION_SECS,
            3600,
            365 * 24 * 3600,
        ));
        let grace = p.take(range(
            "jwt.grace_secs",
            s.grace_secs,
            DEFAULT_JWT_GRACE_SECS,
            30,
            30 * 24 * 3600,
        ));
        if let (Some(ttl), Some(grace)) = (ttl, grace) {
            if grace < ttl {
                p.note(ConfigError::Invalid {
                    key: "jwt.grace_secs",
                    message: format!(
                        "{grace} is shorter than jwt.ttl_secs ({ttl}): assertions signed with a replaced key would stop verifying before they expire; make it at least {ttl}"
                    ),
                });
            }
        }
        let policy = (|| {
            Some(JwtPolicy {
                enabled: s.enabled.unwrap_or(true),
                ttl_secs: ttl?,
                rotation_secs: rotation?,
                grace_secs: grace?,
            })
        })();
        p.finish(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        ttl: Option<i64>,
        rotation: Option<i64>,
        grace: Option<i64>,
    ) -> Result<JwtPolicy, ConfigError> {
        JwtPolicy::resolve(JwtSection {
            enabled: None,
            ttl_secs: ttl,
            rotation_secs: rotation,
            grace_secs: grace,
        })
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(resolve(None, None, None).unwrap(), JwtPolicy::default());
        assert!(resolve(Some(29), None, None).is_err());
        assert!(resolve(Some(3601), None, None).is_err());
        assert!(
            resolve(None, Some(60), None).is_err(),
            "rotation under an hour"
        );
        let e = resolve(Some(600), None, Some(300)).unwrap_err().to_string();
        assert!(
            e.contains("jwt.grace_secs") && e.contains("at least 600"),
            "{e}"
        );
        assert_eq!(
            resolve(Some(600), Some(3600), Some(600))
                .unwrap()
                .grace_secs,
            600
        );
    }
}
