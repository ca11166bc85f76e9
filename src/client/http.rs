//! The CLI's one HTTP helper: [`Session::call`], JSON in and out over
//! HTTP/1.1 on berth's own TLS client ([`crate::tls::client`]), so
//! `--ca-file` / `SSL_CERT_FILE` / the system store decide trust and
//! `*.localhost` names resolve to loopback.

use super::ClientError;
use crate::tls::client::{client_config, fetch};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Largest API answer read.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// How long one API call may take, connection and handshake included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the CLI talks to and as whom: what `berth login` saves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The control plane, e.g. `https://berth.localhost:8443`.
    pub url: String,
    /// An API token (`berth_api_...`); empty before login.
    pub token: String,
    /// The CA to trust instead of `SSL_CERT_FILE` or the system store.
    pub ca_file: Option<PathBuf>,
    /// The current workspace (`berth use`), used when no `--workspace` is given.
    pub workspace: Option<String>,
    /// The current agent of that workspace (`berth use WORKSPACE/AGENT`).
    pub agent: Option<String>,
}

/// The parts of a control-plane URL that a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or IP literal (brackets kept for IPv6).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, for the `Host` header.
    pub authority: String,
    /// Path prefix without a trailing `/` (usually empty).
    pub base_path: String,
}

/// Checks and splits a control-plane URL: `https://host[:port][/prefix]`.
pub(crate) fn parse_url(url: &str) -> Result<Endpoint, ClientError> {
    let bad = |why: &str| ClientError::Usage(format!("{url:?} is not a berth URL: {why}"));
    let uri: Uri = url
        .parse()
        .map_err(|_| bad("expected https://HOST[:PORT]"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(_) => return Err(bad("berth speaks HTTPS only; use https://")),
        None => return Err(bad("expected https://HOST[:PORT]")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "user names in the URL are not supported; use --username",
        ));
    }
    if uri.query().is_some() {
        return Err(bad("it has a query string"));
    }
    let host = authority.host().to_owned();
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Endpoint {
        host,
        port: authority.port_u16().unwrap_or(443),
        authority: authority.as_str().to_owned(),
        base_path: uri.path().trim_end_matches('/').to_owned(),
    })
}

impl Session {
    /// Sends `method path` (path under the URL, e.g. `/api/v1/me`) with an
    /// optional JSON body and the bearer token; returns the status and the
    /// JSON answer (`Null` for an empty body, a `String` for one that is
    /// not JSON). Only transport failures are errors here.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let ep = parse_url(&self.url)?;
        tokio::time::timeout(CALL_TIMEOUT, self.call_inner(&ep, method, path, body))
            .await
            .map_err(|_| {
                ClientError::Transport(format!(
                    "{} did not answer within {} s",
                    self.url,
                    CALL_TIMEOUT.as_secs()
                ))
            })?
    }

    async fn call_inner(
        &self,
        ep: &Endpoint,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let tls = client_config(self.ca_file.as_deref(), &[b"http/1.1"])
            .map_err(|e| ClientError::Usage(e.to_string()))?;

        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", ep.base_path))
            .header(http::header::HOST, &ep.authority)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
            );
        if !self.token.is_empty() {
            req = req.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).expect("a JSON value serializes"))
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Usage(format!("cannot build the request: {e}")))?;
        let (status, raw) = fetch(&ep.host, ep.port, tls, req, MAX_ANSWER)
            .await
            .map_err(|e| ClientError::Transport(format!("{}: {e}", self.url)))?;
        let value = if raw.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&raw)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()))
        };
        Ok((status, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ep = parse_url("https://berth.localhost:8443").unwrap();
        assert_eq!(ep.host, "berth.localhost");
        assert_eq!(ep.port, 8443);
        assert_eq!(ep.authority, "berth.localhost:8443");
        assert_eq!(ep.base_path, "");
        let ep = parse_url("https://berth.example.com/").unwrap();
        assert_eq!((ep.port, ep.base_path.as_str()), (443, ""));
        let ep = parse_url("https://[::1]:9/berth/").unwrap();
        assert_eq!(
            (ep.host.as_str(), ep.base_path.as_str()),
            ("[::1]", "/berth")
        );
        for bad in [
            "http://berth.localhost",
            "berth.localhost:8443",
            "",
            "https://a@b/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(ClientError::Usage(_))),
                "{bad}"
            );
        }
    }
}
