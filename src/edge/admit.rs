//! The authorize phase's decision ([`super::proxy`]): one pure function over
//! who is asking ([`Who`], from the authenticate phase), where the host leads
//! ([`Route`], from the route phase) and what the request asks ([`Ask`]).
//! It forwards, answers a CORS preflight at the edge, sends a browser to
//! sign in, or refuses with a page; every way through it is in the table
//! test below.

use super::pages::{ErrorPage, Missing};
use crate::auth::origin::{self, Credential, OriginKind};
use crate::auth::{self, Decision, ShareLevel, TokenHash, Visitor};
use crate::catalog::{Cors, Link, Protocol, Share};
use http::Method;

/// Who is asking, as the request's credentials say (built once by the
/// authenticate phase).
#[derive(Debug, Default)]
pub(crate) struct Who {
    /// The hash of the API token presented, valid or not (never a share
    /// link's token: that is [`Who::by_program`]).
    pub(crate) token: Option<TokenHash>,
    /// The user the token or the app cookie names.
    pub(crate) visitor: Option<Visitor>,
    /// The session of the app cookie that named them.
    pub(crate) session: Option<String>,
    /// A share cookie was presented for this host, valid or not.
    pub(crate) share_cookie: bool,
    /// The live share link that the cookie names, or that a program sent
    /// in place of an API token.
    pub(crate) link: Option<Link>,
    /// The link came in a header (`Berth-Token: berth_link_...`): a
    /// program's credential, like an API token, not a browser's cookie.
    pub(crate) by_program: bool,
}

/// Where an app host leads, as far as the catalog knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A port of a connected-or-not agent, with how it is shared.
    Port {
        owner_id: i64,
        /// The owner's organization (for `organization` shares).
        owner_org: Option<String>,
        agent_id: i64,
        port: u16,
        tls: bool,
        /// HTTP/2 without TLS to the app (`protocol = "h2c"`).
        h2c: bool,
        /// Who the share lets in as of this request ([`Share::audience`]:
        /// an ended share is `owner`, nobody named).
        level: ShareLevel,
        users: Vec<i64>,
        groups: Vec<i64>,
        cors: Cors,
        /// The inspector may record its exchanges (the share's `inspect`).
        inspect: bool,
    },
    /// The short form named a workspace with several agents.
    Ambiguous { owner_id: i64, agents: Vec<String> },
    /// Nothing by those names.
    Nothing,
}

/// What the route phase found in the catalog for a port: its owner (and
/// their organization), whether the host asked for HTTPS (`{port}s`), the
/// protocol of the app's name if the host used one, and the port's share.
pub(crate) struct Found<'a> {
    pub(crate) owner_id: i64,
    pub(crate) owner_org: Option<String>,
    pub(crate) agent_id: i64,
    pub(crate) port: u16,
    pub(crate) tls_asked: bool,
    pub(crate) named_protocol: Option<Protocol>,
    pub(crate) share: Option<&'a Share>,
}

impl Route {
    /// The route to a port, as its share stands at `now` (unix seconds).
    pub(crate) fn port(found: Found<'_>, now: i64) -> Route {
        let Found {
            owner_id,
            owner_org,
            agent_id,
            port,
            tls_asked,
            named_protocol,
            share,
        } = found;
        // `{port}s` always means HTTPS; otherwise the app's or the share's protocol.
        let protocol = named_protocol
            .or(share.map(|s| s.protocol))
            .unwrap_or_default();
        let (level, users, groups) =
            share.map_or((ShareLevel::Owner, &[][..], &[][..]), |s| s.audience(now));
        Route::Port {
            owner_id,
            owner_org,
            agent_id,
            port,
            tls: tls_asked || protocol == Protocol::Https,
            h2c: !tls_asked && protocol == Protocol::H2c,
            level,
            users: users.to_vec(),
            groups: groups.to_vec(),
            cors: share.map(|s| s.cors).unwrap_or_default(),
            inspect: share.is_none_or(|s| s.inspect),
        }
    }

