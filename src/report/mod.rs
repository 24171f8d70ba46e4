//! The I/O layer of the `drift` and `abtest` CLI verbs: reads the CSV files, applies the
//! missing-value and column-kind rules, calls [`crate::stats`], and builds reports that
//! serialise to the JSON shape of issue 6 (`to_json`) or render as plain-language text
//! tables (`render_text`). Malformed input becomes a [`ReportError`] naming the file, the
//! row (file line, header = 1) and the column.

mod ab;
mod bench;
mod drift;
mod table;

use std::path::PathBuf;

pub use ab::{abtest_report, AbReport, AccuracySection, LatencySection, LatencySummary, PairedSection};
pub use bench::bench_stats;
pub use drift::{drift_report, ColumnOutcome, ColumnReport, DriftReport};
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
    #[error("{}: row {row}, column `{column}`: {message}", path.display())]
    BadValue { path: PathBuf, row: u64, column: String, message: String },
    #[error("{}: row {row}, column `request_id`: duplicate request id `{id}` (pairs are joined on it)", path.display())]
    DuplicateRequestId { path: PathBuf, row: u64, id: String },
    #[error("{} and {} share no request_id, so there are no pairs to compare", a.display(), b.display())]
    NoPairs { a: PathBuf, b: PathBuf },
    #[error("{context}: {source}")]
    Stats { context: String, source: StatsError },
}
