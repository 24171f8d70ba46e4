//! Descriptive statistics shared by the tests: sorting, mean, population sd, and numpy's
//! default ("linear") quantiles.

use super::StatsError;

/// Sorts ascending; rejects NaN (callers drop missing values first).
pub fn sort_finite(values: &mut [f64]) -> Result<(), StatsError> {
    if values.iter().any(|v| v.is_nan()) {
        return Err(StatsError::NotANumber);
    }
    values.sort_by(f64::total_cmp);
    Ok(())
}

/// Arithmetic mean; `None` for an empty slice.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Population standard deviation (ddof = 0), computed as numpy's `std` does.
pub fn population_sd(values: &[f64]) -> Option<f64> {
    let m = mean(values)?;
    let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    Some((ss / values.len() as f64).sqrt())
}

/// Quantile `q` in [0, 1] of an ascending-sorted slice with linear interpolation,
/// h = (n − 1)·q, exactly like numpy's default method (including its choice of
/// interpolation formula on each side of t = 0.5).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (n - 1) as f64 * q;
    let lo = h.floor();
    let t = h - lo;
    let lo = lo as usize;
    let a = sorted[lo];
    let b = sorted[(lo + 1).min(n - 1)];
    let diff = b - a;
    Some(if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t })
}

/// Median of an ascending-sorted slice (numpy `median`: mean of the two middle values).
pub fn median_sorted(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.percentile(v, [50, 95, 99]) -> 3.0, 8.8, 9.76
        assert_eq!(quantile_sorted(&v, 0.5), Some(3.0));
        assert!((quantile_sorted(&v, 0.95).unwrap_or(0.0) - 8.8).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.99).unwrap_or(0.0) - 9.76).abs() < 1e-12);
    }

    #[test]
    fn population_sd_uses_ddof_zero() {
        let sd = population_sd(&[1.0, 3.0]).unwrap_or(0.0);
        assert!((sd - 1.0).abs() < 1e-15);
    }
}
