//! ConvNeXt as transformers writes it (`ConvNextForImageClassification`).

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, LayerNorm, Linear};

use super::config::{Architecture, ModelConfig};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::layers::{layer_norm_channels_first, Activation};
use super::weights::Weights;
use super::{Batch, ModelError, Network, Request, Response, Task};
use crate::source::ModelFiles;

const CONVNEXT_EPS: f64 = 1e-6;

struct ConvNextLayer {
    depthwise: Conv2d,
    norm: LayerNorm,
    pointwise_in: Linear,
    pointwise_out: Linear,
    scale: Option<Tensor>,
}

impl ConvNextLayer {
    fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let h = self.depthwise.forward(x)?.permute((0, 2, 3, 1))?;
        let h = self.pointwise_out.forward(&act.apply(&self.pointwise_in.forward(&self.norm.forward(&h)?)?)?)?;
        let h = match &self.scale {
            Some(scale) => h.broadcast_mul(scale)?,
            None => h,
        };
        x + h.permute((0, 3, 1, 2))?
    }
}

struct Stage {
    downsample: Option<(LayerNorm, Conv2d)>,
    layers: Vec<ConvNextLayer>,
}

pub struct ConvNextClassifier {
    stem: Conv2d,
    stem_norm: LayerNorm,
    stages: Vec<Stage>,
    final_norm: LayerNorm,
    classifier: Linear,
    activation: Activation,
    preprocessor: ImagePreprocessor,
    sigmoid: bool,
    device: Device,
}

impl ConvNextClassifier {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let hidden = config.usize_list("hidden_sizes")?;
        let depths = config.usize_list("depths")?;
        if hidden.is_empty() || hidden.len() != depths.len() {
            return Err(config.error("`hidden_sizes` and `depths` must be non-empty lists of the same length"));
        }
        let patch = config.usize_or("patch_size", 4)?;
        let channels = config.usize_or("num_channels", 3)?;
        let eps = config.f64_or("layer_norm_eps", 1e-12)?;
        let uses_scale = config.f64_or("layer_scale_init_value", 1e-6)? > 0.0;
        let activation = Activation::from_name(config.str_or("hidden_act", "gelu")).map_err(|e| config.error(e))?;
        let labels = config.labels().len();
        let vb = weights.builder();
        let build = || -> candle_core::Result<Self> {
            let e = vb.pp("convnext.embeddings");
            let stem_cfg = candle_nn::Conv2dConfig { stride: patch, ..Default::default() };
            let mut stages = Vec::new();
            let mut in_ch = hidden[0];
            for (i, (&out_ch, &depth)) in hidden.iter().zip(&depths).enumerate() {
                let s = vb.pp(format!("convnext.encoder.stages.{i}"));
                let downsample = if i > 0 {
                    let conv_cfg = candle_nn::Conv2dConfig { stride: 2, ..Default::default() };
                    Some((
                        candle_nn::layer_norm(in_ch, CONVNEXT_EPS, s.pp("downsampling_layer.0"))?,
                        candle_nn::conv2d(in_ch, out_ch, 2, conv_cfg, s.pp("downsampling_layer.1"))?,
                    ))
                } else {
                    None
                };
                let layers = (0..depth)
                    .map(|j| {
                        let l = s.pp(format!("layers.{j}"));
                        let dw_cfg = candle_nn::Conv2dConfig { padding: 3, groups: out_ch, ..Default::default() };
                        Ok(ConvNextLayer {
                            depthwise: candle_nn::conv2d(out_ch, out_ch, 7, dw_cfg, l.pp("dwconv"))?,
                            norm: candle_nn::layer_norm(out_ch, CONVNEXT_EPS, l.pp("layernorm"))?,
                            pointwise_in: candle_nn::linear(out_ch, 4 * out_ch, l.pp("pwconv1"))?,
                            pointwise_out: candle_nn::linear(4 * out_ch, out_ch, l.pp("pwconv2"))?,
                            scale: if uses_scale { Some(l.get(out_ch, "layer_scale_parameter")?) } else { None },
                        })
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                stages.push(Stage { downsample, layers });
                in_ch = out_ch;
            }
            Ok(Self {
                stem: candle_nn::conv2d(channels, hidden[0], patch, stem_cfg, e.pp("patch_embeddings"))?,
                stem_norm: candle_nn::layer_norm(hidden[0], CONVNEXT_EPS, e.pp("layernorm"))?,
                stages,
                final_norm: candle_nn::layer_norm(in_ch, eps, vb.pp("convnext.layernorm"))?,
                classifier: candle_nn::linear(in_ch, labels, vb.pp("classifier"))?,
                activation,
                preprocessor: ImagePreprocessor::defaults(ProcessorFamily::ConvNext, 224),
                sigmoid: config.uses_sigmoid(labels),
                device: Device::Cpu,
            })
        };
        let mut model = build().map_err(|e| weights.mismatch(Architecture::ConvNext.name(), e))?;
        model.preprocessor = ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::ConvNext, 224)?;
        Ok(model)
    }
}

impl Network for ConvNextClassifier {
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
        let mut x = layer_norm_channels_first(&self.stem_norm, &self.stem.forward(pixels)?)?;
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                x = conv.forward(&layer_norm_channels_first(norm, &x)?)?;
            }
            for layer in &stage.layers {
                x = layer.forward(&x, self.activation)?;
            }
        }
        Ok(self.final_norm.forward(&x.mean(3)?.mean(2)?)?)
    }
}
