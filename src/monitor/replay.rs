//! Traffic replay: a data set as live traffic, with a drift schedule and delayed labels.
//!
//! [`Replay::start`] runs on its own thread and never blocks the caller. Each request takes the
//! next example (in file order, or shuffled per pass), applies the drift the [`DriftSchedule`]
//! gives its index, and goes through the single prediction path ([`predict::predict`]) on each
//! model the [`Router`] picks (one today; A/B, shadow and canary routers later). Requests are
//! paced on an absolute schedule (request `k` is due `k / rate` seconds after the start, pauses
//! excluded), so pacing does not drift; a model slower than the rate simply runs back to back and
//! [`ReplayProgress`] reports the rate achieved. Decoded images are cached (up to
//! [`ReplayOptions::image_cache_bytes`]) so that looping measures the model, not PNG decoding.
//!
//! Everything that happens is sent to the sink, a `FnMut(ReplayEvent) + Send` called on the
//! replay thread, in order: a [`ReplayPrediction`] per model answer (or error; a corrupt file is
//! an error for that request and the replay goes on), a [`ReplayLabel`] per answered prediction
//! whose example has a label, once `label_delay` has passed since the answer (labels are
//! delivered between requests, so with a slow model up to one request late, never early),
//! [`ReplayEvent::Progress`] about five times a second, and one final `Finished`, `Stopped` or
//! `Failed`. Use a closure over a channel sender to receive events elsewhere, and call a GUI's
//! repaint from it. [`ReplayPrediction::observation`], [`ReplayPrediction::records`] and
//! [`ReplayLabel::feedback`] turn events into what the monitor and the prediction log take.

mod schedule;

pub use schedule::{AppliedDrift, DriftKnob, DriftSchedule, DriftStep, ScheduleError};

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{Features, Feedback, Observation};
use crate::eval::{Dataset, ExampleInput};
use crate::model::{self, LoadedModel};
use crate::predict::{self, Inputs, NamedImage, PredictOutput, PredictRequest};
use crate::store::{self, Origin, PredictionRecord};

/// How often a [`ReplayEvent::Progress`] is sent.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// The window the current rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(2);

/// How many shadow copies may wait for the shadow model; more are dropped (and counted), so a
/// slow shadow never holds back the live traffic or grows memory without bound.
pub const SHADOW_QUEUE: usize = 256;

/// One model answering a request, under an arm name in a rollout ("A", "B").
#[derive(Clone)]
pub struct Route {
    pub arm: Option<Arc<str>>,
    pub model: Arc<LoadedModel>,
    /// A shadow copy: answered on the shadow thread, never on the replay thread, so its time
    /// does not delay the live answer or the schedule.
    pub shadow: bool,
    /// Latency or failures injected into this route's answers, to rehearse a slower or failing
    /// release.
    pub fault: Option<Fault>,
}

impl Route {
    pub fn new(model: Arc<LoadedModel>) -> Self {
        Self { arm: None, model, shadow: false, fault: None }
    }

    pub fn with_arm(model: Arc<LoadedModel>, arm: &str) -> Self {
        Self { arm: Some(arm.into()), model, shadow: false, fault: None }
    }

    /// This route as a shadow copy (see [`Route::shadow`]).
    pub fn as_shadow(mut self) -> Self {
        self.shadow = true;
        self
    }

    pub fn with_fault(mut self, fault: Option<Fault>) -> Self {
        self.fault = fault.filter(|f| !f.is_none());
        self
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("arm", &self.arm)
            .field("model", &self.model.card().source)
            .field("shadow", &self.shadow)
            .field("fault", &self.fault)
            .finish()
    }
}

/// Fault injection, as a service mesh does it (Istio's `fault.delay.fixedDelay` and
/// `fault.abort` with a percentage): every answer of the route takes `delay` longer (the
/// answering thread sleeps, and the latency the answer reports includes the sleep), and a
/// share `error_rate` of requests fail. Which requests fail is a hash of the request id, so a
/// replay with the same seed fails the same requests.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Fault {
    #[serde(serialize_with = "serialize_ms")]
    pub delay: Duration,
    /// Between 0 and 1.
    pub error_rate: f64,
}

fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

impl Fault {
    pub fn is_none(&self) -> bool {
        self.delay.is_zero() && self.error_rate <= 0.0
    }

