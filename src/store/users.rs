//! Users and their API tokens: the rows, and the queries on them.

use super::{convert, corrupt, found, now, parse_hash, write_err, Store, StoreError};
use crate::auth::{password, token, Secret, TokenHash, TokenKind};
use crate::catalog;
use serde::{Deserialize, Serialize};

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

const USER_COLUMNS: &str = "id, username, email, password_hash, role, organization, created_at";

impl Store {
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
        found(rec, || format!("no user with id {id}"))?.try_into()
    }

    /// The user with this name.
    pub async fn user_by_name(&self, username: &str) -> Result<UserRow, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(username)
            .fetch_optional(pool)
            .await)?;
        found(rec, || format!("no user named {username}"))?.try_into()
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
        found(rec, || format!("no user named {username}"))?.try_into()
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
        found(rec, || format!("no user named {username}"))?.try_into()
    }

    /// Sets a user's password (hashed with argon2id off the async threads).
    /// [`StoreError::NotFound`] if there is no such user.
    pub async fn set_password(
        &self,
        username: &str,
        password: &str,
    ) -> Result<UserRow, StoreError> {
        let password = password.to_owned();
        let password_hash = tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .expect("password hashing does not panic");
        let sql = format!(
            "UPDATE users SET password_hash = $2 WHERE username = $1 RETURNING {USER_COLUMNS}"
        );
        let rec: Option<UserRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(username)
            .bind(&password_hash)
            .fetch_optional(pool)
            .await)?;
        found(rec, || format!("no user named {username}"))?.try_into()
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

    /// Every API token (hashes only), oldest first.
    pub(super) async fn list_api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        convert(on_pool!(self, |pool| sqlx::query_as::<_, ApiTokenRecord>(
            "SELECT id, user_id, token_hash, name, created_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(pool)
        .await)?)
    }
}
