//! The identity an app can verify: `Berth-Jwt-Assertion` on requests of a
//! visitor known to berth, and the public keys at `/.well-known/jwks.json`
//! (the signing and the keys are [`crate::auth::jwt`]'s).

use super::Edge;
use crate::auth::jwt::ASSERTION_HEADER;
use crate::auth::Visitor;
use axum::body::Body;
use dashmap::DashMap;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

/// Sets the assertion for `visitor` on app `host` in the headers going to
/// the app; whatever the client sent under that name is gone either way.
pub(super) fn assert(
    edge: &Edge,
    headers: &mut HeaderMap,
    visitor: Option<&Visitor>,
    host: &str,
    now: i64,
) {
    headers.remove(ASSERTION_HEADER);
    let Some(visitor) = visitor else {
        return;
    };
    let mut groups: Vec<String> = visitor
        .group_ids
        .iter()
        .filter_map(|id| edge.catalog.group(*id).map(|g| g.name))
        .collect();
    groups.sort();
    let ring = edge.identity.get();
    let Some(kid) = ring.current().map(|k| k.kid().to_owned()) else {
        return;
    };
    let claims = Subject {
        kid,
        user_id: visitor.user_id,
        name: visitor.username.clone(),
        email: visitor.email.clone(),
        organization: visitor.organization.clone(),
        groups,
    };
    let key = (visitor.user_id, host.to_ascii_lowercase());
    let token = match edge.assertions.fresh(&key, &claims, now, ring.ttl_secs()) {
        Some(t) => t,
        None => {
            let Some(t) = ring.assert(visitor, &claims.groups, host, now) else {
                return;
            };
            edge.assertions.keep(key, claims, t.clone(), now);
            t
        }
    };
    if let Ok(v) = HeaderValue::from_str(&token) {
        headers.insert(ASSERTION_HEADER, v);
    }
}

/// Everything an assertion says but its times: two requests with the same
/// subject may share one assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Subject {
    kid: String,
    user_id: i64,
    name: String,
    email: String,
    organization: Option<String>,
    groups: Vec<String>,
}

/// Assertions recently signed, per (user, app host): an ES256 signature
/// costs tens of microseconds, so one is reused while it has at least half
/// of its life left and nothing in it (key, name, e-mail, organization,
/// groups) has changed. Bounded: past [`MAX_CACHED`] entries it starts over.
#[derive(Debug, Default)]
pub(super) struct Assertions(DashMap<(i64, String), Cached>);

#[derive(Debug)]
struct Cached {
    subject: Subject,
    token: String,
    issued_at: i64,
}

/// Most (user, host) pairs remembered at once.
const MAX_CACHED: usize = 10_000;

impl Assertions {
    /// The cached assertion for `key`, if it says `subject` and was issued
    /// less than half of `ttl_secs` before `now`.
    fn fresh(
        &self,
        key: &(i64, String),
        subject: &Subject,
        now: i64,
        ttl_secs: i64,
    ) -> Option<String> {
        let c = self.0.get(key)?;
        let age = now - c.issued_at;
        (c.subject == *subject && (0..ttl_secs / 2).contains(&age)).then(|| c.token.clone())
    }

    /// Remembers `token`, issued at `now`, for `key`.
    fn keep(&self, key: (i64, String), subject: Subject, token: String, now: i64) {
        if self.0.len() >= MAX_CACHED {
            self.0.clear();
        }
        self.0.insert(
            key,
            Cached {
                subject,
                token,
                issued_at: now,
            },
        );
    }
}

/// `GET /.well-known/jwks.json` on the edge's own host: the public keys.
pub(super) fn jwks(edge: &Edge) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        // Apps may cache it briefly; a key stays published long after it
        // stops signing, and a new one signs at once (refetch on an unknown kid).
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Body::from(edge.identity.get().jwks().to_string()))
        .expect("static response is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(groups: &[&str]) -> Subject {
        Subject {
            kid: "k1".into(),
            user_id: 7,
            name: "alice".into(),
            email: "alice@example.com".into(),
            organization: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// Reused while half its life is left and the subject is the same;
    /// a change of group, key or name signs anew.
    #[test]
    fn an_assertion_is_reused_only_while_fresh_and_unchanged() {
        let a = Assertions::default();
        let key = (7, "h".to_string());
        a.keep(key.clone(), subject(&["eng"]), "t1".into(), 1000);
        assert_eq!(
            a.fresh(&key, &subject(&["eng"]), 1000, 300).as_deref(),
            Some("t1")
        );
        assert_eq!(
            a.fresh(&key, &subject(&["eng"]), 1149, 300).as_deref(),
            Some("t1")
        );
        assert_eq!(
            a.fresh(&key, &subject(&["eng"]), 1150, 300),
            None,
            "half its life gone"
        );
        assert_eq!(
            a.fresh(&key, &subject(&["eng"]), 999, 300),
            None,
            "clock went back"
        );
        assert_eq!(
            a.fresh(&key, &subject(&[]), 1001, 300),
            None,
            "left the group"
        );
        let mut rotated = subject(&["eng"]);
        rotated.kid = "k2".into();
        assert_eq!(a.fresh(&key, &rotated, 1001, 300), None, "a new key signs");
        let mut renamed = subject(&["eng"]);
        renamed.name = "alicia".into();
        assert_eq!(a.fresh(&key, &renamed, 1001, 300), None, "renamed");
        assert_eq!(
            a.fresh(&(8, "h".into()), &subject(&["eng"]), 1001, 300),
            None,
            "another user"
        );
        assert_eq!(
            a.fresh(&(7, "g".into()), &subject(&["eng"]), 1001, 300),
            None,
            "another host"
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let a = Assertions::default();
        for i in 0..(MAX_CACHED as i64 + 5) {
            a.keep((i, "h".into()), subject(&[]), "t".into(), 0);
        }
        assert!(a.0.len() <= MAX_CACHED);
    }
}
