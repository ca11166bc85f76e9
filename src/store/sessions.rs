//! Browser sessions: a random id (carried in signed cookies) per sign-in.

use super::{now, Store, StoreError};
use crate::catalog::Session;
use rand::RngCore;

impl Store {
    /// Starts a session for `user_id` until `expires_at` (unix seconds).
    pub async fn create_session(
        &self,
        user_id: i64,
        expires_at: i64,
    ) -> Result<Session, StoreError> {
        let mut raw = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let id = hex::encode(raw);
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(now())
        .bind(expires_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(Session {
            id,
            user_id,
            expires_at,
        })
    }

    /// Ends a session (sign-out); false if it did not exist.
    pub async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM sessions WHERE id = $1"
        )
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Sessions that have not expired at `now_unix`, for the catalog.
    pub(super) async fn live_sessions(&self, now_unix: i64) -> Result<Vec<Session>, StoreError> {
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, user_id, expires_at FROM sessions WHERE expires_at > $1"
        )
        .bind(now_unix)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(id, user_id, expires_at)| Session {
                id,
                user_id,
                expires_at,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    store_test! {
        async fn sessions_start_end_and_follow_their_user(store: Store) {
            let (user_id, _, _) = crate::store::seed(&store).await;
            let s = store.create_session(user_id, 2_000).await.unwrap();
            assert_eq!(store.live_sessions(1_000).await.unwrap(), vec![s.clone()]);
            assert!(
                store.live_sessions(2_000).await.unwrap().is_empty(),
                "expired"
            );
            assert!(store.delete_session(&s.id).await.unwrap());
            assert!(!store.delete_session(&s.id).await.unwrap());
            let s2 = store.create_session(user_id, 2_000).await.unwrap();
            store.delete_user("alice").await.unwrap();
            assert!(!store.delete_session(&s2.id).await.unwrap(), "cascade");
        }
    }
}
