//! The identity assertions' keys, kept by control: at start and then every
//! little while, one rotation pass over the stored keys
//! ([`crate::auth::jwt::rotation`] decides; the store keeps them), and the
//! result is published to this process's edge (it signs with the newest)
//! and, through the watch stream, to every regional edge. Several control
//! replicas on one database each run the pass; the newest key wins on all.

use super::ControlState;
use crate::auth::jwt::{self, Identity, Keyring, SigningKey};
use crate::config::JwtPolicy;
use crate::store::{Store, StoreError};
use std::time::Duration;

/// How often the pass runs: an eighth of the rotation period, between a
/// quarter second and a minute (other replicas' keys are seen within that).
pub(crate) fn pass_every(policy: &JwtPolicy) -> Duration {
    Duration::from_millis((policy.rotation_secs.max(0) as u64).saturating_mul(125))
        .clamp(Duration::from_millis(250), Duration::from_secs(60))
}

/// One pass at `now`: makes a key when due, deletes those past their
/// grace, and publishes what is left (no keys when `jwt.enabled` is off).
pub(crate) async fn rotate_once(
    store: &Store,
    identity: &Identity,
    policy: &JwtPolicy,
    issuer: &str,
    now: i64,
) -> Result<(), StoreError> {
    if !policy.enabled {
        identity.set(Keyring::new(issuer.to_owned(), policy.ttl_secs, Vec::new()));
        return Ok(());
    }
    let keys = store.signing_keys().await?;
    let ids: Vec<(String, i64)> = keys
        .iter()
        .map(|k| (k.kid().to_owned(), k.created_at()))
        .collect();
    let plan = jwt::rotation(&ids, now, policy.rotation_secs, policy.grace_secs);
    if plan.generate || !plan.retire.is_empty() {
        if plan.generate {
            let key =
                SigningKey::generate(now).map_err(|e| StoreError::Unsupported(e.to_string()))?;
            store.add_signing_key(&key).await?;
            tracing::info!(kid = %key.kid(), "new identity signing key");
        }
        for kid in &plan.retire {
            store.delete_signing_key(kid).await?;
            tracing::info!(%kid, "identity signing key retired after its grace period");
        }
    }
    let keys = if plan.generate || !plan.retire.is_empty() {
        store.signing_keys().await?
    } else {
        keys
    };
    let ring = Keyring::new(issuer.to_owned(), policy.ttl_secs, keys);
    let unchanged = {
        let old = identity.get();
        old.issuer == ring.issuer
            && old.ttl_secs == ring.ttl_secs
            && old
                .keys
                .iter()
                .map(SigningKey::kid)
                .eq(ring.keys.iter().map(SigningKey::kid))
    };
    if !unchanged {
        identity.set(ring);
    }
    Ok(())
}

/// Runs [`rotate_once`] every [`pass_every`], forever.
pub(crate) async fn keep_keys(st: ControlState, policy: JwtPolicy, issuer: String) {
    let mut tick = tokio::time::interval(pass_every(&policy));
    loop {
        tick.tick().await;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Err(e) = rotate_once(&st.store, &st.identity, &policy, &issuer, now).await {
            tracing::warn!(error = %e, "identity key rotation failed; trying again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pass_makes_rotates_and_retires_keys() {
        let store = Store::open_memory().await.unwrap();
        let identity = Identity::default();
        let policy = JwtPolicy {
            enabled: true,
            ttl_secs: 60,
            rotation_secs: 100,
            grace_secs: 60,
        };
        let pass = |now| rotate_once(&store, &identity, &policy, "https://b", now);
        pass(1_000).await.unwrap();
        let first = identity.get().current().unwrap().kid().to_owned();
        pass(1_050).await.unwrap();
        assert_eq!(
            identity.get().current().unwrap().kid(),
            first,
            "not due yet"
        );
        pass(1_100).await.unwrap();
        let ring = identity.get();
        assert_ne!(ring.current().unwrap().kid(), first, "rotated");
        assert_eq!(ring.keys.len(), 2, "the old key is still published");
        pass(1_159).await.unwrap();
        assert_eq!(identity.get().keys.len(), 2);
        pass(1_160).await.unwrap();
        assert_eq!(identity.get().keys.len(), 1, "retired after the grace");
        assert_eq!(store.signing_keys().await.unwrap().len(), 1);
        let off = JwtPolicy {
            enabled: false,
            ..policy
        };
        rotate_once(&store, &identity, &off, "https://b", 1_200)
            .await
            .unwrap();
        assert!(
            identity.get().current().is_none(),
            "disabled: nothing signs"
        );
    }
}
