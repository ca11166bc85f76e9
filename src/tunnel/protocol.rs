//! The tunnel protocol between an agent and an edge: its paths, the
//! upgrade token, the refusal codes, and the listening-ports answer. Pure
//! data; [`super::agent`] and [`super::edge`] speak it.
//!
//! The agent dials the edge over TLS and sends `GET` [`CONNECT_PATH`]
//! with `Upgrade:` [`UPGRADE_PROTOCOL`] and its agent token. After `101
//! Switching Protocols` the roles turn round: the edge runs an HTTP/2
//! *client* over the upgraded connection and the agent an HTTP/2 *server*.
//! Each upstream TCP connection is one `CONNECT 127.0.0.1:PORT` stream.
//!
//! A refused `CONNECT` carries a [`ERROR_HEADER`] naming why ([`Refusal`]),
//! so the edge can tell "nothing is listening" from "port not allowed".
//!
//! The agent's server answers a second kind of request: `GET` [`PORTS_PATH`]
//! returns the workspace's listening TCP ports as small JSON (`Content-Type:
//! application/json`, a [`PortsReply`]), read from the kernel's tables by the
//! agent's port scanner:
//!
//! ```json
//! {"ports": [{"port": 3000, "loopback_only": true, "reachable": true,
//!             "families": ["ipv4", "ipv6"], "addresses": ["127.0.0.1", "::1"]}],
//!  "truncated": false}
//! ```
//!
//! Ports the agent's `--allow-ports` excludes are left out, and at most
//! [`MAX_REPORTED_PORTS`] are listed in at most [`MAX_PORTS_REPLY`] bytes
//! (`truncated` says when some were left out), so the answer stays small.
//! Like `CONNECT`, it says nothing of users or shares: who may see the list
//! is the edge's business.
//!
//! On shutdown an edge first sends `POST` [`MOVE_PATH`] on every tunnel: an
//! agent with another region to go to dials it and, once that tunnel is up,
//! ends this one gracefully, so no request sees the agent gone.
//!
//! Versioning: additive request kinds stay within [`UPGRADE_PROTOCOL`]
//! (`berth-tunnel/1`); an incompatible change bumps the upgrade token. An agent
//! older than `GET /ports` answers `405` (it only knew `CONNECT`), or `404` for
//! a path it does not know, and the edge reports that as
//! [`PortsError::Unsupported`](super::edge::PortsError::Unsupported) rather
//! than as an empty list.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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
/// Header on a refused CONNECT response: one of the [`Refusal`] codes.
pub const ERROR_HEADER: &str = "berth-error";

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

/// An address family a port is listening on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// One listening port, merged over all its sockets and both tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListeningPort {
    pub port: u16,
    /// Every socket on the port is bound to a loopback address (127.0.0.0/8,
    /// `::1`): nothing outside the workspace can reach it directly.
    pub loopback_only: bool,
    /// The agent's upstream dial reaches the port: some socket is bound to one
    /// of the upstream hosts or to its family's wildcard. A socket bound only
    /// to another specific address (a LAN address, `127.0.0.2`) is not.
    pub reachable: bool,
    /// The families of the bound addresses, sorted (`"ipv4"`, `"ipv6"`); an
    /// IPv4-mapped address counts as IPv4.
    pub families: Vec<Family>,
    /// The bound addresses, sorted and deduplicated (IPv4-mapped ones as IPv4).
    pub addresses: Vec<IpAddr>,
    /// The listening process's name (`/proc/PID/comm`, e.g. `node`), where
    /// the agent may read it; absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// Its command line (`/proc/PID/cmdline`, at most 200 bytes), likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// Header on the agent's upgrade request naming which tunnel of a set this
/// is: `SET/INDEX`, SET a random 64-bit number in hex that the agent picks
/// for one edge (it keeps it while it redials that edge), INDEX in
/// `0..`[`MAX_TUNNELS`]. An agent opens `--tunnels N` connections to its
/// edge with one SET and indexes 0..N; the edge keeps them all and spreads
/// requests over them. A tunnel of another SET (or without the header, an
/// older agent) replaces the agent's tunnels as a reconnection does.
pub const TUNNEL_SET_HEADER: &str = "berth-tunnel-set";

