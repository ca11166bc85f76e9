//! `berth trust [--uninstall]`: puts the local CA (`berth dev`'s
//! `.berth/ca.pem`) where browsers and tools look, as `mkcert -install`
//! does: the NSS databases Chromium and Firefox use (`~/.pki/nssdb`,
//! Firefox profiles), through `certutil`, and the system store
//! (`/usr/local/share/ca-certificates` + `update-ca-certificates`) when
//! writable; otherwise it prints the command to run as root.

use super::credentials;
use crate::client::{ClientError, TrustArgs};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `berth trust`.
pub(super) async fn trust(a: TrustArgs) -> Result<(), ClientError> {
    let ca = ca_file(&a)?;
    let pem = std::fs::read(&ca).map_err(|e| {
        ClientError::Usage(format!(
            "cannot read the CA {}: {e} (name it with --ca-file, or --data-dir of berth dev)",
            ca.display()
        ))
    })?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ClientError::Usage(format!(
            "{} is not a PEM certificate",
            ca.display()
        )));
    }
    let id = hex::encode(&Sha256::digest(&pem)[..6]);
    let nickname = format!("berth local CA {id}");
    let mut done = Vec::new();
    for db in nss_databases() {
        let d = format!("sql:{}", db.display());
        let ok = if a.uninstall {
            run("certutil", &["-D", "-d", &d, "-n", &nickname])
        } else {
            run_with_file(&d, &nickname, &ca)
        };
        done.push(format!(
            "  {} NSS database {}",
            if ok { "ok    " } else { "failed" },
            db.display()
        ));
    }
    if !a.no_system {
        done.push(system_store(&ca, &id, a.uninstall));
    }
    let verb = if a.uninstall { "Removed" } else { "Installed" };
    println!("{verb} {} ({nickname}):", ca.display());
    for line in &done {
        println!("{line}");
    }
    if done.is_empty() {
        println!(
            "  nothing to do: no NSS database found (browsers create ~/.pki/nssdb on first start)"
        );
    }
    Ok(())
}

fn run_with_file(db: &str, nickname: &str, ca: &Path) -> bool {
    let ca = ca.display().to_string();
    run(
        "certutil",
        &["-A", "-d", db, "-t", "C,,", "-n", nickname, "-i", &ca],
    )
}

/// Runs a program quietly; true when it exits 0.
fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The CA to install: --ca-file, else the data directory's ca.pem, else
/// the one `berth login` saved, else `.berth/ca.pem`.
fn ca_file(a: &TrustArgs) -> Result<PathBuf, ClientError> {
    if let Some(p) = &a.ca_file {
        return Ok(p.clone());
    }
    if let Some(d) = &a.data_dir {
        return Ok(d.join("ca.pem"));
    }
    if let Ok(path) = credentials::default_path() {
        if let Ok(Some(s)) = credentials::load(&path) {
            if let Some(ca) = s.ca_file {
                return Ok(ca);
            }
        }
    }
    Ok(PathBuf::from(".berth/ca.pem"))
}

/// The NSS databases (cert9.db) under $HOME that browsers use.
fn nss_databases() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return vec![];
    };
    let mut dbs = vec![home.join(".pki/nssdb")];
    for profiles in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
        if let Ok(entries) = std::fs::read_dir(home.join(profiles)) {
            dbs.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    dbs.into_iter()
        .filter(|d| d.join("cert9.db").is_file())
        .collect()
}

/// The system store (Debian layout); a line saying what happened or what
/// to run as root.
fn system_store(ca: &Path, id: &str, uninstall: bool) -> String {
    let dir = Path::new("/usr/local/share/ca-certificates");
    let target = dir.join(format!("berth-{id}.crt"));
    let changed = if uninstall {
        !target.exists() || std::fs::remove_file(&target).is_ok()
    } else {
        std::fs::copy(ca, &target).is_ok()
    };
    if changed && run("update-ca-certificates", &[]) {
        return format!("  ok     system store ({})", target.display());
    }
    if uninstall {
        format!(
            "  skipped system store: run as root: rm {} && update-ca-certificates",
            target.display()
        )
    } else {
        format!(
            "  skipped system store: run as root: cp {} {} && update-ca-certificates",
            ca.display(),
            target.display()
        )
    }
}
