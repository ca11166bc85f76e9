//! A delay relay: a TCP forwarder that holds every chunk for a fixed one-way
//! delay before passing it on, in both directions, without limiting
//! bandwidth (it reads as fast as the sender writes and queues what is in
//! flight). Two such hops make a round trip of twice the delay.
//!
//! Because the relay acknowledges at the TCP level at once, a sender's TCP
//! window never limits it; what the delay does expose is any window the
//! endpoints keep themselves, such as HTTP/2 flow control in berth's
//! tunnel, whose WINDOW_UPDATE frames now take a full round trip. Plain
//! TCP through the same relay is the reference.

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A running relay; stops accepting when dropped (connections in progress
/// end with the runtime).
pub struct Relay {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a relay on a free loopback port forwarding to `upstream`, each
/// direction delayed by `one_way`.
pub async fn start(upstream: SocketAddr, one_way: Duration) -> Result<Relay> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                let (dr, dw) = down.into_split();
                let (ur, uw) = up.into_split();
                tokio::join!(pipe(dr, uw, one_way), pipe(ur, dw, one_way));
            });
        }
    });
    Ok(Relay { addr, task })
}

/// Copies `from` to `to`, writing each chunk `delay` after it was read.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Bytes)>();
    let reader = async move {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        loop {
            buf.reserve(256 * 1024);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx
                        .send((Instant::now() + delay, buf.split().freeze()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
