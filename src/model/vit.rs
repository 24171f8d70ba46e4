//! ViT (`ViTForImageClassification`), under transformers' tensor names.

use candle_core::Tensor;
use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::fastconv::{Conv, Nhwc};
use super::head::{ClassificationHead, ImageBackbone, ImageClassifier, CLASSIFIER};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::kernels::{self, Act};
use super::layers::{self, Activation, Encoder, EncoderSpec};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

/// ViT up to the CLS token of its last layer; the final layer norm and the classifier are the
/// shared head's.
pub(crate) struct Vit {
    patch: Conv,
    cls_token: Vec<f32>,
    positions: Vec<f32>,
    hidden: usize,
    encoder: Encoder,
    image_size: usize,
}

pub(crate) type VitClassifier = ImageClassifier<Vit>;

/// config.json of `ViTForImageClassification` (transformers' `ViTConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct VitConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
    #[serde(default = "defaults::eps_1e_12")]
    pub layer_norm_eps: f64,
    #[serde(default = "defaults::gelu")]
    pub hidden_act: Activation,
    #[serde(default = "defaults::yes")]
    pub qkv_bias: bool,
}

impl ImageClassifier<Vit> {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let cfg: VitConfig = config.parse()?;
        let (hidden, image_size, patch_size, channels) =
            (cfg.hidden_size, cfg.image_size, cfg.patch_size, cfg.num_channels);
        if patch_size == 0 || image_size % patch_size != 0 || channels != 3 {
            return Err(config.error(format!(
                "image_size {image_size} must be a multiple of patch_size {patch_size}, with 3 channels (found {channels})"
            )));
        }
        let spec = EncoderSpec {
            hidden,
            heads: cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            layers: cfg.num_hidden_layers,
            eps: cfg.layer_norm_eps,
            activation: cfg.hidden_act,
            pre_norm: true,
            qkv_bias: cfg.qkv_bias,
        };
        let classes = config.classes()?;
        let patches = (image_size / patch_size).pow(2);
        let vb = weights.builder();
        let build = || -> candle_core::Result<(Vit, ClassificationHead)> {
            let e = vb.pp("vit.embeddings");
            let conv = candle_nn::Conv2dConfig { stride: patch_size, ..Default::default() };
            let backbone = Vit {
                patch: Conv::from_conv2d(&candle_nn::conv2d(
                    3,
                    hidden,
                    patch_size,
                    conv,
                    e.pp("patch_embeddings.projection"),
                )?)?,
                cls_token: kernels::to_vec(&e.get((1, 1, hidden), "cls_token")?)?,
                positions: kernels::to_vec(&e.get((1, patches + 1, hidden), "position_embeddings")?)?,
                hidden,
                encoder: Encoder::load(vb.pp("vit.encoder.layer"), spec, &layers::VIT_NAMES)?,
                image_size,
            };
            let head = ClassificationHead::load(&vb, hidden, &classes, Some(("vit.layernorm", spec.eps)), CLASSIFIER)?;
            Ok((backbone, head))
        };
        let (backbone, head) = build().map_err(|e| weights.mismatch(Architecture::Vit.name(), e))?;
        let preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Vit, image_size as u32)?;
        Ok(Self { backbone, head, preprocessor })
    }
}

impl ImageBackbone for Vit {
    fn pooled(&self, pixels: &Tensor) -> Result<(Vec<f32>, usize), ModelError> {
        let (b, _, h, w) = pixels.dims4()?;
        if (h, w) != (self.image_size, self.image_size) {
            return Err(ModelError::Input(format!(
                "preprocessing produced {w}x{h} images but the model was trained on {0}x{0}",
                self.image_size
            )));
        }
        // Patches in row-major order: (batch * patches) x hidden.
        let patches = self.patch.forward(&Nhwc::from_nchw(pixels)?, Act::None, None)?;
        let (hidden, n) = (self.hidden, patches.h * patches.w);
        let t = n + 1;
        if self.positions.len() != t * hidden {
            return Err(ModelError::Input(format!("{n} patches do not match the position table")));
        }
        let mut x = kernels::alloc(b * t * hidden);
        for (bi, seq) in x.chunks_mut(t * hidden).enumerate() {
            seq[..hidden].copy_from_slice(&self.cls_token);
            seq[hidden..].copy_from_slice(&patches.data[bi * n * hidden..(bi + 1) * n * hidden]);
            seq.iter_mut().zip(&self.positions).for_each(|(v, p)| *v += p);
        }
        kernels::recycle(patches.data);
        let x = self.encoder.forward_rows(x, b, t, None);
        // The final layer norm (the head's) is per token: only the CLS tokens are needed.
        let cls: Vec<f32> = x.chunks(t * hidden).flat_map(|seq| seq[..hidden].iter().copied()).collect();
        kernels::recycle(x);
        Ok((cls, b))
    }
}
