//! `modeldeck serve`: any model ModelDeck loads, behind the Open Inference Protocol v2 REST API,
//! so that any OIP client (tritonclient, KServe's, MLServer's, another ModelDeck) can call it.
//!
//! - `GET /v2/health/live|ready`, `GET /v2`, `GET /v2/models/{m}[/versions/{v}][/ready]`,
//!   `POST /v2/models/{m}[/versions/{v}]/infer`, `GET /metrics` (Prometheus).
//! - Inputs: BYTES `text` (text models); BYTES `image` of encoded files (base64 strings in JSON,
//!   raw bytes with the binary extension) or an FP32/FP64 tensor of preprocessed pixels
//!   `[N, C, H, W]` or `[N, C·H·W]` (image models); zero-shot models add BYTES `candidate_labels`
//!   and an optional `template` request parameter.
//! - Outputs: `probabilities` and `logits` FP32 `[N, labels]` (the labels are in the metadata's
//!   `parameters.labels`) and `label` BYTES `[N]`; `embedding` FP32 `[N, D]` for embedding models.
//!   JSON, or binary when the client asks (`binary_data` per output, `binary_data_output`).
//! - Requests are batched: the batcher thread takes what arrived within `window` (up to
//!   `max_batch` inputs) and runs the model once; a bounded queue answers 503 when full.
//! - Every request is logged to the prediction log (origin `serve`) and counted in `/metrics`.
//!   Answers carry `Server-Timing: queue, infer, total` so clients can split network from server
//!   time.

mod wire;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use candle_core::Tensor;
use serde_json::{json, Value};

use crate::model::{Batch, LoadedModel, Task};
use crate::monitor::prometheus::PromMetrics;
use crate::predict::{self, NamedImage, PredictOutput, PredictRequest};
use crate::store::{self, Origin, PredictionLog};
use wire::{ParsedRequest, Work};

/// How to serve.
#[derive(Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// The model's name in URLs (`/v2/models/{name}`).
    pub name: String,
    pub version: String,
    /// Most inputs run in one model call.
    pub max_batch: usize,
    /// How long the batcher waits for more requests after the first one.
    pub window: Duration,
    /// Requests waiting for the model at most; more are answered 503.
    pub queue: usize,
    pub log: Option<PredictionLog>,
    /// Allow listening on a non-loopback address.
    pub allow_remote: bool,
}

impl ServeOptions {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            name: name.into(),
            version: "1".into(),
            max_batch: 32,
            window: Duration::from_millis(2),
            queue: 256,
            log: None,
            allow_remote: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0} is not a loopback address: pass --allow-remote to serve beyond this machine")]
    NotLoopback(SocketAddr),
    #[error("{0} is already in use: stop the other server or choose another --addr")]
    PortInUse(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the server: {0}")]
    Start(std::io::Error),
    #[error("the model name `{0}` cannot be used in a URL (letters, digits, `-`, `_`, `.`)")]
    BadName(String),
}

/// One request waiting for the model.
struct Job {
    id: String,
    work: Work,
    arrived: Instant,
    reply: tokio::sync::oneshot::Sender<JobResult>,
}

struct JobResult {
    outcome: Result<PredictOutput, (StatusCode, String)>,
    queue_ms: f64,
    infer_ms: f64,
}

struct Shared {
    model: Arc<LoadedModel>,
    name: String,
    version: String,
    metadata: Value,
    /// `[C, H, W]` of the preprocessed pixels (image models).
    pixel_shape: Option<Vec<usize>>,
    jobs: SyncSender<Job>,
    queue: usize,
    metrics: Arc<PromMetrics>,
    model_label: Arc<str>,
    next_id: AtomicU64,
    /// Where rejected requests are logged too (answered ones are logged by the batcher).
    log: Option<PredictionLog>,
    /// Requests read but not yet queued: the batcher waits for them (up to the window) only
    /// while there are some, so a lone client never pays the window.
    arriving: Arc<AtomicUsize>,
}

/// What the batcher has done so far.
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Requests answered (with an answer or an error) by the model worker.
    pub requests: AtomicU64,
    /// Model calls made for them: fewer than `requests` when batching merged some.
    pub model_calls: AtomicU64,
    pub inputs: AtomicU64,
}

impl ServeStats {
    /// `(requests, model calls, inputs)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.model_calls.load(Ordering::Relaxed),
            self.inputs.load(Ordering::Relaxed),
        )
    }
}

/// A running server; dropping it (or [`Server::stop`]) shuts it down gracefully: requests in
/// flight are answered, queued ones run, the log is flushed.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    batcher: Option<JoinHandle<()>>,
    log: Option<PredictionLog>,
    metrics: Arc<PromMetrics>,
    stats: Arc<ServeStats>,
}

