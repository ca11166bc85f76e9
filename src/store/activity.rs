//! Activity: when each port of an agent last served a request (edges
//! report it), and the webhook calls made per workspace. Claiming a call
//! is one conditional write, so of several control replicas exactly one
//! makes it.

use super::{Store, StoreError};

/// One port's last activity, with its agent's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortActivity {
    pub agent: String,
    pub port: u16,
    /// Unix seconds.
    pub last_at: i64,
}

/// A workspace's last activity (over all its ports) and the idle call
/// already made for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceActivity {
    pub workspace_id: i64,
    pub owner: String,
    pub name: String,
    /// Unix seconds.
    pub last_at: i64,
    /// The `last_at` the idle webhook was last called for (0: never).
    pub idle_notified_for: i64,
}

impl Store {
    /// Records that `port` of the agent was active at `at` (kept only if
    /// later than what is stored). `false` when the agent does not exist.
    pub async fn record_activity(
        &self,
        agent_id: i64,
        port: u16,
        at: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO port_activity (agent_id, port, last_at) \
             SELECT id, $2, $3 FROM agents WHERE id = $1 \
             ON CONFLICT (agent_id, port) DO UPDATE SET last_at = excluded.last_at \
             WHERE port_activity.last_at < excluded.last_at"
        )
        .bind(agent_id)
        .bind(i64::from(port))
        .bind(at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The ports of the workspace's agents that have been active, by agent
    /// name and port.
    pub async fn workspace_ports_activity(
        &self,
        workspace_id: i64,
    ) -> Result<Vec<PortActivity>, StoreError> {
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT a.name, p.port, p.last_at FROM port_activity p \
             JOIN agents a ON a.id = p.agent_id \
             WHERE a.workspace_id = $1 ORDER BY a.name, p.port"
        )
        .bind(workspace_id)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(agent, port, last_at)| PortActivity {
                agent,
                port: u16::try_from(port).unwrap_or_default(),
                last_at,
            })
            .collect())
    }

    /// Every workspace that has been active, with its last activity.
    pub async fn workspaces_activity(&self) -> Result<Vec<WorkspaceActivity>, StoreError> {
        let rows: Vec<(i64, String, String, i64, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT w.id, u.username, w.name, MAX(p.last_at), \
                    COALESCE(MAX(h.idle_notified_for), 0) \
             FROM port_activity p \
             JOIN agents a ON a.id = p.agent_id \
             JOIN workspaces w ON w.id = a.workspace_id \
             JOIN users u ON u.id = w.owner_id \
             LEFT JOIN workspace_hooks h ON h.workspace_id = w.id \
             GROUP BY w.id, u.username, w.name ORDER BY w.id"
        )
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(workspace_id, owner, name, last_at, idle_notified_for)| WorkspaceActivity {
                    workspace_id,
                    owner,
                    name,
                    last_at,
                    idle_notified_for,
                },
            )
            .collect())
    }

    /// Claims the idle call for the workspace's activity ending at `last_at`:
    /// `true` for the one caller that gets it, `false` when it was made.
    pub async fn claim_idle_call(
        &self,
        workspace_id: i64,
        last_at: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO workspace_hooks (workspace_id, idle_notified_for) \
             SELECT id, $2 FROM workspaces WHERE id = $1 \
             ON CONFLICT (workspace_id) DO UPDATE SET idle_notified_for = excluded.idle_notified_for \
             WHERE workspace_hooks.idle_notified_for < excluded.idle_notified_for"
        )
        .bind(workspace_id)
        .bind(last_at)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        })?;
        Ok(done > 0)
    }

    /// Claims a wake call for the workspace at `now` unless one was made
    /// within `cooldown_secs`: `true` for the one caller that gets it.
    pub async fn claim_wake_call(
        &self,
        workspace_id: i64,
        now: i64,
        cooldown_secs: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "INSERT INTO workspace_hooks (workspace_id, wake_called_at) \
             SELECT id, $2 FROM workspaces WHERE id = $1 \
             ON CONFLICT (workspace_id) DO UPDATE SET wake_called_at = excluded.wake_called_at \
             WHERE workspace_hooks.wake_called_at <= $3"
        )
        .bind(workspace_id)
        .bind(now)
        .bind(now - cooldown_secs)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }
}

#[cfg(test)]
mod tests {
    store_test! {
        async fn activity_keeps_the_latest_and_each_call_is_claimed_once(store: Store) {
            crate::store::seed(&store).await;
            let ws = store.workspace_by_name("alice", "api").await.unwrap();
            let agent = store.agent_by_name(ws.id, "main").await.unwrap();
            assert!(store.record_activity(agent.id, 3000, 100).await.unwrap());
            assert!(!store.record_activity(agent.id, 3000, 90).await.unwrap(), "older: kept 100");
            assert!(store.record_activity(agent.id, 8080, 120).await.unwrap());
            assert!(!store.record_activity(999_999, 1, 1).await.unwrap(), "no such agent");
            let ports = store.workspace_ports_activity(ws.id).await.unwrap();
            assert_eq!(ports.len(), 2);
            assert_eq!((ports[0].port, ports[0].last_at), (3000, 100));
            let all = store.workspaces_activity().await.unwrap();
            assert_eq!(all.len(), 1);
            assert_eq!((all[0].last_at, all[0].idle_notified_for), (120, 0));
            assert_eq!((all[0].owner.as_str(), all[0].name.as_str()), ("alice", "api"));

            assert!(store.claim_idle_call(ws.id, 120).await.unwrap());
            assert!(!store.claim_idle_call(ws.id, 120).await.unwrap(), "once per activity");
            assert_eq!(store.workspaces_activity().await.unwrap()[0].idle_notified_for, 120);
            assert!(store.claim_idle_call(ws.id, 150).await.unwrap(), "new activity, new call");

            assert!(store.claim_wake_call(ws.id, 1_000, 60).await.unwrap());
            assert!(!store.claim_wake_call(ws.id, 1_030, 60).await.unwrap(), "cooling down");
            assert!(store.claim_wake_call(ws.id, 1_060, 60).await.unwrap());
            assert!(!store.claim_wake_call(999_999, 1_000, 60).await.unwrap());
        }
    }
}
