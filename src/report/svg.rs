//! Hand-written inline SVG charts for the HTML report: the confusion matrix as a heat map, the
//! reliability diagram, per-class precision/recall/F1 bars and the latency histogram. No
//! scripts and no external references: each chart is a self-contained `<svg>` element whose
//! size follows its `viewBox`, so it scales on screen and prints.

use std::fmt::Write as _;

use super::html::{escape_html, format_ms, truncate_chars};
use crate::eval::evaluation::LatencySummary;
use crate::eval::metrics::{ClassMetrics, Metrics};

/// Charts with more classes than this show a selection and say which.
pub const MAX_CHART_CLASSES: usize = 25;

const FONT: &str = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\"";
const BLUE: (u8, u8, u8) = (47, 109, 181);
const RED: (u8, u8, u8) = (200, 75, 49);
const PRECISION_COLOR: &str = "#4e79a7";
const RECALL_COLOR: &str = "#f28e2b";
const F1_COLOR: &str = "#59a14f";

/// A chart and, when it shows only part of the data, a sentence that says which part.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub svg: String,
    pub note: Option<String>,
}

fn open_svg(out: &mut String, width: f64, height: f64, label: &str) {
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" \
         aria-label=\"{}\" {FONT} font-size=\"11\">",
        escape_html(label)
    );
}

/// White blended towards `color` by `t` in [0, 1].
fn shade(color: (u8, u8, u8), t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |c: u8| (255.0 - (255.0 - c as f64) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(color.0), mix(color.1), mix(color.2))
}

/// Short counts for small cells: 999, 1.2k, 12k, 1.2M.
fn compact_count(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1_000..=9_999 => format!("{:.1}k", n as f64 / 1e3),
        10_000..=999_999 => format!("{}k", n / 1_000),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// Indices of the classes a chart shows: all of them up to [`MAX_CHART_CLASSES`], else those
/// with the most errors (missed records of the class plus records wrongly predicted as it),
/// ties broken by support, in the model's order.
pub fn confusion_selection(metrics: &Metrics) -> Vec<usize> {
    let k = metrics.classes.len();
    if k <= MAX_CHART_CLASSES {
        return (0..k).collect();
    }
    let mut errors = vec![0u64; k];
    for (i, row) in metrics.confusion.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            if i != j && i < k && j < k {
                errors[i] += count;
                errors[j] += count;
            }
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|&a, &b| {
        errors[b].cmp(&errors[a]).then(metrics.classes[b].support.cmp(&metrics.classes[a].support)).then(a.cmp(&b))
    });
    order.truncate(MAX_CHART_CLASSES);
    order.sort_unstable();
    order
}

/// The confusion matrix as a heat map: rows are true labels, columns predictions, each cell
/// shows its count and is shaded by its share of the true class's records (blue on the
/// diagonal, red off it, the square root of the share so that rare mistakes stay visible).
pub fn confusion_matrix(metrics: &Metrics) -> Chart {
    let shown = confusion_selection(metrics);
    let k = shown.len();
    let cell = (560.0 / k.max(1) as f64).clamp(20.0, 46.0);
    let names: Vec<String> = shown.iter().map(|&i| truncate_chars(&metrics.classes[i].label, 14)).collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as f64;
    let left = 34.0 + longest * 6.6;
    let top = 44.0 + longest * 6.6 * 0.72;
    let width = left + cell * k as f64 + 12.0;
    let height = top + cell * k as f64 + 12.0;
    let font = (cell * 0.42).min(12.0);
    let mut s = String::new();
    open_svg(&mut s, width, height, "Confusion matrix: rows are true labels, columns predicted labels");
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"14\" text-anchor=\"middle\" font-weight=\"600\">Predicted label</text>",
        left + cell * k as f64 / 2.0
    );
    let _ = write!(
        s,
        "<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" font-weight=\"600\">True label</text>",
        top + cell * k as f64 / 2.0
    );
    for (c, name) in names.iter().enumerate() {
        let x = left + cell * (c as f64 + 0.5);
        let _ = write!(
            s,
            "<text transform=\"translate({x:.1} {:.1}) rotate(-45)\" font-size=\"11\">{}</text>",
            top - 6.0,
            escape_html(name)
        );
        let y = top + cell * (c as f64 + 0.5) + 4.0;
        let _ =
            write!(s, "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\">{}</text>", left - 6.0, escape_html(name));
    }
    for (r, &i) in shown.iter().enumerate() {
        let row = metrics.confusion.get(i).map(Vec::as_slice).unwrap_or(&[]);
        let row_total: u64 = row.iter().sum();
        for (c, &j) in shown.iter().enumerate() {
            let count = row.get(j).copied().unwrap_or(0);
            let share = if row_total > 0 { count as f64 / row_total as f64 } else { 0.0 };
            let (x, y) = (left + cell * c as f64, top + cell * r as f64);
            let (fill, t) = match (count, i == j) {
                (0, _) => ("#f6f7f9".to_string(), 0.0),
                (_, true) => (shade(BLUE, 0.08 + 0.92 * share), 0.08 + 0.92 * share),
                (_, false) => (shade(RED, 0.12 + 0.88 * share.sqrt()), 0.12 + 0.88 * share.sqrt()),
            };
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"{fill}\" \
                 stroke=\"#ffffff\" stroke-width=\"1\">"
            );
            if count > 0 {
                let _ = write!(
                    s,
                    "<title>true {} → predicted {}: {count} ({:.1}% of the class)</title>",
                    escape_html(&metrics.classes[i].label),
                    escape_html(&metrics.classes[j].label),
                    share * 100.0
                );
            }
            s.push_str("</rect>");
            if count > 0 {
                let text = if cell >= 40.0 || count < 1_000 { count.to_string() } else { compact_count(count) };
                let color = if t > 0.55 { "#ffffff" } else { "#1d2430" };
                let _ = write!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"{font:.1}\" fill=\"{color}\">{text}</text>",
                    x + cell / 2.0,
                    y + cell / 2.0 + font * 0.35
                );
            }
        }
    }
    s.push_str("</svg>");
    let note = (shown.len() < metrics.classes.len()).then(|| {
        format!(
            "Showing the {} of {} classes with the most errors (missed records plus false alarms); the others are left out.",
            shown.len(),
            metrics.classes.len()
        )
    });
    Chart { svg: s, note }
}

