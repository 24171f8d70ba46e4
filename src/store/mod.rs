//! The prediction log: every prediction, from any view or CLI command, as one row of a SQLite
//! file (WAL mode). Callers hand rows to [`PredictionLog::record`], which never waits on the disk:
//! a writer thread commits them in small transactions, normally within a few milliseconds and
//! always within [`COMMIT_WITHIN`]. A row counts as logged once [`PredictionLog::committed`]
//! includes it; a process killed at any moment loses nothing committed.
//!
//! One ModelDeck writes a log at a time (an advisory lock on `<log>.lock`); readers such as
//! `modeldeck log export` may read it while it is written. A file that is locked, unreadable or
//! not a ModelDeck log is reported and left untouched ([`PredictionLog::open_or_fresh`]).
//!
//! Alerts (firing and resolved) go through the same writer into an `alerts` table
//! ([`PredictionLog::record_alert`], [`read_alerts`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::monitor::alerts::AlertEvent;
pub use crate::monitor::alerts::AlertState;

/// `PRAGMA application_id` of a ModelDeck log ("MDLG").
const APPLICATION_ID: i32 = 0x4D44_4C47;
/// 1: predictions; 2: and alerts. Older logs are migrated when opened for writing.
const SCHEMA_VERSION: i32 = 2;
/// The longest a row waits in memory before its transaction commits.
pub const COMMIT_WITHIN: Duration = Duration::from_millis(250);
/// Texts longer than this are stored as a hash, never in full.
pub const MAX_INPUT_TEXT: usize = 200;

/// Where a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Playground,
    Replay,
    Batch,
    Cli,
    /// A request to `modeldeck serve`.
    Serve,
}

impl Origin {
    pub const ALL: [Origin; 5] = [Self::Playground, Self::Replay, Self::Batch, Self::Cli, Self::Serve];

    /// The origin named `name` (`playground`, `replay`, `batch`, `cli`, `serve`).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Playground => "playground",
            Self::Replay => "replay",
            Self::Batch => "batch",
            Self::Cli => "cli",
            Self::Serve => "serve",
        }
    }
}

/// One logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// The model's source as the user wrote it (`org/name`, a path, `demo:NAME`).
    pub model: String,
    pub revision: Option<String>,
    /// A version label the user gave the model ("v2", "candidate").
    pub version: Option<String>,
    /// Slot or arm ("A", "B").
    pub arm: Option<String>,
    pub origin: Origin,
    pub request_id: String,
    /// A file path, or a content hash; never raw pixels or a long text.
    pub input_ref: Option<String>,
    /// Input and output features as a JSON object of numbers (the monitor's per-task
    /// features, [`crate::monitor::features`]).
    pub features: Option<serde_json::Value>,
    pub prediction: Option<String>,
    pub score: Option<f64>,
    /// The top-k labels and scores, as JSON.
    pub top_k: Option<serde_json::Value>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// Ground truth, when it is known at prediction time; later labels come through
    /// [`PredictionLog::set_label`].
    pub label: Option<String>,
}

impl PredictionRecord {
    /// A record stamped now, with everything optional left empty.
    pub fn new(model: impl Into<String>, origin: Origin, request_id: impl Into<String>) -> Self {
        Self {
            at_ms: now_ms(),
            model: model.into(),
            revision: None,
            version: None,
            arm: None,
            origin,
            request_id: request_id.into(),
            input_ref: None,
            features: None,
            prediction: None,
            score: None,
            top_k: None,
            latency_ms: None,
            error: None,
            label: None,
        }
    }
}

/// One record per input of an answered request; several inputs get ids `ID-0`, `ID-1`, ...
pub fn records_from_output(
    output: &crate::predict::PredictOutput,
    origin: Origin,
    arm: Option<&str>,
    request_id: &str,
) -> Vec<PredictionRecord> {
    output
        .per_input(request_id)
        .map(|(id, per_input_ms, result)| {
            let mut r = PredictionRecord::new(output.model.source.clone(), origin, id);
            r.revision = output.model.revision.clone();
            r.arm = arm.map(str::to_string);
            r.input_ref =
                Some(if output.task.takes_images() { result.input.clone() } else { text_reference(&result.input) });
            if let Some(top) = result.predictions.as_ref().and_then(|p| p.first()) {
                r.prediction = Some(top.label.clone());
                r.score = Some(top.score as f64);
            }
            r.top_k = result.predictions.as_ref().and_then(|p| serde_json::to_value(p).ok());
            r.features = (!result.features.is_empty()).then(|| result.features.to_json());
            r.latency_ms = Some(per_input_ms);
            r
        })
        .collect()
}

/// A text input as it may be stored: short texts as they are, long ones by hash.
pub fn text_reference(text: &str) -> String {
    if text.chars().count() <= MAX_INPUT_TEXT {
        text.to_string()
    } else {
        format!("text:{} chars:fnv1a64:{:016x}", text.chars().count(), fnv1a(text.as_bytes()))
    }
}

/// FNV-1a, 64 bits: a stable content reference (not a security hash).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV1A_OFFSET, bytes)
}

