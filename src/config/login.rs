//! The sign-in limits of `[limits]`: how often and how many password
//! sign-ins control takes (`POST /api/v1/login`, `POST /signin`).

use super::schema::LimitsSection;
use super::{defaults, ConfigError, Problems};
use std::num::NonZeroU32;

/// Limits on password sign-in (`POST /api/v1/login`, `POST /signin`),
/// resolved from `[limits]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// Attempts per minute, per source address and per user name.
    pub per_minute: NonZeroU32,
    /// Attempts allowed at once before the rate applies.
    pub burst: NonZeroU32,
    /// Password hashes computed at once.
    pub max_hashes: usize,
    /// Sign-ins that may wait for a hash slot.
    pub queue: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            per_minute: NonZeroU32::new(defaults::LOGIN_PER_MINUTE).expect("non-zero"),
            burst: NonZeroU32::new(defaults::LOGIN_BURST).expect("non-zero"),
            max_hashes: default_max_hashes(),
            queue: defaults::PASSWORD_HASH_QUEUE,
        }
    }
}

/// One argon2 verification per CPU core: more at once only adds memory
/// (19 MiB each) and latency, not throughput.
fn default_max_hashes() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl LoginLimits {
    /// Checks the sign-in keys of `[limits]`.
    pub(super) fn resolve(l: &LimitsSection) -> Result<LoginLimits, ConfigError> {
        let d = LoginLimits::default();
        let mut p = Problems::default();
        let count = |key: &'static str, v: Option<u32>, default: NonZeroU32| match v {
            None => Ok(default),
            Some(n) if n <= 100_000 => NonZeroU32::new(n).ok_or_else(|| ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            }),
            Some(n) => Err(ConfigError::Invalid {
                key,
                message: format!("{n} is outside 1..=100000"),
            }),
        };
        let per_minute = p.take(count(
            "limits.login_per_minute",
            l.login_per_minute,
            d.per_minute,
        ));
        let burst = p.take(count("limits.login_burst", l.login_burst, d.burst));
        let max_hashes = p.take(match l.max_password_hashes {
            None => Ok(d.max_hashes),
            Some(n) if (1..=1024).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::Invalid {
                key: "limits.max_password_hashes",
                message: format!("{n} is outside 1..=1024 (each hash takes 19 MiB)"),
            }),
        });
        let queue = p.take(match l.password_hash_queue {
            None => Ok(d.queue),
            Some(n) if n <= 100_000 => Ok(n),
            Some(n) => Err(ConfigError::Invalid {
                key: "limits.password_hash_queue",
                message: format!("{n} is outside 0..=100000"),
            }),
        });
        let limits = (|| {
            Some(LoginLimits {
                per_minute: per_minute?,
                burst: burst?,
                max_hashes: max_hashes?,
                queue: queue?,
            })
        })();
        p.finish(limits)
    }
}
