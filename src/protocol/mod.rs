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

/// Header on an edge's answer to an agent's tunnel upgrade: what the agent
/// serves, `OWNER/WORKSPACE/AGENT HOST`, where HOST is the app host with
/// `{port}` to fill in (e.g. `{port}--main--api--alice.apps.example.com`),
/// so the agent can log which workspace and URLs it now serves.
pub const SERVING_HEADER: &str = "berth-serving";

/// The [`SERVING_HEADER`] value.
pub fn serving(owner: &str, workspace: &str, agent: &str, host_template: &str) -> String {
    format!("{owner}/{workspace}/{agent} {host_template}")
}
