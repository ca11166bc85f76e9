//! `berth agent`: runs inside a workspace, dials out to an edge over TLS and
//! serves the tunnel (see [`crate::tunnel`]). It reconnects with jittered
//! exponential back-off after any failure; nothing listens in the workspace.

pub mod scan;

use crate::auth::Secret;
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
}

/// Splits `https://host[:port][/]` into host and port.
pub fn parse_url(url: &str) -> Result<(String, u16), AgentError> {
    let bad = || AgentError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(bad());
    }
    let uri: http::uri::Authority = authority.parse().map_err(|_| bad())?;
    let host = uri
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let has_port = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest)
        .contains(':');
    let port = match (has_port, uri.port_u16()) {
        (false, _) => 443,
        (true, Some(p)) if p > 0 => p,
        (true, _) => return Err(bad()),
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// Longest wait for a dial, TLS handshake and upgrade to finish: a path that
/// accepts TCP and then passes nothing must not hold the agent forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials once and serves the tunnel until it ends.
async fn connect_once(
    cfg: &AgentConfig,
    tls: Arc<rustls::ClientConfig>,
    up: Arc<Upstream>,
    connected: &mut Option<Instant>,
) -> Result<(), AgentError> {
    let io = tokio::time::timeout(HANDSHAKE_TIMEOUT, open_tunnel(cfg, tls))
        .await
        .map_err(|_| AgentError::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    *connected = Some(Instant::now());
    tracing::info!(url = %cfg.url, "tunnel up");
    tunnel::agent::serve(io, up).await?;
    Ok(())
}

/// Dials, does TLS, and upgrades to the tunnel protocol.
async fn open_tunnel(
    cfg: &AgentConfig,
    tls: Arc<rustls::ClientConfig>,
) -> Result<hyper::upgrade::Upgraded, AgentError> {
    let (host, port) = parse_url(&cfg.url)?;
    let stream = match cfg.connect_to {
        Some(addr) => crate::tls::client::connect_to(&host, port, &[addr], tls).await,
        None => crate::tls::client::connect(&host, port, tls).await,
    }
    .map_err(|source| AgentError::Dial {
        url: cfg.url.clone(),
        source,
    })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(conn.with_upgrades());
    let authority = if port == 443 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    let req = http::Request::builder()
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
    let mut res = sender.send_request(req).await?;
    match res.status() {
        http::StatusCode::SWITCHING_PROTOCOLS => {}
        http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN => {
            return Err(AgentError::Unauthorized)
        }
        other => return Err(AgentError::Unexpected(other)),
    }
    Ok(hyper::upgrade::on(&mut res).await?)
}

/// The wait before attempt `n` (0-based): exponential, capped, with full jitter
/// over its upper half so a fleet of agents does not reconnect in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_START.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(BACKOFF_CAP);
    let jitter = rand::thread_rng().gen_range(0.5..=1.0);
    ceiling.mul_f64(jitter)
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    parse_url(&cfg.url)?;
    let tls = crate::tls::client::client_config(cfg.ca_file.as_deref(), &[b"http/1.1"])?;
    let up = Arc::new(cfg.upstream.clone());
    let work = async {
        let mut attempt = 0u32;
        loop {
            let mut connected = None;
            let result = connect_once(&cfg, tls.clone(), up.clone(), &mut connected).await;
            if connected.is_some_and(|t| t.elapsed() >= STABLE_AFTER) {
                attempt = 0;
            }
            let wait = backoff(attempt);
            attempt = attempt.saturating_add(1);
            match result {
                Ok(()) => {
                    tracing::warn!(retry_in = ?wait, "tunnel closed by the edge; reconnecting")
                }
                Err(e) => tracing::warn!(retry_in = ?wait, error = %e, "tunnel down; reconnecting"),
            }
            tokio::time::sleep(wait).await;
        }
    };
    tokio::select! {
        () = work => Ok(()),
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
