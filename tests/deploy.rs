//! Release strategies end to end on the demo models: a canary of digits-v2 under drifted
//! traffic is promoted step by step, a slower or failing B is rolled back, an A/B run splits
//! by weight and reports its significance, a shadow with a deliberately slow B never slows A,
//! too little traffic never passes, and `simulate --json` reproduces a canary. The canary
//! gates' interval is checked against statsmodels.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modeldeck::deploy::canary::{Action, CheckOutcome, GateVerdict, Phase};
use modeldeck::deploy::{arm_for, Arm, CanaryPlan, Gates, Rollout, RolloutConfig, RolloutSnapshot, Strategy};
use modeldeck::eval::Dataset;
use modeldeck::model::{self, LoadedModel};
use modeldeck::monitor::replay::{DriftSchedule, Fault, ReplayEvent, ReplayOptions, ReplayState};
use modeldeck::source::{ModelSource, ResolveOptions};

/// The drift digits-v2 was trained for (scripts/make_demo_models.sh).
const DRIFT: &str = "brightness=0.25,contrast=0.5,noise=0.1,rotate=15";

fn load(source: &str) -> Arc<LoadedModel> {
    Arc::new(model::load_source(&ModelSource::parse(source).unwrap(), &ResolveOptions::default()).unwrap())
}

fn digits() -> Arc<Dataset> {
    Arc::new(Dataset::load(&common::root().join("assets/digits/test")).unwrap())
}

fn canary(min_requests: u64) -> Strategy {
    let gates = Gates { min_requests, min_labels: min_requests, ..Gates::default() };
    Strategy::Canary(CanaryPlan::new(vec![1.0, 5.0, 25.0, 50.0, 100.0], gates, 2, false).unwrap())
}

fn run(
    b: &str,
    strategy: Strategy,
    fault_b: Option<Fault>,
    options: ReplayOptions,
) -> (RolloutSnapshot, Vec<ReplayEvent>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let config = RolloutConfig { strategy, fault_b, stop_when_decided: true };
    let mut rollout = Rollout::start(
        digits(),
        load("demo:digits-v1"),
        load(b),
        config,
        options,
        move |e| sink.lock().unwrap().push(e),
        || {},
    )
    .unwrap();
    assert!(rollout.wait(Duration::from_secs(300)), "the rollout did not end");
    let events = std::mem::take(&mut *events.lock().unwrap());
    (rollout.snapshot(), events)
}

fn looping(drift: Option<&str>) -> ReplayOptions {
    ReplayOptions {
        looping: true,
        max_requests: Some(100_000),
        shuffle: true,
        drift: drift.map(|d| DriftSchedule::parse(d).unwrap()),
        seed: 1,
        ..Default::default()
    }
}

