//! Models: one trait for every architecture, a registry that picks the architecture from
//! config.json, and the preprocessing each checkpoint declares (image processor, tokenizer).
//!
//! Networks are written here against Hugging Face tensor names on one set of fused kernels, so
//! that speed work and `--precision` happen in one place. candle-transformers was weighed per
//! family and not used: it lacks the sequence-classification heads of the BERT family and uses
//! timm names for ResNet/ConvNeXt; for DeBERTa-v2/v3 and ModernBERT each module's docs say why
//! (configs read differently from transformers, no logits, options hard-coded, plain candle ops
//! outside the quantised kernels). Zero-shot text classification ([`nli`]) wraps whichever text
//! classifier family the NLI checkpoint is.

pub mod amx;
mod bert;
mod clip;
pub mod cnn;
pub mod config;
mod convnext;
mod deberta;
pub mod fastconv;
mod head;
pub mod image;
pub mod kernels;
pub(crate) mod layers;
mod modernbert;
pub mod nli;
mod pool;
pub mod quant;
mod resnet;
pub mod sgemm;
mod siglip;
mod spm;
pub mod text;
mod vit;
pub mod weights;

use std::time::Instant;

use candle_core::{Device, Tensor};

use crate::source::{ModelFiles, ModelSource};
pub use clip::HYPOTHESIS_TEMPLATE as ZERO_SHOT_TEMPLATE;
pub use config::{Architecture, ModelConfig, Task};
pub use image::{decode_image_file, ImageError, ImagePreprocessor};
pub use nli::HYPOTHESIS_TEMPLATE as ZERO_SHOT_TEXT_TEMPLATE;
pub use quant::Precision;
pub use text::TextEncoder;

/// What a user sees about a loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelCard {
    pub name: String,
    pub source: String,
    pub revision: Option<String>,
    pub architecture: String,
    pub task: Task,
    pub labels: Vec<String>,
    pub parameters: u64,
    /// The dtype stored in the checkpoint.
    pub dtype: String,
    /// What the linear and convolution layers run in (`--precision`); the rest is f32.
    pub precision: Precision,
    /// How `precision` stores weights and activations, in words.
    pub quantization: String,
    /// The kernels that run `precision` on this machine (AMX, AVX-512, portable).
    pub kernel: String,
    pub size_bytes: u64,
    /// The weights as held in memory for inference (prepared, packed or quantised).
    pub memory_bytes: u64,
    pub load_ms: f64,
    /// Remote models: where they are served and how they answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Box<crate::remote::EndpointCard>>,
}

/// One request to a model: a batch of inputs of the kind its task takes.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    Images(&'a [::image::RgbImage]),
    /// `max_tokens` lowers the model's own truncation length (benchmarks use it).
    Texts {
        texts: &'a [String],
        max_tokens: Option<usize>,
    },
    /// Zero-shot image classification: every image against the same candidate labels, each put
    /// into `template` at `{}` (the pipeline's `hypothesis_template`; `None` = "This is a photo of {}.").
    ZeroShot {
        images: &'a [::image::RgbImage],
        labels: &'a [String],
        template: Option<&'a str>,
    },
    /// Zero-shot text classification with an NLI model: every text (the premise) against the
    /// same candidate labels, each put into `template` at `{}` as the hypothesis (`None` = "This
    /// example is {}."). `multi_label`: score each label on its own instead of one distribution.
    ZeroShotTexts {
        texts: &'a [String],
        labels: &'a [String],
        template: Option<&'a str>,
        multi_label: bool,
    },
}

