//! Accuracy over time, from labels that arrive after their predictions ([`Feedback`]).
//!
//! Per model: a reference accuracy (the first N labels to arrive), a current accuracy (the last
//! W labels to arrive after the reference is complete, so the two never overlap), a bounded
//! series of 10-second buckets by *prediction* time (a late label lands in the bucket of the
//! prediction it judges), and the label delay (mean over all labels, median over the last
//! [`AccuracyConfig::delay_window`]). Intervals are Wilson 95% ([`stats::wilson_ci95`]).
//!
//! Each [`Feedback`] counts once: the caller passes a request's first label only (a second
//! label for the same request would be counted again).

use std::collections::VecDeque;

use serde::Serialize;

use super::Feedback;
use crate::stats::{self, ArmAccuracy};

pub const DEFAULT_REFERENCE_LABELS: usize = 200;
pub const DEFAULT_CURRENT_LABELS: usize = 200;
pub const DEFAULT_BUCKET_MS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccuracyConfig {
    /// N: the reference is the first N labels to arrive.
    pub reference_labels: usize,
    /// W: the current accuracy is over the last W labels to arrive after the reference.
    pub current_labels: usize,
    /// Width of the series' buckets, by prediction time.
    pub bucket_ms: i64,
    /// Buckets kept (the oldest go first): 8640 × 10 s = 24 hours.
    pub max_buckets: usize,
    /// Labels the median delay is taken over (the most recent ones).
    pub delay_window: usize,
}

impl Default for AccuracyConfig {
    fn default() -> Self {
        Self {
            reference_labels: DEFAULT_REFERENCE_LABELS,
            current_labels: DEFAULT_CURRENT_LABELS,
            bucket_ms: DEFAULT_BUCKET_MS,
            max_buckets: 8640,
            delay_window: 1000,
        }
    }
}

/// Labels of the predictions made in one bucket of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccuracyBucket {
    /// Start of the bucket (ms since epoch), by prediction time.
    pub t_ms: i64,
    pub n: u64,
    pub correct: u64,
}

impl AccuracyBucket {
    pub fn accuracy(&self) -> Option<f64> {
        (self.n > 0).then(|| self.correct as f64 / self.n as f64)
    }

    pub fn wilson_ci95(&self) -> Option<[f64; 2]> {
        stats::wilson_ci95(self.correct, self.n).ok()
    }
}

/// Accuracy now, for the table, the chart's header and the alert rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccuracySummary {
    pub labelled: u64,
    pub correct: u64,
    /// Over every label so far.
    pub overall: Option<ArmAccuracy>,
    /// The first N labels (partial while fewer have arrived: see `reference_complete`).
    pub reference: Option<ArmAccuracy>,
    pub reference_complete: bool,
    /// The last W labels after the reference (None until one arrives).
    pub current: Option<ArmAccuracy>,
    /// (reference − current) × 100 in percentage points, once the reference is complete and the
    /// current window has a label; positive means worse than the reference.
    pub drop_points: Option<f64>,
    /// Time from prediction to label: mean over all labels, median over the most recent ones.
    pub mean_delay_ms: Option<f64>,
    pub median_delay_ms: Option<f64>,
}

/// One model's accuracy from delayed labels.
#[derive(Debug, Clone)]
pub struct AccuracyTracker {
    config: AccuracyConfig,
    reference_n: u64,
    reference_correct: u64,
    current: VecDeque<bool>,
    current_correct: u64,
    buckets: VecDeque<AccuracyBucket>,
    labelled: u64,
    correct: u64,
    delay_sum_ms: f64,
    recent_delays_ms: VecDeque<i64>,
}

impl Default for AccuracyTracker {
    fn default() -> Self {
        Self::new(AccuracyConfig::default())
    }
}

impl AccuracyTracker {
    /// Sizes of 0 are taken as 1.
    pub fn new(config: AccuracyConfig) -> Self {
        let config = AccuracyConfig {
            reference_labels: config.reference_labels.max(1),
            current_labels: config.current_labels.max(1),
            bucket_ms: config.bucket_ms.max(1),
            max_buckets: config.max_buckets.max(1),
            delay_window: config.delay_window.max(1),
        };
        Self {
            config,
            reference_n: 0,
            reference_correct: 0,
            current: VecDeque::new(),
            current_correct: 0,
            buckets: VecDeque::new(),
            labelled: 0,
            correct: 0,
            delay_sum_ms: 0.0,
            recent_delays_ms: VecDeque::new(),
        }
    }

