//! A webhook receiver on loopback: records every call (path, headers,
//! body), answers 500 to the first `fail_first` calls and 204 after, and
//! runs an optional action on each successful call (e.g. start an agent).

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One call received.
#[derive(Clone, Debug)]
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
    pub raw: Bytes,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

type Action = Arc<dyn Fn(&Call) + Send + Sync>;

/// A running receiver.
pub struct Receiver {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts it; `on_call` runs for each accepted call.
    pub async fn start(fail_first: usize, on_call: Option<Action>) -> Receiver {
        let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let (c, s) = (calls.clone(), seen.clone());
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, raw: Bytes| {
            let (calls, seen, on_call) = (c.clone(), s.clone(), on_call.clone());
            async move {
                let accepted = seen.fetch_add(1, Ordering::SeqCst) >= fail_first;
                let call = Call {
                    path: uri.path().to_owned(),
                    headers,
                    body: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
                    raw,
                    accepted,
                };
                if accepted {
                    if let Some(f) = &on_call {
                        f(&call);
                    }
                }
                calls.lock().unwrap().push(call);
                if accepted {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, calls, task }
    }

    /// `http://127.0.0.1:PORT{path}`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Waits until `n` calls were accepted (at most `limit`); returns them.
    pub async fn wait_accepted(&self, n: usize, limit: Duration) -> Vec<Call> {
        let t0 = Instant::now();
        loop {
            let ok: Vec<Call> = self.calls().into_iter().filter(|c| c.accepted).collect();
            if ok.len() >= n {
                return ok;
            }
            assert!(
                t0.elapsed() < limit,
                "{} of {n} webhook calls accepted within {limit:?}: {:?}",
                ok.len(),
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Checks a call's `Berth-Signature` against `secret`.
pub fn signed(call: &Call, secret: &str) -> bool {
    let sig = call
        .headers
        .get(berth::auth::webhook::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    berth::auth::webhook::verify(secret.as_bytes(), sig, &call.raw, now, 300)
}
