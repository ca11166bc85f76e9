//! The request inspector, put together: control's API asks the edges that
//! hold recorded exchanges ([`crate::control::Inspection`]): the built-in
//! edge, and every regional edge that sent a heartbeat lately (and every
//! holder of the agent's tunnels), over the relay link.

use crate::auth::Visitor;
use crate::control::{Inspection, Live};
use crate::edge::Edge;
use crate::protocol::inspect::{Exchange, Replay, ReplayRefused};
use crate::store::Store;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A region whose last heartbeat is older than this is not asked.
const REGION_FRESH_SECS: i64 = 30;

/// How often a live follower looks again at which other edges to follow.
const RECHECK: Duration = Duration::from_secs(3);

/// New exchanges a live follower may have waiting before the edges wait.
const LIVE_BUFFER: usize = 256;

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
            let others = other_edges(&edge, &store, agent_id).await;
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

    fn follow(&self, agent_id: i64, port: u16) -> BoxStream<'static, Live> {
        let (tx, rx) = mpsc::channel::<Live>(LIVE_BUFFER);
        tokio::spawn(follow_here(self.edge.clone(), agent_id, port, tx.clone()));
        tokio::spawn(follow_elsewhere(
            self.edge.clone(),
            self.store.clone(),
            agent_id,
            port,
            tx,
        ));
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|live| (live, rx))
        }))
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

/// The other servers that may hold exchanges of `agent_id`'s ports: the
/// regions that sent a heartbeat lately and every holder of its tunnels,
/// without this edge.
async fn other_edges(edge: &Edge, store: &Store, agent_id: i64) -> Vec<String> {
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
    others
}

/// This edge's new exchanges of the port, into `tx` until its reader goes.
async fn follow_here(edge: Arc<Edge>, agent_id: i64, port: u16, tx: mpsc::Sender<Live>) {
    use tokio::sync::broadcast::error::RecvError;
    let mut feed = edge.inspector.follow();
    drop(edge);
    loop {
        let live = tokio::select! {
            got = feed.recv() => match got {
                Ok(e) if e.agent_id == agent_id && e.port == port => Live::Exchange(e),
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => Live::Lagged(n),
                Err(RecvError::Closed) => return,
            },
            _ = tx.closed() => return,
        };
        if tx.send(live).await.is_err() {
            return;
        }
    }
}

/// The other edges' new exchanges of the port, over the relay link, into
/// `tx` until its reader goes. Which edges is looked at again every
/// [`RECHECK`], so a region that comes up, or a link that broke, is
/// followed (again) within that.
async fn follow_elsewhere(
    edge: Arc<Edge>,
    store: Store,
    agent_id: i64,
    port: u16,
    tx: mpsc::Sender<Live>,
) {
    let mut followed: HashSet<String> = HashSet::new();
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<String>();
    let mut every = tokio::time::interval(RECHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            Some(gone) = ended.recv() => {
                followed.remove(&gone);
                continue;
            }
            _ = tx.closed() => return,
        }
        for holder in other_edges(&edge, &store, agent_id).await {
            let key = holder.trim_end_matches('/').to_ascii_lowercase();
            if !followed.insert(key.clone()) {
                continue;
            }
            let (edge, tx, ended_tx) = (edge.clone(), tx.clone(), ended_tx.clone());
            tokio::spawn(async move {
                follow_one(&edge, &holder, agent_id, port, &tx).await;
                let _ = ended_tx.send(key);
            });
        }
    }
}

/// One other edge's new exchanges of the port, until it or the reader goes.
async fn follow_one(edge: &Edge, holder: &str, agent_id: i64, port: u16, tx: &mpsc::Sender<Live>) {
    let stream = match edge.relay.follow_exchanges(holder, agent_id, port).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "cannot follow an edge's inspector");
            return;
        }
    };
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            got = stream.next() => match got {
                Some(e) => {
                    if tx.send(Live::Exchange(Arc::new(e))).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = tx.closed() => return,
        }
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}
