//! `modeldeck abtest`: accuracy, latency and (with `--paired`) shadow statistics of two arms
//! read from CSVs with columns `request_id,prediction,label,correct,latency_ms`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::table::Table;
use super::ReportError;
use crate::stats::{self, describe, ArmAccuracy, CorrectnessTable, Kayenta, KayentaVerdict, MannWhitney, TestResult};

/// One request as logged by an arm.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmRow {
    pub request_id: String,
    pub prediction: String,
    pub label: String,
    pub correct: bool,
    pub latency_ms: f64,
    pub line: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracySection {
    pub a: ArmAccuracy,
    pub b: ArmAccuracy,
    pub diff_b_minus_a: f64,
    /// Pooled z of A minus B.
    pub ztest: TestResult,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySection {
    pub a: LatencySummary,
    pub b: LatencySummary,
    pub mann_whitney: MannWhitney,
    pub kayenta: Kayenta,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairedSection {
    pub n_pairs: usize,
    pub table: CorrectnessTable,
    pub mcnemar_exact: TestResult,
    pub mcnemar_chi2_corrected: TestResult,
    pub mcnemar_chi2_uncorrected: TestResult,
    pub correctness_agreement_rate: f64,
    pub prediction_agreement_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbReport {
    pub accuracy: AccuracySection,
    pub latency: LatencySection,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedSection>,
}

const COLUMNS: [&str; 5] = ["request_id", "prediction", "label", "correct", "latency_ms"];

/// Reads one arm's CSV, checking every value it needs.
pub fn read_arm(path: &Path) -> Result<Vec<ArmRow>, ReportError> {
    let table = Table::read(path)?;
    let cols: Vec<&[String]> = COLUMNS.iter().map(|c| table.require(c)).collect::<Result<_, _>>()?;
    if table.n_rows() == 0 {
        return Err(ReportError::NoRows { path: path.to_path_buf() });
    }
    let bad = |row: u64, column: &str, message: String| ReportError::BadValue {
        path: path.to_path_buf(),
        row,
        column: column.to_string(),
        message,
    };
    let mut rows = Vec::with_capacity(table.n_rows());
    for (r, &line) in table.lines.iter().enumerate() {
        let correct_raw = cols[3][r].trim();
        let correct = match correct_raw.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "1.0" => true,
            "0" | "false" | "no" | "0.0" => false,
            _ => return Err(bad(line, "correct", format!("`{correct_raw}` is not 1/0/true/false"))),
        };
        let lat_raw = cols[4][r].trim();
        let latency_ms = match lat_raw.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => return Err(bad(line, "latency_ms", format!("`{lat_raw}` is not a finite number"))),
        };
        rows.push(ArmRow {
            request_id: cols[0][r].clone(),
            prediction: cols[1][r].clone(),
            label: cols[2][r].clone(),
            correct,
            latency_ms,
            line,
        });
    }
    Ok(rows)
}

fn stats_err(context: &str) -> impl Fn(stats::StatsError) -> ReportError + '_ {
    move |source| ReportError::Stats { context: context.to_string(), source }
}

fn latency_summary(latencies: &[f64]) -> Result<LatencySummary, ReportError> {
    let mut sorted = latencies.to_vec();
    describe::sort_finite(&mut sorted).map_err(stats_err("latency"))?;
    let q = |p: f64| describe::quantile_sorted(&sorted, p).unwrap_or(f64::NAN);
    Ok(LatencySummary {
        n: sorted.len(),
        mean: describe::mean(&sorted).unwrap_or(f64::NAN),
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
    })
}

/// The A/B report of two arms' CSVs; `paired` adds the shadow analysis joined on request id.
pub fn abtest_report(a: &Path, b: &Path, paired: bool) -> Result<AbReport, ReportError> {
    let rows_a = read_arm(a)?;
    let rows_b = read_arm(b)?;
    ab_report_from_rows(a, &rows_a, b, &rows_b, paired)
}

pub(crate) fn ab_report_from_rows(
    a: &Path,
    rows_a: &[ArmRow],
    b: &Path,
    rows_b: &[ArmRow],
    paired: bool,
) -> Result<AbReport, ReportError> {
    let count = |rows: &[ArmRow]| rows.iter().filter(|r| r.correct).count() as u64;
    let (ca, na) = (count(rows_a), rows_a.len() as u64);
    let (cb, nb) = (count(rows_b), rows_b.len() as u64);
    let acc_a = ArmAccuracy::new(ca, na).map_err(stats_err("accuracy of A"))?;
    let acc_b = ArmAccuracy::new(cb, nb).map_err(stats_err("accuracy of B"))?;
    let accuracy = AccuracySection {
        diff_b_minus_a: acc_b.accuracy - acc_a.accuracy,
        ztest: stats::two_proportion_ztest(ca, na, cb, nb).map_err(stats_err("accuracy z-test"))?,
        a: acc_a,
        b: acc_b,
    };
    let lat_a: Vec<f64> = rows_a.iter().map(|r| r.latency_ms).collect();
    let lat_b: Vec<f64> = rows_b.iter().map(|r| r.latency_ms).collect();
    let latency = LatencySection {
        a: latency_summary(&lat_a)?,
        b: latency_summary(&lat_b)?,
        mann_whitney: stats::mann_whitney_u(&lat_a, &lat_b).map_err(stats_err("mann-whitney"))?,
        kayenta: stats::kayenta(&lat_a, &lat_b).map_err(stats_err("kayenta"))?,
    };
    let paired = if paired { Some(paired_section(a, rows_a, b, rows_b)?) } else { None };
    Ok(AbReport { accuracy, latency, paired })
}

