//! The embedded demo models and the training that produced them: committed accuracies hold,
//! v1 retrains from scratch quickly to the same quality, heads retrain on frozen features for an
//! image model and for all-MiniLM-L6-v2, a head on shuffled labels is no better than chance, and
//! training can be cancelled.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use modeldeck::eval::perturb::ImageDrift;
use modeldeck::eval::{self, Dataset, EvalOptions};
use modeldeck::model;
use modeldeck::source::{self, CancelToken, ModelSource, ResolveOptions};
use modeldeck::train::{self, CnnOptions, TrainError, TrainOptions};

fn metrics() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(common::root().join("models/metrics.json")).unwrap()).unwrap()
}

fn load(source: &str) -> model::LoadedModel {
    model::load_source(&ModelSource::parse(source).unwrap(), &ResolveOptions::default()).unwrap()
}

fn accuracy(model: &model::LoadedModel, data: &Path, drift: Option<ImageDrift>, seed: u64) -> f64 {
    let data = Dataset::load(data).unwrap();
    let options = EvalOptions { batch_size: 128, drift, seed, ..Default::default() };
    eval::evaluate(model, &data, &options, |_| {}).unwrap().evaluation.metrics.unwrap().accuracy
}

fn test_split() -> PathBuf {
    common::root().join("assets/digits/test")
}

#[test]
fn committed_demo_models_reach_the_accuracies_in_models_md() {
    let m = metrics();
    let drift = ImageDrift::parse(m["drift"].as_str().unwrap()).unwrap();
    let seed = m["eval_seed"].as_u64().unwrap();
    let models_md = std::fs::read_to_string(common::root().join("models/MODELS.md")).unwrap();
    for name in ["digits-v1", "digits-v2", "digits-shuffled"] {
        let model = load(&format!("demo:{name}"));
        let clean = accuracy(&model, &test_split(), None, seed);
        let drifted = accuracy(&model, &test_split(), Some(drift), seed);
        let want = &m["models"][name];
        assert!((clean - want["clean"].as_f64().unwrap()).abs() <= 0.005, "{name} clean {clean}");
        assert!((drifted - want["drifted"].as_f64().unwrap()).abs() <= 0.005, "{name} drifted {drifted}");
        assert!(models_md.contains(&format!("| {name} | {:.2}% | {:.2}% |", clean * 100.0, drifted * 100.0)));
    }
    // The story the demo tells: both good on clean data, v2 clearly better under drift.
    let (v1, v2) = (&m["models"]["digits-v1"], &m["models"]["digits-v2"]);
    assert!(v1["clean"].as_f64().unwrap() > 0.95 && v2["clean"].as_f64().unwrap() > 0.95);
    assert!(v2["drifted"].as_f64().unwrap() > v1["drifted"].as_f64().unwrap() + 0.2);
    // The bad canary: near chance (10 classes) on clean and drifted data alike.
    let shuffled = &m["models"]["digits-shuffled"];
    for split in ["clean", "drifted"] {
        let acc = shuffled[split].as_f64().unwrap();
        assert!(acc < 0.2, "digits-shuffled {split} accuracy {acc} is not near chance");
    }
}

#[test]
fn v1_retrains_from_scratch_quickly_to_the_committed_quality() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Dataset::load(&common::root().join("assets/digits/train")).unwrap();
    let started = Instant::now();
    let options = TrainOptions { seed: 0, ..Default::default() };
    let report = train::train_cnn(&data, tmp.path(), &CnnOptions::default(), &options, |_| {}).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds < 60.0, "training took {seconds:.1} s");
    assert!(report.best_validation_accuracy > 0.95);
    let model = load(tmp.path().to_str().unwrap());
    let clean = accuracy(&model, &test_split(), None, 7);
    let committed = metrics()["models"]["digits-v1"]["clean"].as_f64().unwrap();
    assert!((clean - committed).abs() < 0.03, "retrained {clean} vs committed {committed}");
}

#[test]
fn the_demo_predicts_on_a_fresh_clone_without_network() {
    let image = common::root().join("assets/digits/test/3").read_dir().unwrap().next().unwrap().unwrap().path();
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["predict", "--model", "demo:digits-v1", "--image", image.to_str().unwrap(), "--json"])
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model"]["architecture"], "ModelDeckCnnForImageClassification");
    assert_eq!(v["predictions"][0]["label"], "3");
}