    /// Whether the request `request_id` is one of the failing share.
    pub fn fails(&self, request_id: &str) -> bool {
        if self.error_rate <= 0.0 {
            return false;
        }
        // The top 53 bits of the hash as a uniform number in [0, 1).
        let u = (store::fnv1a_extend(store::fnv1a(b"fault"), request_id.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64;
        u < self.error_rate
    }

    /// Runs `answer` under the fault: the failing share is refused before the model runs; the
    /// others answer, then wait out the delay, which is added to the answer's latency.
    pub fn apply(
        fault: Option<&Fault>,
        request_id: &str,
        answer: impl FnOnce() -> Result<PredictOutput, String>,
    ) -> Result<PredictOutput, String> {
        let Some(fault) = fault else { return answer() };
        if fault.fails(request_id) {
            return Err(format!(
                "injected fault: {:.0}% of this arm's requests fail (a rehearsal, not a model error)",
                fault.error_rate * 100.0
            ));
        }
        let mut output = answer()?;
        if !fault.delay.is_zero() {
            std::thread::sleep(fault.delay);
            output.latency_ms += fault.delay.as_secs_f64() * 1e3;
        }
        Ok(output)
    }
}

/// What a router knows about a request when it picks models.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Counted from 0 over the whole replay.
    pub index: u64,
    pub request_id: &'a str,
    /// The example's id in the data set.
    pub example_id: &'a str,
}

/// Decides which models answer each request; each route answers in turn, on the replay thread.
/// An empty answer skips the request. Deployment strategies (A/B splits, shadow, canary steps)
/// implement this; a closure `FnMut(&RouteRequest) -> Vec<Route>` works too.
pub trait Router: Send {
    fn route(&mut self, request: &RouteRequest<'_>) -> Vec<Route>;
}

impl<F: FnMut(&RouteRequest<'_>) -> Vec<Route> + Send> Router for F {
    fn route(&mut self, request: &RouteRequest<'_>) -> Vec<Route> {
        self(request)
    }
}

/// Every request to one model.
pub struct SingleModel(pub Route);

impl Router for SingleModel {
    fn route(&mut self, _request: &RouteRequest<'_>) -> Vec<Route> {
        vec![self.0.clone()]
    }
}

/// Which models a replay sends traffic to.
pub struct Targets(Box<dyn Router>);

impl Targets {
    /// One model, no arm.
    pub fn single(model: Arc<LoadedModel>) -> Self {
        Self(Box::new(SingleModel(Route::new(model))))
    }

    pub fn router(router: impl Router + 'static) -> Self {
        Self(Box::new(router))
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Requests per second; `None` sends each request as soon as the previous one is answered.
    pub rate_per_s: Option<f64>,
    /// Start over at the end of the data set (until `max_requests` or a stop).
    pub looping: bool,
    /// Stop after this many requests.
    pub max_requests: Option<u64>,
    /// Visit the examples in a seeded random order (a new order each pass) instead of file order.
    pub shuffle: bool,
    pub drift: Option<DriftSchedule>,
    /// Labels arrive this long after their prediction is answered (zero: right after it).
    pub label_delay: Duration,
    /// Seeds the drift (noise, typos, ...) and the shuffle; the same seed replays the same inputs.
    pub seed: u64,
    /// Labels per answer (0 means 5, as in [`PredictRequest`]).
    pub top_k: usize,
    /// Candidate labels for zero-shot models (the data set's own labels are the natural choice).
    pub candidate_labels: Vec<String>,
    /// Decoded images are kept in memory up to this many bytes (the rest are decoded each time).
    pub image_cache_bytes: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            rate_per_s: None,
            looping: false,
            max_requests: None,
            shuffle: false,
            drift: None,
            label_delay: Duration::ZERO,
            seed: 0,
            top_k: 5,
            candidate_labels: Vec::new(),
            image_cache_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the replay rate must be a positive number of requests per second, not {0}")]
    Rate(f64),
    #[error("{0} holds no examples to replay")]
    Empty(String),
    #[error("cannot start the replay thread: {0}")]
    Spawn(String),
}

/// A model's answer to one replayed request, or why there is none.
#[derive(Clone)]
pub struct ReplayPrediction {
    /// The request's position in the replay, from 0, counting every loop.
    pub index: u64,
    /// Unique within the process and across runs (`replay-<run>-<index>`); every model answering
    /// the same request shares it.
    pub request_id: Arc<str>,
    /// The example's id and position in the data set.
    pub example_id: Arc<str>,
    pub example: usize,
    /// When the answer (or error) came, ms since the Unix epoch.
    pub at_ms: i64,
    pub arm: Option<Arc<str>>,
    pub model: Arc<LoadedModel>,
    pub outcome: Result<Arc<PredictOutput>, String>,
    /// The example's label; it reaches the sink later, as a [`ReplayLabel`].
    pub label: Option<Arc<str>>,
    /// The drift this request's input got.
    pub drift: AppliedDrift,
    /// The input as the model saw it (after drift), for feature extraction; `None` when the file
    /// could not be read.
    pub input: Option<ReplayInput>,
}

/// A replayed input after drift.
#[derive(Debug, Clone)]
pub enum ReplayInput {
    Image(Arc<RgbImage>),
    Text(Arc<str>),
}

impl fmt::Debug for ReplayPrediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayPrediction")
            .field("index", &self.index)
            .field("request_id", &self.request_id)
            .field("example_id", &self.example_id)
            .field("arm", &self.arm)
            .field("model", &self.model.card().source)
            .field("predicted", &self.predicted())
            .field("error", &self.outcome.as_ref().err())
            .field("label", &self.label)
            .field("drift", &self.drift)
            .finish_non_exhaustive()
    }
}

impl ReplayPrediction {
    /// The top-1 label, when the model answered with labels.
    pub fn predicted(&self) -> Option<&str> {
        self.outcome.as_ref().ok()?.top_label()
    }

