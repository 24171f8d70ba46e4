//! Alert rules over metrics, drift and accuracy; firing and resolving.
//!
//! An [`AlertRule`] compares one [`AlertMetric`] with a threshold once enough samples back it.
//! [`AlertEvaluator`] keeps a state per (model, rule) and returns an [`AlertEvent`] only when an
//! alert fires or resolves, never on every evaluation. Its inputs are a plain [`AlertInputs`]
//! (filled from the ops summary, a [`DriftResult`] and an [`AccuracySummary`]), so rules are
//! testable without the rest of the monitor.
//!
//! Semantics:
//! - The condition holds when the value is above (`>`) or below (`<`) the threshold, strictly.
//! - "Not enough data" (the metric is absent, or backed by fewer than `min_samples` samples) is
//!   no evidence either way: it never fires an alert and never resolves a firing one (a model
//!   that stops receiving traffic keeps its alert, as Flagger halts rather than promotes when
//!   metrics are missing), and it leaves the pending timers below as they are.
//! - Hysteresis in time: an alert fires once the condition has held at every evaluation for
//!   `for_ms` (default 0: at the first breaching evaluation), and resolves once it has been clear
//!   at every evaluation for `clear_for_ms` (default 5 s), so a value hovering at the threshold
//!   does not flap.
//!
//! Rules (de)serialise with serde (a rules file is a JSON array of them, [`parse_rules_json`]),
//! and parse from a compact form for the command line ([`AlertRule::parse`]):
//!
//! ```text
//! RULE   := METRIC [OP NUMBER [%]] [@ MIN_SAMPLES]
//! OP     := '>' | '<'
//! METRIC := p95_ms            p95 latency over the last minute, ms      (default > 500)
//!         | error_rate        failed / all requests, last minute         (default > 0.01)
//!         | drift             share of features drifting, 0..1           (default > 0: any)
//!         | prediction_drift  the predicted class drifts: 1, or 0        (default > 0)
//!         | accuracy_drop     reference − current accuracy, % points     (default > 5)
//! ```
//!
//! e.g. `p95_ms>500`, `error_rate>1%`, `accuracy_drop>5@100`, `drift`, `drift>0.5`,
//! `prediction_drift`. `%` divides by 100 and is allowed only for the two shares (error_rate,
//! drift); the long metric names (`latency_p95_ms`, `drift_any_feature`, `drift_prediction`,
//! `accuracy_drop_points`) are accepted too.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::accuracy::AccuracySummary;
use super::drift::{DriftResult, PREDICTION_COLUMN};
use super::FeatureName;

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertMetric {
    /// p95 latency over the last minute, in ms; samples = answered requests in that minute.
    LatencyP95Ms,
    /// Failed / all requests over the last minute, a fraction; samples = requests.
    ErrorRate,
    /// Share of feature columns (not the prediction) whose verdict is drift, among those with a
    /// verdict; samples = predictions in the current window.
    DriftAnyFeature,
    /// 1 when the predicted class's verdict is drift, 0 when not; samples = current window.
    DriftPrediction,
    /// (reference − current accuracy) × 100; samples = labels in the current accuracy window.
    AccuracyDropPoints,
}

impl AlertMetric {
    pub const ALL: [AlertMetric; 5] = [
        AlertMetric::LatencyP95Ms,
        AlertMetric::ErrorRate,
        AlertMetric::DriftAnyFeature,
        AlertMetric::DriftPrediction,
        AlertMetric::AccuracyDropPoints,
    ];

