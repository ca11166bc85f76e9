//! Copies bytes both ways between two streams (a WebSocket through the edge,
//! a tunnel stream and the app's socket at the agent, a relayed stream),
//! holding no buffer while the streams are idle.
//!
//! `tokio::io::copy_bidirectional` keeps a buffer per direction for the life
//! of the connection; with 64 KiB buffers that is 128 KiB per pooled stream at
//! the agent, and 16 KiB per idle WebSocket at the edge with the default
//! size. Here each read lands in a buffer on the stack and is written on at
//! once; only bytes the writer cannot take yet are kept on the heap, and that
//! buffer is released as soon as the reader has nothing more to give.
//!
//! A side that takes none of the bytes waiting for it for the stall
//! timeout ends the copy with `TimedOut` (see [`super::stall`]): the other
//! side's window and socket are released instead of held for as long as
//! the stalled peer stays connected. Quiet connections are never cut off.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::stall::WriteStall;

/// Bytes read per `poll_read` (into a stack buffer).
const CHUNK: usize = 32 * 1024;

/// Reads per poll before yielding, so one busy stream cannot hold a worker.
const READS_PER_POLL: usize = 32;

/// What one direction has written.
#[derive(Default)]
struct Written {
    copied: u64,
    /// Written since the last flush.
    need_flush: bool,
    /// Gives up on a writer that takes nothing for too long.
    stall: WriteStall,
}

impl Written {
    /// Writes `data[*off..]` until the writer has taken all of it (Ready) or
    /// pushes back (Pending, `off` says how far it got).
    fn poll_write_from<W: AsyncWrite + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        mut writer: Pin<&mut W>,
        data: &[u8],
        off: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *off < data.len() {
            let poll = writer.as_mut().poll_write(cx, &data[*off..]);
            let n = ready!(self.stall.watch(cx, poll))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *off += n;
            self.copied += n as u64;
            self.need_flush = true;
        }
        Poll::Ready(Ok(()))
    }

    /// Flushes or shuts down the writer (`poll`), counting a push-back
    /// towards the stall timeout.
    fn poll_done(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        self.stall.watch(cx, poll)
    }
}

/// One direction's state.
#[derive(Default)]
struct Half {
    /// Bytes read but not yet taken by the writer, from `pos` on.
    pending: Vec<u8>,
    pos: usize,
    /// The reader reached end of stream.
    eof: bool,
    done: bool,
    out: Written,
}

impl Half {
    fn new(stall: Option<Duration>) -> Self {
        Half {
            out: Written {
                stall: WriteStall::new(stall),
                ..Written::default()
            },
            ..Half::default()
        }
    }