/// Most tunnel connections one agent keeps to one edge (`--tunnels`).
pub const MAX_TUNNELS: u16 = 16;

/// Which tunnel of an agent's set a connection is ([`TUNNEL_SET_HEADER`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelSlot {
    /// The set, random per agent and edge.
    pub set: u64,
    /// Its place in the set, below [`MAX_TUNNELS`].
    pub index: u16,
}

impl TunnelSlot {
    /// The header value, `SET/INDEX` (`00c0ffee00c0ffee/1`).
    pub fn header_value(self) -> String {
        format!("{:016x}/{}", self.set, self.index)
    }

    /// Parses a header value; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<TunnelSlot, String> {
        let bad = || {
            format!(
                "{TUNNEL_SET_HEADER} must be SET/INDEX: 16 hex digits, then an index below {MAX_TUNNELS}"
            )
        };
        let (set, index) = value.split_once('/').ok_or_else(bad)?;
        if set.len() != 16 || !set.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        if index.is_empty() || index.len() > 2 || !index.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let set = u64::from_str_radix(set, 16).map_err(|_| bad())?;
        let index: u16 = index.parse().map_err(|_| bad())?;
        if index >= MAX_TUNNELS {
            return Err(bad());
        }
        Ok(TunnelSlot { set, index })
    }

    /// Whether a tunnel in slot `new` joins the agent's tunnels of slot
    /// `current` as one more of the same set (else it replaces them, as a
    /// reconnection): only when both name the same set.
    pub fn joins(current: Option<TunnelSlot>, new: Option<TunnelSlot>) -> bool {
        matches!((current, new), (Some(c), Some(n)) if c.set == n.set)
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_bad_ones_are_refused() {
        let s = TunnelSlot {
            set: 0x00c0_ffee_00c0_ffee,
            index: 15,
        };
        assert_eq!(s.header_value(), "00c0ffee00c0ffee/15");
        assert_eq!(TunnelSlot::parse(&s.header_value()), Ok(s));
        assert_eq!(
            TunnelSlot::parse("FFFFFFFFFFFFFFFF/0"),
            Ok(TunnelSlot {
                set: u64::MAX,
                index: 0
            })
        );
        for bad in [
            "",
            "/",
            "00c0ffee00c0ffee",
            "00c0ffee00c0ffee/",
            "00c0ffee00c0ffee/16",
            "00c0ffee00c0ffee/99",
            "00c0ffee00c0ffee/100",
            "00c0ffee00c0ffee/-1",
            "00c0ffee00c0ffee/+1",
            "00c0ffee00c0ffee/1/2",
            "00c0ffee00c0ffe/1",
            "00c0ffee00c0ffee0/1",
            "+0c0ffee00c0ffee/1",
            "0xc0ffee00c0ffee/1",
            "00c0ffee00c0ffeg/1",
            " 00c0ffee00c0ffee/1",
            "00c0ffee00c0ffee/1 ",
            "00c0ffee00c0ffée/1",
        ] {
            let err = TunnelSlot::parse(bad).unwrap_err();
            assert!(err.contains(TUNNEL_SET_HEADER), "{bad:?}: {err}");
        }
    }

    #[test]
    fn only_the_same_set_joins() {
        let slot = |set, index| Some(TunnelSlot { set, index });
        assert!(TunnelSlot::joins(slot(7, 0), slot(7, 1)));
        assert!(
            TunnelSlot::joins(slot(7, 1), slot(7, 1)),
            "a redial of one slot"
        );
        assert!(
            !TunnelSlot::joins(slot(7, 0), slot(8, 1)),
            "another set replaces"
        );
        assert!(
            !TunnelSlot::joins(None, slot(7, 0)),
            "an older agent's tunnel"
        );
        assert!(
            !TunnelSlot::joins(slot(7, 0), None),
            "an older agent replaces"
        );
        assert!(!TunnelSlot::joins(None, None));
    }
}
