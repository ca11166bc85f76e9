//! Upgrades and downgrades of a real database, on both backends.
//!
//! Upgrade: for every older schema that has users, shares and links (version
//! 3 on), a database is made with only the migrations up to that version and
//! filled with SQL of that schema (a user with a password and an API token,
//! a workspace and agent, a shared port, a share link), as the berth of that
//! day would have left it; the current [`Store`] then opens it, which applies
//! the rest, and every row must still be there and still work (the password,
//! the tokens, the link).
//!
//! Downgrade: a database on which a newer berth applied a migration this
//! binary does not have is refused with both schema versions named, and is
//! left as it was.

use super::connect::{POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
use super::*;
use crate::auth::{password, token, Secret, ShareLevel, TokenHash, TokenKind};
use crate::catalog::{Catalog, Cors, Protocol};
use crate::store::test_pg;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::borrow::Cow;

/// The first schema with users, shares and share links.
const FIRST_SCHEMA: i64 = 3;
const PASSWORD: &str = "correct horse battery";
const LINK_ID: &str = "0123456789abcdef01234567";
const PORT: i64 = 3000;

/// `migrator` cut down to the migrations up to `version`, as an older berth had it.
fn older(migrator: &Migrator, version: i64) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            migrator
                .iter()
                .filter(|m| m.version <= version)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

/// `migrator` plus one migration from the future (`version`), as a newer berth has it.
fn newer(migrator: &Migrator, version: i64) -> Migrator {
    let mut migrations: Vec<Migration> = migrator.iter().cloned().collect();
    migrations.push(Migration::new(
        version,
        Cow::Borrowed("from a newer berth"),
        MigrationType::Simple,
        Cow::Borrowed("CREATE TABLE from_the_future (id BIGINT PRIMARY KEY)"),
        false,
    ));
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// What the fixture wrote and must find again.
struct Fixture {
    api_token: Secret,
    agent_token: Secret,
    link_token: Secret,
    /// Unix seconds; the link expires a day after.
    now: i64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            api_token: token::generate(TokenKind::Api),
            agent_token: token::generate(TokenKind::Agent),
            link_token: token::generate(TokenKind::Link),
            now: OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}

/// Fills a database of schema 3 or later with the SQL of schema 3 (every
/// later migration only adds tables, or columns with defaults, so the same
/// statements are valid on each): alice (admin, organization acme) with an
/// API token, workspace `api`, agent `main`, port 3000 shared with her
/// organization, and a share link to it. The same code for both backends.
macro_rules! write_fixture {
    ($pool:expr, $f:expr) => {{
        let pool = $pool;
        let f: &Fixture = $f;
        let at = "2025-01-02T03:04:05Z";
        let (user_id,): (i64,) = sqlx::query_as(
            "INSERT INTO users (username, email, password_hash, role, organization, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind("alice")
        .bind("alice@example.com")
        .bind(password::hash(PASSWORD))
        .bind("admin")
        .bind("acme")
        .bind(at)
        .fetch_one(pool)
        .await
        .expect("insert user");
        sqlx::query(
            "INSERT INTO api_tokens (user_id, token_hash, name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(TokenHash::of(f.api_token.expose()).to_hex())
        .bind("login")
        .bind(at)
        .execute(pool)
        .await
        .expect("insert api token");
        let (workspace_id,): (i64,) = sqlx::query_as(
            "INSERT INTO workspaces (owner_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(user_id)
        .bind("api")
        .bind(at)
        .fetch_one(pool)
        .await
        .expect("insert workspace");
        let (agent_id,): (i64,) = sqlx::query_as(
            "INSERT INTO agents (workspace_id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(workspace_id)
        .bind("main")
        .bind(TokenHash::of(f.agent_token.expose()).to_hex())
        .bind(at)
        .fetch_one(pool)
        .await
        .expect("insert agent");
        sqlx::query(
            "INSERT INTO shares (agent_id, port, level, protocol, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(agent_id)
        .bind(PORT)
        .bind("organization")
        .bind("http")
        .bind(at)
        .execute(pool)
        .await
        .expect("insert share");
        sqlx::query(
            "INSERT INTO share_links \
             (id, token_hash, agent_id, port, created_by, created_at, expires_at, max_uses) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(LINK_ID)
        .bind(TokenHash::of(f.link_token.expose()).to_hex())
        .bind(agent_id)
        .bind(PORT)
        .bind(user_id)
        .bind(at)
        .bind(f.now + 86_400)
        .bind(Some(5i64))
        .execute(pool)
        .await
        .expect("insert share link");
    }};
}

/// The newest migration applied to the store's database.
async fn applied_schema(store: &Store) -> i64 {
    let sql = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
    let v: Option<i64> =
        on_pool!(store, |pool| sqlx::query_scalar(sql).fetch_one(pool).await).unwrap();
    v.unwrap()
}

/// Everything [`write_fixture!`] wrote is in the upgraded store, and works.
async fn check_fixture(store: &Store, f: &Fixture, from: i64) {
    let ctx = format!("upgraded from schema {from}");
    assert_eq!(applied_schema(store).await, schema_version(), "{ctx}");

    let alice = store
        .verify_login("alice", PASSWORD)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{ctx}: alice's password no longer works"));
    assert_eq!(alice.email, "alice@example.com", "{ctx}");
    assert_eq!(alice.role, Role::Admin, "{ctx}");
    assert_eq!(alice.organization.as_deref(), Some("acme"), "{ctx}");
    assert_eq!(
        store
            .user_for_api_token(&TokenHash::of(f.api_token.expose()))
            .await
            .unwrap(),
        Some(alice.id),
        "{ctx}: API token"
    );

    let ws = store.workspace_by_name("alice", "api").await.unwrap();
    let agent = store.agent_by_name(ws.id, "main").await.unwrap();
    assert_eq!(
        agent.token_hash,
        TokenHash::of(f.agent_token.expose()),
        "{ctx}: agent token"
    );

    let shares = store.list_shares(agent.id).await.unwrap();
    assert_eq!(shares.len(), 1, "{ctx}: {shares:?}");
    assert_eq!(shares[0].port, PORT as u16, "{ctx}");
    assert_eq!(shares[0].level, ShareLevel::Organization, "{ctx}");
    assert_eq!(shares[0].protocol, Protocol::Http, "{ctx}");
    // Schema 6 added who answers CORS; older shares get the default.
    assert_eq!(shares[0].cors, Cors::Berth, "{ctx}");

    let link = store.link(LINK_ID).await.unwrap();
    assert_eq!((link.agent_id, link.port), (agent.id, PORT), "{ctx}");
    assert_eq!(
        (link.created_by, link.max_uses),
        (alice.id, Some(5)),
        "{ctx}"
    );
    assert_eq!(link.expires_at, f.now + 86_400, "{ctx}");
    assert!(!link.revoked, "{ctx}");

    // The catalog the edge decides from is rebuilt from it as before.
    let catalog = Catalog::new();
    catalog.resync(store.snapshot().await.unwrap());
    assert_eq!(
        catalog.share(agent.id, PORT as u16).map(|s| s.level),
        Some(ShareLevel::Organization),
        "{ctx}"
    );
    assert!(catalog.live_link(LINK_ID, f.now).is_some(), "{ctx}");
    assert_eq!(
        catalog
            .agent_for_token(&TokenHash::of(f.agent_token.expose()))
            .map(|a| a.id),
        Some(agent.id),
        "{ctx}"
    );

    // And still counts uses: the link redeems with its token.
    let redeemed = store
        .redeem_link(&TokenHash::of(f.link_token.expose()), f.now)
        .await
        .unwrap();
    assert_eq!(redeemed.map(|l| l.id).as_deref(), Some(LINK_ID), "{ctx}");
    assert_eq!(store.link(LINK_ID).await.unwrap().uses, 1, "{ctx}");
}

/// The versions the upgrade starts from: every schema with users, shares
/// and links that is older than this binary's.
fn older_schemas() -> std::ops::Range<i64> {
    let latest = schema_version();
    assert!(latest > FIRST_SCHEMA, "no older schema to upgrade from");
    FIRST_SCHEMA..latest
}

#[tokio::test]
async fn both_backends_have_one_numbering() {
    let versions = |m: &Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
    assert_eq!(versions(&SQLITE_MIGRATIONS), versions(&POSTGRES_MIGRATIONS));
    // build.rs counts the files for `berth --version`; sqlx parses them.
    assert_eq!(
        env!("BERTH_SCHEMA").parse::<i64>().unwrap(),
        schema_version()
    );
    assert!(
        crate::LONG_VERSION.ends_with(&format!("schema {})", schema_version())),
        "{}",
        crate::LONG_VERSION
    );
}

#[tokio::test]
async fn sqlite_data_dir_of_every_older_schema_upgrades_without_loss() {
    for from in older_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture::new();
        {
            let options = SqliteConnectOptions::new()
                .filename(dir.path().join(DB_FILE))
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            older(&SQLITE_MIGRATIONS, from).run(&pool).await.unwrap();
            write_fixture!(&pool, &f);
            pool.close().await;
        }
        let store = Store::open(dir.path()).await.unwrap_or_else(|e| {
            panic!("opening a data dir of schema {from}: {e}");
        });
        check_fixture(&store, &f, from).await;
    }
}

#[tokio::test]
async fn postgres_database_of_every_older_schema_upgrades_without_loss() {
    for from in older_schemas() {
        let Some(db) = test_pg::fresh_database().await else {
            return;
        };
        let f = Fixture::new();
        {
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&db.url)
                .await
                .unwrap();
            older(&POSTGRES_MIGRATIONS, from).run(&pool).await.unwrap();
            write_fixture!(&pool, &f);
            pool.close().await;
        }
        let store = Store::open_url(&db.url).await.unwrap_or_else(|e| {
            panic!("opening a database of schema {from}: {e}");
        });
        check_fixture(&store, &f, from).await;
    }
}

/// The refusal names the database, both schema versions and what to do.
fn assert_refused(err: StoreError, database: i64, what: &str) -> String {
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew { database: d, binary: b, .. }
                if d == database && b == schema_version()
        ),
        "{err:?}"
    );
    for needle in [
        what,
        &format!("newer berth (schema {database})"),
        &format!("knows schema {}", schema_version()),
        "upgrade berth, or restore a backup",
    ] {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    msg
}

#[tokio::test]
async fn sqlite_data_dir_of_a_newer_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let future = schema_version() + 2;
    {
        let store = Store::open(dir.path()).await.unwrap();
        seed(&store).await;
        let Pool::Sqlite(pool) = &store.pool else {
            unreachable!()
        };
        newer(&SQLITE_MIGRATIONS, future).run(pool).await.unwrap();
        pool.close().await;
    }
    let Err(err) = Store::open(dir.path()).await else {
        panic!("a data dir of schema {future} was opened");
    };
    let file = dir.path().join(DB_FILE);
    assert_refused(err, future, &file.display().to_string());

    // Untouched: the newer berth still opens it, with its data.
    let pool = SqlitePoolOptions::new()
        .connect_with(SqliteConnectOptions::new().filename(&file))
        .await
        .unwrap();
    newer(&SQLITE_MIGRATIONS, future).run(&pool).await.unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn postgres_database_of_a_newer_schema_is_refused_and_left_alone() {
    let Some(db) = test_pg::fresh_database().await else {
        return;
    };
    let future = schema_version() + 2;
    {
        let store = Store::open_url(&db.url).await.unwrap();
        seed(&store).await;
        let Pool::Postgres(pool) = &store.pool else {
            unreachable!()
        };
        newer(&POSTGRES_MIGRATIONS, future).run(pool).await.unwrap();
        pool.close().await;
    }
    let Err(err) = Store::open_url(&db.url).await else {
        panic!("a database of schema {future} was opened");
    };
    let database = db.url.rsplit('/').next().unwrap().to_owned();
    let msg = assert_refused(err, future, &format!("/{database}"));
    let password = db
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'));
    if let Some((_, pw)) = password.and_then(|(user_info, _)| user_info.split_once(':')) {
        assert!(!msg.contains(pw), "the password leaked: {msg}");
    }

    let pool = PgPoolOptions::new().connect(&db.url).await.unwrap();
    newer(&POSTGRES_MIGRATIONS, future)
        .run(&pool)
        .await
        .unwrap();
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(users, 1);
}
