//! The audit log: one row per security-relevant action.

use super::{now, Store, StoreError};
use serde::Serialize;

/// One audit event as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// The user name who acted.
    pub actor: String,
    /// e.g. `port.shared`, `link.revoked`, `session.started`.
    pub action: String,
    /// What it was done to, e.g. `admin/dev/main:3000 public`.
    pub target: String,
    /// The client's IP address as the server saw it (empty if unknown).
    pub source: String,
}

impl Store {
    /// Appends one event.
    pub async fn record_audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        source: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO audit_events (at, actor, action, target, source) VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(now())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(source)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The newest `limit` events, newest first.
    pub async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        Ok(on_pool!(self, |pool| {
            sqlx::query_as(
            "SELECT id, at, actor, action, target, source FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(pool)
        .await
        })?)
    }
}

#[cfg(test)]
mod tests {
    store_test! {
        async fn events_come_back_newest_first(store: Store) {
            crate::store::seed(&store).await;
            store
                .record_audit("alice", "port.shared", "alice/api/main:3000 public", "10.0.0.7")
                .await
                .unwrap();
            store
                .record_audit("alice", "link.created", "x", "")
                .await
                .unwrap();
            let rows = store.list_audit(10).await.unwrap();
            assert_eq!(rows.len(), 2);
            assert_eq!(rows[0].action, "link.created");
            assert_eq!(rows[1].source, "10.0.0.7");
            assert_eq!(store.list_audit(1).await.unwrap().len(), 1);
        }
    }
}
