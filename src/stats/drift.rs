//! Drift statistics between a reference and a current sample of one column, with
//! Evidently 0.7's definitions: PSI, Jensen-Shannon distance, normed Wasserstein, KS,
//! chi-square against reference proportions, the binary z-test, the default-test rule
//! and data-set drift. Missing values must already be dropped by the caller.

use serde::Serialize;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

use super::binning::{self, CategoryCounts};
use super::describe;
use super::ks::ks_2samp;
use super::{StatsError, TestResult};

/// Reference sizes above this use the distance-based defaults (Jensen-Shannon, Wasserstein).
pub const LARGE_REFERENCE_ROWS: usize = 1000;
/// Below this many current values the verdict is flagged as unreliable.
pub const MIN_CURRENT_FOR_VERDICT: usize = 30;
/// Share of drifted columns at which the whole data set is said to drift.
pub const DATASET_DRIFT_SHARE: f64 = 0.5;
/// Floor for the reference sd used to norm Wasserstein distance and mean shift.
pub const MIN_NORM_SD: f64 = 0.001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Numerical,
    Categorical,
}

/// The test Evidently would pick for a column by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DriftMethod {
    #[serde(rename = "ks")]
    Ks,
    #[serde(rename = "chisquare")]
    ChiSquare,
    #[serde(rename = "z")]
    Z,
    #[serde(rename = "jensenshannon")]
    JensenShannon,
    #[serde(rename = "wasserstein_normed")]
    WassersteinNormed,
}

impl DriftMethod {
    pub fn name(self) -> &'static str {
        match self {
            DriftMethod::Ks => "ks",
            DriftMethod::ChiSquare => "chisquare",
            DriftMethod::Z => "z",
            DriftMethod::JensenShannon => "jensenshannon",
            DriftMethod::WassersteinNormed => "wasserstein_normed",
        }
    }

    /// Evidently's default threshold for the method.
    pub fn threshold(self) -> f64 {
        match self {
            DriftMethod::Ks | DriftMethod::ChiSquare | DriftMethod::Z => 0.05,
            DriftMethod::JensenShannon | DriftMethod::WassersteinNormed => 0.1,
        }
    }

    /// Whether `score` means drift: p-values at or below (KS) / below (chi-square, z) the
    /// threshold, distances at or above it.
    pub fn is_drift(self, score: f64) -> bool {
        let t = self.threshold();
        match self {
            DriftMethod::Ks => score <= t,
            DriftMethod::ChiSquare | DriftMethod::Z => score < t,
            DriftMethod::JensenShannon | DriftMethod::WassersteinNormed => score >= t,
        }
    }
}

