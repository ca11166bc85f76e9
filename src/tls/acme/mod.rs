//! `tls.mode = "acme"`: one certificate for the base domain and the
//! wildcard, ordered from an ACME CA with DNS-01, kept in the store and
//! renewed before it expires.
//!
//! The [`Manager`] runs beside the server. Each step it reads the store: a
//! stored certificate that is still valid is served at once (on start, too);
//! when none exists or it is inside its renewal window, the replica that
//! takes the store's lease orders a new one while the others wait and pick
//! the result up. Failures are retried with exponential back-off, and the
//! CA's own message is logged and kept in the store for `berth certs status`.
//!
//! Until a first certificate exists, handshakes get a temporary self-signed
//! certificate for the same names ([`temporary_cert`]): the server starts and
//! answers (clients see an untrusted certificate) rather than refusing TLS.
//! Swaps go through [`SwappableCert`], so live connections are untouched.

pub mod dns;
pub mod regions;

use std::future::Future;
use std::io::BufReader;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rand::Rng;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::info::cert_info;
use super::{CertAndKey, SwappableCert, TlsError};
use crate::config::AcmeSettings;
use crate::store::{AcmeCertRow, Store, StoreError};
use dns::{DnsError, DnsProvider};

/// How long one replica may hold the ordering lease.
const LEASE_TTL: Duration = Duration::from_secs(600);
/// How often a replica waiting for another one's order looks again.
const LEASE_WAIT: Duration = Duration::from_secs(2);
/// How often a serving replica re-reads the store (to pick up a certificate
/// another replica renewed).
const RECHECK: Duration = Duration::from_secs(300);
/// The first retry after a failure; doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How long the CA may take to validate the challenges or issue.
const CA_POLL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why getting a certificate failed, by origin.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The CA refused or failed; the message is the CA's own.
    #[error("ACME CA {directory}: {message}")]
    Ca {
        /// The directory URL.
        directory: String,
        /// What the CA said.
        message: String,
    },
    /// Publishing or checking the TXT records failed.
    #[error("DNS-01: {0}")]
    Dns(#[from] DnsError),
    /// The store could not be read or written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The issued certificate or a local key could not be used.
    #[error("{0}")]
    Local(String),
}

/// The delay before retry number `failures` (1-based): 30 s doubling to 1 h.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(exp)).min(MAX_BACKOFF)
}

/// When to renew a certificate valid until `not_after`: `renew_before`
/// earlier, less up to a tenth of `renew_before` of random jitter so that
/// many deployments do not all ask the CA in the same second.
pub fn renew_at(not_after: i64, renew_before: Duration) -> i64 {
    let before = renew_before.as_secs() as i64;
    let jitter = rand::thread_rng().gen_range(0..=before / 10);
    not_after - before - jitter
}

