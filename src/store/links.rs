//! Share links (only token hashes stored; uses counted here) and the shared
//! secrets servers sign with.

use super::{found, now, write_err, Store, StoreError};
use crate::auth::token::{self, TokenKind};
use crate::auth::{Secret, TokenHash};
use crate::catalog::Link;
use rand::RngCore;

/// A share link as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LinkRow {
    pub id: String,
    pub agent_id: i64,
    pub port: i64,
    pub created_by: i64,
    pub created_at: String,
    pub expires_at: i64,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub revoked: bool,
    /// Owner, workspace and agent names, for URLs.
    pub owner: String,
    pub workspace: String,
    pub agent: String,
}

impl LinkRow {
    /// The catalog's view, if the link can still be used for access.
    pub fn to_catalog(&self) -> Option<Link> {
        (!self.revoked).then(|| Link {
            id: self.id.clone(),
            agent_id: self.agent_id,
            port: u16::try_from(self.port).unwrap_or(0),
            expires_at: self.expires_at,
            created_by: self.created_by,
        })
    }
}

const LINK_SELECT: &str =
    "SELECT l.id, l.agent_id, l.port, l.created_by, l.created_at, l.expires_at, \
     l.max_uses, l.uses, (l.revoked_at IS NOT NULL) AS revoked, u.username AS owner, \
     w.name AS workspace, a.name AS agent \
     FROM share_links l JOIN agents a ON a.id = l.agent_id \
     JOIN workspaces w ON w.id = a.workspace_id JOIN users u ON u.id = w.owner_id";

impl Store {
    /// Makes a share link; its token is returned once and only hashed here.
    pub async fn create_link(
        &self,
        agent_id: i64,
        port: u16,
        created_by: i64,
        expires_at: i64,
        max_uses: Option<i64>,
    ) -> Result<(LinkRow, Secret), StoreError> {
        let secret = token::generate(TokenKind::Link);
        let mut id = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let id = hex::encode(id);
        let sql = "INSERT INTO share_links \
            (id, token_hash, agent_id, port, created_by, created_at, expires_at, max_uses) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(self, |pool| sqlx::query(sql)
            .bind(&id)
            .bind(TokenHash::of(secret.expose()).to_hex())
            .bind(agent_id)
            .bind(i64::from(port))
            .bind(created_by)
            .bind(now())
            .bind(expires_at)
            .bind(max_uses)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| write_err(e, || "a link with that id exists".into()))?;
        Ok((self.link(&id).await?, secret))
    }

    /// One link by id.
    pub async fn link(&self, id: &str) -> Result<LinkRow, StoreError> {
        let rec = on_pool!(self, |pool| sqlx::query_as(&format!(
            "{LINK_SELECT} WHERE l.id = $1"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await)?;
        found(rec, || format!("no share link {id}"))
    }

    /// Links made by `created_by`, or all (`None`), newest first.
    pub async fn list_links(&self, created_by: Option<i64>) -> Result<Vec<LinkRow>, StoreError> {
        let rows = match created_by {
            Some(uid) => on_pool!(self, |pool| sqlx::query_as(&format!(
                "{LINK_SELECT} WHERE l.created_by = $1 ORDER BY l.created_at DESC, l.id"
            ))
            .bind(uid)
            .fetch_all(pool)
            .await)?,
            None => on_pool!(self, |pool| sqlx::query_as(&format!(
                "{LINK_SELECT} ORDER BY l.created_at DESC, l.id"
            ))
            .fetch_all(pool)
            .await)?,
        };
        Ok(rows)
    }

    /// Revokes a link; false if it was already revoked.
    pub async fn revoke_link(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| sqlx::query(
            "UPDATE share_links SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now())
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Counts one use of the link whose token hashes to `hash`, atomically,
    /// if it is live at `now` and not used up.
    pub async fn redeem_link(
        &self,
        hash: &TokenHash,
        now_unix: i64,
    ) -> Result<Option<Link>, StoreError> {
        let sql = "UPDATE share_links SET uses = uses + 1 WHERE token_hash = $1 \
            AND revoked_at IS NULL AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses) \
            RETURNING id";
        let id: Option<(String,)> = on_pool!(self, |pool| sqlx::query_as(sql)
            .bind(hash.to_hex())
            .bind(now_unix)
            .fetch_optional(pool)
            .await)?;
        match id {
            Some((id,)) => Ok(self.link(&id).await?.to_catalog()),
            None => Ok(None),
        }
    }

    /// Live links for the catalog snapshot.
    pub(super) async fn live_links(&self) -> Result<Vec<LinkRow>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(&format!(
            "{LINK_SELECT} WHERE l.revoked_at IS NULL"
        ))
        .fetch_all(pool)
        .await)?)
    }

    /// The 32-byte secret `name`, made on first use and then the same for
    /// every server on this store.
    pub async fn secret_key(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let mut fresh = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(hex::encode(fresh))
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        let (value,): (String,) = on_pool!(self, |pool| sqlx::query_as(
            "SELECT value FROM secrets WHERE name = $1"
        )
        .bind(name)
        .fetch_one(pool)
        .await)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&value, &mut out).map_err(|_| {
            StoreError::Db(sqlx::Error::Decode(
                format!("secret {name} is not 32 hex bytes").into(),
            ))
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    store_test! {
        async fn links_redeem_count_expire_and_revoke(store: Store) {
            let (user_id, _, agent_id) = crate::store::seed(&store).await;
            let (row, secret) = store
                .create_link(agent_id, 5173, user_id, 1_000, Some(2))
                .await
                .unwrap();
            assert!(secret.expose().starts_with("berth_link_"));
            assert_eq!(
                (
                    row.owner.as_str(),
                    row.workspace.as_str(),
                    row.agent.as_str()
                ),
                ("alice", "api", "main")
            );
            let hash = TokenHash::of(secret.expose());
            assert!(store.redeem_link(&hash, 999).await.unwrap().is_some());
            assert!(store.redeem_link(&hash, 999).await.unwrap().is_some());
            assert!(
                store.redeem_link(&hash, 999).await.unwrap().is_none(),
                "max uses"
            );
            assert_eq!(store.link(&row.id).await.unwrap().uses, 2);

            let (row2, s2) = store
                .create_link(agent_id, 5173, user_id, 1_000, None)
                .await
                .unwrap();
            let h2 = TokenHash::of(s2.expose());
            assert!(
                store.redeem_link(&h2, 1_000).await.unwrap().is_none(),
                "expired"
            );
            assert!(store
                .redeem_link(&TokenHash::of("berth_link_nope"), 1)
                .await
                .unwrap()
                .is_none());
            assert!(store.revoke_link(&row2.id).await.unwrap());
            assert!(!store.revoke_link(&row2.id).await.unwrap());
            assert!(
                store.redeem_link(&h2, 1).await.unwrap().is_none(),
                "revoked"
            );
            assert_eq!(store.list_links(Some(user_id)).await.unwrap().len(), 2);
            assert_eq!(store.live_links().await.unwrap().len(), 1);

            let k1 = store.secret_key("cookie").await.unwrap();
            assert_eq!(store.secret_key("cookie").await.unwrap(), k1);
            assert_ne!(store.secret_key("other").await.unwrap(), k1);
        }
    }
}
