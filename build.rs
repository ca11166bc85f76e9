//! Build script: rebuild when a migration changes (sqlx::migrate! embeds both
//! backends' directories), and name in `berth --version` the commit the
//! binary was built from and the schema version it knows:
//! `BERTH_LONG_VERSION` = `0.1.0 (commit 1a2b3c4, schema 10)`, with `-dirty`
//! after the commit when the sources built into the binary differ from it.
//!
//! The commit comes from `BERTH_BUILD_COMMIT` if set (a build from a tarball
//! or a Docker context without `.git`), else from git when this crate is the
//! top of a git work tree; without either, the version says `commit unknown`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What goes into the binary: a change under these makes a build `-dirty`.
const SOURCES: &[&str] = &["src", "migrations", "Cargo.toml", "Cargo.lock", "build.rs"];

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/postgres");
    println!("cargo:rerun-if-env-changed=BERTH_BUILD_COMMIT");

    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    let commit = match std::env::var("BERTH_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => git_commit(&manifest_dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    let schema = schema_version(&manifest_dir.join("migrations/sqlite"));
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    println!("cargo:rustc-env=BERTH_SCHEMA={schema}");
    println!("cargo:rustc-env=BERTH_LONG_VERSION={version} (commit {commit}, schema {schema})");
}

/// The newest migration's number (`migrations/sqlite/0010_*.sql` -> 10).
fn schema_version(dir: &Path) -> u32 {
    std::fs::read_dir(dir)
        .expect("migrations/sqlite exists")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".sql")?.split('_').next()?.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// The short commit of HEAD, `-dirty` if the sources differ from it, when
/// `dir` is the top of a git work tree (not a crate unpacked inside some
/// other repository). Also asks cargo to run this again when HEAD moves or
/// a source changes, so the answer does not go stale.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("--no-optional-locks")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short=7", "HEAD"])?;
    // HEAD, the branch it points to and packed-refs move on a commit or a
    // checkout; only existing files are named (cargo reruns on a missing one).
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(branch);
    }
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    for source in SOURCES {
        println!("cargo:rerun-if-changed={source}");
    }
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = !git(&status)?.is_empty();
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
