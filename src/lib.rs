//! ModelDeck: run, compare and monitor machine-learning models on your own machine.
//!
//! Data flows one way: `source` (where model files come from) → `model` (architectures,
//! preprocessing, prediction) → `predict`/`bench` (what the CLI and, later, the GUI call).
//! `stats` holds the pure statistics (drift tests, A/B, shadow and canary statistics) and
//! `report` reads CSVs into the drift and A/B reports built on them.
//! Only `ui` (the eframe/egui desktop app) imports a GUI toolkit; every other module is usable
//! headless, and the `modeldeck` binary is a thin shell over both.

pub mod bench;
pub mod deploy;
pub mod engine;
pub mod eval;
pub mod model;
pub mod monitor;
pub mod oip;
pub mod predict;
pub mod remote;
pub mod report;
pub mod serve;
pub mod source;
pub mod stats;
pub mod store;
pub mod train;
pub mod ui;

/// Any error the library can report to a user; each layer has its own typed error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Output(#[from] eval::output::OutputError),
    #[error("{0}")]
    Usage(String),
}
