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
//!
//! # Layout
//!
//! Four bands, each importing only from itself and the bands below; the
//! roles never import each other (`tests/architecture.rs` enforces it; the
//! module map and its reasons are in `docs/architecture.md`).
//!
//! 1. Vocabulary, pure:
//!    - [`host`]: app host names, wildcards, certificate names;
//!    - [`secret`]: strings that never print;
//!    - [`auth`]: tokens, passwords, cookies, the access decision;
//!    - [`catalog`]: the in-memory picture of what exists, and its changes;
//!    - [`config`]: the configuration's schema, layers and resolution;
//!    - [`html`]: escaping for the pages control and the edge write;
//!    - [`protocol`]: the wire formats two roles share.
//! 2. Infrastructure:
//!    - [`store`]: the database;
//!    - [`tls`]: certificates and TLS configurations;
//!    - [`telemetry`]: logs, metrics, the admin listener;
//!    - [`tunnel`]: the agent <-> edge tunnel and its protocol.
//! 3. Roles:
//!    - [`edge`]: serves app hosts and agent tunnels;
//!    - [`control`]: the HTTP API and sign-in;
//!    - [`agent`]: the workspace end of a tunnel;
//!    - [`client`]: the client CLI.
//! 4. Composition:
//!    - [`roles`]: the server kinds (`berth dev`, `control`, `edge`) built
//!      from the roles.
//!
//! The `berth` binary (`main.rs`, `cli.rs`) sits on top.

pub mod auth;
pub mod catalog;
pub mod config;
pub mod host;
pub mod html;
pub mod protocol;
pub mod secret;

pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tunnel;

pub mod agent;
pub mod client;
pub mod control;
pub mod edge;

pub mod roles;

/// What `berth --version` prints after the name: the package version, the
/// commit built from (`-dirty` if the sources differed, `unknown` without
/// git) and the newest schema (database migration) this binary knows, e.g.
/// `0.1.0 (commit 1a2b3c4, schema 10)`. Made by `build.rs`.
pub const LONG_VERSION: &str = env!("BERTH_LONG_VERSION");
