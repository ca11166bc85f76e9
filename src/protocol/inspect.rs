//! The request inspector's records (issue 16): what an edge keeps of each
//! exchange it served, as control's API shows it and as a regional edge
//! hands it to control over the relay link. Both ends take the shapes from
//! here. Credentials of berth are removed before a record is made.

use serde::{Deserialize, Serialize};

/// The path, on an edge's relay listener, where control asks for the
/// exchanges an edge holds for one port (`GET ?agent=ID&port=PORT`,
/// authenticated like every relay call).
pub const RELAY_PATH: &str = "/_berth/relay/inspect";

/// The path, on an edge's relay listener, where control follows the
/// exchanges an edge keeps for one port from now on (the live stream): the
/// same headers and secret as [`RELAY_PATH`]; the answer is a stream of
/// JSON lines, one [`Exchange`] each, as they are kept.
pub const RELAY_FOLLOW_PATH: &str = "/_berth/relay/inspect/follow";

/// The longest line of [`RELAY_FOLLOW_PATH`]'s stream a reader accepts
/// (a record is bounded by `inspector.max_bytes_per_port` and its body
/// capture; this is well above what the defaults produce).
pub const MAX_FOLLOWED_LINE: usize = 16 << 20;

/// What the exchange was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A request and its response.
    Http,
    /// A WebSocket: the upgrade and how long it stayed open.
    Websocket,
    /// Server-sent events: the stream and how long it lasted.
    Stream,
}

/// The first bytes of a body, as captured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedBody {
    /// `"utf8"` when `data` is the bytes as text, `"base64"` otherwise.
    pub encoding: String,
    pub data: String,
    /// More bytes followed than were kept.
    pub truncated: bool,
}

impl CapturedBody {
    /// The captured bytes of `data` (`truncated` if more followed).
    pub fn of(data: &[u8], truncated: bool) -> CapturedBody {
        match std::str::from_utf8(data) {
            Ok(text) => CapturedBody {
                encoding: "utf8".into(),
                data: text.to_owned(),
                truncated,
            },
            Err(_) => {
                use base64::Engine as _;
                CapturedBody {
                    encoding: "base64".into(),
                    data: base64::engine::general_purpose::STANDARD.encode(data),
                    truncated,
                }
            }
        }
    }

    /// The bytes again; `None` when `data` is not valid for `encoding`.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match self.encoding.as_str() {
            "utf8" => Some(self.data.as_bytes().to_vec()),
            "base64" => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(&self.data)
                    .ok()
            }
            _ => None,
        }
    }
}

/// One exchange through an edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Unique across edges: the serving edge's tag, a dash, a sequence.
    pub id: String,
    /// The agent and port it went to.
    pub agent_id: i64,
    pub port: u16,
    /// When the request arrived (unix milliseconds).
    pub started_at_ms: i64,
    pub kind: Kind,
    pub method: String,
    /// The URL the client asked for (share-link parameter removed).
    pub url: String,
    /// The status the client got (the app's, or the edge's error page's).
    pub status: u16,
    /// The edge's error code when the edge answered instead of the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Until the response's head (milliseconds); absent when the edge
    /// answered itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    /// Until the response body ended, or the WebSocket closed.
    pub duration_ms: f64,
    /// Body bytes, as they passed.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// As the client sent them, without berth's credentials.
    pub request_headers: HeaderList,
    /// As the client got them.
    pub response_headers: HeaderList,
    /// The first bytes of each body (absent with body capture off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<CapturedBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<CapturedBody>,
    /// The app speaks HTTPS behind the tunnel (for replay).
    #[serde(default)]
    pub app_tls: bool,
    /// The exchange this one replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
}

impl Exchange {
    /// About how many bytes the record holds, for the inspector's bounds.
    pub fn weight(&self) -> usize {
        const FIXED: usize = 256;
        let headers = |h: &HeaderList| h.weight();
        let body = |b: &Option<CapturedBody>| b.as_ref().map_or(0usize, |b| b.data.len() + 40);
        FIXED
            + self.id.len()
            + self.method.len()
            + self.url.len()
            + self.error.as_ref().map_or(0, String::len)
            + headers(&self.request_headers)
            + headers(&self.response_headers)
            + body(&self.request_body)
            + body(&self.response_body)
            + self.replay_of.as_ref().map_or(0, String::len)
    }
}

