//! `berth port-forward`'s wire format (CLI <-> edge): a raw TCP stream in
//! an HTTP/1.1 upgrade on the port's app host. See `docs/contract.md`.

/// The `Upgrade` token of a port-forward connection: `GET /` with
/// `Connection: upgrade`, `Upgrade: berth-tcp` and an API token; the edge
/// answers `101` and the connection carries the port's bytes both ways.
pub const UPGRADE: &str = "berth-tcp";

/// Request header (any value) that asks only whether the forward would be
/// let through: `204` when it would, the same error answers otherwise.
pub const PROBE_HEADER: &str = "berth-tcp-probe";
