//! The one prediction path. Every prediction — a CLI `predict`, a Playground input through the
//! engine's slot workers, later replays and batches — goes through [`predict`]: check that the
//! inputs fit the model's task, run preprocessing and the network, time them, and shape the
//! answer (top-k labels, embeddings, similarity). Monitoring hooks in here, once: every answer
//! carries the features of its input and output ([`crate::monitor::features`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;
use serde::Serialize;

use crate::model::{self, LabelScore, LoadedModel, Request, Response, Task};
use crate::monitor::features;
use crate::monitor::Features;
use crate::Error;

/// A decoded image and the name it is reported under (a file name, "pasted image", ...).
#[derive(Debug, Clone)]
pub struct NamedImage {
    pub name: String,
    pub image: Arc<RgbImage>,
}

/// The inputs of one request: images or texts, never both.
#[derive(Debug, Clone)]
pub enum Inputs {
    Images(Vec<NamedImage>),
    /// Classifiers classify each text; embedding models embed each and compare the first two.
    Texts(Vec<String>),
}

impl Inputs {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Images(_) => "images",
            Self::Texts(_) => "text",
        }
    }
}

/// What a user asks a model, inputs already decoded.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub inputs: Inputs,
    /// Candidate labels for zero-shot models (blank entries are ignored).
    pub labels: Vec<String>,
    /// Zero-shot hypothesis template with `{}` for the label; `None` is the pipeline's default.
    pub template: Option<String>,
    /// Zero-shot text: score each candidate label on its own (several may be true).
    pub multi_label: bool,
    /// How many labels to return; 0 means 5.
    pub top_k: usize,
}

impl PredictRequest {
    pub fn images(images: Vec<NamedImage>) -> Self {
        Self { inputs: Inputs::Images(images), labels: Vec::new(), template: None, multi_label: false, top_k: 5 }
    }
    pub fn texts(texts: Vec<String>) -> Self {
        Self { inputs: Inputs::Texts(texts), labels: Vec::new(), template: None, multi_label: false, top_k: 5 }
    }
}

/// What the CLI asks: image files to decode, or texts.
#[derive(Debug, Clone, Default)]
pub struct PredictInput {
    pub images: Vec<PathBuf>,
    pub texts: Vec<String>,
    /// Candidate labels for zero-shot models.
    pub labels: Vec<String>,
    /// Zero-shot template with one `{}` for the label (None: the pipeline's default, "This is a
    /// photo of {}." for images and "This example is {}." for text).
    pub template: Option<String>,
    /// Zero-shot text: each label scored on its own.
    pub multi_label: bool,
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
    /// Input features (image or text), then output features (from the full score vector, not
    /// only the top k).
    pub features: Features,
    /// Every label's probability and logit, in label order (classifiers; `modeldeck serve`
    /// answers with them).
    #[serde(skip)]
    pub scores: Option<model::Scores>,
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
    /// Remote models: what the server reports it spent of `latency_ms` (the rest is the
    /// network and this side's encoding).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_ms: Option<f64>,
}