    pub fn error(&self) -> Option<&str> {
        self.outcome.as_ref().err().map(String::as_str)
    }

    /// The monitor's series name: the arm in a rollout, else the model's source.
    pub fn series(&self) -> Arc<str> {
        self.arm.clone().unwrap_or_else(|| self.model.card().source.as_str().into())
    }

    /// The input and output features of the answer ([`crate::predict::InputResult::features`];
    /// empty for a failed request).
    pub fn features(&self) -> Features {
        self.outcome.as_ref().ok().and_then(|o| o.results.first()).map(|r| r.features.clone()).unwrap_or_default()
    }

    /// What [`super::Observation`] the monitor records; `features` as [`Self::features`] gives
    /// them (or others the caller computed).
    pub fn observation(&self, features: Features) -> Observation {
        let output = self.outcome.as_ref().ok();
        Observation {
            at_ms: self.at_ms,
            model: self.series(),
            request_id: self.request_id.clone(),
            latency_ms: output.map(|o| o.latency_ms),
            error: output.is_none(),
            predicted: self.predicted().map(Arc::from),
            features,
        }
    }

    /// Prediction-log rows (origin `replay`), without the label: that reaches the log when the
    /// [`ReplayLabel`] arrives, through `PredictionLog::set_label`. `features` go into the rows'
    /// features column.
    pub fn records(&self, features: Option<&Features>) -> Vec<PredictionRecord> {
        let arm = self.arm.as_deref();
        let mut rows = match &self.outcome {
            Ok(output) => store::records_from_output(output, Origin::Replay, arm, &self.request_id),
            Err(error) => {
                let card = self.model.card();
                let mut r = PredictionRecord::new(card.source.clone(), Origin::Replay, self.request_id.to_string());
                r.revision = card.revision.clone();
                r.arm = arm.map(str::to_string);
                r.input_ref = Some(self.example_id.to_string());
                r.error = Some(error.clone());
                vec![r]
            }
        };
        for r in &mut rows {
            r.at_ms = self.at_ms;
            if let Some(features) = features.filter(|f| !f.is_empty()) {
                let mut json = features.to_json();
                // Keep what records_from_output already put there (embedding norm and size).
                if let (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) =
                    (r.features.take(), &mut json)
                {
                    for (k, v) in old {
                        new.entry(k).or_insert(v);
                    }
                }
                r.features = Some(json);
            }
        }
        rows
    }
}

/// Ground truth for an answered replay prediction, delivered `label_delay` after it.
#[derive(Debug, Clone)]
pub struct ReplayLabel {
    pub request_id: Arc<str>,
    pub arm: Option<Arc<str>>,
    /// The monitor's series name (arm, else model source), as in [`ReplayPrediction::series`].
    pub series: Arc<str>,
    pub label: Arc<str>,
    pub predicted: Option<Arc<str>>,
    pub correct: bool,
    pub predicted_at_ms: i64,
    pub at_ms: i64,
}

impl ReplayLabel {
    pub fn feedback(&self) -> Feedback {
        Feedback {
            model: self.series.clone(),
            request_id: self.request_id.clone(),
            label: self.label.clone(),
            correct: self.correct,
            predicted_at_ms: self.predicted_at_ms,
            at_ms: self.at_ms,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayState {
    Running,
    Paused,
    /// Every request sent and every label delivered.
    Finished,
    Stopped,
    Failed,
}

impl ReplayState {
    /// "running", "paused", ...: as serialised, for status lines.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

/// Counters a progress bar or panel shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReplayProgress {
    pub state: ReplayState,
    /// Requests sent (each answered by one or more models).
    pub sent: u64,
    /// Model answers, failed ones included.
    pub answered: u64,
    pub errors: u64,
    pub labels_delivered: u64,
    /// Labels waiting for their delay; dropped if the replay is stopped.
    pub labels_pending: u64,
    /// Shadow copies handed to the shadow thread, and those dropped because its queue
    /// ([`SHADOW_QUEUE`]) was full.
    pub shadow_sent: u64,
    pub shadow_dropped: u64,
    /// Requests the replay will send in all, when bounded.
    pub total: Option<u64>,
    /// The asked rate, `None` for as fast as the model goes.
    pub target_rate_per_s: Option<f64>,
    /// Requests per second over the last two seconds.
    pub rate_per_s: f64,
    /// Requests per second from the start to the last request sent, pauses excluded (waiting for
    /// the last labels does not lower it).
    pub mean_rate_per_s: f64,
    /// Time spent running, pauses excluded.
    pub active_s: f64,
}

#[derive(Debug, Clone)]
pub enum ReplayEvent {
    Predicted(ReplayPrediction),
    Label(ReplayLabel),
    Progress(ReplayProgress),
    Finished(ReplayProgress),
    /// Stopped by [`ReplayHandle::stop`] (or by dropping the handle).
    Stopped(ReplayProgress),
    /// The replay thread hit a bug (a panic); the message says where.
    Failed {
        error: String,
        progress: ReplayProgress,
    },
}

pub type ReplaySink = Box<dyn FnMut(ReplayEvent) + Send>;

#[derive(Default)]
struct Control {
    paused: bool,
    stop: bool,
}

struct Shared {
    control: Mutex<Control>,
    changed: Condvar,
    progress: Mutex<ReplayProgress>,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_progress(&self, progress: &ReplayProgress) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = progress.clone();
    }
}

/// Controls a running replay. Dropping it stops the replay.
pub struct ReplayHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ReplayHandle {
    /// No new request is sent until [`Self::resume`]; the one running finishes, and labels
    /// keep arriving on time.
    pub fn pause(&self) {
        self.shared.control().paused = true;
        self.shared.changed.notify_all();
    }

    pub fn resume(&self) {
        self.shared.control().paused = false;
        self.shared.changed.notify_all();
    }

    /// Stops after the request running now (if any); pending labels are dropped.
    pub fn stop(&self) {
        self.shared.control().stop = true;
        self.shared.changed.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.shared.control().paused
    }

    /// Reads this replay's progress from elsewhere, without owning the handle.
    pub fn progress_reader(&self) -> ProgressReader {
        ProgressReader(self.shared.clone())
    }

    /// Something that can stop this replay from elsewhere (a sink that decides the run is
    /// over), without owning the handle.
    pub fn stopper(&self) -> ReplayStopper {
        ReplayStopper(self.shared.clone())
    }

    pub fn progress(&self) -> ReplayProgress {
        self.shared.progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The replay thread has ended (finished, stopped or failed) and sent its last event.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits up to `timeout` for the replay to end; true if it did.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(thread) = self.thread.take() {
            // The thread catches its own panics (reported as Failed), so join cannot fail here.
            let _ = thread.join();
        }
        true
    }
}

/// Reads a replay's progress, like [`ReplayHandle::progress`]; cheap to clone.
#[derive(Clone)]
pub struct ProgressReader(Arc<Shared>);

impl ProgressReader {
    pub fn progress(&self) -> ReplayProgress {
        self.0.progress.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The replay has ended: every prediction and label has gone to the sink.
    pub fn is_finished(&self) -> bool {
        matches!(self.progress().state, ReplayState::Finished | ReplayState::Stopped | ReplayState::Failed)
    }
}

/// Stops a replay, like [`ReplayHandle::stop`]; cheap to clone.
#[derive(Clone)]
pub struct ReplayStopper(Arc<Shared>);

impl ReplayStopper {
    pub fn stop(&self) {
        self.0.control().stop = true;
        self.0.changed.notify_all();
    }
}

impl Drop for ReplayHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Replay;

impl Replay {
    /// Starts replaying `dataset` to `targets` on a new thread; events go to `sink`.
    pub fn start(
        dataset: Arc<Dataset>,
        targets: Targets,
        options: ReplayOptions,
        sink: impl FnMut(ReplayEvent) + Send + 'static,
    ) -> Result<ReplayHandle, ReplayError> {
        if let Some(rate) = options.rate_per_s {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ReplayError::Rate(rate));
            }
        }
        if dataset.examples.is_empty() {
            return Err(ReplayError::Empty(dataset.source.display().to_string()));
        }
        let n = dataset.examples.len() as u64;
        let total = match (options.looping, options.max_requests) {
            (true, max) => max,
            (false, Some(max)) => Some(max.min(n)),
            (false, None) => Some(n),
        };
        let progress = ReplayProgress {
            state: ReplayState::Running,
            sent: 0,
            answered: 0,
            errors: 0,
            labels_delivered: 0,
            labels_pending: 0,
            shadow_sent: 0,
            shadow_dropped: 0,
            total,
            target_rate_per_s: options.rate_per_s,
            rate_per_s: 0.0,
            mean_rate_per_s: 0.0,
            active_s: 0.0,
        };
        let shared = Arc::new(Shared {
            control: Mutex::default(),
            changed: Condvar::new(),
            progress: Mutex::new(progress.clone()),
        });
        let runner = Runner {
            shared: shared.clone(),
            sink: Box::new(sink),
            router: targets.0,
            run_id: run_id(),
            cache: ImageCache { images: HashMap::new(), bytes: 0, max_bytes: options.image_cache_bytes },
            order: Vec::new(),
            pending_labels: VecDeque::new(),
            recent: VecDeque::new(),
            last_progress: Instant::now(),
            progress,
            draining: false,
            shadow: None,
            dataset,
            options,
        };
        let thread = std::thread::Builder::new()
            .name("modeldeck-replay".into())
            .spawn(move || runner.run())
            .map_err(|e| ReplayError::Spawn(e.to_string()))?;
        Ok(ReplayHandle { shared, thread: Some(thread) })
    }
}

/// `<ms since epoch, hex>-<per-process counter>`: distinct across runs and within a process.
fn run_id() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    format!("{:x}-{}", store::now_ms(), RUNS.fetch_add(1, Ordering::Relaxed))
}

/// The seed of request `index`'s drift; the same mixing as `eval::load_image`, so a replay at a
/// constant drift sees the same inputs as an evaluation with that drift.
fn request_seed(seed: u64, index: u64) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(index)
}

