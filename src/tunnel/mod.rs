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
//!
//! The agent's server answers a second kind of request: `GET` [`PORTS_PATH`]
//! returns the workspace's listening TCP ports as small JSON (`Content-Type:
//! application/json`), read from the kernel's tables (see
//! [`crate::agent::scan`]):
//!
//! ```json
//! {"ports": [{"port": 3000, "loopback_only": true, "reachable": true,
//!             "families": ["ipv4", "ipv6"], "addresses": ["127.0.0.1", "::1"]}],
//!  "truncated": false}
//! ```
//!
//! Ports the agent's `--allow-ports` excludes are left out, and at most
//! [`MAX_REPORTED_PORTS`] are listed in at most [`MAX_PORTS_REPLY`] bytes
//! (`truncated` says when some were left out), so the answer stays small. Like `CONNECT`, it says nothing of users or
//! shares: who may see the list is the edge's business.
//!
//! On shutdown an edge first sends `POST` [`MOVE_PATH`] on every tunnel: an
//! agent with another region to go to dials it and, once that tunnel is up,
//! ends this one gracefully, so no request sees the agent gone.
//!
//! Versioning: additive request kinds stay within [`UPGRADE_PROTOCOL`]
//! (`berth-tunnel/1`); an incompatible change bumps the upgrade token. An agent
//! older than `GET /ports` answers `405` (it only knew `CONNECT`), or `404` for
//! a path it does not know, and the edge reports that as
//! [`edge::PortsError::Unsupported`] rather than as an empty list.

pub mod agent;
pub mod copy;
pub mod edge;
pub mod stall;

use crate::agent::scan::ListeningPort;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The path agents upgrade on (on the control plane's or an edge's own host).
pub const CONNECT_PATH: &str = "/_berth/agent/connect";
/// The `Upgrade` token, versioned so both ends can refuse what they don't speak.
pub const UPGRADE_PROTOCOL: &str = "berth-tunnel/1";
/// The path of the agent's listening-ports request (`GET`, answered with JSON).
pub const PORTS_PATH: &str = "/ports";
/// The path of the edge's "I am shutting down: move" request (`POST`). The
/// agent answers `204` when it will dial another region and then retire
/// this tunnel gracefully (in-flight streams finish), or `409` when it has
/// nowhere else to go (pinned, or no other region); an older agent `404`.
pub const MOVE_PATH: &str = "/move";
/// Most ports one `GET /ports` answer lists (about 100 bytes each).
pub const MAX_REPORTED_PORTS: usize = 4096;
/// Largest `GET /ports` answer the edge reads.
pub const MAX_PORTS_REPLY: usize = 1024 * 1024;
/// The edge gives up on a `GET /ports` answer after this long.
pub const PORTS_TIMEOUT: Duration = Duration::from_secs(5);
/// Header on a refused CONNECT response: one of the [`Refusal`] codes.
pub const ERROR_HEADER: &str = "berth-error";

/// HTTP/2 flow-control windows on both ends (and on edge-to-edge relay
/// links). One stream must fill a long, fat path: its window must cover the
/// bandwidth-delay product, 120 ms x ~500 MB/s = 60 MB here (8 MiB held a
/// 120 ms download to 0.49x of plain TCP in the multi-region test; 64 MiB
/// reaches 0.90x). hyper's adaptive window stops at 16 MiB, so the windows
/// are static. They are credit, not buffers: an idle tunnel costs nothing
/// for them. What they do bound is what a reader that stops reading can
/// make the receiving end hold: 64 MiB for one stream (until the stall
/// timeout, `limits.client_write_timeout_secs`, drops that reader and its
/// stream), and [`CONNECTION_WINDOW`] for all streams of one tunnel.
pub const STREAM_WINDOW: u32 = 64 * 1024 * 1024;
/// The connection-level window, shared by all streams of one tunnel (and
/// of one relay link). Data a stalled stream holds unread counts against it
/// too, so with a connection window of one or two stream windows (it was
/// 128 MiB) three stalled downloads froze every port of the agent. It is
/// HTTP/2's largest, 2 GiB - 1: [`STALLS_TOLERATED`] (30) streams can hold
/// a full window unread while the rest still get a whole window, and it
/// takes 32 readers stalled at once to stop the tunnel; each stall ends
/// after the stall timeout. (A larger stream window would lower that count,
/// a smaller one the throughput of a long, fat path.) The cost is memory,
/// and only while readers stall: up to 64 MiB each at the receiving end,
/// 2 GiB per tunnel at the very most.
pub const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// How many streams can hold a full [`STREAM_WINDOW`] unread while one more
/// stream still gets a whole window of its own.
pub const STALLS_TOLERATED: u32 = CONNECTION_WINDOW / STREAM_WINDOW - 1;

// Checked when compiling: HTTP/2's largest window (RFC 9113 6.9.1); with
// STALLS_TOLERATED streams holding a full window unread another still gets
// a whole one; one stream still covers 120 ms at ~500 MB/s.
const _: () = {
    assert!((CONNECTION_WINDOW as u64) < 1 << 31);
    assert!(STALLS_TOLERATED >= 30);
    assert!(
        CONNECTION_WINDOW as u64 - STALLS_TOLERATED as u64 * STREAM_WINDOW as u64
            >= STREAM_WINDOW as u64
    );
    assert!(STREAM_WINDOW as u64 >= 60_000_000);
};
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
    /// The port is the edge's own listener, reached over loopback: the
    /// request would come back to the edge (an older edge shows it as
    /// unreachable).
    Loop,
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
            Refusal::Loop => "loop",
            Refusal::Unreachable => "unreachable",
        }
    }
    /// Parses a header value; unknown codes count as unreachable.
    pub fn from_code(s: &str) -> Refusal {
        match s {
            "refused" => Refusal::Refused,
            "timeout" => Refusal::Timeout,
            "not-allowed" => Refusal::NotAllowed,
            "loop" => Refusal::Loop,
            _ => Refusal::Unreachable,
        }
    }
}

/// The body of the answer to `GET` [`PORTS_PATH`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsReply {
    /// Listening ports the agent would dial, sorted by port.
    pub ports: Vec<ListeningPort>,
    /// Some ports were left out to stay within [`MAX_REPORTED_PORTS`] and
    /// [`MAX_PORTS_REPLY`].
    #[serde(default)]
    pub truncated: bool,
}