impl Server {
    /// Binds now (a busy port is reported here) and serves on background threads.
    pub fn start(model: Arc<LoadedModel>, options: ServeOptions) -> Result<Self, ServeError> {
        Self::start_inner(model, options, false)
    }

    /// Serves until Ctrl+C (or SIGTERM), then shuts down gracefully. `on_bound` hears the
    /// address once it is listened on.
    pub fn run_until_signal(
        model: Arc<LoadedModel>,
        options: ServeOptions,
        on_bound: impl FnOnce(SocketAddr),
    ) -> Result<(), ServeError> {
        let mut server = Self::start_inner(model, options, true)?;
        on_bound(server.addr);
        if let Some(thread) = server.thread.take() {
            let _ = thread.join();
        }
        server.finish();
        let (requests, calls, inputs) = server.stats.snapshot();
        if requests > 0 {
            eprintln!(
                "answered {requests} requests ({inputs} inputs) in {calls} model calls: {:.2} inputs a call",
                inputs as f64 / calls.max(1) as f64
            );
        }
        Ok(())
    }

    fn start_inner(model: Arc<LoadedModel>, options: ServeOptions, on_signal: bool) -> Result<Self, ServeError> {
        let addr = options.addr;
        if !options.allow_remote && !addr.ip().is_loopback() {
            return Err(ServeError::NotLoopback(addr));
        }
        let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok(&options.name) {
            return Err(ServeError::BadName(options.name));
        }
        if !name_ok(&options.version) {
            return Err(ServeError::BadName(options.version));
        }
        let listener = std::net::TcpListener::bind(addr).map_err(|source| match source.kind() {
            std::io::ErrorKind::AddrInUse => ServeError::PortInUse(addr),
            _ => ServeError::Bind { addr, source },
        })?;
        let bound = listener.local_addr().map_err(|source| ServeError::Bind { addr, source })?;
        listener.set_nonblocking(true).map_err(|source| ServeError::Bind { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServeError::Start)?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServeError::Bind { addr, source })?
        };