fn index_by_id<'r>(path: &Path, rows: &'r [ArmRow]) -> Result<HashMap<&'r str, &'r ArmRow>, ReportError> {
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        if map.insert(r.request_id.as_str(), r).is_some() {
            return Err(ReportError::DuplicateRequestId {
                path: path.to_path_buf(),
                row: r.line,
                id: r.request_id.clone(),
            });
        }
    }
    Ok(map)
}

fn paired_section(a: &Path, rows_a: &[ArmRow], b: &Path, rows_b: &[ArmRow]) -> Result<PairedSection, ReportError> {
    index_by_id(a, rows_a)?;
    let by_id_b = index_by_id(b, rows_b)?;
    let pairs: Vec<(&ArmRow, &ArmRow)> =
        rows_a.iter().filter_map(|ra| by_id_b.get(ra.request_id.as_str()).map(|rb| (ra, *rb))).collect();
    if pairs.is_empty() {
        return Err(ReportError::NoPairs { a: a.to_path_buf(), b: b.to_path_buf() });
    }
    let table = stats::correctness_table(pairs.iter().map(|(ra, rb)| (ra.correct, rb.correct)));
    let m = stats::mcnemar(&table);
    let same_prediction = pairs.iter().filter(|(ra, rb)| ra.prediction == rb.prediction).count();
    Ok(PairedSection {
        n_pairs: pairs.len(),
        table,
        mcnemar_exact: m.exact,
        mcnemar_chi2_corrected: m.chi2_corrected,
        mcnemar_chi2_uncorrected: m.chi2_uncorrected,
        correctness_agreement_rate: stats::correctness_agreement(&table),
        prediction_agreement_rate: same_prediction as f64 / pairs.len() as f64,
    })
}

fn format_p(p: f64) -> String {
    if p.is_nan() {
        "n/a".to_string()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn significance(p: f64) -> &'static str {
    if p < 0.05 {
        "significant at 5%"
    } else {
        "not significant at 5%"
    }
}

impl AbReport {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Plain-language verdicts beside the numbers.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let acc = &self.accuracy;
        let _ = writeln!(s, "Accuracy");
        for (name, arm) in [("A", &acc.a), ("B", &acc.b)] {
            let _ = writeln!(
                s,
                "  {name}: {:.2}% ({}/{}), 95% Wilson interval {:.2}%..{:.2}%",
                100.0 * arm.accuracy,
                arm.correct,
                arm.n,
                100.0 * arm.wilson_ci95[0],
                100.0 * arm.wilson_ci95[1]
            );
        }
        let points = 100.0 * acc.diff_b_minus_a;
        let direction = if points >= 0.0 { "more" } else { "less" };
        let _ = writeln!(
            s,
            "  B is {:.1} points {direction} accurate, p = {}: {}",
            points.abs(),
            format_p(acc.ztest.pvalue),
            significance(acc.ztest.pvalue)
        );
        let lat = &self.latency;
        let _ = writeln!(s, "\nLatency (ms)      n        mean       p50       p95       p99");
        for (name, l) in [("A", &lat.a), ("B", &lat.b)] {
            let _ =
                writeln!(s, "  {name}      {:>8} {:>11.2} {:>9.2} {:>9.2} {:>9.2}", l.n, l.mean, l.p50, l.p95, l.p99);
        }
        let mw = &lat.mann_whitney;
        let _ = writeln!(
            s,
            "  Mann-Whitney U (A) = {}, p = {}: latency distributions differ {}",
            mw.u_a,
            format_p(mw.pvalue),
            if mw.pvalue < 0.05 { "(significant at 5%)" } else { "not significantly at 5%" }
        );
        let k = &lat.kayenta;
        let verdict = match k.verdict {
            KayentaVerdict::High => "High: B is slower than A beyond the 25% tolerance",
            KayentaVerdict::Low => "Low: B is faster than A beyond the 25% tolerance",
            KayentaVerdict::Pass => "Pass: no latency change beyond the 25% tolerance",
        };
        let _ = writeln!(
            s,
            "  Kayenta: shift B - A = {:+.2} ms, 95% interval [{:+.2}, {:+.2}]: {verdict}",
            k.estimate, k.lower, k.upper
        );
        if let Some(p) = &self.paired {
            let t = p.table;
            let _ = writeln!(s, "\nPaired (shadow) on {} shared request ids", p.n_pairs);
            let _ = writeln!(s, "                 B right   B wrong");
            let _ = writeln!(s, "  A right      {:>9} {:>9}", t[0][0], t[0][1]);
            let _ = writeln!(s, "  A wrong      {:>9} {:>9}", t[1][0], t[1][1]);
            let _ = writeln!(
                s,
                "  McNemar exact p = {} (chi2 corrected p = {}, uncorrected p = {}): the models' accuracies differ {}",
                format_p(p.mcnemar_exact.pvalue),
                format_p(p.mcnemar_chi2_corrected.pvalue),
                format_p(p.mcnemar_chi2_uncorrected.pvalue),
                if p.mcnemar_exact.pvalue < 0.05 { "(significant at 5%)" } else { "not significantly at 5%" }
            );
            let _ = writeln!(
                s,
                "  Agreement: predictions {:.1}%, correctness {:.1}%",
                100.0 * p.prediction_agreement_rate,
                100.0 * p.correctness_agreement_rate
            );
        }
        s
    }
}
