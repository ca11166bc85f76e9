//! DNS-01 providers: how the `_acme-challenge` TXT records get published,
//! and the check that they are visible before the CA is asked to look.
//!
//! * [`Exec`]: the operator's script, run as `command present|cleanup FQDN
//!   VALUE` (lego's exec convention: FQDN ends with a dot).
//! * [`Rfc2136`]: a dynamic update (RFC 2136) signed with TSIG, sent over TCP
//!   to the zone's primary (BIND, Knot, PowerDNS and many managed services).
//!
//! [`wait_visible`] asks the given servers directly (no recursive resolver,
//! so no negative caching) until every value is in the TXT set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use hickory_proto::dnssec::rdata::tsig::TsigAlgorithm;
use hickory_proto::dnssec::tsig::TSigner;
use hickory_proto::op::{update_message, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{Name, RData, RecordSet, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::config::DnsSettings;

/// How long one DNS exchange or one hook run may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the operator's hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// TTL of the TXT records berth publishes.
const TXT_TTL: u32 = 60;

/// A DNS-01 problem, with what failed and what to check.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsError(pub String);

/// Publishes and removes `_acme-challenge` TXT records.
pub trait DnsProvider: Send + Sync {
    /// Adds `value` to the TXT set at `fqdn` (other values stay: the base
    /// name and the wildcard share one record name).
    fn present<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>>;
    /// Removes `value` from the TXT set at `fqdn`.
    fn cleanup<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>>;
    /// Where to confirm the record when no resolvers are configured; `None`:
    /// the zone's authoritative servers ([`authoritative_servers`]).
    fn default_check_servers(&self) -> Option<Vec<SocketAddr>>;
}

/// Builds the provider the configuration names.
pub fn provider(settings: &DnsSettings) -> Result<Box<dyn DnsProvider>, DnsError> {
    Ok(match settings {
        DnsSettings::Exec { command } => Box::new(Exec {
            command: command.clone(),
        }),
        DnsSettings::Rfc2136 {
            server,
            zone,
            key_name,
            algorithm,
            secret,
        } => {
            use base64::Engine;
            let key = base64::engine::general_purpose::STANDARD
                .decode(secret.expose())
                .map_err(|e| {
                    DnsError(format!("tls.acme.dns: the TSIG secret is not base64: {e}"))
                })?;
            let algorithm = match algorithm.as_str() {
                "hmac-sha256" => TsigAlgorithm::HmacSha256,
                "hmac-sha384" => TsigAlgorithm::HmacSha384,
                "hmac-sha512" => TsigAlgorithm::HmacSha512,
                other => {
                    return Err(DnsError(format!(
                        "tls.acme.dns.tsig_algorithm: {other:?} is not supported"
                    )))
                }
            };
            let key_name_dns = Name::from_ascii(key_name)
                .map_err(|e| DnsError(format!("tls.acme.dns.tsig_key_name: {key_name:?}: {e}")))?;
            let signer = TSigner::new(key, algorithm, key_name_dns, 300)
                .map_err(|e| DnsError(format!("cannot use TSIG key {key_name}: {e}")))?;
            let zone_name = Name::from_ascii(format!("{zone}."))
                .map_err(|e| DnsError(format!("tls.acme.dns.zone: {zone:?}: {e}")))?;
            Box::new(Rfc2136 {
                server: *server,
                zone: zone_name,
                key_name: key_name.clone(),
                signer,
            })
        }
    })
}

/// Runs the operator's script: `command present|cleanup FQDN VALUE`.
pub struct Exec {
    /// The script.
    pub command: PathBuf,
}

impl Exec {
    async fn run(&self, action: &str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let shown = self.command.display();
        let child = tokio::process::Command::new(&self.command)
            .arg(action)
            .arg(fqdn)
            .arg(value)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(HOOK_TIMEOUT, child)
            .await
            .map_err(|_| {
                DnsError(format!(
                    "DNS hook {shown} {action} {fqdn} did not finish within {}s",
                    HOOK_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                DnsError(format!(
                    "cannot run DNS hook {shown}: {e} (check tls.acme.dns.command: it must be an executable file)"
                ))
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(DnsError(format!(
                "DNS hook {shown} {action} {fqdn} failed ({}): {}",
                out.status,
                stderr.trim()
            )));
        }
        Ok(())
    }
}

impl DnsProvider for Exec {
    fn present<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.run("present", fqdn, value))
    }
    fn cleanup<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.run("cleanup", fqdn, value))
    }
    fn default_check_servers(&self) -> Option<Vec<SocketAddr>> {
        None
    }
}

/// RFC 2136 dynamic updates signed with TSIG.
pub struct Rfc2136 {
    server: SocketAddr,
    zone: Name,
    key_name: String,
    signer: TSigner,
}

impl Rfc2136 {
    async fn update(&self, fqdn: &str, value: &str, add: bool) -> Result<(), DnsError> {
        let name = Name::from_ascii(fqdn).map_err(|e| DnsError(format!("{fqdn:?}: {e}")))?;
        if !self.zone.zone_of(&name) {
            return Err(DnsError(format!(
                "{fqdn} is not inside zone {} (check tls.acme.dns.zone: it must contain the base domain and the wildcard)",
                self.zone
            )));
        }
        let mut rrset = RecordSet::with_ttl(name, RecordType::TXT, TXT_TTL);
        rrset.add_rdata(RData::TXT(TXT::new(vec![value.to_owned()])));
        let mut msg = if add {
            update_message::append(rrset, self.zone.clone(), false, false)
        } else {
            update_message::delete_by_rdata(rrset, self.zone.clone(), false)
        };
        msg.set_id(rand::random());
        let now = u32::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let verifier = msg
            .finalize(&self.signer, now)
            .map_err(|e| DnsError(format!("cannot sign the DNS update: {e}")))?;
        let bytes = msg
            .to_vec()
            .map_err(|e| DnsError(format!("cannot encode the DNS update: {e}")))?;
        let answer = tcp_exchange(self.server, &bytes).await?;
        let resp = match verifier {
            Some(mut verify) => verify(&answer)
                .map_err(|e| {
                    DnsError(format!(
                        "the answer from {} to the update of {fqdn} failed TSIG verification: {e} (check tls.acme.dns.tsig_secret)",
                        self.server
                    ))
                })?
                .into_message(),
            None => Message::from_vec(&answer)
                .map_err(|e| DnsError(format!("malformed answer from {}: {e}", self.server)))?,
        };
        let code = resp.response_code();
        if code != ResponseCode::NoError {
            return Err(DnsError(format!(
                "DNS server {} refused the update of {fqdn}: {code} (check that TSIG key {} may update zone {})",
                self.server, self.key_name, self.zone
            )));
        }
        Ok(())
    }
}

impl DnsProvider for Rfc2136 {
    fn present<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.update(fqdn, value, true))
    }
    fn cleanup<'a>(&'a self, fqdn: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), DnsError>> {
        Box::pin(self.update(fqdn, value, false))
    }
    fn default_check_servers(&self) -> Option<Vec<SocketAddr>> {
        Some(vec![self.server])
    }
}

