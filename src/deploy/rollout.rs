//! A strategy running on a replay: routing, per-arm statistics and the canary's decisions.
//!
//! [`Rollout::start`] starts a [`Replay`] whose router is the strategy and whose sink first
//! updates the rollout's statistics, then passes the event on to the caller's sink (the
//! monitor and the prediction log in the app; a progress bar in the CLI). The state sits
//! behind one mutex shared by the replay thread (which writes it per answer, for a few
//! microseconds) and readers (the Deploy view, the CLI), which take a [`RolloutSnapshot`]:
//! a plain, serialisable copy with every statistic computed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::canary::{Canary, Decision, Phase};
use super::{arm_for, Arm, Strategy};
use crate::eval::Dataset;
use crate::model::LoadedModel;
use crate::monitor::replay::{
    Fault, ProgressReader, Replay, ReplayError, ReplayEvent, ReplayHandle, ReplayOptions, ReplayProgress, ReplayState,
    ReplayStopper, Route, RouteRequest, Targets,
};
use crate::stats::sequential::{format_p, SequentialAb, SequentialState};
use crate::stats::{self, ArmAccuracy, Kayenta, McNemar, TestResult};
use crate::store;

/// Latencies per arm kept for the live latency judgement (the most recent ones).
const RECENT_LATENCIES: usize = 2000;
/// How often [`Rollout::latest`] is refreshed.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Shadow and side-by-side requests waiting for their other half (or label) before they are
/// given up as unpaired.
const MAX_OPEN_PAIRS: usize = 20_000;
/// Points kept in the significance history (older ones are thinned).
const MAX_HISTORY: usize = 4000;

/// What to run.
#[derive(Debug, Clone)]
pub struct RolloutConfig {
    pub strategy: Strategy,
    /// Injected into B's answers (a slower or failing release, rehearsed).
    pub fault_b: Option<Fault>,
    /// End the replay once a canary is promoted or rolled back (the CLI); otherwise the
    /// traffic goes on at 100 % B or 100 % A.
    pub stop_when_decided: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("A/B weight: {0} is not a percentage between 0 and 100")]
    Weight(f64),
    #[error("fault injection: the error rate must be between 0 and 1, not {0}")]
    FaultRate(f64),
    #[error("{0}")]
    Replay(#[from] ReplayError),
}

/// A running (or finished) rollout.
pub struct Rollout {
    state: Arc<Mutex<State>>,
    replay: ReplayHandle,
    published: Arc<Mutex<Option<Arc<RolloutSnapshot>>>>,
}

struct ArmStats {
    routed: u64,
    answered: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    recent_ms: VecDeque<f64>,
    labelled: u64,
    correct: u64,
}

impl ArmStats {
    fn new() -> Self {
        Self {
            routed: 0,
            answered: 0,
            errors: 0,
            // 1 µs to 1 h at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|e| unreachable!("valid histogram bounds: {e}")),
            recent_ms: VecDeque::new(),
            labelled: 0,
            correct: 0,
        }
    }

    fn record(&mut self, latency_ms: Option<f64>, error: bool) {
        self.answered += 1;
        if error {
            self.errors += 1;
        }
        if let Some(ms) = latency_ms.filter(|v| v.is_finite() && *v >= 0.0) {
            let _ = self.latency_us.record(((ms * 1e3).round() as u64).clamp(1, 3_600_000_000));
            if self.recent_ms.len() == RECENT_LATENCIES {
                self.recent_ms.pop_front();
            }
            self.recent_ms.push_back(ms);
        }
    }
}

/// An arm's answer in a pair: its top label and latency, or `None` for an error.
type PairAnswer = Option<(Option<Arc<str>>, f64)>;

/// One request's answers in a paired strategy (shadow, side by side).
#[derive(Default)]
struct OpenPair {
    /// Per arm, once it answered.
    answers: [Option<PairAnswer>; 2],
    /// Whether a label will come for the arm's answer, and whether it was right.
    expects_label: [bool; 2],
    correct: [Option<bool>; 2],
}

#[derive(Default)]
struct Paired {
    open: HashMap<Arc<str>, OpenPair>,
    order: VecDeque<Arc<str>>,
    /// Both arms answered.
    both_answered: u64,
    /// ... with the same top label.
    same_prediction: u64,
    /// B − A per request, ms: the most recent [`RECENT_LATENCIES`] pairs.
    latency_diffs_ms: VecDeque<f64>,
    table: [[u64; 2]; 2],
    unpaired: u64,
}

