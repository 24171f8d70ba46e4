//! Classification metrics of an offline evaluation, defined as scikit-learn defines them
//! (`accuracy_score`, `top_k_accuracy_score`, `precision_recall_fscore_support`,
//! `confusion_matrix`, `log_loss`) and the expected calibration error of Guo et al. (2017) with
//! [`ECE_BINS`] equal-width bins. `scripts/eval_metrics_reference.py` makes the reference values
//! the tests compare against.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Equal-width confidence bins of the expected calibration error and the reliability diagram.
pub const ECE_BINS: usize = 15;

/// One prediction to score: the true label, when known, and the model's probabilities in the
/// model's label order.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub label: Option<&'a str>,
    pub probs: &'a [f32],
}

/// One class's row of the classification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Labelled records of this class.
    pub support: u64,
    /// Records the model predicted as this class.
    pub predicted: u64,
    /// False for a label in the data that the model does not have.
    pub known_to_model: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    pub k: usize,
    pub accuracy: f64,
}

/// One bin of the reliability diagram: predictions whose confidence (top probability) lies in
/// `(lower, upper]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// Mean confidence in the bin (0 when empty).
    pub mean_confidence: f64,
    /// Share of the bin's predictions that were right (0 when empty).
    pub accuracy: f64,
}

/// A label in the data that the model does not have, and how many records carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownLabel {
    pub label: String,
    pub count: u64,
}

/// Metrics over the labelled records of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Labelled records scored (unlabelled ones are skipped).
    pub n: u64,
    pub correct: u64,
    pub accuracy: f64,
    pub top_k: Vec<TopK>,
    /// The classes that occur as a label or a prediction (scikit-learn's `unique_labels`), in
    /// the model's label order, then the labels the model does not know, sorted.
    pub classes: Vec<ClassMetrics>,
    pub macro_avg: Averages,
    pub weighted_avg: Averages,
    /// `confusion[i][j]`: records of class `classes[i]` predicted as `classes[j]`.
    pub confusion: Vec<Vec<u64>>,
    /// Over the records whose label the model knows (`None` when there are none).
    pub log_loss: Option<f64>,
    pub n_log_loss: u64,
    pub ece: f64,
    pub reliability: Vec<ReliabilityBin>,
    pub unknown_labels: Vec<UnknownLabel>,
}

/// Whether a record's probabilities can be scored against a model with `n_labels` labels: one
/// finite value per label. [`classification_metrics`] skips the others (the caller should count
/// them as failed records; scikit-learn would refuse them).
pub fn is_scorable(probs: &[f32], n_labels: usize) -> bool {
    n_labels > 0 && probs.len() == n_labels && probs.iter().all(|p| p.is_finite())
}

/// A labelled, scorable record.
struct Row<'a> {
    label: &'a str,
    /// The label's index in the model (its first occurrence), when the model knows it.
    known: Option<usize>,
    /// numpy's argmax (first index on ties), as the first model index with the same label.
    predicted: usize,
    probs: &'a [f32],
}

