//! End-to-end tests: real berth roles on loopback port 0, real TLS, real
//! tunnels, real HTTP clients. The only fakes are the apps in `support::apps`.

// The harness shares its helpers between its own modules with `pub`;
// the unreachable_pub lint is for the library's modules.
#![allow(unreachable_pub)]

mod support;

mod access;
mod acme;
mod activity;
mod agents;
mod audience;
mod cli;
mod client;
mod deadagent;
mod error_pages;
mod github;
mod grpc;
mod identity;
mod inspect;
mod lifecycle;
mod limits;
mod multiregion;
mod oidc;
mod onboarding;
mod port_forward;
mod ports;
mod postgres;
mod program_links;
mod regions;
mod security;
mod sharing;
mod signin;
mod streaming;
mod tunnels;
mod wake;
