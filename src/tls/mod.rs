//! TLS for berth: certificates, the edge's server configuration, and the
//! client side used by berth's own agent and CLI.
//!
//! * [`ca`]: the local certificate authority behind `tls.mode = "self-signed"`
//!   (`berth dev`): created once in the data directory, reused on every run,
//!   and used to issue the wildcard leaf the edge serves.
//! * [`files`]: `tls.mode = "files"`: a PEM chain and key from disk, checked
//!   to belong together, and [`files::watch`], which reloads them on change.
//! * [`acme`]: `tls.mode = "acme"`: DNS-01 orders with instant-acme, kept in
//!   the store, renewed by a scheduler.
//! * [`info`]: names, issuer and expiry of a certificate.
//! * [`SwappableCert`]: the certificate resolver the server uses; its
//!   certificate can be replaced at runtime (file reload, ACME renewal)
//!   without touching live connections.
//! * [`server_config`]: the edge's rustls configuration (TLS 1.2 and 1.3,
//!   ECDHE + AEAD only, ALPN `h2` and `http/1.1`, session resumption).
//! * [`client`]: root selection (`--ca-file`, `SSL_CERT_FILE`, system store),
//!   RFC 6761 `*.localhost` resolution, and dialing.
//!
//! Everything here uses the *ring* crypto provider explicitly; nothing
//! depends on a process-wide default provider being installed.

pub mod acme;
pub mod ca;
pub mod client;
pub mod files;
pub mod info;
pub mod status;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use ca::LocalCa;
pub use client::{client_config, connect, connect_to, insecure_client_config, resolve};
pub use files::load_files;

/// Everything that can go wrong while loading, creating or using TLS
/// material. Every message says which file or item is at fault and what to
/// do about it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {error} ({hint})", path.display())]
    Read {
        /// What the file is, e.g. "certificate file".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// How to fix it, e.g. "check tls.cert_file".
        hint: String,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A file or directory could not be created or written.
    #[error("cannot write {what} {}: {error} (check that the directory exists and is writable by this user)", path.display())]
    Write {
        /// What was being written, e.g. "CA private key".
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },
    /// A file was read but its contents are not usable.
    #[error("{what} {} is not usable: {problem} ({hint})", path.display())]
    Invalid {
        /// What the file is, e.g. "CA certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        hint: String,
    },
    /// A private key does not belong to the certificate it was paired with.
    #[error("private key {} does not match certificate {} ({hint})", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate (chain) file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// How to fix it.
        hint: String,
    },
    /// A certificate chain and key handed over in memory cannot be served.
    #[error("certificate cannot be served: {0} (the chain must start with the leaf, and the key must be that leaf's ECDSA, Ed25519 or RSA key)")]
    Unusable(String),
    /// Generating a key or certificate failed.
    #[error("cannot generate {what}: {reason}")]
    Generate {
        /// What was being generated, e.g. "certificate for berth.localhost".
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// No trust anchors could be found for a client.
    #[error("no trusted CA certificates: {0}")]
    NoRoots(String),
    /// Building a rustls configuration failed (a programming error, normally).
    #[error("cannot build TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its key, ready to serve.
pub struct CertAndKey {
    /// The chain, leaf first, then any intermediates (and optionally the CA).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("CertAndKey")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Clone for CertAndKey {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The crypto provider berth uses everywhere: *ring*, restricted to the
/// cipher suites berth allows (ECDHE key exchange with AEAD ciphers only).
pub(crate) fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    }
}

/// The protocol versions berth speaks: TLS 1.3 and TLS 1.2, nothing older.
pub(crate) static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Why a chain and key cannot be served together.
pub(crate) enum PairProblem {
    /// The chain has no certificate.
    EmptyChain,
    /// The provider cannot load the key (unsupported type or malformed).
    Key(String),
    /// The key is not the leaf's.
    Mismatch,
    /// The leaf certificate cannot be parsed.
    Leaf(String),
}

impl std::fmt::Display for PairProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyChain => f.write_str("the certificate chain is empty"),
            Self::Key(e) => write!(f, "unsupported or malformed private key: {e}"),
            Self::Mismatch => f.write_str("the private key does not match the leaf certificate"),
            Self::Leaf(e) => write!(f, "the leaf certificate cannot be parsed: {e}"),
        }
    }
}

/// Turns a chain and key into a rustls [`CertifiedKey`], refusing an empty
/// chain, an unsupported key, or a key that is not the leaf's.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, PairProblem> {
    if chain.is_empty() {
        return Err(PairProblem::EmptyChain);
    }
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PairProblem::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // ring can report the public key of every key type it loads, so
        // "unknown" does not happen in practice; the handshake would still
        // fail loudly if it did.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(PairProblem::Mismatch)
        }
        Err(e) => Err(PairProblem::Leaf(e.to_string())),
    }
}

fn served_key(ck: CertAndKey) -> Result<Arc<CertifiedKey>, TlsError> {
    certified_key(ck.chain, ck.key).map_err(|p| TlsError::Unusable(p.to_string()))
}

/// A cert resolver whose certificate can be swapped at runtime (for later
/// hot reload / ACME); implements [`rustls::server::ResolvesServerCert`].
///
/// Every handshake sees whichever certificate was current when it started;
/// connections already established are not affected by [`SwappableCert::set`].
/// The same certificate is served whatever the SNI (the edge decides what a
/// host name means after the handshake).
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for SwappableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwappableCert")
            .field("chain_len", &self.load().cert.len())
            .finish()
    }
}

impl SwappableCert {
    /// Wraps a first certificate. Fails if the chain is empty, the key type
    /// is unsupported, or the key does not belong to the leaf.
    pub fn new(ck: CertAndKey) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: RwLock::new(served_key(ck)?),
        }))
    }

    /// Replaces the certificate for all later handshakes. The new chain and
    /// key are checked first; on error the old certificate stays in place.
    pub fn set(&self, ck: CertAndKey) -> Result<(), TlsError> {
        let new = served_key(ck)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// The chain currently served, leaf first.
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.load().cert.clone()
    }

    fn load(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.load())
    }
}

/// rustls ServerConfig: TLS 1.2 + 1.3 only, only ECDHE + AEAD suites (TLS13
/// AES-128-GCM, AES-256-GCM, CHACHA20; TLS12 ECDHE-ECDSA/RSA with AES-GCM and
/// CHACHA20), ALPN `["h2", "http/1.1"]`, the given resolver, and session
/// tickets / resumption enabled for fast reconnects.
pub fn server_config(resolver: Arc<SwappableCert>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with_alpn(resolver, vec![b"h2".to_vec(), b"http/1.1".to_vec()])
}

/// Same as [`server_config`] but with the ALPN protocols chosen by the
/// caller, in order of preference (an empty list disables ALPN).
pub fn server_config_with_alpn(
    resolver: Arc<SwappableCert>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    // TLS 1.3 (and 1.2) stateless tickets, keys rotated every 6 hours, plus a
    // session-ID cache for TLS 1.2 clients that do not take tickets.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| TlsError::Config(format!("cannot create session ticketer: {e}")))?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
