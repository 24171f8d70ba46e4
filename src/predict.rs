//! One prediction, end to end, as the CLI (and later the GUI) asks for it: decode the inputs,
//! run the model, time it, and shape the answer (top-k labels, embeddings, similarity).

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::model::{self, LabelScore, LoadedModel, Request, Response, Task};
use crate::Error;

/// What a user asks a model.
#[derive(Debug, Clone, Default)]
pub struct PredictInput {
    pub images: Vec<PathBuf>,
    pub texts: Vec<String>,
    /// Candidate labels for zero-shot models.
    pub labels: Vec<String>,
    /// Zero-shot template with one `{}` for the label (None: "This is a photo of {}.").
    pub template: Option<String>,
    pub top_k: usize,
}

/// One input's answer.
#[derive(Debug, Clone, Serialize)]
pub struct InputResult {
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Vec<LabelScore>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct PredictOutput {
    pub model: model::ModelCard,
    pub task: Task,
    pub results: Vec<InputResult>,
    /// Cosine similarity of the first two texts (embedding models given two or more texts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
    /// Preprocessing + inference for all inputs, excluding file decoding.
    pub latency_ms: f64,
}

impl PredictOutput {
    /// The JSON the CLI prints: a single input's `predictions`/`embedding` at the top level.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "model": self.model,
            "task": self.task,
            "latency_ms": self.latency_ms,
        });
        if let [single] = self.results.as_slice() {
            if let Some(p) = &single.predictions {
                json["predictions"] = serde_json::json!(p);
            }
            if let Some(e) = &single.embedding {
                json["embedding"] = serde_json::json!(e);
            }
        } else {
            json["results"] = serde_json::json!(self.results);
        }
        if let Some(s) = self.similarity {
            json["similarity"] = serde_json::json!(s);
        }
        json
    }
}

/// Runs `input` through `model`.
pub fn predict(model: &LoadedModel, input: &PredictInput) -> Result<PredictOutput, Error> {
    let task = model.task();
    let top_k = if input.top_k == 0 { 5 } else { input.top_k };
    if input.template.is_some() && task != Task::ZeroShotImageClassification {
        return Err(Error::Usage(format!("--template is for zero-shot (CLIP) models, not {task} models")));
    }
    let (names, response, latency_ms) = if task.takes_images() {
        if input.images.is_empty() {
            return Err(Error::Usage(format!("{task} models need an image: pass --image PATH")));
        }
        if !input.texts.is_empty() {
            return Err(Error::Usage(format!("{task} models take images, not --text")));
        }
        let images = input
            .images
            .iter()
            .map(|p| model::decode_image_file(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(model::ModelError::from)?;
        let started = Instant::now();
        let response = if task == Task::ZeroShotImageClassification {
            if input.labels.iter().all(|l| l.trim().is_empty()) {
                return Err(Error::Usage(
                    "zero-shot models need candidate labels: pass --labels \"a cat,a dog\"".into(),
                ));
            }
            model.run(&Request::ZeroShot {
                images: &images,
                labels: &input.labels,
                template: input.template.as_deref(),
            })?
        } else {
            model.run(&Request::Images(&images))?
        };
        let names = input.images.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        (names, response, started.elapsed().as_secs_f64() * 1e3)
    } else {
        if input.texts.is_empty() {
            return Err(Error::Usage(format!("{task} models need text: pass --text TEXT")));
        }
        if !input.images.is_empty() {
            return Err(Error::Usage(format!("{task} models take text, not --image")));
        }
        let started = Instant::now();
        let response = model.run(&Request::Texts { texts: &input.texts, max_tokens: None })?;
        (input.texts.clone(), response, started.elapsed().as_secs_f64() * 1e3)
    };
    let labels: Vec<String> = if task == Task::ZeroShotImageClassification {
        input.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    } else {
        model.labels().to_vec()
    };
    let mut similarity = None;
    let results = match response {
        Response::Scores(scores) => names
            .into_iter()
            .zip(scores)
            .map(|(name, s)| InputResult { input: name, predictions: Some(s.top_k(&labels, top_k)), embedding: None })
            .collect(),
        Response::Embeddings(vectors) => {
            if vectors.len() >= 2 {
                similarity = Some(cosine(&vectors[0], &vectors[1]));
            }
            names
                .into_iter()
                .zip(vectors)
                .map(|(name, v)| InputResult { input: name, predictions: None, embedding: Some(v) })
                .collect()
        }
    };
    Ok(PredictOutput { model: model.card().clone(), task, results, similarity, latency_ms })
}

/// Cosine similarity of two vectors (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}
