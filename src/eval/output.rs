//! The output file of a batch run (CSV or JSON lines, one row per record in data-set order) and
//! resuming it: a run killed mid-way (even `kill -9`) continues where it stopped, without
//! duplicating or losing a row. Each batch is written with one `write` and flushed; on resume a
//! torn last row (the process died inside that write) is cut off, and the rows before it say which
//! records are done. A sidecar file (`OUT.modeldeck.json`) names the model, the data set and the
//! run, so a resume with other ones is refused instead of mixing two runs in one file.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::pipeline::Answer;

/// Columns of the CSV output, in order.
pub const CSV_COLUMNS: [&str; 10] =
    ["index", "id", "input", "label", "prediction", "confidence", "top_k", "latency_ms", "error", "embedding"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Jsonl,
}

impl OutputFormat {
    /// From the file's extension: `.csv`, or `.jsonl`/`.ndjson`.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: expected a .csv or .jsonl output file", .0.display())]
    Format(PathBuf),
    #[error("{} already exists: pass --resume to continue that run, or --overwrite to start again", .0.display())]
    Exists(PathBuf),
    #[error("{}: cannot resume: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },
}

/// What the sidecar records about a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's id: prediction-log rows are `batch-RUN-INDEX`.
    pub run: String,
    pub model: String,
    pub data: String,
    pub records: usize,
    /// Drift applied to images, if any.
    pub drift: Option<String>,
    pub seed: u64,
    /// [`crate::eval::Dataset::fingerprint`] of the data set (absent in older sidecars).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Where a batch run's answers go.
pub struct BatchWriter {
    path: PathBuf,
    file: File,
    format: OutputFormat,
    /// Data-set indices the file already holds (a resumed run skips them).
    done: HashSet<usize>,
    info: RunInfo,
}

/// The sidecar of `path`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".modeldeck.json");
    path.with_file_name(name)
}

impl BatchWriter {
    /// Creates `path` (refusing to replace an existing file unless `overwrite`), or with
    /// `resume` continues the run it holds, which must be of the same model and data set (its
    /// run id is kept).
    pub fn open(path: &Path, info: RunInfo, resume: bool, overwrite: bool) -> Result<Self, OutputError> {
        let format = OutputFormat::from_path(path).ok_or_else(|| OutputError::Format(path.into()))?;
        let io = |source| OutputError::Io { path: path.into(), source };
        let sidecar = sidecar_path(path);
        if resume && path.exists() {
            let resume_error = |reason: String| OutputError::Resume { path: path.into(), reason };
            let old: RunInfo =
                std::fs::read(&sidecar).map_err(|e| resume_error(format!("{}: {e}", sidecar.display()))).and_then(
                    |b| serde_json::from_slice(&b).map_err(|e| resume_error(format!("{}: {e}", sidecar.display()))),
                )?;
            for (what, was, now) in [("model", &old.model, &info.model), ("data set", &old.data, &info.data)] {
                if was != now {
                    return Err(resume_error(format!("it is a run of {what} {was}, not {now}")));
                }
            }
            if (&old.drift, old.seed, old.records) != (&info.drift, info.seed, info.records) {
                return Err(resume_error("the drift, seed or number of records changed since it started".into()));
            }
            if let (Some(was), Some(now)) = (&old.fingerprint, &info.fingerprint) {
                if was != now {
                    return Err(resume_error(
                        "the data set's records changed since it started (edited rows or replaced files)".into(),
                    ));
                }
            }
            let bytes = std::fs::read(path).map_err(io)?;
            let (done, good_len) = match format {
                OutputFormat::Csv => scan_csv(&bytes),
                OutputFormat::Jsonl => scan_jsonl(&bytes),
            };
            let mut file = OpenOptions::new().write(true).open(path).map_err(io)?;
            file.set_len(good_len as u64).map_err(io)?;
            file.seek(SeekFrom::End(0)).map_err(io)?;
            let mut writer = Self { path: path.into(), file, format, done, info: old };
            if good_len == 0 && format == OutputFormat::Csv {
                writer.write_header()?;
            }
            return Ok(writer);
        }
        if path.exists() && !overwrite && !resume {
            return Err(OutputError::Exists(path.into()));
        }
        // The sidecar first: a run cut off between the two leaves a sidecar and no output, which
        // --resume starts afresh, rather than an output that no run claims.
        let json = serde_json::to_vec_pretty(&info).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&sidecar, json).map_err(|source| OutputError::Io { path: sidecar.clone(), source })?;
        let file = File::create(path).map_err(io)?;
        let mut writer = Self { path: path.into(), file, format, done: HashSet::new(), info };
        if format == OutputFormat::Csv {
            writer.write_header()?;
        }
        Ok(writer)
    }

    fn write_header(&mut self) -> Result<(), OutputError> {
        let mut csv = csv::Writer::from_writer(Vec::new());
        let header = csv.write_record(CSV_COLUMNS).and_then(|_| csv.into_inner().map_err(|e| e.into_error().into()));
        let bytes = header.map_err(|e| OutputError::Io { path: self.path.clone(), source: e.into() })?;
        self.file.write_all(&bytes).map_err(|source| OutputError::Io { path: self.path.clone(), source })
    }

    pub fn done(&self) -> &HashSet<usize> {
        &self.done
    }

    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a batch's rows with one write, then flushes it to the file.
    pub fn write(&mut self, answers: &[Answer]) -> Result<(), OutputError> {
        let bytes = match self.format {
            OutputFormat::Csv => csv_rows(answers),
            OutputFormat::Jsonl => Ok(jsonl_rows(answers)),
        }
        .map_err(|source| OutputError::Io { path: self.path.clone(), source })?;
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(|source| OutputError::Io { path: self.path.clone(), source })?;
        self.done.extend(answers.iter().map(|a| a.outcome.index));
        Ok(())
    }
}

