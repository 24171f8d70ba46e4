//! Operational metrics per model: latency percentiles over sliding windows (hdrhistogram),
//! per-second series for charts, throughput, errors and queue drops; process CPU and memory.
//!
//! Time is always passed in (ms since the Unix epoch), never read here, so the windows are
//! deterministic under test. Time never goes backwards inside a [`ModelMetrics`]: an observation
//! stamped earlier than the latest one seen (clocks of two threads, a late callback) is counted
//! in the current second, so a series point is never rewritten after it is closed.

use std::collections::VecDeque;
use std::time::Instant;

use hdrhistogram::Histogram;

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

    /// How many [`SLOT_MS`] slots, the current one included, the window sums; `None`: the
    /// whole session.
    fn slots(self) -> Option<i64> {
        match self {
            Window::LastMinute => Some(60_000 / SLOT_MS),
            Window::Last10Minutes => Some(600_000 / SLOT_MS),
            Window::Session => None,
        }
    }
}

/// Latency percentiles in milliseconds, as the histogram's nearest-rank values (numpy's
/// `percentile(..., method="inverted_cdf")`) to within 0.1 % (3 significant figures).
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
    /// Requests over the last minute: the sample size behind `error_rate` and throughput.
    pub last_minute_requests: u64,
    /// errors / requests over the last minute (None without requests).
    pub error_rate: Option<f64>,
    /// Requests per second over the last minute.
    pub throughput_rps: f64,
    pub latency: Vec<(Window, Option<Percentiles>)>,
    /// How latencies spread over the last 10 minutes, on bins shared by every model (so two
    /// models' distributions overlay).
    pub latency_distribution: LatencyDistribution,
}

/// Log-spaced latency bins: bin `k` covers `[LATENCY_BIN_START_MS·10^(k/10), ·10^((k+1)/10))` ms;
/// the first and last bins also take what falls below or above the range.
pub const LATENCY_BINS_PER_DECADE: usize = 10;
pub const LATENCY_BIN_START_MS: f64 = 0.001;
/// 1 µs to 100 s.
pub const LATENCY_BINS: usize = 8 * LATENCY_BINS_PER_DECADE;

/// Counts of latencies per shared bin ([`LATENCY_BINS`] of them).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LatencyDistribution {
    pub n: u64,
    pub counts: Vec<u64>,
}

impl LatencyDistribution {
    /// The lower edge of bin `k`, in ms.
    pub fn edge_ms(k: usize) -> f64 {
        LATENCY_BIN_START_MS * 10f64.powf(k as f64 / LATENCY_BINS_PER_DECADE as f64)
    }

    /// The bin a latency (ms) falls in.
    pub fn bin(latency_ms: f64) -> usize {
        if latency_ms.is_nan() || latency_ms <= LATENCY_BIN_START_MS {
            return 0;
        }
        // The small nudge keeps exact edges (1 ms) in their own bin despite rounding.
        let k = ((latency_ms / LATENCY_BIN_START_MS).log10() * LATENCY_BINS_PER_DECADE as f64 + 1e-9).floor();
        (k.max(0.0) as usize).min(LATENCY_BINS - 1)
    }

    fn from_histogram(h: &Histogram<u32>) -> Self {
        let mut counts = vec![0u64; LATENCY_BINS];
        for v in h.iter_recorded() {
            let ms = h.median_equivalent(v.value_iterated_to()) as f64 / TICKS_PER_MS;
            counts[Self::bin(ms)] += u64::from(v.count_at_value());
        }
        Self { n: h.len(), counts }
    }
}

impl OpsSummary {
    pub fn latency(&self, window: Window) -> Option<Percentiles> {
        self.latency.iter().find(|(w, _)| *w == window).and_then(|(_, p)| *p)
    }
}

/// Width of one rotating sub-histogram: the 1-minute window sums the current slot and the 5
/// before it (so it covers the last 50 to 60 s), the 10-minute window the current and 59 before.
pub const SLOT_MS: i64 = 10_000;
const SLOTS: usize = (600_000 / SLOT_MS) as usize;
/// Closed seconds kept for charts: the last 3 hours.
pub const SERIES_SECONDS: usize = 3 * 3600;
/// Latencies are recorded in ticks of 0.1 µs, so sub-millisecond models keep their precision
/// (a 50 µs latency is still resolved to 0.1 %).
const TICKS_PER_MS: f64 = 10_000.0;
/// The largest latency recorded as itself: one hour. Longer ones are recorded as one hour.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// 3 significant figures: every recorded value is within 1/1024 (< 0.1 %) of its bucket's
/// reported value, and a histogram of latencies up to a second stays near 60 KB.
const SIGFIGS: u8 = 3;

