//! gRPC through a dev URL: a port shared with `protocol = "h2c"` gets
//! HTTP/2 from the edge, so a real gRPC client (Python grpcio, TLS to the
//! edge with berth's CA) reaches a real gRPC server behind the agent, with
//! streaming and trailers end to end.

use crate::support::Berth;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/e2e/support/grpc/grpc_peer.py"
);

/// Python with grpcio, or a failure that says how to get it (never a skip).
fn python() -> Command {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the gRPC test needs python3 with grpcio (pip install grpcio); .ci/run installs it"
    );
    Command::new("python3")
}

/// Starts the gRPC server on loopback; its port.
async fn grpc_server() -> (Child, u16) {
    let mut child = python()
        .args([PEER, "server"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
        .await
        .expect("the gRPC server starts")
        .unwrap()
        .expect("the gRPC server prints its port");
    (child, line.trim().parse().unwrap())
}

/// Runs the client's calls against `authority` through the edge at `edge`.
async fn grpc_client(edge: &Berth, authority: &str, ca: &Path, token: &str) -> Value {
    let out = python()
        .args([PEER, "client", &edge.addr.to_string(), authority])
        .arg(ca)
        .arg(token)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "gRPC client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_streaming_and_trailers_through_an_h2c_port() {
    let berth = Berth::start().await;
    let (_server, port) = grpc_server().await;
    let admin = berth.admin_token.clone();
    let authority = format!(
        "{port}--main--dev--admin.berth.localhost:{}",
        berth.addr.port()
    );

    // An unknown protocol is refused (422, an invalid field), naming the
    // ones there are.
    let path = format!("/api/v1/workspaces/admin/dev/agents/main/ports/{port}/share");
    let (s, b) = berth
        .api(
            reqwest::Method::PUT,
            &path,
            &admin,
            Some(json!({"level": "owner", "protocol": "grpc"})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    let msg = b.to_string();
    assert!(msg.contains("h2c") && msg.contains("https"), "{msg}");

    let b = berth
        .share(
            &admin,
            "admin/dev/main",
            port,
            json!({"level": "owner", "protocol": "h2c"}),
        )
        .await;
    assert_eq!(b["protocol"], "h2c", "{b}");

    let opened = || berth.server.tunnels.stats.streams_opened.get();
    let before = opened();
    let got = grpc_client(&berth, &authority, &berth.ca_pem, &admin).await;
    // Three calls, one HTTP/2 connection to the app over one tunnel stream.
    assert_eq!(opened() - before, 1, "tunnel streams for three gRPC calls");
    // Unary, with the edge's identity header reaching the app.
    assert_eq!(got["echo"], "echo:hello user=admin", "{got}");
    assert_eq!(got["echo_code"], "OK", "{got}");
    assert_eq!(got["echo_trailers"]["x-trailer-check"], "kept", "{got}");
    // Server streaming: every message, then the trailers.
    assert_eq!(got["count"], json!(["n0", "n1", "n2", "n3", "n4"]), "{got}");
    assert_eq!(got["count_code"], "OK", "{got}");
    assert_eq!(got["count_trailers"]["x-count"], "5", "{got}");
    // An error status passes through as the app set it.
    assert_eq!(got["fail_code"], "NOT_FOUND", "{got}");
    assert_eq!(got["fail_details"], "no such thing: x", "{got}");
    assert_eq!(got["fail_trailers"]["x-why"], "asked-to-fail", "{got}");

    // Without credentials the edge refuses (an owner-only port).
    let out = python()
        .args([PEER, "client", &berth.addr.to_string(), &authority])
        .arg(&berth.ca_pem)
        .arg("-")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "an anonymous gRPC call got through");

    // Shared publicly, no token needed.
    berth
        .share(
            &admin,
            "admin/dev/main",
            port,
            json!({"level": "public", "protocol": "h2c"}),
        )
        .await;
    let got = grpc_client(&berth, &authority, &berth.ca_pem, "-").await;
    assert_eq!(got["echo"], "echo:hello user=-", "{got}");
    assert_eq!(got["count_trailers"]["x-count"], "5", "{got}");
    // Another client's calls ride the same warm connection to the app.
    assert_eq!(
        opened() - before,
        1,
        "warm gRPC calls opened a tunnel stream"
    );
}
