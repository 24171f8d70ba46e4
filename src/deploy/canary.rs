//! The canary's analysis: B's share of the traffic steps up, and at each step B is judged
//! against A before it goes further. A pure state machine (no threads, no clock of its own):
//! [`Canary::record_answer`] and [`Canary::record_label`] feed it, [`Canary::check`] judges
//! when the window is full, and [`Canary::weight`] is what the router sends to B.
//!
//! Terms are Flagger's: a *check* runs each time both arms have answered
//! [`Gates::min_requests`] requests since the last check (Flagger's `interval`, counted in
//! requests so that a rehearsal does not depend on the replay rate); a failed check counts
//! towards [`CanaryPlan::threshold`], and at the threshold the canary rolls back. A passing
//! check moves B to the next step; passing the last step promotes B to all the traffic.
//!
//! A check looks at three gates:
//! - **latency**: Kayenta's judgement ([`crate::stats::kayenta_with`], `NetflixACAJudge`'s
//!   defaults: 98 % interval, tolerance 0.25) of B's latencies against A's over the window;
//!   "High" (B slower) fails, "Pass" and "Low" pass; no interval (every value tied) is
//!   inconclusive.
//! - **errors**: B's error rate minus A's over the window, in points, with Newcombe's 95 %
//!   interval. It passes when the difference is within [`Gates::max_error_increase`]; it fails
//!   when it is over the bound *and* the interval excludes 0 (B is significantly worse), and
//!   otherwise it is inconclusive (over the bound, not yet significant: wait for more data).
//! - **accuracy**, once labels have arrived: the same rule on A's accuracy minus B's over the
//!   labelled requests of the current step (labels lag, so the step's requests keep adding
//!   evidence across checks), bound [`Gates::max_accuracy_drop`], after
//!   [`Gates::min_labels`] labels per arm. A data set without labels skips this gate.
//!
//! A check **fails** if any gate fails; it **passes** only if every gate that applies passes;
//! anything else **holds** (the step stays, no failure is counted). So too few samples, a
//! NaN, a missing metric or an inconclusive judgement never pass and never promote.
//!
//! With [`CanaryPlan::manual`], each step change, promotion or rollback the analysis reaches
//! waits for the user ([`Canary::approve`] / [`Canary::reject`]); the traffic stays where it
//! is meanwhile. The user can also roll back or promote at any time.

use serde::Serialize;

use crate::stats::{self, Kayenta, KayentaOptions, KayentaVerdict};

use super::Arm;

/// Flagger's default `threshold`: failed checks before a rollback.
pub const DEFAULT_THRESHOLD: u32 = 2;
/// B's share of the traffic at each step, in percent (the last, 100, is the promotion).
pub const DEFAULT_STEPS: [f64; 5] = [1.0, 5.0, 25.0, 50.0, 100.0];
/// See [`Gates::latency_allowed_increase`].
pub const DEFAULT_ALLOWED_INCREASE: f64 = 1.1;
/// See [`Gates::latency_allowed_ms`].
pub const DEFAULT_ALLOWED_MS: f64 = 0.05;
/// Latency samples kept per arm and window; older ones are dropped first.
const MAX_WINDOW_SAMPLES: usize = 200_000;

/// When a step passes and when it fails.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gates {
    /// Answers per arm (errors included) since the last check before the next check runs.
    pub min_requests: u64,
    /// Labelled requests per arm in the current step before accuracy is judged.
    pub min_labels: u64,
    /// Kayenta's settings for the latency judgement.
    pub latency: KayentaOptions,
    /// Kayenta's effect size (`effectSize.allowedIncrease`): a significant slowdown smaller
    /// than this ratio passes. Kayenta's own default, 1.0, fails a canary for any significant
    /// slowdown, which on a model answering in 0.1 ms is a few microseconds of cache effects;
    /// 1.1 allows 10 %. Kayenta measures the effect as the ratio of means after its IQR
    /// outlier filter; we take (median(A) + Hodges-Lehmann shift) / median(A), which needs no
    /// filter: one 50 µs scheduling hiccup among fifty 0.1 ms answers doubles a mean but moves
    /// neither the median nor the shift.
    pub latency_allowed_increase: f64,
    /// A significant slowdown of at most this many milliseconds (the Hodges-Lehmann shift)
    /// also passes, whatever its ratio. Between two models answering in 0.05 ms, 10 % is five
    /// microseconds, within what the CPU's clock and caches move from one minute to the next
    /// (the same pair of demo models measured 1.02 on one machine and 1.24 on another); no
    /// user waits on it, and a gate that fails on it fails on the hardware, not the model.
    /// 0 judges by the ratio alone (Kayenta's behaviour).
    pub latency_allowed_ms: f64,
    /// How many points B's error rate may exceed A's.
    pub max_error_increase: f64,
    /// How many points B's accuracy may fall below A's.
    pub max_accuracy_drop: f64,
}

