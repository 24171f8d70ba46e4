//! Drift of each feature and of the predicted class: a reference window against a sliding
//! current window, with the statistics core's default tests (Evidently's rules).
//!
//! [`DriftWindows`] lives on the recording path (under the monitor's mutex): [`DriftWindows::push`]
//! appends one prediction to column buffers in O(number of features), allocating nothing once
//! the windows are full. [`DriftWindows::snapshot`] copies the bounded current window (the
//! reference is shared, not copied) so that [`compute`] runs on a worker, off the mutex, on a
//! schedule. [`compute`] goes through [`report::numerical_column`] / [`report::categorical_column`],
//! the very functions `modeldeck drift` uses on CSV files, so the Monitor's verdicts equal
//! `modeldeck drift --reference R.csv --current C.csv --categorical prediction` on exports of the
//! same two windows (a test below checks every number).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::{FeatureName, Features, Observation};
use crate::report::{self, ColumnOutcome};
use crate::stats::binning::{self, NumericBins};
use crate::stats::describe;
use crate::stats::drift::MIN_CURRENT_FOR_VERDICT;
use crate::stats::{ColumnKind, DatasetDrift, DriftMethod};

/// The column name of the predicted class in [`DriftResult`] and in CSV exports.
pub const PREDICTION_COLUMN: FeatureName = "prediction";
/// Default size of the "first N predictions" reference.
pub const DEFAULT_REFERENCE_SIZE: usize = 500;
/// Default size of the sliding current window.
pub const DEFAULT_CURRENT_SIZE: usize = 300;

/// One prediction as drift sees it: numeric features (confidence and entropy among them), the
/// predicted class, and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSample {
    pub at_ms: i64,
    pub request_id: Arc<str>,
    pub predicted: Option<Arc<str>>,
    pub features: Features,
}

impl DriftSample {
    pub fn from_observation(o: &Observation) -> Self {
        Self {
            at_ms: o.at_ms,
            request_id: Arc::clone(&o.request_id),
            predicted: o.predicted.clone(),
            features: o.features.clone(),
        }
    }
}

/// Where the reference window comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReferenceSource {
    /// The first `size` predictions pushed (after creation or [`DriftWindows::reset_to_first`]).
    /// They fill the reference only; the current window starts with the prediction after them,
    /// so the two windows never overlap.
    FirstPredictions { size: usize },
    /// Rows the user gave ([`DriftWindows::set_reference`]), e.g. a data set's features.
    Given,
    /// A current window the user saved ([`DriftWindows::save_current_as_reference`]).
    SavedWindow,
}

/// Samples held column by column: one `VecDeque<f64>` per feature (NaN = missing), plus the
/// predicted class, request id, time and a sequence number (the position of the prediction
/// among all those pushed, from 0) per sample.
#[derive(Debug, Clone, Default)]
struct Columns {
    features: Vec<(FeatureName, VecDeque<f64>)>,
    predicted: VecDeque<Option<Arc<str>>>,
    request_ids: VecDeque<Arc<str>>,
    at_ms: VecDeque<i64>,
    seq: VecDeque<u64>,
}

impl Columns {
    fn len(&self) -> usize {
        self.at_ms.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    /// Appends one sample. A feature the sample lacks is missing (NaN) for it; a feature seen
    /// for the first time is missing for the earlier samples. A feature named
    /// [`PREDICTION_COLUMN`] is ignored: that column is the predicted class.
    fn push(&mut self, seq: u64, at_ms: i64, request_id: &Arc<str>, predicted: Option<&Arc<str>>, features: &Features) {
        let n = self.len();
        for (i, &(name, value)) in features.0.iter().enumerate() {
            if name == PREDICTION_COLUMN {
                continue;
            }
            // Feature sets come in a fixed order per task: the same index almost always matches.
            let index = match self.features.get(i) {
                Some((existing, _)) if *existing == name => i,
                _ => match self.features.iter().position(|(existing, _)| *existing == name) {
                    Some(j) => j,
                    None => {
                        self.features.push((name, std::iter::repeat_n(f64::NAN, n).collect()));
                        self.features.len() - 1
                    }
                },
            };
            let column = &mut self.features[index].1;
            // A name given twice in one sample: the first value counts.
            if column.len() == n {
                column.push_back(value);
            }
        }
        for (_, column) in &mut self.features {
            if column.len() == n {
                column.push_back(f64::NAN);
            }
        }
        self.predicted.push_back(predicted.cloned());
        self.request_ids.push_back(Arc::clone(request_id));
        self.at_ms.push_back(at_ms);
        self.seq.push_back(seq);
    }

    fn pop_front(&mut self) {
        for (_, column) in &mut self.features {
            column.pop_front();
        }
        self.predicted.pop_front();
        self.request_ids.pop_front();
        self.at_ms.pop_front();
        self.seq.pop_front();
    }

    fn range(&self) -> Option<WindowRange> {
        Some(WindowRange {
            n: self.len(),
            first_seq: *self.seq.front()?,
            last_seq: *self.seq.back()?,
            first_request_id: self.request_ids.front()?.to_string(),
            last_request_id: self.request_ids.back()?.to_string(),
            from_ms: self.at_ms.iter().copied().min()?,
            to_ms: self.at_ms.iter().copied().max()?,
        })
    }

    fn feature(&self, name: &str) -> Option<&VecDeque<f64>> {
        self.features.iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }

    fn has_prediction(&self) -> bool {
        self.predicted.iter().any(|p| p.as_deref().is_some_and(|s| !report::is_missing(s)))
    }
}

/// Sizes of the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftConfig {
    /// N of the "first N predictions" reference.
    pub reference_size: usize,
    /// W, the number of predictions in the sliding current window.
    pub current_size: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self { reference_size: DEFAULT_REFERENCE_SIZE, current_size: DEFAULT_CURRENT_SIZE }
    }
}