/// FNV-1a's starting value.
pub const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a hash over more bytes (hashing several pieces as one stream).
pub fn fnv1a_extend(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How much history to keep; older rows are pruned by the writer thread.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Retention {
    pub max_rows: Option<u64>,
    pub max_age: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: is locked by another ModelDeck (only one may write a prediction log at a time)", .0.display())]
    Locked(PathBuf),
    #[error("{}: is not a ModelDeck prediction log{}", path.display(), detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NotALog { path: PathBuf, detail: Option<String> },
    #[error("{}: cannot be opened: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Sqlite { path: PathBuf, reason: String },
    #[error("the prediction log's writer stopped")]
    WriterStopped,
}

enum Message {
    Row(Box<PredictionRecord>),
    Alert(Box<AlertRecord>),
    Label {
        request_id: String,
        label: String,
        at_ms: i64,
    },
    /// Reply once everything sent before has been committed.
    Flush(Sender<Result<(), String>>),
}

/// Progress shared between callers and the writer thread.
#[derive(Default)]
struct Progress {
    committed: AtomicU64,
    last_error: Mutex<Option<String>>,
    changed: Condvar,
    lock: Mutex<()>,
}

/// A handle to an open prediction log; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct PredictionLog {
    path: PathBuf,
    tx: Sender<Message>,
    progress: Arc<Progress>,
}

impl PredictionLog {
    /// Opens (or creates) the log at `path` for writing and starts its writer thread.
    pub fn open(path: &Path, retention: Retention) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Unreadable { path: path.to_path_buf(), reason: e.to_string() })?;
        }
        let lock = WriterLock::acquire(path)?;
        let conn = open_connection(path, false)?;
        let (tx, rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let writer = Writer { conn, path: path.to_path_buf(), rx, progress: progress.clone(), retention, _lock: lock };
        std::thread::Builder::new().name("modeldeck-log-writer".into()).spawn(move || writer.run()).map_err(|e| {
            StoreError::Unreadable { path: path.to_path_buf(), reason: format!("cannot start the writer thread: {e}") }
        })?;
        Ok(Self { path: path.to_path_buf(), tx, progress })
    }

    /// Opens `path`; when that fails (locked, unreadable, not a log) opens a fresh log beside
    /// it instead, leaving the old file untouched, and says why.
    pub fn open_or_fresh(path: &Path, retention: Retention) -> (Result<Self, StoreError>, Option<String>) {
        match Self::open(path, retention) {
            Ok(log) => (Ok(log), None),
            Err(first) => {
                let stem =
                    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "predictions".into());
                let fresh = path.with_file_name(format!("{stem}-{}.sqlite", now_ms()));
                let note = format!("{first}; logging to {} instead (the old file is left as it was)", fresh.display());
                (Self::open(&fresh, retention), Some(note))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a row; returns at once.
    pub fn record(&self, record: PredictionRecord) {
        self.send(Message::Row(Box::new(record)));
    }

    /// Queues an alert's change of state; returns at once.
    pub fn record_alert(&self, alert: AlertRecord) {
        self.send(Message::Alert(Box::new(alert)));
    }

    /// Attaches a label that arrived later (delayed ground truth, or a user's correction) to
    /// every row of `request_id`.
    pub fn set_label(&self, request_id: &str, label: &str) {
        self.send(Message::Label { request_id: request_id.into(), label: label.into(), at_ms: now_ms() });
    }

    fn send(&self, message: Message) {
        if self.tx.send(message).is_err() {
            if let Ok(mut e) = self.progress.last_error.lock() {
                e.get_or_insert_with(|| StoreError::WriterStopped.to_string());
            }
        }
    }

    /// Rows, labels and alerts committed so far.
    pub fn committed(&self) -> u64 {
        self.progress.committed.load(Ordering::SeqCst)
    }

    /// The writer's last error (a full disk, say), if any; writing goes on.
    pub fn last_error(&self) -> Option<String> {
        self.progress.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Waits until everything queued before this call is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(Message::Flush(tx)).map_err(|_| StoreError::WriterStopped)?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Sqlite { path: self.path.clone(), reason }),
            Err(_) => Err(StoreError::WriterStopped),
        }
    }

    /// Waits until `count` messages are committed or `timeout` passes; true if they were.
    pub fn wait_committed(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut guard) = self.progress.lock.lock() else { return false };
        while self.committed() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match self.progress.changed.wait_timeout(guard, left.min(Duration::from_millis(50))) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
        true
    }
}

/// An advisory lock on `<log>.lock`, held while a ModelDeck writes the log.
struct WriterLock {
    #[cfg(target_os = "linux")]
    _file: std::fs::File,
}

