//! berth: a dev-URL edge proxy.
//!
//! A developer's web server inside a workspace becomes reachable at its own
//! HTTPS subdomain (`https://3000--main--api--alice.apps.example.com`). The
//! workspace's **agent** dials out to an **edge**, which terminates TLS, reads
//! the host name, checks who may see the port, and forwards the request through
//! the agent's tunnel. The **control** plane holds users, workspaces and agents.
//!
//! Vocabulary: an *app host* is one DNS label under an edge's wildcard; a
//! *target* is what it names (port or app, agent, workspace, user); the
//! *catalog* is the edge's in-memory copy of what exists.

pub mod agent;
pub mod auth;
pub mod catalog;
pub mod client;
pub mod config;
pub mod control;
pub mod edge;
pub mod host;
pub mod roles;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tunnel;

/// What `berth --version` prints after the name: the package version, the
/// commit built from (`-dirty` if the sources differed, `unknown` without
/// git) and the newest schema (database migration) this binary knows, e.g.
/// `0.1.0 (commit 1a2b3c4, schema 10)`. Made by `build.rs`.
pub const LONG_VERSION: &str = env!("BERTH_LONG_VERSION");
