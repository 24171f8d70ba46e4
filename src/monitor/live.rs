//! [`Monitor`]: the live aggregate every prediction flows into, shared by the engine (Playground),
//! replays, the CLI and the Monitor view.
//!
//! Two paths with different budgets:
//! - **recording** ([`Monitor::observe`], [`Monitor::feedback`]) runs on the prediction threads:
//!   one short mutex section of histogram updates and pushes into bounded buffers;
//! - **refreshing** ([`Monitor::refresh`], on a schedule: about once a second) samples the process,
//!   recomputes drift off the lock, evaluates alerts and publishes an immutable
//!   [`MonitorSnapshot`] that the UI reads each frame without copying or re-scanning anything.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::accuracy::{AccuracyBucket, AccuracyConfig, AccuracySummary, AccuracyTracker};
use super::alerts::{ActiveAlert, AlertEvaluator, AlertEvent, AlertInputs, AlertRule, Measured, RuleError};
use super::drift::{self, DriftConfig, DriftHistory, DriftResult, DriftSnapshot, DriftWindows, FeatureHistogram};
use super::metrics::{ModelMetrics, OpsSummary, ProcessMetrics, ProcessPoint, SecondPoint, Window};
use super::prometheus::PromMetrics;
use super::{FeatureName, Feedback, Observation};
use crate::store::{AlertRecord, Origin, PredictionLog};

/// Class proportions are counted in buckets of this many ms.
pub const CLASS_BUCKET_MS: i64 = 10_000;
/// Buckets kept per model (3 hours of 10-s buckets).
const MAX_CLASS_BUCKETS: usize = 1080;
/// Drift computations kept per column for the sparklines.
const DRIFT_HISTORY: usize = 600;
/// Alert events kept for the view (all of them go to the log database).
const ALERT_LOG: usize = 500;

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// How often [`Monitor::start_refresher`] refreshes.
    pub refresh_every: Duration,
    /// Drift is recomputed at most this often (and only when new predictions arrived).
    pub drift_every: Duration,
    pub drift: DriftConfig,
    pub accuracy: AccuracyConfig,
    pub rules: Vec<AlertRule>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            refresh_every: Duration::from_millis(500),
            drift_every: Duration::from_secs(1),
            drift: DriftConfig::default(),
            accuracy: AccuracyConfig::default(),
            rules: super::alerts::default_rules(),
        }
    }
}

/// Predicted-class counts per time bucket.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ClassSeries {
    /// Every class seen, in order of first appearance.
    pub labels: Vec<Arc<str>>,
    /// (bucket start ms, count per label: may be shorter than `labels` for old buckets).
    pub buckets: VecDeque<(i64, Vec<u32>)>,
}

impl ClassSeries {
    fn record(&mut self, at_ms: i64, label: &Arc<str>) {
        let index = match self.labels.iter().position(|l| Arc::ptr_eq(l, label) || l == label) {
            Some(i) => i,
            None => {
                self.labels.push(label.clone());
                self.labels.len() - 1
            }
        };
        let start = at_ms.div_euclid(CLASS_BUCKET_MS) * CLASS_BUCKET_MS;
        // A prediction slightly older than the newest bucket counts in the newest one.
        if self.buckets.back().is_none_or(|(t, _)| start > *t) {
            self.buckets.push_back((start, Vec::new()));
            if self.buckets.len() > MAX_CLASS_BUCKETS {
                self.buckets.pop_front();
            }
        }
        if let Some((_, counts)) = self.buckets.back_mut() {
            if counts.len() <= index {
                counts.resize(index + 1, 0);
            }
            counts[index] += 1;
        }
    }

    /// Each label's share of each bucket: (bucket start ms, shares in `labels` order).
    pub fn shares(&self) -> impl Iterator<Item = (i64, Vec<f64>)> + '_ {
        self.buckets.iter().map(|(t, counts)| {
            let total: u32 = counts.iter().sum();
            let shares =
                (0..self.labels.len()).map(|i| *counts.get(i).unwrap_or(&0) as f64 / total.max(1) as f64).collect();
            (*t, shares)
        })
    }
}