/// A JSON-lines row (f32 scores print as f32, not widened to f64).
#[derive(Serialize)]
struct JsonRow<'a> {
    index: usize,
    id: &'a str,
    input: &'a str,
    label: Option<&'a str>,
    prediction: Option<&'a str>,
    confidence: Option<f32>,
    top_k: &'a [crate::model::LabelScore],
    latency_ms: Option<f64>,
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding: Option<&'a [f32]>,
}

fn csv_rows(answers: &[Answer]) -> std::io::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    for a in answers {
        let o = &a.outcome;
        let answered = o.error.is_none();
        let row = [
            o.index.to_string(),
            o.id.clone(),
            o.input.clone(),
            o.label.clone().unwrap_or_default(),
            o.prediction.clone().unwrap_or_default(),
            if answered && o.prediction.is_some() { o.confidence.to_string() } else { String::new() },
            if o.top.is_empty() { String::new() } else { serde_json::to_string(&o.top).unwrap_or_default() },
            if answered { format!("{:.3}", o.latency_ms) } else { String::new() },
            o.error.clone().unwrap_or_default(),
            a.embedding.as_ref().map(|e| serde_json::to_string(e).unwrap_or_default()).unwrap_or_default(),
        ];
        csv.write_record(&row)?;
    }
    csv.into_inner().map_err(|e| e.into_error())
}

fn jsonl_rows(answers: &[Answer]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in answers {
        let o = &a.outcome;
        let row = JsonRow {
            index: o.index,
            id: &o.id,
            input: &o.input,
            label: o.label.as_deref(),
            prediction: o.prediction.as_deref(),
            confidence: o.prediction.as_ref().map(|_| o.confidence),
            top_k: &o.top,
            latency_ms: o.error.is_none().then_some(o.latency_ms),
            error: o.error.as_deref(),
            embedding: a.embedding.as_deref(),
        };
        // Serialising plain strings and numbers does not fail; were it to, no torn row is left.
        let start = out.len();
        match serde_json::to_writer(&mut out, &row) {
            Ok(()) => out.push(b'\n'),
            Err(_) => out.truncate(start),
        }
    }
    out
}

