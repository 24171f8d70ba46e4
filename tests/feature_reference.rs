//! The monitor's features against numpy, scipy and the Hugging Face tokenizers library
//! (tests/fixtures/features/*.json, written by scripts/feature_reference.py), to 1e-6 relative.

mod common;

use std::path::Path;

use serde_json::Value;

use modeldeck::model::{self, LoadedModel};
use modeldeck::monitor::features::{self, IMAGE_FEATURES, TEXT_FEATURES};
use modeldeck::predict::{self, PredictRequest};
use modeldeck::source::{self, ModelSource, ResolveOptions};
use modeldeck::store;

fn reference(name: &str) -> Value {
    let path = common::root().join("tests/fixtures/features").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn assert_close(what: &str, got: f64, want: f64) {
    let tolerance = 1e-6 * want.abs().max(1e-12);
    assert!((got - want).abs() <= tolerance, "{what}: {got} vs reference {want}");
}

fn load(dir: &Path) -> LoadedModel {
    let files = source::resolve(&ModelSource::Local { path: dir.to_path_buf() }, &ResolveOptions::default()).unwrap();
    model::load(&files).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn image_features_match_numpy_and_scipy() {
    let cases = reference("images.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let path = case["path"].as_str().unwrap();
        let image = model::decode_image_file(&common::root().join(path)).unwrap();
        assert_eq!(
            format!("{:016x}", store::fnv1a(image.as_raw())),
            case["pixels_fnv1a64"].as_str().unwrap(),
            "{path}: decoded pixels differ from the ones the reference used"
        );
        let got = features::image_features(&image);
        let want = case["features"].as_object().unwrap();
        assert_eq!(got.0.len(), want.len(), "{path}");
        for (name, value) in &got.0 {
            assert_close(&format!("{path} {name}"), *value, want[*name].as_f64().unwrap());
        }
        assert_eq!(got.0.iter().map(|(n, _)| *n).collect::<Vec<_>>(), IMAGE_FEATURES);
    }
}

#[test]
fn text_features_match_the_tokenizers_library_and_the_model_still_sees_the_same_tokens() {
    let cases = reference("texts.json");
    let mut truncated_seen = [false, false];
    for (name, rows) in cases.as_object().unwrap() {
        let dir = if name == "minilm" { common::minilm_dir() } else { common::fixture_model(name) };
        let model = load(&dir);
        let encoder = model.text_encoder().unwrap();
        for row in rows.as_array().unwrap() {
            let text = row["text"].as_str().unwrap();
            let what = format!("{name} {text:?}");
            let (tokens, unknown) = (row["tokens"].as_u64().unwrap() as usize, row["unknown"].as_u64().unwrap());
            let got = features::text_features(&model, text).unwrap();
            assert_eq!(got.0.iter().map(|(n, _)| *n).collect::<Vec<_>>(), TEXT_FEATURES);
            assert_eq!(got.get("chars"), Some(row["chars"].as_f64().unwrap()), "{what}");
            assert_eq!(got.get("tokens"), Some(tokens as f64), "{what}");
            assert_close(
                &format!("{what} unknown_share"),
                got.get("unknown_share").unwrap(),
                unknown as f64 / tokens as f64,
            );
            let truncated = tokens > encoder.max_len();
            assert_eq!(got.get("truncated"), Some(if truncated { 1.0 } else { 0.0 }), "{what}");
            truncated_seen[truncated as usize] = true;
            if text.is_empty() {
                continue;
            }
            // The ids the model runs on are what the tokenizers library gives with truncation.
            let batch = encoder.encode(&[text.to_string()], None, &candle_core::Device::Cpu).unwrap();
            let mut library = encoder.tokenizer().clone();
            library
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: encoder.max_len(),
                    ..Default::default()
                }))
                .unwrap();
            assert_eq!(batch.ids[0], library.encode(text, true).unwrap().get_ids(), "{what}: ids");
            assert_eq!(batch.ids[0].len(), tokens.min(encoder.max_len()), "{what}");
            assert_eq!(features::text_length_features(&batch.lengths[0]), got, "{what}: batch lengths");
        }
    }
    assert_eq!(truncated_seen, [true, true], "the cases cover truncated and whole texts");
}

#[test]
fn output_features_match_scipy() {
    let cases = reference("outputs.json");
    for case in cases["scores"].as_array().unwrap() {
        let probs: Vec<f32> = case["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        let got = features::score_features(&probs);
        assert_close("confidence", got.get("confidence").unwrap(), case["confidence"].as_f64().unwrap());
        let want = case["entropy"].as_f64().unwrap();
        if want == 0.0 {
            assert_eq!(got.get("entropy"), Some(0.0));
        } else {
            assert_close(&format!("entropy of {} scores", probs.len()), got.get("entropy").unwrap(), want);
        }
    }
    for case in cases["embeddings"].as_array().unwrap() {
        let v: Vec<f32> = case["embedding"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        let got = features::embedding_features(&v).get("embedding_norm").unwrap();
        assert_close("embedding_norm", got, case["embedding_norm"].as_f64().unwrap());
    }
}

#[test]
fn every_prediction_carries_its_input_and_output_features() {
    // Images: the features of the image as given, then confidence and entropy.
    let digits =
        model::load_source(&ModelSource::parse("demo:digits-v1").unwrap(), &ResolveOptions::default()).unwrap();
    let path = common::root().join("assets/samples/chelsea.png");
    let image = std::sync::Arc::new(model::decode_image_file(&path).unwrap());
    let named = predict::NamedImage { name: "chelsea".into(), image: image.clone() };
    let output = predict::predict(&digits, &PredictRequest::images(vec![named.clone(), named])).unwrap();
    for result in &output.results {
        let mut want = features::image_features(&image);
        let probs = digits.run(&model::Request::Images(std::slice::from_ref(image.as_ref()))).unwrap();
        let model::Response::Scores(scores) = probs else { panic!("scores") };
        want.extend(features::score_features(&scores[0].probs));
        assert_eq!(result.features, want);
        assert_eq!(result.features.get("confidence"), result.predictions.as_ref().map(|p| p[0].score as f64));
    }
    // Texts: the tokenization's lengths; embeddings: their norm.
    let embedder = load(&common::fixture_model("st-bert-mean"));
    let text = "The movie was great!".to_string();
    let output = predict::predict(&embedder, &PredictRequest::texts(vec![text.clone()])).unwrap();
    let mut want = features::text_features(&embedder, &text).unwrap();
    want.extend(features::embedding_features(output.results[0].embedding.as_ref().unwrap()));
    assert_eq!(output.results[0].features, want);
    let json = output.to_json();
    assert_eq!(json["features"]["tokens"], 12.0, "{json}");
}
