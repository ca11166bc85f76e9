//! The workspace's listening TCP ports, read from the kernel's tables
//! `/proc/net/tcp` and `/proc/net/tcp6` (no shelling out to `ss` or
//! `netstat`, which a workspace image may lack).
//!
//! Each table has a header line, then one line per socket:
//!
//! ```text
//!   sl  local_address rem_address   st tx_queue rx_queue tr tm->when ...
//!    0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 ...
//! ```
//!
//! Addresses are hex `ADDR:PORT`. The kernel prints the address as 32-bit
//! words in the host's byte order (one word for IPv4, four for IPv6), so on a
//! little-endian host `127.0.0.1` is `0100007F`; the port is plain hex. State
//! `0A` is `TCP_LISTEN`. The tables belong to the agent's network namespace,
//! which is the one its upstream dials go to.

use crate::tunnel::protocol::{Family, ListeningPort};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// The kernel's IPv4 table.
pub(crate) const PROC_NET_TCP: &str = "/proc/net/tcp";
/// The kernel's IPv6 table (absent when IPv6 is disabled).
pub(crate) const PROC_NET_TCP6: &str = "/proc/net/tcp6";
/// `TCP_LISTEN` in the tables' `st` column.
const LISTEN: &str = "0A";

/// One listening socket, as the table shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Listener {
    /// The bound address, as written: an IPv4-mapped IPv6 address
    /// (`::ffff:127.0.0.1`) stays IPv6 here; [`merge`] maps it to IPv4.
    pub addr: IpAddr,
    pub port: u16,
}

/// Parses one table (`v6`: the `tcp6` format) and keeps its listening
/// sockets. Lines that are not well-formed socket lines (the header, blank or
/// truncated lines, bad hex, the wrong address width) are skipped.
#[cfg(test)]
fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines().filter_map(|l| parse_line(l, v6)).collect()
}

#[cfg(test)]
fn parse_line(line: &str, v6: bool) -> Option<Listener> {
    parse_socket(line, v6).map(|(l, _)| l)
}

/// [`parse_line`] with the socket's inode (the tenth column; 0 when the
/// line is cut short before it), which names the process that holds it.
fn parse_socket(line: &str, v6: bool) -> Option<(Listener, u64)> {
    let listener = parse_listener(line, v6)?;
    let inode = line
        .split_whitespace()
        .nth(9)
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    Some((listener, inode))
}

fn parse_listener(line: &str, v6: bool) -> Option<Listener> {
    let mut fields = line.split_whitespace();
    let slot = fields.next()?;
    // The header's first column is `sl`; socket lines start `N:`.
    let slot = slot.strip_suffix(':')?;
    if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let local = fields.next()?;
    let _remote = fields.next()?;
    let state = fields.next()?;
    if !state.eq_ignore_ascii_case(LISTEN) {
        return None;
    }
    let (addr, port) = local.split_once(':')?;
    let port = hex_u32(port, 4)?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0)?;
    let addr = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut octets = [0u8; 16];
        for (i, chunk) in octets.chunks_exact_mut(4).enumerate() {
            let word = hex_u32(&addr[i * 8..i * 8 + 8], 8)?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        IpAddr::V4(Ipv4Addr::from(hex_u32(addr, 8)?.to_ne_bytes()))
    };
    Some(Listener { addr, port })
}

/// Exactly `width` hex digits (no sign, no prefix).
fn hex_u32(s: &str, width: usize) -> Option<u32> {
    if s.len() != width || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// `::ffff:a.b.c.d` is the IPv4 address it carries; anything else is itself.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether a dial to `host` reaches a socket bound to `bound`. A socket on
/// `::` also takes IPv4 unless it set `IPV6_V6ONLY`, which the table does not
/// show; Linux's default (`net.ipv6.bindv6only = 0`) is dual-stack, so it is
/// counted reachable from IPv4 hosts too.
fn reaches(host: IpAddr, bound: IpAddr) -> bool {
    let host = canonical(host);
    host == bound
        || match bound {
            IpAddr::V4(b) => b.is_unspecified() && host.is_ipv4(),
            IpAddr::V6(b) => b.is_unspecified(),
        }
}

/// Merges listeners by port, sorted by port; `hosts` are the upstream's dial
/// addresses, for [`ListeningPort::reachable`].
pub(crate) fn merge(
    listeners: impl IntoIterator<Item = Listener>,
    hosts: &[IpAddr],
) -> Vec<ListeningPort> {
    let mut by_port: BTreeMap<u16, BTreeSet<IpAddr>> = BTreeMap::new();
    for l in listeners {
        by_port.entry(l.port).or_default().insert(canonical(l.addr));
    }
    by_port
        .into_iter()
        .map(|(port, addrs)| {
            let families: BTreeSet<Family> = addrs
                .iter()
                .map(|a| match a {
                    IpAddr::V4(_) => Family::Ipv4,
                    IpAddr::V6(_) => Family::Ipv6,
                })
                .collect();
            ListeningPort {
                port,
                loopback_only: addrs.iter().all(IpAddr::is_loopback),
                reachable: addrs.iter().any(|b| hosts.iter().any(|h| reaches(*h, *b))),
                families: families.into_iter().collect(),
                addresses: addrs.into_iter().collect(),
                process: None,
                command: None,
            }
        })
        .collect()
}

/// Reads one table line by line (a busy host's table can be megabytes; only
/// its listeners are kept), with their inodes.
fn read_table(path: &Path, v6: bool) -> std::io::Result<Vec<(Listener, u64)>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut out = Vec::new();
    for line in file.lines() {
        if let Some(l) = parse_socket(&line?, v6) {
            out.push(l);
        }
    }
    Ok(out)
}

