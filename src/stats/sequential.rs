//! Always-valid ("peeking is allowed") statistics for the accuracy difference Δ = accuracy(B) −
//! accuracy(A) of two arms: the mixture sequential probability ratio test (mSPRT) of Johari,
//! Koomen, Pekelis and Walsh, "Peeking at A/B Tests" (KDD 2017), its always-valid p-value and
//! confidence sequence, and the A/A simulation that shows why a live dashboard needs them.
//!
//! # The statistic
//! With Δ̂ = p̂b − p̂a and σ² = p̂a(1−p̂a)/na + p̂b(1−p̂b)/nb (the plug-in variance of Δ̂), the
//! mixture likelihood ratio of H1: Δ ~ N(0, τ²) against H0: Δ = 0 for an estimate Δ̂ ~ N(Δ, σ²)
//! is the ratio of the two marginal densities of Δ̂, N(0, σ²+τ²) over N(0, σ²):
//!
//! Λ = √(σ²/(σ²+τ²)) · exp(Δ̂²/2 · (1/σ² − 1/(σ²+τ²))) = √(σ²/(σ²+τ²)) · exp(τ²Δ̂² / (2σ²(σ²+τ²))).
//!
//! **Equal arms give the paper's formula.** With na = nb = n and V = p̂a(1−p̂a) + p̂b(1−p̂b),
//! σ² = V/n, so √(σ²/(σ²+τ²)) = √((V/n)/((V+nτ²)/n)) = √(V/(V+nτ²)) and
//! τ²Δ̂²/(2σ²(σ²+τ²)) = τ²Δ̂² / (2 (V/n) (V+nτ²)/n) = n²τ²Δ̂² / (2V(V+nτ²)): the paper's Λn
//! term for term (unit test `equal_arms_reproduce_the_paper_formula`).
//!
//! **Why the standard error is the right generalisation to unequal arms.** Write I = 1/σ² (the
//! information about Δ) and S = Δ̂·I. Then Λ = (1+τ²I)^(−1/2) · exp(τ²S²/(2(1+τ²I))), which is
//! ∫ exp(θS − θ²I/2) dN(θ; 0, τ²): the Gaussian mixture martingale of a Brownian motion with
//! drift Δ run in information time I. The paper's n/V is the special case I = n/V; whatever the
//! split between arms (a fixed weight w for B, or a canary whose weight steps up), Δ̂ is
//! approximately such a Brownian motion in I, so Ville's inequality P(sup Λ ≥ 1/α) ≤ α holds
//! as in the paper (with the same plug-in variance approximation the paper makes).
//!
//! The always-valid p-value is the running minimum p_n = min(p_{n−1}, 1/Λn), p_0 = 1, so a
//! [`SequentialAb`] accumulator keeps it between looks. Stopping at the first p_n ≤ α is a level-α
//! test however often one looks.
//!
//! # The confidence sequence
//! At level 1−α it is the set of Δ0 with Λ(Δ̂ − Δ0) < 1/α. Taking logarithms,
//! ½ ln(σ²/(σ²+τ²)) + τ²(Δ̂−Δ0)²/(2σ²(σ²+τ²)) < ln(1/α), i.e.
//! (Δ̂−Δ0)² < (2σ²(σ²+τ²)/τ²) · ln(√((σ²+τ²)/σ²)/α), so
//! Δ̂ ± √((2σ²(σ²+τ²)/τ²) · ln(√((σ²+τ²)/σ²)/α)). The logarithm's argument exceeds 1/α > 1, so
//! the width is always real. As in the paper the reported interval is the running intersection
//! of these intervals (and of [−1, 1], where every accuracy difference lies); it excludes 0
//! exactly when the always-valid p-value is ≤ α.
//!
//! # Small arms and degenerate inputs
//! The mSPRT rests on the normal approximation of Δ̂, which fails for an arm that has given one of
//! the two answers (right or wrong) fewer than 5 times: its plug-in variance is zero or too small
//! exactly when it got lucky, and beside a large control arm that reads as evidence (a 5 % canary
//! after 6 correct answers would be "significant"). Such an arm's variance term uses the 95 %
//! Poisson upper bound of its rarer answer's rate instead (see `arm_variance`); once both arms
//! have at least 5 of each answer, every look is the paper's plug-in formula exactly. An arm with
//! no data, or both arms all right (or both all wrong), is "no evidence": Λ = 1, the p-value and
//! the interval keep their previous values, and nothing NaN enters the state. Invalid counts (more
//! correct than total, or counts that go down between updates) are errors and leave the state
//! untouched. Λ is handled as ln Λ, so overwhelming evidence saturates (p = 0) instead of
//! overflowing to infinity.

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::ab::{two_proportion_ztest, wilson_ci95};
use super::StatsError;

