//! Activity (SPEC §4): when each port of a workspace last served a request
//! or held an open WebSocket, as every edge reports it (the built-in one
//! in-process, regional ones over `POST /edge/activity`); the API
//! `GET /workspaces/{user}/{workspace}/activity` (owner and admins), the
//! metric `berth_workspace_last_activity_seconds`, and the `[activity]`
//! webhook, called once when a workspace has been idle `idle_after`.

use super::access::visible;
use super::edges::EdgeCaller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, Caller};
use super::openapi::ErrorBody;
use super::webhook::Webhooks;
use super::ControlState;
use crate::config::ActivityConfig;
use crate::protocol::edge_api::{ActivityReport, PortSeen, MAX_ACTIVITY_REPORT};
use crate::store::StoreError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use std::time::Duration;

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Stores what an edge saw; ports of agents that no longer exist are
/// skipped, and times ahead of control's clock are taken as now.
pub(crate) async fn record(st: &ControlState, seen: &[PortSeen]) -> Result<(), StoreError> {
    let now = now_unix();
    for s in seen {
        if st.catalog.agent(s.agent_id).is_none() || s.last <= 0 {
            continue;
        }
        st.store
            .record_activity(s.agent_id, s.port, s.last.min(now))
            .await?;
    }
    Ok(())
}

/// `POST /edge/activity`: a regional edge's report.
#[utoipa::path(post, path = "/edge/activity", tag = "internal",
    summary = "For regional edges: which ports were used since the last report",
    responses((status = 204, description = "Recorded"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn report(
    State(st): State<ControlState>,
    EdgeCaller(_region): EdgeCaller,
    ApiJson(report): ApiJson<ActivityReport>,
) -> Result<StatusCode, ApiError> {
    if report.ports.len() > MAX_ACTIVITY_REPORT {
        return Err(ApiError::invalid_field(
            "ports",
            format!("at most {MAX_ACTIVITY_REPORT} a report"),
        ));
    }
    record(&st, &report.ports).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One port in the activity answer.
#[derive(Serialize, Debug)]
pub(crate) struct PortJson {
    agent: String,
    port: u16,
    /// RFC 3339, UTC.
    last_activity: String,
    idle_seconds: i64,
}

/// `GET .../activity` answer.
#[derive(Serialize, Debug)]
pub(crate) struct ActivityJson {
    owner: String,
    workspace: String,
    /// The latest over all ports; `null` if none has served a request.
    last_activity: Option<String>,
    idle_seconds: Option<i64>,
    ports: Vec<PortJson>,
}

/// `GET /workspaces/{user}/{workspace}/activity`: owner and admins only.
#[utoipa::path(get, path = "/workspaces/{user}/{workspace}/activity", tag = "workspaces",
    summary = "When each port of the workspace was last used (owner and site admins)",
    params(("user" = String, Path, description = "The workspace owner's user name"), ("workspace" = String, Path, description = "The workspace name")),
    responses((status = 200, description = "Activity per port"), (status = 401, description = "No or an invalid API token", body = ErrorBody), (status = 404, description = "No such thing, or not yours to see (the same answer)", body = ErrorBody)),
)]
pub(crate) async fn show(
    State(st): State<ControlState>,
    caller: Caller,
    ApiPath((user, name)): ApiPath<(String, String)>,
) -> Result<Json<ActivityJson>, ApiError> {
    let ws = visible(&st, &caller, &user, &name).await?;
    let ports = st.store.workspace_ports_activity(ws.id).await?;
    let now = now_unix();
    let last = ports.iter().map(|p| p.last_at).max();
    Ok(Json(ActivityJson {
        owner: ws.owner,
        workspace: ws.name,
        last_activity: last.map(rfc3339),
        idle_seconds: last.map(|l| (now - l).max(0)),
        ports: ports
            .into_iter()
            .map(|p| PortJson {
                agent: p.agent,
                port: p.port,
                last_activity: rfc3339(p.last_at),
                idle_seconds: (now - p.last_at).max(0),
            })
            .collect(),
    }))
}

/// `user="alice",workspace="api"`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkspaceLabel {
    /// The owner's user name.
    pub user: String,
    /// The workspace's name.
    pub workspace: String,
}

/// `berth_workspace_last_activity_seconds`: unix time of each workspace's
/// last activity.
pub type LastActivity = Family<WorkspaceLabel, Gauge>;

/// How often the idle watcher looks: a quarter of `idle_after`, between
/// 1 and 30 seconds.
pub fn check_every(cfg: &ActivityConfig) -> Duration {
    (cfg.idle_after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Keeps the metric current and calls the idle webhook, once per stretch
/// of activity, for every workspace idle `idle_after` (the store decides
/// which replica calls). Runs until aborted.
pub async fn watch(
    st: ControlState,
    cfg: ActivityConfig,
    hooks: Option<Webhooks>,
    metric: LastActivity,
) {
    let mut tick = tokio::time::interval(check_every(&cfg));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let all = match st.store.workspaces_activity().await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read workspace activity");
                continue;
            }
        };
        metric.clear();
        for w in &all {
            metric
                .get_or_create(&WorkspaceLabel {
                    user: w.owner.clone(),
                    workspace: w.name.clone(),
                })
                .set(w.last_at);
        }
        let (Some(hook), Some(hooks)) = (&cfg.webhook, &hooks) else {
            continue;
        };
        let now = now_unix();
        let idle_after = cfg.idle_after.as_secs() as i64;
        for w in all {
            if !is_idle(w.last_at, w.idle_notified_for, now, idle_after) {
                continue;
            }
            match st.store.claim_idle_call(w.workspace_id, w.last_at).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim the idle webhook call");
                    continue;
                }
            }
            let body = serde_json::json!({
                "event": "workspace.idle",
                "user": w.owner,
                "workspace": w.name,
                "last_activity": rfc3339(w.last_at),
                "idle_seconds": now - w.last_at,
            });
            let (hook, hooks) = (hook.clone(), hooks.clone());
            tokio::spawn(async move {
                match hooks.deliver(&hook, "workspace.idle", &body).await {
                    Ok(_) => {
                        tracing::info!(user = %w.owner, workspace = %w.name, "idle webhook called")
                    }
                    Err(e) => {
                        tracing::warn!(user = %w.owner, workspace = %w.name, error = %e, "idle webhook failed")
                    }
                }
            });
        }
    }
}

/// Whether a workspace last active at `last_at` is due its idle call: idle
/// `idle_after` seconds at `now`, and not yet called for that activity.
pub fn is_idle(last_at: i64, notified_for: i64, now: i64, idle_after: i64) -> bool {
    last_at > 0 && now - last_at >= idle_after && notified_for < last_at
}

#[cfg(test)]
mod tests {
    use super::is_idle;

    #[test]
    fn idle_once_per_stretch_of_activity() {
        // (last_at, notified_for, now, idle_after) -> due
        let cases = [
            ((100, 0, 159, 60), false),
            ((100, 0, 160, 60), true),
            ((100, 100, 500, 60), false),
            ((200, 100, 260, 60), true),
            ((0, 0, 1_000, 60), false),
            ((100, 0, 90, 60), false),
        ];
        for ((last, notified, now, after), due) in cases {
            assert_eq!(
                is_idle(last, notified, now, after),
                due,
                "{last} {notified} {now} {after}"
            );
        }
    }
}
