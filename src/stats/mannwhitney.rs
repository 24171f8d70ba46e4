//! Latency comparison of two arms: the Mann-Whitney U test and Kayenta's canary judgement
//! on the shift B − A (A = control / baseline, B = experiment / canary).
//!
//! **Mann-Whitney U** ([`mann_whitney_u`]) is scipy's `mannwhitneyu(a, b)`, two-sided,
//! `method="auto"`: exact when either arm has at most 8 values and there are no ties,
//! otherwise the normal approximation with continuity and tie correction.
//! [`mann_whitney_u_asymptotic`] always takes the normal approximation, which is R's
//! `wilcox.test(b, a, exact=FALSE, correct=TRUE)$p.value`.
//!
//! **Kayenta** ([`kayenta`], [`kayenta_with`]) reproduces `MannWhitney.scala` of
//! spinnaker/kayenta ("derived from the R Wilcoxon test implementation, asymptotic,
//! two-sample confidence interval logic"), called as `NetflixACAJudge` calls it through
//! `MannWhitneyClassifier.classify(control, experiment, Either)`:
//! - Direction: Kayenta's `x` is the experiment and `y` the control, so the interval is for
//!   experiment − control = B − A, as `wilcox.test(b, a, conf.int=TRUE, exact=FALSE,
//!   correct=TRUE, conf.level=confidence)` in R.
//! - Bounds: the roots, between min(B) − max(A) and max(B) − min(A), of
//!   `(dz − 0.5·sign(dz)) / σ ∓ z` where dz is the Wilcoxon statistic of B − d against A
//!   minus its mean, σ its tie-corrected standard deviation and z = Φ⁻¹(1 − (1 − confidence)/2);
//!   an end of the search range is returned when the statistic does not change sign there.
//!   That statistic is a step function of d whose steps sit at the pairwise differences, so
//!   each root is a pairwise difference: instead of running Brent's method with tolerance
//!   1e-4 (Kayenta) or `uniroot` (R), which land within 1e-4 of that difference, we find the
//!   step exactly. Between differences only ties within an arm remain, so σ is constant
//!   there and the step is the first order statistic D(k) at which
//!   `(dz − 0.5·sign(dz))/σ ∓ z` with dz = N/2 − k turns negative (N = n_A·n_B); D(k) comes
//!   from [`kth_difference`] without materialising the N differences.
//! - Estimate: the Hodges-Lehmann estimate, the median of the N differences B − A. Kayenta's
//!   estimate is Brent's root of the same corrected statistic with z = 0 (R's drops the
//!   continuity correction), which is zero over a whole step around the median; both land
//!   inside the step that holds the Hodges-Lehmann estimate, at points that depend on the
//!   solver, so we report the estimate that does not.
//! - Verdict (`MannWhitneyClassifier`, direction Either): "High" if lower > tolerance·|estimate|,
//!   "Low" if upper < −tolerance·|estimate|, else "Pass". Defaults are `NetflixACAJudge`'s:
//!   confidence 0.98, tolerance 0.25.
//! - Every observation tied (each arm repeats one value, so at the only shift that aligns
//!   them σ = 0): Kayenta's `MannWhitney` and R throw "cannot compute confidence interval
//!   when all observations are tied", and so do we ([`StatsError::AllTied`]) rather than
//!   invent an interval. (`MannWhitneyClassifier` itself calls identical arms "Pass" before
//!   it gets there; for identical arms that are not all tied we compute the interval, which
//!   is symmetric about 0, so the verdict is "Pass" as well.)
//!
//! Not reproduced: the judge's data cleaning before the classifier (NaN removal and the IQR
//! outlier filter); callers pass the values they want judged. Kayenta's own p-value
//! (commons-math `MannWhitneyUTest`, without tie or continuity correction) is not used for
//! the verdict and not reported.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};

use super::drift::normal_cdf;
use super::{describe, StatsError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of arm A (scipy's `statistic` for `mannwhitneyu(a, b)`).
    pub u_a: f64,
    pub u_b: f64,
    pub pvalue: f64,
}

/// Two-sided Mann-Whitney U test of `a` against `b`, scipy's `method="auto"`.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<MannWhitney, StatsError> {
    mann_whitney(a, b, true)
}

