//! The always-valid A/B statistics (`stats::sequential`) against the reference values that
//! `scripts/msprt_reference.py` computed with the PyPI package `msprt` (equal arms) and from the
//! mixture's definition by quadrature (unequal arms), to 1e-9 relative; and the A/A simulation
//! that shows why a live dashboard needs them: stopping at the first p < 5 % keeps false
//! positives under 5 % with the sequential p-value and not with the fixed-horizon z-test.

use std::path::PathBuf;
use std::time::Instant;

use modeldeck::stats::{simulate_peeking, ArmSplit, PeekingOptions, SequentialAb};
use serde_json::Value;

const REL_TOL: f64 = 1e-9;
const ABS_FLOOR: f64 = 1e-15;

fn close(actual: f64, expected: f64) -> bool {
    actual.is_finite()
        && expected.is_finite()
        && (actual - expected).abs() <= REL_TOL * actual.abs().max(expected.abs()) + ABS_FLOOR
}

fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what}: expected a number, found {v}"))
}

#[test]
fn msprt_matches_the_reference_trajectories() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats/msprt_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Value = serde_json::from_str(&text).unwrap();
    let cases = fixture["cases"].as_array().expect("a list of cases");
    assert!(cases.len() >= 6, "expected the equal, unequal, A/A, big-effect and degenerate cases");
    let mut errors = Vec::new();
    let mut compared = 0;
    for case in cases {
        let name = case["name"].as_str().expect("a case name");
        let mut test = SequentialAb::new(number(&case["tau2"], "tau2"), number(&case["alpha"], "alpha")).unwrap();
        for (i, look) in case["looks"].as_array().expect("looks").iter().enumerate() {
            let count = |key: &str| look[key].as_u64().unwrap_or_else(|| panic!("{name}[{i}].{key}"));
            let state = test.update(count("correct_a"), count("n_a"), count("correct_b"), count("n_b")).unwrap();
            let actual = serde_json::to_value(&state).unwrap();
            let at = format!("{name}[{i}]");
            if actual["evidence"] != look["evidence"] {
                errors.push(format!("{at}.evidence: {} != {}", actual["evidence"], look["evidence"]));
            }
            for key in ["delta", "std_error", "lambda", "p_value"] {
                match (&actual[key], &look[key]) {
                    (Value::Null, Value::Null) => {}
                    (a, e) if a.is_f64() && e.is_number() => {
                        compared += 1;
                        if !close(number(a, key), number(e, key)) {
                            errors.push(format!("{at}.{key}: {a} != {e}"));
                        }
                    }
                    (a, e) => errors.push(format!("{at}.{key}: {a} != {e}")),
                }
            }
            for (j, (a, e)) in
                state.confidence_sequence.iter().zip(look["confidence_sequence"].as_array().unwrap()).enumerate()
            {
                compared += 1;
                if !close(*a, number(e, "confidence_sequence")) {
                    errors.push(format!("{at}.confidence_sequence[{j}]: {a} != {e}"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{} mismatches:\n{}", errors.len(), errors.join("\n"));
    assert!(compared > 500, "only {compared} values compared");
}

/// The proof, small enough for the suite: 1,000 seeded A/A replays of 4,000 requests
/// (about 2,000 per arm at 90 % accuracy), a look every 40 requests (100 looks).
#[test]
fn peeking_inflates_fixed_horizon_false_positives_but_not_sequential_ones() {
    let started = Instant::now();
    let options = PeekingOptions { runs: 1000, look_every: 40, ..PeekingOptions::default() };
    let report = simulate_peeking(&options).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(report.looks_per_run, 100);
    assert!(report.sequential.rate <= 0.07, "sequential FPR {:?}", report.sequential);
    assert!(report.fixed_peeking.rate >= 0.15, "peeked fixed-horizon FPR {:?}", report.fixed_peeking);
    // Read once, the fixed-horizon test is fine: 5 % within 3.6 standard errors (1,000 runs).
    let once = report.fixed_once.rate;
    assert!((0.025..=0.075).contains(&once), "fixed-horizon FPR read once {:?}", report.fixed_once);

    // A 5 % canary between two 98 % models: B's first few dozen requests are all correct, which
    // the small-arm variance bound keeps from reading as evidence.
    let canary = PeekingOptions {
        runs: 500,
        seed: 7,
        accuracy_a: 0.98,
        accuracy_b: 0.98,
        requests: 4000,
        look_every: 20,
        split: ArmSplit::Random { weight_b: 0.05 },
        ..PeekingOptions::default()
    };
    let report = simulate_peeking(&canary).unwrap();
    assert!(report.sequential.rate <= 0.07, "5 % canary A/A sequential FPR {:?}", report.sequential);
    println!("simulations took {:.2} s", started.elapsed().as_secs_f64());
}

/// Power: with a real difference (85 % against 92 %) the sequential test rejects in most runs,
/// long before the horizon.
#[test]
fn sequential_test_detects_a_real_difference() {
    let options = PeekingOptions { runs: 300, accuracy_a: 0.85, accuracy_b: 0.92, ..PeekingOptions::default() };
    let report = simulate_peeking(&options).unwrap();
    assert!(report.sequential.rate >= 0.9, "power {:?}", report.sequential);
    let mean = report.sequential_mean_requests_to_reject.unwrap();
    assert!(mean < 0.5 * options.requests as f64, "mean requests to reject {mean}");
}