impl Default for Gates {
    fn default() -> Self {
        Self {
            min_requests: 100,
            min_labels: 100,
            latency: KayentaOptions::default(),
            latency_allowed_increase: DEFAULT_ALLOWED_INCREASE,
            latency_allowed_ms: DEFAULT_ALLOWED_MS,
            max_error_increase: 1.0,
            max_accuracy_drop: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryPlan {
    /// B's share of the traffic at each analysis step, in percent, increasing, each in
    /// (0, 100). Promotion (100 %) follows the last; a 100 written at the end of the user's
    /// list is that promotion, not a step (A would get no traffic to compare with).
    pub steps: Vec<f64>,
    pub gates: Gates,
    /// Failed checks (over the whole canary, as in Flagger) that roll back.
    pub threshold: u32,
    /// Every step change, promotion and rollback waits for the user.
    pub manual: bool,
}

impl Default for CanaryPlan {
    fn default() -> Self {
        Self::new(DEFAULT_STEPS.to_vec(), Gates::default(), DEFAULT_THRESHOLD, false)
            .unwrap_or_else(|_| unreachable!("the default steps are valid"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("canary steps: {0}")]
    Steps(String),
    #[error("{0}")]
    Invalid(String),
}

impl CanaryPlan {
    /// Checks the plan; `steps` ending in 100 have that 100 taken as the promotion.
    pub fn new(mut steps: Vec<f64>, gates: Gates, threshold: u32, manual: bool) -> Result<Self, PlanError> {
        if steps.last() == Some(&100.0) {
            steps.pop();
        }
        if steps.is_empty() {
            return Err(PlanError::Steps("give at least one step below 100 % (for example 1,5,25,50,100)".into()));
        }
        for w in &steps {
            if !(w.is_finite() && *w > 0.0 && *w < 100.0) {
                return Err(PlanError::Steps(format!(
                    "{w} is not a share of the traffic: each step must be above 0 and below 100 (100 is the promotion)"
                )));
            }
        }
        if steps.windows(2).any(|p| p[1] <= p[0]) {
            return Err(PlanError::Steps(format!("steps must increase: {steps:?}")));
        }
        if threshold == 0 {
            return Err(PlanError::Invalid(
                "the threshold (failed checks before a rollback) must be at least 1".into(),
            ));
        }
        if gates.min_requests == 0 {
            return Err(PlanError::Invalid("the minimum number of requests per check must be at least 1".into()));
        }
        for (name, bound) in
            [("error-rate bound", gates.max_error_increase), ("accuracy bound", gates.max_accuracy_drop)]
        {
            if !(bound.is_finite() && (0.0..=100.0).contains(&bound)) {
                return Err(PlanError::Invalid(format!("the {name} must be between 0 and 100 points, not {bound}")));
            }
        }
        gates.latency.validate().map_err(|e| PlanError::Invalid(format!("latency gate: {e}")))?;
        if !(gates.latency_allowed_increase.is_finite() && gates.latency_allowed_increase >= 1.0) {
            return Err(PlanError::Invalid(format!(
                "the allowed latency increase is a ratio of at least 1 (1.1 = 10 % slower), not {}",
                gates.latency_allowed_increase
            )));
        }
        if !(gates.latency_allowed_ms.is_finite() && gates.latency_allowed_ms >= 0.0) {
            return Err(PlanError::Invalid(format!(
                "the allowed latency increase in milliseconds must be 0 or more, not {}",
                gates.latency_allowed_ms
            )));
        }
        Ok(Self { steps, gates, threshold, manual })
    }

    /// Flagger's form: `step_weight`, 2·`step_weight`, … up to `max_weight`, then promotion.
    pub fn flagger_steps(step_weight: f64, max_weight: f64) -> Result<Vec<f64>, PlanError> {
        if !(step_weight.is_finite() && step_weight > 0.0 && max_weight.is_finite() && max_weight >= step_weight) {
            return Err(PlanError::Steps(format!(
                "stepWeight {step_weight} and maxWeight {max_weight}: need 0 < stepWeight ≤ maxWeight"
            )));
        }
        let count = (max_weight / step_weight + 1e-9).floor() as usize;
        Ok((1..=count).map(|i| (i as f64 * step_weight).min(max_weight)).collect())
    }

    /// Parses "1,5,25,50,100".
    pub fn parse_steps(text: &str) -> Result<Vec<f64>, PlanError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim_end_matches('%')
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| PlanError::Steps(format!("{s:?} is not a number (write steps like 1,5,25,50,100)")))
            })
            .collect()
    }
}

/// Where the canary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Analysing the current step.
    Progressing,
    /// The analysis reached an action that waits for the user.
    AwaitingApproval,
    Promoted,
    RolledBack,
}

impl Phase {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Promoted | Self::RolledBack)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Progressing => "progressing",
            Self::AwaitingApproval => "waiting for your decision",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled back",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GateVerdict {
    Pass,
    Fail,
    /// Too few samples to judge.
    NotEnoughData,
    /// Judged, but the evidence does not decide (never a pass).
    Inconclusive,
    /// Does not apply (accuracy on a data set without labels).
    Skipped,
}

/// One gate's judgement in a check, with the numbers it used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    pub gate: &'static str,
    pub verdict: GateVerdict,
    /// One sentence with the numbers.
    pub summary: String,
    pub n_a: u64,
    pub n_b: u64,
    /// B's value and A's (latency: median ms; errors: error rate; accuracy: accuracy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_a: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b: Option<f64>,
    /// The compared difference and its interval (latency: B − A in ms, Kayenta's 98 %
    /// interval; errors: B − A in points; accuracy: A − B in points; Newcombe 95 %).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// The bound the difference is held to (points), or Kayenta's tolerance.
    pub bound: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kayenta: Option<Kayenta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Pass,
    Hold,
    Fail,
}