impl PredictOutput {
    /// The JSON the CLI prints: a single input's `predictions`/`embedding` at the top level.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "model": self.model,
            "task": self.task,
            "latency_ms": self.latency_ms,
        });
        if let Some(server) = self.server_ms {
            json["server_ms"] = serde_json::json!(server);
            json["network_ms"] = serde_json::json!((self.latency_ms - server).max(0.0));
        }
        if let [single] = self.results.as_slice() {
            if let Some(p) = &single.predictions {
                json["predictions"] = serde_json::json!(p);
            }
            if let Some(e) = &single.embedding {
                json["embedding"] = serde_json::json!(e);
            }
            json["features"] = single.features.to_json();
        } else {
            json["results"] = serde_json::json!(self.results);
        }
        if let Some(s) = self.similarity {
            json["similarity"] = serde_json::json!(s);
        }
        json
    }

    /// Each input's result with the id and latency it is logged and monitored under: the
    /// request's id for a single input, `ID-0`, `ID-1`, ... for several, and an even share of the
    /// request's latency.
    pub fn per_input<'a>(&'a self, request_id: &'a str) -> impl Iterator<Item = (String, f64, &'a InputResult)> + 'a {
        let many = self.results.len() > 1;
        let per_input_ms = self.latency_ms / self.results.len().max(1) as f64;
        self.results.iter().enumerate().map(move |(i, result)| {
            let id = if many { format!("{request_id}-{i}") } else { request_id.to_string() };
            (id, per_input_ms, result)
        })
    }

    /// The first input's labels, most probable first (classifiers).
    pub fn labels(&self) -> Option<&[LabelScore]> {
        self.results.first()?.predictions.as_deref()
    }

    /// The first input's top label.
    pub fn top_label(&self) -> Option<&str> {
        self.labels()?.first().map(|l| l.label.as_str())
    }

    /// Length of the first embedding (embedding models).
    pub fn embedding_dims(&self) -> Option<usize> {
        self.results.first()?.embedding.as_ref().map(Vec::len)
    }
}