/// Default mixing variance τ² = 0.0025, i.e. τ = 0.05: a prior on the true accuracy difference
/// with a standard deviation of 5 points. The paper (and Optimizely) set τ from the effect sizes
/// seen in past experiments; accuracy differences between two versions of a model are typically
/// 1–5 points. The always-valid boundary on |Δ̂|/σ is (1+σ²/τ²)(2 ln(1/α) + ln(1+τ²/σ²)) under a
/// square root; at α = 5 % it is smallest (3.04) where τ² ≈ 8σ², and with τ = 0.05 it stays within
/// 10 % of that (≤ 3.32) for 200 to 10,000 labelled predictions per arm at 90 % accuracy — the
/// sample sizes of a replay on this machine — where it detects differences of about 9.5 points
/// (200 per arm) down to 1.4 points (10,000 per arm).
pub const DEFAULT_TAU2: f64 = 0.0025;

/// Default significance level of the verdicts and of the confidence sequence (1 − α = 95 %).
pub const DEFAULT_ALPHA: f64 = 0.05;

/// ln Λ of the mSPRT for an estimate `delta` with variance `variance` (σ²) under mixing variance
/// `tau2`: ½ ln(σ²/(σ²+τ²)) + τ²Δ̂²/(2σ²(σ²+τ²)). No evidence (σ² ≤ 0, or any input NaN or
/// infinite) is ln Λ = 0.
pub fn msprt_ln_lambda(delta: f64, variance: f64, tau2: f64) -> f64 {
    if !(variance > 0.0 && variance.is_finite() && tau2 > 0.0 && tau2.is_finite() && delta.is_finite()) {
        return 0.0;
    }
    let total = variance + tau2;
    0.5 * (variance / total).ln() + tau2 * delta * delta / (2.0 * variance * total)
}

/// Half-width of the always-valid interval Δ̂ ± h at level 1 − `alpha`:
/// h = √((2σ²(σ²+τ²)/τ²) · ln(√((σ²+τ²)/σ²)/α)). `None` when σ² ≤ 0 (no evidence).
pub fn confidence_half_width(variance: f64, tau2: f64, alpha: f64) -> Option<f64> {
    if !(variance > 0.0 && variance.is_finite() && tau2 > 0.0 && tau2.is_finite() && alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let total = variance + tau2;
    let log_bound = 0.5 * (total / variance).ln() - alpha.ln();
    Some((2.0 * variance * total / tau2 * log_bound).sqrt())
}

/// One-sided 95 % upper confidence bounds of a Poisson mean after k = 0, 1, 2, 3, 4 events,
/// χ²₀.₉₅(2k+2)/2 (scipy `chi2.ppf(0.95, 2 * k + 2) / 2`); for k = 0 it is the rule of three.
const POISSON_UPPER_95: [f64; 5] = [
    2.995_732_273_553_989_5,
    4.743_864_518_390_577,
    6.295_793_621_871_988,
    7.753_656_527_932_725,
    9.153_519_026_637_573,
];

/// The variance of an arm enters the paper's plug-in form once the arm has given each answer (right
/// and wrong) at least this often: the textbook np ≥ 5, n(1−p) ≥ 5 condition for the normal
/// approximation the mSPRT rests on.
pub const MIN_EACH_OUTCOME: u64 = 5;

/// The per-observation variance of one arm: p̂(1−p̂) once the arm has at least [`MIN_EACH_OUTCOME`]
/// right and wrong answers; before that q(1−q), with q the 95 % Poisson upper bound of the rarer
/// answer's rate (k rare answers in n: q = min(U_k/n, ½), U_0 = 3 is the rule of three).
///
/// Without this a small arm reads as evidence: a 5 % canary that answered its first 6 requests
/// correctly has plug-in variance 0 and would be "significant" against 81/94 (Λ = 86), and a
/// small arm that got lucky has its variance underestimated exactly when its accuracy is
/// overestimated. In A/A replays at 90 % accuracy with 5 % of requests to B the plug-in form stops
/// at a false positive in about 9 % of runs; with this bound, about 3 % (see `tests/sequential.rs`).
fn arm_variance(correct: u64, n: u64) -> f64 {
    let nf = n as f64;
    let rarer = correct.min(n - correct);
    match POISSON_UPPER_95.get(rarer as usize) {
        Some(upper) if rarer < MIN_EACH_OUTCOME => {
            let q = (upper / nf).min(0.5);
            q * (1.0 - q)
        }
        _ => {
            let p = correct as f64 / nf;
            p * (1.0 - p)
        }
    }
}

/// What one look could measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// An arm has no labelled predictions.
    NoData,
    /// Both arms are all right (or both all wrong): nothing distinguishes them yet.
    NoVariation,
    /// Λ was computed.
    Measured,
}

