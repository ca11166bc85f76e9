//! Edge-to-edge relay (DESIGN: "an edge without the agent relays over an
//! edge-to-edge HTTP/2 link to the edge that has it").
//!
//! Every server that holds agent tunnels (a regional edge, a control
//! replica) is a *holder*, named by its relay URL. Control records which
//! holders have a tunnel of each agent and streams that to every edge as
//! [`crate::catalog::Change::TunnelAt`] / `TunnelGone`. A request for an
//! agent with no tunnel here goes, as an HTTP/2 `CONNECT` on one pooled
//! TLS connection per holder, to a holder that has it; the holder opens a
//! stream on its local tunnel and copies bytes. A holder only ever serves
//! its own tunnels, so a request takes at most one extra hop and cannot
//! loop.
//!
//! The link is authenticated with a secret derived from the cookie key,
//! which every edge and control replica already holds (and which is worth
//! more than the relay: it signs sessions). The visitor was authorized by
//! the first edge; the holder trusts that decision.

use crate::auth::cookie::CookieKey;
use crate::tunnel::edge::{OpenError, PortsError, Tunnels};
use crate::tunnel::protocol::ListeningPort;
use crate::tunnel::{
    PortsReply, Refusal, CONNECTION_WINDOW, ERROR_HEADER, MAX_FRAME, MAX_PORTS_REPLY,
    PORTS_TIMEOUT, STREAM_WINDOW,
};
use axum::body::Body;
use bytes::Bytes;
use dashmap::DashMap;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Header naming the agent a relayed `CONNECT` is for.
pub(crate) const AGENT_HEADER: &str = "berth-relay-agent";
/// Header naming the port.
pub(crate) const PORT_HEADER: &str = "berth-relay-port";
/// Header carrying the relay secret.
pub(crate) const AUTH_HEADER: &str = "berth-relay-auth";
/// The path of a relayed request for an agent's listening ports (`GET`).
pub(crate) const PORTS_PATH: &str = "/_berth/relay/ports";
/// Refusal code when the relay secret is missing or wrong.
const RELAY_REFUSED: &str = "relay-refused";
/// Refusal code when the holder has no tunnel of the agent (any more).
const NOT_HERE: &str = "not-here";
/// Dialing and handshaking with another edge may take this long.
const LINK_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest inspector answer taken from another edge.
const MAX_HELD_REPLY: usize = 256 << 20;
/// Pings on an idle link, so a dead peer is noticed.
const LINK_PING: Duration = Duration::from_secs(10);

/// Where a request for an agent goes from this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hop<'a> {
    /// Through this server's own tunnel of that generation.
    Local(u64),
    /// Through the holder at this relay URL.
    Relay(&'a str),
    /// Nowhere: the agent has no tunnel anywhere this server knows of.
    Offline,
}

/// Picks the way to an agent: the local tunnel if there is one, else the
/// newest holder (`holders` is oldest first) that is not this server (`me`;
/// a record naming this server without a local tunnel is stale). Newest,
/// because an agent that moved did so from a holder that died: its record
/// stays until it expires, while the new one is alive.
pub(crate) fn hop<'a>(local: Option<u64>, holders: &'a [String], me: &str) -> Hop<'a> {
    if let Some(generation) = local {
        return Hop::Local(generation);
    }
    holders
        .iter()
        .rev()
        .find(|h| !same_url(h, me))
        .map_or(Hop::Offline, |h| Hop::Relay(h))
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The link to one holder, dialed by whoever needs it first.
type LinkSlot = Arc<tokio::sync::Mutex<Option<SendRequest<Empty<Bytes>>>>>;

/// The relay's two halves: links to other holders, and the secret both
/// ends check.
pub struct Relay {
    /// This server's own relay URL, as other servers reach it.
    pub me: String,
    secret: String,
    tls: Arc<rustls::ClientConfig>,
    /// One HTTP/2 link per holder URL, opened on first use.
    links: DashMap<String, LinkSlot>,
    /// Holder URLs by small number, for pool keys.
    ids: DashMap<String, u32>,
    urls: DashMap<u32, String>,
    next_id: std::sync::atomic::AtomicU32,
}