/// The name servers in `/etc/resolv.conf` (port 53).
pub fn system_resolvers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Sends one DNS message over TCP (two-byte length prefix) and reads the
/// answer.
async fn tcp_exchange(server: SocketAddr, msg: &[u8]) -> Result<Vec<u8>, DnsError> {
    let io = async {
        let mut s = TcpStream::connect(server).await?;
        let len =
            u16::try_from(msg.len()).map_err(|_| std::io::Error::other("DNS message too large"))?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(DNS_TIMEOUT, io).await {
        Ok(Ok(buf)) => Ok(buf),
        Ok(Err(e)) => Err(DnsError(format!("DNS server {server}: {e}"))),
        Err(_) => Err(DnsError(format!(
            "DNS server {server} did not answer within {}s",
            DNS_TIMEOUT.as_secs()
        ))),
    }
}

/// The authoritative servers (at `port`, 53 in real life) of the zone that
/// holds `fqdn`: asks `via` (recursive resolvers) for the NS records of
/// `fqdn`, then of each parent, and for the addresses of the servers named.
pub async fn authoritative_servers(
    fqdn: &str,
    via: &[SocketAddr],
    port: u16,
) -> Result<Vec<SocketAddr>, DnsError> {
    let Some(&resolver) = via.first() else {
        return Err(DnsError(
            "no resolver in /etc/resolv.conf to find the zone's name servers with: set tls.acme.dns.resolvers".into(),
        ));
    };
    let mut name = fqdn.trim_end_matches('.');
    loop {
        let answer = query(resolver, &format!("{name}."), RecordType::NS).await?;
        let hosts: Vec<String> = answer
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::NS(ns) => Some(ns.0.to_ascii()),
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            let mut out = Vec::new();
            for host in &hosts {
                for rtype in [RecordType::A, RecordType::AAAA] {
                    let answer = query(resolver, host, rtype).await?;
                    out.extend(answer.answers().iter().filter_map(|r| match r.data() {
                        RData::A(a) => Some(SocketAddr::new(a.0.into(), port)),
                        RData::AAAA(a) => Some(SocketAddr::new(a.0.into(), port)),
                        _ => None,
                    }));
                }
            }
            if out.is_empty() {
                return Err(DnsError(format!(
                    "the name servers of {name} ({}) have no addresses at {resolver}: set tls.acme.dns.resolvers",
                    hosts.join(", ")
                )));
            }
            return Ok(out);
        }
        match name.split_once('.') {
            Some((_, parent)) if parent.contains('.') => name = parent,
            _ => {
                return Err(DnsError(format!(
                    "no zone with NS records found above {fqdn} at {resolver}: set tls.acme.dns.resolvers"
                )))
            }
        }
    }
}

