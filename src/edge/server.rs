//! The public listener: TCP accept with a connection cap, TLS with ALPN, and
//! hyper-util's auto server (HTTP/1.1 and HTTP/2 on one port, upgrades on).
//! On shutdown it stops accepting and gives open connections a grace period.
//!
//! Every connection's socket gives up on a client that takes none of the
//! bytes waiting for it for `limits.client_write_timeout_secs`
//! ([`WriteDeadline`]): HTTP/1.1 responses, HTTP/2 connections and
//! upgraded connections alike. (A stalled HTTP/2 *stream* on a connection
//! that still reads is handled per response, in [`super::streams`].)

use super::Frontdoor;
use crate::config::{defaults, Limits};
use crate::tunnel::stall::WriteDeadline;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// HTTP/2 PING interval towards clients, to find dead connections.
const CLIENT_PING: Duration = Duration::from_secs(20);

/// First pause after a failed `accept` (out of descriptors, say); it
/// doubles up to [`ACCEPT_BACKOFF_MAX`] while accept keeps failing.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Descriptors an explicit `limits.max_connections` should leave for
/// everything else, below which a warning is logged at start.
const FD_HEADROOM_WARN: u64 = 256;

/// Warns when `max_connections` leaves too few descriptors for the rest.
fn check_open_files(max_connections: usize) {
    let limit = defaults::open_files_limit();
    if (max_connections as u64).saturating_add(FD_HEADROOM_WARN) > limit {
        tracing::warn!(
            max_connections,
            open_files_limit = limit,
            "limits.max_connections leaves fewer than {FD_HEADROOM_WARN} descriptors under the \
             open-files limit: accept will fail (EMFILE) before the cap; raise the limit \
             (ulimit -n, LimitNOFILE=) or lower limits.max_connections"
        );
    } else {
        tracing::info!(
            max_connections,
            open_files_limit = limit,
            "accepting connections up to the cap"
        );
    }
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    frontdoor: Arc<Frontdoor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    check_open_files(limits.max_connections);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let write_timeout = Some(limits.client_write_timeout);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        // WebSockets over HTTP/2 (RFC 8441), so browsers need no second connection.
        .enable_connect_protocol()
        .max_header_list_size(limits.max_header_bytes as u32)
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        .keep_alive_interval(CLIENT_PING)
        .keep_alive_timeout(Duration::from_secs(20));
    // ALPN decides the protocol: a connection that agreed on `h2` is served
    // as HTTP/2 only, so a client that then sends something other than the
    // HTTP/2 preface gets a connection error, not an HTTP/1.1 answer (RFC 9113
    // §3.4). Without ALPN (or with `http/1.1`) the auto builder reads the
    // first bytes, as before.
    let h2_only = Arc::new(builder.clone().http2_only());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those still open when the grace
    // period is over are ended here, not left running (an embedding process,
    // or long-lived streams such as an edge's watch, would keep them alive).
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = ACCEPT_BACKOFF;
    loop {
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closes"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: the connection
                    // waits in the backlog; back off (more each time while
                    // it lasts) rather than spin, and say so once.
                    if backoff == ACCEPT_BACKOFF {
                        tracing::warn!(error = %e, open = connections.len(),
                            "accept failed; retrying with back-off (out of descriptors? \
                             raise the open-files limit or lower limits.max_connections)");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if backoff != ACCEPT_BACKOFF {
            tracing::info!("accepting connections again");
            backoff = ACCEPT_BACKOFF;
        }
        let _ = tcp.set_nodelay(true);
        let tcp = WriteDeadline::new(tcp, write_timeout);
        let acceptor = acceptor.clone();
        let frontdoor = frontdoor.clone();
        let builder = builder.clone();
        let h2_only = h2_only.clone();
        let handshake_timeout = limits.header_read_timeout;
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| {
                let frontdoor = frontdoor.clone();
                async move { Ok::<_, std::convert::Infallible>(frontdoor.handle(req, peer).await) }
            });
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let ended = if h2 {
                watcher
                    .watch(h2_only.serve_connection(io, service).into_owned())
                    .await
            } else {
                watcher
                    .watch(
                        builder
                            .serve_connection_with_upgrades(io, service)
                            .into_owned(),
                    )
                    .await
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(open = connections.len(), "grace period over; closing remaining connections");
        }
    }
    connections.abort_all();
}
