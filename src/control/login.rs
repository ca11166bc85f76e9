//! Password sign-in attempts (`POST /api/v1/login`, `POST /signin`), and the
//! source limit of the OpenID callback: how many are let through, and what
//! the audit log says about the others.
//!
//! - Each attempt counts against its source address and against the user
//!   name it names (normalized; names that exist or not alike, so a refusal
//!   says nothing about the user), in governor's keyed GCRA limiters:
//!   `limits.login_burst` at once, then `limits.login_per_minute`. Over
//!   either, the answer is 429 with `Retry-After`, before any password is
//!   hashed and whatever the password.
//! - At most `limits.max_password_hashes` argon2 verifications (19 MiB
//!   each) run at once; `limits.password_hash_queue` more may wait, and the
//!   rest get 503 at once, so a flood costs neither memory nor a pile of
//!   waiting requests.
//! - A failed check is one `signin.failed` audit row (the name tried, the
//!   source). Refused attempts are aggregated: the first one from a source
//!   in a minute is a `signin.rate_limited` row, the rest of that minute one
//!   more row with their count.
//!
//! The limiters' maps hold one entry per recent key; [`LoginGuard::upkeep`]
//! drops idle ones every minute, and each map is capped at [`MAX_KEYS`].

use super::ControlState;
use crate::auth::password;
use crate::config::LoginLimits;
use crate::store::{StoreError, UserRow};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most keys each limiter tracks (measured: 6 MB for 100,000 addresses,
/// 12 MB for 100,000 names of the longest kind). Past it, idle keys
/// are dropped; if none are idle, new keys are refused (fail closed) until
/// some are.
pub(crate) const MAX_KEYS: usize = 100_000;
/// How long a refused-because-full attempt is told to wait.
const FULL_WAIT: Duration = Duration::from_secs(60);
/// At most this often is a full map swept for idle keys on the request path.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// User names are compared on at most this many characters (valid ones have
/// at most 63).
const NAME_CHARS: usize = 64;
/// Sources whose refused attempts are counted one by one for the audit log
/// between two [`LoginGuard::upkeep`] runs; the rest are counted together.
const MAX_REFUSED_SOURCES: usize = 256;
/// The longest a sign-in waits in the queue for a hash slot.
const HASH_WAIT: Duration = Duration::from_secs(10);
/// How often [`upkeep`] runs.
pub(crate) const UPKEEP_EVERY: Duration = Duration::from_secs(60);

/// Why a sign-in attempt did not succeed.
#[derive(Debug)]
pub enum Refusal {
    /// Too many attempts from this source or for this user name.
    RateLimited {
        /// When the next attempt may come.
        retry_after: Duration,
    },
    /// Every hash slot is busy and the queue is full.
    Busy,
    /// Wrong user name or password.
    WrongCredentials,
    /// The store failed.
    Store(StoreError),
}

impl Refusal {
    /// Seconds for `Retry-After` (rounded up, at least 1).
    pub fn retry_after_secs(wait: Duration) -> u64 {
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

/// `outcome="ok"`, `"failed"`, `"rate_limited"` or `"busy"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The limiters, the hash slots, and the refused-attempt counts for the
/// audit log. One per control process.
pub struct LoginGuard {
    sources: DefaultKeyedRateLimiter<IpAddr>,
    names: DefaultKeyedRateLimiter<String>,
    last_prune: Mutex<Instant>,
    hashes: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    refused: Mutex<RefusedLog>,
    attempts: Family<OutcomeLabel, Counter>,
    hashing: Gauge,
    queued: Gauge,
}

impl std::fmt::Debug for LoginGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginGuard")
            .field("sources", &self.sources.len())
            .field("names", &self.names.len())
            .field("hash_slots", &self.hashes.available_permits())
            .finish()
    }
}

impl LoginGuard {
    /// A guard with `limits`.
    pub fn new(limits: LoginLimits) -> LoginGuard {
        let period = Duration::from_secs(60) / limits.per_minute.get();
        let quota = Quota::with_period(period)
            .expect("per_minute is at most 100000, so the period is not zero")
            .allow_burst(limits.burst);
        LoginGuard {
            sources: RateLimiter::dashmap(quota),
            names: RateLimiter::dashmap(quota),
            last_prune: Mutex::new(Instant::now()),
            hashes: Arc::new(Semaphore::new(limits.max_hashes.max(1))),
            waiting: AtomicUsize::new(0),
            queue: limits.queue,
            refused: Mutex::new(RefusedLog::default()),
            attempts: Family::default(),
            hashing: Gauge::default(),
            queued: Gauge::default(),
        }
    }

    /// Registers `berth_login_*` metrics in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("berth_login");
        r.register(
            "attempts",
            "Password sign-in attempts by outcome (ok, failed, rate_limited, busy)",
            self.attempts.clone(),
        );
        r.register(
            "password_hashes_in_progress",
            "Password hashes being computed now",
            self.hashing.clone(),
        );
        r.register(
            "password_hashes_waiting",
            "Sign-ins waiting for a password-hash slot",
            self.queued.clone(),
        );
    }

    fn count(&self, outcome: &'static str) {
        self.attempts.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts one attempt from `source` (and, when given, for the user
    /// `name`); `Err` with the wait when either is over its limit. The
    /// source is checked first, so a refused source adds no name keys.
    pub fn admit(&self, source: IpAddr, name: Option<&str>) -> Result<(), Duration> {
        self.check(&self.sources, &source_key(source))?;
        if let Some(name) = name {
            self.check(&self.names, &name_key(name))?;
        }
        Ok(())
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Duration> {
        if limiter.len() >= MAX_KEYS {
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
            }
            if limiter.len() >= MAX_KEYS {
                return Err(FULL_WAIT);
            }
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// A hash slot: at once if one is free, after waiting in the queue if
    /// it has room (at most [`HASH_WAIT`]), else `None`.
    async fn hash_slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.hashes.clone().try_acquire_owned() {
            return Some(permit);
        }
        let in_line = Waiting::enter(&self.waiting, &self.queued);
        if in_line.ahead >= self.queue {
            return None;
        }
        tokio::time::timeout(HASH_WAIT, self.hashes.clone().acquire_owned())
            .await
            .ok()
            .map(|p| p.expect("the semaphore is never closed"))
    }

    /// Checks a password against `stored` (or the dummy hash) in a hash
    /// slot; `None` when no slot could be had. The slot is held until the
    /// hash is done, even if the request is dropped meanwhile.
    pub async fn verify(&self, password: &str, stored: Option<String>) -> Option<bool> {
        let permit = self.hash_slot().await?;
        let password = password.to_owned();
        let hashing = self.hashing.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hashing.inc();
            let ok = password::verify_or_dummy(&password, stored.as_deref());
            hashing.dec();
            ok
        })
        .await
        .expect("password verification does not panic");
        Some(ok)
    }

    /// One password sign-in (`via`: "api" or "form"): limits, then the
    /// check, then the audit log. The user on success.
    pub async fn attempt(
        &self,
        st: &ControlState,
        username: &str,
        password: &str,
        via: &str,
    ) -> Result<UserRow, Refusal> {
        let source = super::client_addr().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if let Err(wait) = self.admit(source, Some(username)) {
            self.count("rate_limited");
            self.note_refused(st, source, username, via, wait).await;
            return Err(Refusal::RateLimited { retry_after: wait });
        }
        let user = match st.store.user_by_name(username).await {
            Ok(u) => Some(u),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(Refusal::Store(e)),
        };
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let Some(ok) = self.verify(password, stored).await else {
            self.count("busy");
            return Err(Refusal::Busy);
        };
        match user.filter(|_| ok) {
            Some(u) => {
                self.count("ok");
                Ok(u)
            }
            None => {
                self.count("failed");
                st.audit(
                    &shown_name(username),
                    "signin.failed",
                    &format!("password ({via})"),
                )
                .await;
                Err(Refusal::WrongCredentials)
            }
        }
    }

    /// Records a refused attempt: an audit row for the first from `source`
    /// since the last [`upkeep`](Self::upkeep), a count for the others.
    async fn note_refused(
        &self,
        st: &ControlState,
        source: IpAddr,
        username: &str,
        via: &str,
        wait: Duration,
    ) {
        let name = shown_name(username);
        let first = self
            .refused
            .lock()
            .expect("refused lock")
            .note(source, &name);
        if first {
            let target = format!(
                "password ({via}): too many attempts, next in {} s",
                Refusal::retry_after_secs(wait)
            );
            st.audit(&name, "signin.rate_limited", &target).await;
        }
    }

    /// Writes the counts of refused attempts since the last run to the
    /// audit log and drops the limiters' idle keys. Runs every
    /// [`UPKEEP_EVERY`] and at shutdown.
    pub async fn upkeep(&self, st: &ControlState) {
        self.sources.retain_recent();
        self.sources.shrink_to_fit();
        self.names.retain_recent();
        self.names.shrink_to_fit();
        let (sources, overflow) = self.refused.lock().expect("refused lock").take();
        for (source, r) in sources {
            if r.more == 0 {
                continue;
            }
            let target = format!(
                "{} more attempts refused (user names: {}{})",
                r.more,
                r.names.join(", "),
                if r.names_dropped { ", ..." } else { "" }
            );
            st.audit_from(
                &r.first_name,
                "signin.rate_limited",
                &target,
                &source.to_string(),
            )
            .await;
        }
        if overflow > 0 {
            let target = format!("{overflow} attempts refused from further sources");
            st.audit_from("-", "signin.rate_limited", &target, "").await;
        }
    }
}

/// Runs [`LoginGuard::upkeep`] every [`UPKEEP_EVERY`] until aborted.
pub(crate) async fn upkeep(st: ControlState) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        st.login.upkeep(&st).await;
    }
}

