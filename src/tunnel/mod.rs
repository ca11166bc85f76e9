//! The agent <-> edge tunnel: HTTP/2 over an upgraded HTTP/1.1 connection,
//! one `CONNECT` stream per upstream TCP connection, so multiplexing,
//! per-stream flow control and PING keep-alives all come from `h2`.
//!
//! [`protocol`] holds what goes over the wire (paths, refusal codes, the
//! listening-ports answer); [`agent`] and [`edge`] are the two ends;
//! [`copy`] moves bytes between two streams and [`stall`] notices a reader
//! that stopped taking them. This module owns the tunnel's transport
//! settings (windows, frames, pings) and timeouts.

pub mod agent;
pub mod copy;
pub mod edge;
pub mod protocol;
pub mod stall;

pub use protocol::{
    ListeningPort, PortsReply, Refusal, TunnelSlot, CONNECT_PATH, ERROR_HEADER, MAX_PORTS_REPLY,
    MAX_REPORTED_PORTS, MAX_TUNNELS, MOVE_PATH, PORTS_PATH, TUNNEL_SET_HEADER, UPGRADE_PROTOCOL,
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
