//! `berth port-forward`: local TCP listeners whose connections are carried,
//! each in its own `Upgrade: berth-tcp` connection to the port's app host
//! ([`crate::protocol::tcp`]), through the edge and the agent's tunnel to a
//! workspace port. Access is probed once per forward before listening.

use super::signed_in;
use super::target::{check_name, resolve_target, Resolved};
use crate::client::{ClientError, PortForwardArgs, Session, Target};
use crate::protocol::tcp::{PROBE_HEADER, UPGRADE};
use crate::tls::client::{client_config, connect};
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long connecting to the edge and its answer may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest error answer read from the edge.
const MAX_ERROR: usize = 64 * 1024;

/// One forward, ready to dial: the app host of the remote port.
#[derive(Clone)]
struct Dial {
    host: String,
    port: u16,
    token: String,
    tls: Arc<rustls::ClientConfig>,
    remote: u16,
}

/// `berth port-forward [WORKSPACE[/AGENT]] --tcp [LOCAL:]REMOTE ...`.
pub(super) async fn port_forward(a: PortForwardArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let mut t = Target {
        user: a.user.clone(),
        ..Default::default()
    };
    if let Some(target) = &a.target {
        let (w, ag) = match target.split_once('/') {
            Some((w, ag)) => (w, Some(ag)),
            None => (target.as_str(), None),
        };
        check_name("workspace", w)?;
        t.workspace = Some(w.to_owned());
        if let Some(ag) = ag {
            check_name("agent", ag)?;
            t.agent = Some(ag.to_owned());
        }
    }
    let me = s.get_ok("/api/v1/me").await?;
    let app_url = me["app_url"].as_str().map(str::to_owned).ok_or_else(|| {
        ClientError::Transport(
            "the server did not say where its apps are (GET /api/v1/me has no app_url): is this berth too old for port-forward?".into(),
        )
    })?;
    let named = match resolve_target(&s, &t).await {
        Ok(r) => r,
        // A workspace shared with the caller is not theirs to list: with
        // its owner and name given, the edge resolves the short host.
        Err(ClientError::Api { status: 404, .. }) if t.user.is_some() && t.workspace.is_some() => {
            Resolved {
                user: t.user.clone().unwrap_or_default(),
                workspace: t.workspace.clone().unwrap_or_default(),
                agent: String::new(),
            }
        }
        Err(e) => return Err(e),
    };
    let r = &named;
    let tls = client_config(s.ca_file.as_deref(), &[b"http/1.1"])
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    let mut ready = Vec::new();
    for f in &a.tcp {
        let dial = dial_for(&s, &app_url, r, f.remote, tls.clone())?;
        // Access first: a refusal ends the command before anything listens.
        probe(&dial).await?;
        let listener = TcpListener::bind((a.bind, f.local)).await.map_err(|e| {
            ClientError::Usage(format!(
                "cannot listen on {}:{}: {e} (choose another local port: --tcp LOCAL:{})",
                a.bind, f.local, f.remote
            ))
        })?;
        ready.push((*f, listener, dial));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (f, listener, dial) in ready {
        let local = listener
            .local_addr()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let agent = if r.agent.is_empty() { "" } else { "/" };
        println!(
            "Forwarding {local} -> port {} of {}/{}{agent}{} (https://{}:{})",
            f.remote, r.user, r.workspace, r.agent, dial.host, dial.port
        );
        tasks.spawn(serve(listener, local, dial));
    }
    println!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(_) = tasks.join_next() => Err(ClientError::Transport("a listener stopped".into())),
    }
}

/// Where to dial for `remote`: the app host `PORT--AGENT--WS--USER` (without
/// the agent when it is not known: the workspace's only one) under `app_url`.
fn dial_for(
    s: &Session,
    app_url: &str,
    r: &Resolved,
    remote: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Dial, ClientError> {
    let label = match r.agent.as_str() {
        "" => format!("{remote}--{}--{}", r.workspace, r.user),
        agent => format!("{remote}--{agent}--{}--{}", r.workspace, r.user),
    };
    let url = app_url.replace("{label}", &label);
    let ep = crate::client::http::parse_url(&url)?;
    Ok(Dial {
        host: ep.host,
        port: ep.port,
        token: s.token.clone(),
        tls,
        remote,
    })
}

/// Sends the upgrade request (with `probe`, only the access check) on a
/// fresh connection; the edge's answer and the connection's driver.
async fn request(
    d: &Dial,
    probe: bool,
) -> Result<http::Response<hyper::body::Incoming>, ClientError> {
    let fail = |e: &dyn std::fmt::Display| {
        ClientError::Transport(format!("cannot reach {}:{}: {e}", d.host, d.port))
    };
    let stream = connect(&d.host, d.port, d.tls.clone())
        .await
        .map_err(|e| fail(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(&e))?;
    tokio::spawn(conn.with_upgrades());
    let mut req = Request::get("/")
        .header(header::HOST, format!("{}:{}", d.host, d.port))
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, UPGRADE)
        .header(
            header::USER_AGENT,
            concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::AUTHORIZATION, format!("Bearer {}", d.token));
    if probe {
        req = req.header(PROBE_HEADER, "1");
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::Usage(format!("cannot build the request: {e}")))?;
    sender.send_request(req).await.map_err(|e| fail(&e))
}

/// The edge's refusal as an error: its `message`, with the status.
async fn refusal(d: &Dial, res: http::Response<hyper::body::Incoming>) -> ClientError {
    let status = res.status();
    let body = Limited::new(res.into_body(), MAX_ERROR)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let message = v["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    ClientError::Api {
        status: status.as_u16(),
        code: v["error"].as_str().unwrap_or_default().to_owned(),
        message: format!(
            "port {} at {}: {} {message}",
            d.remote,
            d.host,
            status.as_u16()
        ),
    }
}

/// Checks once that the edge lets this forward through.
async fn probe(d: &Dial) -> Result<(), ClientError> {
    let res = tokio::time::timeout(OPEN_TIMEOUT, request(d, true))
        .await
        .map_err(|_| ClientError::Transport(format!("{} did not answer in time", d.host)))??;
    if res.status() == StatusCode::NO_CONTENT {
        return Ok(());
    }
    Err(refusal(d, res).await)
}

/// Accepts local connections and carries each through its own upgrade.
async fn serve(listener: TcpListener, local: SocketAddr, d: Dial) {
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("berth: {local}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let d = d.clone();
        tokio::spawn(async move {
            if let Err(e) = carry(conn, &d).await {
                eprintln!("berth: {local} -> port {}: {e}", d.remote);
            }
        });
    }
}

/// One local connection: opens the stream through the edge and copies
/// bytes both ways until either side ends.
async fn carry(mut conn: TcpStream, d: &Dial) -> Result<(), ClientError> {
    let _ = conn.set_nodelay(true);
    let mut res = tokio::time::timeout(OPEN_TIMEOUT, request(d, false))
        .await
        .map_err(|_| ClientError::Transport(format!("{} did not answer in time", d.host)))??;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(d, res).await);
    }
    let upgraded = hyper::upgrade::on(&mut res)
        .await
        .map_err(|e| ClientError::Transport(format!("the edge's upgrade failed: {e}")))?;
    let mut remote = TokioIo::new(upgraded);
    tokio::io::copy_bidirectional(&mut conn, &mut remote)
        .await
        .map(drop)
        .map_err(|e| ClientError::Transport(format!("connection ended: {e}")))
}
