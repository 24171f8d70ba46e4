//! What every image classifier shares after its backbone: the classification head (pooled
//! features, an optional layer norm, one linear layer, then scores) and the `Network` plumbing
//! around it (preprocessing, the features `modeldeck train` fits a new head on, the head's tensor
//! names). ViT, ResNet, ConvNeXt and ModelDeck's CNN differ only in their backbone.

use candle_core::{Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::config::Classes;
use super::image::ImagePreprocessor;
use super::kernels;
use super::layers::Norm;
use super::{Batch, ModelError, Network, Request, Response, Task};

/// Tensor names of a linear head, `(weight, bias)`, as transformers names them.
pub(crate) type HeadNames = (&'static str, &'static str);

/// ViT, ConvNeXt and ModelDeck's CNN: `classifier`.
pub(crate) const CLASSIFIER: HeadNames = ("classifier.weight", "classifier.bias");
/// ResNet: `classifier.1` (index 0 is a flatten).
pub(crate) const CLASSIFIER_1: HeadNames = ("classifier.1.weight", "classifier.1.bias");

/// Pooled features → optional layer norm → linear → probabilities.
pub(crate) struct ClassificationHead {
    /// Applied to the pooled features (ViT's and ConvNeXt's final layer norm), so the features a
    /// new head is trained on are what this head's linear layer reads.
    norm: Option<Norm>,
    linear: Linear,
    names: HeadNames,
    use_sigmoid: bool,
}

impl ClassificationHead {
    /// Reads the linear layer `names` (`classes` outputs on `features` inputs) from `vb`, and the
    /// layer norm under `norm` = `(prefix, eps)` when the architecture has one.
    pub fn load(
        vb: &VarBuilder,
        features: usize,
        classes: &Classes,
        norm: Option<(&str, f64)>,
        names: HeadNames,
    ) -> candle_core::Result<Self> {
        let norm = norm
            .map(|(prefix, eps)| Norm::from_layer_norm(&candle_nn::layer_norm(features, eps, vb.pp(prefix))?))
            .transpose()?;
        let weight = vb.get((classes.len(), features), names.0)?;
        let bias = vb.get(classes.len(), names.1)?;
        Ok(Self { norm, linear: Linear::new(weight, Some(bias)), names, use_sigmoid: classes.use_sigmoid })
    }

    /// `(batch, width)` pooled values, row-major → the features the linear layer reads.
    pub fn features(&self, mut pooled: Vec<f32>, batch: usize) -> Result<Tensor, ModelError> {
        let width = pooled.len().checked_div(batch).unwrap_or(0);
        if let Some(norm) = &self.norm {
            norm.apply(&mut pooled);
        }
        Ok(kernels::tensor(pooled, &[batch, width])?)
    }

    /// Features → scores, one row per input.
    pub fn scores(&self, features: &Tensor) -> Result<Response, ModelError> {
        super::scores_from_logits(&self.linear.forward(features)?, self.use_sigmoid)
    }
}

/// The part of a text classifier before its final linear layer.
pub(crate) trait TextBackbone: Send + Sync {
    /// Tokenized texts → what the classifier reads, `(batch, features)`.
    fn features(&self, text: &super::text::EncodedBatch) -> Result<Tensor, ModelError>;
}

/// A text classifier: the checkpoint's tokenizer, a backbone and its linear `classifier`
/// (DeBERTa-v2/v3, ModernBERT).
pub(crate) struct TextClassifier<B> {
    pub backbone: B,
    pub classifier: Linear,
    pub use_sigmoid: bool,
    pub text: super::TextEncoder,
}

impl<B: TextBackbone> Network for TextClassifier<B> {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::bert::text_batch(&self.text, request, &Device::Cpu, Task::TextClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        super::scores_from_logits(&self.classifier.forward(&self.features(batch)?)?, self.use_sigmoid)
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        self.backbone.features(super::bert::take_text(batch)?)
    }

    fn head_names(&self) -> Option<HeadNames> {
        Some(CLASSIFIER)
    }

    fn text_encoder(&self) -> Option<&super::TextEncoder> {
        Some(&self.text)
    }
}

/// The part of an image classifier before its head.
pub(crate) trait ImageBackbone: Send + Sync {
    /// Preprocessed pixels `(batch, 3, h, w)` → pooled features `(batch, width)` row-major, and
    /// the batch size.
    fn pooled(&self, pixels: &Tensor) -> Result<(Vec<f32>, usize), ModelError>;
}

/// An image classifier: the checkpoint's preprocessing, a backbone and the shared head.
pub(crate) struct ImageClassifier<B> {
    pub backbone: B,
    pub head: ClassificationHead,
    pub preprocessor: ImagePreprocessor,
}

impl<B: ImageBackbone> Network for ImageClassifier<B> {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        super::image_batch(&self.preprocessor, request, &Device::Cpu, Task::ImageClassification)
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        self.head.scores(&self.features(batch)?)
    }

    fn features(&self, batch: &Batch) -> Result<Tensor, ModelError> {
        let (pooled, size) = self.backbone.pooled(super::take_pixels(batch)?)?;
        self.head.features(pooled, size)
    }

    fn head_names(&self) -> Option<HeadNames> {
        Some(self.head.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels::random_tensor;

    #[test]
    fn head_normalises_then_applies_the_linear_layer() {
        let (batch, width, labels) = (3, 8, 4);
        let mut tensors = std::collections::HashMap::new();
        tensors.insert("norm.weight".to_string(), random_tensor(&[width], 1, 1.0));
        tensors.insert("norm.bias".to_string(), random_tensor(&[width], 2, 1.0));
        tensors.insert("classifier.weight".to_string(), random_tensor(&[labels, width], 3, 1.0));
        tensors.insert("classifier.bias".to_string(), random_tensor(&[labels], 4, 1.0));
        let vb = VarBuilder::from_tensors(tensors.clone(), candle_core::DType::F32, &Device::Cpu);
        let classes = Classes { labels: (0..labels).map(|i| i.to_string()).collect(), use_sigmoid: false };
        let head = ClassificationHead::load(&vb, width, &classes, Some(("norm", 1e-5)), CLASSIFIER).unwrap();

        let pooled = random_tensor(&[batch, width], 5, 3.0);
        let norm = candle_nn::LayerNorm::new(tensors["norm.weight"].clone(), tensors["norm.bias"].clone(), 1e-5);
        let linear = Linear::new(tensors["classifier.weight"].clone(), Some(tensors["classifier.bias"].clone()));
        let want = linear.forward(&norm.forward(&pooled).unwrap()).unwrap();

        let features = head.features(kernels::to_vec(&pooled).unwrap(), batch).unwrap();
        assert_eq!(features.dims(), &[batch, width]);
        let Response::Scores(scores) = head.scores(&features).unwrap() else { panic!("scores expected") };
        let want = want.to_vec2::<f32>().unwrap();
        assert_eq!(scores.len(), want.len());
        for (got, want) in scores.iter().zip(&want) {
            assert_eq!(got.logits.len(), want.len());
            assert!(got.logits.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4), "{:?} vs {want:?}", got.logits);
            assert!((got.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn head_without_norm_passes_features_through() {
        let tensors = std::collections::HashMap::from([
            ("classifier.1.weight".to_string(), random_tensor(&[2, 5], 1, 1.0)),
            ("classifier.1.bias".to_string(), random_tensor(&[2], 2, 1.0)),
        ]);
        let vb = VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let classes = Classes { labels: vec!["a".into(), "b".into()], use_sigmoid: true };
        let head = ClassificationHead::load(&vb, 5, &classes, None, CLASSIFIER_1).unwrap();
        let pooled: Vec<f32> = (0..10).map(|i| i as f32).collect();
        let features = head.features(pooled.clone(), 2).unwrap();
        assert_eq!(kernels::to_vec(&features).unwrap(), pooled);
        let Response::Scores(scores) = head.scores(&features).unwrap() else { panic!("scores expected") };
        // Sigmoid: each probability on its own, not summing to one.
        assert!(scores.iter().all(|s| s.probs.iter().all(|p| (0.0..=1.0).contains(p))));
        assert_eq!(head.names, CLASSIFIER_1);
    }
}
