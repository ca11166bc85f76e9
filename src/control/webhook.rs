//! Calling the `[activity]` and `[wake]` webhooks: a JSON body POSTed with
//! `Berth-Event` and `Berth-Signature` ([`crate::auth::webhook`]), retried
//! with back-off while the receiver cannot be reached, times out, or answers
//! 408, 429 or 5xx; any other answer is final.

use crate::auth::webhook::{sign, EVENT_HEADER, SIGNATURE_HEADER};
use crate::config::Webhook;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::time::Duration;

/// How many times one call is tried.
pub const ATTEMPTS: u32 = 5;
/// The wait before the first retry; doubled for each next one.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP(S) client webhooks are called with.
#[derive(Clone)]
pub struct Webhooks {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhooks {
    /// A client trusting `SSL_CERT_FILE` or the system's CAs for `https://`
    /// receivers.
    pub fn new() -> Result<Webhooks, String> {
        let tls =
            crate::tls::client::client_config(None, &[]).map_err(|e| format!("webhooks: {e}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Webhooks {
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector),
        })
    }

    /// Sends `body` as `event` to `hook`, retrying as the module says.
    /// `Ok` with the receiver's status once it answers 2xx.
    pub async fn deliver(
        &self,
        hook: &Webhook,
        event: &str,
        body: &serde_json::Value,
    ) -> Result<u16, String> {
        let body = Bytes::from(serde_json::to_vec(body).expect("JSON serializes"));
        let mut wait = FIRST_RETRY;
        let mut last_error = String::new();
        for attempt in 1..=ATTEMPTS {
            match self.attempt(hook, event, body.clone()).await {
                Ok(status) if (200..300).contains(&status) => return Ok(status),
                Ok(status) if !matches!(status, 408 | 429 | 500..=599) => {
                    return Err(format!("{} answered {status}", hook.url));
                }
                Ok(status) => last_error = format!("{} answered {status}", hook.url),
                Err(e) => last_error = e,
            }
            tracing::warn!(event, attempt, error = %last_error, "webhook call failed");
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(format!("{last_error} (gave up after {ATTEMPTS} attempts)"))
    }

    async fn attempt(&self, hook: &Webhook, event: &str, body: Bytes) -> Result<u16, String> {
        let t = time::OffsetDateTime::now_utc().unix_timestamp();
        let req = http::Request::post(&hook.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            )
            .header(EVENT_HEADER, event)
            .header(
                SIGNATURE_HEADER,
                sign(hook.secret.expose().as_bytes(), t, &body),
            )
            .body(Full::new(body))
            .map_err(|e| format!("{}: {e}", hook.url))?;
        let res = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("{} did not answer within {ATTEMPT_TIMEOUT:?}", hook.url))?
            .map_err(|e| format!("cannot reach {}: {e}", hook.url))?;
        Ok(res.status().as_u16())
    }
}
