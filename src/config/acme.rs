//! `tls.mode = "acme"`: the `[tls.acme]` and `[tls.acme.dns]` sections,
//! resolved into [`AcmeSettings`] and checked, every error naming its key.

use super::{defaults, secs, AcmeDnsSection, AcmeSection, ConfigError, Problems};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `tls.mode = "acme"`, resolved and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The CA's ACME directory URL.
    pub directory: String,
    /// Contact address given to the CA.
    pub email: Option<String>,
    /// Extra trust anchor for the directory's HTTPS (test CAs).
    pub ca_file: Option<PathBuf>,
    /// Renew when the certificate has less than this left.
    pub renew_before: Duration,
    /// How TXT records are published and checked.
    pub dns: DnsSettings,
    /// Where to confirm TXT records; empty: the provider's own choice.
    pub resolvers: Vec<SocketAddr>,
    /// How long to wait for a TXT record to become visible.
    pub propagation_timeout: Duration,
}

/// A DNS provider's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsSettings {
    /// Run the operator's script.
    Exec {
        /// The script, run as `command present|cleanup FQDN VALUE`.
        command: PathBuf,
    },
    /// RFC 2136 dynamic update signed with TSIG.
    Rfc2136 {
        /// The zone's primary, which accepts updates.
        server: SocketAddr,
        /// The zone, lower case, without the final dot.
        zone: String,
        /// The TSIG key's name.
        key_name: String,
        /// "hmac-sha256", "hmac-sha384" or "hmac-sha512".
        algorithm: String,
        /// The TSIG secret, base64 (checked to decode).
        secret: crate::secret::Secret,
    },
}

/// Checks `[tls.acme]` and `[tls.acme.dns]`, reporting every problem.
pub(super) fn settings(a: AcmeSection) -> Result<AcmeSettings, ConfigError> {
    let mut p = Problems::default();
    let directory = p.take(directory(a.directory));
    let renew_before = p.take(match a.renew_before_days {
        None => Ok(defaults::ACME_RENEW_BEFORE),
        Some(d) if d.is_finite() && d > 0.0 && d < 3650.0 => {
            Ok(Duration::from_secs_f64(d * 86_400.0))
        }
        Some(d) => Err(invalid(
            "tls.acme.renew_before_days",
            format!("{d} is not a positive number of days below 3650"),
        )),
    });
    let mut d = a.dns.unwrap_or_default();
    let mut resolvers = Vec::new();
    for r in d.resolvers.take().unwrap_or_default() {
        resolvers.extend(p.take(addr("tls.acme.dns.resolvers", &r)));
    }
    let propagation_timeout = p.take(secs(
        "tls.acme.dns.propagation_timeout_secs",
        d.propagation_timeout_secs,
        defaults::ACME_PROPAGATION_TIMEOUT,
    ));
    let dns = p.take(dns(d));
    let settings = (|| {
        Some(AcmeSettings {
            directory: directory?,
            email: a.email,
            ca_file: a.ca_file,
            renew_before: renew_before?,
            dns: dns?,
            resolvers,
            propagation_timeout: propagation_timeout?,
        })
    })();
    p.finish(settings)
}

fn invalid(key: &'static str, message: String) -> ConfigError {
    ConfigError::Invalid { key, message }
}

/// `tls.acme.directory`: required, https.
fn directory(directory: Option<String>) -> Result<String, ConfigError> {
    let directory = directory.ok_or_else(|| {
        invalid(
            "tls.acme.directory",
            "is required when tls.mode = \"acme\", e.g. https://acme-staging-v02.api.letsencrypt.org/directory (staging first)".into(),
        )
    })?;
    if !directory.starts_with("https://") {
        return Err(invalid(
            "tls.acme.directory",
            format!("{directory:?} is not an https:// URL"),
        ));
    }
    Ok(directory)
}

/// An `IP:PORT` setting.
fn addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse()
        .map_err(|_| invalid(key, format!("{s:?} is not an IP:PORT such as 127.0.0.1:53")))
}

/// `[tls.acme.dns]`'s provider and what it needs.
fn dns(d: AcmeDnsSection) -> Result<DnsSettings, ConfigError> {
    Ok(match d.provider.as_deref() {
        Some("exec") => DnsSettings::Exec {
            command: d.command.ok_or_else(|| {
                invalid(
                    "tls.acme.dns.command",
                    "is required with provider = \"exec\": the script to run as `command present|cleanup FQDN VALUE`".into(),
                )
            })?,
        },
        Some("rfc2136") => {
            let need = |key: &'static str, v: Option<String>| {
                v.ok_or_else(|| invalid(key, "is required with provider = \"rfc2136\"".into()))
            };
            let server = addr(
                "tls.acme.dns.server",
                &need("tls.acme.dns.server", d.server)?,
            )?;
            let zone = need("tls.acme.dns.zone", d.zone)?
                .trim_end_matches('.')
                .to_ascii_lowercase();
            let key_name = need("tls.acme.dns.tsig_key_name", d.tsig_key_name)?;
            let algorithm = d.tsig_algorithm.unwrap_or_else(|| "hmac-sha256".into());
            if !["hmac-sha256", "hmac-sha384", "hmac-sha512"].contains(&algorithm.as_str()) {
                return Err(invalid(
                    "tls.acme.dns.tsig_algorithm",
                    format!("{algorithm:?} is not \"hmac-sha256\", \"hmac-sha384\" or \"hmac-sha512\""),
                ));
            }
            let (b64, key) = match (d.tsig_secret, d.tsig_secret_file) {
                (Some(s), None) => (s, "tls.acme.dns.tsig_secret"),
                (None, Some(p)) => (
                    std::fs::read_to_string(&p).map_err(|e| {
                        invalid(
                            "tls.acme.dns.tsig_secret_file",
                            format!("cannot read {}: {e}", p.display()),
                        )
                    })?,
                    "tls.acme.dns.tsig_secret_file",
                ),
                _ => {
                    return Err(invalid(
                        "tls.acme.dns.tsig_secret_file",
                        "set exactly one of tsig_secret_file or tsig_secret (the key's base64 secret, as in BIND's key statement)".into(),
                    ))
                }
            };
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| invalid(key, format!("the secret is not base64: {e}")))?;
            if raw.is_empty() {
                return Err(invalid(key, "the secret is empty".into()));
            }
            DnsSettings::Rfc2136 {
                server,
                zone,
                key_name,
                algorithm,
                secret: crate::secret::Secret::new(b64.trim()),
            }
        }
        Some(other) => {
            return Err(invalid(
                "tls.acme.dns.provider",
                format!("{other:?} is not \"exec\" or \"rfc2136\""),
            ))
        }
        None => {
            return Err(invalid(
                "tls.acme.dns.provider",
                "is required when tls.mode = \"acme\": \"rfc2136\" or \"exec\"".into(),
            ))
        }
    })
}