impl Relay {
    /// A relay for the server reached at `me`, keyed from `key`, dialing
    /// other holders with `tls` (which must offer ALPN `h2`).
    pub fn new(me: String, key: &CookieKey, tls: Arc<rustls::ClientConfig>) -> Relay {
        Relay {
            me,
            secret: hex::encode(key.derive("relay", "v1")),
            tls,
            links: DashMap::new(),
            ids: DashMap::new(),
            urls: DashMap::new(),
            next_id: std::sync::atomic::AtomicU32::new(1),
        }
    }

    /// A small number standing for `holder` in pool keys.
    pub fn holder_id(&self, holder: &str) -> u32 {
        if let Some(id) = self.ids.get(holder) {
            return *id;
        }
        // Unique even when two requests name new holders at once (a number
        // drawn by the loser of a race for the same holder goes unused).
        let next = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The number's URL first, so whoever sees the number can resolve it.
        self.urls.insert(next, holder.to_owned());
        *self.ids.entry(holder.to_owned()).or_insert(next)
    }

    /// The holder a pool key's number stands for.
    pub fn holder_url(&self, id: u32) -> Option<String> {
        self.urls.get(&id).map(|u| u.clone())
    }

    /// Opens a byte stream to `port` of `agent_id` through `holder`.
    pub async fn open(
        &self,
        holder: &str,
        agent_id: i64,
        port: u16,
    ) -> Result<Upgraded, OpenError> {
        let mut sender = self.link(holder).await?;
        let authority = authority_of(holder).ok_or(OpenError::Offline)?;
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri(authority)
            .header(AGENT_HEADER, agent_id)
            .header(PORT_HEADER, port)
            .header(AUTH_HEADER, &self.secret)
            .body(Empty::new())
            .map_err(|e| OpenError::Tunnel(e.to_string()))?;
        sender.ready().await.map_err(|_| OpenError::Offline)?;
        let mut res = sender
            .send_request(req)
            .await
            .map_err(|e| OpenError::Tunnel(format!("relay to {holder}: {e}")))?;
        if !res.status().is_success() {
            let code = res
                .headers()
                .get(ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            return Err(match code {
                NOT_HERE | "" => OpenError::Offline,
                RELAY_REFUSED => OpenError::Tunnel(format!(
                    "the edge at {holder} refused the relay: its cookie key differs (another deployment?)"
                )),
                code => OpenError::Refused {
                    port,
                    refusal: Refusal::from_code(code),
                },
            });
        }
        hyper::upgrade::on(&mut res)
            .await
            .map_err(|e| OpenError::Tunnel(format!("relay to {holder}: {e}")))
    }

    /// The listening ports of `agent_id`'s workspace, asked through
    /// `holder` (the holder's agent answers; its errors come back as
    /// [`PortsError::Agent`] with the holder's message).
    pub async fn listening_ports(
        &self,
        holder: &str,
        agent_id: i64,
    ) -> Result<Vec<ListeningPort>, PortsError> {
        let tunnel_err =
            |e: &dyn std::fmt::Display| PortsError::Tunnel(format!("relay to {holder}: {e}"));
        let mut sender = self.link(holder).await.map_err(|e| tunnel_err(&e))?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{PORTS_PATH}", holder.trim_end_matches('/')))
            .header(AGENT_HEADER, agent_id)
            .header(AUTH_HEADER, &self.secret)
            .body(Empty::new())
            .map_err(|e| tunnel_err(&e))?;
        sender.ready().await.map_err(|_| PortsError::Offline)?;
        let work = async {
            let res = sender.send_request(req).await.map_err(|e| tunnel_err(&e))?;
            let status = res.status();
            let not_here = res
                .headers()
                .get(ERROR_HEADER)
                .is_some_and(|v| v.as_bytes() == NOT_HERE.as_bytes());
            let body = Limited::new(res.into_body(), MAX_PORTS_REPLY + 4096)
                .collect()
                .await
                .map_err(|e| tunnel_err(&e))?
                .to_bytes();
            if not_here {
                return Err(PortsError::Offline);
            }
            if !status.is_success() {
                let message = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("the edge holding its tunnel answered {status}"));
                return Err(PortsError::Agent(message));
            }
            serde_json::from_slice::<PortsReply>(&body)
                .map(|r| r.ports)
                .map_err(|e| PortsError::BadReply(e.to_string()))
        };
        tokio::time::timeout(PORTS_TIMEOUT + LINK_TIMEOUT, work)
            .await
            .map_err(|_| PortsError::Timeout)?
    }