/// The reliability diagram of Guo et al.: per confidence bin, the share of right answers (blue
/// bars) against the diagonal of perfect calibration; the shaded gap reaches each bin's mean
/// confidence. Counts per bin run along the top.
pub fn reliability_diagram(metrics: &Metrics) -> String {
    let (width, height) = (480.0, 360.0);
    let (left, right, top, bottom) = (52.0, 14.0, 52.0, 46.0);
    let (pw, ph) = (width - left - right, height - top - bottom);
    let x = |v: f64| left + v.clamp(0.0, 1.0) * pw;
    let y = |v: f64| top + (1.0 - v.clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    open_svg(&mut s, width, height, "Reliability diagram");
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"600\">Reliability · ECE {:.4}</text>",
        width / 2.0,
        metrics.ece
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" fill=\"#5b6472\" text-anchor=\"end\">n</text>",
        left - 4.0,
        top - 8.0
    );
    for tick in 0..=5 {
        let v = tick as f64 / 5.0;
        let _ = write!(
            s,
            "<line x1=\"{l:.1}\" x2=\"{r:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e3e6eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#5b6472\">{v:.1}</text>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6472\">{v:.1}</text>",
            left - 6.0,
            y(v) + 4.0,
            top + ph + 16.0,
            l = left,
            r = left + pw,
            yy = y(v),
            xx = x(v)
        );
    }
    for bin in &metrics.reliability {
        let (x0, x1) = (x(bin.lower), x(bin.upper));
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\" fill=\"#5b6472\">{}</text>",
            (x0 + x1) / 2.0,
            top - 8.0,
            compact_count(bin.count)
        );
        if bin.count == 0 {
            continue;
        }
        let (acc, conf) = (bin.accuracy, bin.mean_confidence);
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#2f6db5\" stroke=\"#ffffff\">\
             <title>confidence {:.3}–{:.3}: {} predictions, accuracy {:.3}, mean confidence {:.3}</title></rect>",
            x0,
            y(acc),
            x1 - x0,
            y(0.0) - y(acc),
            bin.lower,
            bin.upper,
            bin.count,
            acc,
            conf
        );
        let (g0, g1) = (y(acc.max(conf)), y(acc.min(conf)));
        if g1 - g0 > 0.5 {
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{g0:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#c84b31\" fill-opacity=\"0.28\" \
                 stroke=\"#c84b31\" stroke-opacity=\"0.7\" stroke-width=\"0.8\"/>",
                x0 + 0.5,
                x1 - x0 - 1.0,
                g1 - g0
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1d2430\" stroke-dasharray=\"5 4\" stroke-width=\"1.2\"/>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    let _ = write!(
        s,
        "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{pw:.1}\" height=\"{ph:.1}\" fill=\"none\" stroke=\"#9aa3af\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">Confidence (top probability)</text>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">Accuracy</text>",
        left + pw / 2.0,
        height - 10.0,
        top + ph / 2.0
    );
    // Legend, top left inside the plot.
    let (lx, ly) = (left + 10.0, top + 12.0);
    let _ = write!(
        s,
        "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#2f6db5\"/><text x=\"{:.1}\" y=\"{ly:.1}\">accuracy</text>\
         <rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"#c84b31\" fill-opacity=\"0.28\" stroke=\"#c84b31\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">gap to mean confidence</text>\
         <line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1d2430\" stroke-dasharray=\"5 4\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\">perfect calibration</text>",
        ly - 9.0,
        lx + 15.0,
        ly + 7.0,
        lx + 15.0,
        ly + 16.0,
        lx + 10.0,
        ly + 29.0,
        ly + 29.0,
        lx + 15.0,
        ly + 33.0
    );
    s.push_str("</svg>");
    s
}

