//! Wire formats that two roles share, so that neither imports the other:
//! each end takes the same types and constants from here. Pure data, no I/O.
//!
//! The tunnel's own protocol (agent <-> edge) lives with the tunnel, in
//! [`crate::tunnel::protocol`], since only the tunnel's two ends speak it.

pub mod edge_api;
pub mod inspect;
pub mod regions;

/// Where the control plane's HTTP API lives; the API paths in these modules
/// follow it.
pub const API_ROOT: &str = "/api/v1";