    /// The exchanges `holder` recorded for `port` of `agent_id` (the request
    /// inspector), newest first.
    pub async fn exchanges(
        &self,
        holder: &str,
        agent_id: i64,
        port: u16,
    ) -> Result<Vec<crate::protocol::inspect::Exchange>, String> {
        use crate::protocol::inspect::{Held, RELAY_PATH};
        let fail = |e: &dyn std::fmt::Display| format!("inspector at {holder}: {e}");
        let work = async {
            let mut sender = self.link(holder).await.map_err(|e| fail(&e))?;
            let req = Request::builder()
                .method(Method::GET)
                .uri(format!("{}{RELAY_PATH}", holder.trim_end_matches('/')))
                .header(AGENT_HEADER, agent_id)
                .header(PORT_HEADER, port)
                .header(AUTH_HEADER, &self.secret)
                .body(Empty::new())
                .map_err(|e| fail(&e))?;
            sender.ready().await.map_err(|e| fail(&e))?;
            let res = sender.send_request(req).await.map_err(|e| fail(&e))?;
            if !res.status().is_success() {
                return Err(fail(&res.status()));
            }
            let body = Limited::new(res.into_body(), MAX_HELD_REPLY)
                .collect()
                .await
                .map_err(|e| fail(&e))?
                .to_bytes();
            serde_json::from_slice::<Held>(&body)
                .map(|h| h.exchanges)
                .map_err(|e| fail(&e))
        };
        tokio::time::timeout(LINK_TIMEOUT + PORTS_TIMEOUT, work)
            .await
            .map_err(|_| fail(&"no answer in time"))?
    }

    /// Follows what `holder` keeps for `port` of `agent_id` from now on
    /// (the inspector's live stream over the relay link): each exchange as
    /// it is kept, until the link or `holder`'s stream ends.
    pub async fn follow_exchanges(
        &self,
        holder: &str,
        agent_id: i64,
        port: u16,
    ) -> Result<
        impl futures_util::Stream<Item = crate::protocol::inspect::Exchange> + Send + 'static,
        String,
    > {
        use crate::protocol::inspect::{Exchange, MAX_FOLLOWED_LINE, RELAY_FOLLOW_PATH};
        let fail = |e: &dyn std::fmt::Display| format!("inspector at {holder}: {e}");
        let head = async {
            let mut sender = self.link(holder).await.map_err(|e| fail(&e))?;
            let req = Request::builder()
                .method(Method::GET)
                .uri(format!(
                    "{}{RELAY_FOLLOW_PATH}",
                    holder.trim_end_matches('/')
                ))
                .header(AGENT_HEADER, agent_id)
                .header(PORT_HEADER, port)
                .header(AUTH_HEADER, &self.secret)
                .body(Empty::new())
                .map_err(|e| fail(&e))?;
            sender.ready().await.map_err(|e| fail(&e))?;
            sender.send_request(req).await.map_err(|e| fail(&e))
        };
        let res = tokio::time::timeout(LINK_TIMEOUT + PORTS_TIMEOUT, head)
            .await
            .map_err(|_| fail(&"no answer in time"))??;
        if !res.status().is_success() {
            return Err(fail(&res.status()));
        }
        // Lines of JSON, split as the frames arrive.
        let state = (res.into_body(), Vec::<u8>::new());
        Ok(futures_util::stream::unfold(
            state,
            |(mut body, mut buf)| async move {
                loop {
                    if let Some(end) = buf.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=end).collect();
                        match serde_json::from_slice::<Exchange>(&line[..end]) {
                            Ok(e) => return Some((e, (body, buf))),
                            Err(e) => {
                                tracing::debug!(error = %e, "a followed exchange does not parse");
                                continue;
                            }
                        }
                    }
                    if buf.len() > MAX_FOLLOWED_LINE {
                        return None;
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                buf.extend_from_slice(&data);
                            }
                        }
                        _ => return None,
                    }
                }
            },
        ))
    }

    /// The live link to `holder`, dialing it if there is none.
    async fn link(&self, holder: &str) -> Result<SendRequest<Empty<Bytes>>, OpenError> {
        let slot = self.links.entry(holder.to_owned()).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        let sender = tokio::time::timeout(LINK_TIMEOUT, self.dial(holder))
            .await
            .map_err(|_| OpenError::Tunnel(format!("relay to {holder}: no answer in time")))??;
        *slot = Some(sender.clone());
        Ok(sender)
    }

    async fn dial(&self, holder: &str) -> Result<SendRequest<Empty<Bytes>>, OpenError> {
        let fail = |e: &dyn std::fmt::Display| OpenError::Tunnel(format!("relay to {holder}: {e}"));
        let uri: http::Uri = holder.parse().map_err(|e| fail(&e))?;
        let host = uri.host().ok_or_else(|| fail(&"no host"))?;
        let port = uri.port_u16().unwrap_or(443);
        let tls = crate::tls::client::connect(host, port, self.tls.clone())
            .await
            .map_err(|e| fail(&e))?;
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME)
            .keep_alive_interval(LINK_PING)
            .keep_alive_timeout(LINK_PING)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
            .await
            .map_err(|e| fail(&e))?;
        let holder = holder.to_owned();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%holder, error = %e, "relay link closed");
            }
        });
        Ok(sender)
    }

    /// Whether a request carries this deployment's relay secret.
    pub(crate) fn authorized<B>(&self, req: &Request<B>) -> bool {
        req.headers()
            .get(AUTH_HEADER)
            .is_some_and(|v| v.as_bytes().ct_eq(self.secret.as_bytes()).into())
    }
}