    /// Moves bytes from `reader` to `writer` until the reader would block,
    /// the writer pushes back, or (after end of stream) the writer is shut.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        for _ in 0..READS_PER_POLL {
            ready!(self
                .out
                .poll_write_from(cx, writer.as_mut(), &self.pending, &mut self.pos))?;
            self.pending.clear();
            self.pos = 0;
            if self.eof {
                let poll = writer.as_mut().poll_shutdown(cx);
                ready!(self.out.poll_done(cx, poll))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            let mut stack = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut buf = ReadBuf::uninit(&mut stack);
            match reader.as_mut().poll_read(cx, &mut buf) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    // Idle: give the buffer back, and push out what was written.
                    self.pending = Vec::new();
                    if self.out.need_flush {
                        let poll = writer.as_mut().poll_flush(cx);
                        ready!(self.out.poll_done(cx, poll))?;
                        self.out.need_flush = false;
                    }
                    self.out.stall.idle();
                    return Poll::Pending;
                }
            }
            let data = buf.filled();
            if data.is_empty() {
                self.eof = true;
                continue;
            }
            let mut off = 0;
            if self
                .out
                .poll_write_from(cx, writer.as_mut(), data, &mut off)?
                .is_pending()
            {
                self.pending.extend_from_slice(&data[off..]);
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Copies `a` to `b` and `b` to `a` until both reach end of stream (each
/// end is shut down for writing once its source ends), or either fails.
/// Returns the bytes copied each way.
pub async fn bidirectional<A, B>(a: &mut A, b: &mut B) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    bidirectional_with_stall(a, b, None).await
}

/// [`bidirectional`], failing with `TimedOut` when either side takes none
/// of the bytes waiting for it for `stall` (`None`: never).
pub async fn bidirectional_with_stall<A, B>(
    a: &mut A,
    b: &mut B,
    stall: Option<Duration>,
) -> io::Result<(u64, u64)>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let (mut a_to_b, mut b_to_a) = (Half::new(stall), Half::new(stall));
    poll_fn(|cx| {
        let forth = a_to_b.poll_copy(cx, Pin::new(&mut *a), Pin::new(&mut *b))?;
        let back = b_to_a.poll_copy(cx, Pin::new(&mut *b), Pin::new(&mut *a))?;
        ready!(forth);
        ready!(back);
        Poll::Ready(Ok((a_to_b.out.copied, b_to_a.out.copied)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Writes `send` and ends the stream while reading it to the end;
    /// returns what was read.
    async fn talk(stream: tokio::io::DuplexStream, send: Vec<u8>) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(stream);
        let write = async {
            w.write_all(&send).await.unwrap();
            w.shutdown().await.unwrap();
        };
        let mut got = Vec::new();
        let (_, read) = tokio::join!(write, r.read_to_end(&mut got));
        read.unwrap();
        got
    }

    /// `client <-> [a | copy | b] <-> server` over in-memory pipes holding
    /// `pipe_a` and `pipe_b` bytes: a small pipe behind a large one makes its
    /// writer push back on most writes.
    async fn through_copy(
        (pipe_a, pipe_b): (usize, usize),
        up: Vec<u8>,
        down: Vec<u8>,
    ) -> (Vec<u8>, Vec<u8>, u64, u64) {
        let (client, mut a) = tokio::io::duplex(pipe_a);
        let (mut b, server) = tokio::io::duplex(pipe_b);
        let copy = tokio::spawn(async move { bidirectional(&mut a, &mut b).await });
        let client_side = tokio::spawn(talk(client, up));
        let server_side = tokio::spawn(talk(server, down));
        let (to_client, to_server) = (client_side.await.unwrap(), server_side.await.unwrap());
        let (forth, back) = copy.await.unwrap().unwrap();
        (to_server, to_client, forth, back)
    }

    #[tokio::test]
    async fn both_directions_arrive_whole_and_in_order() {
        let (up, down) = (pattern(3 << 20, 1), pattern(5 << 20, 7));
        let (at_server, at_client, forth, back) =
            through_copy((64 * 1024, 64 * 1024), up.clone(), down.clone()).await;
        assert!(at_server == up, "client to server bytes differ");
        assert!(at_client == down, "server to client bytes differ");
        assert_eq!((forth, back), (up.len() as u64, down.len() as u64));
    }

    #[tokio::test]
    async fn a_writer_that_takes_a_few_bytes_at_a_time_loses_nothing() {
        // Reads of up to 64 KiB into a 7-byte pipe: nearly every write is
        // partial or pushed back, so bytes are held back on most reads; in
        // one direction, then in the other.
        for pipes in [(64 * 1024, 7), (7, 64 * 1024)] {
            let (up, down) = (pattern(200_000, 3), pattern(150_000, 9));
            let (at_server, at_client, ..) = through_copy(pipes, up.clone(), down.clone()).await;
            assert!(
                at_server == up,
                "client to server bytes differ with pipes {pipes:?}"
            );
            assert!(
                at_client == down,
                "server to client bytes differ with pipes {pipes:?}"
            );
        }
    }

    #[tokio::test]
    async fn one_side_ending_shuts_the_other_and_the_reverse_keeps_flowing() {
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, mut server) = tokio::io::duplex(1024);
        let copy = tokio::spawn(async move { bidirectional(&mut a, &mut b).await });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got, b"request",
            "the server sees the client's end of stream"
        );
        // The other direction is still open after the half-close.
        server.write_all(b"late answer").await.unwrap();
        let mut answer = [0u8; 11];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"late answer");
        drop(server);
        assert_eq!(copy.await.unwrap().unwrap(), (7, 11));
    }

    #[tokio::test]
    async fn a_write_error_ends_the_copy_with_that_error() {
        let (mut client, mut a) = tokio::io::duplex(1024);
        let (mut b, server) = tokio::io::duplex(1024);
        drop(server);
        let copy = tokio::spawn(async move { bidirectional(&mut a, &mut b).await });
        client.write_all(b"nobody listens").await.unwrap();
        let err = copy.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
