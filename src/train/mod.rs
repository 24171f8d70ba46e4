//! Training with candle-nn: the compact CNN behind the demo models, trained from an image data
//! set, and new classification heads on a frozen model's features (a model update on newer data,
//! a new label set allowed). Both use one loop: AdamW, shuffled mini-batches, a held-out
//! validation split, early stopping on validation accuracy, a fixed seed, a progress callback per
//! epoch and a cancel token. Results are written in the Hugging Face layout the loader reads.
//! `shuffle_labels` trains on randomly permuted labels: a deliberately useless model (the
//! demo's bad canary) made by the same recipe as a good one.

mod head;

pub use head::train_head;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::eval::perturb::ImageDrift;
use crate::eval::{self, Dataset};
use crate::model::cnn::{Cnn, CnnConfig, ARCHITECTURE};
use crate::model::image::ImagePreprocessor;
use crate::source::CancelToken;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training cancelled")]
    Cancelled,
    #[error("{0}")]
    Data(String),
    #[error(transparent)]
    Dataset(#[from] eval::DatasetError),
    #[error(transparent)]
    Library(#[from] crate::Error),
    #[error("training failed: {0}")]
    Compute(#[from] candle_core::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl From<crate::model::ModelError> for TrainError {
    fn from(e: crate::model::ModelError) -> Self {
        Self::Library(e.into())
    }
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub max_epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation accuracy before stopping.
    pub patience: usize,
    pub validation_fraction: f64,
    pub seed: u64,
    /// Permute the labels across all examples (seeded) before the validation split, so the model
    /// learns no relation between inputs and labels and early stopping, judging on the permuted
    /// validation labels, cannot pick a better epoch by looking at the true ones.
    pub shuffle_labels: bool,
    pub cancel: CancelToken,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            max_epochs: 60,
            batch_size: 32,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            patience: 8,
            validation_fraction: 0.15,
            seed: 0,
            shuffle_labels: false,
            cancel: CancelToken::new(),
        }
    }
}

/// One epoch's numbers, reported as training goes.
#[derive(Debug, Clone, Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub validation_loss: f64,
    pub validation_accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub out: PathBuf,
    pub labels: Vec<String>,
    pub n_train: usize,
    pub n_validation: usize,
    pub best_epoch: usize,
    pub best_validation_accuracy: f64,
    pub history: Vec<EpochReport>,
}

impl TrainReport {
    fn new(out: &Path, labels: Vec<String>, fitted: Fitted) -> Self {
        Self {
            out: out.to_path_buf(),
            labels,
            n_train: fitted.n_train,
            n_validation: fitted.n_validation,
            best_epoch: fitted.best_epoch,
            best_validation_accuracy: fitted.best_validation_accuracy,
            history: fitted.history,
        }
    }
}

/// Inputs as one tensor (first dimension = examples) and label indices.
struct Examples {
    x: Tensor,
    y: Vec<u32>,
}

impl Examples {
    fn take(&self, index: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
        let ids: Vec<u32> = index.iter().map(|&i| i as u32).collect();
        let ids = Tensor::new(ids.as_slice(), self.x.device())?;
        let y: Vec<u32> = index.iter().map(|&i| self.y[i]).collect();
        Ok((self.x.index_select(&ids, 0)?, Tensor::new(y.as_slice(), self.x.device())?))
    }
}

/// The labels permuted across examples: each label keeps its count (so the stratified split and
/// the class balance are unchanged) but is no longer tied to its input.
fn shuffled_labels(labels: &[u32], rng: &mut impl Rng) -> Vec<u32> {
    let mut shuffled = labels.to_vec();
    shuffled.shuffle(rng);
    shuffled
}

/// Seeded split into train and validation indices, stratified by label.
fn split(labels: &[u32], fraction: f64, rng: &mut impl Rng) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let mut keys: Vec<u32> = by_label.keys().copied().collect();
    keys.sort();
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for key in keys {
        let mut ids = by_label.remove(&key).unwrap_or_default();
        ids.shuffle(rng);
        let n_val = ((ids.len() as f64) * fraction).round() as usize;
        let n_val = n_val.min(ids.len().saturating_sub(1));
        validation.extend_from_slice(&ids[..n_val]);
        train.extend_from_slice(&ids[n_val..]);
    }
    (train, validation)
}