/// The model's answer, one entry per input.
#[derive(Debug, Clone)]
pub enum Response {
    /// Probabilities (and raw logits) in label order.
    Scores(Vec<Scores>),
    Embeddings(Vec<Vec<f32>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub logits: Vec<f32>,
    pub probs: Vec<f32>,
}

/// A label and its probability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

impl Scores {
    /// The `k` most probable labels, most probable first (ties keep label order).
    pub fn top_k(&self, labels: &[String], k: usize) -> Vec<LabelScore> {
        let mut order: Vec<usize> = (0..self.probs.len()).collect();
        order.sort_by(|&a, &b| self.probs[b].total_cmp(&self.probs[a]).then(a.cmp(&b)));
        order
            .into_iter()
            .take(k)
            .map(|i| LabelScore {
                label: labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")),
                score: self.probs[i],
            })
            .collect()
    }
}

/// Inputs turned into tensors, ready for the network.
pub struct Batch {
    pub size: usize,
    pub pixel_values: Option<Tensor>,
    pub text: Option<text::EncodedBatch>,
    /// Inputs a remote model sends as they are.
    pub raw: Option<RawInputs>,
    /// Zero-shot text: `text` holds one (text, hypothesis) pair per text and label.
    pub pairs: Option<nli::PairLayout>,
}

/// What a remote model's request carries besides tensors.
#[derive(Debug, Clone)]
pub enum RawInputs {
    Texts(Vec<String>),
    /// Encoded image files (PNG).
    Encoded(Vec<Vec<u8>>),
}

/// Every architecture behind one interface. `prepare` does preprocessing/tokenization and
/// `forward` runs the network, so benchmarks can time the two apart.
pub trait Network: Send + Sync {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError>;
    fn forward(&self, batch: &Batch) -> Result<Response, ModelError>;

    /// `forward` plus the time the server reports it spent (remote models), in ms.
    fn forward_timed(&self, batch: &Batch) -> Result<(Response, Option<f64>), ModelError> {
        Ok((self.forward(batch)?, None))
    }

    /// What the final classification layer sees, `(batch, features)`: the frozen representation
    /// a new head is trained on. Models without one say so.
    fn features(&self, _batch: &Batch) -> Result<Tensor, ModelError> {
        Err(ModelError::Input("this model has no feature extractor to train a head on".into()))
    }

    /// Tensor names of the final linear layer (weight, bias), when the model has one.
    fn head_names(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// The tokenizer, for text models.
    fn text_encoder(&self) -> Option<&TextEncoder> {
        None
    }

    /// Zero-shot models: the L2-normalised `(image, text)` embeddings whose scaled cosines are
    /// the logits. Only the reference tests read them.
    #[doc(hidden)]
    fn zero_shot_embeddings(&self, _batch: &Batch) -> Result<(Tensor, Tensor), ModelError> {
        Err(ModelError::Input("this model does not embed images and texts".into()))
    }
}

/// A loaded model: its card and its network.
pub struct LoadedModel {
    card: ModelCard,
    network: Box<dyn Network>,
}

impl LoadedModel {
    pub(crate) fn from_parts(card: ModelCard, network: Box<dyn Network>) -> Self {
        Self { card, network }
    }
    pub fn card(&self) -> &ModelCard {
        &self.card
    }
    pub fn task(&self) -> Task {
        self.card.task
    }
    pub fn labels(&self) -> &[String] {
        &self.card.labels
    }
    pub fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        self.network.prepare(request)
    }
    pub fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        self.network.forward(batch)
    }
    /// `forward` plus the time a remote server reports it spent, in ms.
    pub fn forward_timed(&self, batch: &Batch) -> Result<(Response, Option<f64>), ModelError> {
        self.network.forward_timed(batch)
    }
    pub fn run(&self, request: &Request) -> Result<Response, ModelError> {
        let batch = self.prepare(request)?;
        self.forward(&batch)
    }
    /// `run` plus the server's reported time (remote models).
    pub fn run_timed(&self, request: &Request) -> Result<(Response, Option<f64>), ModelError> {
        let batch = self.prepare(request)?;
        self.forward_timed(&batch)
    }
    /// True for a model served elsewhere.
    pub fn is_remote(&self) -> bool {
        self.card.endpoint.is_some()
    }
    pub fn text_encoder(&self) -> Option<&TextEncoder> {
        self.network.text_encoder()
    }
    pub fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        self.network.features(batch)
    }
    pub fn head_names(&self) -> Option<(&'static str, &'static str)> {
        self.network.head_names()
    }
    #[doc(hidden)]
    pub fn zero_shot_embeddings(&self, batch: &Batch) -> Result<(Tensor, Tensor), ModelError> {
        self.network.zero_shot_embeddings(batch)
    }
}

