//! The agent <-> edge tunnel.
//!
//! The agent dials the edge over TLS and sends `GET /_berth/agent/connect`
//! with `Upgrade: berth-tunnel/1` and its agent token. After `101 Switching
//! Protocols` the roles turn round: the edge runs an HTTP/2 *client* over the
//! upgraded connection and the agent an HTTP/2 *server*. Each upstream TCP
//! connection is one `CONNECT 127.0.0.1:PORT` stream, so multiplexing,
//! per-stream flow control and PING keep-alives all come from `h2`.
//!
//! A refused `CONNECT` carries a [`ERROR_HEADER`] naming why, so the edge can
//! tell "nothing is listening" from "port not allowed".

pub mod agent;
pub mod edge;

use std::time::Duration;

/// The path agents upgrade on (on the control plane's or an edge's own host).
pub const CONNECT_PATH: &str = "/_berth/agent/connect";
/// The `Upgrade` token, versioned so both ends can refuse what they don't speak.
pub const UPGRADE_PROTOCOL: &str = "berth-tunnel/1";
/// Header on a refused CONNECT response: one of the [`Refusal`] codes.
pub const ERROR_HEADER: &str = "berth-error";

/// HTTP/2 flow-control windows on both ends. Large static windows let one
/// stream fill a long, fat path (120 ms x 1 Gbit/s is ~15 MB); windows are
/// credit, not buffers, so an idle tunnel costs nothing for them.
pub const STREAM_WINDOW: u32 = 8 * 1024 * 1024;
/// The connection-level window, shared by all streams of one tunnel.
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// Largest HTTP/2 frame either side sends.
pub const MAX_FRAME: u32 = 256 * 1024;
/// The edge pings an agent this often...
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// ...and drops it when a ping goes unanswered this long (dead within ~10 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent pings the edge less often; it only needs to notice a dead edge.
pub const AGENT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// Why an agent refused to open a stream to a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing is listening on the port.
    Refused,
    /// The dial did not finish within the agent's connect timeout.
    Timeout,
    /// The agent's `--allow-ports` excludes the port.
    NotAllowed,
    /// Any other dial failure.
    Unreachable,
}

impl Refusal {
    /// The header value.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Refused => "refused",
            Refusal::Timeout => "timeout",
            Refusal::NotAllowed => "not-allowed",
            Refusal::Unreachable => "unreachable",
        }
    }
    /// Parses a header value; unknown codes count as unreachable.
    pub fn from_code(s: &str) -> Refusal {
        match s {
            "refused" => Refusal::Refused,
            "timeout" => Refusal::Timeout,
            "not-allowed" => Refusal::NotAllowed,
            _ => Refusal::Unreachable,
        }
    }
}