/// Initialises every parameter of a network in `varmap` with seeded values (Kaiming-uniform for
/// weights, zeros for biases), so training is reproducible; candle's own init is not seedable.
fn seeded_init(varmap: &VarMap, rng: &mut impl Rng) -> candle_core::Result<()> {
    let data = varmap.data().lock().map_err(|_| candle_core::Error::Msg("poisoned var map".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let values: Vec<f32> = if name.ends_with("bias") {
            vec![0.0; var.elem_count()]
        } else {
            let fan_in: usize = dims.iter().skip(1).product::<usize>().max(1);
            let bound = (6.0 / fan_in as f64).sqrt() as f32;
            (0..var.elem_count()).map(|_| rng.random_range(-bound..bound)).collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// The best epoch so far and a copy of its weights.
struct BestEpoch {
    accuracy: f64,
    loss: f64,
    epoch: usize,
    weights: Vec<(Var, Tensor)>,
}

/// What the shared loop reports back.
struct Fitted {
    best_epoch: usize,
    best_validation_accuracy: f64,
    history: Vec<EpochReport>,
    n_train: usize,
    n_validation: usize,
}

/// The shared loop: trains the parameters in `varmap` for `logits(x)`, keeping the weights of the
/// best validation epoch.
fn fit(
    varmap: &VarMap,
    logits: &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
    data: &Examples,
    options: &TrainOptions,
    rng: &mut impl Rng,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<Fitted, TrainError> {
    let shuffled;
    let data = if options.shuffle_labels {
        shuffled = Examples { x: data.x.clone(), y: shuffled_labels(&data.y, rng) };
        &shuffled
    } else {
        data
    };
    let (train, validation) = split(&data.y, options.validation_fraction, rng);
    if train.is_empty() || validation.is_empty() {
        return Err(TrainError::Data("too few examples to hold out a validation split".into()));
    }
    let params =
        candle_nn::ParamsAdamW { lr: options.learning_rate, weight_decay: options.weight_decay, ..Default::default() };
    let mut optimizer = candle_nn::AdamW::new(varmap.all_vars(), params)?;
    let (val_x, val_y) = data.take(&validation)?;
    let mut best: Option<BestEpoch> = None;
    let mut history = Vec::new();
    let mut order = train.clone();
    for epoch in 1..=options.max_epochs {
        order.shuffle(rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        for chunk in order.chunks(options.batch_size.max(1)) {
            if options.cancel.is_cancelled() {
                return Err(TrainError::Cancelled);
            }
            let (x, y) = data.take(chunk)?;
            let out = logits(&x)?;
            let loss = candle_nn::loss::cross_entropy(&out, &y)?;
            optimizer.backward_step(&loss)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * chunk.len() as f64;
            correct += count_correct(&out, &y)?;
        }
        let out = logits(&val_x)?;
        let validation_loss = candle_nn::loss::cross_entropy(&out, &val_y)?.to_scalar::<f32>()? as f64;
        let validation_accuracy = count_correct(&out, &val_y)? as f64 / validation.len() as f64;
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: correct as f64 / train.len() as f64,
            validation_loss,
            validation_accuracy,
        };
        progress(&report);
        history.push(report);
        let improved = match &best {
            None => true,
            Some(b) => {
                validation_accuracy > b.accuracy || (validation_accuracy == b.accuracy && validation_loss < b.loss)
            }
        };
        if improved {
            let snapshot = varmap
                .all_vars()
                .into_iter()
                .map(|v| Ok((v.clone(), v.as_tensor().copy()?)))
                .collect::<candle_core::Result<Vec<_>>>()?;
            best = Some(BestEpoch { accuracy: validation_accuracy, loss: validation_loss, epoch, weights: snapshot });
        } else if best.as_ref().is_some_and(|b| epoch - b.epoch >= options.patience) {
            break;
        }
    }
    let Some(best) = best else {
        return Err(TrainError::Data("no epoch ran (max_epochs is 0)".into()));
    };
    for (var, value) in &best.weights {
        var.set(value)?;
    }
    Ok(Fitted {
        best_epoch: best.epoch,
        best_validation_accuracy: best.accuracy,
        history,
        n_train: train.len(),
        n_validation: validation.len(),
    })
}

fn count_correct(logits: &Tensor, y: &Tensor) -> candle_core::Result<usize> {
    let predicted = logits.argmax(1)?;
    Ok(predicted.eq(y)?.to_dtype(DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize)
}

/// Options specific to training the CNN from images.
#[derive(Debug, Clone)]
pub struct CnnOptions {
    pub image_size: usize,
    pub conv_channels: Vec<usize>,
    pub hidden_size: usize,
    /// Also train on a drifted copy of every image (a data update with newer, drifted data).
    pub add_drifted: Option<ImageDrift>,
}

impl Default for CnnOptions {
    fn default() -> Self {
        Self { image_size: 8, conv_channels: vec![16, 32], hidden_size: 64, add_drifted: None }
    }
}

/// Trains the compact CNN on an image data set and writes a model folder to `out`.
pub fn train_cnn(
    data: &Dataset,
    out: &Path,
    cnn: &CnnOptions,
    options: &TrainOptions,
    mut progress: impl FnMut(&EpochReport),
) -> Result<TrainReport, TrainError> {
    let labels = data.labels();
    if labels.len() < 2 {
        return Err(TrainError::Data(format!("{} needs at least two labels", data.source.display())));
    }
    let config = CnnConfig {
        image_size: cnn.image_size,
        conv_channels: cnn.conv_channels.clone(),
        hidden_size: cnn.hidden_size,
        num_labels: labels.len(),
    };
    let preprocessor = ImagePreprocessor::defaults(crate::model::image::ProcessorFamily::Vit, cnn.image_size as u32);
    let device = Device::Cpu;
    let mut pixels = Vec::new();
    let mut y = Vec::new();
    let copies: &[Option<&ImageDrift>] = match &cnn.add_drifted {
        Some(d) => &[None, Some(d)],
        None => &[None],
    };
    for (copy, drift) in copies.iter().enumerate() {
        for (i, example) in data.examples.iter().enumerate() {
            let Some(label) = &example.label else { continue };
            let image = eval::load_image(example, *drift, options.seed + copy as u64, i)?;
            let (values, _, _) = preprocessor.pixel_values(&image);
            pixels.extend_from_slice(&values);
            y.push(labels.iter().position(|l| l == label).unwrap_or(0) as u32);
        }
    }
    let n = y.len();
    let side = cnn.image_size;
    let examples = Examples { x: Tensor::from_vec(pixels, (n, 3, side, side), &device)?, y };

    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let varmap = VarMap::new();
    let net = Cnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &config)?;
    seeded_init(&varmap, &mut rng)?;
    let fitted = fit(&varmap, &|x| net.logits(x), &examples, options, &mut rng, &mut progress)?;
    write_folder(out, &labels, &config, &varmap)?;
    Ok(TrainReport::new(out, labels, fitted))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.to_path_buf(), source }
}

fn label_maps(labels: &[String]) -> (serde_json::Value, serde_json::Value) {
    let id2label: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> =
        labels.iter().enumerate().map(|(i, l)| (l.clone(), i.into())).collect();
    (id2label.into(), label2id.into())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| TrainError::Data(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(io_error(path))
}

fn write_folder(out: &Path, labels: &[String], config: &CnnConfig, varmap: &VarMap) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let (id2label, label2id) = label_maps(labels);
    write_json(
        &out.join("config.json"),
        &serde_json::json!({
            "architectures": [ARCHITECTURE],
            "model_type": "modeldeck-cnn",
            "image_size": config.image_size,
            "conv_channels": config.conv_channels,
            "hidden_size": config.hidden_size,
            "num_labels": labels.len(),
            "id2label": id2label,
            "label2id": label2id,
        }),
    )?;
    write_json(
        &out.join("preprocessor_config.json"),
        &serde_json::json!({
            "image_processor_type": "ViTImageProcessor",
            "do_resize": true,
            "size": {"height": config.image_size, "width": config.image_size},
            "resample": 2,
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }),
    )?;
    let weights = out.join("model.safetensors");
    varmap.save(&weights).map_err(|e| TrainError::Data(format!("{}: {e}", weights.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_labels_keep_their_counts_and_lose_their_examples() {
        let labels: Vec<u32> = (0..1000).map(|i| i % 10).collect();
        let shuffle = |seed| shuffled_labels(&labels, &mut rand::rngs::StdRng::seed_from_u64(seed));
        let shuffled = shuffle(0);
        let (mut sorted, mut original) = (shuffled.clone(), labels.clone());
        sorted.sort();
        original.sort();
        assert_eq!(sorted, original, "a permutation keeps every label's count");
        // A random permutation leaves about 1 in 10 labels in place for 10 balanced classes.
        let kept = labels.iter().zip(&shuffled).filter(|(a, b)| a == b).count();
        assert!((50..=150).contains(&kept), "{kept} of 1000 labels stayed on their example");
        assert_eq!(shuffle(0), shuffled, "the same seed gives the same permutation");
        assert_ne!(shuffle(1), shuffled);
    }
}
