//! A raw HTTP/2 client over TLS (ALPN `h2`), for frames no polite client
//! would send: header blocks are HPACK-encoded by loona-hpack with whatever
//! bytes the test gives (upper case, CR, LF, NUL, pseudo-headers anywhere),
//! and frames are written as they are. Responses are read frame by frame.

use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// `PROTOCOL_ERROR`
pub const PROTOCOL_ERROR: u32 = 0x1;
/// `CANCEL`
pub const CANCEL: u32 = 0x8;

/// Opens TLS to `127.0.0.1:port` with SNI `sni` and the given ALPN list.
pub async fn tls(ca: &Path, sni: &str, port: u16, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let cfg = berth::tls::client::client_config(Some(ca), alpn).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        berth::tls::client::connect(sni, port, cfg),
    )
    .await
    .expect("TLS connect timed out")
    .expect("TLS connect")
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response.
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `RST_STREAM` with this error code.
    Reset(u32),
    /// `GOAWAY` (this error code) that leaves the stream unanswered.
    GoAway(u32),
    /// The connection closed with the stream unanswered.
    Closed,
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Response { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The JSON body of a response.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Outcome::Response { body, .. } => serde_json::from_slice(body)
                .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(body))),
            other => panic!("no response: {other:?}"),
        }
    }
}

/// One HTTP/2 connection, driven by hand.
pub struct H2 {
    io: TlsStream<TcpStream>,
    encoder: loona_hpack::Encoder<'static>,
    decoder: loona_hpack::Decoder<'static>,
    buf: Vec<u8>,
}

impl H2 {
    /// Connects (ALPN `h2`, which the server must choose) and sends the
    /// preface and an empty SETTINGS frame.
    pub async fn connect(ca: &Path, sni: &str, port: u16) -> H2 {
        let io = tls(ca, sni, port, &[b"h2"]).await;
        assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut h2 = H2 {
            io,
            encoder: loona_hpack::Encoder::new(),
            decoder: loona_hpack::Decoder::new(),
            buf: Vec::new(),
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        h2.send(&hello).await;
        h2
    }

    /// Writes `bytes` (a failed write is ignored: the server may close first).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.io.write_all(bytes).await;
        let _ = self.io.flush().await;
    }

    /// A HEADERS frame (END_HEADERS, and END_STREAM if `end`) carrying
    /// `fields` exactly as given, in order.
    pub fn headers(&mut self, stream: u32, fields: &[(&[u8], &[u8])], end: bool) -> Vec<u8> {
        let block = self.encoder.encode(fields.iter().copied());
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        frame(HEADERS, flags, stream, &block)
    }

    /// A DATA frame.
    pub fn data(stream: u32, data: &[u8], end: bool) -> Vec<u8> {
        frame(DATA, if end { END_STREAM } else { 0 }, stream, data)
    }

    /// An RST_STREAM frame.
    pub fn rst(stream: u32, code: u32) -> Vec<u8> {
        frame(RST_STREAM, 0, stream, &code.to_be_bytes())
    }

    /// Reads frames until `stream` ends, at most `limit`; answers SETTINGS
    /// and PING on the way.
    pub async fn outcome(&mut self, stream: u32, limit: Duration) -> Outcome {
        let deadline = tokio::time::Instant::now() + limit;
        let mut block = Vec::new();
        let mut status = None;
        let mut headers = Vec::new();
        let mut body = Vec::new();
        loop {
            let (kind, flags, id, payload) = match self.next_frame(deadline).await {
                Some(f) => f,
                None => return Outcome::Closed,
            };
            match kind {
                SETTINGS if flags & ACK == 0 => self.send(&frame(SETTINGS, ACK, 0, &[])).await,
                PING if flags & ACK == 0 => self.send(&frame(PING, ACK, 0, &payload)).await,
                GOAWAY => {
                    let last = u32::from_be_bytes(payload[0..4].try_into().unwrap()) & 0x7fff_ffff;
                    let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                    if last < stream {
                        return Outcome::GoAway(code);
                    }
                }
                RST_STREAM if id == stream => {
                    return Outcome::Reset(u32::from_be_bytes(payload[0..4].try_into().unwrap()))
                }
                HEADERS | CONTINUATION if id == stream => {
                    let mut p = &payload[..];
                    if kind == HEADERS {
                        let pad = if flags & PADDED != 0 {
                            let n = p[0] as usize;
                            p = &p[1..];
                            n
                        } else {
                            0
                        };
                        if flags & PRIORITY != 0 {
                            p = &p[5..];
                        }
                        p = &p[..p.len() - pad];
                    }
                    block.extend_from_slice(p);
                    if flags & END_HEADERS != 0 {
                        let fields = self.decoder.decode(&block).expect("valid HPACK");
                        block.clear();
                        for (k, v) in fields {
                            let (k, v) = (
                                String::from_utf8_lossy(&k).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            );
                            if k == ":status" {
                                // An informational answer is followed by another.
                                let s: u16 = v.parse().unwrap();
                                if s >= 200 {
                                    status = Some(s);
                                }
                            } else {
                                headers.push((k, v));
                            }
                        }
                    }
                    if flags & END_STREAM != 0 {
                        if let Some(status) = status {
                            return Outcome::Response {
                                status,
                                headers,
                                body,
                            };
                        }
                    }
                }
                DATA if id == stream => {
                    body.extend_from_slice(&payload);
                    // Give the credit back so long answers are not stuck.
                    if !payload.is_empty() {
                        let inc = (payload.len() as u32).to_be_bytes();
                        let mut w = frame(WINDOW_UPDATE, 0, 0, &inc);
                        w.extend(frame(WINDOW_UPDATE, 0, stream, &inc));
                        self.send(&w).await;
                    }
                    if flags & END_STREAM != 0 {
                        return Outcome::Response {
                            status: status.expect("DATA after a final status"),
                            headers,
                            body,
                        };
                    }
                }
                _ => {}
            }
        }
    }

    /// The next frame: (type, flags, stream, payload); `None` at EOF, on a
    /// read error, or when `deadline` passes.
    async fn next_frame(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            if self.buf.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
                if self.buf.len() >= 9 + len {
                    let kind = self.buf[3];
                    let flags = self.buf[4];
                    let id = u32::from_be_bytes(self.buf[5..9].try_into().unwrap()) & 0x7fff_ffff;
                    let payload = self.buf[9..9 + len].to_vec();
                    self.buf.drain(..9 + len);
                    return Some((kind, flags, id, payload));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no end of the stream in time"),
            }
        }
    }
}

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}
