//! A PostgreSQL server for tests, and a fresh database per test on it.
//!
//! Shared by the store's unit tests and the end-to-end tests (included there
//! with `#[path]`), so it uses only std, tokio, sqlx, rand and tempfile.
//!
//! Where the server comes from, in order:
//! 1. `BERTH_TEST_POSTGRES_URL` (a superuser URL): each test creates a database on it;
//! 2. PostgreSQL's server binaries (`/usr/lib/postgresql/*/bin`, or `initdb`
//!    and `postgres` on `PATH`): a throwaway cluster in a temporary directory
//!    on a free loopback port, started once per test binary. As root it runs
//!    as the `postgres` user (or `nobody`), since PostgreSQL refuses root. A
//!    watchdog shell holds a pipe from this process: when the test binary
//!    exits, however it exits, the pipe closes and the shell stops the server
//!    and deletes the directory;
//! 3. otherwise, with `BERTH_REQUIRE_POSTGRES=1`, the test fails; without it,
//!    one `SKIPPED: PostgreSQL not installed` line goes to stderr and the
//!    PostgreSQL half of each test returns early.

#![allow(dead_code)]

use sqlx::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A database made for one test; dropped (with its connections) on drop.
pub(crate) struct TestDb {
    /// `postgres://...` for this database.
    pub url: String,
    admin_url: String,
    name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A fresh, empty database, or `None` (after one `SKIPPED` line on stderr)
/// when no PostgreSQL server is available and none is required.
pub(crate) async fn fresh_database() -> Option<TestDb> {
    let admin_url = tokio::task::spawn_blocking(|| server().clone())
        .await
        .expect("the server start-up does not panic")
        .unwrap_or_else(|e| panic!("{e}"))?;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "berth_test_{}_{}_{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("test PostgreSQL: cannot connect: {e}"));
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("test PostgreSQL: cannot create database {name}: {e}"));
    Some(TestDb {
        url: with_database(&admin_url, &name),
        admin_url,
        name,
    })
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// The admin URL of the server for this test binary, `None` to skip, or why
/// PostgreSQL is required but cannot be had.
fn server() -> &'static Result<Option<String>, String> {
    static SERVER: OnceLock<Result<Option<String>, String>> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("BERTH_TEST_POSTGRES_URL") {
            if !url.is_empty() {
                return Ok(Some(url));
            }
        }
        if let Some(bin) = find_binaries() {
            return Cluster::start(&bin).map(|c| {
                let url = c.admin_url.clone();
                // Kept for the life of the process: its pipe is the watchdog's.
                std::mem::forget(c);
                Some(url)
            });
        }
        if std::env::var("BERTH_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            return Err(
                "BERTH_REQUIRE_POSTGRES=1 but no PostgreSQL server is available: \
                 install one (apt-get install postgresql) or set BERTH_TEST_POSTGRES_URL"
                    .into(),
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: PostgreSQL not installed (apt-get install postgresql, or set \
             BERTH_TEST_POSTGRES_URL); the PostgreSQL tests in this binary pass without running"
        );
        Ok(None)
    })
}

/// The directory holding `initdb` and `postgres`: the newest under
/// `/usr/lib/postgresql/*/bin` (Debian), else the one on `PATH`.
fn find_binaries() -> Option<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).find(|d| complete(d))
}

/// A running throwaway cluster.
struct Cluster {
    admin_url: String,
    /// The watchdog reads this until EOF, i.e. until this process ends.
    _watchdog: ChildStdin,
}

impl Cluster {
    fn start(bin: &Path) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("berth-pg-")
            .tempdir()
            .map_err(|e| format!("test PostgreSQL: temporary directory: {e}"))?
            .keep();
        let fail = |what: &str| {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            let _ = std::fs::remove_dir_all(&dir);
            format!("test PostgreSQL: {what}; log:\n{log}")
        };
        let password = format!("{:016x}", rand::random::<u64>());
        std::fs::write(dir.join("pwfile"), &password).map_err(|e| fail(&e.to_string()))?;
        // As root, run as an unprivileged user that owns the directory.
        let run_as = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| id(u, "-u").is_some())
                .ok_or_else(|| fail("no postgres or nobody user to run as"))?;
            let (uid, gid) = (
                id(user, "-u").unwrap_or_default(),
                id(user, "-g").unwrap_or_default(),
            );
            let status = Command::new("chown")
                .args(["-R", &format!("{uid}:{gid}")])
                .arg(&dir)
                .status()
                .map_err(|e| fail(&format!("chown: {e}")))?;
            if !status.success() {
                return Err(fail("chown of the cluster directory failed"));
            }
            vec![
                "setpriv".to_owned(),
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_owned(),
            ]
        } else {
            Vec::new()
        };
        let log =
            std::fs::File::create(dir.join("postgres.log")).map_err(|e| fail(&e.to_string()))?;
        let initdb = as_user(&run_as, &bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "berth",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", dir.join("pwfile").display()))
            .stdout(log.try_clone().map_err(|e| fail(&e.to_string()))?)
            .stderr(log)
            .status()
            .map_err(|e| fail(&format!("initdb: {e}")))?;
        if !initdb.success() {
            return Err(fail("initdb failed"));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| fail(&e.to_string()))?
            .port();
        // The watchdog: starts the server, waits for EOF on stdin, then stops
        // the server (fast shutdown) and removes the directory.
        let script = r#"
            dir=$1; port=$2; shift 2
            "$@" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
                -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                -c max_connections=400 >>"$dir/postgres.log" 2>&1 &
            pg=$!
            cat >/dev/null
            kill -INT "$pg" 2>/dev/null
            wait "$pg"
            rm -rf "$dir"
        "#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(&dir)
            .arg(port.to_string())
            .args(&run_as)
            .arg(bin.join("postgres"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(&format!("starting postgres: {e}")))?;
        let watchdog = child.stdin.take().ok_or_else(|| fail("no watchdog pipe"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            if log.contains("ready to accept connections") {
                break;
            }
            if log.contains("FATAL") || Instant::now() > deadline {
                drop(watchdog);
                let _ = child.wait();
                return Err(format!("test PostgreSQL did not start; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Cluster {
            admin_url: format!("postgres://berth:{password}@127.0.0.1:{port}/postgres"),
            _watchdog: watchdog,
        })
    }
}

/// A command for `program`, prefixed with `run_as` (setpriv and its flags) if any.
fn as_user(run_as: &[String], program: &Path) -> Command {
    match run_as.split_first() {
        Some((setpriv, flags)) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(flags).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn is_root() -> bool {
    id("", "-u").as_deref() == Some("0")
}

/// `id FLAG [USER]`'s output, if the user exists.
fn id(user: &str, flag: &str) -> Option<String> {
    let mut cmd = Command::new("id");
    cmd.arg(flag);
    if !user.is_empty() {
        cmd.arg(user);
    }
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