/// Header names and values kept in one buffer (`name\0value\0` each), so
/// that recording a request's headers costs one allocation, not two per
/// header; in JSON a list of `[name, value]` pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    text: String,
    count: usize,
}

impl HeaderList {
    /// An empty list with room for `bytes` of names and values.
    pub fn with_capacity(bytes: usize) -> HeaderList {
        HeaderList {
            text: String::with_capacity(bytes),
            count: 0,
        }
    }

    /// Adds one header; a NUL (which no HTTP header holds) becomes U+FFFD.
    pub fn push(&mut self, name: &str, value: &str) {
        for part in [name, value] {
            if part.contains('\0') {
                self.text.push_str(&part.replace('\0', "\u{fffd}"));
            } else {
                self.text.push_str(part);
            }
            self.text.push('\0');
        }
        self.count += 1;
    }

    /// The headers in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = self.text.split_terminator('\0');
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    /// How many headers.
    pub fn len(&self) -> usize {
        self.count
    }

    /// No headers at all.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// About how many bytes the headers take, for the inspector's bounds
    /// (as if each were a pair of strings).
    pub fn weight(&self) -> usize {
        self.text.len() + 48 * self.count
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> HeaderList {
        let mut list = HeaderList::default();
        for (name, value) in pairs {
            list.push(name.as_ref(), value.as_ref());
        }
        list
    }
}

impl std::fmt::Debug for HeaderList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for HeaderList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for HeaderList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HeaderList, D::Error> {
        Ok(Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// `POST .../requests/{id}/replay` body: what to change, all optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    pub method: Option<String>,
    /// Path and query, starting with `/`.
    pub path: Option<String>,
    /// Replaces every request header when present.
    pub headers: Option<Vec<(String, String)>>,
    /// The body as text...
    pub body: Option<String>,
    /// ...or as base64.
    pub body_base64: Option<String>,
}

/// Why a replay was not sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayRefused {
    /// The request, as recorded or edited, is not one berth can send (422).
    #[error("{0}")]
    Invalid(String),
    /// The app could not be reached (502).
    #[error("{0}")]
    Unreachable(String),
}

/// The answer of [`RELAY_PATH`]: the exchanges an edge holds for a port,
/// newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Held {
    pub exchanges: Vec<Exchange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_as_text_or_base64() {
        let text = CapturedBody::of(b"hello", false);
        assert_eq!(text.encoding, "utf8");
        assert_eq!(text.bytes().unwrap(), b"hello");
        let bin = CapturedBody::of(&[0xff, 0, 1], true);
        assert_eq!(bin.encoding, "base64");
        assert!(bin.truncated);
        assert_eq!(bin.bytes().unwrap(), vec![0xff, 0, 1]);
        let bad = CapturedBody {
            encoding: "rot13".into(),
            data: String::new(),
            truncated: false,
        };
        assert_eq!(bad.bytes(), None);
    }

    #[test]
    fn header_lists_keep_order_repeats_and_empty_values_and_read_as_pairs() {
        let pairs = [
            ("accept", "*/*"),
            ("x-empty", ""),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-nul", "a\0b"),
        ];
        let list: HeaderList = pairs.iter().copied().collect();
        assert_eq!(list.len(), 5);
        let back: Vec<(&str, &str)> = list.iter().collect();
        assert_eq!(&back[..4], &pairs[..4]);
        assert_eq!(
            back[4],
            ("x-nul", "a\u{fffd}b"),
            "a NUL cannot split an entry"
        );
        let json = serde_json::to_value(&list).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                ["accept", "*/*"],
                ["x-empty", ""],
                ["cookie", "a=1"],
                ["cookie", "b=2"],
                ["x-nul", "a\u{fffd}b"]
            ])
        );
        let again: HeaderList = serde_json::from_value(json).unwrap();
        assert_eq!(again, list);
        assert!(HeaderList::default().is_empty());
        assert_eq!(HeaderList::default().iter().count(), 0);
        let empty: HeaderList = serde_json::from_str("[]").unwrap();
        assert!(empty.is_empty());
        assert!(serde_json::from_str::<HeaderList>(r#"[["only-a-name"]]"#).is_err());
    }
}