/// Which classes the per-class bars show: all up to [`MAX_CHART_CLASSES`], else the ones with
/// the lowest F1 (lowest first).
pub fn class_bar_selection(classes: &[ClassMetrics]) -> Vec<usize> {
    if classes.len() <= MAX_CHART_CLASSES {
        return (0..classes.len()).collect();
    }
    let mut order: Vec<usize> = (0..classes.len()).collect();
    order.sort_by(|&a, &b| {
        classes[a].f1.total_cmp(&classes[b].f1).then(classes[b].support.cmp(&classes[a].support)).then(a.cmp(&b))
    });
    order.truncate(MAX_CHART_CLASSES);
    order
}

/// Horizontal bars of precision, recall and F1 per class, with the values at the right.
pub fn class_bars(classes: &[ClassMetrics]) -> Chart {
    let shown = class_bar_selection(classes);
    let names: Vec<String> = shown.iter().map(|&i| truncate_chars(&classes[i].label, 18)).collect();
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(1) as f64;
    let left = 16.0 + longest * 6.6;
    let (bar_w, bar_h, gap, top) = (300.0, 6.0, 9.0, 40.0);
    let group = bar_h * 3.0 + gap;
    let width = left + bar_w + 170.0;
    let height = top + group * shown.len() as f64 + 26.0;
    let mut s = String::new();
    open_svg(&mut s, width, height, "Precision, recall and F1 per class");
    for (i, (name, color)) in
        [("precision", PRECISION_COLOR), ("recall", RECALL_COLOR), ("F1", F1_COLOR)].iter().enumerate()
    {
        let lx = left + i as f64 * 95.0;
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"6\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"15\">{name}</text>",
            lx + 14.0
        );
    }
    for tick in 0..=4 {
        let v = tick as f64 / 4.0;
        let xx = left + v * bar_w;
        let _ = write!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e3e6eb\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6472\">{v:.2}</text>",
            top - 6.0,
            top + group * shown.len() as f64,
            top + group * shown.len() as f64 + 14.0
        );
    }
    for (row, (&i, name)) in shown.iter().zip(&names).enumerate() {
        let c = &classes[i];
        let y0 = top + group * row as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y0 + bar_h * 1.5 + 4.0,
            escape_html(name)
        );
        for (b, (value, color)) in
            [(c.precision, PRECISION_COLOR), (c.recall, RECALL_COLOR), (c.f1, F1_COLOR)].iter().enumerate()
        {
            let w = value.clamp(0.0, 1.0) * bar_w;
            let _ = write!(
                s,
                "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{bar_h:.1}\" fill=\"{color}\"/>",
                y0 + bar_h * b as f64
            );
        }
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#3a4250\">P {:.3} · R {:.3} · F1 {:.3}</text>",
            left + bar_w + 8.0,
            y0 + bar_h * 1.5 + 4.0,
            c.precision,
            c.recall,
            c.f1
        );
    }
    s.push_str("</svg>");
    let note = (shown.len() < classes.len())
        .then(|| format!("Showing the {} of {} classes with the lowest F1, lowest first.", shown.len(), classes.len()));
    Chart { svg: s, note }
}

