//! The Prometheus endpoint (`--metrics-addr`): [`PromMetrics`] holds the registry and every
//! metric family, updated by the recording path, the drift schedule and the alert rules;
//! [`MetricsServer`] serves its OpenMetrics text exposition (prometheus-client's encoder) at
//! `GET /metrics` from a background thread with its own single-threaded tokio runtime.
//!
//! The server listens on loopback only unless the caller passes [`Access::AllowRemote`]:
//! metrics name models and features, which is not for every machine on the network.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::metrics::ProcessPoint;
use crate::store::Origin;

/// Upper bounds (seconds) of the latency histogram's buckets: 0.5 ms to 10 s, about three per
/// decade, covering a tiny model's fused kernels up to a large model on a busy CPU.
pub const LATENCY_BUCKETS_S: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The content type of [`PromMetrics::encode`]'s text (OpenMetrics 1.0, which Prometheus
/// negotiates and scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PredictionLabels {
    model: Arc<str>,
    origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriftScoreLabels {
    model: Arc<str>,
    feature: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FeatureLabels {
    model: Arc<str>,
    feature: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    model: Arc<str>,
    rule: String,
}

type GaugeF64 = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_S)
}

/// Every metric ModelDeck exports, in one registry. Updates are lock-free atomics behind a
/// read-locked family lookup (a few hundred ns), cheap enough for every prediction.
pub struct PromMetrics {
    registry: Registry,
    predictions: Family<PredictionLabels, Counter>,
    errors: Family<ModelLabels, Counter>,
    drops: Family<ModelLabels, Counter>,
    latency: Family<ModelLabels, Histogram, fn() -> Histogram>,
    drift_score: Family<DriftScoreLabels, GaugeF64>,
    drift_detected: Family<FeatureLabels, Gauge>,
    accuracy: Family<ModelLabels, GaugeF64>,
    alert_firing: Family<RuleLabels, Gauge>,
    cpu_percent: GaugeF64,
    resident_memory_bytes: Gauge,
}

