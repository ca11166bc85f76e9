//! Write stalls: a peer that takes none of the bytes waiting for it for a
//! while is given up on, so that what it holds (a tunnel stream's window,
//! a connection slot) is released in bounded time.
//!
//! This is a timeout on *progress*, not on idleness: it runs only while a
//! write is blocked, and any byte the peer takes starts it again. A quiet
//! WebSocket, a long poll or an idle keep-alive connection never blocks a
//! write, so it is never cut off by it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The deadline of one writer: armed when a write is blocked, disarmed by
/// any progress. The timer is allocated on the first blocked write only,
/// so a connection that never stalls carries none.
#[derive(Debug, Default)]
pub struct WriteStall {
    /// `None`: never give up.
    timeout: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the current blockage.
    armed: bool,
}

impl WriteStall {
    /// A writer that fails once blocked for `timeout` without progress
    /// (`None`: never).
    pub fn new(timeout: Option<Duration>) -> Self {
        WriteStall {
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// The peer took bytes: the next blockage starts a fresh count.
    pub fn progressed(&mut self) {
        self.armed = false;
    }

    /// Nothing to write any more: forget the timer (and its memory).
    pub fn idle(&mut self) {
        self.armed = false;
        self.timer = None;
    }

    /// A write just returned `Pending`: starts the count if this blockage
    /// is new, registers `cx` to be woken when it ends, and fails with
    /// `TimedOut` once it has lasted the whole timeout.
    pub fn poll_blocked(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(timeout) = self.timeout else {
            return Ok(());
        };
        if !self.armed {
            let deadline = Instant::now() + timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
        }
        let timer = self.timer.as_mut().expect("armed above");
        match timer.as_mut().poll(cx) {
            Poll::Pending => Ok(()),
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the peer took no bytes for {}s",
                    timeout.as_secs_f64().round()
                ),
            )),
        }
    }

    /// Passes `poll` (a write, flush or shutdown) through, counting a
    /// `Pending` as blocked and anything else as progress.
    pub fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => match self.poll_blocked(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
            ready => {
                self.progressed();
                ready
            }
        }
    }
}

/// A stream whose writes fail with `TimedOut` when the peer takes nothing
/// for the timeout while bytes wait for it (see [`WriteStall`]). Reads
/// pass through untouched.
#[derive(Debug)]
pub struct WriteDeadline<S> {
    inner: S,
    stall: WriteStall,
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner`; `None` never gives up.
    pub fn new(inner: S, timeout: Option<Duration>) -> Self {
        WriteDeadline {
            inner,
            stall: WriteStall::new(timeout),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let poll = Pin::new(&mut me.inner).poll_write(cx, buf);
        me.stall.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let poll = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        me.stall.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let poll = Pin::new(&mut me.inner).poll_flush(cx);
        me.stall.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let poll = Pin::new(&mut me.inner).poll_shutdown(cx);
        me.stall.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_is_given_up_on() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut w = WriteDeadline::new(near, Some(Duration::from_secs(30)));
        let started = Instant::now();
        let data = vec![7u8; 4096];
        let err = w.write_all(&data).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(err.to_string().contains("30s"), "{err}");
        // What was taken is still there to read.
        let mut got = vec![0u8; 1024];
        far.read_exact(&mut got).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_peer_that_keeps_taking_is_not_cut_off() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut w = WriteDeadline::new(near, Some(Duration::from_secs(10)));
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            // 512 bytes every 6 s: each wait is under the timeout.
            while total < 8192 {
                tokio::time::sleep(Duration::from_secs(6)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            total
        });
        w.write_all(&vec![1u8; 8192]).await.unwrap();
        drop(w);
        assert!(reader.await.unwrap() >= 8192);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_is_never_cut_off() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut w = WriteDeadline::new(near, Some(Duration::from_secs(1)));
        w.write_all(b"hello").await.unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        w.write_all(b" again").await.unwrap();
        w.flush().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_timeout_it_waits_for_ever() {
        let (near, _far) = tokio::io::duplex(16);
        let mut w = WriteDeadline::new(near, None);
        let r = tokio::time::timeout(Duration::from_secs(3600), w.write_all(&[0u8; 64])).await;
        assert!(r.is_err(), "the write ended");
    }
}
