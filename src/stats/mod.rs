//! The one statistics module of ModelDeck: pure functions (no I/O, no GUI, no model code)
//! shared by the Monitor and Deploy views, the canary judge and the `drift` / `abtest` CLI
//! verbs.
//!
//! Definitions follow DESIGN.md section 6, which are Evidently 0.7's for drift (PSI,
//! Jensen-Shannon, normed Wasserstein, the default-test rule, data-set drift) and
//! scipy's / statsmodels' for the tests (KS, chi-square, z, Wilson, Mann-Whitney, McNemar).
//! `scripts/stats_reference.py` (Evidently, scipy, statsmodels) and
//! `scripts/kayenta_reference.R` (R's `wilcox.test`, for the Kayenta judgement) produce the
//! expected values in `tests/fixtures/stats/`, and `tests/stats_reference.rs` checks them
//! (1e-9 relative; p-values 1e-6 relative, on the log scale below 1e-300).
//!
//! Distributions come from the `statrs` crate: `Normal` (Φ for z-tests and Mann-Whitney, Φ⁻¹ for Kayenta),
//! `ChiSquared` (chi-square and McNemar χ²), `Binomial` (exact McNemar), and its
//! `ln_factorial` / `binomial` helpers. The Kolmogorov-Smirnov distributions, which statrs
//! lacks, are implemented in [`ks`].
//!
//! [`sequential`] adds the always-valid statistics for a live A/B dashboard (the mixture SPRT of
//! Johari et al., checked against `scripts/msprt_reference.py` in `tests/sequential.rs`).
//!
//! Callers drop missing values before calling in; an empty side is a [`StatsError`], never a
//! panic.

pub mod ab;
pub mod binning;
pub mod describe;
pub mod drift;
pub mod ks;
pub mod mannwhitney;
pub mod paired;
pub mod sequential;

use serde::Serialize;

pub use ab::{newcombe_diff_ci95, two_proportion_ztest, wilson_ci95, ArmAccuracy};
pub use drift::{
    categorical_drift, dataset_drift, numerical_drift, ColumnDrift, ColumnKind, DatasetDrift, DefaultTest, DriftMethod,
};
pub use ks::ks_2samp;
pub use mannwhitney::{
    kayenta, kayenta_with, mann_whitney_u, mann_whitney_u_asymptotic, Kayenta, KayentaOptions, KayentaVerdict,
    MannWhitney,
};
pub use paired::{correctness_agreement, correctness_table, mcnemar, CorrectnessTable, McNemar};
pub use sequential::{
    msprt_lambda, simulate_peeking, ArmSplit, FixedHorizon, PeekingOptions, PeekingReport, SequentialAb,
    SequentialState,
};

/// A test statistic with its p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestResult {
    pub statistic: f64,
    pub pvalue: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    #[error("the reference side has no values after dropping missing ones")]
    EmptyReference,
    #[error("the current side has no values after dropping missing ones")]
    EmptyCurrent,
    #[error("{0} needs at least one value on each side")]
    EmptySample(&'static str),
    #[error("a value is NaN; drop missing values before computing statistics")]
    NotANumber,
    #[error("a value is infinite; drop ±inf as missing before computing statistics")]
    Infinite,
    #[error("values are too large: their differences overflow")]
    Overflow,
    #[error(
        "no interval: every observation is tied (each arm repeats a single value), so the rank statistic has no \
         spread; R's wilcox.test and Kayenta refuse as well"
    )]
    AllTied,
    #[error("{0}")]
    InvalidOption(&'static str),
    #[error("more successes than trials")]
    InvalidCounts,
    #[error("internal error: {0}")]
    Internal(&'static str),
}
