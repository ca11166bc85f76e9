//! Regions (SPEC §6): the registry admins manage (`/regions`), and what a
//! regional `berth edge` asks of the control plane with its region token
//! (`/edge/...`): who it is and the cookie key (`hello`), a heartbeat, the
//! catalog as a snapshot followed by every change (`watch`), and share-link
//! redemption, which counts uses in the store.

use super::error::ApiError;
use super::extract::{Admin, ApiJson, ApiPath, Caller};
use super::{validate, ControlState};
use crate::auth::{token, TokenHash, TokenKind};
use crate::catalog::{Change, Link, Session};
use crate::host::Wildcard;
use crate::store::{RegionRow, TUNNEL_STALE_SECS};
use crate::tunnel::edge::{TunnelEvent, Tunnels};
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// A region is healthy while its edges' last heartbeat is this recent.
pub const HEALTHY_WITHIN_SECS: i64 = 30;
/// Edges send a heartbeat this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// The watch stream sends a keep-alive line this often, so an edge can tell
/// a quiet stream from a dead one.
pub const WATCH_PING_EVERY: Duration = Duration::from_secs(5);

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `POST /regions` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRegion {
    name: String,
    url: String,
    wildcard: String,
}

/// A region as `GET /regions` shows it (SPEC §6).
#[derive(Serialize, Debug)]
pub struct RegionJson {
    name: String,
    url: String,
    wildcard: String,
    healthy: bool,
    /// RFC 3339, UTC.
    last_heartbeat: Option<String>,
    agents: i64,
    version: Option<String>,
}

impl RegionJson {
    fn from_row(r: RegionRow, now: i64) -> Self {
        RegionJson {
            healthy: is_healthy(&r, now),
            last_heartbeat: r.last_heartbeat.and_then(|t| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .ok()?
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
            name: r.name,
            url: r.url,
            wildcard: r.wildcard,
            agents: r.agents,
            version: r.version,
        }
    }
}

/// `POST /regions` answer: the region and its token, shown once.
#[derive(Serialize)]
pub struct CreatedRegion {
    #[serde(flatten)]
    region: RegionJson,
    region_token: String,
}

/// Creates a region (admins only); its token is in the answer, once.
pub async fn create(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiJson(req): ApiJson<CreateRegion>,
) -> Result<impl IntoResponse, ApiError> {
    validate::name("name", &req.name)?;
    if req.name == crate::agent::regions::CONTROL {
        return Err(ApiError::invalid_field(
            "name",
            "\"control\" is reserved for the control plane's own edge",
        ));
    }
    let url_ok = req
        .url
        .parse::<http::Uri>()
        .ok()
        .is_some_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
    if !url_ok {
        return Err(ApiError::invalid_field(
            "url",
            "must be the https:// URL of the region's edges, e.g. https://eu.apps.example.com",
        ));
    }
    Wildcard::parse(&req.wildcard).map_err(|e| ApiError::invalid_field("wildcard", e))?;
    let (row, secret) = st
        .store
        .create_region(&req.name, req.url.trim_end_matches('/'), &req.wildcard)
        .await?;
    st.audit(&caller.0.username, "region.created", &row.name)
        .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedRegion {
            region: RegionJson::from_row(row, now_unix()),
            region_token: secret.expose().to_owned(),
        }),
    ))
}

/// Every region with its health (any signed-in user: the dashboard offers
/// the nearest).
pub async fn list(
    State(st): State<ControlState>,
    _caller: Caller,
) -> Result<Json<Vec<RegionJson>>, ApiError> {
    let now = now_unix();
    let rows = st.store.list_regions().await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| RegionJson::from_row(r, now))
            .collect(),
    ))
}

/// Deletes a region (admins only); its edges are refused from then on.
pub async fn delete(
    State(st): State<ControlState>,
    Admin(caller): Admin,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    st.store.delete_region(&name).await?;
    st.audit(&caller.0.username, "region.deleted", &name).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A regional edge, from `Authorization: Bearer berth_region_...` (checked
/// against the store, so a deleted region is refused at once).
pub struct EdgeCaller(pub RegionRow);

impl FromRequestParts<ControlState> for EdgeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ControlState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(ApiError::unauthenticated)?
            .to_str()
            .map_err(|_| ApiError::invalid_token())?;
        let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer")
            || !token::is_well_formed(token, TokenKind::Region)
        {
            return Err(ApiError::invalid_token());
        }
        st.store
            .region_for_token(&TokenHash::of(token))
            .await?
            .map(EdgeCaller)
            .ok_or_else(ApiError::invalid_token)
    }
}

/// `GET /edge/hello` answer: what an edge needs before it serves.
#[derive(Serialize, Deserialize, Debug)]
pub struct Hello {
    pub region: String,
    /// The region's URL: where other edges relay to this edge's agents,
    /// unless it sets `server.relay_url`.
    pub url: String,
    pub wildcard: String,
    /// The cookie-signing key, hex: edges verify and set `__Host-berth_app`,
    /// `__Host-berth_share` and `__Host-berth_state` themselves.
    pub cookie_key: String,
    /// Where browsers sign in.
    pub signin_url: String,
}

