//! `modeldeck abtest`: accuracy, latency and (with `--paired`) shadow statistics of two arms
//! read from CSVs. Each analysis runs when both files have the columns it needs:
//! - accuracy (Wilson intervals, two-proportion z-test): `correct` (1/0, true/false, yes/no);
//! - latency (percentiles, Mann-Whitney U, Kayenta's judgement): `latency_ms`;
//! - paired, only with `--paired`: `request_id` to join the requests, `correct` for
//!   McNemar's tests and `prediction` for the agreement rate; a missing one is an error.
//!
//! An unpaired analysis whose column is missing is left out: its section is absent from the
//! JSON (as `paired` is without `--paired`) and `skipped` lists each one with the reason; the
//! text report says so in place of the section. Without the columns for any analysis the
//! report is an error that says what each one needs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::table::Table;
use super::ReportError;
use crate::stats::{
    self, describe, ArmAccuracy, CorrectnessTable, Kayenta, KayentaOptions, KayentaVerdict, MannWhitney, StatsError,
    TestResult,
};

/// One arm's CSV: the columns the analyses use, each only if the file has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub path: PathBuf,
    pub headers: Vec<String>,
    /// File line of each data row (header = 1).
    pub lines: Vec<u64>,
    pub request_id: Option<Vec<String>>,
    pub prediction: Option<Vec<String>>,
    /// `None` per row where the label has not arrived (an empty or NA `correct`).
    pub correct: Option<Vec<Option<bool>>>,
    pub latency_ms: Option<Vec<f64>>,
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

/// Kayenta's judgement, or why there is none: `{"error": ...}` in the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum KayentaOutcome {
    Judged(Kayenta),
    NoInterval { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySection {
    pub a: LatencySummary,
    pub b: LatencySummary,
    pub mann_whitney: MannWhitney,
    pub kayenta: KayentaOutcome,
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

/// An analysis left out because a file lacks its column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub analysis: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<AccuracySection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairedSection>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// What `abtest` computes besides the always-on parts.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AbOptions {
    /// Join the arms on `request_id` (shadow deployment) and add McNemar's tests.
    pub paired: bool,
    pub kayenta: KayentaOptions,
}

const ACCURACY: &str = "the accuracy comparison needs";
const LATENCY: &str = "the latency comparison needs";

/// Reads one arm's CSV, checking every value of the columns the analyses use.
pub fn read_arm(path: &Path) -> Result<Arm, ReportError> {
    let table = Table::read(path)?;
    if table.n_rows() == 0 {
        return Err(ReportError::NoRows { path: path.to_path_buf() });
    }
    let bad = |row: u64, column: &str, message: String| ReportError::BadValue {
        path: path.to_path_buf(),
        row,
        column: column.to_string(),
        message,
    };
    let correct = match table.column("correct") {
        None => None,
        Some(raw) => Some(
            raw.iter()
                .zip(&table.lines)
                .map(|(v, &line)| match v.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "1.0" => Ok(Some(true)),
                    "0" | "false" | "no" | "0.0" => Ok(Some(false)),
                    _ if super::table::is_missing(v) => Ok(None),
                    _ => Err(bad(line, "correct", format!("`{}` is not 1/0/true/false", v.trim()))),
                })
                .collect::<Result<Vec<Option<bool>>, _>>()?,
        ),
    };
    let latency_ms = match table.column("latency_ms") {
        None => None,
        Some(raw) => Some(
            raw.iter()
                .zip(&table.lines)
                // An empty latency (a failed request) is left out of the latency sample.
                .filter(|(v, _)| !v.trim().is_empty())
                .map(|(v, &line)| match v.trim().parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(bad(line, "latency_ms", format!("`{}` is not a finite number", v.trim()))),
                })
                .collect::<Result<Vec<f64>, _>>()?,
        ),
    };
    Ok(Arm {
        path: path.to_path_buf(),
        request_id: table.column("request_id").map(<[String]>::to_vec),
        prediction: table.column("prediction").map(<[String]>::to_vec),
        correct,
        latency_ms,
        headers: table.headers,
        lines: table.lines,
    })
}

impl Arm {
    fn missing(&self, column: &str, needed_for: &str) -> ReportError {
        ReportError::MissingColumnFor {
            path: self.path.clone(),
            column: column.to_string(),
            needed_for: needed_for.to_string(),
            found: self.headers.join(", "),
        }
    }

    /// The column from both arms, or the error naming the first file without it.
    fn both<'s, T>(
        a: &'s Arm,
        b: &'s Arm,
        column: &str,
        needed_for: &str,
        get: impl Fn(&Arm) -> Option<&Vec<T>>,
    ) -> Result<(&'s [T], &'s [T]), ReportError> {
        match (get(a), get(b)) {
            (Some(x), Some(y)) => Ok((x, y)),
            (None, _) => Err(a.missing(column, needed_for)),
            (_, None) => Err(b.missing(column, needed_for)),
        }
    }
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