impl WriterLock {
    fn acquire(path: &Path) -> Result<Self, StoreError> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let lock_path = path.with_extension("lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| StoreError::Unreadable { path: lock_path.clone(), reason: e.to_string() })?;
            // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
            let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if !taken {
                return Err(StoreError::Locked(path.to_path_buf()));
            }
            Ok(Self { _file: file })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = path;
            Ok(Self {})
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    revision TEXT,
    version TEXT,
    arm TEXT,
    origin TEXT NOT NULL,
    request_id TEXT NOT NULL,
    input_ref TEXT,
    features TEXT,
    prediction TEXT,
    score REAL,
    top_k TEXT,
    latency_ms REAL,
    error TEXT,
    label TEXT,
    label_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS predictions_at ON predictions(at_ms);
CREATE INDEX IF NOT EXISTS predictions_request ON predictions(request_id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    value REAL,
    threshold REAL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_at ON alerts(at_ms);
";

/// Opens a connection and checks (or, for a new file, writes) ModelDeck's marks.
/// A read-only connection to an existing log (readers never create one).
fn open_for_reading(path: &Path) -> Result<Connection, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Unreadable { path: path.to_path_buf(), reason: "no such file".into() });
    }
    open_connection(path, true)
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let unreadable = |e: rusqlite::Error| StoreError::Unreadable { path: path.to_path_buf(), reason: e.to_string() };
    let not_a_log = |e: rusqlite::Error| StoreError::NotALog { path: path.to_path_buf(), detail: Some(e.to_string()) };
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(unreadable)?;
    conn.busy_timeout(Duration::from_secs(2)).map_err(unreadable)?;
    // The first read tells a SQLite file from anything else.
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(not_a_log)?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(not_a_log)?;
    if app_id != APPLICATION_ID && !(app_id == 0 && tables == 0) {
        return Err(StoreError::NotALog { path: path.to_path_buf(), detail: None });
    }
    if read_only {
        if tables == 0 {
            return Err(StoreError::NotALog { path: path.to_path_buf(), detail: Some("it is empty".into()) });
        }
        return Ok(conn);
    }
    let sqlite = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_path_buf(), reason: e.to_string() };
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
    // WAL with NORMAL sync: a commit survives a killed process; only an OS crash may lose the
    // last transactions.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(sqlite)?;
    if tables == 0 {
        conn.pragma_update(None, "application_id", APPLICATION_ID).map_err(sqlite)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sqlite)?;
    }
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sqlite)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NotALog {
            path: path.to_path_buf(),
            detail: Some(format!("written by a newer ModelDeck (schema {version}, this one reads {SCHEMA_VERSION})")),
        });
    }
    // Every table is `IF NOT EXISTS`: a log of an older schema gains the new ones, and the
    // version says so, in one transaction.
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))
        .map_err(sqlite)?;
    Ok(conn)
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    rx: Receiver<Message>,
    progress: Arc<Progress>,
    retention: Retention,
    _lock: WriterLock,
}

/// Messages per transaction at most; more wait for the next one.
const BATCH: usize = 4096;
const PRUNE_EVERY: Duration = Duration::from_secs(30);

impl Writer {
    fn run(mut self) {
        let mut last_prune = Instant::now() - PRUNE_EVERY;
        loop {
            let first = match self.rx.recv_timeout(PRUNE_EVERY) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.prune(&mut last_prune);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // Whatever else is already waiting joins this transaction; nothing waits for more.
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let result = self.commit(&batch).map_err(|e| e.to_string());
            if let Err(e) = &result {
                if let Ok(mut last) = self.progress.last_error.lock() {
                    *last = Some(format!("{}: {e}", self.path.display()));
                }
            }
            // A failed transaction commits nothing: those rows are not counted as logged.
            let written = if result.is_ok() {
                batch.iter().filter(|m| !matches!(m, Message::Flush(_))).count() as u64
            } else {
                0
            };
            {
                let _guard = self.progress.lock.lock();
                self.progress.committed.fetch_add(written, Ordering::SeqCst);
                self.progress.changed.notify_all();
            }
            for m in batch {
                if let Message::Flush(reply) = m {
                    let _ = reply.send(result.clone());
                }
            }
            self.prune(&mut last_prune);
        }
    }

    fn commit(&mut self, batch: &[Message]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO predictions (at_ms, model, revision, version, arm, origin, request_id, input_ref,
                 features, prediction, score, top_k, latency_ms, error, label, label_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            )?;
            let mut label =
                tx.prepare_cached("UPDATE predictions SET label = ?1, label_at_ms = ?2 WHERE request_id = ?3")?;
            let mut alert = tx.prepare_cached(
                "INSERT INTO alerts (at_ms, model, rule, state, value, threshold, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for m in batch {
                match m {
                    Message::Row(r) => {
                        let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
                        insert.execute(params![
                            r.at_ms,
                            r.model,
                            r.revision,
                            r.version,
                            r.arm,
                            r.origin.name(),
                            r.request_id,
                            r.input_ref,
                            json(&r.features),
                            r.prediction,
                            r.score,
                            json(&r.top_k),
                            r.latency_ms,
                            r.error,
                            r.label,
                            r.label.as_ref().map(|_| r.at_ms),
                        ])?;
                    }
                    Message::Label { request_id, label: text, at_ms } => {
                        label.execute(params![text, at_ms, request_id])?;
                    }
                    Message::Alert(a) => {
                        alert.execute(params![
                            a.at_ms,
                            a.model,
                            a.rule,
                            alert_state_name(a.state),
                            a.value,
                            a.threshold,
                            a.message
                        ])?;
                    }
                    Message::Flush(_) => {}
                }
            }
        }
        tx.commit()
    }

    fn prune(&mut self, last: &mut Instant) {
        if last.elapsed() < PRUNE_EVERY || self.retention == Retention::default() {
            return;
        }
        *last = Instant::now();
        if let Err(e) = prune(&self.conn, self.retention, now_ms()) {
            if let Ok(mut l) = self.progress.last_error.lock() {
                *l = Some(format!("{}: pruning: {e}", self.path.display()));
            }
        }
    }
}

