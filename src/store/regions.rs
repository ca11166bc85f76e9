//! Regions: where `berth edge` processes serve apps. Each has a token (only
//! its hash is stored) that its edges present, and the last heartbeat they
//! sent, from which the API derives health.

use super::{now, write_err, Store, StoreError};
use crate::auth::{token, Secret, TokenHash, TokenKind};
use serde::Serialize;

/// A region as stored (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RegionRow {
    #[serde(skip)]
    pub id: i64,
    pub name: String,
    /// Where its edges answer, e.g. `https://eu.apps.example.com`.
    pub url: String,
    /// The app hosts its edges serve, e.g. `*.eu.apps.example.com`.
    pub wildcard: String,
    pub created_at: String,
    /// Unix seconds of the last heartbeat from any of its edges.
    pub last_heartbeat: Option<i64>,
    /// The berth version that sent it.
    pub version: Option<String>,
    /// Agents connected to its edges at that heartbeat.
    pub agents: i64,
}

const COLUMNS: &str = "id, name, url, wildcard, created_at, last_heartbeat, version, agents";

impl Store {
    /// Creates a region; its token is returned once, here.
    pub async fn create_region(
        &self,
        name: &str,
        url: &str,
        wildcard: &str,
    ) -> Result<(RegionRow, Secret), StoreError> {
        let secret = token::generate(TokenKind::Region);
        let sql = format!(
            "INSERT INTO regions (name, url, wildcard, token_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
        );
        let row: RegionRow = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(name)
            .bind(url)
            .bind(wildcard)
            .bind(TokenHash::of(secret.expose()).to_hex())
            .bind(now())
            .fetch_one(pool)
            .await)
        .map_err(|e| write_err(e, || format!("a region named {name} already exists")))?;
        Ok((row, secret))
    }

    /// Every region, by name.
    pub async fn list_regions(&self) -> Result<Vec<RegionRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM regions ORDER BY name");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .fetch_all(pool)
            .await)?)
    }

    /// Deletes a region; its token stops working at once.
    pub async fn delete_region(&self, name: &str) -> Result<(), StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM regions WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("no region named {name}")));
        }
        Ok(())
    }

    /// The region whose token hashes to `hash`.
    pub async fn region_for_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<RegionRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM regions WHERE token_hash = $1");
        Ok(on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(hash.to_hex())
            .fetch_optional(pool)
            .await)?)
    }

    /// Records an edge's heartbeat for region `id` at `at` (unix seconds).
    pub async fn region_heartbeat(
        &self,
        id: i64,
        at: i64,
        version: &str,
        agents: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE regions SET last_heartbeat = $2, version = $3, agents = $4 WHERE id = $1"
        )
        .bind(id)
        .bind(at)
        .bind(version)
        .bind(agents)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    store_test! {
        async fn regions_are_created_found_by_token_beat_and_deleted(store: Store) {
            let (eu, token) = store
                .create_region("eu", "https://eu.example.com", "*.eu.example.com")
                .await
                .unwrap();
            assert!(token.expose().starts_with("berth_region_"));
            assert_eq!(eu.last_heartbeat, None);
            assert!(matches!(
                store.create_region("eu", "https://x", "*.x").await,
                Err(StoreError::Conflict(_))
            ));
            let found = store.region_for_token(&TokenHash::of(token.expose())).await.unwrap();
            assert_eq!(found.as_ref().map(|r| r.name.as_str()), Some("eu"));
            assert!(store.region_for_token(&TokenHash::of("berth_region_x")).await.unwrap().is_none());
            store.region_heartbeat(eu.id, 1_000, "0.1.0", 3).await.unwrap();
            let all = store.list_regions().await.unwrap();
            assert_eq!((all[0].last_heartbeat, all[0].agents), (Some(1_000), 3));
            assert_eq!(all[0].version.as_deref(), Some("0.1.0"));
            store.delete_region("eu").await.unwrap();
            assert!(matches!(store.delete_region("eu").await, Err(StoreError::NotFound(_))));
            assert!(store.region_for_token(&TokenHash::of(token.expose())).await.unwrap().is_none());
        }
    }
}