/// One model's reference window and sliding current window.
#[derive(Debug, Clone)]
pub struct DriftWindows {
    source: ReferenceSource,
    /// Shared with snapshots; copied only when pushed to while a snapshot holds it (the
    /// "first N" reference while it fills, at most N samples).
    reference: Arc<Columns>,
    current: Columns,
    current_size: usize,
    /// Predictions pushed so far (the next sequence number).
    pushed: u64,
}

impl Default for DriftWindows {
    fn default() -> Self {
        Self::new(DriftConfig::default())
    }
}

impl DriftWindows {
    /// Reference = the first `reference_size` predictions; sizes of 0 are taken as 1.
    pub fn new(config: DriftConfig) -> Self {
        Self {
            source: ReferenceSource::FirstPredictions { size: config.reference_size.max(1) },
            reference: Arc::default(),
            current: Columns::default(),
            current_size: config.current_size.max(1),
            pushed: 0,
        }
    }

    /// Records one answered prediction; a failed request (`error`) is ignored, as it has no
    /// prediction to compare (an export meant to reproduce the windows leaves them out too).
    pub fn push(&mut self, observation: &Observation) {
        if observation.error {
            return;
        }
        self.push_parts(
            observation.at_ms,
            &observation.request_id,
            observation.predicted.as_ref(),
            &observation.features,
        );
    }

    /// [`Self::push`] from its parts.
    pub fn push_parts(&mut self, at_ms: i64, request_id: &Arc<str>, predicted: Option<&Arc<str>>, features: &Features) {
        let seq = self.pushed;
        self.pushed += 1;
        if let ReferenceSource::FirstPredictions { size } = self.source {
            if self.reference.len() < size {
                Arc::make_mut(&mut self.reference).push(seq, at_ms, request_id, predicted, features);
                return;
            }
        }
        self.current.push(seq, at_ms, request_id, predicted, features);
        while self.current.len() > self.current_size {
            self.current.pop_front();
        }
    }

    /// Uses `samples` (a data set's features, say) as the reference. The current window is kept:
    /// it is independent data. Sequence numbers of the given rows are their indices.
    pub fn set_reference(&mut self, samples: &[DriftSample]) {
        let mut reference = Columns::default();
        for (i, s) in samples.iter().enumerate() {
            reference.push(i as u64, s.at_ms, &s.request_id, s.predicted.as_ref(), &s.features);
        }
        self.reference = Arc::new(reference);
        self.source = ReferenceSource::Given;
    }

    /// Freezes the current window as the reference and starts an empty current window (comparing
    /// a window with itself would say nothing).
    pub fn save_current_as_reference(&mut self) {
        self.reference = Arc::new(std::mem::take(&mut self.current));
        self.source = ReferenceSource::SavedWindow;
    }

    /// Back to "the first `size` predictions from now": both windows are emptied.
    pub fn reset_to_first(&mut self, size: usize) {
        self.reference = Arc::default();
        self.current.clear();
        self.source = ReferenceSource::FirstPredictions { size: size.max(1) };
    }

    /// Changes W; a smaller window drops its oldest samples now.
    pub fn set_current_size(&mut self, size: usize) {
        self.current_size = size.max(1);
        while self.current.len() > self.current_size {
            self.current.pop_front();
        }
    }

    pub fn source(&self) -> ReferenceSource {
        self.source
    }

    pub fn current_size(&self) -> usize {
        self.current_size
    }

    /// Samples in the reference, and in the current window.
    pub fn lens(&self) -> (usize, usize) {
        (self.reference.len(), self.current.len())
    }

