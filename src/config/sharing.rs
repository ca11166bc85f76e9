//! `[sharing]`: what owners may share, and for how long.

use crate::auth::ShareLevel;

/// Limits on sharing, from `[sharing]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharingPolicy {
    /// The widest share level owners may choose (`sharing.max_level`).
    pub max_level: ShareLevel,
    /// The longest a share link may live (`sharing.max_link_ttl_secs`).
    pub max_link_ttl_secs: i64,
}

impl Default for SharingPolicy {
    fn default() -> Self {
        SharingPolicy {
            max_level: ShareLevel::Public,
            max_link_ttl_secs: DEFAULT_MAX_LINK_TTL_SECS,
        }
    }
}

/// Share links live 24 h unless the request says otherwise.
pub const DEFAULT_LINK_TTL_SECS: i64 = 24 * 3600;
/// ...and at most 30 days unless `sharing.max_link_ttl_secs` says otherwise.
pub const DEFAULT_MAX_LINK_TTL_SECS: i64 = 30 * 24 * 3600;
