//! The client side of TLS for berth's own programs (agent, CLI).
//!
//! * Trust: `--ca-file` if given, else `$SSL_CERT_FILE`, else the system
//!   store ([`client_config`]).
//! * Names: `localhost` and every `*.localhost` name resolve to loopback
//!   without asking the system resolver (RFC 6761 §6.3), so
//!   `https://berth.localhost:8443` works with `berth dev` everywhere
//!   ([`resolve`]).
//! * Dialing: [`connect`] tries each address, turns on `TCP_NODELAY`, and
//!   does the handshake with SNI set to the host name.
//! * [`insecure_client_config`]: the one place certificates are not checked,
//!   for an app's own HTTPS port on loopback inside a workspace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::files::read_certs;
use super::{provider, TlsError, VERSIONS};

/// Whether [`unknown_issuer_hint`] has been logged in this process.
static HINTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The sentence that explains a failure to trust the server, when `error`
/// (an error's text) is rustls's `UnknownIssuer`; `None` for other errors.
pub fn unknown_issuer_hint(error: &str) -> Option<&'static str> {
    error.contains("UnknownIssuer").then_some(
        "the server's certificate comes from a CA this machine does not trust. Pass \
         --ca-file with the server's CA certificate (berth dev and berth control's self-signed \
         mode keep it as ca.pem in the data directory, e.g. .berth/ca.pem; BERTH_CA_FILE works \
         too), set SSL_CERT_FILE, or install that CA on this machine with `berth trust`",
    )
}

/// Logs [`unknown_issuer_hint`] for `error` once per process, so an agent
/// or edge that retries twice a second says what fixes it exactly once.
pub fn explain_once(error: &str) {
    if let Some(hint) = unknown_issuer_hint(error) {
        if !HINTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!("{hint}");
        }
    }
}

/// Builds the client configuration berth's agent and CLI use.
///
/// Roots: `ca_file` if given, else the file named by `$SSL_CERT_FILE` if set
/// (and non-empty), else the system store (via `rustls-native-certs`).
/// Errors name the file and the setting it came from. `alpn` is offered as
/// given, in order of preference.
pub fn client_config(
    ca_file: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = load_roots(ca_file)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn load_roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let env_file = std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty());
    let (path, what, hint) = match (ca_file, &env_file) {
        (Some(path), _) => (path, "CA file", "check --ca-file"),
        (None, Some(env)) => (
            Path::new(env),
            "CA file",
            "check the SSL_CERT_FILE environment variable",
        ),
        (None, None) => return system_roots(),
    };
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certs(path, what, hint)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            what,
            path: path.to_owned(),
            problem: format!(
                "certificate #{} cannot be used as a trust anchor: {e}",
                i + 1
            ),
            hint: hint.to_owned(),
        })?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipping part of the system certificate store");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = if found.errors.is_empty() {
            "the system certificate store is empty".to_owned()
        } else {
            found
                .errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Err(TlsError::NoRoots(format!(
            "{why} (pass --ca-file, set SSL_CERT_FILE, or install the ca-certificates package)"
        )));
    }
    Ok(roots)
}

/// A client configuration that verifies nothing about the server's
/// certificate, for speaking TLS to an app's own HTTPS port inside a
/// workspace.
///
/// Why this is acceptable: the agent only dials loopback (or an explicitly
/// configured sidecar host) on the workspace's own machine, so the peer is
/// the developer's process, reached without crossing a network; apps
/// commonly serve a throwaway self-signed certificate there, which nothing
/// could verify anyway. The user-facing hop (browser → edge) and the tunnel
/// (agent → edge) are verified normally. Handshake signatures are still
/// checked with the provider's algorithms, so the session keys are bound to
/// the key in the certificate that was presented.
pub fn insecure_client_config(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(provider());
    let verifier = Arc::new(AcceptAnyCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(VERSIONS)
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts any certificate chain, but checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Whether `host` is `localhost` or a name under it (RFC 6761 §6.3),
/// ignoring case and one trailing dot.
fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Resolves `host:port` the way berth's clients do (RFC 6761): `localhost`
/// and any `*.localhost` name give `127.0.0.1` then `::1`, whatever the
/// system resolver says; IP literals (bracketed or not) are used as they
/// are; anything else goes through [`tokio::net::lookup_host`].
pub async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    if is_localhost(host) {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port)).await?.collect();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no addresses"),
        ));
    }
    Ok(addrs)
}