/// A latency histogram in ticks that grows to the largest latency seen (at most
/// [`MAX_LATENCY_MS`]), so one of a fast model stays small.
fn latency_histogram() -> Histogram<u32> {
    // `new` only fails for sigfigs > 5.
    let mut h = Histogram::new(SIGFIGS).unwrap_or_else(|e| unreachable!("histogram with {SIGFIGS} sigfigs: {e}"));
    h.auto(true);
    h
}

/// A latency in ms as histogram ticks; `None` for values that are not latencies (NaN, negative,
/// infinite). Latencies above [`MAX_LATENCY_MS`] are clamped to it.
fn latency_ticks(latency_ms: f64) -> Option<u64> {
    if !latency_ms.is_finite() || latency_ms < 0.0 {
        return None;
    }
    Some((latency_ms.min(MAX_LATENCY_MS) * TICKS_PER_MS).round() as u64)
}

/// Records into an auto-resizing histogram. `saturating_record` would clamp to the current
/// size instead of growing; `record` grows, and only fails if growing cannot allocate, which
/// the one-hour clamp rules out (then the value is clamped rather than lost).
fn record_ticks(h: &mut Histogram<u32>, ticks: u64) {
    if h.record(ticks).is_err() {
        h.saturating_record(ticks);
    }
}

fn percentiles(h: &Histogram<u32>) -> Option<Percentiles> {
    if h.is_empty() {
        return None;
    }
    let mut values = h.value_at_quantiles([0.5, 0.95, 0.99]).map(|v| h.median_equivalent(v) as f64 / TICKS_PER_MS);
    let mut next = || values.next().unwrap_or(f64::NAN);
    Some(Percentiles { n: h.len(), p50: next(), p95: next(), p99: next() })
}

struct Slot {
    /// `at_ms.div_euclid(SLOT_MS)` of the slot this histogram currently holds.
    index: i64,
    latency: Histogram<u32>,
}

fn ring_position(slot_index: i64) -> usize {
    slot_index.rem_euclid(SLOTS as i64) as usize
}

/// The sum of the closed slots inside one sliding window (relative to the latest slot), kept
/// as slots close and expire, so a summary adds one histogram to it instead of summing sixty.
struct WindowSum {
    window: Window,
    /// Slots in the window, the current one included.
    slots: i64,
    closed: Histogram<u32>,
}

/// The second being filled; closed into a [`SecondPoint`] when a later second arrives.
struct OpenSecond {
    second: i64,
    requests: u32,
    errors: u32,
    drops: u32,
    latency: Histogram<u32>,
}

impl OpenSecond {
    fn point(&self) -> SecondPoint {
        SecondPoint {
            t_ms: self.second.saturating_mul(1000),
            requests: self.requests,
            errors: self.errors,
            drops: self.drops,
            latency: percentiles(&self.latency),
        }
    }
}

/// One model's operational metrics. `record` costs well under 2 µs (see
/// `examples/monitor_bench.rs`); closing a second costs one pass over that second's histogram.
///
/// Latencies that are NaN, infinite or negative are not latencies: the request still counts
/// (and its error flag), its latency does not. Latencies above an hour count as an hour.
pub struct ModelMetrics {
    start_second: i64,
    /// The latest time seen; earlier timestamps count as this one.
    latest_ms: i64,
    open: OpenSecond,
    series: VecDeque<SecondPoint>,
    slots: Vec<Slot>,
    windows: [WindowSum; 2],
    session: Histogram<u32>,
    requests: u64,
    errors: u64,
    drops: u64,
}

