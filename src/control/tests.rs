//! Router tests: requests through `tower::ServiceExt::oneshot`, on an
//! in-memory store, checking status, JSON bodies and the catalog.

use super::*;
use crate::auth::TokenHash;
use crate::catalog::Resolved;
use crate::store::{NewUser, Role};
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Mutex;
use tower::ServiceExt;

/// Presence that tests can switch per agent id.
#[derive(Default)]
struct TestPresence(Mutex<HashSet<i64>>);

impl Presence for TestPresence {
    fn is_connected(&self, agent_id: i64) -> bool {
        self.0.lock().unwrap().contains(&agent_id)
    }
}

pub(crate) struct Harness {
    state: ControlState,
    presence: Arc<TestPresence>,
    admin: String,
}

impl Harness {
    pub(crate) async fn new() -> Harness {
        let store = Store::open_memory().await.unwrap();
        let catalog = Arc::new(Catalog::new());
        let presence = Arc::new(TestPresence::default());
        let state = ControlState {
            store,
            catalog,
            presence: presence.clone(),
            app_urls: AppUrls::from_wildcard("*.berth.localhost", 8443),
            sharing: crate::config::SharingPolicy::default(),
            signin: test_signin(),
            oidc: None,
            github: None,
            local_ca: None,
            region_certs: None,
            login: Arc::new(crate::control::login::LoginGuard::new(Default::default())),
            inspection: Arc::new(crate::control::NoInspection),
            waker: None,
            identity: Default::default(),
        };
        let mut h = Harness {
            state,
            presence,
            admin: String::new(),
        };
        h.admin = h.user("root", Role::Admin).await;
        h
    }

    /// Creates a user directly (store + catalog) and returns an API token.
    async fn user(&self, name: &str, role: Role) -> String {
        let st = &self.state;
        let u = st
            .store
            .create_user(NewUser {
                username: name.into(),
                email: format!("{name}@example.com"),
                password: format!("{name}-password"),
                role,
                organization: None,
            })
            .await
            .unwrap();
        st.catalog
            .apply(crate::catalog::Change::User(u.to_catalog()));
        let (row, secret) = st.store.create_api_token(u.id, "test").await.unwrap();
        st.catalog.apply(crate::catalog::Change::ApiToken {
            hash: row.token_hash,
            user_id: u.id,
        });
        secret.expose().to_owned()
    }

    async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        if bytes.is_empty() {
            return (status, Value::Null);
        }
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "{status}: {bytes:?}"
        );
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body).unwrap()).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }
}

fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{:?}", got.1);
    assert_eq!(got.1["error"], code, "{:?}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        got.1
    );
}

