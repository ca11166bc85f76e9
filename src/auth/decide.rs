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

/// What the decision needs to know about an existing target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
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

/// Decides whether `visitor` may reach `target` (`None` when the host names
/// nothing that exists).
pub fn authorize(visitor: Option<&Visitor>, target: Option<&Target<'_>>) -> Decision {
    let Some(target) = target else {
        return match visitor {
            None => Decision::Unauthenticated,
            Some(_) => Decision::NotFound,
        };
    };
    if target.level == ShareLevel::Public {
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
        let kinds: [(&str, Option<&Visitor>); 6] = [
            ("anonymous", None),
            ("owner", Some(&owner)),
            ("same org", Some(&colleague)),
            ("other org", Some(&outsider)),
            ("no org", Some(&orgless)),
            ("admin", Some(&admin)),
        ];
        //                     anon             owner  same-org  other-org  no-org    admin
        let table: [(ShareLevel, [Decision; 6]); 4] = [
            (
                Owner,
                [Unauthenticated, Allow, NotFound, NotFound, NotFound, Allow],
            ),
            (
                Organization,
                [Unauthenticated, Allow, Allow, NotFound, NotFound, Allow],
            ),
            (
                Authenticated,
                [Unauthenticated, Allow, Allow, Allow, Allow, Allow],
            ),
            (Public, [Allow, Allow, Allow, Allow, Allow, Allow]),
        ];
        for (level, row) in table {
            let target = Target {
                owner_id: 1,
                owner_org: Some("acme"),
                level,
            };
            for ((kind, v), want) in kinds.iter().zip(row) {
                assert_eq!(authorize(*v, Some(&target)), want, "{level:?} x {kind}");
            }
        }
    }

    #[test]
    fn an_owner_without_organization_shares_with_nobody_by_organization() {
        let orgless = visitor(4, false, None);
        let target = Target {
            owner_id: 1,
            owner_org: None,
            level: Organization,
        };
        // Two users without an organization are not in the same one.
        assert_eq!(authorize(Some(&orgless), Some(&target)), NotFound);
    }

    #[test]
    fn a_missing_target_and_a_private_one_look_the_same() {
        let private = Target {
            owner_id: 1,
            owner_org: None,
            level: Owner,
        };
        for v in [
            None,
            Some(visitor(9, false, None)),
            Some(visitor(9, true, None)),
        ] {
            let v = v.as_ref();
            let missing = authorize(v, None);
            if v.is_some_and(|v| v.admin) {
                assert_eq!(
                    missing, NotFound,
                    "admins learn nothing of what does not exist"
                );
            } else {
                assert_eq!(missing, authorize(v, Some(&private)));
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
