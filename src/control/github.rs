//! Sign-in with GitHub (or GitHub Enterprise Server) on the control host:
//! `POST /signin/github` (the sign-in page's button) or `GET
//! /signin/github` (a link) sends the browser to GitHub's OAuth web flow
//! (state and PKCE S256); `GET /signin/github/callback` exchanges the code,
//! reads the user's profile, e-mail addresses, organizations and teams
//! through the REST API, and lets in a member of an allowed organization or
//! team by their *verified primary* address (see [`crate::auth::github`]),
//! with the same session and way back to the app an OpenID Connect sign-in
//! has ([`super::federated`]).

use super::federated::{self, CallbackQuery, Service, ServiceHttp, StartQuery};
use super::signin::{cross_site, forbidden_cross_site, page};
use super::ControlState;
use crate::auth::cookie::Purpose;
use crate::auth::github::{
    admit, authorization_url, Admitted, Email, Org, Policy, Profile, Team, TokenAnswer,
};
use crate::auth::oidc::Flow;
use crate::config::GithubConfig;
use crate::store::MemberSource;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use serde::de::DeserializeOwned;

/// The control plane's GitHub OAuth client.
pub struct GithubClient {
    cfg: GithubConfig,
    http: ServiceHttp,
    redirect_uri: String,
    policy: Policy,
}

impl std::fmt::Debug for GithubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubClient")
            .field("url", &self.cfg.url)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl GithubClient {
    /// A client for `cfg`, answering at `{base_url}/signin/github/callback`.
    pub fn new(cfg: GithubConfig, base_url: &str) -> Result<GithubClient, crate::tls::TlsError> {
        Ok(GithubClient {
            http: ServiceHttp::new(cfg.ca_file.as_deref())?,
            redirect_uri: format!("{base_url}/signin/github/callback"),
            policy: Policy {
                organizations: cfg.allowed_organizations.clone(),
                teams: cfg.allowed_teams.clone(),
            },
            cfg,
        })
    }

    /// The sign-in button's text.
    pub fn label(&self) -> &str {
        &self.cfg.label
    }

    /// Exchanges the code (with the PKCE verifier) for an access token.
    async fn token(&self, code: &str, flow: &Flow) -> Result<String, String> {
        let url = format!("{}/login/oauth/access_token", self.cfg.url);
        let form = [
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.cfg.client_secret.expose()),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", flow.verifier.as_str()),
        ];
        let answer: TokenAnswer = self.http.call(&url, Some(&form), None).await?;
        match (answer.access_token, answer.error) {
            (Some(t), None) if !t.is_empty() => Ok(t),
            (_, Some(e)) => Err(format!(
                "GitHub refused the code: {e}{}",
                answer
                    .error_description
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )),
            _ => Err("GitHub's token answer has no access_token".into()),
        }
    }

    /// `GET {api}{path}` with the user's token.
    async fn api<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, String> {
        let url = format!("{}{path}", self.cfg.api_url);
        self.http
            .call(&url, None, Some(format!("Bearer {token}")))
            .await
    }

    /// Who the token belongs to, and whether they may sign in. Lists are
    /// read up to 100 entries (one page): organizations and teams beyond
    /// that are not seen.
    async fn identify(&self, token: &str) -> Result<(Profile, Result<Admitted, String>), String> {
        let profile: Profile = self.api(token, "/user").await?;
        let emails: Vec<Email> = self.api(token, "/user/emails?per_page=100").await?;
        let orgs: Vec<Org> = if self.policy.organizations.is_empty() {
            Vec::new()
        } else {
            self.api(token, "/user/orgs?per_page=100").await?
        };
        let teams: Vec<Team> = self.api(token, "/user/teams?per_page=100").await?;
        let admitted =
            admit(&profile, &emails, &orgs, &teams, &self.policy).map_err(|r| r.to_string());
        Ok((profile, admitted))
    }
}

fn not_configured() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "GitHub sign-in is off",
        "<p>This berth has no GitHub sign-in configured. <a href=\"/signin\">Sign in another way</a>.</p>",
    )
}

/// `GET /signin/github`: off to GitHub. Any page may link here, so the
/// visitor is asked before the sign-in ends on another user's app.
pub(crate) async fn start(State(st): State<ControlState>, Query(q): Query<StartQuery>) -> Response {
    begin(&st, q, false).await
}

/// `POST /signin/github`: the sign-in page's button (Origin checked).
pub(crate) async fn start_from_page(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Form(q): Form<StartQuery>,
) -> Response {
    if cross_site(&st, &headers) {
        return forbidden_cross_site();
    }
    begin(&st, q, true).await
}

async fn begin(st: &ControlState, q: StartQuery, interactive: bool) -> Response {
    let Some(gh) = st.github.clone() else {
        return not_configured();
    };
    federated::begin(st, &*gh, q, interactive).await
}

/// `GET /signin/github/callback`: GitHub sends the browser back here.
pub(crate) async fn callback(
    State(st): State<ControlState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(gh) = st.github.clone() else {
        return not_configured();
    };
    federated::callback(&st, &*gh, &headers, q).await
}

/// GitHub's part of the callback: an access token, then the person's
/// profile, addresses, organizations and teams.
impl Service for GithubClient {
    const PURPOSE: Purpose = Purpose::GitHub;
    const NAME: &'static str = "GitHub";
    const METHOD: &'static str = "github";
    type Token = String;

    async fn authorization_url(&self, flow: &Flow) -> Result<String, String> {
        Ok(authorization_url(
            &self.cfg.url,
            &self.cfg.client_id,
            &self.redirect_uri,
            flow,
        ))
    }

    async fn exchange(&self, code: &str, flow: &Flow) -> Result<String, String> {
        self.token(code, flow).await
    }

    async fn identify(
        &self,
        token: String,
    ) -> Result<(String, Result<federated::Admitted, String>), String> {
        let (profile, admitted) = GithubClient::identify(self, &token).await?;
        let admitted = admitted.map(|a| {
            tracing::debug!(login = %a.login, teams = ?a.teams, "GitHub sign-in admitted");
            federated::Admitted {
                email: a.email,
                // The person's teams (`org/team-slug`, in the organizations
                // berth knows) become their `github` group memberships,
                // left teams included.
                groups: self
                    .cfg
                    .teams_as_groups
                    .then_some((MemberSource::Github, a.teams)),
                wanted_name: Some(a.login),
            }
        });
        Ok((format!("github:{}", profile.login), admitted))
    }

    fn accounts(&self) -> (bool, Option<&str>) {
        (self.cfg.create_users, self.cfg.organization.as_deref())
    }
}
