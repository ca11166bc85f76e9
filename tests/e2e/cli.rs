//! The `berth` binary itself: help, `berth dev` as a child process with its
//! banner, files, metrics and SIGTERM, configuration errors, and `berth
//! agent` as a separate process.

use crate::support::{apps, client_for, free_port, Berth};
use serde_json::Value;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_berth");
/// `EX_CONFIG`-like exit code for configuration errors.
const EXIT_CONFIG: i32 = 64;

/// The binary with a clean environment (no `BERTH_*` from the caller).
pub(crate) fn berth_cmd() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("BERTH_") || k == "SSL_CERT_FILE" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info").kill_on_drop(true);
    cmd
}

async fn run(cmd: &mut Command) -> Output {
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("the command did not finish")
        .expect("the command runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends SIGTERM (through the `kill` command) to `child`.
pub(crate) async fn sigterm(child: &Child) {
    let pid = child.id().expect("the child is running");
    let st = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(st.success());
}

/// Collects a child's output in the background, so pipes never fill up.
pub(crate) fn drain(r: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut out = String::new();
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            out.push_str(&l);
            out.push('\n');
        }
        out
    })
}

#[tokio::test]
async fn help_names_every_flag_and_unknown_commands_fail() {
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--help"],
            &["dev", "control", "edge", "agent", "regions", "--version"],
        ),
        (
            &["edge", "--help"],
            &[
                "--url",
                "--region-token",
                "--ca-file",
                "--base-domain",
                "--wildcard",
                "--listen",
                "--tls-mode",
            ],
        ),
        (
            &["regions", "create", "--help"],
            &["--url", "--wildcard", "--json"],
        ),
        (
            &["dev", "--help"],
            &[
                "--config",
                "--listen",
                "--data-dir",
                "--admin-listen",
                "--log-format",
            ],
        ),
        (
            &["control", "--help"],
            &[
                "--config",
                "--listen",
                "--data-dir",
                "--admin-listen",
                "--base-domain",
                "--wildcard",
                "--database-url",
                "--tls-mode",
                "--cert-file",
                "--key-file",
            ],
        ),
        (
            &["agent", "--help"],
            &[
                "--url",
                "--token",
                "--token-file",
                "--ca-file",
                "--upstream-host",
                "--allow-ports",
            ],
        ),
    ];
    for (args, flags) in cases {
        let out = run(berth_cmd().args(*args)).await;
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "berth {args:?}: {:?}", out.status);
        for f in *flags {
            assert!(
                stdout.contains(f),
                "berth {args:?} does not mention {f}:\n{stdout}"
            );
        }
    }
    let out = run(berth_cmd().arg("--version")).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    for args in [&["frobnicate"][..], &[][..], &["dev", "--no-such-flag"][..]] {
        let out = run(berth_cmd().args(args)).await;
        assert!(!out.status.success(), "berth {args:?} succeeded");
        assert_ne!(out.status.code(), Some(0));
        assert!(!out.stderr.is_empty(), "berth {args:?}: nothing on stderr");
    }
}

