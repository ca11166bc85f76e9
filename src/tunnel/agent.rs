//! The agent's end of a tunnel: an HTTP/2 server whose only request is
//! `CONNECT host:port`. For each, the agent checks the port is allowed, dials
//! it on its upstream host and copies bytes both ways. It knows nothing of
//! HTTP beyond that, nor of users or shares.

use super::{
    Refusal, AGENT_PING_INTERVAL, CONNECTION_WINDOW, ERROR_HEADER, MAX_FRAME, PING_TIMEOUT,
    STREAM_WINDOW,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// Buffer size for copying between a tunnel stream and a local socket.
const COPY_BUF: usize = 64 * 1024;

/// What the agent may dial.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Hosts to try in order; the default is 127.0.0.1 then ::1, so apps that
    /// bind only one loopback family (Node's `localhost` is often `::1`) work.
    pub hosts: Vec<IpAddr>,
    /// `--allow-ports`: when set, only these ports.
    pub allow_ports: Option<BTreeSet<u16>>,
    /// Give up on a dial after this long.
    pub connect_timeout: Duration,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            hosts: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            allow_ports: None,
            connect_timeout: crate::config::defaults::CONNECT_TIMEOUT,
        }
    }
}

impl Upstream {
    /// Dials `port` on the first host that answers.
    pub async fn dial(&self, port: u16) -> Result<TcpStream, Refusal> {
        if port == 0
            || self
                .allow_ports
                .as_ref()
                .is_some_and(|a| !a.contains(&port))
        {
            return Err(Refusal::NotAllowed);
        }
        let mut last = Refusal::Unreachable;
        for host in &self.hosts {
            let addr = SocketAddr::new(*host, port);
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Refusal::Refused;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "dial failed");
                    if last != Refusal::Refused {
                        last = Refusal::Unreachable;
                    }
                }
                Err(_) => last = Refusal::Timeout,
            }
        }
        Err(last)
    }
}

/// Serves one tunnel connection (already upgraded) until it ends.
pub async fn serve(io: Upgraded, upstream: Arc<Upstream>) -> Result<(), hyper::Error> {
    let service = hyper::service::service_fn(move |req| {
        let upstream = upstream.clone();
        async move { Ok::<_, Infallible>(handle(req, upstream).await) }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(10_000)
        .keep_alive_interval(AGENT_PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .serve_connection(io, service)
        .await
}

fn refuse(status: StatusCode, why: Refusal) -> Response<Empty<Bytes>> {
    Response::builder()
        .status(status)
        .header(ERROR_HEADER, why.code())
        .body(Empty::new())
        .expect("static response is valid")
}

async fn handle(mut req: Request<Incoming>, upstream: Arc<Upstream>) -> Response<Empty<Bytes>> {
    if req.method() != http::Method::CONNECT {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, Refusal::Unreachable);
    }
    let Some(port) = req.uri().port_u16() else {
        return refuse(StatusCode::BAD_REQUEST, Refusal::Unreachable);
    };
    let tcp = match upstream.dial(port).await {
        Ok(s) => s,
        Err(why) => {
            tracing::debug!(port, why = why.code(), "refused stream");
            let status = match why {
                Refusal::NotAllowed => StatusCode::FORBIDDEN,
                Refusal::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            return refuse(status, why);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(stream) => {
                let mut stream = TokioIo::new(stream);
                let mut tcp = tcp;
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut stream,
                    &mut tcp,
                    COPY_BUF,
                    COPY_BUF,
                )
                .await;
            }
            Err(e) => tracing::debug!(port, error = %e, "stream upgrade failed"),
        }
    });
    Response::new(Empty::new())
}