/// What a decision did to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// The step stays (a hold, or a failure under the threshold).
    Stay,
    Advance {
        to: f64,
    },
    Promote,
    Rollback,
}

impl Action {
    pub fn describe(&self) -> String {
        match self {
            Self::Stay => "stay at this step".into(),
            Self::Advance { to } => format!("advance to {}", percent(*to)),
            Self::Promote => "promote B to 100 %".into(),
            Self::Rollback => "roll back to A".into(),
        }
    }
}

/// Who took a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The analysis, applied at once.
    Analysis,
    /// The analysis proposed it; it waits for the user.
    Proposed,
    /// The user approved a proposal.
    UserApproved,
    /// The user rejected a proposal (the step stays).
    UserRejected,
    /// The user's own rollback or promotion.
    User,
}

/// One entry of the decision trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The check's number over the canary (from 1); user actions repeat the last.
    pub check: u32,
    /// The step index (from 0) and B's weight when the check ran.
    pub step: usize,
    pub weight: f64,
    pub outcome: Option<CheckOutcome>,
    pub action: Action,
    pub decided_by: DecidedBy,
    /// Failed checks so far, of `threshold`.
    pub failed_checks: u32,
    pub threshold: u32,
    /// Requests each arm answered in the check's window, and its time span.
    pub window_requests: [u64; 2],
    pub window_ms: [i64; 2],
    pub gates: Vec<GateResult>,
    /// A sentence for the trail.
    pub summary: String,
}

