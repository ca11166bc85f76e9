//! GitHub sign-in, the parts that decide: the authorization URL (OAuth web
//! flow with `state` and PKCE S256), the shapes of GitHub's REST answers
//! berth reads, and who may sign in with which address. The control plane
//! ([`crate::control`]) does the HTTP around it.
//!
//! The `state` and PKCE verifier are those of an OpenID Connect sign-in
//! ([`super::oidc::Flow`]): random state in a signed cookie, the verifier
//! derived from it with the cookie key.

use super::oidc::Flow;
use serde::Deserialize;

/// Scopes berth asks GitHub for: the profile, the e-mail addresses (with
/// their verified and primary flags), and organization and team
/// membership (`read:org`, which private memberships need).
pub const SCOPES: &str = "read:user user:email read:org";

/// The URL to send the browser to: `{web}/login/oauth/authorize?...`.
pub fn authorization_url(
    web_url: &str,
    client_id: &str,
    redirect_uri: &str,
    flow: &Flow,
) -> String {
    let query = serde_urlencoded::to_string([
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", SCOPES),
        ("state", flow.state.as_str()),
        ("code_challenge", flow.challenge().as_str()),
        ("code_challenge_method", "S256"),
        ("allow_signup", "false"),
    ])
    .expect("strings always encode");
    format!(
        "{}/login/oauth/authorize?{query}",
        web_url.trim_end_matches('/')
    )
}

/// `POST /login/oauth/access_token`'s JSON answer. GitHub answers a bad
/// code with status 200 and `error`, so both halves are optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TokenAnswer {
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// `GET /user`, the parts berth reads.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Profile {
    pub login: String,
    pub id: i64,
}

/// One entry of `GET /user/emails`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Email {
    pub email: String,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub primary: bool,
}

/// One entry of `GET /user/orgs`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Org {
    pub login: String,
}

/// One entry of `GET /user/teams`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Team {
    pub slug: String,
    pub organization: Org,
}

impl Team {
    /// `org/team-slug`, lower-cased: how berth names a team (config, groups).
    pub fn name(&self) -> String {
        format!("{}/{}", self.organization.login, self.slug).to_ascii_lowercase()
    }
}

/// Who may sign in (`github.allowed_organizations`, `github.allowed_teams`;
/// both lower-cased). Both empty admits every GitHub user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub organizations: Vec<String>,
    /// `org/team-slug`.
    pub teams: Vec<String>,
}

impl Policy {
    /// True when neither organizations nor teams are listed.
    pub fn is_open(&self) -> bool {
        self.organizations.is_empty() && self.teams.is_empty()
    }

    /// The organizations whose teams berth records as groups: the allowed
    /// ones and those of the allowed teams.
    fn known_orgs(&self) -> impl Iterator<Item = &str> {
        self.organizations
            .iter()
            .map(String::as_str)
            .chain(self.teams.iter().filter_map(|t| t.split('/').next()))
    }
}

/// Who signed in: the address berth matches users by, the GitHub login,
/// and the teams (`org/team-slug`) in the organizations berth knows of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub email: String,
    pub login: String,
    pub teams: Vec<String>,
}

/// Why a GitHub user may not sign in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("your GitHub account has no primary e-mail address berth can see; make sure berth may read your e-mail addresses (scope user:email)")]
    NoPrimaryEmail,
    #[error("GitHub has not verified your primary e-mail address {0}; verify it on GitHub (Settings, Emails) first")]
    Unverified(String),
    #[error("GitHub's primary e-mail address for you is not one berth accepts (it {0}); ask an administrator")]
    Odd(super::email::EmailError),
    #[error("the GitHub user {login} is not in an organization or team this berth admits ({allowed}); ask an administrator, or check that the organization lets berth's OAuth app see your membership")]
    NotMember { login: String, allowed: String },
}

