//! The local certificate authority behind `tls.mode = "self-signed"` (the
//! `berth dev` default).
//!
//! The CA lives in the data directory as `ca.pem` (the certificate users add
//! to their trust store or pass to `curl --cacert`) and `ca-key.pem` (mode
//! 0600). It is created once and then only ever loaded: a second run must
//! not invalidate the trust users already placed in it. Leaf certificates
//! are cheap and short-lived, and may be re-issued from it at every start.
//!
//! A damaged or half-present CA is an error naming the file, never silently
//! replaced.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::files::{parse_certs, read_file};
use super::{certified_key, CertAndKey, PairProblem, TlsError};

/// File name of the CA certificate inside the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key inside the data directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a new CA is valid (about ten years).
const CA_VALIDITY: Duration = Duration::days(3650);
/// How long an issued leaf is valid (the same as a public ACME certificate).
const LEAF_VALIDITY: Duration = Duration::days(90);
/// Back-dating of `notBefore`, to tolerate clocks that lag a little.
const BACKDATE: Duration = Duration::hours(1);

/// A local CA (ECDSA P-256) that issues the certificates `berth dev` serves.
pub struct LocalCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    cert_path: PathBuf,
    /// The CA as rcgen needs it for signing: its parameters (subject, key
    /// identifier) as parsed from `ca.pem`, self-signed again in memory. Only
    /// its subject and key are used; the served chain carries `cert_der`.
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads `DIR/ca.pem` + `DIR/ca-key.pem`, or creates them (ECDSA P-256,
    /// CA:true with path length 0, ~10 years, CN "berth local CA (HOSTNAME)"
    /// or, when the host name is unknown, the data directory in its place);
    /// the key file gets mode 0600, and the directory is created with mode
    /// 0700 if missing.
    ///
    /// A second call on the same directory loads the same CA (nothing is
    /// regenerated). A corrupt file, a key that does not match the
    /// certificate, or only one of the two files being present is an error
    /// naming the file; nothing is ever silently replaced.
    pub fn load_or_create(dir: &Path) -> Result<LocalCa, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let exists = |path: &Path, what: &'static str| {
            path.try_exists().map_err(|error| TlsError::Read {
                what,
                path: path.to_owned(),
                hint: "check the permissions of the data directory".into(),
                error,
            })
        };
        let cert_exists = exists(&cert_path, "CA certificate")?;
        let key_exists = exists(&key_path, "CA private key")?;
        match (cert_exists, key_exists) {
            (true, true) => Self::load(cert_path, &key_path),
            (false, false) => Self::create(dir, cert_path, &key_path),
            (true, false) => Err(TlsError::Invalid {
                what: "CA certificate",
                path: cert_path,
                problem: format!("its private key {} is missing", key_path.display()),
                hint: format!(
                    "restore {CA_KEY_FILE}, or delete {CA_CERT_FILE} to create a new CA (clients must then trust the new one)"
                ),
            }),
            (false, true) => Err(TlsError::Invalid {
                what: "CA private key",
                path: key_path,
                problem: format!("its certificate {} is missing", cert_path.display()),
                hint: format!(
                    "restore {CA_CERT_FILE}, or delete {CA_KEY_FILE} to create a new CA (clients must then trust the new one)"
                ),
            }),
        }
    }

    /// The CA certificate in PEM, exactly as stored in `ca.pem`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Path of the CA certificate (`DIR/ca.pem`), for `curl --cacert` and
    /// `berth agent --ca-file`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues a leaf (ECDSA P-256, ~90 days, SANs = `names`, e.g.
    /// `["berth.localhost", "*.berth.localhost"]`, serverAuth EKU) with a
    /// fresh key. The chain is `[leaf, ca]`.
    ///
    /// Names that parse as IP addresses become IP SANs.
    pub fn issue(&self, names: &[String]) -> Result<CertAndKey, TlsError> {
        let what = || format!("certificate for {}", names.join(", "));
        let gen_err = |e: rcgen::Error| TlsError::Generate {
            what: what(),
            reason: e.to_string(),
        };
        if names.is_empty() {
            return Err(TlsError::Generate {
                what: "certificate".into(),
                reason: "no host names given".into(),
            });
        }
        let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let leaf = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(gen_err)?;
        Ok(CertAndKey {
            chain: vec![leaf.der().clone(), self.cert_der.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    fn load(cert_path: PathBuf, key_path: &Path) -> Result<LocalCa, TlsError> {
        let hint = format!(
            "restore it from a backup, or delete both {CA_CERT_FILE} and {CA_KEY_FILE} to create a new CA (clients must then trust the new one)"
        );
        let cert_bytes = read_file(&cert_path, "CA certificate", &hint)?;
        let key_bytes = read_file(key_path, "CA private key", &hint)?;
        let invalid = |what: &'static str, path: &Path, problem: String| TlsError::Invalid {
            what,
            path: path.to_owned(),
            problem,
            hint: hint.clone(),
        };

        let cert_pem = String::from_utf8(cert_bytes)
            .map_err(|_| invalid("CA certificate", &cert_path, "not a text (PEM) file".into()))?;
        let mut certs = parse_certs(cert_pem.as_bytes(), &cert_path, "CA certificate", &hint)?;
        if certs.len() != 1 {
            return Err(invalid(
                "CA certificate",
                &cert_path,
                format!("expected exactly one certificate, found {}", certs.len()),
            ));
        }
        let cert_der = certs.remove(0);
        let params = CertificateParams::from_ca_cert_der(&cert_der).map_err(|e| {
            invalid(
                "CA certificate",
                &cert_path,
                format!("cannot parse certificate: {e}"),
            )
        })?;
        if !matches!(params.is_ca, IsCa::Ca(_)) {
            return Err(invalid(
                "CA certificate",
                &cert_path,
                "not a CA certificate (basicConstraints CA:true missing)".into(),
            ));
        }

        let key_pem = std::str::from_utf8(&key_bytes)
            .map_err(|_| invalid("CA private key", key_path, "not a text (PEM) file".into()))?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            invalid(
                "CA private key",
                key_path,
                format!("cannot parse private key: {e}"),
            )
        })?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        match certified_key(vec![cert_der.clone()], key_der) {
            Ok(_) => {}
            Err(PairProblem::Mismatch) => {
                return Err(TlsError::KeyMismatch {
                    cert: cert_path,
                    key: key_path.to_owned(),
                    hint,
                })
            }
            Err(PairProblem::Leaf(problem)) => {
                return Err(invalid("CA certificate", &cert_path, problem))
            }
            Err(p @ (PairProblem::Key(_) | PairProblem::EmptyChain)) => {
                return Err(invalid("CA private key", key_path, p.to_string()))
            }
        }

        let issuer = params.self_signed(&key).map_err(|e| {
            invalid(
                "CA certificate",
                &cert_path,
                format!("cannot use it for signing: {e}"),
            )
        })?;
        Ok(LocalCa {
            cert_pem,
            cert_der,
            cert_path,
            issuer,
            key,
        })
    }

    fn create(dir: &Path, cert_path: PathBuf, key_path: &Path) -> Result<LocalCa, TlsError> {
        create_private_dir(dir)?;
        let gen_err = |e: rcgen::Error| TlsError::Generate {
            what: "local CA".into(),
            reason: e.to_string(),
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
        let mut params = CertificateParams::default();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "berth");
        dn.push(
            DnType::CommonName,
            format!("berth local CA ({})", ca_label(dir)),
        );
        params.distinguished_name = dn;
        // Path length 0: this CA signs leaves only, never other CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial());
        let issuer = params.self_signed(&key).map_err(gen_err)?;
        let cert_pem = issuer.pem();

        // Key first: a crash in between leaves a key without a certificate,
        // which load_or_create reports instead of overwriting.
        write_new_file(
            key_path,
            "CA private key",
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new_file(&cert_path, "CA certificate", cert_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_path.display(), "created local CA");

        Ok(LocalCa {
            cert_der: issuer.der().clone(),
            cert_pem,
            cert_path,
            issuer,
            key,
        })
    }
}

/// A 16-byte random serial number with the top bit clear (serials must be
/// positive).
fn random_serial() -> rcgen::SerialNumber {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01; // no leading zero byte, so the DER length is stable
    rcgen::SerialNumber::from_slice(&bytes)
}

/// What the CA's name says it belongs to: the machine's host name, or else
/// the data directory.
fn ca_label(dir: &Path) -> String {
    let from_file = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            std::path::absolute(dir)
                .unwrap_or_else(|_| dir.to_owned())
                .display()
                .to_string()
        })
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist; an
/// existing directory keeps its mode.
fn create_private_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|error| TlsError::Write {
        what: "data directory",
        path: dir.to_owned(),
        error,
    })
}