/// Tells an edge who it is and gives it the cookie key.
pub async fn hello(State(st): State<ControlState>, EdgeCaller(region): EdgeCaller) -> Json<Hello> {
    Json(Hello {
        url: region.url,
        region: region.name,
        wildcard: region.wildcard,
        cookie_key: hex::encode(st.signin.key.expose_bytes()),
        signin_url: st.signin.base_url.clone(),
    })
}

/// `POST /edge/heartbeat` body.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub version: String,
    pub agents: i64,
    /// The agents with a tunnel to this edge: all of them, every time.
    #[serde(default)]
    pub tunnels: Vec<i64>,
    /// Where other edges reach this one (default: the region's URL).
    #[serde(default)]
    pub relay_url: Option<String>,
}

/// Records an edge's heartbeat, and which agents it holds tunnels of.
pub async fn heartbeat(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    let holder = match beat.relay_url {
        Some(url) if url.starts_with("https://") && url.len() <= 2048 => url,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "relay_url",
                "must be an https:// URL of at most 2048 bytes",
            ))
        }
        None => region.url,
    };
    let now = now_unix();
    st.store
        .region_heartbeat(region.id, now, &beat.version, beat.agents.max(0))
        .await?;
    holder_tunnels(&st, &holder, &beat.tunnels, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes `holder`'s recorded tunnels exactly `agents` and tells every
/// replica and edge what changed.
async fn holder_tunnels(
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
pub async fn forget_holder(st: &ControlState, me: &str) {
    if let Err(e) = holder_tunnels(st, me, &[], now_unix()).await {
        tracing::warn!(error = %e, "cannot forget this process's tunnels");
    }
}

/// Keeps the store's record of this control process's own tunnels (holder
/// `me`) current: at once when an agent arrives or leaves, and in full
/// every [`HEARTBEAT_EVERY`], which also expires the records of holders
/// that stopped refreshing theirs (an edge or replica that died).
pub async fn track_local_tunnels(st: ControlState, tunnels: Arc<Tunnels>, me: String) {
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

/// One line of the watch stream (newline-delimited JSON).
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum WatchLine {
    /// A snapshot follows: forget what you know once it is complete.
    Reset,
    /// One catalog change (snapshot entries, then live ones).
    Change { change: Change },
    /// The snapshot is complete; live changes follow.
    Ready,
    /// Keep-alive.
    Ping,
}

fn line(l: &WatchLine) -> Bytes {
    let mut v = serde_json::to_vec(l).expect("watch lines serialize");
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /edge/watch`: the catalog as a snapshot, then every change as it
/// is applied here (local writes and other replicas' alike), with a ping
/// every few seconds. A watcher that falls too far behind is cut off and
/// starts over with a new snapshot.
pub async fn watch(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
) -> Result<Response, ApiError> {
    // Subscribe before reading the snapshot: a change committed meanwhile is
    // then sent twice at worst, and applying a change twice is harmless.
    let mut feed = st.catalog.subscribe();
    let snapshot = st.store.snapshot().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tracing::info!(region = %region.name, "edge watching");
    tokio::spawn(async move {
        let send = |l: WatchLine| {
            let tx = tx.clone();
            async move { tx.send(line(&l)).await.is_ok() }
        };
        if !send(WatchLine::Reset).await {
            return;
        }
        for change in snapshot {
            if !send(WatchLine::Change { change }).await {
                return;
            }
        }
        if !send(WatchLine::Ready).await {
            return;
        }
        let mut ping = tokio::time::interval(WATCH_PING_EVERY);
        loop {
            let l = tokio::select! {
                c = feed.recv() => match c {
                    Ok(change) => WatchLine::Change { change },
                    // Lagged or closed: end the stream; the edge starts over.
                    Err(_) => return,
                },
                _ = ping.tick() => WatchLine::Ping,
            };
            if !send(l).await {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// A region is healthy while one of its edges beat within
/// [`HEALTHY_WITHIN_SECS`] of `now`.
fn is_healthy(r: &RegionRow, now: i64) -> bool {
    r.last_heartbeat
        .is_some_and(|t| now - t <= HEALTHY_WITHIN_SECS)
}

/// How app URLs look in each healthy region, by name.
pub fn healthy_app_urls(rows: Vec<RegionRow>) -> Vec<(String, super::AppUrls)> {
    let now = now_unix();
    rows.into_iter()
        .filter(|r| is_healthy(r, now))
        .filter_map(|r| {
            let port = r.url.parse::<http::Uri>().ok()?.port_u16().unwrap_or(443);
            Some((r.name, super::AppUrls::from_wildcard(&r.wildcard, port)))
        })
        .collect()
}

/// The regions whose edges sent a heartbeat lately, as agents see them.
pub fn healthy(rows: Vec<RegionRow>) -> Vec<crate::agent::regions::Candidate> {
    let now = now_unix();
    rows.into_iter()
        .filter(|r| is_healthy(r, now))
        .map(|r| crate::agent::regions::Candidate {
            name: r.name,
            url: r.url,
        })
        .collect()
}

/// `GET /agent/regions`: the healthy regions, for an agent (its own token)
/// choosing where to dial.
pub async fn for_agent(
    State(st): State<ControlState>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Vec<crate::agent::regions::Candidate>>, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthenticated)?;
    if !token::is_well_formed(token, TokenKind::Agent)
        || st.catalog.agent_for_token(&TokenHash::of(token)).is_none()
    {
        return Err(ApiError::invalid_token());
    }
    Ok(Json(healthy(st.store.list_regions().await?)))
}

/// `GET /edge/certificate` answer: DER, base64 (standard alphabet).
#[derive(Serialize, Deserialize, Debug)]
pub struct EdgeCertificate {
    /// Leaf first.
    pub chain: Vec<String>,
    /// PKCS#8 private key of the leaf.
    pub key: String,
}

/// Issues a certificate for the calling region's host and wildcard, signed
/// by control's local CA (SPEC §6: in `self-signed` mode one `ca.pem`
/// covers the whole deployment). 409 when control runs no local CA.
pub async fn certificate(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
) -> Result<Json<EdgeCertificate>, ApiError> {
    use base64::Engine;
    let host = region
        .url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .ok_or_else(|| ApiError::conflict("the region's url has no host"))?;
    let names = crate::roles::cert_names(&host, &region.wildcard);
    let issued = if let Some(ca) = &st.local_ca {
        tracing::info!(region = %region.name, %host, "issued a regional edge certificate");
        ca.issue(&names)
            .map_err(|e| ApiError::conflict(format!("cannot issue the edge's certificate: {e}")))?
    } else if let Some(acme) = &st.region_certs {
        match acme.get(names.clone()).await {
            Ok(Some(cert)) => cert,
            Ok(None) => {
                let why = acme
                    .last_error(&names)
                    .map(|e| format!(" (the last attempt failed: {e})"))
                    .unwrap_or_default();
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "certificate_pending",
                    format!("control is ordering this region's certificate from its ACME CA; ask again in a few seconds{why}"),
                ));
            }
            Err(e) => {
                return Err(ApiError::conflict(format!(
                    "cannot order the region's certificate: {e}"
                )))
            }
        }
    } else {
        return Err(ApiError::conflict(
            "control has neither a local CA nor ACME (its tls.mode is \"files\"): give the edge a certificate with tls.mode = \"files\"",
        ));
    };
    let key = match &issued.key {
        rustls_pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der(),
        _ => return Err(ApiError::conflict("the region's key is not PKCS#8")),
    };
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    Ok(Json(EdgeCertificate {
        chain: issued.chain.iter().map(|c| b64(c)).collect(),
        key: b64(key),
    }))
}

/// `POST /edge/redeem` body: the hash of a presented share-link token.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    pub token_hash: String,
    /// The visitor's address, for the audit log.
    #[serde(default)]
    pub source: String,
}

/// Redeems a share link for an edge: counts one use; 404 when it does not
/// exist, expired, was revoked or is used up.
pub async fn redeem(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
    ApiJson(req): ApiJson<Redeem>,
) -> Result<Json<Link>, ApiError> {
    let hash = TokenHash::from_hex(&req.token_hash)
        .ok_or_else(|| ApiError::invalid_field("token_hash", "must be 64 hex digits"))?;
    let link = super::links::redeem_and_audit(
        &st.store,
        &hash,
        now_unix(),
        &req.source,
        Some(&region.name),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("no such live share link"))?;
    Ok(Json(link))
}

/// `POST /edge/exchange` body: a one-time sign-in code, the app host it
/// was minted for, and the sign-in state of the browser that presents it
/// (absent from edges older than state binding: then only a code minted
/// without a state matches, as such an edge's sign-ins are).
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub code: String,
    pub host: String,
    #[serde(default)]
    pub state: String,
}

/// Exchanges a sign-in code for an edge: the session it stands for, or 404
/// (unknown, used, expired, for another host or another browser's sign-in
/// state, or a host outside the calling region's wildcard).
pub async fn exchange(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
    ApiJson(req): ApiJson<Exchange>,
) -> Result<Json<Session>, ApiError> {
    let gone = || ApiError::not_found("no such sign-in code for this host");
    let wildcard = Wildcard::parse(&region.wildcard).map_err(|_| gone())?;
    if crate::host::parse_host(&req.host, &wildcard).is_err() {
        return Err(gone());
    }
    let now = now_unix();
    let id = st
        .signin
        .codes
        .take(&req.code, &req.host, &req.state, now)
        .ok_or_else(gone)?;
    let (_, session) = st.catalog.visitor_for_session(&id, now).ok_or_else(gone)?;
    Ok(Json(session))
}
