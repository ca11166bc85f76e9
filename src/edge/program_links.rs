//! Share links for programs: `Berth-Token: berth_link_...` or
//! `Authorization: Bearer berth_link_...` on any request counts as the link,
//! with no cookie and no redirect, so a webhook sender, a mobile app or
//! `curl` can use it. Like every berth credential it never reaches the app.
//!
//! Counting: a link's `max_uses` counts *distinct clients*, as it does for
//! browsers (one redemption, then a cookie): the first request from a source
//! address to an edge redeems the link at control (one use); that edge then
//! admits further requests with the same token from the same address without
//! counting, while the link lives (revoked or expired, it stops at once). A
//! new address, or another edge, redeems again. Concurrent first requests
//! from one address share one redemption.

use super::Edge;
use crate::auth::TokenHash;
use crate::catalog::Link;
use dashmap::DashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// The most (token, address) pairs an edge remembers; past it, pairs of dead
/// links go, and if that is not enough, all (their next request counts again).
const MAX_REMEMBERED: usize = 100_000;

/// The links this edge has redeemed for programs, by token and address.
#[derive(Default)]
pub(crate) struct ProgramLinks {
    redeemed: DashMap<(TokenHash, IpAddr), Arc<OnceCell<Option<String>>>>,
}

impl ProgramLinks {
    /// The link `token` (a `berth_link_` token) opens for a program at
    /// `source`, redeeming it at control the first time; `None` when it does
    /// not exist, expired, was revoked or is used up.
    pub(super) async fn admit(
        &self,
        edge: &Edge,
        token: &str,
        source: IpAddr,
        now: i64,
    ) -> Option<Link> {
        let key = (TokenHash::of(token), source);
        let cell = self.cell(edge, key, now);
        let mut fresh = None;
        let id = cell
            .get_or_init(|| async {
                let link = edge.control.redeem(key.0, now, source).await;
                fresh = link.clone();
                link.map(|l| l.id)
            })
            .await
            .clone();
        // Just redeemed: control's word (a regional edge may not have the
        // new link yet). Afterwards, the catalog's: revoked or expired, out.
        let live = match fresh {
            Some(link) => Some(link),
            None => id.as_deref().and_then(|id| edge.catalog.live_link(id, now)),
        };
        if live.is_none() {
            // Not cached as a failure: a later request may redeem afresh.
            self.redeemed.remove_if(&key, |_, c| Arc::ptr_eq(c, &cell));
        }
        live
    }

    fn cell(
        &self,
        edge: &Edge,
        key: (TokenHash, IpAddr),
        now: i64,
    ) -> Arc<OnceCell<Option<String>>> {
        if let Some(c) = self.redeemed.get(&key) {
            return c.clone();
        }
        if self.redeemed.len() >= MAX_REMEMBERED {
            self.redeemed.retain(|_, c| match c.get() {
                Some(Some(id)) => edge.catalog.live_link(id, now).is_some(),
                Some(None) => false,
                None => true,
            });
            if self.redeemed.len() >= MAX_REMEMBERED {
                self.redeemed.clear();
            }
        }
        self.redeemed.entry(key).or_default().clone()
    }
}
