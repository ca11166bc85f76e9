//! The authorize phase's decision ([`super::proxy`]): one pure function over
//! who is asking ([`Who`], from the authenticate phase), where the host leads
//! ([`Route`], from the route phase) and what the request asks ([`Ask`]).
//! It forwards, answers a CORS preflight at the edge, sends a browser to
//! sign in, or refuses with a page; every way through it is in the table
//! test below.

use super::pages::{ErrorPage, Missing};
use crate::auth::origin::{self, Credential, OriginKind};
use crate::auth::{self, Decision, ShareLevel, TokenHash, Visitor};
use crate::catalog::{Cors, Link};
use http::Method;

/// Who is asking, as the request's credentials say (built once by the
/// authenticate phase).
#[derive(Debug, Default)]
pub(crate) struct Who {
    /// The hash of the API token presented, valid or not.
    pub(crate) token: Option<TokenHash>,
    /// The user the token or the app cookie names.
    pub(crate) visitor: Option<Visitor>,
    /// The session of the app cookie that named them.
    pub(crate) session: Option<String>,
    /// A share cookie was presented for this host, valid or not.
    pub(crate) share_cookie: bool,
    /// The live share link that cookie names.
    pub(crate) link: Option<Link>,
}

/// Where an app host leads, as far as the catalog knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A port of a connected-or-not agent, with how it is shared.
    Port {
        owner_id: i64,
        agent_id: i64,
        port: u16,
        tls: bool,
        level: ShareLevel,
        cors: Cors,
    },
    /// The short form named a workspace with several agents.
    Ambiguous { owner_id: i64, agents: Vec<String> },
    /// Nothing by those names.
    Nothing,
}

impl Route {
    /// What the decision needs: owner, agent, port and share level. A
    /// workspace-wide answer (the list of agents) is the owner's business, and
    /// no link matches it (agent 0 does not exist).
    pub(crate) fn access(&self) -> Option<(i64, i64, u16, ShareLevel)> {
        match self {
            Route::Port {
                owner_id,
                agent_id,
                port,
                level,
                ..
            } => Some((*owner_id, *agent_id, *port, *level)),
            Route::Ambiguous { owner_id, .. } => Some((*owner_id, 0, 0, ShareLevel::Owner)),
            Route::Nothing => None,
        }
    }

    /// Who answers CORS: the app only when its share says `passthru`.
    pub(crate) fn cors(&self) -> Cors {
        match self {
            Route::Port { cors, .. } => *cors,
            _ => Cors::Berth,
        }
    }
}

/// What the request asks, as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ask<'a> {
    pub(crate) method: &'a Method,
    /// The client takes HTML (a browser navigation).
    pub(crate) html: bool,
    /// A WebSocket upgrade (either HTTP version).
    pub(crate) upgrade: bool,
    /// A genuine CORS preflight ([`super::cors::is_preflight`]).
    pub(crate) preflight: bool,
    /// The `Origin` values.
    pub(crate) origin: &'a [&'a [u8]],
    /// `Sec-Fetch-Site`.
    pub(crate) sec_fetch_site: Option<&'a [u8]>,
}

/// What to do with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Forward it.
    Pass(Pass),
    /// A CORS preflight the edge answers; `allowed`: from the owner's apps.
    Preflight { allowed: bool },
    /// A browser without a session: to sign-in, and back.
    SignIn,
    /// Refused with this page.
    Refuse(ErrorPage),
}

/// Where an admitted request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pass {
    pub(crate) agent_id: i64,
    pub(crate) port: u16,
    /// HTTPS to the app.
    pub(crate) tls: bool,
    /// The response gets CORS allow headers for the request's `Origin`.
    pub(crate) cors_origin: bool,
    /// The credential that admitted it.
    pub(crate) credential: Credential,
}

