//! ACME certificates for regional edges, ordered by control.
//!
//! A regional edge has no database and no DNS credentials; control has
//! both. So when control runs `tls.mode = "acme"`, it orders each region's
//! certificate (its host and wildcard) with the same CA, DNS provider,
//! store and lease as its own, starting on the first request from that
//! region's edge, and hands it out through `GET /api/v1/edge/certificate`.
//! Every replica answers from the store, whichever one ordered.

use super::{cert_id, row_cert, temporary_cert, AcmeError, Manager};
use crate::config::AcmeSettings;
use crate::store::Store;
use crate::tls::{CertAndKey, SwappableCert};
use dashmap::DashMap;
use std::sync::Arc;

/// Control's region certificates, one [`Manager`] per set of names.
pub struct RegionCerts {
    settings: AcmeSettings,
    store: Store,
    managers: DashMap<String, Arc<Manager>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl RegionCerts {
    /// Orders with `settings` and keeps certificates in `store`.
    pub fn new(settings: AcmeSettings, store: Store) -> RegionCerts {
        RegionCerts {
            settings,
            store,
            managers: DashMap::new(),
            stop: tokio::sync::watch::channel(false).0,
        }
    }

    /// The valid stored certificate for `names`, or `None` while it is
    /// being ordered; the first call for a set of names starts its manager
    /// (which also renews it).
    pub async fn get(&self, names: Vec<String>) -> Result<Option<CertAndKey>, AcmeError> {
        let id = cert_id(&self.settings.directory, &names);
        if !self.managers.contains_key(&id) {
            // Never served: the manager's own certificate slot is a scratch one.
            let local = |e: crate::tls::TlsError| AcmeError::Local(e.to_string());
            let scratch =
                SwappableCert::new(temporary_cert(&names).map_err(local)?).map_err(local)?;
            let manager = Arc::new(Manager::new(
                self.settings.clone(),
                names,
                self.store.clone(),
                scratch,
            )?);
            if let dashmap::Entry::Vacant(slot) = self.managers.entry(id.clone()) {
                slot.insert(manager.clone());
                let mut stop = self.stop.subscribe();
                tokio::spawn(manager.run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                }));
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match self.store.acme_cert(&id).await? {
            Some(row) if row.not_after > now && !row.chain_pem.is_empty() => {
                row_cert(&row).map(Some).map_err(AcmeError::Local)
            }
            _ => Ok(None),
        }
    }

    /// Why the last order for `names` failed, if it did.
    pub fn last_error(&self, names: &[String]) -> Option<String> {
        let id = cert_id(&self.settings.directory, names);
        self.managers.get(&id).and_then(|m| m.last_error())
    }

    /// Stops every manager (the server is shutting down).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}
