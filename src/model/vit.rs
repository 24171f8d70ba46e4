//! ViT (`ViTForImageClassification`), under transformers' tensor names.

use candle_core::{Device, Module, Tensor};
use candle_nn::Linear;

use super::config::{Architecture, ModelConfig};
use super::fastconv::{Conv, Nhwc};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::kernels::{self, Act};
use super::layers::{self, Activation, Encoder, EncoderSpec, Norm};
use super::weights::Weights;
use super::{Batch, ModelError, Network, Request, Response, Task};
use crate::source::ModelFiles;

pub struct VitClassifier {
    patch: Conv,
    cls_token: Vec<f32>,
    positions: Vec<f32>,
    hidden: usize,
    encoder: Encoder,
    norm: Norm,
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
                norm: Norm::from_layer_norm(&candle_nn::layer_norm(hidden, spec.eps, vb.pp("vit.layernorm"))?)?,
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
        // The final layer norm is per token: only the CLS tokens are needed.
        let mut cls: Vec<f32> = x.chunks(t * hidden).flat_map(|seq| seq[..hidden].iter().copied()).collect();
        kernels::recycle(x);
        self.norm.apply(&mut cls);
        Ok(kernels::tensor(cls, &[b, hidden])?)
    }
}