/// The decision: `owner_org` is the route owner's organization (for
/// `organization` shares), `app` the host asked for.
pub(crate) fn admit(
    who: &Who,
    route: &Route,
    owner_org: Option<&str>,
    ask: &Ask<'_>,
    app: &origin::App<'_>,
) -> Admission {
    // CORS between one owner's apps: the edge answers preflights itself
    // (browsers send no credentials with them) and marks allowed responses,
    // unless the share hands CORS to the app (`passthru`): then preflights
    // go to the app unauthenticated, and the app's answers stand as they are.
    let passthru = route.cors() == Cors::Passthru;
    let same_owner_origin = !passthru
        && ask.origin.first().is_some_and(|o| {
            matches!(
                origin::classify(o, app),
                OriginKind::Own | OriginKind::SameOwner
            )
        });
    if ask.preflight && !passthru {
        return Admission::Preflight {
            allowed: same_owner_origin,
        };
    }
    let link = who.link.as_ref().map(|l| auth::LinkGrant {
        agent_id: l.agent_id,
        port: l.port,
    });
    let target = route
        .access()
        .map(|(owner_id, agent_id, port, level)| auth::Target {
            agent_id,
            port,
            owner_id,
            owner_org,
            level,
        });
    let decision = if ask.preflight {
        // Only a passthru share gets here: its owner lets the app answer.
        Decision::Allow
    } else {
        auth::authorize(who.visitor.as_ref(), link.as_ref(), target.as_ref())
    };
    match decision {
        Decision::Allow => {}
        Decision::Unauthenticated
            if who.token.is_none()
                && !who.share_cookie
                && ask.html
                && matches!(*ask.method, Method::GET | Method::HEAD) =>
        {
            return Admission::SignIn
        }
        Decision::Unauthenticated => {
            return Admission::Refuse(ErrorPage::unauthenticated(
                if who.share_cookie && who.link.is_none() {
                    Missing::ExpiredLink
                } else if who.token.is_some() {
                    Missing::BadToken
                } else {
                    Missing::Nothing
                },
            ))
        }
        Decision::NotFound => return Admission::Refuse(ErrorPage::NotFound),
    }
    // Admitted; but a cookie's authority does not extend to other origins.
    let credential = Credential::of(
        who.token.is_some() && who.visitor.is_some(),
        who.token.is_none() && who.visitor.is_some(),
        link.is_some()
            && auth::authorize(who.visitor.as_ref(), None, target.as_ref()) != Decision::Allow,
    );
    let verdict = origin::check(
        &origin::Request {
            method: ask.method,
            upgrade: ask.upgrade,
            credential,
            origin: ask.origin,
            sec_fetch_site: ask.sec_fetch_site,
        },
        app,
    );
    if let origin::Verdict::Refuse(refusal) = verdict {
        return Admission::Refuse(ErrorPage::CrossOrigin {
            request: if ask.upgrade {
                "WebSocket upgrade".to_owned()
            } else {
                format!("{} request", ask.method)
            },
            refusal,
        });
    }
    match route {
        Route::Port {
            agent_id,
            port,
            tls,
            ..
        } => Admission::Pass(Pass {
            agent_id: *agent_id,
            port: *port,
            tls: *tls,
            cors_origin: same_owner_origin,
            credential,
        }),
        Route::Ambiguous { agents, .. } => Admission::Refuse(ErrorPage::Ambiguous {
            agents: agents.clone(),
        }),
        Route::Nothing => Admission::Refuse(ErrorPage::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Wildcard;

    const HOST: &str = "3000--main--dev--alice.apps.example.com";
    const OWN: &[u8] = b"https://3000--main--dev--alice.apps.example.com";
    const SIBLING: &[u8] = b"https://5173--main--dev--alice.apps.example.com";
    const FOREIGN: &[u8] = b"https://evil.example.net";

    fn user(id: i64) -> Visitor {
        Visitor {
            user_id: id,
            username: format!("u{id}"),
            email: format!("u{id}@example.com"),
            admin: false,
            organization: None,
        }
    }

    fn port(level: ShareLevel, cors: Cors) -> Route {
        Route::Port {
            owner_id: 1,
            agent_id: 7,
            port: 3000,
            tls: false,
            level,
            cors,
        }
    }

    fn link(agent_id: i64, port: u16) -> Link {
        Link {
            id: "l1".into(),
            agent_id,
            port,
            expires_at: i64::MAX,
            created_by: 1,
        }
    }

    /// The owner by token, by cookie; a stranger by token; a bad token; a
    /// share cookie for this port, for another, expired; nobody.
    fn who(name: &str) -> Who {
        let token = Some(TokenHash::of("berth_x"));
        match name {
            "owner-token" => Who {
                token,
                visitor: Some(user(1)),
                ..Who::default()
            },
            "owner-cookie" => Who {
                visitor: Some(user(1)),
                session: Some("s".into()),
                ..Who::default()
            },
            "stranger-token" => Who {
                token,
                visitor: Some(user(2)),
                ..Who::default()
            },
            "bad-token" => Who {
                token,
                ..Who::default()
            },
            "link" => Who {
                share_cookie: true,
                link: Some(link(7, 3000)),
                ..Who::default()
            },
            "other-link" => Who {
                share_cookie: true,
                link: Some(link(7, 4000)),
                ..Who::default()
            },
            "expired-link" => Who {
                share_cookie: true,
                ..Who::default()
            },
            _ => Who::default(),
        }
    }

    fn pass(credential: Credential, cors_origin: bool) -> Admission {
        Admission::Pass(Pass {
            agent_id: 7,
            port: 3000,
            tls: false,
            cors_origin,
            credential,
        })
    }

    fn unauth(m: Missing) -> Admission {
        Admission::Refuse(ErrorPage::unauthenticated(m))
    }

    /// who, route, method, html, upgrade, preflight, origin, expected
    type Row<'a> = (
        &'a str,
        Route,
        &'a Method,
        bool,
        bool,
        bool,
        &'a [&'a [u8]],
        Admission,
    );

    #[test]
    fn every_way_through_the_decision() {
        use Credential::*;
        use ShareLevel::{Owner, Public};
        let wildcard = Wildcard::parse("*.apps.example.com").unwrap();
        let app = origin::App {
            host: HOST,
            owner: "alice",
            wildcard: &wildcard,
        };
        let (get, post, options) = (Method::GET, Method::POST, Method::OPTIONS);
        let berth = Cors::Berth;
        // (who, route, method, html, upgrade, preflight, origin, expected)
        let table: Vec<Row<'_>> = vec![
            // The owner, by token: in, from anywhere (a token is no cookie).
            (
                "owner-token",
                port(Owner, berth),
                &get,
                false,
                false,
                false,
                &[],
                pass(ApiToken, false),
            ),
            (
                "owner-token",
                port(Owner, berth),
                &post,
                false,
                false,
                false,
                &[FOREIGN],
                pass(ApiToken, false),
            ),
            (
                "owner-token",
                port(Owner, berth),
                &get,
                false,
                false,
                false,
                &[SIBLING],
                pass(ApiToken, true),
            ),
            // By cookie: reads from anywhere, writes and upgrades only from the owner's apps.
            (
                "owner-cookie",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                pass(AppCookie, false),
            ),
            (
                "owner-cookie",
                port(Owner, berth),
                &post,
                false,
                false,
                false,
                &[OWN],
                pass(AppCookie, true),
            ),
            (
                "owner-cookie",
                port(Owner, berth),
                &post,
                false,
                false,
                false,
                &[SIBLING],
                pass(AppCookie, true),
            ),
            (
                "owner-cookie",
                port(Owner, berth),
                &get,
                false,
                true,
                false,
                &[SIBLING],
                pass(AppCookie, true),
            ),
            // A stranger sees nothing; a bad token is told so; nobody is asked for one.
            (
                "stranger-token",
                port(Owner, berth),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "bad-token",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                unauth(Missing::BadToken),
            ),
            (
                "nobody",
                port(Owner, berth),
                &get,
                false,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
            ),
            (
                "nobody",
                port(Owner, berth),
                &post,
                true,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
            ),
            // A browser without credentials signs in (GET/HEAD only).
            (
                "nobody",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                Admission::SignIn,
            ),
            (
                "nobody",
                port(Owner, berth),
                &Method::HEAD,
                true,
                false,
                false,
                &[],
                Admission::SignIn,
            ),
            // Public ports: anyone, anonymously.
            (
                "nobody",
                port(Public, berth),
                &post,
                false,
                false,
                false,
                &[FOREIGN],
                pass(Anonymous, false),
            ),
            // A share link opens its own port only; an expired one is named.
            (
                "link",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                pass(ShareCookie, false),
            ),
            (
                "other-link",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
            ),
            (
                "expired-link",
                port(Owner, berth),
                &get,
                true,
                false,
                false,
                &[],
                unauth(Missing::ExpiredLink),
            ),
            // Preflights: answered here unless passthru, allowed for the owner's apps only.
            (
                "nobody",
                port(Owner, berth),
                &options,
                false,
                false,
                true,
                &[SIBLING],
                Admission::Preflight { allowed: true },
            ),
            (
                "nobody",
                port(Owner, berth),
                &options,
                false,
                false,
                true,
                &[FOREIGN],
                Admission::Preflight { allowed: false },
            ),
            (
                "nobody",
                port(Owner, Cors::Passthru),
                &options,
                false,
                false,
                true,
                &[FOREIGN],
                pass(Anonymous, false),
            ),
            // Nothing there looks like nothing shared; the short form with several agents says so.
            (
                "owner-token",
                Route::Nothing,
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "nobody",
                Route::Nothing,
                &get,
                false,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
            ),
            (
                "owner-token",
                Route::Ambiguous {
                    owner_id: 1,
                    agents: vec!["a".into(), "b".into()],
                },
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::Ambiguous {
                    agents: vec!["a".into(), "b".into()],
                }),
            ),
            (
                "stranger-token",
                Route::Ambiguous {
                    owner_id: 1,
                    agents: vec![],
                },
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
        ];
        for (name, route, method, html, upgrade, preflight, origin, expected) in table {
            let ask = Ask {
                method,
                html,
                upgrade,
                preflight,
                origin,
                sec_fetch_site: None,
            };
            let got = admit(&who(name), &route, None, &ask, &app);
            assert_eq!(
                got, expected,
                "{name} {method} html={html} upgrade={upgrade} origin={origin:?} {route:?}"
            );
        }
    }

    #[test]
    fn a_cookie_never_carries_writes_or_upgrades_from_elsewhere() {
        let wildcard = Wildcard::parse("*.apps.example.com").unwrap();
        let app = origin::App {
            host: HOST,
            owner: "alice",
            wildcard: &wildcard,
        };
        let other_owner: &[u8] = b"https://3000--main--dev--mallory.apps.example.com";
        for name in ["owner-cookie", "link"] {
            for (method, upgrade) in [
                (Method::POST, false),
                (Method::DELETE, false),
                (Method::GET, true),
            ] {
                for origin in [&[FOREIGN][..], &[other_owner], &[b"null"], &[OWN, OWN], &[]] {
                    let ask = Ask {
                        method: &method,
                        html: false,
                        upgrade,
                        preflight: false,
                        origin,
                        sec_fetch_site: Some(b"cross-site"),
                    };
                    let got = admit(
                        &who(name),
                        &port(ShareLevel::Owner, Cors::Berth),
                        None,
                        &ask,
                        &app,
                    );
                    assert!(
                        matches!(got, Admission::Refuse(ErrorPage::CrossOrigin { .. })),
                        "{name} {method} upgrade={upgrade} {origin:?}: {got:?}"
                    );
                }
            }
        }
    }
}