/// Decides whether the GitHub user may sign in, and as which address: the
/// *primary* address must be verified (another verified address never
/// stands in for it, an unverified one never counts), plain
/// ([`super::email::check`]: it reaches apps in a header), and, unless the
/// policy is open, the user must be in one of the allowed organizations or
/// teams (GitHub logins and slugs compare case-insensitively).
pub fn admit(
    profile: &Profile,
    emails: &[Email],
    orgs: &[Org],
    teams: &[Team],
    policy: &Policy,
) -> Result<Admitted, Refusal> {
    let mut primaries = emails.iter().filter(|e| e.primary);
    let primary = match (primaries.next(), primaries.next()) {
        (Some(one), None) => one,
        _ => return Err(Refusal::NoPrimaryEmail),
    };
    let email = primary.email.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(Refusal::NoPrimaryEmail);
    }
    super::email::check(&email).map_err(Refusal::Odd)?;
    if !primary.verified {
        return Err(Refusal::Unverified(email));
    }
    let team_names: Vec<String> = teams.iter().map(Team::name).collect();
    let member = policy.is_open()
        || orgs
            .iter()
            .any(|o| policy.organizations.contains(&o.login.to_ascii_lowercase()))
        || team_names.iter().any(|t| policy.teams.contains(t));
    if !member {
        let allowed: Vec<&str> = policy
            .organizations
            .iter()
            .chain(&policy.teams)
            .map(String::as_str)
            .collect();
        return Err(Refusal::NotMember {
            login: profile.login.clone(),
            allowed: allowed.join(", "),
        });
    }
    let known: Vec<&str> = policy.known_orgs().collect();
    let mut teams: Vec<String> = team_names
        .into_iter()
        .filter(|t| policy.is_open() || known.iter().any(|o| t.split('/').next() == Some(*o)))
        .collect();
    teams.sort();
    teams.dedup();
    Ok(Admitted {
        email,
        login: profile.login.clone(),
        teams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::cookie::CookieKey;

    fn alice() -> Profile {
        Profile {
            login: "Alice".into(),
            id: 1,
        }
    }

    fn email(e: &str, verified: bool, primary: bool) -> Email {
        Email {
            email: e.into(),
            verified,
            primary,
        }
    }

    fn org(l: &str) -> Org {
        Org { login: l.into() }
    }

    fn team(o: &str, s: &str) -> Team {
        Team {
            slug: s.into(),
            organization: org(o),
        }
    }

    fn policy(orgs: &[&str], teams: &[&str]) -> Policy {
        Policy {
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            teams: teams.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn only_a_verified_primary_address_signs_in() {
        let open = Policy::default();
        let ok = admit(
            &alice(),
            &[
                email("old@example.org", true, false),
                email("Alice@Example.COM", true, true),
            ],
            &[],
            &[],
            &open,
        )
        .unwrap();
        assert_eq!(ok.email, "alice@example.com");
        assert_eq!(ok.login, "Alice");
        // Each of these must be refused, whatever else is verified.
        type Case<'a> = (&'a [Email], fn(&Refusal) -> bool);
        let cases: &[Case<'_>] = &[
            (&[], |r| *r == Refusal::NoPrimaryEmail),
            (&[email("a@example.com", true, false)], |r| {
                *r == Refusal::NoPrimaryEmail
            }),
            (
                &[
                    email("a@example.com", false, true),
                    email("b@example.com", true, false),
                ],
                |r| matches!(r, Refusal::Unverified(e) if e == "a@example.com"),
            ),
            (
                &[
                    email("a@example.com", true, true),
                    email("b@example.com", true, true),
                ],
                |r| *r == Refusal::NoPrimaryEmail,
            ),
            (&[email("  ", true, true)], |r| {
                *r == Refusal::NoPrimaryEmail
            }),
            (&[email("<script>@x.y", true, true)], |r| {
                matches!(r, Refusal::Odd(_))
            }),
            (&[email("a b@example.com", true, true)], |r| {
                matches!(r, Refusal::Odd(_))
            }),
            (&[email("no-at-sign", false, true)], |r| {
                matches!(r, Refusal::Odd(_))
            }),
        ];
        for (emails, want) in cases {
            let r = admit(&alice(), emails, &[], &[], &open).unwrap_err();
            assert!(want(&r), "{emails:?}: {r:?}");
        }
    }

    #[test]
    fn organizations_and_teams_admit_and_nothing_else_does() {
        let emails = [email("a@example.com", true, true)];
        let p = policy(&["acme"], &["partner/dev-team"]);
        let admitted = |orgs: &[Org], teams: &[Team]| admit(&alice(), &emails, orgs, teams, &p);
        assert!(admitted(&[org("acme")], &[]).is_ok());
        assert!(admitted(&[org("ACME")], &[]).is_ok());
        assert!(admitted(&[], &[team("Partner", "dev-team")]).is_ok());
        for (orgs, teams) in [
            (vec![], vec![]),
            (vec![org("acme-evil")], vec![]),
            (vec![org("evil")], vec![team("evil", "acme")]),
            // In the team's organization, but not in the team.
            (vec![org("partner")], vec![team("partner", "other")]),
            // A team of that name in another organization.
            (vec![], vec![team("evil", "dev-team")]),
            (vec![], vec![team("partner", "dev-team-2")]),
            (vec![], vec![team("partner/dev-team", "x")]),
            (vec![org("acme/dev")], vec![]),
        ] {
            let r = admitted(&orgs, &teams).unwrap_err();
            assert!(
                matches!(&r, Refusal::NotMember { login, allowed } if login == "Alice" && allowed == "acme, partner/dev-team"),
                "{orgs:?} {teams:?}: {r:?}"
            );
        }
        // The organization check never makes an unverified primary pass.
        let r = admit(
            &alice(),
            &[email("a@example.com", false, true)],
            &[org("acme")],
            &[],
            &p,
        );
        assert!(matches!(r, Err(Refusal::Unverified(_))));
    }

    #[test]
    fn teams_in_known_organizations_become_groups() {
        let emails = [email("a@example.com", true, true)];
        let teams = [
            team("Acme", "Backend"),
            team("acme", "backend"),
            team("partner", "dev-team"),
            team("partner", "ops"),
            team("elsewhere", "secret-project"),
        ];
        let p = policy(&["acme"], &["partner/dev-team"]);
        let a = admit(&alice(), &emails, &[org("acme")], &teams, &p).unwrap();
        assert_eq!(a.teams, ["acme/backend", "partner/dev-team", "partner/ops"]);
        let a = admit(&alice(), &emails, &[], &teams, &Policy::default()).unwrap();
        assert_eq!(a.teams.len(), 4);
    }

    #[test]
    fn the_authorization_url_carries_state_and_an_s256_challenge() {
        let k = CookieKey::new([3; 32]);
        let f = Flow::start(&k);
        let url = authorization_url(
            "https://github.example.com/",
            "Iv1.abc",
            "https://berth.example.com/signin/github/callback",
            &f,
        );
        assert!(url.starts_with("https://github.example.com/login/oauth/authorize?client_id=Iv1.abc&redirect_uri=https%3A%2F%2Fberth.example.com%2Fsignin%2Fgithub%2Fcallback&scope=read%3Auser+user%3Aemail+read%3Aorg&state="), "{url}");
        assert!(url.contains(&format!("state={}", f.state)));
        assert!(url.contains(&format!("code_challenge={}", f.challenge())));
        assert!(url.contains("code_challenge_method=S256"));
        assert!(!url.contains(&f.verifier));
    }

    #[test]
    fn githubs_documented_shapes_parse() {
        let emails: Vec<Email> = serde_json::from_str(
            r#"[{"email":"octocat@github.com","verified":true,"primary":true,"visibility":"public"},
                {"email":"x@users.noreply.github.com","verified":true,"primary":false,"visibility":null}]"#,
        )
        .unwrap();
        assert!(emails[0].primary && !emails[1].primary);
        let teams: Vec<Team> = serde_json::from_str(
            r#"[{"id":1,"name":"Justice League","slug":"justice-league","privacy":"closed",
                 "organization":{"login":"github","id":1,"url":"https://api.github.com/orgs/github"}}]"#,
        )
        .unwrap();
        assert_eq!(teams[0].name(), "github/justice-league");
        let t: TokenAnswer = serde_json::from_str(
            r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com"}"#,
        )
        .unwrap();
        assert_eq!(t.error.as_deref(), Some("bad_verification_code"));
        assert!(t.access_token.is_none());
    }
}
