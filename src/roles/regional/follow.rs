//! What keeps a regional edge current while it runs: the watch stream
//! (control's catalog into this edge's, and the identity keyring), and the heartbeat (this edge's
//! tunnels into control's records).

use super::client::{ControlClient, MAX_ANSWER};
use crate::auth::jwt::Identity;
use crate::catalog::{Catalog, Change};
use crate::edge::activity::Activity;
use crate::edge::ControlStatus;
use crate::protocol::edge_api::{
    self, ActivityReport, Heartbeat, WatchLine, HEARTBEAT_EVERY, MAX_ACTIVITY_REPORT,
};
use crate::tunnel::edge::Tunnels;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// How long control may take to start answering the watch.
const WATCH_START: Duration = Duration::from_secs(10);
/// A watch stream silent this long (pings come every 5 s) is dead.
const WATCH_SILENCE: Duration = Duration::from_secs(15);
/// The least time between two heartbeats sent for arrivals or departures.
const BEAT_SPACING: Duration = Duration::from_millis(50);

/// Follows control's watch stream into `catalog` until `stop`, reconnecting
/// with back-off; each (re)connection starts with a full snapshot.
pub(super) async fn follow(
    client: ControlClient,
    catalog: Arc<Catalog>,
    state: Arc<ControlStatus>,
    identity: Arc<Identity>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match watch_once(&client, &catalog, &state, &identity).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => tracing::debug!(error = %e, "watch stream ended"),
        }
        state.set(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn watch_once(
    client: &ControlClient,
    catalog: &Catalog,
    state: &ControlStatus,
    identity: &Identity,
) -> Result<(), String> {
    let (status, mut body) = tokio::time::timeout(
        WATCH_START,
        client.send(http::Method::GET, edge_api::WATCH_WITH_IDENTITY, None),
    )
    .await
    .map_err(|_| "control did not answer the watch in time".to_owned())??;
    if !status.is_success() {
        return Err(format!("control refused the watch: {status}"));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut snapshot: Option<Vec<Change>> = None;
    loop {
        let frame = tokio::time::timeout(WATCH_SILENCE, body.frame())
            .await
            .map_err(|_| "the watch stream went silent".to_owned())?;
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        if buf.len() > MAX_ANSWER {
            return Err("a watch line is too long".into());
        }
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let parsed: WatchLine =
                serde_json::from_slice(&line).map_err(|e| format!("unusable watch line: {e}"))?;
            match parsed {
                WatchLine::Reset => snapshot = Some(Vec::new()),
                WatchLine::Change { change } => match snapshot.as_mut() {
                    Some(s) => s.push(change),
                    None => catalog.apply(change),
                },
                WatchLine::Ready => {
                    if let Some(s) = snapshot.take() {
                        catalog.resync(s);
                    }
                    state.set(true);
                }
                WatchLine::Ping => {}
                WatchLine::Identity { keyring } => identity.set(keyring),
            }
        }
    }
}

/// Sends a heartbeat every [`HEARTBEAT_EVERY`], and soon after an agent
/// arrives or leaves (at most every [`BEAT_SPACING`]), so that other edges
/// learn within moments where to relay its requests.
pub(super) async fn beat(client: ControlClient, tunnels: Arc<Tunnels>, relay_url: Option<String>) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let mut events = tunnels.events();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            event = events.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = event {
                    return;
                }
                // Let a burst of arrivals settle into one beat.
                tokio::time::sleep(BEAT_SPACING).await;
                while !events.is_empty() {
                    let _ = events.try_recv();
                }
            }
        }
        send_beat(&client, tunnels.agent_ids(), relay_url.clone()).await;
    }
}

/// One heartbeat listing the agents whose tunnels this edge holds.
pub(super) async fn send_beat(
    client: &ControlClient,
    tunnels: Vec<i64>,
    relay_url: Option<String>,
) {
    let body = serde_json::to_value(Heartbeat {
        version: env!("CARGO_PKG_VERSION").into(),
        agents: tunnels.len() as i64,
        tunnels,
        relay_url,
    })
    .expect("JSON serializes");
    if let Err(e) = client
        .call::<serde_json::Value>(http::Method::POST, edge_api::HEARTBEAT, Some(body))
        .await
    {
        tracing::debug!(error = %e, "heartbeat not delivered");
    }
}

/// Tells control, every [`HEARTBEAT_EVERY`], when this edge's ports last
/// served a request; what control did not take is sent again next time.
pub(super) async fn report_activity(client: ControlClient, activity: Arc<Activity>) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pending = activity.pending();
        for chunk in pending.chunks(MAX_ACTIVITY_REPORT) {
            let body = serde_json::to_value(ActivityReport {
                ports: chunk.to_vec(),
            })
            .expect("JSON serializes");
            match client
                .call::<()>(http::Method::POST, edge_api::ACTIVITY, Some(body))
                .await
            {
                Ok(_) => activity.acknowledge(chunk),
                Err(e) => {
                    tracing::debug!(error = %e, "activity report failed; sent again later");
                    break;
                }
            }
        }
    }
}