/// The metrics of an evaluation over the records that have a label, as scikit-learn 1.9.1
/// computes them (`scripts/eval_metrics_reference.py` is the reference). `None` when no
/// scorable record has a label.
///
/// - Records without a label are skipped, and so are records whose probabilities are not one
///   finite number per model label ([`is_scorable`]); `n` counts the records scored.
/// - The prediction is the first most probable label (numpy's `argmax`); a label the model does
///   not know is always wrong. Every number is computed in f64 from the f32 probabilities.
/// - `classes` is scikit-learn's `unique_labels(y_true, y_pred)`, reordered: the model's labels
///   in model order, then unknown labels sorted; per-class, macro and weighted precision, recall
///   and F1 are `precision_recall_fscore_support(labels=classes, zero_division=0.0)`.
/// - Top-k is `top_k_accuracy_score(labels=model_labels)` over the records whose label the
///   model knows, times their share of `n` (an unknown label is a miss). Ties rank the HIGHER
///   model index first (sklearn's reversed stable argsort), so `[0.5, 0.5]` makes the second
///   label the top-1 while the prediction is the first. For a two-label model scikit-learn's
///   top-1 is "probability of the second label > 0.5" (threshold 0 when some known record's
///   second probability lies outside [0, 1]), which differs from the argmax when a row does
///   not sum to one; every k >= 2 is a hit there. Any k at least the number of labels is a hit,
///   k = 0 never is.
/// - Log loss is `log_loss(labels=model_labels)` over the records whose label the model knows:
///   the mean of -ln(p_true) with p clipped to [ε, 1 - ε], ε the f64 machine epsilon, rows not
///   renormalised (scikit-learn only warns when they do not sum to one).
/// - ECE (Guo et al. 2017) over all `n` records: confidence = top probability, bin
///   `ceil(confidence · 15) - 1` clamped to `0..=14`, i.e. `((m-1)/15, m/15]` with 0 in the first
///   bin. For an f32 confidence the product is exact in f64, so a value next to an edge lands on
///   the side its exact value lies on.
pub fn classification_metrics(model_labels: &[String], records: &[Scored<'_>], top_k: &[usize]) -> Option<Metrics> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(model_labels.len());
    for (i, label) in model_labels.iter().enumerate() {
        index.entry(label.as_str()).or_insert(i);
    }
    let rows: Vec<Row<'_>> = records
        .iter()
        .filter_map(|r| {
            let label = r.label?;
            if !is_scorable(r.probs, model_labels.len()) {
                return None;
            }
            let argmax = argmax(r.probs);
            let predicted = index.get(model_labels[argmax].as_str()).copied().unwrap_or(argmax);
            Some(Row { label, known: index.get(label).copied(), predicted, probs: r.probs })
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as u64;
    let is_right = |r: &Row<'_>| r.known == Some(r.predicted);
    let correct = rows.iter().filter(|r| is_right(r)).count() as u64;

    // Classes: model labels that occur as a label or a prediction, in model order, then the
    // unknown labels, sorted (BTreeMap order is byte order, which is code point order).
    let mut occurs = vec![false; model_labels.len()];
    let mut unknown: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &rows {
        occurs[r.predicted] = true;
        match r.known {
            Some(i) => occurs[i] = true,
            None => *unknown.entry(r.label).or_insert(0) += 1,
        }
    }
    let mut position = vec![usize::MAX; model_labels.len()];
    let mut names: Vec<(&str, bool)> = Vec::new();
    for (i, label) in model_labels.iter().enumerate() {
        if occurs[i] {
            position[i] = names.len();
            names.push((label.as_str(), true));
        }
    }
    let unknown_position: HashMap<&str, usize> =
        unknown.keys().enumerate().map(|(i, label)| (*label, names.len() + i)).collect();
    names.extend(unknown.keys().map(|label| (*label, false)));
    let class_of_label = |r: &Row<'_>| match r.known {
        Some(i) => position[i],
        None => unknown_position.get(r.label).copied().unwrap_or(0),
    };

    let c = names.len();
    let mut confusion = vec![vec![0u64; c]; c];
    for r in &rows {
        confusion[class_of_label(r)][position[r.predicted]] += 1;
    }
    let classes: Vec<ClassMetrics> = names
        .iter()
        .enumerate()
        .map(|(i, &(label, known_to_model))| {
            let tp = confusion[i][i];
            let support: u64 = confusion[i].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[i]).sum();
            ClassMetrics {
                label: label.to_string(),
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                // sklearn's F-beta with beta = 1: 2·tp / (support + predicted).
                f1: ratio(2 * tp, support + predicted),
                support,
                predicted,
                known_to_model,
            }
        })
        .collect();
    let macro_avg = average(&classes, |_| 1.0);
    let weighted_avg = average(&classes, |m| m.support as f64);

    let known: Vec<&Row<'_>> = rows.iter().filter(|r| r.known.is_some()).collect();
    let top_k = top_k
        .iter()
        .map(|&k| TopK { k, accuracy: top_k_hits(&known, model_labels.len(), k) as f64 / n as f64 })
        .collect();
    let log_loss = (!known.is_empty()).then(|| {
        let sum: f64 = known
            .iter()
            .map(|r| {
                let p = r.known.map(|i| f64::from(r.probs[i])).unwrap_or(0.0);
                -p.clamp(f64::EPSILON, 1.0 - f64::EPSILON).ln()
            })
            .sum();
        sum / known.len() as f64
    });

    let (ece, reliability) = calibration(rows.iter().map(|r| (confidence(r.probs), is_right(r))));
    Some(Metrics {
        n,
        correct,
        accuracy: correct as f64 / n as f64,
        top_k,
        classes,
        macro_avg,
        weighted_avg,
        confusion,
        log_loss,
        n_log_loss: known.len() as u64,
        ece,
        reliability,
        unknown_labels: unknown
            .into_iter()
            .map(|(label, count)| UnknownLabel { label: label.to_string(), count })
            .collect(),
    })
}

/// numpy's `argmax`: the first index of the largest value (0 for an empty slice).
fn argmax(probs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > probs[best] {
            best = i;
        }
    }
    best
}

