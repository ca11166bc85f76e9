//! `berth agent`: runs inside a workspace, dials out to an edge over TLS and
//! serves the tunnel (see [`crate::tunnel`]). It reconnects with jittered
//! exponential back-off after any failure; nothing listens in the workspace.

mod regions;
mod scan;
mod set;

pub use set::DEFAULT_TUNNELS;

use crate::protocol::regions::{from_header, https_host_port, Candidate, CONTROL, REGIONS_HEADER};
use crate::secret::Secret;
use crate::tunnel::{self, agent::Upstream};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rand::Rng;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First retry delay after a failure.
const BACKOFF_START: Duration = Duration::from_millis(200);
/// Longest wait between attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A tunnel that lived this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Where and how the agent connects.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The edge or control plane, `https://host[:port]`.
    pub url: String,
    /// `berth_agent_...`
    pub token: Secret,
    /// Trust this CA (PEM) instead of `SSL_CERT_FILE` or the system store.
    pub ca_file: Option<PathBuf>,
    /// Dial this address instead of resolving the URL's host (TLS still
    /// verifies the URL's host): for split DNS, or an edge behind a NAT.
    pub connect_to: Option<std::net::SocketAddr>,
    /// What the agent may dial.
    pub upstream: Upstream,
    /// Dial only this region (`control` for the control plane's own edge);
    /// otherwise the fastest healthy one.
    pub region: Option<String>,
    /// Keep a second tunnel to the next nearest region, so that the app
    /// stays reachable the moment the first one's edge fails.
    pub standby: bool,
    /// Tunnel connections to the edge (1..=[`crate::tunnel::MAX_TUNNELS`]):
    /// the edge spreads requests over them, and losing one costs only its
    /// own streams. The standby is always one.
    pub tunnels: u16,
}

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("--url {0:?} must look like https://host[:port]")]
    BadUrl(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot reach {url}: {source}")]
    Dial { url: String, source: std::io::Error },
    #[error("the edge refused the agent token (401): check --token, or create a new agent token")]
    Unauthorized,
    #[error("the edge answered {0} instead of switching to the tunnel protocol")]
    Unexpected(http::StatusCode),
    #[error("tunnel: {0}")]
    Http(#[from] hyper::Error),
    #[error(
        "no tunnel within {0:?}: the path to the edge accepts connections but does not answer"
    )]
    HandshakeTimeout(Duration),
    #[error("the tunnel task failed: {0}")]
    Serve(String),
    #[error("--tunnels {0}: give 1 to {max}", max = tunnel::MAX_TUNNELS)]
    Tunnels(u16),
}

/// Splits `https://host[:port][/]` into host and port.
pub fn parse_url(url: &str) -> Result<(String, u16), AgentError> {
    https_host_port(url).ok_or_else(|| AgentError::BadUrl(url.to_owned()))
}

/// Longest wait for a dial, TLS handshake and upgrade to finish: a path that
/// accepts TCP and then passes nothing must not hold the agent forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A tunnel's serving task, aborted when dropped (the agent stops) unless
/// detached to finish its streams on its own.
struct Serving(Option<tokio::task::JoinHandle<Result<(), hyper::Error>>>);