/// Everything the view shows about one model, frozen at a refresh.
#[derive(Debug, Clone)]
pub struct ModelSnapshot {
    pub name: Arc<str>,
    pub ops: OpsSummary,
    pub series: Vec<SecondPoint>,
    pub classes: ClassSeries,
    /// The latest drift computation (none before the first).
    pub drift: Option<Arc<DriftResult>>,
    /// Each column's score over time: (column, points (seconds since the epoch, score; NaN =
    /// no verdict)).
    pub drift_history: Vec<(FeatureName, Vec<[f64; 2]>)>,
    /// Each column's reference and current histogram, binned as its test bins it.
    pub histograms: Histograms,
    pub accuracy: AccuracySummary,
    pub accuracy_series: Vec<AccuracyBucket>,
}

/// What the Monitor view and the CLI read: immutable, replaced at each refresh.
#[derive(Debug, Clone, Default)]
pub struct MonitorSnapshot {
    pub at_ms: i64,
    /// Increases with every refresh.
    pub version: u64,
    pub models: Vec<ModelSnapshot>,
    pub process: Vec<ProcessPoint>,
    /// Alerts firing now.
    pub firing: Vec<ActiveAlert>,
    /// Alerts fired and resolved, oldest first (bounded).
    pub alert_log: Vec<AlertEvent>,
}

/// Each column's histogram, by column name.
type Histograms = Arc<Vec<(FeatureName, FeatureHistogram)>>;

struct ModelState {
    name: Arc<str>,
    metrics: ModelMetrics,
    classes: ClassSeries,
    drift: DriftWindows,
    /// Predictions pushed to `drift` since its last computation.
    drift_pending: u64,
    drift_result: Option<Arc<DriftResult>>,
    drift_history: DriftHistory,
    histograms: Histograms,
    accuracy: AccuracyTracker,
}

struct State {
    start_ms: i64,
    models: Vec<ModelState>,
    process: ProcessMetrics,
    version: u64,
    last_drift_ms: i64,
    alerts: AlertEvaluator,
    alert_log: VecDeque<AlertEvent>,
    drift_config: DriftConfig,
    accuracy_config: AccuracyConfig,
}

impl State {
    fn model(&mut self, name: &Arc<str>) -> &mut ModelState {
        let index = match self.models.iter().position(|m| Arc::ptr_eq(&m.name, name) || m.name == *name) {
            Some(i) => i,
            None => {
                self.models.push(ModelState {
                    name: name.clone(),
                    metrics: ModelMetrics::new(self.start_ms),
                    classes: ClassSeries::default(),
                    drift: DriftWindows::new(self.drift_config),
                    drift_pending: 0,
                    drift_result: None,
                    drift_history: DriftHistory::new(DRIFT_HISTORY),
                    histograms: Arc::default(),
                    accuracy: AccuracyTracker::new(self.accuracy_config),
                });
                self.models.len() - 1
            }
        };
        &mut self.models[index]
    }
}

struct Shared {
    state: Mutex<State>,
    /// Where observations and refreshed values are exported, when `--metrics-addr` is on.
    prometheus: Mutex<Option<Arc<PromMetrics>>>,
    /// Where alert events are written, when predictions are logged.
    log: Mutex<Option<PredictionLog>>,
    snapshot: Mutex<Arc<MonitorSnapshot>>,
    config: MonitorConfig,
}

