//! ACME state shared by every replica: the account per directory, the
//! certificate (with its key) per set of names, and a lease so that only one
//! replica talks to the CA at a time while the others wait for its result.

use super::{now, Store, StoreError};

/// A stored ACME certificate.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AcmeCertRow {
    /// The directory and the names, e.g. `https://ca/dir apps.example.com,*.apps.example.com`.
    pub id: String,
    /// The names it covers, comma-separated.
    pub names: String,
    /// PEM chain, leaf first.
    pub chain_pem: String,
    /// PEM PKCS#8 private key of the leaf.
    pub key_pem: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// Expiry, unix seconds.
    pub not_after: i64,
    /// When the next renewal attempt is due, unix seconds.
    pub renew_at: i64,
    /// Why the last renewal failed, if it did.
    pub last_error: Option<String>,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl Store {
    /// The stored credentials (JSON) of the account at `directory`.
    pub async fn acme_account(&self, directory: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT credentials FROM acme_accounts WHERE directory = $1"
        )
        .bind(directory)
        .fetch_optional(pool)
        .await)?;
        Ok(row.map(|(c,)| c))
    }

    /// Stores (or replaces) the account credentials for `directory`.
    pub async fn save_acme_account(
        &self,
        directory: &str,
        credentials: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (directory) DO UPDATE SET credentials = excluded.credentials",
        )
        .bind(directory)
        .bind(credentials)
        .bind(now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The stored certificate `id`, if any.
    pub async fn acme_cert(&self, id: &str) -> Result<Option<AcmeCertRow>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM acme_certs WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(pool)
        .await)?)
    }

    /// Every stored certificate, by id (for `berth certs status`).
    pub async fn acme_certs(&self) -> Result<Vec<AcmeCertRow>, StoreError> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT * FROM acme_certs ORDER BY id"
        )
        .fetch_all(pool)
        .await)?)
    }

    /// Stores (or replaces) a certificate; `updated_at` is set to now.
    pub async fn save_acme_cert(&self, row: &AcmeCertRow) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO acme_certs \
             (id, names, chain_pem, key_pem, issuer, not_after, renew_at, last_error, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET names = excluded.names, \
             chain_pem = excluded.chain_pem, key_pem = excluded.key_pem, \
             issuer = excluded.issuer, not_after = excluded.not_after, \
             renew_at = excluded.renew_at, last_error = excluded.last_error, \
             updated_at = excluded.updated_at",
        )
        .bind(&row.id)
        .bind(&row.names)
        .bind(&row.chain_pem)
        .bind(&row.key_pem)
        .bind(&row.issuer)
        .bind(row.not_after)
        .bind(row.renew_at)
        .bind(&row.last_error)
        .bind(now())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records a failed renewal: the next attempt and the CA's message.
    pub async fn set_acme_retry(
        &self,
        id: &str,
        renew_at: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "UPDATE acme_certs SET renew_at = $2, last_error = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(renew_at)
        .bind(error)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes (or extends) the ordering lease on `id` for `holder` until
    /// `until` (unix seconds); false while another holder's lease is live.
    pub async fn acquire_acme_lease(
        &self,
        id: &str,
        holder: &str,
        now_unix: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |pool| {
            sqlx::query(
            "INSERT INTO acme_leases (id, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE acme_leases.expires_at <= $4 OR acme_leases.holder = excluded.holder",
        )
        .bind(id)
        .bind(holder)
        .bind(until)
        .bind(now_unix)
        .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(done == 1)
    }

    /// Gives the lease on `id` up, if `holder` has it.
    pub async fn release_acme_lease(&self, id: &str, holder: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM acme_leases WHERE id = $1 AND holder = $2"
        )
        .bind(id)
        .bind(holder)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, not_after: i64) -> AcmeCertRow {
        AcmeCertRow {
            id: id.into(),
            names: "a.test,*.a.test".into(),
            chain_pem: "chain".into(),
            key_pem: "key".into(),
            issuer: "CN=Test".into(),
            not_after,
            renew_at: not_after - 10,
            last_error: None,
            updated_at: String::new(),
        }
    }

    store_test! {
    async fn accounts_and_certs_round_trip_and_replace(store: Store) {
        assert_eq!(store.acme_account("https://ca/dir").await.unwrap(), None);
        store
            .save_acme_account("https://ca/dir", "{1}")
            .await
            .unwrap();
        store
            .save_acme_account("https://ca/dir", "{2}")
            .await
            .unwrap();
        assert_eq!(
            store
                .acme_account("https://ca/dir")
                .await
                .unwrap()
                .as_deref(),
            Some("{2}")
        );

        assert_eq!(store.acme_cert("x").await.unwrap(), None);
        store.save_acme_cert(&row("x", 100)).await.unwrap();
        store.save_acme_cert(&row("x", 200)).await.unwrap();
        let got = store.acme_cert("x").await.unwrap().unwrap();
        assert_eq!((got.not_after, got.renew_at), (200, 190));
        store.set_acme_retry("x", 150, "CA said no").await.unwrap();
        let got = store.acme_cert("x").await.unwrap().unwrap();
        assert_eq!(got.renew_at, 150);
        assert_eq!(got.last_error.as_deref(), Some("CA said no"));
        assert_eq!(store.acme_certs().await.unwrap().len(), 1);
    }

    async fn only_one_holder_has_the_lease_until_it_ends(store: Store) {
        assert!(store.acquire_acme_lease("x", "a", 0, 60).await.unwrap());
        assert!(!store.acquire_acme_lease("x", "b", 10, 70).await.unwrap());
        assert!(
            store.acquire_acme_lease("x", "a", 10, 70).await.unwrap(),
            "extend"
        );
        assert!(
            store.acquire_acme_lease("y", "b", 10, 70).await.unwrap(),
            "other id"
        );
        assert!(
            store.acquire_acme_lease("x", "b", 70, 130).await.unwrap(),
            "expired"
        );
        store.release_acme_lease("x", "a").await.unwrap();
        assert!(
            !store.acquire_acme_lease("x", "a", 80, 140).await.unwrap(),
            "not a's to release"
        );
        store.release_acme_lease("x", "b").await.unwrap();
        assert!(store.acquire_acme_lease("x", "a", 80, 140).await.unwrap());
    }
    }
}
