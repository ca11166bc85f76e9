//! Where to send load, and how to dial it: plain TCP to the origin, or TLS to
//! berth with the connection made to 127.0.0.1 and the host name used only
//! for SNI and `Host` (so `*.berth.localhost` needs no resolver).

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A byte stream a hyper client can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub type BoxIo = Box<dyn Io>;

/// TLS settings for a berth target.
#[derive(Clone)]
pub struct Tls {
    /// SNI and certificate name, e.g. `3000--main--dev--admin.berth.localhost`
    pub host: String,
    /// ALPN `http/1.1` only
    pub h1: Arc<rustls::ClientConfig>,
    /// ALPN `h2` only
    pub h2: Arc<rustls::ClientConfig>,
}

/// One place the load goes to.
#[derive(Clone)]
pub struct Target {
    /// Row label, e.g. "direct" or "berth (agent process)"
    pub name: &'static str,
    /// Always a loopback address
    pub addr: SocketAddr,
    /// `Host` / `:authority`, e.g. `3000--main--dev--admin.berth.localhost:8443`
    pub authority: String,
    pub tls: Option<Tls>,
    /// `Authorization` header value (sent to the direct origin too, so the
    /// requests are the same size)
    pub auth: String,
}

/// HTTP version a client speaks to a target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Proto {
    H1,
    H2,
}

impl Target {
    /// `http://…` or `https://…` with the real host name.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.authority)
    }

    /// The same URL with the host replaced by the loopback address (for
    /// clients that resolve names themselves, like wrk).
    pub fn ip_url(&self, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Opens a connection: TCP to `addr`, then TLS with SNI = host if berth.
    pub async fn dial(&self, proto: Proto) -> Result<BoxIo> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {} ({})", self.addr, self.name))?;
        tcp.set_nodelay(true)?;
        let Some(tls) = &self.tls else {
            if proto == Proto::H2 {
                bail!("the direct origin speaks HTTP/1.1 only");
            }
            return Ok(Box::new(tcp));
        };
        let config = match proto {
            Proto::H1 => tls.h1.clone(),
            Proto::H2 => tls.h2.clone(),
        };
        let name = ServerName::try_from(tls.host.clone())?;
        let stream = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {}", tls.host))?;
        if proto == Proto::H2 && stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            bail!("{} did not agree to HTTP/2 (ALPN)", self.name);
        }
        Ok(Box::new(stream))
    }

    /// The request a load client sends: origin-form for HTTP/1.1, absolute
    /// for HTTP/2 (hyper needs the scheme and authority for the pseudo-headers).
    pub fn request<B>(&self, proto: Proto, method: Method, path: &str, body: B) -> Request<B> {
        let mut b = Request::builder().method(method);
        b = match proto {
            Proto::H1 => b.uri(path).header(http::header::HOST, &self.authority),
            Proto::H2 => b.uri(self.url(path)).version(http::Version::HTTP_2),
        };
        b.header(http::header::AUTHORIZATION, &self.auth)
            .body(body)
            .expect("valid request parts")
    }

    /// The same target with TLS session resumption turned off, so every
    /// connection makes a full handshake (the handshakes/s scenario).
    pub fn without_resumption(&self) -> Target {
        let mut t = self.clone();
        if let Some(tls) = &mut t.tls {
            let off = |c: &Arc<rustls::ClientConfig>| {
                let mut c = (**c).clone();
                c.resumption = rustls::client::Resumption::disabled();
                Arc::new(c)
            };
            tls.h1 = off(&tls.h1);
            tls.h2 = off(&tls.h2);
        }
        t
    }

    /// One HTTP/1.1 request on a fresh connection: (status, body).
    pub async fn once(
        &self,
        method: Method,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> Result<(u16, Bytes)> {
        let io = self.dial(Proto::H1).await?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        let mut req = self.request(Proto::H1, method, path, Full::new(Bytes::from(body)));
        if json.is_some() {
            req.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
        }
        let res = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
            .await
            .map_err(|_| anyhow!("{} did not answer {path} within 10 s", self.name))??;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// Client TLS configurations trusting berth's local CA, one per ALPN.
pub fn tls_configs(ca: &Path) -> Result<(Arc<rustls::ClientConfig>, Arc<rustls::ClientConfig>)> {
    let h1 = berth::tls::client::client_config(Some(ca), &[b"http/1.1"])?;
    let h2 = berth::tls::client::client_config(Some(ca), &[b"h2"])?;
    Ok((h1, h2))
}
