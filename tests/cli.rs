//! The `predict` subcommand's JSON, as scripts consume it.

mod common;

use std::process::Command;

fn json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck")).args(args).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn model(name: &str) -> String {
    common::fixture_model(name).display().to_string()
}

#[test]
fn image_classification_json_has_card_predictions_and_latency() {
    let v = json(&["predict", "--model", &model("vit-p8-32"), "--image", "assets/samples/chelsea.png"]);
    assert_eq!(v["task"], "image-classification");
    assert_eq!(v["model"]["architecture"], "ViTForImageClassification");
    assert_eq!(v["model"]["labels"].as_array().unwrap().len(), 10);
    assert!(v["model"]["parameters"].as_u64().unwrap() > 1000);
    let predictions = v["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 5);
    let scores: Vec<f64> = predictions.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted: {scores:?}");
    assert!(v["latency_ms"].as_f64().unwrap() > 0.0);

    let all =
        json(&["predict", "--model", &model("vit-p8-32"), "--image", "assets/samples/chelsea.png", "--top-k", "99"]);
    let total: f64 = all["predictions"].as_array().unwrap().iter().map(|p| p["score"].as_f64().unwrap()).sum();
    assert_eq!(all["predictions"].as_array().unwrap().len(), 10);
    assert!((total - 1.0).abs() < 1e-4);
}

#[test]
fn embeddings_and_similarity() {
    let one = json(&["predict", "--model", &model("st-bert-mean"), "--text", "a cat on a mat"]);
    assert_eq!(one["embedding"].as_array().unwrap().len(), 32);
    let two =
        json(&["predict", "--model", &model("st-bert-mean"), "--text", "a cat on a mat", "--text", "a dog in the fog"]);
    let s = two["similarity"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&s) && s < 0.9999, "{s}");
}

#[test]
fn zero_shot_takes_candidate_labels() {
    let v = json(&[
        "predict",
        "--model",
        &model("clip-a"),
        "--image",
        "assets/samples/coffee.png",
        "--labels",
        "cat,dog,coffee cup",
    ]);
    assert_eq!(v["task"], "zero-shot-image-classification");
    let labels: Vec<&str> = v["predictions"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels.len(), 3);
    assert!(labels.contains(&"coffee cup"));
}

/// `--template` reaches the model: the scores are transformers' for that hypothesis_template.
#[test]
fn zero_shot_template_from_the_command_line() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/fixtures/reference/clip-a.json")).unwrap(),
    )
    .unwrap();
    for template in ["a photo of a {}.", "{}"] {
        let case = reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["input"]["template"] == template && c["input"]["image"] == "assets/samples/coffee.png")
            .expect("reference case");
        let labels: Vec<&str> =
            case["input"]["labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        let v = json(&[
            "predict",
            "--model",
            &model("clip-a"),
            "--image",
            "assets/samples/coffee.png",
            "--labels",
            &labels.join(","),
            "--template",
            template,
        ]);
        let predictions = v["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), labels.len());
        for p in predictions {
            let i = labels.iter().position(|l| *l == p["label"]).unwrap();
            let want = case["probs"][i].as_f64().unwrap();
            assert!((p["score"].as_f64().unwrap() - want).abs() < 1e-4, "{template}: {p} vs {want}");
        }
    }
}