/// Deletes rows (and alerts) older than the age bound, then the oldest rows over the count bound.
fn prune(conn: &Connection, retention: Retention, now_ms: i64) -> Result<usize, rusqlite::Error> {
    let mut deleted = 0;
    if let Some(age) = retention.max_age {
        let oldest = now_ms - age.as_millis() as i64;
        deleted += conn.execute("DELETE FROM predictions WHERE at_ms < ?1", params![oldest])?;
        deleted += conn.execute("DELETE FROM alerts WHERE at_ms < ?1", params![oldest])?;
    }
    if let Some(max) = retention.max_rows {
        deleted += conn.execute(
            "DELETE FROM predictions WHERE id <= (SELECT id FROM predictions ORDER BY id DESC LIMIT 1 OFFSET ?1)",
            params![max as i64],
        )?;
    }
    Ok(deleted)
}

/// Which rows to read back: the filters, then `offset` and `limit` in log order among the rows
/// that pass them ("the first 500 since T", "rows 1200 to 1499 of this model").
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub since_ms: Option<i64>,
    /// A model's source, or its version label.
    pub model: Option<String>,
    pub origin: Option<Origin>,
    /// Rows to skip after filtering.
    pub offset: u64,
    /// Rows to return at most.
    pub limit: Option<u64>,
    /// Leave out failed requests (they have no prediction to compare: the Monitor's drift
    /// windows hold answered predictions only).
    pub answered: bool,
    /// Only request ids that start with this (a batch run's rows: `batch-RUN-`).
    pub request_prefix: Option<String>,
}

/// A batch run in the log (`modeldeck batch`, `eval --log`, `compare --log` and the Evaluate view log their
/// answers with origin `batch` and request ids `batch-RUN-INDEX`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRun {
    /// The run's id (`20261201-041803123`).
    pub run: String,
    pub model: String,
    /// Rows logged, failed ones included.
    pub rows: u64,
    pub first_at_ms: i64,
}

/// The batch runs in the log at `path`, newest first (at most `limit`).
pub fn batch_runs(path: &Path, limit: usize) -> Result<Vec<BatchRun>, StoreError> {
    let conn = open_for_reading(path)?;
    let sqlite = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_path_buf(), reason: e.to_string() };
    // The run id is everything between `batch-` and the last `-` (the record's index).
    let mut statement = conn
        .prepare(
            "SELECT model, rtrim(request_id, '0123456789') AS run, COUNT(*), MIN(at_ms) FROM predictions
             WHERE origin = 'batch' AND substr(request_id, 1, 6) = 'batch-'
             GROUP BY model, run ORDER BY MIN(at_ms) DESC, MIN(id) DESC LIMIT ?1",
        )
        .map_err(sqlite)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement
        .query_map(params![limit], |r| {
            let run: String = r.get(1)?;
            Ok(BatchRun {
                run: run.trim_start_matches("batch-").trim_end_matches('-').to_string(),
                model: r.get(0)?,
                rows: r.get::<_, i64>(2)?.max(0) as u64,
                first_at_ms: r.get(3)?,
            })
        })
        .map_err(sqlite)?;
    let runs = rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)?;
    Ok(runs.into_iter().filter(|r| !r.run.is_empty()).collect())
}

/// A row read back, with its label's arrival time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPrediction {
    #[serde(flatten)]
    pub record: PredictionRecord,
    pub label_at_ms: Option<i64>,
}

impl StoredPrediction {
    /// How long after the prediction its label arrived (0 for a label known at prediction time).
    pub fn label_delay_ms(&self) -> Option<i64> {
        self.label_at_ms.map(|t| t - self.record.at_ms)
    }

    /// Whether the prediction matched its label, once a label is known.
    pub fn correct(&self) -> Option<bool> {
        let label = self.record.label.as_ref()?;
        Some(self.record.error.is_none() && self.record.prediction.as_ref() == Some(label))
    }
}

