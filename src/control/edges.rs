//! What a regional `berth edge` asks of the control plane with its region
//! token (`/edge/...`, shapes in [`crate::protocol::edge_api`]): who it is
//! and the cookie key (`hello`), a heartbeat, the catalog as a snapshot
//! followed by every change (`watch`), share-link redemption (counted in
//! the store), sign-in code exchange and its certificate.

use super::error::ApiError;
use super::extract::ApiJson;
use super::holders::holder_tunnels;
use super::links::redeem_and_audit;
use super::openapi::ErrorBody;
use super::ControlState;
use crate::auth::{token, TokenHash, TokenKind};
use crate::catalog::{Link, Session};
use crate::host::Wildcard;
use crate::protocol::edge_api::{
    EdgeCertificate, Exchange, Heartbeat, Hello, Redeem, WatchLine, WatchQuery, WATCH_PING_EVERY,
};
use crate::store::RegionRow;
use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::{header, request::Parts, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A regional edge, from `Authorization: Bearer berth_region_...` (checked
/// against the store, so a deleted region is refused at once).
pub(crate) struct EdgeCaller(pub RegionRow);

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

/// Tells an edge who it is and gives it the cookie key.
#[utoipa::path(get, path = "/edge/hello", tag = "internal",
    summary = "For regional edges (region token): the region, its wildcard and the cookie key",
    responses((status = 200, description = "Hello"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn hello(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
) -> Json<Hello> {
    Json(Hello {
        url: region.url,
        region: region.name,
        wildcard: region.wildcard,
        cookie_key: hex::encode(st.signin.key.expose_bytes()),
        signin_url: st.signin.base_url.clone(),
        wake: st.waker.is_some(),
    })
}

/// Records an edge's heartbeat, and which agents it holds tunnels of.
#[utoipa::path(post, path = "/edge/heartbeat", tag = "internal",
    summary = "For regional edges: health and the agents whose tunnels the edge holds",
    responses((status = 200, description = "Recorded"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn heartbeat(
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

/// `GET /edge/watch`: the catalog as a snapshot, then every change as it
/// is applied here (local writes and other replicas' alike), with a ping
/// every few seconds. A watcher that falls too far behind is cut off and
/// starts over with a new snapshot.
#[utoipa::path(get, path = "/edge/watch", tag = "internal",
    summary = "For regional edges: the catalog, then its changes, as a stream",
    responses((status = 200, description = "A stream of changes"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn watch(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
    axum::extract::Query(query): axum::extract::Query<WatchQuery>,
) -> Result<Response, ApiError> {
    // Subscribe before reading the snapshot: a change committed meanwhile is
    // then sent twice at worst, and applying a change twice is harmless.
    let mut feed = st.catalog.subscribe();
    // The identity keyring, now and at every rotation, for an edge that asks.
    let mut keys = (query.identity.as_deref() == Some("1")).then(|| st.identity.subscribe());
    let keyring =
        |k: &mut tokio::sync::watch::Receiver<std::sync::Arc<crate::auth::jwt::Keyring>>| {
            WatchLine::Identity {
                keyring: (**k.borrow_and_update()).clone(),
            }
        };
    let snapshot = st.store.snapshot().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    tracing::info!(region = %region.name, "edge watching");
    tokio::spawn(async move {
        let send = |l: WatchLine| {
            let tx = tx.clone();
            async move { tx.send(Bytes::from(l.to_line())).await.is_ok() }
        };
        if !send(WatchLine::Reset).await {
            return;
        }
        if let Some(k) = keys.as_mut() {
            if !send(keyring(k)).await {
                return;
            }
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
                Some(l) = async {
                    match keys.as_mut() {
                        Some(k) => k.changed().await.ok().map(|()| keyring(k)),
                        None => std::future::pending().await,
                    }
                } => l,
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

/// Issues a certificate for the calling region's host and wildcard, signed
/// by control's local CA (SPEC §6: in `self-signed` mode one `ca.pem`
/// covers the whole deployment). 409 when control runs no local CA.
#[utoipa::path(get, path = "/edge/certificate", tag = "internal",
    summary = "For regional edges: the certificate for the region's names",
    responses((status = 200, description = "PEM chain and key"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn certificate(
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
    let names = crate::host::cert_names(&host, &region.wildcard);
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

/// Redeems a share link for an edge: counts one use; 404 when it does not
/// exist, expired, was revoked or is used up.
#[utoipa::path(post, path = "/edge/redeem", tag = "internal",
    summary = "For regional edges: redeem a share link (control counts its uses)",
    responses((status = 200, description = "The link, or null"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn redeem(
    State(st): State<ControlState>,
    EdgeCaller(region): EdgeCaller,
    ApiJson(req): ApiJson<Redeem>,
) -> Result<Json<Link>, ApiError> {
    let hash = TokenHash::from_hex(&req.token_hash)
        .ok_or_else(|| ApiError::invalid_field("token_hash", "must be 64 hex digits"))?;
    let link = redeem_and_audit(
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

/// Exchanges a sign-in code for an edge: the session it stands for, or 404
/// (unknown, used, expired, for another host or another browser's sign-in
/// state, or a host outside the calling region's wildcard).
#[utoipa::path(post, path = "/edge/exchange", tag = "internal",
    summary = "For regional edges: exchange a one-time sign-in code for a session",
    responses((status = 200, description = "The session, or null"), (status = 401, description = "Not a region token", body = ErrorBody)),
)]
pub(crate) async fn exchange(
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