impl Serving {
    /// Lets the task run to its end without anyone waiting for it.
    fn detach(mut self) {
        self.0.take();
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The primary tunnel's URL and the regions known, for the standby.
type Primary = tokio::sync::watch::Sender<Option<(String, Vec<Candidate>)>>;

/// Keeps a second tunnel (`--standby`) to the nearest region other than
/// the primary's, so the apps stay reachable through it the moment the
/// primary's edge fails (other edges relay to it at once). When the primary
/// moves to the standby's region, the standby is retired gracefully and a
/// new one is found.
async fn standby(
    cfg: &AgentConfig,
    tls: Arc<rustls::ClientConfig>,
    up: Arc<Upstream>,
    mut primary: tokio::sync::watch::Receiver<Option<(String, Vec<Candidate>)>>,
) {
    let mut attempt = 0u32;
    loop {
        let Some((main, list)) = primary.borrow_and_update().clone() else {
            if primary.changed().await.is_err() {
                return;
            }
            continue;
        };
        let target = regions::order(measure(cfg, list, tls.clone()).await, None)
            .into_iter()
            .map(|c| c.url)
            .find(|u| *u != main);
        let Some(target) = target else {
            // Nowhere else (yet): look again when the primary changes.
            tokio::select! {
                r = primary.changed() => if r.is_err() { return },
                () = tokio::time::sleep(regions::REMEASURE_EVERY) => {}
            }
            continue;
        };
        let opened = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            open_tunnel(cfg, &target, tls.clone(), None),
        )
        .await;
        let (io, edge) = match opened {
            Ok(Ok((io, _, edge))) => (io, edge),
            Ok(Err(e)) => {
                tracing::warn!(url = %target, error = %e, "cannot open the standby tunnel");
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
            Err(_) => {
                tracing::warn!(url = %target, "the standby tunnel's handshake timed out");
                tokio::time::sleep(backoff(attempt)).await;
                attempt = attempt.saturating_add(1);
                continue;
            }
        };
        attempt = 0;
        tracing::info!(url = %target, "standby tunnel up");
        let steering = Arc::new(tunnel::agent::Steering::default());
        let mut serving = Serving(Some(tokio::spawn(tunnel::agent::serve(
            io,
            for_tunnel(&up, edge),
            steering.clone(),
            scan::listening_ports_for,
        ))));
        loop {
            let task = serving.0.as_mut().expect("not detached");
            tokio::select! {
                r = task => {
                    serving.0.take();
                    tracing::warn!(url = %target, result = ?r.map(|r| r.err().map(|e| e.to_string())), "standby tunnel closed");
                    break;
                }
                r = primary.changed() => {
                    if r.is_err() { return; }
                    let moved_here = primary.borrow().as_ref().is_some_and(|(u, _)| *u == target);
                    if moved_here {
                        // The primary is here now: this one finishes its
                        // streams and goes; find another standby.
                        steering.retire.notify_one();
                        serving.detach();
                        break;
                    }
                }
            }
        }
    }
}

/// What the agent's main loop carries from one tunnel to the next.
struct RunState {
    /// The regions the last edge listed.
    known: Option<Vec<Candidate>>,
    /// The tunnel being left, still serving until the next one is up.
    retiring: Option<(Arc<tunnel::agent::Steering>, Serving)>,
    /// Where the primary tunnel is, for the standby.
    primary: Primary,
    /// The other tunnels of the primary's set (`--tunnels`).
    siblings: Option<set::Siblings>,
}

/// How a tunnel ended.
enum Ended {
    /// The edge closed it, or it failed.
    Closed,
    /// The agent is moving (the edge asked, or a nearer region answers):
    /// the old tunnel keeps serving until the next one is up, then is
    /// retired gracefully.
    Moving {
        from: String,
        old: (Arc<tunnel::agent::Steering>, Serving),
    },
}

/// Dials `url` once and serves the tunnel until it ends or the agent moves.
/// The edge's answer may list the healthy regions (kept in `known`);
/// connected to the control plane's own edge and not pinned, the agent then
/// moves to a nearer region if one answers faster. Once the new tunnel is
/// up, the one being left (`retiring`) is ended gracefully.
async fn connect_once(
    cfg: &AgentConfig,
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    up: Arc<Upstream>,
    connected: &mut Option<Instant>,
    st: &mut RunState,
) -> Result<Ended, AgentError> {
    let RunState {
        known,
        retiring,
        primary,
        siblings,
    } = st;
    // The same set while the agent stays with this edge: a redial of the
    // primary joins its siblings there instead of replacing them.
    let set = match siblings {
        Some(s) if s.url == url => s.set,
        _ => rand::random(),
    };
    let slot = tunnel::TunnelSlot { set, index: 0 };
    let (io, listed, edge) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        open_tunnel(cfg, url, tls.clone(), Some(slot)),
    )
    .await
    .map_err(|_| AgentError::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    if let Some(list) = listed {
        *known = Some(list);
    }
    *connected = Some(Instant::now());
    tracing::info!(%url, "tunnel up");
    primary.send_replace(Some((url.to_owned(), known.clone().unwrap_or_default())));
    if let Some((steering, serving)) = retiring.take() {
        tracing::info!("retiring the previous tunnel (its open streams finish)");
        steering.retire.notify_one();
        serving.detach();
    }
    if siblings.as_ref().is_none_or(|s| s.set != set) {
        if let Some(old) = siblings.take() {
            old.retire();
        }
        if cfg.tunnels > 1 {
            *siblings = Some(set::Siblings::start(cfg, url, set, tls.clone(), up.clone()));
        }
    }
    // Somewhere else to go: unpinned, and another region or control's edge.
    let can_move = cfg.region.is_none()
        && (url != cfg.url
            || known
                .as_ref()
                .is_some_and(|l| l.iter().any(|c| c.url != url)));
    let steering = Arc::new(tunnel::agent::Steering {
        can_move,
        ..Default::default()
    });
    let mut serving = Serving(Some(tokio::spawn(tunnel::agent::serve(
        io,
        for_tunnel(&up, edge),
        steering.clone(),
        scan::listening_ports_for,
    ))));
    let moving = |serving| Ended::Moving {
        from: url.to_owned(),
        old: (steering.clone(), serving),
    };
    // Unpinned and knowing regions: measure at once and then every few
    // minutes, and move when another region is clearly nearer.
    let list = known
        .clone()
        .filter(|l| cfg.region.is_none() && !l.is_empty());
    let mut wait = Duration::ZERO;
    loop {
        let task = serving.0.as_mut().expect("not detached");
        tokio::select! {
            r = task => {
                serving.0.take();
                return match r {
                    Ok(r) => r.map(|()| Ended::Closed).map_err(AgentError::from),
                    Err(e) => Err(AgentError::Serve(e.to_string())),
                };
            }
            () = steering.move_asked.notified() => {
                tracing::info!(%url, "the edge is shutting down; moving to another region");
                return Ok(moving(serving));
            }
            () = tokio::time::sleep(wait), if list.is_some() => {}
        }
        wait = regions::REMEASURE_EVERY;
        let Some(list) = &list else { continue };
        let measured = measure(cfg, list.clone(), tls.clone()).await;
        let here = measured
            .iter()
            .find(|(c, _)| c.url == url)
            .and_then(|(_, r)| *r);
        let best = measured
            .iter()
            .filter_map(|(c, r)| r.map(|r| (c, r)))
            .min_by_key(|(_, r)| *r);
        if let Some((best, rtt)) = best.filter(|(b, _)| b.url != url) {
            if regions::worth_moving(here, rtt) {
                tracing::info!(region = %best.name, url = %best.url, ?rtt, ?here, "moving to a nearer region");
                return Ok(moving(serving));
            }
        }
    }
}

/// `regions` and the control plane's own edge (`cfg.url`), each with the
/// time a TLS handshake took (`None`: no answer).
async fn measure(
    cfg: &AgentConfig,
    mut candidates: Vec<Candidate>,
    tls: Arc<rustls::ClientConfig>,
) -> Vec<(Candidate, Option<Duration>)> {
    candidates.insert(
        0,
        Candidate {
            name: CONTROL.into(),
            url: cfg.url.clone(),
        },
    );
    let probes = candidates
        .iter()
        .map(|c| regions::probe(&c.url, tls.clone()));
    let rtts = futures_util::future::join_all(probes).await;
    let measured: Vec<_> = candidates.into_iter().zip(rtts).collect();
    tracing::debug!(?measured, "region round trips");
    measured
}

/// What one tunnel may dial: `up`, knowing where that tunnel reaches the
/// edge (so it never dials the edge itself over loopback).
fn for_tunnel(up: &Arc<Upstream>, edge: Option<std::net::SocketAddr>) -> Arc<Upstream> {
    Arc::new(Upstream {
        edge,
        ..Upstream::clone(up)
    })
}

/// A tunnel: the upgraded stream, the regions the edge listed, and the
/// edge's address as dialed.
type Opened = (
    hyper::upgrade::Upgraded,
    Option<Vec<Candidate>>,
    Option<std::net::SocketAddr>,
);

/// Dials, does TLS, and upgrades to the tunnel protocol, as `slot` of a
/// set when given.
async fn open_tunnel(
    cfg: &AgentConfig,
    url: &str,
    tls: Arc<rustls::ClientConfig>,
    slot: Option<tunnel::TunnelSlot>,
) -> Result<Opened, AgentError> {
    let (host, port) = parse_url(url)?;
    // --connect-to names where cfg.url's host is, not a region's.
    let stream = match cfg.connect_to.filter(|_| url == cfg.url) {
        Some(addr) => crate::tls::client::connect_to(&host, port, &[addr], tls).await,
        None => crate::tls::client::connect(&host, port, tls).await,
    }
    .map_err(|source| AgentError::Dial {
        url: url.to_owned(),
        source,
    })?;
    let edge = stream.get_ref().0.peer_addr().ok();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    let authority = if port == 443 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let mut req = http::Request::builder()
        .uri(tunnel::CONNECT_PATH)
        .header(http::header::HOST, authority)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, tunnel::UPGRADE_PROTOCOL)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", cfg.token.expose()),
        )
        .header(
            http::header::USER_AGENT,
            concat!("berth-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .expect("static request is valid");
    if let Some(slot) = slot {
        let value = http::HeaderValue::try_from(slot.header_value()).expect("hex and digits");
        req.headers_mut().insert(tunnel::TUNNEL_SET_HEADER, value);
    }
    let mut res = sender.send_request(req).await?;
    match res.status() {
        http::StatusCode::SWITCHING_PROTOCOLS => {}
        http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN => {
            return Err(AgentError::Unauthorized)
        }
        other => return Err(AgentError::Unexpected(other)),
    }
    if let Some((who, host)) = res
        .headers()
        .get(crate::protocol::SERVING_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
    {
        let at = if port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{port}")
        };
        tracing::info!(workspace = %who, urls = %at, "serving workspace {who}: its ports are at {at}");
    }
    let listed = res
        .headers()
        .get(REGIONS_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(from_header);
    Ok((hyper::upgrade::on(&mut res).await?, listed, edge))
}

/// The wait before attempt `n` (0-based): exponential, capped, with full jitter
/// over its upper half so a fleet of agents does not reconnect in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(BACKOFF_CAP);
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    ceiling.mul_f64(jitter)
}

/// The URLs to try, in order. The regions come from the last tunnel's
/// answer (`known`); a pinned agent that knows none yet asks control once.
/// Knowing no regions, the agent dials `cfg.url` as given.
async fn targets(
    cfg: &AgentConfig,
    tls: Arc<rustls::ClientConfig>,
    known: &mut Option<Vec<Candidate>>,
) -> Vec<String> {
    if cfg.region.is_some() && known.is_none() {
        match regions::fetch(&cfg.url, cfg.token.expose(), tls.clone()).await {
            Ok(list) => *known = Some(list.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask control for the regions");
                crate::tls::client::explain_once(&e.to_string());
            }
        }
    }
    let Some(candidates) = known
        .clone()
        .filter(|l| !l.is_empty() || cfg.region.is_some())
    else {
        return vec![cfg.url.clone()];
    };
    let ordered = regions::order(measure(cfg, candidates, tls).await, cfg.region.as_deref());
    if ordered.is_empty() {
        match &cfg.region {
            Some(pin) => {
                tracing::warn!(region = %pin, "no such region; check --region (berth regions lists them)")
            }
            None => tracing::warn!("no region answers; retrying"),
        }
    }
    ordered.into_iter().map(|c| c.url).collect()
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    parse_url(&cfg.url)?;
    if !(1..=tunnel::MAX_TUNNELS).contains(&cfg.tunnels) {
        return Err(AgentError::Tunnels(cfg.tunnels));
    }
    let tls = crate::tls::client::client_config(cfg.ca_file.as_deref(), &[b"http/1.1"])?;
    let up = Arc::new(cfg.upstream.clone());
    let (primary, primary_rx) = tokio::sync::watch::channel(None);
    let standing_by = async {
        if cfg.standby && cfg.region.is_none() {
            standby(&cfg, tls.clone(), up.clone(), primary_rx).await;
        }
        std::future::pending::<()>().await
    };
    let work = async {
        let mut attempt = 0u32;
        let mut st = RunState {
            known: None,
            retiring: None,
            primary,
            siblings: None,
        };
        let mut avoid: Option<String> = None;
        loop {
            let mut connected = None;
            let mut urls = targets(&cfg, tls.clone(), &mut st.known).await;
            // Moving: anywhere but the region being left, if there is one.
            if let Some(from) = avoid.take() {
                if urls.iter().any(|u| *u != from) {
                    urls.retain(|u| *u != from);
                }
            }
            if urls.is_empty() {
                let wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(wait).await;
                continue;
            }
            let mut result = Ok(Ended::Closed);
            for url in urls {
                result = connect_once(&cfg, &url, tls.clone(), up.clone(), &mut connected, &mut st)
                    .await;
                if connected.is_some() {
                    // It was up: start over from the region list.
                    break;
                }
                if let Err(e) = &result {
                    tracing::warn!(%url, error = %e, "cannot open a tunnel; trying the next region");
                    crate::tls::client::explain_once(&e.to_string());
                }
            }
            if let Ok(Ended::Moving { from, old }) = result {
                // Dial the next one at once; the old tunnel serves meanwhile.
                st.retiring = Some(old);
                avoid = Some(from);
                continue;
            }
            if connected.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                attempt = 0;
            }
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            match result {
                Ok(_) => {
                    tracing::warn!(retry_in = ?wait, "tunnel closed by the edge; reconnecting")
                }
                Err(e) => {
                    tracing::warn!(retry_in = ?wait, error = %e, "tunnel down; reconnecting");
                    crate::tls::client::explain_once(&e.to_string());
                }
            }
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = work => Ok(()),
        () = standing_by => Ok(()),
        () = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://berth.localhost:8443").unwrap(),
            ("berth.localhost".into(), 8443)
        );
        assert_eq!(
            parse_url("https://berth.example.com/").unwrap(),
            ("berth.example.com".into(), 443)
        );
        assert_eq!(parse_url("https://[::1]:9").unwrap(), ("::1".into(), 9));
        for bad in ["http://x", "x:1", "https://", "https://a/b", "https://a:b"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for _ in 0..100 {
            let first = backoff(0);
            assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START);
            let late = backoff(30);
            assert!(late >= BACKOFF_CAP / 2 && late <= BACKOFF_CAP);
        }
        assert!(backoff(3) > BACKOFF_START);
    }
}