    /// The short name of the compact form.
    pub fn short_name(self) -> &'static str {
        match self {
            AlertMetric::LatencyP95Ms => "p95_ms",
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::DriftAnyFeature => "drift",
            AlertMetric::DriftPrediction => "prediction_drift",
            AlertMetric::AccuracyDropPoints => "accuracy_drop",
        }
    }

    fn long_name(self) -> &'static str {
        match self {
            AlertMetric::LatencyP95Ms => "latency_p95_ms",
            AlertMetric::ErrorRate => "error_rate",
            AlertMetric::DriftAnyFeature => "drift_any_feature",
            AlertMetric::DriftPrediction => "drift_prediction",
            AlertMetric::AccuracyDropPoints => "accuracy_drop_points",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.short_name() == name || m.long_name() == name)
    }

    /// The window the metric is measured over, in words (for the alert list).
    pub fn window_description(self) -> &'static str {
        match self {
            AlertMetric::LatencyP95Ms | AlertMetric::ErrorRate => "last minute",
            AlertMetric::DriftAnyFeature | AlertMetric::DriftPrediction => "current window against the reference",
            AlertMetric::AccuracyDropPoints => "latest labels against the reference labels",
        }
    }

    /// The value in words, with its unit.
    fn describe(self, value: f64) -> String {
        match self {
            AlertMetric::LatencyP95Ms => format!("p95 latency {value:.0} ms"),
            AlertMetric::ErrorRate => format!("error rate {:.2}%", value * 100.0),
            AlertMetric::DriftAnyFeature => format!("share of drifting features {value:.2}"),
            AlertMetric::DriftPrediction => {
                format!("predicted-class drift {}", if value > 0.0 { "detected" } else { "not detected" })
            }
            AlertMetric::AccuracyDropPoints => format!("accuracy drop {value:.1} points"),
        }
    }

    fn describe_threshold(self, threshold: f64) -> String {
        match self {
            AlertMetric::LatencyP95Ms => format!("{} ms", short_number(threshold)),
            AlertMetric::ErrorRate => format!("{}%", short_number(threshold * 100.0)),
            AlertMetric::DriftAnyFeature | AlertMetric::DriftPrediction => short_number(threshold),
            AlertMetric::AccuracyDropPoints => format!("{} points", short_number(threshold)),
        }
    }

    /// Whether `%` may follow a threshold (the metric is a fraction).
    fn is_share(self) -> bool {
        matches!(self, AlertMetric::ErrorRate | AlertMetric::DriftAnyFeature)
    }
}

/// At most 6 decimals, trailing zeros dropped: 7, 0.5, 2.5 (not 7.000000000000001).
fn short_number(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Above,
    Below,
}

impl Comparison {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Above => value > threshold,
            Comparison::Below => value < threshold,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::Below => "<",
        }
    }
}

pub const DEFAULT_P95_MS: f64 = 500.0;
pub const DEFAULT_CLEAR_FOR_MS: u64 = 5_000;

fn default_min_samples() -> u64 {
    30
}

fn default_clear_for_ms() -> u64 {
    DEFAULT_CLEAR_FOR_MS
}

/// One alert rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique among the rules; events and the alert list name the rule by it.
    pub name: String,
    pub metric: AlertMetric,
    pub comparison: Comparison,
    pub threshold: f64,
    /// Fewer samples behind the value: not enough data (default 30).
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// The condition must hold this long (over consecutive evaluations) before firing.
    #[serde(default)]
    pub for_ms: u64,
    /// The condition must stay clear this long before a firing alert resolves.
    #[serde(default = "default_clear_for_ms")]
    pub clear_for_ms: u64,
}

/// Why a rule or a rules file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "`{text}`: unknown metric `{metric}`; metrics: p95_ms, error_rate, drift, prediction_drift, accuracy_drop"
    )]
    UnknownMetric { text: String, metric: String },
    #[error("`{text}`: expected `>` or `<` and a threshold after `{metric}` (e.g. `p95_ms>500`), found `{found}`")]
    BadComparison { text: String, metric: String, found: String },
    #[error("`{text}`: `{number}` is not a finite number")]
    BadNumber { text: String, number: String },
    #[error("`{text}`: {metric} is not a share, so `%` does not apply (thresholds: p95_ms in ms, accuracy_drop in percentage points, prediction_drift 0..1)")]
    PercentNotAllowed { text: String, metric: String },
    #[error("`{text}`: the minimum sample count after `@` must be a whole number, found `{found}`")]
    BadMinSamples { text: String, found: String },
    #[error("rule `{name}`: the threshold must be a finite number")]
    NonFiniteThreshold { name: String },
    #[error("two rules are named `{name}`; rule names must be unique")]
    DuplicateName { name: String },
    #[error("rules file: {0}")]
    File(String),
}

impl AlertRule {
    pub fn new(name: impl Into<String>, metric: AlertMetric, comparison: Comparison, threshold: f64) -> Self {
        Self {
            name: name.into(),
            metric,
            comparison,
            threshold,
            min_samples: default_min_samples(),
            for_ms: 0,
            clear_for_ms: DEFAULT_CLEAR_FOR_MS,
        }
    }

    pub fn with_min_samples(mut self, n: u64) -> Self {
        self.min_samples = n;
        self
    }