/// Decoded images by example position, up to a byte bound (first come, first kept). Decoding
/// errors are kept too, so a corrupt file is read once.
struct ImageCache {
    images: HashMap<usize, Result<Arc<RgbImage>, String>>,
    bytes: usize,
    max_bytes: usize,
}

impl ImageCache {
    fn get(&mut self, example: usize, path: &std::path::Path) -> Result<Arc<RgbImage>, String> {
        if let Some(cached) = self.images.get(&example) {
            return cached.clone();
        }
        let decoded = model::decode_image_file(path).map(Arc::new).map_err(|e| e.to_string());
        let size = decoded.as_ref().map_or(64, |i| i.as_raw().len());
        if self.bytes + size <= self.max_bytes {
            self.bytes += size;
            self.images.insert(example, decoded.clone());
        }
        decoded
    }
}

struct PendingLabel {
    due: Instant,
    label: ReplayLabel,
}

struct Runner {
    shared: Arc<Shared>,
    sink: ReplaySink,
    router: Box<dyn Router>,
    dataset: Arc<Dataset>,
    options: ReplayOptions,
    run_id: String,
    cache: ImageCache,
    /// The current pass's order of example positions.
    order: Vec<usize>,
    pending_labels: VecDeque<PendingLabel>,
    /// When recent requests were answered, for the current rate.
    recent: VecDeque<Instant>,
    last_progress: Instant,
    progress: ReplayProgress,
    /// Every request is sent; only labels are left.
    draining: bool,
    /// Started at the first shadow route.
    shadow: Option<ShadowWorker>,
}

