//! A/B accuracy statistics: Wilson score intervals (statsmodels `proportion_confint(...,
//! method="wilson")`) and the pooled two-proportion z-test (statsmodels `proportions_ztest`).

use serde::Serialize;

use super::drift::normal_cdf;
use super::{StatsError, TestResult};

/// Φ⁻¹(0.975), the two-sided 95% normal critical value (scipy `norm.isf(0.025)`).
pub const Z_975: f64 = 1.959_963_984_540_054_5;

/// Wilson score interval at 95% for `successes` out of `n`.
pub fn wilson_ci95(successes: u64, n: u64) -> Result<[f64; 2], StatsError> {
    if n == 0 {
        return Err(StatsError::EmptySample("wilson interval"));
    }
    if successes > n {
        return Err(StatsError::InvalidCounts);
    }
    let nf = n as f64;
    let q = successes as f64 / nf;
    let crit2 = Z_975 * Z_975;
    let denom = 1.0 + crit2 / nf;
    let center = (q + crit2 / (2.0 * nf)) / denom;
    let dist = Z_975 * (q * (1.0 - q) / nf + crit2 / (4.0 * nf * nf)).sqrt() / denom;
    Ok([center - dist, center + dist])
}

/// Accuracy of one arm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmAccuracy {
    pub n: u64,
    pub correct: u64,
    pub accuracy: f64,
    pub wilson_ci95: [f64; 2],
}

impl ArmAccuracy {
    pub fn new(correct: u64, n: u64) -> Result<Self, StatsError> {
        Ok(Self { n, correct, accuracy: correct as f64 / n.max(1) as f64, wilson_ci95: wilson_ci95(correct, n)? })
    }
}

/// Pooled two-proportion z-test of A against B: z = (p_a − p_b)/√(P(1−P)(1/n_a + 1/n_b)),
/// two-sided. When both arms are all-correct or all-wrong (P ∈ {0, 1}) the statistic is
/// undefined; we report z = 0, p = 1 rather than statsmodels' NaN.
pub fn two_proportion_ztest(correct_a: u64, n_a: u64, correct_b: u64, n_b: u64) -> Result<TestResult, StatsError> {
    if n_a == 0 || n_b == 0 {
        return Err(StatsError::EmptySample("two-proportion z-test"));
    }
    if correct_a > n_a || correct_b > n_b {
        return Err(StatsError::InvalidCounts);
    }
    let (na, nb) = (n_a as f64, n_b as f64);
    let (pa, pb) = (correct_a as f64 / na, correct_b as f64 / nb);
    let pooled = (correct_a + correct_b) as f64 / (na + nb);
    let var = pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb);
    if var <= 0.0 {
        return Ok(TestResult { statistic: 0.0, pvalue: 1.0 });
    }
    let z = (pa - pb) / var.sqrt();
    Ok(TestResult { statistic: z, pvalue: 2.0 * normal_cdf(-z.abs()) })
}

/// Newcombe's hybrid score interval at 95% for the difference p₁ − p₂ of two independent
/// proportions (Newcombe 1998, method 10; statsmodels `confint_proportions_2indep(...,
/// method="newcomb", compare="diff")`), built from each side's Wilson interval [lᵢ, uᵢ]:
/// [d − √((p₁−l₁)² + (u₂−p₂)²), d + √((u₁−p₁)² + (p₂−l₂)²)]. Unlike the Wald interval it
/// stays sensible at 0 and 100 % (an arm with no errors still has an uncertain error rate).
pub fn newcombe_diff_ci95(successes1: u64, n1: u64, successes2: u64, n2: u64) -> Result<[f64; 2], StatsError> {
    let [l1, u1] = wilson_ci95(successes1, n1)?;
    let [l2, u2] = wilson_ci95(successes2, n2)?;
    let (p1, p2) = (successes1 as f64 / n1 as f64, successes2 as f64 / n2 as f64);
    let d = p1 - p2;
    Ok([d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(), d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels proportion_confint(8, 10, method="wilson")
        let [lo, hi] = wilson_ci95(8, 10).expect("valid");
        assert!((lo - 0.49016247153664183).abs() < 1e-12);
        assert!((hi - 0.9433178485456247).abs() < 1e-12);
    }

    #[test]
    fn degenerate_arms_give_no_difference() {
        let t = two_proportion_ztest(10, 10, 5, 5).expect("valid");
        assert_eq!(t.pvalue, 1.0);
        assert!(wilson_ci95(1, 0).is_err());
    }
}