    /// Parses the compact form (grammar in the module docs). The rule is named by its text
    /// without spaces, e.g. `p95_ms>500`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (body, min_samples) = match compact.split_once('@') {
            Some((body, n)) => {
                let n = n
                    .parse::<u64>()
                    .map_err(|_| RuleError::BadMinSamples { text: text.to_string(), found: n.to_string() })?;
                (body, Some(n))
            }
            None => (compact.as_str(), None),
        };
        let split = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
        let (name, rest) = body.split_at(split);
        let metric = AlertMetric::from_name(&name.to_ascii_lowercase())
            .ok_or_else(|| RuleError::UnknownMetric { text: text.to_string(), metric: name.to_string() })?;
        let mut rule = default_rule(metric, DEFAULT_P95_MS);
        if !rest.is_empty() {
            let comparison = match rest.as_bytes()[0] {
                b'>' => Comparison::Above,
                b'<' => Comparison::Below,
                _ => {
                    return Err(RuleError::BadComparison {
                        text: text.to_string(),
                        metric: name.to_string(),
                        found: rest.to_string(),
                    })
                }
            };
            let number = &rest[1..];
            if number.is_empty() {
                return Err(RuleError::BadComparison {
                    text: text.to_string(),
                    metric: name.to_string(),
                    found: rest.to_string(),
                });
            }
            let (digits, percent) = match number.strip_suffix('%') {
                Some(d) => (d, true),
                None => (number, false),
            };
            if percent && !metric.is_share() {
                return Err(RuleError::PercentNotAllowed { text: text.to_string(), metric: name.to_string() });
            }
            let value = digits
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| RuleError::BadNumber { text: text.to_string(), number: number.to_string() })?;
            rule.comparison = comparison;
            rule.threshold = if percent { value / 100.0 } else { value };
        }
        if let Some(n) = min_samples {
            rule.min_samples = n;
        }
        rule.name = compact;
        Ok(rule)
    }

    /// The compact form of this rule (names aside): `p95_ms>500@30`.
    pub fn to_compact(&self) -> String {
        format!("{}{}{}@{}", self.metric.short_name(), self.comparison.symbol(), self.threshold, self.min_samples)
    }

    fn validate(&self) -> Result<(), RuleError> {
        if !self.threshold.is_finite() {
            return Err(RuleError::NonFiniteThreshold { name: self.name.clone() });
        }
        Ok(())
    }
}

fn default_rule(metric: AlertMetric, p95_bound_ms: f64) -> AlertRule {
    match metric {
        AlertMetric::LatencyP95Ms => AlertRule::new("p95 latency", metric, Comparison::Above, p95_bound_ms),
        AlertMetric::ErrorRate => AlertRule::new("error rate", metric, Comparison::Above, 0.01).with_min_samples(100),
        AlertMetric::DriftAnyFeature => AlertRule::new("feature drift", metric, Comparison::Above, 0.0),
        AlertMetric::DriftPrediction => AlertRule::new("prediction drift", metric, Comparison::Above, 0.0),
        AlertMetric::AccuracyDropPoints => {
            AlertRule::new("accuracy drop", metric, Comparison::Above, 5.0).with_min_samples(100)
        }
    }
}

/// p95 latency above 500 ms (last minute, ≥ 30 requests), error rate above 1% (≥ 100
/// requests), drift on any feature, drift on the predicted class (≥ 30 current predictions),
/// accuracy more than 5 points under the reference (≥ 100 current labels).
pub fn default_rules() -> Vec<AlertRule> {
    default_rules_with_p95(DEFAULT_P95_MS)
}

/// [`default_rules`] with another p95 latency bound.
pub fn default_rules_with_p95(p95_bound_ms: f64) -> Vec<AlertRule> {
    AlertMetric::ALL.into_iter().map(|m| default_rule(m, p95_bound_ms)).collect()
}

/// A rules file: a JSON array of rules (`min_samples`, `for_ms`, `clear_for_ms` optional).
pub fn parse_rules_json(text: &str) -> Result<Vec<AlertRule>, RuleError> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let rules: Vec<AlertRule> = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        RuleError::File(if path == "." { e.inner().to_string() } else { format!("at {path}: {}", e.inner()) })
    })?;
    validate_rules(&rules)?;
    Ok(rules)
}

fn validate_rules(rules: &[AlertRule]) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        rule.validate()?;
        if rules[..i].iter().any(|r| r.name == rule.name) {
            return Err(RuleError::DuplicateName { name: rule.name.clone() });
        }
    }
    Ok(())
}

