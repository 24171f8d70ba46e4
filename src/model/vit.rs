//! ViT (`ViTForImageClassification`), under transformers' tensor names.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, LayerNorm, Linear};

use super::config::{Architecture, ModelConfig};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::layers::{self, Activation, Encoder, EncoderSpec};
use super::weights::Weights;
use super::{Batch, ModelError, Network, Request, Response, Task};
use crate::source::ModelFiles;

pub struct VitClassifier {
    patch: Conv2d,
    cls_token: Tensor,
    positions: Tensor,
    encoder: Encoder,
    norm: LayerNorm,
    classifier: Linear,
    preprocessor: ImagePreprocessor,
    image_size: usize,
    sigmoid: bool,
    device: Device,
}

impl VitClassifier {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let hidden = config.usize_or("hidden_size", 768)?;
        let image_size = config.usize_or("image_size", 224)?;
        let patch_size = config.usize_or("patch_size", 16)?;
        let channels = config.usize_or("num_channels", 3)?;
        if patch_size == 0 || image_size % patch_size != 0 || channels != 3 {
            return Err(config.error(format!(
                "image_size {image_size} must be a multiple of patch_size {patch_size}, with 3 channels (found {channels})"
            )));
        }
        let spec = EncoderSpec {
            hidden,
            heads: config.usize_or("num_attention_heads", 12)?,
            intermediate: config.usize_or("intermediate_size", 4 * hidden)?,
            layers: config.usize_or("num_hidden_layers", 12)?,
            eps: config.f64_or("layer_norm_eps", 1e-12)?,
            activation: Activation::from_name(config.str_or("hidden_act", "gelu")).map_err(|e| config.error(e))?,
            pre_norm: true,
            qkv_bias: config.bool_or("qkv_bias", true),
        };
        let labels = config.labels().len();
        let patches = (image_size / patch_size).pow(2);
        let vb = weights.builder();
        let build = || -> candle_core::Result<Self> {
            let e = vb.pp("vit.embeddings");
            let conv = candle_nn::Conv2dConfig { stride: patch_size, ..Default::default() };
            Ok(Self {
                patch: candle_nn::conv2d(3, hidden, patch_size, conv, e.pp("patch_embeddings.projection"))?,
                cls_token: e.get((1, 1, hidden), "cls_token")?,
                positions: e.get((1, patches + 1, hidden), "position_embeddings")?,
                encoder: Encoder::load(vb.pp("vit.encoder.layer"), spec, &layers::VIT_NAMES)?,
                norm: candle_nn::layer_norm(hidden, spec.eps, vb.pp("vit.layernorm"))?,
                classifier: candle_nn::linear(hidden, labels, vb.pp("classifier"))?,
                preprocessor: ImagePreprocessor::defaults(ProcessorFamily::Vit, image_size as u32),
                image_size,
                sigmoid: config.uses_sigmoid(labels),
                device: Device::Cpu,
            })
        };
        let mut model = build().map_err(|e| weights.mismatch(Architecture::Vit.name(), e))?;
        model.preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Vit, image_size as u32)?;
        Ok(model)
    }
}

impl Network for VitClassifier {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::image_batch(&self.preprocessor, request, &self.device, Task::ImageClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let logits = self.classifier.forward(&self.features(batch)?)?;
        super::scores_from_logits(&logits, self.sigmoid)
    }

    fn head_names(&self) -> Option<(&'static str, &'static str)> {
        Some(("classifier.weight", "classifier.bias"))
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        let pixels = super::take_pixels(batch)?;
        let (b, _, h, w) = pixels.dims4()?;
        if (h, w) != (self.image_size, self.image_size) {
            return Err(ModelError::Input(format!(
                "preprocessing produced {w}x{h} images but the model was trained on {0}x{0}",
                self.image_size
            )));
        }
        let x = self.patch.forward(pixels)?.flatten_from(2)?.transpose(1, 2)?;
        let cls = self.cls_token.broadcast_as((b, 1, self.cls_token.dim(2)?))?;
        let x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.positions)?;
        let x = self.norm.forward(&self.encoder.forward(&x, None)?)?;
        Ok(layers::token_at(&x, 0)?)
    }
}