/// The A/B report of two arms' CSVs (A = control, B = candidate).
pub fn abtest_report(a: &Path, b: &Path, options: &AbOptions) -> Result<AbReport, ReportError> {
    options.kayenta.validate().map_err(stats_err("kayenta"))?;
    let arm_a = read_arm(a)?;
    let arm_b = read_arm(b)?;
    ab_report_from_arms(&arm_a, &arm_b, options)
}

pub(crate) fn ab_report_from_arms(a: &Arm, b: &Arm, options: &AbOptions) -> Result<AbReport, ReportError> {
    let mut skipped = Vec::new();
    let mut skip = |analysis: &str, reason: String| {
        skipped.push(Skipped { analysis: analysis.to_string(), reason });
    };
    let accuracy = match Arm::both(a, b, "correct", ACCURACY, |r| r.correct.as_ref()) {
        // Rows whose label has not arrived yet do not count.
        Ok((ca, cb)) => {
            let labelled = |c: &[Option<bool>]| c.iter().flatten().copied().collect::<Vec<bool>>();
            let (ca, cb) = (labelled(ca), labelled(cb));
            if ca.is_empty() || cb.is_empty() {
                let arm = if ca.is_empty() { a } else { b };
                skip("accuracy", format!("{} has no labelled row yet (every `correct` is empty)", arm.path.display()));
                None
            } else {
                Some(accuracy_section(&ca, &cb)?)
            }
        }
        Err(e) => {
            skip("accuracy", e.to_string());
            None
        }
    };
    let latency = match Arm::both(a, b, "latency_ms", LATENCY, |r| r.latency_ms.as_ref()) {
        Ok((la, lb)) => Some(latency_section(la, lb, &options.kayenta)?),
        Err(e) => {
            skip("latency", e.to_string());
            None
        }
    };
    let paired = if options.paired { Some(paired_section(a, b)?) } else { None };
    if accuracy.is_none() && latency.is_none() && paired.is_none() {
        return Err(ReportError::NothingToCompare {
            a: a.path.clone(),
            b: b.path.clone(),
            a_found: a.headers.join(", "),
            b_found: b.headers.join(", "),
        });
    }
    Ok(AbReport { accuracy, latency, paired, skipped })
}

fn accuracy_section(correct_a: &[bool], correct_b: &[bool]) -> Result<AccuracySection, ReportError> {
    let count = |c: &[bool]| c.iter().filter(|&&x| x).count() as u64;
    let (ca, na) = (count(correct_a), correct_a.len() as u64);
    let (cb, nb) = (count(correct_b), correct_b.len() as u64);
    let acc_a = ArmAccuracy::new(ca, na).map_err(stats_err("accuracy of A"))?;
    let acc_b = ArmAccuracy::new(cb, nb).map_err(stats_err("accuracy of B"))?;
    Ok(AccuracySection {
        diff_b_minus_a: acc_b.accuracy - acc_a.accuracy,
        ztest: stats::two_proportion_ztest(ca, na, cb, nb).map_err(stats_err("accuracy z-test"))?,
        a: acc_a,
        b: acc_b,
    })
}

fn latency_section(lat_a: &[f64], lat_b: &[f64], options: &KayentaOptions) -> Result<LatencySection, ReportError> {
    let kayenta = match stats::kayenta_with(lat_a, lat_b, options) {
        Ok(k) => KayentaOutcome::Judged(k),
        Err(e @ StatsError::AllTied) => KayentaOutcome::NoInterval { error: e.to_string() },
        Err(e) => return Err(stats_err("kayenta")(e)),
    };
    Ok(LatencySection {
        a: latency_summary(lat_a)?,
        b: latency_summary(lat_b)?,
        mann_whitney: stats::mann_whitney_u(lat_a, lat_b).map_err(stats_err("mann-whitney"))?,
        kayenta,
    })
}

const PAIRED_JOIN: &str = "--paired needs to join requests";
const PAIRED_MCNEMAR: &str = "--paired needs for McNemar's tests";
const PAIRED_AGREEMENT: &str = "--paired needs for the prediction agreement rate";

fn index_by_id<'r>(arm: &Arm, ids: &'r [String]) -> Result<HashMap<&'r str, usize>, ReportError> {
    let mut map = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if map.insert(id.as_str(), i).is_some() {
            return Err(ReportError::DuplicateRequestId {
                path: arm.path.clone(),
                row: arm.lines.get(i).copied().unwrap_or(0),
                id: id.clone(),
            });
        }
    }
    Ok(map)
}

