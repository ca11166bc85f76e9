//! `[oidc]`: sign-in through an OpenID Connect provider, checked.

use super::schema::OidcSection;
use super::{ConfigError, Problems};
use crate::secret::Secret;
use std::path::PathBuf;

/// `[oidc]`, checked.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: crate::secret::Secret,
    pub scopes: String,
    /// Lower-case domains; empty admits any verified address.
    pub allowed_domains: Vec<String>,
    pub organization: Option<String>,
    pub create_users: bool,
    pub ca_file: Option<PathBuf>,
    pub label: String,
    /// The ID token claim that lists the user's groups (`oidc.groups_claim`);
    /// `None`: group memberships come from admins only.
    pub groups_claim: Option<String>,
}

impl OidcConfig {
    /// Checks `[oidc]`; `None` when no issuer is set (and nothing else is).
    pub(super) fn resolve(o: OidcSection) -> Result<Option<OidcConfig>, ConfigError> {
        let Some(issuer) = o.issuer.filter(|i| !i.is_empty()) else {
            if o.client_id.is_some() || o.client_secret.is_some() {
                return Err(ConfigError::Invalid {
                    key: "oidc.issuer",
                    message: "is required when oidc.client_id or oidc.client_secret is set".into(),
                });
            }
            return Ok(None);
        };
        let invalid = |key, message: String| ConfigError::Invalid { key, message };
        let mut p = Problems::default();
        let issuer_ok = issuer.parse::<http::Uri>().is_ok_and(|u| {
            u.scheme_str() == Some("https")
                && u.host().is_some_and(|h| !h.is_empty())
                && u.query().is_none()
        });
        if !issuer_ok {
            p.note(invalid(
                "oidc.issuer",
                format!("{issuer:?} is not an https:// URL without a query, such as https://accounts.example.com"),
            ));
        }
        let client_id = p.take(o.client_id.filter(|c| !c.is_empty()).ok_or_else(|| {
            invalid(
                "oidc.client_id",
                "is required: the client id berth is registered with at the provider".into(),
            )
        }));
        let client_secret = p.take(o.client_secret.filter(|c| !c.is_empty()).ok_or_else(|| {
            invalid("oidc.client_secret", "is required: the client secret from the provider (BERTH_OIDC_CLIENT_SECRET keeps it out of the file)".into())
        }));
        let scopes = o.scopes.unwrap_or_else(|| "openid email profile".into());
        let words: Vec<&str> = scopes.split_whitespace().collect();
        if !words.contains(&"openid") || !words.contains(&"email") {
            p.note(invalid(
                "oidc.scopes",
                format!("{scopes:?} must include \"openid\" and \"email\" (berth matches users by verified e-mail)"),
            ));
        }
        let mut allowed_domains = Vec::new();
        for d in o.allowed_domains.unwrap_or_default() {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if d.is_empty() || d.contains(['@', '/', ' ', '*']) || !d.contains('.') {
                p.note(invalid(
                    "oidc.allowed_domains",
                    format!("{d:?} is not a domain such as example.com"),
                ));
            }
            allowed_domains.push(d);
        }
        if let Some(org) = &o.organization {
            if org.trim() != org || org.is_empty() || org.len() > 100 {
                p.note(invalid(
                    "oidc.organization",
                    format!(
                        "{org:?} must be 1 to 100 characters without leading or trailing spaces"
                    ),
                ));
            }
        }
        let groups_claim = o.groups_claim.filter(|c| !c.is_empty());
        if let Some(c) = &groups_claim {
            if c.trim() != c || c.len() > 100 || c.chars().any(char::is_control) {
                p.note(invalid(
                    "oidc.groups_claim",
                    format!("{c:?} is not a claim name such as \"groups\""),
                ));
            }
        }
        let resolved = (|| {
            Some(Some(OidcConfig {
                groups_claim,
                issuer,
                client_id: client_id?,
                client_secret: Secret::new(client_secret?),
                scopes,
                allowed_domains,
                organization: o.organization,
                create_users: o.create_users.unwrap_or(true),
                ca_file: o.ca_file,
                label: o
                    .label
                    .unwrap_or_else(|| "Sign in with single sign-on".into()),
            }))
        })();
        p.finish(resolved)
    }
}