#[tokio::test]
async fn login_returns_a_working_token_and_refuses_a_bad_password() {
    let h = Harness::new().await;
    h.user("alice", Role::Member).await;
    let ok = h
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{:?}", ok.1);
    let token = ok.1["token"].as_str().unwrap();
    assert!(token.starts_with("berth_api_"));
    let me = h.get("/api/v1/me", token).await;
    assert_eq!(me.1["username"], "alice");

    for (user, pw) in [("alice", "wrong-password"), ("nobody", "alice-password")] {
        let bad = h
            .call(
                Method::POST,
                "/api/v1/login",
                None,
                Some(json!({"username": user, "password": pw})),
            )
            .await;
        assert_error(&bad, StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
}

#[tokio::test]
async fn me_needs_a_valid_token() {
    let h = Harness::new().await;
    let me = h.get("/api/v1/me", &h.admin).await;
    assert_eq!(me.0, StatusCode::OK);
    assert_eq!(
        me.1,
        json!({"username": "root", "email": "root@example.com", "role": "admin", "organization": null,
            "sharing": {"levels": ["owner", "authenticated", "public"], "max_link_ttl_secs": 2_592_000, "max_share_ttl_secs": null}})
    );

    let none = h.call(Method::GET, "/api/v1/me", None, None).await;
    assert_error(&none, StatusCode::UNAUTHORIZED, "unauthenticated");
    let forged = format!("berth_api_{}", "A".repeat(43));
    for bad in ["nonsense", "berth_api_short", forged.as_str()] {
        let r = h.get("/api/v1/me", bad).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "invalid_token");
    }
    let basic = Request::get("/api/v1/me")
        .header(header::AUTHORIZATION, format!("Basic {}", h.admin))
        .body(Body::empty())
        .unwrap();
    assert_error(
        &h.raw(basic).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
}

#[tokio::test]
async fn users_are_created_by_admins_only_and_once() {
    let h = Harness::new().await;
    let body = json!({
        "username": "alice", "email": "alice@example.com", "password": "12345678",
        "role": "member", "organization": "acme"
    });
    let created = h.post("/api/v1/users", &h.admin, body.clone()).await;
    assert_eq!(created.0, StatusCode::CREATED, "{:?}", created.1);
    assert_eq!(created.1["username"], "alice");
    assert_eq!(created.1["role"], "member");
    assert_eq!(created.1["organization"], "acme");
    assert!(created.1.get("password_hash").is_none());

    let dup = h.post("/api/v1/users", &h.admin, body.clone()).await;
    assert_error(&dup, StatusCode::CONFLICT, "conflict");

    let member = h.user("bob", Role::Member).await;
    let mut other = body.clone();
    other["username"] = json!("carol");
    assert_error(
        &h.post("/api/v1/users", &member, other).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    // A member gets 403 before the body is looked at.
    assert_error(
        &h.post("/api/v1/users", &member, json!([])).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &h.get("/api/v1/users", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &h.delete("/api/v1/users/alice", &member).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    let list = h.get("/api/v1/users", &h.admin).await;
    let names: Vec<&str> = list
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "root"]);

    // The new user can sign in.
    let login = h
        .call(
            Method::POST,
            "/api/v1/login",
            None,
            Some(json!({"username": "alice", "password": "12345678"})),
        )
        .await;
    assert_eq!(login.0, StatusCode::OK);
}

async fn patch(h: &Harness, user: &str, token: &str, body: Value) -> (StatusCode, Value) {
    h.call(
        Method::PATCH,
        &format!("/api/v1/users/{user}"),
        Some(token),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn admins_change_roles_and_organizations_and_the_catalog_follows() {
    let h = Harness::new().await;
    let bob = h.user("bob", Role::Member).await;
    let r = patch(&h, "bob", &h.admin, json!({"organization": "acme"})).await;
    assert_eq!(r.0, StatusCode::OK, "{:?}", r.1);
    assert_eq!(
        (r.1["organization"].as_str(), r.1["role"].as_str()),
        (Some("acme"), Some("member"))
    );
    let id = h.state.store.user_by_name("bob").await.unwrap().id;
    assert_eq!(
        h.state.catalog.user(id).unwrap().organization.as_deref(),
        Some("acme")
    );
    // Absent fields stay; null clears the organization.
    let r = patch(&h, "bob", &h.admin, json!({"role": "admin"})).await;
    assert_eq!(
        (r.1["organization"].as_str(), r.1["role"].as_str()),
        (Some("acme"), Some("admin"))
    );
    assert!(h.state.catalog.user(id).unwrap().admin);
    let r = patch(
        &h,
        "bob",
        &h.admin,
        json!({"organization": null, "role": "member"}),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK);
    assert!(r.1["organization"].is_null());
    assert!(h.state.catalog.user(id).unwrap().organization.is_none());
    // Members may not; bad values name the field; unknown users are 404;
    // an admin cannot demote themselves.
    assert_error(
        &patch(&h, "bob", &bob, json!({"role": "admin"})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = patch(&h, "bob", &h.admin, json!({"role": "root"})).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.1["message"].as_str().unwrap().starts_with("role"),
        "{:?}",
        r.1
    );
    let r = patch(&h, "bob", &h.admin, json!({"organization": " acme"})).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(
        &patch(&h, "bob", &h.admin, json!({"email": "x@y"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    assert_error(
        &patch(&h, "nobody", &h.admin, json!({"role": "member"})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &patch(&h, "root", &h.admin, json!({"role": "member"})).await,
        StatusCode::CONFLICT,
        "conflict",
    );
}

#[tokio::test]
async fn invalid_user_fields_are_422_naming_the_field() {
    let h = Harness::new().await;
    let good = json!({
        "username": "alice", "email": "alice@example.com", "password": "12345678", "role": "member"
    });
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "username",
            json!("Alice"),
            "username: may only contain lower-case letters, digits and '-'",
        ),
        ("username", json!("a--b"), "username: must not contain '--'"),
        ("username", json!("u".repeat(50)), "username: is too long"),
        ("email", json!("alice"), "email: "),
        ("password", json!("short"), "password: must have at least 8"),
        ("role", json!("root"), "role: must be"),
        ("username", json!(5), "username: invalid type"),
        ("organization", json!(""), "organization: "),
    ];
    for (field, value, want) in cases {
        let mut body = good.clone();
        body[field] = value;
        let r = h.post("/api/v1/users", &h.admin, body).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        let msg = r.1["message"].as_str().unwrap();
        assert!(msg.starts_with(want), "{field}: {msg}");
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("password");
    let r = h.post("/api/v1/users", &h.admin, missing).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_eq!(r.1["message"], "password: is required");

    let mut extra = good.clone();
    extra["organisation"] = json!("acme");
    let r = h.post("/api/v1/users", &h.admin, extra).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(
        r.1["message"].as_str().unwrap().contains("organisation"),
        "{:?}",
        r.1
    );

    // Nothing was stored.
    assert_eq!(h.state.store.user_count().await.unwrap(), 1);
}

#[tokio::test]
async fn bodies_that_are_not_json_get_json_errors() {
    let h = Harness::new().await;
    let req = |ct: Option<&str>, body: Vec<u8>| {
        let mut r = Request::post("/api/v1/users")
            .header(header::AUTHORIZATION, format!("Bearer {}", h.admin));
        if let Some(ct) = ct {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        r.body(Body::from(body)).unwrap()
    };
    let r = h
        .raw(req(Some("application/json"), b"{\"username\": ".to_vec()))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = h.raw(req(Some("application/json"), b"".to_vec())).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    let r = h
        .raw(req(Some("application/json"), b"[1, 2]".to_vec()))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let r = h.raw(req(Some("text/plain"), b"{}".to_vec())).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let r = h.raw(req(None, b"{}".to_vec())).await;
    assert_error(
        &r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let big = format!("{{\"username\": \"{}\"}}", "a".repeat(BODY_LIMIT));
    let r = h.raw(req(Some("application/json"), big.into_bytes())).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_large");

    let r = h.get("/api/v1/nothing-here", &h.admin).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = h
        .call(Method::PUT, "/api/v1/users", Some(&h.admin), None)
        .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn workspaces_are_visible_to_their_owner_and_admins_only() {
    let h = Harness::new().await;
    let alice = h.user("alice", Role::Member).await;
    let bob = h.user("bob", Role::Member).await;

    let r = h
        .post("/api/v1/workspaces", &alice, json!({"name": "api"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    assert_eq!(r.1["owner"], "alice");
    assert_eq!(r.1["agents"], json!([]));
    let r = h
        .post("/api/v1/workspaces", &bob, json!({"name": "web"}))
        .await;
    assert_eq!(r.0, StatusCode::CREATED);
    let r = h
        .post(
            "/api/v1/workspaces",
            &h.admin,
            json!({"name": "ops", "owner": "bob"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    assert_eq!(r.1["owner"], "bob");

    assert_error(
        &h.post("/api/v1/workspaces", &alice, json!({"name": "api"}))
            .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    assert_error(
        &h.post(
            "/api/v1/workspaces",
            &alice,
            json!({"name": "x", "owner": "bob"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let r = h
        .post(
            "/api/v1/workspaces",
            &h.admin,
            json!({"name": "x", "owner": "nobody"}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.1["message"].as_str().unwrap().starts_with("owner: "));
    let r = h
        .post(
            "/api/v1/workspaces",
            &alice,
            json!({"name": "w".repeat(50)}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(r.1["message"]
        .as_str()
        .unwrap()
        .starts_with("name: is too long"));

    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{}/{}",
                    w["owner"].as_str().unwrap(),
                    w["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        names(&h.get("/api/v1/workspaces", &alice).await.1),
        ["alice/api"]
    );
    assert_eq!(
        names(&h.get("/api/v1/workspaces", &bob).await.1),
        ["bob/ops", "bob/web"]
    );
    assert_eq!(
        names(&h.get("/api/v1/workspaces", &h.admin).await.1),
        ["alice/api", "bob/ops", "bob/web"]
    );

    // Another user's workspace looks exactly like a missing one.
    let hidden = h.delete("/api/v1/workspaces/bob/web", &alice).await;
    assert_error(&hidden, StatusCode::NOT_FOUND, "not_found");
    let missing = h.delete("/api/v1/workspaces/bob/nope", &alice).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        hidden.1["message"].as_str().unwrap().replace("web", "nope"),
        missing.1["message"]
    );
    assert_error(
        &h.get("/api/v1/workspaces/bob/web/agents", &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Owners and admins may delete; the catalog forgets the workspace.
    let r = h.delete("/api/v1/workspaces/alice/api", &alice).await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    let r = h.delete("/api/v1/workspaces/bob/web", &h.admin).await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    assert_eq!(
        h.state.catalog.resolve("bob", "web", None),
        Resolved::Nothing
    );
    assert_eq!(
        names(&h.get("/api/v1/workspaces", &h.admin).await.1),
        ["bob/ops"]
    );
}

#[tokio::test]
async fn agents_get_a_token_that_the_catalog_resolves() {
    let h = Harness::new().await;
    let alice = h.user("alice", Role::Member).await;
    h.post("/api/v1/workspaces", &alice, json!({"name": "api"}))
        .await;

    let r = h
        .post(
            "/api/v1/workspaces/alice/api/agents",
            &alice,
            json!({"name": "main"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "{:?}", r.1);
    assert_eq!(r.1["name"], "main");
    assert_eq!(
        r.1["url_template"],
        "https://{port}--main--api--alice.berth.localhost:8443"
    );
    let token = r.1["agent_token"].as_str().unwrap();
    assert!(token.starts_with("berth_agent_"), "{token}");
    let agent = h
        .state
        .catalog
        .agent_for_token(&TokenHash::of(token))
        .expect("catalog knows the agent");
    assert_eq!(agent.name, "main");
    assert!(matches!(
        h.state.catalog.resolve("alice", "api", Some("main")),
        Resolved::Agent { agent_id, .. } if agent_id == agent.id
    ));

    assert_error(
        &h.post(
            "/api/v1/workspaces/alice/api/agents",
            &alice,
            json!({"name": "main"}),
        )
        .await,
        StatusCode::CONFLICT,
        "conflict",
    );
    let r = h
        .post(
            "/api/v1/workspaces/alice/api/agents",
            &alice,
            json!({"name": "g".repeat(45)}),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains("at most 43 characters"),
        "{:?}",
        r.1
    );
    let r = h
        .post(
            "/api/v1/workspaces/alice/api/agents",
            &h.admin,
            json!({"name": "gpu"}),
        )
        .await;
    assert_eq!(r.0, StatusCode::CREATED, "admins manage any workspace");

    h.presence.0.lock().unwrap().insert(agent.id);
    let list = h.get("/api/v1/workspaces/alice/api/agents", &alice).await;
    assert_eq!(list.0, StatusCode::OK);
    let got: Vec<(String, bool)> = list
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["connected"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("gpu".into(), false), ("main".into(), true)]);
    let ws = h.get("/api/v1/workspaces", &alice).await;
    assert_eq!(ws.1[0]["agents"][1]["connected"], true);

    let bob = h.user("bob", Role::Member).await;
    assert_error(
        &h.post(
            "/api/v1/workspaces/alice/api/agents",
            &bob,
            json!({"name": "x"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn deleting_a_user_revokes_their_tokens_and_agents() {
    let h = Harness::new().await;
    let alice = h.user("alice", Role::Member).await;
    h.post("/api/v1/workspaces", &alice, json!({"name": "api"}))
        .await;
    let r = h
        .post(
            "/api/v1/workspaces/alice/api/agents",
            &alice,
            json!({"name": "main"}),
        )
        .await;
    let agent_token = r.1["agent_token"].as_str().unwrap().to_owned();
    assert_eq!(h.get("/api/v1/me", &alice).await.0, StatusCode::OK);

    let r = h.delete("/api/v1/users/alice", &h.admin).await;
    assert_eq!(r, (StatusCode::NO_CONTENT, Value::Null));
    assert!(h
        .state
        .catalog
        .visitor_for_token(&TokenHash::of(&alice))
        .is_none());
    assert!(h
        .state
        .catalog
        .agent_for_token(&TokenHash::of(&agent_token))
        .is_none());
    assert_error(
        &h.get("/api/v1/me", &alice).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_error(
        &h.delete("/api/v1/users/alice", &h.admin).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.delete("/api/v1/users/root", &h.admin).await,
        StatusCode::CONFLICT,
        "conflict",
    );
}

#[tokio::test]
async fn bootstrap_runs_once_and_its_tokens_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let store = Store::open(data).await.unwrap();
    let catalog = Catalog::new();
    let first = bootstrap(&store, &catalog, data, true, &|_| {})
        .await
        .unwrap();
    let password = first
        .admin_password
        .clone()
        .expect("first run has a password");
    assert_eq!(first.admin_token_path, data.join(ADMIN_TOKEN_FILE));
    let admin_token = std::fs::read_to_string(&first.admin_token_path).unwrap();
    assert!(admin_token.starts_with("berth_api_") && !admin_token.ends_with('\n'));
    let dev = first.dev_agent_token.clone().expect("dev agent token");
    assert_eq!(
        std::fs::read_to_string(data.join(DEV_AGENT_TOKEN_FILE)).unwrap(),
        dev.expose()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [ADMIN_TOKEN_FILE, DEV_AGENT_TOKEN_FILE] {
            let mode = std::fs::metadata(data.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let v = catalog
        .visitor_for_token(&TokenHash::of(&admin_token))
        .unwrap();
    assert_eq!((v.username.as_str(), v.admin), ("admin", true));
    assert!(catalog
        .agent_for_token(&TokenHash::of(dev.expose()))
        .is_some());
    assert!(store
        .verify_login("admin", &password)
        .await
        .unwrap()
        .is_some());
    drop(store);

    // Second run, fresh process: same files, nothing new.
    let store = Store::open(data).await.unwrap();
    let catalog = Arc::new(Catalog::new());
    let second = bootstrap(&store, &catalog, data, true, &|_| {})
        .await
        .unwrap();
    assert!(second.admin_password.is_none());
    assert_eq!(second.dev_agent_token.as_ref(), Some(&dev));
    assert_eq!(
        std::fs::read_to_string(&second.admin_token_path).unwrap(),
        admin_token
    );
    assert_eq!(store.user_count().await.unwrap(), 1);
    assert_eq!(store.list_workspaces(None).await.unwrap().len(), 1);
    assert!(store
        .verify_login("admin", &password)
        .await
        .unwrap()
        .is_some());

    let h = Harness {
        state: ControlState {
            store,
            catalog: catalog.clone(),
            presence: Arc::new(NobodyConnected),
            app_urls: AppUrls::from_wildcard("*.berth.localhost", 443),
            sharing: crate::config::SharingPolicy::default(),
            signin: test_signin(),
            oidc: None,
            github: None,
            local_ca: None,
            region_certs: None,
            login: Arc::new(crate::control::login::LoginGuard::new(Default::default())),
            inspection: Arc::new(crate::control::NoInspection),
            waker: None,
            identity: Default::default(),
        },
        presence: Arc::new(TestPresence::default()),
        admin: admin_token.clone(),
    };
    let me = h.get("/api/v1/me", &admin_token).await;
    assert_eq!(me.1["username"], "admin");
    assert_eq!(me.1["email"], "admin@berth.localhost");
    let agents = h
        .get("/api/v1/workspaces/admin/dev/agents", &admin_token)
        .await;
    assert_eq!(agents.1[0]["name"], "main");
    assert_eq!(
        agents.1[0]["url_template"],
        "https://{port}--main--dev--admin.berth.localhost"
    );
    assert!(catalog
        .agent_for_token(&TokenHash::of(dev.expose()))
        .is_some());
}

#[tokio::test]
async fn bootstrap_replaces_a_lost_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = Store::open(data).await.unwrap();
    let first = bootstrap(&store, &Catalog::new(), data, true, &|_| {})
        .await
        .unwrap();
    let old_dev = first.dev_agent_token.unwrap();
    std::fs::remove_file(data.join(ADMIN_TOKEN_FILE)).unwrap();
    std::fs::remove_file(data.join(DEV_AGENT_TOKEN_FILE)).unwrap();

    let catalog = Catalog::new();
    let again = bootstrap(&store, &catalog, data, true, &|_| {})
        .await
        .unwrap();
    assert!(again.admin_password.is_none());
    let token = std::fs::read_to_string(data.join(ADMIN_TOKEN_FILE)).unwrap();
    assert!(catalog.visitor_for_token(&TokenHash::of(&token)).is_some());
    let new_dev = again.dev_agent_token.unwrap();
    assert_ne!(new_dev, old_dev);
    assert!(catalog
        .agent_for_token(&TokenHash::of(new_dev.expose()))
        .is_some());
    assert!(catalog
        .agent_for_token(&TokenHash::of(old_dev.expose()))
        .is_none());
}

#[test]
fn app_urls_and_label_budget() {
    let u = AppUrls::from_wildcard("*.berth.localhost", 8443);
    assert_eq!(
        u.url("3000--main--api--alice"),
        "https://3000--main--api--alice.berth.localhost:8443"
    );
    assert_eq!(u.label_budget(), 63);
    let p = AppUrls::from_wildcard("*--apps.example.com", 443);
    assert_eq!(p.url("x"), "https://x--apps.example.com");
    assert_eq!(p.label_budget(), 57);
}

/// Sign-in settings for router tests.
fn test_signin() -> Arc<crate::auth::signin::SignIn> {
    Arc::new(crate::auth::signin::SignIn {
        key: crate::auth::cookie::CookieKey::new([9; 32]),
        codes: Default::default(),
        wildcard: crate::host::Wildcard::parse("*.berth.localhost").unwrap(),
        base_domain: "berth.localhost".into(),
        base_url: "https://berth.localhost:8443".into(),
        session_ttl_secs: crate::auth::signin::SESSION_TTL_SECS,
    })
}