/// Reads rows from a log (read-only: the log may be being written).
pub fn read(path: &Path, query: &Query) -> Result<Vec<StoredPrediction>, StoreError> {
    let conn = open_for_reading(path)?;
    let sqlite = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_path_buf(), reason: e.to_string() };
    let mut statement = conn
        .prepare(
            "SELECT at_ms, model, revision, version, arm, origin, request_id, input_ref, features, prediction,
             score, top_k, latency_ms, error, label, label_at_ms FROM predictions
             WHERE (?1 IS NULL OR at_ms >= ?1) AND (?2 IS NULL OR model = ?2 OR version = ?2)
               AND (?3 IS NULL OR origin = ?3) AND (?6 = 0 OR error IS NULL)
               AND (?7 IS NULL OR substr(request_id, 1, length(?7)) = ?7)
             ORDER BY id LIMIT ?4 OFFSET ?5",
        )
        .map_err(sqlite)?;
    // SQLite reads a negative limit as none.
    let limit = query.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
    let origin = query.origin.map(Origin::name);
    let rows = statement
        .query_map(
            params![query.since_ms, query.model, origin, limit, offset, query.answered, query.request_prefix],
            |r| {
                let origin: String = r.get(5)?;
                let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
                Ok(StoredPrediction {
                    record: PredictionRecord {
                        at_ms: r.get(0)?,
                        model: r.get(1)?,
                        revision: r.get(2)?,
                        version: r.get(3)?,
                        arm: r.get(4)?,
                        origin: Origin::from_name(&origin).unwrap_or(Origin::Cli),
                        request_id: r.get(6)?,
                        input_ref: r.get(7)?,
                        features: json(r.get(8)?),
                        prediction: r.get(9)?,
                        score: r.get(10)?,
                        top_k: json(r.get(11)?),
                        latency_ms: r.get(12)?,
                        error: r.get(13)?,
                        label: r.get(14)?,
                    },
                    label_at_ms: r.get(15)?,
                })
            },
        )
        .map_err(sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// CSV columns: the first five are what `modeldeck abtest` reads (`correct` is empty until a
/// label arrives). One column per feature follows them ([`feature_columns`]).
pub const CSV_COLUMNS: [&str; 14] = [
    "request_id",
    "prediction",
    "label",
    "correct",
    "latency_ms",
    "score",
    "time",
    "model",
    "version",
    "arm",
    "origin",
    "input_ref",
    "error",
    "label_delay_ms",
];

/// The feature columns of an export: every feature any of `rows` has, the monitor's features
/// in their fixed order (image, text, output), then any others by name.
pub fn feature_columns(rows: &[StoredPrediction]) -> Vec<String> {
    let mut present = std::collections::BTreeSet::new();
    for row in rows {
        if let Some(serde_json::Value::Object(map)) = &row.record.features {
            for key in map.keys() {
                if !present.contains(key.as_str()) {
                    present.insert(key.clone());
                }
            }
        }
    }
    let mut columns: Vec<String> =
        crate::monitor::features::all_feature_names().filter(|n| present.remove(*n)).map(str::to_string).collect();
    columns.extend(present);
    columns
}

/// A feature's CSV cell: numbers as Rust prints an f64 (the shortest text that parses back to
/// the same value), missing or null as empty.
fn feature_cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::Number(n)) => n.as_f64().map(|x| x.to_string()).unwrap_or_default(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Writes rows as CSV or JSON lines.
pub fn export(rows: &[StoredPrediction], format: ExportFormat, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    match format {
        ExportFormat::Jsonl => {
            for row in rows {
                let mut value = serde_json::to_value(row).map_err(std::io::Error::other)?;
                value["correct"] = serde_json::json!(row.correct());
                value["label_delay_ms"] = serde_json::json!(row.label_delay_ms());
                serde_json::to_writer(&mut *out, &value).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
            }
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let features = feature_columns(rows);
            w.write_record(CSV_COLUMNS.iter().copied().chain(features.iter().map(String::as_str)))?;
            let text = |v: &Option<String>| v.clone().unwrap_or_default();
            let number = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
            for row in rows {
                let r = &row.record;
                let feature = |name: &String| feature_cell(r.features.as_ref().and_then(|f| f.get(name)));
                let fixed = [
                    r.request_id.clone(),
                    text(&r.prediction),
                    text(&r.label),
                    row.correct().map(|c| if c { "1" } else { "0" }.to_string()).unwrap_or_default(),
                    number(r.latency_ms),
                    number(r.score),
                    iso_time(r.at_ms),
                    r.model.clone(),
                    text(&r.version),
                    text(&r.arm),
                    r.origin.name().to_string(),
                    text(&r.input_ref),
                    text(&r.error),
                    row.label_delay_ms().map(|d| d.to_string()).unwrap_or_default(),
                ];
                w.write_record(fixed.into_iter().chain(features.iter().map(feature)))?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// An alert's change of state, as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// The model (or arm) the rule watches.
    pub model: String,
    /// The rule's name ("p95 latency", "drift: brightness").
    pub rule: String,
    pub state: AlertState,
    /// The watched value when the state changed, and the rule's bound (NaN when unknown).
    pub value: f64,
    pub threshold: f64,
    /// What a user reads in the banner.
    pub message: String,
}

impl From<&AlertEvent> for AlertRecord {
    fn from(event: &AlertEvent) -> Self {
        Self {
            at_ms: event.at_ms,
            model: event.model.clone(),
            rule: event.rule.clone(),
            state: event.state,
            value: event.value,
            threshold: event.threshold,
            message: event.message.clone(),
        }
    }
}

/// How the log spells an alert state (as [`AlertState`] serializes).
pub fn alert_state_name(state: AlertState) -> &'static str {
    match state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

/// Every alert in a log, oldest first (none for a log written before alerts were kept).
pub fn read_alerts(path: &Path) -> Result<Vec<AlertRecord>, StoreError> {
    let conn = open_for_reading(path)?;
    let sqlite = |e: rusqlite::Error| StoreError::Sqlite { path: path.to_path_buf(), reason: e.to_string() };
    let has_alerts: bool = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alerts'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sqlite)?
        > 0;
    if !has_alerts {
        return Ok(Vec::new());
    }
    let mut statement = conn
        .prepare("SELECT at_ms, model, rule, state, value, threshold, message FROM alerts ORDER BY id")
        .map_err(sqlite)?;
    let rows = statement
        .query_map([], |r| {
            let state: String = r.get(3)?;
            Ok(AlertRecord {
                at_ms: r.get(0)?,
                model: r.get(1)?,
                rule: r.get(2)?,
                state: if state == "resolved" { AlertState::Resolved } else { AlertState::Firing },
                // SQLite stores NaN as NULL.
                value: r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN),
                threshold: r.get::<_, Option<f64>>(5)?.unwrap_or(f64::NAN),
                message: r.get(6)?,
            })
        })
        .map_err(sqlite)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (`2026-11-30T19:40:00.123Z`).
pub fn iso_time(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

/// `--since`: unix milliseconds, or a span back from now (`90s`, `15m`, `2h`, `7d`).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len()));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a time: give unix milliseconds or a span such as 15m, 2h, 7d"))?;
    let unit_ms = match unit {
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        "d" => 86_400e3,
        _ => return Err(format!("`{text}`: the unit must be s, m, h or d")),
    };
    Ok(now_ms - (value * unit_ms) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> PredictionRecord {
        let mut r = PredictionRecord::new("demo:digits-v1", Origin::Cli, format!("r{i}"));
        r.prediction = Some((i % 10).to_string());
        r.score = Some(0.5);
        r.latency_ms = Some(1.0 + i as f64);
        r.top_k = Some(serde_json::json!([{"label": "3", "score": 0.5}]));
        r
    }

    #[test]
    fn rows_and_late_labels_round_trip_and_export_for_abtest() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        for i in 0..20 {
            log.record(row(i));
        }
        log.set_label("r3", "3");
        log.set_label("r4", "7");
        log.flush().unwrap();
        assert_eq!(log.committed(), 22);
        let rows = read(&path, &Query::default()).unwrap();
        assert_eq!(rows.len(), 20);
        assert_eq!(rows[3].record.top_k, Some(serde_json::json!([{"label": "3", "score": 0.5}])));
        assert_eq!((rows[3].correct(), rows[4].correct(), rows[5].correct()), (Some(true), Some(false), None));
        let mut csv = Vec::new();
        export(&rows, ExportFormat::Csv, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert!(text.starts_with("request_id,prediction,label,correct,latency_ms,"), "{text}");
        assert!(text.lines().nth(4).unwrap().starts_with("r3,3,3,1,4,"), "{text}");
        let mut jsonl = Vec::new();
        export(&rows, ExportFormat::Jsonl, &mut jsonl).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(jsonl).unwrap().lines().nth(4).unwrap()).unwrap();
        assert_eq!(first["correct"], false);
        assert_eq!(first["origin"], "cli");
    }

    #[test]
    fn a_second_writer_locked_files_and_foreign_files_are_explained_and_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let _first = PredictionLog::open(&path, Retention::default()).unwrap();
        let Err(e) = PredictionLog::open(&path, Retention::default()) else { panic!("a second writer") };
        assert!(e.to_string().contains("locked by another ModelDeck"), "{e}");
        let (fresh, note) = PredictionLog::open_or_fresh(&path, Retention::default());
        assert!(fresh.is_ok() && note.is_some_and(|n| n.contains("instead")));

        let junk = tmp.path().join("junk.sqlite");
        std::fs::write(&junk, b"this is not a database at all, not even close; no header").unwrap();
        let Err(e) = PredictionLog::open(&junk, Retention::default()) else { panic!("junk opened") };
        assert!(e.to_string().contains("not a ModelDeck prediction log"), "{e}");
        assert_eq!(std::fs::read(&junk).unwrap(), b"this is not a database at all, not even close; no header");

        let other = tmp.path().join("other.sqlite");
        Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        let Err(e) = PredictionLog::open(&other, Retention::default()) else { panic!("foreign db opened") };
        assert!(e.to_string().contains("not a ModelDeck prediction log"), "{e}");
    }

    #[test]
    fn retention_prunes_by_age_and_by_count() {
        let tmp = tempfile::tempdir().unwrap();
        let conn = open_connection(&tmp.path().join("log.sqlite"), false).unwrap();
        for i in 0..10i64 {
            conn.execute(
                "INSERT INTO predictions (at_ms, model, origin, request_id) VALUES (?1, 'm', 'cli', ?2)",
                params![i * 1000, i.to_string()],
            )
            .unwrap();
        }
        let count =
            |c: &Connection| c.query_row("SELECT count(*) FROM predictions", [], |r| r.get::<_, i64>(0)).unwrap();
        prune(&conn, Retention { max_age: Some(Duration::from_secs(5)), max_rows: None }, 10_000).unwrap();
        assert_eq!(count(&conn), 5);
        prune(&conn, Retention { max_age: None, max_rows: Some(2) }, 10_000).unwrap();
        assert_eq!(count(&conn), 2);
        let oldest: i64 = conn.query_row("SELECT min(at_ms) FROM predictions", [], |r| r.get(0)).unwrap();
        assert_eq!(oldest, 8000, "the newest rows stay");
    }

    #[test]
    fn features_export_as_columns_that_round_trip_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        // Values whose shortest decimal forms are long, and one that is not finite.
        let awkward = [0.1 + 0.2, 1.0 / 3.0, 2f64.sqrt() * 1e-7, 123_456_789.123_456_79, 5e-324];
        let mut image = row(0);
        image.features = Some(serde_json::json!({
            "mean_b": awkward[0], "brightness": awkward[1], "sharpness": awkward[2], "width": 451.0,
            "entropy": awkward[3], "confidence": awkward[4], "extra_b": 2.0, "extra_a": null,
        }));
        let mut text = row(1);
        text.features = Some(serde_json::json!({"tokens": 7.0, "chars": 30.0, "confidence": 0.5}));
        log.record(image);
        log.record(text);
        log.record(row(2)); // no features at all
        log.flush().unwrap();
        let rows = read(&path, &Query::default()).unwrap();
        assert_eq!(
            feature_columns(&rows),
            [
                "brightness",
                "sharpness",
                "width",
                "mean_b",
                "chars",
                "tokens",
                "confidence",
                "entropy",
                "extra_a",
                "extra_b"
            ]
        );
        let mut csv = Vec::new();
        export(&rows, ExportFormat::Csv, &mut csv).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
        assert_eq!(header[..14], CSV_COLUMNS);
        assert_eq!(header[14], "brightness");
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let cell = |row: usize, name: &str| records[row][header.iter().position(|h| h == name).unwrap()].to_string();
        for (name, want) in [
            ("mean_b", awkward[0]),
            ("brightness", awkward[1]),
            ("sharpness", awkward[2]),
            ("entropy", awkward[3]),
            ("confidence", awkward[4]),
        ] {
            let got: f64 = cell(0, name).parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{name}: {} vs {want}", cell(0, name));
        }
        assert_eq!((cell(0, "width"), cell(0, "extra_a"), cell(0, "extra_b")), ("451".into(), "".into(), "2".into()));
        assert_eq!(
            (cell(1, "tokens"), cell(1, "brightness"), cell(1, "confidence")),
            ("7".into(), "".into(), "0.5".into())
        );
        assert!(records[2].iter().skip(14).all(str::is_empty));
    }

    #[test]
    fn offset_limit_and_origin_select_rows_in_log_order_after_the_filters() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        for i in 0..30 {
            let mut r = row(i);
            r.at_ms = 1000 + i as i64;
            r.origin = if i % 3 == 0 { Origin::Replay } else { Origin::Cli };
            r.model = if i % 2 == 0 { "a".into() } else { "b".into() };
            log.record(r);
        }
        log.flush().unwrap();
        let ids =
            |q: Query| -> Vec<String> { read(&path, &q).unwrap().into_iter().map(|r| r.record.request_id).collect() };
        let all = ids(Query::default());
        assert_eq!(all.len(), 30);
        assert_eq!(ids(Query { limit: Some(5), ..Default::default() }), all[..5]);
        assert_eq!(ids(Query { offset: 25, ..Default::default() }), all[25..]);
        assert_eq!(ids(Query { offset: 28, limit: Some(5), ..Default::default() }), all[28..]);
        // Model a, replay: rows 0, 6, 12, 18, 24; since 1010: 12, 18, 24; skip one, take one.
        let q = Query {
            since_ms: Some(1010),
            model: Some("a".into()),
            origin: Some(Origin::Replay),
            offset: 1,
            limit: Some(1),
            answered: false,
            request_prefix: None,
        };
        assert_eq!(ids(q), ["r18"]);
        // A request-id prefix is a prefix, not a LIKE pattern.
        let prefixed = ids(Query { request_prefix: Some("r1".into()), ..Default::default() });
        assert_eq!(prefixed, all.iter().filter(|id| id.starts_with("r1")).cloned().collect::<Vec<_>>());
        assert!(ids(Query { request_prefix: Some("r%".into()), ..Default::default() }).is_empty());
        assert_eq!(ids(Query { origin: Some(Origin::Playground), ..Default::default() }), Vec::<String>::new());
        assert_eq!(Origin::from_name("replay"), Some(Origin::Replay));
        assert_eq!(Origin::from_name("nope"), None);
    }

    #[test]
    fn label_delay_is_the_time_from_prediction_to_label() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        let mut late = row(0);
        late.at_ms = now_ms() - 60_000; // predicted a minute ago
        let mut known = row(1);
        known.label = Some("1".into()); // labelled when predicted
        log.record(late);
        log.record(known);
        log.record(row(2));
        log.set_label("r0", "0");
        log.flush().unwrap();
        let rows = read(&path, &Query::default()).unwrap();
        let delay = rows[0].label_delay_ms().unwrap();
        assert!((60_000..70_000).contains(&delay), "{delay}");
        assert_eq!((rows[1].label_delay_ms(), rows[2].label_delay_ms()), (Some(0), None));
        let mut csv = Vec::new();
        export(&rows, ExportFormat::Csv, &mut csv).unwrap();
        let mut reader = csv::Reader::from_reader(csv.as_slice());
        let column = reader.headers().unwrap().iter().position(|h| h == "label_delay_ms").unwrap();
        let cells: Vec<String> = reader.records().map(|r| r.unwrap()[column].to_string()).collect();
        assert_eq!(cells, [delay.to_string(), "0".into(), String::new()]);
        let mut jsonl = Vec::new();
        export(&rows, ExportFormat::Jsonl, &mut jsonl).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["label_delay_ms"], delay);
        assert_eq!(
            (&lines[1]["label_delay_ms"], &lines[2]["label_delay_ms"]),
            (&serde_json::json!(0), &serde_json::Value::Null)
        );
    }

    fn alert(at_ms: i64, state: AlertState) -> AlertRecord {
        AlertRecord {
            at_ms,
            model: "demo:digits-v1".into(),
            rule: "p95 latency".into(),
            state,
            value: 41.5,
            threshold: 25.0,
            message: "p95 latency 41.5 ms is above 25 ms".into(),
        }
    }

    #[test]
    fn alerts_go_through_the_writer_and_read_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log.sqlite");
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        log.record(row(0));
        log.record_alert(alert(10, AlertState::Firing));
        let mut unknown = alert(20, AlertState::Resolved);
        unknown.value = f64::NAN;
        log.record_alert(unknown);
        log.flush().unwrap();
        assert_eq!(log.committed(), 3);
        let alerts = read_alerts(&path).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0], alert(10, AlertState::Firing));
        assert_eq!((alerts[1].state, alerts[1].at_ms, alerts[1].threshold), (AlertState::Resolved, 20, 25.0));
        assert!(alerts[1].value.is_nan());
        assert_eq!(read(&path, &Query::default()).unwrap().len(), 1, "alerts are not predictions");
        assert_eq!(serde_json::to_value(&alerts[0]).unwrap()["state"], "firing");
        // The evaluator's events convert field for field.
        let event = AlertEvent {
            model: "demo:digits-v1".into(),
            rule: "p95 latency".into(),
            metric: crate::monitor::alerts::AlertMetric::LatencyP95Ms,
            state: AlertState::Firing,
            value: 41.5,
            threshold: 25.0,
            at_ms: 10,
            message: "p95 latency 41.5 ms is above 25 ms".into(),
        };
        assert_eq!(AlertRecord::from(&event), alerts[0]);
        // Retention by age prunes old alerts with old rows.
        let conn = open_connection(&path, false).unwrap();
        prune(&conn, Retention { max_age: Some(Duration::from_millis(5)), max_rows: None }, 20).unwrap();
        drop(conn);
        assert_eq!(read_alerts(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_log_of_the_first_schema_gains_the_alerts_table_and_keeps_its_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("v1.sqlite");
        {
            // Exactly what schema 1 wrote.
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "application_id", APPLICATION_ID).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            let v1 = SCHEMA.split("CREATE TABLE IF NOT EXISTS alerts").next().unwrap();
            conn.execute_batch(v1).unwrap();
            conn.execute(
                "INSERT INTO predictions (at_ms, model, origin, request_id, prediction) VALUES (5, 'm', 'cli', 'old', '3')",
                [],
            )
            .unwrap();
        }
        // Read-only readers see a first-schema log as one without alerts.
        assert_eq!(read_alerts(&path).unwrap(), Vec::new());
        let log = PredictionLog::open(&path, Retention::default()).unwrap();
        log.record_alert(alert(7, AlertState::Firing));
        log.record(row(1));
        log.flush().unwrap();
        let rows = read(&path, &Query::default()).unwrap();
        assert_eq!(rows.iter().map(|r| r.record.request_id.as_str()).collect::<Vec<_>>(), ["old", "r1"]);
        assert_eq!(read_alerts(&path).unwrap(), [alert(7, AlertState::Firing)]);
        let conn = Connection::open(&path).unwrap();
        let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // A log from a newer ModelDeck is refused, not rewritten.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(conn);
        let Err(e) = open_connection(&path, false) else { panic!("a newer log opened") };
        assert!(e.to_string().contains("newer ModelDeck"), "{e}");
    }

    #[test]
    fn times_and_spans_parse() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_796_065_200_123), "2026-11-30T19:00:00.123Z");
        assert_eq!(parse_since("15m", 1_000_000), Ok(100_000));
        assert_eq!(parse_since("1234", 0), Ok(1234));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(text_reference(&"x".repeat(500)).starts_with("text:500 chars:fnv1a64:"));
        assert_eq!(text_reference("short"), "short");
    }
}
