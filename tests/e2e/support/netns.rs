//! Network namespaces for multi-region tests: one namespace per region,
//! each joined to the root namespace by a veth pair on its own /24
//! (root side `.1`, namespace side `.2`). Everything is deleted when the
//! [`Namespaces`] guard drops, also when the test panics.
//!
//! Processes run inside with `ip netns exec`, which also bind-mounts
//! `/etc/netns/<NS>/hosts` over `/etc/hosts`: that is how each region gets
//! its own view of the names (see [`Namespaces::write_hosts`]).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};

/// The namespaces of one test, deleted on drop.
pub struct Namespaces {
    /// Namespace names, one per region, in the order given to [`Namespaces::create`].
    pub names: Vec<String>,
    /// The second octet of every address (10.N.x.y), chosen per run.
    net: u8,
    /// This set's first third octet (several sets can live in one process).
    base: u8,
}

/// Runs `ip args...`; the error names the command and what it said.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Sets made by this process so far (each gets its own names and subnets).
static SETS: AtomicU8 = AtomicU8::new(0);

impl Namespaces {
    /// Creates a namespace per region (`berth-t-<pid>-<set>-<region>`) with
    /// its veth link to the root namespace; `Err(reason)` when this machine
    /// cannot (not root, no `ip`, namespaces not allowed).
    pub fn create(regions: &[&str]) -> Result<Namespaces, String> {
        let pid = std::process::id();
        let set = SETS.fetch_add(1, Ordering::SeqCst);
        // 10.N.0.0/16 with N from the pid, skipping networks already in use.
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .map_err(|e| format!("cannot run `ip` ({e}); install iproute2"))?;
        let mut net = 100 + (pid % 100) as u8;
        while used.contains(&format!(" 10.{net}.")) {
            net = if net == 254 { 100 } else { net + 1 };
        }
        let mut me = Namespaces {
            names: Vec::new(),
            net,
            base: set.wrapping_mul(8),
        };
        for (i, region) in regions.iter().enumerate() {
            let ns = format!("berth-t-{pid}-{set}-{region}");
            ip(&["netns", "add", &ns])?;
            me.names.push(ns.clone());
            let (root_end, ns_end) = (format!("bt{pid}{set}{i}r"), format!("bt{pid}{set}{i}n"));
            ip(&[
                "link", "add", &root_end, "type", "veth", "peer", "name", &ns_end, "netns", &ns,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", me.root_addr(i)),
                "dev",
                &root_end,
            ])?;
            ip(&["link", "set", &root_end, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", me.ns_addr(i)),
                "dev",
                &ns_end,
            ])?;
            ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            std::fs::create_dir_all(format!("/etc/netns/{ns}"))
                .map_err(|e| format!("cannot create /etc/netns/{ns}: {e}"))?;
        }
        Ok(me)
    }

    fn octet(&self, i: usize) -> u8 {
        self.base + i as u8 + 1
    }

    /// The root namespace's end of region `i`'s link.
    pub fn root_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, self.octet(i), 1)
    }

    /// Region `i`'s own address (its end of the link).
    pub fn ns_addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, self.octet(i), 2)
    }

    /// An extra root-side address on region `i`'s link (`k` < 200), e.g.
    /// for a delay line that only this region reaches; added on first use.
    pub fn alias(&self, i: usize, k: u8) -> Ipv4Addr {
        let a = Ipv4Addr::new(10, self.net, self.octet(i), 10 + k);
        let dev = format!("bt{}{}{i}r", std::process::id(), self.base / 8);
        let _ = ip(&["addr", "add", &format!("{a}/24"), "dev", &dev]);
        a
    }

    /// Writes region `i`'s `/etc/hosts` (as its processes see it).
    pub fn write_hosts(&self, i: usize, entries: &[(Ipv4Addr, String)]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for (a, name) in entries {
            text.push_str(&format!("{a} {name}\n"));
        }
        std::fs::write(format!("/etc/netns/{}/hosts", self.names[i]), text).unwrap();
    }

    /// `ip netns exec <region i> program`, ready for arguments.
    pub fn command(&self, i: usize, program: &std::path::Path) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.names[i]]).arg(program);
        c
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.names {
            // Whatever still runs in our namespace was started by this test.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            // Deleting the namespace deletes its veth end, and so the pair.
            let _ = ip(&["netns", "del", ns]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}
