use super::*;
use crate::catalog::{Catalog, Change};
use crate::store::test_pg;

fn new_user(name: &str, role: Role) -> NewUser {
    NewUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        password: "correct horse".into(),
        role,
        organization: None,
    }
}

store_test! {
    async fn users_round_trip(s: Store) {
        let mut nu = new_user("alice", Role::Member);
        nu.organization = Some("acme".into());
        let alice = s.create_user(nu).await.unwrap();
        assert_eq!(alice.username, "alice");
        assert_eq!(alice.role, Role::Member);
        assert_eq!(alice.organization.as_deref(), Some("acme"));
        assert_ne!(alice.password_hash, "correct horse");
        assert!(alice.created_at.ends_with('Z'), "{}", alice.created_at);
        s.create_user(new_user("bob", Role::Admin)).await.unwrap();

        assert_eq!(s.user(alice.id).await.unwrap(), alice);
        assert_eq!(s.user_by_name("alice").await.unwrap(), alice);
        let names: Vec<String> = s
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.username)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(s.user_count().await.unwrap(), 2);

        assert_eq!(s.delete_user("alice").await.unwrap().id, alice.id);
        assert!(matches!(
            s.user_by_name("alice").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            s.delete_user("alice").await,
            Err(StoreError::NotFound(_))
        ));
    }

    async fn unique_names_conflict(s: Store) {
        let alice = s
            .create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
        let err = s
            .create_user(new_user("alice", Role::Admin))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict(ref m) if m.contains("alice")),
            "{err:?}"
        );

        let ws = s.create_workspace(alice.id, "api").await.unwrap();
        assert_eq!(ws.owner, "alice");
        assert!(matches!(
            s.create_workspace(alice.id, "api").await,
            Err(StoreError::Conflict(_))
        ));
        let bob = s.create_user(new_user("bob", Role::Member)).await.unwrap();
        s.create_workspace(bob.id, "api")
            .await
            .expect("same name, other owner");

        s.create_agent(ws.id, "main").await.unwrap();
        assert!(matches!(
            s.create_agent(ws.id, "main").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.create_workspace(9999, "x").await,
            Err(StoreError::NotFound(_))
        ));
    }

    async fn deleting_a_user_cascades_to_everything_they_own(s: Store) {
        let alice = s
            .create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
        let bob = s.create_user(new_user("bob", Role::Member)).await.unwrap();
        s.create_api_token(alice.id, "login").await.unwrap();
        let (bob_token, _) = s.create_api_token(bob.id, "login").await.unwrap();
        let ws = s.create_workspace(alice.id, "api").await.unwrap();
        s.create_agent(ws.id, "main").await.unwrap();
        let bws = s.create_workspace(bob.id, "web").await.unwrap();
        let (bagent, _) = s.create_agent(bws.id, "main").await.unwrap();

        s.delete_user("alice").await.unwrap();
        let snap = s.snapshot().await.unwrap();
        assert_eq!(
            snap.len(),
            4,
            "bob, his token, workspace and agent: {snap:?}"
        );
        assert!(matches!(
            s.workspace(ws.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            s.user_for_api_token(&bob_token.token_hash).await.unwrap(),
            Some(bob.id)
        );
        assert_eq!(s.list_all_agents().await.unwrap(), vec![bagent]);

        s.delete_workspace(bws.id).await.unwrap();
        assert!(s.list_all_agents().await.unwrap().is_empty());
        assert!(matches!(
            s.delete_workspace(bws.id).await,
            Err(StoreError::NotFound(_))
        ));
    }

    async fn verify_login_accepts_only_the_right_password(s: Store) {
        let alice = s
            .create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
        assert_eq!(
            s.verify_login("alice", "correct horse").await.unwrap(),
            Some(alice)
        );
        assert_eq!(s.verify_login("alice", "wrong horse").await.unwrap(), None);
        assert_eq!(
            s.verify_login("nobody", "correct horse").await.unwrap(),
            None
        );
    }

    async fn tokens_are_stored_as_hashes_and_agents_rotate(s: Store) {
        let alice = s
            .create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
        let (row, secret) = s.create_api_token(alice.id, "cli").await.unwrap();
        assert!(secret.expose().starts_with("berth_api_"));
        assert_eq!(row.token_hash, TokenHash::of(secret.expose()));

        let ws = s.create_workspace(alice.id, "api").await.unwrap();
        let (agent, old) = s.create_agent(ws.id, "main").await.unwrap();
        assert!(old.expose().starts_with("berth_agent_"));
        assert_eq!(agent.token_hash, TokenHash::of(old.expose()));
        let (rotated, new) = s.rotate_agent_token(agent.id).await.unwrap();
        assert_ne!(old, new);
        assert_eq!(rotated.id, agent.id);
        assert_eq!(rotated.token_hash, TokenHash::of(new.expose()));
        assert_eq!(s.agent_by_name(ws.id, "main").await.unwrap(), rotated);
        assert!(matches!(
            s.rotate_agent_token(9999).await,
            Err(StoreError::NotFound(_))
        ));
    }

    async fn snapshot_fills_a_catalog(s: Store) {
        let alice = s.create_user(new_user("alice", Role::Admin)).await.unwrap();
        let (_, tok) = s.create_api_token(alice.id, "cli").await.unwrap();
        let ws = s.create_workspace(alice.id, "api").await.unwrap();
        let (agent, atok) = s.create_agent(ws.id, "main").await.unwrap();

        let c = Catalog::new();
        for change in s.snapshot().await.unwrap() {
            c.apply(change);
        }
        let v = c.visitor_for_token(&TokenHash::of(tok.expose())).unwrap();
        assert_eq!((v.user_id, v.admin), (alice.id, true));
        assert_eq!(
            c.agent_for_token(&TokenHash::of(atok.expose())),
            Some(agent.to_catalog())
        );
        assert_eq!(c.workspace(ws.id), Some(ws.to_catalog()));
        c.apply(Change::UserRemoved(alice.id));
        assert_eq!(c.agent_count(), 0);
    }
}

#[tokio::test]
async fn open_creates_the_file_and_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested");
    {
        let s = Store::open(&data).await.unwrap();
        s.create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
    }
    assert!(data.join(DB_FILE).exists());
    let s = Store::open(&data).await.unwrap();
    assert_eq!(s.user_by_name("alice").await.unwrap().username, "alice");
}

