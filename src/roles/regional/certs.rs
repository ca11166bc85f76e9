//! A `self-signed` regional edge's certificate, from control: renewed in
//! the last third of its life, and asked for every few seconds while a
//! temporary one is served (control's ACME order not done yet).

use super::client::ControlClient;
use crate::tls::{self, SwappableCert};
use std::sync::Arc;
use std::time::Duration;

/// How often a `self-signed` edge checks its certificate from control.
const CERT_CHECK_EVERY: Duration = Duration::from_secs(3600);
/// ...and how soon it tries again after control failed to issue one.
const CERT_RETRY: Duration = Duration::from_secs(300);
/// How often an edge serving a temporary certificate asks for the real one.
const CERT_PENDING_RETRY: Duration = Duration::from_secs(2);

/// Whether a certificate valid from `not_before` to `not_after` (unix
/// seconds) should be replaced at `now`: in the last third of its life, as
/// cert-manager does (day 60 of a 90-day leaf), which leaves weeks for
/// retries while control is away.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= not_after - (not_after - not_before).max(0) / 3
}

/// Replaces the served certificate with a new one from control's CA if it
/// is due at `now` (unix seconds); `Ok(true)` when it did.
pub async fn renew_if_due(
    client: &ControlClient,
    certs: &SwappableCert,
    now: i64,
) -> Result<bool, String> {
    let chain = certs.current_chain();
    let info = chain
        .first()
        .map(|leaf| tls::info::cert_info(leaf))
        .transpose()
        .map_err(|e| e.to_string())?;
    if info.is_some_and(|i| !renewal_due(i.not_before, i.not_after, now)) {
        return Ok(false);
    }
    match client.certificate().await? {
        Some(fresh) => {
            certs.set(fresh).map_err(|e| e.to_string())?;
            Ok(true)
        }
        None => Err("control is still ordering the region's certificate".into()),
    }
}

/// Keeps a `self-signed` edge's certificate from control current; while
/// it serves a temporary one (`pending`: control's ACME order was not done
/// at start), asks every few seconds.
pub(super) async fn renew_certificates(
    client: ControlClient,
    certs: Arc<SwappableCert>,
    mut pending: bool,
) {
    loop {
        let wait = if pending {
            match client.certificate().await {
                Ok(Some(fresh)) => match certs.set(fresh) {
                    Ok(()) => {
                        tracing::info!("serving the region's certificate from control");
                        pending = false;
                        CERT_CHECK_EVERY
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "control sent an unusable certificate");
                        CERT_RETRY
                    }
                },
                Ok(None) => CERT_PENDING_RETRY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot get the region's certificate yet; retrying");
                    CERT_PENDING_RETRY
                }
            }
        } else {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match renew_if_due(&client, &certs, now).await {
                Ok(true) => {
                    tracing::info!("renewed this edge's certificate from control");
                    CERT_CHECK_EVERY
                }
                Ok(false) => CERT_CHECK_EVERY,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew this edge's certificate yet; retrying");
                    CERT_RETRY
                }
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::renewal_due;

    #[test]
    fn renewal_is_due_in_the_last_third_of_a_certificates_life() {
        let day = 86_400;
        let (from, to) = (1_000_000, 1_000_000 + 90 * day);
        assert!(!renewal_due(from, to, from));
        assert!(!renewal_due(from, to, from + 59 * day));
        assert!(renewal_due(from, to, from + 60 * day));
        assert!(renewal_due(from, to, to + day), "expired: due");
        assert!(!renewal_due(from, to, from - day));
        // A nonsensical certificate (ends before it starts) is due at once.
        assert!(renewal_due(to, from, from));
    }
}
