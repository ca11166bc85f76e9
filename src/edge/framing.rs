//! Request framing between a client and an app: the checks that keep one
//! client request one app request (no smuggling, docs/security.md), as pure
//! functions with table tests.
//!
//! hyper parses the client's request (HTTP/1.1 or HTTP/2) and the pooled
//! client writes a fresh HTTP/1.1 request to the app, so the client's own
//! framing bytes (chunk sizes, `Transfer-Encoding`, line endings) never reach
//! the app. What is left to decide here: which request targets may be
//! forwarded at all, the one `Content-Length` the app sees, and whose fault a
//! failed exchange was.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri, Version};
use std::fmt;

/// Why a request cannot be forwarded to an app as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// `OPTIONS *` (asterisk-form): a question about the server as a whole.
    Asterisk,
    /// A path that does not start with `/` (an HTTP/2 `:path` such as `?x`).
    NotOriginForm,
    /// More than one `Host` header (RFC 9112 section 3.2: 400).
    ManyHosts,
    /// HTTP/2 `:authority` and `Host` name different hosts (RFC 9113
    /// section 8.3.1): the edge would route by one and the app might read
    /// the other.
    AuthorityMismatch,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::Asterisk => {
                "`OPTIONS *` asks about the server as a whole, and berth does not forward it \
                 to apps: send OPTIONS with a path (for example `OPTIONS /`)"
            }
            RequestError::NotOriginForm => {
                "the request target must be a path starting with `/` (or an absolute URL)"
            }
            RequestError::ManyHosts => "the request has more than one Host header: send one",
            RequestError::AuthorityMismatch => {
                "the :authority and Host headers name different hosts: send one host, or the \
                 same in both"
            }
        })
    }
}

/// Checks that a request names one host and a path the app can be asked
/// for. hyper has already turned an absolute-form target (`GET
/// https://host/path`) into a URI whose path starts with `/`, and the edge
/// routes by that URI's authority when there is one (HTTP/2 `:authority`,
/// HTTP/1.1 absolute-form), else by `Host`.
pub(crate) fn check_request(
    version: Version,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), RequestError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::ManyHosts);
    }
    if version == Version::HTTP_2 {
        if let (Some(authority), Some(host)) = (uri.authority(), host) {
            if !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
            {
                return Err(RequestError::AuthorityMismatch);
            }
        }
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if path == "*" {
        return Err(RequestError::Asterisk);
    }
    if *method == Method::CONNECT || path.starts_with('/') {
        // CONNECT carries an authority, not a path; the proxy refuses it
        // with its own message.
        return Ok(());
    }
    Err(RequestError::NotOriginForm)
}

