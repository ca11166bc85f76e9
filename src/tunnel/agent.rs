//! The agent's end of a tunnel: an HTTP/2 server with two requests.
//! `CONNECT host:port`: the agent checks the port is allowed, dials it on its
//! upstream host and copies bytes both ways. `GET /ports`: it lists the
//! workspace's listening ports it would dial, as JSON. It knows nothing of
//! HTTP beyond that, nor of users or shares.

use super::protocol::ListeningPort;
use super::{
    Refusal, AGENT_PING_INTERVAL, CONNECTION_WINDOW, ERROR_HEADER, MAX_FRAME, MAX_PORTS_REPLY,
    MAX_REPORTED_PORTS, MOVE_PATH, PING_TIMEOUT, PORTS_PATH, STREAM_WINDOW,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long a retired tunnel (the agent moved) keeps serving its open
/// streams before it closes.
pub const RETIRE_GRACE: Duration = Duration::from_secs(15);

/// The hosts an agent dials by default, in order: apps that bind only one
/// loopback family (Node's `localhost` is often `::1`) work too.
pub const DEFAULT_UPSTREAM_HOSTS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// How long the agent tries to reach a workspace port, unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An app that takes none of the bytes waiting for it for this long (an
/// upload it stopped reading) loses its stream, unless told otherwise: the
/// same 60 s as the edge's default `limits.client_write_timeout_secs`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Lists the ports listening on the given hosts (or their family's wildcard):
/// the agent's scanner, handed in so the tunnel knows no more of the
/// workspace than what it is given. Blocking: it is run off the runtime.
pub type PortScan = fn(&[IpAddr]) -> std::io::Result<Vec<ListeningPort>>;

/// What the agent may dial.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Hosts to try in order; the default is 127.0.0.1 then ::1, so apps that
    /// bind only one loopback family (Node's `localhost` is often `::1`) work.
    pub hosts: Vec<IpAddr>,
    /// `--allow-ports`: when set, only these ports.
    pub allow_ports: Option<BTreeSet<u16>>,
    /// `--ports`: when set, only these are listed (`GET /ports`).
    pub list_ports: Option<BTreeSet<u16>>,
    /// Never listed: berth's own listeners, for `berth dev`'s agent.
    pub hide_ports: BTreeSet<u16>,
    /// Give up on a dial after this long.
    pub connect_timeout: Duration,
    /// Drop a stream whose app takes none of the bytes waiting for it (an
    /// upload it stopped reading) for this long, so the stream's window is
    /// released (`None`: never).
    pub write_timeout: Option<Duration>,
    /// Where this tunnel reaches the edge (set per tunnel by the agent):
    /// over loopback, that port is the edge itself and is never dialed.
    pub edge: Option<SocketAddr>,
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            hosts: DEFAULT_UPSTREAM_HOSTS.to_vec(),
            allow_ports: None,
            list_ports: None,
            hide_ports: BTreeSet::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            edge: None,
        }
    }
}

impl Upstream {
    /// Whether `GET /ports` shows `port`: not one of berth's own, and in
    /// `--ports` if that is set.
    pub fn lists(&self, port: u16) -> bool {
        !self.hide_ports.contains(&port)
            && self.list_ports.as_ref().is_none_or(|l| l.contains(&port))
    }

    /// Whether `--allow-ports` (if set) lets the agent dial `port`.
    pub fn allows(&self, port: u16) -> bool {
        port != 0 && self.allow_ports.as_ref().is_none_or(|a| a.contains(&port))
    }

    /// Whether dialing `target` would reach the edge this tunnel runs to:
    /// the edge is reached over loopback (`berth dev`, or an agent on the
    /// edge's machine) and `target` is a loopback address on its port. The
    /// request would come straight back to the edge, again and again.
    pub fn dials_the_edge(&self, target: SocketAddr) -> bool {
        self.edge.is_some_and(|edge| {
            edge.ip().is_loopback() && target.ip().is_loopback() && edge.port() == target.port()
        })
    }

    /// Dials `port` on the first host that answers.
    pub async fn dial(&self, port: u16) -> Result<TcpStream, Refusal> {
        if !self.allows(port) {
            return Err(Refusal::NotAllowed);
        }
        if self
            .hosts
            .iter()
            .any(|h| self.dials_the_edge(SocketAddr::new(*h, port)))
        {
            return Err(Refusal::Loop);
        }
        let mut last = Refusal::Unreachable;
        for host in &self.hosts {
            let addr = SocketAddr::new(*host, port);
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Refusal::Refused;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%addr, error = %e, "dial failed");
                    if last != Refusal::Refused {
                        last = Refusal::Unreachable;
                    }
                }
                Err(_) => last = Refusal::Timeout,
            }
        }
        Err(last)
    }
}

