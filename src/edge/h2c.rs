//! HTTP/2 to apps whose port's protocol is `h2c` (gRPC servers): the edge
//! speaks HTTP/2 with prior knowledge, without TLS, inside a tunnel stream
//! (the agent splices the stream's bytes to the app's socket).
//!
//! The client is hyper-util's pooled one over the same [`TunnelConnector`]
//! as HTTP/1.1, so its pool key is the URI authority that names the agent,
//! the tunnel (or relay) and the port: one HTTP/2 connection per (agent,
//! way, port) over one tunnel stream carries many requests at once, and is
//! never shared between agents or tunnels. Bodies stream both ways, with
//! their trailers (`grpc-status`), through the same body wrappers as
//! HTTP/1.1. A WebSocket to such a port still goes over HTTP/1.1.

use super::connector::TunnelConnector;
use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Version};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// The pooled HTTP/2-only client for `h2c` ports; `idle` closes a
/// connection (and its tunnel stream) nobody used for that long.
pub(crate) fn client(connector: TunnelConnector, idle: Duration) -> Client<TunnelConnector, Body> {
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle)
        .timer(TokioTimer::new())
        .http2_only(true)
        .set_host(false)
        .build(connector)
}

/// Whether the client said it takes trailers (`TE: trailers`), which gRPC
/// requires and HTTP/2 allows as the one `TE` value. Read before the
/// hop-by-hop headers are stripped.
pub(crate) fn asks_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// Makes a prepared upstream request an HTTP/2 one: its version, and
/// `TE: trailers` again when the client asked for trailers.
pub(crate) fn to_app(version: &mut Version, headers: &mut HeaderMap, trailers: bool) {
    *version = Version::HTTP_2;
    if trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn te(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::TE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn trailers_asked_only_by_the_te_token() {
        assert!(asks_trailers(&te(&["trailers"])));
        assert!(asks_trailers(&te(&["gzip, Trailers"])));
        assert!(asks_trailers(&te(&["deflate", "trailers;q=1"])));
        assert!(!asks_trailers(&te(&[])));
        assert!(!asks_trailers(&te(&["gzip"])));
        assert!(!asks_trailers(&te(&["trailersx", "x-trailers"])));
    }

    #[test]
    fn to_app_sets_http2_and_only_te_trailers() {
        let mut h = HeaderMap::new();
        let mut v = Version::HTTP_11;
        to_app(&mut v, &mut h, false);
        assert_eq!(v, Version::HTTP_2);
        assert!(h.get(header::TE).is_none());
        to_app(&mut v, &mut h, true);
        assert_eq!(
            h.get_all(header::TE).iter().collect::<Vec<_>>(),
            ["trailers"]
        );
    }
}
