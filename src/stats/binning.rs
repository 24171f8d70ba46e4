//! The shared binning rule for PSI and Jensen-Shannon (Evidently 0.7's `get_binned_data`):
//! a numerical column whose *reference* has more than 20 distinct values is cut into
//! equal-width bins over the combined sample with numpy's "sturges" rule; anything else
//! gets one bin per distinct value of the union of both sides. Also the per-category
//! counts that the chi-square and z tests use.

use std::collections::BTreeMap;

/// Reference distinct-value count above which a numerical column is histogrammed.
pub const MAX_DISTINCT_FOR_CATEGORY_BINS: usize = 20;

/// Counts per category over the sorted union of both sides, aligned index by index.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryCounts {
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
}

impl CategoryCounts {
    pub fn n_categories(&self) -> usize {
        self.reference.len()
    }

    /// Shares of each category on each side (count / side size).
    pub fn shares(&self) -> (Vec<f64>, Vec<f64>) {
        (shares_of(&self.reference), shares_of(&self.current))
    }
}

fn shares_of(counts: &[u64]) -> Vec<f64> {
    let n: u64 = counts.iter().sum();
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

/// Number of distinct values in an ascending-sorted slice (0.0 and -0.0 count once).
pub fn distinct_sorted(sorted: &[f64]) -> usize {
    let mut count = 0;
    let mut last: Option<f64> = None;
    for &v in sorted {
        if last != Some(v) {
            count += 1;
            last = Some(v);
        }
    }
    count
}

/// Category counts for two ascending-sorted numerical samples (each distinct value is a category).
pub fn numeric_category_counts(reference: &[f64], current: &[f64]) -> CategoryCounts {
    numeric_categories(reference, current).1
}

/// The distinct values of the union of two ascending-sorted samples, ascending, with their
/// counts on each side.
pub fn numeric_categories(reference: &[f64], current: &[f64]) -> (Vec<f64>, CategoryCounts) {
    let (mut i, mut j) = (0, 0);
    let mut values = Vec::new();
    let mut out = CategoryCounts { reference: Vec::new(), current: Vec::new() };
    while i < reference.len() || j < current.len() {
        let key = match (reference.get(i), current.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        let (si, sj) = (i, j);
        while i < reference.len() && reference[i] == key {
            i += 1;
        }
        while j < current.len() && current[j] == key {
            j += 1;
        }
        values.push(key);
        out.reference.push((i - si) as u64);
        out.current.push((j - sj) as u64);
    }
    (values, out)
}

/// Category counts for two samples of labels, categories in byte order.
pub fn label_category_counts<S: AsRef<str>>(reference: &[S], current: &[S]) -> CategoryCounts {
    label_categories(reference, current).1
}

/// The labels of the union of both samples in byte order, with their counts on each side.
pub fn label_categories<'a, S: AsRef<str>>(reference: &'a [S], current: &'a [S]) -> (Vec<&'a str>, CategoryCounts) {
    let mut map: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for v in reference {
        map.entry(v.as_ref()).or_default().0 += 1;
    }
    for v in current {
        map.entry(v.as_ref()).or_default().1 += 1;
    }
    let counts =
        CategoryCounts { reference: map.values().map(|c| c.0).collect(), current: map.values().map(|c| c.1).collect() };
    (map.into_keys().collect(), counts)
}

/// Bin edges by numpy's `histogram_bin_edges(combined, bins="sturges")`.
pub fn sturges_edges(min: f64, max: f64, n_total: usize) -> Vec<f64> {
    let (mut first, mut last) = (min, max);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let ptp = max - min;
    let width = ptp / ((n_total as f64).log2() + 1.0);
    let n_bins = if width > 0.0 { ((last - first) / width).ceil().max(1.0) as usize } else { 1 };
    let step = (last - first) / n_bins as f64;
    let mut edges: Vec<f64> = (0..=n_bins).map(|i| i as f64 * step + first).collect();
    if let Some(e) = edges.last_mut() {
        *e = last;
    }
    edges
}

/// Histogram counts of a sample over `edges`: bins are [a, b) except the last, [a, b].
pub fn histogram(values: &[f64], edges: &[f64]) -> Vec<u64> {
    let n_bins = edges.len().saturating_sub(1);
    let mut counts = vec![0u64; n_bins];
    if n_bins == 0 {
        return counts;
    }
    let (first, last) = (edges[0], edges[n_bins]);
    for &v in values {
        if v < first || v > last {
            continue;
        }
        let idx = edges.partition_point(|&e| e <= v).saturating_sub(1).min(n_bins - 1);
        counts[idx] += 1;
    }
    counts
}

/// Shares per bin for a numerical column (both sides ascending-sorted), following the rule above.
pub fn numeric_binned_shares(reference: &[f64], current: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let binned = numeric_binning(reference, current);
    (binned.reference_shares, binned.current_shares)
}

/// The bins a numerical column is cut into for PSI and Jensen-Shannon.
#[derive(Debug, Clone, PartialEq)]
pub enum NumericBins {
    /// Equal-width bins over the combined sample: `edges.len() - 1` bins, [a, b) except the last, [a, b].
    Edges(Vec<f64>),
    /// One bin per distinct value of the union, ascending.
    Values(Vec<f64>),
}

/// A numerical column's bins and each side's share per bin.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericBinning {
    pub bins: NumericBins,
    pub reference_shares: Vec<f64>,
    pub current_shares: Vec<f64>,
}