/// Loads a model from resolved files in f32: reads config.json, picks the architecture, builds
/// the network from the weights and the preprocessing from the checkpoint's own files.
pub fn load(files: &ModelFiles) -> Result<LoadedModel, ModelError> {
    load_with(files, Precision::F32)
}

/// As `load`, with the linear and convolution layers in `precision`.
pub fn load_with(files: &ModelFiles, precision: Precision) -> Result<LoadedModel, ModelError> {
    let started = Instant::now();
    let device = Device::Cpu;
    let config = ModelConfig::from_file(&files.config)?;
    let architecture = config.architecture(files)?;
    let weights = weights::Weights::open(files, &device)?;
    let (network, stats) = weights.with_mapped(|| {
        quant::with_load_precision(precision, || build_network(files, &config, &weights, architecture))
    });
    let (network, task) = with_zero_shot_text(network?, architecture, &config)?;
    let parameters = weights.parameter_count();
    let card = ModelCard {
        name: model_name(&files.source),
        source: files.source.to_string(),
        revision: files.revision.clone(),
        architecture: architecture.name().to_string(),
        task,
        labels: if task.has_fixed_labels() { config.classes()?.labels } else { Vec::new() },
        parameters,
        dtype: weights.dtype_name(),
        precision,
        quantization: precision.scheme().to_string(),
        kernel: precision.kernel().to_string(),
        size_bytes: files.size_bytes(),
        memory_bytes: stats.dense_bytes + parameters.saturating_sub(stats.dense_parameters) * 4,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        endpoint: None,
    };
    Ok(LoadedModel { card, network })
}

/// A text classifier whose labels name entailment is an NLI model: it answers zero-shot requests
/// (`nli`), the task its family is used for on the Hub.
fn with_zero_shot_text(
    network: Box<dyn Network>,
    architecture: Architecture,
    config: &ModelConfig,
) -> Result<(Box<dyn Network>, Task), ModelError> {
    let task = architecture.task();
    if task != Task::TextClassification || architecture == Architecture::SentenceClassifier {
        return Ok((network, task));
    }
    Ok(match nli::NliLabels::find(&config.classes()?.labels) {
        Some(labels) => (Box::new(nli::ZeroShotText::new(network, labels)), Task::ZeroShotTextClassification),
        None => (network, task),
    })
}

fn build_network(
    files: &ModelFiles,
    config: &ModelConfig,
    weights: &weights::Weights,
    architecture: Architecture,
) -> Result<Box<dyn Network>, ModelError> {
    Ok(match architecture {
        Architecture::Vit => Box::new(vit::VitClassifier::load(files, config, weights)?),
        Architecture::ResNet => Box::new(resnet::ResNetClassifier::load(files, config, weights)?),
        Architecture::ConvNext => Box::new(convnext::ConvNextClassifier::load(files, config, weights)?),
        Architecture::Bert | Architecture::DistilBert | Architecture::Roberta | Architecture::XlmRoberta => {
            Box::new(bert::TextClassifier::load(files, config, weights, architecture)?)
        }
        Architecture::SentenceBert => Box::new(bert::SentenceEmbedder::load(files, config, weights)?),
        Architecture::Clip => Box::new(clip::ClipZeroShot::load(files, config, weights)?),
        Architecture::Cnn => Box::new(cnn::CnnClassifier::load(files, config, weights)?),
        Architecture::SentenceClassifier => Box::new(bert::SentenceClassifier::load(files, config, weights)?),
        Architecture::DebertaV2 => Box::new(deberta::DebertaBackbone::load(files, config, weights)?),
        Architecture::ModernBert => Box::new(modernbert::ModernBertBackbone::load(files, config, weights)?),
        Architecture::Siglip => Box::new(siglip::SiglipZeroShot::load(files, config, weights)?),
    })
}

