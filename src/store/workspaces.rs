//! Workspaces and their agents: the rows, and the queries on them.

use super::{convert, found, now, parse_hash, write_err, Store, StoreError};
use crate::auth::{token, Secret, TokenHash, TokenKind};
use crate::catalog;

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
const WORKSPACE_SELECT: &str =
    "SELECT w.id, w.owner_id, u.username AS owner, w.name, w.created_at \
     FROM workspaces w JOIN users u ON u.id = w.owner_id";
const AGENT_COLUMNS: &str = "id, workspace_id, name, token_hash, created_at";

impl Store {
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
        found(rec, || format!("no workspace with id {id}")).map(Into::into)
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
        found(rec, || format!("no workspace {owner}/{name}")).map(Into::into)
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
        found(rec, || format!("no agent named {name}"))?.try_into()
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
        let row = found(rec, || format!("no agent with id {agent_id}"))?.try_into()?;
        Ok((row, secret))
    }
}
