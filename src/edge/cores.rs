//! `server.runtime = "per-core"`: the public listener served by one
//! single-threaded tokio runtime per core, each with its own `SO_REUSEPORT`
//! listener on the same address (Pingora's "NoSteal"). The kernel spreads
//! new connections over the listeners; a connection then stays on its
//! core, and a request prefers the agent's tunnel whose connection that
//! core accepted ([`crate::tunnel::edge::core`]), so it crosses no thread.
//! The rest of the process (control plane, background tasks) stays on the
//! main runtime.

use super::Frontdoor;
use crate::config::Limits;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};

/// Binds `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`, as
/// `TcpListener::bind` does), so that each core's listener can join it.
pub(crate) fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves `listener` (bound by [`bind_shared`]) on one runtime per core
/// until `shutdown` resolves; each core drains as [`super::server::serve`]
/// does. `limits.max_connections` is shared out among the cores.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    frontdoor: Arc<Frontdoor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "per-core runtime: the listener has no address");
            return;
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = Limits {
        max_connections: (limits.max_connections / cores).max(1),
        ..limits
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut first = match listener.into_std() {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "per-core runtime: cannot hand the listener over");
            return;
        }
    };
    let mut done = Vec::new();
    for core in 0..cores {
        let own = first.take();
        let (tls, frontdoor, limits) = (tls.clone(), frontdoor.clone(), per_core.clone());
        let mut stopping = stopping.clone();
        let (finished, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("berth-core-{core}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(core, error = %e, "cannot start a core's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    crate::tunnel::edge::set_core(core as u16);
                    let listener = match own {
                        Some(l) => l
                            .set_nonblocking(true)
                            .and_then(|()| TcpListener::from_std(l)),
                        None => bind_shared(addr),
                    };
                    let listener = match listener {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(core, %addr, error = %e, "a core cannot listen");
                            return;
                        }
                    };
                    let shutdown = async move {
                        let _ = stopping.wait_for(|s| *s).await;
                    };
                    super::server::serve(listener, tls, frontdoor, limits, shutdown).await;
                });
                let _ = finished.send(());
            });
        match spawned {
            Ok(_) => done.push(finished_rx),
            Err(e) => tracing::error!(core, error = %e, "cannot start a core's thread"),
        }
    }
    tracing::info!(cores = done.len(), "serving on one runtime per core");
    shutdown.await;
    stop.send_replace(true);
    for d in done {
        let _ = d.await;
    }
}
