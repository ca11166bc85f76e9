//! What a share link's visitor cookie (`__Host-berth_share`) says once the
//! link is over. The cookie outlives its link by [`AFTER_END_SECS`], so a
//! browser coming back after the link expired or was revoked is told so
//! (with a way to sign in) instead of being sent to sign in without a word.
//! Only a link the catalog holds as live grants anything: [`state`] is
//! `Live` for nothing else, whatever the cookie says.

/// How long the cookie outlives its link (7 days): long enough for a
/// visitor to come back and be told, bounded so that browsers forget it.
pub const AFTER_END_SECS: i64 = 7 * 86_400;

/// The cookie's own expiry (signed into it, and its `Max-Age`) for a link
/// that ends at `link_expires_at`.
pub fn cookie_expiry(link_expires_at: i64) -> i64 {
    link_expires_at.saturating_add(AFTER_END_SECS)
}

/// Where a redeemed link stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The catalog holds it, unexpired: it opens its port.
    Live,
    /// It ran out (the catalog says so, or has forgotten it and the cookie
    /// says it ended by now).
    Expired,
    /// Gone before its time: revoked, or its maker deleted.
    Revoked,
}

/// The state of the link in a cookie whose signature and host checked out
/// and which expires at `cookie_expires`, given the catalog's expiry of that
/// link (`None` when the catalog no longer has it), at `now`.
pub fn state(cookie_expires: i64, in_catalog: Option<i64>, now: i64) -> LinkState {
    match in_catalog {
        Some(expires_at) if now < expires_at => LinkState::Live,
        Some(_) => LinkState::Expired,
        // Cookies from before the grace period existed ended with their
        // link, and never verify past it.
        None if now >= cookie_expires.saturating_sub(AFTER_END_SECS) => LinkState::Expired,
        None => LinkState::Revoked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinkState::*;

    #[test]
    fn only_a_live_link_in_the_catalog_is_live() {
        const END: i64 = 1_000_000;
        let cookie = cookie_expiry(END);
        assert_eq!(cookie, END + 7 * 86_400);
        #[rustfmt::skip]
        let rows: &[(&str, i64, Option<i64>, i64, LinkState)] = &[
            // (what, cookie expires, catalog's expiry, now, state)
            ("live link", cookie, Some(END), END - 1, Live),
            ("its last second is over", cookie, Some(END), END, Expired),
            ("a day after, the cookie still verifies", cookie, Some(END), END + 86_400, Expired),
            ("expired and forgotten by the catalog", cookie, None, END + 1, Expired),
            ("forgotten at the very second it ended", cookie, None, END, Expired),
            ("gone before its end: revoked", cookie, None, END - 1, Revoked),
            ("revoked long before", cookie, None, END - 86_400, Revoked),
            // A cookie whose signed expiry claims a longer life cannot
            // lengthen the link: the catalog's expiry decides.
            ("cookie claims more, catalog says ended", cookie + 86_400 * 30, Some(END), END + 5, Expired),
            // A cookie set before the grace existed (cookie expiry == link
            // expiry): still live while the catalog says so.
            ("old cookie, live link", END, Some(END), END - 10, Live),
            ("old cookie, link gone", END, None, END - 10, Expired),
        ];
        for (what, cookie_expires, catalog, now, want) in rows {
            assert_eq!(state(*cookie_expires, *catalog, *now), *want, "{what}");
        }
        // What reaches the decision: a grant only for a live link, so an
        // anonymous visitor with a kept cookie is refused at every level
        // but public, as if they had none.
        use crate::auth::{authorize, Decision, LinkGrant, ShareLevel, Target};
        for (what, cookie_expires, catalog, now, _) in rows {
            let grant = (state(*cookie_expires, *catalog, *now) == Live).then_some(LinkGrant {
                agent_id: 10,
                port: 3000,
            });
            for level in [
                ShareLevel::Owner,
                ShareLevel::Organization,
                ShareLevel::Authenticated,
            ] {
                let target = Target {
                    agent_id: 10,
                    port: 3000,
                    owner_id: 1,
                    owner_org: Some("acme"),
                    level,
                    users: &[],
                    groups: &[],
                };
                let want = if grant.is_some() {
                    Decision::Allow
                } else {
                    Decision::Unauthenticated
                };
                assert_eq!(
                    authorize(None, grant.as_ref(), Some(&target)),
                    want,
                    "{what} at {level:?}"
                );
            }
        }
        // No overflow at the ends of time.
        assert_eq!(cookie_expiry(i64::MAX), i64::MAX);
        assert_eq!(state(i64::MIN, None, 0), Expired);
    }
}
