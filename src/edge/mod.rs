//! The edge: terminates TLS for app hosts and forwards requests through agent tunnels.
pub mod pages;