        let pixel_shape = pixel_shape(&model);
        let embedding_dims = embedding_dims(&model);
        let metadata =
            wire::model_metadata(&model, &options.name, &options.version, pixel_shape.as_deref(), embedding_dims);
        let metrics = Arc::new(PromMetrics::new());
        let model_label: Arc<str> = Arc::from(options.name.as_str());
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(options.queue.max(1));
        let arriving = Arc::new(AtomicUsize::new(0));
        let stats = Arc::new(ServeStats::default());
        let batcher = {
            let arriving = arriving.clone();
            let stats = stats.clone();
            let model = model.clone();
            let metrics = metrics.clone();
            let log = options.log.clone();
            let label = model_label.clone();
            let (max_batch, window) = (options.max_batch.max(1), options.window);
            std::thread::Builder::new()
                .name("serve-batcher".into())
                .spawn(move || {
                    let batching = Batching { max_batch, window, arriving, stats };
                    batch_loop(&model, &queue, &batching, log.as_ref(), &metrics, &label)
                })
                .map_err(ServeError::Start)?
        };
        let shared = Arc::new(Shared {
            model,
            name: options.name.clone(),
            version: options.version.clone(),
            metadata,
            pixel_shape,
            jobs,
            queue: options.queue.max(1),
            metrics: metrics.clone(),
            model_label,
            next_id: AtomicU64::new(1),
            log: options.log.clone(),
            arriving,
        });
        let app = router(shared);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("serve-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let signal = async move {
                        if on_signal {
                            tokio::select! {
                                _ = stop => {}
                                _ = tokio::signal::ctrl_c() => eprintln!("\nshutting down: answering requests in flight"),
                                _ = terminate() => eprintln!("terminated: answering requests in flight"),
                            }
                        } else {
                            let _ = stop.await;
                        }
                    };
                    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
                        tracing::error!("the OIP server on {bound} stopped: {e}");
                    }
                });
            })
            .map_err(ServeError::Start)?;
        Ok(Self {
            addr: bound,
            shutdown: Some(shutdown),
            thread: Some(thread),
            batcher: Some(batcher),
            log: options.log,
            metrics,
            stats,
        })
    }

    /// The address actually listened on (the chosen port when started with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &PromMetrics {
        &self.metrics
    }

    pub fn stats(&self) -> &ServeStats {
        &self.stats
    }

    /// Stops accepting, answers what is in flight, runs what is queued and flushes the log.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The HTTP side held the only job sender: the batcher drains the queue and ends.
        if let Some(batcher) = self.batcher.take() {
            let _ = batcher.join();
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.flush() {
                tracing::error!("flushing the prediction log: {e}");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending::<()>().await
}

/// The preprocessed pixel shape of an image model, from one probe image.
fn pixel_shape(model: &LoadedModel) -> Option<Vec<usize>> {
    if model.task() != Task::ImageClassification || model.is_remote() {
        return None;
    }
    let probe = image::RgbImage::new(64, 64);
    let batch = model.prepare(&crate::model::Request::Images(std::slice::from_ref(&probe))).ok()?;
    Some(batch.pixel_values?.dims()[1..].to_vec())
}

/// An embedding model's output length, from one probe text.
fn embedding_dims(model: &LoadedModel) -> Option<usize> {
    if model.task() != Task::TextEmbedding {
        return None;
    }
    let texts = ["probe".to_string()];
    match model.run(&crate::model::Request::Texts { texts: &texts, max_tokens: None }).ok()? {
        crate::model::Response::Embeddings(v) => v.first().map(Vec::len),
        crate::model::Response::Scores(_) => None,
    }
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .route("/v2", get(server_metadata))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{model}/infer", post(infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer_v))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not an Open Inference Protocol path (see GET /v2)") })
        .layer(axum::extract::DefaultBodyLimit::max(wire::MAX_BODY))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error": message.into()}).to_string();
    (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_response(value: &Value) -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn server_metadata() -> Response {
    json_response(&json!({
        "name": "modeldeck",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

impl Shared {
    /// A request refused before it reached the model: counted as an error and logged.
    fn reject(&self, id: Option<&str>, message: &str) {
        self.metrics.observe_prediction(&self.model_label, Origin::Serve, None, true);
        let id = id.map(str::to_string).unwrap_or_else(|| self.new_id());
        self.log_rejection(&id, message);
    }

    fn log_rejection(&self, id: &str, message: &str) {
        if let Some(log) = &self.log {
            let mut record = store::PredictionRecord::new(self.model.card().source.clone(), Origin::Serve, id);
            record.error = Some(message.to_string());
            log.record(record);
        }
    }

    fn new_id(&self) -> String {
        format!("serve-{}-{}", std::process::id(), self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// `None` when the path names this model (and version, if given).
    fn wrong_model(&self, model: &str, version: Option<&str>) -> Option<Response> {
        if model != self.name {
            return Some(error(
                StatusCode::NOT_FOUND,
                format!("model `{model}` is not served here (this server serves `{}`)", self.name),
            ));
        }
        match version {
            Some(v) if v != self.version => Some(error(
                StatusCode::NOT_FOUND,
                format!("model `{model}` has no version `{v}` here (it serves version `{}`)", self.version),
            )),
            _ => None,
        }
    }
}

async fn model_metadata(State(s): State<Arc<Shared>>, Path(model): Path<String>) -> Response {
    s.wrong_model(&model, None).unwrap_or_else(|| json_response(&s.metadata))
}

async fn model_metadata_v(State(s): State<Arc<Shared>>, Path((model, version)): Path<(String, String)>) -> Response {
    s.wrong_model(&model, Some(&version)).unwrap_or_else(|| json_response(&s.metadata))
}

async fn model_ready(State(s): State<Arc<Shared>>, Path(model): Path<String>) -> Response {
    s.wrong_model(&model, None).unwrap_or_else(|| StatusCode::OK.into_response())
}

async fn model_ready_v(State(s): State<Arc<Shared>>, Path((model, version)): Path<(String, String)>) -> Response {
    s.wrong_model(&model, Some(&version)).unwrap_or_else(|| StatusCode::OK.into_response())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    match s.metrics.encode() {
        Ok(text) => {
            ([(axum::http::header::CONTENT_TYPE, crate::monitor::prometheus::CONTENT_TYPE)], text).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}")),
    }
}

async fn infer(State(s): State<Arc<Shared>>, Path(model): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    match s.wrong_model(&model, None) {
        Some(r) => r,
        None => run_infer(s, headers, body).await,
    }
}

async fn infer_v(
    State(s): State<Arc<Shared>>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match s.wrong_model(&model, Some(&version)) {
        Some(r) => r,
        None => run_infer(s, headers, body).await,
    }
}

async fn run_infer(s: Arc<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let arriving = Arriving::new(&s.arriving);
    let started = s.clone();
    // Parsing decodes images: off the async thread.
    let parsed = tokio::task::spawn_blocking(move || {
        wire::parse_request(&headers, &body, started.model.task(), started.pixel_shape.as_deref())
    })
    .await;
    let mut request: ParsedRequest = match parsed {
        Ok(Ok(r)) => r,
        Ok(Err(message)) => {
            s.reject(None, &message);
            return error(StatusCode::BAD_REQUEST, message);
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the request could not be read: {e}")),
    };
    let id = request.id.clone().unwrap_or_else(|| s.new_id());
    let (reply, answer) = tokio::sync::oneshot::channel();
    let work = std::mem::replace(&mut request.work, Work::Texts(Vec::new()));
    let job = Job { id: id.clone(), work, arrived, reply };
    let sent = s.jobs.try_send(job);
    drop(arriving);
    match sent {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            s.metrics.record_drop(&s.model_label);
            let message = format!("the server is busy: {} requests are already waiting; retry later", s.queue);
            s.log_rejection(&id, &message);
            return error(StatusCode::SERVICE_UNAVAILABLE, message);
        }
        Err(TrySendError::Disconnected(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down")
        }
    }
    let Ok(result) = answer.await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the model worker stopped before answering");
    };
    let output = match result.outcome {
        Ok(output) => output,
        Err((status, message)) => return error(status, message),
    };
    let total_ms = arrived.elapsed().as_secs_f64() * 1e3;
    let timing = format!("queue;dur={:.3}, infer;dur={:.3}, total;dur={total_ms:.3}", result.queue_ms, result.infer_ms);
    let mut response = wire::response(&s.name, &s.version, &id, &request, &output);
    if let Ok(value) = timing.parse() {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// Counts a request as arriving until dropped.
struct Arriving<'a>(&'a AtomicUsize);

impl<'a> Arriving<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Arriving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Batching {
    max_batch: usize,
    window: Duration,
    arriving: Arc<AtomicUsize>,
    stats: Arc<ServeStats>,
}

/// The batcher: takes the first waiting job and gathers compatible ones (up to `max_batch`
/// inputs): those already queued, and those still being read, for at most `window`. With
/// nothing else arriving it runs at once. The group runs as one model call; each job gets
/// its own answer.
fn batch_loop(
    model: &LoadedModel,
    queue: &Receiver<Job>,
    batching: &Batching,
    log: Option<&PredictionLog>,
    metrics: &PromMetrics,
    label: &Arc<str>,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return, // the server stopped and the queue is drained
            },
        };
        let deadline = Instant::now() + batching.window;
        let mut size = first.work.len();
        let mut group = vec![first];
        while size < batching.max_batch {
            let next = match queue.try_recv() {
                Ok(job) => Ok(job),
                Err(_) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || batching.arriving.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    // Short waits, so a request that fails to parse does not hold the group.
                    queue.recv_timeout(left.min(Duration::from_micros(200)))
                }
            };
            match next {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(job) if group[0].work.joins(&job.work) && size + job.work.len() <= batching.max_batch => {
                    size += job.work.len();
                    group.push(job);
                }
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        batching.stats.requests.fetch_add(group.len() as u64, Ordering::Relaxed);
        batching.stats.model_calls.fetch_add(1, Ordering::Relaxed);
        batching.stats.inputs.fetch_add(size as u64, Ordering::Relaxed);
        let sink = Sink { log, metrics, label, source: &model.card().source };
        run_group(model, group, &sink);
    }
}

/// Where answered and failed requests are recorded.
struct Sink<'a> {
    log: Option<&'a PredictionLog>,
    metrics: &'a PromMetrics,
    /// The served name, for the metrics.
    label: &'a Arc<str>,
    /// The model's source, for the log (as every other origin records it).
    source: &'a str,
}

fn run_group(model: &LoadedModel, group: Vec<Job>, sink: &Sink) {
    let started = Instant::now();
    let works: Vec<&Work> = group.iter().map(|j| &j.work).collect();
    let outcome = Work::merge(&works)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))
        .and_then(|merged| run_work(model, &merged));
    let infer_ms = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Ok(output) => {
            let mut results = output.results.into_iter();
            for job in group {
                let n = job.work.len();
                let mine: Vec<_> = results.by_ref().take(n).collect();
                let similarity = match mine.as_slice() {
                    [a, b, ..] => {
                        a.embedding.as_deref().zip(b.embedding.as_deref()).map(|(a, b)| predict::cosine(a, b))
                    }
                    _ => None,
                };
                let total_ms = job.arrived.elapsed().as_secs_f64() * 1e3;
                let answer = PredictOutput {
                    model: output.model.clone(),
                    task: output.task,
                    results: mine,
                    similarity,
                    latency_ms: total_ms,
                    server_ms: None,
                };
                finish(job, Ok(answer), started, infer_ms, sink);
            }
        }
        // One bad request must not fail the others it was batched with: run each alone.
        Err(_) if group.len() > 1 => {
            for job in group {
                run_group(model, vec![job], sink);
            }
        }
        Err(e) => {
            for job in group {
                finish(job, Err(e.clone()), started, infer_ms, sink);
            }
        }
    }
}

fn finish(
    job: Job,
    outcome: Result<PredictOutput, (StatusCode, String)>,
    started: Instant,
    infer_ms: f64,
    sink: &Sink,
) {
    let Sink { log, metrics, label, source } = *sink;
    let queue_ms = started.saturating_duration_since(job.arrived).as_secs_f64() * 1e3;
    match &outcome {
        Ok(output) => {
            let per_input = output.latency_ms / output.results.len().max(1) as f64;
            for _ in &output.results {
                metrics.observe_prediction(label, Origin::Serve, Some(per_input), false);
            }
            if let Some(log) = log {
                for record in store::records_from_output(output, Origin::Serve, None, &job.id) {
                    log.record(record);
                }
            }
        }
        Err((_, message)) => {
            metrics.observe_prediction(label, Origin::Serve, None, true);
            if let Some(log) = log {
                let mut record = store::PredictionRecord::new(source.to_string(), Origin::Serve, job.id.clone());
                record.error = Some(message.clone());
                log.record(record);
            }
        }
    }
    // The client may have gone away; its answer is then dropped.
    let _ = job.reply.send(JobResult { outcome, queue_ms, infer_ms });
}

/// Runs merged work through the model; a panic in a kernel becomes a 500, not a dead server.
fn run_work(model: &LoadedModel, work: &Work) -> Result<PredictOutput, (StatusCode, String)> {
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| run_work_inner(model, work)));
    match caught {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err((StatusCode::INTERNAL_SERVER_ERROR, format!("the model failed on this input: {what}")))
        }
    }
}

