//! Reading CSV files into columns of raw strings, with errors that name the file, the row
//! and the column, plus the missing-value rule shared by both verbs.

use std::path::{Path, PathBuf};

use super::ReportError;

/// Tokens read as a missing value (compared trimmed and case-insensitively): empty, NA,
/// N/A, NaN, null, None and ±inf, plus pandas' `<NA>` and `#N/A` spellings.
const MISSING_TOKENS: &[&str] = &[
    "",
    "na",
    "n/a",
    "nan",
    "-nan",
    "null",
    "none",
    "<na>",
    "#n/a",
    "inf",
    "+inf",
    "-inf",
    "infinity",
    "+infinity",
    "-infinity",
];

pub fn is_missing(raw: &str) -> bool {
    let t = raw.trim();
    MISSING_TOKENS.iter().any(|m| t.eq_ignore_ascii_case(m))
}

/// Parses a number the way the kind detection does; `None` if it is not one.
pub fn parse_number(raw: &str) -> Option<f64> {
    raw.trim().parse::<f64>().ok()
}

/// A CSV file held column by column.
#[derive(Debug, Clone)]
pub struct Table {
    pub path: PathBuf,
    pub headers: Vec<String>,
    /// `columns[c][r]`: the raw field of column c in data row r.
    pub columns: Vec<Vec<String>>,
    /// File line number of each data row (the header is line 1).
    pub lines: Vec<u64>,
}

impl Table {
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let file = std::fs::File::open(path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
        let mut reader =
            csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(std::io::BufReader::new(file));
        let csv_err = |e: csv::Error| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            ReportError::Csv { path: path.to_path_buf(), row: line, message: e.to_string() }
        };
        let headers: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(|h| h.trim().to_string()).collect();
        if headers.is_empty() || headers.iter().all(String::is_empty) {
            return Err(ReportError::EmptyFile { path: path.to_path_buf() });
        }
        let mut columns: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
        let mut lines = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_err(e)),
            }
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            if record.len() != headers.len() {
                let column = if record.len() < headers.len() {
                    headers[record.len()].clone()
                } else {
                    format!("(extra field {})", record.len())
                };
                return Err(ReportError::Ragged {
                    path: path.to_path_buf(),
                    row: line,
                    column,
                    expected: headers.len(),
                    found: record.len(),
                });
            }
            for (col, field) in columns.iter_mut().zip(record.iter()) {
                col.push(field.to_string());
            }
            lines.push(line);
        }
        Ok(Self { path: path.to_path_buf(), headers, columns, lines })
    }

    pub fn n_rows(&self) -> usize {
        self.lines.len()
    }

    pub fn column(&self, name: &str) -> Option<&[String]> {
        self.headers.iter().position(|h| h == name).map(|i| self.columns[i].as_slice())
    }

    /// The column, or an error naming the file, the missing column and what is there.
    pub fn require(&self, name: &str) -> Result<&[String], ReportError> {
        self.column(name).ok_or_else(|| ReportError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            found: self.headers.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tokens() {
        for t in ["", " NA ", "n/a", "NaN", "null", "None", "inf", "-Inf", "+inf"] {
            assert!(is_missing(t), "{t:?}");
        }
        for t in ["0", "nano", "a"] {
            assert!(!is_missing(t), "{t:?}");
        }
    }
}