    /// What the access decision weighs. A workspace-wide answer (the list of
    /// agents) is the owner's business, and no link matches it (agent 0 does
    /// not exist).
    pub(crate) fn target(&self) -> Option<auth::Target<'_>> {
        match self {
            Route::Port {
                owner_id,
                owner_org,
                agent_id,
                port,
                level,
                users,
                groups,
                ..
            } => Some(auth::Target {
                agent_id: *agent_id,
                port: *port,
                owner_id: *owner_id,
                owner_org: owner_org.as_deref(),
                level: *level,
                users,
                groups,
            }),
            Route::Ambiguous { owner_id, .. } => Some(auth::Target {
                agent_id: 0,
                port: 0,
                owner_id: *owner_id,
                owner_org: None,
                level: ShareLevel::Owner,
                users: &[],
                groups: &[],
            }),
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
    /// HTTP/2 without TLS to the app (`protocol = "h2c"`).
    pub(crate) h2c: bool,
    /// The response gets CORS allow headers for the request's `Origin`.
    pub(crate) cors_origin: bool,
    /// The credential that admitted it.
    pub(crate) credential: Credential,
    /// The inspector may record it (the port's share allows it).
    pub(crate) inspect: bool,
}

/// The decision for `who` asking `ask` of `app` (the host asked for),
/// which leads to `route`.
pub(crate) fn admit(who: &Who, route: &Route, ask: &Ask<'_>, app: &origin::App<'_>) -> Admission {
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
    let target = route.target();
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
    // A link in a header is a program's credential, like an API token.
    let credential = Credential::of(
        (who.token.is_some() && who.visitor.is_some()) || who.by_program,
        who.token.is_none() && who.visitor.is_some(),
        !who.by_program
            && link.is_some()
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
            h2c,
            inspect,
            ..
        } => Admission::Pass(Pass {
            agent_id: *agent_id,
            port: *port,
            tls: *tls,
            h2c: *h2c,
            cors_origin: same_owner_origin,
            credential,
            inspect: *inspect,
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

    /// The group u3 is in.
    const ENG: i64 = 5;
    /// What `share` expirations are compared with.
    const NOW: i64 = 1_000_000;

    fn user(id: i64) -> Visitor {
        Visitor {
            user_id: id,
            username: format!("u{id}"),
            email: format!("u{id}@example.com"),
            admin: false,
            organization: (id == 4).then(|| "acme".into()),
            group_ids: if id == 3 { vec![ENG] } else { vec![] },
        }
    }

    /// Port 3000 of agent 7, owned by u1 of acme.
    fn port(level: ShareLevel, cors: Cors) -> Route {
        let mut route = shared(level, &[], &[], None);
        if let Route::Port { cors: c, .. } = &mut route {
            *c = cors;
        }
        route
    }

    /// The route to port 3000 as a share naming `users` and `groups`,
    /// ending at `expires_at`, stands at [`NOW`].
    fn shared(level: ShareLevel, users: &[i64], groups: &[i64], expires_at: Option<i64>) -> Route {
        let share = Share {
            agent_id: 7,
            port: 3000,
            level,
            protocol: Protocol::Http,
            cors: Cors::Berth,
            users: users.to_vec(),
            groups: groups.to_vec(),
            expires_at,
            inspect: true,
        };
        Route::port(
            Found {
                owner_id: 1,
                owner_org: Some("acme".into()),
                agent_id: 7,
                port: 3000,
                tls_asked: false,
                named_protocol: None,
                share: Some(&share),
            },
            NOW,
        )
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

    /// The owner by token, by cookie; a stranger (u2), a group member
    /// (u3) and a colleague in the owner's organization (u4) by token or
    /// cookie; a bad token; a share cookie for this port, for another,
    /// expired; a program's link for this port, for another; nobody.
    fn who(name: &str) -> Who {
        let token = Some(TokenHash::of("berth_x"));
        match name {
            "stranger-cookie" => Who {
                visitor: Some(user(2)),
                session: Some("s".into()),
                ..Who::default()
            },
            "member-token" => Who {
                token,
                visitor: Some(user(3)),
                ..Who::default()
            },
            "colleague-token" => Who {
                token,
                visitor: Some(user(4)),
                ..Who::default()
            },
            "program-link" => Who {
                link: Some(link(7, 3000)),
                by_program: true,
                ..Who::default()
            },
            "program-other-link" => Who {
                link: Some(link(7, 4000)),
                by_program: true,
                ..Who::default()
            },
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
            h2c: false,
            cors_origin,
            credential,
            inspect: true,
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
        use ShareLevel::{Authenticated, Organization, Owner, Public};
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
            // The share cookie outlives its link (a week, to say it ended):
            // it opens nothing at any level but public, for a page, a
            // program or a WebSocket, and a browser is told, not sent to sign in.
            (
                "expired-link",
                port(Authenticated, berth),
                &get,
                true,
                false,
                false,
                &[],
                unauth(Missing::ExpiredLink),
            ),
            (
                "expired-link",
                port(Organization, berth),
                &get,
                false,
                true,
                false,
                &[],
                unauth(Missing::ExpiredLink),
            ),
            // Named users and groups pass whatever the level; nobody else does.
            (
                "stranger-token",
                shared(Owner, &[2], &[], None),
                &get,
                false,
                false,
                false,
                &[],
                pass(ApiToken, false),
            ),
            (
                "stranger-cookie",
                shared(Owner, &[2], &[], None),
                &post,
                false,
                false,
                false,
                &[FOREIGN],
                Admission::Refuse(ErrorPage::CrossOrigin {
                    request: "POST request".into(),
                    refusal: origin::Refusal::CrossOrigin {
                        origin: "https://evil.example.net".into(),
                    },
                }),
            ),
            (
                "member-token",
                shared(Owner, &[2], &[ENG], None),
                &get,
                false,
                false,
                false,
                &[],
                pass(ApiToken, false),
            ),
            (
                "member-token",
                shared(Owner, &[2], &[ENG + 1], None),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "stranger-token",
                shared(Owner, &[4], &[ENG], None),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "colleague-token",
                shared(Organization, &[], &[], None),
                &get,
                false,
                false,
                false,
                &[],
                pass(ApiToken, false),
            ),
            (
                "stranger-token",
                shared(Organization, &[], &[], None),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            // A share that has ended is `owner` again, nobody named, public or not.
            (
                "stranger-token",
                shared(Authenticated, &[2], &[ENG], Some(NOW)),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "member-token",
                shared(Owner, &[], &[ENG], Some(NOW)),
                &get,
                false,
                false,
                false,
                &[],
                Admission::Refuse(ErrorPage::NotFound),
            ),
            (
                "nobody",
                shared(Public, &[], &[], Some(NOW - 1)),
                &get,
                false,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
            ),
            (
                "nobody",
                shared(Public, &[], &[], Some(NOW + 1)),
                &get,
                false,
                false,
                false,
                &[],
                pass(Anonymous, false),
            ),
            (
                "owner-token",
                shared(Public, &[], &[], Some(NOW)),
                &get,
                false,
                false,
                false,
                &[],
                pass(ApiToken, false),
            ),
            // A program's link is its credential like a token: no cookie, so
            // cross-origin writes pass; it opens its own port only.
            (
                "program-link",
                port(Owner, berth),
                &post,
                false,
                false,
                false,
                &[FOREIGN],
                pass(ApiToken, false),
            ),
            (
                "program-link",
                port(Owner, berth),
                &get,
                false,
                true,
                false,
                &[FOREIGN],
                pass(ApiToken, false),
            ),
            (
                "program-other-link",
                port(Owner, berth),
                &get,
                false,
                false,
                false,
                &[],
                unauth(Missing::Nothing),
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
            let got = admit(&who(name), &route, &ask, &app);
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