#[test]
fn a_canary_of_digits_v2_under_drift_is_promoted_step_by_step() {
    let (s, events) = run("demo:digits-v2", canary(60), None, looping(Some(DRIFT)));
    let c = s.canary.as_ref().unwrap();
    assert_eq!(c.phase, Phase::Promoted, "{:#?}", c.decisions);
    assert_eq!(c.weight, 100.0);
    assert_eq!(c.weights.iter().map(|w| w.1).collect::<Vec<_>>(), vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    let checks: Vec<_> = c.decisions.iter().filter(|d| d.outcome.is_some()).collect();
    let passes: Vec<_> = checks.iter().filter(|d| d.outcome == Some(CheckOutcome::Pass)).collect();
    assert_eq!(passes.len(), 4);
    assert_eq!(passes.last().unwrap().action, Action::Promote);
    for d in &passes {
        // Every pass shows its evidence: three gates, enough samples in each.
        assert!(d.window_requests.iter().all(|&n| n >= 60), "{d:?}");
        let acc = d.gates.iter().find(|g| g.gate == "accuracy").unwrap();
        assert_eq!(acc.verdict, GateVerdict::Pass);
        assert!(acc.n_a >= 60 && acc.n_b >= 60);
        assert!(acc.value_b.unwrap() > acc.value_a.unwrap() + 0.2, "v2 is far better on drifted digits: {acc:?}");
    }
    // The replay stopped at the promotion, and the events carry the arm for the monitor and log.
    assert_eq!(s.state(), Some(ReplayState::Stopped));
    let arms: std::collections::HashSet<_> = events
        .iter()
        .filter_map(|e| match e {
            ReplayEvent::Predicted(p) => p.arm.as_deref().map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(arms, ["A".to_string(), "B".to_string()].into_iter().collect());
    // B's share grew as the steps did: far fewer B than A requests overall.
    assert!(s.arm(Arm::B).answered < s.arm(Arm::A).answered);
}

#[test]
fn a_deliberately_slower_canary_is_rolled_back_on_latency() {
    let fault = Fault { delay: Duration::from_millis(2), error_rate: 0.0 };
    let (s, _) = run("demo:digits-v2", canary(50), Some(fault), looping(None));
    let c = s.canary.as_ref().unwrap();
    assert_eq!(c.phase, Phase::RolledBack, "{:#?}", c.decisions);
    assert_eq!(c.weight, 0.0);
    let failed: Vec<_> = c.decisions.iter().filter(|d| d.outcome == Some(CheckOutcome::Fail)).collect();
    assert_eq!(failed.len(), 2, "threshold 2");
    for d in &failed {
        let lat = d.gates.iter().find(|g| g.gate == "latency").unwrap();
        assert_eq!(lat.verdict, GateVerdict::Fail, "{}", lat.summary);
        let k = lat.kayenta.as_ref().unwrap();
        assert!(k.lower > 1.5 && k.estimate < 2.5, "the 2 ms shows in Kayenta's interval: {k:?}");
    }
    assert_eq!(c.decisions.last().unwrap().action, Action::Rollback);
}

#[test]
fn a_canary_of_a_head_trained_on_shuffled_labels_is_rolled_back_on_accuracy() {
    let (s, _) = run("demo:digits-shuffled", canary(60), None, looping(None));
    let c = s.canary.as_ref().unwrap();
    assert_eq!(c.phase, Phase::RolledBack, "{:#?}", c.decisions);
    let failed: Vec<_> = c.decisions.iter().filter(|d| d.outcome == Some(CheckOutcome::Fail)).collect();
    assert_eq!(failed.len(), 2);
    for d in failed {
        let acc = d.gates.iter().find(|g| g.gate == "accuracy").unwrap();
        assert_eq!(acc.verdict, GateVerdict::Fail, "{}", acc.summary);
        assert!(acc.value_a.unwrap() > 0.9 && acc.value_b.unwrap() < 0.25, "{acc:?}");
        let [lo, _] = acc.interval.unwrap();
        assert!(lo > 5.0, "the drop's interval clears the 5-point bound: {acc:?}");
        // Same architecture: latency is no reason to fail it.
        let lat = d.gates.iter().find(|g| g.gate == "latency").unwrap();
        assert_ne!(lat.verdict, GateVerdict::Fail, "{}", lat.summary);
    }
    // It never got past 1 %.
    assert_eq!(c.weights.iter().map(|w| w.1).collect::<Vec<_>>(), vec![1.0, 0.0]);
}

#[test]
fn a_failing_canary_is_rolled_back_on_errors() {
    let fault = Fault { delay: Duration::ZERO, error_rate: 0.2 };
    let (s, _) = run("demo:digits-v2", canary(100), Some(fault), looping(None));
    let c = s.canary.as_ref().unwrap();
    assert_eq!(c.phase, Phase::RolledBack, "{:#?}", c.decisions);
    let last = c.decisions.iter().rev().find(|d| d.outcome.is_some()).unwrap();
    let errors = last.gates.iter().find(|g| g.gate == "errors").unwrap();
    assert_eq!(errors.verdict, GateVerdict::Fail, "{}", errors.summary);
    assert!(s.arm(Arm::B).errors > 0 && s.arm(Arm::A).errors == 0);
}

#[test]
fn too_little_traffic_is_never_a_pass() {
    // 300 requests at 1 %: B sees a handful, never the 100 a check needs.
    let options = ReplayOptions { max_requests: Some(300), looping: true, ..Default::default() };
    let (s, _) = run("demo:digits-v2", canary(100), None, options);
    let c = s.canary.as_ref().unwrap();
    assert_eq!(c.phase, Phase::Progressing);
    assert!(c.decisions.is_empty(), "no check ran: {:?}", c.decisions);
    assert_eq!(c.weight, 1.0);
    assert_eq!(s.state(), Some(ReplayState::Finished));
}

#[test]
fn an_ab_test_splits_by_weight_and_reports_significance() {
    let options = ReplayOptions {
        max_requests: Some(2000),
        looping: true,
        drift: Some(DriftSchedule::parse(DRIFT).unwrap()),
        seed: 3,
        ..Default::default()
    };
    let (s, events) = run("demo:digits-v2", Strategy::Ab { weight_b: 30.0 }, None, options);
    let (a, b) = (s.arm(Arm::A), s.arm(Arm::B));
    assert_eq!(a.answered + b.answered, 2000, "each request to exactly one arm");
    let share = b.answered as f64 / 2000.0 * 100.0;
    assert!((share - 30.0).abs() < 3.5, "B got {share:.1} % at weight 30");
    // Each request's arm is its id's stable hash.
    for e in &events {
        if let ReplayEvent::Predicted(p) = e {
            assert_eq!(p.arm.as_deref(), Some(arm_for(&p.request_id, 30.0).name()));
        }
    }
    let acc = s.accuracy.as_ref().unwrap();
    let (ra, rb) = (a.accuracy.as_ref().unwrap(), b.accuracy.as_ref().unwrap());
    assert_eq!(ra.n, a.answered);
    let z = modeldeck::stats::two_proportion_ztest(ra.correct, ra.n, rb.correct, rb.n).unwrap();
    assert_eq!(acc.fixed, z);
    assert!(acc.difference_points > 20.0 && acc.fixed.pvalue < 1e-6, "{}", acc.verdict());
    assert!(acc.verdict().starts_with("B is"), "{}", acc.verdict());
    // The always-valid test on the same counts, as a fresh SequentialAb fed label by label gives.
    let seq = s.sequential.as_ref().unwrap();
    assert_eq!((seq.correct_a, seq.n_a, seq.correct_b, seq.n_b), (ra.correct, ra.n, rb.correct, rb.n));
    assert!(seq.significant && seq.p_value < 0.05, "{seq:?}");
    let [lo, hi] = seq.confidence_sequence;
    // The confidence sequence (a running intersection, for the true difference) excludes 0.
    assert!(0.0 < lo && lo < hi, "{seq:?}");
    assert!(seq.verdict_text().contains("even though you watched it live"), "{}", seq.verdict_text());
}

#[test]
fn a_slow_shadow_never_slows_a() {
    // B takes 30 ms per answer; the traffic runs at 100 requests/s for 1.5 s.
    let fault = Fault { delay: Duration::from_millis(30), error_rate: 0.0 };
    let options =
        ReplayOptions { rate_per_s: Some(100.0), max_requests: Some(150), looping: true, ..Default::default() };
    let started = std::time::Instant::now();
    let (s, _) = run("demo:digits-v2", Strategy::Shadow, Some(fault), options);
    let elapsed = started.elapsed();
    let p = s.progress.as_ref().unwrap();
    assert_eq!(p.sent, 150);
    // Paced as asked: the shadow's 10 s of work did not hold the schedule back.
    assert!(p.mean_rate_per_s > 80.0, "rate {:.1}/s", p.mean_rate_per_s);
    let a = s.arm(Arm::A);
    assert_eq!(a.answered, 150, "A answered every request");
    assert_eq!(a.errors, 0);
    assert!(a.latency_ms.p99.unwrap() < 15.0, "A's p99 {:?} ms", a.latency_ms.p99);
    let b = s.arm(Arm::B);
    assert!(b.latency_ms.p50.unwrap() >= 30.0);
    // B answered what it could; everything it answered is paired with A on the request id.
    let paired = s.paired.as_ref().unwrap();
    assert!(paired.pairs > 0 && paired.pairs == b.answered, "{paired:?} vs {}", b.answered);
    assert!(paired.median_latency_diff_ms.unwrap() >= 29.0);
    assert!(paired.agreement.unwrap() > 0.9);
    assert_eq!(paired.labelled_pairs, paired.pairs);
    assert!(paired.mcnemar.is_some());
    assert_eq!(p.shadow_sent + p.shadow_dropped, 150);
    // The run ends at its pace plus the time the shadow needs for the copies it queued.
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
}

#[test]
fn simulate_json_reproduces_a_canary() {
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["simulate", "--a", "demo:digits-v1", "--b", "demo:digits-v2", "--strategy", "canary", "--data"])
        .arg(common::root().join("assets/digits/test"))
        .args(["--min-requests", "50", "--b-delay", "2ms", "--seed", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["strategy"], "canary");
    assert_eq!(json["canary"]["phase"], "rolled_back");
    let decisions = json["canary"]["decisions"].as_array().unwrap();
    assert_eq!(decisions.last().unwrap()["action"]["kind"], "rollback");
    let gate = &decisions[0]["gates"][0];
    assert_eq!(gate["gate"], "latency");
    assert_eq!(gate["verdict"], "fail");
    assert!(gate["kayenta"]["lower"].as_f64().unwrap() > 1.5);
    assert_eq!(json["fault_b"]["delay"], 2.0);
    assert!(json["arms"][1]["latency_ms"]["p50"].as_f64().unwrap() >= 2.0);
}

#[test]
fn newcombe_intervals_match_statsmodels() {
    let text = std::fs::read_to_string(common::root().join("tests/fixtures/stats/newcombe_cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let n = |k: &str| c[k].as_u64().unwrap();
        let [lo, hi] = modeldeck::stats::newcombe_diff_ci95(n("k1"), n("n1"), n("k2"), n("n2")).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-3);
        assert!(
            close(lo, c["lower"].as_f64().unwrap()) && close(hi, c["upper"].as_f64().unwrap()),
            "{c}: [{lo}, {hi}]"
        );
        if let Some(p) = c["p"].as_f64() {
            let t = modeldeck::stats::two_proportion_ztest(n("k1"), n("n1"), n("k2"), n("n2")).unwrap();
            assert!((t.pvalue - p).abs() <= 1e-9 * p.max(1e-12), "{c}: p {}", t.pvalue);
        }
    }
}