/// Bins and shares for two non-empty ascending-sorted samples, following the rule above. Empty
/// sides give no bins (callers reject them before).
pub fn numeric_binning(reference: &[f64], current: &[f64]) -> NumericBinning {
    if reference.is_empty() || current.is_empty() {
        return NumericBinning {
            bins: NumericBins::Values(Vec::new()),
            reference_shares: Vec::new(),
            current_shares: Vec::new(),
        };
    }
    if distinct_sorted(reference) > MAX_DISTINCT_FOR_CATEGORY_BINS {
        let min = reference[0].min(current[0]);
        let max = reference[reference.len() - 1].max(current[current.len() - 1]);
        let edges = sturges_edges(min, max, reference.len() + current.len());
        NumericBinning {
            reference_shares: shares_of_n(&histogram(reference, &edges), reference.len()),
            current_shares: shares_of_n(&histogram(current, &edges), current.len()),
            bins: NumericBins::Edges(edges),
        }
    } else {
        let (values, counts) = numeric_categories(reference, current);
        let (reference_shares, current_shares) = counts.shares();
        NumericBinning { bins: NumericBins::Values(values), reference_shares, current_shares }
    }
}

fn shares_of_n(counts: &[u64], n: usize) -> Vec<f64> {
    counts.iter().map(|&c| c as f64 / n as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sturges_matches_numpy_for_simple_range() {
        // numpy.histogram_bin_edges(np.arange(32.0), bins="sturges") has 6 bins of 31/6.
        let edges = sturges_edges(0.0, 31.0, 32);
        assert_eq!(edges.len(), 7);
        assert_eq!(edges[6], 31.0);
        let counts = histogram(&(0..32).map(f64::from).collect::<Vec<_>>(), &edges);
        assert_eq!(counts.iter().sum::<u64>(), 32);
    }

    #[test]
    fn categories_are_aligned_over_the_union() {
        let c = label_category_counts(&["a", "b", "b"], &["b", "c"]);
        assert_eq!(c.reference, vec![1, 2, 0]);
        assert_eq!(c.current, vec![0, 1, 1]);
        let n = numeric_category_counts(&[0.0, 1.0, 1.0], &[-0.0, 2.0]);
        assert_eq!(n.reference, vec![1, 2, 0]);
        assert_eq!(n.current, vec![1, 0, 1]);
    }
}