    /// Whether the "first N" reference is still filling (no current window yet).
    pub fn is_collecting_reference(&self) -> bool {
        matches!(self.source, ReferenceSource::FirstPredictions { size } if self.reference.len() < size)
    }

    /// What [`compute`] and [`histogram`] need: the reference (shared) and a copy of the current
    /// window (at most W samples).
    pub fn snapshot(&self) -> DriftSnapshot {
        DriftSnapshot {
            source: self.source,
            reference: Arc::clone(&self.reference),
            current: Arc::new(self.current.clone()),
        }
    }
}

/// A frozen copy of both windows, to compute on off the recording path.
#[derive(Debug, Clone)]
pub struct DriftSnapshot {
    source: ReferenceSource,
    reference: Arc<Columns>,
    current: Arc<Columns>,
}

impl DriftSnapshot {
    /// Column names in result order: the reference's features, then features only the current
    /// window has, then [`PREDICTION_COLUMN`] when either window holds a predicted class.
    pub fn column_names(&self) -> Vec<FeatureName> {
        let mut names: Vec<FeatureName> = self.reference.features.iter().map(|(n, _)| *n).collect();
        for (n, _) in &self.current.features {
            if !names.contains(n) {
                names.push(n);
            }
        }
        if self.reference.has_prediction() || self.current.has_prediction() {
            names.push(PREDICTION_COLUMN);
        }
        names
    }

    /// The values of one window's column as CSV cells would hold them: `None` for a missing
    /// (non-finite) value, and for every sample if the window never had the feature.
    fn numbers<'a>(columns: &'a Columns, name: &str) -> Box<dyn Iterator<Item = Option<f64>> + 'a> {
        match columns.feature(name) {
            Some(c) => Box::new(c.iter().map(|&v| v.is_finite().then_some(v))),
            None => Box::new(std::iter::repeat_n(None, columns.len())),
        }
    }

    fn labels(columns: &Columns) -> impl Iterator<Item = Option<&str>> {
        columns.predicted.iter().map(|p| p.as_deref())
    }

    /// One window written as `modeldeck drift` reads it: a header of [`Self::column_names`] and a
    /// row per sample, numbers in Rust's shortest round-trip `{}` form, missing values empty.
    /// This is what an export of the window must contain for `modeldeck drift` to reproduce
    /// [`compute`]; tests and the "export these windows" action use it.
    pub fn write_csv(&self, which: WhichWindow, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let columns = match which {
            WhichWindow::Reference => &*self.reference,
            WhichWindow::Current => &*self.current,
        };
        let names = self.column_names();
        let mut w = csv::Writer::from_writer(out);
        w.write_record(&names)?;
        let mut cells: Vec<Box<dyn Iterator<Item = String> + '_>> = names
            .iter()
            .map(|&name| -> Box<dyn Iterator<Item = String>> {
                if name == PREDICTION_COLUMN {
                    Box::new(Self::labels(columns).map(|l| l.unwrap_or_default().to_string()))
                } else {
                    Box::new(Self::numbers(columns, name).map(|v| v.map(|x| x.to_string()).unwrap_or_default()))
                }
            })
            .collect();
        for _ in 0..columns.len() {
            let row: Vec<String> = cells.iter_mut().map(|c| c.next().unwrap_or_default()).collect();
            w.write_record(&row)?;
        }
        w.flush()?;
        Ok(())
    }

    pub fn source(&self) -> ReferenceSource {
        self.source
    }

    pub fn reference_range(&self) -> Option<WindowRange> {
        self.reference.range()
    }

    pub fn current_range(&self) -> Option<WindowRange> {
        self.current.range()
    }
}

/// Which of the two windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WhichWindow {
    Reference,
    Current,
}

/// The predictions a window holds, so the UI can say which rows of the log reproduce it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowRange {
    pub n: usize,
    /// Positions among the predictions pushed to this [`DriftWindows`] (0-based, inclusive);
    /// for a given reference, row indices of the given rows.
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_request_id: String,
    pub last_request_id: String,
    /// Earliest and latest prediction time (ms since epoch).
    pub from_ms: i64,
    pub to_ms: i64,
}

/// The verdict shown for a column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "error", rename_all = "snake_case")]
pub enum Verdict {
    Drift,
    NoDrift,
    /// Fewer than [`MIN_CURRENT_FOR_VERDICT`] current values: never a verdict, whatever the score.
    NotEnoughData,
    /// No statistics (an empty reference, a non-finite value, ...).
    Error(String),
}

impl Verdict {
    pub fn is_drift(&self) -> bool {
        matches!(self, Verdict::Drift)
    }

