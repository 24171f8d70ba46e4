//! Drift of each feature and of the predicted class: a reference window against a sliding
//! current window, with the statistics core's default tests (Evidently's rules).