impl Default for PromMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PromMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("modeldeck");
        let predictions = Family::default();
        // Counters get their `_total` suffix from the encoder.
        registry.register("predictions", "Predictions answered or failed, by model and origin", predictions.clone());
        let errors = Family::default();
        registry.register("prediction_errors", "Predictions that failed, by model", errors.clone());
        let drops = Family::default();
        registry.register("queue_drops", "Requests dropped before running because the queue was full", drops.clone());
        let latency = Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "prediction_latency_seconds",
            "Preprocessing and inference time per prediction",
            latency.clone(),
        );
        let drift_score = Family::default();
        registry.register(
            "drift_score",
            "Drift statistic of a feature's current window against its reference (p-value or distance, per method)",
            drift_score.clone(),
        );
        let drift_detected = Family::default();
        registry.register("drift_detected", "1 if drift is detected on the feature, 0 if not", drift_detected.clone());
        let accuracy = Family::default();
        registry.register("accuracy", "Share of labelled predictions that were correct (0..1)", accuracy.clone());
        let alert_firing = Family::default();
        registry.register("alert_firing", "1 while the alert rule fires, 0 once resolved", alert_firing.clone());
        let cpu_percent = GaugeF64::default();
        registry.register(
            "process_cpu_percent",
            "CPU use of the ModelDeck process; 100 = one core busy",
            cpu_percent.clone(),
        );
        let resident_memory_bytes = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the ModelDeck process",
            resident_memory_bytes.clone(),
        );
        Self {
            registry,
            predictions,
            errors,
            drops,
            latency,
            drift_score,
            drift_detected,
            accuracy,
            alert_firing,
            cpu_percent,
            resident_memory_bytes,
        }
    }

    /// Counts one prediction and its latency. Latencies that are NaN, infinite or negative are
    /// not observed (the prediction still counts), as in [`super::metrics::ModelMetrics`].
    pub fn observe_prediction(&self, model: &Arc<str>, origin: Origin, latency_ms: Option<f64>, error: bool) {
        self.predictions.get_or_create(&PredictionLabels { model: model.clone(), origin: origin.name() }).inc();
        let labels = ModelLabels { model: model.clone() };
        if error {
            self.errors.get_or_create(&labels).inc();
        }
        if let Some(latency_ms) = latency_ms.filter(|l| l.is_finite() && *l >= 0.0) {
            self.latency.get_or_create(&labels).observe(latency_ms / 1000.0);
        }
    }

    /// [`PromMetrics::observe_prediction`] for one observation.
    pub fn observe(&self, observation: &super::Observation, origin: Origin) {
        self.observe_prediction(&observation.model, origin, observation.latency_ms, observation.error);
    }

    pub fn record_drop(&self, model: &Arc<str>) {
        self.drops.get_or_create(&ModelLabels { model: model.clone() }).inc();
    }

    /// The latest drift statistic of one feature under one method (`"ks"`, `"psi"`, ...).
    pub fn set_drift_score(&self, model: &Arc<str>, feature: &str, method: &str, score: f64) {
        let labels =
            DriftScoreLabels { model: model.clone(), feature: feature.to_string(), method: method.to_string() };
        self.drift_score.get_or_create(&labels).set(score);
    }

    /// The drift verdict of one feature; `None` ("not enough data") removes the series rather
    /// than report a verdict that was never reached.
    pub fn set_drift_detected(&self, model: &Arc<str>, feature: &str, detected: Option<bool>) {
        let labels = FeatureLabels { model: model.clone(), feature: feature.to_string() };
        match detected {
            Some(detected) => {
                self.drift_detected.get_or_create(&labels).set(i64::from(detected));
            }
            None => {
                self.drift_detected.remove(&labels);
            }
        }
    }

    /// Accuracy (0..1) over the labelled predictions; `None` (no labels yet) removes the series.
    pub fn set_accuracy(&self, model: &Arc<str>, accuracy: Option<f64>) {
        let labels = ModelLabels { model: model.clone() };
        match accuracy {
            Some(accuracy) => {
                self.accuracy.get_or_create(&labels).set(accuracy);
            }
            None => {
                self.accuracy.remove(&labels);
            }
        }
    }

    pub fn set_alert_firing(&self, model: &Arc<str>, rule: &str, firing: bool) {
        let labels = RuleLabels { model: model.clone(), rule: rule.to_string() };
        self.alert_firing.get_or_create(&labels).set(i64::from(firing));
    }

    pub fn set_process(&self, point: &ProcessPoint) {
        self.cpu_percent.set(point.cpu_percent);
        self.resident_memory_bytes.set(i64::try_from(point.rss_bytes).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition of every metric (ends with `# EOF`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Who may connect to the metrics server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Only loopback addresses (127.0.0.0/8, ::1) may be listened on.
    #[default]
    LoopbackOnly,
    /// Any address, including all interfaces (`0.0.0.0`): `--metrics-allow-remote`.
    AllowRemote,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsServerError {
    #[error("`{0}` is not a metrics address; expected IP:PORT, for example 127.0.0.1:9464")]
    BadAddress(String),
    #[error(
        "refusing to serve metrics on {0}: it is not a loopback address, so other machines could read them; \
         use 127.0.0.1:PORT, or pass --metrics-allow-remote to expose them"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot serve metrics on {addr}: the port is already in use (another ModelDeck or exporter?); choose another with --metrics-addr")]
    PortInUse { addr: SocketAddr },
    #[error("cannot serve metrics on {addr}: it is not an address of this machine; use 127.0.0.1:PORT")]
    NotThisMachine { addr: SocketAddr },
    #[error("cannot serve metrics on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the metrics server: {0}")]
    Runtime(std::io::Error),
}

/// Parses `--metrics-addr` (`IP:PORT`; IPv6 as `[::1]:9464`).
pub fn parse_metrics_addr(text: &str) -> Result<SocketAddr, MetricsServerError> {
    text.trim().parse().map_err(|_| MetricsServerError::BadAddress(text.to_string()))
}

/// Serves `GET /metrics` on a background thread until dropped. Any other path answers 404.
pub struct MetricsServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` now (so a port in use or a foreign address is reported here, not later on
    /// the thread) and starts serving. Port 0 picks a free port: see [`MetricsServer::addr`].
    pub fn start(addr: SocketAddr, metrics: Arc<PromMetrics>, access: Access) -> Result<Self, MetricsServerError> {
        if access == Access::LoopbackOnly && !addr.ip().is_loopback() {
            return Err(MetricsServerError::NotLoopback(addr));
        }
        let listener = TcpListener::bind(addr).map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => MetricsServerError::PortInUse { addr },
            std::io::ErrorKind::AddrNotAvailable => MetricsServerError::NotThisMachine { addr },
            _ => MetricsServerError::Bind { addr, source },
        })?;
        let bound = listener.local_addr().map_err(|source| MetricsServerError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| MetricsServerError::Bind { addr, source })?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(MetricsServerError::Runtime)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| MetricsServerError::Bind { addr, source })?
        };
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(serve_metrics))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found: metrics are served at /metrics\n") })
            .with_state(metrics);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("metrics-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        served = async { axum::serve(listener, app).await } => {
                            if let Err(e) = served {
                                tracing::error!("metrics server on {bound} stopped: {e}");
                            }
                        }
                        _ = stop => {}
                    }
                });
                // Dropping the runtime here cancels connections still open (a scraper's
                // keep-alive), so stopping never waits on a client.
            })
            .map_err(MetricsServerError::Runtime)?;
        tracing::info!("serving Prometheus metrics at http://{bound}/metrics");
        Ok(Self { addr: bound, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// The address actually listened on (the chosen port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_metrics(
    axum::extract::State(metrics): axum::extract::State<Arc<PromMetrics>>,
) -> axum::response::Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn the_exposition_has_every_family_with_its_labels() {
        let m = PromMetrics::new();
        let a = model("vit");
        m.observe_prediction(&a, Origin::Replay, Some(0.7), false);
        m.observe_prediction(&a, Origin::Replay, Some(30.0), true);
        m.observe_prediction(&a, Origin::Cli, None, true);
        m.observe_prediction(&a, Origin::Cli, Some(f64::NAN), false);
        m.record_drop(&a);
        m.set_drift_score(&a, "brightness", "ks", 0.0123);
        m.set_drift_detected(&a, "brightness", Some(true));
        m.set_drift_detected(&a, "contrast", Some(false));
        m.set_accuracy(&a, Some(0.875));
        m.set_alert_firing(&a, "p95 latency", true);
        m.set_process(&ProcessPoint { t_ms: 0, cpu_percent: 150.5, rss_bytes: 123_456_789 });
        let text = m.encode().unwrap();
        for line in [
            "modeldeck_predictions_total{model=\"vit\",origin=\"replay\"} 2",
            "modeldeck_predictions_total{model=\"vit\",origin=\"cli\"} 2",
            "modeldeck_prediction_errors_total{model=\"vit\"} 2",
            "modeldeck_queue_drops_total{model=\"vit\"} 1",
            "modeldeck_prediction_latency_seconds_count{model=\"vit\"} 2",
            "modeldeck_prediction_latency_seconds_bucket{le=\"0.0005\",model=\"vit\"} 0",
            "modeldeck_prediction_latency_seconds_bucket{le=\"0.001\",model=\"vit\"} 1",
            "modeldeck_prediction_latency_seconds_bucket{le=\"0.025\",model=\"vit\"} 1",
            "modeldeck_prediction_latency_seconds_bucket{le=\"0.05\",model=\"vit\"} 2",
            "modeldeck_prediction_latency_seconds_bucket{le=\"+Inf\",model=\"vit\"} 2",
            "modeldeck_drift_score{model=\"vit\",feature=\"brightness\",method=\"ks\"} 0.0123",
            "modeldeck_drift_detected{model=\"vit\",feature=\"brightness\"} 1",
            "modeldeck_drift_detected{model=\"vit\",feature=\"contrast\"} 0",
            "modeldeck_accuracy{model=\"vit\"} 0.875",
            "modeldeck_alert_firing{model=\"vit\",rule=\"p95 latency\"} 1",
            "modeldeck_process_cpu_percent 150.5",
            "modeldeck_process_resident_memory_bytes 123456789",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let sum = text.lines().find_map(|l| l.strip_prefix("modeldeck_prediction_latency_seconds_sum{model=\"vit\"} "));
        assert!((sum.unwrap().parse::<f64>().unwrap() - 0.0307).abs() < 1e-12, "{sum:?}");
        // "Not enough data" and "no labels" remove series instead of reporting a value.
        m.set_drift_detected(&a, "contrast", None);
        m.set_accuracy(&a, None);
        let text = m.encode().unwrap();
        assert!(!text.contains("feature=\"contrast\""));
        assert!(!text.contains("modeldeck_accuracy{"));
    }

    #[test]
    fn addresses_are_parsed_and_remote_ones_refused_by_default() {
        assert_eq!(parse_metrics_addr("127.0.0.1:9464").unwrap(), SocketAddr::from(([127, 0, 0, 1], 9464)));
        assert_eq!(parse_metrics_addr("[::1]:9464").unwrap().port(), 9464);
        let err = parse_metrics_addr("localhost").unwrap_err();
        assert!(err.to_string().contains("expected IP:PORT"), "{err}");
        let metrics = Arc::new(PromMetrics::new());
        let everywhere = SocketAddr::from(([0, 0, 0, 0], 0));
        let err = MetricsServer::start(everywhere, metrics.clone(), Access::LoopbackOnly).err().unwrap();
        assert!(matches!(err, MetricsServerError::NotLoopback(_)));
        assert!(err.to_string().contains("--metrics-allow-remote"), "{err}");
    }
}