    /// Drift or no drift: a verdict that counts.
    pub fn is_decided(&self) -> bool {
        matches!(self, Verdict::Drift | Verdict::NoDrift)
    }
}

/// One column's drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDriftResult {
    pub name: FeatureName,
    pub kind: ColumnKind,
    /// The default test and its score and threshold (`None` when there are no statistics).
    pub method: Option<DriftMethod>,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub verdict: Verdict,
    /// Values present (missing ones dropped) on each side.
    pub n_reference: usize,
    pub n_current: usize,
    pub n_missing_reference: usize,
    pub n_missing_current: usize,
    /// Every statistic, exactly as `modeldeck drift` reports it for the column.
    #[serde(skip)]
    pub outcome: ColumnOutcome,
}

/// Drift of every column of one snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftResult {
    pub source: ReferenceSource,
    /// Features in the order of [`DriftSnapshot::column_names`], [`PREDICTION_COLUMN`] last.
    pub columns: Vec<ColumnDriftResult>,
    /// The data-set rule over every column with statistics, as `modeldeck drift` prints it
    /// (its flags ignore "not enough data", as the CLI's do).
    pub dataset_drift: DatasetDrift,
    pub reference: Option<WindowRange>,
    pub current: Option<WindowRange>,
}

impl DriftResult {
    pub fn column(&self, name: &str) -> Option<&ColumnDriftResult> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Feature columns (all but the prediction) with a verdict, and how many of them drift.
    pub fn feature_verdicts(&self) -> (usize, usize) {
        let decided = self.columns.iter().filter(|c| c.name != PREDICTION_COLUMN && c.verdict.is_decided());
        decided.fold((0, 0), |(n, d), c| (n + 1, d + usize::from(c.verdict.is_drift())))
    }
}

/// Drift of every column: the same computation as `modeldeck drift --categorical prediction`
/// on [`DriftSnapshot::write_csv`] of both windows.
pub fn compute(snapshot: &DriftSnapshot) -> DriftResult {
    let (reference, current) = (&*snapshot.reference, &*snapshot.current);
    let columns: Vec<ColumnDriftResult> = snapshot
        .column_names()
        .into_iter()
        .map(|name| {
            let categorical = name == PREDICTION_COLUMN;
            let outcome = if categorical {
                report::categorical_column(DriftSnapshot::labels(reference), DriftSnapshot::labels(current))
            } else {
                report::numerical_column(DriftSnapshot::numbers(reference, name), DriftSnapshot::numbers(current, name))
            };
            let kind = if categorical { ColumnKind::Categorical } else { ColumnKind::Numerical };
            column_result(name, kind, outcome, reference, current)
        })
        .collect();
    DriftResult {
        source: snapshot.source,
        dataset_drift: report::dataset_drift(columns.iter().map(|c| &c.outcome)),
        columns,
        reference: reference.range(),
        current: current.range(),
    }
}

fn column_result(
    name: FeatureName,
    kind: ColumnKind,
    outcome: ColumnOutcome,
    reference: &Columns,
    current: &Columns,
) -> ColumnDriftResult {
    match &outcome {
        ColumnOutcome::Drift(c) => {
            let t = &c.drift.default_test;
            let verdict = match (t.enough_data, t.drift_detected) {
                (false, _) => Verdict::NotEnoughData,
                (true, true) => Verdict::Drift,
                (true, false) => Verdict::NoDrift,
            };
            ColumnDriftResult {
                name,
                kind: c.drift.kind,
                method: Some(t.method),
                score: Some(t.score),
                threshold: Some(t.threshold),
                verdict,
                n_reference: c.drift.n_reference,
                n_current: c.drift.n_current,
                n_missing_reference: c.n_missing_reference,
                n_missing_current: c.n_missing_current,
                outcome,
            }
        }
        ColumnOutcome::Error(message) => {
            let present = |columns: &Columns| match kind {
                ColumnKind::Categorical => {
                    columns.predicted.iter().filter(|p| p.as_deref().is_some_and(|s| !report::is_missing(s))).count()
                }
                ColumnKind::Numerical => {
                    columns.feature(name).map_or(0, |c| c.iter().filter(|v| v.is_finite()).count())
                }
            };
            let (n_reference, n_current) = (present(reference), present(current));
            // An empty or short current window is "not enough data", not an error to show.
            let verdict = if n_current < MIN_CURRENT_FOR_VERDICT {
                Verdict::NotEnoughData
            } else {
                Verdict::Error(message.clone())
            };
            ColumnDriftResult {
                name,
                kind,
                method: None,
                score: None,
                threshold: None,
                verdict,
                n_reference,
                n_current,
                n_missing_reference: reference.len() - n_reference,
                n_missing_current: current.len() - n_current,
                outcome,
            }
        }
    }
}

