//! Handshake tests over real sockets on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::{CipherSuite, HandshakeKind, ProtocolVersion};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

const APP_HOST: &str = "3000--main--dev--admin.berth.localhost";
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

fn dev_names() -> Vec<String> {
    vec!["berth.localhost".into(), "*.berth.localhost".into()]
}

/// Serves `config` on 127.0.0.1:0: every connection that completes the
/// handshake is sent "hi" and kept open until the client closes it.
async fn spawn_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hi").await;
                    let _ = tls.flush().await;
                    let mut buf = [0u8; 16];
                    let _ = tls.read(&mut buf).await;
                }
            });
        }
    });
    addr
}

/// A CA in its own temp dir and an edge serving a leaf from it.
async fn dev_edge() -> (tempfile::TempDir, LocalCa, Arc<SwappableCert>, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let resolver = SwappableCert::new(ca.issue(&dev_names()).unwrap()).unwrap();
    let addr = spawn_server(server_config(resolver.clone()).unwrap()).await;
    (dir, ca, resolver, addr)
}

async fn read_hi(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) {
    let mut buf = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut buf))
        .await
        .expect("server did not answer")
        .unwrap();
    assert_eq!(&buf, b"hi");
}

async fn connect_with_sni(
    addr: SocketAddr,
    sni: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

#[tokio::test]
async fn handshake_with_local_ca_negotiates_h2() {
    let (_dir, ca, _resolver, addr) = dev_edge().await;
    let config = client_config(Some(ca.cert_path()), ALPN).unwrap();
    let mut tls = connect(APP_HOST, addr.port(), config).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    let chain = tls.get_ref().1.peer_certificates().unwrap();
    assert_eq!(chain.len(), 2, "leaf and CA are served");
    assert_eq!(&chain[1], ca.cert_der());
    read_hi(&mut tls).await;

    // The bare base domain is covered too, and http/1.1-only clients get it.
    let config = client_config(Some(ca.cert_path()), &[b"http/1.1"]).unwrap();
    let tls = connect("berth.localhost", addr.port(), config)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_trusting_another_ca_fails() {
    let (_dir, _ca, _resolver, addr) = dev_edge().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalCa::load_or_create(other_dir.path()).unwrap();
    let config = client_config(Some(other.cert_path()), ALPN).unwrap();
    let err = connect(APP_HOST, addr.port(), config).await.unwrap_err();
    let msg = err.to_string();
    // Both CAs share a subject name (same machine), so webpki reports the
    // issuer's signature as bad rather than the issuer as unknown.
    assert!(msg.contains("invalid peer certificate"), "{msg}");
    assert!(msg.contains(APP_HOST), "{msg}");
}

#[tokio::test]
async fn names_outside_the_wildcard_fail_verification() {
    let (_dir, ca, _resolver, addr) = dev_edge().await;
    let config = client_config(Some(ca.cert_path()), ALPN).unwrap();
    // A wildcard covers exactly one label.
    for sni in ["other.example.com", "a.b.berth.localhost"] {
        let err = connect_with_sni(addr, sni, config.clone())
            .await
            .expect_err(sni);
        assert!(
            err.to_string().contains("certificate not valid for name"),
            "{sni}: {err}"
        );
    }
}

#[tokio::test]
async fn insecure_client_accepts_any_certificate() {
    let (_dir, _ca, _resolver, addr) = dev_edge().await;
    let mut tls = connect_with_sni(addr, "other.example.com", insecure_client_config(ALPN))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    read_hi(&mut tls).await;
}

#[tokio::test]
async fn tls12_and_tls13_clients_both_work() {
    let (_dir, ca, _resolver, addr) = dev_edge().await;
    for (version, expected) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut tls = connect(APP_HOST, addr.port(), Arc::new(config))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(expected));
        read_hi(&mut tls).await;
    }
}

#[test]
fn server_offers_only_ecdhe_aead_suites() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(dir.path()).unwrap();
    let config =
        server_config(SwappableCert::new(ca.issue(&dev_names()).unwrap()).unwrap()).unwrap();
    let mut suites: Vec<CipherSuite> = config
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    suites.sort_by_key(|s| u16::from(*s));
    let mut allowed = vec![
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    allowed.sort_by_key(|s| u16::from(*s));
    assert_eq!(suites, allowed);
    for s in &config.crypto_provider().cipher_suites {
        assert!(matches!(
            s.version().version,
            ProtocolVersion::TLSv1_2 | ProtocolVersion::TLSv1_3
        ));
    }
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(config.ticketer.enabled());

    let custom = server_config_with_alpn(
        SwappableCert::new(ca.issue(&dev_names()).unwrap()).unwrap(),
        vec![b"berth-tunnel/1".to_vec()],
    )
    .unwrap();
    assert_eq!(custom.alpn_protocols, vec![b"berth-tunnel/1".to_vec()]);
}

