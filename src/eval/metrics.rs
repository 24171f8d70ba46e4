//! Classification metrics of an offline evaluation, defined as scikit-learn defines them
//! (`accuracy_score`, `top_k_accuracy_score`, `precision_recall_fscore_support`,
//! `confusion_matrix`, `log_loss`) and the expected calibration error of Guo et al. (2017) with
//! [`ECE_BINS`] equal-width bins. `scripts/eval_metrics_reference.py` makes the reference values
//! the tests compare against.

use serde::{Deserialize, Serialize};

/// Equal-width confidence bins of the expected calibration error and the reliability diagram.
pub const ECE_BINS: usize = 15;

/// One prediction to score: the true label, when known, and the model's probabilities in the
/// model's label order.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub label: Option<&'a str>,
    pub probs: &'a [f32],
}

/// One class's row of the classification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Labelled records of this class.
    pub support: u64,
    /// Records the model predicted as this class.
    pub predicted: u64,
    /// False for a label in the data that the model does not have.
    pub known_to_model: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    pub k: usize,
    pub accuracy: f64,
}

/// One bin of the reliability diagram: predictions whose confidence (top probability) lies in
/// `(lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean confidence in the bin (0 when empty).
    pub mean_confidence: f64,
    /// Share of the bin's predictions that were right (0 when empty).
    pub accuracy: f64,
}

/// A label in the data that the model does not have, and how many records carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownLabel {
    pub label: String,
    pub count: u64,
}

/// Metrics over the labelled records of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Labelled records scored (unlabelled ones are skipped).
    pub n: u64,
    pub correct: u64,
    pub accuracy: f64,
    pub top_k: Vec<TopK>,
    /// The classes that occur as a label or a prediction (scikit-learn's `unique_labels`), in
    /// the model's label order, then the labels the model does not know, sorted.
    pub classes: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// `confusion[i][j]`: records of class `classes[i]` predicted as `classes[j]`.
    pub confusion: Vec<Vec<u64>>,
    /// Over the records whose label the model knows (`None` when there are none).
    pub log_loss: Option<f64>,
    pub n_log_loss: u64,
    pub ece: f64,
    pub reliability: Vec<ReliabilityBin>,
    pub unknown_labels: Vec<UnknownLabel>,
}

/// PROVISIONAL (accuracy only) until the scikit-learn-checked implementation lands.
pub fn classification_metrics(model_labels: &[String], records: &[Scored<'_>], _top_k: &[usize]) -> Option<Metrics> {
    let labelled: Vec<_> = records.iter().filter_map(|r| Some((r.label?, r.probs))).collect();
    if labelled.is_empty() {
        return None;
    }
    let correct = labelled
        .iter()
        .filter(|(l, p)| {
            let best = p.iter().enumerate().fold(None, |b: Option<(usize, f32)>, (i, &x)| match b {
                Some((_, y)) if y >= x => b,
                _ => Some((i, x)),
            });
            best.and_then(|(i, _)| model_labels.get(i)).is_some_and(|m| m == l)
        })
        .count() as u64;
    let n = labelled.len() as u64;
    let zero = Averages { precision: 0.0, recall: 0.0, f1: 0.0 };
    Some(Metrics {
        n,
        correct,
        accuracy: correct as f64 / n as f64,
        top_k: Vec::new(),
        classes: Vec::new(),
        macro_avg: zero,
        weighted_avg: zero,
        confusion: Vec::new(),
        log_loss: None,
        n_log_loss: 0,
        ece: 0.0,
        reliability: Vec::new(),
        unknown_labels: Vec::new(),
    })
}
