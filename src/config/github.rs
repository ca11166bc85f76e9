//! `[github]`: sign-in with GitHub or GitHub Enterprise Server, checked.

use super::schema::GithubSection;
use super::{ConfigError, Problems};
use crate::secret::Secret;
use std::path::PathBuf;

/// github.com's web address.
const GITHUB_URL: &str = "https://github.com";
/// github.com's REST API.
const GITHUB_API_URL: &str = "https://api.github.com";

/// `[github]`, checked.
#[derive(Clone, Debug)]
pub struct GithubConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// Web address, without a trailing slash (`/login/oauth/...` lives here).
    pub url: String,
    /// REST API address, without a trailing slash.
    pub api_url: String,
    /// Lower-cased organization logins.
    pub allowed_organizations: Vec<String>,
    /// Lower-cased `org/team-slug`.
    pub allowed_teams: Vec<String>,
    pub organization: Option<String>,
    pub create_users: bool,
    pub ca_file: Option<PathBuf>,
    pub label: String,
    /// Each sign-in makes the person's teams in the known organizations
    /// (`org/team-slug`) their `github` berth group memberships.
    pub teams_as_groups: bool,
}

/// A GitHub login or team slug: letters, digits, `-`, `_`, `.`, 1 to 100.
fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// An `https://` URL without query or fragment, returned without its
/// trailing slash.
fn https_base(key: &'static str, url: &str) -> Result<String, ConfigError> {
    let ok = url.parse::<http::Uri>().is_ok_and(|u| {
        u.scheme_str() == Some("https")
            && u.host().is_some_and(|h| !h.is_empty())
            && u.query().is_none()
    }) && !url.contains('#');
    if ok {
        Ok(url.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::Invalid {
            key,
            message: format!("{url:?} is not an https:// URL without a query, such as https://github.example.com"),
        })
    }
}

impl GithubConfig {
    /// Checks `[github]`; `None` when no client id is set (and nothing
    /// that needs one is).
    pub(super) fn resolve(g: GithubSection) -> Result<Option<GithubConfig>, ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        let Some(client_id) = g.client_id.filter(|c| !c.is_empty()) else {
            if g.client_secret.is_some() || g.client_secret_file.is_some() {
                return Err(invalid(
                    "github.client_id",
                    "is required when github.client_secret or github.client_secret_file is set"
                        .into(),
                ));
            }
            return Ok(None);
        };
        let mut p = Problems::default();
        let secret = match (g.client_secret.filter(|s| !s.is_empty()), g.client_secret_file) {
            (Some(s), None) => Ok(s),
            (None, Some(path)) => std::fs::read_to_string(&path)
                .map_err(|e| {
                    invalid(
                        "github.client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
                .and_then(|s| {
                    let s = s.trim().to_owned();
                    if s.is_empty() {
                        Err(invalid(
                            "github.client_secret_file",
                            format!("{} is empty", path.display()),
                        ))
                    } else {
                        Ok(s)
                    }
                }),
            (Some(_), Some(_)) => Err(invalid(
                "github.client_secret_file",
                "set one of github.client_secret_file or github.client_secret, not both".into(),
            )),
            (None, None) => Err(invalid(
                "github.client_secret",
                "is required: the OAuth app's client secret (github.client_secret_file or BERTH_GITHUB_CLIENT_SECRET keep it out of the file)".into(),
            )),
        };
        let client_secret = p.take(secret);
        let url = p.take(match &g.url {
            Some(u) => https_base("github.url", u),
            None => Ok(GITHUB_URL.to_owned()),
        });
        let api_url = p.take(match (&g.api_url, &url) {
            (Some(a), _) => https_base("github.api_url", a),
            (None, Some(u)) if u != GITHUB_URL => Ok(format!("{u}/api/v3")),
            _ => Ok(GITHUB_API_URL.to_owned()),
        });
        let mut allowed_organizations = Vec::new();
        for o in g.allowed_organizations.unwrap_or_default() {
            let o = o.trim().to_ascii_lowercase();
            if !is_slug(&o) {
                p.note(invalid(
                    "github.allowed_organizations",
                    format!("{o:?} is not an organization login such as acme"),
                ));
            }
            allowed_organizations.push(o);
        }
        let mut allowed_teams = Vec::new();
        for t in g.allowed_teams.unwrap_or_default() {
            let t = t.trim().to_ascii_lowercase();
            let ok = t
                .split_once('/')
                .is_some_and(|(o, s)| is_slug(o) && is_slug(s));
            if !ok {
                p.note(invalid(
                    "github.allowed_teams",
                    format!("{t:?} is not ORG/TEAM-SLUG, such as acme/platform (the slug from the team's URL)"),
                ));
            }
            allowed_teams.push(t);
        }
        let create_users = g.create_users.unwrap_or(true);
        if create_users && allowed_organizations.is_empty() && allowed_teams.is_empty() {
            p.note(invalid(
                "github.allowed_organizations",
                "is required (or github.allowed_teams) while github.create_users is on: otherwise anyone with a GitHub account gets a berth account. Name your organizations, or set create_users = false to admit only users berth already has".into(),
            ));
        }
        if let Some(org) = &g.organization {
            if org.trim() != org || org.is_empty() || org.len() > 100 {
                p.note(invalid(
                    "github.organization",
                    format!(
                        "{org:?} must be 1 to 100 characters without leading or trailing spaces"
                    ),
                ));
            }
        }
        let resolved = (|| {
            Some(Some(GithubConfig {
                client_id,
                client_secret: Secret::new(client_secret?),
                url: url?,
                api_url: api_url?,
                allowed_organizations,
                allowed_teams,
                organization: g.organization,
                create_users,
                ca_file: g.ca_file,
                label: g.label.unwrap_or_else(|| "Sign in with GitHub".into()),
                teams_as_groups: g.teams_as_groups.unwrap_or(false),
            }))
        })();
        p.finish(resolved)
    }
}
