//! The control plane's durable state: users, API tokens, workspaces and agents.
//!
//! [`Store`] is the only place that speaks SQL. It runs on SQLite (one file,
//! `data_dir/berth.db`, WAL mode) or PostgreSQL (`server.database_url =
//! "postgres://..."`), behind the same methods: each statement is written once
//! in SQL both accept (`RETURNING`, `ON CONFLICT`, `ON DELETE CASCADE`,
//! numbered `$1` binds) and compiled once per backend by `on_pool!`, so each
//! runs through its own driver with its own types. The schemas differ only in
//! id columns and integer widths (`migrations/sqlite`, `migrations/postgres`).
//!
//! Secrets never reach the database: passwords are stored as argon2id PHC
//! strings, tokens as the hex SHA-256 ([`TokenHash::to_hex`]). A freshly
//! minted token is handed back once, as a [`Secret`], by the method that made it.
//!
//! After a write, the caller (control) applies the matching
//! [`catalog::Change`] so the edge's in-memory picture follows; at start,
//! [`Store::snapshot`] yields the changes that fill an empty catalog.

use crate::auth::TokenHash;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The database file inside the data directory.
pub const DB_FILE: &str = "berth.db";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (the message says what exists).
    #[error("{0}")]
    Conflict(String),
    /// The record named does not exist (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database's schema is newer than this binary's (a downgrade):
    /// refused before anything is written, so the newer berth can still use it.
    #[error(
        "{target} was written by a newer berth (schema {database}); this berth ({}) \
         knows schema {binary}: upgrade berth, or restore a backup taken with this \
         version (docs/install.md, \"Upgrading\")",
        env!("CARGO_PKG_VERSION")
    )]
    SchemaTooNew {
        /// The database: a SQLite file, or PostgreSQL without its password.
        target: String,
        /// The newest migration applied to the database.
        database: i64,
        /// The newest migration this binary has.
        binary: i64,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The configured database is not one this build can use.
    #[error("{0}")]
    Unsupported(String),
    /// The database server could not be reached, or refused the login.
    /// `target` names user, host and database, never the password.
    #[error(
        "cannot connect to {target}: {cause} (check that the server is up and \
         that the user, password and database in server.database_url are right)"
    )]
    Connect {
        /// The database, without its password.
        target: String,
        /// What the driver reported.
        cause: sqlx::Error,
    },
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Db(sqlx::Error::Decode(
        format!("unexpected value in {column}: {value:?}").into(),
    ))
}

fn parse_hash(column: &str, hex: &str) -> Result<TokenHash, StoreError> {
    TokenHash::from_hex(hex).ok_or_else(|| corrupt(column, hex))
}

fn convert<R, T: TryFrom<R, Error = StoreError>>(rows: Vec<R>) -> Result<Vec<T>, StoreError> {
    rows.into_iter().map(T::try_from).collect()
}

/// Maps a failed write: a unique violation becomes [`StoreError::Conflict`]
/// with `conflict`, a foreign-key violation [`StoreError::NotFound`].
fn write_err(e: sqlx::Error, conflict: impl FnOnce() -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(conflict());
        }
        if db.is_foreign_key_violation() {
            return StoreError::NotFound("the record it belongs to no longer exists".into());
        }
    }
    StoreError::Db(e)
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| OffsetDateTime::now_utc())
        .format(&Rfc3339)
        .expect("RFC 3339 formats every UTC time")
}

/// The row a query found, or [`StoreError::NotFound`] saying what is missing.
fn found<T>(row: Option<T>, missing: impl FnOnce() -> String) -> Result<T, StoreError> {
    row.ok_or_else(|| StoreError::NotFound(missing()))
}

/// Which database a [`Store`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A local file (or, in tests, memory).
    Sqlite,
    /// A PostgreSQL server, which several control replicas may share.
    Postgres,
}

/// The pool of one backend.
#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, once per backend: the
/// statement text is shared, while binds and row decoding are each driver's
/// own. The body must have the same type on both (map `execute` results to
/// `rows_affected()` inside it).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}

/// Handle to the database; cheap to clone (a connection pool).
#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    /// Random id of this process's store, so that a replica can tell its own
    /// change notices from the others' (see `notify.rs`).
    replica: std::sync::Arc<str>,
    /// Held shared while a local change is applied to the catalog and
    /// exclusively while the catalog is rebuilt, so a rebuild from an older
    /// snapshot never undoes a change committed after that snapshot was read.
    catalog_sync: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl Store {
    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }
}

/// Declares each test as a module with two tests, `sqlite` and `postgres`,
/// that run the same body on a fresh store of that backend (the PostgreSQL
/// one on its own database; skipped as [`test_pg`] explains).
#[cfg(test)]
macro_rules! store_test {
    ($(async fn $name:ident($store:ident: Store) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($store: $crate::store::Store) $body
            #[tokio::test]
            async fn sqlite() {
                run($crate::store::Store::open_memory().await.expect("in-memory store")).await;
            }
            #[tokio::test]
            async fn postgres() {
                let Some(db) = $crate::store::test_pg::fresh_database().await else {
                    return;
                };
                let store = $crate::store::Store::open_url(&db.url)
                    .await
                    .expect("PostgreSQL store");
                run(store).await;
            }
        }
    )*};
}

mod acme;
mod activity;
mod audit;
mod connect;
mod groups;
mod links;
mod notify;
mod regions;
mod sessions;
mod shares;
mod signing_keys;
mod snapshot;
mod tunnels;
mod users;
mod workspaces;
pub use tunnels::TUNNEL_STALE_SECS;

#[cfg(test)]
pub(crate) mod test_pg;

/// For tests: creates user `alice`, workspace `api` and agent `main`; returns
/// the user's, the workspace's and the agent's ids.
#[cfg(test)]
pub(crate) async fn seed(store: &Store) -> (i64, i64, i64) {
    let user = store
        .create_user(NewUser {
            username: "alice".into(),
            email: "a@x".into(),
            password: "password1".into(),
            role: Role::Member,
            organization: None,
        })
        .await
        .unwrap();
    let ws = store.create_workspace(user.id, "api").await.unwrap();
    let (agent, _) = store.create_agent(ws.id, "main").await.unwrap();
    (user.id, ws.id, agent.id)
}

pub use acme::AcmeCertRow;
pub use activity::{PortActivity, WorkspaceActivity};
pub use audit::AuditRow;
pub use connect::schema_version;
pub use groups::{GroupRow, MemberSource, MAX_GROUP_NAME};
pub use links::LinkRow;
pub use notify::CHANGES_CHANNEL;
pub use regions::RegionRow;
pub use users::{ApiTokenRow, NewUser, Role, UserRow};
pub use workspaces::{AgentRow, WorkspaceRow};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;
