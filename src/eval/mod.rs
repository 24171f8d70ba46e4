//! Data sets (ImageFolder folders, CSV, JSONL), the batch [`pipeline`] and offline evaluation:
//! [`evaluate`] scores one model on a data set (the [`metrics`] scikit-learn defines, latency,
//! the examples worth a look), [`compare`] pairs two models on the same records. [`perturb`]
//! makes drifted copies of the data (also the "newer data" a model update is trained on).

mod dataset;
pub mod evaluation;
pub mod metrics;
pub mod output;
pub mod perturb;
pub mod pipeline;

pub use dataset::{Dataset, DatasetError, Example, ExampleInput};

use std::sync::Arc;

use image::RgbImage;

use crate::eval::evaluation::{Comparison, Evaluation, ExampleOutcome, LatencySummary};
use crate::eval::metrics::Scored;
use crate::eval::perturb::ImageDrift;
use crate::eval::pipeline::{Answer, PipelineOptions, Progress, Summary};
use crate::model::{self, LoadedModel};
use crate::monitor::drift::DriftSample;
use crate::source::CancelToken;
use crate::stats::paired;
use crate::Error;

/// How many of the slowest and of the most confidently wrong examples an evaluation keeps.
pub const EXAMPLES_KEPT: usize = 24;

/// Where an evaluation's answers are logged: the prediction log, as batch run `run`.
#[derive(Clone)]
pub struct BatchLog {
    pub log: crate::store::PredictionLog,
    pub run: String,
}

impl std::fmt::Debug for BatchLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchLog({}, run {})", self.log.path().display(), self.run)
    }
}

#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub batch_size: usize,
    /// Drift applied to every image (seeded per example), to measure robustness.
    pub drift: Option<ImageDrift>,
    pub seed: u64,
    pub cancel: CancelToken,
    /// Decoding threads (0: automatic).
    pub workers: usize,
    /// The k of top-k accuracy (empty: 3 and 5, those below the number of classes).
    pub top_k: Vec<usize>,
    /// The command that reproduces the run, for the report.
    pub command: String,
    /// Zero-shot image models: the candidate labels (default: the data set's labels).
    pub candidate_labels: Vec<String>,
    /// Log every answer (origin `batch`), so the run can be the Monitor's drift reference.
    pub log: Option<BatchLog>,
}

/// An evaluation, with what else the run produced.
pub struct EvalRun {
    pub evaluation: Evaluation,
    /// Every answered record's features and prediction: a drift reference for the Monitor.
    pub samples: Vec<DriftSample>,
    /// Probabilities per outcome, in label order (empty for failed records and embeddings).
    pub probs: Vec<Vec<f32>>,
    /// Embeddings per outcome, for embedding models.
    pub embeddings: Vec<Option<Vec<f32>>>,
    /// The labels `probs` are in the order of.
    pub labels: Vec<String>,
    pub summary: Summary,
}

/// Decodes an example's image and applies drift to it (seeded per example: `index`).
pub fn load_image(example: &Example, drift: Option<&ImageDrift>, seed: u64, index: usize) -> Result<RgbImage, Error> {
    let ExampleInput::Image(path) = &example.input else {
        return Err(Error::Usage(format!("example `{}` has no image", example.id)));
    };
    let image = model::decode_image_file(path).map_err(model::ModelError::from)?;
    Ok(drifted(image, drift, seed, index))
}

/// `image` with record `index`'s drift applied (none for no drift or an identity one).
fn drifted(image: RgbImage, drift: Option<&ImageDrift>, seed: u64, index: usize) -> RgbImage {
    match drift {
        Some(d) if !d.is_identity() => d.apply(&image, drift_seed(seed, index)),
        _ => image,
    }
}

/// The image a model saw for record `index`: the file at `path` with the drift (spec form, as
/// in [`evaluation::Evaluation::drift`]) applied as [`load_image`] applies it.
pub fn seen_image(path: &str, drift: Option<&str>, seed: u64, index: usize) -> Result<RgbImage, String> {
    let drift = drift.map(ImageDrift::parse).transpose().map_err(|e| e.to_string())?;
    let image = model::decode_image_file(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    Ok(drifted(image, drift.as_ref(), seed, index))
}

/// The size of a `w`×`h` image scaled to fit an `edge`×`edge` box, aspect ratio kept (each side
/// at least 1; computed in 64 bits, so any image size is fine).
pub fn fit_box(w: u32, h: u32, edge: u32) -> (u32, u32) {
    let long = u64::from(w.max(h).max(1));
    let side = |s: u32| ((u64::from(s) * u64::from(edge)).div_ceil(long)).clamp(1, u64::from(edge)) as u32;
    (side(w), side(h))
}

/// The seed of one record's drift.
fn drift_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(index as u64)
}

