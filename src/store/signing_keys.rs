//! The keys that sign identity assertions (`signing_keys`): control adds
//! one when the newest is due for rotation and deletes those past their
//! grace ([`crate::auth::jwt::rotation`] decides).

use super::{Store, StoreError};
use crate::auth::jwt::SigningKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

impl Store {
    /// Every stored signing key, in no particular order. A row that is not
    /// a usable key is an error naming it (it would otherwise vanish from
    /// the published set without a word).
    pub async fn signing_keys(&self) -> Result<Vec<SigningKey>, StoreError> {
        let rows: Vec<(String, String, i64)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT kid, private_key, created_at FROM signing_keys"
        )
        .fetch_all(pool)
        .await)?;
        rows.into_iter()
            .map(|(kid, key, at)| {
                let der = STANDARD
                    .decode(&key)
                    .map_err(|_| super::corrupt("signing_keys.private_key", &kid))?;
                SigningKey::from_pkcs8(kid.clone(), at, der)
                    .map_err(|_| super::corrupt("signing_keys.private_key", &kid))
            })
            .collect()
    }

    /// Stores a new signing key.
    pub async fn add_signing_key(&self, key: &SigningKey) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO signing_keys (kid, private_key, created_at) VALUES ($1, $2, $3)"
        )
        .bind(key.kid())
        .bind(STANDARD.encode(key.pkcs8()))
        .bind(key.created_at())
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Deletes the signing key `kid` (gone from the published set).
    pub async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        on_pool!(self, |pool| sqlx::query(
            "DELETE FROM signing_keys WHERE kid = $1"
        )
        .bind(kid)
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
        async fn signing_keys_round_trip(store: Store) {
            assert!(store.signing_keys().await.unwrap().is_empty());
            let a = SigningKey::generate(100).unwrap();
            let b = SigningKey::generate(200).unwrap();
            store.add_signing_key(&a).await.unwrap();
            store.add_signing_key(&b).await.unwrap();
            let mut got = store.signing_keys().await.unwrap();
            got.sort_by_key(|k| k.created_at());
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].public_jwk(), a.public_jwk());
            assert_eq!(got[1].pkcs8(), b.pkcs8());
            store.delete_signing_key(a.kid()).await.unwrap();
            let got = store.signing_keys().await.unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].kid(), b.kid());
        }
    }
}