/// The listening TCP ports, with reachability for a dial to any of `hosts`
/// and the process that listens where `/proc` lets the agent see it.
/// A missing `tcp6` table (IPv6 disabled) is fine; a missing `tcp` table (not
/// Linux, no `/proc`) is an error. Blocking: call it off the async runtime.
pub(crate) fn listening_ports_for(hosts: &[IpAddr]) -> std::io::Result<Vec<ListeningPort>> {
    let mut sockets = read_table(Path::new(PROC_NET_TCP), false)?;
    match read_table(Path::new(PROC_NET_TCP6), true) {
        Ok(v6) => sockets.extend(v6),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut ports = merge(sockets.iter().map(|(l, _)| *l), hosts);
    let wanted: HashSet<u64> = sockets
        .iter()
        .map(|(_, i)| *i)
        .filter(|i| *i != 0)
        .collect();
    let owners = owners(Path::new("/proc"), &wanted);
    for p in &mut ports {
        let owner = sockets
            .iter()
            .filter(|(l, _)| l.port == p.port)
            .find_map(|(_, inode)| owners.get(inode));
        if let Some(o) = owner {
            p.process = Some(o.name.clone());
            p.command = o.command.clone();
        }
    }
    Ok(ports)
}

/// A process holding a listening socket.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owner {
    /// `/proc/PID/comm`, e.g. `node`.
    name: String,
    /// `/proc/PID/cmdline` with its NULs as spaces, at most
    /// [`MAX_COMMAND`] bytes; `None` when empty or unreadable.
    command: Option<String>,
}

/// The longest command line reported.
const MAX_COMMAND: usize = 200;

/// The inode of a `/proc/PID/fd/N` link target `socket:[INODE]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// `/proc/PID/cmdline` as one line: arguments joined by spaces, cut at
/// [`MAX_COMMAND`] bytes on a character boundary.
fn command_line(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let joined = text
        .split('\0')
        .filter(|a| !a.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        return None;
    }
    let mut end = joined.len().min(MAX_COMMAND);
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    Some(joined[..end].to_owned())
}

/// Which process holds each of the `wanted` socket inodes, looking through
/// every `proc/PID/fd/` this process may read (others' are skipped: their
/// ports are listed without a process). Stops once all are found.
fn owners(proc: &Path, wanted: &HashSet<u64>) -> HashMap<u64, Owner> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return found;
    };
    for entry in entries.flatten() {
        if found.len() == wanted.len() {
            break;
        }
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = proc.join(pid);
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        let mut mine = Vec::new();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target.to_str().and_then(socket_inode) {
                if wanted.contains(&inode) && !found.contains_key(&inode) {
                    mine.push(inode);
                }
            }
        }
        if mine.is_empty() {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let owner = Owner {
            name: comm.trim_end_matches('\n').to_owned(),
            command: std::fs::read(dir.join("cmdline"))
                .ok()
                .and_then(|raw| command_line(&raw)),
        };
        for inode in mine {
            found.insert(inode, owner.clone());
        }
    }
    found
}