/// Two-sided Mann-Whitney U test with the normal approximation (continuity and tie
/// corrected) whatever the sample sizes: scipy's `method="asymptotic"`, R's
/// `wilcox.test(exact=FALSE, correct=TRUE)`.
pub fn mann_whitney_u_asymptotic(a: &[f64], b: &[f64]) -> Result<MannWhitney, StatsError> {
    mann_whitney(a, b, false)
}

fn mann_whitney(a: &[f64], b: &[f64], allow_exact: bool) -> Result<MannWhitney, StatsError> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::EmptySample("mann-whitney"));
    }
    let (n1, n2) = (a.len(), b.len());
    let mut all: Vec<(f64, bool)> = a.iter().map(|&v| (v, true)).chain(b.iter().map(|&v| (v, false))).collect();
    if all.iter().any(|(v, _)| v.is_nan()) {
        return Err(StatsError::NotANumber);
    }
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut has_ties = false;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let in_a = all[i..j].iter().filter(|x| x.1).count() as f64;
        rank_sum_a += avg_rank * in_a;
        if j - i > 1 {
            has_ties = true;
            tie_term += t * t * t - t;
        }
        i = j;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u_a = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let u_b = n1f * n2f - u_a;
    let u = u_a.max(u_b);
    let exact = allow_exact && (n1 <= 8 || n2 <= 8) && !has_ties;
    let pvalue = if exact {
        2.0 * exact_u_cdf(n1, n2, (n1f * n2f - u).round() as usize)
    } else {
        let n = n1f + n2f;
        let s = (n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
        let numerator = u - n1f * n2f / 2.0 - 0.5;
        if s > 0.0 {
            2.0 * normal_cdf(-(numerator / s))
        } else {
            1.0
        }
    };
    Ok(MannWhitney { u_a, u_b, pvalue: pvalue.clamp(0.0, 1.0) })
}

/// P(U ≤ k) under the null for sample sizes m, n without ties, from the Gaussian binomial
/// generating function Π_{i=1..m} (1 − q^{n+i}) / (1 − q^i), truncated at degree k.
fn exact_u_cdf(m: usize, n: usize, k: usize) -> f64 {
    let (m, n) = (m.min(n), m.max(n));
    let mut poly = vec![0.0f64; k + 1];
    poly[0] = 1.0;
    for i in 1..=m {
        let shift = n + i;
        for d in (shift..=k).rev() {
            poly[d] -= poly[d - shift];
        }
        for d in i..=k {
            poly[d] += poly[d - i];
        }
    }
    let total = statrs::function::factorial::binomial((m + n) as u64, m as u64);
    poly.iter().sum::<f64>() / total
}

/// Kayenta's verdict on B relative to A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KayentaVerdict {
    High,
    Low,
    Pass,
}

/// `NetflixACAJudge`'s confidence level for the interval.
pub const KAYENTA_CONFIDENCE: f64 = 0.98;
/// Fraction of |estimate| that the interval must clear to call B high or low.
pub const KAYENTA_TOLERANCE: f64 = 0.25;

/// Settings of the Kayenta judgement; the default is `NetflixACAJudge`'s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KayentaOptions {
    /// Confidence level of the interval, strictly between 0 and 1.
    pub confidence: f64,
    /// Fraction of |estimate| the interval must clear (`fraction` in Kayenta), at least 0.
    pub tolerance: f64,
}

impl Default for KayentaOptions {
    fn default() -> Self {
        Self { confidence: KAYENTA_CONFIDENCE, tolerance: KAYENTA_TOLERANCE }
    }
}

