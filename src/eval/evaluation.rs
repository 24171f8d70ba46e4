//! What an offline evaluation and a paired comparison produce: per-example outcomes, metrics,
//! latency, and the examples worth a look. The CLI prints these as JSON, the Evaluate view
//! browses them, and [`crate::report::html`] turns them into a self-contained report.

use serde::Serialize;

use crate::eval::metrics::Metrics;
use crate::model::{LabelScore, ModelCard};
use crate::stats::paired::McNemar;

/// One record of the data set, as the model answered it (or failed to).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExampleOutcome {
    /// Position in the data set.
    pub index: usize,
    pub id: String,
    /// The image's path, or the text itself.
    pub input: String,
    pub is_image: bool,
    pub label: Option<String>,
    /// The most probable label; `None` when the record failed.
    pub prediction: Option<String>,
    /// The top probability (0 for a failed record).
    pub confidence: f32,
    /// The most probable labels, most probable first.
    pub top: Vec<LabelScore>,
    /// The record's own decoding time plus its share of its batch's preprocessing and forward
    /// pass, in milliseconds.
    pub latency_ms: f64,
    /// Why the record could not be scored (unreadable image, empty text, missing file).
    pub error: Option<String>,
}

impl ExampleOutcome {
    /// Labelled, answered and wrong.
    pub fn is_wrong(&self) -> bool {
        matches!((&self.label, &self.prediction), (Some(l), Some(p)) if l != p)
    }
    /// Labelled, answered and right.
    pub fn is_right(&self) -> bool {
        matches!((&self.label, &self.prediction), (Some(l), Some(p)) if l == p)
    }
}

/// Per-example latency over an evaluation, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub batch_size: usize,
    /// Records per second over the whole run, wall clock.
    pub throughput_per_s: f64,
    pub wall_s: f64,
}

/// One model on one data set.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub model: ModelCard,
    /// The data set's path.
    pub data: String,
    /// Drift injected into every image, as given (`contrast=0.5,noise=0.1`).
    pub drift: Option<String>,
    /// The drift's seed: each record's drift is seeded by it and the record's index.
    #[serde(default)]
    pub seed: u64,
    /// Records in the data set.
    pub n: usize,
    /// Records that could not be scored.
    pub n_failed: usize,
    /// `None` when no answered record has a label.
    pub metrics: Option<Metrics>,
    pub latency: LatencySummary,
    /// Indices into `outcomes`, slowest first.
    pub slowest: Vec<usize>,
    /// Indices into `outcomes` of wrong answers, most confident first.
    pub confidently_wrong: Vec<usize>,
    /// The command that reproduces this evaluation.
    pub command: String,
    #[serde(skip)]
    pub outcomes: Vec<ExampleOutcome>,
}

impl Evaluation {
    /// The image the model saw for a record: its file, with this evaluation's drift applied
    /// exactly as the run applied it. An error says why there is none (a text record, an
    /// unreadable file).
    pub fn input_image(&self, o: &ExampleOutcome) -> Result<image::RgbImage, String> {
        if !o.is_image {
            return Err("the record is a text".into());
        }
        crate::eval::seen_image(&o.input, self.drift.as_deref(), self.seed, o.index)
    }
}

/// Two models on the same records, paired.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: Evaluation,
    pub b: Evaluation,
    /// Records both models answered.
    pub n_paired: usize,
    /// Share of paired records on which both predicted the same label.
    pub agreement: f64,
    /// Paired records with a label.
    pub n_labelled_pairs: usize,
    /// `[[both right, A right B wrong], [A wrong B right, both wrong]]` over labelled pairs.
    pub correctness: [[u64; 2]; 2],
    /// McNemar's test on the discordant pairs (`None` without labelled pairs).
    pub mcnemar: Option<McNemar>,
    /// B's accuracy minus A's on the labelled pairs.
    pub accuracy_diff: Option<f64>,
    /// Indices (into both `outcomes`) of records where the two predictions differ.
    pub disagreements: Vec<usize>,
    pub command: String,
}