impl ModelMetrics {
    pub fn new(start_ms: i64) -> Self {
        let second = start_ms.div_euclid(1000);
        Self {
            start_second: second,
            latest_ms: start_ms,
            open: OpenSecond { second, requests: 0, errors: 0, drops: 0, latency: latency_histogram() },
            series: VecDeque::with_capacity(SERIES_SECONDS),
            slots: (0..SLOTS).map(|_| Slot { index: i64::MIN, latency: latency_histogram() }).collect(),
            windows: [Window::LastMinute, Window::Last10Minutes].map(|window| WindowSum {
                window,
                slots: window.slots().unwrap_or(1),
                closed: latency_histogram(),
            }),
            session: latency_histogram(),
            requests: 0,
            errors: 0,
            drops: 0,
        }
    }

    /// Counts one answered or failed request at `at_ms`, with its latency if it ran.
    pub fn record(&mut self, at_ms: i64, latency_ms: Option<f64>, error: bool) {
        self.advance_to(at_ms);
        self.requests += 1;
        self.open.requests = self.open.requests.saturating_add(1);
        if error {
            self.errors += 1;
            self.open.errors = self.open.errors.saturating_add(1);
        }
        if let Some(ticks) = latency_ms.and_then(latency_ticks) {
            let slot_index = self.latest_ms.div_euclid(SLOT_MS);
            let slot = &mut self.slots[ring_position(slot_index)];
            if slot.index != slot_index {
                slot.latency.reset();
                slot.index = slot_index;
            }
            for h in [&mut slot.latency, &mut self.session, &mut self.open.latency] {
                record_ticks(h, ticks);
            }
        }
    }

    /// [`ModelMetrics::record`] for one observation.
    pub fn observe(&mut self, observation: &super::Observation) {
        self.record(observation.at_ms, observation.latency_ms, observation.error);
    }

    /// Counts one request dropped before it ran (queue full).
    pub fn record_drop(&mut self, at_ms: i64) {
        self.advance_to(at_ms);
        self.drops += 1;
        self.open.drops = self.open.drops.saturating_add(1);
    }

    /// Closes every second before `now_ms` (empty ones included), so the series moves on while
    /// a model is idle. Earlier times than the latest seen are ignored.
    pub fn advance_to(&mut self, now_ms: i64) {
        if now_ms <= self.latest_ms {
            return;
        }
        let (old_slot, new_slot) = (self.latest_ms.div_euclid(SLOT_MS), now_ms.div_euclid(SLOT_MS));
        self.latest_ms = now_ms;
        if new_slot != old_slot {
            self.close_slot(old_slot, new_slot);
        }
        let second = now_ms.div_euclid(1000);
        if second == self.open.second {
            return;
        }
        self.push_point(self.open.point());
        // Idle seconds in between are points with no traffic; after a gap longer than the
        // series keeps, only the last SERIES_SECONDS of them matter.
        let first_idle = (self.open.second + 1).max(second.saturating_sub(SERIES_SECONDS as i64));
        for idle in first_idle..second {
            self.push_point(SecondPoint {
                t_ms: idle.saturating_mul(1000),
                requests: 0,
                errors: 0,
                drops: 0,
                latency: None,
            });
        }
        self.open.second = second;
        self.open.requests = 0;
        self.open.errors = 0;
        self.open.drops = 0;
        if !self.open.latency.is_empty() {
            self.open.latency.reset();
        }
    }

    /// Moves each window's closed sum from `old` (now closed) to `new`: adds the closed slot
    /// and subtracts the slots that left the window (at most the window's length in slots).
    fn close_slot(&mut self, old: i64, new: i64) {
        let slots = &self.slots;
        let held = |index: i64| {
            let slot = &slots[ring_position(index)];
            (slot.index == index && !slot.latency.is_empty()).then_some(&slot.latency)
        };
        for w in &mut self.windows {
            if new - old >= w.slots {
                // Everything the sum held, and the slot that just closed, is out of the window.
                w.closed.reset();
                continue;
            }
            let mut consistent = held(old).is_none_or(|h| w.closed.add(h).is_ok());
            for leaving in (old - w.slots + 1)..=(new - w.slots) {
                if let Some(h) = held(leaving) {
                    consistent &= w.closed.subtract(h).is_ok();
                }
            }
            if !consistent {
                // Only if a count saturated: rebuild the sum from the slots.
                w.closed.reset();
                for index in (new - w.slots + 1)..new {
                    if let Some(h) = held(index) {
                        let _ = w.closed.add(h);
                    }
                }
            }
        }
    }

