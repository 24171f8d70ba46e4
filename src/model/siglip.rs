//! SigLIP (`SiglipModel`) for zero-shot image classification, as transformers'
//! `zero-shot-image-classification` pipeline runs it: every prompt (the hypothesis template with a
//! label, "This is a photo of {}." by default) is padded to 64 tokens (`padding="max_length"`), the
//! text tower pools the LAST position, image and text embeddings are normalised, and
//! `logit_scale.exp() * cosine + logit_bias` goes through a sigmoid: each label gets its own
//! probability, which need not sum to one.
//!
//! The attention mask: the pipeline passes the one the tokenizer returns, so a checkpoint whose
//! tokenizer_config.json leaves `attention_mask` out of `model_input_names` has its pads attended to;
//! ModelDeck follows the same field. SigLIP v1 repos ship only `spiece.model`: [`super::spm`]
//! builds transformers' `SiglipTokenizer` from it.
//!
//! Written here rather than through candle-transformers' `siglip`: the towers are the shared
//! pre-norm encoder (CLIP's tensor names), so they run on the fused kernels and in any
//! `--precision`; candle-transformers' text config requires fields transformers defaults and its
//! model exposes no way to follow the tokenizer's mask. The attention-pooling head is a single
//! query, done with candle ops.

use candle_core::{Device, Module, Tensor, D};
use candle_nn::{Conv2d, Embedding, LayerNorm, Linear};
use serde::Deserialize;

use super::config::{Architecture, ModelConfig};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::layers::{self, Activation, Encoder, EncoderSpec};
use super::text::TextEncoder;
use super::weights::Weights;
use super::{sigmoid, Batch, ModelError, Network, Request, Response, Scores};
use crate::source::ModelFiles;

/// The pipeline pads every prompt to this many tokens for SigLIP.
const PIPELINE_TEXT_LENGTH: usize = 64;

/// `text_config` of a `SiglipModel` (transformers' `SiglipTextConfig`), defaulted as that class.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SiglipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub pad_token_id: Option<u32>,
    pub projection_size: Option<usize>,
}

impl Default for SiglipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 64,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            pad_token_id: Some(1),
            projection_size: None,
        }
    }
}

/// `vision_config` of a `SiglipModel` (transformers' `SiglipVisionConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SiglipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub vision_use_head: bool,
}

impl Default for SiglipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 16,
            hidden_act: Activation::GeluTanh,
            layer_norm_eps: 1e-6,
            vision_use_head: true,
        }
    }
}

fn spec(hidden: usize, heads: usize, intermediate: usize, layers: usize, eps: f64, act: Activation) -> EncoderSpec {
    EncoderSpec { hidden, heads, intermediate, layers, eps, activation: act, pre_norm: true, qkv_bias: true }
}

/// The vision tower's attention-pooling head: one learned query attends over the patches, then
/// a residual MLP.
struct PoolingHead {
    probe: Tensor,
    /// Query, key and value projections (`nn.MultiheadAttention`'s `in_proj`).
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
    heads: usize,
}

impl PoolingHead {
    /// `x`: `(batch, patches, hidden)` → `(batch, hidden)`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let d = h / self.heads;
        let q = self.query.forward(&self.probe)?.reshape((1, self.heads, 1, d))?;
        let split = |y: Tensor| y.reshape((b, t, self.heads, d))?.transpose(1, 2)?.contiguous();
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.broadcast_matmul(&k.transpose(2, 3)?)? / (d as f64).sqrt())?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, h))?;
        let residual = self.out.forward(&context)?;
        let inner = self.fc1.forward(&self.norm.forward(&residual)?)?;
        let inner = match self.act {
            Activation::Gelu => inner.gelu_erf()?,
            Activation::GeluTanh => inner.gelu()?,
            Activation::Relu => inner.relu()?,
            Activation::QuickGelu => (&inner * candle_nn::ops::sigmoid(&(&inner * 1.702)?)?)?,
            Activation::Tanh => inner.tanh()?,
        };
        residual + self.fc2.forward(&inner)?
    }
}

