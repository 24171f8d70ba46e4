//! Data sets (ImageFolder folders, CSV, JSONL) and offline evaluation: accuracy overall and per
//! class, optionally on a drifted copy of the data ([`perturb`] makes the drifted copies, also
//! used for the "newer data" a model update is trained on).

mod dataset;
pub mod evaluation;
pub mod metrics;
pub mod perturb;

pub use dataset::{Dataset, DatasetError, Example, ExampleInput};

use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::eval::perturb::ImageDrift;
use crate::model::{self, LoadedModel, Request, Response};
use crate::source::CancelToken;
use crate::Error;

#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub batch_size: usize,
    /// Drift applied to every image (seeded per example), to measure robustness.
    pub drift: Option<ImageDrift>,
    pub seed: u64,
    pub cancel: CancelToken,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassAccuracy {
    pub label: String,
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictionRecord {
    pub id: String,
    pub prediction: String,
    pub score: f32,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub drift: Option<ImageDrift>,
    pub n: usize,
    pub n_labelled: usize,
    pub correct: usize,
    pub accuracy: Option<f64>,
    pub per_class: Vec<ClassAccuracy>,
    pub latency_ms_per_input: f64,
    #[serde(skip)]
    pub predictions: Vec<PredictionRecord>,
}

/// Decodes an example's image (or returns its text) and applies drift to images.
pub fn load_image(example: &Example, drift: Option<&ImageDrift>, seed: u64, index: usize) -> Result<RgbImage, Error> {
    let ExampleInput::Image(path) = &example.input else {
        return Err(Error::Usage(format!("example `{}` has no image", example.id)));
    };
    let image = model::decode_image_file(path).map_err(model::ModelError::from)?;
    Ok(match drift {
        Some(d) if !d.is_identity() => d.apply(&image, seed.wrapping_mul(1_000_003).wrapping_add(index as u64)),
        _ => image,
    })
}

/// Runs every example through the model, in batches, and scores the predictions.
pub fn evaluate(
    model: &LoadedModel,
    data: &Dataset,
    options: &EvalOptions,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvalReport, Error> {
    let batch_size = options.batch_size.max(1);
    let labels = model.labels().to_vec();
    if labels.is_empty() {
        return Err(Error::Usage(format!("{} has no fixed labels to evaluate against", model.card().name)));
    }
    let mut predictions = Vec::with_capacity(data.examples.len());
    let mut compute_ms = 0.0;
    for (chunk_index, chunk) in data.examples.chunks(batch_size).enumerate() {
        if options.cancel.is_cancelled() {
            return Err(Error::Usage("evaluation cancelled".into()));
        }
        let offset = chunk_index * batch_size;
        let response = if model.task().takes_images() {
            let images = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| load_image(e, options.drift.as_ref(), options.seed, offset + i))
                .collect::<Result<Vec<_>, _>>()?;
            let started = Instant::now();
            let r = model.run(&Request::Images(&images))?;
            compute_ms += started.elapsed().as_secs_f64() * 1e3;
            r
        } else {
            let texts = chunk
                .iter()
                .map(|e| match &e.input {
                    ExampleInput::Text(t) => Ok(t.clone()),
                    ExampleInput::Image(_) => Err(Error::Usage(format!("example `{}` has no text", e.id))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let started = Instant::now();
            let r = model.run(&Request::Texts { texts: &texts, max_tokens: None })?;
            compute_ms += started.elapsed().as_secs_f64() * 1e3;
            r
        };
        let Response::Scores(scores) = response else {
            return Err(Error::Usage("embedding models have no labels to evaluate".into()));
        };
        for (example, s) in chunk.iter().zip(scores) {
            let top = s.top_k(&labels, 1).into_iter().next();
            predictions.push(PredictionRecord {
                id: example.id.clone(),
                prediction: top.as_ref().map(|t| t.label.clone()).unwrap_or_default(),
                score: top.map(|t| t.score).unwrap_or(0.0),
                label: example.label.clone(),
            });
        }
        progress(predictions.len(), data.examples.len());
    }
    let mut classes: Vec<ClassAccuracy> =
        data.labels().into_iter().map(|label| ClassAccuracy { label, n: 0, correct: 0, accuracy: 0.0 }).collect();
    let (mut n_labelled, mut correct) = (0, 0);
    for p in &predictions {
        let Some(label) = &p.label else { continue };
        n_labelled += 1;
        let hit = &p.prediction == label;
        correct += hit as usize;
        if let Some(c) = classes.iter_mut().find(|c| &c.label == label) {
            c.n += 1;
            c.correct += hit as usize;
        }
    }
    classes.iter_mut().for_each(|c| c.accuracy = if c.n > 0 { c.correct as f64 / c.n as f64 } else { 0.0 });
    Ok(EvalReport {
        model: model.card().source.clone(),
        data: data.source.display().to_string(),
        drift: options.drift.filter(|d| !d.is_identity()),
        n: predictions.len(),
        n_labelled,
        correct,
        accuracy: (n_labelled > 0).then(|| correct as f64 / n_labelled as f64),
        per_class: classes,
        latency_ms_per_input: compute_ms / predictions.len().max(1) as f64,
        predictions,
    })
}
