//! What one agent's traffic may hold at this edge.
//!
//! - [`AgentStreams`]: requests in flight and open upgraded connections per
//!   agent, at most `limits.max_streams_per_agent`; beyond it the edge
//!   answers 503 with `Retry-After` instead of queueing without bound (each
//!   pending request holds a tunnel stream, a pooled connection and its
//!   buffers: 20,000 cost ~430 MiB).
//! - [`guard`]: the response body handed to the client keeps the request's
//!   [`StreamPermit`] until it ends, and for an HTTP/2 client it gives up
//!   when the client takes nothing for `limits.client_write_timeout_secs`.
//!   An HTTP/2 client can stop one stream (by granting it no window) while
//!   its connection stays busy, so the socket-level deadline
//!   ([`crate::tunnel::stall::WriteDeadline`]) never sees it; the upstream
//!   body, the tunnel stream it reads and the data buffered for it are
//!   dropped instead of held for as long as the client likes.

use super::pages::ErrorPage;
use bytes::Bytes;
use dashmap::DashMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an HTTP/2 client may take no data before its response's
/// upstream is dropped; `None` for HTTP/1.x, whose socket deadline covers
/// it ([`crate::tunnel::stall::WriteDeadline`]).
pub fn stall_timeout(edge: &super::Edge, client: http::Version) -> Option<Duration> {
    (client == http::Version::HTTP_2).then_some(edge.limits.client_write_timeout)
}

/// Streams in flight per agent, capped.
#[derive(Debug)]
pub struct AgentStreams {
    limit: usize,
    counts: DashMap<i64, usize>,
}

impl AgentStreams {
    /// At most `limit` streams per agent.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(AgentStreams {
            limit: limit.max(1),
            counts: DashMap::new(),
        })
    }

    /// The cap.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A permit for one more stream to `agent_id`, unless it has
    /// [`limit`](Self::limit) already.
    pub fn try_acquire(self: &Arc<Self>, agent_id: i64) -> Option<StreamPermit> {
        let mut n = self.counts.entry(agent_id).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(StreamPermit {
            streams: self.clone(),
            agent_id,
        })
    }

    /// [`try_acquire`](Self::try_acquire), or the 503 page that says the
    /// agent is busy.
    pub fn acquire(self: &Arc<Self>, agent_id: i64) -> Result<StreamPermit, ErrorPage> {
        self.try_acquire(agent_id).ok_or_else(|| {
            tracing::debug!(agent_id, limit = self.limit, "agent busy");
            ErrorPage::AgentBusy { limit: self.limit }
        })
    }

    /// Streams `agent_id` has in flight.
    pub fn in_flight(&self, agent_id: i64) -> usize {
        self.counts.get(&agent_id).map_or(0, |n| *n)
    }
}

/// One stream counted against its agent until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    streams: Arc<AgentStreams>,
    agent_id: i64,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(mut n) = self.streams.counts.get_mut(&self.agent_id) {
            *n = n.saturating_sub(1);
        }
        self.streams
            .counts
            .remove_if(&self.agent_id, |_, n| *n == 0);
    }
}

/// The client's response body: `body` with its `permit`, given up on when
/// `stall` is set and the client takes nothing for that long.
pub fn guard<B>(body: B, permit: StreamPermit, stall: Option<Duration>) -> Guarded<B>
where
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    match stall {
        Some(timeout) if !body.is_end_stream() => {
            let watched = Arc::new(Watched {
                slot: Mutex::new(Slot::Live {
                    body,
                    _permit: permit,
                }),
                epoch: Instant::now(),
                // The headers are out: the client's turn to ask for data.
                waiting_since: AtomicU64::new(1),
            });
            let watchdog = tokio::spawn(watchdog(Arc::downgrade(&watched), timeout));
            Guarded::Watched {
                watched,
                watchdog: watchdog.abort_handle(),
            }
        }
        _ => Guarded::Plain(body, permit),
    }
}

/// See [`guard`].
pub enum Guarded<B> {
    /// Held with its permit; the socket's deadline covers stalls.
    Plain(B, StreamPermit),
    /// Watched for a client that stops taking data.
    Watched {
        watched: Arc<Watched<B>>,
        watchdog: tokio::task::AbortHandle,
    },
}

impl<B> Drop for Guarded<B> {
    fn drop(&mut self) {
        if let Guarded::Watched { watchdog, .. } = self {
            watchdog.abort();
        }
    }
}

/// The body and what the watchdog reads.
pub struct Watched<B> {
    slot: Mutex<Slot<B>>,
    epoch: Instant,
    /// 0 while the body is asked for data (the upstream's turn); else one
    /// more than the millisecond (since `epoch`) from which the client has
    /// had a frame and not asked for the next.
    waiting_since: AtomicU64,
}

enum Slot<B> {
    /// The body, and the permit it holds while it lives.
    Live {
        body: B,
        _permit: StreamPermit,
    },
    Ended,
    /// The client took nothing for this long.
    Stalled(Duration),
}

