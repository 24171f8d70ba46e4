//! Compares ModelDeck's statistics with the reference values that
//! `scripts/stats_reference.py` computed with Evidently 0.7, scipy, statsmodels and numpy
//! (committed in tests/fixtures/stats). Values must agree to 1e-9 relative (with a 1e-15
//! absolute floor for values that are zero in exact arithmetic), p-values to 1e-6 absolute.

use std::cell::Cell;
use std::path::PathBuf;

use modeldeck::report::{abtest_report, drift_report};
use modeldeck::stats::{ks::kolmogorov_sf, ks_2samp};
use serde_json::Value;

const REL_TOL: f64 = 1e-9;
const ABS_FLOOR: f64 = 1e-15;
const P_TOL: f64 = 1e-6;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats")
}

fn load(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[derive(Default)]
struct Worst {
    rel: Cell<f64>,
    p_abs: Cell<f64>,
}

fn close(actual: f64, expected: f64, is_p: bool, worst: &Worst) -> bool {
    let diff = (actual - expected).abs();
    if is_p {
        worst.p_abs.set(worst.p_abs.get().max(diff));
        return diff <= P_TOL;
    }
    let scale = actual.abs().max(expected.abs());
    if scale > 0.0 {
        worst.rel.set(worst.rel.get().max(diff / scale));
    }
    diff <= REL_TOL * scale + ABS_FLOOR
}

/// Walks `expected`; `actual` must have exactly the same keys and matching leaves.
fn compare(actual: &Value, expected: &Value, path: &str, is_p: bool, worst: &Worst) -> Vec<String> {
    let mut errors = Vec::new();
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            if e.get("error").is_some() {
                if !a.get("error").is_some_and(Value::is_string) {
                    errors.push(format!("{path}: expected an error, got {actual}"));
                }
                return errors;
            }
            let mut ak: Vec<&String> = a.keys().collect();
            let mut ek: Vec<&String> = e.keys().collect();
            ak.sort();
            ek.sort();
            if ak != ek {
                errors.push(format!("{path}: keys {ak:?} != expected {ek:?}"));
            }
            let p_method = matches!(e.get("method").and_then(Value::as_str), Some("ks" | "chisquare" | "z"));
            for (k, ev) in e {
                if let Some(av) = a.get(k) {
                    let child_p = k == "pvalue" || (k == "score" && p_method);
                    errors.extend(compare(av, ev, &format!("{path}.{k}"), child_p, worst));
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                errors.push(format!("{path}: length {} != {}", a.len(), e.len()));
            }
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                errors.extend(compare(av, ev, &format!("{path}[{i}]"), is_p, worst));
            }
        }
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().unwrap_or(f64::NAN), e.as_f64().unwrap_or(f64::NAN));
            if !close(a, e, is_p, worst) {
                errors.push(format!("{path}: {a:e} != expected {e:e}"));
            }
        }
        (a, e) if a == e => {}
        (a, e) => errors.push(format!("{path}: {a} != expected {e}")),
    }
    errors
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default()
}

#[test]
fn drift_reports_match_evidently() {
    let cases = load("drift_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for case in cases.as_array().expect("list of cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let report = drift_report(
            &fixtures().join(case["reference"].as_str().unwrap_or_default()),
            &fixtures().join(case["current"].as_str().unwrap_or_default()),
            &[],
            &strings(&case["categorical"]),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        errors.extend(compare(&report.to_json(), &case["expected"], name, false, &worst));
    }
    println!("drift: worst relative error {:e}, worst p-value error {:e}", worst.rel.get(), worst.p_abs.get());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn ab_reports_match_scipy_and_statsmodels() {
    let cases = load("ab_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for case in cases.as_array().expect("list of cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let report = abtest_report(
            &fixtures().join(case["a"].as_str().unwrap_or_default()),
            &fixtures().join(case["b"].as_str().unwrap_or_default()),
            case["paired"].as_bool().unwrap_or(false),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        errors.extend(compare(&report.to_json(), &case["expected"], name, false, &worst));
    }
    println!("abtest: worst relative error {:e}, worst p-value error {:e}", worst.rel.get(), worst.p_abs.get());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn kolmogorov_distribution_matches_scipy_kstwo() {
    let cases = load("ks_cases.json");
    let mut worst: f64 = 0.0;
    let mut errors = Vec::new();
    for c in cases["kstwo_sf"].as_array().expect("grid") {
        let n = c["n"].as_u64().unwrap_or(0);
        let x = c["x"].as_f64().unwrap_or(f64::NAN);
        let expected = c["sf"].as_f64().unwrap_or(f64::NAN);
        let got = kolmogorov_sf(n, x);
        let diff = (got - expected).abs();
        worst = worst.max(diff);
        if diff > P_TOL {
            errors.push(format!("kstwo.sf({x}, {n}) = {expected:e}, got {got:e}"));
        }
    }
    println!("kstwo: worst absolute error {worst:e}");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn ks_2samp_matches_scipy() {
    let cases = load("ks_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for (i, c) in cases["ks_2samp"].as_array().expect("pairs").iter().enumerate() {
        let (a, b) = (floats(&c["a"]), floats(&c["b"]));
        let r = ks_2samp(&a, &b).expect("non-empty samples");
        let es = c["statistic"].as_f64().unwrap_or(f64::NAN);
        let ep = c["pvalue"].as_f64().unwrap_or(f64::NAN);
        if !close(r.statistic, es, false, &worst) || !close(r.pvalue, ep, true, &worst) {
            errors.push(format!(
                "case {i} (n={}, m={}): got ({:e}, {:e}), scipy ({es:e}, {ep:e})",
                a.len(),
                b.len(),
                r.statistic,
                r.pvalue
            ));
        }
    }
    println!("ks_2samp: worst relative error {:e}, worst p-value error {:e}", worst.rel.get(), worst.p_abs.get());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// Times the benchmark in release builds: `cargo test --release -- --ignored bench --nocapture`.
#[test]
#[ignore]
fn bench_drift_and_abtest() {
    let v = modeldeck::report::bench_stats();
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    assert!(v.get("error").is_none(), "{v}");
}