/// How the agent steers one tunnel while it serves.
#[derive(Debug, Default)]
pub struct Steering {
    /// Whether the agent has another region to move to when the edge asks
    /// (`POST /move` answers 204 if so, else 409).
    pub can_move: bool,
    /// Signalled when the edge asked the agent to move.
    pub move_asked: tokio::sync::Notify,
    /// Signal it to end the tunnel gracefully: no new streams, the open
    /// ones finish.
    pub retire: tokio::sync::Notify,
}

/// Serves one tunnel connection (already upgraded) until it ends; `scan`
/// answers `GET /ports`.
pub async fn serve(
    io: Upgraded,
    upstream: Arc<Upstream>,
    steering: Arc<Steering>,
    scan: PortScan,
) -> Result<(), hyper::Error> {
    let steer = steering.clone();
    let service = hyper::service::service_fn(move |req| {
        let (upstream, steer) = (upstream.clone(), steer.clone());
        async move { Ok::<_, Infallible>(handle(req, upstream, &steer, scan).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_concurrent_streams(10_000)
        .keep_alive_interval(AGENT_PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return r,
        () = steering.retire.notified() => {}
    }
    conn.as_mut().graceful_shutdown();
    // Open streams include the edge's idle pooled connections, which would
    // keep a retired tunnel up for as long as the edge keeps them: give the
    // requests in flight this long, then close.
    tokio::time::timeout(RETIRE_GRACE, conn)
        .await
        .unwrap_or(Ok(()))
}

/// A response body: empty for `CONNECT`, a small JSON document for `/ports`.
type Body = Either<Empty<Bytes>, Full<Bytes>>;

fn refuse(status: StatusCode, why: Refusal) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(ERROR_HEADER, why.code())
        .body(Either::Left(Empty::new()))
        .expect("static response is valid")
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Either::Right(Full::new(Bytes::from(body))))
        .expect("static response is valid")
}

/// The `GET /ports` answer's body, borrowing the list.
#[derive(serde::Serialize)]
struct Reply<'a> {
    ports: &'a [ListeningPort],
    truncated: bool,
}

/// Serialises the allowed ports, halving the list until the document fits in
/// [`MAX_PORTS_REPLY`] (only a port bound to very many addresses could need
/// it): the edge would reject a larger answer.
pub fn ports_reply(ports: &[ListeningPort], upstream: &Upstream) -> Vec<u8> {
    let allowed: Vec<ListeningPort> = ports
        .iter()
        .filter(|p| upstream.allows(p.port) && upstream.lists(p.port))
        .take(MAX_REPORTED_PORTS + 1)
        .cloned()
        .collect();
    let mut n = allowed.len().min(MAX_REPORTED_PORTS);
    loop {
        let body = serde_json::to_vec(&Reply {
            ports: &allowed[..n],
            truncated: n < allowed.len(),
        })
        .expect("ports serialise");
        if body.len() <= MAX_PORTS_REPLY || n == 0 {
            return body;
        }
        n /= 2;
    }
}

/// Answers `GET /ports`: runs the scan off the runtime.
async fn ports(upstream: Arc<Upstream>, scan: PortScan) -> Response<Body> {
    let up = upstream.clone();
    let scanned = tokio::task::spawn_blocking(move || scan(&up.hosts)).await;
    let error = match scanned {
        Ok(Ok(ports)) => return json(StatusCode::OK, ports_reply(&ports, &upstream)),
        Ok(Err(e)) => format!("cannot read the listening ports: {e}"),
        Err(e) => format!("the port scan failed: {e}"),
    };
    tracing::warn!(%error, "GET /ports");
    let body = serde_json::to_vec(&serde_json::json!({ "error": error })).expect("serialises");
    json(StatusCode::INTERNAL_SERVER_ERROR, body)
}

async fn handle(
    mut req: Request<Incoming>,
    upstream: Arc<Upstream>,
    steering: &Steering,
    scan: PortScan,
) -> Response<Body> {
    if req.method() == http::Method::POST && req.uri().path() == MOVE_PATH {
        if !steering.can_move {
            return refuse(StatusCode::CONFLICT, Refusal::Unreachable);
        }
        steering.move_asked.notify_one();
        let mut res = Response::new(Either::Left(Empty::new()));
        *res.status_mut() = StatusCode::NO_CONTENT;
        return res;
    }
    if req.method() == http::Method::GET {
        if req.uri().path() == PORTS_PATH {
            return ports(upstream, scan).await;
        }
        return refuse(StatusCode::NOT_FOUND, Refusal::Unreachable);
    }
    if req.method() != http::Method::CONNECT {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, Refusal::Unreachable);
    }
    let Some(port) = req.uri().port_u16() else {
        return refuse(StatusCode::BAD_REQUEST, Refusal::Unreachable);
    };
    let tcp = match upstream.dial(port).await {
        Ok(s) => s,
        Err(why) => {
            tracing::debug!(port, why = why.code(), "refused stream");
            let status = match why {
                Refusal::NotAllowed => StatusCode::FORBIDDEN,
                Refusal::Loop => StatusCode::LOOP_DETECTED,
                Refusal::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::BAD_GATEWAY,
            };
            return refuse(status, why);
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let stall = upstream.write_timeout;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(stream) => {
                let mut stream = TokioIo::new(stream);
                let mut tcp = tcp;
                let _ = super::copy::bidirectional_with_stall(&mut stream, &mut tcp, stall).await;
            }
            Err(e) => tracing::debug!(port, error = %e, "stream upgrade failed"),
        }
    });
    Response::new(Either::Left(Empty::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::protocol::Family;

    fn port(port: u16, addresses: usize) -> ListeningPort {
        ListeningPort {
            port,
            loopback_only: false,
            reachable: true,
            families: vec![Family::Ipv6],
            addresses: (0..addresses)
                .map(|i| IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16)))
                .collect(),
            process: None,
            command: None,
        }
    }

    fn parse(body: &[u8]) -> super::super::PortsReply {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn the_edges_own_port_over_loopback_is_never_dialed() {
        let at = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let up = |edge: Option<&str>| Upstream {
            edge: edge.map(at),
            ..Upstream::default()
        };
        let cases = [
            // berth dev: the agent reaches the edge on 127.0.0.1:8443.
            (Some("127.0.0.1:8443"), "127.0.0.1:8443", true),
            (Some("127.0.0.1:8443"), "[::1]:8443", true),
            (Some("[::1]:8443"), "127.0.0.1:8443", true),
            (Some("127.0.0.1:8443"), "127.0.0.1:3000", false),
            // A remote edge on the same port number is another machine.
            (Some("203.0.113.7:443"), "127.0.0.1:443", false),
            (Some("127.0.0.1:443"), "10.0.0.5:443", false),
            (None, "127.0.0.1:8443", false),
        ];
        for (edge, target, want) in cases {
            assert_eq!(
                up(edge).dials_the_edge(at(target)),
                want,
                "edge {edge:?}, target {target}"
            );
        }
    }

    #[tokio::test]
    async fn dialing_the_edge_is_refused_as_a_loop() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = listener.local_addr().unwrap();
        let up = Upstream {
            edge: Some(edge),
            ..Upstream::default()
        };
        assert_eq!(up.dial(edge.port()).await.unwrap_err(), Refusal::Loop);
        let without = Upstream::default();
        assert!(without.dial(edge.port()).await.is_ok());
    }

    #[test]
    fn ports_reply_respects_allow_ports() {
        let ports = [port(22, 1), port(3000, 1), port(5432, 1)];
        let all = parse(&ports_reply(&ports, &Upstream::default()));
        assert_eq!(all.ports, ports);
        assert!(!all.truncated);
        let up = Upstream {
            allow_ports: Some([3000, 8080].into()),
            ..Upstream::default()
        };
        let some = parse(&ports_reply(&ports, &up));
        assert_eq!(some.ports, [port(3000, 1)]);
        assert!(!some.truncated);
        let empty = parse(&ports_reply(&[], &up));
        assert!(empty.ports.is_empty() && !empty.truncated);
    }

    #[test]
    fn ports_reply_leaves_out_hidden_and_unlisted_ports() {
        let ports = [
            port(22, 1),
            port(3000, 1),
            port(3500, 1),
            port(5432, 1),
            port(8443, 1),
        ];
        let up = Upstream {
            list_ports: Some((3000..=3999).chain([5432, 8443]).collect()),
            hide_ports: [8443].into(),
            ..Upstream::default()
        };
        let got = parse(&ports_reply(&ports, &up));
        assert_eq!(got.ports, [port(3000, 1), port(3500, 1), port(5432, 1)]);
        let hidden_only = Upstream {
            hide_ports: [22, 8443].into(),
            ..Upstream::default()
        };
        let got = parse(&ports_reply(&ports, &hidden_only));
        assert_eq!(got.ports, [port(3000, 1), port(3500, 1), port(5432, 1)]);
        assert!(
            up.allows(8443),
            "hidden from the list, not refused: --allow-ports decides that"
        );
    }

    #[test]
    fn ports_reply_is_bounded() {
        let many: Vec<_> = (1..=MAX_REPORTED_PORTS as u16 + 10)
            .map(|p| port(p, 1))
            .collect();
        let reply = parse(&ports_reply(&many, &Upstream::default()));
        assert_eq!(reply.ports.len(), MAX_REPORTED_PORTS);
        assert!(reply.truncated);
        // Ports bound to very many addresses: the count cap alone would not do.
        let fat: Vec<_> = (1..=2000).map(|p| port(p, 64)).collect();
        let body = ports_reply(&fat, &Upstream::default());
        assert!(body.len() <= MAX_PORTS_REPLY, "{}", body.len());
        let reply = parse(&body);
        assert!(reply.truncated && !reply.ports.is_empty());
        assert_eq!(reply.ports[0].port, 1);
    }
}
