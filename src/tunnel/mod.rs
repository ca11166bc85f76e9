//! The agent <-> edge tunnel: HTTP/2 over an upgraded HTTP/1.1 connection,
//! one `CONNECT` stream per upstream TCP connection, so multiplexing,
//! per-stream flow control and PING keep-alives all come from `h2`.
//!
//! [`protocol`] holds what goes over the wire (paths, refusal codes, the
//! listening-ports answer); [`agent`] and [`edge`] are the two ends;
//! [`copy`] moves bytes between two streams. This module owns the
//! tunnel's transport settings (windows, frames, pings) and timeouts.

pub mod agent;
pub(crate) mod copy;
pub mod edge;
pub mod protocol;

pub use protocol::{
    ListeningPort, PortsReply, Refusal, CONNECT_PATH, ERROR_HEADER, MAX_PORTS_REPLY,
    MAX_REPORTED_PORTS, MOVE_PATH, PORTS_PATH, UPGRADE_PROTOCOL,
};

use std::time::Duration;

/// The edge gives up on a `GET /ports` answer after this long.
pub const PORTS_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 flow-control windows on both ends (and on edge-to-edge relay
/// links). One stream must fill a long, fat path: its window must cover the
/// bandwidth-delay product, 120 ms x ~500 MB/s = 60 MB here (8 MiB held a
/// 120 ms download to 0.49x of plain TCP in the multi-region test; 64 MiB
/// reaches 0.90x). hyper's adaptive window stops at 16 MiB, so the windows
/// are static. They are credit, not buffers: an idle tunnel costs nothing
/// for them. What they do bound is what a reader that stops reading can
/// make the receiving end hold: 64 MiB for one stream, and
/// [`CONNECTION_WINDOW`] for all streams of one tunnel together.
pub const STREAM_WINDOW: u32 = 64 * 1024 * 1024;
/// The connection-level window, shared by all streams of one tunnel: the
/// most one tunnel can make the edge (or the agent) buffer.
pub const CONNECTION_WINDOW: u32 = 128 * 1024 * 1024;
/// Largest HTTP/2 frame either side sends.
pub const MAX_FRAME: u32 = 256 * 1024;
/// The edge pings an agent this often...
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// ...and drops it when a ping goes unanswered this long (dead within ~10 s).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent pings the edge less often; it only needs to notice a dead edge.
pub const AGENT_PING_INTERVAL: Duration = Duration::from_secs(10);
