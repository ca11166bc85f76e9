//! A TCP relay that can be "frozen": it stops moving bytes in both
//! directions while keeping every connection open, like a network partition
//! (nothing is closed, nothing is refused, packets just stop arriving).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Default)]
struct State {
    /// Whether new connections start frozen.
    frozen: bool,
    /// One switch per connection.
    conns: Vec<watch::Sender<bool>>,
    /// Each connection's two pumps, in accept order.
    pumps: Vec<[tokio::task::AbortHandle; 2]>,
}

/// A running relay from `addr` to a target.
pub struct Relay {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accepted: Arc<AtomicUsize>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Listens on 127.0.0.1:`port` (0: any) and forwards each connection to `target`.
    pub async fn start(port: u16, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind relay");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = {
            let state = state.clone();
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let mut pumps = tokio::task::JoinSet::new();
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(server) = TcpStream::connect(target).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let frozen = {
                        let mut st = state.lock().unwrap();
                        let (tx, rx) = watch::channel(st.frozen);
                        st.conns.push(tx);
                        rx
                    };
                    let up = pumps.spawn(pump(cr, sw, frozen.clone()));
                    let down = pumps.spawn(pump(sr, cw, frozen));
                    state.lock().unwrap().pumps.push([up, down]);
                }
            })
        };
        Relay {
            addr,
            state,
            accepted,
            task: Some(task),
        }
    }

    fn set(&self, frozen: bool, new_ones_too: bool) {
        let mut st = self.state.lock().unwrap();
        if new_ones_too {
            st.frozen = frozen;
        }
        for c in &st.conns {
            c.send_replace(frozen);
        }
    }

    /// Stops forwarding in both directions, on every connection, open or
    /// yet to come; connections stay open.
    pub fn freeze(&self) {
        self.set(true, true);
    }

    /// Stops forwarding on the connections open now only; new ones forward
    /// normally (a path that went dead while a new one works).
    pub fn freeze_existing(&self) {
        self.set(true, false);
    }

    /// Forwards again everywhere, including whatever waited in the buffers.
    pub fn thaw(&self) {
        self.set(false, true);
    }

    /// Closes the listener and every connection, and waits until they are
    /// gone, so the port can be bound again at once.
    pub async fn close(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Closes connection `i` (0-based, in accept order) both ways at once,
    /// like a path that failed; the others go on.
    pub fn cut(&self, i: usize) {
        for pump in &self.state.lock().unwrap().pumps[i] {
            pump.abort();
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Aborting the accept task drops the JoinSet, which aborts every pump
        // and so closes both sides of every connection.
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

async fn pump(mut src: OwnedReadHalf, mut dst: OwnedWriteHalf, mut frozen: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = src.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = frozen.wait_for(|f| *f) => continue,
        };
        // Frozen between the read and the write: hold the bytes.
        if frozen.wait_for(|f| !*f).await.is_err() {
            return;
        }
        if dst.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = dst.shutdown().await;
}
