//! Shares (who may reach a port) and apps (names given to ports).

use super::{now, write_err, Store, StoreError};
use crate::auth::ShareLevel;
use crate::catalog::{App, Cors, Protocol, Share};

#[derive(sqlx::FromRow)]
struct ShareRecord {
    agent_id: i64,
    port: i64,
    level: String,
    protocol: String,
    cors: String,
    inspect: bool,
    expires_at: Option<i64>,
}

/// The columns of a [`ShareRecord`].
const SHARE_COLUMNS: &str = "agent_id, port, level, protocol, cors, expires_at, inspect";

impl TryFrom<ShareRecord> for Share {
    type Error = StoreError;
    fn try_from(r: ShareRecord) -> Result<Share, StoreError> {
        Ok(Share {
            agent_id: r.agent_id,
            port: port(r.port)?,
            level: ShareLevel::parse(&r.level).ok_or_else(|| corrupt("shares.level", &r.level))?,
            protocol: Protocol::parse(&r.protocol)
                .ok_or_else(|| corrupt("shares.protocol", &r.protocol))?,
            cors: Cors::parse(&r.cors).ok_or_else(|| corrupt("shares.cors", &r.cors))?,
            inspect: r.inspect,
            users: vec![],
            groups: vec![],
            expires_at: r.expires_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AppRecord {
    agent_id: i64,
    name: String,
    port: i64,
    protocol: String,
}

impl TryFrom<AppRecord> for App {
    type Error = StoreError;
    fn try_from(r: AppRecord) -> Result<App, StoreError> {
        Ok(App {
            agent_id: r.agent_id,
            port: port(r.port)?,
            protocol: Protocol::parse(&r.protocol)
                .ok_or_else(|| corrupt("apps.protocol", &r.protocol))?,
            name: r.name,
        })
    }
}

fn port(p: i64) -> Result<u16, StoreError> {
    u16::try_from(p).map_err(|_| corrupt("port", &p.to_string()))
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Db(sqlx::Error::Decode(
        format!("{column} holds {value:?}, which this version does not know").into(),
    ))
}

impl Store {
    /// Sets how a port is shared (insert or update), with the users and
    /// groups it names (replacing those it named), in one transaction.
    pub async fn put_share(&self, share: &Share) -> Result<(), StoreError> {
        let sql =
            "INSERT INTO shares (agent_id, port, level, protocol, cors, expires_at, updated_at, inspect) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
            ON CONFLICT (agent_id, port) DO UPDATE SET level = excluded.level, \
            protocol = excluded.protocol, cors = excluded.cors, \
            expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
            inspect = excluded.inspect";
        let port = i64::from(share.port);
        on_pool!(self, |pool| async {
            let mut tx = pool.begin().await?;
            sqlx::query(sql)
                .bind(share.agent_id)
                .bind(port)
                .bind(share.level.as_str())
                .bind(share.protocol.as_str())
                .bind(share.cors.as_str())
                .bind(share.expires_at)
                .bind(now())
                .bind(share.inspect)
                .execute(&mut *tx)
                .await?;
            for table in ["share_users", "share_groups"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE agent_id = $1 AND port = $2"
                ))
                .bind(share.agent_id)
                .bind(port)
                .execute(&mut *tx)
                .await?;
            }
            for user in &share.users {
                sqlx::query(
                    "INSERT INTO share_users (agent_id, port, user_id) VALUES ($1, $2, $3)",
                )
                .bind(share.agent_id)
                .bind(port)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            }
            for group in &share.groups {
                sqlx::query(
                    "INSERT INTO share_groups (agent_id, port, group_id) VALUES ($1, $2, $3)",
                )
                .bind(share.agent_id)
                .bind(port)
                .bind(group)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(|e| write_err(e, || "share exists".into()))?;
        Ok(())
    }

    /// Ends the shares whose audience has ended by `now` (unix seconds):
    /// each becomes `owner` with nobody named (protocol and CORS stay).
    /// Returns them as they are now; a share another replica ended first
    /// is not returned twice.
    pub async fn end_expired_shares(&self, now_unix: i64) -> Result<Vec<Share>, StoreError> {
        let sql = format!(
            "UPDATE shares SET level = 'owner', expires_at = NULL, updated_at = $2 \
             WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING {SHARE_COLUMNS}"
        );
        let recs: Vec<ShareRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(now_unix)
            .bind(now())
            .fetch_all(pool)
            .await)?;
        let ended: Vec<Share> = recs
            .into_iter()
            .map(Share::try_from)
            .collect::<Result<_, _>>()?;
        for s in &ended {
            for table in ["share_users", "share_groups"] {
                let sql = format!("DELETE FROM {table} WHERE agent_id = $1 AND port = $2");
                on_pool!(self, |pool| sqlx::query(&sql)
                    .bind(s.agent_id)
                    .bind(i64::from(s.port))
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))?;
            }
        }
        Ok(ended)
    }

    /// Fills in the users and groups each share names.
    async fn with_names(
        &self,
        mut shares: Vec<Share>,
        agent_id: Option<i64>,
    ) -> Result<Vec<Share>, StoreError> {
        let filter = if agent_id.is_some() {
            "WHERE agent_id = $1"
        } else {
            ""
        };
        let mut named: Vec<(bool, i64, i64, i64)> = Vec::new();
        for (is_user, table, column) in [
            (true, "share_users", "user_id"),
            (false, "share_groups", "group_id"),
        ] {
            let sql =
                format!("SELECT agent_id, port, {column} FROM {table} {filter} ORDER BY {column}");
            let rows: Vec<(i64, i64, i64)> = on_pool!(self, |pool| {
                let mut q = sqlx::query_as(&sql);
                if let Some(a) = agent_id {
                    q = q.bind(a);
                }
                q.fetch_all(pool).await
            })?;
            named.extend(rows.into_iter().map(|(a, p, id)| (is_user, a, p, id)));
        }
        for (is_user, agent, port, id) in named {
            if let Some(s) = shares
                .iter_mut()
                .find(|s| s.agent_id == agent && i64::from(s.port) == port)
            {
                if is_user {
                    s.users.push(id);
                } else {
                    s.groups.push(id);
                }
            }
        }
        Ok(shares)
    }

    /// Puts a port back to `owner`; true if it was shared.
    pub async fn delete_share(&self, agent_id: i64, port: u16) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM shares WHERE agent_id = $1 AND port = $2"
        )
        .bind(agent_id)
        .bind(i64::from(port))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The shares of one agent, by port.
    pub async fn list_shares(&self, agent_id: i64) -> Result<Vec<Share>, StoreError> {
        let sql = format!("SELECT {SHARE_COLUMNS} FROM shares WHERE agent_id = $1 ORDER BY port");
        let recs: Vec<ShareRecord> = on_pool!(self, |pool| sqlx::query_as(&sql)
            .bind(agent_id)
            .fetch_all(pool)
            .await)?;
        let shares = recs
            .into_iter()
            .map(Share::try_from)
            .collect::<Result<_, _>>()?;
        self.with_names(shares, Some(agent_id)).await
    }

    /// Names a port (insert or update).
    pub async fn put_app(&self, app: &App) -> Result<(), StoreError> {
        let sql = "INSERT INTO apps (agent_id, name, port, protocol, updated_at) \
            VALUES ($1, $2, $3, $4, $5) \
            ON CONFLICT (agent_id, name) DO UPDATE SET port = excluded.port, \
            protocol = excluded.protocol, updated_at = excluded.updated_at";
        on_pool!(self, |pool| sqlx::query(sql)
            .bind(app.agent_id)
            .bind(&app.name)
            .bind(i64::from(app.port))
            .bind(app.protocol.as_str())
            .bind(now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| write_err(e, || format!("an app named {} exists", app.name)))?;
        Ok(())
    }

    /// Takes a name off a port; true if there was one.
    pub async fn delete_app(&self, agent_id: i64, name: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "DELETE FROM apps WHERE agent_id = $1 AND name = $2"
        )
        .bind(agent_id)
        .bind(name)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// The named apps of one agent.
    pub async fn list_apps(&self, agent_id: i64) -> Result<Vec<App>, StoreError> {
        let recs: Vec<AppRecord> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT agent_id, name, port, protocol FROM apps WHERE agent_id = $1 ORDER BY name",
        )
        .bind(agent_id)
        .fetch_all(pool)
        .await)?;
        recs.into_iter().map(App::try_from).collect()
    }

    /// Every share and app, for the catalog snapshot.
    pub(super) async fn all_shares_and_apps(&self) -> Result<(Vec<Share>, Vec<App>), StoreError> {
        let sql = format!("SELECT {SHARE_COLUMNS} FROM shares");
        let shares: Vec<ShareRecord> =
            on_pool!(self, |pool| sqlx::query_as(&sql).fetch_all(pool).await)?;
        let shares: Vec<Share> = shares
            .into_iter()
            .map(Share::try_from)
            .collect::<Result<_, _>>()?;
        let shares = self.with_names(shares, None).await?;
        let apps: Vec<AppRecord> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT agent_id, name, port, protocol FROM apps"
        )
        .fetch_all(pool)
        .await)?;
        Ok((
            shares,
            apps.into_iter()
                .map(App::try_from)
                .collect::<Result<_, _>>()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    store_test! {
        async fn shares_upsert_list_delete_and_cascade(store: Store) {
            let (_, ws_id, agent_id) = crate::store::seed(&store).await;
            let mut share = Share {
                agent_id,
                port: 3000,
                level: ShareLevel::Organization,
                protocol: Protocol::Http,
                cors: Cors::Berth,
                inspect: true,
                users: vec![],
                groups: vec![],
                expires_at: None,
            };
            store.put_share(&share).await.unwrap();
            share.level = ShareLevel::Public;
            share.protocol = Protocol::Https;
            share.cors = Cors::Passthru;
            share.inspect = false;
            store.put_share(&share).await.unwrap();
            assert_eq!(
                store.list_shares(agent_id).await.unwrap(),
                vec![share.clone()]
            );
            let app = App {
                agent_id,
                name: "docs".into(),
                port: 8080,
                protocol: Protocol::Http,
            };
            store.put_app(&app).await.unwrap();
            assert_eq!(store.list_apps(agent_id).await.unwrap(), vec![app.clone()]);
            assert!(store.delete_app(agent_id, "docs").await.unwrap());
            assert!(!store.delete_app(agent_id, "docs").await.unwrap());
            assert!(store.list_apps(agent_id).await.unwrap().is_empty());
            store.put_app(&app).await.unwrap();
            let snapshot = store.snapshot().await.unwrap();
            assert!(snapshot
                .iter()
                .any(|c| matches!(c, crate::catalog::Change::Share(s) if *s == share)));
            assert!(store.delete_share(agent_id, 3000).await.unwrap());
            assert!(!store.delete_share(agent_id, 3000).await.unwrap());
            store.put_share(&share).await.unwrap();
            store.delete_workspace(ws_id).await.unwrap();
            let (shares, apps) = store.all_shares_and_apps().await.unwrap();
            assert!(shares.is_empty() && apps.is_empty(), "cascade");
        }
    }
}
