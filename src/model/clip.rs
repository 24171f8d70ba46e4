//! CLIP (`CLIPModel`) for zero-shot image classification, as transformers'
//! `zero-shot-image-classification` pipeline runs it: each candidate label goes through the
//! hypothesis template (the pipeline's default "This is a photo of {}.", or the request's own),
//! image and text embeddings are normalised, and
//! `logit_scale.exp() * cosine` is soft-maxed over the labels.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, Embedding, LayerNorm, Linear};

use serde::Deserialize;

use super::config::{Architecture, ModelConfig};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::layers::{self, Activation, Encoder, EncoderSpec};
use super::text::TextEncoder;
use super::weights::Weights;
use super::{softmax, Batch, ModelError, Network, Request, Response, Scores};
use crate::source::ModelFiles;

/// The pipeline's default `hypothesis_template`.
pub const HYPOTHESIS_TEMPLATE: &str = "This is a photo of {}.";

pub struct ClipZeroShot {
    // Vision tower.
    patch: Conv2d,
    class_embedding: Tensor,
    vision_positions: Tensor,
    pre_norm: LayerNorm,
    vision_encoder: Encoder,
    post_norm: LayerNorm,
    visual_projection: Linear,
    image_size: usize,
    // Text tower.
    token_embedding: Embedding,
    text_positions: Embedding,
    text_encoder: Encoder,
    final_norm: LayerNorm,
    text_projection: Linear,
    eos_token_id: Option<u32>,
    logit_scale: f64,
    preprocessor: ImagePreprocessor,
    tokenizer: TextEncoder,
    device: Device,
}

/// `text_config` of a `CLIPModel` (transformers' `CLIPTextConfig`). Every field defaults as
/// transformers does: older checkpoints store only what differs from these (`text_config_dict`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub eos_token_id: usize,
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// `vision_config` of a `CLIPModel` (transformers' `CLIPVisionConfig`), defaulted likewise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// The top level of a `CLIPModel` config.json (transformers' `CLIPConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipConfig {
    #[serde(default = "projection_dim")]
    pub projection_dim: usize,
}

fn projection_dim() -> usize {
    512
}

impl ClipTextConfig {
    fn encoder(&self) -> EncoderSpec {
        EncoderSpec {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            eps: self.layer_norm_eps,
            activation: self.hidden_act,
            pre_norm: true,
            qkv_bias: true,
        }
    }
}

impl ClipVisionConfig {
    fn encoder(&self) -> EncoderSpec {
        EncoderSpec {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            layers: self.num_hidden_layers,
            eps: self.layer_norm_eps,
            activation: self.hidden_act,
            pre_norm: true,
            qkv_bias: true,
        }
    }
}