#[test]
fn drift_and_abtest_verbs_print_json_and_fail_cleanly() {
    let stats = |f: &str| common::root().join("tests/fixtures/stats").join(f).display().to_string();
    let v = json(&[
        "drift",
        "--reference",
        &stats("drift_small_reference_reference.csv"),
        "--current",
        &stats("drift_small_reference_current.csv"),
    ]);
    assert_eq!(v["columns"]["mean_shift_half_sd"]["default_test"]["method"], "ks");
    assert_eq!(v["columns"]["mean_shift_half_sd"]["default_test"]["drift_detected"], true);
    assert!(v["columns"]["all_missing_current"]["error"].is_string());
    assert!(v["dataset_drift"]["share_drifted"].as_f64().unwrap() > 0.5);

    let v = json(&["abtest", "--a", &stats("shadow_paired_a.csv"), "--b", &stats("shadow_paired_b.csv"), "--paired"]);
    assert_eq!(v["paired"]["n_pairs"], 999);
    assert!(v["accuracy"]["ztest"]["pvalue"].as_f64().unwrap() < 0.05);

    let v = json(&[
        "abtest",
        "--a",
        &stats("ab_tiny_ties_a.csv"),
        "--b",
        &stats("ab_tiny_ties_b.csv"),
        "--confidence",
        "0.95",
        "--tolerance",
        "0.1",
    ]);
    assert_eq!(v["latency"]["kayenta"]["confidence"], 0.95);
    assert_eq!(v["latency"]["kayenta"]["tolerance"], 0.1);
    // R's wilcox.test(b, a, conf.int=TRUE, exact=FALSE, conf.level=0.95): [0, 11].
    assert_eq!(v["latency"]["kayenta"]["lower"], 0.0);
    assert_eq!(v["latency"]["kayenta"]["upper"], 11.0);
    let v = json(&["abtest", "--a", &stats("ab_tiny_ties_a.csv"), "--b", &stats("ab_tiny_ties_b.csv")]);
    assert_eq!(v["latency"]["kayenta"]["confidence"], 0.98, "Kayenta's default");

    let tmp = tempfile::tempdir().unwrap();
    let latency_only = tmp.path().join("latency_only.csv");
    std::fs::write(&latency_only, "latency_ms\n30\n31.5\n29\n").unwrap();
    let v = json(&["abtest", "--a", latency_only.to_str().unwrap(), "--b", &stats("ab_tiny_ties_b.csv")]);
    assert!(v.get("accuracy").is_none() && v["latency"]["kayenta"]["verdict"].is_string(), "{v}");
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["abtest", "--a", latency_only.to_str().unwrap(), "--b", &stats("ab_tiny_ties_b.csv"), "--paired"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("latency_only.csv has no `request_id` column, which --paired needs to join requests"),
        "{err}"
    );

    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, "request_id,prediction,label,correct,latency_ms\n1,a,a,1,fast\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["abtest", "--a", bad.to_str().unwrap(), "--b", &stats("shadow_paired_b.csv")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.csv") && err.contains("latency_ms") && err.trim().lines().count() == 1, "{err}");
}

/// An installed binary (`cargo install --path .`) run from another folder has everything it
/// needs at first start: the demo models, the gallery and the benchmark photo are inside it.
#[test]
fn a_copy_of_the_binary_in_an_empty_folder_runs_the_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("modeldeck");
    std::fs::copy(env!("CARGO_BIN_EXE_modeldeck"), &exe).unwrap();
    let digit = tmp.path().join("three.png");
    std::fs::copy(common::root().join("assets/digits/test/3/0045.png"), &digit).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(&exe)
            .args(args)
            .current_dir(tmp.path())
            .env("MODELDECK_CACHE_DIR", tmp.path().join("cache"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    for demo in ["demo:digits-v1", "demo:digits-v2"] {
        let v = run(&["predict", "--model", demo, "--image", "three.png", "--json"]);
        assert_eq!(v["predictions"][0]["label"], "3", "{demo}: {v}");
    }
    // The deliberately bad demo loads the same way; its answer is chance, so only its shape counts.
    let v = run(&["predict", "--model", "demo:digits-shuffled", "--image", "three.png", "--json"]);
    assert_eq!(v["model"]["name"], "digits-shuffled", "{v}");
    assert_eq!(v["predictions"].as_array().map(Vec::len), Some(5), "{v}");
    let bench = run(&["bench", "--model", "demo:digits-v1", "--iters", "2", "--warmup", "0", "--json"]);
    assert_eq!(bench["image"], "chelsea.png", "bench times the embedded photo, not a synthetic one: {bench}");
}
