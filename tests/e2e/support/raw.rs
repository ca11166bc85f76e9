//! Raw TLS connections to berth, for requests no polite client would send,
//! and a small HTTP/1.x response reader.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Opens a TLS connection (ALPN http/1.1) to `127.0.0.1:port` with SNI `sni`,
/// trusting `ca`.
pub async fn tls(ca: &Path, sni: &str, port: u16) -> TlsStream<TcpStream> {
    let cfg = berth::tls::client::client_config(Some(ca), &[b"http/1.1"]).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        berth::tls::client::connect(sni, port, cfg),
    )
    .await
    .expect("TLS connect timed out")
    .expect("TLS connect")
}

/// Opens a TLS connection to `addr` offering ALPN `alpn`, with SNI `sni`,
/// trusting only `ca` (no timeout: the caller bounds it).
pub async fn tls_alpn(addr: SocketAddr, ca: &Path, sni: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(sni.to_owned().try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// How a raw exchange ended.
#[derive(Debug)]
pub struct Exchange {
    /// Every byte read before the end.
    pub bytes: Vec<u8>,
    /// `None`: clean EOF; `Some(kind)`: the read failed.
    pub error: Option<std::io::ErrorKind>,
}

impl Exchange {
    /// The responses in `bytes`, in order.
    pub fn responses(&self) -> Vec<Response> {
        let mut out = Vec::new();
        let mut rest = &self.bytes[..];
        while let Some((res, used)) = parse_response(rest) {
            out.push(res);
            rest = &rest[used..];
        }
        out
    }
}

/// Writes `request` (ignoring a failed write: the server may close first) and
/// reads until EOF or an error, at most `limit` long.
pub async fn exchange<S>(stream: &mut S, request: &[u8], limit: Duration) -> Exchange
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = stream.write_all(request).await;
    let _ = stream.flush().await;
    read_to_end(stream, limit).await
}

/// Reads until EOF or an error; panics when `limit` passes first.
pub async fn read_to_end<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Exchange {
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let result = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e.kind()),
            }
        }
    })
    .await;
    match result {
        Ok(error) => Exchange { bytes, error },
        Err(_) => panic!(
            "the connection stayed open for {limit:?}; read so far: {:?}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// One parsed HTTP/1.x response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one complete response at the start of `buf`: (response, bytes used).
/// A response without length runs to the end of `buf`.
pub fn parse_response(buf: &[u8]) -> Option<(Response, usize)> {
    let head_end = find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let rest = &buf[head_end..];
    let (body, used) = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = find(&rest[pos..], b"\r\n")?;
            let size_s = std::str::from_utf8(&rest[pos..pos + line_end]).ok()?;
            let size = usize::from_str_radix(size_s.split(';').next()?.trim(), 16).ok()?;
            pos += line_end + 2;
            if size == 0 {
                let trailer_end = find(&rest[pos..], b"\r\n")?;
                pos += trailer_end + 2;
                break;
            }
            if rest.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        (body, pos)
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            return None;
        }
        (rest[..len].to_vec(), len)
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        (Vec::new(), 0)
    } else {
        (rest.to_vec(), rest.len())
    };
    Some((
        Response {
            status,
            headers,
            body,
        },
        head_end + used,
    ))
}