/// Writes a file that must not exist yet, with the given Unix mode from the
/// moment it is created.
fn write_new_file(path: &Path, what: &'static str, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let err = |error| TlsError::Write {
        what,
        path: path.to_owned(),
        error,
    };
    let mut file = options.open(path).map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_or_create_twice_gives_the_same_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let first = LocalCa::load_or_create(&dir).unwrap();
        let key_before = std::fs::read(dir.join(CA_KEY_FILE)).unwrap();
        let second = LocalCa::load_or_create(&dir).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        assert_eq!(first.cert_der(), second.cert_der());
        assert_eq!(second.cert_path(), dir.join(CA_CERT_FILE));
        assert_eq!(std::fs::read(dir.join(CA_KEY_FILE)).unwrap(), key_before);
        assert_eq!(
            std::fs::read_to_string(dir.join(CA_CERT_FILE)).unwrap(),
            first.cert_pem()
        );
        assert!(first.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_0600_and_new_dir_is_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fresh");
        LocalCa::load_or_create(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[test]
    fn corrupt_ca_pem_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        LocalCa::load_or_create(dir).unwrap();
        let cert_path = dir.join(CA_CERT_FILE);
        std::fs::write(
            &cert_path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let msg = LocalCa::load_or_create(dir).unwrap_err().to_string();
        assert!(msg.contains(&*cert_path.to_string_lossy()), "{msg}");
        assert!(msg.contains("delete both"), "{msg}");
        // Not silently replaced.
        assert!(std::fs::read_to_string(&cert_path)
            .unwrap()
            .contains("AAAA"));

        std::fs::write(&cert_path, "garbage").unwrap();
        let msg = LocalCa::load_or_create(dir).unwrap_err().to_string();
        assert!(msg.contains(&*cert_path.to_string_lossy()), "{msg}");
    }

    #[test]
    fn corrupt_or_missing_key_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        LocalCa::load_or_create(dir).unwrap();
        let key_path = dir.join(CA_KEY_FILE);
        std::fs::write(&key_path, "garbage").unwrap();
        let msg = LocalCa::load_or_create(dir).unwrap_err().to_string();
        assert!(msg.contains(&*key_path.to_string_lossy()), "{msg}");

        // A key from another CA: mismatch.
        let other = tempfile::tempdir().unwrap();
        LocalCa::load_or_create(other.path()).unwrap();
        std::fs::copy(other.path().join(CA_KEY_FILE), &key_path).unwrap();
        let err = LocalCa::load_or_create(dir).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

        std::fs::remove_file(&key_path).unwrap();
        let msg = LocalCa::load_or_create(dir).unwrap_err().to_string();
        assert!(msg.contains("is missing"), "{msg}");
        assert!(dir.join(CA_CERT_FILE).exists());
    }

    #[test]
    fn issued_leaf_chains_to_the_ca_and_reloaded_ca_still_signs() {
        let tmp = tempfile::tempdir().unwrap();
        let names = vec!["berth.localhost".to_owned(), "*.berth.localhost".to_owned()];
        let ca = LocalCa::load_or_create(tmp.path()).unwrap();
        let ck = ca.issue(&names).unwrap();
        assert_eq!(ck.chain.len(), 2);
        assert_eq!(&ck.chain[1], ca.cert_der());
        assert!(ca.issue(&[]).is_err());

        // The leaf issued by a reloaded CA must verify against the stored ca.pem.
        let reloaded = LocalCa::load_or_create(tmp.path()).unwrap();
        let ck2 = reloaded.issue(&names).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(crate::tls::provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        for leaf in [&ck.chain[0], &ck2.chain[0]] {
            for host in ["berth.localhost", "3000--main--dev--admin.berth.localhost"] {
                verifier
                    .verify_server_cert(
                        leaf,
                        &[],
                        &rustls_pki_types::ServerName::try_from(host).unwrap(),
                        &[],
                        rustls_pki_types::UnixTime::now(),
                    )
                    .unwrap_or_else(|e| panic!("{host}: {e}"));
            }
        }
    }
}
