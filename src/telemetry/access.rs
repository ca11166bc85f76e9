//! The access log: one line per proxied request on `berth::access`, in the
//! log's format, written by hand rather than by tracing's formatter.
//!
//! The line is the same as `tracing::info!(target: "berth::access", ...)`
//! would print (text or JSON), but tracing's field visitors, its timestamp
//! formatting and its `fmt` machinery cost about a tenth of the edge's CPU
//! per 1 KiB request (benches/RESULTS.md); this builds the line in a reused
//! buffer with the timestamp's date and time cached per second. It still
//! obeys `RUST_LOG` (`berth::access=off` silences it) and goes through the
//! same writer thread as every other line. On a terminal, where lines are
//! coloured and speed does not matter, it is a plain tracing event.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use tracing_appender::non_blocking::NonBlocking;

/// One proxied request, as its access-log line tells it.
pub struct Access<'a> {
    pub method: &'a str,
    /// `Host` as sent.
    pub host: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// From the request's arrival to its response head.
    pub micros: u64,
    pub version: http::Version,
    pub peer: IpAddr,
    /// Whose fault a refusal or failure was (client, tunnel, app, berth).
    pub fault: Option<&'a str>,
}

/// Where lines go when they are written by hand.
struct Sink {
    writer: NonBlocking,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Writes access lines straight to `writer` from now on (set once, by
/// `init_tracing`, for a log that is not a terminal).
pub(super) fn install(writer: NonBlocking, json: bool) {
    let _ = SINK.set(Sink { writer, json });
}

/// Logs `a`, unless `RUST_LOG` turns `berth::access` off.
pub fn log(a: &Access<'_>) {
    if !tracing::enabled!(target: "berth::access", tracing::Level::INFO) {
        return;
    }
    let Some(sink) = SINK.get() else {
        tracing::info!(
            target: "berth::access",
            method = a.method,
            host = a.host,
            path = a.path,
            status = a.status,
            ms = a.micros as f64 / 1000.0,
            version = ?a.version,
            peer = %a.peer,
            fault = a.fault,
        );
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    LINE.with(|cell| {
        let (line, writer) = &mut *cell.borrow_mut();
        line.clear();
        if sink.json {
            json_line(line, now, a);
        } else {
            text_line(line, now, a);
        }
        // One write is one message to the writer thread: a whole line.
        let writer = writer.get_or_insert_with(|| sink.writer.clone());
        let _ = writer.write_all(line);
    });
}

thread_local! {
    /// The line being built, reused by every request of this thread, and
    /// this thread's handle on the writer.
    static LINE: RefCell<(Vec<u8>, Option<NonBlocking>)> =
        RefCell::new((Vec::with_capacity(256), None));
    /// `YYYY-MM-DDTHH:MM:SS` of the second last seen by this thread.
    static CLOCK: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `2026-12-06T08:37:04.996027Z`, as tracing's timer prints it.
fn timestamp(out: &mut Vec<u8>, now: std::time::Duration) {
    let secs = now.as_secs();
    CLOCK.with(|clock| {
        let mut clock = clock.borrow_mut();
        if clock.0 != secs {
            let t = time::OffsetDateTime::from_unix_timestamp(secs as i64)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let mut text = Vec::with_capacity(19);
            let _ = write!(
                text,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            if let Ok(fixed) = <[u8; 19]>::try_from(&text[..]) {
                *clock = (secs, fixed);
            }
        }
        out.extend_from_slice(&clock.1);
    });
    out.push(b'.');
    digits(out, u64::from(now.subsec_micros()), 6);
    out.push(b'Z');
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 && buf.len() - i >= width {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `ip` as text: IPv4 without `fmt` (it costs ~1k instructions a request
/// through `Display`, and every request writes one or two).
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                digits(out, u64::from(octet), 1);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// Milliseconds with three decimals: `0.512`.
fn millis(out: &mut Vec<u8>, micros: u64) {
    digits(out, micros / 1000, 1);
    out.push(b'.');
    digits(out, micros % 1000, 3);
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/?",
    }
}

/// `TIMESTAMP  INFO berth::access: method=GET host=... fault=app`
fn text_line(out: &mut Vec<u8>, now: std::time::Duration, a: &Access<'_>) {
    timestamp(out, now);
    out.extend_from_slice(b"  INFO berth::access: method=");
    out.extend_from_slice(a.method.as_bytes());
    out.extend_from_slice(b" host=");
    out.extend_from_slice(a.host.as_bytes());
    out.extend_from_slice(b" path=");
    out.extend_from_slice(a.path.as_bytes());
    out.extend_from_slice(b" status=");
    digits(out, u64::from(a.status), 1);
    out.extend_from_slice(b" ms=");
    millis(out, a.micros);
    out.extend_from_slice(b" version=");
    out.extend_from_slice(version(a.version).as_bytes());
    out.extend_from_slice(b" peer=");
    write_ip(out, a.peer);
    if let Some(fault) = a.fault {
        out.extend_from_slice(b" fault=");
        out.extend_from_slice(fault.as_bytes());
    }
    out.push(b'\n');
}

/// The same as one JSON object, as tracing's JSON format with flattened
/// fields prints it.
fn json_line(out: &mut Vec<u8>, now: std::time::Duration, a: &Access<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
    json_str(out, a.method);
    out.extend_from_slice(b",\"host\":");
    json_str(out, a.host);
    out.extend_from_slice(b",\"path\":");
    json_str(out, a.path);
    out.extend_from_slice(b",\"status\":");
    digits(out, u64::from(a.status), 1);
    out.extend_from_slice(b",\"ms\":");
    millis(out, a.micros);
    out.extend_from_slice(b",\"version\":\"");
    out.extend_from_slice(version(a.version).as_bytes());
    out.extend_from_slice(b"\",\"peer\":\"");
    write_ip(out, a.peer);
    out.push(b'"');
    if let Some(fault) = a.fault {
        out.extend_from_slice(b",\"fault\":");
        json_str(out, fault);
    }
    out.extend_from_slice(b",\"target\":\"berth::access\"}\n");
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn access(fault: Option<&'static str>, path: &'static str) -> Access<'static> {
        Access {
            method: "GET",
            host: "3000--main--ws--alice.berth.localhost:8443",
            path,
            status: 502,
            micros: 12_034,
            version: http::Version::HTTP_2,
            peer: "::1".parse().unwrap(),
            fault,
        }
    }

    /// 2026-12-06T08:37:04.000042Z
    const NOW: Duration = Duration::new(1_796_546_224, 42_000);

    #[test]
    fn a_text_line_reads_like_tracings() {
        let mut out = Vec::new();
        text_line(&mut out, NOW, &access(Some("tunnel"), "/a?b=1"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-06T08:37:04.000042Z  INFO berth::access: method=GET \
             host=3000--main--ws--alice.berth.localhost:8443 path=/a?b=1 status=502 \
             ms=12.034 version=HTTP/2.0 peer=::1 fault=tunnel\n"
        );
        let mut out = Vec::new();
        text_line(
            &mut out,
            NOW + Duration::from_secs(86_400),
            &access(None, "/"),
        );
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.starts_with("2026-12-07T08:37:04.000042Z  INFO"),
            "{line}"
        );
        assert!(
            line.ends_with("peer=::1\n"),
            "no fault field without a fault: {line}"
        );
    }

    #[test]
    fn a_json_line_parses_with_every_field_even_from_a_hostile_path() {
        let mut out = Vec::new();
        json_line(&mut out, NOW, &access(Some("app"), "/\"x\\\u{1}\t"));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-12-06T08:37:04.000042Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["target"], "berth::access");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/\"x\\\u{1}\t");
        assert_eq!(v["status"], 502);
        assert_eq!(v["ms"], 12.034);
        assert_eq!(v["version"], "HTTP/2.0");
        assert_eq!(v["peer"], "::1");
        assert_eq!(v["fault"], "app");
        let mut out = Vec::new();
        json_line(&mut out, NOW, &access(None, "/"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("fault").is_none());
    }

    #[test]
    fn addresses_read_as_display_prints_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = Vec::new();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn numbers_are_padded_where_the_format_says() {
        let mut out = Vec::new();
        digits(&mut out, 0, 1);
        out.push(b' ');
        digits(&mut out, 7, 6);
        out.push(b' ');
        digits(&mut out, u64::MAX, 1);
        out.push(b' ');
        millis(&mut out, 5);
        out.push(b' ');
        millis(&mut out, 1_000_000);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 000007 18446744073709551615 0.005 1000.000"
        );
    }
}