#[tokio::test]
async fn a_postgres_database_reopens_with_its_data() {
    let Some(db) = test_pg::fresh_database().await else {
        return;
    };
    {
        let s = Store::open_url(&db.url).await.unwrap();
        assert_eq!(s.backend(), Backend::Postgres);
        s.create_user(new_user("alice", Role::Member))
            .await
            .unwrap();
    }
    // postgresql:// is the same thing; the migrations are already applied.
    let url = db.url.replacen("postgres://", "postgresql://", 1);
    let s = Store::open_url(&url).await.unwrap();
    assert_eq!(s.user_by_name("alice").await.unwrap().username, "alice");
}

#[tokio::test]
async fn a_wrong_postgres_password_is_refused_without_echoing_it() {
    let Some(db) = test_pg::fresh_database().await else {
        return;
    };
    // Replace the password in postgres://berth:PASSWORD@host/... (or add one).
    let (scheme_user, rest) = db.url.split_once('@').expect("test URLs carry a user");
    let user_part = scheme_user.rsplit_once(':').map_or(scheme_user, |(u, _)| u);
    let url = format!("{user_part}:hunter2-wrong@{rest}");
    let err = Store::open_url(&url).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{msg}");
    assert!(msg.contains("127.0.0.1") || msg.contains('@'), "{msg}");
    assert!(!msg.contains("hunter2-wrong"), "{msg}");
    assert!(!format!("{err:?}").contains("hunter2-wrong"), "{err:?}");
}

#[test]
fn both_backends_have_the_same_migration_versions() {
    let versions =
        |m: &sqlx::migrate::Migrator| -> Vec<i64> { m.iter().map(|m| m.version).collect() };
    let sqlite = versions(&connect::SQLITE_MIGRATIONS);
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite,
        versions(&connect::POSTGRES_MIGRATIONS),
        "every migration needs a file in migrations/sqlite and in migrations/postgres"
    );
    // A file left in the old flat layout would be silently ignored.
    let flat: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sql"))
        .map(|e| e.file_name())
        .collect();
    assert!(
        flat.is_empty(),
        "{flat:?}: move migrations into migrations/sqlite/ and migrations/postgres/"
    );
}

/// Polls `done` every 20 ms for up to 5 s.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_each_other_and_rebuild_after_a_lost_listener() {
    let Some(db) = test_pg::fresh_database().await else {
        return;
    };
    let a = Store::open_url(&db.url).await.unwrap();
    let b = Store::open_url(&db.url).await.unwrap();
    let (user_id, _, agent_id) = crate::store::seed(&a).await;
    let catalog_b = std::sync::Arc::new(Catalog::new());
    let follower = tokio::spawn({
        let (b, catalog) = (b.clone(), catalog_b.clone());
        async move { b.follow_changes(&catalog).await }
    });
    // The listener's first act is a rebuild from the database.
    eventually("initial rebuild", || catalog_b.agent(agent_id).is_some()).await;

    // A change A applies and publishes reaches B's catalog.
    let (link, _) = a
        .create_link(agent_id, 3000, user_id, i64::MAX, None)
        .await
        .unwrap();
    let change = Change::Link(link.to_catalog().unwrap());
    let catalog_a = Catalog::new();
    a.apply_and_publish(&catalog_a, change).await.unwrap();
    assert!(catalog_a.live_link(&link.id, 0).is_some());
    eventually("link published by A", || {
        catalog_b.live_link(&link.id, 0).is_some()
    })
    .await;

    // A revocation B never hears of (no publish) is caught by the rebuild
    // that follows a reconnect of B's listener.
    assert!(a.revoke_link(&link.id).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(catalog_b.live_link(&link.id, 0).is_some(), "not told yet");
    let admin = sqlx::postgres::PgPool::connect(&db.url).await.unwrap();
    let (killed,): (i64,) = sqlx::query_as(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(killed, 1, "B's listener connection");
    eventually("rebuild after reconnect", || {
        catalog_b.live_link(&link.id, 0).is_none()
    })
    .await;
    follower.abort();
}
