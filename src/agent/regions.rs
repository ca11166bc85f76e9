//! Where an agent dials: the control plane's own edge or a regional one,
//! whichever answers fastest (SPEC §6), unless `--region` pins one.
//!
//! At every (re)connection the agent asks control for the healthy regions
//! (`GET /api/v1/agent/regions`, with its agent token), times a TLS handshake
//! to each candidate, and tries them fastest first; a dead edge fails its
//! handshake and is skipped, which is the fail-over. When control cannot be
//! asked, the last list it gave is used.

use crate::protocol::regions::{Candidate, AGENT_REGIONS};
use crate::protocol::API_ROOT;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a connected agent measures the regions again.
pub(crate) const REMEASURE_EVERY: Duration = Duration::from_secs(120);

/// Whether to leave the current edge (handshake `here`, `None` if it did
/// not answer) for one that answered in `best`: only when clearly nearer
/// (25% and 2 ms faster), so that noise does not make agents flap.
pub(crate) fn worth_moving(here: Option<Duration>, best: Duration) -> bool {
    match here {
        None => true,
        Some(here) => best.mul_f64(1.25) + Duration::from_millis(2) < here,
    }
}

/// How long a handshake may take to count as reachable.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The candidates in the order to try them: with `pin`, only that one
/// (reachable or not: pinning is a promise about where data flows);
/// otherwise every reachable one, fastest first (ties keep list order).
pub(crate) fn order(
    measured: Vec<(Candidate, Option<Duration>)>,
    pin: Option<&str>,
) -> Vec<Candidate> {
    if let Some(pin) = pin {
        return measured
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.name == pin)
            .collect();
    }
    let mut up: Vec<(Candidate, Duration)> = measured
        .into_iter()
        .filter_map(|(c, rtt)| rtt.map(|r| (c, r)))
        .collect();
    up.sort_by_key(|(_, r)| *r);
    up.into_iter().map(|(c, _)| c).collect()
}

/// Times a TCP connect and TLS handshake to `url`; `None` if it fails or
/// takes longer than [`PROBE_TIMEOUT`].
pub(crate) async fn probe(url: &str, tls: Arc<rustls::ClientConfig>) -> Option<Duration> {
    let (host, port) = super::parse_url(url).ok()?;
    let started = Instant::now();
    let stream = tokio::time::timeout(PROBE_TIMEOUT, crate::tls::client::connect(&host, port, tls))
        .await
        .ok()?
        .ok()?;
    drop(stream);
    Some(started.elapsed())
}

/// Asks control at `url` for the healthy regions. `Ok(None)`: the server
/// keeps no region list (an edge, or an older control): dial `url` itself.
pub(crate) async fn fetch(
    url: &str,
    token: &str,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Option<Vec<Candidate>>, String> {
    let (host, port) = super::parse_url(url).map_err(|e| e.to_string())?;
    let work = async {
        let authority = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let req = http::Request::builder()
            .uri(format!("{API_ROOT}{AGENT_REGIONS}"))
            .header(http::header::HOST, authority)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Default::default())
            .expect("static request is valid");
        let (status, body) = crate::tls::client::fetch(&host, port, tls, req, 1024 * 1024).await?;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{url} answered {status} for the region list"));
        }
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| format!("unusable region list: {e}"))
    };
    tokio::time::timeout(PROBE_TIMEOUT * 2, work)
        .await
        .map_err(|_| format!("{url} did not send the region list in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::regions::tests::c;

    #[test]
    fn agents_move_only_for_a_clearly_nearer_region() {
        let ms = Duration::from_millis;
        assert!(worth_moving(None, ms(500)));
        assert!(worth_moving(Some(ms(200)), ms(5)));
        assert!(!worth_moving(Some(ms(10)), ms(9)), "noise");
        assert!(!worth_moving(Some(ms(3)), ms(1)), "under the 2 ms floor");
        assert!(worth_moving(Some(ms(100)), ms(70)));
        assert!(!worth_moving(Some(ms(100)), ms(80)));
    }

    #[test]
    fn fastest_first_unreachable_dropped_pin_wins() {
        let ms = Duration::from_millis;
        let measured = vec![
            (c("control"), Some(ms(60))),
            (c("eu"), Some(ms(120))),
            (c("us"), Some(ms(5))),
            (c("ap"), None),
        ];
        let names = |v: Vec<Candidate>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(order(measured.clone(), None)),
            ["us", "control", "eu"]
        );
        assert_eq!(names(order(measured.clone(), Some("eu"))), ["eu"]);
        assert_eq!(
            names(order(measured.clone(), Some("ap"))),
            ["ap"],
            "pinned even when down"
        );
        assert!(order(measured, Some("mars")).is_empty());
        let tie = vec![(c("a"), Some(ms(1))), (c("b"), Some(ms(1)))];
        assert_eq!(names(order(tie, None)), ["a", "b"]);
    }
}
