//! Upstream connections for hyper-util's pooled client: each one is a tunnel
//! stream to (agent, port), optionally wrapped in TLS for `{port}s` hosts.
//!
//! The pool key is the request URI's authority, which names the agent, the
//! way to it (this server's tunnel of one generation, or a relay to another
//! holder) and the port (`a17-g3-p3000`), so a pooled connection can never
//! serve another agent, nor outlive the tunnel it ran on.

use super::relay::Relay;
use crate::tunnel::edge::{OpenError, Tunnels};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::upgrade::Upgraded;
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_rustls::client::TlsStream;

/// The way a pooled connection reaches its agent: this server's tunnel of
/// one generation, or the relay to another holder (by its number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    Tunnel(u64),
    Relay(u32),
}

/// The authority that routes a pooled request: agent, way, port
/// (`a17-g3-p3000` through tunnel generation 3, `a17-r2-p3000` through
/// holder 2).
pub(crate) fn authority(agent_id: i64, via: Via, port: u16) -> String {
    match via {
        Via::Tunnel(generation) => format!("a{agent_id}-g{generation}-p{port}"),
        Via::Relay(holder) => format!("a{agent_id}-r{holder}-p{port}"),
    }
}

/// `{scheme}://{authority}{path}` for a pooled request, built without
/// `format!` (it runs for every request).
pub(crate) fn upstream_uri(scheme: &str, agent_id: i64, via: Via, port: u16, path: &str) -> String {
    let mut n = itoa::Buffer::new();
    let mut out = String::with_capacity(scheme.len() + 40 + path.len());
    out.push_str(scheme);
    out.push_str("://a");
    out.push_str(n.format(agent_id));
    let (tag, number) = match via {
        Via::Tunnel(generation) => ("-g", generation),
        Via::Relay(holder) => ("-r", u64::from(holder)),
    };
    out.push_str(tag);
    out.push_str(n.format(number));
    out.push_str("-p");
    out.push_str(n.format(port));
    out.push_str(path);
    out
}

fn parse_authority(host: &str) -> Option<(i64, Via, u16)> {
    let rest = host.strip_prefix('a')?;
    let (agent, rest) = rest.split_once('-')?;
    let (via, port) = rest.split_once("-p")?;
    let via = if let Some(g) = via.strip_prefix('g') {
        Via::Tunnel(g.parse().ok()?)
    } else {
        Via::Relay(via.strip_prefix('r')?.parse().ok()?)
    };
    Some((agent.parse().ok()?, via, port.parse().ok()?))
}

/// Opens tunnel streams for the pooled client.
#[derive(Clone)]
pub(crate) struct TunnelConnector {
    tunnels: Arc<Tunnels>,
    relay: Arc<Relay>,
    app_tls: Arc<rustls::ClientConfig>,
}

impl TunnelConnector {
    /// `app_tls` is used for `{port}s` hosts (the app's own HTTPS).
    pub(crate) fn new(
        tunnels: Arc<Tunnels>,
        relay: Arc<Relay>,
        app_tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        TunnelConnector {
            tunnels,
            relay,
            app_tls,
        }
    }
}

/// A stream to an app: plain, or TLS to the app's own HTTPS port.
pub(crate) enum AppStream {
    /// Plain HTTP over the tunnel stream.
    Plain(Upgraded),
    /// HTTPS to the app over the tunnel stream.
    Tls(Box<TokioIo<TlsStream<TokioIo<Upgraded>>>>),
}

impl Connection for AppStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for AppStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            AppStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for AppStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            AppStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Plain(s) => Pin::new(s).poll_flush(cx),
            AppStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            AppStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            AppStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            AppStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            AppStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            AppStream::Plain(s) => s.is_write_vectored(),
            AppStream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Connect failures, kept typed so the proxy can tell them apart.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The URI was not one the proxy builds.
    #[error("internal: not a tunnel authority: {0}")]
    BadAuthority(String),
    /// Opening the tunnel stream failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The TLS handshake with the app's own HTTPS failed.
    #[error("TLS handshake with the app failed: {0}")]
    AppTls(io::Error),
}

impl tower::Service<Uri> for TunnelConnector {
    type Response = AppStream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<AppStream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tunnels = self.tunnels.clone();
        let relay = self.relay.clone();
        let app_tls = self.app_tls.clone();
        Box::pin(async move {
            let host = uri.host().unwrap_or_default();
            let (agent, via, port) =
                parse_authority(host).ok_or_else(|| ConnectError::BadAuthority(host.to_owned()))?;
            // The stream is opened in a task of its own, so that a caller
            // that goes away (its client reset the request) does not cancel
            // the CONNECT half-way: a stream reset before the agent (or the
            // holder) has accepted it counts against h2's limit on such
            // resets (the "rapid reset" defence), and one visitor's burst
            // would close the whole tunnel or relay link for everyone. A
            // stream nobody waits for any more is dropped once open.
            let open = async move {
                match via {
                    Via::Tunnel(generation) => tunnels.open(agent, generation, port).await,
                    Via::Relay(id) => {
                        let holder = relay.holder_url(id).ok_or(OpenError::Offline)?;
                        relay.open(&holder, agent, port).await
                    }
                }
            };
            let stream = tokio::spawn(open)
                .await
                .map_err(|e| OpenError::Tunnel(format!("opening the stream failed: {e}")))??;
            if uri.scheme_str() != Some("https") {
                return Ok(AppStream::Plain(stream));
            }
            let name = ServerName::try_from("localhost").expect("static name");
            let tls = tokio_rustls::TlsConnector::from(app_tls)
                .connect(name, TokioIo::new(stream))
                .await
                .map_err(ConnectError::AppTls)?;
            Ok(AppStream::Tls(Box::new(TokioIo::new(tls))))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn authority_round_trips() {
        use super::Via;
        let a = super::authority(17, Via::Tunnel(3), 3000);
        assert_eq!(a, "a17-g3-p3000");
        assert_eq!(super::parse_authority(&a), Some((17, Via::Tunnel(3), 3000)));
        let r = super::authority(17, Via::Relay(2), 3000);
        assert_eq!(r, "a17-r2-p3000");
        assert_eq!(super::parse_authority(&r), Some((17, Via::Relay(2), 3000)));
        assert_eq!(
            super::upstream_uri("http", 17, Via::Tunnel(3), 3000, "/a?b"),
            format!("http://{a}/a?b")
        );
        assert_eq!(
            super::upstream_uri("https", 17, Via::Relay(2), 3000, "/"),
            format!("https://{r}/")
        );
        assert_eq!(super::parse_authority("a1-g2"), None);
        assert_eq!(super::parse_authority("x1-g2-p3"), None);
        assert_eq!(super::parse_authority("a1-x2-p3"), None);
        assert_eq!(super::parse_authority("a1-r-p3"), None);
    }
}