fn paired_section(a: &Arm, b: &Arm) -> Result<PairedSection, ReportError> {
    let (ids_a, ids_b) = Arm::both(a, b, "request_id", PAIRED_JOIN, |r| r.request_id.as_ref())?;
    let (correct_a, correct_b) = Arm::both(a, b, "correct", PAIRED_MCNEMAR, |r| r.correct.as_ref())?;
    let (pred_a, pred_b) = Arm::both(a, b, "prediction", PAIRED_AGREEMENT, |r| r.prediction.as_ref())?;
    index_by_id(a, ids_a)?;
    let by_id_b = index_by_id(b, ids_b)?;
    let pairs: Vec<(usize, usize)> =
        ids_a.iter().enumerate().filter_map(|(i, id)| by_id_b.get(id.as_str()).map(|&j| (i, j))).collect();
    if pairs.is_empty() {
        return Err(ReportError::NoPairs { a: a.path.clone(), b: b.path.clone() });
    }
    // McNemar needs both answers labelled; unlabelled pairs still count for agreement.
    let table = stats::correctness_table(pairs.iter().filter_map(|&(i, j)| Some((correct_a[i]?, correct_b[j]?))));
    let m = stats::mcnemar(&table);
    let same_prediction = pairs.iter().filter(|&&(i, j)| pred_a[i] == pred_b[j]).count();
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

use crate::stats::sequential::format_p;

/// Kayenta's judgement in a sentence, with the settings it used.
fn kayenta_text(outcome: &KayentaOutcome) -> String {
    let k = match outcome {
        KayentaOutcome::Judged(k) => k,
        KayentaOutcome::NoInterval { error } => return error.clone(),
    };
    let tolerance = format!("{}% tolerance", 100.0 * k.tolerance);
    let verdict = match k.verdict {
        KayentaVerdict::High => format!("High: B is slower than A beyond the {tolerance}"),
        KayentaVerdict::Low => format!("Low: B is faster than A beyond the {tolerance}"),
        KayentaVerdict::Pass => format!("Pass: no latency change beyond the {tolerance}"),
    };
    format!(
        "shift B - A = {:+.2} ms, {}% interval [{:+.2}, {:+.2}]: {verdict}",
        k.estimate,
        100.0 * k.confidence,
        k.lower,
        k.upper
    )
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
        let skipped = |s: &mut String, analysis: &str| {
            for skip in self.skipped.iter().filter(|k| k.analysis == analysis) {
                let _ = writeln!(s, "  skipped: {}", skip.reason);
            }
        };
        let _ = writeln!(s, "Accuracy");
        skipped(&mut s, "accuracy");
        if let Some(acc) = &self.accuracy {
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
        }
        let _ = writeln!(s, "\nLatency (ms)      n        mean       p50       p95       p99");
        skipped(&mut s, "latency");
        if let Some(lat) = &self.latency {
            for (name, l) in [("A", &lat.a), ("B", &lat.b)] {
                let _ = writeln!(
                    s,
                    "  {name}      {:>8} {:>11.2} {:>9.2} {:>9.2} {:>9.2}",
                    l.n, l.mean, l.p50, l.p95, l.p99
                );
            }
            let mw = &lat.mann_whitney;
            let _ = writeln!(
                s,
                "  Mann-Whitney U (A) = {}, p = {}: {}",
                mw.u_a,
                format_p(mw.pvalue),
                if mw.pvalue < 0.05 {
                    "the latency distributions differ (significant at 5%)"
                } else {
                    "no significant difference in latency at 5%"
                }
            );
            let _ = writeln!(s, "  Kayenta: {}", kayenta_text(&lat.kayenta));
        }
        if let Some(p) = &self.paired {
            let t = p.table;
            let _ = writeln!(s, "\nPaired (shadow) on {} shared request ids", p.n_pairs);
            let _ = writeln!(s, "                 B right   B wrong");
            let _ = writeln!(s, "  A right      {:>9} {:>9}", t[0][0], t[0][1]);
            let _ = writeln!(s, "  A wrong      {:>9} {:>9}", t[1][0], t[1][1]);
            let _ = writeln!(
                s,
                "  McNemar exact p = {} (chi2 corrected p = {}, uncorrected p = {}): {}",
                format_p(p.mcnemar_exact.pvalue),
                format_p(p.mcnemar_chi2_corrected.pvalue),
                format_p(p.mcnemar_chi2_uncorrected.pvalue),
                if p.mcnemar_exact.pvalue < 0.05 {
                    "the models' accuracies differ (significant at 5%)"
                } else {
                    "no significant difference in accuracy at 5%"
                }
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
