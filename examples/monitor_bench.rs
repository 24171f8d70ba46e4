//! Timings of the monitor's recording path: `ModelMetrics::record` per call (alone and under
//! the mutex the recorder holds), the Prometheus update per prediction, a record that closes a
//! second, and a summary over full windows. Prints JSON:
//! `cargo run --release --example monitor_bench`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use modeldeck::monitor::metrics::ModelMetrics;
use modeldeck::monitor::prometheus::PromMetrics;
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

fn main() {
    let report = json!({ "record": bench_record() });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
}
