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

use crate::auth::{password, token, Secret, TokenHash, TokenKind};
use crate::catalog;
use serde::{Deserialize, Serialize};
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

/// A user's site-wide role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May manage every user and workspace.
    Admin,
    /// May manage their own workspaces.
    Member,
}

impl Role {
    /// The stored (and JSON) spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses the stored (and JSON) spelling.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A stored user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    /// argon2id PHC string; never leaves control.
    pub password_hash: String,
    pub role: Role,
    pub organization: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl UserRow {
    /// The catalog's view of this user.
    pub fn to_catalog(&self) -> catalog::User {
        catalog::User {
            id: self.id,
            username: self.username.clone(),
            email: self.email.clone(),
            admin: self.role == Role::Admin,
            organization: self.organization.clone(),
        }
    }
}

/// What [`Store::create_user`] needs; the password is hashed before storing.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub username: String,
    pub email: String,
    pub password: String,
    pub role: Role,
    pub organization: Option<String>,
}

/// A stored API token (its hash only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub id: i64,
    pub user_id: i64,
    pub token_hash: TokenHash,
    /// What the token is for, e.g. `login` or `bootstrap`.
    pub name: String,
    pub created_at: String,
}

/// A stored workspace, with its owner's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceRow {
    pub id: i64,
    pub owner_id: i64,
    /// The owner's user name (joined in).
    pub owner: String,
    pub name: String,
    pub created_at: String,
}

impl WorkspaceRow {
    /// The catalog's view of this workspace.
    pub fn to_catalog(&self) -> catalog::Workspace {
        catalog::Workspace {
            id: self.id,
            owner_id: self.owner_id,
            name: self.name.clone(),
        }
    }
}

/// A stored agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRow {
    pub id: i64,
    pub workspace_id: i64,
    pub name: String,
    pub token_hash: TokenHash,
    pub created_at: String,
}

impl AgentRow {
    /// The catalog's view of this agent.
    pub fn to_catalog(&self) -> catalog::Agent {
        catalog::Agent {
            id: self.id,
            workspace_id: self.workspace_id,
            name: self.name.clone(),
            token_hash: self.token_hash,
        }
    }
}

// Raw rows as the database returns them (plain types, so `FromRow` derives for
// any backend); converted to the public rows above.

#[derive(sqlx::FromRow)]
struct UserRecord {
    id: i64,
    username: String,
    email: String,
    password_hash: String,
    role: String,
    organization: Option<String>,
    created_at: String,
}