/// Bins of the latency histogram: `(lower_ms, width_ms, counts)`. The range runs from the
/// fastest record to the slowest, or to twice the p99 when the slowest is further out (the last
/// bar then also counts the slower records, which the note reports).
fn latency_bins(latencies: &[f64], p99_ms: f64) -> (f64, f64, Vec<u64>, u64) {
    const BINS: usize = 40;
    let lo = latencies.iter().copied().fold(f64::INFINITY, f64::min);
    let max = latencies.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut hi = if p99_ms.is_finite() && p99_ms > lo && max > 2.0 * p99_ms { 2.0 * p99_ms } else { max };
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / BINS as f64;
    let mut counts = vec![0u64; BINS];
    let mut beyond = 0;
    for &v in latencies {
        if v > hi {
            beyond += 1;
        }
        let b = (((v - lo) / width).floor().max(0.0) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    (lo, width, counts, beyond)
}

/// Histogram of per-record latency with the p50, p95 and p99 of `summary` marked.
pub fn latency_histogram(latencies_ms: &[f64], summary: &LatencySummary) -> Chart {
    let finite: Vec<f64> = latencies_ms.iter().copied().filter(|v| v.is_finite()).collect();
    let (width, height) = (560.0, 280.0);
    let (left, right, top, bottom) = (52.0, 16.0, 58.0, 44.0);
    let (pw, ph) = (width - left - right, height - top - bottom);
    let mut s = String::new();
    open_svg(&mut s, width, height, "Latency histogram");
    if finite.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">No latencies recorded.</text></svg>",
            width / 2.0,
            height / 2.0
        );
        return Chart { svg: s, note: None };
    }
    let (lo, bin_w, counts, beyond) = latency_bins(&finite, summary.p99_ms);
    let hi = lo + bin_w * counts.len() as f64;
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let x = |v: f64| left + ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * pw;
    let y = |c: f64| top + ph - c / peak * ph;
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"16\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"600\">Latency per record · {} records</text>",
        width / 2.0,
        finite.len()
    );
    for tick in 0..=4 {
        let c = peak * tick as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{left:.1}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e3e6eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#5b6472\">{}</text>",
            left + pw,
            left - 6.0,
            y(c) + 4.0,
            c.round() as u64,
            yy = y(c)
        );
        let v = lo + (hi - lo) * tick as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#5b6472\">{}</text>",
            x(v),
            top + ph + 16.0,
            escape_html(&format_ms(v))
        );
    }
    let bar_px = pw / counts.len() as f64;
    for (b, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let from = lo + bin_w * b as f64;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#7f96b2\">\
             <title>{}–{}: {count}</title></rect>",
            left + bar_px * b as f64 + 0.5,
            y(count as f64),
            (bar_px - 1.0).max(0.5),
            y(0.0) - y(count as f64),
            escape_html(&format_ms(from)),
            escape_html(&format_ms(from + bin_w))
        );
    }
    for (i, (name, value, color)) in
        [("p50", summary.p50_ms, "#2e7d32"), ("p95", summary.p95_ms, "#e08a00"), ("p99", summary.p99_ms, "#c62828")]
            .iter()
            .enumerate()
    {
        if !value.is_finite() {
            continue;
        }
        let xx = x(*value);
        let label_y = top - 26.0 + 11.0 * i as f64;
        let _ = write!(
            s,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"1.6\" stroke-dasharray=\"4 2\"/>\
             <text x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"{color}\" font-size=\"10\" text-anchor=\"{}\">{name} {}</text>",
            label_y + 2.0,
            top + ph,
            if xx > left + pw * 0.7 { xx - 3.0 } else { xx + 3.0 },
            if xx > left + pw * 0.7 { "end" } else { "start" },
            escape_html(&format_ms(*value))
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#9aa3af\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">Latency (ms)</text>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">Records</text></svg>",
        left + pw,
        top + ph,
        top + ph,
        left + pw / 2.0,
        height - 8.0,
        top + ph / 2.0
    );
    let note = (beyond > 0).then(|| {
        format!(
            "The axis stops at twice the p99; the last bar also counts the {beyond} slower record{} (up to {}).",
            if beyond == 1 { "" } else { "s" },
            format_ms(summary.max_ms.max(finite.iter().copied().fold(f64::NEG_INFINITY, f64::max)))
        )
    });
    Chart { svg: s, note }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shade_runs_from_white_to_the_colour() {
        assert_eq!(shade(BLUE, 0.0), "#ffffff");
        assert_eq!(shade(BLUE, 1.0), "#2f6db5");
    }

    #[test]
    fn compact_counts() {
        assert_eq!(compact_count(999), "999");
        assert_eq!(compact_count(1_234), "1.2k");
        assert_eq!(compact_count(12_345), "12k");
        assert_eq!(compact_count(2_500_000), "2.5M");
    }

    #[test]
    fn latency_bins_cap_the_axis_at_twice_the_p99_and_count_everything() {
        let mut v: Vec<f64> = (0..100).map(|i| 1.0 + i as f64 / 100.0).collect();
        v.push(50.0);
        let (lo, w, counts, beyond) = latency_bins(&v, 1.99);
        assert_eq!(lo, 1.0);
        assert!((lo + w * counts.len() as f64 - 3.98).abs() < 1e-9);
        assert_eq!(counts.iter().sum::<u64>(), 101);
        assert_eq!(beyond, 1);
        assert_eq!(*counts.last().unwrap(), 1);
        // All equal: one bar, no division by zero.
        let (_, w, counts, beyond) = latency_bins(&[2.0, 2.0, 2.0], 2.0);
        assert!(w > 0.0);
        assert_eq!(counts[0], 3);
        assert_eq!(beyond, 0);
    }
}
