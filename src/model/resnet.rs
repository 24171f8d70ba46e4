//! ResNet as transformers writes it (`ResNetForImageClassification`): basic and bottleneck
//! layers, `downsample_in_first_stage` and `downsample_in_bottleneck`. Batch norms are folded
//! into the convolutions at load time.

use candle_core::Tensor;
use candle_nn::{Conv2d, VarBuilder};
use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::fastconv::{Conv, Nhwc};
use super::head::{ClassificationHead, ImageBackbone, ImageClassifier, CLASSIFIER_1};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::kernels::{self, Act};
use super::layers::{conv_bn, Activation};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

const BN_EPS: f64 = 1e-5;

struct ResNetBlock {
    shortcut: Option<Conv>,
    /// Convolutions in order; every one but the last is followed by the activation, the last by
    /// the residual and then the activation.
    convs: Vec<Conv>,
}

impl ResNetBlock {
    fn from_convs(shortcut: Option<Conv2d>, convs: Vec<Conv2d>) -> candle_core::Result<Self> {
        Ok(Self {
            shortcut: shortcut.as_ref().map(Conv::from_conv2d).transpose()?,
            convs: convs.iter().map(Conv::from_conv2d).collect::<candle_core::Result<_>>()?,
        })
    }

    fn forward(&self, x: Nhwc, act: Act) -> candle_core::Result<Nhwc> {
        let shortcut = self.shortcut.as_ref().map(|conv| conv.forward(&x, Act::None, None)).transpose()?;
        // The identity shortcut is the input itself, read in place by the last convolution.
        let residual = shortcut.as_ref().map_or(&x.data, |s| &s.data);
        let last = self.convs.len() - 1;
        let mut h: Option<Nhwc> = None;
        for (i, conv) in self.convs.iter().enumerate() {
            let input = h.as_ref().unwrap_or(&x);
            let next = conv.forward(input, act, if i == last { Some(residual.as_slice()) } else { None })?;
            if let Some(old) = h.replace(next) {
                kernels::recycle(old.data);
            }
        }
        if let Some(s) = shortcut {
            kernels::recycle(s.data);
        }
        Ok(match h {
            Some(out) => {
                kernels::recycle(x.data);
                out
            }
            None => x,
        })
    }
}

/// ResNet up to its globally pooled last stage; the classifier is the shared head's.
pub(crate) struct ResNet {
    stem: Conv,
    blocks: Vec<ResNetBlock>,
    activation: Activation,
}

pub(crate) type ResNetClassifier = ImageClassifier<ResNet>;

/// `convolution` + `normalization` under `vb`, folded.
fn conv_layer(vb: &VarBuilder, shape: (usize, usize, usize), stride: usize) -> candle_core::Result<Conv2d> {
    conv_bn(vb.pp("convolution"), vb.pp("normalization"), shape, stride, BN_EPS)
}

/// transformers' `layer_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerType {
    Basic,
    Bottleneck,
}

/// config.json of `ResNetForImageClassification` (transformers' `ResNetConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct ResNetConfig {
    pub embedding_size: usize,
    pub hidden_sizes: Vec<usize>,
    pub depths: Vec<usize>,
    #[serde(default = "bottleneck")]
    pub layer_type: LayerType,
    #[serde(default = "relu")]
    pub hidden_act: Activation,
    #[serde(default)]
    pub downsample_in_first_stage: bool,
    #[serde(default)]
    pub downsample_in_bottleneck: bool,
    #[serde(default = "defaults::num_channels")]
    pub num_channels: usize,
}

fn bottleneck() -> LayerType {
    LayerType::Bottleneck
}

fn relu() -> Activation {
    Activation::Relu
}

impl ImageClassifier<ResNet> {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let cfg: ResNetConfig = config.parse()?;
        let (embedding, hidden, depths) = (cfg.embedding_size, &cfg.hidden_sizes, &cfg.depths);
        if hidden.is_empty() || hidden.len() != depths.len() || hidden.iter().any(|&h| h < 4) || embedding == 0 {
            return Err(config.error(
                "`hidden_sizes` and `depths` must be non-empty lists of the same length, sizes at least 4, and `embedding_size` positive",
            ));
        }
        let bottleneck = cfg.layer_type == LayerType::Bottleneck;
        let first_stride = if cfg.downsample_in_first_stage { 2 } else { 1 };
        let in_bottleneck = cfg.downsample_in_bottleneck;
        let (activation, channels) = (cfg.hidden_act, cfg.num_channels);
        let classes = config.classes()?;
        let vb = weights.builder();
        let build = || -> candle_core::Result<(Conv, Vec<ResNetBlock>, ClassificationHead)> {
            let stem =
                Conv::from_conv2d(&conv_layer(&vb.pp("resnet.embedder.embedder"), (channels, embedding, 7), 2)?)?;
            let mut blocks = Vec::new();
            let mut in_ch = embedding;
            for (stage, (&out_ch, &depth)) in hidden.iter().zip(depths).enumerate() {
                let stage_vb = vb.pp(format!("resnet.encoder.stages.{stage}.layers"));
                for layer in 0..depth {
                    let stride = if layer > 0 {
                        1
                    } else if stage == 0 {
                        first_stride
                    } else {
                        2
                    };
                    let (cin, lvb) = (if layer == 0 { in_ch } else { out_ch }, stage_vb.pp(layer));
                    let shortcut = if cin != out_ch || stride != 1 {
                        Some(conv_layer(&lvb.pp("shortcut"), (cin, out_ch, 1), stride)?)
                    } else {
                        None
                    };
                    let l = lvb.pp("layer");
                    let convs = if bottleneck {
                        let reduced = out_ch / 4;
                        let (s1, s2) = if in_bottleneck { (stride, 1) } else { (1, stride) };
                        vec![
                            conv_layer(&l.pp(0), (cin, reduced, 1), s1)?,
                            conv_layer(&l.pp(1), (reduced, reduced, 3), s2)?,
                            conv_layer(&l.pp(2), (reduced, out_ch, 1), 1)?,
                        ]
                    } else {
                        vec![
                            conv_layer(&l.pp(0), (cin, out_ch, 3), stride)?,
                            conv_layer(&l.pp(1), (out_ch, out_ch, 3), 1)?,
                        ]
                    };
                    blocks.push(ResNetBlock::from_convs(shortcut, convs)?);
                }
                in_ch = out_ch;
            }
            let head = ClassificationHead::load(&vb, in_ch, &classes, None, CLASSIFIER_1)?;
            Ok((stem, blocks, head))
        };
        let (stem, blocks, head) = build().map_err(|e| weights.mismatch(Architecture::ResNet.name(), e))?;
        let preprocessor = ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::ConvNext, 224)?;
        Ok(Self { backbone: ResNet { stem, blocks, activation }, head, preprocessor })
    }
}

impl ImageBackbone for ResNet {
    fn pooled(&self, pixels: &Tensor) -> Result<(Vec<f32>, usize), ModelError> {
        let act = self.activation.kernel();
        let stem = self.stem.forward(&Nhwc::from_nchw(pixels)?, act, None)?;
        // Max pooling 3x3/2 with padding 1.
        let mut x = stem.max_pool(3, 2, 1);
        kernels::recycle(stem.data);
        for block in &self.blocks {
            x = block.forward(x, act)?;
        }
        let (pooled, b) = (x.global_mean(), x.b);
        kernels::recycle(x.data);
        Ok((pooled, b))
    }
}
