//! `berth inspect PORT`: a port's recent requests, then new ones as the
//! edge records them (the inspector's server-sent events), one line each,
//! or one JSON object a line with `--json`.

use super::signed_in;
use super::target::resolve_target;
use crate::client::http::parse_url;
use crate::client::{ClientError, InspectArgs, Session};
use crate::tls::client::{client_config, send};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;
use std::collections::HashSet;

/// `berth inspect`.
pub(super) async fn inspect(a: InspectArgs) -> Result<(), ClientError> {
    let s = signed_in()?;
    let t = resolve_target(&s, &a.target).await?;
    let path = format!("{}/ports/{}/requests", t.agent_path(), a.port);
    // Follow first, then list, so nothing falls between the two; what
    // both carry is printed once.
    let live = if a.no_follow {
        None
    } else {
        Some(open_stream(&s, &path).await?)
    };
    let recent = s
        .get_ok(&format!("{path}?limit={}", a.lines.max(1)))
        .await?;
    let mut seen = HashSet::new();
    let mut recent: Vec<Value> = recent["requests"].as_array().cloned().unwrap_or_default();
    recent.truncate(usize::from(a.lines));
    for e in recent.iter().rev() {
        seen.insert(e["id"].as_str().unwrap_or("").to_owned());
        print_exchange(e, a.json);
    }
    let Some(mut body) = live else {
        return Ok(());
    };
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ClientError::Transport(format!("the live stream ended: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(end) = find(&buf, b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            if let Some(e) = exchange_of(&event) {
                if seen.insert(e["id"].as_str().unwrap_or("").to_owned()) {
                    print_exchange(&e, a.json);
                }
            }
        }
    }
    Err(ClientError::Transport(
        "the server closed the live stream".into(),
    ))
}

/// `GET path` with `Accept: text/event-stream`: the response body, once
/// the server said 200.
async fn open_stream(s: &Session, path: &str) -> Result<hyper::body::Incoming, ClientError> {
    let ep = parse_url(&s.url)?;
    let tls = client_config(s.ca_file.as_deref(), &[b"http/1.1"])
        .map_err(|e| ClientError::Usage(e.to_string()))?;
    let req = http::Request::get(format!("{}{path}", ep.base_path))
        .header(http::header::HOST, &ep.authority)
        .header(http::header::ACCEPT, "text/event-stream")
        .header(http::header::AUTHORIZATION, format!("Bearer {}", s.token))
        .header(
            http::header::USER_AGENT,
            concat!("berth-cli/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| ClientError::Usage(format!("cannot build the request: {e}")))?;
    let res = send(&ep.host, ep.port, tls, req)
        .await
        .map_err(|e| ClientError::Transport(format!("{}: {e}", s.url)))?;
    let status = res.status();
    if status.is_success() {
        return Ok(res.into_body());
    }
    // An API error: read it for its sentence.
    let raw = http_body_util::Limited::new(res.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Err(ClientError::Api {
        status: status.as_u16(),
        code: v["error"].as_str().unwrap_or("").to_owned(),
        message: v["message"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_owned),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The exchange an `event: exchange` carries; `None` for other events and
/// comments.
fn exchange_of(event: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(event).ok()?;
    let mut kind = "message";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(k) = line.strip_prefix("event:") {
            kind = k.trim();
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push_str(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    (kind == "exchange").then(|| serde_json::from_str(&data).ok())?
}

fn print_exchange(e: &Value, json: bool) {
    if json {
        println!("{e}");
    } else {
        println!("{}", line(e));
    }
}

/// `12:04:05.123  GET     200   12.3 ms    1.2 KiB  /path?q  (websocket)`
fn line(e: &Value) -> String {
    let when = e["started_at_ms"].as_i64().unwrap_or(0);
    let clock = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(when) * 1_000_000)
        .map(|t| {
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            )
        })
        .unwrap_or_default();
    let url = e["url"].as_str().unwrap_or("");
    let path = url
        .strip_prefix("https://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    let mut out = format!(
        "{clock}  {:<7} {:>3}  {:>9}  {:>9}  {path}",
        e["method"].as_str().unwrap_or("?"),
        e["status"].as_u64().unwrap_or(0),
        duration(e["duration_ms"].as_f64().unwrap_or(0.0)),
        size(e["response_bytes"].as_u64().unwrap_or(0)),
    );
    match e["kind"].as_str() {
        Some("websocket") => out.push_str("  (websocket)"),
        Some("stream") => out.push_str("  (event stream)"),
        _ => {}
    }
    if let Some(code) = e["error"].as_str() {
        out.push_str(&format!("  [berth: {code}]"));
    }
    if e["replay_of"].is_string() {
        out.push_str("  (replay)");
    }
    out
}

fn duration(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_carry_exchanges_and_nothing_else() {
        let e = exchange_of(b"event: exchange\nid: a-1\ndata: {\"id\":\"a-1\"}\n\n").unwrap();
        assert_eq!(e["id"], "a-1");
        assert!(exchange_of(b": keep-alive\n\n").is_none());
        assert!(exchange_of(b"event: lagged\ndata: {\"missed\":3}\n\n").is_none());
        assert!(exchange_of(b"event: exchange\ndata: not json\n\n").is_none());
    }

    #[test]
    fn lines_show_method_status_time_size_and_path() {
        let l = line(&json!({
            "started_at_ms": 0, "method": "GET", "status": 200, "duration_ms": 1500.0,
            "response_bytes": 2048, "url": "https://3000--a.example.com/x?y=1", "kind": "websocket"
        }));
        assert_eq!(
            l,
            "00:00:00.000  GET     200      1.5 s    2.0 KiB  /x?y=1  (websocket)"
        );
    }
}