impl ClipZeroShot {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let top: ClipConfig = config.parse()?;
        let text_cfg: ClipTextConfig = config.parse_sub("text_config")?;
        let vision_cfg: ClipVisionConfig = config.parse_sub("vision_config")?;
        let (text_spec, vision_spec) = (text_cfg.encoder(), vision_cfg.encoder());
        let projection = top.projection_dim;
        let (image_size, patch_size) = (vision_cfg.image_size, vision_cfg.patch_size);
        if patch_size == 0 || image_size % patch_size != 0 {
            return Err(
                config.error(format!("vision image_size {image_size} is not a multiple of patch_size {patch_size}"))
            );
        }
        let (vocab, max_positions) = (text_cfg.vocab_size, text_cfg.max_position_embeddings);
        let eos = text_cfg.eos_token_id as u32;
        let (vh, th) = (vision_spec.hidden, text_spec.hidden);
        let patches = (image_size / patch_size).pow(2);
        let tokenizer = TextEncoder::load(files, max_positions, None)?;
        let vb = weights.builder();
        let build = move || -> candle_core::Result<Self> {
            let v = vb.pp("vision_model");
            let t = vb.pp("text_model");
            let conv = candle_nn::Conv2dConfig { stride: patch_size, ..Default::default() };
            Ok(Self {
                patch: candle_nn::conv2d_no_bias(3, vh, patch_size, conv, v.pp("embeddings.patch_embedding"))?,
                class_embedding: v.get(vh, "embeddings.class_embedding")?.reshape((1, 1, vh))?,
                vision_positions: v.get((patches + 1, vh), "embeddings.position_embedding.weight")?.unsqueeze(0)?,
                pre_norm: candle_nn::layer_norm(vh, vision_spec.eps, v.pp("pre_layrnorm"))?,
                vision_encoder: Encoder::load(v.pp("encoder.layers"), vision_spec, &layers::CLIP_NAMES)?,
                post_norm: candle_nn::layer_norm(vh, vision_spec.eps, v.pp("post_layernorm"))?,
                visual_projection: candle_nn::linear_no_bias(vh, projection, vb.pp("visual_projection"))?,
                image_size,
                token_embedding: candle_nn::embedding(vocab, th, t.pp("embeddings.token_embedding"))?,
                text_positions: candle_nn::embedding(max_positions, th, t.pp("embeddings.position_embedding"))?,
                text_encoder: Encoder::load(t.pp("encoder.layers"), text_spec, &layers::CLIP_NAMES)?,
                final_norm: candle_nn::layer_norm(th, text_spec.eps, t.pp("final_layer_norm"))?,
                text_projection: candle_nn::linear_no_bias(th, projection, vb.pp("text_projection"))?,
                // transformers pools at argmax(input_ids) for legacy configs (eos id 2), else at the first eos.
                eos_token_id: (eos != 2).then_some(eos),
                logit_scale: vb.get((), "logit_scale")?.to_scalar::<f32>()? as f64,
                preprocessor: ImagePreprocessor::defaults(ProcessorFamily::Clip, image_size as u32),
                tokenizer,
                device: Device::Cpu,
            })
        };
        let mut model = build().map_err(|e| weights.mismatch(Architecture::Clip.name(), e))?;
        model.preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Clip, image_size as u32)?;
        Ok(model)
    }

    fn image_embeddings(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let b = pixels.dim(0)?;
        let x = self.patch.forward(pixels)?.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.class_embedding.broadcast_as((b, 1, self.class_embedding.dim(2)?))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.vision_positions)?;
        let x = self.vision_encoder.forward(&self.pre_norm.forward(&x)?, None)?;
        let pooled = self.post_norm.forward(&layers::token_at(&x, 0)?)?;
        layers::l2_normalize(&self.visual_projection.forward(&pooled)?)
    }

    fn text_embeddings(&self, ids: &[Vec<u32>], input_ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, t) = input_ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, &self.device)?.unsqueeze(0)?;
        let x = self.token_embedding.forward(input_ids)?.broadcast_add(&self.text_positions.forward(&positions)?)?;
        let mask = layers::causal_mask(t, &self.device)?;
        let x = self.final_norm.forward(&self.text_encoder.forward(&x, Some(&mask))?)?;
        let pooled: Vec<Tensor> = ids
            .iter()
            .enumerate()
            .map(|(row, seq)| {
                let position = self
                    .eos_token_id
                    .and_then(|eos| seq.iter().position(|&id| id == eos))
                    .unwrap_or_else(|| argmax(seq));
                x.get(row)?.get(position)
            })
            .collect::<candle_core::Result<_>>()?;
        layers::l2_normalize(&self.text_projection.forward(&Tensor::stack(&pooled, 0)?)?)
    }
}

/// Index of the first maximum (torch.argmax semantics).
fn argmax(seq: &[u32]) -> usize {
    let mut best = 0;
    for (i, &v) in seq.iter().enumerate() {
        if v > seq[best] {
            best = i;
        }
    }
    best
}

impl Network for ClipZeroShot {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::zero_shot_image_batch(&self.preprocessor, request, |prompts| {
            self.tokenizer.encode(prompts, None, &self.device)
        })
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let (images, texts) = self.zero_shot_embeddings(batch)?;
        let logits = (images.matmul(&texts.t()?)? * self.logit_scale.exp())?;
        let scores =
            layers::rows(&logits)?.into_iter().map(|logits| Scores { probs: softmax(&logits), logits }).collect();
        Ok(Response::Scores(scores))
    }

    fn zero_shot_embeddings(&self, batch: &Batch) -> Result<(Tensor, Tensor), ModelError> {
        let pixels = super::take_pixels(batch)?;
        let text = batch.text.as_ref().ok_or_else(|| ModelError::Input("no candidate labels".into()))?;
        super::expect_square_pixels(pixels, self.image_size)?;
        Ok((self.image_embeddings(pixels)?, self.text_embeddings(&text.ids, &text.input_ids)?))
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        Some(&self.tokenizer)
    }
}

#[cfg(test)]
mod tests {
    use super::super::prompts;
    use super::*;

    #[test]
    fn template_puts_each_label_at_its_placeholder() {
        let labels = vec!["cat".to_string(), "coffee cup".to_string()];
        assert_eq!(
            prompts(HYPOTHESIS_TEMPLATE, &labels).unwrap(),
            ["This is a photo of cat.", "This is a photo of coffee cup."]
        );
        assert_eq!(prompts("{}", &labels).unwrap(), ["cat", "coffee cup"]);
        assert_eq!(prompts("a {} photo", &labels[..1]).unwrap(), ["a cat photo"]);
        let none = prompts("a photo", &labels).unwrap_err().to_string();
        assert!(none.contains("`a photo` has no `{}`"), "{none}");
        let two = prompts("{} and {}", &labels).unwrap_err().to_string();
        assert!(two.contains("has 2 `{}`"), "{two}");
    }
}