/// The indices of the complete rows of a CSV output, and the length of the file up to the end
/// of the last complete row (a torn row after it is cut off).
fn scan_csv(bytes: &[u8]) -> (HashSet<usize>, usize) {
    let mut done = HashSet::new();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut good_len = 0;
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        let end = reader.position().byte() as usize;
        // A row is complete when it ends with its newline and has every column.
        if end == 0 || end > bytes.len() || bytes[end - 1] != b'\n' || record.len() != CSV_COLUMNS.len() {
            break;
        }
        if first {
            first = false;
            if record.get(0) == Some(b"index".as_slice()) {
                good_len = end;
                continue;
            }
        }
        let Some(index) = record.get(0).and_then(|b| std::str::from_utf8(b).ok()).and_then(|s| s.parse().ok()) else {
            break;
        };
        done.insert(index);
        good_len = end;
    }
    (done, good_len)
}

/// As [`scan_csv`] for JSON lines.
fn scan_jsonl(bytes: &[u8]) -> (HashSet<usize>, usize) {
    let mut done = HashSet::new();
    let mut good_len = 0;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.last() != Some(&b'\n') {
            break;
        }
        let index = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v.get("index").and_then(serde_json::Value::as_u64));
        let Some(index) = index else { break };
        done.insert(index as usize);
        good_len += line.len();
    }
    (done, good_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::evaluation::ExampleOutcome;
    use crate::monitor::Features;

    fn answer(index: usize, text: &str) -> Answer {
        Answer {
            outcome: ExampleOutcome {
                index,
                id: format!("r{index}"),
                input: text.into(),
                is_image: false,
                label: Some("pos".into()),
                prediction: Some("neg".into()),
                confidence: 0.75,
                top: vec![crate::model::LabelScore { label: "neg".into(), score: 0.75 }],
                latency_ms: 1.5,
                error: None,
            },
            probs: vec![0.75, 0.25],
            embedding: None,
            features: Features::default(),
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            run: "r1".into(),
            model: "m".into(),
            data: "d.csv".into(),
            records: 10,
            drift: None,
            seed: 0,
            fingerprint: Some("crc32:1:10".into()),
        }
    }

    #[test]
    fn a_torn_last_row_is_cut_and_the_rest_resumes() {
        for ext in ["csv", "jsonl"] {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(format!("out.{ext}"));
            let mut w = BatchWriter::open(&path, info(), false, false).unwrap();
            // A text with a newline and a quote inside stays one CSV row.
            w.write(&[answer(0, "one\n\"two\""), answer(1, "three")]).unwrap();
            drop(w);
            let whole = std::fs::read(&path).unwrap();
            // The process died inside the next write: half a row.
            let mut torn = whole.clone();
            let mut more = match ext {
                "csv" => csv_rows(&[answer(2, "four, five")]).unwrap(),
                _ => jsonl_rows(&[answer(2, "four, five")]),
            };
            more.truncate(more.len() / 2);
            torn.extend_from_slice(&more);
            std::fs::write(&path, &torn).unwrap();

            assert!(matches!(BatchWriter::open(&path, info(), false, false), Err(OutputError::Exists(_))));
            let mut other = info();
            other.model = "m2".into();
            let err = BatchWriter::open(&path, other, true, false).err().unwrap().to_string();
            assert!(err.contains("model m, not m2"), "{err}");
            let mut edited = info();
            edited.fingerprint = Some("crc32:2:10".into());
            let err = BatchWriter::open(&path, edited, true, false).err().unwrap().to_string();
            assert!(err.contains("records changed"), "{err}");

            let mut w = BatchWriter::open(&path, info(), true, false).unwrap();
            assert_eq!(w.done(), &HashSet::from([0, 1]), "{ext}");
            assert_eq!(std::fs::read(&path).unwrap(), whole, "{ext}: the torn row is cut off");
            w.write(&[answer(2, "four, five")]).unwrap();
            drop(w);
            let w = BatchWriter::open(&path, info(), true, false).unwrap();
            assert_eq!(w.done(), &HashSet::from([0, 1, 2]), "{ext}");
        }
    }
}
