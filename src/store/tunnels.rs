//! Where agents' tunnels are: one row per (agent, holder), a holder being
//! the relay URL of the server that holds the tunnel (a regional edge or a
//! control replica). Holders refresh `seen_at` every few seconds; the rows
//! of one that stopped doing so expire (it died without saying goodbye).

use super::{Store, StoreError};
use std::collections::BTreeSet;

/// A holder that has not refreshed its rows for this long is gone.
pub const TUNNEL_STALE_SECS: i64 = 30;

impl Store {
    /// Records that `holder` has a tunnel of the agent, seen at `at`.
    /// `false` when the agent does not exist (deleted meanwhile).
    pub async fn tunnel_at(
        &self,
        agent_id: i64,
        holder: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO agent_tunnels (agent_id, holder, seen_at) \
             SELECT id, $2, $3 FROM agents WHERE id = $1 \
             ON CONFLICT (agent_id, holder) DO UPDATE SET seen_at = excluded.seen_at"
        )
        .bind(agent_id)
        .bind(holder)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Forgets `holder`'s tunnel of the agent; `true` if there was one.
    pub async fn tunnel_gone(&self, agent_id: i64, holder: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM agent_tunnels WHERE agent_id = $1 AND holder = $2"
        )
        .bind(agent_id)
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Makes `holder`'s rows exactly `agents`, all seen at `at`; returns
    /// the agents added and removed (to tell the catalog).
    pub async fn holder_tunnels(
        &self,
        holder: &str,
        agents: &[i64],
        at: i64,
    ) -> Result<(Vec<i64>, Vec<i64>), StoreError> {
        let rows: Vec<(i64,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT agent_id FROM agent_tunnels WHERE holder = $1"
        )
        .bind(holder)
        .fetch_all(pool)
        .await)?;
        let had: BTreeSet<i64> = rows.into_iter().map(|(id,)| id).collect();
        let has: BTreeSet<i64> = agents.iter().copied().collect();
        on_pool!(self, |pool| sqlx::query(
            "UPDATE agent_tunnels SET seen_at = $2 WHERE holder = $1"
        )
        .bind(holder)
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        let mut removed = Vec::new();
        for &id in had.difference(&has) {
            if self.tunnel_gone(id, holder).await? {
                removed.push(id);
            }
        }
        let mut added = Vec::new();
        for &id in has.difference(&had) {
            if self.tunnel_at(id, holder, at).await? {
                added.push(id);
            }
        }
        Ok((added, removed))
    }

    /// Deletes the rows not seen since `before` and returns them as
    /// (agent, holder).
    pub async fn expire_tunnels(&self, before: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "DELETE FROM agent_tunnels WHERE seen_at < $1 RETURNING agent_id, holder"
        )
        .bind(before)
        .fetch_all(pool)
        .await)?)
    }

    /// Every row seen since `since`, as (agent, holder), oldest first.
    pub async fn live_tunnels(&self, since: i64) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT agent_id, holder FROM agent_tunnels WHERE seen_at >= $1 \
             ORDER BY agent_id, seen_at, holder"
        )
        .bind(since)
        .fetch_all(pool)
        .await)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{NewUser, Role};

    store_test! {
        async fn tunnel_rows_follow_holders_and_expire(store: Store) {
            let user = store
                .create_user(NewUser {
                    username: "alice".into(),
                    email: "alice@example.com".into(),
                    password: "correct horse".into(),
                    role: Role::Member,
                    organization: None,
                })
                .await
                .unwrap();
            let ws = store.create_workspace(user.id, "api").await.unwrap();
            let (a, _) = store.create_agent(ws.id, "a").await.unwrap();
            let (b, _) = store.create_agent(ws.id, "b").await.unwrap();
            let eu = "https://eu.example.com";
            let us = "https://us.example.com";

            assert!(store.tunnel_at(a.id, eu, 100).await.unwrap());
            assert!(store.tunnel_at(a.id, eu, 101).await.unwrap(), "refreshing is fine");
            assert!(!store.tunnel_at(9999, eu, 100).await.unwrap(), "no such agent");
            assert!(store.tunnel_at(a.id, us, 102).await.unwrap());
            assert_eq!(
                store.live_tunnels(0).await.unwrap(),
                vec![(a.id, eu.to_owned()), (a.id, us.to_owned())]
            );

            // A heartbeat's full list: b arrived, a left eu.
            let (added, removed) = store.holder_tunnels(eu, &[b.id, 9999], 200).await.unwrap();
            assert_eq!((added, removed), (vec![b.id], vec![a.id]));
            let (added, removed) = store.holder_tunnels(eu, &[b.id], 210).await.unwrap();
            assert!(added.is_empty() && removed.is_empty());

            // us stopped beating: its row expires, eu's stays.
            assert_eq!(store.expire_tunnels(150).await.unwrap(), vec![(a.id, us.to_owned())]);
            assert_eq!(store.live_tunnels(0).await.unwrap(), vec![(b.id, eu.to_owned())]);
            assert!(store.live_tunnels(300).await.unwrap().is_empty(), "stale rows are not live");

            assert!(store.tunnel_gone(b.id, eu).await.unwrap());
            assert!(!store.tunnel_gone(b.id, eu).await.unwrap());

            // Deleting an agent deletes its rows.
            store.tunnel_at(a.id, eu, 300).await.unwrap();
            store.delete_workspace(ws.id).await.unwrap();
            assert!(store.live_tunnels(0).await.unwrap().is_empty());
        }
    }
}