/// Sends one request over a fresh HTTP/1.1 connection to `host:port` (TLS
/// with `config`) and returns the response with its body still streaming.
/// For berth's own occasional calls (control, an OpenID provider): no pool.
/// The caller sets `Host`. Errors are sentences naming `host:port`.
pub async fn send(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot reach {host}:{port}: {e}");
    let stream = connect(host, port, config).await.map_err(|e| fail(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
    tokio::spawn(conn);
    sender.send_request(req).await.map_err(|e| fail(&e))
}

/// [`send`], then reads the whole body (at most `limit` bytes).
pub async fn fetch(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
    limit: usize,
) -> Result<(http::StatusCode, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    let res = send(host, port, config, req).await?;
    let status = res.status();
    let body = http_body_util::Limited::new(res.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("reading the answer of {host}:{port}: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Dials `host:port` over TCP (trying each address from [`resolve`] in
/// turn, `TCP_NODELAY` on) and does a TLS handshake with SNI = `host`
/// (certificate checked against `host` too).
///
/// There is no timeout here; wrap the call in [`tokio::time::timeout`].
pub async fn connect(
    host: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let addrs = resolve(host, port).await?;
    connect_to(host, port, &addrs, config).await
}

/// Like [`connect`], but dials the given addresses instead of resolving
/// `host`; TLS still uses and verifies `host` (split DNS, `--connect-to`).
pub async fn connect_to(
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = ServerName::try_from(bare.to_owned()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is not a valid host name: {e}"),
        )
    })?;
    let mut last_err = None;
    let mut tcp = None;
    for &addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => {
                last_err = Some(std::io::Error::new(
                    e.kind(),
                    format!("cannot connect to {host}:{port} ({addr}): {e}"),
                ))
            }
        }
    }
    let tcp = match tcp {
        Some(tcp) => tcp,
        None => {
            return Err(last_err.unwrap_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{host} has no addresses"),
                )
            }))
        }
    };
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("TLS handshake with {host}:{port} failed: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_an_unknown_issuer_gets_the_ca_file_hint() {
        for (error, hinted) in [
            ("invalid peer certificate: UnknownIssuer", true),
            (
                "cannot connect to https://berth.localhost:8443: tls handshake: invalid peer certificate: UnknownIssuer",
                true,
            ),
            ("invalid peer certificate: Expired", false),
            ("connection refused", false),
            ("", false),
        ] {
            let hint = super::unknown_issuer_hint(error);
            assert_eq!(hint.is_some(), hinted, "{error}");
            if let Some(h) = hint {
                assert!(h.contains("--ca-file") && h.contains("berth trust"), "{h}");
            }
        }
    }

    use super::*;

    #[tokio::test]
    async fn resolve_localhost_names_to_loopback() {
        for host in [
            "anything.localhost",
            "localhost",
            "3000--main--dev--admin.berth.localhost",
            "BERTH.LOCALHOST.",
        ] {
            let addrs = resolve(host, 1).await.unwrap();
            assert_eq!(
                addrs,
                vec![
                    "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                    "[::1]:1".parse().unwrap()
                ],
                "{host}"
            );
        }
        assert_eq!(
            resolve("[::1]", 5).await.unwrap(),
            vec!["[::1]:5".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve("10.1.2.3", 5).await.unwrap(),
            vec!["10.1.2.3:5".parse::<SocketAddr>().unwrap()]
        );
        assert!(!is_localhost("localhost.example.com"));
        assert!(!is_localhost("notlocalhost"));
    }

    #[test]
    fn client_config_missing_ca_file_names_it() {
        let msg = client_config(Some(Path::new("/nonexistent/ca.pem")), &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("cannot read CA file /nonexistent/ca.pem: "),
            "{msg}"
        );
        assert!(msg.ends_with("(check --ca-file)"), "{msg}");
    }
}
