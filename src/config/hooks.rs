//! `[activity]` and `[wake]`: the webhooks control calls when a workspace
//! has been idle for a while (so a platform can stop it) and when someone
//! visits an app of a workspace whose agent is offline (so it can start it).

use super::schema::{ActivitySection, WakeSection};
use super::{ConfigError, Problems};
use crate::secret::Secret;
use std::time::Duration;

/// A webhook's address and the key its bodies are signed with.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// `http://` or `https://` URL control POSTs to.
    pub url: String,
    /// HMAC-SHA256 key for the `Berth-Signature` header.
    pub secret: Secret,
}

/// Activity tracking, from `[activity]`.
#[derive(Clone, Debug)]
pub struct ActivityConfig {
    /// Called once when a workspace has been idle for `idle_after`.
    pub webhook: Option<Webhook>,
    /// How long without a request or an open WebSocket counts as idle.
    pub idle_after: Duration,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            webhook: None,
            idle_after: DEFAULT_IDLE_AFTER,
        }
    }
}

/// Wake on visit, from `[wake]` (off unless `webhook_url` is set).
#[derive(Clone, Debug)]
pub struct WakeConfig {
    /// Called when an allowed visitor reaches an offline workspace.
    pub webhook: Webhook,
    /// The least time between two calls for one workspace.
    pub cooldown: Duration,
}

/// An idle workspace is reported after 30 minutes unless configured.
pub const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(30 * 60);
/// One wake call per workspace a minute unless configured.
pub const DEFAULT_WAKE_COOLDOWN: Duration = Duration::from_secs(60);
/// The shortest webhook secret accepted (bytes).
const MIN_SECRET: usize = 16;

impl ActivityConfig {
    /// Checks `[activity]`.
    pub(super) fn resolve(s: ActivitySection) -> Result<ActivityConfig, ConfigError> {
        let mut p = Problems::default();
        let webhook = p.take(webhook(
            s.webhook_url,
            s.webhook_secret,
            "activity.webhook_url",
            "activity.webhook_secret",
        ));
        let idle_after = p.take(seconds(
            s.idle_after,
            DEFAULT_IDLE_AFTER,
            1..=30 * 86_400,
            "activity.idle_after",
        ));
        let cfg = (|| {
            Some(ActivityConfig {
                webhook: webhook?,
                idle_after: idle_after?,
            })
        })();
        p.finish(cfg)
    }
}

impl WakeConfig {
    /// Checks `[wake]`; `None` when `webhook_url` is not set.
    pub(super) fn resolve(s: WakeSection) -> Result<Option<WakeConfig>, ConfigError> {
        let mut p = Problems::default();
        let webhook = p.take(webhook(
            s.webhook_url,
            s.webhook_secret,
            "wake.webhook_url",
            "wake.webhook_secret",
        ));
        let cooldown = p.take(seconds(
            s.cooldown_secs,
            DEFAULT_WAKE_COOLDOWN,
            1..=86_400,
            "wake.cooldown_secs",
        ));
        let cfg = match (webhook, cooldown) {
            (Some(webhook), Some(cooldown)) => {
                Some(webhook.map(|webhook| WakeConfig { webhook, cooldown }))
            }
            _ => None,
        };
        p.finish(cfg)
    }
}

/// A webhook from its URL and secret keys: both or neither.
fn webhook(
    url: Option<String>,
    secret: Option<String>,
    url_key: &'static str,
    secret_key: &'static str,
) -> Result<Option<Webhook>, ConfigError> {
    let url = url.filter(|u| !u.is_empty());
    match (url, secret) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: secret_key,
            message: format!("is set but {url_key} is not: set both, or neither"),
        }),
        (Some(_), None) => Err(ConfigError::Invalid {
            key: secret_key,
            message: format!(
                "is required with {url_key}: the receiver checks each call's Berth-Signature with it (at least {MIN_SECRET} characters)"
            ),
        }),
        (Some(url), Some(secret)) => {
            let parsed: Option<http::Uri> = url.parse().ok();
            let fine = parsed.as_ref().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !fine || url.len() > 2048 {
                return Err(ConfigError::Invalid {
                    key: url_key,
                    message: format!("{url:?} is not an http:// or https:// URL (at most 2048 bytes)"),
                });
            }
            if secret.len() < MIN_SECRET {
                return Err(ConfigError::Invalid {
                    key: secret_key,
                    message: format!("must be at least {MIN_SECRET} characters (a random string)"),
                });
            }
            Ok(Some(Webhook {
                url,
                secret: Secret::new(secret),
            }))
        }
    }
}

/// Whole seconds within `range`, or `default`.
fn seconds(
    value: Option<i64>,
    default: Duration,
    range: std::ops::RangeInclusive<i64>,
    key: &'static str,
) -> Result<Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(n) if range.contains(&n) => Ok(Duration::from_secs(n as u64)),
        Some(n) => Err(ConfigError::Invalid {
            key,
            message: format!(
                "{n} is not between {} and {} seconds",
                range.start(),
                range.end()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(
        url: Option<&str>,
        secret: Option<&str>,
        idle: Option<i64>,
    ) -> Result<ActivityConfig, ConfigError> {
        ActivityConfig::resolve(ActivitySection {
            webhook_url: url.map(Into::into),
            webhook_secret: secret.map(Into::into),
            idle_after: idle,
        })
    }

    #[test]
    fn webhooks_need_a_url_and_a_long_secret_and_name_the_key_otherwise() {
        let ok = activity(
            Some("https://hooks.example.com/idle"),
            Some("0123456789abcdef"),
            Some(60),
        )
        .unwrap();
        assert_eq!(ok.idle_after, Duration::from_secs(60));
        assert!(ok.webhook.is_some());
        let off = activity(None, None, None).unwrap();
        assert!(off.webhook.is_none());
        assert_eq!(off.idle_after, DEFAULT_IDLE_AFTER);
        let cases = [
            (
                activity(Some("https://h/x"), None, None),
                "activity.webhook_secret",
            ),
            (
                activity(None, Some("0123456789abcdef"), None),
                "activity.webhook_secret",
            ),
            (
                activity(Some("https://h/x"), Some("short"), None),
                "activity.webhook_secret",
            ),
            (
                activity(Some("ftp://h/x"), Some("0123456789abcdef"), None),
                "activity.webhook_url",
            ),
            (
                activity(Some("not a url"), Some("0123456789abcdef"), None),
                "activity.webhook_url",
            ),
            (activity(None, None, Some(0)), "activity.idle_after"),
        ];
        for (got, key) in cases {
            let e = got.unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
        let wake = |cooldown| {
            WakeConfig::resolve(WakeSection {
                webhook_url: Some("http://127.0.0.1:9/wake".into()),
                webhook_secret: Some("0123456789abcdef".into()),
                cooldown_secs: cooldown,
            })
        };
        assert_eq!(wake(None).unwrap().unwrap().cooldown, DEFAULT_WAKE_COOLDOWN);
        assert!(wake(Some(0))
            .unwrap_err()
            .to_string()
            .contains("wake.cooldown_secs"));
        assert!(WakeConfig::resolve(WakeSection::default())
            .unwrap()
            .is_none());
    }
}