impl<B> Watched<B> {
    fn mark_waiting(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.waiting_since.store(ms + 1, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot<B>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Drops the body of a client that has not asked for data for `timeout`.
async fn watchdog<B>(watched: Weak<Watched<B>>, timeout: Duration) {
    let mut check_at = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(check_at).await;
        let Some(w) = watched.upgrade() else { return };
        let since = w.waiting_since.load(Ordering::Acquire);
        if since == 0 {
            // Waiting on the app, which upstream_timeout bounds (or a
            // stream that is simply slow): look again soon.
            check_at = Instant::now() + timeout / 4;
            continue;
        }
        let stalled_from = w.epoch + Duration::from_millis(since - 1);
        if Instant::now() < stalled_from + timeout {
            check_at = stalled_from + timeout;
            continue;
        }
        let mut slot = w.lock();
        if matches!(*slot, Slot::Live { .. }) {
            tracing::debug!(
                ?timeout,
                "an HTTP/2 client took no data; dropping its upstream"
            );
            // Drops the upstream body (so the tunnel stream and what it
            // buffered) and the permit.
            *slot = Slot::Stalled(timeout);
        }
        return;
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Guarded::Plain(body, _) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Guarded::Watched { watched, .. } => {
                let mut slot = watched.lock();
                let body = match &mut *slot {
                    Slot::Live { body, .. } => body,
                    Slot::Ended => return Poll::Ready(None),
                    Slot::Stalled(t) => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("the client took no data for {}s", t.as_secs()),
                        );
                        return Poll::Ready(Some(Err(e.into())));
                    }
                };
                watched.waiting_since.store(0, Ordering::Release);
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        watched.mark_waiting();
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        *slot = Slot::Ended;
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => {
                        *slot = Slot::Ended;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Guarded::Plain(body, _) => body.is_end_stream(),
            Guarded::Watched { watched, .. } => match &*watched.lock() {
                Slot::Live { body, .. } => body.is_end_stream(),
                Slot::Ended => true,
                Slot::Stalled(_) => false,
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Guarded::Plain(body, _) => body.size_hint(),
            Guarded::Watched { watched, .. } => match &*watched.lock() {
                Slot::Live { body, .. } => body.size_hint(),
                _ => SizeHint::default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::convert::Infallible;

    #[test]
    fn permits_are_counted_per_agent_and_given_back() {
        let s = AgentStreams::new(2);
        let a1 = s.try_acquire(1).unwrap();
        let a2 = s.try_acquire(1).unwrap();
        assert!(s.try_acquire(1).is_none(), "a third stream to agent 1");
        let b1 = s.try_acquire(2).expect("another agent is not affected");
        assert_eq!((s.in_flight(1), s.in_flight(2)), (2, 1));
        drop(a1);
        let a3 = s.try_acquire(1).expect("a stream ended: room again");
        drop((a2, a3, b1));
        assert_eq!((s.in_flight(1), s.in_flight(2)), (0, 0));
        assert!(s.counts.is_empty(), "no entry left for idle agents");
    }

    #[test]
    fn permits_hold_under_concurrency() {
        let s = AgentStreams::new(10);
        let taken: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let s = s.clone();
                    scope.spawn(move || {
                        (0..100)
                            .filter_map(|_| s.try_acquire(7))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(taken.len(), 10, "exactly the cap");
        drop(taken);
        assert_eq!(s.in_flight(7), 0);
    }

    /// A body of `n` frames that are always ready.
    fn frames(n: usize) -> impl Body<Data = Bytes, Error = Infallible> + Unpin + Send + 'static {
        let items = (0..n).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"x"))));
        StreamBody::new(futures_util::stream::iter(items))
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_asking_loses_the_body_and_the_permit() {
        let s = AgentStreams::new(5);
        let mut body = guard(
            frames(10),
            s.try_acquire(1).unwrap(),
            Some(Duration::from_secs(60)),
        );
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "x");
        assert_eq!(s.in_flight(1), 1);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(s.in_flight(1), 1, "given up too early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(s.in_flight(1), 0, "the permit went with the body");
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("took no data for 60s"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_asks_is_given_up_on_too() {
        let s = AgentStreams::new(5);
        let body = guard(
            frames(3),
            s.try_acquire(1).unwrap(),
            Some(Duration::from_secs(10)),
        );
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(s.in_flight(1), 0);
        drop(body);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_app_is_not_a_stalled_client() {
        // The body waits on its source for longer than the timeout; the
        // client asks all along.
        let s = AgentStreams::new(5);
        let slow = futures_util::stream::unfold(0, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(100)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"y"))),
                i + 1,
            ))
        });
        let body = guard(
            StreamBody::new(Box::pin(slow)),
            s.try_acquire(1).unwrap(),
            Some(Duration::from_secs(10)),
        );
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "yyy");
        assert_eq!(s.in_flight(1), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_up_gets_everything() {
        let s = AgentStreams::new(5);
        let mut body = guard(
            frames(5),
            s.try_acquire(1).unwrap(),
            Some(Duration::from_secs(10)),
        );
        let mut got = 0;
        while let Some(f) = body.frame().await {
            f.unwrap();
            got += 1;
            // Slower than the timeout overall, but never that long at once.
            tokio::time::sleep(Duration::from_secs(9)).await;
        }
        assert_eq!(got, 5);
        assert!(body.is_end_stream());
        assert_eq!(s.in_flight(1), 0, "the permit is released at the end");
    }

    #[tokio::test]
    async fn without_a_timeout_the_permit_lives_as_long_as_the_body() {
        let s = AgentStreams::new(5);
        let body = guard(frames(2), s.try_acquire(3).unwrap(), None);
        assert!(matches!(body, Guarded::Plain(..)));
        assert_eq!(s.in_flight(3), 1);
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all, "xx");
        assert_eq!(s.in_flight(3), 0);
    }
}