impl TryFrom<UserRecord> for UserRow {
    type Error = StoreError;
    fn try_from(r: UserRecord) -> Result<Self, StoreError> {
        let role = Role::parse(&r.role).ok_or_else(|| corrupt("users.role", &r.role))?;
        Ok(UserRow {
            id: r.id,
            username: r.username,
            email: r.email,
            password_hash: r.password_hash,
            role,
            organization: r.organization,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ApiTokenRecord {
    id: i64,
    user_id: i64,
    token_hash: String,
    name: String,
    created_at: String,
}

impl TryFrom<ApiTokenRecord> for ApiTokenRow {
    type Error = StoreError;
    fn try_from(r: ApiTokenRecord) -> Result<Self, StoreError> {
        Ok(ApiTokenRow {
            id: r.id,
            user_id: r.user_id,
            token_hash: parse_hash("api_tokens.token_hash", &r.token_hash)?,
            name: r.name,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct WorkspaceRecord {
    id: i64,
    owner_id: i64,
    owner: String,
    name: String,
    created_at: String,
}

impl From<WorkspaceRecord> for WorkspaceRow {
    fn from(r: WorkspaceRecord) -> Self {
        WorkspaceRow {
            id: r.id,
            owner_id: r.owner_id,
            owner: r.owner,
            name: r.name,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AgentRecord {
    id: i64,
    workspace_id: i64,
    name: String,
    token_hash: String,
    created_at: String,
}

impl TryFrom<AgentRecord> for AgentRow {
    type Error = StoreError;
    fn try_from(r: AgentRecord) -> Result<Self, StoreError> {
        Ok(AgentRow {
            id: r.id,
            workspace_id: r.workspace_id,
            name: r.name,
            token_hash: parse_hash("agents.token_hash", &r.token_hash)?,
            created_at: r.created_at,
        })
    }
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

const USER_COLUMNS: &str = "id, username, email, password_hash, role, organization, created_at";
const WORKSPACE_SELECT: &str =
    "SELECT w.id, w.owner_id, u.username AS owner, w.name, w.created_at \
     FROM workspaces w JOIN users u ON u.id = w.owner_id";
const AGENT_COLUMNS: &str = "id, workspace_id, name, token_hash, created_at";

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

    // ---- users ----

    /// Creates a user, hashing the password (argon2id, off the async threads).
    /// [`StoreError::Conflict`] if the name is taken.
    pub async fn create_user(&self, new: NewUser) -> Result<UserRow, StoreError> {
        let NewUser {
            username,
            email,
            password,
            role,
            organization,
        } = new;
        let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .expect("password hashing does not panic");
        let sql = format!(
            "INSERT INTO users (username, email, password_hash, role, organization, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {USER_COLUMNS}"
        );
        let rec: UserRecord = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(&username)
            .bind(&email)
            .bind(&password_hash)
            .bind(role.as_str())
            .bind(&organization)
            .bind(now())
            .fetch_one(pool)
            .await)
        .map_err(|e| write_err(e, || format!("a user named {username} already exists")))?;
        rec.try_into()
    }

    /// The user with this id.
    pub async fn user(&self, id: i64) -> Result<UserRow, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        rec.ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))?
            .try_into()
    }

    /// The user with this name.
    pub async fn user_by_name(&self, username: &str) -> Result<UserRow, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(username)
            .fetch_optional(pool)
            .await)?;
        rec.ok_or_else(|| StoreError::NotFound(format!("no user named {username}")))?
            .try_into()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        convert(on_pool!(self, |pool| sqlx::query_as::<_, UserRecord>(
            &sql
        )
        .fetch_all(pool)
        .await)?)
    }

    /// How many users exist (zero means a fresh database).
    pub async fn user_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = on_pool!(self, |pool| sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await)?;
        Ok(n)
    }

    /// Deletes a user by name, with (by cascade) their tokens, workspaces and
    /// agents. Returns the deleted row.
    pub async fn delete_user(&self, username: &str) -> Result<UserRow, StoreError> {
        let sql = format!("DELETE FROM users WHERE username = $1 RETURNING {USER_COLUMNS}");
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(username)
            .fetch_optional(pool)
            .await)?;
        rec.ok_or_else(|| StoreError::NotFound(format!("no user named {username}")))?
            .try_into()
    }

    /// Changes a user's role and organization (`None` leaves the role as it
    /// is; the organization is set as given, `None` clearing it).
    pub async fn update_user(
        &self,
        username: &str,
        role: Option<Role>,
        organization: Option<&str>,
    ) -> Result<UserRow, StoreError> {
        let sql = format!(
            "UPDATE users SET role = COALESCE($2, role), organization = $3 WHERE username = $1 \
             RETURNING {USER_COLUMNS}"
        );
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(username)
            .bind(role.map(Role::as_str))
            .bind(organization)
            .fetch_optional(pool)
            .await)?;
        rec.ok_or_else(|| StoreError::NotFound(format!("no user named {username}")))?
            .try_into()
    }

    /// Checks a password. `None` for an unknown user or a wrong password; both
    /// take one argon2 verification, so timing does not tell them apart.
    pub async fn verify_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<UserRow>, StoreError> {
        let user = match self.user_by_name(username).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            password::verify_or_dummy(&password, stored.as_deref())
        })
        .await
        .expect("password verification does not panic");
        Ok(user.filter(|_| ok))
    }

    // ---- API tokens ----

