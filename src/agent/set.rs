//! The agent's set of tunnels to one edge (`--tunnels N`): the primary
//! tunnel (slot 0) is the main loop's; this keeps slots 1..N up beside it,
//! each redialing on its own when it fails, so losing one connection costs
//! the edge only that connection's streams. A set has one random number
//! (see [`crate::tunnel::TUNNEL_SET_HEADER`]) that the agent keeps while it
//! stays with that edge; moving elsewhere starts a new set, and the old
//! one finishes its open streams and goes.

use super::STABLE_AFTER;
use super::{backoff, for_tunnel, open_tunnel, scan, AgentConfig, Serving, HANDSHAKE_TIMEOUT};
use crate::tunnel::{self, agent::Upstream, TunnelSlot};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Tunnels an agent opens to its edge unless told otherwise (`--tunnels`).
pub const DEFAULT_TUNNELS: u16 = 2;

/// Slots 1..N of one set, to one edge URL.
pub(super) struct Siblings {
    /// The edge they reach.
    pub(super) url: String,
    /// The set's number.
    pub(super) set: u64,
    /// Flipped to true to retire them: no redial, open streams finish.
    retire: watch::Sender<bool>,
    /// Their task, aborted when dropped (the agent stops).
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Siblings {
    /// Starts slots `1..cfg.tunnels` of `set` to `url`.
    pub(super) fn start(
        cfg: &AgentConfig,
        url: &str,
        set: u64,
        tls: Arc<rustls::ClientConfig>,
        up: Arc<Upstream>,
    ) -> Siblings {
        let (retire, rx) = watch::channel(false);
        let slots = (1..cfg.tunnels).map(|index| {
            let slot = TunnelSlot { set, index };
            keep(
                cfg.clone(),
                url.to_owned(),
                slot,
                tls.clone(),
                up.clone(),
                rx.clone(),
            )
        });
        let all = futures_util::future::join_all(slots);
        let task = tokio::spawn(async move {
            all.await;
        });
        Siblings {
            url: url.to_owned(),
            set,
            retire,
            task: Some(task),
        }
    }

    /// Ends them gracefully: their open streams finish, no slot redials.
    pub(super) fn retire(mut self) {
        self.retire.send_replace(true);
        self.task.take();
    }
}

impl Drop for Siblings {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Keeps one slot's tunnel up until retired.
async fn keep(
    cfg: AgentConfig,
    url: String,
    slot: TunnelSlot,
    tls: Arc<rustls::ClientConfig>,
    up: Arc<Upstream>,
    mut retire: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    loop {
        let opened = tokio::select! {
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, open_tunnel(&cfg, &url, tls.clone(), Some(slot))) => r,
            _ = retire.wait_for(|r| *r) => return,
        };
        match opened {
            Ok(Ok((io, _, edge))) => {
                let since = Instant::now();
                tracing::debug!(%url, index = slot.index, "tunnel up");
                let steering = Arc::new(tunnel::agent::Steering::default());
                let mut serving = Serving(Some(tokio::spawn(tunnel::agent::serve(
                    io,
                    for_tunnel(&up, edge),
                    steering.clone(),
                    scan::listening_ports_for,
                ))));
                let task = serving.0.as_mut().expect("not detached");
                tokio::select! {
                    r = task => {
                        serving.0.take();
                        tracing::info!(%url, index = slot.index, result = ?r.map(|r| r.err().map(|e| e.to_string())), "one of the tunnels closed; redialing it");
                    }
                    _ = retire.wait_for(|r| *r) => {
                        steering.retire.notify_one();
                        serving.detach();
                        return;
                    }
                }
                if since.elapsed() >= STABLE_AFTER {
                    attempt = 0;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(%url, index = slot.index, error = %e, "cannot open one of the tunnels")
            }
            Err(_) => {
                tracing::warn!(%url, index = slot.index, "one of the tunnels' handshake timed out")
            }
        }
        let wait = backoff(attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = retire.wait_for(|r| *r) => return,
        }
    }
}
