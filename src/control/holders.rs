//! Where agents' tunnels are: the store's `agent_tunnels` records of each
//! holder (a regional edge, or a control process with its built-in edge),
//! kept current from heartbeats and from this process's own tunnels, and
//! told to every replica and edge as catalog changes.

use super::ControlState;
use crate::catalog::Change;
use crate::protocol::edge_api::HEARTBEAT_EVERY;
use crate::store::TUNNEL_STALE_SECS;
use crate::tunnel::edge::{TunnelEvent, Tunnels};
use std::sync::Arc;

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Makes `holder`'s recorded tunnels exactly `agents` and tells every
/// replica and edge what changed.
pub(super) async fn holder_tunnels(
    st: &ControlState,
    holder: &str,
    agents: &[i64],
    now: i64,
) -> Result<(), crate::store::StoreError> {
    let (added, removed) = st.store.holder_tunnels(holder, agents, now).await?;
    for agent_id in added {
        let holder = holder.to_owned();
        st.apply(Change::TunnelAt { agent_id, holder }).await;
    }
    for agent_id in removed {
        let holder = holder.to_owned();
        st.apply(Change::TunnelGone { agent_id, holder }).await;
    }
    Ok(())
}

/// Forgets every tunnel of holder `me` (this process, shutting down).
pub(crate) async fn forget_holder(st: &ControlState, me: &str) {
    if let Err(e) = holder_tunnels(st, me, &[], now_unix()).await {
        tracing::warn!(error = %e, "cannot forget this process's tunnels");
    }
}

/// Keeps the store's record of this control process's own tunnels (holder
/// `me`) current: at once when an agent arrives or leaves, and in full
/// every [`HEARTBEAT_EVERY`], which also expires the records of holders
/// that stopped refreshing theirs (an edge or replica that died).
pub(crate) async fn track_local_tunnels(st: ControlState, tunnels: Arc<Tunnels>, me: String) {
    let mut events = tunnels.events();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        let result = tokio::select! {
            event = events.recv() => match event {
                Ok(TunnelEvent { agent_id, up: true }) => {
                    match st.store.tunnel_at(agent_id, &me, now_unix()).await {
                        Ok(true) => {
                            let holder = me.clone();
                            st.apply(Change::TunnelAt { agent_id, holder }).await;
                            Ok(())
                        }
                        other => other.map(drop),
                    }
                }
                Ok(TunnelEvent { agent_id, up: false }) => {
                    match st.store.tunnel_gone(agent_id, &me).await {
                        Ok(true) => {
                            let holder = me.clone();
                            st.apply(Change::TunnelGone { agent_id, holder }).await;
                            Ok(())
                        }
                        other => other.map(drop),
                    }
                }
                // Missed some: the next tick sends the whole list.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Ok(()),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let now = now_unix();
                let mut result = holder_tunnels(&st, &me, &tunnels.agent_ids(), now).await;
                match st.store.expire_tunnels(now - TUNNEL_STALE_SECS).await {
                    Ok(gone) => {
                        for (agent_id, holder) in gone {
                            st.apply(Change::TunnelGone { agent_id, holder }).await;
                        }
                    }
                    Err(e) => result = Err(e),
                }
                result
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot record where agents are connected");
        }
    }
}
