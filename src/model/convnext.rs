//! ConvNeXt as transformers writes it (`ConvNextForImageClassification`), on channels-last maps:
//! the stem and downsampling convolutions are matrix products, the 7x7 depthwise convolution runs
//! along the channel axis, the channel layer norms are row-wise, and the layer scale is folded
//! into the second pointwise layer at load time so that the residual is that product's epilogue.

use candle_core::Tensor;
use candle_nn::Linear;

use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::fastconv::{Conv, DepthwiseConv, Nhwc};
use super::head::{ClassificationHead, ImageBackbone, ImageClassifier, CLASSIFIER};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::kernels::{self, Act, Dense};
use super::layers::{Activation, Norm};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

const CONVNEXT_EPS: f64 = 1e-6;

struct ConvNextLayer {
    depthwise: DepthwiseConv,
    norm: Norm,
    pointwise_in: Dense,
    /// `pwconv2` with the layer scale folded in: `γ ⊙ (W h + b) = (γ ⊙ W) h + γ ⊙ b`.
    pointwise_out: Dense,
}

impl ConvNextLayer {
    fn forward(&self, x: Nhwc, act: Act) -> Nhwc {
        let mut h = self.depthwise.forward(&x);
        self.norm.apply(&mut h.data);
        let inner = self.pointwise_in.forward(&h.data, act);
        kernels::recycle(h.data);
        let data = self.pointwise_out.forward_with(&inner, Act::None, Some(&x.data));
        kernels::recycle(inner);
        kernels::recycle(x.data);
        Nhwc { data, ..x }
    }
}

struct Stage {
    downsample: Option<(Norm, Conv)>,
    layers: Vec<ConvNextLayer>,
}

/// ConvNeXt up to its globally pooled last stage; the final layer norm and the classifier are
/// the shared head's.
pub(crate) struct ConvNext {
    stem: Conv,
    stem_norm: Norm,
    stages: Vec<Stage>,
    activation: Activation,
}

pub(crate) type ConvNextClassifier = ImageClassifier<ConvNext>;

/// `pwconv2` with the layer scale `gamma` (if any) folded into its weight and bias.
fn scaled_linear(linear: &Linear, gamma: Option<&Tensor>) -> candle_core::Result<Dense> {
    match gamma {
        None => Dense::from_linear(linear),
        Some(g) => {
            let weight = linear.weight().broadcast_mul(&g.unsqueeze(1)?)?;
            let bias = linear.bias().map(|b| b * g).transpose()?;
            Dense::from_tensors(&weight, bias.as_ref())
        }
    }
}

/// config.json of `ConvNextForImageClassification` (transformers' `ConvNextConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConvNextConfig {
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    pub patch_size: usize,
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
    #[serde(default = "defaults::eps_1e_12")]
    pub layer_norm_eps: f64,
    #[serde(default = "layer_scale_init_value")]
    pub layer_scale_init_value: f64,
    #[serde(default = "defaults::gelu")]
    pub hidden_act: Activation,
}

fn layer_scale_init_value() -> f64 {
    1e-6
}