/// A value and the number of samples behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measured {
    pub value: f64,
    pub n: u64,
}

/// One model's metrics at one evaluation; `None` = not measured (no traffic, no drift result,
/// no complete accuracy reference).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertInputs {
    pub latency_p95_ms: Option<Measured>,
    pub error_rate: Option<Measured>,
    pub drift_feature_share: Option<Measured>,
    pub drift_prediction: Option<Measured>,
    pub accuracy_drop_points: Option<Measured>,
    /// The drifting features, for the message.
    pub drifted_features: Vec<FeatureName>,
}

impl AlertInputs {
    /// The drift metrics from a [`DriftResult`]: the share over feature columns with a verdict
    /// (none with a verdict: not measured), and the predicted class's verdict as 1 or 0.
    pub fn set_drift(&mut self, result: &DriftResult) {
        let n_current = result.current.as_ref().map_or(0, |r| r.n as u64);
        let (decided, drifted) = result.feature_verdicts();
        self.drift_feature_share =
            (decided > 0).then(|| Measured { value: drifted as f64 / decided as f64, n: n_current });
        self.drifted_features = result
            .columns
            .iter()
            .filter(|c| c.name != PREDICTION_COLUMN && c.verdict.is_drift())
            .map(|c| c.name)
            .collect();
        self.drift_prediction = result
            .column(PREDICTION_COLUMN)
            .filter(|c| c.verdict.is_decided())
            .map(|c| Measured { value: if c.verdict.is_drift() { 1.0 } else { 0.0 }, n: c.n_current as u64 });
    }

    /// The accuracy drop, once the reference is complete and a current label exists.
    pub fn set_accuracy(&mut self, summary: &AccuracySummary) {
        self.accuracy_drop_points = match (summary.drop_points, &summary.current) {
            (Some(drop), Some(current)) => Some(Measured { value: drop, n: current.n }),
            _ => None,
        };
    }