/// The bins of a [`FeatureHistogram`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "bins", rename_all = "snake_case")]
pub enum HistogramBins {
    /// Equal-width bins: `edges.len() - 1` of them, [a, b) except the last, [a, b].
    Edges(Vec<f64>),
    /// One bin per distinct value, ascending.
    Values(Vec<f64>),
    /// One bin per predicted class, in byte order.
    Categories(Vec<String>),
}

/// A feature's reference and current distributions, binned exactly as its drift test bins
/// them (Sturges over the combined sample, or one bin per distinct value), so the chart shows
/// what was tested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureHistogram {
    pub bins: HistogramBins,
    /// Share of each side's values per bin (each side sums to 1).
    pub reference_shares: Vec<f64>,
    pub current_shares: Vec<f64>,
    pub n_reference: usize,
    pub n_current: usize,
}

/// The histogram of one column ([`PREDICTION_COLUMN`] for the predicted class); `None` when a
/// side has no values.
pub fn histogram(snapshot: &DriftSnapshot, feature: &str) -> Option<FeatureHistogram> {
    let (reference, current) = (&*snapshot.reference, &*snapshot.current);
    if feature == PREDICTION_COLUMN {
        let present = |c: &Columns| -> Vec<String> {
            DriftSnapshot::labels(c).flatten().filter(|s| !report::is_missing(s)).map(str::to_string).collect()
        };
        let (r, c) = (present(reference), present(current));
        if r.is_empty() || c.is_empty() {
            return None;
        }
        let (names, counts) = binning::label_categories(&r, &c);
        let (reference_shares, current_shares) = counts.shares();
        return Some(FeatureHistogram {
            bins: HistogramBins::Categories(names.into_iter().map(str::to_string).collect()),
            reference_shares,
            current_shares,
            n_reference: r.len(),
            n_current: c.len(),
        });
    }
    let sorted = |c: &Columns| -> Option<Vec<f64>> {
        let mut v: Vec<f64> = DriftSnapshot::numbers(c, feature).flatten().collect();
        // The drift test's own sort (finite values only, as `numbers` guarantees).
        describe::sort_finite(&mut v).ok().map(|()| v)
    };
    let (r, c) = (sorted(reference)?, sorted(current)?);
    if r.is_empty() || c.is_empty() {
        return None;
    }
    let binned = binning::numeric_binning(&r, &c);
    Some(FeatureHistogram {
        bins: match binned.bins {
            NumericBins::Edges(e) => HistogramBins::Edges(e),
            NumericBins::Values(v) => HistogramBins::Values(v),
        },
        reference_shares: binned.reference_shares,
        current_shares: binned.current_shares,
        n_reference: r.len(),
        n_current: c.len(),
    })
}

/// One point of a score's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScorePoint {
    pub at_ms: i64,
    /// The default test's score; NaN (a gap) when there was no verdict.
    pub score: f64,
    pub method: Option<DriftMethod>,
    pub drift: bool,
}

/// Each column's score over time, for sparklines: the last `capacity` computations.
#[derive(Debug, Clone)]
pub struct DriftHistory {
    capacity: usize,
    series: Vec<(FeatureName, VecDeque<ScorePoint>)>,
}