/// A hand-made ClientHello, so that clients rustls cannot be (TLS 1.1,
/// CBC-only, RSA key exchange) can be tried against the server.
fn raw_client_hello(legacy_version: [u8; 2], suites: &[u16]) -> Vec<u8> {
    fn push_ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
        out.extend(ty.to_be_bytes());
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
    }
    let mut body = Vec::new();
    body.extend(legacy_version);
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    body.extend(((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend(s.to_be_bytes());
    }
    body.extend([1, 0]); // compression methods: null
    let mut ext = Vec::new();
    let name = b"berth.localhost";
    let mut sni = Vec::new();
    sni.extend(((name.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    push_ext(&mut ext, 0x0000, &sni); // server_name
    push_ext(&mut ext, 0x000a, &[0, 4, 0x00, 0x1d, 0x00, 0x17]); // groups: x25519, P-256
    push_ext(&mut ext, 0x000b, &[1, 0]); // ec_point_formats: uncompressed
    push_ext(
        &mut ext,
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    ); // sig algs
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut handshake = vec![1]; // client_hello
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends a raw ClientHello and returns the content type of the first record
/// the server answers with (0x16 handshake, 0x15 alert) and, for an alert,
/// its description.
async fn first_answer(addr: SocketAddr, hello: &[u8]) -> (u8, Option<u8>) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let mut header = [0u8; 5];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut header))
        .await
        .expect("server did not answer")
        .unwrap();
    if header[0] == 0x15 {
        let mut alert = [0u8; 2];
        tcp.read_exact(&mut alert).await.unwrap();
        (header[0], Some(alert[1]))
    } else {
        (header[0], None)
    }
}

#[tokio::test]
async fn legacy_versions_and_non_aead_suites_are_refused() {
    let (_dir, _ca, _resolver, addr) = dev_edge().await;
    const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
    const ECDHE_ECDSA_AES128_CBC_SHA: u16 = 0xc009;
    const ECDHE_RSA_AES128_CBC_SHA: u16 = 0xc013;
    const RSA_AES128_CBC_SHA: u16 = 0x002f;
    const RSA_AES128_GCM: u16 = 0x009c;
    const PROTOCOL_VERSION: u8 = 70;
    const HANDSHAKE_FAILURE: u8 = 40;

    // Control: the same hand-made hello with an allowed suite gets a ServerHello.
    let ok = first_answer(addr, &raw_client_hello([3, 3], &[ECDHE_ECDSA_AES128_GCM])).await;
    assert_eq!(ok, (0x16, None));

    // TLS 1.1 (and 1.0) are refused whatever the suites.
    for version in [[3, 2], [3, 1]] {
        let hello = raw_client_hello(
            version,
            &[
                ECDHE_ECDSA_AES128_GCM,
                ECDHE_ECDSA_AES128_CBC_SHA,
                RSA_AES128_CBC_SHA,
            ],
        );
        assert_eq!(
            first_answer(addr, &hello).await,
            (0x15, Some(PROTOCOL_VERSION)),
            "{version:?}"
        );
    }

    // TLS 1.2 with CBC suites, or with RSA key exchange, is refused.
    for suites in [
        &[
            ECDHE_ECDSA_AES128_CBC_SHA,
            ECDHE_RSA_AES128_CBC_SHA,
            RSA_AES128_CBC_SHA,
        ][..],
        &[RSA_AES128_GCM][..],
    ] {
        let hello = raw_client_hello([3, 3], suites);
        assert_eq!(
            first_answer(addr, &hello).await,
            (0x15, Some(HANDSHAKE_FAILURE)),
            "{suites:x?}"
        );
    }
}

#[tokio::test]
async fn swapped_certificate_is_seen_by_the_next_handshake() {
    let (_dir, ca, resolver, addr) = dev_edge().await;
    let leaf_of = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    // A fresh client config per connection, so no session is resumed.
    let fresh = || client_config(Some(ca.cert_path()), ALPN).unwrap();

    let before = resolver.current_chain();
    let tls = connect(APP_HOST, addr.port(), fresh()).await.unwrap();
    assert_eq!(leaf_of(&tls), before[0]);

    let next = ca.issue(&dev_names()).unwrap();
    let next_chain = next.chain.clone();
    resolver.set(next).unwrap();
    assert_eq!(resolver.current_chain(), next_chain);
    let tls2 = connect(APP_HOST, addr.port(), fresh()).await.unwrap();
    assert_eq!(leaf_of(&tls2), next_chain[0]);
    assert_ne!(next_chain[0], before[0]);
    // The connection made before the swap is still usable.
    let mut tls = tls;
    read_hi(&mut tls).await;

    // A bad pair is refused and leaves the current certificate in place.
    let other = ca.issue(&dev_names()).unwrap();
    let err = resolver
        .set(CertAndKey {
            chain: before.clone(),
            key: other.key.clone_key(),
        })
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(resolver
        .set(CertAndKey {
            chain: vec![],
            key: other.key,
        })
        .is_err());
    assert_eq!(resolver.current_chain(), next_chain);
}

#[tokio::test]
async fn reconnects_resume_the_session() {
    let (_dir, ca, _resolver, addr) = dev_edge().await;
    let config = client_config(Some(ca.cert_path()), ALPN).unwrap();
    let mut first = connect(APP_HOST, addr.port(), config.clone())
        .await
        .unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    read_hi(&mut first).await; // tickets arrive before the data
    drop(first);
    let mut second = connect(APP_HOST, addr.port(), config).await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
    read_hi(&mut second).await;
}

#[test]
fn ca_file_with_garbage_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.pem");
    std::fs::write(&path, "hello").unwrap();
    let msg = client_config(Some(&path), ALPN).unwrap_err().to_string();
    assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
    assert!(msg.contains("--ca-file"), "{msg}");
}