/// Answers of one arm since the last check.
#[derive(Debug, Clone, Default)]
struct Window {
    answered: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

impl Window {
    fn record(&mut self, latency_ms: Option<f64>, error: bool) {
        self.answered += 1;
        if error {
            self.errors += 1;
        }
        if let Some(ms) = latency_ms.filter(|v| v.is_finite()) {
            if self.latencies_ms.len() == MAX_WINDOW_SAMPLES {
                self.latencies_ms.drain(..MAX_WINDOW_SAMPLES / 2);
            }
            self.latencies_ms.push(ms);
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Labels {
    /// Answers in the step whose label is still to come.
    expected: u64,
    n: u64,
    correct: u64,
}

/// The canary's state.
#[derive(Debug, Clone)]
pub struct Canary {
    plan: CanaryPlan,
    labels_expected: bool,
    step: usize,
    phase: Phase,
    /// What waits for the user, in manual mode.
    pending: Option<Action>,
    failed_checks: u32,
    checks: u32,
    /// Changes whenever the step does; requests remember it so that a late label counts for
    /// the step its request was in.
    epoch: u64,
    window: [Window; 2],
    window_start_ms: Option<i64>,
    labels: [Labels; 2],
    decisions: Vec<Decision>,
    /// B's weight (percent) over time: (ms since the epoch, weight), a point per change.
    weights: Vec<(i64, f64)>,
}

impl Canary {
    /// `labels_expected`: the data has labels, so accuracy is a gate.
    pub fn new(plan: CanaryPlan, labels_expected: bool, now_ms: i64) -> Self {
        let first = plan.steps[0];
        Self {
            plan,
            labels_expected,
            step: 0,
            phase: Phase::Progressing,
            pending: None,
            failed_checks: 0,
            checks: 0,
            epoch: 0,
            window: Default::default(),
            window_start_ms: None,
            labels: Default::default(),
            decisions: Vec::new(),
            weights: vec![(now_ms, first)],
        }
    }

    pub fn plan(&self) -> &CanaryPlan {
        &self.plan
    }

    /// B's share of the traffic now, in percent.
    pub fn weight(&self) -> f64 {
        match self.phase {
            Phase::Promoted => 100.0,
            Phase::RolledBack => 0.0,
            Phase::Progressing | Phase::AwaitingApproval => self.plan.steps[self.step],
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn failed_checks(&self) -> u32 {
        self.failed_checks
    }

    pub fn pending(&self) -> Option<Action> {
        self.pending
    }

    pub fn decisions(&self) -> &[Decision] {
        &self.decisions
    }

    pub fn weights(&self) -> &[(i64, f64)] {
        &self.weights
    }

    /// Answers per arm in the current window (toward the next check).
    pub fn window_answered(&self) -> [u64; 2] {
        [self.window[0].answered, self.window[1].answered]
    }

    /// Labels per arm in the current step.
    pub fn step_labels(&self) -> [u64; 2] {
        [self.labels[0].n, self.labels[1].n]
    }

    /// An answer from `arm` to a request routed in `epoch`; `latency_ms` is `None` for an
    /// error; `expects_label`: its label will come (through [`Self::record_label`]).
    pub fn record_answer(
        &mut self,
        arm: Arm,
        epoch: u64,
        latency_ms: Option<f64>,
        error: bool,
        expects_label: bool,
        at_ms: i64,
    ) {
        if epoch != self.epoch {
            return;
        }
        if expects_label {
            self.labels[arm.index()].expected += 1;
        }
        if self.phase != Phase::Progressing {
            return;
        }
        self.window_start_ms.get_or_insert(at_ms);
        self.window[arm.index()].record(latency_ms, error);
    }

    /// The label of a request `arm` answered in `epoch`.
    pub fn record_label(&mut self, arm: Arm, epoch: u64, correct: bool) {
        if epoch != self.epoch {
            return;
        }
        let labels = &mut self.labels[arm.index()];
        labels.n += 1;
        labels.expected = labels.expected.saturating_sub(1);
        labels.correct += u64::from(correct);
    }

    /// Runs a check if the window is full; returns the decision it logged.
    pub fn check(&mut self, now_ms: i64) -> Option<&Decision> {
        if self.phase != Phase::Progressing {
            return None;
        }
        let min = self.plan.gates.min_requests;
        if self.window.iter().any(|w| w.answered < min) {
            return None;
        }
        // Labels already on their way would complete the accuracy evidence: wait for them
        // rather than hold for "not enough data", unless the window has grown to twice its
        // size (labels that lag that far behind make an honest hold).
        let min_labels = self.plan.gates.min_labels.max(1);
        let labels_in_flight =
            self.labels_expected && self.labels.iter().any(|l| l.n < min_labels && l.n + l.expected >= min_labels);
        if labels_in_flight && self.window.iter().any(|w| w.answered < 2 * min) {
            return None;
        }
        self.checks += 1;
        let gates = vec![self.latency_gate(), self.error_gate(), self.accuracy_gate()];
        let outcome = if gates.iter().any(|g| g.verdict == GateVerdict::Fail) {
            CheckOutcome::Fail
        } else if gates.iter().all(|g| matches!(g.verdict, GateVerdict::Pass | GateVerdict::Skipped)) {
            CheckOutcome::Pass
        } else {
            CheckOutcome::Hold
        };
        if outcome == CheckOutcome::Fail {
            self.failed_checks += 1;
        }
        let action = match outcome {
            CheckOutcome::Fail if self.failed_checks >= self.plan.threshold => Action::Rollback,
            CheckOutcome::Pass if self.step + 1 == self.plan.steps.len() => Action::Promote,
            CheckOutcome::Pass => Action::Advance { to: self.plan.steps[self.step + 1] },
            _ => Action::Stay,
        };
        let window_requests = [self.window[0].answered, self.window[1].answered];
        let window_ms = [self.window_start_ms.unwrap_or(now_ms), now_ms];
        let weight = self.weight();
        let step = self.step;
        let summary = check_summary(outcome, &gates, action, self.failed_checks, self.plan.threshold);
        let decided_by =
            if self.plan.manual && action != Action::Stay { DecidedBy::Proposed } else { DecidedBy::Analysis };
        self.decisions.push(Decision {
            at_ms: now_ms,
            check: self.checks,
            step,
            weight,
            outcome: Some(outcome),
            action,
            decided_by,
            failed_checks: self.failed_checks,
            threshold: self.plan.threshold,
            window_requests,
            window_ms,
            gates,
            summary,
        });
        self.window = Default::default();
        self.window_start_ms = None;
        if decided_by == DecidedBy::Proposed {
            self.pending = Some(action);
            self.phase = Phase::AwaitingApproval;
        } else {
            self.apply(action, now_ms);
        }
        self.decisions.last()
    }

    /// Applies the action waiting for the user.
    pub fn approve(&mut self, now_ms: i64) -> Option<&Decision> {
        let action = self.pending.take()?;
        self.phase = Phase::Progressing;
        self.user_decision(action, DecidedBy::UserApproved, now_ms, format!("you approved: {}", action.describe()));
        self.apply(action, now_ms);
        self.decisions.last()
    }

    /// Declines the action waiting for the user: the step stays and the analysis goes on (a
    /// declined rollback clears the failed checks).
    pub fn reject(&mut self, now_ms: i64) -> Option<&Decision> {
        let action = self.pending.take()?;
        self.phase = Phase::Progressing;
        if action == Action::Rollback {
            self.failed_checks = 0;
        }
        self.user_decision(
            Action::Stay,
            DecidedBy::UserRejected,
            now_ms,
            format!("you declined: {}; the step stays", action.describe()),
        );
        self.decisions.last()
    }

    /// The user rolls back now (from any unfinished phase).
    pub fn rollback_now(&mut self, now_ms: i64) -> Option<&Decision> {
        self.user_override(Action::Rollback, now_ms)
    }

    /// The user promotes B now (from any unfinished phase).
    pub fn promote_now(&mut self, now_ms: i64) -> Option<&Decision> {
        self.user_override(Action::Promote, now_ms)
    }

    fn user_override(&mut self, action: Action, now_ms: i64) -> Option<&Decision> {
        if self.phase.is_final() {
            return None;
        }
        self.pending = None;
        self.phase = Phase::Progressing;
        self.user_decision(action, DecidedBy::User, now_ms, format!("you chose to {}", action.describe()));
        self.apply(action, now_ms);
        self.decisions.last()
    }

    fn user_decision(&mut self, action: Action, by: DecidedBy, now_ms: i64, summary: String) {
        self.decisions.push(Decision {
            at_ms: now_ms,
            check: self.checks,
            step: self.step,
            weight: self.weight(),
            outcome: None,
            action,
            decided_by: by,
            failed_checks: self.failed_checks,
            threshold: self.plan.threshold,
            window_requests: [self.window[0].answered, self.window[1].answered],
            window_ms: [self.window_start_ms.unwrap_or(now_ms), now_ms],
            gates: Vec::new(),
            summary,
        });
    }

    fn apply(&mut self, action: Action, now_ms: i64) {
        match action {
            Action::Stay => return,
            Action::Advance { .. } => self.step += 1,
            Action::Promote => self.phase = Phase::Promoted,
            Action::Rollback => self.phase = Phase::RolledBack,
        }
        // A new step starts its evidence afresh.
        self.epoch += 1;
        self.window = Default::default();
        self.window_start_ms = None;
        self.labels = Default::default();
        self.weights.push((now_ms, self.weight()));
    }

    fn latency_gate(&self) -> GateResult {
        let (a, b) = (&self.window[0].latencies_ms, &self.window[1].latencies_ms);
        let options = self.plan.gates.latency;
        let mut result = GateResult {
            gate: "latency",
            verdict: GateVerdict::NotEnoughData,
            summary: String::new(),
            n_a: a.len() as u64,
            n_b: b.len() as u64,
            value_a: median(a),
            value_b: median(b),
            difference: None,
            interval: None,
            bound: options.tolerance,
            kayenta: None,
        };
        if a.is_empty() || b.is_empty() {
            result.summary = "not enough data: an arm has no answered request in the window".into();
            return result;
        }
        match stats::kayenta_with(a, b, &options) {
            Ok(k) => {
                let ratio = result.value_a.map_or(f64::NAN, |m| (m + k.estimate) / m);
                let allowed = self.plan.gates.latency_allowed_increase;
                let allowed_ms = self.plan.gates.latency_allowed_ms;
                // A NaN ratio (A's median 0) is not within anything.
                let by_ratio = ratio <= allowed;
                let within = k.verdict == KayentaVerdict::High && (by_ratio || k.estimate <= allowed_ms);
                result.verdict = match k.verdict {
                    KayentaVerdict::High if !within => GateVerdict::Fail,
                    _ => GateVerdict::Pass,
                };
                let what = match k.verdict {
                    KayentaVerdict::High if within && by_ratio => {
                        format!("pass: B is slower but within the allowed increase (ratio {ratio:.3} ≤ {allowed})")
                    }
                    KayentaVerdict::High if within => {
                        format!("pass: B is slower but by no more than the allowed {allowed_ms} ms (ratio {ratio:.3})")
                    }
                    KayentaVerdict::High => {
                        format!("fail: B is slower (ratio {ratio:.3}, allowed {allowed} or +{allowed_ms} ms)")
                    }
                    KayentaVerdict::Low => "pass: B is faster".into(),
                    KayentaVerdict::Pass => "pass: no meaningful difference".into(),
                };
                result.summary = format!(
                    "{what}; B − A {:+.3} ms ({:.0} % interval [{:+.3}, {:+.3}] ms, Kayenta, tolerance {})",
                    k.estimate,
                    k.confidence * 100.0,
                    k.lower,
                    k.upper,
                    k.tolerance
                );
                result.difference = Some(k.estimate);
                result.interval = Some([k.lower, k.upper]);
                result.kayenta = Some(k);
            }
            Err(e) => {
                result.verdict = GateVerdict::Inconclusive;
                result.summary = format!("inconclusive: {e}");
            }
        }
        result
    }

    fn error_gate(&self) -> GateResult {
        let (a, b) = (&self.window[0], &self.window[1]);
        // B's error rate minus A's: Newcombe's interval for p_B − p_A.
        worse_by_gate(
            "errors",
            Counts { n: a.answered, k: a.errors },
            Counts { n: b.answered, k: b.errors },
            self.plan.gates.max_error_increase,
            |k, n| (k, n),
            "error rate",
        )
    }

    fn accuracy_gate(&self) -> GateResult {
        let (a, b) = (self.labels[0], self.labels[1]);
        let bound = self.plan.gates.max_accuracy_drop;
        if !self.labels_expected {
            return GateResult {
                gate: "accuracy",
                verdict: GateVerdict::Skipped,
                summary: "skipped: the data set has no labels".into(),
                n_a: 0,
                n_b: 0,
                value_a: None,
                value_b: None,
                difference: None,
                interval: None,
                bound,
                kayenta: None,
            };
        }
        let min = self.plan.gates.min_labels.max(1);
        if a.n < min || b.n < min {
            return GateResult {
                gate: "accuracy",
                verdict: GateVerdict::NotEnoughData,
                summary: format!("not enough data: {} and {} labels in this step, {min} needed per arm", a.n, b.n),
                n_a: a.n,
                n_b: b.n,
                value_a: (a.n > 0).then(|| a.correct as f64 / a.n as f64),
                value_b: (b.n > 0).then(|| b.correct as f64 / b.n as f64),
                difference: None,
                interval: None,
                bound,
                kayenta: None,
            };
        }
        // Wrong answers are the "bad" count: B's miss rate minus A's = A's accuracy minus B's.
        let mut g = worse_by_gate(
            "accuracy",
            Counts { n: a.n, k: a.n - a.correct },
            Counts { n: b.n, k: b.n - b.correct },
            bound,
            |k, n| (n - k, n),
            "accuracy",
        );
        g.value_a = Some(a.correct as f64 / a.n as f64);
        g.value_b = Some(b.correct as f64 / b.n as f64);
        g
    }
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    n: u64,
    /// The "bad" count: errors, or wrong answers.
    k: u64,
}

/// The non-inferiority rule shared by the error and accuracy gates on "bad" rates: pass when
/// B's bad rate exceeds A's by at most `bound` points, fail when it exceeds it by more and
/// Newcombe's 95 % interval of the excess lies above 0, inconclusive otherwise. `shown`
/// turns a bad count back into the count the summary speaks of (accuracy reports correct).
fn worse_by_gate(
    gate: &'static str,
    a: Counts,
    b: Counts,
    bound: f64,
    shown: impl Fn(u64, u64) -> (u64, u64),
    what: &str,
) -> GateResult {
    let mut result = GateResult {
        gate,
        verdict: GateVerdict::NotEnoughData,
        summary: String::new(),
        n_a: a.n,
        n_b: b.n,
        value_a: None,
        value_b: None,
        difference: None,
        interval: None,
        bound,
        kayenta: None,
    };
    if a.n == 0 || b.n == 0 {
        result.summary = "not enough data: an arm has no request in the window".into();
        return result;
    }
    let (sa, na) = shown(a.k, a.n);
    let (sb, nb) = shown(b.k, b.n);
    result.value_a = Some(sa as f64 / na as f64);
    result.value_b = Some(sb as f64 / nb as f64);
    let excess = 100.0 * (b.k as f64 / b.n as f64 - a.k as f64 / a.n as f64);
    let interval = match stats::newcombe_diff_ci95(b.k, b.n, a.k, a.n) {
        Ok([lo, hi]) if lo.is_finite() && hi.is_finite() => [100.0 * lo, 100.0 * hi],
        _ => {
            result.verdict = GateVerdict::Inconclusive;
            result.summary = format!("inconclusive: no interval for the {what} difference");
            return result;
        }
    };
    result.difference = Some(excess);
    result.interval = Some(interval);
    let sentence = match gate {
        "errors" => format!(
            "B's error rate {:.2} % vs A's {:.2} %: {:+.2} points (95 % interval [{:+.2}, {:+.2}]), bound +{} points",
            result.value_b.unwrap_or(f64::NAN) * 100.0,
            result.value_a.unwrap_or(f64::NAN) * 100.0,
            excess,
            interval[0],
            interval[1],
            bound
        ),
        _ => format!(
            "B's {what} {:.1} % vs A's {:.1} % ({sb}/{nb} and {sa}/{na}): B is {:.1} points {} (95 % interval of the \
             drop [{:+.1}, {:+.1}]), bound {} points",
            result.value_b.unwrap_or(f64::NAN) * 100.0,
            result.value_a.unwrap_or(f64::NAN) * 100.0,
            excess.abs(),
            if excess > 0.0 { "worse" } else { "better" },
            interval[0],
            interval[1],
            bound
        ),
    };
    result.verdict = if excess <= bound {
        GateVerdict::Pass
    } else if interval[0] > 0.0 {
        GateVerdict::Fail
    } else {
        GateVerdict::Inconclusive
    };
    result.summary = match result.verdict {
        GateVerdict::Pass => format!("pass: {sentence}"),
        GateVerdict::Fail => format!("fail: {sentence}; significantly worse"),
        _ => format!("inconclusive: {sentence}; over the bound but not significant yet"),
    };
    result
}

fn check_summary(outcome: CheckOutcome, gates: &[GateResult], action: Action, failed: u32, threshold: u32) -> String {
    let reasons: Vec<String> = gates
        .iter()
        .filter(|g| match outcome {
            CheckOutcome::Fail => g.verdict == GateVerdict::Fail,
            CheckOutcome::Hold => matches!(g.verdict, GateVerdict::NotEnoughData | GateVerdict::Inconclusive),
            CheckOutcome::Pass => false,
        })
        .map(|g| format!("{} {}", g.gate, g.summary))
        .collect();
    match outcome {
        CheckOutcome::Pass => format!("check passed: {}", action.describe()),
        CheckOutcome::Hold => format!("hold: {}", reasons.join("; ")),
        CheckOutcome::Fail => {
            format!("check failed ({failed} of {threshold}): {}; {}", reasons.join("; "), action.describe())
        }
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// "5 %", "12.5 %".
pub fn percent(w: f64) -> String {
    if (w - w.round()).abs() < 1e-9 {
        format!("{w:.0} %")
    } else {
        format!("{w} %")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(steps: &[f64], min: u64, manual: bool) -> CanaryPlan {
        let gates = Gates { min_requests: min, min_labels: min, ..Gates::default() };
        CanaryPlan::new(steps.to_vec(), gates, 2, manual).unwrap()
    }

    /// Feeds `n` answers per arm: A takes `lat_a` ms, B `lat_b` ms (with a little spread), B
    /// fails `err_b` of its requests; labels: A right with `acc_a`, B with `acc_b`.
    fn feed(c: &mut Canary, n: u64, lat: (f64, f64), err_b: f64, acc: (f64, f64)) {
        let epoch = c.epoch();
        for i in 0..n {
            let jitter = (i % 10) as f64 * 0.01;
            c.record_answer(Arm::A, epoch, Some(lat.0 + jitter), false, true, 1000 + i as i64);
            let fails = (i as f64 + 0.5) / n as f64 <= err_b;
            c.record_answer(Arm::B, epoch, (!fails).then_some(lat.1 + jitter), fails, !fails, 1000 + i as i64);
            c.record_label(Arm::A, epoch, (i as f64 + 0.5) / (n as f64) < acc.0);
            if !fails {
                c.record_label(Arm::B, epoch, (i as f64 + 0.5) / (n as f64) < acc.1);
            }
        }
    }

    #[test]
    fn a_good_canary_is_promoted_step_by_step() {
        let mut c = Canary::new(plan(&[1.0, 5.0, 25.0, 50.0, 100.0], 50, false), true, 0);
        assert_eq!(c.weight(), 1.0);
        for expected in [5.0, 25.0, 50.0] {
            feed(&mut c, 50, (1.0, 1.0), 0.0, (0.9, 0.92));
            let d = c.check(2000).unwrap().clone();
            assert_eq!(d.outcome, Some(CheckOutcome::Pass), "{}", d.summary);
            assert_eq!(d.action, Action::Advance { to: expected });
            assert_eq!(c.weight(), expected);
        }
        feed(&mut c, 50, (1.0, 1.0), 0.0, (0.9, 0.92));
        assert_eq!(c.check(3000).unwrap().action, Action::Promote);
        assert_eq!(c.phase(), Phase::Promoted);
        assert_eq!(c.weight(), 100.0);
        assert_eq!(c.weights().iter().map(|w| w.1).collect::<Vec<_>>(), vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    }

    #[test]
    fn too_few_samples_never_checks_and_missing_labels_hold() {
        let mut c = Canary::new(plan(&[10.0], 50, false), true, 0);
        feed(&mut c, 49, (1.0, 1.0), 0.0, (0.9, 0.9));
        assert!(c.check(1).is_none(), "49 < 50 requests per arm: no check");
        // Enough answers, no labels yet: the accuracy gate holds the step.
        let epoch = c.epoch();
        for i in 0..30 {
            c.record_answer(Arm::A, epoch, Some(1.0 + i as f64 * 0.01), false, true, i);
            c.record_answer(Arm::B, epoch, Some(1.0 + i as f64 * 0.01), false, true, i);
        }
        // 79 answers per arm, 49 labels in and 30 on their way: the check waits for them
        // until the window doubles.
        assert!(c.check(2).is_none());
        for i in 0..30 {
            c.record_answer(Arm::A, epoch, Some(1.0 + i as f64 * 0.01), false, true, i);
            c.record_answer(Arm::B, epoch, Some(1.0 + i as f64 * 0.01), false, true, i);
        }
        let d = c.check(2).unwrap();
        assert_eq!(d.outcome, Some(CheckOutcome::Hold));
        assert_eq!(d.action, Action::Stay);
        let acc = d.gates.iter().find(|g| g.gate == "accuracy").unwrap();
        assert_eq!(acc.verdict, GateVerdict::NotEnoughData);
        assert_eq!(c.weight(), 10.0);
        assert_eq!(c.failed_checks(), 0);
    }

    #[test]
    fn a_worse_canary_rolls_back_after_threshold_failures() {
        let mut c = Canary::new(plan(&[1.0, 5.0], 100, false), true, 0);
        feed(&mut c, 100, (1.0, 1.0), 0.0, (0.95, 0.10));
        let d = c.check(1).unwrap().clone();
        assert_eq!(d.outcome, Some(CheckOutcome::Fail));
        assert_eq!(d.action, Action::Stay);
        assert_eq!(d.failed_checks, 1);
        assert!(d.summary.contains("accuracy"), "{}", d.summary);
        feed(&mut c, 100, (1.0, 1.0), 0.0, (0.95, 0.10));
        assert_eq!(c.check(2).unwrap().action, Action::Rollback);
        assert_eq!(c.phase(), Phase::RolledBack);
        assert_eq!(c.weight(), 0.0);
    }

    #[test]
    fn a_slower_canary_fails_on_latency_and_a_failing_one_on_errors() {
        let mut c = Canary::new(plan(&[5.0], 100, false), false, 0);
        feed(&mut c, 100, (1.0, 3.0), 0.0, (0.0, 0.0));
        let d = c.check(1).unwrap();
        let lat = d.gates.iter().find(|g| g.gate == "latency").unwrap();
        assert_eq!(lat.verdict, GateVerdict::Fail, "{}", lat.summary);
        assert!(d.gates.iter().any(|g| g.gate == "accuracy" && g.verdict == GateVerdict::Skipped));
        let mut c = Canary::new(plan(&[5.0], 200, false), false, 0);
        feed(&mut c, 200, (1.0, 1.0), 0.10, (0.0, 0.0));
        let d = c.check(1).unwrap();
        let err = d.gates.iter().find(|g| g.gate == "errors").unwrap();
        assert_eq!(err.verdict, GateVerdict::Fail, "{}", err.summary);
        assert!((err.difference.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_significant_but_small_slowdown_is_within_the_allowed_increase() {
        // B is 5 % slower, consistently: Kayenta says High, the effect size lets it pass.
        let lat = latency_gate(plan(&[5.0], 200, false), (1.0, 1.05));
        assert_eq!(lat.kayenta.as_ref().unwrap().verdict, KayentaVerdict::High);
        assert_eq!(lat.verdict, GateVerdict::Pass, "{}", lat.summary);
        assert!(lat.summary.contains("within the allowed increase"), "{}", lat.summary);
    }

    /// The latency gate of one check after 200 answers per arm at `lat` (A, B) ms.
    fn latency_gate(plan: CanaryPlan, lat: (f64, f64)) -> GateResult {
        let mut c = Canary::new(plan, false, 0);
        feed(&mut c, 200, lat, 0.0, (0.0, 0.0));
        let d = c.check(1).unwrap();
        d.gates.iter().find(|g| g.gate == "latency").unwrap().clone()
    }

    #[test]
    fn a_slowdown_of_microseconds_passes_on_the_absolute_allowance_only() {
        // B 30 µs slower than A's ~0.045 ms median (ratio ~1.67), consistently: significant,
        // over the 1.1 ratio, within the 0.05 ms allowance.
        let lat = latency_gate(plan(&[5.0], 200, false), (0.0, 0.030));
        assert_eq!(lat.kayenta.as_ref().unwrap().verdict, KayentaVerdict::High);
        assert_eq!(lat.verdict, GateVerdict::Pass, "{}", lat.summary);
        assert!(lat.summary.contains("no more than the allowed 0.05 ms"), "{}", lat.summary);
        // Without the allowance, Kayenta's ratio alone fails it.
        let mut strict = plan(&[5.0], 200, false);
        strict.gates.latency_allowed_ms = 0.0;
        let lat = latency_gate(strict, (0.0, 0.030));
        assert_eq!(lat.verdict, GateVerdict::Fail, "{}", lat.summary);
    }

    #[test]
    fn over_the_bound_but_not_significant_holds() {
        // 2 errors in 50 against none: 4 points over a 1-point bound, interval reaches below 0.
        let mut c = Canary::new(plan(&[5.0], 50, false), false, 0);
        feed(&mut c, 50, (1.0, 1.0), 0.04, (0.0, 0.0));
        let d = c.check(1).unwrap();
        let err = d.gates.iter().find(|g| g.gate == "errors").unwrap();
        assert_eq!(err.verdict, GateVerdict::Inconclusive, "{}", err.summary);
        assert_eq!(d.outcome, Some(CheckOutcome::Hold));
    }

    #[test]
    fn tied_latencies_are_inconclusive_not_a_pass() {
        let mut c = Canary::new(plan(&[5.0], 10, false), false, 0);
        for _ in 0..10 {
            c.record_answer(Arm::A, 0, Some(1.0), false, false, 0);
            c.record_answer(Arm::B, 0, Some(1.0), false, false, 0);
        }
        let d = c.check(1).unwrap();
        assert_eq!(d.outcome, Some(CheckOutcome::Hold), "{}", d.summary);
    }

    #[test]
    fn manual_mode_waits_for_the_user() {
        let mut c = Canary::new(plan(&[1.0, 5.0], 20, true), false, 0);
        feed(&mut c, 20, (1.0, 1.0), 0.0, (0.0, 0.0));
        let d = c.check(1).unwrap();
        assert_eq!(d.decided_by, DecidedBy::Proposed);
        assert_eq!(c.phase(), Phase::AwaitingApproval);
        assert_eq!(c.weight(), 1.0, "nothing moves before the click");
        feed(&mut c, 20, (1.0, 1.0), 0.0, (0.0, 0.0));
        assert!(c.check(2).is_none(), "no checks while a decision waits");
        c.approve(3);
        assert_eq!(c.weight(), 5.0);
        feed(&mut c, 20, (1.0, 1.0), 0.0, (0.0, 0.0));
        assert_eq!(c.check(4).unwrap().action, Action::Promote);
        c.reject(5);
        assert_eq!(c.phase(), Phase::Progressing);
        assert_eq!(c.weight(), 5.0);
        c.rollback_now(6);
        assert_eq!(c.phase(), Phase::RolledBack);
        let by: Vec<DecidedBy> = c.decisions().iter().map(|d| d.decided_by).collect();
        assert_eq!(
            by,
            vec![
                DecidedBy::Proposed,
                DecidedBy::UserApproved,
                DecidedBy::Proposed,
                DecidedBy::UserRejected,
                DecidedBy::User
            ]
        );
    }

    #[test]
    fn late_labels_count_for_their_own_step() {
        let mut c = Canary::new(plan(&[1.0, 5.0], 10, false), true, 0);
        let old = c.epoch();
        feed(&mut c, 10, (1.0, 1.0), 0.0, (1.0, 1.0));
        assert!(matches!(c.check(1).unwrap().action, Action::Advance { .. }));
        c.record_label(Arm::B, old, false);
        assert_eq!(c.step_labels(), [0, 0]);
    }

    #[test]
    fn plans_parse_and_validate() {
        assert_eq!(CanaryPlan::parse_steps("1, 5,25%,50,100").unwrap(), vec![1.0, 5.0, 25.0, 50.0, 100.0]);
        assert_eq!(CanaryPlan::flagger_steps(10.0, 50.0).unwrap(), vec![10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(CanaryPlan::default().steps, vec![1.0, 5.0, 25.0, 50.0]);
        assert!(CanaryPlan::new(vec![5.0, 1.0], Gates::default(), 2, false).is_err());
        assert!(CanaryPlan::new(vec![100.0], Gates::default(), 2, false).is_err());
        assert!(CanaryPlan::new(vec![f64::NAN], Gates::default(), 2, false).is_err());
        assert!(CanaryPlan::new(vec![5.0], Gates::default(), 0, false).is_err());
        assert!(CanaryPlan::parse_steps("1,x").is_err());
    }
}
