//! A TCP delay line: every chunk is held for a fixed one-way delay in each
//! direction and then passed on at full speed (a delay, not a rate limit).
//! This kernel has no `netem`, so regions "far away" are simulated here.
//!
//! Each chunk carries its own due time (read time + one-way delay) and the
//! writer only waits for that instant, so chunks in flight overlap: a path
//! of 120 ms round trip carries as many bytes per second as one without
//! delay, like a long fat link (the bytes in flight sit in this relay).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A running delay line from `addr` to a target; stops when dropped.
pub struct Delay {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Delay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Delay {
    /// Listens on 127.0.0.1 (any port) and forwards to `target`, adding
    /// `rtt / 2` each way.
    pub async fn start(target: SocketAddr, rtt: Duration) -> Delay {
        Self::start_on("127.0.0.1:0".parse().unwrap(), target, rtt).await
    }

    /// Listens on `listen` (e.g. the root side of a veth pair) and forwards
    /// to `target`, adding `rtt / 2` each way.
    pub async fn start_on(listen: SocketAddr, target: SocketAddr, rtt: Duration) -> Delay {
        let listener = TcpListener::bind(listen)
            .await
            .unwrap_or_else(|e| panic!("delay line cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().unwrap();
        let one_way = rtt / 2;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pump(cr, sw, one_way));
                    let b = tokio::spawn(pump(sr, cw, one_way));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Delay { addr, task }
    }
}

/// Reads chunks as they come and writes each `delay` after it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1 (any port).
    async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, task)
    }

    /// A one-byte ping takes one round trip; a bulk transfer through a
    /// 200 ms line is not slowed to "one window per round trip": 64 MiB
    /// pass in far less than the 1000+ round trips a serialising relay
    /// (64 KiB chunks, each waiting 100 ms) would need.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delay_line_delays_each_chunk_but_keeps_the_bandwidth() {
        let rtt = Duration::from_millis(200);
        let (target, server) = echo().await;
        let line = Delay::start(target, rtt).await;
        let mut s = TcpStream::connect(line.addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut byte = [0u8; 1];
        for i in 0..3u8 {
            let t0 = std::time::Instant::now();
            s.write_all(&[i]).await.unwrap();
            s.read_exact(&mut byte).await.unwrap();
            let took = t0.elapsed();
            assert_eq!(byte[0], i);
            assert!(
                took >= rtt && took < rtt + Duration::from_millis(150),
                "a 1-byte ping took {took:?} through a {rtt:?} line"
            );
        }

        // Bulk, one way: 64 MiB into the line, counted at the far end.
        let (sink_addr, counted) = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let task = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                loop {
                    match s.read(&mut buf).await.unwrap() {
                        0 => return n,
                        k => n += k as u64,
                    }
                }
            });
            (addr, task)
        };
        let line = Delay::start(sink_addr, rtt).await;
        let total: u64 = 64 * 1024 * 1024;
        let t0 = std::time::Instant::now();
        let mut s = TcpStream::connect(line.addr).await.unwrap();
        let chunk = vec![7u8; 1024 * 1024];
        for _ in 0..total / chunk.len() as u64 {
            s.write_all(&chunk).await.unwrap();
        }
        s.shutdown().await.unwrap();
        let got = counted.await.unwrap();
        let took = t0.elapsed();
        assert_eq!(got, total);
        let mib_s = total as f64 / (1024.0 * 1024.0) / took.as_secs_f64();
        println!("64 MiB through a {rtt:?} delay line in {took:?} ({mib_s:.0} MiB/s)");
        // Connect + one one-way delay + the transfer at loopback speed; a
        // rate limit of one 64 KiB chunk per round trip would need 200 s.
        assert!(
            took < Duration::from_secs(5),
            "64 MiB took {took:?}: the line limits the rate"
        );
        server.abort();
    }
}
