//! The access decision for one request to one app port: a pure function of
//! who is asking and how the port is shared (SPEC section 3).
//!
//! A target that does not exist and one the visitor may not see give the same
//! answer, so nobody learns from berth that a private workspace exists.

use serde::{Deserialize, Serialize};

/// Who may reach a port. Unshared ports are [`ShareLevel::Owner`].
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ShareLevel {
    /// The workspace owner and site admins.
    #[default]
    Owner,
    /// Any member of the owner's organization.
    Organization,
    /// Any signed-in user of this deployment.
    Authenticated,
    /// Anyone, without signing in.
    Public,
}

impl ShareLevel {
    /// Every level, from the narrowest to the widest.
    pub const ALL: [ShareLevel; 4] = [
        ShareLevel::Owner,
        ShareLevel::Organization,
        ShareLevel::Authenticated,
        ShareLevel::Public,
    ];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ShareLevel::Owner => "owner",
            ShareLevel::Organization => "organization",
            ShareLevel::Authenticated => "authenticated",
            ShareLevel::Public => "public",
        }
    }

    /// Parses the stored and wire name.
    pub fn parse(s: &str) -> Option<ShareLevel> {
        ShareLevel::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Who is asking, as established from a verified credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visitor {
    /// The user's id.
    pub user_id: i64,
    /// The user's name, sent to the app as `X-Berth-User`.
    pub username: String,
    /// The user's e-mail, sent to the app as `X-Berth-Email`.
    pub email: String,
    /// Site admins pass everywhere.
    pub admin: bool,
    /// The user's organization, for `organization` shares.
    pub organization: Option<String>,
}

/// A redeemed share link: access to one port of one agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkGrant {
    /// The agent the link is for.
    pub agent_id: i64,
    /// The port the link is for.
    pub port: u16,
}

/// What the decision needs to know about an existing target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The agent serving the port.
    pub agent_id: i64,
    /// The port.
    pub port: u16,
    /// The workspace owner's user id.
    pub owner_id: i64,
    /// The owner's organization.
    pub owner_org: Option<&'a str>,
    /// How the port is shared.
    pub level: ShareLevel,
}

/// The outcome of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request.
    Allow,
    /// No (valid) credentials: 401 for programs, sign-in for browsers.
    Unauthenticated,
    /// Signed in but not allowed, or the target does not exist: 404.
    NotFound,
}

