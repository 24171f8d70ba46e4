//! Monitoring: what happens to a model after it answers. Every prediction (Playground, replay,
//! batch, CLI) becomes an [`Observation`]: its latency, error, predicted class and numeric
//! features of its input and output ([`features`]). A [`Monitor`] keeps, per model, sliding
//! latency windows and per-second series ([`metrics`]), the reference and current windows of
//! every feature for drift ([`drift`]), accuracy once labels arrive ([`Feedback`]), and alert
//! rules over all of these ([`alerts`]). [`prometheus`] exposes the same numbers over HTTP, and
//! [`replay`] turns a data set into live traffic (with injected drift and delayed labels) so all
//! of this can be watched offline.
//!
//! Recording is cheap (a few histogram updates and pushes into bounded buffers under one mutex);
//! drift is recomputed on a schedule, off the recording path, never per frame.

pub mod accuracy;
pub mod alerts;
pub mod decimate;
pub mod drift;
pub mod features;
mod live;
pub mod metrics;
pub mod prometheus;
pub mod replay;

pub use live::{ClassSeries, ModelSnapshot, Monitor, MonitorConfig, MonitorSnapshot, Refresher, CLASS_BUCKET_MS};

use std::sync::Arc;

/// A feature's name. Feature sets are fixed per task ([`features::IMAGE_FEATURES`], ...), so
/// names are static strings and recording allocates nothing for them.
pub type FeatureName = &'static str;

/// Named numeric features of one prediction's input and output, in a fixed order per task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features(pub Vec<(FeatureName, f64)>);

impl Features {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    pub fn push(&mut self, name: FeatureName, value: f64) {
        self.0.push((name, value));
    }

    pub fn extend(&mut self, other: Features) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The features of a logged prediction ([`Features::to_json`]'s object): every known
    /// feature name present with a number, in the feature sets' order; others are ignored.
    pub fn from_json(value: &serde_json::Value) -> Features {
        let known = features::IMAGE_FEATURES.iter().chain(&features::TEXT_FEATURES).chain(&features::OUTPUT_FEATURES);
        Features(known.filter_map(|&name| Some((name, value.get(name)?.as_f64()?))).collect())
    }

    /// `{"brightness": 0.41, ...}`, as the prediction log stores it. Non-finite values are
    /// written as null.
    pub fn to_json(&self) -> serde_json::Value {
        let map = self
            .0
            .iter()
            .map(|(n, v)| (n.to_string(), serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into)))
            .collect();
        serde_json::Value::Object(map)
    }
}

/// A batch run's answered rows in the prediction log, as a drift reference: the model they came
/// from and one sample per row. `run` is the run id, with or without its `batch-` prefix;
/// `model` (a source) keeps that model's rows only, else those of the run's first model.
pub fn batch_run_reference(
    log: &std::path::Path,
    run: &str,
    model: Option<&str>,
) -> Result<(String, Vec<drift::DriftSample>), crate::store::StoreError> {
    let run = run.trim_start_matches("batch-");
    let query = crate::store::Query {
        origin: Some(crate::store::Origin::Batch),
        answered: true,
        request_prefix: Some(format!("batch-{run}-")),
        model: model.map(str::to_string),
        ..Default::default()
    };
    let rows = crate::store::read(log, &query)?;
    let model = rows.first().map(|r| r.record.model.clone()).unwrap_or_default();
    let samples = rows
        .into_iter()
        .filter(|r| r.record.model == model)
        .map(|r| drift::DriftSample {
            at_ms: r.record.at_ms,
            request_id: r.record.request_id.into(),
            predicted: r.record.prediction.map(Arc::from),
            features: r.record.features.as_ref().map(Features::from_json).unwrap_or_default(),
        })
        .collect();
    Ok((model, samples))
}

/// One answered (or failed) prediction, as the monitor sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Wall-clock time of the answer, ms since the Unix epoch.
    pub at_ms: i64,
    /// Which series this belongs to: the model's name, or an arm ("A", "B") in a rollout.
    pub model: Arc<str>,
    pub request_id: Arc<str>,
    /// Preprocessing + inference time; `None` for a request that failed before running.
    pub latency_ms: Option<f64>,
    pub error: bool,
    /// Top-1 label (classifiers).
    pub predicted: Option<Arc<str>>,
    /// Input and output features (confidence, entropy, ...).
    pub features: Features,
}

/// Ground truth for an earlier prediction, arriving later (a replay's delayed labels, or a user
/// correcting the Playground: "this should be X").
#[derive(Debug, Clone)]
pub struct Feedback {
    pub model: Arc<str>,
    pub request_id: Arc<str>,
    pub label: Arc<str>,
    pub correct: bool,
    /// When the labelled prediction was made, and when its label arrived (ms since epoch).
    pub predicted_at_ms: i64,
    pub at_ms: i64,
}

impl Observation {
    /// A request that failed before producing an answer.
    pub fn failed(model: Arc<str>, request_id: Arc<str>, at_ms: i64) -> Self {
        Self { at_ms, model, request_id, latency_ms: None, error: true, predicted: None, features: Features::default() }
    }
}

/// One observation per input of an answered request, with the ids `store::records_from_output`
/// gives the same inputs (`ID`, or `ID-0`, `ID-1`, ... for several), so the log and the monitor
/// agree.
pub fn observations_from_output(
    output: &crate::predict::PredictOutput,
    model: &Arc<str>,
    request_id: &str,
    at_ms: i64,
) -> Vec<Observation> {
    output
        .per_input(request_id)
        .map(|(id, latency_ms, result)| Observation {
            at_ms,
            model: model.clone(),
            request_id: id.into(),
            latency_ms: Some(latency_ms),
            error: false,
            predicted: result.predictions.as_ref().and_then(|p| p.first()).map(|l| l.label.as_str().into()),
            // What the prediction path computed: input features, then output features.
            features: result.features.clone(),
        })
        .collect()
}