pub struct SiglipZeroShot {
    patch: Conv2d,
    vision_positions: Tensor,
    vision_encoder: Encoder,
    post_norm: LayerNorm,
    head: PoolingHead,
    image_size: usize,
    token_embedding: Embedding,
    text_positions: Embedding,
    text_encoder: Encoder,
    final_norm: LayerNorm,
    text_head: Linear,
    /// Prompts are padded (and truncated) to this many tokens.
    text_length: usize,
    /// Whether the checkpoint's tokenizer hands the model an attention mask.
    masked: bool,
    logit_scale: f64,
    logit_bias: f64,
    preprocessor: ImagePreprocessor,
    tokenizer: TextEncoder,
}

impl SiglipZeroShot {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let text_cfg: SiglipTextConfig = config.parse_sub("text_config")?;
        let vision_cfg: SiglipVisionConfig = config.parse_sub("vision_config")?;
        let (image_size, patch_size) = (vision_cfg.image_size, vision_cfg.patch_size);
        if !vision_cfg.vision_use_head {
            return Err(config.error(
                "field `vision_config.vision_use_head`: false leaves SiglipModel without image embeddings (transformers cannot run it either)",
            ));
        }
        if patch_size == 0 || !image_size.is_multiple_of(patch_size) {
            return Err(
                config.error(format!("vision image_size {image_size} is not a multiple of patch_size {patch_size}"))
            );
        }
        for (which, hidden, heads) in [
            ("vision", vision_cfg.hidden_size, vision_cfg.num_attention_heads),
            ("text", text_cfg.hidden_size, text_cfg.num_attention_heads),
        ] {
            if heads == 0 || !hidden.is_multiple_of(heads) {
                return Err(config.error(format!("{which} hidden size {hidden} is not divisible by {heads} heads")));
            }
        }
        let vision_spec = spec(
            vision_cfg.hidden_size,
            vision_cfg.num_attention_heads,
            vision_cfg.intermediate_size,
            vision_cfg.num_hidden_layers,
            vision_cfg.layer_norm_eps,
            vision_cfg.hidden_act,
        );
        let text_spec = spec(
            text_cfg.hidden_size,
            text_cfg.num_attention_heads,
            text_cfg.intermediate_size,
            text_cfg.num_hidden_layers,
            text_cfg.layer_norm_eps,
            text_cfg.hidden_act,
        );
        let max_positions = text_cfg.max_position_embeddings;
        let tokenizer = TextEncoder::load(files, max_positions, text_cfg.pad_token_id)?;
        let masked = tokenizer_gives_mask(files);
        let preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Siglip, image_size as u32)?;
        let (vh, th) = (vision_spec.hidden, text_spec.hidden);
        let channels = vision_cfg.num_channels;
        let patches = (image_size / patch_size).pow(2);
        let projection = text_cfg.projection_size.unwrap_or(th);
        if projection != vh {
            return Err(config.error(format!(
                "the text embeddings are {projection} wide (text_config.projection_size) and the image embeddings {vh}: they cannot be compared"
            )));
        }
        let vb = weights.builder();
        let build = move || -> candle_core::Result<Self> {
            let v = vb.pp("vision_model");
            let t = vb.pp("text_model");
            let conv = candle_nn::Conv2dConfig { stride: patch_size, ..Default::default() };
            let head = {
                let p = v.pp("head");
                let in_weight = p.get((3 * vh, vh), "attention.in_proj_weight")?;
                let in_bias = p.get(3 * vh, "attention.in_proj_bias")?;
                let part = |i: usize| -> candle_core::Result<Linear> {
                    Ok(Linear::new(in_weight.narrow(0, i * vh, vh)?, Some(in_bias.narrow(0, i * vh, vh)?)))
                };
                PoolingHead {
                    probe: p.get((1, 1, vh), "probe")?.reshape((1, vh))?,
                    query: part(0)?,
                    key: part(1)?,
                    value: part(2)?,
                    out: candle_nn::linear(vh, vh, p.pp("attention.out_proj"))?,
                    norm: candle_nn::layer_norm(vh, vision_spec.eps, p.pp("layernorm"))?,
                    fc1: candle_nn::linear(vh, vision_cfg.intermediate_size, p.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(vision_cfg.intermediate_size, vh, p.pp("mlp.fc2"))?,
                    act: vision_cfg.hidden_act,
                    heads: vision_cfg.num_attention_heads,
                }
            };
            Ok(Self {
                patch: candle_nn::conv2d(channels, vh, patch_size, conv, v.pp("embeddings.patch_embedding"))?,
                vision_positions: v.get((patches, vh), "embeddings.position_embedding.weight")?.unsqueeze(0)?,
                vision_encoder: Encoder::load(v.pp("encoder.layers"), vision_spec, &layers::CLIP_NAMES)?,
                post_norm: candle_nn::layer_norm(vh, vision_spec.eps, v.pp("post_layernorm"))?,
                head,
                image_size,
                token_embedding: candle_nn::embedding(text_cfg.vocab_size, th, t.pp("embeddings.token_embedding"))?,
                text_positions: candle_nn::embedding(max_positions, th, t.pp("embeddings.position_embedding"))?,
                text_encoder: Encoder::load(t.pp("encoder.layers"), text_spec, &layers::CLIP_NAMES)?,
                final_norm: candle_nn::layer_norm(th, text_spec.eps, t.pp("final_layer_norm"))?,
                text_head: candle_nn::linear(th, projection, t.pp("head"))?,
                text_length: PIPELINE_TEXT_LENGTH.min(max_positions),
                masked,
                logit_scale: scalar(&vb, "logit_scale")?,
                logit_bias: scalar(&vb, "logit_bias")?,
                preprocessor,
                tokenizer,
            })
        };
        build().map_err(|e| weights.mismatch(Architecture::Siglip.name(), e))
    }

    fn image_embeddings(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.patch.forward(pixels)?.flatten_from(2)?.transpose(1, 2)?;
        let x = x.broadcast_add(&self.vision_positions)?;
        let x = self.post_norm.forward(&self.vision_encoder.forward(&x, None)?)?;
        layers::l2_normalize(&self.head.forward(&x)?)
    }

    fn text_embeddings(&self, text: &super::text::EncodedBatch) -> candle_core::Result<Tensor> {
        let (_, t) = text.input_ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, &Device::Cpu)?.unsqueeze(0)?;
        let x =
            self.token_embedding.forward(&text.input_ids)?.broadcast_add(&self.text_positions.forward(&positions)?)?;
        let mask =
            if self.masked && text.has_padding { Some(layers::padding_mask(&text.attention_mask)?) } else { None };
        let x = self.final_norm.forward(&self.text_encoder.forward(&x, mask.as_ref())?)?;
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?;
        layers::l2_normalize(&self.text_head.forward(&last)?)
    }
}