/// Finds the sample of `name` whose labels contain `label` (if given) in
/// a Prometheus text exposition, and returns its value.
pub(crate) fn sample(metrics: &str, name: &str, label: Option<&str>) -> Option<f64> {
    metrics.lines().find_map(|l| {
        if l.starts_with('#') {
            return None;
        }
        let (series, value) = l.rsplit_once(' ')?;
        let (n, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        if n != name || label.is_some_and(|want| !labels.contains(want)) {
            return None;
        }
        value.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_dev_as_a_process_serves_prints_and_drains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    let admin_port = free_port();
    let mut child = berth_cmd()
        .arg("dev")
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = drain(child.stderr.take().unwrap());

    // The banner, up to the curl example.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let curl_line = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("stdout ended before the curl line:\n{banner}"));
            banner.push_str(&line);
            banner.push('\n');
            if line.trim_start().starts_with("curl ") {
                return line;
            }
        }
    })
    .await
    .expect("no curl line within 20 s");
    let stdout = drain(lines.into_inner());
    let ca = dir.join("ca.pem");
    let token_path = dir.join("admin-token");
    assert!(banner.contains("is running"), "{banner}");
    assert!(
        banner.contains(&format!("https://berth.localhost:{port}")),
        "{banner}"
    );
    assert!(banner.contains(&ca.display().to_string()), "{banner}");
    assert!(
        banner.contains("admin password"),
        "first run shows the password: {banner}"
    );
    assert!(
        curl_line.contains(&format!("--cacert {}", ca.display())),
        "{curl_line}"
    );
    assert!(
        curl_line.contains(&format!(
            "https://3000--main--dev--admin.berth.localhost:{port}/"
        )),
        "{curl_line}"
    );

    // Files.
    assert!(ca.is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin-token mode {:o}", mode & 0o777);
    }
    let token = std::fs::read_to_string(&token_path)
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.starts_with("berth_"), "{token}");

    // An app through the process's own tunnel.
    let app = apps::start("127.0.0.1:0", "child").await;
    let client = client_for(&ca, true);
    let app_host = format!("{}--main--dev--admin.berth.localhost", app.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    let res = loop {
        // The banner comes before the local agent has connected.
        let res = client
            .get(format!("https://{app_host}:{port}/from-reqwest"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        if res.status() != 502 || Instant::now() > deadline {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["app"], "child");
    assert_eq!(body["uri"], "/from-reqwest");

    // The banner's curl line, as a user would paste it (pinned to loopback).
    let curl_ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    if curl_ok {
        let line = curl_line.trim().replace(
            "3000--main--dev--admin",
            &format!("{}--main--dev--admin", app.port()),
        );
        let script = format!(
            "{line} -sS --max-time 10 --resolve {app_host}:{port}:127.0.0.1 -w '\\n%{{http_code}}'"
        );
        let out = run(Command::new("sh").args(["-c", &script])).await;
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{script}\n{stdout}\n{}",
            text(&out.stderr)
        );
        let (body, code) = stdout.trim_end().rsplit_once('\n').unwrap();
        assert_eq!(code, "200", "{stdout}");
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["app"], "child");
        assert!(body["headers"]["user-agent"]
            .as_str()
            .unwrap()
            .starts_with("curl/"));
    } else {
        println!("NOTE: curl is not installed; the banner's curl line was not run");
    }

    // Metrics, health and readiness on the admin listener.
    let plain = reqwest::Client::new();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let res = plain.get(format!("{admin}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let metrics = res.text().await.unwrap();
    let ok = sample(
        &metrics,
        "berth_edge_requests_total",
        Some("status=\"200\""),
    )
    .unwrap_or_else(|| panic!("no status=\"200\" sample:\n{metrics}"));
    assert!(ok >= 1.0, "{metrics}");
    assert_eq!(
        sample(&metrics, "berth_edge_agents_connected", None),
        Some(1.0),
        "{metrics}"
    );
    let streams = sample(&metrics, "berth_edge_tunnel_streams_opened_total", None)
        .or_else(|| sample(&metrics, "berth_edge_tunnel_streams_opened", None))
        .unwrap_or_else(|| panic!("no berth_edge_tunnel_streams_opened:\n{metrics}"));
    assert!(streams >= 1.0, "{metrics}");
    let res = plain.get(format!("{admin}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = plain.get(format!("{admin}/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    // ... and on the public listener's own host.
    for path in ["/healthz", "/readyz"] {
        let res = client
            .get(format!("https://berth.localhost:{port}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    // The public port does not serve metrics on the app hosts or the base host.
    let res = client
        .get(format!("https://berth.localhost:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), 200);

    // SIGTERM drains and exits within the grace period (10 s by default).
    drop(client);
    let killed = Instant::now();
    sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(12), child.wait())
        .await
        .expect("berth dev did not exit within the grace period")
        .unwrap();
    let took = killed.elapsed();
    println!("berth dev exited {status} {took:?} after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = stderr.await.unwrap();
    let _ = stdout.await;
    assert!(!err.contains("panicked"), "berth dev panicked:\n{err}");
    // The port is free again.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was released");
}

#[tokio::test]
async fn config_errors_exit_64_and_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let file = tmp.path().join("berth.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:0\"\nlisen_typo = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let out = run(berth_cmd()
        .arg("dev")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("lisen_typo"), "{err}");

    // An unknown section names itself too.
    std::fs::write(&file, "[servr]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = run(berth_cmd()
        .arg("dev")
        .arg("--config")
        .arg(&file)
        .arg("--data-dir")
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("servr"), "{err}");

    // Through the environment.
    let out = run(berth_cmd()
        .env("BERTH_SERVER_LISTEN", "nonsense")
        .arg("dev")
        .arg("--data-dir")
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("nonsense"), "{err}");

    // An unknown BERTH_SERVER_* variable is named.
    let out = run(berth_cmd()
        .env("BERTH_SERVER_LISTN", "127.0.0.1:0")
        .arg("dev")
        .arg("--data-dir")
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("BERTH_SERVER_LISTN"), "{err}");

    // A flag value.
    let out = run(berth_cmd()
        .args(["dev", "--admin-listen", "everywhere", "--data-dir"])
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("admin.listen"), "{err}");

    // A config error leaves nothing behind.
    assert!(!dir.exists(), "the data dir was created on a config error");
}

/// A configuration with several mistakes names all of them in one run,
/// one a line, so the operator fixes them in one go.
#[tokio::test]
async fn config_errors_are_reported_all_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(berth_cmd()
        .env("BERTH_SERVER_LISTEN", "nonsense")
        .env("BERTH_LOG_FORMAT", "xml")
        .args(["dev", "--admin-listen", "everywhere", "--data-dir"])
        .arg(&dir))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    for key in ["server.listen", "admin.listen", "log.format"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("berth: configuration error: {key}: "))),
            "{key}: {err}"
        );
    }
    assert!(!dir.exists(), "the data dir was created on a config error");
}

/// Spawns `berth agent` against `berth` with `extra` flags.
fn spawn_agent(berth: &Berth, token: &str, extra: &[&str]) -> Child {
    berth_cmd()
        .arg("agent")
        .args([
            "--url",
            &format!("https://berth.localhost:{}", berth.addr.port()),
        ])
        .args(["--token", token])
        .arg("--ca-file")
        .arg(&berth.ca_pem)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn get(berth: &Berth, label: &str, path: &str) -> (u16, Value) {
    let res = berth
        .client(true)
        .get(berth.app_url(label, path))
        .bearer_auth(&berth.admin_token)
        .send()
        .await
        .unwrap();
    let s = res.status().as_u16();
    (s, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_agent_as_a_process_serves_and_its_death_is_noticed() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "proc").await;
    let token = berth.create_agent("proc", "main").await;
    let mut agent = spawn_agent(&berth, &token, &[]);
    let took = berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    println!("berth agent connected {took:?} after spawning");
    let label = format!("{}--main--proc--admin", app.port());
    let (s, body) = get(&berth, &label, "/via-process").await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["app"], "proc");
    assert_eq!(body["uri"], "/via-process");

    // Killed outright: the OS closes the socket and the edge notices at once.
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    let took = berth.wait_agents_exactly(1, Duration::from_secs(3)).await;
    println!("the edge noticed the killed agent after {took:?}");
    let (s, body) = get(&berth, &label, "/").await;
    assert_eq!(s, 502, "{body}");
    assert_eq!(body["error"], "workspace_offline");

    // Again, stopped politely with SIGTERM: exits 0 and is gone as fast.
    let agent = spawn_agent(&berth, &token, &[]);
    berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    let (s, _) = get(&berth, &label, "/").await;
    assert_eq!(s, 200);
    sigterm(&agent).await;
    let out = tokio::time::timeout(Duration::from_secs(5), agent.wait_with_output())
        .await
        .expect("berth agent did not exit on SIGTERM")
        .unwrap();
    assert!(out.status.success(), "{}", out.status);
    berth.wait_agents_exactly(1, Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_agent_allow_ports_and_bad_tokens() {
    let berth = Berth::start().await;
    let app = apps::start("127.0.0.1:0", "fenced").await;

    // Not a token at all: refused before dialing.
    let out = run(berth_cmd().args([
        "agent",
        "--url",
        &format!("https://berth.localhost:{}", berth.addr.port()),
        "--token",
        "not-a-token",
    ]))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{err}");
    assert!(err.contains("berth_agent_"), "{err}");
    // An API token is not an agent token either.
    let out = run(berth_cmd().args([
        "agent",
        "--url",
        &format!("https://berth.localhost:{}", berth.addr.port()),
        "--token",
        &berth.admin_token,
    ]))
    .await;
    assert_eq!(
        out.status.code(),
        Some(EXIT_CONFIG),
        "{}",
        text(&out.stderr)
    );
    // Bad --allow-ports and --url.
    let out = run(berth_cmd().args([
        "agent",
        "--url",
        "https://berth.localhost:1",
        "--token",
        "berth_agent_x",
        "--allow-ports",
        "9-3",
    ]))
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("backwards"),
        "{}",
        text(&out.stderr)
    );

    // --allow-ports 1-2: the app's port is refused with 403.
    let token = berth.create_agent("fenced", "main").await;
    let _agent = spawn_agent(&berth, &token, &["--allow-ports", "1-2"]);
    berth.wait_agents_exactly(2, Duration::from_secs(15)).await;
    let (s, body) = get(&berth, &format!("{}--main--fenced--admin", app.port()), "/").await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"], "port_not_allowed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&app.port().to_string()),
        "{body}"
    );
}

/// The newest migration's number, as the repository has it.
fn newest_schema() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse().ok()
        })
        .max()
        .unwrap()
}

#[tokio::test]
async fn version_names_the_commit_and_the_schema() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    // Subcommands name themselves as clap does (`berth-dev 0.1.0 (...)`).
    for (args, name) in [
        (&["--version"][..], "berth"),
        (&["dev", "--version"], "berth-dev"),
    ] {
        let out = run(berth_cmd().args(args)).await;
        assert!(out.status.success(), "{out:?}");
        let line = text(&out.stdout);
        let prefix = format!("{name} {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(line.starts_with(&prefix), "{args:?}: {line}");
        assert!(
            line.ends_with(&format!(", schema {})\n", newest_schema())),
            "{args:?}: {line}"
        );
        let commit = &line[prefix.len()..line.find(", schema").unwrap()];
        match &head {
            // Built from this work tree: its HEAD, and `-dirty` at most.
            Some(head) => assert!(
                commit == head || commit == format!("{head}-dirty"),
                "{args:?}: {commit:?} is not HEAD {head}"
            ),
            None => assert_eq!(commit, "unknown", "{args:?}"),
        }
    }
}

#[tokio::test]
async fn a_data_dir_from_a_newer_berth_is_refused_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(berth::store::Store::open(&dir).await.unwrap());
    // What a berth with two more migrations leaves behind.
    let future = newest_schema() + 2;
    let db = dir.join("berth.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer berth', TRUE, X'00', 0)",
    )
    .bind(future)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let out = run(berth_cmd().arg("dev").arg("--data-dir").arg(&dir).args([
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "off",
    ]))
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in [
        format!(
            "{} was written by a newer berth (schema {future})",
            db.display()
        ),
        format!("knows schema {}", newest_schema()),
        "upgrade berth, or restore a backup".to_owned(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in: {err}");
    }
    // Nothing was written: the newer schema is still recorded, and nothing
    // was made from it (no admin user, so no admin token).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(newest, future);
    assert!(!dir.join("admin-token").exists());
}

#[tokio::test]
async fn completions_and_man_pages_for_the_package() {
    for (shell, needle) in [
        ("bash", "complete -F _berth"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let out = run(berth_cmd().args(["completions", shell])).await;
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = text(&out.stdout);
        assert!(script.contains(needle), "{shell}: {needle:?} missing");
        assert!(script.contains("control") && script.contains("regions"));
    }
    let out = run(berth_cmd().args(["completions", "tcsh"])).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man");
    let out = run(berth_cmd().arg("man").arg(&dir)).await;
    assert!(out.status.success(), "{out:?}");
    for page in [
        "berth",
        "berth-control",
        "berth-edge",
        "berth-agent",
        "berth-dev",
    ] {
        let roff = std::fs::read_to_string(dir.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(roff.contains(".TH"), "{page}.1 is not a man page");
    }
    // Both are for packaging, not for the help screen.
    let help = text(&run(berth_cmd().arg("--help")).await.stdout);
    assert!(
        !help.contains("completions") && !help.contains("  man "),
        "{help}"
    );
}