impl DriftHistory {
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), series: Vec::new() }
    }

    /// Appends one computation's scores (the aggregator calls it after each [`compute`]).
    pub fn record(&mut self, at_ms: i64, result: &DriftResult) {
        for c in &result.columns {
            let point = ScorePoint {
                at_ms,
                score: if c.verdict.is_decided() { c.score.unwrap_or(f64::NAN) } else { f64::NAN },
                method: c.method,
                drift: c.verdict.is_drift(),
            };
            let index = match self.series.iter().position(|(n, _)| *n == c.name) {
                Some(i) => i,
                None => {
                    self.series.push((c.name, VecDeque::new()));
                    self.series.len() - 1
                }
            };
            let series = &mut self.series[index].1;
            series.push_back(point);
            if series.len() > self.capacity {
                series.pop_front();
            }
        }
    }

    /// One column's points, oldest first (empty if never computed).
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ScorePoint> + 'a {
        self.series.iter().filter(move |(n, _)| *n == name).flat_map(|(_, s)| s.iter())
    }

    pub fn names(&self) -> impl Iterator<Item = FeatureName> + '_ {
        self.series.iter().map(|(n, _)| *n)
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(i: usize, features: &[(FeatureName, f64)], predicted: Option<&str>) -> Observation {
        Observation {
            at_ms: 1_000_000 + i as i64 * 10,
            model: Arc::from("m"),
            request_id: Arc::from(format!("r{i}")),
            latency_ms: Some(1.0),
            error: false,
            predicted: predicted.map(Arc::from),
            features: Features(features.to_vec()),
        }
    }

    /// A deterministic pseudo-random value in [0, 1) (splitmix64).
    fn unit(seed: u64) -> f64 {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }

    /// Brightness (shifted by `shift` after `from`), a constant width, confidence, a
    /// three-valued feature, and a class.
    fn sample(i: usize, shift_from: usize, shift: f64) -> Observation {
        let s = if i >= shift_from { shift } else { 0.0 };
        let brightness = 0.3 + 0.4 * unit(i as u64) + s;
        let classes = ["cat", "dog", "bird"];
        let class = if i >= shift_from && unit(i as u64 + 7) < 0.6 { "cat" } else { classes[i % 3] };
        obs(
            i,
            &[
                ("brightness", brightness),
                ("width", 224.0),
                ("confidence", 0.5 + 0.5 * unit(i as u64 + 99)),
                ("level", (i % 3) as f64),
            ],
            Some(class),
        )
    }

    #[test]
    fn first_n_reference_then_sliding_current() {
        let mut w = DriftWindows::new(DriftConfig { reference_size: 5, current_size: 3 });
        for i in 0..5 {
            w.push(&obs(i, &[("x", i as f64)], None));
            assert!(w.is_collecting_reference() == (i < 4));
        }
        assert_eq!(w.lens(), (5, 0));
        for i in 5..10 {
            w.push(&obs(i, &[("x", i as f64)], None));
        }
        assert_eq!(w.lens(), (5, 3));
        let mut failed = obs(99, &[("x", 99.0)], None);
        failed.error = true;
        w.push(&failed);
        assert_eq!(w.lens(), (5, 3), "failed requests are not predictions");
        let s = w.snapshot();
        let cur = s.current_range().unwrap();
        assert_eq!((cur.first_seq, cur.last_seq, cur.n), (7, 9, 3));
        assert_eq!((cur.first_request_id.as_str(), cur.last_request_id.as_str()), ("r7", "r9"));
        assert_eq!((cur.from_ms, cur.to_ms), (1_000_070, 1_000_090));
        let r = s.reference_range().unwrap();
        assert_eq!((r.first_seq, r.last_seq), (0, 4));
        assert_eq!(s.current.feature("x").unwrap().iter().copied().collect::<Vec<_>>(), vec![7.0, 8.0, 9.0]);
        // A snapshot is frozen: later pushes do not change it.
        w.push(&obs(10, &[("x", 10.0)], None));
        assert_eq!(s.current.feature("x").unwrap().back(), Some(&9.0));
        w.set_current_size(2);
        assert_eq!(w.lens(), (5, 2));
    }

    #[test]
    fn reference_modes() {
        let mut w = DriftWindows::new(DriftConfig { reference_size: 2, current_size: 4 });
        for i in 0..6 {
            w.push(&obs(i, &[("x", i as f64)], Some("a")));
        }
        w.save_current_as_reference();
        assert_eq!(w.source(), ReferenceSource::SavedWindow);
        assert_eq!(w.lens(), (4, 0));
        assert_eq!(w.snapshot().reference_range().unwrap().first_request_id, "r2");
        let given: Vec<DriftSample> =
            (0..3).map(|i| DriftSample::from_observation(&obs(100 + i, &[("x", 0.5)], None))).collect();
        w.push(&obs(6, &[("x", 6.0)], None));
        w.set_reference(&given);
        assert_eq!(w.source(), ReferenceSource::Given);
        assert_eq!(w.lens(), (3, 1), "a given reference keeps the current window");
        let r = w.snapshot().reference_range().unwrap();
        assert_eq!((r.first_seq, r.last_seq, r.first_request_id.as_str()), (0, 2, "r100"));
        w.reset_to_first(1);
        assert_eq!(w.lens(), (0, 0));
        assert!(w.is_collecting_reference());
        w.push(&obs(7, &[("x", 7.0)], None));
        w.push(&obs(8, &[("x", 8.0)], None));
        assert_eq!(w.lens(), (1, 1));
    }

    #[test]
    fn features_that_come_and_go_are_missing_not_shifted() {
        let mut w = DriftWindows::new(DriftConfig { reference_size: 1, current_size: 10 });
        w.push(&obs(0, &[("a", 1.0)], None));
        w.push(&obs(1, &[("a", 2.0)], None));
        w.push(&obs(2, &[("b", 3.0), ("a", 4.0)], None));
        w.push(&obs(3, &[("b", 5.0)], None));
        let s = w.snapshot();
        let col = |n: &str| s.current.feature(n).unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert_eq!(col("a"), ["2", "4", "NaN"]);
        assert_eq!(col("b"), ["NaN", "3", "5"]);
        assert_eq!(s.column_names(), ["a", "b"]);
    }

    #[test]
    fn not_enough_data_is_never_a_verdict() {
        let mut w = DriftWindows::new(DriftConfig { reference_size: 100, current_size: 300 });
        for i in 0..100 {
            w.push(&sample(i, usize::MAX, 0.0));
        }
        let r = compute(&w.snapshot());
        for c in &r.columns {
            assert_eq!(c.verdict, Verdict::NotEnoughData, "{} with an empty current window", c.name);
            assert_eq!(c.n_current, 0);
        }
        // 29 current samples, all shifted far away: still no verdict.
        for i in 100..129 {
            w.push(&sample(i, 100, 5.0));
        }
        let r = compute(&w.snapshot());
        let b = r.column("brightness").unwrap();
        assert_eq!((b.verdict.clone(), b.n_current), (Verdict::NotEnoughData, 29));
        assert!(b.score.unwrap() < 1e-6, "the score is computed, only the verdict is withheld");
        w.push(&sample(129, 100, 5.0));
        let r = compute(&w.snapshot());
        assert_eq!(r.column("brightness").unwrap().verdict, Verdict::Drift);
        assert_eq!(r.column("width").unwrap().verdict, Verdict::NoDrift);
        assert_eq!(r.feature_verdicts().0, 4);
    }

    #[test]
    fn drift_on_a_shifted_feature_and_class() {
        let mut w = DriftWindows::default();
        for i in 0..800 {
            w.push(&sample(i, 500, 0.3));
        }
        let r = compute(&w.snapshot());
        assert_eq!(r.column("brightness").unwrap().verdict, Verdict::Drift);
        assert_eq!(r.column("brightness").unwrap().method, Some(DriftMethod::Ks));
        assert_eq!(r.column("confidence").unwrap().verdict, Verdict::NoDrift);
        let p = r.column(PREDICTION_COLUMN).unwrap();
        assert_eq!(
            (p.kind, p.method, p.verdict.clone()),
            (ColumnKind::Categorical, Some(DriftMethod::ChiSquare), Verdict::Drift)
        );
        assert_eq!((p.n_reference, p.n_current), (500, 300));
        assert_eq!(r.feature_verdicts(), (4, 1));
    }

    fn cli_report(s: &DriftSnapshot, dir: &std::path::Path) -> report::DriftReport {
        let (rp, cp) = (dir.join("reference.csv"), dir.join("current.csv"));
        let mut f = std::fs::File::create(&rp).unwrap();
        s.write_csv(WhichWindow::Reference, &mut f).unwrap();
        let mut f = std::fs::File::create(&cp).unwrap();
        s.write_csv(WhichWindow::Current, &mut f).unwrap();
        report::drift_report(&rp, &cp, &[], &[PREDICTION_COLUMN.to_string()]).unwrap()
    }

    /// Every column's statistics equal `modeldeck drift --categorical prediction` on the CSV
    /// exports of the same two windows, bit for bit.
    fn assert_same_as_cli(w: &DriftWindows) -> DriftResult {
        let dir = tempfile::tempdir().unwrap();
        let s = w.snapshot();
        let mine = compute(&s);
        let cli = cli_report(&s, dir.path());
        let names: Vec<&str> = mine.columns.iter().map(|c| c.name).collect();
        let cli_names: Vec<&str> = cli.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, cli_names);
        for (c, (_, cli_outcome)) in mine.columns.iter().zip(&cli.columns) {
            // Debug prints floats in shortest round-trip form, so this compares bits (NaN too).
            assert_eq!(format!("{:?}", c.outcome), format!("{cli_outcome:?}"), "column {}", c.name);
            if let ColumnOutcome::Drift(d) = cli_outcome {
                let t = &d.drift.default_test;
                assert_eq!(c.method, Some(t.method));
                assert_eq!(c.score.map(f64::to_bits), Some(t.score.to_bits()), "column {}", c.name);
                let expected = if !t.enough_data {
                    Verdict::NotEnoughData
                } else if t.drift_detected {
                    Verdict::Drift
                } else {
                    Verdict::NoDrift
                };
                assert_eq!(c.verdict, expected, "column {}", c.name);
            }
        }
        assert_eq!(format!("{:?}", mine.dataset_drift), format!("{:?}", cli.dataset_drift));
        mine
    }

    #[test]
    fn equals_the_drift_verb_on_exported_windows() {
        // Full windows with drift: KS, chi-square, z (constant `width`), categorical prediction.
        let mut w = DriftWindows::default();
        for i in 0..800 {
            w.push(&sample(i, 500, 0.25));
        }
        let r = assert_same_as_cli(&w);
        assert_eq!(r.column("width").unwrap().method, Some(DriftMethod::Z), "a constant column");
        assert_eq!(r.column("level").unwrap().method, Some(DriftMethod::ChiSquare));
        assert!(r.column("brightness").unwrap().verdict.is_drift());

        // Fewer than 30 current samples.
        let mut short = DriftWindows::default();
        for i in 0..520 {
            short.push(&sample(i, 500, 1.0));
        }
        let r = assert_same_as_cli(&short);
        assert!(r.columns.iter().all(|c| c.verdict == Verdict::NotEnoughData));

        // Missing values (NaN, inf, absent features, no class) and a large given reference
        // (distance tests above 1000 rows).
        let mut w = DriftWindows::new(DriftConfig { reference_size: 10, current_size: 200 });
        let given: Vec<DriftSample> =
            (0..1500).map(|i| DriftSample::from_observation(&sample(i, usize::MAX, 0.0))).collect();
        w.set_reference(&given);
        for i in 0..260 {
            let mut o = sample(i, 0, 0.05);
            match i % 17 {
                0 => o.features.0[0].1 = f64::NAN,
                1 => o.features.0[2].1 = f64::INFINITY,
                2 => o.predicted = None,
                3 => o.features.0.truncate(2),
                _ => {}
            }
            w.push(&o);
        }
        let r = assert_same_as_cli(&w);
        let b = r.column("brightness").unwrap();
        assert_eq!(b.method, Some(DriftMethod::WassersteinNormed));
        assert!(b.n_missing_current > 0);
        assert_eq!(r.column(PREDICTION_COLUMN).unwrap().method, Some(DriftMethod::JensenShannon));

        // A feature the reference never had: an error, as in the CLI.
        let mut w = DriftWindows::new(DriftConfig { reference_size: 40, current_size: 40 });
        for i in 0..40 {
            w.push(&obs(i, &[("a", i as f64)], Some("x")));
        }
        for i in 40..80 {
            w.push(&obs(i, &[("a", i as f64), ("new", 1.0)], Some("x")));
        }
        let r = assert_same_as_cli(&w);
        assert!(matches!(r.column("new").unwrap().verdict, Verdict::Error(_)));
    }

    #[test]
    fn histogram_uses_the_tests_bins() {
        let mut w = DriftWindows::default();
        for i in 0..800 {
            w.push(&sample(i, 500, 0.25));
        }
        let s = w.snapshot();
        let r = compute(&s);
        let h = histogram(&s, "brightness").unwrap();
        let HistogramBins::Edges(edges) = &h.bins else { panic!("sturges bins expected") };
        // numpy: sturges over 800 values gives ceil(log2(800) + 1) = 11 bins.
        assert_eq!(edges.len(), 12);
        assert_eq!(h.reference_shares.len(), 11);
        assert!((h.reference_shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // The PSI of the chart's shares is the PSI the drift test reports.
        let ColumnOutcome::Drift(d) = &r.column("brightness").unwrap().outcome else { panic!() };
        assert_eq!(crate::stats::drift::psi(&h.reference_shares, &h.current_shares), d.drift.psi);
        let w_hist = histogram(&s, "width").unwrap();
        assert_eq!(w_hist.bins, HistogramBins::Values(vec![224.0]));
        assert_eq!((w_hist.reference_shares.clone(), w_hist.current_shares.clone()), (vec![1.0], vec![1.0]));
        let p = histogram(&s, PREDICTION_COLUMN).unwrap();
        assert_eq!(p.bins, HistogramBins::Categories(vec!["bird".into(), "cat".into(), "dog".into()]));
        assert!(p.current_shares[1] > p.reference_shares[1]);
        assert!(histogram(&s, "absent").is_none());
    }

    #[test]
    fn history_is_bounded_and_gaps_without_verdict() {
        let mut w = DriftWindows::new(DriftConfig { reference_size: 50, current_size: 50 });
        let mut h = DriftHistory::new(3);
        for i in 0..50 {
            w.push(&sample(i, usize::MAX, 0.0));
        }
        h.record(1, &compute(&w.snapshot()));
        assert!(h.series("brightness").next().unwrap().score.is_nan());
        for step in 0..4 {
            for i in 0..30 {
                w.push(&sample(50 + step * 30 + i, 0, 0.0));
            }
            h.record(2 + step as i64, &compute(&w.snapshot()));
        }
        let points: Vec<&ScorePoint> = h.series("brightness").collect();
        assert_eq!(points.len(), 3);
        assert_eq!(points.iter().map(|p| p.at_ms).collect::<Vec<_>>(), [3, 4, 5]);
        assert!(points.iter().all(|p| p.score.is_finite() && p.method == Some(DriftMethod::Ks)));
        assert!(h.names().any(|n| n == PREDICTION_COLUMN));
    }
}
