//! `tls.mode = "files"`: a certificate chain and private key read from PEM
//! files, and the PEM helpers the rest of the TLS module shares.
//!
//! The chain file holds the leaf first, then any intermediates (what ACME
//! clients call `fullchain.pem`). The key file may hold a PKCS#8, PKCS#1
//! (RSA) or SEC1 (EC) key; the first key in the file is used. The key is
//! checked against the leaf before anything is served, so a mismatched pair
//! is reported at start-up (or reload) rather than as a handshake failure.

use std::io::BufReader;
use std::path::Path;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{certified_key, CertAndKey, PairProblem, TlsError};

/// Loads a PEM certificate chain and its private key, and checks that the key
/// belongs to the first (leaf) certificate.
///
/// Errors name the file at fault and point at `tls.cert_file` /
/// `tls.key_file`.
pub fn load_files(cert_file: &Path, key_file: &Path) -> Result<CertAndKey, TlsError> {
    let chain = read_certs(cert_file, "certificate file", "check tls.cert_file")?;
    let key = read_key(key_file, "private key file", "check tls.key_file")?;
    match certified_key(chain.clone(), key.clone_key()) {
        Ok(_) => Ok(CertAndKey { chain, key }),
        Err(PairProblem::Mismatch) => Err(TlsError::KeyMismatch {
            cert: cert_file.to_owned(),
            key: key_file.to_owned(),
            hint:
                "tls.key_file must hold the private key of the first certificate in tls.cert_file"
                    .into(),
        }),
        Err(PairProblem::Leaf(problem)) => Err(TlsError::Invalid {
            what: "certificate file",
            path: cert_file.to_owned(),
            problem,
            hint: "check tls.cert_file; the first certificate must be the server's own".into(),
        }),
        Err(p @ (PairProblem::Key(_) | PairProblem::EmptyChain)) => Err(TlsError::Invalid {
            what: "private key file",
            path: key_file.to_owned(),
            problem: p.to_string(),
            hint: "check tls.key_file; use an ECDSA P-256/P-384, Ed25519 or RSA (2048+ bit) key"
                .into(),
        }),
    }
}

/// How often [`watch`] looks at the files.
pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`watch`] compares: each file's modification time and length.
fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads `cert_file` and `key_file` into `certs` whenever either changes
/// (polled every `interval`), until `shutdown`. A pair that does not load
/// (half-written, mismatched, garbage) is logged with the reason and the old
/// certificate stays; the next change is tried again. Live connections keep
/// the certificate they started with.
pub async fn watch(
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
    certs: std::sync::Arc<super::SwappableCert>,
    interval: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut last = (stamp(&cert_file), stamp(&key_file));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = &mut shutdown => return,
        }
        let now = (stamp(&cert_file), stamp(&key_file));
        if now == last {
            continue;
        }
        last = now;
        match load_files(&cert_file, &key_file).and_then(|ck| certs.set(ck)) {
            Ok(()) => tracing::info!(
                cert_file = %cert_file.display(),
                "reloaded the TLS certificate"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "the changed TLS files cannot be used; still serving the previous certificate"
            ),
        }
    }
}

/// Reads a whole file, mapping failure to [`TlsError::Read`].
pub(crate) fn read_file(path: &Path, what: &'static str, hint: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_owned(),
        hint: hint.to_owned(),
        error,
    })
}

/// Parses every `CERTIFICATE` block of a PEM file; at least one is required.
pub(crate) fn parse_certs(
    pem: &[u8],
    path: &Path,
    what: &'static str,
    hint: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |problem: String| TlsError::Invalid {
        what,
        path: path.to_owned(),
        problem,
        hint: hint.to_owned(),
    };
    let certs = rustls_pemfile::certs(&mut BufReader::new(pem))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "no certificate found (expected PEM '-----BEGIN CERTIFICATE-----' blocks)".into(),
        ));
    }
    Ok(certs)
}

/// Reads and parses a PEM certificate file (see [`parse_certs`]).
pub(crate) fn read_certs(
    path: &Path,
    what: &'static str,
    hint: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, what, hint)?;
    parse_certs(&pem, path, what, hint)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub(crate) fn read_key(
    path: &Path,
    what: &'static str,
    hint: &str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path, what, hint)?;
    let invalid = |problem: String| TlsError::Invalid {
        what,
        path: path.to_owned(),
        problem,
        hint: hint.to_owned(),
    };
    match rustls_pemfile::private_key(&mut BufReader::new(&pem[..])) {
        Ok(Some(key)) => Ok(key),
        Ok(None) => Err(invalid(
            "no private key found (expected a PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block)"
                .into(),
        )),
        Err(e) => Err(invalid(format!("malformed PEM: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::LocalCa;

    fn write_pair(
        dir: &Path,
        ck: &CertAndKey,
        name: &str,
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        let mut pem = String::new();
        for c in &ck.chain {
            pem.push_str(&pem_block("CERTIFICATE", c.as_ref()));
        }
        std::fs::write(&cert_path, pem).unwrap();
        std::fs::write(&key_path, pem_block("PRIVATE KEY", ck.key.secret_der())).unwrap();
        (cert_path, key_path)
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }

    #[test]
    fn load_files_good_pair_works() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let ck = ca.issue(&["berth.localhost".into()]).unwrap();
        let (cert, key) = write_pair(dir.path(), &ck, "leaf");
        let loaded = load_files(&cert, &key).unwrap();
        assert_eq!(loaded.chain, ck.chain);
        assert_eq!(loaded.key.secret_der(), ck.key.secret_der());
    }

    #[test]
    fn load_files_mismatched_key_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let a = ca.issue(&["a.localhost".into()]).unwrap();
        let b = ca.issue(&["b.localhost".into()]).unwrap();
        let (cert_a, _) = write_pair(dir.path(), &a, "a");
        let (_, key_b) = write_pair(dir.path(), &b, "b");
        let err = load_files(&cert_a, &key_b).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&*cert_a.to_string_lossy()), "{msg}");
        assert!(msg.contains(&*key_b.to_string_lossy()), "{msg}");
        assert!(msg.contains("tls.key_file"), "{msg}");
    }

    #[test]
    fn load_files_missing_and_garbage_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem file\n").unwrap();

        let msg = load_files(&missing, &garbage).unwrap_err().to_string();
        assert!(msg.starts_with("cannot read certificate file "), "{msg}");
        assert!(msg.contains(&*missing.to_string_lossy()), "{msg}");
        assert!(msg.ends_with("(check tls.cert_file)"), "{msg}");

        let msg = load_files(&garbage, &missing).unwrap_err().to_string();
        assert!(msg.contains(&*garbage.to_string_lossy()), "{msg}");
        assert!(msg.contains("no certificate found"), "{msg}");

        let ca = LocalCa::load_or_create(&dir.path().join("ca")).unwrap();
        let msg = load_files(ca.cert_path(), &garbage)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no private key found"), "{msg}");
        assert!(msg.contains("tls.key_file"), "{msg}");
    }
}