/// The TXT strings at `fqdn` according to `server`.
pub async fn query_txt(server: SocketAddr, fqdn: &str) -> Result<Vec<String>, DnsError> {
    let resp = query(server, fqdn, RecordType::TXT).await?;
    Ok(resp
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::TXT(txt) => Some(
                txt.txt_data()
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect())
}

/// One query to `server` (UDP, then TCP if the answer was truncated).
async fn query(server: SocketAddr, fqdn: &str, rtype: RecordType) -> Result<Message, DnsError> {
    let name = Name::from_ascii(fqdn).map_err(|e| DnsError(format!("{fqdn:?}: {e}")))?;
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    let bytes = msg
        .to_vec()
        .map_err(|e| DnsError(format!("cannot encode a DNS query: {e}")))?;
    let udp = async {
        let bind: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind).await?;
        sock.connect(server).await?;
        sock.send(&bytes).await?;
        let mut buf = vec![0u8; 4096];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    let answer = match tokio::time::timeout(DNS_TIMEOUT, udp).await {
        Ok(Ok(buf)) => buf,
        Ok(Err(e)) => return Err(DnsError(format!("DNS server {server}: {e}"))),
        Err(_) => return Err(DnsError(format!("DNS server {server} did not answer"))),
    };
    let mut resp = Message::from_vec(&answer)
        .map_err(|e| DnsError(format!("malformed answer from {server}: {e}")))?;
    if resp.truncated() {
        let answer = tcp_exchange(server, &bytes).await?;
        resp = Message::from_vec(&answer)
            .map_err(|e| DnsError(format!("malformed answer from {server}: {e}")))?;
    }
    Ok(resp)
}

/// Waits until every server reports every `(fqdn, value)` pair, polling each
/// second, for at most `timeout`.
pub async fn wait_visible(
    servers: &[SocketAddr],
    records: &[(String, String)],
    timeout: Duration,
) -> Result<(), DnsError> {
    if servers.is_empty() {
        return Err(DnsError(
            "no DNS server to check the TXT records on: set tls.acme.dns.resolvers".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    loop {
        let mut missing = None;
        'check: for server in servers {
            for (fqdn, value) in records {
                match query_txt(*server, fqdn).await {
                    Ok(found) if found.iter().any(|v| v == value) => {}
                    Ok(_) => {
                        missing = Some(format!(
                            "{server} does not show the TXT record at {fqdn} yet"
                        ));
                        break 'check;
                    }
                    Err(e) => {
                        missing = Some(e.0);
                        break 'check;
                    }
                }
            }
        }
        let Some(why) = missing else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            return Err(DnsError(format!(
                "the TXT records did not become visible within {}s: {why} (raise tls.acme.dns.propagation_timeout_secs, or check tls.acme.dns.resolvers)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_hook_is_named_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook");
        std::fs::write(
            &script,
            "#!/bin/sh\necho \"zone locked: $1 $2\" >&2\nexit 3\n",
        )
        .unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let hook = Exec {
            command: script.clone(),
        };
        let msg = hook
            .present("_acme-challenge.a.test.", "v")
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&*script.to_string_lossy()), "{msg}");
        assert!(
            msg.contains("zone locked: present _acme-challenge.a.test."),
            "{msg}"
        );
        let missing = Exec {
            command: dir.path().join("nope"),
        };
        let msg = missing.cleanup("x.", "v").await.unwrap_err().to_string();
        assert!(msg.contains("tls.acme.dns.command"), "{msg}");
    }

    #[tokio::test]
    async fn rfc2136_refuses_names_outside_its_zone() {
        use base64::Engine;
        let p = provider(&DnsSettings::Rfc2136 {
            server: "127.0.0.1:1".parse().unwrap(),
            zone: "apps.test".into(),
            key_name: "k".into(),
            algorithm: "hmac-sha256".into(),
            secret: crate::secret::Secret::new(
                base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
            ),
        })
        .unwrap();
        let msg = p
            .present("_acme-challenge.other.test.", "v")
            .await
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tls.acme.dns.zone"), "{msg}");
    }
}