/// Rewrites `Content-Length` to plain decimal digits (`003` and ` 3 ` become
/// `3`), so the app never has to agree with hyper on an unusual spelling.
/// hyper has already refused requests whose lengths disagree or do not parse;
/// anything that still does not parse is removed, and the pooled client then
/// frames the body from its actual size.
pub(crate) fn canonical_content_length(headers: &mut HeaderMap) {
    let parsed: Option<u64> = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok());
    headers.remove(header::CONTENT_LENGTH);
    if let Some(len) = parsed {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// An error reading the client's request body (a malformed chunk, a length
/// mismatch, a reset stream): the client's fault, answered with 400 rather
/// than blamed on the app.
#[derive(Debug)]
pub(crate) struct ClientBodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl ClientBodyError {
    /// Wraps the error the client's body stream gave.
    pub(crate) fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ClientBodyError(e.into())
    }
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // hyper's own text ("error reading a body from connection") keeps
        // the detail in its sources.
        write!(f, "the request body was malformed or cut short ({}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        f.write_str(
            "): send a body that matches its Content-Length, or well-formed chunked encoding",
        )
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// The client body error anywhere in `err`'s chain of sources: `Some` when a
/// failed exchange with the app was the client's doing, `None` when the
/// tunnel, the app or berth failed (the connector's error types tell those
/// apart).
pub(crate) fn client_fault<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ClientBodyError> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(client) = e.downcast_ref::<ClientBodyError>() {
            return Some(client);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        version: Version,
        method: &str,
        uri: &Uri,
        hosts: &[&str],
    ) -> Result<(), RequestError> {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        check_request(version, &method.parse().unwrap(), uri, &h)
    }

    /// What hyper builds from HTTP/2 pseudo-headers.
    fn h2(authority: &str, path: &str) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some(authority.parse().unwrap());
        parts.path_and_query = Some(path.parse().unwrap());
        Uri::from_parts(parts).unwrap()
    }

    #[test]
    fn only_paths_are_forwarded() {
        use Version as V;
        let ok: &[(V, &str, &str)] = &[
            (V::HTTP_11, "GET", "/"),
            (V::HTTP_11, "GET", "/a/b?c=d"),
            (V::HTTP_11, "GET", "//a"),
            (V::HTTP_11, "OPTIONS", "/"),
            (V::HTTP_11, "GET", "https://x.example/abs"),
            (V::HTTP_11, "CONNECT", "x.example:443"),
        ];
        for (v, m, u) in ok {
            let uri: Uri = u.parse().unwrap();
            assert_eq!(check(*v, m, &uri, &["x.example"]), Ok(()), "{m} {u}");
        }
        let asterisk: Uri = "*".parse().unwrap();
        for m in ["OPTIONS", "GET"] {
            assert_eq!(
                check(V::HTTP_11, m, &asterisk, &["x.example"]),
                Err(RequestError::Asterisk)
            );
            assert_eq!(
                check(V::HTTP_2, m, &h2("x.example", "*"), &[]),
                Err(RequestError::Asterisk)
            );
        }
        // `:path` `?x=1` (no slash; `foo` never gets this far, h2 refuses it).
        assert_eq!(
            check(V::HTTP_2, "GET", &h2("x.example", "?x=1"), &[]),
            Err(RequestError::NotOriginForm)
        );
        assert_eq!(
            check(V::HTTP_2, "GET", &h2("x.example", "//a"), &[]),
            Ok(())
        );
        assert!(RequestError::Asterisk.to_string().contains("OPTIONS /"));
    }

    #[test]
    fn one_host_per_request() {
        use Version as V;
        let path: Uri = "/".parse().unwrap();
        assert_eq!(check(V::HTTP_11, "GET", &path, &["a.example"]), Ok(()));
        assert_eq!(check(V::HTTP_11, "GET", &path, &[]), Ok(()));
        for hosts in [&["a.example", "b.example"][..], &["a.example", "a.example"]] {
            assert_eq!(
                check(V::HTTP_11, "GET", &path, hosts),
                Err(RequestError::ManyHosts),
                "{hosts:?}"
            );
            assert_eq!(
                check(V::HTTP_2, "GET", &h2("a.example", "/"), hosts),
                Err(RequestError::ManyHosts),
                "{hosts:?}"
            );
        }
        // HTTP/2: `:authority` alone, or `Host` alike (case aside), or apart.
        let a = h2("a.example:8443", "/");
        assert_eq!(check(V::HTTP_2, "GET", &a, &[]), Ok(()));
        assert_eq!(check(V::HTTP_2, "GET", &a, &["A.example:8443"]), Ok(()));
        for other in [
            "b.example:8443",
            "a.example",
            "a.example:443",
            "a.example:8443.",
        ] {
            assert_eq!(
                check(V::HTTP_2, "GET", &a, &[other]),
                Err(RequestError::AuthorityMismatch),
                "{other}"
            );
        }
        // HTTP/1.1 absolute-form: the target wins and Host is ignored (RFC
        // 9112 section 3.2.2); the edge routes by the target and sends the
        // app that host.
        let abs: Uri = "https://a.example/".parse().unwrap();
        assert_eq!(check(V::HTTP_11, "GET", &abs, &["b.example"]), Ok(()));
    }

    /// An error with a source, as hyper and hyper-util nest theirs.
    #[derive(Debug)]
    struct Wrapped(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    );
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_body_error_anywhere_in_the_chain_is_the_clients() {
        let body = || ClientBodyError::new(Wrapped("invalid chunk size", None));
        // legacy::Error -> hyper::Error (user body) -> ClientBodyError -> parse error
        let deep = Wrapped(
            "client error (SendRequest)",
            Some(Box::new(Wrapped(
                "error from user's Body stream",
                Some(Box::new(body())),
            ))),
        );
        let found = client_fault(&deep).expect("found in the chain");
        assert!(found.to_string().contains("invalid chunk size"), "{found}");
        // The detail hyper keeps in its sources is in the message.
        let nested = ClientBodyError::new(Wrapped(
            "error reading a body from connection",
            Some(Box::new(Wrapped("invalid chunk size line", None))),
        ));
        assert_eq!(
            nested.to_string(),
            "the request body was malformed or cut short (error reading a body from \
             connection: invalid chunk size line): send a body that matches its \
             Content-Length, or well-formed chunked encoding"
        );
        assert!(client_fault(&body()).is_some());
        // The app closing the connection, a tunnel failure: not the client's.
        let app = Wrapped(
            "client error (SendRequest)",
            Some(Box::new(Wrapped(
                "connection closed before message completed",
                None,
            ))),
        );
        assert!(client_fault(&app).is_none());
        assert!(client_fault(&std::io::Error::other("tunnel")).is_none());
    }

    #[test]
    fn content_length_is_rewritten_in_plain_digits() {
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["3"], Some("3")),
            (&["003"], Some("3")),
            (&[" 3 "], Some("3")),
            (&["0"], Some("0")),
            (&["18446744073709551615"], Some("18446744073709551615")),
            // Never reach the edge (hyper refuses them), but never forwarded.
            (&["+3"], None),
            (&["-1"], None),
            (&["3, 3"], None),
            (&["0x10"], None),
            (&["18446744073709551616"], None),
            (&[], None),
            // hyper only lets equal duplicates through; one is kept.
            (&["5", "5"], Some("5")),
        ];
        for (values, want) in cases {
            let mut h = HeaderMap::new();
            for v in *values {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_str(v).unwrap());
            }
            canonical_content_length(&mut h);
            let got: Vec<&str> = h
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{values:?}");
        }
    }
}