/// Δ̂ = p̂b − p̂a and the variance σ² the test uses, or why there is no evidence.
fn estimate(
    correct_a: u64,
    n_a: u64,
    correct_b: u64,
    n_b: u64,
) -> Result<(Option<f64>, Option<f64>, Evidence), StatsError> {
    if correct_a > n_a || correct_b > n_b {
        return Err(StatsError::InvalidCounts);
    }
    if n_a == 0 || n_b == 0 {
        return Ok((None, None, Evidence::NoData));
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let delta = correct_b as f64 / nb - correct_a as f64 / na;
    let degenerate = |c: u64, n: u64| c == 0 || c == n;
    if degenerate(correct_a, n_a) && degenerate(correct_b, n_b) && delta == 0.0 {
        return Ok((Some(0.0), None, Evidence::NoVariation));
    }
    Ok((Some(delta), Some(arm_variance(correct_a, n_a) / na + arm_variance(correct_b, n_b) / nb), Evidence::Measured))
}

/// Λ of the mSPRT for B − A from cumulative counts (the pure, stateless statistic). 1 when an arm
/// has no data or both arms are all right (or both all wrong); +∞ when ln Λ exceeds f64's range (use [`msprt_ln_lambda`] for the log).
pub fn msprt_lambda(correct_a: u64, n_a: u64, correct_b: u64, n_b: u64, tau2: f64) -> Result<f64, StatsError> {
    check_tau2(tau2)?;
    Ok(match estimate(correct_a, n_a, correct_b, n_b)? {
        (Some(delta), Some(variance), _) => msprt_ln_lambda(delta, variance, tau2).exp(),
        _ => 1.0,
    })
}

fn check_tau2(tau2: f64) -> Result<(), StatsError> {
    if tau2 > 0.0 && tau2.is_finite() {
        Ok(())
    } else {
        Err(StatsError::InvalidOption("the mixing variance tau² must be a positive finite number (default 0.0025)"))
    }
}

fn check_alpha(alpha: f64) -> Result<(), StatsError> {
    if alpha > 0.0 && alpha < 1.0 {
        Ok(())
    } else {
        Err(StatsError::InvalidOption("the significance level alpha must lie strictly between 0 and 1 (default 0.05)"))
    }
}

/// The running mSPRT of one A/B comparison. Call [`SequentialAb::update`] with the cumulative
/// counts whenever they change; the p-value and the confidence sequence carry over between calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequentialAb {
    tau2: f64,
    alpha: f64,
    p_value: f64,
    confidence_sequence: [f64; 2],
    /// (correct_a, n_a, correct_b, n_b) at the last update, to refuse counts that go down.
    last_counts: [u64; 4],
    looks: u64,
}

impl Default for SequentialAb {
    fn default() -> Self {
        Self {
            tau2: DEFAULT_TAU2,
            alpha: DEFAULT_ALPHA,
            p_value: 1.0,
            confidence_sequence: [-1.0, 1.0],
            last_counts: [0; 4],
            looks: 0,
        }
    }
}

impl SequentialAb {
    /// A fresh test with mixing variance `tau2` (see [`DEFAULT_TAU2`]) and level `alpha`.
    pub fn new(tau2: f64, alpha: f64) -> Result<Self, StatsError> {
        check_tau2(tau2)?;
        check_alpha(alpha)?;
        Ok(Self { tau2, alpha, ..Self::default() })
    }

