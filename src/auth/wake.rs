//! Who may wake a workspace by visiting one of its apps (`[wake]`): only
//! someone who may see that app, and who berth can name in the audit log and
//! the webhook: a signed-in user the access decision admits, or the holder
//! of a share link for exactly that port. An anonymous visitor of a public
//! app sees the app once it runs, but does not start it. Pure.

use super::decide::{authorize, Decision, LinkGrant, Target, Visitor};

/// Whether this visit may call the wake webhook for `target`.
pub fn may_wake(
    visitor: Option<&Visitor>,
    link: Option<&LinkGrant>,
    target: Option<&Target<'_>>,
) -> bool {
    let Some(t) = target else {
        return false;
    };
    match visitor {
        Some(_) => authorize(visitor, link, target) == Decision::Allow,
        None => link.is_some_and(|l| l.agent_id == t.agent_id && l.port == t.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ShareLevel;

    fn user(id: i64, admin: bool, org: Option<&str>) -> Visitor {
        Visitor {
            user_id: id,
            username: format!("u{id}"),
            email: String::new(),
            admin,
            organization: org.map(Into::into),
            group_ids: vec![],
        }
    }

    /// Visitor, link, share level (`None`: nothing there), may wake.
    type Case<'a> = (
        Option<&'a Visitor>,
        Option<&'a LinkGrant>,
        Option<ShareLevel>,
        bool,
    );

    fn target(level: ShareLevel) -> Target<'static> {
        Target {
            agent_id: 7,
            port: 3000,
            owner_id: 1,
            owner_org: Some("acme"),
            level,
            users: &[],
            groups: &[],
        }
    }

    #[test]
    fn only_named_visitors_who_may_see_the_app_wake_it() {
        use ShareLevel::*;
        let owner = user(1, false, Some("acme"));
        let admin = user(9, true, None);
        let colleague = user(2, false, Some("acme"));
        let stranger = user(3, false, Some("other"));
        let link = LinkGrant {
            agent_id: 7,
            port: 3000,
        };
        let other_port = LinkGrant {
            agent_id: 7,
            port: 3001,
        };
        let other_agent = LinkGrant {
            agent_id: 8,
            port: 3000,
        };
        let cases: &[Case<'_>] = &[
            (Some(&owner), None, Some(Owner), true),
            (Some(&admin), None, Some(Owner), true),
            (Some(&colleague), None, Some(Owner), false),
            (Some(&colleague), None, Some(Organization), true),
            (Some(&stranger), None, Some(Organization), false),
            (Some(&stranger), None, Some(Authenticated), true),
            (Some(&stranger), None, Some(Public), true),
            // Anonymous: never by the share level alone.
            (None, None, Some(Public), false),
            (None, None, Some(Owner), false),
            // A share link opens (and wakes) its own port only.
            (None, Some(&link), Some(Owner), true),
            (None, Some(&other_port), Some(Public), false),
            (None, Some(&other_agent), Some(Owner), false),
            // A signed-in user holding a link for the port sees it, so wakes it.
            (Some(&stranger), Some(&link), Some(Owner), true),
            (Some(&stranger), Some(&other_port), Some(Owner), false),
            // Nothing there: nothing to wake.
            (Some(&owner), None, None, false),
            (Some(&admin), Some(&link), None, false),
            (None, Some(&link), None, false),
        ];
        for (i, (v, l, level, want)) in cases.iter().enumerate() {
            let t = level.map(target);
            assert_eq!(may_wake(*v, *l, t.as_ref()), *want, "case {i}");
        }
    }
}
