//! The I/O layer of the `drift` and `abtest` CLI verbs: reads the CSV files, applies the
//! missing-value and column-kind rules, calls [`crate::stats`], and builds reports that
//! serialise to the JSON shape of issue 6 (`to_json`) or render as plain-language text
//! tables (`render_text`). Malformed input becomes a [`ReportError`] naming the file, the
//! row (file line, header = 1) and the column.
//!
//! [`html`] renders an evaluation or a comparison as a self-contained HTML report (charts from
//! [`svg`]) or a Markdown summary.

mod ab;
mod drift;
pub mod html;
pub mod svg;
mod table;

use std::path::PathBuf;

pub use ab::{
    abtest_report, read_arm, AbOptions, AbReport, AccuracySection, Arm, KayentaOutcome, LatencySection, LatencySummary,
    PairedSection, Skipped,
};
pub use drift::{
    categorical_column, dataset_drift, drift_report, numerical_column, ColumnOutcome, ColumnReport, DriftReport,
};
pub use html::{comparison_html, comparison_markdown, evaluation_html, evaluation_markdown};
pub use table::{is_missing, parse_number, Table};

use crate::stats::StatsError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: the file is empty (no header row)", path.display())]
    EmptyFile { path: PathBuf },
    #[error("{}: no data rows after the header", path.display())]
    NoRows { path: PathBuf },
    #[error("{}: row {row}: malformed CSV: {message}", path.display())]
    Csv { path: PathBuf, row: u64, message: String },
    #[error("{}: row {row}, column `{column}`: expected {expected} fields, found {found}", path.display())]
    Ragged { path: PathBuf, row: u64, column: String, expected: usize, found: usize },
    #[error("{}: no column `{column}` (columns: {found})", path.display())]
    MissingColumn { path: PathBuf, column: String, found: String },
    #[error("{} has no `{column}` column, which {needed_for} (columns: {found})", path.display())]
    MissingColumnFor { path: PathBuf, column: String, needed_for: String, found: String },
    #[error(
        "{} and {} have nothing to compare: the accuracy comparison needs a `correct` column and the latency \
         comparison a `latency_ms` column in both files ({}: {a_found}; {}: {b_found})",
        a.display(), b.display(), a.display(), b.display()
    )]
    NothingToCompare { a: PathBuf, b: PathBuf, a_found: String, b_found: String },
    #[error("{}: row {row}, column `{column}`: {message}", path.display())]
    BadValue { path: PathBuf, row: u64, column: String, message: String },
    #[error("{}: row {row}, column `request_id`: duplicate request id `{id}` (pairs are joined on it)", path.display())]
    DuplicateRequestId { path: PathBuf, row: u64, id: String },
    #[error("{} and {} share no request_id, so there are no pairs to compare", a.display(), b.display())]
    NoPairs { a: PathBuf, b: PathBuf },
    #[error("{context}: {source}")]
    Stats { context: String, source: StatsError },
}
