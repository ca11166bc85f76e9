//! The request inspector, put together: control's API asks the edges that
//! hold recorded exchanges ([`crate::control::Inspection`]), here the
//! built-in edge's own.

use crate::auth::Visitor;
use crate::control::Inspection;
use crate::edge::Edge;
use crate::protocol::inspect::{Exchange, Replay, ReplayRefused};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// The built-in edge's records, and its tunnels for replays.
pub(crate) struct EdgeInspection {
    pub(crate) edge: Arc<Edge>,
}

impl Inspection for EdgeInspection {
    fn list(&self, agent_id: i64, port: u16) -> BoxFuture<'static, Vec<Exchange>> {
        let mine = self.edge.inspector.list(agent_id, port);
        Box::pin(async move { mine })
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
