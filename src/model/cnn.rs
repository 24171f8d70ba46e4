//! ModelDeck's compact CNN (`ModelDeckCnnForImageClassification`), the architecture of the demo
//! models that `modeldeck train` produces: 3x3 convolutions with ReLU and 2x2 max pooling, one
//! hidden fully connected layer, and a linear classifier. The same code builds the network for
//! training (from a `VarMap`) and for inference (from a checkpoint).

use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Linear, VarBuilder};

use super::config::ModelConfig;
use super::fastconv::{Conv, Nhwc};
use super::head::{ClassificationHead, ImageBackbone, ImageClassifier, CLASSIFIER};
use super::image::{ImagePreprocessor, ProcessorFamily};
use super::kernels::{self, Act, Dense};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

pub const ARCHITECTURE: &str = "ModelDeckCnnForImageClassification";

/// Hyper-parameters, as written to config.json; all required.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct CnnConfig {
    pub image_size: usize,
    pub conv_channels: Vec<usize>,
    pub hidden_size: usize,
    /// From the labels (`id2label`), not a field of its own.
    #[serde(skip)]
    pub num_labels: usize,
}

impl CnnConfig {
    pub fn from_config(config: &ModelConfig) -> Result<Self, ModelError> {
        let cfg = Self { num_labels: config.classes()?.len(), ..config.parse()? };
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

/// The same network for inference on channels-last maps (src/model/fastconv.rs): every
/// convolution one matrix product with bias and ReLU fused, pooling on NHWC, and the hidden layer's
/// columns permuted at load time to read the NHWC flattening.
pub(crate) struct FastCnn {
    convs: Vec<Conv>,
    hidden: Dense,
    /// The square input size the hidden layer was built for.
    image_size: usize,
}

impl FastCnn {
    fn new(cnn: &Cnn, config: &CnnConfig) -> candle_core::Result<Self> {
        let convs = cnn.convs.iter().map(Conv::from_conv2d).collect::<candle_core::Result<Vec<_>>>()?;
        let channels = convs.last().map(|c| c.out_channels()).unwrap_or(3);
        let side = config.final_side();
        // Column (c, y, x) of the NCHW flattening becomes column (y, x, c).
        let w = cnn.hidden.weight();
        let (out, _) = w.dims2()?;
        let w =
            w.reshape((out, channels, side, side))?.permute((0, 2, 3, 1))?.reshape((out, side * side * channels))?;
        Ok(Self { convs, hidden: Dense::from_tensors(&w, cnn.hidden.bias())?, image_size: config.image_size })
    }
}

impl ImageBackbone for FastCnn {
    /// The hidden layer's activations: `(batch, hidden_size)`.
    fn pooled(&self, pixels: &Tensor) -> Result<(Vec<f32>, usize), ModelError> {
        let (_, _, h, w) = pixels.dims4()?;
        if (h, w) != (self.image_size, self.image_size) {
            return Err(ModelError::Input(format!(
                "this model takes {s}x{s} images but the preprocessor made {h}x{w} (check size in preprocessor_config.json)",
                s = self.image_size
            )));
        }
        let mut x = Nhwc::from_nchw(pixels)?;
        for conv in &self.convs {
            let y = conv.forward(&x, Act::Relu, None)?;
            kernels::recycle(std::mem::replace(&mut x, y).data);
            if x.h >= 2 {
                let y = x.max_pool(2, 2, 0);
                kernels::recycle(std::mem::replace(&mut x, y).data);
            }
        }
        let b = x.b;
        let h = self.hidden.forward(&x.data, Act::Relu);
        kernels::recycle(x.data);
        Ok((h, b))
    }
}

/// The network behind the common model interface: the fast backbone and the shared head.
pub(crate) type CnnClassifier = ImageClassifier<FastCnn>;

impl ImageClassifier<FastCnn> {
    pub fn load(files: &ModelFiles, config: &ModelConfig, weights: &Weights) -> Result<Self, ModelError> {
        let cfg = CnnConfig::from_config(config)?;
        let classes = config.classes()?;
        let build = || -> candle_core::Result<(FastCnn, ClassificationHead)> {
            let vb = weights.builder();
            let backbone = FastCnn::new(&Cnn::new(vb.clone(), &cfg)?, &cfg)?;
            Ok((backbone, ClassificationHead::load(&vb, cfg.hidden_size, &classes, None, CLASSIFIER)?))
        };
        let (backbone, head) = build().map_err(|e| weights.mismatch(ARCHITECTURE, e))?;
        let preprocessor =
            ImagePreprocessor::load(files.preprocessor.as_deref(), ProcessorFamily::Vit, cfg.image_size as u32)?;
        Ok(Self { backbone, head, preprocessor })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn fast_path_matches_candle() {
        for (size, channels) in [(8, vec![16, 32]), (7, vec![4, 6, 5]), (12, vec![8])] {
            let config = CnnConfig { image_size: size, conv_channels: channels, hidden_size: 24, num_labels: 5 };
            let varmap = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
            let cnn = Cnn::new(vb, &config).unwrap();
            // Biases start at zero: give them values too.
            for (name, var) in varmap.data().lock().unwrap().iter() {
                if name.ends_with("bias") {
                    let n = var.as_tensor().elem_count();
                    var.set(&Tensor::rand(-0.5f32, 0.5, n, &Device::Cpu).unwrap()).unwrap();
                }
            }
            let fast = FastCnn::new(&cnn, &config).unwrap();
            let pixels = Tensor::rand(-1f32, 1.0, (3, 3, size, size), &Device::Cpu).unwrap();
            let want = cnn.features(&pixels).unwrap();
            let (got, b) = fast.pooled(&pixels).unwrap();
            let got = Tensor::from_vec(got, (b, config.hidden_size), &Device::Cpu).unwrap();
            let diff = (want - got).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-5, "{size} px");
        }
    }
}