/// Decides whether `visitor` (a signed-in user) or `link` (a redeemed share
/// link) may reach `target` (`None` when the host names nothing that exists).
/// A link opens exactly the port it was made for, whatever its share level.
pub fn authorize(
    visitor: Option<&Visitor>,
    link: Option<&LinkGrant>,
    target: Option<&Target<'_>>,
) -> Decision {
    let Some(target) = target else {
        return match visitor {
            None => Decision::Unauthenticated,
            Some(_) => Decision::NotFound,
        };
    };
    let link_fits = link.is_some_and(|l| l.agent_id == target.agent_id && l.port == target.port);
    if target.level == ShareLevel::Public || link_fits {
        return Decision::Allow;
    }
    let Some(v) = visitor else {
        return Decision::Unauthenticated;
    };
    let allowed = v.admin
        || v.user_id == target.owner_id
        || match target.level {
            ShareLevel::Owner => false,
            ShareLevel::Organization => {
                matches!((v.organization.as_deref(), target.owner_org), (Some(a), Some(b)) if a == b)
            }
            ShareLevel::Authenticated | ShareLevel::Public => true,
        };
    if allowed {
        Decision::Allow
    } else {
        Decision::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use ShareLevel::*;

    fn visitor(id: i64, admin: bool, org: Option<&str>) -> Visitor {
        Visitor {
            user_id: id,
            username: format!("u{id}"),
            email: format!("u{id}@example.com"),
            admin,
            organization: org.map(Into::into),
        }
    }

    /// The full table: (level x visitor kind x ownership) -> outcome.
    #[test]
    fn full_table() {
        let owner = visitor(1, false, Some("acme"));
        let colleague = visitor(2, false, Some("acme"));
        let outsider = visitor(3, false, Some("globex"));
        let orgless = visitor(4, false, None);
        let admin = visitor(5, true, Some("globex"));
        let this_port = LinkGrant {
            agent_id: 10,
            port: 3000,
        };
        let other_port = LinkGrant {
            agent_id: 10,
            port: 3001,
        };
        let other_agent = LinkGrant {
            agent_id: 11,
            port: 3000,
        };
        let kinds: [(&str, Option<&Visitor>, Option<&LinkGrant>); 10] = [
            ("anonymous", None, None),
            ("owner", Some(&owner), None),
            ("same org", Some(&colleague), None),
            ("other org", Some(&outsider), None),
            ("no org", Some(&orgless), None),
            ("admin", Some(&admin), None),
            ("link to this port", None, Some(&this_port)),
            ("link to another port", None, Some(&other_port)),
            ("link to another agent", None, Some(&other_agent)),
            ("other org + link here", Some(&outsider), Some(&this_port)),
        ];
        const U: Decision = Unauthenticated;
        const N: Decision = NotFound;
        const A: Decision = Allow;
        #[rustfmt::skip]
        let table: [(ShareLevel, [Decision; 10]); 4] = [
            //              anon owner same other no-org admin link link-port link-agent other+link
            (Owner,         [U,   A,    N,   N,    N,     A,    A,   U,        U,         A]),
            (Organization,  [U,   A,    A,   N,    N,     A,    A,   U,        U,         A]),
            (Authenticated, [U,   A,    A,   A,    A,     A,    A,   U,        U,         A]),
            (Public,        [A,   A,    A,   A,    A,     A,    A,   A,        A,         A]),
        ];
        for (level, row) in table {
            let target = Target {
                agent_id: 10,
                port: 3000,
                owner_id: 1,
                owner_org: Some("acme"),
                level,
            };
            for ((kind, v, l), want) in kinds.iter().zip(row) {
                assert_eq!(authorize(*v, *l, Some(&target)), want, "{level:?} x {kind}");
            }
        }
    }

    #[test]
    fn an_owner_without_organization_shares_with_nobody_by_organization() {
        let orgless = visitor(4, false, None);
        let target = Target {
            agent_id: 10,
            port: 3000,
            owner_id: 1,
            owner_org: None,
            level: Organization,
        };
        // Two users without an organization are not in the same one.
        assert_eq!(authorize(Some(&orgless), None, Some(&target)), NotFound);
    }

    #[test]
    fn a_missing_target_and_a_private_one_look_the_same() {
        let private = Target {
            agent_id: 10,
            port: 3000,
            owner_id: 1,
            owner_org: None,
            level: Owner,
        };
        let stray = LinkGrant {
            agent_id: 99,
            port: 1,
        };
        let visitors = [
            None,
            Some(visitor(9, false, None)),
            Some(visitor(9, true, None)),
        ];
        for v in visitors.iter().map(Option::as_ref) {
            for link in [None, Some(&stray)] {
                let missing = authorize(v, link, None);
                if v.is_some_and(|v| v.admin) {
                    assert_eq!(
                        missing, NotFound,
                        "admins learn nothing of what does not exist"
                    );
                } else {
                    assert_eq!(missing, authorize(v, link, Some(&private)));
                }
            }
        }
    }

    #[test]
    fn level_names_round_trip_and_order_from_narrow_to_wide() {
        for l in ShareLevel::ALL {
            assert_eq!(ShareLevel::parse(l.as_str()), Some(l));
        }
        assert_eq!(ShareLevel::parse("everyone"), None);
        assert!(Owner < Organization && Organization < Authenticated && Authenticated < Public);
    }
}
