//! A model update on newer data: the base model's feature extractor stays frozen and a new linear
//! classification head (any label set) is trained on its features. Image classifiers keep their
//! architecture with the head replaced; a sentence-transformers embedder becomes a
//! `ModelDeckSentenceClassifier` (embedder + head).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;

use super::{fit, io_error, label_maps, seeded_init, write_json, Examples, TrainError, TrainOptions, TrainReport};
use crate::eval::perturb::ImageDrift;
use crate::eval::{self, Dataset, ExampleInput};
use crate::model::{self, Request, Task};
use crate::source::{ModelFiles, WeightsFormat};

const SENTENCE_CLASSIFIER: &str = "ModelDeckSentenceClassifier";

/// Trains a new head for the model in `files` on `data` and writes the updated model to `out`.
pub fn train_head(
    files: &ModelFiles,
    data: &Dataset,
    out: &Path,
    options: &TrainOptions,
    add_drifted: Option<&ImageDrift>,
    mut progress: impl FnMut(&str, &super::EpochReport),
) -> Result<TrainReport, TrainError> {
    let base = model::load(files)?;
    let task = base.task();
    let head_names = match (base.head_names(), task) {
        (Some(names), _) => names,
        (None, Task::TextEmbedding) => ("classifier.weight", "classifier.bias"),
        (None, _) => {
            return Err(TrainError::Data(format!(
                "{} ({}) has no classification head to retrain",
                base.card().name,
                base.card().architecture
            )))
        }
    };
    let labels = data.labels();
    if labels.len() < 2 {
        return Err(TrainError::Data(format!("{} needs at least two labels", data.source.display())));
    }
    let labelled: Vec<(usize, &eval::Example)> =
        data.examples.iter().enumerate().filter(|(_, e)| e.label.is_some()).collect();
    // Images can also be seen through a drift, as newer data would look.
    let copies: Vec<Option<&ImageDrift>> = match add_drifted {
        Some(d) if task.takes_images() => vec![None, Some(d)],
        Some(_) => return Err(TrainError::Data("--add-drifted applies to image data only".into())),
        None => vec![None],
    };
    let labelled: Vec<(usize, &eval::Example, Option<&ImageDrift>)> =
        copies.iter().flat_map(|d| labelled.iter().map(move |(i, e)| (*i, *e, *d))).collect();

    // Frozen features, computed once.
    let mut features = Vec::new();
    let mut y = Vec::new();
    for chunk in labelled.chunks(32) {
        if options.cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        let batch = if task.takes_images() {
            let images = chunk
                .iter()
                .map(|(i, e, drift)| eval::load_image(e, *drift, options.seed + 1, *i))
                .collect::<Result<Vec<_>, _>>()?;
            base.prepare(&Request::Images(&images))?
        } else {
            let texts = chunk
                .iter()
                .map(|(_, e, _)| match &e.input {
                    ExampleInput::Text(t) => Ok(t.clone()),
                    ExampleInput::Image(p) => {
                        Err(TrainError::Data(format!("{} is an image; this model reads text", p.display())))
                    }
                    ExampleInput::Invalid(reason) => Err(TrainError::Data(format!("example `{}`: {reason}", e.id))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            base.prepare(&Request::Texts { texts: &texts, max_tokens: None })?
        };
        features.push(base.features(&batch)?);
        for (_, e, _) in chunk {
            let label = e.label.as_deref().unwrap_or_default();
            y.push(labels.iter().position(|l| l == label).unwrap_or(0) as u32);
        }
        progress(
            "features",
            &super::EpochReport {
                epoch: 0,
                train_loss: f64::NAN,
                train_accuracy: y.len() as f64 / labelled.len() as f64,
                validation_loss: f64::NAN,
                validation_accuracy: f64::NAN,
            },
        );
    }
    let x = Tensor::cat(&features, 0)?.to_dtype(DType::F32)?.contiguous()?;
    let dim = x.dim(1)?;
    let examples = Examples { x, y };

    let device = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let varmap = VarMap::new();
    let head =
        candle_nn::linear(dim, labels.len(), VarBuilder::from_varmap(&varmap, DType::F32, &device).pp("classifier"))?;
    seeded_init(&varmap, &mut rng)?;
    let fitted = fit(&varmap, &|x| head.forward(x), &examples, options, &mut rng, &mut |r| progress("epoch", r))?;

    let mut tensors = all_tensors(files)?;
    tensors.insert(head_names.0.to_string(), head.weight().clone());
    if let Some(bias) = head.bias() {
        tensors.insert(head_names.1.to_string(), bias.clone());
    }
    write_updated_folder(files, out, &labels, &tensors, task == Task::TextEmbedding, dim)?;
    Ok(TrainReport::new(out, labels, fitted))
}

/// Every tensor of the base checkpoint, in f32.
fn all_tensors(files: &ModelFiles) -> Result<HashMap<String, Tensor>, TrainError> {
    let mut tensors = HashMap::new();
    for path in &files.weights {
        let loaded: Vec<(String, Tensor)> = match files.weights_format {
            WeightsFormat::Safetensors => candle_core::safetensors::load(path, &Device::Cpu)?.into_iter().collect(),
            WeightsFormat::PyTorch => candle_core::pickle::read_all(path)?,
        };
        for (name, t) in loaded {
            let t = if t.dtype().is_float() { t.to_dtype(DType::F32)? } else { t };
            tensors.insert(name, t);
        }
    }
    Ok(tensors)
}

fn write_updated_folder(
    files: &ModelFiles,
    out: &Path,
    labels: &[String],
    tensors: &HashMap<String, Tensor>,
    embedder: bool,
    dim: usize,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let optional =
        [&files.tokenizer, &files.tokenizer_config, &files.preprocessor, &files.st_modules, &files.st_config];
    for path in optional.into_iter().flatten() {
        if let Some(name) = path.file_name() {
            std::fs::copy(path, out.join(name)).map_err(io_error(path))?;
        }
    }
    for name in ["special_tokens_map.json", "vocab.txt"] {
        let path = files.root.join(name);
        if path.is_file() {
            std::fs::copy(&path, out.join(name)).map_err(io_error(&path))?;
        }
    }
    if let (Some(pooling), Some(dir)) = (&files.st_pooling, files.st_pooling.as_ref().and_then(|p| p.parent())) {
        let name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "1_Pooling".into());
        std::fs::create_dir_all(out.join(&name)).map_err(io_error(out))?;
        std::fs::copy(pooling, out.join(&name).join("config.json")).map_err(io_error(pooling))?;
    }
    let text = std::fs::read(&files.config).map_err(io_error(&files.config))?;
    let mut config: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| TrainError::Data(format!("{}: {e}", files.config.display())))?;
    let (id2label, label2id) = label_maps(labels);
    config["id2label"] = id2label;
    config["label2id"] = label2id;
    config["num_labels"] = labels.len().into();
    config["problem_type"] = "single_label_classification".into();
    if embedder {
        config["architectures"] = serde_json::json!([SENTENCE_CLASSIFIER]);
        config["embedding_size"] = dim.into();
    }
    write_json(&out.join("config.json"), &config)?;
    let weights = out.join("model.safetensors");
    candle_core::safetensors::save(tensors, &weights)?;
    Ok(())
}