    pub fn get(&self, metric: AlertMetric) -> Option<Measured> {
        match metric {
            AlertMetric::LatencyP95Ms => self.latency_p95_ms,
            AlertMetric::ErrorRate => self.error_rate,
            AlertMetric::DriftAnyFeature => self.drift_feature_share,
            AlertMetric::DriftPrediction => self.drift_prediction,
            AlertMetric::AccuracyDropPoints => self.accuracy_drop_points,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// An alert firing or resolving.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub model: String,
    pub rule: String,
    pub metric: AlertMetric,
    pub state: AlertState,
    pub value: f64,
    pub threshold: f64,
    pub at_ms: i64,
    pub message: String,
}

/// An alert that is firing now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveAlert {
    pub model: String,
    pub rule: String,
    pub metric: AlertMetric,
    pub since_ms: i64,
    /// The latest measured value.
    pub value: f64,
    pub threshold: f64,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
struct RuleState {
    firing_since: Option<i64>,
    /// Start of the current run of breaching (or, while firing, clear) evaluations.
    breach_since: Option<i64>,
    clear_since: Option<i64>,
    last_value: f64,
    last_message: String,
}

/// Alert states of every (model, rule).
#[derive(Debug, Clone)]
pub struct AlertEvaluator {
    rules: Vec<AlertRule>,
    states: HashMap<(String, String), RuleState>,
}

impl Default for AlertEvaluator {
    fn default() -> Self {
        Self { rules: default_rules(), states: HashMap::new() }
    }
}

impl AlertEvaluator {
    pub fn new(rules: Vec<AlertRule>) -> Result<Self, RuleError> {
        validate_rules(&rules)?;
        Ok(Self { rules, states: HashMap::new() })
    }

    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Replaces the rules. Unchanged rules keep their state; a firing alert whose rule was
    /// removed or changed resolves (its event is returned) and the new rule starts afresh.
    pub fn set_rules(&mut self, rules: Vec<AlertRule>, at_ms: i64) -> Result<Vec<AlertEvent>, RuleError> {
        validate_rules(&rules)?;
        let mut events = Vec::new();
        let old = std::mem::replace(&mut self.rules, rules);
        for rule in &old {
            if self.rules.contains(rule) {
                continue;
            }
            let keys: Vec<(String, String)> = self.states.keys().filter(|(_, r)| *r == rule.name).cloned().collect();
            for key in keys {
                if let Some(state) = self.states.remove(&key) {
                    if state.firing_since.is_some() {
                        events.push(AlertEvent {
                            model: key.0.clone(),
                            rule: rule.name.clone(),
                            metric: rule.metric,
                            state: AlertState::Resolved,
                            value: state.last_value,
                            threshold: rule.threshold,
                            at_ms,
                            message: format!("{}: rule `{}` was changed or removed", key.0, rule.name),
                        });
                    }
                }
            }
        }
        Ok(events)
    }

    /// Evaluates every rule on one model's inputs; returns the alerts that fired or resolved.
    pub fn evaluate(&mut self, model: &str, inputs: &AlertInputs, at_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for rule in &self.rules {
            let Some(measured) = inputs.get(rule.metric).filter(|m| m.n >= rule.min_samples && m.value.is_finite())
            else {
                continue; // Not enough data: no evidence either way.
            };
            let state = self.states.entry((model.to_string(), rule.name.clone())).or_default();
            let breaching = rule.comparison.holds(measured.value, rule.threshold);
            state.last_value = measured.value;
            let message = message(model, rule, measured, inputs, breaching);
            if breaching {
                state.clear_since = None;
                let since = *state.breach_since.get_or_insert(at_ms);
                if state.firing_since.is_none() && at_ms.saturating_sub(since) >= rule.for_ms as i64 {
                    state.firing_since = Some(at_ms);
                    events.push(event(model, rule, AlertState::Firing, measured.value, at_ms, message.clone()));
                }
            } else {
                state.breach_since = None;
                if state.firing_since.is_some() {
                    let since = *state.clear_since.get_or_insert(at_ms);
                    if at_ms.saturating_sub(since) >= rule.clear_for_ms as i64 {
                        state.firing_since = None;
                        state.clear_since = None;
                        events.push(event(model, rule, AlertState::Resolved, measured.value, at_ms, message.clone()));
                    }
                }
            }
            state.last_message = message;
        }
        events
    }

    /// The alerts firing now, by model then rule order.
    pub fn firing(&self) -> Vec<ActiveAlert> {
        let mut out: Vec<(usize, ActiveAlert)> = self
            .states
            .iter()
            .filter_map(|((model, rule_name), s)| {
                let since_ms = s.firing_since?;
                let index = self.rules.iter().position(|r| r.name == *rule_name)?;
                let rule = &self.rules[index];
                Some((
                    index,
                    ActiveAlert {
                        model: model.clone(),
                        rule: rule.name.clone(),
                        metric: rule.metric,
                        since_ms,
                        value: s.last_value,
                        threshold: rule.threshold,
                        message: s.last_message.clone(),
                    },
                ))
            })
            .collect();
        out.sort_by(|(ia, a), (ib, b)| a.model.cmp(&b.model).then(ia.cmp(ib)));
        out.into_iter().map(|(_, a)| a).collect()
    }

    /// Forgets a model (unloaded); its firing alerts resolve.
    pub fn forget_model(&mut self, model: &str, at_ms: i64) -> Vec<AlertEvent> {
        let keys: Vec<(String, String)> = self.states.keys().filter(|(m, _)| m == model).cloned().collect();
        let mut events = Vec::new();
        for key in keys {
            let Some(state) = self.states.remove(&key) else { continue };
            let Some(rule) = self.rules.iter().find(|r| r.name == key.1) else { continue };
            if state.firing_since.is_some() {
                events.push(event(
                    model,
                    rule,
                    AlertState::Resolved,
                    state.last_value,
                    at_ms,
                    format!("{model}: no longer monitored"),
                ));
            }
        }
        events
    }
}

fn event(model: &str, rule: &AlertRule, state: AlertState, value: f64, at_ms: i64, message: String) -> AlertEvent {
    AlertEvent {
        model: model.to_string(),
        rule: rule.name.clone(),
        metric: rule.metric,
        state,
        value,
        threshold: rule.threshold,
        at_ms,
        message,
    }
}

/// "demo: p95 latency 734 ms is above 500 ms (last minute, n = 120)".
fn message(model: &str, rule: &AlertRule, m: Measured, inputs: &AlertInputs, breaching: bool) -> String {
    let relation = match (rule.comparison, breaching) {
        (Comparison::Above, true) => "is above",
        (Comparison::Above, false) => "is not above",
        (Comparison::Below, true) => "is below",
        (Comparison::Below, false) => "is not below",
    };
    let mut text = format!(
        "{model}: {} {relation} {} ({}, n = {})",
        rule.metric.describe(m.value),
        rule.metric.describe_threshold(rule.threshold),
        rule.metric.window_description(),
        m.n
    );
    if rule.metric == AlertMetric::DriftAnyFeature && !inputs.drifted_features.is_empty() {
        text.push_str(&format!("; drifting: {}", inputs.drifted_features.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p95(value: f64, n: u64) -> AlertInputs {
        AlertInputs { latency_p95_ms: Some(Measured { value, n }), ..Default::default() }
    }

    fn latency_only(clear_for_ms: u64, for_ms: u64) -> AlertEvaluator {
        let mut rule = AlertRule::new("lat", AlertMetric::LatencyP95Ms, Comparison::Above, 500.0);
        rule.clear_for_ms = clear_for_ms;
        rule.for_ms = for_ms;
        AlertEvaluator::new(vec![rule]).unwrap()
    }

    #[test]
    fn fires_once_and_resolves_when_clear() {
        let mut e = latency_only(0, 0);
        assert!(e.evaluate("m", &p95(400.0, 100), 0).is_empty());
        let fired = e.evaluate("m", &p95(600.0, 100), 1000);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].state, fired[0].value, fired[0].threshold, fired[0].at_ms),
            (AlertState::Firing, 600.0, 500.0, 1000)
        );
        assert_eq!(fired[0].message, "m: p95 latency 600 ms is above 500 ms (last minute, n = 100)");
        assert!(e.evaluate("m", &p95(700.0, 100), 2000).is_empty(), "fires once");
        let active = e.firing();
        assert_eq!(active.len(), 1);
        assert_eq!((active[0].since_ms, active[0].value), (1000, 700.0));
        // Exactly at the threshold is not above it.
        let resolved = e.evaluate("m", &p95(500.0, 100), 3000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].state, AlertState::Resolved);
        assert!(e.firing().is_empty());
        assert!(e.evaluate("m", &p95(400.0, 100), 4000).is_empty());
    }

    #[test]
    fn not_enough_data_neither_fires_nor_resolves() {
        let mut e = latency_only(0, 0);
        assert!(e.evaluate("m", &p95(900.0, 29), 0).is_empty(), "29 < 30 samples");
        assert!(e.evaluate("m", &AlertInputs::default(), 0).is_empty());
        assert_eq!(e.evaluate("m", &p95(900.0, 30), 1).len(), 1);
        assert!(e.evaluate("m", &p95(100.0, 5), 2).is_empty(), "too few samples to resolve");
        assert!(e.evaluate("m", &AlertInputs::default(), 3).is_empty());
        assert_eq!(e.firing().len(), 1);
        assert_eq!(e.evaluate("m", &p95(100.0, 30), 4)[0].state, AlertState::Resolved);
    }

    #[test]
    fn hysteresis_in_time() {
        let mut e = latency_only(5000, 2000);
        // Breaching for less than for_ms: pending, then a clear evaluation restarts the wait.
        assert!(e.evaluate("m", &p95(600.0, 50), 0).is_empty());
        assert!(e.evaluate("m", &p95(600.0, 50), 1500).is_empty());
        assert!(e.evaluate("m", &p95(400.0, 50), 1600).is_empty());
        assert!(e.evaluate("m", &p95(600.0, 50), 2000).is_empty());
        assert!(e.evaluate("m", &p95(600.0, 50), 3999).is_empty());
        assert_eq!(e.evaluate("m", &p95(600.0, 50), 4000)[0].state, AlertState::Firing);
        // Flapping around the threshold does not resolve it; 5 s of clear evaluations do.
        assert!(e.evaluate("m", &p95(450.0, 50), 5000).is_empty());
        assert!(e.evaluate("m", &p95(550.0, 50), 6000).is_empty());
        assert!(e.evaluate("m", &p95(450.0, 50), 7000).is_empty());
        assert!(e.evaluate("m", &p95(450.0, 50), 11_999).is_empty());
        assert_eq!(e.evaluate("m", &p95(450.0, 50), 12_000)[0].state, AlertState::Resolved);
    }

    #[test]
    fn models_are_separate() {
        let mut e = latency_only(0, 0);
        assert_eq!(e.evaluate("a", &p95(600.0, 50), 0).len(), 1);
        assert!(e.evaluate("b", &p95(400.0, 50), 0).is_empty());
        assert_eq!(e.firing().iter().map(|a| a.model.as_str()).collect::<Vec<_>>(), ["a"]);
        let gone = e.forget_model("a", 10);
        assert_eq!((gone.len(), gone[0].state), (1, AlertState::Resolved));
        assert!(e.firing().is_empty());
    }

    #[test]
    fn default_rules_cover_the_issue() {
        let rules = default_rules_with_p95(250.0);
        let compact: Vec<String> = rules.iter().map(AlertRule::to_compact).collect();
        assert_eq!(
            compact,
            ["p95_ms>250@30", "error_rate>0.01@100", "drift>0@30", "prediction_drift>0@30", "accuracy_drop>5@100"]
        );
        let mut e = AlertEvaluator::new(default_rules()).unwrap();
        let inputs = AlertInputs {
            latency_p95_ms: Some(Measured { value: 120.0, n: 500 }),
            error_rate: Some(Measured { value: 0.02, n: 500 }),
            drift_feature_share: Some(Measured { value: 2.0 / 9.0, n: 300 }),
            drift_prediction: Some(Measured { value: 0.0, n: 300 }),
            accuracy_drop_points: Some(Measured { value: 5.5, n: 200 }),
            drifted_features: vec!["brightness", "contrast"],
        };
        let events = e.evaluate("demo", &inputs, 0);
        let rules_fired: Vec<&str> = events.iter().map(|e| e.rule.as_str()).collect();
        assert_eq!(rules_fired, ["error rate", "feature drift", "accuracy drop"]);
        assert_eq!(
            events[1].message,
            "demo: share of drifting features 0.22 is above 0 (current window against the reference, n = 300); \
             drifting: brightness, contrast"
        );
        assert_eq!(events[0].message, "demo: error rate 2.00% is above 1% (last minute, n = 500)");
    }

    #[test]
    fn inputs_from_drift_and_accuracy() {
        use crate::monitor::accuracy::AccuracyTracker;
        use crate::monitor::drift::{compute, DriftConfig, DriftWindows};
        use crate::monitor::{Features, Feedback, Observation};
        use std::sync::Arc;
        let mut w = DriftWindows::new(DriftConfig { reference_size: 100, current_size: 100 });
        for i in 0..200 {
            let shifted = i >= 100;
            let x = (i % 50) as f64 + if shifted { 100.0 } else { 0.0 };
            w.push(&Observation {
                at_ms: i,
                model: Arc::from("m"),
                request_id: Arc::from(format!("r{i}")),
                latency_ms: Some(1.0),
                error: false,
                predicted: Some(Arc::from(["a", "b"][i as usize % 2])),
                features: Features(vec![("x", x), ("y", (i % 7) as f64 * 10.0)]),
            });
        }
        let mut inputs = AlertInputs::default();
        inputs.set_drift(&compute(&w.snapshot()));
        assert_eq!(inputs.drift_feature_share, Some(Measured { value: 0.5, n: 100 }));
        assert_eq!(inputs.drifted_features, ["x"]);
        assert_eq!(inputs.drift_prediction, Some(Measured { value: 0.0, n: 100 }));

        let mut t = AccuracyTracker::default();
        let fb = |i: i64, correct| Feedback {
            model: Arc::from("m"),
            request_id: Arc::from(format!("r{i}")),
            label: Arc::from("a"),
            correct,
            predicted_at_ms: i,
            at_ms: i + 100,
        };
        for i in 0..200 {
            t.record(&fb(i, i % 10 != 0));
        }
        inputs.set_accuracy(&t.summary());
        assert_eq!(inputs.accuracy_drop_points, None, "no current labels yet");
        for i in 200..300 {
            t.record(&fb(i, i % 5 != 0));
        }
        inputs.set_accuracy(&t.summary());
        let drop = inputs.accuracy_drop_points.unwrap();
        assert_eq!(drop.n, 100);
        assert!((drop.value - 10.0).abs() < 1e-9, "90% -> 80%: {}", drop.value);
    }

    #[test]
    fn thresholds_print_short() {
        assert_eq!(AlertMetric::ErrorRate.describe_threshold(0.07), "7%");
        assert_eq!(AlertMetric::ErrorRate.describe_threshold(0.0025), "0.25%");
        assert_eq!(AlertMetric::LatencyP95Ms.describe_threshold(250.0), "250 ms");
        assert_eq!(AlertMetric::DriftAnyFeature.describe_threshold(0.0), "0");
        assert_eq!(AlertMetric::AccuracyDropPoints.describe_threshold(2.5), "2.5 points");
    }

    #[test]
    fn compact_form() {
        let r = AlertRule::parse("p95_ms > 500").unwrap();
        assert_eq!(
            (r.metric, r.comparison, r.threshold, r.min_samples),
            (AlertMetric::LatencyP95Ms, Comparison::Above, 500.0, 30)
        );
        assert_eq!(r.name, "p95_ms>500");
        let r = AlertRule::parse("error_rate>1%").unwrap();
        assert_eq!((r.metric, r.threshold, r.min_samples), (AlertMetric::ErrorRate, 0.01, 100));
        let r = AlertRule::parse("accuracy_drop>5@200").unwrap();
        assert_eq!((r.metric, r.threshold, r.min_samples), (AlertMetric::AccuracyDropPoints, 5.0, 200));
        let r = AlertRule::parse("drift").unwrap();
        assert_eq!((r.metric, r.comparison, r.threshold), (AlertMetric::DriftAnyFeature, Comparison::Above, 0.0));
        assert_eq!(AlertRule::parse("drift>50%").unwrap().threshold, 0.5);
        assert_eq!(AlertRule::parse("prediction_drift").unwrap().metric, AlertMetric::DriftPrediction);
        assert_eq!(AlertRule::parse("latency_p95_ms<10").unwrap().comparison, Comparison::Below);
        assert_eq!(AlertRule::parse("p95_ms").unwrap().threshold, 500.0);

        let err = |t: &str| AlertRule::parse(t).unwrap_err().to_string();
        assert_eq!(
            err("p99_ms>5"),
            "`p99_ms>5`: unknown metric `p99_ms`; metrics: p95_ms, error_rate, drift, prediction_drift, accuracy_drop"
        );
        assert!(err("p95_ms=5").contains("expected `>` or `<`"), "{}", err("p95_ms=5"));
        assert!(err("p95_ms>").contains("expected `>` or `<`"));
        assert!(err("p95_ms>fast").contains("`fast` is not a finite number"));
        assert!(err("p95_ms>inf").contains("not a finite number"));
        assert!(err("accuracy_drop>5%").contains("percentage points"));
        assert!(err("drift@x").contains("whole number, found `x`"));
        assert!(err("").contains("unknown metric ``"));
    }

    #[test]
    fn rules_round_trip_through_json() {
        let rules = default_rules();
        let text = serde_json::to_string_pretty(&rules).unwrap();
        assert_eq!(parse_rules_json(&text).unwrap(), rules);
        let minimal = r#"[{"name": "slow", "metric": "latency_p95_ms", "comparison": "above", "threshold": 200}]"#;
        let r = &parse_rules_json(minimal).unwrap()[0];
        assert_eq!((r.min_samples, r.for_ms, r.clear_for_ms), (30, 0, DEFAULT_CLEAR_FOR_MS));
        let bad = r#"[{"name": "slow", "metric": "p99", "comparison": "above", "threshold": 200}]"#;
        let e = parse_rules_json(bad).unwrap_err().to_string();
        assert!(e.starts_with("rules file: at [0].metric: unknown variant `p99`"), "{e}");
        let typo = r#"[{"name": "slow", "metric": "error_rate", "comparison": "above", "treshold": 0.1}]"#;
        assert!(parse_rules_json(typo).unwrap_err().to_string().contains("treshold"));
        let twice = r#"[{"name": "a", "metric": "error_rate", "comparison": "above", "threshold": 0.1},
                        {"name": "a", "metric": "drift_prediction", "comparison": "above", "threshold": 0}]"#;
        assert_eq!(parse_rules_json(twice).unwrap_err(), RuleError::DuplicateName { name: "a".into() });
    }

    #[test]
    fn changing_rules_resolves_their_alerts() {
        let mut e = latency_only(0, 0);
        assert_eq!(e.evaluate("m", &p95(600.0, 50), 0).len(), 1);
        // Unchanged rules keep firing without a new event.
        let same = e.rules().to_vec();
        assert!(e.set_rules(same, 1).unwrap().is_empty());
        assert_eq!(e.firing().len(), 1);
        let mut looser = e.rules()[0].clone();
        looser.threshold = 800.0;
        let events = e.set_rules(vec![looser], 2).unwrap();
        assert_eq!((events.len(), events[0].state), (1, AlertState::Resolved));
        assert!(e.firing().is_empty());
        assert!(e.evaluate("m", &p95(600.0, 50), 3).is_empty());
    }
}