    fn push_point(&mut self, point: SecondPoint) {
        if self.series.len() == SERIES_SECONDS {
            self.series.pop_front();
        }
        self.series.push_back(point);
    }

    /// Totals, latency per window, and throughput and error rate over the last minute: the 60
    /// whole seconds before `now_ms`'s second (fewer at the start of the session). Call
    /// [`ModelMetrics::advance_to`]`(now_ms)` first on a schedule: idle seconds then close, and
    /// the windows come from their kept sums (~70 µs) rather than from every slot (~2 ms).
    pub fn summary(&self, now_ms: i64) -> OpsSummary {
        let now_ms = now_ms.max(self.latest_ms);
        let now_second = now_ms.div_euclid(1000);
        let from_second = now_second.saturating_sub(60).max(self.start_second);
        let (mut requests, mut errors) = (0u64, 0u64);
        // The open second counts once it is over, even if nothing closed it yet.
        let open = (self.open.second < now_second).then(|| self.open.point());
        let (from_ms, now_second_ms) = (from_second.saturating_mul(1000), now_second.saturating_mul(1000));
        let closed = self.series.iter().rev().take_while(|p| p.t_ms >= from_ms);
        for p in open.iter().chain(closed).filter(|p| p.t_ms >= from_ms && p.t_ms < now_second_ms) {
            requests += u64::from(p.requests);
            errors += u64::from(p.errors);
        }
        let seconds = now_second - from_second;
        let throughput_rps = if seconds > 0 { requests as f64 / seconds as f64 } else { 0.0 };
        let error_rate = (requests > 0).then(|| errors as f64 / requests as f64);
        let latency = Window::ALL.iter().map(|&w| (w, self.latency(w, now_ms))).collect();
        let latency_distribution = self
            .window_histogram(Window::Last10Minutes, now_ms)
            .map(|h| LatencyDistribution::from_histogram(&h))
            .unwrap_or_default();
        OpsSummary {
            latency_distribution,
            last_minute_requests: requests,
            requests: self.requests,
            errors: self.errors,
            drops: self.drops,
            error_rate,
            throughput_rps,
            latency,
        }
    }

    /// Latency percentiles over one window ending at `now_ms`: the window's closed sum plus the
    /// current slot, or, when `now_ms` is in a later slot than the latest time seen (an idle
    /// model whose clock was not advanced), the slots summed afresh.
    pub fn latency(&self, window: Window, now_ms: i64) -> Option<Percentiles> {
        let current = now_ms.max(self.latest_ms).div_euclid(SLOT_MS);
        let Some(sum) = self.windows.iter().find(|w| w.window == window) else { return percentiles(&self.session) };
        if current != self.latest_ms.div_euclid(SLOT_MS) {
            return self.latency_summed(window, now_ms);
        }
        let open = &self.slots[ring_position(current)];
        let open = (open.index == current && !open.latency.is_empty()).then_some(&open.latency);
        match (sum.closed.is_empty(), open) {
            (true, open) => open.and_then(percentiles),
            (false, None) => percentiles(&sum.closed),
            (false, Some(open)) => {
                let mut total = sum.closed.clone();
                let _ = total.add(open);
                percentiles(&total)
            }
        }
    }

    /// [`ModelMetrics::latency`] by summing every slot in the window.
    fn latency_summed(&self, window: Window, now_ms: i64) -> Option<Percentiles> {
        percentiles(&self.window_histogram(window, now_ms)?)
    }

    /// Every latency in a window ending at `now_ms`, summed from its slots (`None`: none).
    fn window_histogram(&self, window: Window, now_ms: i64) -> Option<Histogram<u32>> {
        let Some(slots) = window.slots() else {
            return (!self.session.is_empty()).then(|| self.session.clone());
        };
        let current = now_ms.max(self.latest_ms).div_euclid(SLOT_MS);
        let mut in_window = self
            .slots
            .iter()
            .filter(|s| s.index > current.saturating_sub(slots) && s.index <= current && !s.latency.is_empty());
        let first = in_window.next()?;
        let mut sum = first.latency.clone();
        for slot in in_window {
            // Both auto-resize, so adding cannot run out of range.
            let _ = sum.add(&slot.latency);
        }
        Some(sum)
    }