    pub fn tau2(&self) -> f64 {
        self.tau2
    }

    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The always-valid p-value so far (1 before any evidence).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }

    /// The running-intersection confidence sequence for B − A so far ([−1, 1] before any evidence).
    pub fn confidence_sequence(&self) -> [f64; 2] {
        self.confidence_sequence
    }

    /// How many updates have been taken.
    pub fn looks(&self) -> u64 {
        self.looks
    }

    /// Takes a look at the cumulative counts (labelled predictions and correct ones per arm).
    /// Counts may only grow; an error leaves the state unchanged.
    pub fn update(
        &mut self,
        correct_a: u64,
        n_a: u64,
        correct_b: u64,
        n_b: u64,
    ) -> Result<SequentialState, StatsError> {
        let (delta, variance, evidence) = estimate(correct_a, n_a, correct_b, n_b)?;
        let [last_ca, last_na, last_cb, last_nb] = self.last_counts;
        let went_down = n_a < last_na
            || n_b < last_nb
            || correct_a < last_ca
            || correct_b < last_cb
            || n_a - correct_a < last_na - last_ca
            || n_b - correct_b < last_nb - last_cb;
        if went_down {
            return Err(StatsError::InvalidOption(
                "the counts went down since the last look; they must be cumulative totals (start a new SequentialAb \
                 for a new run)",
            ));
        }
        self.last_counts = [correct_a, n_a, correct_b, n_b];
        self.looks += 1;

        let mut ln_lambda = 0.0;
        if let (Some(delta), Some(variance)) = (delta, variance) {
            ln_lambda = msprt_ln_lambda(delta, variance, self.tau2);
            self.p_value = self.p_value.min((-ln_lambda).exp());
            if let Some(h) = confidence_half_width(variance, self.tau2, self.alpha) {
                let [lo, hi] = self.confidence_sequence;
                let (lo, hi) = (lo.max(delta - h), hi.min(delta + h));
                // An empty intersection means the coverage event has already failed; the paper's
                // intersection has nothing to report then, so show this look's own interval.
                self.confidence_sequence =
                    if lo <= hi { [lo, hi] } else { [(delta - h).max(-1.0), (delta + h).min(1.0)] };
            }
        }
        let fixed_horizon = two_proportion_ztest(correct_a, n_a, correct_b, n_b)
            .ok()
            .map(|t| FixedHorizon { z: -t.statistic, p_value: t.pvalue });
        Ok(SequentialState {
            correct_a,
            n_a,
            correct_b,
            n_b,
            accuracy_a: (n_a > 0).then(|| correct_a as f64 / n_a as f64),
            accuracy_b: (n_b > 0).then(|| correct_b as f64 / n_b as f64),
            delta,
            std_error: variance.map(f64::sqrt),
            evidence,
            tau2: self.tau2,
            alpha: self.alpha,
            ln_lambda,
            lambda: ln_lambda.exp().min(f64::MAX),
            p_value: self.p_value,
            confidence_sequence: self.confidence_sequence,
            significant: self.p_value <= self.alpha,
            fixed_horizon,
        })
    }
}

/// The classical (fixed-horizon) pooled two-proportion z-test of the same counts, for comparison:
/// valid only when read once, at a sample size fixed in advance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FixedHorizon {
    /// z of B − A (positive when B is more accurate).
    pub z: f64,
    pub p_value: f64,
}

/// One look of a [`SequentialAb`]: the counts, the estimate and both kinds of significance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SequentialState {
    pub correct_a: u64,
    pub n_a: u64,
    pub correct_b: u64,
    pub n_b: u64,
    /// `None` while the arm has no labelled predictions.
    pub accuracy_a: Option<f64>,
    pub accuracy_b: Option<f64>,
    /// Δ̂ = accuracy(B) − accuracy(A); `None` while an arm has no data.
    pub delta: Option<f64>,
    /// σ = √(p̂a(1−p̂a)/na + p̂b(1−p̂b)/nb), with the small-arm bound of [`MIN_EACH_OUTCOME`] for an
    /// arm with fewer than 5 right or 5 wrong answers; `None` without evidence.
    pub std_error: Option<f64>,
    pub evidence: Evidence,
    pub tau2: f64,
    pub alpha: f64,
    /// Λ of this look (1 without evidence; saturates at f64::MAX).
    pub lambda: f64,
    pub ln_lambda: f64,
    /// Always-valid p-value: the running minimum of 1/Λ.
    pub p_value: f64,
    /// Always-valid 1 − α confidence sequence for B − A (running intersection).
    pub confidence_sequence: [f64; 2],
    /// `p_value <= alpha` (Ville's inequality bounds P(sup Λ ≥ 1/α) by α).
    pub significant: bool,
    /// `None` while an arm has no data.
    pub fixed_horizon: Option<FixedHorizon>,
}

