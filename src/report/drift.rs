//! `modeldeck drift`: per-column drift of a current CSV against a reference CSV.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::table::{is_missing, parse_number, Table};
use super::ReportError;
use crate::stats::{self, ColumnDrift, ColumnKind, DatasetDrift, DriftMethod};

/// Result for one column: its statistics, or why there are none (e.g. an empty side).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnOutcome {
    Drift(Box<ColumnReport>),
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnReport {
    pub n_missing_reference: usize,
    pub n_missing_current: usize,
    pub drift: ColumnDrift,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    pub reference: PathBuf,
    pub current: PathBuf,
    /// In the order of the reference file (or of `--column`).
    pub columns: Vec<(String, ColumnOutcome)>,
    pub dataset_drift: DatasetDrift,
}

/// Drift of every selected column. `columns` empty means every column present in both
/// files; names in `categorical` are treated as categorical even if they look numerical.
pub fn drift_report(
    reference: &Path,
    current: &Path,
    columns: &[String],
    categorical: &[String],
) -> Result<DriftReport, ReportError> {
    let ref_table = Table::read(reference)?;
    let cur_table = Table::read(current)?;
    for name in columns.iter().chain(categorical) {
        ref_table.require(name)?;
        cur_table.require(name)?;
    }
    let selected: Vec<String> = if columns.is_empty() { ref_table.headers.clone() } else { columns.to_vec() };
    let mut out = Vec::with_capacity(selected.len());
    for name in selected {
        let outcome = match cur_table.column(&name) {
            None => ColumnOutcome::Error(format!("column is not in {}", current.display())),
            Some(cur) => {
                let refc = ref_table.column(&name).unwrap_or(&[]);
                column_outcome(refc, cur, categorical.contains(&name))
            }
        };
        out.push((name, outcome));
    }
    let dataset_drift = dataset_drift(out.iter().map(|(_, o)| o));
    Ok(DriftReport { reference: reference.to_path_buf(), current: current.to_path_buf(), columns: out, dataset_drift })
}

/// Data-set drift over the columns that produced statistics (errors are left out).
pub fn dataset_drift<'a>(outcomes: impl IntoIterator<Item = &'a ColumnOutcome>) -> DatasetDrift {
    let flags: Vec<bool> = outcomes
        .into_iter()
        .filter_map(|o| match o {
            ColumnOutcome::Drift(c) => Some(c.drift.default_test.drift_detected),
            ColumnOutcome::Error(_) => None,
        })
        .collect();
    stats::dataset_drift(&flags)
}

/// Numerical when every non-missing value on both sides parses as a number.
fn column_outcome(reference: &[String], current: &[String], categorical: bool) -> ColumnOutcome {
    let is_number = |s: &String| is_missing(s) || parse_number(s).is_some();
    if categorical || !reference.iter().chain(current).all(is_number) {
        return categorical_column(
            reference.iter().map(|s| Some(s.as_str())),
            current.iter().map(|s| Some(s.as_str())),
        );
    }
    let number = |s: &String| if is_missing(s) { None } else { parse_number(s) };
    numerical_column(reference.iter().map(number), current.iter().map(number))
}

/// Drift of a numerical column whose missing values are `None`: the statistics of the values
/// present, with the counts of missing ones. The `drift` verb and the Monitor both come here, so
/// a window held in memory and the same window exported as CSV give the same numbers (NaN and
/// ±inf are written as `NaN`/`inf`, which the CSV side reads as missing: map them to `None`).
pub fn numerical_column(
    reference: impl IntoIterator<Item = Option<f64>>,
    current: impl IntoIterator<Item = Option<f64>>,
) -> ColumnOutcome {
    let (ref_vals, n_missing_reference) = present(reference);
    let (cur_vals, n_missing_current) = present(current);
    outcome(stats::numerical_drift(&ref_vals, &cur_vals), n_missing_reference, n_missing_current)
}

/// Drift of a categorical column: `None` and the missing-value tokens (`""`, `NA`, `None`, ...)
/// are missing, as in the CSV files; other labels are compared as exact strings.
pub fn categorical_column<'a>(
    reference: impl IntoIterator<Item = Option<&'a str>>,
    current: impl IntoIterator<Item = Option<&'a str>>,
) -> ColumnOutcome {
    let label = |v: Option<&'a str>| v.filter(|s| !is_missing(s));
    let (ref_vals, n_missing_reference) = present(reference.into_iter().map(label));
    let (cur_vals, n_missing_current) = present(current.into_iter().map(label));
    outcome(stats::categorical_drift(&ref_vals, &cur_vals), n_missing_reference, n_missing_current)
}

