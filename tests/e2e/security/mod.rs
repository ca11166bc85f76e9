//! Attacks on berth's boundaries (between app hosts, other users and the
//! control host) and on its resources, one file per topic, each reproduced
//! and shown to fail or to stay bounded.

mod bootstrap;
mod bruteforce;
mod cookies;
mod csrf;
mod dev_process;
mod github_signin;
mod inspector;
mod jwt;
mod public_rate;
pub(crate) mod revocation;
mod smuggling;
mod stall;
mod wake;
