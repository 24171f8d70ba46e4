//! Per-pixel decimation of time series, as rerun's time-series view does: a chart `columns` pixels
//! wide never draws more than two points per pixel column (the lowest and the highest value
//! falling in it, in time order), so a 3-hour per-second series costs the same to draw as a
//! 1-minute one and spikes are never averaged away.

/// Appends to `out` the points of `points` (sorted by x) to draw over `x_range` on a chart
/// `columns` pixels wide: all visible points if there are few, else each pixel column's minimum
/// and maximum in x order; plus the nearest point outside each edge, so the line reaches the
/// borders. Points with a non-finite y are skipped.
pub fn min_max_per_column(points: &[[f64; 2]], x_range: (f64, f64), columns: usize, out: &mut Vec<[f64; 2]>) {
    let (x0, x1) = x_range;
    if points.is_empty() || x0.is_nan() || x1.is_nan() || x1 <= x0 || columns == 0 {
        return;
    }
    let start = points.partition_point(|p| p[0] < x0);
    let end = points.partition_point(|p| p[0] <= x1);
    if start > 0 {
        out.push(points[start - 1]);
    }
    let visible = &points[start..end];
    if visible.len() <= 2 * columns {
        out.extend(visible.iter().filter(|p| p[1].is_finite()));
    } else {
        let width = (x1 - x0) / columns as f64;
        let mut column = usize::MAX;
        let mut low: Option<[f64; 2]> = None;
        let mut high: Option<[f64; 2]> = None;
        let flush = |low: &mut Option<[f64; 2]>, high: &mut Option<[f64; 2]>, out: &mut Vec<[f64; 2]>| match (
            low.take(),
            high.take(),
        ) {
            (Some(l), Some(h)) if l == h => out.push(l),
            (Some(l), Some(h)) if l[0] <= h[0] => out.extend([l, h]),
            (Some(l), Some(h)) => out.extend([h, l]),
            _ => {}
        };
        for p in visible.iter().filter(|p| p[1].is_finite()) {
            let c = (((p[0] - x0) / width) as usize).min(columns - 1);
            if c != column {
                flush(&mut low, &mut high, out);
                column = c;
            }
            if low.is_none_or(|l| p[1] < l[1]) {
                low = Some(*p);
            }
            if high.is_none_or(|h| p[1] > h[1]) {
                high = Some(*p);
            }
        }
        flush(&mut low, &mut high, out);
    }
    if end < points.len() {
        out.push(points[end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_points_are_kept_as_they_are() {
        let points: Vec<[f64; 2]> = (0..10).map(|i| [i as f64, (i * i) as f64]).collect();
        let mut out = Vec::new();
        min_max_per_column(&points, (2.0, 6.0), 100, &mut out);
        // The neighbours outside the range (x = 1 and x = 7) are included.
        assert_eq!(out, points[1..8].to_vec());
    }

    #[test]
    fn many_points_become_min_and_max_per_column_in_time_order() {
        // 10,000 points over x in [0, 10000), a spike at x = 5003.
        let points: Vec<[f64; 2]> =
            (0..10_000).map(|i| [i as f64, if i == 5003 { 1000.0 } else { (i % 7) as f64 }]).collect();
        let mut out = Vec::new();
        min_max_per_column(&points, (0.0, 9999.0), 100, &mut out);
        assert!(out.len() <= 2 * 100 + 2, "{} points", out.len());
        assert!(out.windows(2).all(|w| w[0][0] <= w[1][0]), "x order kept");
        assert!(out.contains(&[5003.0, 1000.0]), "the spike survives");
        let lows = out.iter().filter(|p| p[1] == 0.0).count();
        assert!(lows >= 99, "each column keeps its minimum ({lows})");
    }

    #[test]
    fn empty_or_degenerate_input_draws_nothing() {
        let mut out = Vec::new();
        min_max_per_column(&[], (0.0, 1.0), 10, &mut out);
        min_max_per_column(&[[0.0, 1.0]], (1.0, 1.0), 10, &mut out);
        min_max_per_column(&[[0.0, 1.0]], (0.0, 1.0), 0, &mut out);
        assert!(out.is_empty());
        min_max_per_column(&[[0.0, f64::NAN], [0.5, 2.0]], (0.0, 1.0), 10, &mut out);
        assert_eq!(out, vec![[0.5, 2.0]]);
    }
}