fn present<T>(values: impl IntoIterator<Item = Option<T>>) -> (Vec<T>, usize) {
    let mut missing = 0;
    let kept = values
        .into_iter()
        .filter_map(|v| {
            missing += usize::from(v.is_none());
            v
        })
        .collect();
    (kept, missing)
}

fn outcome(
    result: Result<ColumnDrift, stats::StatsError>,
    n_missing_reference: usize,
    n_missing_current: usize,
) -> ColumnOutcome {
    match result {
        Ok(drift) => ColumnOutcome::Drift(Box::new(ColumnReport { n_missing_reference, n_missing_current, drift })),
        Err(e) => ColumnOutcome::Error(e.to_string()),
    }
}

impl DriftReport {
    /// `{"columns": {NAME: {...} | {"error": "..."}}, "dataset_drift": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut columns = Map::new();
        for (name, outcome) in &self.columns {
            let v = match outcome {
                ColumnOutcome::Error(msg) => json!({ "error": msg }),
                ColumnOutcome::Drift(c) => {
                    let mut v = serde_json::to_value(&c.drift).unwrap_or(Value::Null);
                    if let Value::Object(m) = &mut v {
                        m.insert("n_missing_reference".into(), c.n_missing_reference.into());
                        m.insert("n_missing_current".into(), c.n_missing_current.into());
                    }
                    v
                }
            };
            columns.insert(name.clone(), v);
        }
        json!({
            "columns": columns,
            "dataset_drift": serde_json::to_value(self.dataset_drift).unwrap_or(Value::Null),
        })
    }

    /// A table with one verdict per column and a data-set verdict underneath.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Drift of {} against reference {}", self.current.display(), self.reference.display());
        let _ = writeln!(
            s,
            "{:<24} {:<11} {:>8} {:>8} {:>9}  {:<18} {:>10} {:>9}  verdict",
            "column", "kind", "n ref", "n cur", "missing", "test", "score", "threshold"
        );
        for (name, outcome) in &self.columns {
            match outcome {
                ColumnOutcome::Error(msg) => {
                    let _ = writeln!(s, "{name:<24} error: {msg}");
                }
                ColumnOutcome::Drift(c) => {
                    let d = &c.drift;
                    let t = &d.default_test;
                    let kind = match d.kind {
                        ColumnKind::Numerical => "numerical",
                        ColumnKind::Categorical => "categorical",
                    };
                    let test = match t.method {
                        DriftMethod::Ks | DriftMethod::ChiSquare | DriftMethod::Z => {
                            format!("{} p-value", t.method.name())
                        }
                        _ => t.method.name().to_string(),
                    };
                    let verdict = match (t.enough_data, t.drift_detected) {
                        (false, _) => format!(
                            "not enough data (fewer than {} current values)",
                            stats::drift::MIN_CURRENT_FOR_VERDICT
                        ),
                        (true, true) => "DRIFT".to_string(),
                        (true, false) => "no drift".to_string(),
                    };
                    let _ = writeln!(
                        s,
                        "{:<24} {:<11} {:>8} {:>8} {:>9}  {:<18} {:>10} {:>9}  {}",
                        name,
                        kind,
                        d.n_reference,
                        d.n_current,
                        format!("{}/{}", c.n_missing_reference, c.n_missing_current),
                        test,
                        format_score(t.score),
                        t.threshold,
                        verdict
                    );
                }
            }
        }
        let dd = &self.dataset_drift;
        let n_ok = self.columns.iter().filter(|(_, o)| matches!(o, ColumnOutcome::Drift(_))).count();
        let drifted = (dd.share_drifted * n_ok as f64).round() as usize;
        let _ = writeln!(
            s,
            "\nData set: {drifted} of {n_ok} columns drifted (share {:.2}; threshold {}): {}",
            dd.share_drifted,
            stats::drift::DATASET_DRIFT_SHARE,
            if dd.drift_detected { "DATA SET DRIFT" } else { "no data-set drift" }
        );
        s
    }
}

fn format_score(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.2e}")
    } else {
        format!("{x:.4}")
    }
}
