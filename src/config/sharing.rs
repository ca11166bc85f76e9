//! `[sharing]`: what owners may share, and for how long.

use super::schema::SharingSection;
use super::{ConfigError, Problems};
use crate::auth::ShareLevel;

/// Limits on sharing, from `[sharing]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharingPolicy {
    /// The widest share level owners may choose (`sharing.max_level`).
    pub max_level: ShareLevel,
    /// The longest a share link may live (`sharing.max_link_ttl_secs`).
    pub max_link_ttl_secs: i64,
    /// The longest a `public` or `authenticated` share may last
    /// (`sharing.max_share_ttl_secs`); `None`: as long as its owner likes.
    pub max_share_ttl_secs: Option<i64>,
    /// Requests a minute per source address to public shares and share
    /// links, and how many at once (`sharing.public_rate_limit`,
    /// `sharing.public_rate_burst`); `None`: no limit.
    pub public_rate: Option<PublicRate>,
}

/// `sharing.public_rate_limit` and its burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicRate {
    /// Requests a minute (1 to 1,000,000).
    pub per_minute: std::num::NonZeroU32,
    /// Requests at once (1 to 1,000,000).
    pub burst: std::num::NonZeroU32,
}

impl Default for SharingPolicy {
    fn default() -> Self {
        SharingPolicy {
            max_level: ShareLevel::Public,
            max_link_ttl_secs: DEFAULT_MAX_LINK_TTL_SECS,
            max_share_ttl_secs: None,
            public_rate: None,
        }
    }
}

impl SharingPolicy {
    /// The levels a port of an owner may be shared at: up to
    /// `sharing.max_level`, and `organization` only when the owner has one
    /// (without, it would let nobody but the owner in). The dashboard offers
    /// exactly these; `PUT .../share` refuses the others.
    pub fn levels_for(&self, owner_has_organization: bool) -> Vec<ShareLevel> {
        ShareLevel::ALL
            .into_iter()
            .filter(|l| *l <= self.max_level)
            .filter(|l| *l != ShareLevel::Organization || owner_has_organization)
            .collect()
    }

    /// Checks `[sharing]`.
    pub(super) fn resolve(s: SharingSection) -> Result<SharingPolicy, ConfigError> {
        let mut p = Problems::default();
        let max_level = p.take(match s.max_level.as_deref() {
            None => Ok(ShareLevel::Public),
            Some(l) => ShareLevel::parse(l).ok_or_else(|| ConfigError::Invalid {
                key: "sharing.max_level",
                message: format!(
                    "{l:?} is not one of \"owner\", \"organization\", \"authenticated\", \"public\""
                ),
            }),
        });
        let max_link_ttl_secs = p.take(match s.max_link_ttl_secs {
            None => Ok(DEFAULT_MAX_LINK_TTL_SECS),
            Some(n) if (1..=10 * 365 * 24 * 3600).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::Invalid {
                key: "sharing.max_link_ttl_secs",
                message: format!("{n} is not between 1 and 315360000 (ten years)"),
            }),
        });
        let max_share_ttl_secs = p.take(match s.max_share_ttl_secs {
            None => Ok(None),
            Some(n) if (1..=MAX_SHARE_TTL_SECS).contains(&n) => Ok(Some(n)),
            Some(n) => Err(ConfigError::Invalid {
                key: "sharing.max_share_ttl_secs",
                message: format!("{n} is not between 1 and {MAX_SHARE_TTL_SECS} (ten years)"),
            }),
        });
        let count = |key: &'static str, v: u32| {
            std::num::NonZeroU32::new(v)
                .filter(|n| n.get() <= 1_000_000)
                .ok_or_else(|| ConfigError::Invalid {
                    key,
                    message: format!(
                        "{v} is not between 1 and 1000000 (leave it out for no limit)"
                    ),
                })
        };
        let public_rate = p.take(match (s.public_rate_limit, s.public_rate_burst) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError::Invalid {
                key: "sharing.public_rate_burst",
                message: "is set without sharing.public_rate_limit: set the rate too".into(),
            }),
            (Some(rate), burst) => {
                count("sharing.public_rate_limit", rate).and_then(|per_minute| {
                    Ok(Some(PublicRate {
                        per_minute,
                        burst: match burst {
                            None => per_minute,
                            Some(b) => count("sharing.public_rate_burst", b)?,
                        },
                    }))
                })
            }
        });
        let policy = (|| {
            Some(SharingPolicy {
                max_level: max_level?,
                max_link_ttl_secs: max_link_ttl_secs?,
                max_share_ttl_secs: max_share_ttl_secs?,
                public_rate: public_rate?,
            })
        })();
        p.finish(policy)
    }
}

/// The longest `ttl_seconds` a share (or `sharing.max_share_ttl_secs`) may
/// give: ten years.
pub const MAX_SHARE_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

/// Share links live 24 h unless the request says otherwise.
pub const DEFAULT_LINK_TTL_SECS: i64 = 24 * 3600;
/// ...and at most 30 days unless `sharing.max_link_ttl_secs` says otherwise.
pub const DEFAULT_MAX_LINK_TTL_SECS: i64 = 30 * 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_levels_offered_follow_max_level_and_the_owners_organization() {
        use ShareLevel::*;
        let at = |max_level| SharingPolicy {
            max_level,
            ..Default::default()
        };
        for (max, org, want) in [
            (
                Public,
                true,
                vec![Owner, Organization, Authenticated, Public],
            ),
            (Public, false, vec![Owner, Authenticated, Public]),
            (
                Authenticated,
                true,
                vec![Owner, Organization, Authenticated],
            ),
            (Authenticated, false, vec![Owner, Authenticated]),
            (Organization, true, vec![Owner, Organization]),
            (Organization, false, vec![Owner]),
            (Owner, true, vec![Owner]),
            (Owner, false, vec![Owner]),
        ] {
            let got = at(max).levels_for(org);
            assert_eq!(got, want, "max {max:?}, organization {org}");
            // Never above the policy, and owner is always allowed.
            assert!(got.iter().all(|l| *l <= max) && got.contains(&Owner));
        }
    }

    #[test]
    fn the_public_rate_is_off_by_default_and_its_burst_follows_it() {
        let p = |rate, burst| {
            SharingPolicy::resolve(SharingSection {
                public_rate_limit: rate,
                public_rate_burst: burst,
                ..Default::default()
            })
        };
        assert_eq!(p(None, None).unwrap().public_rate, None);
        let r = p(Some(600), None).unwrap().public_rate.unwrap();
        assert_eq!((r.per_minute.get(), r.burst.get()), (600, 600));
        let r = p(Some(600), Some(20)).unwrap().public_rate.unwrap();
        assert_eq!(r.burst.get(), 20);
        assert!(p(Some(2_000_000), None).is_err());
    }
}
