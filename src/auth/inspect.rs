//! Who may look at a port's recorded requests (issue 16): its owner and
//! site admins, whatever the port's share level, and never anyone holding
//! only a share link. What a port's recorded requests hold (other
//! visitors' headers and bodies) is the owner's business alone, so being
//! allowed to *use* a shared app grants nothing here.
//!
//! Refusals look exactly like a port that does not exist, as everywhere in
//! berth's API.

use super::ShareLevel;

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A berth API token.
    ApiToken,
    /// The dashboard's session on the control host.
    Session,
    /// A share link's cookie or token: admits to an app, names nobody.
    ShareLink,
    /// Nothing.
    Nothing,
}

/// The caller, as far as the decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub via: Via,
    /// The user the credential names (none for a share link or nothing).
    pub user_id: Option<i64>,
    pub admin: bool,
}

/// The port whose requests are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub owner_id: i64,
    /// How the port is shared: deliberately not part of the answer.
    pub level: ShareLevel,
}

/// The answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Sign in first (401).
    Unauthenticated,
    /// The same 404 as for a port that does not exist.
    NotFound,
}

/// May `viewer` see the recorded requests of `port`?
pub fn may_inspect(viewer: Viewer, port: Port) -> Verdict {
    let user = match (viewer.via, viewer.user_id) {
        (Via::ApiToken | Via::Session, Some(user)) => user,
        (Via::Nothing, _) | (Via::ApiToken | Via::Session, None) => {
            return Verdict::Unauthenticated
        }
        // A share link names no user: it opens an app, never its traffic.
        (Via::ShareLink, _) => return Verdict::NotFound,
    };
    if viewer.admin || user == port.owner_id {
        Verdict::Allow
    } else {
        Verdict::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: i64 = 7;

    fn viewer(via: Via, user_id: Option<i64>, admin: bool) -> Viewer {
        Viewer {
            via,
            user_id,
            admin,
        }
    }

    /// Every share level with every kind of caller: only the owner and
    /// admins ever get in, and never through a share link (even one whose
    /// holder claims to be the owner or an admin).
    #[test]
    fn only_owner_and_admins_whatever_the_share() {
        use Verdict::*;
        use Via::*;
        let cases: &[(Viewer, Verdict)] = &[
            (viewer(ApiToken, Some(OWNER), false), Allow),
            (viewer(Session, Some(OWNER), false), Allow),
            (viewer(ApiToken, Some(1), true), Allow),
            (viewer(Session, Some(1), true), Allow),
            // Another user: an org member, anyone signed in.
            (viewer(ApiToken, Some(8), false), NotFound),
            (viewer(Session, Some(8), false), NotFound),
            // A share link, whatever else it carries.
            (viewer(ShareLink, None, false), NotFound),
            (viewer(ShareLink, Some(OWNER), false), NotFound),
            (viewer(ShareLink, Some(1), true), NotFound),
            (viewer(ShareLink, None, true), NotFound),
            // Nobody, or a credential that names nobody.
            (viewer(Nothing, None, false), Unauthenticated),
            (viewer(Nothing, Some(OWNER), true), Unauthenticated),
            (viewer(ApiToken, None, true), Unauthenticated),
            (viewer(Session, None, false), Unauthenticated),
        ];
        for level in ShareLevel::ALL {
            let port = Port {
                owner_id: OWNER,
                level,
            };
            for (v, want) in cases {
                assert_eq!(may_inspect(*v, port), *want, "{v:?} on a {level:?} share");
            }
        }
    }

    /// Ids are compared exactly: a neighbour's id is another user.
    #[test]
    fn a_near_id_is_someone_else() {
        for other in [OWNER - 1, OWNER + 1, -OWNER, 0, i64::MAX, i64::MIN] {
            let v = viewer(Via::ApiToken, Some(other), false);
            let port = Port {
                owner_id: OWNER,
                level: ShareLevel::Public,
            };
            assert_eq!(may_inspect(v, port), Verdict::NotFound, "{other}");
        }
    }
}