struct State {
    config: RolloutConfig,
    models: [String; 2],
    labels_expected: bool,
    arms: [ArmStats; 2],
    canary: Option<Canary>,
    /// Canary epoch of each answered request whose label is still to come.
    epochs: HashMap<Arc<str>, u64>,
    paired: Option<Paired>,
    progress: Option<ReplayProgress>,
    history: Vec<SignificancePoint>,
    /// The always-valid test of the accuracy difference, updated at every label.
    sequential: SequentialAb,
    sequential_state: Option<SequentialState>,
    failed: Option<String>,
    stopper: Arc<OnceLock<ReplayStopper>>,
}

impl Rollout {
    /// Replays `dataset` to A and B under `config`; `sink` gets every event after the
    /// rollout has counted it, and `on_publish` runs after each published snapshot.
    pub fn start(
        dataset: Arc<Dataset>,
        a: Arc<LoadedModel>,
        b: Arc<LoadedModel>,
        config: RolloutConfig,
        options: ReplayOptions,
        mut sink: impl FnMut(ReplayEvent) + Send + 'static,
        on_publish: impl Fn() + Send + 'static,
    ) -> Result<Self, RolloutError> {
        let on_publish = Box::new(on_publish);
        if let Strategy::Ab { weight_b } = config.strategy {
            if !(0.0..=100.0).contains(&weight_b) {
                return Err(RolloutError::Weight(weight_b));
            }
        }
        if let Some(f) = &config.fault_b {
            if !(0.0..=1.0).contains(&f.error_rate) {
                return Err(RolloutError::FaultRate(f.error_rate));
            }
        }
        let labels_expected = dataset.examples.iter().any(|e| e.label.is_some());
        let now = store::now_ms();
        let canary = match &config.strategy {
            Strategy::Canary(plan) => Some(Canary::new(plan.clone(), labels_expected, now)),
            _ => None,
        };
        let paired = matches!(config.strategy, Strategy::Shadow | Strategy::SideBySide).then(Paired::default);
        let stopper = Arc::new(OnceLock::new());
        let state = Arc::new(Mutex::new(State {
            models: [a.card().source.clone(), b.card().source.clone()],
            labels_expected,
            arms: [ArmStats::new(), ArmStats::new()],
            canary,
            epochs: HashMap::new(),
            paired,
            progress: None,
            history: Vec::new(),
            sequential: SequentialAb::default(),
            sequential_state: None,
            failed: None,
            stopper: stopper.clone(),
            config: config.clone(),
        }));
        let route_a = Route::with_arm(a, Arm::A.name());
        let route_b = Route::with_arm(b, Arm::B.name()).with_fault(config.fault_b);
        let router_state = state.clone();
        let router = move |request: &RouteRequest<'_>| -> Vec<Route> {
            let mut state = lock(&router_state);
            let routes = match &state.config.strategy {
                Strategy::SideBySide => vec![route_a.clone(), route_b.clone()],
                Strategy::Shadow => vec![route_a.clone(), route_b.clone().as_shadow()],
                Strategy::Ab { weight_b } => match arm_for(request.request_id, *weight_b) {
                    Arm::A => vec![route_a.clone()],
                    Arm::B => vec![route_b.clone()],
                },
                Strategy::Canary(_) => {
                    let weight = state.canary.as_ref().map_or(0.0, Canary::weight);
                    match arm_for(request.request_id, weight) {
                        Arm::A => vec![route_a.clone()],
                        Arm::B => vec![route_b.clone()],
                    }
                }
            };
            for r in &routes {
                if let Some(arm) = r.arm.as_deref().and_then(Arm::from_name) {
                    state.arms[arm.index()].routed += 1;
                }
            }
            routes
        };
        let sink_state = state.clone();
        let replay = Replay::start(dataset, Targets::router(router), options, move |event| {
            lock(&sink_state).observe(&event);
            sink(event);
        })?;
        let _ = stopper.set(replay.stopper());
        let published = Arc::new(Mutex::new(None));
        publish(state.clone(), replay.progress_reader(), published.clone(), on_publish);
        Ok(Self { state, replay, published })
    }

    /// Computes a snapshot now (milliseconds: Kayenta over the recent latencies). A UI takes
    /// [`Self::latest`] instead.
    pub fn snapshot(&self) -> RolloutSnapshot {
        compute_snapshot(&self.state, &self.replay.progress())
    }

    /// The snapshot the publisher thread made last (about every 250 ms while the replay
    /// runs, and once after it ends); `None` before the first.
    pub fn latest(&self) -> Option<Arc<RolloutSnapshot>> {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn pause(&self) {
        self.replay.pause();
    }

    pub fn resume(&self) {
        self.replay.resume();
    }

    pub fn stop(&self) {
        self.replay.stop();
    }

    pub fn is_paused(&self) -> bool {
        self.replay.is_paused()
    }

    pub fn is_finished(&self) -> bool {
        self.replay.is_finished()
    }

    /// Waits up to `timeout` for the replay to end; true if it did.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        self.replay.wait(timeout)
    }

    /// The canary's waiting decision, approved. `None` if nothing waits.
    pub fn approve(&self) -> Option<Decision> {
        self.canary_action(|c, now| c.approve(now).cloned())
    }

    pub fn reject(&self) -> Option<Decision> {
        self.canary_action(|c, now| c.reject(now).cloned())
    }

    pub fn rollback_now(&self) -> Option<Decision> {
        self.canary_action(|c, now| c.rollback_now(now).cloned())
    }

    pub fn promote_now(&self) -> Option<Decision> {
        self.canary_action(|c, now| c.promote_now(now).cloned())
    }

    fn canary_action(&self, act: impl FnOnce(&mut Canary, i64) -> Option<Decision>) -> Option<Decision> {
        let mut state = lock(&self.state);
        let decision = act(state.canary.as_mut()?, store::now_ms())?;
        state.stop_if_decided();
        Some(decision)
    }
}