/// A shadow copy of a request, waiting for the shadow thread.
struct ShadowJob {
    route: Route,
    request: Result<PredictRequest, String>,
    /// The prediction to fill in (its outcome is replaced by the shadow's answer).
    template: ReplayPrediction,
}

/// The shadow thread: takes copies from a bounded queue, answers them, and hands the answers
/// back to the replay thread, which sends them to the sink between requests (the sink is only
/// ever called on the replay thread).
struct ShadowWorker {
    jobs: Option<std::sync::mpsc::SyncSender<ShadowJob>>,
    answers: std::sync::mpsc::Receiver<ReplayPrediction>,
    thread: Option<JoinHandle<()>>,
}

impl ShadowWorker {
    fn start() -> Result<Self, String> {
        let (jobs, job_rx) = std::sync::mpsc::sync_channel::<ShadowJob>(SHADOW_QUEUE);
        let (answer_tx, answers) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("modeldeck-shadow".into())
            .spawn(move || {
                while let Ok(job) = job_rx.recv() {
                    let ShadowJob { route, request, mut template } = job;
                    template.outcome = answer(&route, &request, &template.request_id);
                    template.at_ms = store::now_ms();
                    if answer_tx.send(template).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { jobs: Some(jobs), answers, thread: Some(thread) })
    }
}

impl Drop for ShadowWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its current answer; it is not joined, so a
        // stop never waits for a slow shadow.
        self.jobs = None;
        self.thread = None;
    }
}

