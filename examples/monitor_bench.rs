//! Timings of the monitor's recording path: `ModelMetrics::record` per call (alone and under
//! the mutex the recorder holds), the Prometheus update per prediction, a record that closes a
//! second, and a summary over full windows; and the input/output features (`features`): image
//! features of a 1000×1000 image (the budget is 1 ms) and of the sample photo, text features of
//! a short and a long text with all-MiniLM-L6-v2 (when it is in target/fixtures or
//! `MODELDECK_MINILM_DIR`, else the small BERT fixture), and what features add to one `predict`
//! call. Prints JSON: `cargo run --release --example monitor_bench`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use image::RgbImage;
use serde_json::{json, Value};

use modeldeck::model::{self, LoadedModel, Request};
use modeldeck::monitor::features;
use modeldeck::monitor::metrics::ModelMetrics;
use modeldeck::monitor::prometheus::PromMetrics;
use modeldeck::predict::{self, NamedImage, PredictRequest};
use modeldeck::source::{ModelSource, ResolveOptions};
use modeldeck::store::Origin;

mod common;
use common::best_of;

const CALLS: usize = 1_000_000;
const T0: i64 = 1_700_000_000_000;

/// Deterministic latencies between 0.5 and 200 ms with a long tail (SplitMix64 cubed).
fn latencies(n: usize) -> Vec<f64> {
    let mut state = 42u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            0.5 + u * u * u * 199.5
        })
        .collect()
}

/// `ModelMetrics::record` at 10,000 requests/s of simulated time (so seconds and 10 s slots
/// roll over as they would), one call in 50 an error.
fn bench_record() -> Value {
    let lat = latencies(CALLS);
    let mut round = 0i64;
    let mut run = |metrics: &mut dyn FnMut(i64, f64, bool)| {
        round += 1;
        // Each round continues in later time, so it records into fresh seconds and slots.
        let base = T0 + round * 1_000_000;
        for (i, &l) in lat.iter().enumerate() {
            metrics(base + i as i64 / 10, l, i % 50 == 0);
        }
    };
    let mut m = ModelMetrics::new(T0);
    let alone = best_of(5, || run(&mut |t, l, e| m.record(t, Some(l), e))) / CALLS as f64;
    let shared = Mutex::new(ModelMetrics::new(T0));
    let under_mutex = best_of(5, || {
        run(&mut |t, l, e| {
            if let Ok(mut m) = shared.lock() {
                m.record(t, Some(l), e);
            }
        })
    }) / CALLS as f64;

    // A record that closes a second holding 10,000 latencies: one pass over its histogram.
    let mut m = ModelMetrics::new(T0);
    let mut closing = Vec::new();
    for second in 0..20i64 {
        for (i, &l) in lat[..10_000].iter().enumerate() {
            m.record(T0 + second * 1000 + i as i64 / 10, Some(l), false);
        }
        let t = Instant::now();
        m.record(T0 + (second + 1) * 1000, Some(1.0), false);
        closing.push(t.elapsed().as_secs_f64());
    }
    closing.sort_by(f64::total_cmp);

    // A summary with every window full: 10 min at 1,000 requests/s.
    let mut m = ModelMetrics::new(T0);
    for i in 0..600_000usize {
        m.record(T0 + i as i64, Some(lat[i % CALLS]), false);
    }
    // At the latest time seen: the kept window sums plus the current slot.
    let summary = best_of(20, || {
        std::hint::black_box(m.summary(T0 + 599_999));
    });
    // In a later slot than anything recorded (an idle model not advanced): every slot summed.
    let summary_idle = best_of(20, || {
        std::hint::black_box(m.summary(T0 + 605_000));
    });

    let prom = PromMetrics::new();
    let model: Arc<str> = Arc::from("vit-base-patch16-224");
    let observe = best_of(5, || {
        for (i, &l) in lat.iter().enumerate() {
            prom.observe_prediction(&model, Origin::Replay, Some(l), i % 50 == 0);
        }
    }) / CALLS as f64;

    json!({
        "record_ns_per_call": alone * 1e9,
        "record_under_mutex_ns_per_call": under_mutex * 1e9,
        "record_closing_a_second_of_10k_us_median": closing[closing.len() / 2] * 1e6,
        "record_closing_a_second_of_10k_us_max": closing[closing.len() - 1] * 1e6,
        "summary_10min_of_1k_rps_us": summary * 1e6,
        "summary_10min_of_1k_rps_idle_slot_us": summary_idle * 1e6,
        "prometheus_observe_ns_per_call": observe * 1e9,
        "calls_per_round": CALLS,
    })
}

