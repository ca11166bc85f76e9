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
    /// The berth groups the user is in, by id (a share naming one lets its
    /// members in; ids, so a renamed group keeps its shares and a new group
    /// with an old name gets none of them).
    pub group_ids: Vec<i64>,
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
    /// How the port is shared: the floor, whoever else is named.
    pub level: ShareLevel,
    /// Users the share names, by id: they pass whatever the level.
    pub users: &'a [i64],
    /// Groups the share names, by id: their members pass whatever the level.
    pub groups: &'a [i64],
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
/// A link opens exactly the port it was made for, whatever its share level;
/// a user the share names, or a member of a group it names, passes whatever
/// the level and whatever their organization (the owner chose them, as they
/// choose who gets a link). A share that has ended reaches here as `owner`
/// with nobody named ([`crate::catalog::Share::audience`]).
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
        || target.users.contains(&v.user_id)
        || target.groups.iter().any(|g| v.group_ids.contains(g))
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
            group_ids: vec![],
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
                users: &[],
                groups: &[],
            };
            for ((kind, v, l), want) in kinds.iter().zip(row) {
                assert_eq!(authorize(*v, *l, Some(&target)), want, "{level:?} x {kind}");
            }
        }
    }

    /// Named users and groups, against what tries to slip past them: the
    /// same name on a new account (a deleted user), a member taken out of a
    /// group, a new group carrying a renamed group's old name, users in
    /// another organization, and nobody signed in.
    #[test]
    fn named_users_and_groups_table() {
        const ENG: i64 = 7; // the group the share names (once called "eng")
        const NEW_ENG: i64 = 8; // a new group since given the old name "eng"
        let member_of = |id: i64, org: Option<&str>, groups: &[i64]| Visitor {
            group_ids: groups.to_vec(),
            ..visitor(id, false, org)
        };
        let bob = member_of(2, Some("acme"), &[]); // named
        let bob_again = Visitor {
            username: "u2".into(), // same name as bob, a new account
            ..member_of(12, Some("acme"), &[])
        };
        let carol = member_of(3, Some("globex"), &[ENG]); // in the group, other org
        let carol_removed = member_of(3, Some("globex"), &[]);
        let dave = member_of(4, Some("globex"), &[NEW_ENG]); // new group, old name
        let erin = member_of(5, Some("acme"), &[]); // same org, not named
        let frank = member_of(6, Some("globex"), &[]); // other org, named
        let admin = visitor(9, true, None);
        let kinds: [(&str, Option<&Visitor>); 9] = [
            ("anonymous", None),
            ("named user", Some(&bob)),
            ("deleted user's name, new account", Some(&bob_again)),
            ("group member, other org", Some(&carol)),
            ("removed from the group", Some(&carol_removed)),
            ("in a new group with the old name", Some(&dave)),
            ("same org, not named", Some(&erin)),
            ("named, other org", Some(&frank)),
            ("admin", Some(&admin)),
        ];
        const U: Decision = Unauthenticated;
        const N: Decision = NotFound;
        const A: Decision = Allow;
        let named_users = [2, 6];
        let named_groups = [ENG];
        type Row<'a> = (ShareLevel, &'a [i64], &'a [i64], [Decision; 9]);
        #[rustfmt::skip]
        let table: [Row<'_>; 6] = [
            //                                       anon named new  grp  out  old-name same-org other-org admin
            (Owner,         &named_users, &named_groups, [U, A,    N,   A,   N,   N,       N,       A,        A]),
            (Organization,  &named_users, &named_groups, [U, A,    A,   A,   N,   N,       A,       A,        A]),
            (Authenticated, &named_users, &named_groups, [U, A,    A,   A,   A,   A,       A,       A,        A]),
            (Public,        &named_users, &named_groups, [A, A,    A,   A,   A,   A,       A,       A,        A]),
            // Nobody named (the share ended, or names were dropped).
            (Owner,         &[],          &[],           [U, N,    N,   N,   N,   N,       N,       N,        A]),
            (Organization,  &[],          &[ENG],        [U, A,    A,   A,   N,   N,       A,       N,        A]),
        ];
        for (level, users, groups, row) in table {
            let target = Target {
                agent_id: 10,
                port: 3000,
                owner_id: 1,
                owner_org: Some("acme"),
                level,
                users,
                groups,
            };
            for ((kind, v), want) in kinds.iter().zip(row) {
                assert_eq!(
                    authorize(*v, None, Some(&target)),
                    want,
                    "{level:?} users {users:?} groups {groups:?} x {kind}"
                );
            }
        }
        // A link to another port does not help a visitor nobody named, and
        // naming people never opens a target that does not exist.
        let owner_only = Target {
            agent_id: 10,
            port: 3000,
            owner_id: 1,
            owner_org: Some("acme"),
            level: Owner,
            users: &named_users,
            groups: &named_groups,
        };
        let elsewhere = LinkGrant {
            agent_id: 10,
            port: 3001,
        };
        assert_eq!(
            authorize(Some(&erin), Some(&elsewhere), Some(&owner_only)),
            NotFound
        );
        assert_eq!(authorize(Some(&bob), None, None), NotFound);
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
            users: &[],
            groups: &[],
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
            users: &[],
            groups: &[],
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