/// A new label set on the frozen features of the digits CNN: even vs odd.
#[test]
fn a_new_head_on_an_image_model_learns_a_new_label_set() {
    let tmp = tempfile::tempdir().unwrap();
    let make_parity = |split: &str| -> PathBuf {
        let dir = tmp.path().join(split);
        for digit in 0..10 {
            let target = dir.join(if digit % 2 == 0 { "even" } else { "odd" });
            std::fs::create_dir_all(&target).unwrap();
            let src = common::root().join(format!("assets/digits/{split}/{digit}"));
            for f in src.read_dir().unwrap().flatten() {
                std::fs::copy(f.path(), target.join(format!("{digit}-{}", f.file_name().to_string_lossy()))).unwrap();
            }
        }
        dir
    };
    let (train_dir, test_dir) = (make_parity("train"), make_parity("test"));
    let files = source::resolve(&ModelSource::parse("demo:digits-v1").unwrap(), &Default::default()).unwrap();
    let out = tmp.path().join("parity");
    let options = TrainOptions { learning_rate: 5e-2, ..Default::default() };
    let report =
        train::train_head(&files, &Dataset::load(&train_dir).unwrap(), &out, &options, None, |_, _| {}).unwrap();
    assert_eq!(report.labels, vec!["even", "odd"]);
    let model = load(out.to_str().unwrap());
    assert_eq!(model.card().labels, vec!["even", "odd"]);
    assert_eq!(model.card().architecture, "ModelDeckCnnForImageClassification");
    let acc = accuracy(&model, &test_dir, None, 0);
    assert!(acc > 0.9, "parity accuracy {acc}");
}

/// all-MiniLM-L6-v2 plus a text CSV gives a text classifier that loads like any other model.
#[test]
fn a_head_on_all_minilm_makes_a_text_classifier() {
    let dir = common::minilm_dir();
    let files = source::resolve(&ModelSource::Local { path: dir }, &Default::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = Dataset::load(&common::root().join("assets/text/reviews.csv")).unwrap();
    let options = TrainOptions { learning_rate: 5e-2, ..Default::default() };
    train::train_head(&files, &data, tmp.path(), &options, None, |_, _| {}).unwrap();
    let model = load(tmp.path().to_str().unwrap());
    assert_eq!(model.card().architecture, "ModelDeckSentenceClassifier");
    assert_eq!(model.card().task, model::Task::TextClassification);
    let acc = accuracy(&model, &common::root().join("assets/text/reviews_test.csv"), None, 0);
    assert!(acc >= 0.75, "sentiment accuracy {acc}");
}

/// The script's digits-shuffled command through the library: the same head on digits-v2's frozen
/// features learns the digits from the true labels and nothing from shuffled ones.
#[test]
fn a_head_on_shuffled_labels_is_no_better_than_chance() {
    let files = source::resolve(&ModelSource::parse("demo:digits-v2").unwrap(), &Default::default()).unwrap();
    let data = Dataset::load(&common::root().join("assets/digits/train")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let test_accuracy = |shuffle_labels: bool| {
        let out = tmp.path().join(if shuffle_labels { "shuffled" } else { "true" });
        let options = TrainOptions { learning_rate: 5e-2, seed: 0, shuffle_labels, ..Default::default() };
        let report = train::train_head(&files, &data, &out, &options, None, |_, _| {}).unwrap();
        (report, accuracy(&load(out.to_str().unwrap()), &test_split(), None, 7))
    };
    let (truth, truth_acc) = test_accuracy(false);
    let (shuffled, shuffled_acc) = test_accuracy(true);
    assert!(truth_acc > 0.9, "a head on the true labels: {truth_acc}");
    assert!(shuffled_acc < 0.2, "a head on shuffled labels: {shuffled_acc}");
    // Early stopping judged the shuffled validation labels, not the true ones.
    assert!(shuffled.best_validation_accuracy < 0.3, "{}", shuffled.best_validation_accuracy);
    assert_eq!((shuffled.n_train, shuffled.n_validation), (truth.n_train, truth.n_validation));
    let committed = metrics()["models"]["digits-shuffled"]["clean"].as_f64().unwrap();
    assert!((shuffled_acc - committed).abs() < 0.03, "retrained {shuffled_acc} vs committed {committed}");
}

#[test]
fn training_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = Dataset::load(&common::root().join("assets/digits/train")).unwrap();
    let cancel = CancelToken::new();
    let options = TrainOptions { cancel: cancel.clone(), ..Default::default() };
    let err = train::train_cnn(&data, tmp.path(), &CnnOptions::default(), &options, |r| {
        if r.epoch == 2 {
            cancel.cancel();
        }
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::Cancelled), "{err}");
    assert!(!tmp.path().join("model.safetensors").exists());
}