/// A cheap, cloneable handle; all clones see the same monitor.
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl Monitor {
    /// A monitor with the default configuration and alert rules.
    pub fn with_defaults(start_ms: i64) -> Self {
        let config = MonitorConfig::default();
        let alerts = AlertEvaluator::default();
        Self::build(config, alerts, start_ms)
    }

    /// A monitor with `config`'s alert rules (checked: duplicate names are refused).
    pub fn new(config: MonitorConfig, start_ms: i64) -> Result<Self, RuleError> {
        let alerts = AlertEvaluator::new(config.rules.clone())?;
        Ok(Self::build(config, alerts, start_ms))
    }

    fn build(config: MonitorConfig, alerts: AlertEvaluator, start_ms: i64) -> Self {
        let state = State {
            start_ms,
            models: Vec::new(),
            process: ProcessMetrics::new(),
            version: 0,
            last_drift_ms: i64::MIN,
            alerts,
            alert_log: VecDeque::new(),
            drift_config: config.drift,
            accuracy_config: config.accuracy,
        };
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                prometheus: Mutex::new(None),
                log: Mutex::new(None),
                snapshot: Mutex::new(Arc::new(MonitorSnapshot { at_ms: start_ms, ..Default::default() })),
                config,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters, never broken invariants: keep going.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Exports every observation and refresh to `metrics` from now on.
    pub fn set_prometheus(&self, metrics: Option<Arc<PromMetrics>>) {
        *self.shared.prometheus.lock().unwrap_or_else(|p| p.into_inner()) = metrics;
    }

    /// Writes every alert event to `log` from now on.
    pub fn set_log(&self, log: Option<PredictionLog>) {
        *self.shared.log.lock().unwrap_or_else(|p| p.into_inner()) = log;
    }

    fn prometheus(&self) -> Option<Arc<PromMetrics>> {
        self.shared.prometheus.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Uses `samples` (say, a reference data set's predictions and features) as `model`'s drift
    /// reference instead of its first predictions.
    pub fn set_reference(&self, model: &Arc<str>, samples: &[drift::DriftSample]) {
        let mut state = self.state();
        let m = state.model(model);
        m.drift.set_reference(samples);
        // Drift against the new reference at the next refresh, even with no new prediction;
        // the history measured against the old one no longer applies.
        m.drift_pending = m.drift_pending.max(1);
        m.drift_history.clear();
    }

    /// Freezes `model`'s current drift window as its reference (the current window starts
    /// empty), or with `first: Some(n)` goes back to "the first n predictions from now".
    pub fn reset_reference(&self, model: &Arc<str>, first: Option<usize>) {
        let mut state = self.state();
        let m = state.model(model);
        match first {
            None => m.drift.save_current_as_reference(),
            Some(n) => m.drift.reset_to_first(n),
        }
        m.drift_history.clear();
        m.drift_result = None;
        m.histograms = Arc::default();
    }

    /// Records one prediction (the recording path: no allocation beyond bounded buffers).
    pub fn observe(&self, observation: Observation, origin: Origin) {
        if let Some(prometheus) = self.prometheus() {
            prometheus.observe(&observation, origin);
        }
        let mut state = self.state();
        let model = state.model(&observation.model);
        model.metrics.record(observation.at_ms, observation.latency_ms, observation.error);
        if let Some(label) = &observation.predicted {
            model.classes.record(observation.at_ms, label);
        }
        // Failed requests have nothing to compare; the drift windows hold answers only.
        if !observation.error {
            model.drift.push(&observation);
            model.drift_pending += 1;
        }
    }

    /// Ground truth for an earlier prediction.
    pub fn feedback(&self, feedback: Feedback) {
        let mut state = self.state();
        state.model(&feedback.model).accuracy.record(&feedback);
    }

    /// A request that was dropped before it ran (a full queue).
    pub fn record_drop(&self, model: &Arc<str>, at_ms: i64) {
        if let Some(prometheus) = self.prometheus() {
            prometheus.record_drop(model);
        }
        self.state().model(model).metrics.record_drop(at_ms);
    }

    /// Samples the process, recomputes drift when due (off the lock), evaluates the alert rules
    /// and publishes a new snapshot. Returns the alert events of this refresh.
    pub fn refresh(&self, now_ms: i64) -> (Arc<MonitorSnapshot>, Vec<AlertEvent>) {
        self.refresh_inner(now_ms, false)
    }

    /// [`Self::refresh`], recomputing drift whatever the schedule (e.g. at the end of a replay).
    pub fn refresh_now(&self, now_ms: i64) -> (Arc<MonitorSnapshot>, Vec<AlertEvent>) {
        self.refresh_inner(now_ms, true)
    }

    fn refresh_inner(&self, now_ms: i64, force: bool) -> (Arc<MonitorSnapshot>, Vec<AlertEvent>) {
        let drift_due = {
            let mut state = self.state();
            state.process.sample(now_ms);
            let every = self.shared.config.drift_every.as_millis() as i64;
            let due = force || now_ms.saturating_sub(state.last_drift_ms) >= every;
            if due {
                state.last_drift_ms = now_ms;
            }
            due
        };
        // Drift: copy the windows under the lock, compute without it.
        let mut computed: Vec<(Arc<str>, Arc<DriftResult>, Histograms)> = Vec::new();
        if drift_due {
            let snapshots: Vec<(Arc<str>, DriftSnapshot)> = {
                let mut state = self.state();
                state
                    .models
                    .iter_mut()
                    .filter(|m| m.drift_pending > 0)
                    .map(|m| {
                        m.drift_pending = 0;
                        (m.name.clone(), m.drift.snapshot())
                    })
                    .collect()
            };
            for (name, snapshot) in snapshots {
                let result = drift::compute(&snapshot);
                let histograms = result
                    .columns
                    .iter()
                    .filter_map(|c| Some((c.name, drift::histogram(&snapshot, c.name)?)))
                    .collect();
                computed.push((name, Arc::new(result), Arc::new(histograms)));
            }
        }
        let (snapshot, events) = {
            let mut state = self.state();
            for (name, result, histograms) in computed {
                let model = state.model(&name);
                model.drift_history.record(now_ms, &result);
                model.drift_result = Some(result);
                model.histograms = histograms;
            }
            let mut events = Vec::new();
            let State { models, alerts, .. } = &mut *state;
            let mut summaries = Vec::with_capacity(models.len());
            for model in models.iter_mut() {
                // Close the seconds and slots that ended while the model was idle.
                model.metrics.advance_to(now_ms);
                let ops = model.metrics.summary(now_ms);
                let inputs = alert_inputs(model, &ops);
                events.extend(alerts.evaluate(&model.name, &inputs, now_ms));
                summaries.push(ops);
            }
            for event in &events {
                state.alert_log.push_back(event.clone());
                if state.alert_log.len() > ALERT_LOG {
                    state.alert_log.pop_front();
                }
            }
            state.version += 1;
            let snapshot = Arc::new(MonitorSnapshot {
                at_ms: now_ms,
                version: state.version,
                models: state.models.iter().zip(summaries).map(|(m, ops)| model_snapshot(m, ops)).collect(),
                process: state.process.series(),
                firing: state.alerts.firing(),
                alert_log: state.alert_log.iter().cloned().collect(),
            });
            (snapshot, events)
        };
        *self.shared.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snapshot.clone();
        self.export(&snapshot, &events);
        (snapshot, events)
    }

    /// Alert events to the log database; drift, accuracy, alerts and process to Prometheus.
    fn export(&self, snapshot: &MonitorSnapshot, events: &[AlertEvent]) {
        if let Some(log) = self.shared.log.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            for e in events {
                log.record_alert(AlertRecord::from(e));
            }
        }
        let Some(prometheus) = self.prometheus() else { return };
        for e in events {
            let model: Arc<str> = e.model.as_str().into();
            prometheus.set_alert_firing(&model, &e.rule, e.state == super::alerts::AlertState::Firing);
        }
        if let Some(point) = snapshot.process.last() {
            prometheus.set_process(point);
        }
        for model in &snapshot.models {
            prometheus.set_accuracy(&model.name, model.accuracy.overall.as_ref().map(|a| a.accuracy));
            let Some(result) = &model.drift else { continue };
            for c in &result.columns {
                if let (Some(method), Some(score)) = (c.method, c.score) {
                    prometheus.set_drift_score(&model.name, c.name, method.name(), score);
                }
                let detected = c.verdict.is_decided().then(|| c.verdict.is_drift());
                prometheus.set_drift_detected(&model.name, c.name, detected);
            }
        }
    }

    /// The latest published snapshot (cheap: an `Arc` clone).
    pub fn snapshot(&self) -> Arc<MonitorSnapshot> {
        self.shared.snapshot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refreshes every `config.refresh_every` on a background thread and calls `on_refresh` with
    /// each refresh's alert events (e.g. to repaint); stops when the returned handle is dropped.
    pub fn start_refresher(&self, on_refresh: impl Fn(&[AlertEvent]) + Send + 'static) -> std::io::Result<Refresher> {
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let monitor = self.clone();
        let every = self.shared.config.refresh_every;
        let stop_thread = stop.clone();
        let running = Arc::new(AtomicBool::new(true));
        let running_thread = running.clone();
        let thread = std::thread::Builder::new().name("monitor-refresh".into()).spawn(move || {
            let (lock, wakeup) = &*stop_thread;
            let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
            while !*stopped {
                let (_, events) = monitor.refresh(crate::store::now_ms());
                on_refresh(&events);
                stopped = wakeup.wait_timeout(stopped, every).unwrap_or_else(|p| p.into_inner()).0;
            }
            running_thread.store(false, Ordering::SeqCst);
        })?;
        Ok(Refresher { stop, thread: Some(thread), running })
    }
}

/// What the alert rules see of one model now.
fn alert_inputs(model: &ModelState, ops: &OpsSummary) -> AlertInputs {
    let mut inputs = AlertInputs::default();
    if let Some(p) = ops.latency(Window::LastMinute) {
        inputs.latency_p95_ms = Some(Measured { value: p.p95, n: p.n });
    }
    if let Some(rate) = ops.error_rate {
        inputs.error_rate = Some(Measured { value: rate, n: ops.last_minute_requests });
    }
    if let Some(result) = &model.drift_result {
        inputs.set_drift(result);
    }
    inputs.set_accuracy(&model.accuracy.summary());
    inputs
}

fn model_snapshot(m: &ModelState, ops: OpsSummary) -> ModelSnapshot {
    ModelSnapshot {
        name: m.name.clone(),
        ops,
        series: m.metrics.series(),
        classes: m.classes.clone(),
        drift: m.drift_result.clone(),
        drift_history: m
            .drift_history
            .names()
            .map(|n| (n, m.drift_history.series(n).map(|p| [p.at_ms as f64 / 1000.0, p.score]).collect()))
            .collect(),
        histograms: m.histograms.clone(),
        accuracy: m.accuracy.summary(),
        accuracy_series: m.accuracy.series().copied().collect(),
    }
}

/// Stops the background refresher when dropped.
pub struct Refresher {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    running: Arc<AtomicBool>,
}

impl Refresher {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        let (lock, wakeup) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wakeup.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_buckets_count_each_label_and_give_shares() {
        let mut series = ClassSeries::default();
        let (a, b): (Arc<str>, Arc<str>) = ("3".into(), "8".into());
        series.record(1_000, &a);
        series.record(2_000, &b);
        series.record(3_000, &a);
        series.record(12_000, &b);
        // Slightly older than the newest bucket: counted in the newest.
        series.record(9_000, &b);
        assert_eq!(series.labels, vec![a.clone(), b.clone()]);
        let shares: Vec<_> = series.shares().collect();
        assert_eq!(shares.len(), 2);
        assert_eq!(shares[0].0, 0);
        assert!((shares[0].1[0] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(shares[1], (10_000, vec![0.0, 1.0]));
    }
}