/// The whole recording path of one image prediction: `Monitor::observe` (metrics, class series,
/// drift windows with the 12 image/output features; features computed beforehand) and, with an
/// endpoint, the Prometheus update. The observation is built outside the timed loop.
fn bench_observe() -> Value {
    use modeldeck::monitor::{Features, Monitor, Observation};
    const N: usize = 200_000;
    let model: Arc<str> = "demo:digits-v1".into();
    let observations: Vec<Observation> = (0..N)
        .map(|i| {
            let mut f = Features::default();
            for (j, name) in features::IMAGE_FEATURES.iter().chain(&["confidence", "entropy"]).enumerate() {
                f.push(name, (i * 7 + j) as f64 / 13.0);
            }
            Observation {
                at_ms: T0 + i as i64,
                model: model.clone(),
                request_id: format!("r{i}").into(),
                latency_ms: Some(1.0 + (i % 50) as f64 / 10.0),
                error: false,
                predicted: Some(if i % 3 == 0 { "3" } else { "8" }.into()),
                features: f,
            }
        })
        .collect();
    // Best of 5 rounds, each on a fresh monitor (setup outside the timing).
    let per_call = |prometheus: bool| {
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let monitor = Monitor::with_defaults(T0);
            if prometheus {
                monitor.set_prometheus(Some(Arc::new(PromMetrics::new())));
            }
            let batch = observations.clone();
            let started = Instant::now();
            for o in batch {
                monitor.observe(o, Origin::Replay);
            }
            best = best.min(started.elapsed().as_secs_f64());
        }
        best / N as f64 * 1e9
    };
    json!({
        "calls_per_round": N,
        "monitor_observe_ns_per_call": per_call(false),
        "monitor_observe_with_prometheus_ns_per_call": per_call(true),
    })
}

fn main() {
    let report = json!({ "record": bench_record(), "observe": bench_observe(), "features": bench_features() });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
}

/// Rounds of each feature timing (the best is kept).
const ROUNDS: usize = 50;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(source: ModelSource) -> LoadedModel {
    model::load_source(&source, &ResolveOptions::default()).unwrap_or_else(|e| panic!("{source}: {e}"))
}

/// A deterministic 1000×1000 image with structure at several scales (gradients and noise).
fn megapixel() -> RgbImage {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    RgbImage::from_fn(1000, 1000, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 56) as u32 / 4;
        image::Rgb([((x / 4 + noise) % 256) as u8, ((y / 4 + noise) % 256) as u8, (((x + y) / 8) % 256) as u8])
    })
}

fn ms(seconds: f64) -> f64 {
    seconds * 1e3
}

fn bench_features() -> Value {
    let big = megapixel();
    let sample = model::decode_image_file(&root().join("assets/samples/chelsea.png")).unwrap_or_else(|e| panic!("{e}"));
    let image_1mp_ms = ms(best_of(ROUNDS, || {
        std::hint::black_box(features::image_features(std::hint::black_box(&big)));
    }));
    let image_sample_ms = ms(best_of(ROUNDS, || {
        std::hint::black_box(features::image_features(std::hint::black_box(&sample)));
    }));

    // predict with and without the features: what they add to one call of the prediction path.
    let digits = load(ModelSource::parse("demo:digits-v1").unwrap_or_else(|e| panic!("{e}")));
    let request = PredictRequest::images(vec![NamedImage { name: "1mp".into(), image: Arc::new(big.clone()) }]);
    let predict_ms = ms(best_of(ROUNDS, || {
        std::hint::black_box(predict::predict(&digits, &request).ok());
    }));
    let run_ms = ms(best_of(ROUNDS, || {
        std::hint::black_box(digits.run(&Request::Images(std::slice::from_ref(&big))).ok());
    }));

    let minilm = std::env::var_os("MODELDECK_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/fixtures/all-minilm-l6-v2"));
    let (text_model_name, text_dir) = if minilm.join("model.safetensors").is_file() {
        ("all-MiniLM-L6-v2", minilm)
    } else {
        ("bert-cls-5 (fixture)", root().join("tests/fixtures/models/bert-cls-5"))
    };
    let text_model = load(ModelSource::Local { path: text_dir });
    let short = "The delivery was late but the support team sorted it out quickly.".to_string();
    let long = short.repeat(40);
    let text_ms = |text: &str| {
        ms(best_of(ROUNDS, || {
            std::hint::black_box(features::text_features(&text_model, text).ok());
        }))
    };
    let texts = PredictRequest::texts(vec![short.clone()]);
    let text_predict_ms = ms(best_of(ROUNDS, || {
        std::hint::black_box(predict::predict(&text_model, &texts).ok());
    }));

    json!({
        "image_features_1000x1000_ms": image_1mp_ms,
        "image_features_451x300_ms": image_sample_ms,
        "predict_digits_1000x1000_ms": predict_ms,
        "model_run_digits_1000x1000_ms": run_ms,
        "text_model": text_model_name,
        "text_features_short_ms": text_ms(&short),
        "text_features_long_ms": text_ms(&long),
        "predict_text_short_ms": text_predict_ms,
        "rounds": ROUNDS,
    })
}