/// Decodes the CLI's image files, then runs [`predict`].
pub fn predict_files(model: &LoadedModel, input: &PredictInput) -> Result<PredictOutput, Error> {
    let task = model.task();
    let inputs = match (input.images.is_empty(), input.texts.is_empty()) {
        (false, false) => {
            return Err(Error::Usage(format!("give either --image or --text, not both ({task} models take one kind)")))
        }
        (true, true) if task.takes_images() => {
            return Err(Error::Usage(format!("{task} models need an image: pass --image PATH")))
        }
        (true, true) => return Err(Error::Usage(format!("{task} models need text: pass --text TEXT"))),
        (false, true) => {
            let images = input
                .images
                .iter()
                .map(|p| {
                    let image = model::decode_image_file(p).map_err(model::ModelError::from)?;
                    Ok(NamedImage { name: p.display().to_string(), image: Arc::new(image) })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            Inputs::Images(images)
        }
        (true, false) => Inputs::Texts(input.texts.clone()),
    };
    if input.labels.iter().any(|l| !l.trim().is_empty()) && !model.task().takes_candidate_labels() {
        return Err(Error::Usage(format!(
            "candidate labels (--labels) are for zero-shot models; {} is a {} model with its own labels",
            model.card().name,
            model.task()
        )));
    }
    let request = PredictRequest {
        inputs,
        labels: input.labels.clone(),
        template: input.template.clone(),
        multi_label: input.multi_label,
        top_k: input.top_k,
    };
    predict(model, &request)
}

/// Runs `request` through `model`: the single prediction path.
pub fn predict(model: &LoadedModel, request: &PredictRequest) -> Result<PredictOutput, Error> {
    let task = model.task();
    let top_k = if request.top_k == 0 { 5 } else { request.top_k };
    let wrong_kind =
        || Error::Usage(format!("{} is for {task} and does not take {}", model.card().name, request.inputs.kind()));
    if request.template.is_some() && !task.takes_candidate_labels() {
        return Err(Error::Usage(format!("a template (--template) is for zero-shot models, not {task} models")));
    }
    if request.multi_label && task != Task::ZeroShotTextClassification {
        return Err(Error::Usage(format!(
            "multi-label scoring (--multi-label) is for zero-shot text models (NLI), not {task} models"
        )));
    }
    let labels: Vec<String> = request.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if task.takes_candidate_labels() && labels.is_empty() {
        return Err(Error::Usage(format!(
            "{task} models need candidate labels: pass --labels \"{}\"",
            if task.takes_images() { "a cat,a dog" } else { "sports,politics,technology" }
        )));
    }

    let (names, input_features, response, latency_ms, server_ms) = match &request.inputs {
        Inputs::Images(images) => {
            if !task.takes_images() {
                return Err(wrong_kind());
            }
            if images.is_empty() {
                return Err(Error::Usage(format!("{task} models need an image")));
            }
            // The model API takes a slice of images: one image is borrowed, several are copied.
            let copies: Vec<RgbImage>;
            let pixels: &[RgbImage] = match images.as_slice() {
                [one] => std::slice::from_ref(one.image.as_ref()),
                many => {
                    copies = many.iter().map(|i| i.image.as_ref().clone()).collect();
                    &copies
                }
            };
            let started = Instant::now();
            let (response, server_ms) = if task == Task::ZeroShotImageClassification {
                model.run_timed(&Request::ZeroShot {
                    images: pixels,
                    labels: &labels,
                    template: request.template.as_deref(),
                })?
            } else {
                model.run_timed(&Request::Images(pixels))?
            };
            let latency_ms = started.elapsed().as_secs_f64() * 1e3;
            // On the images as given, not as preprocessed; outside the model's latency.
            let input_features: Vec<Features> = pixels.iter().map(features::image_features).collect();
            let names = images.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
            (names, input_features, response, latency_ms, server_ms)
        }
        Inputs::Texts(texts) => {
            if task.takes_images() {
                return Err(wrong_kind());
            }
            if texts.is_empty() {
                return Err(Error::Usage(format!("{task} models need text")));
            }
            let started = Instant::now();
            let batch = if task == Task::ZeroShotTextClassification {
                model.prepare(&Request::ZeroShotTexts {
                    texts,
                    labels: &labels,
                    template: request.template.as_deref(),
                    multi_label: request.multi_label,
                })?
            } else {
                model.prepare(&Request::Texts { texts, max_tokens: None })?
            };
            let (response, server_ms) = model.forward_timed(&batch)?;
            let latency_ms = started.elapsed().as_secs_f64() * 1e3;
            // The text features come from the tokenization the model just ran on. A remote
            // model's tokenizer is on the server: only the characters are measured here.
            let input_features = match &batch.text {
                Some(encoded) => encoded.lengths.iter().map(features::text_length_features).collect(),
                None => texts.iter().map(|t| features::text_char_features(t)).collect(),
            };
            (texts.clone(), input_features, response, latency_ms, server_ms)
        }
    };
    let label_names: &[String] = if task.takes_candidate_labels() { &labels } else { model.labels() };
    let answer = ModelAnswer { names, input_features, response, latency_ms, server_ms };
    Ok(shape_output(model, label_names, answer, top_k))
}

/// What the model gave for a request, before it is shaped into a [`PredictOutput`].
pub struct ModelAnswer {
    pub names: Vec<String>,
    pub input_features: Vec<Features>,
    pub response: Response,
    pub latency_ms: f64,
    pub server_ms: Option<f64>,
}

/// Shapes a model's answer: top-k labels, embeddings, output features, the similarity of the
/// first two embeddings.
pub fn shape_output(model: &LoadedModel, label_names: &[String], answer: ModelAnswer, top_k: usize) -> PredictOutput {
    let ModelAnswer { names, input_features, response, latency_ms, server_ms } = answer;
    let mut similarity = None;
    let results = match response {
        Response::Scores(scores) => names
            .into_iter()
            .zip(scores)
            .zip(input_features)
            .map(|((name, s), mut features)| {
                features.extend(features::score_features(&s.probs));
                let predictions = Some(s.top_k(label_names, top_k));
                InputResult { input: name, predictions, embedding: None, features, scores: Some(s) }
            })
            .collect(),
        Response::Embeddings(vectors) => {
            if let [first, second, ..] = vectors.as_slice() {
                similarity = Some(cosine(first, second));
            }
            names
                .into_iter()
                .zip(vectors)
                .zip(input_features)
                .map(|((name, v), mut features)| {
                    features.extend(features::embedding_features(&v));
                    InputResult { input: name, predictions: None, embedding: Some(v), features, scores: None }
                })
                .collect()
        }
    };
    PredictOutput { model: model.card().clone(), task: model.task(), results, similarity, latency_ms, server_ms }
}

/// Cosine similarity of two vectors (0 when either is all zeros or their lengths differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}