impl ImageClassifier<ConvNext> {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let cfg: ConvNextConfig = config.parse()?;
        let (hidden, depths) = (&cfg.hidden_sizes, &cfg.depths);
        if hidden.is_empty() || hidden.len() != depths.len() || hidden.contains(&0) {
            return Err(config
                .error("`hidden_sizes` and `depths` must be non-empty lists of the same length, with no zero size"));
        }
        let (patch, channels, eps) = (cfg.patch_size, cfg.num_channels, cfg.layer_norm_eps);
        // transformers creates the layer scale only for a positive initial value.
        let uses_scale = cfg.layer_scale_init_value > 0.0;
        let activation = cfg.hidden_act;
        let classes = config.classes()?;
        let vb = weights.builder();
        let build = || -> candle_core::Result<(ConvNext, ClassificationHead)> {
            let e = vb.pp("convnext.embeddings");
            let stem_cfg = candle_nn::Conv2dConfig { stride: patch, ..Default::default() };
            let mut stages = Vec::new();
            let mut in_ch = hidden[0];
            for (i, (&out_ch, &depth)) in hidden.iter().zip(depths).enumerate() {
                let s = vb.pp(format!("convnext.encoder.stages.{i}"));
                let downsample = if i > 0 {
                    let conv_cfg = candle_nn::Conv2dConfig { stride: 2, ..Default::default() };
                    Some((
                        Norm::from_layer_norm(&candle_nn::layer_norm(
                            in_ch,
                            CONVNEXT_EPS,
                            s.pp("downsampling_layer.0"),
                        )?)?,
                        Conv::from_conv2d(&candle_nn::conv2d(
                            in_ch,
                            out_ch,
                            2,
                            conv_cfg,
                            s.pp("downsampling_layer.1"),
                        )?)?,
                    ))
                } else {
                    None
                };
                let layers = (0..depth)
                    .map(|j| {
                        let l = s.pp(format!("layers.{j}"));
                        let dw_cfg = candle_nn::Conv2dConfig { padding: 3, groups: out_ch, ..Default::default() };
                        let scale = if uses_scale { Some(l.get(out_ch, "layer_scale_parameter")?) } else { None };
                        let pwconv2 = candle_nn::linear(4 * out_ch, out_ch, l.pp("pwconv2"))?;
                        Ok(ConvNextLayer {
                            depthwise: DepthwiseConv::from_conv2d(&candle_nn::conv2d(
                                out_ch,
                                out_ch,
                                7,
                                dw_cfg,
                                l.pp("dwconv"),
                            )?)?,
                            norm: Norm::from_layer_norm(&candle_nn::layer_norm(
                                out_ch,
                                CONVNEXT_EPS,
                                l.pp("layernorm"),
                            )?)?,
                            pointwise_in: Dense::from_linear(&candle_nn::linear(out_ch, 4 * out_ch, l.pp("pwconv1"))?)?,
                            pointwise_out: scaled_linear(&pwconv2, scale.as_ref())?,
                        })
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                stages.push(Stage { downsample, layers });
                in_ch = out_ch;
            }
            let backbone = ConvNext {
                stem: Conv::from_conv2d(&candle_nn::conv2d(
                    channels,
                    hidden[0],
                    patch,
                    stem_cfg,
                    e.pp("patch_embeddings"),
                )?)?,
                stem_norm: Norm::from_layer_norm(&candle_nn::layer_norm(hidden[0], CONVNEXT_EPS, e.pp("layernorm"))?)?,
                stages,
                activation,
            };
            let head = ClassificationHead::load(&vb, in_ch, &classes, Some(("convnext.layernorm", eps)), CLASSIFIER)?;
            Ok((backbone, head))
        };
        let (backbone, head) = build().map_err(|e| weights.mismatch(Architecture::ConvNext.name(), e))?;
        let preprocessor = ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::ConvNext, 224)?;
        Ok(Self { backbone, head, preprocessor })
    }
}

impl ImageBackbone for ConvNext {
    fn pooled(&self, pixels: &Tensor) -> Result<(Vec<f32>, usize), ModelError> {
        let act = self.activation.kernel();
        let mut x = self.stem.forward(&Nhwc::from_nchw(pixels)?, Act::None, None)?;
        self.stem_norm.apply(&mut x.data);
        for stage in &self.stages {
            if let Some((norm, conv)) = &stage.downsample {
                norm.apply(&mut x.data);
                let y = conv.forward(&x, Act::None, None)?;
                kernels::recycle(std::mem::replace(&mut x, y).data);
            }
            for layer in &stage.layers {
                x = layer.forward(x, act);
            }
        }
        let (pooled, b) = (x.global_mean(), x.b);
        kernels::recycle(x.data);
        Ok((pooled, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::random_tensor;
    use candle_core::Module;

    #[test]
    fn folded_layer_scale_matches_scaling_the_output() {
        let x = random_tensor(&[5, 12], 1, 1.0);
        let linear = Linear::new(random_tensor(&[7, 12], 2, 1.0), Some(random_tensor(&[7], 3, 1.0)));
        let gamma = random_tensor(&[7], 4, 1.0);
        let want = linear.forward(&x).unwrap().broadcast_mul(&gamma).unwrap();
        let got = scaled_linear(&linear, Some(&gamma)).unwrap().forward(&kernels::to_vec(&x).unwrap(), Act::None);
        let want = kernels::to_vec(&want).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{got:?} vs {want:?}");
    }
}
