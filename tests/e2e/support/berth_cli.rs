//! The `berth` binary run as a client child process with its own config
//! directory, and what it printed.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_berth");

/// `berth` with `BERTH_CONFIG_DIR=config` and nothing else from the
/// caller's `BERTH_*` environment (nor its CA file or XDG config home).
pub fn client_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") || k == "SSL_CERT_FILE" || k == "XDG_CONFIG_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd.env("BERTH_CONFIG_DIR", config);
    cmd
}

/// `berth ARGS` as a client with its own config directory
/// (`BERTH_CONFIG_DIR=config`) and nothing else from the caller's `BERTH_*`
/// environment; `stdin` is fed to it.
pub async fn cli(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = client_cmd(config);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("berth runs");
    let mut input = child.stdin.take().unwrap();
    // A command that reads nothing may have exited already.
    let _ = input.write_all(stdin.as_bytes()).await;
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("berth finished in time")
        .unwrap()
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        out(o),
        err(o)
    );
}
