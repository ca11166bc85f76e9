//! Request loops: an app host whose port leads back to berth.
//!
//! The agent dials ports on its own machine. When such a port is an edge's
//! own listener (`berth dev` on 127.0.0.1:8443 and its agent asked for port
//! 8443), or a proxy in front of it, a request for a publicly shared app
//! comes back to the edge as a new request, which it forwards again, and so
//! on: one request took 11,156 descriptors and 290 MB in 2.2 s. So every
//! request the edge forwards carries its mark in [`HOP_HEADER`] (a random
//! id per edge process, appended to the marks already there), and a request
//! that arrives with this edge's mark [`LOOP_LIMIT`] times is answered
//! `508 Loop Detected`. A mark or two is legitimate: an app may proxy to
//! another app on the same edge, passing the headers on. (The agent also
//! refuses to dial the very port it reaches the edge on over loopback: see
//! [`crate::tunnel::agent::Upstream::dials_the_edge`].)

use super::pages::ErrorPage;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the marks of the edges a request went through.
pub const HOP_HEADER: HeaderName = HeaderName::from_static("berth-hop");

/// A request carrying this edge's mark this many times is a loop.
pub const LOOP_LIMIT: usize = 3;

/// This edge process's mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark(HeaderValue);

impl Mark {
    /// A fresh random mark (64 bits, hex).
    pub fn random() -> Self {
        Mark::from_id(&format!("{:016x}", rand::random::<u64>()))
    }

    /// The mark `id` (a token of letters and digits).
    pub fn from_id(id: &str) -> Self {
        Mark(HeaderValue::from_str(id).expect("a mark is a token"))
    }

    /// How many times `headers` carry this mark (in one or several
    /// [`HOP_HEADER`] lines, comma-separated).
    pub fn passes(&self, headers: &HeaderMap) -> usize {
        let me = self.0.as_bytes();
        headers
            .get_all(HOP_HEADER)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter(|m| m.trim_ascii() == me)
            .count()
    }

    /// Whether a request with `headers` has come round too often.
    pub fn is_loop(&self, headers: &HeaderMap) -> bool {
        self.passes(headers) >= LOOP_LIMIT
    }

    /// The 508 page for a request to `port` that has come round too often.
    pub fn check(&self, headers: &HeaderMap, port: u16) -> Result<(), ErrorPage> {
        if self.is_loop(headers) {
            tracing::warn!(
                port,
                passes = self.passes(headers),
                "request loop: the port leads back to this edge"
            );
            return Err(ErrorPage::Loop { port });
        }
        Ok(())
    }

    /// Adds this edge's mark to a request it forwards (after the marks of
    /// the edges it already went through).
    pub fn stamp(&self, headers: &mut HeaderMap) {
        headers.append(HOP_HEADER, self.0.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(HOP_HEADER, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn counts_only_its_own_mark_in_any_layout() {
        let me = Mark::from_id("aaaa");
        let cases: &[(&[&str], usize)] = &[
            (&[], 0),
            (&["bbbb"], 0),
            (&["aaaa"], 1),
            (&["aaaa, aaaa"], 2),
            (&["aaaa,aaaa,aaaa"], 3),
            (&["aaaa", "bbbb", "aaaa"], 2),
            (&["bbbb, aaaa", "aaaa"], 2),
            // Near misses are someone else's.
            (&["aaaaa", "aaa", "AAAA", "aaaa-x", ""], 0),
            (&[" aaaa ,\taaaa\t"], 2),
            (&[",,,"], 0),
        ];
        for (lines, want) in cases {
            assert_eq!(me.passes(&with(lines)), *want, "{lines:?}");
        }
    }

    #[test]
    fn a_loop_is_caught_after_a_few_passes_and_not_before() {
        let me = Mark::from_id("e1");
        let other = Mark::from_id("e2");
        let mut h = HeaderMap::new();
        for pass in 0..LOOP_LIMIT {
            assert!(!me.is_loop(&h), "pass {pass}");
            me.stamp(&mut h);
            other.stamp(&mut h);
        }
        assert!(me.is_loop(&h));
        assert!(other.is_loop(&h), "the other edge counts its own");
        assert!(!Mark::from_id("e3").is_loop(&h));
    }

    #[test]
    fn a_client_cannot_make_others_loop() {
        // A forged header only concerns the request that carries it.
        let me = Mark::random();
        let forged = with(&["0000000000000000, ffffffffffffffff"]);
        assert!(!me.is_loop(&forged));
        assert_ne!(Mark::random(), me, "marks are random per process");
    }
}