/// A throwaway self-signed certificate for `names`, served until the first
/// real one is issued.
pub fn temporary_cert(names: &[String]) -> Result<CertAndKey, TlsError> {
    let gen = |e: rcgen::Error| TlsError::Generate {
        what: format!("temporary certificate for {}", names.join(", ")),
        reason: e.to_string(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(gen)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "berth temporary certificate (ACME order pending)",
    );
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok(CertAndKey {
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

/// The store's id for the certificate of `names` from `directory`.
pub fn cert_id(directory: &str, names: &[String]) -> String {
    format!("{directory} {}", names.join(","))
}

/// Parses a stored row into something to serve.
pub fn row_cert(row: &AcmeCertRow) -> Result<CertAndKey, String> {
    let chain = rustls_pemfile::certs(&mut BufReader::new(row.chain_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("stored chain is malformed: {e}"))?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(row.key_pem.as_bytes()))
        .map_err(|e| format!("stored key is malformed: {e}"))?
        .ok_or("stored key is missing")?;
    Ok(CertAndKey { chain, key })
}

/// Gets, stores, serves and renews the ACME certificate of one server.
pub struct Manager {
    settings: AcmeSettings,
    names: Vec<String>,
    id: String,
    store: Store,
    certs: Arc<SwappableCert>,
    dns: Box<dyn DnsProvider>,
    /// Who this replica is, for the lease.
    holder: String,
    /// The chain PEM being served, to notice a newer one in the store.
    served: Mutex<Option<String>>,
    /// Why the last attempt failed, until one succeeds.
    last_error: Mutex<Option<String>>,
}

impl Manager {
    /// A manager for `names` (base domain first, then the wildcard).
    pub fn new(
        settings: AcmeSettings,
        names: Vec<String>,
        store: Store,
        certs: Arc<SwappableCert>,
    ) -> Result<Manager, AcmeError> {
        let dns = dns::provider(&settings.dns)?;
        let mut raw = [0u8; 8];
        rand::thread_rng().fill(&mut raw);
        Ok(Manager {
            id: cert_id(&settings.directory, &names),
            settings,
            names,
            store,
            certs,
            dns,
            holder: format!("{}-{}", std::process::id(), hex::encode(raw)),
            served: Mutex::new(None),
            last_error: Mutex::new(None),
        })
    }

    /// Serves the stored certificate, if there is a usable one; true if so.
    /// Used at start so that a restart serves at once, with no order.
    pub async fn serve_stored(&self) -> Result<bool, AcmeError> {
        match self.store.acme_cert(&self.id).await? {
            Some(row) if row.not_after > unix_now() => {
                self.serve(&row)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Why the last attempt to get a certificate failed (with the CA's own
    /// message when the CA refused), or `None` after a success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs until `shutdown`: orders, renews, retries, picks up certificates
    /// other replicas stored.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send + 'static) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let wait = match self.step(failures).await {
                Ok(wait) => {
                    failures = 0;
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    wait
                }
                Err(e) => {
                    failures += 1;
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(e.to_string());
                    let delay = backoff(failures);
                    tracing::error!(
                        names = %self.names.join(","),
                        error = %e,
                        retry_in_secs = delay.as_secs(),
                        "ACME certificate order failed"
                    );
                    let next = unix_now() + delay.as_secs() as i64;
                    if let Err(e2) = self
                        .store
                        .set_acme_retry(&self.id, next, &e.to_string())
                        .await
                    {
                        tracing::warn!(error = %e2, "cannot record the failed order in the store");
                    }
                    delay
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// One look at the store, and an order when one is due and the lease is
    /// ours. Returns how long to wait before the next look.
    /// `failures` counts the failed steps before this one.
    async fn step(&self, failures: u32) -> Result<Duration, AcmeError> {
        let now = unix_now();
        if let Some(row) = self.store.acme_cert(&self.id).await? {
            if row.not_after > now {
                self.serve(&row)?;
            }
            if now < row.renew_at && now < row.not_after {
                return Ok(until(row.renew_at, now).min(RECHECK));
            }
        }
        let until_unix = now + LEASE_TTL.as_secs() as i64;
        if !self
            .store
            .acquire_acme_lease(&self.id, &self.holder, now, until_unix)
            .await?
        {
            tracing::debug!(names = %self.names.join(","), "another replica is ordering the certificate; waiting for it");
            return Ok(LEASE_WAIT);
        }
        let started = std::time::Instant::now();
        let result =
            match tokio::time::timeout(LEASE_TTL - Duration::from_secs(60), self.order()).await {
                Ok(r) => r,
                Err(_) => Err(AcmeError::Local(format!(
                    "the order did not complete within {}s",
                    (LEASE_TTL - Duration::from_secs(60)).as_secs()
                ))),
            };
        let row = match result {
            Ok(row) => {
                if let Err(e) = self.store.release_acme_lease(&self.id, &self.holder).await {
                    tracing::warn!(error = %e, "cannot release the ACME lease (it expires by itself)");
                }
                row
            }
            Err(e) => {
                // Keep the lease through the back-off, so that the other
                // replicas wait too instead of each asking the CA in turn.
                let hold = backoff(failures + 1).as_secs() as i64;
                let now = unix_now();
                if let Err(e2) = self
                    .store
                    .acquire_acme_lease(&self.id, &self.holder, now, now + hold)
                    .await
                {
                    tracing::warn!(error = %e2, "cannot extend the ACME lease over the back-off");
                }
                return Err(e);
            }
        };
        self.store.save_acme_cert(&row).await?;
        self.serve(&row)?;
        tracing::info!(
            names = %row.names,
            issuer = %row.issuer,
            not_after = row.not_after,
            took_ms = started.elapsed().as_millis() as u64,
            "ACME certificate issued"
        );
        Ok(until(row.renew_at, unix_now()).min(RECHECK))
    }

    /// Swaps `row` in if it is not what is served already.
    fn serve(&self, row: &AcmeCertRow) -> Result<(), AcmeError> {
        let mut served = self.served.lock().unwrap_or_else(|e| e.into_inner());
        if served.as_deref() == Some(row.chain_pem.as_str()) {
            return Ok(());
        }
        let ck = row_cert(row).map_err(AcmeError::Local)?;
        self.certs
            .set(ck)
            .map_err(|e| AcmeError::Local(e.to_string()))?;
        *served = Some(row.chain_pem.clone());
        tracing::info!(names = %row.names, not_after = row.not_after, "serving ACME certificate");
        Ok(())
    }

    /// An error from talking to the CA, with its whole cause chain (a bare
    /// "client error (Connect)" would hide the TLS or DNS reason).
    fn ca_err(&self, e: impl std::fmt::Display) -> AcmeError {
        AcmeError::Ca {
            directory: self.settings.directory.clone(),
            message: e.to_string(),
        }
    }

    fn ca_call(&self, e: instant_acme::Error) -> AcmeError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        self.ca_err(message)
    }

    /// The account for this directory: stored, or created and stored.
    async fn account(&self) -> Result<Account, AcmeError> {
        let http = || -> Result<Box<dyn HttpClient>, AcmeError> {
            Ok(Box::new(
                AcmeHttp::new(self.settings.ca_file.as_deref())
                    .map_err(|e| AcmeError::Local(format!("tls.acme.ca_file: {e}")))?,
            ))
        };
        if let Some(json) = self.store.acme_account(&self.settings.directory).await? {
            let creds: AccountCredentials = serde_json::from_str(&json)
                .map_err(|e| AcmeError::Local(format!("stored ACME account is unreadable: {e}")))?;
            return Account::builder_with_http(http()?)
                .from_credentials(creds)
                .await
                .map_err(|e| self.ca_call(e));
        }
        let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, creds) = Account::builder_with_http(http()?)
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.settings.directory.clone(),
                None,
            )
            .await
            .map_err(|e| self.ca_call(e))?;
        let json = serde_json::to_string(&creds)
            .map_err(|e| AcmeError::Local(format!("cannot encode the ACME account: {e}")))?;
        self.store
            .save_acme_account(&self.settings.directory, &json)
            .await?;
        tracing::info!(directory = %self.settings.directory, id = account.id(), "ACME account created");
        Ok(account)
    }

    /// Orders, proves and fetches one certificate for [`Manager::names`].
    async fn order(&self) -> Result<AcmeCertRow, AcmeError> {
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .names
            .iter()
            .map(|n| Identifier::Dns(n.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| self.ca_call(e))?;

        // Publish one TXT value per pending authorization.
        let mut records: Vec<(String, String)> = Vec::new();
        let mut challenge_urls = Vec::new();
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| self.ca_call(e))?;
                match authz.status {
                    AuthorizationStatus::Valid => continue,
                    AuthorizationStatus::Pending => {}
                    other => {
                        return Err(self.ca_err(format!(
                            "authorization for {} is {other:?}",
                            authz.identifier()
                        )))
                    }
                }
                let name = match authz.identifier().identifier {
                    Identifier::Dns(d) => d.clone(),
                    other => return Err(self.ca_err(format!("unexpected identifier {other:?}"))),
                };
                let challenge = authz.challenge(ChallengeType::Dns01).ok_or_else(|| {
                    self.ca_err(format!("the CA offers no dns-01 challenge for {name}"))
                })?;
                let fqdn = format!("_acme-challenge.{}.", name.trim_start_matches("*."));
                records.push((fqdn, challenge.key_authorization().dns_value()));
                challenge_urls.push(challenge.url.clone());
            }
        }
        let result = self.prove_and_fetch(&mut order, &records).await;
        for (fqdn, value) in &records {
            if let Err(e) = self.dns.cleanup(fqdn, value).await {
                tracing::warn!(error = %e, "cannot remove the DNS-01 TXT record");
            }
        }
        let chain_pem = result?;
        self.row_from(chain_pem)
    }

    async fn prove_and_fetch(
        &self,
        order: &mut instant_acme::Order,
        records: &[(String, String)],
    ) -> Result<(String, String), AcmeError> {
        for (fqdn, value) in records {
            self.dns.present(fqdn, value).await?;
        }
        if !records.is_empty() {
            let servers = if !self.settings.resolvers.is_empty() {
                self.settings.resolvers.clone()
            } else if let Some(servers) = self.dns.default_check_servers() {
                servers
            } else {
                dns::authoritative_servers(&records[0].0, &dns::system_resolvers(), 53).await?
            };
            dns::wait_visible(&servers, records, self.settings.propagation_timeout).await?;
        }
        {
            let mut authzs = order.authorizations();
            while let Some(authz) = authzs.next().await {
                let mut authz = authz.map_err(|e| self.ca_call(e))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                if let Some(mut ch) = authz.challenge(ChallengeType::Dns01) {
                    ch.set_ready().await.map_err(|e| self.ca_call(e))?;
                }
            }
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(CA_POLL_TIMEOUT);
        let status = order
            .poll_ready(&retry)
            .await
            .map_err(|e| self.ca_call(e))?;
        if status != OrderStatus::Ready {
            return Err(self.ca_err(self.why_invalid(order).await));
        }
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AcmeError::Local(format!("cannot generate the certificate key: {e}")))?;
        let mut params = rcgen::CertificateParams::new(self.names.clone())
            .map_err(|e| AcmeError::Local(format!("cannot build the CSR: {e}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|e| AcmeError::Local(format!("cannot sign the CSR: {e}")))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| self.ca_call(e))?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .map_err(|e| self.ca_call(e))?;
        Ok((chain, key.serialize_pem()))
    }

    /// The CA's reasons for an invalid order, from its challenges.
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> String {
        let mut reasons = Vec::new();
        let mut authzs = order.authorizations();
        while let Some(Ok(authz)) = authzs.next().await {
            for ch in &authz.challenges {
                if let Some(p) = &ch.error {
                    reasons.push(format!("{}: {p}", authz.identifier()));
                }
            }
        }
        if reasons.is_empty() {
            "the order became invalid without a reason".into()
        } else {
            reasons.join("; ")
        }
    }

    fn row_from(&self, (chain_pem, key_pem): (String, String)) -> Result<AcmeCertRow, AcmeError> {
        let chain: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut BufReader::new(chain_pem.as_bytes()))
                .collect::<Result<_, _>>()
                .map_err(|e| AcmeError::Local(format!("the CA's chain is malformed: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| AcmeError::Local("the CA sent an empty chain".into()))?;
        let info = cert_info(leaf)
            .map_err(|e| AcmeError::Local(format!("the CA's certificate cannot be parsed: {e}")))?;
        Ok(AcmeCertRow {
            id: self.id.clone(),
            names: self.names.join(","),
            chain_pem,
            key_pem,
            issuer: info.issuer,
            not_after: info.not_after,
            renew_at: renew_at(info.not_after, self.settings.renew_before),
            last_error: None,
            updated_at: String::new(),
        })
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Seconds from `now` to `at`, at least one.
fn until(at: i64, now: i64) -> Duration {
    Duration::from_secs((at - now).max(1) as u64)
}

/// instant-acme's HTTP client: hyper over berth's rustls (ring) config, with
/// `tls.acme.ca_file` (or the usual roots) as trust anchors.
struct AcmeHttp(
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
);

impl AcmeHttp {
    fn new(ca_file: Option<&std::path::Path>) -> Result<AcmeHttp, TlsError> {
        let config = super::client_config(ca_file, &[])?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*config).clone())
            .https_only()
            .enable_http1()
            .build();
        Ok(AcmeHttp(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector),
        ))
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.0.request(req);
        Box::pin(async move {
            match fut.await {
                Ok(rsp) => Ok(BytesResponse::from(rsp)),
                Err(e) => Err(instant_acme::Error::Other(Box::new(e))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(4), Duration::from_secs(240));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }

    #[test]
    fn renewal_is_before_the_window_with_bounded_jitter() {
        let before = Duration::from_secs(30 * 86_400);
        for _ in 0..100 {
            let at = renew_at(10_000_000, before);
            assert!(at <= 10_000_000 - 30 * 86_400);
            assert!(at >= 10_000_000 - 33 * 86_400);
        }
    }

    #[test]
    fn temporary_cert_is_servable_and_names_itself() {
        let names = vec!["apps.test".to_owned(), "*.apps.test".to_owned()];
        let ck = temporary_cert(&names).unwrap();
        let info = cert_info(&ck.chain[0]).unwrap();
        assert_eq!(info.names, names);
        assert!(info.issuer.contains("temporary"), "{}", info.issuer);
        SwappableCert::new(ck).unwrap();
    }
}
