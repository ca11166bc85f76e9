//! The processes under test: the origin app, `berth dev` (control + edge +
//! in-process agent) and a separate `berth agent`. Each is a child process
//! killed when its handle drops (also when the bench panics).

use crate::net::{tls_configs, Target, Tls};
use anyhow::{anyhow, bail, Context as _, Result};
use http::Method;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process, killed on drop. Its output goes to `log`.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log)?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(Proc { name, child, log })
    }

    /// Fails with the end of the log if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Everything the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The origin app, in a child process (this bench binary, re-executed).
pub struct Origin {
    pub addr: SocketAddr,
    child: Child,
}

impl Origin {
    pub fn start() -> Result<Origin> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .env("BERTH_BENCH_ROLE", "origin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the origin app (this bench, re-executed)")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| anyhow!("the origin app said {line:?}, not its address"))?;
        Ok(Origin { addr, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of the `berth` binary cargo built for this bench (optimized:
/// `cargo bench` builds it with the bench profile).
pub fn berth_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `berth dev` plus, optionally, a separate `berth agent` for workspace `bench`.
pub struct Berth {
    pub port: u16,
    pub token: String,
    tls: (
        std::sync::Arc<rustls::ClientConfig>,
        std::sync::Arc<rustls::ClientConfig>,
    ),
    pub dev: Proc,
    pub agent: Option<Proc>,
    dir: PathBuf,
}

impl Berth {
    /// Starts `berth dev` in `dir` and waits until its in-process agent
    /// forwards to `app_port`.
    pub async fn start(dir: &Path, app_port: u16) -> Result<Berth> {
        Berth::start_with_admin(dir, app_port, None).await
    }

    /// [`Berth::start`] with the admin listener (`/metrics`) on
    /// `127.0.0.1:admin_port` when given.
    pub async fn start_with_admin(
        dir: &Path,
        app_port: u16,
        admin_port: Option<u16>,
    ) -> Result<Berth> {
        Berth::start_with_env(dir, app_port, admin_port, &[]).await
    }

    /// [`Berth::start_with_admin`] with extra environment variables (e.g.
    /// `BERTH_INSPECTOR_ENABLED=false`).
    pub async fn start_with_env(
        dir: &Path,
        app_port: u16,
        admin_port: Option<u16>,
        env: &[(&str, &str)],
    ) -> Result<Berth> {
        let port = free_port()?;
        let data = dir.join("data");
        let mut cmd = Command::new(berth_exe());
        cmd.arg("dev")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(admin_port.map_or("off".into(), |p| format!("127.0.0.1:{p}")));
        child_log_env(&mut cmd);
        cmd.envs(env.iter().copied());
        let mut dev = Proc::spawn("berth dev", cmd, dir.join("berth-dev.log"))?;

        let token_path = data.join("admin-token");
        let ca = data.join("ca.pem");
        let deadline = Instant::now() + Duration::from_secs(60);
        let token = loop {
            dev.check_alive()?;
            if let Ok(t) = std::fs::read_to_string(&token_path) {
                if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break t.trim().to_owned();
                }
            }
            if Instant::now() > deadline {
                bail!("berth dev did not start within 60 s:\n{}", dev.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut berth = Berth {
            port,
            token,
            tls: tls_configs(&ca)?,
            dev,
            agent: None,
            dir: dir.to_owned(),
        };
        let target = berth.app("berth (in-process agent)", "dev", app_port);
        berth.wait_ready(&target).await?;
        Ok(berth)
    }

    fn target(&self, name: &'static str, host: String) -> Target {
        Target {
            name,
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
            authority: format!("{host}:{}", self.port),
            tls: Some(Tls {
                host,
                h1: self.tls.0.clone(),
                h2: self.tls.1.clone(),
            }),
            auth: format!("Bearer {}", self.token),
        }
    }

    /// The run's CA certificate (PEM), which agents and clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("data").join("ca.pem")
    }

    /// The API at `https://berth.localhost:PORT`.
    pub fn api(&self) -> Target {
        self.target("berth API", "berth.localhost".into())
    }

    /// `https://{port}--main--{workspace}--admin.berth.localhost:PORT`
    pub fn app(&self, name: &'static str, workspace: &str, app_port: u16) -> Target {
        self.target(
            name,
            format!("{app_port}--main--{workspace}--admin.berth.localhost"),
        )
    }

    /// Polls `GET /1k` on `target` until it answers 200.
    async fn wait_ready(&mut self, target: &Target) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.dev.check_alive()?;
            let last = match target.once(Method::GET, "/1k", None).await {
                Ok((200, body)) if body.len() == 1024 => return Ok(()),
                Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{} is not ready after 30 s (last answer: {last})\nberth dev log:\n{}",
                    target.name,
                    self.dev.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates workspace `bench` with agent `main` through the API, starts
    /// `berth agent` for it as its own process, and waits until it forwards.
    pub async fn start_agent(&mut self, app_port: u16) -> Result<Target> {
        self.start_agent_with(app_port, &[]).await
    }

    /// [`Berth::start_agent`] with extra `berth agent` arguments (e.g.
    /// `--tunnels 1`).
    pub async fn start_agent_with(&mut self, app_port: u16, args: &[&str]) -> Result<Target> {
        let (target, proc) = self
            .start_agent_in("berth (agent process)", "bench", self.port, app_port, args)
            .await?;
        self.agent = Some(proc);
        Ok(target)
    }

    /// Creates workspace `workspace` (owned by admin) through the API.
    pub async fn create_workspace(&self, workspace: &str) -> Result<()> {
        let (status, body) = self
            .api()
            .once(
                Method::POST,
                "/api/v1/workspaces",
                Some(&serde_json::json!({ "name": workspace })),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "creating workspace {workspace}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    }

    /// Creates agent `name` in admin's `workspace` through the API and
    /// returns its agent token (a real one, as `berth agent` would use).
    pub async fn create_agent(&self, workspace: &str, name: &str) -> Result<String> {
        let (status, body) = self
            .api()
            .once(
                Method::POST,
                &format!("/api/v1/workspaces/admin/{workspace}/agents"),
                Some(&serde_json::json!({ "name": name })),
            )
            .await?;
        if !(200..300).contains(&status) {
            bail!(
                "creating agent {name} in {workspace}: {status} {}",
                String::from_utf8_lossy(&body)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        v["agent_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no agent_token in {v}"))
    }

    /// Creates `workspace` with agent `main`, starts `berth agent` for it
    /// dialing the edge at `127.0.0.1:edge_port` (the edge itself, or a
    /// relay in front of it) with the extra arguments `args`, and waits
    /// until `app_port` answers through it.
    pub async fn start_agent_in(
        &mut self,
        name: &'static str,
        workspace: &str,
        edge_port: u16,
        app_port: u16,
        args: &[&str],
    ) -> Result<(Target, Proc)> {
        self.create_workspace(workspace).await?;
        let agent_token = self.create_agent(workspace, "main").await?;
        let token_file = self.dir.join(format!("agent-token-{workspace}"));
        std::fs::write(&token_file, agent_token)?;
        let mut cmd = Command::new(berth_exe());
        cmd.arg("agent")
            .arg("--url")
            .arg(format!("https://berth.localhost:{edge_port}"))
            .arg("--token-file")
            .arg(&token_file)
            .arg("--ca-file")
            .arg(self.dir.join("data").join("ca.pem"))
            .args(args);
        child_log_env(&mut cmd);
        let mut proc = Proc::spawn(
            "berth agent",
            cmd,
            self.dir.join(format!("berth-agent-{workspace}.log")),
        )?;
        let target = self.app(name, workspace, app_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.dev.check_alive()?;
            proc.check_alive()?;
            let last = match target.once(Method::GET, "/1k", None).await {
                Ok((200, body)) if body.len() == 1024 => return Ok((target, proc)),
                Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "{name} is not ready after 30 s (last answer: {last})\nagent log:\n{}",
                    proc.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// berth logs at `info` (one access-log line per request) as in production,
/// to a file; `BERTH_BENCH_RUST_LOG` overrides the filter.
fn child_log_env(cmd: &mut Command) {
    cmd.env_remove("RUST_LOG");
    if let Ok(filter) = std::env::var("BERTH_BENCH_RUST_LOG") {
        cmd.env("RUST_LOG", filter);
    }
}