/// Resolves and loads in one call, in `options.precision`; a remote source connects to its
/// endpoint instead (and refuses a precision other than f32: the server decides how it runs).
pub fn load_source(source: &ModelSource, options: &crate::source::ResolveOptions) -> Result<LoadedModel, crate::Error> {
    if let ModelSource::Remote { url } = source {
        let spec = crate::remote::RemoteSpec::parse(url).map_err(crate::source::SourceError::InvalidSource)?;
        if options.cancel.is_cancelled() {
            return Err(crate::source::SourceError::Cancelled.into());
        }
        if options.precision != Precision::F32 {
            return Err(ModelError::Input(format!(
                "--precision {} applies to models run here; a remote endpoint runs in whatever precision its server loaded",
                options.precision
            ))
            .into());
        }
        return Ok(crate::remote::load(&spec)?);
    }
    let files = crate::source::resolve(source, options)?;
    Ok(load_with(&files, options.precision)?)
}

fn model_name(source: &ModelSource) -> String {
    match source {
        ModelSource::Hub { repo_id, .. } => repo_id.clone(),
        ModelSource::Demo { name } => name.clone(),
        ModelSource::Remote { url } => url.clone(),
        ModelSource::Local { path } => {
            let path = if path.is_file() { path.parent().unwrap_or(path) } else { path.as_path() };
            let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            canonical
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.display().to_string())
        }
    }
}

/// Puts each label into `template` at its one `{}`, as the pipeline's `template.format(label)`.
pub(crate) fn prompts(template: &str, labels: &[String]) -> Result<Vec<String>, ModelError> {
    match template.matches("{}").count() {
        1 => Ok(labels.iter().map(|l| template.replacen("{}", l, 1)).collect()),
        0 => Err(ModelError::Input(format!(
            "the zero-shot template `{template}` has no `{{}}` to put the label in (for example \"a photo of a {{}}.\", or \"{{}}\" for the label alone)"
        ))),
        n => Err(ModelError::Input(format!(
            "the zero-shot template `{template}` has {n} `{{}}`; it takes exactly one, where the label goes"
        ))),
    }
}

/// The candidate labels of a zero-shot request, trimmed and without blanks; none left is an error.
pub(crate) fn candidate_labels(labels: &[String]) -> Result<Vec<String>, ModelError> {
    let labels: Vec<String> = labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        return Err(ModelError::Input("zero-shot classification needs at least one candidate label".into()));
    }
    Ok(labels)
}

/// A zero-shot image request as a batch: its images preprocessed and its prompts (each candidate
/// label in the request's template, "This is a photo of {}." by default) tokenized by `encode`,
/// the one step in which CLIP and SigLIP differ.
pub(crate) fn zero_shot_image_batch(
    preprocessor: &ImagePreprocessor,
    request: &Request,
    encode: impl FnOnce(&[String]) -> Result<text::EncodedBatch, ModelError>,
) -> Result<Batch, ModelError> {
    let task = Task::ZeroShotImageClassification;
    let Request::ZeroShot { images, labels, template } = request else {
        return Err(ModelError::WrongInput {
            task,
            expected: "an image with candidate labels",
            given: if matches!(request, Request::Images(_)) { "images without labels" } else { "text" },
        });
    };
    let prompts = prompts(template.unwrap_or(ZERO_SHOT_TEMPLATE), &candidate_labels(labels)?)?;
    let mut batch = image_batch(preprocessor, &Request::Images(images), &Device::Cpu, task)?;
    batch.text = Some(encode(&prompts)?);
    Ok(batch)
}

