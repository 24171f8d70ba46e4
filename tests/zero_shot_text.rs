//! The families of issue 16 end to end: zero-shot text classification with NLI models through
//! the CLI (labels, templates, multi-label, JSON), DeBERTa-v3, ModernBERT and SigLIP loaded from a
//! folder and from the local test hub, and their bad inputs, each a clear one-line error.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::hub_server::{HubServer, RepoSpec};
use common::{copy_model, fails_with, modeldeck};
use modeldeck::model::{self, Request, Response};
use modeldeck::source::{self, ModelSource, ResolveOptions};
use serde_json::Value;

fn reference(name: &str) -> Value {
    let path = common::root().join(format!("tests/fixtures/reference/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every zero-shot case of the NLI references through `modeldeck predict --json`: the labels in
/// the pipeline's order with its scores (1e-4), whichever of --template and --multi-label the
/// case used.
#[test]
fn the_cli_ranks_candidate_labels_like_the_pipeline() {
    for name in ["deberta-nli", "bert-nli"] {
        let model = common::fixture_model(name);
        for case in reference(name)["cases"].as_array().unwrap() {
            let input = &case["input"];
            let labels: Vec<&str> = input["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
            let joined = labels.join(",");
            let top = labels.len().to_string();
            let mut args = vec![
                "predict",
                "--model",
                model.to_str().unwrap(),
                "--text",
                input["text"].as_str().unwrap(),
                "--labels",
                &joined,
                "--top-k",
                &top,
                "--json",
            ];
            if let Some(t) = input["template"].as_str() {
                args.extend(["--template", t]);
            }
            if input["multi_label"].as_bool().unwrap() {
                args.push("--multi-label");
            }
            let (ok, out, err) = modeldeck(&args);
            assert!(ok, "{name}: {err}");
            let json: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(json["model"]["task"], "zero-shot-text-classification");
            let got = json["predictions"].as_array().unwrap();
            let want = case["pipeline"].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name}: {input}");
            for (g, w) in got.iter().zip(want) {
                let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
                assert!((gs - ws).abs() < 1e-4, "{name} {input}: {g} vs {w}");
                if g["label"] != w["label"] {
                    // Only a tie may swap two labels.
                    let theirs = want.iter().find(|x| x["label"] == g["label"]).unwrap()["score"].as_f64().unwrap();
                    assert!((theirs - gs).abs() < 1e-4, "{name} {input}: {g} ranked where the pipeline has {w}");
                }
            }
            if input["multi_label"].as_bool().unwrap() && labels.len() > 1 {
                // Independent scores: they need not sum to one.
                let sum: f64 = got.iter().map(|g| g["score"].as_f64().unwrap()).sum();
                assert!((sum - 1.0).abs() > 1e-3, "{name}: multi-label scores sum to {sum}");
            }
        }
    }
}

#[test]
fn zero_shot_text_inputs_are_checked() {
    let nli = common::fixture_model("deberta-nli");
    let nli = nli.to_str().unwrap();
    fails_with(&["predict", "--model", nli, "--text", "the food was cold"], &["need candidate labels", "--labels"]);
    fails_with(&["predict", "--model", nli, "--text", "   ", "--labels", "food"], &["empty text"]);
    fails_with(
        &["predict", "--model", nli, "--text", "the food was cold", "--labels", "food", "--template", "no slot"],
        &["template `no slot` has no `{}`"],
    );
    // A hypothesis longer than the model's 48 tokens leaves no room for the text.
    let long_label = "very ".repeat(60);
    fails_with(
        &["predict", "--model", nli, "--text", "the food was cold", "--labels", &long_label],
        &["hypothesis", "leaving none for the text"],
    );
    fails_with(
        &["predict", "--model", nli, "--image", "assets/samples/chelsea.png", "--labels", "food"],
        &["zero-shot-text-classification", "does not take images"],
    );
    let plain = common::fixture_model("deberta-v3-cls");
    let plain = plain.to_str().unwrap();
    fails_with(
        &["predict", "--model", plain, "--text", "good", "--labels", "a,b"],
        &["candidate labels (--labels) are for zero-shot models", "text-classification"],
    );
    fails_with(&["predict", "--model", plain, "--text", "good", "--multi-label"], &["--multi-label", "NLI"]);
    // A long premise is cut to fit (only the first text is truncated), never an error.
    let long = "the food was cold and the waiter was rude ".repeat(200);
    let (ok, out, err) = modeldeck(&["predict", "--model", nli, "--text", &long, "--labels", "food,travel", "--json"]);
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["features"]["truncated"], 1.0, "{json}");
}

#[test]
fn broken_folders_of_the_new_families_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let text = |dir: &Path| {
        vec!["predict".to_string(), "--model".into(), dir.display().to_string(), "--text".into(), "hello".into()]
    };
    let image = |dir: &Path| {
        vec![
            "predict".to_string(),
            "--model".into(),
            dir.display().to_string(),
            "--image".into(),
            "assets/samples/chelsea.png".into(),
            "--labels".into(),
            "cat,dog".into(),
        ]
    };
    let run =
        |args: Vec<String>, needles: &[&str]| fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles);
    let edit = |dir: &Path, f: &dyn Fn(&mut Value)| {
        let path = dir.join("config.json");
        let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        f(&mut json);
        std::fs::write(path, json.to_string()).unwrap();
    };
    // intermediate_size 40 where the weights say 64 (DeBERTa) and 48 (ModernBERT, whose GeGLU
    // input layer is twice as wide).
    for (name, tensor, shape) in
        [("deberta-v3-cls", "intermediate.dense.weight", "[40, 32]"), ("modernbert-cls", "mlp.Wi.weight", "[80, 32]")]
    {
        let dir = copy_model(name, tmp.path());
        edit(&dir, &|j| j["intermediate_size"] = serde_json::json!(40));
        run(text(&dir), &[tensor, shape]);
        let dir = copy_model(name, &tmp.path().join("no-tokenizer"));
        std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
        run(text(&dir), &["tokenizer.json"]);
    }
    let dir = copy_model("siglip-a", tmp.path());
    edit(&dir, &|j| j["vision_config"]["intermediate_size"] = serde_json::json!(40));
    run(image(&dir), &["fc1.weight", "40"]);
    let dir = copy_model("siglip-b", tmp.path());
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    std::fs::write(dir.join("spiece.model"), b"not read").unwrap();
    run(image(&dir), &["tokenizer.json", "spiece.model", "SentencePiece"]);
    // SigLIP v1's own spiece.model, corrupt: named, with the reason.
    let dir = copy_model("siglip-c", tmp.path());
    std::fs::write(dir.join("spiece.model"), [0x0a, 0xff, 0x01]).unwrap();
    run(image(&dir), &["spiece.model", "runs past the end"]);
    std::fs::write(dir.join("spiece.model"), b"").unwrap();
    run(image(&dir), &["spiece.model", "no vocabulary"]);
    let dir = copy_model("deberta-nli", tmp.path());
    edit(&dir, &|j| j["conv_kernel_size"] = serde_json::json!(3));
    run(text(&dir), &["conv_kernel_size", "not supported"]);
    edit(&dir, &|j| {
        j["conv_kernel_size"] = serde_json::json!(0);
        j["pos_att_type"] = serde_json::json!(["p2p"]);
    });
    run(text(&dir), &["pos_att_type", "p2p"]);
    let dir = copy_model("modernbert-cls-b", tmp.path());
    edit(&dir, &|j| j["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0}));
    run(text(&dir), &["rope_scaling", "not supported"]);
}

/// Each new family from the local stand-in for the Hub answers exactly as from its folder.
#[test]
fn the_new_families_load_from_the_hub_and_answer_like_disk() {
    // siglip-c has no tokenizer.json: its spiece.model must come along.
    let names = ["deberta-v3-cls", "modernbert-cls", "siglip-a", "siglip-c", "deberta-nli"];
    let repos: HashMap<String, RepoSpec> = names
        .iter()
        .map(|n| (format!("test-org/{n}"), RepoSpec { dir: common::fixture_model(n), token: None }))
        .collect();
    let server = HubServer::start(repos);
    let cache = tempfile::tempdir().unwrap();
    let options = ResolveOptions {
        endpoint: Some(server.endpoint.clone()),
        cache_dir: Some(cache.path().to_path_buf()),
        token: Some(String::new()),
        ..Default::default()
    };
    let texts = vec!["The service was terrible and the food arrived cold.".to_string()];
    let images = vec![model::decode_image_file(&common::root().join("assets/samples/chelsea.png")).unwrap()];
    let labels = vec!["a cat".to_string(), "food".to_string(), "a coffee cup".to_string()];
    for name in names {
        let answer = |source: &ModelSource| -> Vec<f32> {
            let model = model::load(&source::resolve(source, &options).expect("resolve")).expect("load");
            let request = match model.task() {
                model::Task::ZeroShotImageClassification => {
                    Request::ZeroShot { images: &images, labels: &labels, template: None }
                }
                model::Task::ZeroShotTextClassification => {
                    Request::ZeroShotTexts { texts: &texts, labels: &labels, template: None, multi_label: false }
                }
                _ => Request::Texts { texts: &texts, max_tokens: None },
            };
            let Response::Scores(scores) = model.run(&request).expect("run") else { panic!("scores") };
            scores[0].probs.clone()
        };
        let hub = answer(&ModelSource::parse(&format!("test-org/{name}")).unwrap());
        let disk = answer(&ModelSource::Local { path: common::fixture_model(name) });
        assert_eq!(hub, disk, "{name}");
        assert!(!hub.is_empty());
    }
}

/// int8 and bf16 variants of the new families load and stay close to f32.
#[test]
fn the_new_families_run_in_every_precision() {
    let texts = vec!["I absolutely loved this film; the acting was wonderful.".to_string()];
    for name in ["deberta-v3-cls", "modernbert-cls", "deberta-nli"] {
        let files =
            source::resolve(&ModelSource::Local { path: common::fixture_model(name) }, &Default::default()).unwrap();
        let f32_model = model::load(&files).unwrap();
        let labels = vec!["movies".to_string(), "food".to_string()];
        let request = if f32_model.task() == model::Task::ZeroShotTextClassification {
            Request::ZeroShotTexts { texts: &texts, labels: &labels, template: None, multi_label: false }
        } else {
            Request::Texts { texts: &texts, max_tokens: None }
        };
        let Response::Scores(want) = f32_model.run(&request).unwrap() else { panic!() };
        for precision in [model::Precision::Int8, model::Precision::Bf16] {
            let m = model::load_with(&files, precision).unwrap();
            assert_eq!(m.card().precision, precision);
            assert!(m.card().memory_bytes < f32_model.card().memory_bytes, "{name} {precision}");
            let Response::Scores(got) = m.run(&request).unwrap() else { panic!() };
            let worst = got[0].probs.iter().zip(&want[0].probs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 0.05, "{name} {precision}: probabilities moved by {worst}");
        }
    }
}

/// transformers truncates to tokenizer_config.json's `model_max_length` and overrides the
/// truncation a tokenizer.json was saved with; ModelDeck does the same (a folder whose two
/// disagree gave 48-token inputs where transformers read 512).
#[test]
fn model_max_length_wins_over_the_truncation_saved_in_tokenizer_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("bert-cls-5", tmp.path());
    let tokenizer: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(tokenizer["truncation"]["max_length"], 64);
    let path = dir.join("tokenizer_config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model_max_length"] = serde_json::json!(20);
    std::fs::write(&path, config.to_string()).unwrap();
    let files = source::resolve(&ModelSource::Local { path: dir }, &Default::default()).unwrap();
    let model = model::load(&files).unwrap();
    assert_eq!(model.text_encoder().unwrap().max_len(), 20);
}

/// `modeldeck eval` on a labelled CSV runs an NLI model zero-shot with the data set's labels as
/// candidates: each record's prediction is what `predict --labels` gives for it.
#[test]
fn eval_runs_an_nli_model_on_the_data_sets_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("topics.csv");
    let rows = [
        ("The soup was cold and the waiter rude.", "food"),
        ("Our flight to Rome left on time.", "travel"),
        ("The senate passed the bill.", "politics"),
        ("I ordered pasta and it was salty.", "food"),
        ("We took the night train to Paris.", "travel"),
    ];
    let mut csv = String::from("text,label\n");
    for (text, label) in rows {
        csv.push_str(&format!("\"{text}\",{label}\n"));
    }
    std::fs::write(&data, csv).unwrap();
    let model = common::fixture_model("deberta-nli");
    let model = model.to_str().unwrap();
    let (ok, out, err) = modeldeck(&["eval", "--model", model, "--data", data.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let eval: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((eval["n"].as_u64(), eval["n_failed"].as_u64()), (Some(5), Some(0)), "{eval}");
    let classes = eval["metrics"]["classes"].as_array().unwrap();
    let labels: Vec<&str> = classes.iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["food", "politics", "travel"]);
    let mut predicted: HashMap<String, u64> = HashMap::new();
    for (text, _) in rows {
        let (ok, out, err) =
            modeldeck(&["predict", "--model", model, "--text", text, "--labels", &labels.join(","), "--json"]);
        assert!(ok, "{err}");
        let json: Value = serde_json::from_str(&out).unwrap();
        *predicted.entry(json["predictions"][0]["label"].as_str().unwrap().to_string()).or_default() += 1;
    }
    for class in classes {
        let label = class["label"].as_str().unwrap();
        assert_eq!(class["predicted"].as_u64(), Some(predicted.get(label).copied().unwrap_or(0)), "{label}");
    }
}

/// "Update a model": a new head trains on DeBERTa-v3's and ModernBERT's frozen features and the
/// result loads and answers in the new labels.
#[test]
fn a_new_head_trains_on_deberta_and_modernbert_features() {
    let tmp = tempfile::tempdir().unwrap();
    let topics = [
        ("food", ["The soup was cold.", "I ordered pasta.", "The bread was fresh.", "Dinner was salty."]),
        (
            "travel",
            ["Our flight left on time.", "We took the train.", "The hotel was near the beach.", "We flew to Rome."],
        ),
        (
            "politics",
            [
                "The senate passed the bill.",
                "The minister resigned.",
                "Voters went to the polls.",
                "The party lost seats.",
            ],
        ),
    ];
    let mut csv = String::from("text,label\n");
    for copy in 0..4 {
        for (label, texts) in &topics {
            for text in texts {
                csv.push_str(&format!("\"{text} {copy}\",{label}\n"));
            }
        }
    }
    let data = tmp.path().join("topics.csv");
    std::fs::write(&data, csv).unwrap();
    for base in ["deberta-v3-cls", "modernbert-cls"] {
        let out = tmp.path().join(format!("{base}-topics"));
        let base_dir = common::fixture_model(base);
        let (ok, _, err) = modeldeck(&[
            "train",
            "--base",
            base_dir.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{base}: {err}");
        let (ok, stdout, err) =
            modeldeck(&["predict", "--model", out.to_str().unwrap(), "--text", "The soup was cold.", "--json"]);
        assert!(ok, "{base}: {err}");
        let json: Value = serde_json::from_str(&stdout).unwrap();
        let labels: Vec<&str> =
            json["model"]["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert_eq!(labels, ["food", "politics", "travel"], "{base}");
        let total: f64 = json["predictions"].as_array().unwrap().iter().map(|p| p["score"].as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{base}: {json}");
    }
}