/// The listening TCP ports, with reachability for the agent's default
/// upstream (127.0.0.1, then ::1). Blocking: call it off the async runtime.
#[cfg(test)]
fn listening_ports() -> std::io::Result<Vec<ListeningPort>> {
    listening_ports_for(&crate::tunnel::agent::DEFAULT_UPSTREAM_HOSTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::agent::DEFAULT_UPSTREAM_HOSTS;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }
    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }
    fn l(addr: IpAddr, port: u16) -> Listener {
        Listener { addr, port }
    }

    #[test]
    fn merges_by_port_and_judges_reachability() {
        let ports = merge(
            [
                l(v4("127.0.0.1"), 3000),
                l(v6("::1"), 3000),
                l(v4("0.0.0.0"), 22),
                l(v6("::"), 22),
                l(v4("127.0.0.1"), 3000), // SO_REUSEPORT twin
                l(v4("10.0.0.5"), 8080),
                l(v6("::ffff:127.0.0.1"), 5000),
                l(v4("127.0.0.2"), 6000),
                l(v6("::"), 7000),
                l(v6("fe80::1"), 9000),
                l(v4("10.0.0.5"), 9000),
                l(v4("0.0.0.0"), 9000),
            ],
            &DEFAULT_UPSTREAM_HOSTS,
        );
        let got: Vec<_> = ports
            .iter()
            .map(|p| (p.port, p.loopback_only, p.reachable, p.families.clone()))
            .collect();
        use Family::*;
        assert_eq!(
            got,
            vec![
                (22, false, true, vec![Ipv4, Ipv6]),
                (3000, true, true, vec![Ipv4, Ipv6]),
                (5000, true, true, vec![Ipv4]),
                (6000, true, false, vec![Ipv4]),
                (7000, false, true, vec![Ipv6]),
                (8080, false, false, vec![Ipv4]),
                (9000, false, true, vec![Ipv4, Ipv6]),
            ]
        );
        assert_eq!(ports[1].addresses, vec![v4("127.0.0.1"), v6("::1")]);
        assert_eq!(ports[2].addresses, vec![v4("127.0.0.1")]);
    }

    #[test]
    fn reachability_follows_the_upstream_hosts() {
        let listeners = [
            l(v4("0.0.0.0"), 1),
            l(v6("::"), 2),
            l(v6("::1"), 3),
            l(v4("127.0.0.1"), 4),
            l(v4("10.0.0.5"), 5),
        ];
        let only_v4 = merge(listeners, &[v4("127.0.0.1")]);
        let r: Vec<_> = only_v4.iter().map(|p| p.reachable).collect();
        assert_eq!(r, [true, true, false, true, false]);
        let only_v6 = merge(listeners, &[v6("::1")]);
        let r: Vec<_> = only_v6.iter().map(|p| p.reachable).collect();
        assert_eq!(r, [false, true, true, false, false]);
        let lan = merge(listeners, &[v4("10.0.0.5")]);
        let r: Vec<_> = lan.iter().map(|p| p.reachable).collect();
        assert_eq!(r, [true, true, false, false, true]);
        assert!(merge(listeners, &[]).iter().all(|p| !p.reachable));
    }

    #[test]
    fn json_shape() {
        let ports = merge([l(v4("127.0.0.1"), 3000)], &DEFAULT_UPSTREAM_HOSTS);
        let json = serde_json::to_value(&ports).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{
                "port": 3000,
                "loopback_only": true,
                "reachable": true,
                "families": ["ipv4"],
                "addresses": ["127.0.0.1"],
            }])
        );
        let back: Vec<ListeningPort> = serde_json::from_value(json).unwrap();
        assert_eq!(back, ports);
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "\n\n",
            ":",
            "0:",
            "0: :",
            "0: : : 0A",
            "0: 0100007F: 00000000:0000 0A",
            "0: :0BB8 00000000:0000 0A",
            "0: 0100007F:0BB8",
            "0: 0100007F:0BB8 00000000:0000",
            "0: 0100007F0BB8 00000000:0000 0A",
            "0: 0100007F:0BB8:0BB8 00000000:0000 0A",
            "0: \u{e9}\u{e9}\u{e9}\u{e9}:0BB8 00000000:0000 0A",
            "0: 0100007F:\u{e9}\u{e9} 00000000:0000 0A",
            "0: 000000000000000000000000010000\u{e9}:0BB8 00000000:0000 0A",
        ] {
            assert_eq!(parse_proc_net_tcp(text, false), vec![], "{text:?}");
            assert_eq!(parse_proc_net_tcp(text, true), vec![], "{text:?}");
        }
    }

    #[test]
    fn finds_a_real_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = listening_ports().unwrap();
        let found = ports
            .iter()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("port {port} not in {ports:?}"));
        assert!(found.reachable && found.loopback_only);
        assert!(found.families.contains(&Family::Ipv4));
        assert!(found.addresses.contains(&v4("127.0.0.1")));
        assert!(ports.windows(2).all(|w| w[0].port < w[1].port));
        drop(listener);
        let ports = listening_ports().unwrap();
        assert!(
            !ports
                .iter()
                .any(|p| p.port == port && p.addresses.contains(&v4("127.0.0.1"))),
            "port {port} still listening after close"
        );
    }

    #[test]
    fn socket_links_and_command_lines() {
        assert_eq!(socket_inode("socket:[48213]"), Some(48213));
        for bad in [
            "socket:[]",
            "socket:[x]",
            "pipe:[48213]",
            "/dev/null",
            "socket:48213",
            "socket:[1",
        ] {
            assert_eq!(socket_inode(bad), None, "{bad}");
        }
        assert_eq!(
            command_line(b"node\0server.js\0--port\x003000\0"),
            Some("node server.js --port 3000".into())
        );
        assert_eq!(command_line(b""), None, "a kernel thread");
        assert_eq!(command_line(b"\0\0"), None);
        let long = "é".repeat(150);
        let cut = command_line(long.as_bytes()).unwrap();
        assert!(
            cut.len() <= MAX_COMMAND && cut.chars().all(|c| c == 'é'),
            "{cut}"
        );
    }

    #[test]
    fn owners_are_found_through_fd_links() {
        let proc = tempfile::tempdir().unwrap();
        let mk = |pid: &str, comm: Option<&str>, cmdline: &[u8], links: &[&str]| {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            if let Some(c) = comm {
                std::fs::write(dir.join("comm"), format!("{c}\n")).unwrap();
            }
            std::fs::write(dir.join("cmdline"), cmdline).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, dir.join("fd").join(i.to_string())).unwrap();
            }
        };
        mk(
            "100",
            Some("node"),
            b"node\0vite\0",
            &["/dev/null", "socket:[11]", "pipe:[12]"],
        );
        mk(
            "200",
            Some("postgres"),
            b"",
            &["socket:[22]", "socket:[99]"],
        );
        mk("300", None, b"x", &["socket:[33]"]);
        std::fs::create_dir_all(proc.path().join("self-not-a-pid/fd")).unwrap();
        std::fs::create_dir_all(proc.path().join("400")).unwrap(); // fd unreadable
        let wanted: HashSet<u64> = [11, 22, 33, 44].into();
        let got = owners(proc.path(), &wanted);
        assert_eq!(
            got.get(&11),
            Some(&Owner {
                name: "node".into(),
                command: Some("node vite".into())
            })
        );
        assert_eq!(
            got.get(&22),
            Some(&Owner {
                name: "postgres".into(),
                command: None
            })
        );
        assert_eq!(got.get(&33), None, "no comm: not named");
        assert_eq!(got.get(&44), None);
        assert!(!got.contains_key(&99), "not asked for");
        assert!(owners(&proc.path().join("missing"), &wanted).is_empty());
    }

    #[test]
    fn this_process_is_named_for_its_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = listening_ports().unwrap();
        let p = ports.iter().find(|p| p.port == port).unwrap();
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(p.process.as_deref(), Some(comm.trim_end()));
        assert!(p.command.is_some());
    }

    #[test]
    fn inodes_are_read_from_the_tenth_column() {
        let line = "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48213 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_socket(line, false).map(|(_, i)| i), Some(48213));
        let short = "   0: 0100007F:0BB8 00000000:0000 0A";
        assert_eq!(parse_socket(short, false).map(|(_, i)| i), Some(0));
    }

    /// Samples as a little-endian Linux host writes them.
    #[cfg(target_endian = "little")]
    mod samples {
        use super::*;

        const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48213 1 0000000000000000 100 0 0 10 0                     
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20311 1 0000000000000000 100 0 0 10 0                     
   2: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 30122 1 0000000000000000 100 0 0 10 5                     
   3: 0500000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 51234 1 0000000000000000 100 0 0 10 0                     
   4: 3500007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 19002 1 0000000000000000 100 0 0 10 5                     
   5: 0100007F:0BB8 0100007F:D5A2 01 00000000:00000000 02:0009A3E5 00000000  1000        0 48990 2 0000000000000000 20 4 30 10 -1                    
   6: 0100007F:D5A2 0100007F:0BB8 01 00000000:00000000 02:0009A3E5 00000000  1000        0 48989 2 0000000000000000 20 4 30 10 -1                    
   7: 0500000A:0016 6400000A:C8F2 01 00000000:00000000 02:000A1B20 00000000     0        0 60112 4 0000000000000000 20 4 31 10 19                    
   8: 0100007F:A1B2 0100007F:1538 06 00000000:00000000 03:00001763 00000000     0        0 0 3 0000000000000000                                      
   9: 0100007F:0BB9 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 48300 1 0000000000000000 100 0 0 10 0                     
";

        const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48214 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20313 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52001 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000000000000:1B58 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52002 1 0000000000000000 100 0 0 10 0
   4: 000080FE00000000FF005450010000FE:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52003 1 0000000000000000 100 0 0 10 0
   5: 00000000000000000000000001000000:0BB8 00000000000000000000000001000000:E1C4 01 00000000:00000000 02:0009A3E5 00000000  1000        0 48991 2 0000000000000000 20 4 30 10 -1
   6: 0000000000000000FFFF00000100007F:1388 0000000000000000FFFF00000100007F:9C40 08 00000000:00000000 00:00000000 00000000  1000        0 52100 1 0000000000000000 20 4 30 10 -1
";

        #[test]
        fn parses_ipv4_listeners_only() {
            assert_eq!(
                parse_proc_net_tcp(TCP, false),
                vec![
                    l(v4("127.0.0.1"), 3000),
                    l(v4("0.0.0.0"), 22),
                    l(v4("127.0.0.1"), 5432),
                    l(v4("10.0.0.5"), 8080),
                    l(v4("127.0.0.53"), 53),
                ]
            );
        }

        #[test]
        fn parses_ipv6_listeners_only() {
            assert_eq!(
                parse_proc_net_tcp(TCP6, true),
                vec![
                    l(v6("::1"), 3000),
                    l(v6("::"), 22),
                    l(v6("::ffff:127.0.0.1"), 5000),
                    l(v6("::"), 7000),
                    l(v6("fe80::5054:ff:fe00:1"), 9000),
                ]
            );
        }

        #[test]
        fn wrong_width_for_the_table_is_skipped() {
            assert_eq!(parse_proc_net_tcp(TCP, true), vec![]);
            assert_eq!(parse_proc_net_tcp(TCP6, false), vec![]);
        }

        #[test]
        fn lowercase_hex_and_state_are_accepted() {
            let line = "   0: 0100007f:0bb8 00000000:0000 0a 00000000:00000000 00:00000000 00000000 0 0 1 1";
            assert_eq!(
                parse_proc_net_tcp(line, false),
                vec![l(v4("127.0.0.1"), 3000)]
            );
        }

        #[test]
        fn malformed_lines_are_skipped_among_good_ones() {
            let text = format!(
                "{TCP}\
                 garbage\n\
                 \x20 10: 0100007F:0BB8\n\
                 \x20 11: 0100007G:0BB8 00000000:0000 0A\n\
                 \x20 12: 0100007F:10000 00000000:0000 0A\n\
                 \x20 13: 0100007F:0000 00000000:0000 0A\n\
                 \x20 14: 100007F:0BB8 00000000:0000 0A\n\
                 \x20 15: +100007F:0BB8 00000000:0000 0A\n\
                 \x20 xx: 0100007F:0BB8 00000000:0000 0A\n\
                 \x20 16: 0100007F:+BB8 00000000:0000 0A\n\
                 \x20 17: 0100007F:0FA0 00000000:0000 0A\n"
            );
            let got = parse_proc_net_tcp(&text, false);
            assert_eq!(got.len(), 6, "{got:?}");
            assert_eq!(got[5], l(v4("127.0.0.1"), 4000));
        }

        #[test]
        fn both_tables_merged() {
            let mut all = parse_proc_net_tcp(TCP, false);
            all.extend(parse_proc_net_tcp(TCP6, true));
            let ports = merge(all, &DEFAULT_UPSTREAM_HOSTS);
            let got: Vec<_> = ports
                .iter()
                .map(|p| (p.port, p.loopback_only, p.reachable))
                .collect();
            assert_eq!(
                got,
                vec![
                    (22, false, true),
                    (53, true, false),
                    (3000, true, true),
                    (5000, true, true),
                    (5432, true, true),
                    (7000, false, true),
                    (8080, false, false),
                    (9000, false, false),
                ]
            );
            let p3000 = &ports[2];
            assert_eq!(p3000.families, vec![Family::Ipv4, Family::Ipv6]);
            let p5000 = &ports[3];
            assert_eq!(p5000.families, vec![Family::Ipv4]);
            assert_eq!(p5000.addresses, vec![v4("127.0.0.1")]);
        }
    }
}
