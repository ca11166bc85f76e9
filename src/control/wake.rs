//! Wake on visit (`[wake]`): when someone who may see an app of an offline
//! agent visits it, an edge asks control (in-process, or `POST /edge/wake`
//! from a regional edge), and control calls the wake webhook so a platform
//! can start the workspace. Control judges the visitor again with its own
//! catalog ([`auth::wake::may_wake`]), calls at most once per workspace per
//! `wake.cooldown_secs` (claimed in the store, so across replicas too), and
//! records each call in the audit log as `workspace.woken`.

use super::edges::EdgeCaller;
use super::error::ApiError;
use super::extract::ApiJson;
use super::openapi::ErrorBody;
use super::webhook::Webhooks;
use super::ControlState;
use crate::auth::{self, wake::may_wake, LinkGrant};
use crate::catalog::Catalog;
use crate::config::WakeConfig;
use crate::protocol::edge_api::{WakeAnswer, WakeRequest};
use crate::store::Store;
use axum::extract::State;
use axum::Json;
use std::sync::Arc;

/// What calling the wake webhook needs.
pub struct Waker {
    store: Store,
    catalog: Arc<Catalog>,
    cfg: WakeConfig,
    hooks: Webhooks,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Waker {
    /// A waker calling `cfg`'s webhook with `hooks`.
    pub fn new(store: Store, catalog: Arc<Catalog>, cfg: WakeConfig, hooks: Webhooks) -> Self {
        Waker {
            store,
            catalog,
            cfg,
            hooks,
        }
    }

    /// Handles one visit: checks who asks, claims the call, records it and
    /// calls the webhook in the background (retried as
    /// [`Webhooks::deliver`] says). `called: false` when nothing was done.
    pub async fn wake(&self, req: &WakeRequest) -> WakeAnswer {
        let no = WakeAnswer { called: false };
        let now = now_unix();
        let Some(agent) = self.catalog.agent(req.agent_id) else {
            return no;
        };
        let Some(ws) = self.catalog.workspace(agent.workspace_id) else {
            return no;
        };
        let Some(owner) = self.catalog.user(ws.owner_id) else {
            return no;
        };
        let visitor = req.user_id.and_then(|id| self.catalog.visitor(id));
        if req.user_id.is_some() && visitor.is_none() {
            return no;
        }
        let link = req
            .link_id
            .as_deref()
            .and_then(|id| self.catalog.live_link(id, now));
        if req.link_id.is_some() && link.is_none() {
            return no;
        }
        let grant = link.as_ref().map(|l| LinkGrant {
            agent_id: l.agent_id,
            port: l.port,
        });
        let share = self.catalog.share(agent.id, req.port);
        let (level, users, groups) =
            share
                .as_ref()
                .map(|s| s.audience(now))
                .unwrap_or((auth::ShareLevel::Owner, &[], &[]));
        let target = auth::Target {
            agent_id: agent.id,
            port: req.port,
            owner_id: owner.id,
            owner_org: owner.organization.as_deref(),
            level,
            users,
            groups,
        };
        if !may_wake(visitor.as_ref(), grant.as_ref(), Some(&target)) {
            return no;
        }
        let cooldown = self.cfg.cooldown.as_secs() as i64;
        match self.store.claim_wake_call(ws.id, now, cooldown).await {
            Ok(true) => {}
            Ok(false) => return no,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the wake webhook call");
                return no;
            }
        }
        let (actor, requested_by) = match (&visitor, &link) {
            (Some(v), _) => (v.username.clone(), serde_json::json!({"user": v.username})),
            (None, Some(l)) => (
                format!("share-link:{}", l.id),
                serde_json::json!({"share_link": l.id}),
            ),
            (None, None) => return no,
        };
        let target_text = format!("{}/{}/{}:{}", owner.username, ws.name, agent.name, req.port);
        tracing::info!(target: "berth::audit", actor, action = "workspace.woken", target = %target_text, source = %req.source);
        if let Err(e) = self
            .store
            .record_audit(&actor, "workspace.woken", &target_text, &req.source)
            .await
        {
            tracing::error!(error = %e, "cannot store audit event");
        }
        let body = serde_json::json!({
            "event": "workspace.wake",
            "user": owner.username,
            "workspace": ws.name,
            "agent": agent.name,
            "port": req.port,
            "requested_by": requested_by,
            "at": now,
        });
        let (hook, hooks) = (self.cfg.webhook.clone(), self.hooks.clone());
        tokio::spawn(async move {
            match hooks.deliver(&hook, "workspace.wake", &body).await {
                Ok(_) => tracing::info!(target = %target_text, "wake webhook called"),
                Err(e) => tracing::warn!(target = %target_text, error = %e, "wake webhook failed"),
            }
        });
        WakeAnswer { called: true }
    }
}

/// `POST /edge/wake`: a regional edge's visitor reached an offline agent.
#[utoipa::path(post, path = "/edge/wake", tag = "internal",
    summary = "For regional edges: a visitor reached an offline agent; call the wake webhook",
    responses((status = 200, description = "Whether a wake was asked for"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn from_edge(
    State(st): State<ControlState>,
    EdgeCaller(_region): EdgeCaller,
    ApiJson(req): ApiJson<WakeRequest>,
) -> Result<Json<WakeAnswer>, ApiError> {
    if req.source.len() > 64 || req.link_id.as_ref().is_some_and(|l| l.len() > 128) {
        return Err(ApiError::invalid_field("source", "too long"));
    }
    Ok(Json(match &st.waker {
        Some(w) => w.wake(&req).await,
        None => WakeAnswer { called: false },
    }))
}
