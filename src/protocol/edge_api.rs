//! The API between the control plane and its regional edges (SPEC §6):
//! what `berth edge` sends and receives under `/api/v1/edge/` (the paths
//! below follow [`API_ROOT`](super::API_ROOT)), with its region token.
//! Control serves it (`control::regions`); the regional edge calls it
//! (`roles::regional`). Both ends take the shapes from here.
//!
//! | call | body | answer |
//! | --- | --- | --- |
//! | `GET` [`HELLO`] | | [`Hello`] |
//! | `POST` [`HEARTBEAT`] every [`HEARTBEAT_EVERY`] | [`Heartbeat`] | `204` |
//! | `GET` [`WATCH`] (`?identity=1`: with the keyring) | | [`WatchLine`]s, one JSON object a line |
//! | `POST` [`REDEEM`] | [`Redeem`] | the [`Link`](crate::catalog::Link), or `404` |
//! | `POST` [`EXCHANGE`] | [`Exchange`] | the [`Session`](crate::catalog::Session), or `404` |
//! | `GET` [`CERTIFICATE`] | | [`EdgeCertificate`], or `503` while it is ordered |
//! | `POST` [`ACTIVITY`] every [`HEARTBEAT_EVERY`] | [`ActivityReport`] | `204` |
//! | `POST` [`WAKE`] | [`WakeRequest`] | [`WakeAnswer`] |

use crate::catalog::Change;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Who the calling edge is, and the cookie key.
pub const HELLO: &str = "/edge/hello";
/// The edge's heartbeat.
pub const HEARTBEAT: &str = "/edge/heartbeat";
/// The catalog, as a snapshot and then every change.
pub const WATCH: &str = "/edge/watch";
/// The watch, asking also for the identity keyring ([`WatchLine::Identity`]):
/// an edge that does not ask (one older than assertions) is never sent a
/// line it cannot read.
pub const WATCH_WITH_IDENTITY: &str = "/edge/watch?identity=1";
/// Share-link redemption (control counts the uses).
pub const REDEEM: &str = "/edge/redeem";
/// Sign-in code exchange.
pub const EXCHANGE: &str = "/edge/exchange";
/// A certificate for the region's host and wildcard.
pub const CERTIFICATE: &str = "/edge/certificate";

/// When the edge's ports last served a request (sent with each heartbeat).
pub const ACTIVITY: &str = "/edge/activity";
/// A visit to an offline workspace: control may call the wake webhook.
pub const WAKE: &str = "/edge/wake";

/// Edges send a heartbeat this often.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// The watch stream sends a keep-alive line this often, so an edge can tell
/// a quiet stream from a dead one.
pub const WATCH_PING_EVERY: Duration = Duration::from_secs(5);

/// `GET /edge/hello` answer: what an edge needs before it serves.
#[derive(Serialize, Deserialize, Debug)]
pub struct Hello {
    pub region: String,
    /// The region's URL: where other edges relay to this edge's agents,
    /// unless it sets `server.relay_url`.
    pub url: String,
    pub wildcard: String,
    /// The cookie-signing key, hex: edges verify and set `__Host-berth_app`,
    /// `__Host-berth_share` and `__Host-berth_state` themselves.
    pub cookie_key: String,
    /// Where browsers sign in.
    pub signin_url: String,
    /// Whether control calls a wake webhook (`[wake]`): then a visit to an
    /// offline workspace's app asks control to wake it ([`WAKE`]).
    #[serde(default)]
    pub wake: bool,
}

/// `POST /edge/heartbeat` body.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub version: String,
    pub agents: i64,
    /// The agents with a tunnel to this edge: all of them, every time.
    #[serde(default)]
    pub tunnels: Vec<i64>,
    /// Where other edges reach this one (default: the region's URL).
    #[serde(default)]
    pub relay_url: Option<String>,
}

/// One line of the watch stream (newline-delimited JSON).
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum WatchLine {
    /// A snapshot follows: forget what you know once it is complete.
    Reset,
    /// One catalog change (snapshot entries, then live ones).
    Change { change: Change },
    /// The snapshot is complete; live changes follow.
    Ready,
    /// Keep-alive.
    Ping,
    /// The keyring the edge signs identity assertions with, at the start and
    /// whenever it rotates (only when the watch asked for it). It carries
    /// private keys: it travels only on this authenticated stream.
    Identity { keyring: crate::auth::jwt::Keyring },
}

/// `GET /edge/watch` query.
#[derive(Deserialize, Serialize, Debug, Default)]
pub struct WatchQuery {
    /// `1`: send [`WatchLine::Identity`] lines.
    #[serde(default)]
    pub identity: Option<String>,
}

impl WatchLine {
    /// The line as sent: JSON, then a newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("watch lines serialize");
        v.push(b'\n');
        v
    }
}

/// `POST /edge/redeem` body: the hash of a presented share-link token.
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    pub token_hash: String,
    /// The visitor's address, for the audit log.
    #[serde(default)]
    pub source: String,
}

/// `POST /edge/exchange` body: a one-time sign-in code, the app host it
/// was minted for, and the sign-in state of the browser that presents it
/// (absent from edges older than state binding: then only a code minted
/// without a state matches, as such an edge's sign-ins are).
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub code: String,
    pub host: String,
    #[serde(default)]
    pub state: String,
}

/// `GET /edge/certificate` answer: DER, base64 (standard alphabet).
#[derive(Serialize, Deserialize, Debug)]
pub struct EdgeCertificate {
    /// Leaf first.
    pub chain: Vec<String>,
    /// PKCS#8 private key of the leaf.
    pub key: String,
}

/// `POST /edge/activity` body: the ports whose activity changed since the
/// last report control acknowledged (at most [`MAX_ACTIVITY_REPORT`]).
#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct ActivityReport {
    pub ports: Vec<PortSeen>,
}

/// The most ports one [`ActivityReport`] carries (an edge sends more in
/// several).
pub const MAX_ACTIVITY_REPORT: usize = 500;

/// When a port of an agent last served a request or held an open exchange.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortSeen {
    pub agent_id: i64,
    pub port: u16,
    /// Unix seconds.
    pub last: i64,
}

/// `POST /edge/wake` body: someone who may see an app of an offline agent
/// visited it. Control checks again who asks, then may call the webhook.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WakeRequest {
    pub agent_id: i64,
    pub port: u16,
    /// The signed-in visitor, if any.
    #[serde(default)]
    pub user_id: Option<i64>,
    /// The share link the visitor holds, if any (its public id).
    #[serde(default)]
    pub link_id: Option<String>,
    /// The visitor's address, for the audit log.
    #[serde(default)]
    pub source: String,
}

/// `POST /edge/wake` answer.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
pub struct WakeAnswer {
    /// True when this visit made control call the webhook (false when a
    /// call was made moments ago, or the visitor may not wake it).
    pub called: bool,
}
