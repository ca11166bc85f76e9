//! `berth dev` as a separate process, for tests that watch its memory, its
//! exit code and its files after SIGTERM.

use crate::cli::{berth_cmd, drain, sigterm};
use crate::support::{client_for, free_port};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A running `berth dev` child process.
pub struct DevProcess {
    pub child: Child,
    pub port: u16,
    pub admin_port: u16,
    pub dir: PathBuf,
    stderr: Option<tokio::task::JoinHandle<String>>,
    stdout: Option<tokio::task::JoinHandle<String>>,
}

/// `berth dev --data-dir DIR` on free loopback ports, with `config` as its
/// `--config` file when given.
pub fn command(dir: &Path, config: Option<&str>) -> (Command, u16, u16) {
    let port = free_port();
    let admin_port = free_port();
    let mut cmd = berth_cmd();
    cmd.arg("dev")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
    if let Some(text) = config {
        let file = dir.with_extension("toml");
        std::fs::write(&file, text).unwrap();
        cmd.arg("--config").arg(file);
    }
    (cmd, port, admin_port)
}

impl DevProcess {
    /// Starts it and waits until the API answers.
    pub async fn start(dir: &Path, config: Option<&str>) -> DevProcess {
        let (mut cmd, port, admin_port) = command(dir, config);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Some(drain(child.stderr.take().unwrap()));
        let stdout = Some(drain(child.stdout.take().unwrap()));
        let mut p = DevProcess {
            child,
            port,
            admin_port,
            dir: dir.to_owned(),
            stderr,
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                let err = p.stderr.take().unwrap().await.unwrap();
                panic!("berth dev exited {status} at start:\n{err}");
            }
            let ready = dir.join("ca.pem").exists() && dir.join("admin-token").exists() && {
                let res = p
                    .client()
                    .get(p.url("/healthz"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                res.is_ok_and(|r| r.status() == 200)
            };
            if ready {
                return p;
            }
            assert!(Instant::now() < deadline, "berth dev not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `https://berth.localhost:{port}{path}`
    pub fn url(&self, path: &str) -> String {
        format!("https://berth.localhost:{}{path}", self.port)
    }

    /// A client trusting its CA (HTTP/2 unless `http1_only`).
    pub fn client(&self) -> reqwest::Client {
        client_for(&self.dir.join("ca.pem"), false)
    }

    /// The admin's API token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .expect("VmHWM in /proc/PID/status")
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    /// `/metrics` from the admin listener.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// SIGTERM, then waits (at most 20 s) for the exit; returns the status
    /// and stderr.
    pub async fn stop(mut self) -> (ExitStatus, String) {
        sigterm(&self.child).await;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("berth dev did not exit within 20 s of SIGTERM")
            .unwrap();
        let err = self.stderr.take().unwrap().await.unwrap();
        let _ = self.stdout.take().unwrap().await;
        (status, err)
    }
}
