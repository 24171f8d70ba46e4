//! Reduced precision (issue 15): int8 and bf16 models against the same checkpoint in f32, with
//! explicit fidelity bounds, the model card's account of them, and the portable kernels forced
//! through the CLI (`MODELDECK_KERNELS=portable`) against the native ones.

mod common;

use std::path::Path;
use std::process::Command;

use modeldeck::eval::{self, Dataset, EvalOptions};
use modeldeck::model::{self, LoadedModel, Precision, Request, Response};
use modeldeck::source::{ModelSource, ResolveOptions};

fn load(source: &Path, precision: Precision) -> LoadedModel {
    let options = ResolveOptions { precision, ..Default::default() };
    model::load_source(&ModelSource::Local { path: source.to_path_buf() }, &options).unwrap()
}

fn load_demo(name: &str, precision: Precision) -> LoadedModel {
    let options = ResolveOptions { precision, ..Default::default() };
    model::load_source(&ModelSource::Demo { name: name.into() }, &options).unwrap()
}

fn embed(model: &LoadedModel, texts: &[String], max_tokens: Option<usize>) -> Vec<Vec<f32>> {
    match model.run(&Request::Texts { texts, max_tokens }).unwrap() {
        Response::Embeddings(v) => v,
        other => panic!("not embeddings: {other:?}"),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The benchmark paragraph and everyday sentences, short and long.
fn sentences() -> Vec<String> {
    let paragraph = std::fs::read_to_string(common::root().join("bench/bench_text.txt")).unwrap();
    let mut texts: Vec<String> = [
        "A man is eating food.",
        "The new movie is awesome",
        "The cat sits outside",
        "Il pleut des cordes à Paris ce matin.",
        "Quarterly revenue rose 12% on strong cloud demand, beating analysts' estimates.",
        "ok",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push(paragraph.trim().to_string());
    // Long inputs: the paragraph repeated to past the model's 256-token limit (truncated there).
    texts.push(format!("{p} {p} {p}", p = paragraph.trim()));
    texts
}

#[test]
fn int8_and_bf16_minilm_embeddings_stay_within_their_cosine_bounds() {
    let dir = common::minilm_dir();
    let f32_model = load(&dir, Precision::F32);
    let texts = sentences();
    for (precision, bound) in [(Precision::Int8, 0.99), (Precision::Bf16, 0.998)] {
        let model = load(&dir, precision);
        assert_eq!(model.card().precision, precision);
        assert!(model.card().quantization.contains(precision.name()), "{}", model.card().quantization);
        for max_tokens in [Some(17), Some(64), None] {
            let want = embed(&f32_model, &texts, max_tokens);
            let got = embed(&model, &texts, max_tokens);
            let worst = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).fold(f64::INFINITY, f64::min);
            eprintln!("{precision} MiniLM, max tokens {max_tokens:?}: min cosine to f32 {worst:.5}");
            assert!(worst >= bound, "{precision} at {max_tokens:?} tokens: min cosine {worst} < {bound}");
        }
    }
}

#[test]
fn the_card_tells_size_in_memory_per_precision() {
    let dir = common::minilm_dir();
    let [f, b, q] = Precision::ALL.map(|p| load(&dir, p).card().clone());
    // 22.7 M parameters, 91 MB in f32, of which the encoder's linear layers are 10.6 M (the
    // 30522-token embedding table, 11.7 M, stays f32): bf16 saves 21 MB, int8 32 MB.
    assert_eq!(f.memory_bytes, f.parameters * 4);
    assert_eq!((b.size_bytes, q.size_bytes), (f.size_bytes, f.size_bytes));
    assert!(b.memory_bytes < f.memory_bytes * 78 / 100, "bf16 {} vs f32 {}", b.memory_bytes, f.memory_bytes);
    assert!(q.memory_bytes < f.memory_bytes * 67 / 100, "int8 {} vs f32 {}", q.memory_bytes, f.memory_bytes);
    assert!(q.memory_bytes < b.memory_bytes);
    let json = serde_json::to_value(&q).unwrap();
    assert_eq!(json["precision"], "int8");
    assert!(json["quantization"].as_str().unwrap().contains("per-output-channel"));
}

/// Top-1 agreement of two models on a labelled image folder, and the accuracy difference.
fn agreement(a: &LoadedModel, b: &LoadedModel, data: &Path) -> (f64, f64, usize) {
    let data = Dataset::load(data).unwrap();
    let options = EvalOptions { batch_size: 64, ..Default::default() };
    let (_, _, c) = eval::compare(a, b, &data, &options, |_, _| {}).unwrap();
    (c.agreement, c.accuracy_diff.unwrap(), c.n_paired)
}

#[test]
fn int8_and_bf16_digit_models_agree_with_f32_on_the_test_split() {
    let test = common::root().join("assets/digits/test");
    for name in ["digits-v1", "digits-v2"] {
        let reference = load_demo(name, Precision::F32);
        for precision in [Precision::Int8, Precision::Bf16] {
            let model = load_demo(name, precision);
            let (agree, diff, n) = agreement(&reference, &model, &test);
            eprintln!(
                "{name} {precision}: top-1 agreement with f32 {:.2}% on {n}, accuracy change {:+.2} points",
                agree * 100.0,
                diff * 100.0
            );
            assert_eq!(n, 540);
            assert!(agree >= 0.99, "{name} {precision}: agreement {agree}");
            assert!(diff.abs() <= 0.01, "{name} {precision}: accuracy moved by {diff}");
        }
    }
}

/// Runs the CLI with `MODELDECK_KERNELS` set to `kernels` (`None`: the kernels this CPU picks).
fn cli(args: &[&str], kernels: Option<&str>) -> serde_json::Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modeldeck"));
    command.args(args);
    match kernels {
        Some(k) => command.env("MODELDECK_KERNELS", k),
        None => command.env_remove("MODELDECK_KERNELS"),
    };
    let out = command.output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_kernel_gives_the_native_int8_answers_exactly_and_f32_and_bf16_closely() {
    let image = common::root().join("assets/digits/test/3");
    let image = std::fs::read_dir(&image).unwrap().next().unwrap().unwrap().path();
    let image = image.to_str().unwrap();
    for precision in ["int8", "bf16", "f32"] {
        let args = [
            "predict",
            "--model",
            "demo:digits-v2",
            "--image",
            image,
            "--precision",
            precision,
            "--top-k",
            "10",
            "--json",
        ];
        let native = cli(&args, None);
        let scores = |v: &serde_json::Value| -> Vec<(String, f64)> {
            v["predictions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["label"].as_str().unwrap().to_string(), s["score"].as_f64().unwrap()))
                .collect()
        };
        let a = scores(&native);
        assert_eq!(a.len(), 10, "{native}");
        // The AVX-512 kernels without AMX, and the portable ones (on a CPU without AVX-512 or
        // AMX, these are what the native run already used).
        for forced in ["avx512", "portable"] {
            let other = cli(&args, Some(forced));
            let b = scores(&other);
            let kernel = other["model"]["kernel"].as_str().unwrap_or_default().to_string();
            assert!(kernel.starts_with(precision), "{forced}: {other}");
            assert!(!kernel.contains("AMX"), "{forced}: {kernel}");
            if forced == "portable" {
                assert!(kernel.contains("portable"), "{kernel}");
            }
            if precision == "int8" {
                // Integer products: the same bits whichever kernel ran.
                assert_eq!(a, b, "int8 native vs {forced}");
            } else {
                for ((la, sa), (lb, sb)) in a.iter().zip(&b) {
                    assert!(la == lb || (sa - sb).abs() < 1e-6, "{la} vs {lb}");
                    assert!((sa - sb).abs() < 1e-5, "{precision} native {sa} vs {forced} {sb}");
                }
            }
        }
    }
}

#[test]
fn compare_takes_a_precision_per_arm_and_remote_models_refuse_one() {
    let test = common::root().join("assets/digits/test");
    let v = cli(
        &[
            "compare",
            "--a",
            "demo:digits-v1",
            "--b",
            "demo:digits-v1",
            "--precision-b",
            "int8",
            "--data",
            test.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    assert_eq!(v["a"]["model"]["precision"], "f32", "{v}");
    assert_eq!(v["b"]["model"]["precision"], "int8");
    assert!(v["agreement"].as_f64().unwrap() >= 0.99);
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["predict", "--model", "oip+http://127.0.0.1:9/m", "--text", "hi", "--precision", "int8"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("remote endpoint runs in whatever precision"), "{err}");
}