    /// Mints an API token for a user. The [`Secret`] is returned only here;
    /// the database keeps its hash. [`StoreError::NotFound`] if the user is gone.
    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
    ) -> Result<(ApiTokenRow, Secret), StoreError> {
        let secret = token::generate(TokenKind::Api);
        let hash = TokenHash::of(secret.expose());
        let rec: ApiTokenRecord = on_pool!(self, |pool| sqlx::query_as(
            "INSERT INTO api_tokens (user_id, token_hash, name, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id, user_id, token_hash, name, created_at",
        )
        .bind(user_id)
        .bind(hash.to_hex())
        .bind(name)
        .bind(now())
        .fetch_one(pool)
        .await)
        .map_err(|e| write_err(e, || "token collision".into()))?;
        Ok((rec.try_into()?, secret))
    }

    /// The user an API token belongs to, if any (the edge uses the catalog;
    /// this is for checks such as bootstrap's).
    pub async fn user_for_api_token(&self, hash: &TokenHash) -> Result<Option<i64>, StoreError> {
        let row: Option<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT user_id FROM api_tokens WHERE token_hash = $1"
        )
        .bind(hash.to_hex())
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(id,)| id))
    }

    // ---- workspaces ----

    /// Creates a workspace. [`StoreError::Conflict`] if the owner already has
    /// one by that name, [`StoreError::NotFound`] if the owner is gone.
    pub async fn create_workspace(
        &self,
        owner_id: i64,
        name: &str,
    ) -> Result<WorkspaceRow, StoreError> {
        let sql =
            "INSERT INTO workspaces (owner_id, name, created_at) VALUES ($1, $2, $3) RETURNING id";
        let (id,): (i64,) = on_pool!(self, |pool| sqlx::query_as(sql)
            .bind(owner_id)
            .bind(name)
            .bind(now())
            .fetch_one(pool)
            .await)
        .map_err(|e| write_err(e, || format!("a workspace named {name} already exists")))?;
        self.workspace(id).await
    }

    /// The workspace with this id.
    pub async fn workspace(&self, id: i64) -> Result<WorkspaceRow, StoreError> {
        let sql = format!("{WORKSPACE_SELECT} WHERE w.id = $1");
        let rec: Option<WorkspaceRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        rec.map(Into::into)
            .ok_or_else(|| StoreError::NotFound(format!("no workspace with id {id}")))
    }

    /// The workspace `name` of user `owner`.
    pub async fn workspace_by_name(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<WorkspaceRow, StoreError> {
        let sql = format!("{WORKSPACE_SELECT} WHERE u.username = $1 AND w.name = $2");
        let rec: Option<WorkspaceRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(owner)
            .bind(name)
            .fetch_optional(pool)
            .await)?;
        rec.map(Into::into)
            .ok_or_else(|| StoreError::NotFound(format!("no workspace {owner}/{name}")))
    }

    /// Workspaces by owner name then name: all of them, or one owner's.
    pub async fn list_workspaces(
        &self,
        owner_id: Option<i64>,
    ) -> Result<Vec<WorkspaceRow>, StoreError> {
        let recs: Vec<WorkspaceRecord> = match owner_id {
            Some(id) => {
                let sql =
                    format!("{WORKSPACE_SELECT} WHERE w.owner_id = $1 ORDER BY u.username, w.name");
                on_pool!(self, |pool| sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_all(pool)
                    .await)?
            }
            None => {
                let sql = format!("{WORKSPACE_SELECT} ORDER BY u.username, w.name");
                on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?
            }
        };
        Ok(recs.into_iter().map(Into::into).collect())
    }

    /// Deletes a workspace and (by cascade) its agents.
    pub async fn delete_workspace(&self, id: i64) -> Result<(), StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM workspaces WHERE id = $1"
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("no workspace with id {id}")));
        }
        Ok(())
    }

    // ---- agents ----

    /// Creates an agent with a fresh `berth_agent_` token, returned only here.
    /// [`StoreError::Conflict`] if the workspace already has one by that name.
    pub async fn create_agent(
        &self,
        workspace_id: i64,
        name: &str,
    ) -> Result<(AgentRow, Secret), StoreError> {
        let secret = token::generate(TokenKind::Agent);
        let sql = format!(
            "INSERT INTO agents (workspace_id, name, token_hash, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {AGENT_COLUMNS}"
        );
        let rec: AgentRecord = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(name)
            .bind(TokenHash::of(secret.expose()).to_hex())
            .bind(now())
            .fetch_one(pool)
            .await)
        .map_err(|e| write_err(e, || format!("an agent named {name} already exists")))?;
        Ok((rec.try_into()?, secret))
    }

    /// The agent `name` of a workspace.
    pub async fn agent_by_name(
        &self,
        workspace_id: i64,
        name: &str,
    ) -> Result<AgentRow, StoreError> {
        let sql =
            format!("SELECT {AGENT_COLUMNS} FROM agents WHERE workspace_id = $1 AND name = $2");
        let rec: Option<AgentRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(name)
            .fetch_optional(pool)
            .await)?;
        rec.ok_or_else(|| StoreError::NotFound(format!("no agent named {name}")))?
            .try_into()
    }

    /// A workspace's agents, by name.
    pub async fn list_agents(&self, workspace_id: i64) -> Result<Vec<AgentRow>, StoreError> {
        let sql =
            format!("SELECT {AGENT_COLUMNS} FROM agents WHERE workspace_id = $1 ORDER BY name");
        convert(on_pool!(self, |pool| sqlx::query_as::<_, AgentRecord>(
            &sql
        )
        .bind(workspace_id)
        .fetch_all(pool)
        .await)?)
    }

    /// Every agent, by workspace then name.
    pub async fn list_all_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY workspace_id, name");
        convert(on_pool!(self, |pool| sqlx::query_as::<_, AgentRecord>(
            &sql
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Replaces an agent's token; the old one stops working once the caller
    /// applies the returned row to the catalog.
    pub async fn rotate_agent_token(
        &self,
        agent_id: i64,
    ) -> Result<(AgentRow, Secret), StoreError> {
        let secret = token::generate(TokenKind::Agent);
        let sql =
            format!("UPDATE agents SET token_hash = $1 WHERE id = $2 RETURNING {AGENT_COLUMNS}");
        let rec: Option<AgentRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(TokenHash::of(secret.expose()).to_hex())
            .bind(agent_id)
            .fetch_optional(pool)
            .await)
        .map_err(|e| write_err(e, || "token collision".into()))?;
        let row = rec
            .ok_or_else(|| StoreError::NotFound(format!("no agent with id {agent_id}")))?
            .try_into()?;
        Ok((row, secret))
    }

    // ---- catalog ----

    /// Everything the catalog holds, as changes to apply to an empty one:
    /// users, then API tokens, workspaces and agents.
    pub async fn snapshot(&self) -> Result<Vec<catalog::Change>, StoreError> {
        let users = self.list_users().await?;
        let tokens: Vec<ApiTokenRow> =
            convert(on_pool!(self, |pool| sqlx::query_as::<_, ApiTokenRecord>(
                "SELECT id, user_id, token_hash, name, created_at FROM api_tokens ORDER BY id",
            )
            .fetch_all(pool)
            .await)?)?;
        let workspaces = self.list_workspaces(None).await?;
        let agents = self.list_all_agents().await?;
        let mut out =
            Vec::with_capacity(users.len() + tokens.len() + workspaces.len() + agents.len());
        out.extend(users.iter().map(|u| catalog::Change::User(u.to_catalog())));
        out.extend(tokens.iter().map(|t| catalog::Change::ApiToken {
            hash: t.token_hash,
            user_id: t.user_id,
        }));
        out.extend(
            workspaces
                .iter()
                .map(|w| catalog::Change::Workspace(w.to_catalog())),
        );
        out.extend(
            agents
                .iter()
                .map(|a| catalog::Change::Agent(a.to_catalog())),
        );
        let (shares, apps) = self.all_shares_and_apps().await?;
        out.extend(shares.into_iter().map(catalog::Change::Share));
        out.extend(apps.into_iter().map(catalog::Change::App));
        out.extend(
            self.live_links()
                .await?
                .iter()
                .filter_map(LinkRow::to_catalog)
                .map(catalog::Change::Link),
        );
        let now_unix = OffsetDateTime::now_utc().unix_timestamp();
        out.extend(
            self.live_sessions(now_unix)
                .await?
                .into_iter()
                .map(catalog::Change::Session),
        );
        out.extend(
            self.live_tunnels(now_unix - TUNNEL_STALE_SECS)
                .await?
                .into_iter()
                .map(|(agent_id, holder)| catalog::Change::TunnelAt { agent_id, holder }),
        );
        Ok(out)
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
mod audit;
mod connect;
mod links;
mod notify;
mod regions;
mod sessions;
mod shares;
mod tunnels;
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
pub use audit::AuditRow;
pub use connect::{
    redact_url, schema_version, PoolSettings, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
};
pub use links::LinkRow;
pub use notify::CHANGES_CHANNEL;
pub use regions::RegionRow;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod upgrade_tests;