fn run_work_inner(model: &LoadedModel, work: &Work) -> Result<PredictOutput, (StatusCode, String)> {
    let status = |e: crate::Error| {
        let code = match &e {
            crate::Error::Usage(_)
            | crate::Error::Model(
                crate::model::ModelError::Input(_)
                | crate::model::ModelError::WrongInput { .. }
                | crate::model::ModelError::Image(_),
            ) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (code, e.to_string())
    };
    let all = model.labels().len().max(1);
    match work {
        Work::Texts(texts) => {
            predict::predict(model, &PredictRequest { top_k: all, ..PredictRequest::texts(texts.clone()) })
                .map_err(status)
        }
        Work::Images(images) => {
            let named =
                images.iter().map(|(name, image)| NamedImage { name: name.clone(), image: image.clone() }).collect();
            predict::predict(model, &PredictRequest { top_k: all, ..PredictRequest::images(named) }).map_err(status)
        }
        Work::ZeroShot { images, labels, template } => {
            let named =
                images.iter().map(|(name, image)| NamedImage { name: name.clone(), image: image.clone() }).collect();
            let request = PredictRequest {
                labels: labels.clone(),
                template: template.clone(),
                top_k: labels.len().max(1),
                ..PredictRequest::images(named)
            };
            predict::predict(model, &request).map_err(status)
        }
        Work::ZeroShotTexts { texts, labels, template, multi_label } => {
            let request = PredictRequest {
                labels: labels.clone(),
                template: template.clone(),
                multi_label: *multi_label,
                top_k: labels.len().max(1),
                ..PredictRequest::texts(texts.clone())
            };
            predict::predict(model, &request).map_err(status)
        }
        Work::Pixels { tensor, count } => {
            let started = Instant::now();
            let batch = Batch { size: *count, pixel_values: Some(tensor.clone()), text: None, raw: None, pairs: None };
            let (response, server_ms) = model.forward_timed(&batch).map_err(|e| status(crate::Error::Model(e)))?;
            let answer = predict::ModelAnswer {
                names: (0..*count).map(|i| format!("pixels[{i}]")).collect(),
                input_features: vec![Default::default(); *count],
                response,
                latency_ms: started.elapsed().as_secs_f64() * 1e3,
                server_ms,
            };
            Ok(predict::shape_output(model, model.labels(), answer, all))
        }
    }
}

/// Concatenates pixel tensors along the batch dimension.
pub(crate) fn cat_pixels(tensors: &[&Tensor]) -> Result<Tensor, String> {
    Tensor::cat(tensors, 0).map_err(|e| e.to_string())
}
