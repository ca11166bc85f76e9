//! The request inspector, put together: control's API asks the edges that
//! hold recorded exchanges ([`crate::control::Inspection`]): the built-in
//! edge, and every regional edge that sent a heartbeat lately (and every
//! holder of the agent's tunnels), over the relay link.

use crate::auth::Visitor;
use crate::control::Inspection;
use crate::edge::Edge;
use crate::protocol::inspect::{Exchange, Replay, ReplayRefused};
use crate::store::Store;
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// A region whose last heartbeat is older than this is not asked.
const REGION_FRESH_SECS: i64 = 30;

/// The built-in edge's records, and its tunnels for replays; the store,
/// for the regions to ask.
pub(crate) struct EdgeInspection {
    pub(crate) edge: Arc<Edge>,
    pub(crate) store: Store,
}

impl Inspection for EdgeInspection {
    fn list(&self, agent_id: i64, port: u16) -> BoxFuture<'static, Vec<Exchange>> {
        let mut all = self.edge.inspector.list(agent_id, port);
        let (edge, store) = (self.edge.clone(), self.store.clone());
        Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let mut others: Vec<String> = store
                .list_regions()
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|r| {
                    r.last_heartbeat
                        .is_some_and(|t| now - t < REGION_FRESH_SECS)
                })
                .map(|r| r.url)
                .collect();
            others.extend(edge.catalog.tunnels_at(agent_id));
            others.sort();
            others.dedup_by(|a, b| same_url(a, b));
            others.retain(|u| !same_url(u, &edge.relay.me));
            let asked = others.iter().map(|holder| {
                let edge = edge.clone();
                async move { edge.relay.exchanges(holder, agent_id, port).await }
            });
            for answer in futures_util::future::join_all(asked).await {
                match answer {
                    Ok(theirs) => all.extend(theirs),
                    Err(e) => tracing::debug!(error = %e, "an edge's inspector did not answer"),
                }
            }
            all.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then(b.id.cmp(&a.id)));
            all.dedup_by(|a, b| a.id == b.id);
            all
        })
    }

    fn follow(&self) -> tokio::sync::broadcast::Receiver<Arc<Exchange>> {
        self.edge.inspector.follow()
    }

    fn replay(
        &self,
        original: Exchange,
        edits: Replay,
        owner: Visitor,
    ) -> BoxFuture<'static, Result<Exchange, ReplayRefused>> {
        let edge = self.edge.clone();
        Box::pin(async move { crate::edge::inspect::replay(&edge, &original, edits, &owner).await })
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}