/// One route's answer to a request: the model through the single prediction path, under the
/// route's fault.
fn answer(
    route: &Route,
    request: &Result<PredictRequest, String>,
    request_id: &str,
) -> Result<Arc<PredictOutput>, String> {
    match request {
        Ok(request) => Fault::apply(route.fault.as_ref(), request_id, || {
            predict::predict(&route.model, request).map_err(|e| e.to_string())
        })
        .map(Arc::new),
        Err(error) => Err(error.clone()),
    }
}

enum Wait {
    Go,
    /// A pause ended and moved the schedule.
    Rescheduled,
    Stop,
}

impl Runner {
    fn run(mut self) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.replay()));
        if let Err(panic) = result {
            let error = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the replay thread panicked".into());
            tracing::error!("replay failed: {error}");
            self.progress.state = ReplayState::Failed;
            self.shared.set_progress(&self.progress);
            let event = ReplayEvent::Failed { error, progress: self.progress.clone() };
            // The panic may have come from the sink itself; a second one must not escape.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.sink)(event)));
        }
    }

    fn replay(&mut self) {
        let started = Instant::now();
        // Request k is due at `anchor + k / rate`; pauses move the anchor forward.
        let mut anchor = started;
        let mut paused_total = Duration::ZERO;
        let mut index: u64 = 0;
        loop {
            if self.progress.total.is_some_and(|t| index >= t) {
                break;
            }
            // Capped at ~30 years so that a tiny rate cannot overflow the Duration.
            let due = self.options.rate_per_s.map(|r| anchor + Duration::from_secs_f64((index as f64 / r).min(1e9)));
            match self.wait_until(due, &mut anchor, &mut paused_total, started) {
                Wait::Go => {}
                Wait::Rescheduled => continue,
                Wait::Stop => return self.finish(ReplayState::Stopped, started, paused_total),
            }
            self.request(index);
            index += 1;
            self.deliver_labels();
            self.update_progress(started, paused_total, false);
        }
        // Every request sent: wait for the shadow's last answers and the last labels, still
        // honouring stop.
        self.draining = true;
        if self.drain_shadow() {
            return self.finish(ReplayState::Stopped, started, paused_total);
        }
        while let Some(due) = self.pending_labels.front().map(|p| p.due) {
            if let Wait::Stop = self.wait_until(Some(due), &mut anchor, &mut paused_total, started) {
                return self.finish(ReplayState::Stopped, started, paused_total);
            }
            self.deliver_labels();
            self.update_progress(started, paused_total, false);
        }
        self.finish(ReplayState::Finished, started, paused_total)
    }

    /// Waits until `due` (now when `None`) while delivering labels and honouring pause and stop.
    fn wait_until(
        &mut self,
        due: Option<Instant>,
        anchor: &mut Instant,
        paused_total: &mut Duration,
        started: Instant,
    ) -> Wait {
        let shared = self.shared.clone();
        let mut paused_since: Option<Instant> = None;
        loop {
            self.deliver_labels();
            if let Some(since) = paused_since {
                // Keeps the current rate and active time true while paused.
                self.update_progress(started, *paused_total + since.elapsed(), false);
            }
            // Checked and waited on under one lock, so a pause, resume or stop is never missed.
            let control = shared.control();
            if control.stop {
                return Wait::Stop;
            }
            let now = Instant::now();
            match (control.paused, paused_since) {
                (true, None) => {
                    drop(control);
                    paused_since = Some(now);
                    self.progress.state = ReplayState::Paused;
                    self.update_progress(started, *paused_total, true);
                    continue;
                }
                (false, Some(since)) => {
                    drop(control);
                    let paused_for = now - since;
                    *anchor += paused_for;
                    *paused_total += paused_for;
                    self.progress.state = ReplayState::Running;
                    self.update_progress(started, *paused_total, true);
                    // The schedule moved: the caller recomputes `due` from the new anchor.
                    return Wait::Rescheduled;
                }
                _ => {}
            }
            let next_label = self.pending_labels.front().map(|p| p.due);
            let wake = if control.paused {
                next_label.unwrap_or(now + PROGRESS_EVERY)
            } else {
                match due {
                    Some(d) if d > now => next_label.map_or(d, |l| l.min(d)),
                    _ => return Wait::Go,
                }
            };
            let timeout = wake.saturating_duration_since(now).min(PROGRESS_EVERY);
            // Woken early by pause, resume or stop; spurious wake-ups just loop.
            let _ = shared.changed.wait_timeout(control, timeout);
        }
    }

    fn request(&mut self, index: u64) {
        let n = self.dataset.examples.len();
        let pass = index / n as u64;
        let position = (index % n as u64) as usize;
        if position == 0 || self.order.len() != n {
            self.order = (0..n).collect();
            if self.options.shuffle {
                let mut rng = rand::rngs::StdRng::seed_from_u64(request_seed(self.options.seed, pass) ^ 0x5EED);
                self.order.shuffle(&mut rng);
            }
        }
        let example_index = self.order[position];
        let dataset = self.dataset.clone();
        let example = &dataset.examples[example_index];
        let request_id: Arc<str> = format!("replay-{}-{index}", self.run_id).into();
        let example_id: Arc<str> = example.id.as_str().into();
        let routes = self.router.route(&RouteRequest { index, request_id: &request_id, example_id: &example_id });
        self.progress.sent += 1;
        if routes.is_empty() {
            return;
        }
        let drift = self.options.drift.as_ref().map(|d| d.at(index)).unwrap_or_default();
        let seed = request_seed(self.options.seed, index);
        let input = match &example.input {
            ExampleInput::Image(path) => self.cache.get(example_index, path).map(|image| {
                let image = if drift.image.is_identity() { image } else { Arc::new(drift.image.apply(&image, seed)) };
                let name = path.display().to_string();
                (ReplayInput::Image(image.clone()), Inputs::Images(vec![NamedImage { name, image }]))
            }),
            ExampleInput::Text(text) => {
                let text = drift.text.apply(text, seed);
                Ok((ReplayInput::Text(text.as_str().into()), Inputs::Texts(vec![text])))
            }
            ExampleInput::Invalid(reason) => Err(reason.clone()),
        };
        let label: Option<Arc<str>> = example.label.as_deref().map(Arc::from);
        let (replay_input, request) = match input {
            Ok((replay_input, inputs)) => {
                let request = PredictRequest {
                    inputs,
                    labels: self.options.candidate_labels.clone(),
                    template: None,
                    multi_label: false,
                    top_k: self.options.top_k,
                };
                (Some(replay_input), Ok(request))
            }
            Err(error) => (None, Err(error)),
        };
        for route in routes {
            let template = ReplayPrediction {
                index,
                request_id: request_id.clone(),
                example_id: example_id.clone(),
                example: example_index,
                at_ms: 0,
                arm: route.arm.clone(),
                model: route.model.clone(),
                outcome: Err(String::new()),
                label: label.clone(),
                drift,
                input: replay_input.clone(),
            };
            if route.shadow {
                self.send_shadow(ShadowJob { route, request: request.clone(), template });
                continue;
            }
            let mut prediction = template;
            prediction.outcome = answer(&route, &request, &request_id);
            prediction.at_ms = store::now_ms();
            self.answered(prediction);
        }
    }

    fn send_shadow(&mut self, job: ShadowJob) {
        if self.shadow.is_none() {
            match ShadowWorker::start() {
                Ok(worker) => self.shadow = Some(worker),
                Err(error) => {
                    // Without a shadow thread the copy fails; the live answer is unaffected.
                    let mut prediction = job.template;
                    prediction.outcome = Err(format!("cannot start the shadow thread: {error}"));
                    prediction.at_ms = store::now_ms();
                    return self.answered(prediction);
                }
            }
        }
        let Some(jobs) = self.shadow.as_ref().and_then(|w| w.jobs.as_ref()) else { return };
        match jobs.try_send(job) {
            Ok(()) => self.progress.shadow_sent += 1,
            Err(_) => self.progress.shadow_dropped += 1,
        }
    }

    /// Sends the shadow answers that have come back.
    fn collect_shadow(&mut self) {
        let Some(worker) = &self.shadow else { return };
        let answers: Vec<ReplayPrediction> = worker.answers.try_iter().collect();
        for prediction in answers {
            self.answered(prediction);
        }
    }

    /// Waits for the shadow thread to answer every copy it was given (the replay has sent its
    /// last request); a stop ends the wait. True if it was stopped.
    fn drain_shadow(&mut self) -> bool {
        let Some(worker) = &mut self.shadow else { return false };
        worker.jobs = None;
        loop {
            if self.shared.control().stop {
                return true;
            }
            let Some(worker) = &self.shadow else { return false };
            match worker.answers.recv_timeout(PROGRESS_EVERY / 4) {
                Ok(prediction) => self.answered(prediction),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return false,
            }
            self.deliver_labels();
        }
    }

    /// Counts an answer, sends it to the sink and schedules its label.
    fn answered(&mut self, prediction: ReplayPrediction) {
        let answered = Instant::now();
        self.progress.answered += 1;
        self.recent.push_back(answered);
        let label = match (&prediction.outcome, &prediction.label) {
            (Err(_), _) => {
                self.progress.errors += 1;
                None
            }
            (Ok(_), None) => None,
            (Ok(_), Some(label)) => {
                let predicted: Option<Arc<str>> = prediction.predicted().map(Arc::from);
                Some(ReplayLabel {
                    request_id: prediction.request_id.clone(),
                    arm: prediction.arm.clone(),
                    series: prediction.series(),
                    label: label.clone(),
                    correct: predicted.as_deref() == Some(label.as_ref()),
                    predicted,
                    predicted_at_ms: prediction.at_ms,
                    at_ms: 0,
                })
            }
        };
        (self.sink)(ReplayEvent::Predicted(prediction));
        // Timed from after the sink saw the prediction, so no listener sees a label early.
        if let Some(label) = label {
            self.pending_labels.push_back(PendingLabel { due: Instant::now() + self.options.label_delay, label });
        }
    }

    /// Sends every label whose delay has passed (the queue is in due order: one thread answers
    /// in order and the delay is constant).
    fn deliver_labels(&mut self) {
        self.collect_shadow();
        let now = Instant::now();
        while self.pending_labels.front().is_some_and(|p| p.due <= now) {
            let Some(pending) = self.pending_labels.pop_front() else { break };
            let mut label = pending.label;
            label.at_ms = store::now_ms();
            self.progress.labels_delivered += 1;
            (self.sink)(ReplayEvent::Label(label));
        }
    }

    fn update_progress(&mut self, started: Instant, paused_total: Duration, force: bool) {
        let now = Instant::now();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
            self.recent.pop_front();
        }
        let active = now.duration_since(started).saturating_sub(paused_total).as_secs_f64();
        let window = RATE_WINDOW.as_secs_f64().min(active);
        let p = &mut self.progress;
        p.labels_pending = self.pending_labels.len() as u64;
        p.active_s = active;
        p.rate_per_s = if window > 0.0 { self.recent.len() as f64 / window } else { 0.0 };
        if !self.draining && active > 0.0 {
            p.mean_rate_per_s = p.sent as f64 / active;
        }
        self.shared.set_progress(&self.progress);
        if force || now.duration_since(self.last_progress) >= PROGRESS_EVERY {
            self.last_progress = now;
            (self.sink)(ReplayEvent::Progress(self.progress.clone()));
        }
    }

    fn finish(&mut self, state: ReplayState, started: Instant, paused_total: Duration) {
        self.progress.state = state;
        // Refresh the counters without a Progress event: the final event carries them.
        self.last_progress = Instant::now();
        self.update_progress(started, paused_total, false);
        let progress = self.progress.clone();
        (self.sink)(match state {
            ReplayState::Stopped => ReplayEvent::Stopped(progress),
            _ => ReplayEvent::Finished(progress),
        });
    }
}