/// `host[:port]` of a holder URL, the `CONNECT` target.
fn authority_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(uri.authority()?.as_str().to_owned())
}

/// Whether a request comes from another edge's relay: a stream
/// (`CONNECT`) or a listening-ports question (`GET` [`PORTS_PATH`]).
pub(crate) fn is_relay<B>(req: &Request<B>) -> bool {
    req.headers().contains_key(AGENT_HEADER)
        && (req.method() == Method::CONNECT
            || (req.method() == Method::GET && req.uri().path() == PORTS_PATH))
}

/// The holder's side: checks the secret, opens a stream on the local
/// tunnel, answers `200` and copies bytes both ways, giving up on a side
/// that takes nothing for `stall`. Refusals carry the agent's
/// [`ERROR_HEADER`] code, or `not-here` when this server has no tunnel of
/// the agent.
pub(crate) async fn accept(
    relay: &Relay,
    tunnels: &Tunnels,
    mut req: Request<Incoming>,
    stall: Option<Duration>,
) -> Response<Body> {
    let refuse = |status: StatusCode, code: &str| {
        Response::builder()
            .status(status)
            .header(ERROR_HEADER, code)
            .body(Body::empty())
            .expect("static response is valid")
    };
    if req.version() != http::Version::HTTP_2 || !relay.authorized(&req) {
        return refuse(StatusCode::FORBIDDEN, RELAY_REFUSED);
    }
    let number = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok())
    };
    if req.method() == Method::GET {
        let Some(agent_id) = number(AGENT_HEADER) else {
            return refuse(StatusCode::BAD_REQUEST, "bad-request");
        };
        return match tunnels.listening_ports(agent_id).await {
            Ok(ports) => {
                let reply = PortsReply {
                    ports,
                    truncated: false,
                };
                Response::builder()
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        serde_json::to_vec(&reply).expect("ports serialize"),
                    ))
                    .expect("static response is valid")
            }
            Err(PortsError::Offline) => refuse(StatusCode::NOT_FOUND, NOT_HERE),
            Err(e) => {
                let mut res = refuse(StatusCode::BAD_GATEWAY, "ports-failed");
                *res.body_mut() =
                    Body::from(serde_json::json!({"error": e.to_string()}).to_string());
                res
            }
        };
    }
    let (Some(agent_id), Some(port)) = (
        number(AGENT_HEADER),
        number(PORT_HEADER).and_then(|p| u16::try_from(p).ok()),
    ) else {
        return refuse(StatusCode::BAD_REQUEST, "bad-request");
    };
    let Some(tunnel) = tunnels.get(agent_id) else {
        return refuse(StatusCode::NOT_FOUND, NOT_HERE);
    };
    let stream = match tunnels.open(agent_id, tunnel.generation, port).await {
        Ok(s) => s,
        Err(OpenError::Refused { refusal, .. }) => {
            return refuse(StatusCode::BAD_GATEWAY, refusal.code())
        }
        Err(OpenError::Offline) => return refuse(StatusCode::NOT_FOUND, NOT_HERE),
        Err(OpenError::Tunnel(e)) => {
            tracing::debug!(agent_id, error = %e, "relayed stream failed to open");
            return refuse(StatusCode::BAD_GATEWAY, Refusal::Unreachable.code());
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(peer) = upgrade.await else { return };
        let _ = crate::tunnel::copy::bidirectional_with_stall(
            &mut TokioIo::new(peer),
            &mut TokioIo::new(stream),
            stall,
        )
        .await;
    });
    Response::new(Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holders(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_local_tunnel_always_wins() {
        let h = holders(&["https://eu.example.com"]);
        assert_eq!(hop(Some(7), &h, "https://us.example.com"), Hop::Local(7));
        assert_eq!(hop(Some(7), &[], "https://us.example.com"), Hop::Local(7));
    }

    #[test]
    fn relays_to_the_newest_other_holder_and_never_to_itself() {
        let me = "https://us.example.com:8443";
        let h = holders(&["https://eu.example.com", "https://US.example.com:8443/"]);
        assert_eq!(hop(None, &h, me), Hop::Relay("https://eu.example.com"));
        // The agent moved from eu (dead, its record not yet expired) to ap.
        let h = holders(&["https://eu.example.com", "https://ap.example.com"]);
        assert_eq!(hop(None, &h, me), Hop::Relay("https://ap.example.com"));
        // Only itself (a stale record): nowhere to go, rather than a loop.
        let h = holders(&["https://us.example.com:8443"]);
        assert_eq!(hop(None, &h, me), Hop::Offline);
        assert_eq!(hop(None, &[], me), Hop::Offline);
        // Same host, another port, is another server.
        let h = holders(&["https://us.example.com:9443"]);
        assert_eq!(hop(None, &h, me), Hop::Relay("https://us.example.com:9443"));
    }

    #[test]
    fn holder_numbers_are_stable_and_reversible() {
        let key = CookieKey::new([7; 32]);
        let tls = crate::tls::client::insecure_client_config(&[b"h2"]);
        let relay = Relay::new("https://a.example.com".into(), &key, tls);
        let eu = relay.holder_id("https://eu.example.com");
        let us = relay.holder_id("https://us.example.com");
        assert_ne!(eu, us);
        assert_eq!(relay.holder_id("https://eu.example.com"), eu);
        assert_eq!(
            relay.holder_url(us).as_deref(),
            Some("https://us.example.com")
        );
        assert_eq!(relay.holder_url(999), None);
    }

    #[test]
    fn holders_named_at_once_get_distinct_numbers() {
        let key = CookieKey::new([7; 32]);
        let tls = crate::tls::client::insecure_client_config(&[b"h2"]);
        let relay = std::sync::Arc::new(Relay::new("https://a.example.com".into(), &key, tls));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let relay = relay.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|i| {
                            let url = format!("https://h{}.example.com", (t * 50 + i) % 200);
                            (relay.holder_id(&url), url)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut by_url = std::collections::HashMap::new();
        for t in threads {
            for (id, url) in t.join().unwrap() {
                assert_eq!(*by_url.entry(url.clone()).or_insert(id), id, "{url}");
                assert_eq!(relay.holder_url(id).as_deref(), Some(url.as_str()));
            }
        }
        let ids: std::collections::HashSet<u32> = by_url.values().copied().collect();
        assert_eq!(ids.len(), by_url.len(), "one number per holder");
    }

    #[test]
    fn only_the_deployments_secret_is_accepted() {
        let key = CookieKey::new([7; 32]);
        let tls = crate::tls::client::insecure_client_config(&[b"h2"]);
        let relay = Relay::new("https://a.example.com".into(), &key, tls.clone());
        let other = Relay::new(
            "https://a.example.com".into(),
            &CookieKey::new([8; 32]),
            tls,
        );
        let with = |secret: Option<&str>| {
            let mut b = Request::builder()
                .method(Method::CONNECT)
                .uri("a.example.com:443");
            if let Some(s) = secret {
                b = b.header(AUTH_HEADER, s);
            }
            b.body(()).unwrap()
        };
        assert!(relay.authorized(&with(Some(&relay.secret))));
        assert!(!relay.authorized(&with(Some(&other.secret))));
        assert!(!relay.authorized(&with(Some(""))));
        assert!(!relay.authorized(&with(Some(&relay.secret[..10]))));
        assert!(!relay.authorized(&with(None)));
        // The secret is not the cookie key itself.
        assert_ne!(relay.secret, hex::encode([7u8; 32]));
    }
}