    pub fn config(&self) -> AccuracyConfig {
        self.config
    }

    /// Counts one label. A label older than the oldest bucket kept counts everywhere but in the
    /// series. A label "before" its prediction (clocks disagree) has delay 0.
    pub fn record(&mut self, feedback: &Feedback) {
        let correct = feedback.correct;
        self.labelled += 1;
        self.correct += u64::from(correct);
        if self.reference_n < self.config.reference_labels as u64 {
            self.reference_n += 1;
            self.reference_correct += u64::from(correct);
        } else {
            self.current.push_back(correct);
            self.current_correct += u64::from(correct);
            if self.current.len() > self.config.current_labels {
                let old = self.current.pop_front().unwrap_or(false);
                self.current_correct -= u64::from(old);
            }
        }
        let delay = (feedback.at_ms - feedback.predicted_at_ms).max(0);
        self.delay_sum_ms += delay as f64;
        self.recent_delays_ms.push_back(delay);
        if self.recent_delays_ms.len() > self.config.delay_window {
            self.recent_delays_ms.pop_front();
        }
        self.add_to_bucket(feedback.predicted_at_ms, correct);
    }

    fn add_to_bucket(&mut self, predicted_at_ms: i64, correct: bool) {
        let t_ms = predicted_at_ms.div_euclid(self.config.bucket_ms) * self.config.bucket_ms;
        // Labels mostly judge recent predictions: the search ends near the back.
        let i = self.buckets.partition_point(|b| b.t_ms < t_ms);
        match self.buckets.get_mut(i) {
            Some(b) if b.t_ms == t_ms => {
                b.n += 1;
                b.correct += u64::from(correct);
                return;
            }
            _ => {}
        }
        if i == 0 && self.buckets.len() >= self.config.max_buckets {
            return;
        }
        self.buckets.insert(i, AccuracyBucket { t_ms, n: 1, correct: u64::from(correct) });
        if self.buckets.len() > self.config.max_buckets {
            self.buckets.pop_front();
        }
    }

    /// Buckets by prediction time, oldest first; buckets without labels are absent.
    pub fn series(&self) -> impl Iterator<Item = &AccuracyBucket> {
        self.buckets.iter()
    }

    pub fn summary(&self) -> AccuracySummary {
        let estimate = |correct: u64, n: u64| if n == 0 { None } else { ArmAccuracy::new(correct, n).ok() };
        let reference = estimate(self.reference_correct, self.reference_n);
        let current = estimate(self.current_correct, self.current.len() as u64);
        let reference_complete = self.reference_n >= self.config.reference_labels as u64;
        let drop_points = match (&reference, &current) {
            (Some(r), Some(c)) if reference_complete => Some((r.accuracy - c.accuracy) * 100.0),
            _ => None,
        };
        AccuracySummary {
            labelled: self.labelled,
            correct: self.correct,
            overall: estimate(self.correct, self.labelled),
            reference,
            reference_complete,
            current,
            drop_points,
            mean_delay_ms: (self.labelled > 0).then(|| self.delay_sum_ms / self.labelled as f64),
            median_delay_ms: median(&self.recent_delays_ms),
        }
    }

    /// Starts a new reference with the next N labels (after retraining, say); the series and
    /// delays are kept.
    pub fn reset_reference(&mut self) {
        self.reference_n = 0;
        self.reference_correct = 0;
        self.current.clear();
        self.current_correct = 0;
    }
}

