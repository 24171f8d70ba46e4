//! Operational metrics per model: latency percentiles over sliding windows (hdrhistogram),
//! per-second series for charts, throughput, errors and queue drops; process CPU and memory.

/// The sliding windows latency percentiles are reported over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Window {
    LastMinute,
    Last10Minutes,
    Session,
}

impl Window {
    pub const ALL: [Window; 3] = [Window::LastMinute, Window::Last10Minutes, Window::Session];
    pub fn name(self) -> &'static str {
        match self {
            Window::LastMinute => "1 min",
            Window::Last10Minutes => "10 min",
            Window::Session => "session",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub n: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// One closed second of one model's traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SecondPoint {
    /// Start of the second, ms since epoch.
    pub t_ms: i64,
    pub requests: u32,
    pub errors: u32,
    pub drops: u32,
    /// Latency percentiles of the requests answered in this second (None if there were none).
    pub latency: Option<Percentiles>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OpsSummary {
    pub requests: u64,
    pub errors: u64,
    pub drops: u64,
    /// errors / requests over the last minute (None without requests).
    pub error_rate: Option<f64>,
    /// Requests per second over the last minute.
    pub throughput_rps: f64,
    pub latency: Vec<(Window, Option<Percentiles>)>,
}

/// One model's operational metrics. `record` costs well under 2 µs.
pub struct ModelMetrics {}

impl ModelMetrics {
    pub fn new(start_ms: i64) -> Self {
        let _ = start_ms;
        todo!("metrics helper")
    }
    pub fn record(&mut self, at_ms: i64, latency_ms: Option<f64>, error: bool) {
        let _ = (at_ms, latency_ms, error);
        todo!()
    }
    pub fn record_drop(&mut self, at_ms: i64) {
        let _ = at_ms;
        todo!()
    }
    pub fn summary(&self, now_ms: i64) -> OpsSummary {
        let _ = now_ms;
        todo!()
    }
    /// Closed seconds, oldest first (bounded: the last few hours).
    pub fn series(&self) -> Vec<SecondPoint> {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcessPoint {
    pub t_ms: i64,
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// This process's CPU % and resident memory, sampled by the caller (about once a second).
pub struct ProcessMetrics {}

impl ProcessMetrics {
    pub fn new() -> Self {
        todo!("metrics helper")
    }
    pub fn sample(&mut self, at_ms: i64) -> Option<ProcessPoint> {
        let _ = at_ms;
        todo!()
    }
    pub fn series(&self) -> Vec<ProcessPoint> {
        todo!()
    }
}
