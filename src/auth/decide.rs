//! The access decision for one request to one app port: a pure function.
//!
//! The foundation knows one share level, `owner`: the workspace owner and site
//! admins get through. Share levels and links extend [`authorize`] later; the
//! rule that a missing target looks exactly like a private one stays.

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
}

/// The outcome of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward the request.
    Allow,
    /// No (valid) credentials: 401 for programs, sign-in for browsers.
    Unauthenticated,
    /// Signed in but not allowed, or the target does not exist: 404, so that
    /// nobody learns that a private workspace exists.
    NotFound,
}

/// Decides whether `visitor` may reach a port whose workspace is owned by
/// `owner` (`None` when the host names nothing that exists).
pub fn authorize(visitor: Option<&Visitor>, owner: Option<i64>) -> Decision {
    match (visitor, owner) {
        (None, _) => Decision::Unauthenticated,
        (Some(v), Some(owner)) if v.admin || v.user_id == owner => Decision::Allow,
        (Some(_), _) => Decision::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(id: i64, admin: bool) -> Visitor {
        Visitor {
            user_id: id,
            username: format!("u{id}"),
            email: format!("u{id}@example.com"),
            admin,
        }
    }

    #[test]
    fn full_table() {
        let owner = visitor(1, false);
        let other = visitor(2, false);
        let admin = visitor(3, true);
        let cases: &[(Option<&Visitor>, Option<i64>, Decision)] = &[
            (None, Some(1), Decision::Unauthenticated),
            (None, None, Decision::Unauthenticated),
            (Some(&owner), Some(1), Decision::Allow),
            (Some(&owner), None, Decision::NotFound),
            (Some(&other), Some(1), Decision::NotFound),
            (Some(&other), None, Decision::NotFound),
            (Some(&admin), Some(1), Decision::Allow),
            // An admin asking for something that does not exist learns nothing more.
            (Some(&admin), None, Decision::NotFound),
        ];
        for (v, o, want) in cases {
            assert_eq!(authorize(*v, *o), *want, "visitor {v:?} owner {o:?}");
        }
    }

    #[test]
    fn a_missing_target_and_a_foreign_one_look_the_same() {
        let stranger = visitor(9, false);
        assert_eq!(
            authorize(Some(&stranger), None),
            authorize(Some(&stranger), Some(1))
        );
        assert_eq!(authorize(None, None), authorize(None, Some(1)));
    }
}