/// Counts a sign-in in the hash queue while it is there (also when the
/// request is dropped while waiting).
struct Waiting<'a> {
    count: &'a AtomicUsize,
    gauge: &'a Gauge,
    /// How many were in line before this one.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, gauge: &'a Gauge) -> Self {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        gauge.inc();
        Waiting {
            count,
            gauge,
            ahead,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
        self.gauge.dec();
    }
}

/// Refused attempts since the last upkeep, per source (bounded).
#[derive(Debug, Default)]
struct RefusedLog {
    sources: HashMap<IpAddr, Refused>,
    /// Attempts from sources beyond [`MAX_REFUSED_SOURCES`].
    overflow: u64,
}

#[derive(Debug, Default)]
struct Refused {
    first_name: String,
    /// Refused after the first (which had its own row).
    more: u64,
    /// Up to 5 distinct names tried.
    names: Vec<String>,
    names_dropped: bool,
}

impl RefusedLog {
    /// Counts one refusal; true when it is the source's first (to be
    /// written at once).
    fn note(&mut self, source: IpAddr, name: &str) -> bool {
        if let Some(r) = self.sources.get_mut(&source) {
            r.more += 1;
            if !r.names.iter().any(|n| n == name) {
                if r.names.len() < 5 {
                    r.names.push(name.to_owned());
                } else {
                    r.names_dropped = true;
                }
            }
            return false;
        }
        if self.sources.len() >= MAX_REFUSED_SOURCES {
            self.overflow += 1;
            return false;
        }
        self.sources.insert(
            source,
            Refused {
                first_name: name.to_owned(),
                more: 0,
                names: vec![name.to_owned()],
                names_dropped: false,
            },
        );
        true
    }