impl KayentaOptions {
    pub fn validate(&self) -> Result<(), StatsError> {
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return Err(StatsError::InvalidOption("the confidence level must lie strictly between 0 and 1"));
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(StatsError::InvalidOption("the tolerance must be a finite number of at least 0"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kayenta {
    pub confidence: f64,
    pub tolerance: f64,
    /// Interval for the shift B − A at `confidence`.
    pub lower: f64,
    pub upper: f64,
    /// Hodges-Lehmann estimate of the shift B − A.
    pub estimate: f64,
    pub verdict: KayentaVerdict,
}

/// Kayenta's judgement of B (experiment) against A (control) with its default settings.
pub fn kayenta(a: &[f64], b: &[f64]) -> Result<Kayenta, StatsError> {
    kayenta_with(a, b, &KayentaOptions::default())
}

/// Kayenta's judgement of B (experiment) against A (control): interval and Hodges-Lehmann
/// estimate of the shift B − A, and High / Low / Pass (see the module docs).
pub fn kayenta_with(a: &[f64], b: &[f64], options: &KayentaOptions) -> Result<Kayenta, StatsError> {
    options.validate()?;
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::EmptySample("kayenta"));
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    describe::sort_finite(&mut a)?;
    describe::sort_finite(&mut b)?;
    let (a_min, a_max, b_min, b_max) = (a[0], a[a.len() - 1], b[0], b[b.len() - 1]);
    if [a_min, a_max, b_min, b_max].iter().any(|v| v.is_infinite()) {
        return Err(StatsError::Infinite);
    }
    if !(b_max - a_min).is_finite() || !(b_min - a_max).is_finite() {
        return Err(StatsError::Overflow);
    }
    if a_min == a_max && b_min == b_max {
        return Err(StatsError::AllTied);
    }
    // Kayenta's x is the experiment (B), y the control (A).
    let (nx, ny) = (b.len() as f64, a.len() as f64);
    let n = nx + ny;
    let total = a.len() as u64 * b.len() as u64;
    let ties = tie_term(&a) + tie_term(&b);
    let sigma = ((nx * ny / 12.0) * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
    let alpha = 1.0 - options.confidence;
    let z = -Normal::new(0.0, 1.0).map_err(|_| StatsError::Internal("standard normal"))?.inverse_cdf(alpha / 2.0);
    // Corrected statistic minus q between D(k) and D(k+1), as R's `wdiff` evaluates it.
    let statistic = |k: u64, q: f64| {
        let dz = (total - k) as f64 - total as f64 / 2.0;
        let correction = if dz > 0.0 {
            0.5
        } else if dz < 0.0 {
            -0.5
        } else {
            0.0
        };
        (dz - correction) / sigma - q
    };
    // The step where the statistic turns negative: the smallest k in 0..=N with a negative
    // value after D(k) (N + 1 if none), clamped to the search range [D(1), D(N)].
    let root = |q: f64| {
        let (mut lo, mut hi) = (0u64, total + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if statistic(mid, q) < 0.0 {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        kth_difference(&a, &b, lo.clamp(1, total))
    };
    let lower = root(z);
    let upper = root(-z);
    let estimate = if total % 2 == 1 {
        kth_difference(&a, &b, total / 2 + 1)
    } else {
        kth_difference(&a, &b, total / 2) / 2.0 + kth_difference(&a, &b, total / 2 + 1) / 2.0
    };
    let critical = options.tolerance * estimate.abs();
    let verdict = if lower > critical {
        KayentaVerdict::High
    } else if upper < -critical {
        KayentaVerdict::Low
    } else {
        KayentaVerdict::Pass
    };
    Ok(Kayenta { confidence: options.confidence, tolerance: options.tolerance, lower, upper, estimate, verdict })
}

/// Σ (t³ − t) over the runs of equal values of an ascending slice.
fn tie_term(sorted: &[f64]) -> f64 {
    let mut sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        sum += t * t * t - t;
        i = j;
    }
    sum
}

/// Number of pairs with fl(b_j − a_i) ≤ t; a and b ascending.
fn count_at_most(a: &[f64], b: &[f64], t: f64) -> u64 {
    let mut start = 0usize;
    let mut count = 0u64;
    for &bj in b {
        while start < a.len() && bj - a[start] > t {
            start += 1;
        }
        count += (a.len() - start) as u64;
    }
    count
}

/// Maps f64 to u64 preserving order, so bisection can run over representable values.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// The k-th smallest (1-based) of all differences b_j − a_i, exactly as floating-point
/// subtraction gives them; a and b ascending and finite, 1 ≤ k ≤ |a|·|b|.
pub fn kth_difference(a: &[f64], b: &[f64], k: u64) -> f64 {
    let lo_val = b[0] - a[a.len() - 1];
    let hi_val = b[b.len() - 1] - a[0];
    let (mut lo, mut hi) = (order_key(lo_val), order_key(hi_val));
    // Invariant: count(≤ from_order_key(hi)) ≥ k; find the smallest such key.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if count_at_most(a, b, from_order_key(mid)) >= k {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    from_order_key(lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_exact_case_matches_scipy() {
        // scipy.stats.mannwhitneyu([1,2,3],[4,5,6]) -> U=0, p=0.1
        let r = mann_whitney_u(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).expect("valid");
        assert_eq!(r.u_a, 0.0);
        assert_eq!(r.u_b, 9.0);
        assert!((r.pvalue - 0.1).abs() < 1e-12);
    }

    #[test]
    fn kayenta_example_from_its_test_suite() {
        // MannWhitneySuite: control 1..4, experiment 10..40 at confidence 0.95 gives the
        // interval [6, 39] and estimate 22.5.
        let options = KayentaOptions { confidence: 0.95, ..KayentaOptions::default() };
        let k = kayenta_with(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0], &options).expect("valid");
        assert_eq!(k.estimate, 22.5);
        assert_eq!(k.lower, 6.0);
        assert_eq!(k.upper, 39.0);
        assert_eq!(k.verdict, KayentaVerdict::High);
    }

    #[test]
    fn kayenta_defaults_are_netflix_aca_judge() {
        let k = kayenta(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]).expect("valid");
        assert_eq!((k.confidence, k.tolerance), (0.98, 0.25));
        // At 98% the statistic never clears z inside the range: the ends are returned.
        assert_eq!((k.lower, k.upper), (6.0, 39.0));
    }

    #[test]
    fn all_tied_is_refused_but_one_constant_arm_is_not() {
        assert_eq!(kayenta(&[5.0; 4], &[5.0; 3]), Err(StatsError::AllTied));
        assert_eq!(kayenta(&[5.0; 4], &[7.0; 3]), Err(StatsError::AllTied));
        let k = kayenta(&[5.0; 4], &[4.0, 6.0, 7.0, 9.0]).expect("one constant arm");
        assert!(k.lower <= k.estimate && k.estimate <= k.upper, "{k:?}");
    }

    #[test]
    fn options_are_checked() {
        let a = [1.0, 2.0];
        for options in [
            KayentaOptions { confidence: 1.0, tolerance: 0.25 },
            KayentaOptions { confidence: f64::NAN, tolerance: 0.25 },
            KayentaOptions { confidence: 0.9, tolerance: -0.1 },
        ] {
            assert!(matches!(kayenta_with(&a, &a, &options), Err(StatsError::InvalidOption(_))), "{options:?}");
        }
    }

    #[test]
    fn interval_widens_with_confidence_and_holds_the_estimate() {
        let a: Vec<f64> = (0..40).map(|i| (i * 37 % 23) as f64 + 0.5 * (i % 3) as f64).collect();
        let b: Vec<f64> = a.iter().enumerate().map(|(i, v)| v + 2.0 + (i % 5) as f64).collect();
        let mut last = (f64::INFINITY, f64::NEG_INFINITY);
        for confidence in [0.5, 0.8, 0.95, 0.98, 0.999] {
            let k = kayenta_with(&a, &b, &KayentaOptions { confidence, tolerance: 0.25 }).expect("valid");
            assert!(k.lower <= k.estimate && k.estimate <= k.upper, "{k:?}");
            assert!(k.lower <= last.0 && k.upper >= last.1, "{confidence}: {k:?}");
            last = (k.lower, k.upper);
        }
    }

    #[test]
    fn kth_difference_agrees_with_brute_force() {
        let a = [0.5, 1.0, 1.0, 3.25, 7.0];
        let b = [-2.0, 0.0, 1.0, 4.5];
        let mut all: Vec<f64> = b.iter().flat_map(|bj| a.iter().map(move |ai| bj - ai)).collect();
        all.sort_by(f64::total_cmp);
        for k in 1..=all.len() as u64 {
            assert_eq!(kth_difference(&a, &b, k), all[k as usize - 1]);
        }
    }
}
