//! Paired (shadow) comparison of two models on the same requests: the 2×2 correctness
//! table, McNemar's test exact (binomial on the discordant pairs) and χ² with and without
//! continuity correction (statsmodels `mcnemar`), and agreement rates.

use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};

use super::drift::chi2_sf;
use super::TestResult;

/// `[[both right, A right B wrong], [A wrong B right, both wrong]]`.
pub type CorrectnessTable = [[u64; 2]; 2];

/// Builds the table from per-pair correctness of A and B.
pub fn correctness_table(pairs: impl IntoIterator<Item = (bool, bool)>) -> CorrectnessTable {
    let mut t = [[0u64; 2]; 2];
    for (a, b) in pairs {
        t[usize::from(!a)][usize::from(!b)] += 1;
    }
    t
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct McNemar {
    pub exact: TestResult,
    pub chi2_corrected: TestResult,
    pub chi2_uncorrected: TestResult,
}

/// McNemar's test on the discordant cells b = A right/B wrong and c = A wrong/B right.
/// Exact: statistic min(b, c), p = min(1, 2·BinomCDF(min; b + c, ½)). χ²: (|b − c| − k)²/(b + c)
/// with k = 1 (corrected) or 0. With no discordant pairs every p is 1 and every statistic 0
/// (statsmodels returns NaN/∞ there).
pub fn mcnemar(table: &CorrectnessTable) -> McNemar {
    let (b, c) = (table[0][1], table[1][0]);
    let n = b + c;
    let low = b.min(c);
    if n == 0 {
        let nothing = TestResult { statistic: 0.0, pvalue: 1.0 };
        return McNemar {
            exact: TestResult { statistic: low as f64, pvalue: 1.0 },
            chi2_corrected: nothing,
            chi2_uncorrected: nothing,
        };
    }
    let exact_p = match Binomial::new(0.5, n) {
        Ok(dist) => (2.0 * dist.cdf(low)).min(1.0),
        Err(_) => f64::NAN,
    };
    let diff = (b as f64 - c as f64).abs();
    let chi = |corr: f64| {
        let statistic = (diff - corr).powi(2) / n as f64;
        TestResult { statistic, pvalue: chi2_sf(statistic, 1) }
    };
    McNemar {
        exact: TestResult { statistic: low as f64, pvalue: exact_p },
        chi2_corrected: chi(1.0),
        chi2_uncorrected: chi(0.0),
    }
}

/// Share of pairs on which both models were right or both wrong.
pub fn correctness_agreement(table: &CorrectnessTable) -> f64 {
    let n: u64 = table.iter().flatten().sum();
    (table[0][0] + table[1][1]) as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_statsmodels() {
        // statsmodels mcnemar([[10, 7], [2, 5]], exact=True) -> statistic 2, p 0.1796875
        let t = [[10, 7], [2, 5]];
        let m = mcnemar(&t);
        assert_eq!(m.exact.statistic, 2.0);
        assert!((m.exact.pvalue - 0.1796875).abs() < 1e-12);
        // corrected: (5-1)^2/9
        assert!((m.chi2_corrected.statistic - 16.0 / 9.0).abs() < 1e-12);
        assert!((correctness_agreement(&t) - 15.0 / 24.0).abs() < 1e-15);
    }

    #[test]
    fn table_layout() {
        let t = correctness_table([(true, true), (true, false), (false, true), (false, false)]);
        assert_eq!(t, [[1, 1], [1, 1]]);
    }
}