fn scalar(vb: &candle_nn::VarBuilder, name: &str) -> candle_core::Result<f64> {
    Ok(vb.get(1, name)?.to_vec1::<f32>()?[0] as f64)
}

/// Whether the checkpoint's tokenizer returns an attention mask: tokenizer_config.json's
/// `model_input_names` when it has them; every tokenizer class transformers has for SigLIP
/// (`SiglipTokenizer`, SigLIP 2's Gemma tokenizers) returns one otherwise.
fn tokenizer_gives_mask(files: &ModelFiles) -> bool {
    let Some(config) = files
        .tokenizer_config
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    else {
        return true;
    };
    config
        .get("model_input_names")
        .and_then(|v| v.as_array())
        .is_none_or(|names| names.iter().any(|n| n == "attention_mask"))
}

impl Network for SiglipZeroShot {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::zero_shot_image_batch(&self.preprocessor, request, |prompts| {
            self.tokenizer.encode_padded(prompts, self.text_length, &Device::Cpu)
        })
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let (images, texts) = self.zero_shot_embeddings(batch)?;
        let logits = ((images.matmul(&texts.t()?)? * self.logit_scale.exp())? + self.logit_bias)?;
        let scores =
            layers::rows(&logits)?.into_iter().map(|logits| Scores { probs: sigmoid(&logits), logits }).collect();
        Ok(Response::Scores(scores))
    }

    fn zero_shot_embeddings(&self, batch: &Batch) -> Result<(Tensor, Tensor), ModelError> {
        let pixels = super::take_pixels(batch)?;
        let text = batch.text.as_ref().ok_or_else(|| ModelError::Input("no candidate labels".into()))?;
        super::expect_square_pixels(pixels, self.image_size)?;
        let images = self.image_embeddings(pixels)?;
        let texts = self.text_embeddings(text)?;
        if images.dim(D::Minus1)? != texts.dim(D::Minus1)? {
            return Err(ModelError::Input("image and text embeddings differ in width".into()));
        }
        Ok((images, texts))
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        Some(&self.tokenizer)
    }
}