fn confidence(probs: &[f32]) -> f64 {
    probs.get(argmax(probs)).map_or(0.0, |&p| f64::from(p))
}

/// `num / den`, or 0 when `den` is 0 (scikit-learn's `zero_division=0.0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Weighted mean of the per-class precision, recall and F1 (0 when the weights sum to 0).
fn average(classes: &[ClassMetrics], weight: impl Fn(&ClassMetrics) -> f64) -> Averages {
    let total: f64 = classes.iter().map(&weight).sum();
    let mean = |value: &dyn Fn(&ClassMetrics) -> f64| {
        if total > 0.0 {
            classes.iter().map(|m| weight(m) * value(m)).sum::<f64>() / total
        } else {
            0.0
        }
    };
    Averages { precision: mean(&|m| m.precision), recall: mean(&|m| m.recall), f1: mean(&|m| m.f1) }
}

/// Records (with a label the model knows) whose label is among the top `k`, ranked as
/// scikit-learn's `top_k_accuracy_score` ranks them.
fn top_k_hits(known: &[&Row<'_>], n_labels: usize, k: usize) -> u64 {
    if k == 0 {
        return 0;
    }
    if n_labels == 2 {
        if k >= 2 {
            return known.len() as u64;
        }
        // sklearn's binary path: y_score is the second label's probability, thresholded.
        let in_unit = known.iter().all(|r| (0.0..=1.0).contains(&r.probs[1]));
        let threshold = if in_unit { 0.5 } else { 0.0 };
        return known.iter().filter(|r| r.known == Some(usize::from(r.probs[1] > threshold))).count() as u64;
    }
    known
        .iter()
        .filter(|r| {
            let Some(t) = r.known else { return false };
            let p = r.probs[t];
            // Position of t in the descending order: larger scores, then equal scores at
            // higher indices (the reversed stable argsort).
            let ahead = r.probs.iter().enumerate().filter(|&(j, &q)| q > p || (q == p && j > t)).count();
            ahead < k
        })
        .count() as u64
}

/// Expected calibration error and the reliability bins over (confidence, right) pairs.
fn calibration(points: impl Iterator<Item = (f64, bool)>) -> (f64, Vec<ReliabilityBin>) {
    let mut count = [0u64; ECE_BINS];
    let mut confidence_sum = [0.0f64; ECE_BINS];
    let mut right = [0u64; ECE_BINS];
    for (conf, is_right) in points {
        let bin = bin_of(conf);
        count[bin] += 1;
        confidence_sum[bin] += conf;
        right[bin] += u64::from(is_right);
    }
    let n: u64 = count.iter().sum();
    let mut ece = 0.0;
    let bins = (0..ECE_BINS)
        .map(|m| {
            let (mean_confidence, accuracy) = if count[m] > 0 {
                (confidence_sum[m] / count[m] as f64, right[m] as f64 / count[m] as f64)
            } else {
                (0.0, 0.0)
            };
            if n > 0 {
                ece += count[m] as f64 / n as f64 * (accuracy - mean_confidence).abs();
            }
            ReliabilityBin {
                lower: m as f64 / ECE_BINS as f64,
                upper: (m + 1) as f64 / ECE_BINS as f64,
                count: count[m],
                mean_confidence,
                accuracy,
            }
        })
        .collect();
    (ece, bins)
}

/// The 0-based bin of a confidence: `ceil(conf · 15) - 1` clamped to `0..=14`.
fn bin_of(conf: f64) -> usize {
    let bin = (conf * ECE_BINS as f64).ceil() - 1.0;
    if bin.is_nan() || bin < 0.0 {
        0
    } else {
        (bin as usize).min(ECE_BINS - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-9;

    #[derive(Deserialize)]
    struct Record {
        label: Option<String>,
        probs: Vec<f64>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        model_labels: Vec<String>,
        top_k: Vec<usize>,
        records: Vec<Record>,
        expected: Option<Metrics>,
    }

    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn close(what: &str, actual: f64, expected: f64) {
        assert!((actual - expected).abs() <= TOL, "{what}: {actual} vs scikit-learn {expected}");
    }

    fn check(case: &str, actual: &Metrics, expected: &Metrics) {
        assert_eq!((actual.n, actual.correct), (expected.n, expected.correct), "{case}: n, correct");
        close(&format!("{case} accuracy"), actual.accuracy, expected.accuracy);
        assert_eq!(actual.top_k.len(), expected.top_k.len(), "{case}: top-k");
        for (a, e) in actual.top_k.iter().zip(&expected.top_k) {
            assert_eq!(a.k, e.k, "{case}: top-k order");
            close(&format!("{case} top-{}", e.k), a.accuracy, e.accuracy);
        }
        let names = |m: &Metrics| m.classes.iter().map(|c| c.label.clone()).collect::<Vec<_>>();
        assert_eq!(names(actual), names(expected), "{case}: classes");
        for (a, e) in actual.classes.iter().zip(&expected.classes) {
            let what = format!("{case} class {}", e.label);
            assert_eq!(
                (a.support, a.predicted, a.known_to_model),
                (e.support, e.predicted, e.known_to_model),
                "{what}: support, predicted, known"
            );
            close(&format!("{what} precision"), a.precision, e.precision);
            close(&format!("{what} recall"), a.recall, e.recall);
            close(&format!("{what} f1"), a.f1, e.f1);
        }
        for (name, a, e) in
            [("macro", actual.macro_avg, expected.macro_avg), ("weighted", actual.weighted_avg, expected.weighted_avg)]
        {
            close(&format!("{case} {name} precision"), a.precision, e.precision);
            close(&format!("{case} {name} recall"), a.recall, e.recall);
            close(&format!("{case} {name} f1"), a.f1, e.f1);
        }
        assert_eq!(actual.confusion, expected.confusion, "{case}: confusion matrix");
        assert_eq!(actual.n_log_loss, expected.n_log_loss, "{case}: n_log_loss");
        match (actual.log_loss, expected.log_loss) {
            (Some(a), Some(e)) => close(&format!("{case} log loss"), a, e),
            (a, e) => assert_eq!(a, e, "{case}: log loss"),
        }
        close(&format!("{case} ece"), actual.ece, expected.ece);
        assert_eq!(actual.reliability.len(), ECE_BINS, "{case}: bins");
        assert_eq!(expected.reliability.len(), ECE_BINS, "{case}: reference bins");
        for (m, (a, e)) in actual.reliability.iter().zip(&expected.reliability).enumerate() {
            let what = format!("{case} bin {m}");
            assert_eq!(a.count, e.count, "{what}: count");
            close(&format!("{what} lower"), a.lower, e.lower);
            close(&format!("{what} upper"), a.upper, e.upper);
            close(&format!("{what} mean confidence"), a.mean_confidence, e.mean_confidence);
            close(&format!("{what} accuracy"), a.accuracy, e.accuracy);
        }
        assert_eq!(actual.unknown_labels, expected.unknown_labels, "{case}: unknown labels");
    }

    /// Every case of `scripts/eval_metrics_reference.py` (scikit-learn 1.9.1), to 1e-9.
    #[test]
    fn matches_scikit_learn() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/eval_metrics.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let reference: Reference = serde_json::from_str(&text).unwrap();
        assert!(reference.cases.len() >= 9);
        for case in &reference.cases {
            let probs: Vec<Vec<f32>> = case
                .records
                .iter()
                .map(|r| {
                    r.probs
                        .iter()
                        .map(|&p| {
                            // The reference writes float32 values exactly.
                            assert_eq!(f64::from(p as f32), p, "{}: {p} is not an f32", case.name);
                            p as f32
                        })
                        .collect()
                })
                .collect();
            let records: Vec<Scored<'_>> =
                case.records.iter().zip(&probs).map(|(r, p)| Scored { label: r.label.as_deref(), probs: p }).collect();
            let actual = classification_metrics(&case.model_labels, &records, &case.top_k);
            match (&actual, &case.expected) {
                (Some(a), Some(e)) => check(&case.name, a, e),
                (a, e) => panic!("{}: {a:?} vs reference {e:?}", case.name),
            }
        }
    }

    #[test]
    fn none_without_labelled_scorable_records() {
        let model = labels(&["a", "b", "c"]);
        assert_eq!(classification_metrics(&model, &[], &[1]), None);
        let unlabelled = [Scored { label: None, probs: &[0.2, 0.3, 0.5] }];
        assert_eq!(classification_metrics(&model, &unlabelled, &[1]), None);
        assert_eq!(classification_metrics(&[], &[Scored { label: Some("a"), probs: &[] }], &[1]), None);
    }

    #[test]
    fn nan_and_misshapen_probabilities_are_skipped() {
        let model = labels(&["a", "b", "c"]);
        let good = [0.2, 0.3, 0.5];
        let records = [
            Scored { label: Some("c"), probs: &good },
            Scored { label: Some("a"), probs: &[f32::NAN, 0.1, 0.2] },
            Scored { label: Some("a"), probs: &[f32::INFINITY, 0.1, 0.2] },
            Scored { label: Some("a"), probs: &[0.9, 0.1] },
            Scored { label: Some("a"), probs: &[0.9, 0.1, 0.0, 0.0] },
        ];
        assert!(!is_scorable(&[f32::NAN, 0.1, 0.2], 3) && !is_scorable(&[0.9, 0.1], 3) && is_scorable(&good, 3));
        let m = classification_metrics(&model, &records, &[0, 1, 2, 3, 10]).unwrap();
        assert_eq!((m.n, m.correct, m.n_log_loss), (1, 1, 1));
        assert_eq!(m.top_k.iter().map(|t| t.accuracy).collect::<Vec<_>>(), [0.0, 1.0, 1.0, 1.0, 1.0]);
        close("log loss", m.log_loss.unwrap(), -f64::from(0.5f32).ln());
        let all_nan = [Scored { label: Some("a"), probs: &[f32::NAN; 3] }];
        assert_eq!(classification_metrics(&model, &all_nan, &[1]), None);
    }

    /// Labels outside [0, 1] in a two-label model: scikit-learn thresholds the second score at 0
    /// instead of 0.5. From `top_k_accuracy_score(["pos", "pos"], [2.0, 0.1], k=1,
    /// labels=["neg", "pos"])` = 1.0 (and 0.5 with `[0.9, 0.1]`, all in [0, 1]).
    #[test]
    fn binary_top_1_threshold_follows_scikit_learn() {
        let model = labels(&["neg", "pos"]);
        let outside =
            [Scored { label: Some("pos"), probs: &[-1.0, 2.0] }, Scored { label: Some("pos"), probs: &[0.2, 0.1] }];
        let m = classification_metrics(&model, &outside, &[1, 2]).unwrap();
        assert_eq!((m.accuracy, m.top_k[0].accuracy, m.top_k[1].accuracy), (0.5, 1.0, 1.0));
        let inside =
            [Scored { label: Some("pos"), probs: &[0.5, 0.9] }, Scored { label: Some("pos"), probs: &[0.2, 0.1] }];
        let m = classification_metrics(&model, &inside, &[1]).unwrap();
        assert_eq!(m.top_k[0].accuracy, 0.5);
    }

    #[test]
    fn bins_follow_the_exact_f32_value() {
        for m in 0..=ECE_BINS {
            let edge = m as f32 / ECE_BINS as f32;
            let exact = m as f64 / ECE_BINS as f64;
            let bin = bin_of(f64::from(edge));
            let expected = if f64::from(edge) > exact { m } else { m.max(1) - 1 };
            assert_eq!(bin, expected.min(ECE_BINS - 1), "edge {m}/15 as f32 = {edge}");
        }
        assert_eq!((bin_of(0.0), bin_of(-0.5), bin_of(1.0), bin_of(7.0), bin_of(f64::NAN)), (0, 0, 14, 14, 0));
        // 0.6f32 is a little above 0.6, so it lies in (0.6, 2/3].
        assert_eq!(bin_of(f64::from(0.6f32)), 9);
    }

    #[test]
    fn duplicate_model_labels_do_not_panic() {
        let model = labels(&["a", "a", "b"]);
        let records = [
            Scored { label: Some("a"), probs: &[0.1, 0.6, 0.3] },
            Scored { label: Some("b"), probs: &[0.1, 0.2, 0.7] },
        ];
        let m = classification_metrics(&model, &records, &[1, 2]).unwrap();
        assert_eq!((m.n, m.correct), (2, 2));
        assert_eq!(m.classes.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.confusion, vec![vec![1, 0], vec![0, 1]]);
    }
}
