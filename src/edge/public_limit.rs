//! `sharing.public_rate_limit`: what is open to the world (anonymous
//! requests to public shares, and share-link redemptions, by URL or by a
//! program's header) is rate limited per source address, with governor's
//! keyed GCRA limiter; beyond it, 429 with `Retry-After`, counted in
//! `berth_edge_public_rate_limited{kind}`. Signed-in users, API tokens and
//! visitors already holding a link's cookie are not limited here.

use super::pages::ErrorPage;
use crate::config::PublicRate;
use crate::telemetry::KindLabel;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most; past it, idle ones are dropped (at most
/// every [`PRUNE_EVERY`]), and if that is not enough, new addresses wait.
const MAX_KEYS: usize = 200_000;
/// The least time between two prunings of a full map.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// What a request is, for the limit: anonymous on a public share, or a
/// link redemption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Public,
    Link,
}

/// The limiter, when `sharing.public_rate_limit` is set.
pub(crate) struct PublicLimit {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    last_prune: Mutex<Instant>,
    limited: Family<KindLabel, Counter>,
}

impl PublicLimit {
    /// A limiter for `rate` (none: every request passes), counting refusals
    /// in `limited`.
    pub(super) fn new(rate: Option<PublicRate>, limited: Family<KindLabel, Counter>) -> Self {
        let limiter = rate
            .map(|r| RateLimiter::dashmap(Quota::per_minute(r.per_minute).allow_burst(r.burst)));
        PublicLimit {
            limiter,
            last_prune: Mutex::new(Instant::now()),
            limited,
        }
    }

    /// Counts one request of `kind` from `source`; a 429 page when the
    /// address is over its limit.
    pub(super) fn check(&self, source: IpAddr, kind: Kind) -> Result<(), ErrorPage> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let key = source_key(source);
        let verdict = if limiter.len() >= MAX_KEYS && !self.prune(limiter) {
            Err(Duration::from_secs(1))
        } else {
            limiter
                .check_key(&key)
                .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
        };
        verdict.map_err(|wait| {
            let kind = match kind {
                Kind::Public => "public",
                Kind::Link => "link",
            };
            self.limited.get_or_create(&KindLabel { kind }).inc();
            tracing::info!(%source, kind, "public share rate limit");
            ErrorPage::RateLimited {
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            }
        })
    }

    /// Drops idle addresses if the last pruning is old enough; true when
    /// there is room afterwards.
    fn prune(&self, limiter: &DefaultKeyedRateLimiter<IpAddr>) -> bool {
        let due = {
            let mut last = self.last_prune.lock().expect("prune lock");
            let due = last.elapsed() >= PRUNE_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.len() < MAX_KEYS
    }
}

/// The key an address is limited under: IPv4 (IPv4-mapped IPv6 included)
/// as is, IPv6 by its /64 (a host usually has a whole /64 to pick from).
/// The same rule as control's sign-in limits (`control::login`), which the
/// edge may not import.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limit(per_minute: u32, burst: u32) -> PublicLimit {
        PublicLimit::new(
            Some(PublicRate {
                per_minute: NonZeroU32::new(per_minute).unwrap(),
                burst: NonZeroU32::new(burst).unwrap(),
            }),
            Family::default(),
        )
    }

    #[test]
    fn off_by_default_and_per_address_when_on() {
        let off = PublicLimit::new(None, Family::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..10_000 {
            assert!(off.check(a, Kind::Public).is_ok());
        }
        let l = limit(60, 3);
        for _ in 0..3 {
            assert!(l.check(a, Kind::Public).is_ok());
        }
        // Public and link requests share one budget per address.
        match l.check(a, Kind::Link) {
            Err(ErrorPage::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.limited.get_or_create(&KindLabel { kind: "link" }).get(),
            1
        );
        // Another address has its own; an IPv6 /64 is one address, and a
        // mapped IPv4 is the IPv4 address.
        assert!(l.check("192.0.2.2".parse().unwrap(), Kind::Public).is_ok());
        assert!(l
            .check("::ffff:192.0.2.1".parse().unwrap(), Kind::Public)
            .is_err());
        for host in 1..=3 {
            let v6: IpAddr = format!("2001:db8::{host}").parse().unwrap();
            assert!(l.check(v6, Kind::Public).is_ok());
        }
        assert!(l
            .check("2001:db8::ffff:1".parse().unwrap(), Kind::Public)
            .is_err());
        assert!(l
            .check("2001:db8:0:1::1".parse().unwrap(), Kind::Public)
            .is_ok());
    }
}