/// Checks that preprocessing made the `size` x `size` images a vision tower takes.
pub(crate) fn expect_square_pixels(pixels: &Tensor, size: usize) -> Result<(), ModelError> {
    let (_, _, h, w) = pixels.dims4()?;
    if (h, w) != (size, size) {
        return Err(ModelError::Input(format!(
            "preprocessing produced {w}x{h} images but the vision tower expects {size}x{size}"
        )));
    }
    Ok(())
}

/// Preprocesses the images of a request for an image model.
pub(crate) fn image_batch(
    preprocessor: &ImagePreprocessor,
    request: &Request,
    device: &Device,
    task: Task,
) -> Result<Batch, ModelError> {
    match request {
        Request::Images(images) => {
            if images.is_empty() {
                return Err(ModelError::Input("no image given".into()));
            }
            Ok(Batch {
                size: images.len(),
                pixel_values: Some(preprocessor.batch_tensor(images, device)?),
                text: None,
                raw: None,
                pairs: None,
            })
        }
        Request::Texts { .. } | Request::ZeroShotTexts { .. } => {
            Err(ModelError::WrongInput { task, expected: "images", given: "text" })
        }
        Request::ZeroShot { .. } => {
            Err(ModelError::WrongInput { task, expected: "images without candidate labels", given: "candidate labels" })
        }
    }
}

pub(crate) fn take_pixels(batch: &Batch) -> Result<&Tensor, ModelError> {
    batch.pixel_values.as_ref().ok_or_else(|| ModelError::Input("this batch holds no images".into()))
}

/// Turns a `(batch, labels)` logits tensor into scores.
pub(crate) fn scores_from_logits(logits: &Tensor, use_sigmoid: bool) -> Result<Response, ModelError> {
    let scores = layers::rows(logits)?
        .into_iter()
        .map(|logits| {
            let probs = if use_sigmoid { sigmoid(&logits) } else { softmax(&logits) };
            Scores { logits, probs }
        })
        .collect();
    Ok(Response::Scores(scores))
}

/// Softmax over a slice in f64, as a numerically stable reference for small label sets.
pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exps: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

pub(crate) fn sigmoid(logits: &[f32]) -> Vec<f32> {
    logits.iter().map(|&x| (1.0 / (1.0 + (-(x as f64)).exp())) as f32).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {reason}", path.display())]
    Config { path: std::path::PathBuf, reason: String },
    #[error("unsupported architecture `{found}`; supported: {supported}")]
    Unsupported { found: String, supported: String },
    #[error("{}: {reason}", path.display())]
    Weights { path: std::path::PathBuf, reason: String },
    #[error("the weights do not fit {architecture}: {reason}")]
    WeightsMismatch { architecture: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Tokenizer { path: std::path::PathBuf, reason: String },
    #[error("this model needs a tokenizer.json beside config.json in {}{}", .0.display(), sentencepiece_hint(.0))]
    MissingTokenizer(std::path::PathBuf),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{task} models take {expected}, not {given}")]
    WrongInput { task: Task, expected: &'static str, given: &'static str },
    #[error(transparent)]
    Remote(#[from] crate::remote::RemoteError),
    #[error("inference failed: {}", weights::describe(.0))]
    Compute(#[from] candle_core::Error),
}

/// For a folder with a SentencePiece model but no tokenizer.json (SigLIP v1, older T5-style
/// checkpoints): what is there and what ModelDeck reads instead.
fn sentencepiece_hint(root: &std::path::Path) -> String {
    let found = ["spiece.model", "sentencepiece.bpe.model", "spm.model", "tokenizer.model"]
        .into_iter()
        .find(|name| root.join(name).is_file());
    match found {
        Some(name) => format!(
            " (it has only {name}, a SentencePiece model; ModelDeck reads the tokenizers library's tokenizer.json, which most Hub checkpoints ship, and spiece.model only for SigLIP's SiglipTokenizer)"
        ),
        None => String::new(),
    }
}