    /// Closed seconds, oldest first (bounded: the last [`SERIES_SECONDS`]).
    pub fn series(&self) -> Vec<SecondPoint> {
        self.series.iter().copied().collect()
    }

    /// The closed seconds without copying them.
    pub fn seconds(&self) -> &VecDeque<SecondPoint> {
        &self.series
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ProcessPoint {
    pub t_ms: i64,
    /// CPU time used by this process over the interval since the previous sample, as a share of
    /// one core, as `top` shows it: 100 = one core busy the whole time, 200 = two cores.
    pub cpu_percent: f64,
    pub rss_bytes: u64,
}

/// Process samples kept: the last 3 hours at one a second.
pub const PROCESS_SERIES_POINTS: usize = 3 * 3600;

/// This process's CPU % and resident memory, sampled by the caller (about once a second).
/// Only this process is refreshed, never the whole process table.
pub struct ProcessMetrics {
    system: Option<sysinfo::System>,
    pid: Option<sysinfo::Pid>,
    /// CPU time (ms) at the previous sample and when it was taken.
    previous: Option<(u64, Instant)>,
    series: VecDeque<ProcessPoint>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    pub fn new() -> Self {
        Self {
            system: sysinfo::System::new().ok(),
            pid: sysinfo::get_current_pid().ok(),
            previous: None,
            series: VecDeque::with_capacity(PROCESS_SERIES_POINTS),
        }
    }

    /// Reads this process's CPU time and resident memory. The first call only sets the
    /// baseline CPU % is measured from and returns `None`, as does a platform where sysinfo
    /// cannot read the process. CPU % is measured over the time since the previous call on a
    /// monotonic clock (`at_ms` only stamps the point).
    pub fn sample(&mut self, at_ms: i64) -> Option<ProcessPoint> {
        let (Some(pid), Some(system)) = (self.pid, self.system.as_mut()) else { return None };
        system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            true,
            sysinfo::ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        let process = system.process(pid)?;
        let (cpu_ms, now) = (process.accumulated_cpu_time(), Instant::now());
        let rss_bytes = process.memory();
        let previous = self.previous.replace((cpu_ms, now));
        let (previous_cpu_ms, previous_at) = previous?;
        let wall_ms = now.duration_since(previous_at).as_secs_f64() * 1000.0;
        if wall_ms <= 0.0 {
            return None;
        }
        let cpu_percent = cpu_ms.saturating_sub(previous_cpu_ms) as f64 / wall_ms * 100.0;
        let point = ProcessPoint { t_ms: at_ms, cpu_percent, rss_bytes };
        if self.series.len() == PROCESS_SERIES_POINTS {
            self.series.pop_front();
        }
        self.series.push_back(point);
        Some(point)
    }

    pub fn series(&self) -> Vec<ProcessPoint> {
        self.series.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    /// The SplitMix64 uniforms of scripts/metrics_reference.py.
    fn uniforms(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            })
            .collect()
    }

    fn latencies(kind: &str, n: usize) -> Vec<f64> {
        let u = uniforms(7, n);
        match kind {
            "cubic" => u.iter().map(|u| 0.05 + u.powi(3) * 200.0).collect(),
            _ => u.iter().map(|u| 10f64.powf(u * 5.4 - 1.7)).collect(),
        }
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        let rel = (actual - expected).abs() / expected;
        assert!(rel < 1e-3, "{what}: {actual} vs numpy {expected} (relative error {rel:.2e})");
    }

    #[test]
    fn percentiles_match_numpy_to_a_tenth_of_a_percent() {
        // numpy.percentile(method="inverted_cdf") from scripts/metrics_reference.py.
        let cases = [
            ("cubic", 20_000, [24.26478036863913, 171.20163644918526, 194.57301162608215]),
            ("wide", 1000, [6.707031992826831, 2728.8810940267736, 4483.7639004215425]),
        ];
        for (kind, n, [p50, p95, p99]) in cases {
            let mut m = ModelMetrics::new(T0);
            for (i, l) in latencies(kind, n).into_iter().enumerate() {
                m.record(T0 + i as i64 % 1000, Some(l), false);
            }
            let s = m.summary(T0 + 500);
            for w in Window::ALL {
                let p = s.latency(w).unwrap();
                assert_eq!(p.n, n as u64);
                assert_close(p.p50, p50, &format!("{kind} {} p50", w.name()));
                assert_close(p.p95, p95, &format!("{kind} {} p95", w.name()));
                assert_close(p.p99, p99, &format!("{kind} {} p99", w.name()));
            }
        }
    }

    #[test]
    fn latency_distributions_share_log_bins_and_count_every_request() {
        let mut m = ModelMetrics::new(0);
        for (i, ms) in [0.15, 0.15, 0.16, 1.0, 12.0, 0.0005, 1e6].iter().enumerate() {
            m.record(i as i64, Some(*ms), false);
        }
        let d = m.summary(5_000).latency_distribution;
        assert_eq!(d.n, 7);
        assert_eq!(d.counts.iter().sum::<u64>(), 7);
        assert_eq!(d.counts.len(), LATENCY_BINS);
        // 0.15 and 0.16 ms share the bin [0.1259, 0.1585) and [0.1585, 0.1995): 2 and 1.
        assert_eq!(d.counts[LatencyDistribution::bin(0.15)], 2);
        assert_eq!(d.counts[LatencyDistribution::bin(0.16)], 1);
        assert_eq!(LatencyDistribution::bin(1.0), 30);
        assert!((LatencyDistribution::edge_ms(30) - 1.0).abs() < 1e-12);
        assert_eq!((d.counts[0], d.counts[LATENCY_BINS - 1]), (1, 1), "out of range: first and last bins");
    }

    #[test]
    fn windows_slide_and_the_session_keeps_everything() {
        let mut m = ModelMetrics::new(T0);
        // Minute 0: 100 slow requests; minute 5: 100 fast ones.
        for i in 0..100 {
            m.record(T0 + i * 500, Some(100.0), false);
        }
        for i in 0..100 {
            m.record(T0 + 300_000 + i * 500, Some(1.0), false);
        }
        let at_6min = m.summary(T0 + 355_000);
        let minute = at_6min.latency(Window::LastMinute).unwrap();
        assert_eq!(minute.n, 100);
        assert_close(minute.p99, 1.0, "1 min p99");
        let ten = at_6min.latency(Window::Last10Minutes).unwrap();
        assert_eq!(ten.n, 200);
        assert_close(ten.p50, 1.0, "10 min p50");
        assert_close(ten.p99, 100.0, "10 min p99");
        // A minute later the last minute has nothing; at 11 min the slow ones left the 10 min
        // window; the session still has both.
        assert_eq!(m.summary(T0 + 420_000).latency(Window::LastMinute), None);
        let at_11min = m.summary(T0 + 660_000);
        let ten = at_11min.latency(Window::Last10Minutes).unwrap();
        assert_eq!(ten.n, 100);
        assert_close(ten.p99, 1.0, "10 min p99 at 11 min");
        let session = at_11min.latency(Window::Session).unwrap();
        assert_eq!(session.n, 200);
        assert_close(session.p50, 1.0, "session p50");
        assert_close(session.p99, 100.0, "session p99");
        // At 16 min the fast ones left too; slots reused later start empty.
        assert_eq!(m.summary(T0 + 960_000).latency(Window::Last10Minutes), None);
        m.record(T0 + 1_200_000, Some(7.0), false);
        let s = m.summary(T0 + 1_200_000);
        let ten = s.latency(Window::Last10Minutes).unwrap();
        assert_eq!(ten.n, 1);
        assert_close(ten.p50, 7.0, "a reused slot starts empty");
        assert_eq!(s.latency(Window::Session).map(|p| p.n), Some(201));
    }

    #[test]
    fn the_one_minute_window_spans_the_current_slot_and_the_five_before() {
        let mut m = ModelMetrics::new(T0);
        m.record(T0, Some(5.0), false);
        // 59.999 s later the slot of T0 is 5 slots back: inside; at 60 s it is 6 back: out.
        assert_eq!(m.latency(Window::LastMinute, T0 + 59_999).map(|p| p.n), Some(1));
        assert_eq!(m.latency(Window::LastMinute, T0 + 60_000), None);
        assert_eq!(m.latency(Window::Last10Minutes, T0 + 599_999).map(|p| p.n), Some(1));
        assert_eq!(m.latency(Window::Last10Minutes, T0 + 600_000), None);
    }

    #[test]
    fn the_kept_window_sums_equal_summing_every_slot() {
        let mut m = ModelMetrics::new(T0);
        let u = uniforms(3, 40_000);
        let mut t = T0;
        for (i, pair) in u.chunks(2).enumerate() {
            // Mostly small steps, now and then a gap of up to 15 minutes.
            t += if pair[0] < 0.995 { (pair[0] * 300.0) as i64 } else { (pair[1] * 900_000.0) as i64 };
            m.record(t, Some(0.05 + pair[1].powi(3) * 500.0), false);
            if i % 97 == 0 {
                for w in [Window::LastMinute, Window::Last10Minutes] {
                    assert_eq!(m.latency(w, t), m.latency_summed(w, t), "{} at step {i}", w.name());
                }
            }
        }
        assert!(t - T0 > 3_600_000, "the walk spans more than the windows: {} ms", t - T0);
    }

    #[test]
    fn seconds_without_traffic_are_empty_points() {
        let mut m = ModelMetrics::new(T0);
        m.record(T0 + 100, Some(2.0), false);
        m.record(T0 + 200, Some(4.0), true);
        m.record_drop(T0 + 300);
        m.record(T0 + 4_500, Some(3.0), false);
        let series = m.series();
        assert_eq!(series.iter().map(|p| p.t_ms - T0).collect::<Vec<_>>(), [0, 1000, 2000, 3000]);
        assert_eq!((series[0].requests, series[0].errors, series[0].drops), (2, 1, 1));
        let first = series[0].latency.unwrap();
        assert_eq!(first.n, 2);
        assert_close(first.p50, 2.0, "p50 of the first second");
        assert_close(first.p99, 4.0, "p99 of the first second");
        for p in &series[1..] {
            assert_eq!((p.requests, p.errors, p.drops, p.latency), (0, 0, 0, None));
        }
        // Idle time closes seconds too once the caller advances the clock.
        m.advance_to(T0 + 7_000);
        let series = m.series();
        assert_eq!(series.len(), 7);
        assert_eq!(series[4].requests, 1);
        assert_close(series[4].latency.unwrap().p50, 3.0, "p50 of the fifth second");
        assert_eq!(series[6].t_ms, T0 + 6_000);
    }

    #[test]
    fn late_timestamps_count_in_the_current_second() {
        let mut m = ModelMetrics::new(T0);
        m.record(T0 + 10_500, Some(1.0), false);
        m.record(T0 + 10_200, Some(1.0), false);
        m.record(T0 + 9_900, Some(1.0), true);
        m.record_drop(T0 - 50_000);
        m.record(i64::MIN, None, false);
        m.advance_to(T0 + 11_000);
        let last = *m.seconds().back().unwrap();
        assert_eq!((last.t_ms, last.requests, last.errors, last.drops), (T0 + 10_000, 4, 1, 1));
        assert_eq!(m.series().iter().map(|p| p.requests).sum::<u32>(), 4);
        // Going back in time leaves closed seconds alone.
        m.advance_to(T0);
        assert_eq!(m.series().len(), 11);
    }

    #[test]
    fn invalid_latencies_are_ignored_and_huge_ones_clamped() {
        let mut m = ModelMetrics::new(T0);
        for l in [f64::NAN, -1.0, f64::INFINITY, f64::NEG_INFINITY, -0.0001] {
            m.record(T0, Some(l), false);
        }
        m.record(T0, None, true);
        let s = m.summary(T0);
        assert_eq!((s.requests, s.errors), (6, 1));
        assert_eq!(s.latency(Window::Session), None);
        m.record(T0, Some(1e12), false);
        m.record(T0, Some(0.0), false);
        let p = m.summary(T0).latency(Window::Session).unwrap();
        assert_eq!(p.n, 2);
        assert_eq!(p.p50, 0.0);
        assert_close(p.p99, MAX_LATENCY_MS, "clamped latency");
        // Far-apart timestamps never allocate more than the series keeps.
        m.record(T0 + 10 * 86_400_000, Some(1.0), false);
        m.record(i64::MAX, Some(1.0), false);
        assert_eq!(m.series().len(), SERIES_SECONDS);
        assert_eq!(m.summary(i64::MAX).requests, 10);
    }

    #[test]
    fn the_series_keeps_the_last_three_hours() {
        let mut m = ModelMetrics::new(T0);
        for s in 0..4 * 3600 {
            m.record(T0 + s * 1000, Some(1.0), s % 2 == 0);
        }
        m.advance_to(T0 + 4 * 3600 * 1000);
        let series = m.seconds();
        assert_eq!(series.len(), SERIES_SECONDS);
        assert_eq!(series.front().map(|p| p.t_ms), Some(T0 + 3600 * 1000));
        assert_eq!(series.back().map(|p| p.t_ms), Some(T0 + (4 * 3600 - 1) * 1000));
        assert!(series.iter().zip(series.iter().skip(1)).all(|(a, b)| b.t_ms - a.t_ms == 1000));
    }

    #[test]
    fn throughput_and_error_rate_cover_the_last_minute() {
        let mut m = ModelMetrics::new(T0);
        // 10 requests a second for 2 minutes, one in 20 failing.
        for i in 0..1200 {
            m.record(T0 + i * 100, Some(2.0), i % 20 == 0);
        }
        let s = m.summary(T0 + 120_000);
        assert_eq!((s.requests, s.errors), (1200, 60));
        assert_eq!(s.throughput_rps, 10.0);
        assert_eq!(s.last_minute_requests, 600);
        assert_eq!(s.error_rate, Some(0.05));
        // 5 s into the session: 50 requests over 5 whole seconds.
        let mut early = ModelMetrics::new(T0);
        for i in 0..50 {
            early.record(T0 + i * 100, Some(2.0), false);
        }
        assert_eq!(early.summary(T0 + 5_000).throughput_rps, 10.0);
        // Traffic stopped at 120 s: 30 s later half a minute of it is left.
        let s = m.summary(T0 + 150_000);
        assert_eq!(s.throughput_rps, 5.0);
        assert_eq!(s.error_rate, Some(0.05));
        // Nothing for a minute: no rate rather than 0 %.
        let s = m.summary(T0 + 181_000);
        assert_eq!((s.throughput_rps, s.error_rate), (0.0, None));
        // Within the first second nothing is whole yet.
        let s = ModelMetrics::new(T0).summary(T0 + 300);
        assert_eq!((s.throughput_rps, s.error_rate), (0.0, None));
    }

    #[test]
    fn drops_are_counted_apart_from_requests() {
        let mut m = ModelMetrics::new(T0);
        m.record_drop(T0 + 10);
        m.record_drop(T0 + 20);
        m.record(T0 + 30, Some(1.0), false);
        let s = m.summary(T0 + 1_000);
        assert_eq!((s.requests, s.errors, s.drops), (1, 0, 2));
        assert_eq!(s.error_rate, Some(0.0));
    }

    /// CPU time of this process (all threads), ms.
    fn process_cpu_ms() -> f64 {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0);
        ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
    }

    fn rss_from_proc_status() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_cpu_and_memory_match_the_kernel() {
        let mut p = ProcessMetrics::new();
        assert_eq!(p.sample(T0), None, "the first sample only sets the baseline");
        let (cpu0, wall0) = (process_cpu_ms(), Instant::now());
        // Keep a core busy for 600 ms.
        let mut x = 0u64;
        while wall0.elapsed().as_millis() < 600 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let point = p.sample(T0 + 600).unwrap();
        let expected = (process_cpu_ms() - cpu0) / (wall0.elapsed().as_secs_f64() * 1000.0) * 100.0;
        // The kernel counts CPU time in 10 ms ticks: a few points over 600 ms.
        assert!((point.cpu_percent - expected).abs() < 6.0, "cpu {} vs kernel {expected}", point.cpu_percent);
        assert!(point.cpu_percent > 10.0, "a busy loop shows as busy: {}", point.cpu_percent);
        let rss = rss_from_proc_status() as f64;
        assert!((point.rss_bytes as f64 - rss).abs() / rss < 0.1, "rss {} vs VmRSS {rss}", point.rss_bytes);
        assert_eq!(point.t_ms, T0 + 600);
        assert_eq!(p.series(), vec![point]);
    }
}