/// numpy's median: the middle value, or the mean of the two middle values.
fn median(values: &VecDeque<i64>) -> Option<f64> {
    let mut v: Vec<i64> = values.iter().copied().collect();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2] as f64),
        _ => Some((v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn label(i: i64, correct: bool, predicted_at_ms: i64, at_ms: i64) -> Feedback {
        Feedback {
            model: Arc::from("m"),
            request_id: Arc::from(format!("r{i}")),
            label: Arc::from("x"),
            correct,
            predicted_at_ms,
            at_ms,
        }
    }

    #[test]
    fn reference_then_current_window() {
        let mut t =
            AccuracyTracker::new(AccuracyConfig { reference_labels: 10, current_labels: 4, ..Default::default() });
        // Reference: 9 of 10 correct.
        for i in 0..10 {
            t.record(&label(i, i != 3, i * 1000, i * 1000 + 500));
        }
        let s = t.summary();
        assert!(s.reference_complete);
        assert_eq!(s.reference.as_ref().map(|r| (r.correct, r.n)), Some((9, 10)));
        assert_eq!((s.current.clone(), s.drop_points), (None, None));
        // Current: the last 4 of [1, 0, 1, 0, 0, 1] -> [1, 0, 0, 1] = 2 of 4.
        for (k, c) in [true, false, true, false, false, true].into_iter().enumerate() {
            let i = 10 + k as i64;
            t.record(&label(i, c, i * 1000, i * 1000 + 500));
        }
        let s = t.summary();
        let cur = s.current.clone().unwrap();
        assert_eq!((cur.correct, cur.n), (2, 4));
        assert!((s.drop_points.unwrap() - 40.0).abs() < 1e-12);
        // statsmodels proportion_confint(2, 4, method="wilson") = (0.15003898915214947, 0.8499610108478506)
        assert!((cur.wilson_ci95[0] - 0.150_038_989_152_149_47).abs() < 1e-12);
        assert!((cur.wilson_ci95[1] - 0.849_961_010_847_850_6).abs() < 1e-12);
        assert_eq!((s.labelled, s.correct), (16, 12));
        t.reset_reference();
        let s = t.summary();
        assert!(!s.reference_complete && s.reference.is_none() && s.drop_points.is_none());
        assert_eq!(s.labelled, 16);
    }

    #[test]
    fn partial_reference_gives_no_drop() {
        let mut t = AccuracyTracker::default();
        for i in 0..50 {
            t.record(&label(i, true, 0, 10));
        }
        let s = t.summary();
        assert!(!s.reference_complete);
        assert_eq!(s.reference.unwrap().n, 50);
        assert!(s.current.is_none() && s.drop_points.is_none());
    }

    #[test]
    fn delayed_labels_land_in_their_predictions_bucket() {
        let mut t = AccuracyTracker::default();
        // Predictions at 0..60 s, labels arriving out of order 30 s to 90 s later.
        let cases = [
            (25_000, true, 30_000),
            (3_000, false, 60_000),
            (9_999, true, 45_000),
            (10_000, true, 90_000),
            (-1, false, 5_000),
        ];
        for (i, &(predicted, correct, delay)) in cases.iter().enumerate() {
            t.record(&label(i as i64, correct, predicted, predicted + delay));
        }
        let series: Vec<AccuracyBucket> = t.series().copied().collect();
        assert_eq!(
            series,
            [
                AccuracyBucket { t_ms: -10_000, n: 1, correct: 0 },
                AccuracyBucket { t_ms: 0, n: 2, correct: 1 },
                AccuracyBucket { t_ms: 10_000, n: 1, correct: 1 },
                AccuracyBucket { t_ms: 20_000, n: 1, correct: 1 },
            ]
        );
        assert_eq!(series[1].accuracy(), Some(0.5));
        let s = t.summary();
        assert_eq!(s.mean_delay_ms, Some((30_000.0 + 60_000.0 + 45_000.0 + 90_000.0 + 5_000.0) / 5.0));
        assert_eq!(s.median_delay_ms, Some(45_000.0));
        t.record(&label(9, true, 50_000, 40_000));
        assert_eq!(t.summary().median_delay_ms, Some(37_500.0), "a label before its prediction has delay 0");
    }

    #[test]
    fn series_is_bounded() {
        let mut t = AccuracyTracker::new(AccuracyConfig { max_buckets: 3, delay_window: 2, ..Default::default() });
        for i in 0..5 {
            t.record(&label(i, true, i * 10_000, i * 10_000 + i));
        }
        let starts: Vec<i64> = t.series().map(|b| b.t_ms).collect();
        assert_eq!(starts, [20_000, 30_000, 40_000]);
        // A label for a prediction older than the series still counts, outside the series.
        t.record(&label(9, false, 0, 60_000));
        assert_eq!(t.series().count(), 3);
        assert_eq!(t.summary().labelled, 6);
        assert_eq!(t.summary().median_delay_ms, Some((4.0 + 60_000.0) / 2.0));
    }
}