/// Evidently's default-test rule by reference size, kind and distinct values of the union.
pub fn default_method(kind: ColumnKind, n_reference: usize, n_distinct: usize) -> DriftMethod {
    let small_category_test = if n_distinct > 2 { DriftMethod::ChiSquare } else { DriftMethod::Z };
    match (kind, n_reference <= LARGE_REFERENCE_ROWS) {
        (ColumnKind::Numerical, true) if n_distinct <= 5 => small_category_test,
        (ColumnKind::Numerical, true) => DriftMethod::Ks,
        (ColumnKind::Categorical, true) => small_category_test,
        (ColumnKind::Numerical, false) if n_distinct <= 5 => DriftMethod::JensenShannon,
        (ColumnKind::Numerical, false) => DriftMethod::WassersteinNormed,
        (ColumnKind::Categorical, false) => DriftMethod::JensenShannon,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DefaultTest {
    pub method: DriftMethod,
    pub score: f64,
    pub threshold: f64,
    pub drift_detected: bool,
    /// False when the current side has fewer than 30 values: the verdict is not reliable.
    pub enough_data: bool,
}

/// Every drift statistic that applies to one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDrift {
    pub kind: ColumnKind,
    pub n_reference: usize,
    pub n_current: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks: Option<TestResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chisquare: Option<TestResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<TestResult>,
    pub psi: f64,
    pub jensenshannon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein_normed: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_shift_sd: Option<f64>,
    pub default_test: DefaultTest,
}

/// PSI = Σ (r − c)·ln(r/c) after Evidently's zero-share replacement on each side.
pub fn psi(reference_shares: &[f64], current_shares: &[f64]) -> f64 {
    let r = fill_zero_shares(reference_shares);
    let c = fill_zero_shares(current_shares);
    r.iter().zip(&c).map(|(r, c)| (r - c) * (r / c).ln()).sum()
}

/// Zero shares become 1e-4, or the smallest non-zero share / 1e6 when that is ≤ 1e-4.
fn fill_zero_shares(shares: &[f64]) -> Vec<f64> {
    let min_nonzero = shares.iter().copied().filter(|&s| s != 0.0).fold(f64::INFINITY, f64::min);
    let eps = if min_nonzero <= 1e-4 { min_nonzero / 1e6 } else { 1e-4 };
    shares.iter().map(|&s| if s == 0.0 { eps } else { s }).collect()
}

/// Jensen-Shannon distance (scipy `jensenshannon`, natural log), inputs renormalised to sum 1.
pub fn jensenshannon(p: &[f64], q: &[f64]) -> f64 {
    let sp: f64 = p.iter().sum();
    let sq: f64 = q.iter().sum();
    let (mut left, mut right) = (0.0, 0.0);
    for (&pi, &qi) in p.iter().zip(q) {
        let (pi, qi) = (pi / sp, qi / sq);
        let m = (pi + qi) / 2.0;
        left += rel_entr(pi, m);
        right += rel_entr(qi, m);
    }
    ((left + right) / 2.0).sqrt()
}

fn rel_entr(x: f64, y: f64) -> f64 {
    if x > 0.0 && y > 0.0 {
        x * (x / y).ln()
    } else if x == 0.0 && y >= 0.0 {
        0.0
    } else {
        f64::INFINITY
    }
}

/// First Wasserstein distance between two ascending-sorted samples (scipy's CDF formula).
pub fn wasserstein_sorted(u: &[f64], v: &[f64]) -> f64 {
    let (nu, nv) = (u.len() as f64, v.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    // Walk the merged sample in order; between consecutive merged values both CDFs are flat.
    while i < u.len() || j < v.len() {
        let take_u = match (u.get(i), v.get(j)) {
            (Some(&x), Some(&y)) => x <= y,
            (Some(_), None) => true,
            _ => false,
        };
        let x = if take_u { u[i] } else { v[j] };
        if let Some(p) = prev {
            // CDFs evaluated at p: counts of values ≤ p on each side.
            let cu = u.partition_point(|&a| a <= p) as f64 / nu;
            let cv = v.partition_point(|&b| b <= p) as f64 / nv;
            total += (cu - cv).abs() * (x - p);
        }
        prev = Some(x);
        if take_u {
            i += 1;
        } else {
            j += 1;
        }
    }
    total
}

/// W1(ref, cur) / max(sd(ref), 0.001) on ascending-sorted samples.
pub fn wasserstein_normed_sorted(reference: &[f64], current: &[f64]) -> Option<f64> {
    let sd = describe::population_sd(reference)?;
    Some(wasserstein_sorted(reference, current) / sd.max(MIN_NORM_SD))
}

/// (mean(cur) − mean(ref)) / max(sd(ref), 0.001).
pub fn mean_shift_sd(reference: &[f64], current: &[f64]) -> Option<f64> {
    let sd = describe::population_sd(reference)?;
    Some((describe::mean(current)? - describe::mean(reference)?) / sd.max(MIN_NORM_SD))
}

/// scipy `chisquare(cur_counts, ref_counts·n_cur/n_ref)`. A category absent from the
/// reference gives an infinite statistic and p = 0; a single category gives p = NaN
/// (zero degrees of freedom), as in scipy.
pub fn chisquare_vs_reference(counts: &CategoryCounts) -> TestResult {
    let n_ref: u64 = counts.reference.iter().sum();
    let n_cur: u64 = counts.current.iter().sum();
    let k_norm = n_cur as f64 / n_ref as f64;
    let statistic: f64 = counts
        .reference
        .iter()
        .zip(&counts.current)
        .map(|(&r, &c)| {
            let expected = r as f64 * k_norm;
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum();
    let pvalue = chi2_sf(statistic, counts.n_categories().saturating_sub(1));
    TestResult { statistic, pvalue }
}

/// Upper tail of χ²(df); NaN for df = 0 or a NaN statistic, 0 for an infinite one.
pub fn chi2_sf(statistic: f64, df: usize) -> f64 {
    if df == 0 || statistic.is_nan() {
        return f64::NAN;
    }
    if statistic == f64::INFINITY {
        return 0.0;
    }
    match ChiSquared::new(df as f64) {
        Ok(dist) => dist.sf(statistic),
        Err(_) => f64::NAN,
    }
}

/// Φ, the standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(n) => n.cdf(x),
        Err(_) => f64::NAN,
    }
}

/// Evidently's binary z-test: the first category (in sorted order) against the rest,
/// pooled two-proportion z of reference minus current, p = 2(1 − Φ(|z|)). Both sides
/// constant and equal gives statistic 0 and p = 1.
pub fn z_test_binary(counts: &CategoryCounts) -> TestResult {
    let n1: u64 = counts.reference.iter().sum();
    let n2: u64 = counts.current.iter().sum();
    let ref_present = counts.reference.iter().filter(|&&c| c > 0).count();
    let cur_present = counts.current.iter().filter(|&&c| c > 0).count();
    if counts.n_categories() == 1 && ref_present == 1 && cur_present == 1 {
        return TestResult { statistic: 0.0, pvalue: 1.0 };
    }
    let first_ref = counts.reference.first().copied().unwrap_or(0);
    let first_cur = counts.current.first().copied().unwrap_or(0);
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p1 = (n1 - first_ref) as f64 / n1f;
    let p2 = (n2 - first_cur) as f64 / n2f;
    let pooled = (p1 * n1f + p2 * n2f) / (n1f + n2f);
    let z = (p1 - p2) / (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    TestResult { statistic: z, pvalue: 2.0 * (1.0 - normal_cdf(z.abs())) }
}

fn check_sides(n_ref: usize, n_cur: usize) -> Result<(), StatsError> {
    if n_ref == 0 {
        return Err(StatsError::EmptyReference);
    }
    if n_cur == 0 {
        return Err(StatsError::EmptyCurrent);
    }
    Ok(())
}

fn finish(
    kind: ColumnKind,
    n_reference: usize,
    n_current: usize,
    method: DriftMethod,
    tests: Tests,
) -> Result<ColumnDrift, StatsError> {
    let score = match method {
        DriftMethod::Ks => tests.ks.map(|t| t.pvalue),
        DriftMethod::ChiSquare => tests.chisquare.map(|t| t.pvalue),
        DriftMethod::Z => tests.z.map(|t| t.pvalue),
        DriftMethod::JensenShannon => Some(tests.jensenshannon),
        DriftMethod::WassersteinNormed => tests.wasserstein_normed,
    }
    .ok_or(StatsError::Internal("default test was not computed"))?;
    Ok(ColumnDrift {
        kind,
        n_reference,
        n_current,
        ks: tests.ks,
        chisquare: tests.chisquare,
        z: tests.z,
        psi: tests.psi,
        jensenshannon: tests.jensenshannon,
        wasserstein_normed: tests.wasserstein_normed,
        mean_shift_sd: tests.mean_shift_sd,
        default_test: DefaultTest {
            method,
            score,
            threshold: method.threshold(),
            drift_detected: method.is_drift(score),
            enough_data: n_current >= MIN_CURRENT_FOR_VERDICT,
        },
    })
}

struct Tests {
    ks: Option<TestResult>,
    chisquare: Option<TestResult>,
    z: Option<TestResult>,
    psi: f64,
    jensenshannon: f64,
    wasserstein_normed: Option<f64>,
    mean_shift_sd: Option<f64>,
}

/// All drift statistics for a numerical column. Chi-square is added when the union has
/// at most 5 distinct values and z when it has at most 2, because the default rule can
/// pick them for such columns.
pub fn numerical_drift(reference: &[f64], current: &[f64]) -> Result<ColumnDrift, StatsError> {
    check_sides(reference.len(), current.len())?;
    let mut r = reference.to_vec();
    let mut c = current.to_vec();
    describe::sort_finite(&mut r)?;
    describe::sort_finite(&mut c)?;
    if r.iter().chain(&c).any(|v| v.is_infinite()) {
        return Err(StatsError::Infinite);
    }
    let counts = binning::numeric_category_counts(&r, &c);
    let n_distinct = counts.n_categories();
    let (ref_shares, cur_shares) = binning::numeric_binned_shares(&r, &c);
    let tests = Tests {
        ks: Some(ks_2samp(&r, &c)?),
        chisquare: (n_distinct <= 5).then(|| chisquare_vs_reference(&counts)),
        z: (n_distinct <= 2).then(|| z_test_binary(&counts)),
        psi: psi(&ref_shares, &cur_shares),
        jensenshannon: jensenshannon(&ref_shares, &cur_shares),
        wasserstein_normed: wasserstein_normed_sorted(&r, &c),
        mean_shift_sd: mean_shift_sd(&r, &c),
    };
    let method = default_method(ColumnKind::Numerical, r.len(), n_distinct);
    finish(ColumnKind::Numerical, r.len(), c.len(), method, tests)
}

/// All drift statistics for a categorical column (labels compared as exact strings).
pub fn categorical_drift<S: AsRef<str>>(reference: &[S], current: &[S]) -> Result<ColumnDrift, StatsError> {
    check_sides(reference.len(), current.len())?;
    let counts = binning::label_category_counts(reference, current);
    let n_distinct = counts.n_categories();
    let (ref_shares, cur_shares) = counts.shares();
    let tests = Tests {
        ks: None,
        chisquare: Some(chisquare_vs_reference(&counts)),
        z: (n_distinct <= 2).then(|| z_test_binary(&counts)),
        psi: psi(&ref_shares, &cur_shares),
        jensenshannon: jensenshannon(&ref_shares, &cur_shares),
        wasserstein_normed: None,
        mean_shift_sd: None,
    };
    let method = default_method(ColumnKind::Categorical, reference.len(), n_distinct);
    finish(ColumnKind::Categorical, reference.len(), current.len(), method, tests)
}

/// Data-set drift: the share of drifted columns, and whether it reaches 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DatasetDrift {
    pub share_drifted: f64,
    pub drift_detected: bool,
}

/// Over the columns that produced a result; no columns means no drift.
pub fn dataset_drift(column_drifted: &[bool]) -> DatasetDrift {
    if column_drifted.is_empty() {
        return DatasetDrift { share_drifted: 0.0, drift_detected: false };
    }
    let drifted = column_drifted.iter().filter(|&&d| d).count();
    let share = drifted as f64 / column_drifted.len() as f64;
    DatasetDrift { share_drifted: share, drift_detected: share >= DATASET_DRIFT_SHARE }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rule_follows_evidently() {
        use ColumnKind::*;
        assert_eq!(default_method(Numerical, 1000, 2), DriftMethod::Z);
        assert_eq!(default_method(Numerical, 1000, 5), DriftMethod::ChiSquare);
        assert_eq!(default_method(Numerical, 1000, 6), DriftMethod::Ks);
        assert_eq!(default_method(Categorical, 10, 3), DriftMethod::ChiSquare);
        assert_eq!(default_method(Numerical, 1001, 5), DriftMethod::JensenShannon);
        assert_eq!(default_method(Numerical, 1001, 6), DriftMethod::WassersteinNormed);
        assert_eq!(default_method(Categorical, 1001, 2), DriftMethod::JensenShannon);
    }

    #[test]
    fn identical_columns_do_not_drift() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        let d = numerical_drift(&v, &v).expect("non-empty");
        assert_eq!(d.psi, 0.0);
        assert_eq!(d.jensenshannon, 0.0);
        assert_eq!(d.wasserstein_normed, Some(0.0));
        assert!(!d.default_test.drift_detected);
    }

    #[test]
    fn empty_side_is_an_error_not_a_panic() {
        assert_eq!(numerical_drift(&[], &[1.0]), Err(StatsError::EmptyReference));
        let empty: [&str; 0] = [];
        assert_eq!(categorical_drift(&["a"], &empty), Err(StatsError::EmptyCurrent));
    }

    #[test]
    fn wasserstein_of_shifted_points() {
        // scipy.stats.wasserstein_distance([0, 1], [1, 2]) == 1.0
        assert!((wasserstein_sorted(&[0.0, 1.0], &[1.0, 2.0]) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn dataset_share() {
        let d = dataset_drift(&[true, false]);
        assert_eq!(d.share_drifted, 0.5);
        assert!(d.drift_detected);
    }
}
