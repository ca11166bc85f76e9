//! Regions as agents learn them (SPEC §6): the candidates an agent may
//! dial, sent by the control plane's edge in the tunnel's `101` answer
//! ([`REGIONS_HEADER`]) and by `GET` [`AGENT_REGIONS`]. The edge writes the
//! header (`edge`), the agent reads it (`agent::regions`), control lists the
//! healthy regions (`control::regions`).

use serde::{Deserialize, Serialize};

/// `GET` the healthy regions as JSON [`Candidate`]s, with an agent token
/// (under [`API_ROOT`](super::API_ROOT)).
pub const AGENT_REGIONS: &str = "/agent/regions";

/// A place to dial.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Candidate {
    /// The region's name; `control` for the control plane's own edge.
    pub name: String,
    /// `https://host[:port]`
    pub url: String,
}

/// The name the control plane's own edge goes by.
pub const CONTROL: &str = "control";

/// The header on the tunnel's `101` answer that lists the healthy regions
/// (`name=url, name=url`), so an agent learns them with no extra request.
pub const REGIONS_HEADER: &str = "berth-regions";

/// Formats [`REGIONS_HEADER`].
pub fn to_header(regions: &[Candidate]) -> String {
    regions
        .iter()
        .map(|c| format!("{}={}", c.name, c.url))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses [`REGIONS_HEADER`]; entries that are not `name=https://...` are skipped.
pub fn from_header(value: &str) -> Vec<Candidate> {
    value
        .split(',')
        .filter_map(|e| {
            let (name, url) = e.trim().split_once('=')?;
            (!name.is_empty() && https_host_port(url).is_some()).then(|| Candidate {
                name: name.to_owned(),
                url: url.to_owned(),
            })
        })
        .collect()
}

/// Splits `https://host[:port][/]` into host and port (443 when none is
/// given); `None` for anything else. Candidates' URLs must pass it.
pub fn https_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return None;
    }
    let uri: http::uri::Authority = authority.parse().ok()?;
    let host = uri
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let has_port = authority
        .rsplit_once(']')
        .map_or(authority, |(_, rest)| rest)
        .contains(':');
    let port = match (has_port, uri.port_u16()) {
        (false, _) => 443,
        (true, Some(p)) if p > 0 => p,
        (true, _) => return None,
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `name` at `https://{name}.example.com`.
    pub(crate) fn c(name: &str) -> Candidate {
        Candidate {
            name: name.into(),
            url: format!("https://{name}.example.com"),
        }
    }

    #[test]
    fn the_header_round_trips_and_skips_junk() {
        let list = vec![c("eu"), c("us")];
        assert_eq!(from_header(&to_header(&list)), list);
        assert_eq!(from_header(""), vec![]);
        assert_eq!(
            from_header("eu=https://eu.example.com, bad, x=http://x, =https://y, us=https://us.example.com:8443"),
            vec![
                c("eu"),
                Candidate {
                    name: "us".into(),
                    url: "https://us.example.com:8443".into()
                }
            ]
        );
    }
}