/// The pipeline options an evaluation runs with.
pub fn pipeline_options(model: &LoadedModel, data: &Dataset, options: &EvalOptions) -> PipelineOptions {
    // Candidate labels are for zero-shot models; every other model answers with its own.
    let candidate_labels = match (model.task(), options.candidate_labels.is_empty()) {
        (task, true) if task.takes_candidate_labels() => data.labels(),
        (task, false) if task.takes_candidate_labels() => options.candidate_labels.clone(),
        _ => Vec::new(),
    };
    PipelineOptions {
        batch_size: options.batch_size.max(1),
        workers: options.workers,
        drift: options.drift,
        seed: options.seed,
        cancel: options.cancel.clone(),
        top_k: 5,
        features: true,
        candidate_labels,
        ..Default::default()
    }
}

/// Runs every record of `data` through `model` and scores the answers.
pub fn evaluate(
    model: &LoadedModel,
    data: &Dataset,
    options: &EvalOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<EvalRun, Error> {
    if !options.candidate_labels.is_empty() && !model.task().takes_candidate_labels() {
        return Err(Error::Usage(format!(
            "candidate labels (--labels) are for zero-shot models; {} answers with its own labels",
            model.card().name
        )));
    }
    let pipeline = pipeline_options(model, data, options);
    // Embedding models have no labels: their evaluation has latency and answers, no metrics.
    let labels =
        if pipeline.candidate_labels.is_empty() { model.labels().to_vec() } else { pipeline.candidate_labels.clone() };
    let mut answers: Vec<Answer> = Vec::with_capacity(data.examples.len());
    let card = model.card();
    let summary = pipeline::run(
        model,
        data,
        &pipeline,
        |batch| {
            if let Some(BatchLog { log, run }) = &options.log {
                batch.iter().for_each(|a| log.record(a.log_record(card, run)));
            }
            answers.extend_from_slice(batch);
            Ok(())
        },
        &mut progress,
    )?;
    if summary.cancelled {
        return Err(Error::Usage("evaluation cancelled".into()));
    }
    let samples = answers.iter().filter_map(drift_sample).collect();
    let mut embeddings = Vec::with_capacity(answers.len());
    let (outcomes, probs): (Vec<ExampleOutcome>, Vec<Vec<f32>>) = answers
        .into_iter()
        .map(|a| {
            embeddings.push(a.embedding);
            (a.outcome, a.probs)
        })
        .unzip();
    let ks: Vec<usize> = if options.top_k.is_empty() {
        [3, 5].into_iter().filter(|&k| k < labels.len()).collect()
    } else {
        options.top_k.clone()
    };
    let scored: Vec<Scored> = outcomes
        .iter()
        .zip(&probs)
        .filter(|(o, _)| o.error.is_none())
        .map(|(o, p)| Scored { label: o.label.as_deref(), probs: p })
        .collect();
    let metrics = if labels.is_empty() { None } else { metrics::classification_metrics(&labels, &scored, &ks) };
    let evaluation = Evaluation {
        model: model.card().clone(),
        data: data.source.display().to_string(),
        drift: options.drift.filter(|d| !d.is_identity()).map(|d| d.to_string()),
        seed: options.seed,
        n: outcomes.len(),
        n_failed: summary.failed,
        metrics,
        latency: latency_summary(&outcomes, &summary),
        slowest: slowest(&outcomes),
        confidently_wrong: confidently_wrong(&outcomes),
        command: options.command.clone(),
        outcomes,
    };
    Ok(EvalRun { evaluation, samples, probs, embeddings, labels, summary })
}

/// An answered record as a drift-reference sample for the Monitor.
pub fn drift_sample(answer: &Answer) -> Option<DriftSample> {
    let o = &answer.outcome;
    o.error.is_none().then(|| DriftSample {
        at_ms: crate::store::now_ms(),
        request_id: format!("reference-{}", o.id).into(),
        predicted: o.prediction.as_deref().map(Arc::from),
        features: answer.features.clone(),
    })
}

/// Every record's features and prediction: the Monitor's drift reference for `model` on `data`
/// (a data set the model was validated on).
pub fn reference_samples(
    model: &LoadedModel,
    data: &Dataset,
    options: &EvalOptions,
) -> Result<Vec<DriftSample>, Error> {
    let mut samples = Vec::with_capacity(data.examples.len());
    pipeline::run(
        model,
        data,
        &pipeline_options(model, data, options),
        |answers| {
            samples.extend(answers.iter().filter_map(drift_sample));
            Ok(())
        },
        |_| {},
    )?;
    Ok(samples)
}

/// Runs both models on the same records and pairs their answers.
pub fn compare(
    a: &LoadedModel,
    b: &LoadedModel,
    data: &Dataset,
    options: &EvalOptions,
    mut progress: impl FnMut(char, &Progress),
) -> Result<(EvalRun, EvalRun, Comparison), Error> {
    let run_a = evaluate(a, data, options, |p| progress('A', p))?;
    let run_b = evaluate(b, data, options, |p| progress('B', p))?;
    let comparison = pair(&run_a.evaluation, &run_b.evaluation, options.command.clone());
    Ok((run_a, run_b, comparison))
}

/// The paired statistics of two evaluations of the same data set.
pub fn pair(a: &Evaluation, b: &Evaluation, command: String) -> Comparison {
    let both: Vec<(&ExampleOutcome, &ExampleOutcome)> = a
        .outcomes
        .iter()
        .zip(&b.outcomes)
        .filter(|(x, y)| x.index == y.index && x.prediction.is_some() && y.prediction.is_some())
        .collect();
    let agreeing = both.iter().filter(|(x, y)| x.prediction == y.prediction).count();
    let labelled: Vec<(bool, bool)> =
        both.iter().filter(|(x, _)| x.label.is_some()).map(|(x, y)| (x.is_right(), y.is_right())).collect();
    let correctness = paired::correctness_table(labelled.iter().copied());
    let n_labelled = labelled.len();
    let accuracy =
        |pick: fn(&(bool, bool)) -> bool| labelled.iter().filter(|p| pick(p)).count() as f64 / n_labelled as f64;
    Comparison {
        n_paired: both.len(),
        agreement: if both.is_empty() { 0.0 } else { agreeing as f64 / both.len() as f64 },
        n_labelled_pairs: n_labelled,
        correctness,
        mcnemar: (n_labelled > 0).then(|| paired::mcnemar(&correctness)),
        accuracy_diff: (n_labelled > 0).then(|| accuracy(|p| p.1) - accuracy(|p| p.0)),
        disagreements: both.iter().filter(|(x, y)| x.prediction != y.prediction).map(|(x, _)| x.index).collect(),
        command,
        a: a.clone(),
        b: b.clone(),
    }
}

/// Linear interpolation between order statistics (numpy's default percentile).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n => {
            let rank = q / 100.0 * (n - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

fn latency_summary(outcomes: &[ExampleOutcome], summary: &Summary) -> LatencySummary {
    let mut ms: Vec<f64> = outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.latency_ms).collect();
    ms.sort_by(f64::total_cmp);
    LatencySummary {
        mean_ms: if ms.is_empty() { 0.0 } else { ms.iter().sum::<f64>() / ms.len() as f64 },
        p50_ms: percentile(&ms, 50.0),
        p90_ms: percentile(&ms, 90.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        batch_size: summary.batch_size,
        throughput_per_s: summary.throughput_per_s(),
        wall_s: summary.wall_s,
    }
}

fn slowest(outcomes: &[ExampleOutcome]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].error.is_none()).collect();
    order.sort_by(|&x, &y| outcomes[y].latency_ms.total_cmp(&outcomes[x].latency_ms).then(x.cmp(&y)));
    order.truncate(EXAMPLES_KEPT);
    order
}

fn confidently_wrong(outcomes: &[ExampleOutcome]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].is_wrong()).collect();
    order.sort_by(|&x, &y| outcomes[y].confidence.total_cmp(&outcomes[x].confidence).then(x.cmp(&y)));
    order.truncate(EXAMPLES_KEPT);
    order
}
