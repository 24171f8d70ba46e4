//! Compares ModelDeck's statistics with the reference values that
//! `scripts/stats_reference.py` computed with Evidently 0.7, scipy, statsmodels and numpy,
//! and that `scripts/kayenta_reference.R` computed with R's `wilcox.test` (committed in
//! tests/fixtures/stats). Values must agree to 1e-9 relative (with a 1e-15 absolute floor
//! for values that are zero in exact arithmetic); p-values to 1e-6 relative, or, below
//! 1e-300, their logarithms to 1e-6 relative. A NaN, a null or a missing field where the
//! reference has a number fails, and so does a list of the wrong length.

use std::cell::Cell;
use std::path::PathBuf;

use modeldeck::report::{abtest_report, drift_report, AbOptions, Table};
use modeldeck::stats::mannwhitney::kth_difference;
use modeldeck::stats::{
    kayenta_with, ks::kolmogorov_sf, ks_2samp, mann_whitney_u_asymptotic, KayentaOptions, StatsError,
};
use serde_json::Value;

const REL_TOL: f64 = 1e-9;
const ABS_FLOOR: f64 = 1e-15;
const P_REL_TOL: f64 = 1e-6;
/// Below this, p-values are compared on the log scale (f64 loses precision in subnormals).
const P_LOG_BELOW: f64 = 1e-300;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stats")
}

fn load(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The number at `v`, or a panic naming where a number was expected.
fn number(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what}: expected a number in the reference, found {v}"))
}

fn text<'v>(v: &'v Value, what: &str) -> &'v str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string in the reference, found {v}"))
}

fn floats(v: &Value, what: &str) -> Vec<f64> {
    let items = v.as_array().unwrap_or_else(|| panic!("{what}: expected a list, found {v}"));
    items.iter().enumerate().map(|(i, x)| number(x, &format!("{what}[{i}]"))).collect()
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    let items = v.as_array().unwrap_or_else(|| panic!("{what}: expected a list, found {v}"));
    items.iter().enumerate().map(|(i, x)| text(x, &format!("{what}[{i}]")).to_string()).collect()
}

#[derive(Default)]
struct Worst {
    rel: Cell<f64>,
    p_rel: Cell<f64>,
}

/// `actual` within 1e-9 relative of `expected` (1e-15 absolute floor); never true for NaN.
fn close(actual: f64, expected: f64, worst: &Worst) -> bool {
    if !actual.is_finite() || !expected.is_finite() {
        return false;
    }
    let diff = (actual - expected).abs();
    let scale = actual.abs().max(expected.abs());
    if scale > 0.0 {
        worst.rel.set(worst.rel.get().max(diff / scale));
    }
    diff <= REL_TOL * scale + ABS_FLOOR
}

/// A p-value within 1e-6 relative of the reference, or below 1e-300 with its logarithm
/// within 1e-6 relative; an exact 0 must be matched exactly. Never true for NaN.
fn p_close(actual: f64, expected: f64, worst: &Worst) -> bool {
    if !actual.is_finite() || !expected.is_finite() || actual < 0.0 || expected < 0.0 {
        return false;
    }
    if actual == expected {
        return true;
    }
    if actual == 0.0 || expected == 0.0 {
        worst.p_rel.set(f64::INFINITY);
        return false;
    }
    let rel = if expected < P_LOG_BELOW || actual < P_LOG_BELOW {
        (actual.ln() - expected.ln()).abs() / expected.ln().abs()
    } else {
        (actual - expected).abs() / expected
    };
    worst.p_rel.set(worst.p_rel.get().max(rel));
    rel <= P_REL_TOL
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
            } else {
                for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                    errors.extend(compare(av, ev, &format!("{path}[{i}]"), is_p, worst));
                }
            }
        }
        (Value::Number(an), Value::Number(en)) => match (an.as_f64(), en.as_f64()) {
            (Some(a), Some(e)) => {
                let ok = if is_p { p_close(a, e, worst) } else { close(a, e, worst) };
                if !ok {
                    errors.push(format!("{path}: {a:e} != expected {e:e}"));
                }
            }
            _ => errors.push(format!("{path}: {an} or {en} is not an f64")),
        },
        // The reference is NaN or ±inf (both serialise as null): ModelDeck must say so too.
        (Value::Null, Value::Null) => {}
        (a, e) if a == e && !matches!(e, Value::Number(_)) => {}
        (a, e) => errors.push(format!("{path}: {a} != expected {e}")),
    }
    errors
}

