//! The BERT family (BERT, DistilBERT, RoBERTa, XLM-RoBERTa) with the sequence-classification
//! heads of `transformers`, and sentence-transformers embedding models (BERT + pooling +
//! optional normalisation).

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::layers::{self, Activation, Encoder, EncoderSpec};
use super::text::{EncodedBatch, TextEncoder};
use super::weights::Weights;
use super::{Batch, ModelError, Network, Request, Response};
use crate::source::ModelFiles;

/// Token, position and (optional) token-type embeddings followed by a layer norm.
struct TextEmbeddings {
    word: Embedding,
    position: Embedding,
    /// The token-type table; rows past 0 are read only for text pairs that mark the second text.
    token_type: Option<Embedding>,
    norm: LayerNorm,
    /// RoBERTa numbers positions from `padding_idx + 1`, skipping padding.
    roberta_padding_idx: Option<u32>,
}

impl TextEmbeddings {
    fn forward(&self, batch: &EncodedBatch) -> candle_core::Result<Tensor> {
        let (b, t) = batch.input_ids.dims2()?;
        let device = batch.input_ids.device();
        let words = self.word.forward(&batch.input_ids)?;
        let positions: Vec<u32> = match self.roberta_padding_idx {
            None => (0..b).flat_map(|_| 0..t as u32).collect(),
            Some(pad) => batch
                .input_ids
                .to_vec2::<u32>()?
                .iter()
                .flat_map(|seq| {
                    let mut count = 0u32;
                    seq.iter()
                        .map(|&id| {
                            if id == pad {
                                pad
                            } else {
                                count += 1;
                                pad + count
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        };
        let positions = Tensor::from_vec(positions, (b, t), device)?;
        let mut x = (words + self.position.forward(&positions)?)?;
        if let Some(table) = &self.token_type {
            x = match &batch.type_ids {
                // A table of one row (RoBERTa) has no second segment: its tokenizers leave types out.
                Some(types) if table.embeddings().dim(0)? > 1 => (x + table.forward(types)?)?,
                // Every input a single segment: add row 0.
                _ => x.broadcast_add(&table.embeddings().narrow(0, 0, 1)?)?,
            };
        }
        self.norm.forward(&x)
    }
}

/// The encoder shared by the family: embeddings and transformer layers.
struct BertBackbone {
    embeddings: TextEmbeddings,
    encoder: Encoder,
    hidden: usize,
}

impl BertBackbone {
    fn forward(&self, batch: &EncodedBatch) -> candle_core::Result<Tensor> {
        let x = self.embeddings.forward(batch)?;
        let mask = if batch.has_padding { Some(layers::padding_mask(&batch.attention_mask)?) } else { None };
        self.encoder.forward(&x, mask.as_ref())
    }
}

/// config.json of BERT, RoBERTa and XLM-RoBERTa (transformers' `BertConfig`, `RobertaConfig` and
/// `XLMRobertaConfig` share these fields), and of a sentence-transformers `BertModel`.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "defaults::eps_1e_12")]
    pub layer_norm_eps: f64,
    #[serde(default = "defaults::gelu")]
    pub hidden_act: Activation,
    /// Defaults to 0 for BERT, to 1 for RoBERTa and XLM-RoBERTa.
    pub pad_token_id: Option<usize>,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

/// config.json of DistilBERT (transformers' `DistilBertConfig`), whose fields have their own names.
#[derive(Debug, Clone, Deserialize)]
pub struct DistilBertConfig {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub hidden_dim: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "defaults::gelu")]
    pub activation: Activation,
    /// Defaults to 0.
    pub pad_token_id: Option<usize>,
}

/// What the backbone is built from, whichever of the two config layouts it came from.
struct BackboneShape {
    spec: EncoderSpec,
    vocab: usize,
    max_positions: usize,
    /// Rows of the token-type table; DistilBERT has none.
    token_types: Option<usize>,
    pad: usize,
}

impl BackboneShape {
    fn read(config: &ModelConfig, architecture: Architecture) -> Result<Self, ModelError> {
        if architecture == Architecture::DistilBert {
            let cfg: DistilBertConfig = config.parse()?;
            return Ok(Self {
                spec: EncoderSpec {
                    hidden: cfg.dim,
                    heads: cfg.n_heads,
                    intermediate: cfg.hidden_dim,
                    layers: cfg.n_layers,
                    // DistilBERT's layer norms use a fixed epsilon.
                    eps: 1e-12,
                    activation: cfg.activation,
                    pre_norm: false,
                    qkv_bias: true,
                },
                vocab: cfg.vocab_size,
                max_positions: cfg.max_position_embeddings,
                token_types: None,
                pad: cfg.pad_token_id.unwrap_or(0),
            });
        }
        let cfg: BertConfig = config.parse()?;
        if cfg.position_embedding_type != "absolute" {
            return Err(config.error(format!(
                "field `position_embedding_type`: `{}` is not supported (only absolute)",
                cfg.position_embedding_type
            )));
        }
        let is_roberta = matches!(architecture, Architecture::Roberta | Architecture::XlmRoberta);
        Ok(Self {
            spec: EncoderSpec {
                hidden: cfg.hidden_size,
                heads: cfg.num_attention_heads,
                intermediate: cfg.intermediate_size,
                layers: cfg.num_hidden_layers,
                eps: cfg.layer_norm_eps,
                activation: cfg.hidden_act,
                pre_norm: false,
                qkv_bias: true,
            },
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
            token_types: Some(cfg.type_vocab_size),
            pad: cfg.pad_token_id.unwrap_or(if is_roberta { 1 } else { 0 }),
        })
    }
}

/// Reads the backbone of `architecture` from `vb` (already at the model prefix) and returns it
/// with the longest sequence its position table allows.
fn load_backbone(
    vb: VarBuilder,
    shape: &BackboneShape,
    architecture: Architecture,
    weights: &Weights,
) -> Result<(BertBackbone, usize), ModelError> {
    let BackboneShape { spec, vocab, max_positions, token_types, pad } = *shape;
    let is_roberta = matches!(architecture, Architecture::Roberta | Architecture::XlmRoberta);
    let h = spec.hidden;
    let build = || -> candle_core::Result<BertBackbone> {
        let e = vb.pp("embeddings");
        let token_type =
            token_types.map(|types| candle_nn::embedding(types, h, e.pp("token_type_embeddings"))).transpose()?;
        let layer_prefix = if architecture == Architecture::DistilBert { "transformer.layer" } else { "encoder.layer" };
        let names =
            if architecture == Architecture::DistilBert { &layers::DISTILBERT_NAMES } else { &layers::BERT_NAMES };
        Ok(BertBackbone {
            embeddings: TextEmbeddings {
                word: candle_nn::embedding(vocab, h, e.pp("word_embeddings"))?,
                position: candle_nn::embedding(max_positions, h, e.pp("position_embeddings"))?,
                token_type,
                norm: candle_nn::layer_norm(h, spec.eps, e.pp("LayerNorm"))?,
                roberta_padding_idx: is_roberta.then_some(pad as u32),
            },
            encoder: Encoder::load(vb.pp(layer_prefix), spec, names)?,
            hidden: h,
        })
    };
    let limit = if is_roberta { max_positions.saturating_sub(pad + 1) } else { max_positions };
    Ok((build().map_err(|e| weights.mismatch(architecture.name(), e))?, limit))
}

/// A `transformers` `*ForSequenceClassification` model of the BERT family.
pub struct TextClassifier {
    backbone: BertBackbone,
    head: ClassifierHead,
    text: TextEncoder,
    sigmoid: bool,
    device: Device,
}

/// The layers between the first token and the final linear classifier.
enum PreHead {
    /// BERT's pooler and RoBERTa's classifier.dense: linear + tanh.
    Tanh(Linear),
    /// DistilBERT's pre_classifier: linear + ReLU.
    Relu(Linear),
}

struct ClassifierHead {
    pre: PreHead,
    classifier: Linear,
    names: (&'static str, &'static str),
}

impl ClassifierHead {
    fn features(&self, cls: &Tensor) -> candle_core::Result<Tensor> {
        match &self.pre {
            PreHead::Tanh(dense) => dense.forward(cls)?.tanh(),
            PreHead::Relu(dense) => dense.forward(cls)?.relu(),
        }
    }
}

impl TextClassifier {
    pub fn load(
        files: &ModelFiles,
        config: &ModelConfig,
        weights: &Weights,
        architecture: Architecture,
    ) -> Result<Self, ModelError> {
        let name = architecture.name();
        let prefix = match architecture {
            Architecture::DistilBert => "distilbert",
            Architecture::Roberta | Architecture::XlmRoberta => "roberta",
            _ => "bert",
        };
        let shape = BackboneShape::read(config, architecture)?;
        let classes = config.classes()?;
        let labels = classes.len();
        let vb = weights.builder();
        let (backbone, limit) = load_backbone(vb.pp(prefix), &shape, architecture, weights)?;
        let h = backbone.hidden;
        let head = (|| -> candle_core::Result<ClassifierHead> {
            Ok(match architecture {
                Architecture::DistilBert => ClassifierHead {
                    pre: PreHead::Relu(candle_nn::linear(h, h, vb.pp("pre_classifier"))?),
                    classifier: candle_nn::linear(h, labels, vb.pp("classifier"))?,
                    names: ("classifier.weight", "classifier.bias"),
                },
                Architecture::Roberta | Architecture::XlmRoberta => ClassifierHead {
                    pre: PreHead::Tanh(candle_nn::linear(h, h, vb.pp("classifier.dense"))?),
                    classifier: candle_nn::linear(h, labels, vb.pp("classifier.out_proj"))?,
                    names: ("classifier.out_proj.weight", "classifier.out_proj.bias"),
                },
                _ => ClassifierHead {
                    pre: PreHead::Tanh(candle_nn::linear(h, h, vb.pp(prefix).pp("pooler.dense"))?),
                    classifier: candle_nn::linear(h, labels, vb.pp("classifier"))?,
                    names: ("classifier.weight", "classifier.bias"),
                },
            })
        })()
        .map_err(|e| weights.mismatch(name, e))?;
        Ok(Self {
            backbone,
            head,
            text: TextEncoder::load(files, limit, Some(shape.pad as u32))?,
            sigmoid: classes.use_sigmoid,
            device: Device::Cpu,
        })
    }
}

pub(crate) fn text_batch(
    encoder: &TextEncoder,
    request: &Request,
    device: &Device,
    task: super::Task,
) -> Result<Batch, ModelError> {
    match request {
        Request::Texts { texts, max_tokens } => Ok(Batch {
            size: texts.len(),
            pixel_values: None,
            text: Some(encoder.encode(texts, *max_tokens, device)?),
            raw: None,
            pairs: None,
        }),
        Request::ZeroShotTexts { .. } => Err(ModelError::WrongInput {
            task,
            expected: "text alone",
            given: "candidate labels (zero-shot classification takes an NLI model, whose labels include entailment)",
        }),
        Request::Images(_) | Request::ZeroShot { .. } => {
            Err(ModelError::WrongInput { task, expected: "text", given: "images" })
        }
    }
}

pub(crate) fn take_text(batch: &Batch) -> Result<&EncodedBatch, ModelError> {
    batch.text.as_ref().ok_or_else(|| ModelError::Input("this batch holds no text".into()))
}

impl Network for TextClassifier {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        text_batch(&self.text, request, &self.device, super::Task::TextClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let logits = self.head.classifier.forward(&self.features(batch)?)?;
        super::scores_from_logits(&logits, self.sigmoid)
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        let hidden = self.backbone.forward(take_text(batch)?)?;
        Ok(self.head.features(&layers::token_at(&hidden, 0)?)?)
    }

    fn head_names(&self) -> Option<(&'static str, &'static str)> {
        Some(self.head.names)
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        Some(&self.text)
    }
}

/// How token vectors become one sentence vector (sentence-transformers' Pooling module).
#[derive(Debug, Clone, Copy, Default)]
struct Pooling {
    cls: bool,
    max: bool,
    mean: bool,
    mean_sqrt_len: bool,
}

/// A sentence-transformers model: BERT, pooling, optional normalisation.
pub struct SentenceEmbedder {
    backbone: BertBackbone,
    pooling: Pooling,
    normalize: bool,
    text: TextEncoder,
    device: Device,
}

impl SentenceEmbedder {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let vb = weights.builder();
        let vb = if weights.contains("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let shape = BackboneShape::read(config, Architecture::SentenceBert)?;
        let (backbone, limit) = load_backbone(vb, &shape, Architecture::SentenceBert, weights)?;
        let (pooling, normalize) = read_sentence_modules(files)?;
        let text = TextEncoder::load(files, limit, Some(shape.pad as u32))?;
        Ok(Self { backbone, pooling, normalize, text, device: Device::Cpu })
    }

    fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let mask3 = mask.unsqueeze(D::Minus1)?; // (b, t, 1)
        let mut parts = Vec::new();
        if self.pooling.cls {
            parts.push(layers::token_at(hidden, 0)?);
        }
        if self.pooling.max {
            let masked = hidden.broadcast_add(&((mask3.ones_like()? - &mask3)? * -1e9)?)?;
            parts.push(masked.max(1)?);
        }
        if self.pooling.mean || self.pooling.mean_sqrt_len {
            let summed = hidden.broadcast_mul(&mask3)?.sum(1)?;
            let counts = mask3.sum(1)?.maximum(1e-9)?;
            if self.pooling.mean {
                parts.push(summed.broadcast_div(&counts)?);
            }
            if self.pooling.mean_sqrt_len {
                parts.push(summed.broadcast_div(&counts.sqrt()?)?);
            }
        }
        let pooled = Tensor::cat(&parts, 1)?;
        if self.normalize {
            layers::l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

/// Reads modules.json and the pooling config. Without them: mean pooling, no normalisation.
fn read_sentence_modules(files: &ModelFiles) -> Result<(Pooling, bool), ModelError> {
    let read = |path: &std::path::Path| -> Result<serde_json::Value, ModelError> {
        let text = std::fs::read(path).map_err(|e| ModelError::Config { path: path.into(), reason: e.to_string() })?;
        serde_json::from_slice(&text)
            .map_err(|e| ModelError::Config { path: path.into(), reason: format!("not valid JSON: {e}") })
    };
    let mut normalize = false;
    if let Some(path) = &files.st_modules {
        let modules = read(path)?;
        for module in modules.as_array().into_iter().flatten() {
            let kind = module.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let short = kind.rsplit('.').next().unwrap_or(kind);
            match short {
                "Transformer" | "Pooling" => {}
                "Normalize" => normalize = true,
                other => {
                    return Err(ModelError::Config {
                        path: path.clone(),
                        reason: format!(
                            "sentence-transformers module `{other}` is not supported (supported: Transformer, Pooling, Normalize)"
                        ),
                    })
                }
            }
        }
    }
    let pooling = match &files.st_pooling {
        None => Pooling { mean: true, ..Default::default() },
        Some(path) => {
            let json = read(path)?;
            // sentence-transformers 5 writes `"pooling_mode": "mean"` (or a list); earlier
            // versions one boolean per mode.
            let modes: Vec<String> = match json.get("pooling_mode") {
                Some(serde_json::Value::String(m)) => vec![m.clone()],
                Some(serde_json::Value::Array(list)) => {
                    list.iter().filter_map(|m| m.as_str().map(str::to_string)).collect()
                }
                _ => Vec::new(),
            };
            let flag = |k: &str, short: &str| {
                json.get(k).and_then(|v| v.as_bool()).unwrap_or(false) || modes.iter().any(|m| m == short)
            };
            let pooling = Pooling {
                cls: flag("pooling_mode_cls_token", "cls"),
                max: flag("pooling_mode_max_tokens", "max"),
                mean: flag("pooling_mode_mean_tokens", "mean"),
                mean_sqrt_len: flag("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
            };
            if let Some(unknown) =
                modes.iter().find(|m| !["cls", "max", "mean", "mean_sqrt_len_tokens"].contains(&m.as_str()))
            {
                return Err(ModelError::Config {
                    path: path.clone(),
                    reason: format!(
                        "`{unknown}` pooling is not supported (supported: cls, max, mean, mean_sqrt_len_tokens)"
                    ),
                });
            }
            let other = ["pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"]
                .into_iter()
                .find(|k| json.get(*k).and_then(|v| v.as_bool()).unwrap_or(false));
            if let Some(mode) = other {
                return Err(ModelError::Config {
                    path: path.clone(),
                    reason: format!("`{mode}` pooling is not supported"),
                });
            }
            if !(pooling.cls || pooling.max || pooling.mean || pooling.mean_sqrt_len) {
                return Err(ModelError::Config { path: path.clone(), reason: "no pooling mode is enabled".into() });
            }
            pooling
        }
    };
    Ok((pooling, normalize))
}

impl Network for SentenceEmbedder {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        text_batch(&self.text, request, &self.device, super::Task::TextEmbedding)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        Ok(Response::Embeddings(layers::rows(&self.features(batch)?)?))
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        let text = take_text(batch)?;
        let hidden = self.backbone.forward(text)?;
        Ok(self.pool(&hidden, &text.attention_mask)?)
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        Some(&self.text)
    }
}

/// A sentence-transformers embedder with a linear classifier on its sentence embedding: what
/// `modeldeck train --base <embedding model>` writes (architecture `ModelDeckSentenceClassifier`).
pub struct SentenceClassifier {
    embedder: SentenceEmbedder,
    classifier: Linear,
    sigmoid: bool,
}

/// What `ModelDeckSentenceClassifier` adds to the embedder's BERT config.
#[derive(Debug, Clone, Deserialize)]
pub struct SentenceClassifierConfig {
    /// Width of the sentence embedding the head reads (the pooled width); defaults to the
    /// backbone's hidden size.
    pub embedding_size: Option<usize>,
}

impl SentenceClassifier {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let embedder = SentenceEmbedder::load(files, config, weights)?;
        let classes = config.classes()?;
        let cfg: SentenceClassifierConfig = config.parse()?;
        let dim = cfg.embedding_size.unwrap_or(embedder.backbone.hidden);
        let classifier = candle_nn::linear(dim, classes.len(), weights.builder().pp("classifier"))
            .map_err(|e| weights.mismatch(Architecture::SentenceClassifier.name(), e))?;
        Ok(Self { embedder, classifier, sigmoid: classes.use_sigmoid })
    }
}

impl Network for SentenceClassifier {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        text_batch(&self.embedder.text, request, &self.embedder.device, super::Task::TextClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let logits = self.classifier.forward(&self.embedder.features(batch)?)?;
        super::scores_from_logits(&logits, self.sigmoid)
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        self.embedder.features(batch)
    }

    fn head_names(&self) -> Option<(&'static str, &'static str)> {
        Some(("classifier.weight", "classifier.bias"))
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        Some(&self.embedder.text)
    }
}
