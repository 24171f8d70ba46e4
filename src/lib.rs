//! ModelDeck: run, compare and monitor machine-learning models on your own machine.
//!
//! Data flows one way: `source` (where model files come from) → `model` (architectures,
//! preprocessing, prediction) → `predict`/`bench` (what the CLI and, later, the GUI call).
//! `stats` holds the pure statistics (drift tests, A/B, shadow and canary statistics) and
//! `report` reads CSVs into the drift and A/B reports built on them.
//! The library never imports a GUI toolkit; the `modeldeck` binary is a thin shell over it.

pub mod bench;
pub mod deploy;
pub mod eval;
pub mod model;
pub mod predict;
pub mod report;
pub mod source;
pub mod stats;
pub mod train;

/// Any error the library can report to a user; each layer has its own typed error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("{0}")]
    Usage(String),
}
