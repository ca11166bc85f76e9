//! Control replicas on one PostgreSQL database kept in step with
//! `LISTEN/NOTIFY`.
//!
//! After each write, control hands the [`Change`] to [`Store::apply_and_publish`]:
//! it is applied to this replica's catalog, then sent as a `NOTIFY` on
//! [`CHANGES_CHANNEL`] with the change as JSON and this store's replica id. [`Store::follow_changes`] listens on
//! the channel and applies the other replicas' changes to this catalog. A
//! notice too large for `NOTIFY` (8000 bytes) goes out as "resync", and a
//! listener that (re)connects rebuilds the catalog from [`Store::snapshot`]
//! after it is listening again, so a change is never lost between the two.
//! On SQLite (one process owns the file) both are no-ops.

use super::{Pool, Store, StoreError};
use crate::catalog::{Catalog, Change};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use std::time::Duration;

/// The `NOTIFY` channel control replicas share.
pub const CHANGES_CHANNEL: &str = "berth_catalog";

/// PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7999;

/// Longest pause between reconnection attempts of the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One notice on the channel.
#[derive(Serialize, Deserialize)]
struct Notice {
    /// The replica that applied the change already.
    from: String,
    /// The change; `None`: rebuild from the database.
    change: Option<Change>,
}

impl Store {
    /// Applies a change this replica has committed to its catalog, then tells
    /// the other replicas on this database (PostgreSQL; on SQLite only the
    /// first). A publish error leaves the local catalog updated.
    pub async fn apply_and_publish(
        &self,
        catalog: &Catalog,
        change: Change,
    ) -> Result<(), StoreError> {
        {
            let _shared = self.catalog_sync.read().await;
            catalog.apply(change.clone());
        }
        self.publish(&change).await
    }

    /// Rebuilds `catalog` from a fresh snapshot, with local changes held off
    /// until done (see `catalog_sync`).
    async fn resync(&self, catalog: &Catalog) -> Result<(), StoreError> {
        let _exclusive = self.catalog_sync.write().await;
        catalog.resync(self.snapshot().await?);
        Ok(())
    }

    /// Sends `change` on the channel (PostgreSQL only).
    async fn publish(&self, change: &Change) -> Result<(), StoreError> {
        let Pool::Postgres(pool) = &self.pool else {
            return Ok(());
        };
        let mut notice = Notice {
            from: self.replica.to_string(),
            change: Some(change.clone()),
        };
        let mut payload = serde_json::to_string(&notice).unwrap_or_default();
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            notice.change = None;
            payload = serde_json::to_string(&notice).unwrap_or_default();
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(payload)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// Applies the other replicas' changes to `catalog`, for as long as the
    /// returned future runs (spawn it; abort it to stop). Reconnects with
    /// back-off and rebuilds the catalog each time it is listening again.
    /// Returns at once on SQLite.
    pub async fn follow_changes(&self, catalog: &Catalog) {
        let Pool::Postgres(pool) = &self.pool else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = tokio::time::Instant::now();
            let why = match self.follow_once(pool, catalog).await {
                Ok(()) => "connection lost".to_owned(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > MAX_BACKOFF * 2 {
                backoff = Duration::from_millis(100);
            }
            tracing::warn!(error = %why, retry_in = ?backoff, "replica change listener stopped; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One listening session: listen, rebuild, then apply notices until the
    /// connection drops (`Ok`) or fails (`Err`).
    async fn follow_once(&self, pool: &sqlx::PgPool, catalog: &Catalog) -> Result<(), StoreError> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        self.resync(catalog).await?;
        loop {
            let Some(notification) = listener.try_recv().await? else {
                return Ok(());
            };
            match serde_json::from_str::<Notice>(notification.payload()) {
                Ok(notice) if *notice.from == *self.replica => {}
                Ok(Notice {
                    change: Some(change),
                    ..
                }) => catalog.apply(change),
                Ok(Notice { change: None, .. }) => self.resync(catalog).await?,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed notice on {CHANGES_CHANNEL}; rebuilding the catalog");
                    self.resync(catalog).await?;
                }
            }
        }
    }
}