/// A p-value for text: three decimals, or one significant digit in scientific form below 0.001.
pub fn format_p(p: f64) -> String {
    if p.is_nan() {
        "n/a".to_string()
    } else if p < 1e-300 {
        "< 1e-300".to_string()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// A percentage without trailing zeros: 0.05 → "5", 0.025 → "2.5".
fn percent(x: f64) -> String {
    let s = format!("{:.2}", 100.0 * x);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl SequentialState {
    /// The verdict in plain language, at the level the test was built with: the effect, the
    /// always-valid p-value and what it allows, the confidence sequence, and the fixed-horizon
    /// z-test beside it with the condition under which it would be valid.
    pub fn verdict_text(&self) -> String {
        let level = percent(self.alpha);
        let (Some(acc_a), Some(acc_b), Some(delta)) = (self.accuracy_a, self.accuracy_b, self.delta) else {
            let empty = match (self.n_a, self.n_b) {
                (0, 0) => "neither arm has",
                (0, _) => "arm A has",
                _ => "arm B has",
            };
            return format!("Not enough data: {empty} labelled predictions yet; sequential p = 1.000.");
        };
        let arms = format!(
            "B {:.1} % vs A {:.1} % on {} and {} labelled predictions",
            100.0 * acc_b,
            100.0 * acc_a,
            self.n_b,
            self.n_a
        );
        if self.evidence == Evidence::NoVariation {
            return format!(
                "No evidence yet ({arms}): neither arm has been both right and wrong; sequential p = {}.",
                format_p(self.p_value)
            );
        }
        let points = 100.0 * delta;
        let effect = if format!("{:.1}", points.abs()) == "0.0" {
            format!("B and A are equally accurate to 0.1 points ({arms})")
        } else {
            let direction = if points > 0.0 { "more" } else { "less" };
            format!("B is {:.1} points {direction} accurate ({arms})", points.abs())
        };
        let sequential = if self.significant {
            format!(
                "sequential p = {}: significant at {level} % even though you watched it live",
                format_p(self.p_value)
            )
        } else {
            format!("not significant yet (sequential p = {}); keep watching: peeking is safe", format_p(self.p_value))
        };
        let [lo, hi] = self.confidence_sequence;
        let interval = format!(
            "{} % confidence sequence for B − A: {:+.1} to {:+.1} points",
            percent(1.0 - self.alpha),
            100.0 * lo,
            100.0 * hi
        );
        let fixed = match self.fixed_horizon {
            Some(f) if f.p_value < self.alpha && !self.significant => format!(
                "The fixed-horizon z-test (p = {}) would call this significant, but only if this is the single look \
                 planned in advance; watched live it is not evidence.",
                format_p(f.p_value)
            ),
            Some(f) => format!(
                "Fixed-horizon z-test: p = {} (valid only when read once, at a sample size fixed in advance).",
                format_p(f.p_value)
            ),
            None => String::new(),
        };
        format!("{effect}; {sequential}. {interval}. {fixed}").trim_end().to_string()
    }
}

/// How requests are split between the arms in [`simulate_peeking`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum ArmSplit {
    /// A, B, A, B, ...: both arms have the same size at every even request.
    Alternate,
    /// Each request goes to B with probability `weight_b`, independently.
    Random { weight_b: f64 },
}

/// Settings of [`simulate_peeking`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeekingOptions {
    pub runs: u64,
    pub seed: u64,
    /// True accuracies of the arms (equal for an A/A test).
    pub accuracy_a: f64,
    pub accuracy_b: f64,
    /// Requests per run, both arms together.
    pub requests: u64,
    /// A look (both tests computed) after every this many requests, and at the last request.
    pub look_every: u64,
    pub split: ArmSplit,
    pub tau2: f64,
    pub alpha: f64,
}

impl Default for PeekingOptions {
    /// An A/A test at 90 % accuracy: 4,000 requests split at random (about 2,000 per arm), a look
    /// every 20.
    fn default() -> Self {
        Self {
            runs: 2000,
            seed: 12,
            accuracy_a: 0.9,
            accuracy_b: 0.9,
            requests: 4000,
            look_every: 20,
            split: ArmSplit::Random { weight_b: 0.5 },
            tau2: DEFAULT_TAU2,
            alpha: DEFAULT_ALPHA,
        }
    }
}

/// A rejection rate over the runs with its 95 % Wilson interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionRate {
    pub rejections: u64,
    pub runs: u64,
    pub rate: f64,
    pub wilson_ci95: [f64; 2],
}

