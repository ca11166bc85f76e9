//! The set-ups the tests repeat, done through the API as a client would:
//! users and their tokens, workspaces and agents, shares and share links.
//! Each asserts the status it expects and names the answer when it is not.

use super::Berth;
use reqwest::Method;
use serde_json::{json, Value};

impl Berth {
    /// Creates user `name` as the admin (`role` "member" or "admin", an
    /// optional organization), e-mail `{name}@example.com`.
    pub async fn add_user(&self, name: &str, password: &str, role: &str, org: Option<&str>) {
        let mut body = json!({"username": name, "email": format!("{name}@example.com"),
                              "password": password, "role": role});
        if let Some(org) = org {
            body["organization"] = json!(org);
        }
        let (s, b) = self
            .api(Method::POST, "/api/v1/users", &self.admin_token, Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
    }

    /// Signs `name` in with `password` (`POST /api/v1/login`); its API token.
    pub async fn login(&self, name: &str, password: &str) -> String {
        let b: Value = self
            .client(true)
            .post(self.api_url("/api/v1/login"))
            .json(&json!({"username": name, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        b["token"].as_str().unwrap().to_owned()
    }

    /// [`Berth::add_user`], then [`Berth::login`]: the new user's API token.
    pub async fn user_token(
        &self,
        name: &str,
        password: &str,
        role: &str,
        org: Option<&str>,
    ) -> String {
        self.add_user(name, password, role, org).await;
        self.login(name, password).await
    }

    /// Creates workspace `user/workspace` as `token` (an admin may create
    /// it for another user); the status (201, or 409 when it exists).
    pub async fn try_add_workspace(&self, token: &str, user: &str, workspace: &str) -> u16 {
        let body = json!({"name": workspace, "owner": user});
        let (s, b) = self
            .api(Method::POST, "/api/v1/workspaces", token, Some(body))
            .await;
        assert!(
            s == 201 || s == 409,
            "workspace {user}/{workspace}: {s} {b}"
        );
        s
    }

    /// Creates workspace `user/workspace` as `token`; asserts it is new.
    pub async fn add_workspace(&self, token: &str, user: &str, workspace: &str) {
        let s = self.try_add_workspace(token, user, workspace).await;
        assert_eq!(s, 201, "workspace {user}/{workspace} exists already");
    }

    /// Creates agent `agent` in workspace `user/workspace` as `token`; the
    /// agent token.
    pub async fn add_agent(&self, token: &str, user: &str, workspace: &str, agent: &str) -> String {
        let (s, b) = self
            .api(
                Method::POST,
                &format!("/api/v1/workspaces/{user}/{workspace}/agents"),
                token,
                Some(json!({"name": agent})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["agent_token"].as_str().unwrap().to_owned()
    }

    /// Shares `port` of agent `user/workspace/agent` as `token` with
    /// `share` (`{"level": ...}`, maybe a protocol and cors); the answer.
    pub async fn share(&self, token: &str, agent: &str, port: u16, share: Value) -> Value {
        let (user, rest) = agent.split_once('/').expect("user/workspace/agent");
        let (workspace, agent) = rest.split_once('/').expect("user/workspace/agent");
        let path =
            format!("/api/v1/workspaces/{user}/{workspace}/agents/{agent}/ports/{port}/share");
        self.share_at(token, &path, share).await
    }

    /// [`Berth::share`] with the share's whole API path.
    pub async fn share_at(&self, token: &str, path: &str, share: Value) -> Value {
        let (s, b) = self.api(Method::PUT, path, token, Some(share)).await;
        assert_eq!(s, 200, "{b}");
        b
    }

    /// Makes a share link as `token` (`POST /api/v1/share-links` with
    /// `link`: user, workspace, agent, port, maybe ttl_seconds, max_uses);
    /// the answer, with its `url`.
    pub async fn share_link(&self, token: &str, link: Value) -> Value {
        let (s, b) = self
            .api(Method::POST, "/api/v1/share-links", token, Some(link))
            .await;
        assert_eq!(s, 201, "{b}");
        b
    }
}
