//! Logging and metrics: the tracing subscriber, the Prometheus registry, and
//! the admin listener that serves `/metrics`, `/healthz` and `/readyz` off the
//! public port.

use crate::config::LogFormat;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

pub mod access;

/// Sets up logging: `RUST_LOG` or `info`, text or JSON lines on stderr.
///
/// Lines are written by a dedicated thread, not by the request's tokio
/// worker: an access line per request written synchronously to a slow
/// stderr (a pipe to a log shipper) would stall every request on that
/// worker. Nothing is dropped: when the thread falls 128k lines behind,
/// logging waits. Keep the returned guard until exit; dropping it flushes.
#[must_use = "dropping the guard stops the log writer"]
pub fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("berth-log")
        // Lines written while the thread has a backlog share one write(2);
        // it flushes whenever it catches up.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !ansi {
        access::install(writer.clone(), matches!(format, LogFormat::Json));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    guard
}

/// `status="502"`
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The HTTP status sent to the client.
    pub status: u16,
}

/// `direction="in"` (client to app) or `"out"` (app to client).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// "in" or "out".
    pub direction: &'static str,
}

/// `kind="public"` (an anonymous request to a public share) or `"link"` (a
/// share-link redemption, by URL or by a program's header).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// "public" or "link".
    pub kind: &'static str,
}

/// The edge's metrics. Cloning shares the underlying values.
#[derive(Clone)]
pub struct EdgeMetrics {
    /// Proxied requests by status.
    pub requests: Family<StatusLabel, Counter>,
    /// Time from forwarding a request to the app's response headers.
    pub upstream_seconds: Histogram,
    /// Body bytes proxied each way.
    pub bytes: Family<DirectionLabel, Counter>,
    /// `bytes` towards the app, looked up once (not per request).
    pub bytes_in: Counter,
    /// `bytes` towards the client, looked up once.
    pub bytes_out: Counter,
    /// Open upgraded connections (and long responses) watched for revocation.
    pub tracked_connections: Gauge,
    /// Connections closed because their access was revoked.
    pub revoked_connections: Counter,
    /// Requests refused by `sharing.public_rate_limit`, by kind.
    pub public_rate_limited: Family<KindLabel, Counter>,
}

impl EdgeMetrics {
    /// Metrics registered in `registry` under `berth_edge_*`.
    pub fn new(registry: &mut Registry, tunnels: &crate::tunnel::edge::Tunnels) -> Self {
        let bytes = Family::<DirectionLabel, Counter>::default();
        let bytes_in = bytes
            .get_or_create(&DirectionLabel { direction: "in" })
            .clone();
        let bytes_out = bytes
            .get_or_create(&DirectionLabel { direction: "out" })
            .clone();
        let m = EdgeMetrics {
            bytes_in,
            bytes_out,
            requests: Family::default(),
            upstream_seconds: Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            bytes,
            tracked_connections: Gauge::default(),
            revoked_connections: Counter::default(),
            public_rate_limited: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("berth_edge");
        r.register(
            "requests",
            "Proxied requests by response status",
            m.requests.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time until the app's response headers arrived",
            m.upstream_seconds.clone(),
        );
        r.register(
            "body_bytes",
            "Body bytes proxied, by direction",
            m.bytes.clone(),
        );
        r.register(
            "tracked_connections",
            "Open WebSockets and long responses that end when their access is revoked",
            m.tracked_connections.clone(),
        );
        r.register(
            "revoked_connections",
            "WebSockets and responses closed because their access was revoked",
            m.revoked_connections.clone(),
        );
        r.register(
            "public_rate_limited",
            "Requests to public shares (kind public) and share-link redemptions (kind link) refused with 429 by sharing.public_rate_limit",
            m.public_rate_limited.clone(),
        );
        r.register(
            "agents_connected",
            "Agents with a live tunnel to this edge",
            tunnels.stats.connected.clone(),
        );
        r.register(
            "tunnel_streams_opened",
            "Tunnel streams opened (a warm request opens none)",
            tunnels.stats.streams_opened.clone(),
        );
        m
    }

    /// Counts one request by status.
    pub fn count(&self, status: http::StatusCode) {
        self.requests
            .get_or_create(&StatusLabel {
                status: status.as_u16(),
            })
            .inc();
    }
}

/// `berth_tls_certificate_expiry_seconds`: seconds until the served leaf
/// certificate expires, computed at scrape time (negative once expired).
#[derive(Debug)]
struct CertExpiry(Arc<crate::tls::SwappableCert>);

impl prometheus_client::encoding::EncodeMetric for CertExpiry {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let chain = self.0.current_chain();
        let Some(info) = chain
            .first()
            .and_then(|leaf| crate::tls::info::cert_info(leaf).ok())
        else {
            return Ok(());
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        encoder.encode_gauge(&(info.not_after - now))
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// Registers the expiry gauge of the certificate `certs` serves.
pub fn register_cert_expiry(registry: &mut Registry, certs: Arc<crate::tls::SwappableCert>) {
    registry.register(
        "berth_tls_certificate_expiry_seconds",
        "Seconds until the served TLS certificate expires",
        CertExpiry(certs),
    );
}

/// Renders the registry in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub fn serve_admin(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        encode(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|| async { axum::Json(serde_json::json!({"status": "ready"})) }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    });
}