impl RejectionRate {
    fn new(rejections: u64, runs: u64) -> Result<Self, StatsError> {
        Ok(Self {
            rejections,
            runs,
            rate: rejections as f64 / runs as f64,
            wilson_ci95: wilson_ci95(rejections, runs)?,
        })
    }
}

/// What [`simulate_peeking`] measured: how often each way of reading the tests declares a
/// difference (a false positive when the arms are equal, power when they differ).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeekingReport {
    pub options: PeekingOptions,
    pub looks_per_run: u64,
    /// Stop at the first look with the always-valid p ≤ α.
    pub sequential: RejectionRate,
    /// Stop at the first look with the fixed-horizon z-test's p < α (what a live dashboard invites).
    pub fixed_peeking: RejectionRate,
    /// The fixed-horizon z-test read once, at the last request (its intended use).
    pub fixed_once: RejectionRate,
    /// Mean number of requests (both arms) until the sequential test rejected, over rejecting runs.
    pub sequential_mean_requests_to_reject: Option<f64>,
}

/// Replays `runs` seeded A/B tests one request at a time, looking at both tests every
/// `look_every` requests, and counts how often each reading rejects "no difference".
pub fn simulate_peeking(options: &PeekingOptions) -> Result<PeekingReport, StatsError> {
    check_tau2(options.tau2)?;
    check_alpha(options.alpha)?;
    let in_unit = |p: f64| (0.0..=1.0).contains(&p);
    if !in_unit(options.accuracy_a) || !in_unit(options.accuracy_b) {
        return Err(StatsError::InvalidOption("true accuracies must lie between 0 and 1"));
    }
    if let ArmSplit::Random { weight_b } = options.split {
        if !in_unit(weight_b) {
            return Err(StatsError::InvalidOption("B's weight must lie between 0 and 1"));
        }
    }
    if options.runs == 0 || options.requests == 0 || options.look_every == 0 {
        return Err(StatsError::InvalidOption("runs, requests and look_every must be at least 1"));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let (mut sequential, mut fixed_peeking, mut fixed_once) = (0, 0, 0);
    let mut requests_to_reject = 0u64;
    for _ in 0..options.runs {
        let mut test = SequentialAb::new(options.tau2, options.alpha)?;
        let [mut correct_a, mut n_a, mut correct_b, mut n_b] = [0u64; 4];
        let (mut seq_rejected, mut fixed_rejected) = (false, false);
        for request in 1..=options.requests {
            let to_b = match options.split {
                ArmSplit::Alternate => request % 2 == 0,
                ArmSplit::Random { weight_b } => rng.random::<f64>() < weight_b,
            };
            let accuracy = if to_b { options.accuracy_b } else { options.accuracy_a };
            let correct = u64::from(rng.random::<f64>() < accuracy);
            if to_b {
                (correct_b, n_b) = (correct_b + correct, n_b + 1);
            } else {
                (correct_a, n_a) = (correct_a + correct, n_a + 1);
            }
            let last = request == options.requests;
            if request % options.look_every != 0 && !last {
                continue;
            }
            let state = test.update(correct_a, n_a, correct_b, n_b)?;
            if state.significant && !seq_rejected {
                seq_rejected = true;
                requests_to_reject += request;
            }
            let fixed_significant = state.fixed_horizon.is_some_and(|f| f.p_value < options.alpha);
            fixed_rejected |= fixed_significant;
            if last && fixed_significant {
                fixed_once += 1;
            }
        }
        sequential += u64::from(seq_rejected);
        fixed_peeking += u64::from(fixed_rejected);
    }
    Ok(PeekingReport {
        options: options.clone(),
        looks_per_run: options.requests.div_ceil(options.look_every),
        sequential: RejectionRate::new(sequential, options.runs)?,
        fixed_peeking: RejectionRate::new(fixed_peeking, options.runs)?,
        fixed_once: RejectionRate::new(fixed_once, options.runs)?,
        sequential_mean_requests_to_reject: (sequential > 0).then(|| requests_to_reject as f64 / sequential as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs())
    }

    /// The paper's Λn, written exactly as printed.
    fn paper_lambda(correct_a: u64, correct_b: u64, n: u64, tau2: f64) -> f64 {
        let n = n as f64;
        let (pa, pb) = (correct_a as f64 / n, correct_b as f64 / n);
        let v = pa * (1.0 - pa) + pb * (1.0 - pb);
        let d = pb - pa;
        (v / (v + n * tau2)).sqrt() * (n * n * tau2 * d * d / (2.0 * v * (v + n * tau2))).exp()
    }

    #[test]
    fn equal_arms_reproduce_the_paper_formula() {
        for &(ca, cb, n) in &[(880, 910, 1000), (40, 45, 50), (9000, 9000, 10_000), (700, 950, 1000), (5, 6, 12)] {
            for &tau2 in &[DEFAULT_TAU2, 1e-4, 0.1] {
                let ours = msprt_lambda(ca, n, cb, n, tau2).unwrap();
                let paper = paper_lambda(ca, cb, n, tau2);
                assert!(rel(ours, paper) < 1e-12, "{ca}/{n} vs {cb}/{n}, tau2 {tau2}: {ours} != {paper}");
            }
        }
    }

    #[test]
    fn interval_endpoints_are_where_lambda_reaches_one_over_alpha() {
        let (ca, na, cb, nb) = (870u64, 1000u64, 1410u64, 1500u64);
        let (Some(delta), Some(variance), Evidence::Measured) = estimate(ca, na, cb, nb).unwrap() else {
            panic!("a measured look expected");
        };
        for &alpha in &[0.05, 0.01, 0.2] {
            let h = confidence_half_width(variance, DEFAULT_TAU2, alpha).unwrap();
            for d0 in [delta - h, delta + h] {
                let lambda = msprt_ln_lambda(delta - d0, variance, DEFAULT_TAU2).exp();
                assert!(rel(lambda, 1.0 / alpha) < 1e-10, "alpha {alpha}: Λ = {lambda}");
            }
        }
    }

    #[test]
    fn p_value_is_a_running_minimum_and_interval_a_running_intersection() {
        let mut test = SequentialAb::default();
        let first = test.update(450, 500, 480, 500).unwrap();
        assert!(first.p_value < 1.0);
        // B's lead shrinks: Λ falls but the p-value may not rise.
        let second = test.update(900, 1000, 905, 1000).unwrap();
        assert!(second.lambda < first.lambda);
        assert_eq!(second.p_value, first.p_value);
        assert!(second.confidence_sequence[0] >= first.confidence_sequence[0]);
        assert!(second.confidence_sequence[1] <= first.confidence_sequence[1]);
        // 0 outside the interval exactly when significant.
        let [lo, hi] = second.confidence_sequence;
        assert_eq!(second.significant, !(lo < 0.0 && 0.0 < hi));
    }

    #[test]
    fn degenerate_inputs_are_no_evidence_never_nan() {
        let mut test = SequentialAb::default();
        for (ca, na, cb, nb) in [(0, 0, 0, 0), (0, 0, 5, 5), (10, 10, 12, 12), (10, 10, 12, 12), (10, 10, 0, 12)] {
            let s = test.update(ca, na, cb, nb);
            if (ca, na, cb, nb) == (10, 10, 0, 12) {
                // The correct count of B went down: an error, state untouched.
                assert!(s.is_err());
                continue;
            }
            let s = s.unwrap();
            assert_eq!((s.lambda, s.ln_lambda, s.p_value), (1.0, 0.0, 1.0));
            assert_eq!(s.confidence_sequence, [-1.0, 1.0]);
            assert!(!s.significant);
            let json = serde_json::to_value(&s).unwrap();
            for key in ["lambda", "ln_lambda", "p_value"] {
                assert!(json[key].is_f64(), "{key} in {json}");
            }
            assert!(json["confidence_sequence"].as_array().unwrap().iter().all(|v| v.is_f64()), "{json}");
        }
        assert_eq!(test.looks(), 4);
        // All right against all wrong has plug-in σ² = 0; the small-arm bound measures it, no division by zero.
        let lambda = msprt_lambda(20, 20, 0, 20, DEFAULT_TAU2).unwrap();
        assert!(lambda > 1.0 && lambda.is_finite(), "{lambda}");
        assert_eq!(msprt_lambda(20, 20, 20, 20, DEFAULT_TAU2).unwrap(), 1.0);
        assert_eq!(msprt_ln_lambda(f64::NAN, 0.1, DEFAULT_TAU2), 0.0);
        assert!(msprt_lambda(21, 20, 0, 20, DEFAULT_TAU2).is_err());
        assert!(msprt_lambda(1, 2, 1, 2, f64::NAN).is_err());
        assert!(SequentialAb::new(0.0, 0.05).is_err());
        assert!(SequentialAb::new(DEFAULT_TAU2, f64::NAN).is_err());
        assert!(SequentialAb::new(DEFAULT_TAU2, 1.0).is_err());
    }

    #[test]
    fn a_small_arm_without_errors_is_not_significant_by_default() {
        // The plug-in variance of a 6/6 arm is 0: Λ would be 86 against 81/94.
        let mut test = SequentialAb::default();
        let s = test.update(81, 94, 6, 6).unwrap();
        assert!(s.lambda < 1.0 && !s.significant, "{s:?}");
        assert_eq!(s.evidence, Evidence::Measured);
        // A perfect arm still wins once it has enough requests.
        let s = test.update(810, 940, 500, 500).unwrap();
        assert!(s.significant, "{s:?}");
        // All right against all wrong is the largest possible difference, not "no variation".
        let s = SequentialAb::default().update(0, 200, 200, 200).unwrap();
        assert!(s.significant && s.delta == Some(1.0), "{s:?}");
    }

    #[test]
    fn overwhelming_evidence_saturates_instead_of_overflowing() {
        let mut test = SequentialAb::default();
        let s = test.update(1, 1_000_000, 999_999, 1_000_000).unwrap();
        assert!(s.ln_lambda > 709.0 && s.ln_lambda.is_finite());
        assert_eq!(s.lambda, f64::MAX);
        assert_eq!(s.p_value, 0.0);
        assert!(s.significant);
        assert!(serde_json::to_string(&s).unwrap().contains("\"p_value\":0.0"));
    }

    #[test]
    fn disjoint_interval_falls_back_to_the_current_look() {
        let mut test = SequentialAb::default();
        let first = test.update(900, 1000, 990, 1000).unwrap();
        assert!(first.confidence_sequence[0] > 0.0);
        let second = test.update(1900, 2000, 1000, 2000).unwrap();
        let [lo, hi] = second.confidence_sequence;
        assert!(lo <= hi && hi < 0.0, "{lo}..{hi}");
        assert!(second.p_value <= first.p_value);
    }

    #[test]
    fn verdicts_say_what_peeking_allows() {
        let mut test = SequentialAb::default();
        let s = test.update(8890, 10_000, 9200, 10_000).unwrap();
        let text = s.verdict_text();
        assert!(text.starts_with("B is 3.1 points more accurate (B 92.0 % vs A 88.9 % on 10000 and 10000"), "{text}");
        assert!(text.contains("significant at 5 % even though you watched it live"), "{text}");
        assert!(text.contains("95 % confidence sequence for B − A: +"), "{text}");

        let mut test = SequentialAb::default();
        let s = test.update(450, 500, 440, 500).unwrap();
        let text = s.verdict_text();
        assert!(text.starts_with("B is 2.0 points less accurate"), "{text}");
        assert!(text.contains("not significant yet (sequential p = 1.000); keep watching: peeking is safe"), "{text}");

        // Fixed-horizon significant, sequential not: the text warns against reading it live.
        let mut test = SequentialAb::default();
        let s = test.update(450, 500, 470, 500).unwrap();
        let fixed = s.fixed_horizon.unwrap();
        assert!(fixed.p_value < 0.05 && fixed.z > 0.0 && !s.significant, "{s:?}");
        assert!(s.verdict_text().contains("would call this significant, but only if"), "{}", s.verdict_text());

        let mut test = SequentialAb::default();
        assert!(test.update(0, 0, 4, 4).unwrap().verdict_text().starts_with("Not enough data: arm A has"));
        assert!(test.update(5, 5, 4, 4).unwrap().verdict_text().starts_with("No evidence yet"));
    }
}