/// Publishes a snapshot every [`PUBLISH_EVERY`] while the replay runs, then a last one, on
/// its own thread; `on_publish` runs after each (a GUI's repaint request). If the thread
/// cannot start, [`Rollout::latest`] stays `None` and [`Rollout::snapshot`] still works.
fn publish(
    state: Arc<Mutex<State>>,
    progress: ProgressReader,
    published: Arc<Mutex<Option<Arc<RolloutSnapshot>>>>,
    on_publish: Box<dyn Fn() + Send>,
) {
    let spawned = std::thread::Builder::new().name("rollout-snapshot".into()).spawn(move || loop {
        let finished = progress.is_finished();
        let snapshot = Arc::new(compute_snapshot(&state, &progress.progress()));
        *published.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
        on_publish();
        // Nobody reads it any more: the rollout was dropped.
        if finished || Arc::strong_count(&published) == 1 {
            return;
        }
        std::thread::sleep(PUBLISH_EVERY);
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the rollout's snapshot thread: {e}");
    }
}

fn compute_snapshot(state: &Mutex<State>, progress: &ReplayProgress) -> RolloutSnapshot {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (mut snapshot, a, b) = lock(state).snapshot();
    snapshot.seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    snapshot.progress = Some(progress.clone());
    if !a.is_empty() && !b.is_empty() {
        snapshot.latency = stats::kayenta(&a, &b).ok().map(|k| LatencyComparison {
            n_a: a.len() as u64,
            n_b: b.len() as u64,
            kayenta: k,
        });
    }
    snapshot
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    fn observe(&mut self, event: &ReplayEvent) {
        match event {
            ReplayEvent::Predicted(p) => {
                let Some(arm) = p.arm.as_deref().and_then(Arm::from_name) else { return };
                let output = p.outcome.as_ref().ok();
                let latency = output.map(|o| o.latency_ms);
                self.arms[arm.index()].record(latency, output.is_none());
                if let Some(canary) = &mut self.canary {
                    let epoch = canary.epoch();
                    let expects_label = output.is_some() && p.label.is_some();
                    canary.record_answer(arm, epoch, latency, output.is_none(), expects_label, p.at_ms);
                    if expects_label {
                        self.epochs.insert(p.request_id.clone(), epoch);
                    }
                    if canary.check(p.at_ms).is_some() {
                        self.stop_if_decided();
                    }
                }
                if let Some(paired) = &mut self.paired {
                    let answer = output.map(|o| (o.top_label().map(Arc::from), o.latency_ms));
                    let expects_label = output.is_some() && p.label.is_some();
                    paired.answer(&p.request_id, arm, answer, expects_label);
                }
            }
            ReplayEvent::Label(l) => {
                let Some(arm) = l.arm.as_deref().and_then(Arm::from_name) else { return };
                let stats = &mut self.arms[arm.index()];
                stats.labelled += 1;
                stats.correct += u64::from(l.correct);
                if let Some(canary) = &mut self.canary {
                    // Side by side and shadow share ids across arms; a canary never does.
                    if let Some(epoch) = self.epochs.remove(&l.request_id) {
                        canary.record_label(arm, epoch, l.correct);
                        if canary.check(l.at_ms).is_some() {
                            self.stop_if_decided();
                        }
                    }
                }
                if let Some(paired) = &mut self.paired {
                    paired.label(&l.request_id, arm, l.correct);
                }
                let [a, b] = &self.arms;
                // Cumulative counts only grow, so the update cannot be refused.
                if let Ok(state) = self.sequential.update(a.correct, a.labelled, b.correct, b.labelled) {
                    self.sequential_state = Some(state);
                }
                self.push_history(l.at_ms);
            }
            ReplayEvent::Progress(p) | ReplayEvent::Finished(p) | ReplayEvent::Stopped(p) => {
                self.progress = Some(p.clone());
            }
            ReplayEvent::Failed { error, progress } => {
                self.failed = Some(error.clone());
                self.progress = Some(progress.clone());
            }
        }
    }

    fn stop_if_decided(&self) {
        let decided = self.canary.as_ref().is_some_and(|c| c.phase().is_final());
        if decided && self.config.stop_when_decided {
            if let Some(stopper) = self.stopper.get() {
                stopper.stop();
            }
        }
    }

    fn accuracy(&self) -> Option<AccuracyComparison> {
        let [a, b] = &self.arms;
        if a.labelled == 0 || b.labelled == 0 {
            return None;
        }
        AccuracyComparison::new(a.correct, a.labelled, b.correct, b.labelled).ok()
    }

    fn push_history(&mut self, at_ms: i64) {
        let Some(acc) = self.accuracy() else { return };
        if self.history.len() >= MAX_HISTORY {
            // Keep every other point: the curve keeps its shape at half the resolution.
            let mut i = 0;
            self.history.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        self.history.push(SignificancePoint {
            at_ms,
            labelled: acc.a.n + acc.b.n,
            difference_points: acc.difference_points,
            fixed_p: acc.fixed.pvalue,
            sequential_p: self.sequential_state.as_ref().map_or(1.0, |s| s.p_value),
        });
    }

    /// Everything but the latency judgement, which the caller computes on these latencies
    /// after releasing the lock (it takes milliseconds; the replay thread must not wait).
    fn snapshot(&self) -> (RolloutSnapshot, Vec<f64>, Vec<f64>) {
        let recent = |arm: Arm| self.arms[arm.index()].recent_ms.iter().copied().collect::<Vec<f64>>();
        let arms = Arm::BOTH
            .iter()
            .map(|&arm| {
                let s = &self.arms[arm.index()];
                let q = |p: f64| (!s.latency_us.is_empty()).then(|| s.latency_us.value_at_quantile(p) as f64 / 1e3);
                ArmSummary {
                    arm,
                    model: self.models[arm.index()].clone(),
                    routed: s.routed,
                    answered: s.answered,
                    errors: s.errors,
                    error_rate: (s.answered > 0).then(|| s.errors as f64 / s.answered as f64),
                    latency_ms: LatencySummary {
                        p50: q(0.5),
                        p95: q(0.95),
                        p99: q(0.99),
                        mean: (!s.latency_us.is_empty()).then(|| s.latency_us.mean() / 1e3),
                    },
                    accuracy: (s.labelled > 0).then(|| ArmAccuracy::new(s.correct, s.labelled).ok()).flatten(),
                }
            })
            .collect();
        let snapshot = RolloutSnapshot {
            seq: 0,
            strategy: self.config.strategy.clone(),
            fault_b: self.config.fault_b,
            labels_expected: self.labels_expected,
            progress: self.progress.clone(),
            failed: self.failed.clone(),
            arms,
            accuracy: self.accuracy(),
            sequential: self.sequential_state.clone(),
            // Filled in outside the lock (see Rollout::snapshot).
            latency: None,
            paired: self.paired.as_ref().map(Paired::summary),
            canary: self.canary.as_ref().map(|c| CanarySnapshot {
                phase: c.phase(),
                step: c.step(),
                steps: c.plan().steps.clone(),
                weight: c.weight(),
                failed_checks: c.failed_checks(),
                threshold: c.plan().threshold,
                pending: c.pending(),
                window_answered: c.window_answered(),
                step_labels: c.step_labels(),
                min_requests: c.plan().gates.min_requests,
                min_labels: c.plan().gates.min_labels,
                plan: c.plan().clone(),
                weights: c.weights().to_vec(),
                decisions: c.decisions().to_vec(),
            }),
            history: self.history.clone(),
        };
        (snapshot, recent(Arm::A), recent(Arm::B))
    }
}

impl Paired {
    fn answer(&mut self, id: &Arc<str>, arm: Arm, answer: PairAnswer, expects_label: bool) {
        if !self.open.contains_key(id) {
            if self.open.len() >= MAX_OPEN_PAIRS {
                self.evict_oldest();
            }
            self.order.push_back(id.clone());
        }
        let pair = self.open.entry(id.clone()).or_default();
        pair.answers[arm.index()] = Some(answer);
        pair.expects_label[arm.index()] = expects_label;
        self.settle(id);
    }

    fn label(&mut self, id: &Arc<str>, arm: Arm, correct: bool) {
        if let Some(pair) = self.open.get_mut(id) {
            pair.correct[arm.index()] = Some(correct);
            self.settle(id);
        }
    }

    fn evict_oldest(&mut self) {
        while let Some(old) = self.order.pop_front() {
            if self.open.remove(&old).is_some() {
                self.unpaired += 1;
                return;
            }
        }
    }

    /// Folds a pair into the statistics once both answers (and labels) are in.
    fn settle(&mut self, id: &Arc<str>) {
        let Some(pair) = self.open.get(id) else { return };
        let [Some(a), Some(b)] = &pair.answers else { return };
        if (0..2).any(|i| pair.expects_label[i] && pair.correct[i].is_none()) {
            return;
        }
        if let (Some((pa, la)), Some((pb, lb))) = (a, b) {
            self.both_answered += 1;
            if pa.is_some() && pa == pb {
                self.same_prediction += 1;
            }
            if self.latency_diffs_ms.len() == RECENT_LATENCIES {
                self.latency_diffs_ms.pop_front();
            }
            self.latency_diffs_ms.push_back(lb - la);
            if let [Some(ca), Some(cb)] = pair.correct {
                self.table[usize::from(!ca)][usize::from(!cb)] += 1;
            }
        } else {
            self.unpaired += 1;
        }
        self.open.remove(id);
    }

    fn summary(&self) -> PairedSummary {
        let labelled: u64 = self.table.iter().flatten().sum();
        let mut diffs: Vec<f64> = self.latency_diffs_ms.iter().copied().collect();
        diffs.sort_by(f64::total_cmp);
        PairedSummary {
            pairs: self.both_answered,
            agreement: (self.both_answered > 0).then(|| self.same_prediction as f64 / self.both_answered as f64),
            labelled_pairs: labelled,
            table: self.table,
            mcnemar: (labelled > 0).then(|| stats::mcnemar(&self.table)),
            median_latency_diff_ms: (!diffs.is_empty()).then(|| diffs[diffs.len() / 2]),
            waiting: self.open.len() as u64,
            unpaired: self.unpaired,
        }
    }
}

/// Everything the Deploy view and `simulate` show, computed.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutSnapshot {
    /// Increases with every snapshot taken in this process: the newer of two is the larger.
    #[serde(skip)]
    pub seq: u64,
    #[serde(flatten)]
    pub strategy: Strategy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault_b: Option<Fault>,
    pub labels_expected: bool,
    pub progress: Option<ReplayProgress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub arms: Vec<ArmSummary>,
    /// B's accuracy against A's, once both have labels.
    pub accuracy: Option<AccuracyComparison>,
    /// The same difference with the always-valid mixture SPRT (Johari et al. 2017): its
    /// p-value and confidence sequence stay valid however often the dashboard is watched.
    pub sequential: Option<SequentialState>,
    /// Kayenta's judgement of the most recent latencies (up to 2000 per arm).
    pub latency: Option<LatencyComparison>,
    /// Shadow and side by side: the same requests answered by both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySnapshot>,
    /// The accuracy comparison after each label (thinned to at most 4000 points).
    #[serde(skip)]
    pub history: Vec<SignificancePoint>,
}

impl RolloutSnapshot {
    pub fn arm(&self, arm: Arm) -> &ArmSummary {
        &self.arms[arm.index()]
    }

    pub fn state(&self) -> Option<ReplayState> {
        self.progress.as_ref().map(|p| p.state)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmSummary {
    pub arm: Arm,
    pub model: String,
    /// Requests sent to this arm (shadow copies included).
    pub routed: u64,
    pub answered: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: LatencySummary,
    pub accuracy: Option<ArmAccuracy>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyComparison {
    pub n_a: u64,
    pub n_b: u64,
    pub kayenta: Kayenta,
}

/// B's accuracy against A's: the difference with Newcombe's 95 % interval and the
/// fixed-horizon two-proportion z-test (valid only if the sample size was fixed in advance
/// and looked at once).
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyComparison {
    pub a: ArmAccuracy,
    pub b: ArmAccuracy,
    /// B − A, in points.
    pub difference_points: f64,
    pub interval_points: [f64; 2],
    pub fixed: TestResult,
}

impl AccuracyComparison {
    pub fn new(correct_a: u64, n_a: u64, correct_b: u64, n_b: u64) -> Result<Self, stats::StatsError> {
        let a = ArmAccuracy::new(correct_a, n_a)?;
        let b = ArmAccuracy::new(correct_b, n_b)?;
        let [lo, hi] = stats::newcombe_diff_ci95(correct_b, n_b, correct_a, n_a)?;
        let fixed = stats::two_proportion_ztest(correct_a, n_a, correct_b, n_b)?;
        Ok(Self {
            difference_points: 100.0 * (b.accuracy - a.accuracy),
            interval_points: [100.0 * lo, 100.0 * hi],
            a,
            b,
            fixed,
        })
    }

    /// "B is 3.1 points more accurate (fixed-horizon p = 0.004)".
    pub fn verdict(&self) -> String {
        let d = self.difference_points;
        let direction = if d > 0.0 { "more" } else { "less" };
        let fixed = if self.fixed.pvalue < 0.05 {
            "significant at 5 % only if this sample size was fixed in advance and you look once"
        } else {
            "not significant at 5 %"
        };
        format!(
            "B is {:.1} points {direction} accurate ({:.1} % vs {:.1} %, n = {} and {}); fixed-horizon p = {}: {fixed}",
            d.abs(),
            self.b.accuracy * 100.0,
            self.a.accuracy * 100.0,
            self.b.n,
            self.a.n,
            format_p(self.fixed.pvalue)
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SignificancePoint {
    pub at_ms: i64,
    pub labelled: u64,
    pub difference_points: f64,
    pub fixed_p: f64,
    /// The always-valid p-value at that point (a running minimum: it never rises).
    pub sequential_p: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairedSummary {
    /// Requests both arms answered.
    pub pairs: u64,
    /// Share of pairs with the same top label.
    pub agreement: Option<f64>,
    pub labelled_pairs: u64,
    /// `[[both right, A right B wrong], [A wrong B right, both wrong]]`.
    pub table: [[u64; 2]; 2],
    pub mcnemar: Option<McNemar>,
    /// Median of B's latency minus A's on the same request (the last 2000 pairs).
    pub median_latency_diff_ms: Option<f64>,
    /// Requests waiting for their other answer or a label.
    pub waiting: u64,
    /// Requests one arm failed or never answered (a dropped shadow copy).
    pub unpaired: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CanarySnapshot {
    pub phase: Phase,
    pub step: usize,
    pub steps: Vec<f64>,
    pub weight: f64,
    pub failed_checks: u32,
    pub threshold: u32,
    pub pending: Option<super::Action>,
    /// Answers per arm toward the next check, and labels per arm in this step.
    pub window_answered: [u64; 2],
    pub step_labels: [u64; 2],
    pub min_requests: u64,
    pub min_labels: u64,
    pub plan: super::CanaryPlan,
    /// B's weight over time: (ms since the epoch, percent).
    pub weights: Vec<(i64, f64)>,
    pub decisions: Vec<Decision>,
}
