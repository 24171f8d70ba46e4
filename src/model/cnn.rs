//! ModelDeck's compact CNN (`ModelDeckCnnForImageClassification`), the architecture of the demo
//! models that `modeldeck train` produces: 3x3 convolutions with ReLU and 2x2 max pooling, one
//! hidden fully connected layer, and a linear classifier. The same code builds the network for
//! training (from a `VarMap`) and for inference (from a checkpoint).

use candle_core::{Device, Module, Tensor};
use candle_nn::{Conv2d, Linear, VarBuilder};

use super::config::ModelConfig;
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::weights::Weights;
use super::{Batch, ModelError, Network, Request, Response, Task};
use crate::source::ModelFiles;

pub const ARCHITECTURE: &str = "ModelDeckCnnForImageClassification";

/// Hyper-parameters, as written to config.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CnnConfig {
    pub image_size: usize,
    pub conv_channels: Vec<usize>,
    pub hidden_size: usize,
    pub num_labels: usize,
}

impl CnnConfig {
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let cfg = Self {
            image_size: config.usize_req("image_size")?,
            conv_channels: config.usize_list("conv_channels")?,
            hidden_size: config.usize_req("hidden_size")?,
            num_labels: config.labels().len(),
        };
        if cfg.conv_channels.is_empty() || cfg.image_size == 0 || cfg.num_labels == 0 {
            return Err(config.error("conv_channels, image_size and the labels must not be empty"));
        }
        Ok(cfg)
    }

    /// Side of the feature map after every conv block (each halves it, down to 1).
    fn final_side(&self) -> usize {
        self.conv_channels.iter().fold(self.image_size, |side, _| (side / 2).max(1))
    }
}

/// The network itself.
pub struct Cnn {
    convs: Vec<Conv2d>,
    hidden: Linear,
    pub classifier: Linear,
}

impl Cnn {
    pub fn new(vb: VarBuilder, config: &CnnConfig) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        let mut channels = 3;
        for (i, &out) in config.conv_channels.iter().enumerate() {
            let cfg = candle_nn::Conv2dConfig { padding: 1, ..Default::default() };
            convs.push(candle_nn::conv2d(channels, out, 3, cfg, vb.pp(format!("convs.{i}")))?);
            channels = out;
        }
        let flat = channels * config.final_side().pow(2);
        Ok(Self {
            convs,
            hidden: candle_nn::linear(flat, config.hidden_size, vb.pp("hidden"))?,
            classifier: candle_nn::linear(config.hidden_size, config.num_labels, vb.pp("classifier"))?,
        })
    }

    /// `(batch, 3, size, size)` → `(batch, hidden_size)`.
    pub fn features(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = pixels.clone();
        for conv in &self.convs {
            x = conv.forward(&x)?.relu()?;
            if x.dim(2)? >= 2 {
                x = x.max_pool2d(2)?;
            }
        }
        self.hidden.forward(&x.flatten_from(1)?)?.relu()
    }

    pub fn logits(&self, pixels: &Tensor) -> candle_core::Result<Tensor> {
        self.classifier.forward(&self.features(pixels)?)
    }
}

/// The network behind the common model interface.
pub struct CnnClassifier {
    cnn: Cnn,
    preprocessor: ImagePreprocessor,
    sigmoid: bool,
    device: Device,
}

impl CnnClassifier {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let cfg = CnnConfig::from_config(config)?;
        let cnn = Cnn::new(weights.builder(), &cfg).map_err(|e| weights.mismatch(ARCHITECTURE, e))?;
        let preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Vit, cfg.image_size as u32)?;
        Ok(Self { cnn, preprocessor, sigmoid: config.uses_sigmoid(cfg.num_labels), device: Device::Cpu })
    }
}

impl Network for CnnClassifier {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::image_batch(&self.preprocessor, request, &self.device, Task::ImageClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let logits = self.cnn.classifier.forward(&self.features(batch)?)?;
        super::scores_from_logits(&logits, self.sigmoid)
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        Ok(self.cnn.features(super::take_pixels(batch)?)?)
    }

    fn head_names(&self) -> Option<(&'static str, &'static str)> {
        Some(("classifier.weight", "classifier.bias"))
    }
}
