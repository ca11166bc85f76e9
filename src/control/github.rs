//! Sign-in with GitHub (or GitHub Enterprise Server) on the control host:
//! `POST /signin/github` (the sign-in page's button) or `GET
//! /signin/github` (a link) sends the browser to GitHub's OAuth web flow
//! (state and PKCE S256); `GET /signin/github/callback` exchanges the code,
//! reads the user's profile, e-mail addresses, organizations and teams
//! through the REST API, and lets in a member of an allowed organization or
//! team by their *verified primary* address (see [`crate::auth::github`]),
//! with the same session and way back to the app an OpenID Connect sign-in
//! has ([`super::federated`]).

use super::federated::{
    end_attempt, expired, over_limit, resume, send_to_service, sign_in, start_again, unavailable,
    user_for, Accounts, ServiceHttp, StartQuery,
};
use super::signin::{cross_site, forbidden_cross_site, page, Back};
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
use serde::Deserialize;

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
    let back = Back::new(q.return_to.as_deref(), q.state.as_deref());
    if let Err(res) = back.check(st).await {
        return res;
    }
    let flow = Flow::start(&st.signin.key);
    let url = authorization_url(&gh.cfg.url, &gh.cfg.client_id, &gh.redirect_uri, &flow);
    send_to_service(st, Purpose::GitHub, &flow, url, back, interactive)
}

/// GitHub's redirect back.
#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
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
    if let Some(res) = over_limit(&st) {
        return res;
    }
    let mut res = finish(&st, &gh, &headers, q).await;
    end_attempt(&mut res);
    res
}

async fn finish(
    st: &ControlState,
    gh: &GithubClient,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    let Some(flow) = resume(st, headers, Purpose::GitHub, q.state.as_deref()) else {
        return expired();
    };
    if let Some(error) = q.error {
        let detail = q.error_description.unwrap_or_default();
        return start_again(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            &format!("GitHub did not sign you in: {error}. {detail}"),
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return start_again(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "GitHub sent you back without a code.",
        );
    };
    let token = match gh.token(&code, &flow).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "GitHub sign-in failed");
            return start_again(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                &format!("berth could not complete the sign-in: {e}"),
            );
        }
    };
    let (profile, admitted) = match gh.identify(&token).await {
        Ok(x) => x,
        Err(e) => return unavailable(&e),
    };
    let admitted = match admitted {
        Ok(a) => a,
        Err(refusal) => {
            st.audit(
                &format!("github:{}", profile.login),
                "session.refused",
                &refusal,
            )
            .await;
            return start_again(StatusCode::FORBIDDEN, "Not allowed", &refusal);
        }
    };
    tracing::debug!(login = %admitted.login, teams = ?admitted.teams, "GitHub sign-in admitted");
    let accounts = Accounts {
        method: "github",
        create_users: gh.cfg.create_users,
        organization: gh.cfg.organization.as_deref(),
        wanted_name: Some(&admitted.login),
    };
    let user = match user_for(st, &admitted.email, &accounts).await {
        Ok(user) => user,
        Err(res) => return res,
    };
    if gh.cfg.teams_as_groups {
        // The person's teams (`org/team-slug`, in the organizations berth
        // knows) become their `github` group memberships, left teams included.
        if let Err(e) = super::groups::sync_from_provider(
            st,
            MemberSource::Github,
            user.id,
            &user.username,
            &admitted.teams,
        )
        .await
        {
            tracing::error!(error = ?e, user = %user.username, "cannot update group memberships from GitHub teams");
            return unavailable("your group memberships could not be stored; try again");
        }
    }
    sign_in(st, headers, &user, "github").await
}