#[test]
fn drift_reports_match_evidently() {
    let cases = load("drift_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for case in cases.as_array().expect("list of cases") {
        let name = text(&case["name"], "case name");
        let report = drift_report(
            &fixtures().join(text(&case["reference"], name)),
            &fixtures().join(text(&case["current"], name)),
            &[],
            &strings(&case["categorical"], name),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        errors.extend(compare(&report.to_json(), &case["expected"], name, false, &worst));
    }
    println!("drift: worst relative error {:e}, worst p-value relative error {:e}", worst.rel.get(), worst.p_rel.get());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn ab_reports_match_scipy_statsmodels_and_r() {
    let cases = load("ab_cases.json");
    let kayenta_cases = load("kayenta_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for case in cases.as_array().expect("list of cases") {
        let name = text(&case["name"], "case name");
        let options = AbOptions {
            paired: case["paired"].as_bool().unwrap_or_else(|| panic!("{name}: `paired` is not a bool")),
            ..AbOptions::default()
        };
        let report =
            abtest_report(&fixtures().join(text(&case["a"], name)), &fixtures().join(text(&case["b"], name)), &options)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut json = report.to_json();
        // The Kayenta judgement is R's business (kayenta_cases.json), the rest scipy's.
        let kayenta = json["latency"].as_object_mut().and_then(|l| l.remove("kayenta"));
        errors.extend(compare(&json, &case["expected"], name, false, &worst));
        let Some(kayenta) = kayenta else {
            errors.push(format!("{name}: no latency.kayenta in the report"));
            continue;
        };
        let r_case = kayenta_case(&kayenta_cases, name);
        let level = r_level(r_case, 0.98);
        let step = floats(&level["conf_int_step"], name);
        assert_eq!(step.len(), 2, "{name}: conf_int_step");
        let got = [number(&kayenta["lower"], name), number(&kayenta["upper"], name)];
        for (g, e) in got.iter().zip(&step) {
            if !close(*g, *e, &worst) {
                errors.push(format!("{name}: Kayenta bound {g:e}, R's step {e:e}"));
            }
        }
        if kayenta["verdict"] != level["verdict"] || kayenta["confidence"] != 0.98 || kayenta["tolerance"] != 0.25 {
            errors.push(format!("{name}: Kayenta {kayenta} against R's verdict {}", level["verdict"]));
        }
    }
    println!(
        "abtest: worst relative error {:e}, worst p-value relative error {:e}",
        worst.rel.get(),
        worst.p_rel.get()
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

fn kayenta_case<'c>(cases: &'c Value, name: &str) -> &'c Value {
    let list = cases["cases"].as_array().expect("kayenta_cases.json: `cases` list");
    list.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("kayenta_cases.json has no case `{name}`"))
}

fn r_level(case: &Value, confidence: f64) -> &Value {
    let levels = case["levels"].as_array().expect("`levels` list");
    levels
        .iter()
        .find(|l| l["conf_level"].as_f64() == Some(confidence))
        .unwrap_or_else(|| panic!("{}: no level {confidence}", case["name"]))
}

/// One arm of a Kayenta case: inline values, or the `latency_ms` column of an abtest fixture.
fn kayenta_arm(case: &Value, arm: &str) -> Vec<f64> {
    let name = text(&case["name"], "case name");
    if let Some(csv) = case.get(format!("{arm}_csv")) {
        let path = fixtures().join(text(csv, name));
        let table = Table::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let column = table.column("latency_ms").unwrap_or_else(|| panic!("{}: no latency_ms", path.display()));
        column.iter().map(|v| v.trim().parse::<f64>().unwrap_or_else(|e| panic!("{name}: `{v}`: {e}"))).collect()
    } else {
        floats(&case[arm], &format!("{name}.{arm}"))
    }
}

fn within(value: f64, lo: f64, hi: f64, slack: f64) -> bool {
    value >= lo - slack && value <= hi + slack
}

/// R's `uniroot(tol = 1e-4)` lands within about 1e-4 of the step it brackets.
fn uniroot_slack(x: f64) -> f64 {
    2e-4 * x.abs().max(1.0)
}

#[test]
fn kayenta_matches_r_wilcox_test() {
    let cases = load("kayenta_cases.json");
    assert_eq!(cases["about"]["made_by"], "scripts/kayenta_reference.R");
    let worst = Worst::default();
    let mut errors = Vec::new();
    let mut table = vec![format!(
        "{:<24} {:>5} | {:>34} {:>10} {:>5} | {:>34} {:>10} {:>5} | {:>11} {:>11}",
        "case", "conf", "ModelDeck interval", "estimate", "vrdct", "R conf.int", "estimate", "vrdct", "p", "R p.value"
    )];
    let list = cases["cases"].as_array().expect("`cases` list");
    assert!(list.len() >= 14, "{} cases", list.len());
    for case in list {
        let name = text(&case["name"], "case name");
        let (a, b) = (kayenta_arm(case, "a"), kayenta_arm(case, "b"));
        let tolerance = number(&case["tolerance"], name);
        let levels = case["levels"].as_array().unwrap_or_else(|| panic!("{name}: `levels`"));
        assert_eq!(levels.len(), 2, "{name}: levels");
        for level in levels {
            let confidence = number(&level["conf_level"], name);
            let at = format!("{name} at {confidence}");
            let got = kayenta_with(&a, &b, &KayentaOptions { confidence, tolerance });
            if level.get("error").is_some() {
                // R refuses: "cannot compute confidence interval when all observations are tied".
                assert!(text(&level["error"], &at).contains("all observations are tied"), "{at}");
                if got != Err(StatsError::AllTied) {
                    errors.push(format!("{at}: R refuses, ModelDeck gives {got:?}"));
                }
                table.push(format!("{name:<24} {confidence:>5} | {:>34} | {:>34}", "no interval: all tied", "error"));
                continue;
            }
            let k = got.unwrap_or_else(|e| panic!("{at}: {e}"));
            let step = floats(&level["conf_int_step"], &at);
            let raw = floats(&level["conf_int"], &at);
            let estimate_step = floats(&level["estimate_step"], &at);
            assert!(step.len() == 2 && raw.len() == 2 && estimate_step.len() == 2, "{at}: pairs");
            let r_estimate = number(&level["estimate"], &at);
            for (what, got, step, raw) in [("lower", k.lower, step[0], raw[0]), ("upper", k.upper, step[1], raw[1])] {
                if !close(got, step, &worst) {
                    errors.push(format!("{at}: {what} {got:e}, R's step {step:e}"));
                }
                if (got - raw).abs() > uniroot_slack(raw) {
                    errors.push(format!("{at}: {what} {got:e} is not where R's root {raw:e} is"));
                }
            }
            // Our estimate's step is R's: the two middle order statistics of b - a.
            let (mut sa, mut sb) = (a.clone(), b.clone());
            sa.sort_by(f64::total_cmp);
            sb.sort_by(f64::total_cmp);
            let total = (a.len() * b.len()) as u64;
            let ours = [kth_difference(&sa, &sb, total.div_ceil(2)), kth_difference(&sa, &sb, total / 2 + 1)];
            if !close(ours[0], estimate_step[0], &worst) || !close(ours[1], estimate_step[1], &worst) {
                errors.push(format!("{at}: middle differences {ours:?}, R's {estimate_step:?}"));
            }
            // Slack of 1e-9: R's read.csv and serde_json may round a decimal input one ulp
            // apart from Rust's parser, which moves a difference by an ulp.
            if !within(k.estimate, estimate_step[0], estimate_step[1], REL_TOL * k.estimate.abs().max(1.0)) {
                errors.push(format!("{at}: estimate {} outside the step {estimate_step:?}", k.estimate));
            }
            if !within(r_estimate, estimate_step[0], estimate_step[1], uniroot_slack(r_estimate)) {
                errors.push(format!("{at}: R's estimate {r_estimate} outside the step {estimate_step:?}"));
            }
            let verdict = format!("{:?}", k.verdict);
            if verdict != text(&level["verdict"], &at) {
                errors.push(format!("{at}: verdict {verdict}, R's bounds give {}", level["verdict"]));
            }
            let p = mann_whitney_u_asymptotic(&a, &b).unwrap_or_else(|e| panic!("{at}: {e}")).pvalue;
            let r_p = number(&level["p_value"], &at);
            if !p_close(p, r_p, &worst) {
                errors.push(format!("{at}: p-value {p:e}, R's {r_p:e}"));
            }
            table.push(format!(
                "{name:<24} {confidence:>5} | [{:>15.10}, {:>15.10}] {:>10.6} {:>5} | [{:>15.10}, {:>15.10}] {:>10.6} {:>5} | {:>11.5e} \
                 {:>11.5e}",
                k.lower,
                k.upper,
                k.estimate,
                verdict,
                raw[0],
                raw[1],
                r_estimate,
                text(&level["verdict"], &at),
                p,
                r_p
            ));
        }
    }
    println!("{}", table.join("\n"));
    println!(
        "kayenta: worst relative error {:e}, worst p-value relative error {:e}",
        worst.rel.get(),
        worst.p_rel.get()
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn p_value_comparison_tests_the_tail() {
    let worst = Worst::default();
    assert!(p_close(1e-12, 1e-12 * (1.0 + 1e-7), &worst));
    assert!(!p_close(1e-12, 2e-12, &worst), "absolute 1e-6 would have let this through");
    assert!(p_close(2.5e-305, 2.5e-305 * (1.0 + 1e-9), &worst));
    assert!(!p_close(2.5e-305, 2.5e-303, &worst));
    assert!(!p_close(0.0, 1e-320, &worst));
    assert!(!p_close(f64::NAN, 0.5, &worst) && !p_close(0.5, f64::NAN, &worst));
    let e = compare(&serde_json::json!({"pvalue": null}), &serde_json::json!({"pvalue": 0.5}), "p", false, &worst);
    assert_eq!(e.len(), 1, "null where a number is expected fails");
    let e = compare(&serde_json::json!([1.0]), &serde_json::json!([1.0, 2.0]), "list", false, &worst);
    assert_eq!(e.len(), 1, "a shorter list fails");
}

#[test]
fn kolmogorov_distribution_matches_scipy_kstwo() {
    let cases = load("ks_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    let grid = cases["kstwo_sf"].as_array().expect("grid");
    assert!(!grid.is_empty());
    for (i, c) in grid.iter().enumerate() {
        let at = format!("kstwo_sf[{i}]");
        let n = c["n"].as_u64().unwrap_or_else(|| panic!("{at}: n"));
        let x = number(&c["x"], &at);
        let expected = number(&c["sf"], &at);
        let got = kolmogorov_sf(n, x);
        if !p_close(got, expected, &worst) {
            errors.push(format!("kstwo.sf({x}, {n}) = {expected:e}, got {got:e}"));
        }
    }
    println!("kstwo: worst relative error {:e}", worst.p_rel.get());
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn ks_2samp_matches_scipy() {
    let cases = load("ks_cases.json");
    let worst = Worst::default();
    let mut errors = Vec::new();
    for (i, c) in cases["ks_2samp"].as_array().expect("pairs").iter().enumerate() {
        let at = format!("ks_2samp[{i}]");
        let (a, b) = (floats(&c["a"], &at), floats(&c["b"], &at));
        let r = ks_2samp(&a, &b).expect("non-empty samples");
        let es = number(&c["statistic"], &at);
        let ep = number(&c["pvalue"], &at);
        if !close(r.statistic, es, &worst) || !p_close(r.pvalue, ep, &worst) {
            errors.push(format!(
                "case {i} (n={}, m={}): got ({:e}, {:e}), scipy ({es:e}, {ep:e})",
                a.len(),
                b.len(),
                r.statistic,
                r.pvalue
            ));
        }
    }
    println!(
        "ks_2samp: worst relative error {:e}, worst p-value relative error {:e}",
        worst.rel.get(),
        worst.p_rel.get()
    );
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}
