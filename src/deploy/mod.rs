//! Deployment strategies and traffic replay. For now: the drift transformations that replayed
//! traffic (and drifted training data) use.

pub mod drift;