    fn take(&mut self) -> (Vec<(IpAddr, Refused)>, u64) {
        let overflow = std::mem::take(&mut self.overflow);
        (self.sources.drain().collect(), overflow)
    }
}

/// The key a source address is limited under: an IPv4 address (IPv4-mapped
/// IPv6 included) as is, an IPv6 address by its /64 (one host usually has
/// a whole /64 to pick addresses from).
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The key a user name is limited under: trimmed, lower case, at most
/// [`NAME_CHARS`] characters, so spellings of one name share a limit.
pub(crate) fn name_key(name: &str) -> String {
    name.trim()
        .chars()
        .take(NAME_CHARS)
        .flat_map(char::to_lowercase)
        .collect()
}

/// A tried user name as the audit log shows it: at most [`NAME_CHARS`]
/// characters, control characters as `?`.
fn shown_name(name: &str) -> String {
    name.chars()
        .take(NAME_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limits(per_minute: u32, burst: u32) -> LoginLimits {
        LoginLimits {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            max_hashes: 1,
            queue: 1,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_limited_by_address_and_ipv6_by_its_64() {
        for (a, b, same) in [
            ("192.0.2.1", "192.0.2.1", true),
            ("192.0.2.1", "192.0.2.2", false),
            ("::ffff:192.0.2.1", "192.0.2.1", true),
            ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true),
            ("2001:db8:1:2::1", "2001:db8:1:3::1", false),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
        ] {
            assert_eq!(source_key(ip(a)) == source_key(ip(b)), same, "{a} {b}");
        }
    }

    #[test]
    fn spellings_of_a_name_share_one_limit() {
        for (a, b, same) in [
            ("admin", "admin", true),
            ("admin", " Admin\t", true),
            ("ADMIN", "admin", true),
            ("admin", "admin2", false),
            ("", "  ", true),
            ("ÄDMIN", "ädmin", true),
        ] {
            assert_eq!(name_key(a) == name_key(b), same, "{a:?} {b:?}");
        }
        // A huge name costs no more than a valid one.
        let long = "x".repeat(100_000);
        assert_eq!(name_key(&long).chars().count(), NAME_CHARS);
        assert_eq!(name_key(&long), name_key(&"x".repeat(NAME_CHARS + 1)));
        assert_eq!(shown_name("a\nb\u{7}"), "a?b?");
    }

    #[test]
    fn the_burst_then_refusals_with_a_wait_and_others_unaffected() {
        let g = LoginGuard::new(limits(60, 3));
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(g.admit(a, Some(&format!("user{i}"))), Ok(()), "attempt {i}");
        }
        // The fourth from that source is refused, whatever the name.
        let wait = g.admit(a, Some("fresh")).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(Refusal::retry_after_secs(wait), 1);
        // Another source is not.
        assert_eq!(g.admit(ip("192.0.2.2"), Some("fresh")), Ok(()));
        // One name from many sources is limited too, unknown or not.
        for i in 0..2 {
            assert_eq!(
                g.admit(ip(&format!("198.51.100.{i}")), Some("fresh")),
                Ok(())
            );
        }
        assert!(g.admit(ip("198.51.100.9"), Some("FRESH")).is_err());
        assert_eq!(g.admit(ip("198.51.100.9"), Some("other")), Ok(()));
        // A refused source adds no name keys.
        let before = g.names.len();
        assert!(g.admit(a, Some("never-seen")).is_err());
        assert_eq!(g.names.len(), before);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (wait, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(60), 60),
        ] {
            assert_eq!(Refusal::retry_after_secs(wait), secs, "{wait:?}");
        }
    }

    #[test]
    fn refused_attempts_are_aggregated_per_source_and_bounded() {
        let mut log = RefusedLog::default();
        let a = ip("192.0.2.1");
        assert!(log.note(a, "admin"), "the first is written at once");
        for i in 0..20 {
            assert!(!log.note(a, &format!("n{}", i % 7)));
        }
        for i in 0..MAX_REFUSED_SOURCES + 10 {
            let src = IpAddr::from((i as u32 + 1_000).to_be_bytes());
            log.note(src, "x");
        }
        let (sources, overflow) = log.take();
        assert_eq!(sources.len(), MAX_REFUSED_SOURCES);
        assert_eq!(overflow, 11);
        let r = &sources.iter().find(|(s, _)| *s == a).unwrap().1;
        assert_eq!(r.more, 20);
        assert_eq!(r.names.len(), 5);
        assert!(r.names_dropped);
        let (sources, overflow) = log.take();
        assert!(sources.is_empty() && overflow == 0);
    }

    #[tokio::test]
    async fn hash_slots_are_capped_and_a_full_queue_is_refused_at_once() {
        // One slot, one place in the queue.
        let g = Arc::new(LoginGuard::new(limits(60, 3)));
        let held = g.hash_slot().await.unwrap();
        let waiter = {
            let g = g.clone();
            tokio::spawn(async move { g.hash_slot().await.is_some() })
        };
        while g.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert!(g.hash_slot().await.is_none(), "the queue is full");
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        assert!(waiter.await.unwrap(), "the one in line gets the slot");
        assert_eq!(g.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(g.queued.get(), 0);
        assert_eq!(g.verify("x", None).await, Some(false));
        assert_eq!(g.hashing.get(), 0);
    }

    #[test]
    fn the_key_maps_are_capped() {
        // One attempt a minute: every key stays recent through the test.
        let g = LoginGuard::new(limits(1, 1));
        for i in 0..MAX_KEYS as u32 {
            let _ = g.admit(IpAddr::from(i.to_be_bytes()), None);
        }
        assert_eq!(g.sources.len(), MAX_KEYS);
        // Nothing is idle yet: a new source is refused rather than tracked.
        *g.last_prune.lock().unwrap() -= PRUNE_EVERY;
        assert_eq!(
            g.admit(ip("203.0.113.1"), None),
            Err(FULL_WAIT),
            "fail closed"
        );
        assert_eq!(g.sources.len(), MAX_KEYS);
    }
}
