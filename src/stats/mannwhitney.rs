//! Latency comparison of two arms: Mann-Whitney U (scipy `mannwhitneyu`, two-sided,
//! `method="auto"`: exact when either arm has at most 8 values and there are no ties,
//! otherwise normal approximation with continuity and tie correction), and the Kayenta
//! canary judgement on the Hodges-Lehmann shift B − A.
//!
//! The Hodges-Lehmann estimate is the median of all n_a·n_b differences b − a. Its 95%
//! interval is the distribution-free order-statistic interval [D(k), D(N+1−k)] with
//! k = max(1, ⌊N/2 − z₀.₉₇₅·√(N(n_a+n_b+1)/12)⌋). Kayenta (like R's `wilcox.test`) finds the
//! asymptotic bounds by root-finding instead; the two agree to within one order statistic,
//! and ours is reproducible exactly with numpy. Order statistics are found without
//! materialising the N differences (bisection over f64 values with an O(n_a + n_b) count),
//! so 10⁵ × 10⁵ requests stay fast.

use serde::Serialize;

use super::ab::Z_975;
use super::drift::normal_cdf;
use super::{describe, StatsError};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MannWhitney {
    /// U of arm A (scipy's `statistic` for `mannwhitneyu(a, b)`).
    pub u_a: f64,
    pub u_b: f64,
    pub pvalue: f64,
}

/// Two-sided Mann-Whitney U test of `a` against `b`.
pub fn mann_whitney_u(a: &[f64], b: &[f64]) -> Result<MannWhitney, StatsError> {
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
    let exact = (n1 <= 8 || n2 <= 8) && !has_ties;
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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kayenta {
    pub lower: f64,
    pub upper: f64,
    pub estimate: f64,
    pub verdict: KayentaVerdict,
}

/// Fraction of |estimate| that the interval must clear to call B high or low.
pub const KAYENTA_TOLERANCE: f64 = 0.25;

/// Hodges-Lehmann shift B − A with its 95% interval and Kayenta's High / Low / Pass.
pub fn kayenta(a: &[f64], b: &[f64]) -> Result<Kayenta, StatsError> {
    if a.is_empty() || b.is_empty() {
        return Err(StatsError::EmptySample("hodges-lehmann"));
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    describe::sort_finite(&mut a)?;
    describe::sort_finite(&mut b)?;
    if a.iter().chain(&b).any(|v| v.is_infinite()) {
        return Err(StatsError::Infinite);
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let total = a.len() as u64 * b.len() as u64;
    let estimate = if total % 2 == 1 {
        kth_difference(&a, &b, total / 2 + 1)
    } else {
        (kth_difference(&a, &b, total / 2) + kth_difference(&a, &b, total / 2 + 1)) / 2.0
    };
    let half_width = Z_975 * (na * nb * (na + nb + 1.0) / 12.0).sqrt();
    let k = ((total as f64 / 2.0 - half_width).floor().max(1.0) as u64).min(total);
    let lower = kth_difference(&a, &b, k);
    let upper = kth_difference(&a, &b, total + 1 - k);
    let critical = KAYENTA_TOLERANCE * estimate.abs();
    let verdict = if lower > critical {
        KayentaVerdict::High
    } else if upper < -critical {
        KayentaVerdict::Low
    } else {
        KayentaVerdict::Pass
    };
    Ok(Kayenta { lower, upper, estimate, verdict })
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
        // control 1..4, experiment 10..40: estimate 22.5, 95% interval [6, 39].
        let k = kayenta(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]).expect("valid");
        assert_eq!(k.estimate, 22.5);
        assert_eq!(k.lower, 6.0);
        assert_eq!(k.upper, 39.0);
        assert_eq!(k.verdict, KayentaVerdict::High);
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
