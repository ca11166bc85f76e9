//! When each (agent, port) last served a request or held an open WebSocket
//! on this edge, for control's activity API, metric and idle webhook.
//!
//! The request path pays one map lookup (a shared shard read, no allocation
//! once the port has been seen) and two atomic operations: [`Activity::begin`]
//! stamps the port and counts the exchange open until its [`Active`] guard
//! drops (an upgraded WebSocket keeps it for its whole life). What changed
//! goes to control every few seconds ([`Activity::pending`], then
//! [`Activity::acknowledge`] once control has it), where ports with an open
//! exchange count as active at that moment.

use crate::protocol::edge_api::PortSeen;
use dashmap::DashMap;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;

/// A port unseen this long (seconds) and with nothing open is forgotten
/// once control has its last time.
const FORGET_AFTER: i64 = 3600;

/// Per-port clocks of this edge.
#[derive(Debug, Default)]
pub struct Activity {
    ports: DashMap<(i64, u16), Arc<Clock>>,
}

#[derive(Debug, Default)]
struct Clock {
    /// Unix seconds of the last request begun or ended here.
    last: AtomicI64,
    /// Exchanges in flight (requests awaiting their answer, open WebSockets).
    open: AtomicU32,
    /// The last time control acknowledged.
    reported: AtomicI64,
}

/// Counts one exchange open until dropped; stamps the port again then.
#[derive(Debug)]
pub struct Active(Arc<Clock>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.last.fetch_max(now(), Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn now() -> i64 {
    super::unix_now()
}

impl Activity {
    /// Stamps `(agent_id, port)` as active now and counts an exchange open
    /// until the guard drops.
    pub fn begin(&self, agent_id: i64, port: u16) -> Active {
        let clock = match self.ports.get(&(agent_id, port)) {
            Some(c) => c.clone(),
            None => self.ports.entry((agent_id, port)).or_default().clone(),
        };
        clock.last.fetch_max(now(), Ordering::Relaxed);
        clock.open.fetch_add(1, Ordering::Relaxed);
        Active(clock)
    }

    /// What control has not heard yet: every port whose last activity is
    /// newer than what control acknowledged, and every port with an exchange
    /// open (active `now`).
    pub fn pending(&self) -> Vec<PortSeen> {
        let now = now();
        self.ports
            .iter()
            .filter_map(|e| {
                let c = e.value();
                let last = if c.open.load(Ordering::Relaxed) > 0 {
                    now
                } else {
                    c.last.load(Ordering::Relaxed)
                };
                (last > c.reported.load(Ordering::Relaxed)).then(|| PortSeen {
                    agent_id: e.key().0,
                    port: e.key().1,
                    last,
                })
            })
            .collect()
    }

    /// Control has `seen`: remember so, and forget ports long quiet.
    pub fn acknowledge(&self, seen: &[PortSeen]) {
        for s in seen {
            if let Some(c) = self.ports.get(&(s.agent_id, s.port)) {
                c.reported.fetch_max(s.last, Ordering::Relaxed);
            }
        }
        let cutoff = now() - FORGET_AFTER;
        self.ports.retain(|_, c| {
            let last = c.last.load(Ordering::Relaxed);
            c.open.load(Ordering::Relaxed) > 0
                || last > cutoff
                || c.reported.load(Ordering::Relaxed) < last
        });
    }

    /// How many ports this edge keeps a clock for.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when no port has been seen.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_reported_once_and_an_open_exchange_until_it_closes() {
        let a = Activity::default();
        assert!(a.pending().is_empty());
        drop(a.begin(7, 3000));
        let p = a.pending();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].agent_id, p[0].port), (7, 3000));
        assert!(p[0].last >= now() - 1);
        a.acknowledge(&p);
        assert!(a.pending().is_empty(), "nothing new since control heard");

        // An open WebSocket: reported as active at every report.
        let ws = a.begin(7, 8080);
        let p = a.pending();
        assert_eq!(p.len(), 1);
        a.acknowledge(&p);
        // Still open: a later report (next second) names it again.
        let c = a.ports.get(&(7, 8080)).unwrap().clone();
        c.reported.store(now() - 1, Ordering::Relaxed);
        assert_eq!(a.pending().len(), 1);
        drop(ws);
        assert_eq!(c.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unacknowledged_reports_are_sent_again() {
        let a = Activity::default();
        drop(a.begin(1, 1));
        assert_eq!(a.pending().len(), 1);
        // The report failed: nothing acknowledged, so it goes again.
        assert_eq!(a.pending().len(), 1);
    }

    #[test]
    fn quiet_ports_are_forgotten_once_reported() {
        let a = Activity::default();
        drop(a.begin(1, 1));
        let c = a.ports.get(&(1, 1)).unwrap().clone();
        c.last.store(now() - FORGET_AFTER - 5, Ordering::Relaxed);
        a.acknowledge(&[]);
        assert_eq!(a.len(), 1, "not yet reported: kept");
        let p = a.pending();
        a.acknowledge(&p);
        assert!(a.is_empty());
    }
}
