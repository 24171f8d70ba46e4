//! The `modeldeck` command line: a thin shell over the library. Every subcommand prints a
//! readable summary, or JSON with `--json`; errors are one line on stderr and a non-zero exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use modeldeck::model::{self, Precision, Task};
use modeldeck::monitor::alerts::AlertEvent;
use modeldeck::monitor::drift::DriftConfig;
use modeldeck::monitor::prometheus::{Access, MetricsServer, PromMetrics};
use modeldeck::monitor::replay::DriftSchedule;
use modeldeck::monitor::{Monitor, MonitorConfig, MonitorSnapshot};
use modeldeck::predict::{self, PredictInput};
use modeldeck::source::{self, DownloadUpdate, ModelSource, ResolveOptions};
use modeldeck::store;

mod eval_cli;
mod serve_cli;

#[derive(Parser)]
#[command(name = "modeldeck", version, about = "Run, compare and monitor machine-learning models on your own machine")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the desktop app (the default).
    Gui(GuiArgs),
    /// Predict with one model on an image or text.
    Predict(PredictArgs),
    /// Download a model from the Hugging Face Hub into the shared cache.
    Download(DownloadArgs),
    /// Measure load time, forward latency and throughput.
    Bench(BenchArgs),
    /// Drift tests (Evidently's definitions) between a reference and a current CSV.
    Drift(DriftArgs),
    /// Run a model over a folder, CSV or JSONL: answers to a CSV/JSONL file (resumable), the
    /// prediction log and a summary.
    Batch(eval_cli::BatchArgs),
    /// Evaluate a model on a labelled data set (optionally drifted): accuracy, top-k, per-class
    /// precision/recall/F1, confusion matrix, log loss, calibration, latency; an HTML or
    /// Markdown report.
    Eval(eval_cli::EvalArgs),
    /// Compare two models on the same labelled records: each one's metrics, agreement,
    /// McNemar's test and the records where they disagree.
    Compare(eval_cli::CompareArgs),
    /// Train the compact CNN on an image data set, or a new head on a model's frozen features.
    Train(TrainArgs),
    /// A/B (and paired shadow) statistics over two prediction logs.
    Abtest(AbtestArgs),
    /// The prediction log: export it, list its alerts, or measure how fast it writes.
    #[command(subcommand)]
    Log(LogCommand),
    /// Replay a data set as live traffic (with optional drift and delayed labels) and monitor the
    /// model headless.
    Monitor(MonitorArgs),
    /// Rehearse a release of model B against model A on replayed traffic: an A/B test, a shadow
    /// deployment or a canary with automatic promotion and rollback.
    Simulate(SimulateArgs),
    /// Serve a model over the Open Inference Protocol v2 REST API (KServe/Triton/MLServer
    /// clients can call it): request batching, a bounded queue, /metrics, the prediction log.
    Serve(serve_cli::ServeArgs),
    /// Concurrent clients against a model, local or remote: throughput and latency percentiles
    /// per concurrency level.
    Loadtest(serve_cli::LoadtestArgs),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Export logged predictions as CSV (columns `modeldeck abtest` reads, then one per input or
    /// output feature) or JSON lines.
    Export(LogExportArgs),
    /// The alerts the log has kept, oldest first: when each fired and resolved.
    Alerts(LogAlertsArgs),
    /// The batch runs in the log (`batch`, `eval --log`, `compare --log`, the Evaluate view), newest first:
    /// an id for `monitor --reference-run`.
    Runs(LogAlertsArgs),
    /// Write synthetic rows through the writer thread and report rows/s (and, with
    /// --progress-every, the committed count as it grows).
    Bench(LogBenchArgs),
}

#[derive(Args)]
struct LogExportArgs {
    /// The log file (default: the app's, in its data folder).
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long, value_parser = ["csv", "jsonl"], default_value = "csv")]
    format: String,
    /// Only rows since: unix milliseconds, or a span back from now (90s, 15m, 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only this model (its source as loaded, or its version label).
    #[arg(long)]
    model: Option<String>,
    /// Only predictions from here.
    #[arg(long, value_parser = ["playground", "replay", "batch", "cli"])]
    origin: Option<String>,
    /// Skip this many of the rows that pass the filters above, in log order.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Export at most this many rows (after --offset).
    #[arg(long)]
    limit: Option<u64>,
    /// Leave out failed requests (as the Monitor's drift windows do), before --offset/--limit.
    #[arg(long)]
    answered: bool,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct LogAlertsArgs {
    /// The log file (default: the app's, in its data folder).
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LogBenchArgs {
    #[arg(long)]
    log: PathBuf,
    #[arg(long, default_value_t = 100_000)]
    rows: u64,
    /// Print `committed N` every N rows, once they are committed.
    #[arg(long)]
    progress_every: Option<u64>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DriftArgs {
    #[arg(long)]
    reference: PathBuf,
    #[arg(long)]
    current: PathBuf,
    /// Columns to test (default: every column of the reference).
    #[arg(long)]
    column: Vec<String>,
    /// Columns to treat as categorical even if they look numeric.
    #[arg(long)]
    categorical: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// Image folder (DIR/<label>/*.png), or CSV/JSONL with text and label columns (with --base).
    #[arg(long)]
    data: PathBuf,
    /// Where to write the model folder.
    #[arg(long)]
    out: PathBuf,
    /// Keep this model's features frozen and train a new classification head.
    #[arg(long)]
    base: Option<String>,
    #[arg(long, default_value_t = 60)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Learning rate (default 3e-3 for the CNN, 5e-2 for a new head).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 8)]
    patience: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also train on a drifted copy of every image (newer, drifted data), e.g. "contrast=0.6,noise=0.15".
    #[arg(long)]
    add_drifted: Option<String>,
    /// Train on randomly permuted labels (seeded by --seed): a deliberately useless model.
    ///
    /// The labels are shuffled across all examples before the validation split, so the
    /// validation labels are shuffled too and early stopping cannot rescue the model; each label
    /// keeps its count. Works for the CNN and with --base (a head trained on shuffled labels).
    #[arg(long)]
    shuffle_labels: bool,
    /// Input side of the CNN, in pixels.
    #[arg(long, default_value_t = 8)]
    image_size: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
}

#[derive(Args)]
struct MonitorArgs {
    /// Hub repo id (org/name[@revision]), a local folder or file, or demo:<name>.
    #[arg(long)]
    model: String,
    /// The traffic: an image folder (DIR/<label>/*.png), or a CSV/JSONL of texts or image paths
    /// (optional `label` column: labels arrive as delayed feedback).
    #[arg(long)]
    data: PathBuf,
    /// Requests per second (default: as fast as the model answers).
    #[arg(long)]
    rate: Option<f64>,
    /// Drift schedule: STEP[,STEP...] (`,` or `;`), STEP = NAME=VALUE[@START[+RAMP]].
    ///
    /// From request START (default 0) the drift moves linearly to VALUE over RAMP requests
    /// (default 0), then holds: "brightness=-0.4@500+300" is 0 at request 500, -0.2 at 650, -0.4
    /// from 800. Images: brightness (-1..1), contrast (0..1, share removed), noise (0..1), blur
    /// (0..20 px), rotate (-180..180 degrees). Texts: casing (upper, lower, random), typos (0..1
    /// per letter), truncate (0..1, share of words kept), vocabulary (0..1, share of words
    /// replaced by unrelated jargon).
    #[arg(long, value_parser = DriftSchedule::parse)]
    drift: Option<DriftSchedule>,
    /// How long after its prediction a label arrives: 0, 500ms, 2s, 1.5m.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    label_delay: std::time::Duration,
    /// Start over at the end of the data set.
    #[arg(long = "loop")]
    looping: bool,
    /// Stop after this many requests.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Visit the examples in a seeded random order (a new one each pass).
    #[arg(long)]
    shuffle: bool,
    /// Seeds drift noise, typos and the shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Reference data set to measure drift against (default: the first requests).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// A batch run in the prediction log as the drift reference (its id, as `batch` prints it;
    /// `modeldeck log runs` lists them).
    #[arg(long, conflicts_with = "reference")]
    reference_run: Option<String>,
    /// The prediction log --reference-run reads (default: --log, else the app's).
    #[arg(long, requires = "reference_run")]
    reference_log: Option<PathBuf>,
    /// Append every prediction (origin `replay`) to this prediction log; labels follow as they
    /// arrive.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464; loopback only unless
    /// --metrics-allow-remote).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Allow --metrics-addr to listen on a non-loopback address.
    #[arg(long)]
    metrics_allow_remote: bool,
    /// Print the metrics, drift verdicts and alerts this often: 1s, 500ms, 1m.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    every: std::time::Duration,
    /// The drift reference is the first N predictions (unless --reference).
    #[arg(long, default_value_t = modeldeck::monitor::drift::DEFAULT_REFERENCE_SIZE)]
    reference_size: usize,
    /// The current drift window: the last N predictions.
    #[arg(long, default_value_t = modeldeck::monitor::drift::DEFAULT_CURRENT_SIZE)]
    window: usize,
    /// An alert rule (repeatable; replaces the defaults): p95_ms>500, error_rate>1%, drift,
    /// prediction_drift, accuracy_drop>5, with an optional @MIN_SAMPLES.
    #[arg(long = "alert", value_parser = modeldeck::monitor::alerts::AlertRule::parse)]
    alerts: Vec<modeldeck::monitor::alerts::AlertRule>,
    #[command(flatten)]
    retention: RetentionArgs,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
    #[command(flatten)]
    precision: PrecisionArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StrategyArg {
    Ab,
    Shadow,
    Canary,
    SideBySide,
}

#[derive(Args)]
struct SimulateArgs {
    /// The current model (control): hub repo id, folder or file, or demo:<name>.
    #[arg(long)]
    a: String,
    /// The new model (candidate).
    #[arg(long)]
    b: String,
    #[arg(long, value_enum)]
    strategy: StrategyArg,
    /// The traffic: an image folder (DIR/<label>/*.png) or a CSV/JSONL (an optional `label`
    /// column gives the labels, which arrive after --label-delay).
    #[arg(long)]
    data: PathBuf,
    /// A/B: B's share of the requests, in percent.
    #[arg(long, default_value_t = 50.0)]
    weight: f64,
    /// Canary: B's weight at each step, in percent; the last step's pass promotes B to 100 %.
    #[arg(long, default_value = "1,5,25,50,100", conflicts_with_all = ["step_weight", "max_weight"])]
    steps: String,
    /// Canary, Flagger's form: steps of this many percent ...
    #[arg(long, requires = "max_weight")]
    step_weight: Option<f64>,
    /// ... up to this weight, then promotion.
    #[arg(long, requires = "step_weight")]
    max_weight: Option<f64>,
    /// Canary: answers per arm between checks.
    #[arg(long, default_value_t = 100)]
    min_requests: u64,
    /// Canary: labels per arm in a step before accuracy is judged (default: --min-requests).
    #[arg(long)]
    min_labels: Option<u64>,
    /// Canary: failed checks that roll back (Flagger's threshold).
    #[arg(long, default_value_t = modeldeck::deploy::canary::DEFAULT_THRESHOLD)]
    threshold: u32,
    /// Canary: how many points B's error rate may exceed A's.
    #[arg(long, default_value_t = 1.0)]
    max_error_increase: f64,
    /// Canary: how many points B's accuracy may fall below A's.
    #[arg(long, default_value_t = 5.0)]
    max_accuracy_drop: f64,
    /// Canary: the latency judgement's confidence (Kayenta's default 0.98).
    #[arg(long, default_value_t = modeldeck::stats::mannwhitney::KAYENTA_CONFIDENCE)]
    latency_confidence: f64,
    /// Canary: the latency judgement's tolerance (Kayenta's default 0.25).
    #[arg(long, default_value_t = modeldeck::stats::mannwhitney::KAYENTA_TOLERANCE)]
    latency_tolerance: f64,
    /// Canary: a significant latency increase smaller than this ratio of means (B/A) passes
    /// (Kayenta's effectSize.allowedIncrease).
    #[arg(long, default_value_t = modeldeck::deploy::canary::DEFAULT_ALLOWED_INCREASE)]
    latency_allowed_increase: f64,
    /// Canary: a significant latency increase of at most this many milliseconds also passes,
    /// whatever its ratio (0: the ratio alone decides).
    #[arg(long, default_value_t = modeldeck::deploy::canary::DEFAULT_ALLOWED_MS)]
    latency_allowed_ms: f64,
    /// Canary: keep replaying after the promotion or rollback (until --max-requests or the data ends).
    #[arg(long)]
    keep_going: bool,
    /// Inject this much extra latency into every answer of B (rehearse a slower release): 5ms, 0.5s.
    #[arg(long, value_parser = parse_duration)]
    b_delay: Option<std::time::Duration>,
    /// Make this share of B's requests fail (0..1; rehearse a failing release).
    #[arg(long, default_value_t = 0.0)]
    b_error_rate: f64,
    /// Requests per second (default: as fast as the models answer).
    #[arg(long)]
    rate: Option<f64>,
    /// Drift schedule, as in `modeldeck monitor --drift`.
    #[arg(long, value_parser = DriftSchedule::parse)]
    drift: Option<DriftSchedule>,
    /// How long after its prediction a label arrives: 0, 500ms, 2s.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    label_delay: std::time::Duration,
    /// Start over at the end of the data set (a canary always loops until it is decided).
    #[arg(long = "loop")]
    looping: bool,
    /// Stop after this many requests (a canary: 200000 unless given).
    #[arg(long)]
    max_requests: Option<u64>,
    /// Replay the examples in file order instead of a seeded random order per pass. Data sets
    /// sorted by label (an image folder per class) then reach the arms class by class, which
    /// breaks the statistics' assumption of exchangeable requests.
    #[arg(long)]
    in_order: bool,
    /// Seeds the order, the drift noise and which requests fail under --b-error-rate.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Append every prediction (origin `replay`, arm A or B) to this prediction log.
    #[arg(long)]
    log: Option<PathBuf>,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Print the outcome and the decision trail as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
    #[command(flatten)]
    precision: ArmPrecisionArgs,
}

#[derive(Args)]
struct AbtestArgs {
    /// CSV of arm A (control): `correct` for accuracy, `latency_ms` for latency.
    #[arg(long)]
    a: PathBuf,
    /// The same for arm B (candidate).
    #[arg(long)]
    b: PathBuf,
    /// Pair requests by request_id (shadow deployment) and add McNemar's tests; needs
    /// request_id, prediction and correct in both files.
    #[arg(long)]
    paired: bool,
    /// Confidence level of Kayenta's latency interval.
    #[arg(long, default_value_t = modeldeck::stats::mannwhitney::KAYENTA_CONFIDENCE)]
    confidence: f64,
    /// Kayenta's tolerance: the fraction of |shift| the interval must clear.
    #[arg(long, default_value_t = modeldeck::stats::mannwhitney::KAYENTA_TOLERANCE)]
    tolerance: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Default)]
struct GuiArgs {
    /// Model for slot A (default: the last session's, else demo:digits-v1).
    #[arg(long)]
    a: Option<String>,
    /// Model for slot B (default: the last session's, else demo:digits-v2).
    #[arg(long)]
    b: Option<String>,
    /// The prediction log (default: predictions.sqlite in the app's data folder).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Keep no prediction log.
    #[arg(long)]
    no_log: bool,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9464; loopback only unless
    /// --metrics-allow-remote).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Allow --metrics-addr to listen on a non-loopback address.
    #[arg(long)]
    metrics_allow_remote: bool,
    #[command(flatten)]
    precision: ArmPrecisionArgs,
}

/// The prediction log of a command that logs by default (`batch`, `serve`).
#[derive(Args)]
struct DefaultLogArgs {
    /// The prediction log every answer also goes to (default: predictions.sqlite in the app's
    /// data folder).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Write nothing to the prediction log.
    #[arg(long, conflicts_with = "log")]
    no_log: bool,
    #[command(flatten)]
    retention: RetentionArgs,
}

impl DefaultLogArgs {
    /// The open log (`None` with `--no-log`).
    fn open(&self) -> anyhow::Result<Option<store::PredictionLog>> {
        if self.no_log {
            return Ok(None);
        }
        open_log(Some(&self.log.clone().unwrap_or_else(default_log_path)), self.retention)
    }
}

/// How much of the prediction log to keep; older rows are pruned in the background.
#[derive(Args, Clone, Copy, Default)]
struct RetentionArgs {
    /// Keep at most this many predictions in the log (the oldest go first).
    #[arg(long)]
    log_max_rows: Option<u64>,
    /// Keep predictions (and alerts) this long: 90s, 15m, 12h, 30d.
    #[arg(long, value_parser = parse_duration)]
    log_max_age: Option<std::time::Duration>,
}

impl From<RetentionArgs> for store::Retention {
    fn from(args: RetentionArgs) -> Self {
        Self { max_rows: args.log_max_rows, max_age: args.log_max_age }
    }
}

#[derive(Args)]
struct CommonSource {
    /// Never use the network (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

/// The precision a command that loads one model runs it in.
#[derive(Args, Clone, Copy)]
struct PrecisionArgs {
    /// Linear and convolution layers in f32, bf16, or int8 (dynamic quantisation: per-channel
    /// weights, per-row activations); the rest stays f32.
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
}

/// The precisions of a command's two models (A and B).
#[derive(Args, Clone, Copy, Default)]
struct ArmPrecisionArgs {
    /// Both models' linear and convolution layers in f32 (default), bf16 or int8 (dynamic
    /// quantisation).
    #[arg(long, value_enum)]
    precision: Option<Precision>,
    /// Model A's precision (default: --precision), e.g. f32 against B's int8.
    #[arg(long, value_enum)]
    precision_a: Option<Precision>,
    /// Model B's precision (default: --precision).
    #[arg(long, value_enum)]
    precision_b: Option<Precision>,
}

impl ArmPrecisionArgs {
    /// What was asked for A and B, if anything.
    fn given(&self) -> [Option<Precision>; 2] {
        [self.precision_a.or(self.precision), self.precision_b.or(self.precision)]
    }
    fn a(&self) -> Precision {
        self.given()[0].unwrap_or_default()
    }
    fn b(&self) -> Precision {
        self.given()[1].unwrap_or_default()
    }
}

#[derive(Args)]
struct PredictArgs {
    /// Hub repo id (org/name[@revision]), a local folder or file, or demo:<name>.
    #[arg(long)]
    model: String,
    /// Image file(s) for image models.
    #[arg(long)]
    image: Vec<PathBuf>,
    /// Text input(s); give two to an embedding model for their cosine similarity.
    #[arg(long)]
    text: Vec<String>,
    /// Candidate labels for zero-shot models (CLIP images, NLI text classifiers), comma-separated.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Zero-shot template, `{}` standing for each label: "a photo of a {}.", or "{}" for labels
    /// that are already sentences (default: "This is a photo of {}." for images, "This example is
    /// {}." for text).
    #[arg(long)]
    template: Option<String>,
    /// Zero-shot text: score each label on its own (entailment vs contradiction), so several can
    /// be true; without it the scores are one distribution over the labels.
    #[arg(long)]
    multi_label: bool,
    /// How many labels to show.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Append the prediction to this prediction log (SQLite; created if missing).
    #[arg(long)]
    log: Option<PathBuf>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
    #[command(flatten)]
    precision: PrecisionArgs,
}

#[derive(Args)]
struct DownloadArgs {
    /// org/name[@revision]
    repo: String,
    #[command(flatten)]
    common: CommonSource,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Tokens per text input (text models).
    #[arg(long, default_value_t = 17)]
    seq_len: usize,
    /// Image to feed image models (default: the shipped sample photo).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Worker threads for the maths (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Time the model alone on this data set's records at --batch (all decoded and preprocessed
    /// first): the model-only throughput `batch` is compared with.
    #[arg(long)]
    data: Option<PathBuf>,
    /// With --data: forward passes over the whole data set, best one reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
    #[command(flatten)]
    precision: PrecisionArgs,
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_gui(GuiArgs::default()),
        Some(Command::Gui(args)) => run_gui(args),
        Some(Command::Predict(args)) => run_predict(args),
        Some(Command::Download(args)) => run_download(args),
        Some(Command::Bench(args)) => run_bench(args),
        Some(Command::Drift(args)) => run_drift(args),
        Some(Command::Batch(args)) => eval_cli::run_batch(args),
        Some(Command::Eval(args)) => eval_cli::run_eval(args),
        Some(Command::Compare(args)) => eval_cli::run_compare(args),
        Some(Command::Train(args)) => run_train(args),
        Some(Command::Abtest(args)) => run_abtest(args),
        Some(Command::Log(LogCommand::Export(args))) => run_log_export(args),
        Some(Command::Log(LogCommand::Alerts(args))) => run_log_alerts(args),
        Some(Command::Log(LogCommand::Runs(args))) => run_log_runs(args),
        Some(Command::Log(LogCommand::Bench(args))) => run_log_bench(args),
        Some(Command::Monitor(args)) => run_monitor(args),
        Some(Command::Simulate(args)) => run_simulate(args),
        Some(Command::Serve(args)) => serve_cli::run_serve(args),
        Some(Command::Loadtest(args)) => serve_cli::run_loadtest(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Library log lines (hf-hub's retries, wgpu, ...) stay quiet unless `RUST_LOG` (or
/// `MODELDECK_LOG`) asks for them; ModelDeck's own warnings show. Errors reach the user once, as
/// the `error:` line `main` prints. Colour only when stderr is a terminal.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = ["RUST_LOG", "MODELDECK_LOG"]
        .into_iter()
        .find_map(|name| tracing_subscriber::EnvFilter::try_from_env(name).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("off,modeldeck=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

fn resolve_options(common: &CommonSource, progress: bool) -> ResolveOptions {
    load_options(common, Precision::F32, progress)
}

/// `resolve_options` for loading a model in `precision`.
fn load_options(common: &CommonSource, precision: Precision, progress: bool) -> ResolveOptions {
    let mut options = ResolveOptions { offline: common.offline, precision, ..Default::default() };
    if progress {
        options.progress = Some(progress_bar());
    }
    options
}

/// A terminal progress bar per file, on stderr.
fn progress_bar() -> source::ProgressFn {
    use indicatif::{ProgressBar, ProgressStyle};
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let current = std::sync::Mutex::new(String::new());
    Arc::new(move |u: &DownloadUpdate| {
        let Ok(mut current) = current.lock() else { return };
        if *current != u.file {
            *current = u.file.clone();
            bar.reset();
            bar.set_message(format!("[{}/{}] {}", u.file_index, u.file_count, u.file));
        }
        if u.bytes_total > 0 {
            bar.set_length(u.bytes_total);
        }
        bar.set_position(u.bytes_done);
    })
}

fn run_predict(args: PredictArgs) -> anyhow::Result<()> {
    let source = ModelSource::parse(&args.model)?;
    let show_progress = !args.json && matches!(source, ModelSource::Hub { .. });
    let model = model::load_source(&source, &load_options(&args.common, args.precision.precision, show_progress))?;
    let input = PredictInput {
        images: args.image,
        texts: args.text,
        labels: args.labels,
        template: args.template,
        multi_label: args.multi_label,
        top_k: args.top_k,
    };
    let log = args.log.as_deref().map(|p| store::PredictionLog::open(p, store::Retention::default())).transpose()?;
    let request_id = format!("cli-{}-{}", store::now_ms(), std::process::id());
    let output = match predict::predict_files(&model, &input) {
        Ok(output) => output,
        Err(e) => {
            if let Some(log) = &log {
                let mut record = store::PredictionRecord::new(source.to_string(), store::Origin::Cli, request_id);
                record.error = Some(e.to_string());
                log.record(record);
                log.flush()?;
            }
            return Err(e.into());
        }
    };
    if let Some(log) = &log {
        for record in store::records_from_output(&output, store::Origin::Cli, None, &request_id) {
            log.record(record);
        }
        log.flush()?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&output.to_json())?);
        return Ok(());
    }
    let card = &output.model;
    println!("{} ({}, {}) loaded in {:.0} ms", card.name, card.architecture, card.task, card.load_ms);
    for result in &output.results {
        println!("\n{}", result.input);
        if let Some(predictions) = &result.predictions {
            for p in predictions {
                let bar = "#".repeat((p.score * 30.0).round() as usize);
                println!("  {:>6.2}%  {:<30} {}", p.score * 100.0, bar, p.label);
            }
        }
        if let Some(e) = &result.embedding {
            let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:.4}")).collect();
            println!("  embedding [{}] = [{}, ...]", e.len(), head.join(", "));
        }
    }
    if let Some(s) = output.similarity {
        println!("\ncosine similarity of the first two texts: {s:.4}");
    }
    if output.task == Task::TextEmbedding && output.results.len() == 1 {
        println!("(give a second --text to compare two sentences)");
    }
    println!("\nlatency: {:.1} ms", output.latency_ms);
    Ok(())
}

fn run_download(args: DownloadArgs) -> anyhow::Result<()> {
    let ModelSource::Hub { repo_id, revision } = ModelSource::parse(&args.repo)? else {
        anyhow::bail!("`{}` is not a Hub repo id (org/name[@revision])", args.repo);
    };
    let options = resolve_options(&args.common, true);
    let files = source::download(&repo_id, revision.as_deref(), &options)?;
    println!("{repo_id} is in the cache at {} ({:.1} MB)", files.root.display(), files.size_bytes() as f64 / 1e6);
    Ok(())
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        // candle sizes its thread pools from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if let Some(path) = &args.data {
        return bench_on_data(&args, path);
    }
    let source = ModelSource::parse(&args.model)?;
    let options = modeldeck::bench::BenchOptions {
        batch: args.batch,
        iters: args.iters,
        warmup: args.warmup,
        seq_len: args.seq_len,
        image: args.image,
    };
    let report =
        modeldeck::bench::run(&source, &options, &load_options(&args.common, args.precision.precision, !args.json))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = &report.latency_ms;
        println!(
            "{} ({}, {} on {}) batch {} threads {}",
            report.model, report.architecture, report.precision, report.kernel, report.batch, report.threads
        );
        println!("  load        {:>9.1} ms", report.load_ms);
        println!("  preprocess  {:>9.1} ms", report.preprocess_ms);
        println!("  latency p50 {:>9.2} ms   p95 {:.2} ms   mean {:.2} ms", l.p50, l.p95, l.mean);
        println!("  throughput  {:>9.1} inputs/s", report.throughput_per_s);
        if let (Some(now), Some(peak)) = (report.rss_mib, report.peak_rss_mib) {
            println!("  memory      {now:>9.0} MiB resident after the runs, {peak:.0} MiB at the peak (loading)");
        }
    }
    Ok(())
}

/// `bench --data`: the model alone on a data set's batches, best of `--rounds`.
fn bench_on_data(args: &BenchArgs, path: &std::path::Path) -> anyhow::Result<()> {
    use modeldeck::eval::{pipeline, Dataset, EvalOptions};
    let data = Dataset::load(path)?;
    let model = replay_model(&args.model, &data, &args.common, args.precision.precision, args.json)?;
    let eval_options = EvalOptions { batch_size: args.batch, ..Default::default() };
    let options = modeldeck::eval::pipeline_options(&model, &data, &eval_options);
    let mut best: Option<(usize, f64)> = None;
    for _ in 0..args.rounds.max(1) {
        let (records, seconds) = pipeline::model_only(&model, &data, &options)?;
        if best.is_none_or(|(_, s)| seconds < s) {
            best = Some((records, seconds));
        }
    }
    let (records, seconds) = best.unwrap_or_default();
    let per_s = if seconds > 0.0 { records as f64 / seconds } else { 0.0 };
    if args.json {
        let out = serde_json::json!({
            "model": model.card().source, "data": path, "batch": args.batch, "records": records,
            "forward_s": seconds, "throughput_per_s": per_s, "rounds": args.rounds,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} on {} at batch {}: {records} records, the model alone {:.3} s, {per_s:.1} records/s (best of {})",
            model.card().source,
            path.display(),
            args.batch,
            seconds,
            args.rounds.max(1)
        );
    }
    Ok(())
}

fn run_drift(args: DriftArgs) -> anyhow::Result<()> {
    let report = modeldeck::report::drift_report(&args.reference, &args.current, &args.column, &args.categorical)?;
    print_report(args.json, || report.to_json(), || report.render_text())
}

fn run_abtest(args: AbtestArgs) -> anyhow::Result<()> {
    let kayenta = modeldeck::stats::KayentaOptions { confidence: args.confidence, tolerance: args.tolerance };
    let options = modeldeck::report::AbOptions { paired: args.paired, kayenta };
    let report = modeldeck::report::abtest_report(&args.a, &args.b, &options)?;
    print_report(args.json, || report.to_json(), || report.render_text())
}

/// Prints a report as pretty JSON or as its text rendering.
fn print_report(
    json: bool,
    to_json: impl FnOnce() -> serde_json::Value,
    to_text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json())?);
    } else {
        print!("{}", to_text());
    }
    Ok(())
}

fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    use modeldeck::eval::perturb::ImageDrift;
    use modeldeck::train::{self, EpochReport, TrainOptions};
    let data = modeldeck::eval::Dataset::load(&args.data)?;
    let add_drifted = args.add_drifted.as_deref().map(ImageDrift::parse).transpose()?;
    let options = TrainOptions {
        max_epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr.unwrap_or(if args.base.is_some() { 5e-2 } else { 3e-3 }),
        patience: args.patience,
        seed: args.seed,
        shuffle_labels: args.shuffle_labels,
        ..Default::default()
    };
    let quiet = args.json;
    let print_epoch = move |r: &EpochReport| {
        if !quiet {
            eprintln!(
                "epoch {:>3}  loss {:.4}  acc {:.2}%  val loss {:.4}  val acc {:.2}%",
                r.epoch,
                r.train_loss,
                r.train_accuracy * 100.0,
                r.validation_loss,
                r.validation_accuracy * 100.0
            );
        }
    };
    let report = match &args.base {
        Some(base) => {
            let source = ModelSource::parse(base)?;
            let files = source::resolve(&source, &resolve_options(&args.common, !args.json))?;
            train::train_head(&files, &data, &args.out, &options, add_drifted.as_ref(), |stage, r| {
                if stage == "epoch" {
                    print_epoch(r)
                }
            })?
        }
        None => {
            let cnn = train::CnnOptions { image_size: args.image_size, add_drifted, ..Default::default() };
            train::train_cnn(&data, &args.out, &cnn, &options, print_epoch)?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "wrote {} (best epoch {}, validation accuracy {:.2}%, {} train / {} validation examples)",
            report.out.display(),
            report.best_epoch,
            report.best_validation_accuracy * 100.0,
            report.n_train,
            report.n_validation
        );
    }
    Ok(())
}

/// The app's own prediction log, in its data folder.
fn default_log_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    data.join("modeldeck/predictions.sqlite")
}

fn run_log_export(args: LogExportArgs) -> anyhow::Result<()> {
    let path = args.log.unwrap_or_else(default_log_path);
    let since_ms = args
        .since
        .as_deref()
        .map(|s| store::parse_since(s, store::now_ms()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let query = store::Query {
        since_ms,
        model: args.model,
        origin: args.origin.as_deref().and_then(store::Origin::from_name),
        offset: args.offset,
        limit: args.limit,
        answered: args.answered,
        request_prefix: None,
    };
    let rows = store::read(&path, &query)?;
    let format = if args.format == "jsonl" { store::ExportFormat::Jsonl } else { store::ExportFormat::Csv };
    match &args.out {
        Some(out) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?,
            );
            store::export(&rows, format, &mut file)?;
            std::io::Write::flush(&mut file)?;
            eprintln!("exported {} predictions to {}", rows.len(), out.display());
        }
        None => store::export(&rows, format, &mut std::io::stdout().lock())?,
    }
    Ok(())
}

fn run_log_alerts(args: LogAlertsArgs) -> anyhow::Result<()> {
    let path = args.log.unwrap_or_else(default_log_path);
    let alerts = store::read_alerts(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(());
    }
    if alerts.is_empty() {
        println!("no alerts in {}", path.display());
        return Ok(());
    }
    for a in &alerts {
        println!(
            "{}  {:<8}  {}  {}: {} (value {}, threshold {})",
            store::iso_time(a.at_ms),
            store::alert_state_name(a.state),
            a.model,
            a.rule,
            a.message,
            a.value,
            a.threshold
        );
    }
    Ok(())
}

fn run_log_runs(args: LogAlertsArgs) -> anyhow::Result<()> {
    let path = args.log.unwrap_or_else(default_log_path);
    let runs = store::batch_runs(&path, 100)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else if runs.is_empty() {
        println!("no batch runs in {}", path.display());
    } else {
        for r in &runs {
            println!("{}  {}  {} rows  {}", r.run, store::iso_time(r.first_at_ms), r.rows, r.model);
        }
    }
    Ok(())
}

fn run_log_bench(args: LogBenchArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let log = store::PredictionLog::open(&args.log, store::Retention::default())?;
    let started = std::time::Instant::now();
    let mut stdout = std::io::stdout().lock();
    for i in 0..args.rows {
        let mut record = store::PredictionRecord::new("bench", store::Origin::Replay, format!("bench-{i}"));
        record.prediction = Some((i % 10).to_string());
        record.score = Some(0.9);
        record.latency_ms = Some(1.0);
        log.record(record);
        if args.progress_every.is_some_and(|n| n > 0 && (i + 1) % n == 0) {
            // Reported only once committed: a kill after this line loses none of these rows.
            if log.wait_committed(i + 1, std::time::Duration::from_secs(30)) {
                writeln!(stdout, "committed {}", log.committed())?;
                stdout.flush()?;
            }
        }
    }
    log.flush()?;
    let seconds = started.elapsed().as_secs_f64();
    let rate = args.rows as f64 / seconds;
    if args.json {
        writeln!(stdout, "{}", serde_json::json!({"rows": args.rows, "seconds": seconds, "rows_per_s": rate}))?;
    } else {
        writeln!(stdout, "{} rows committed in {seconds:.3} s: {rate:.0} rows/s", args.rows)?;
    }
    Ok(())
}

/// `0`, `500ms`, `2s`, `1.5m`, `1h`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use ms, s, m or h)")),
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration such as 500ms or 2s"))?;
    std::time::Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("`{text}` is not a duration such as 500ms or 2s"))
}

/// Replays the data set through the model on the replay thread while this thread logs
/// predictions and labels and draws the progress bar.
/// Loads a model for a replay of `data`, checking that it takes the data's kind of input.
fn replay_model(
    text: &str,
    data: &modeldeck::eval::Dataset,
    common: &CommonSource,
    precision: Precision,
    json: bool,
) -> anyhow::Result<Arc<model::LoadedModel>> {
    let source = ModelSource::parse(text)?;
    let show_download = !json && matches!(source, ModelSource::Hub { .. });
    let model = Arc::new(model::load_source(&source, &load_options(common, precision, show_download))?);
    let data_has_images = data.has_images();
    if data_has_images != model.task().takes_images() {
        anyhow::bail!(
            "{} is for {} but {} holds {}",
            model.card().name,
            model.task(),
            data.source.display(),
            if data_has_images { "images" } else { "texts" }
        );
    }
    Ok(model)
}

fn warn_unused_drift(data: &modeldeck::eval::Dataset, drift: Option<&DriftSchedule>) {
    let images = data.has_images();
    if drift.is_some_and(|d| if images { !d.affects_images() } else { !d.affects_texts() }) {
        eprintln!(
            "warning: --drift has no {} steps, so the {} are replayed unchanged",
            if images { "image" } else { "text" },
            if images { "images" } else { "texts" }
        );
    }
}

fn open_log(path: Option<&std::path::Path>, retention: RetentionArgs) -> anyhow::Result<Option<store::PredictionLog>> {
    let Some(path) = path else { return Ok(None) };
    let (log, note) = store::PredictionLog::open_or_fresh(path, retention.into());
    if let Some(note) = note {
        eprintln!("warning: {note}");
    }
    Ok(Some(log?))
}

fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use modeldeck::deploy::{self, CanaryPlan, Gates, Rollout, RolloutConfig, Strategy};
    use modeldeck::eval::Dataset;
    use modeldeck::monitor::replay::{Fault, ReplayEvent, ReplayOptions};

    let data = Arc::new(Dataset::load(&args.data)?);
    let a = replay_model(&args.a, &data, &args.common, args.precision.a(), args.json)?;
    let b = replay_model(&args.b, &data, &args.common, args.precision.b(), args.json)?;
    warn_unused_drift(&data, args.drift.as_ref());
    let strategy = match args.strategy {
        StrategyArg::Ab => Strategy::Ab { weight_b: args.weight },
        StrategyArg::Shadow => Strategy::Shadow,
        StrategyArg::SideBySide => Strategy::SideBySide,
        StrategyArg::Canary => {
            let steps = match (args.step_weight, args.max_weight) {
                (Some(step), Some(max)) => CanaryPlan::flagger_steps(step, max)?,
                _ => CanaryPlan::parse_steps(&args.steps)?,
            };
            let gates = Gates {
                min_requests: args.min_requests,
                min_labels: args.min_labels.unwrap_or(args.min_requests),
                latency: modeldeck::stats::KayentaOptions {
                    confidence: args.latency_confidence,
                    tolerance: args.latency_tolerance,
                },
                latency_allowed_increase: args.latency_allowed_increase,
                latency_allowed_ms: args.latency_allowed_ms,
                max_error_increase: args.max_error_increase,
                max_accuracy_drop: args.max_accuracy_drop,
            };
            Strategy::Canary(CanaryPlan::new(steps, gates, args.threshold, false)?)
        }
    };
    let canary = matches!(strategy, Strategy::Canary(_));
    let fault = Fault { delay: args.b_delay.unwrap_or_default(), error_rate: args.b_error_rate };
    let config = RolloutConfig {
        strategy,
        fault_b: (!fault.is_none()).then_some(fault),
        stop_when_decided: canary && !args.keep_going,
    };
    let candidate_labels =
        if a.task().takes_candidate_labels() || b.task().takes_candidate_labels() { data.labels() } else { Vec::new() };
    let options = ReplayOptions {
        candidate_labels,
        rate_per_s: args.rate,
        looping: args.looping || canary,
        max_requests: args.max_requests.or(canary.then_some(200_000)),
        shuffle: !args.in_order,
        drift: args.drift,
        label_delay: args.label_delay,
        seed: args.seed,
        ..Default::default()
    };
    let log = open_log(args.log.as_deref(), args.retention)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let sink_log = log.clone();
    let mut rollout = Rollout::start(
        data,
        a,
        b,
        config,
        options,
        move |event| {
            if let Some(log) = &sink_log {
                match &event {
                    ReplayEvent::Predicted(p) => p.records(None).into_iter().for_each(|r| log.record(r)),
                    ReplayEvent::Label(l) => log.set_label(&l.request_id, &l.label),
                    _ => {}
                }
            }
            if let ReplayEvent::Progress(p) = event {
                // The receiver lives until the replay ends.
                let _ = tx.send(p);
            }
        },
        || {},
    )?;
    let bar = if args.json {
        indicatif::ProgressBar::hidden()
    } else {
        replay_progress_bar(rollout.snapshot().progress.and_then(|p| p.total))
    };
    let print = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let mut shown = 0;
    let mut show_decisions = |snapshot: &deploy::RolloutSnapshot| {
        let Some(c) = &snapshot.canary else { return };
        for d in &c.decisions[shown..] {
            if !args.json {
                print(deploy::report::decision_line(d));
                deploy::report::gate_lines(d).into_iter().for_each(&print);
            }
        }
        shown = c.decisions.len();
    };
    // The replay thread drops the sender when it ends, after its final event.
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(250)) {
            Ok(progress) => {
                bar.set_position(progress.sent);
                bar.set_message(format!(
                    "{:.0} req/s, {} errors, {} labels",
                    progress.rate_per_s, progress.errors, progress.labels_delivered
                ));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        show_decisions(&rollout.snapshot());
    }
    rollout.wait(std::time::Duration::from_secs(5));
    bar.finish_and_clear();
    let snapshot = rollout.snapshot();
    show_decisions(&snapshot);
    if let Some(log) = &log {
        log.flush()?;
    }
    if let Some(error) = &snapshot.failed {
        anyhow::bail!("the replay failed: {error}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&snapshot)?);
    } else {
        deploy::report::report_lines(&snapshot).into_iter().for_each(|l| println!("{l}"));
        if let Some(log) = &log {
            println!("predictions logged to {}", log.path().display());
        }
    }
    Ok(())
}

fn run_monitor(args: MonitorArgs) -> anyhow::Result<()> {
    use modeldeck::eval::Dataset;
    use modeldeck::monitor::replay::{Replay, ReplayEvent, ReplayOptions, Targets};

    let data = Arc::new(Dataset::load(&args.data)?);
    let model = replay_model(&args.model, &data, &args.common, args.precision.precision, args.json)?;
    warn_unused_drift(&data, args.drift.as_ref());
    let log = open_log(args.log.as_deref(), args.retention)?;

    let config = MonitorConfig {
        drift: DriftConfig { reference_size: args.reference_size, current_size: args.window },
        rules: if args.alerts.is_empty() { modeldeck::monitor::alerts::default_rules() } else { args.alerts.clone() },
        ..Default::default()
    };
    let monitor = Monitor::new(config, store::now_ms())?;
    monitor.set_log(log.clone());
    let series: Arc<str> = model.card().source.as_str().into();
    let _server = match args.metrics_addr {
        Some(addr) => {
            let metrics = Arc::new(PromMetrics::new());
            let access = if args.metrics_allow_remote { Access::AllowRemote } else { Access::LoopbackOnly };
            let server = MetricsServer::start(addr, metrics.clone(), access)?;
            monitor.set_prometheus(Some(metrics));
            eprintln!("serving Prometheus metrics on http://{}/metrics", server.addr());
            Some(server)
        }
        None => None,
    };
    if let Some(reference) = &args.reference {
        let data = modeldeck::eval::Dataset::load(reference)?;
        let options = modeldeck::eval::EvalOptions { batch_size: 32, ..Default::default() };
        let samples = modeldeck::eval::reference_samples(&model, &data, &options)?;
        monitor.set_reference(&series, &samples);
    }
    if let Some(run) = &args.reference_run {
        let path = args.reference_log.clone().or_else(|| args.log.clone()).unwrap_or_else(default_log_path);
        let source = &model.card().source;
        let (run_model, samples) = modeldeck::monitor::batch_run_reference(&path, run, Some(source))?;
        anyhow::ensure!(
            !samples.is_empty(),
            "{}: batch run {run} has no answered rows of {source} (`modeldeck log runs` lists the runs)",
            path.display()
        );
        if !args.json {
            eprintln!("drift reference: batch run {run} ({} rows of {run_model})", samples.len());
        }
        monitor.set_reference(&series, &samples);
    }

    let candidate_labels = if model.task().takes_candidate_labels() { data.labels() } else { Vec::new() };
    let options = ReplayOptions {
        candidate_labels,
        rate_per_s: args.rate,
        looping: args.looping,
        max_requests: args.max_requests,
        shuffle: args.shuffle,
        drift: args.drift,
        label_delay: args.label_delay,
        seed: args.seed,
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = Replay::start(data, Targets::single(model), options, move |event| {
        // The receiver lives until the replay ends.
        let _ = tx.send(event);
    })?;
    let bar = replay_progress_bar(handle.progress().total);
    let (mut labelled, mut correct) = (0u64, 0u64);
    let mut last = handle.progress();
    let mut next_window = std::time::Instant::now() + args.every;
    let print = |line: String| if bar.is_hidden() { println!("{line}") } else { bar.println(line) };
    // The replay thread drops the sender when it ends, after its final event.
    loop {
        if std::time::Instant::now() >= next_window {
            next_window += args.every;
            let (snapshot, events) = monitor.refresh(store::now_ms());
            window_report(&snapshot, &events, args.json).into_iter().for_each(&print);
        }
        let wait = next_window.saturating_duration_since(std::time::Instant::now());
        let event = match rx.recv_timeout(wait) {
            Ok(event) => event,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            ReplayEvent::Predicted(prediction) => {
                let features = prediction.features();
                if let Some(log) = &log {
                    prediction.records(None).into_iter().for_each(|r| log.record(r));
                }
                monitor.observe(prediction.observation(features), store::Origin::Replay);
            }
            ReplayEvent::Label(label) => {
                if let Some(log) = &log {
                    log.set_label(&label.request_id, &label.label);
                }
                monitor.feedback(label.feedback());
                labelled += 1;
                correct += u64::from(label.correct);
            }
            ReplayEvent::Progress(progress) => {
                bar.set_position(progress.sent);
                bar.set_message(format!(
                    "{:.0} req/s, {} errors, {} labels",
                    progress.rate_per_s, progress.errors, progress.labels_delivered
                ));
                last = progress;
            }
            ReplayEvent::Finished(progress) | ReplayEvent::Stopped(progress) => last = progress,
            ReplayEvent::Failed { error, progress } => {
                bar.finish_and_clear();
                anyhow::bail!("the replay failed after {} requests: {error}", progress.sent);
            }
        }
    }
    bar.finish_and_clear();
    drop(handle);
    let (snapshot, events) = monitor.refresh_now(store::now_ms());
    window_report(&snapshot, &events, args.json).into_iter().for_each(|line| println!("{line}"));
    if let Some(log) = &log {
        log.flush()?;
    }
    let accuracy = (labelled > 0).then(|| correct as f64 / labelled as f64);
    if args.json {
        let mut summary =
            serde_json::json!({ "type": "summary", "replay": last, "labelled": labelled, "accuracy": accuracy });
        if let Some(log) = &log {
            summary["log"] = serde_json::json!(log.path());
        }
        println!("{summary}");
    } else {
        println!(
            "{} requests in {:.1} s ({:.1}/s): {} answered, {} errors, {} labels",
            last.sent, last.active_s, last.mean_rate_per_s, last.answered, last.errors, last.labels_delivered
        );
        if let Some(accuracy) = accuracy {
            println!("accuracy on labelled requests: {:.2}% ({correct}/{labelled})", accuracy * 100.0);
        }
        if let Some(log) = &log {
            println!("predictions logged to {}", log.path().display());
        }
    }
    Ok(())
}

/// One window of `monitor`: per model its metrics, accuracy and drift, then this window's alert
/// events; JSON lines with `json`, else a short table.
fn window_report(snapshot: &MonitorSnapshot, events: &[AlertEvent], json: bool) -> Vec<String> {
    use modeldeck::monitor::drift::Verdict;
    use modeldeck::monitor::metrics::Window;
    let mut lines = Vec::new();
    let time = store::iso_time(snapshot.at_ms);
    for m in &snapshot.models {
        if json {
            let latency: serde_json::Map<String, serde_json::Value> =
                m.ops.latency.iter().map(|(w, p)| (w.name().to_string(), serde_json::json!(p))).collect();
            let drift = m.drift.as_ref().map(|d| {
                serde_json::json!({
                    "reference": d.reference,
                    "current": d.current,
                    "dataset_drift": d.dataset_drift.drift_detected,
                    "share_drifted": d.dataset_drift.share_drifted,
                    "columns": d.columns,
                })
            });
            lines.push(
                serde_json::json!({
                    "type": "window",
                    "time": time,
                    "model": m.name,
                    "requests": m.ops.requests,
                    "errors": m.ops.errors,
                    "error_rate": m.ops.error_rate,
                    "throughput_rps": m.ops.throughput_rps,
                    "latency_ms": latency,
                    "accuracy": m.accuracy,
                    "drift": drift,
                })
                .to_string(),
            );
        } else {
            let p95 = m.ops.latency(Window::LastMinute).map_or("–".into(), |p| format!("{:.2} ms", p.p95));
            let accuracy = match (&m.accuracy.current, &m.accuracy.reference) {
                (Some(c), Some(r)) => format!("{:.1}% (ref {:.1}%)", c.accuracy * 100.0, r.accuracy * 100.0),
                (None, Some(r)) => format!("ref {:.1}%", r.accuracy * 100.0),
                _ => "–".into(),
            };
            let drift = m.drift.as_ref().map_or("–".to_string(), |d| {
                let (decided, drifted) = d.feature_verdicts();
                let names: Vec<&str> =
                    d.columns.iter().filter(|c| c.verdict == Verdict::Drift).map(|c| c.name).collect();
                if decided == 0 && names.is_empty() {
                    "not enough data".into()
                } else {
                    format!("{drifted}/{decided} features drift [{}]", names.join(", "))
                }
            });
            lines.push(format!(
                "{time}  {}  {} req  {:.1}/s  p95 {p95}  errors {}  accuracy {accuracy}  drift {drift}",
                m.name, m.ops.requests, m.ops.throughput_rps, m.ops.errors
            ));
        }
    }
    for e in events {
        if json {
            let mut value = serde_json::json!(e);
            value["type"] = serde_json::json!("alert");
            lines.push(value.to_string());
        } else {
            let state = match e.state {
                modeldeck::monitor::alerts::AlertState::Firing => "ALERT",
                modeldeck::monitor::alerts::AlertState::Resolved => "resolved",
            };
            lines.push(format!("{time}  {state} {}: {}", e.rule, e.message));
        }
    }
    lines
}

/// A bar over the requests when the replay is bounded, a spinner when it loops forever; on stderr,
/// hidden when stderr is not a terminal.
fn replay_progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let (bar, template) = match total {
        Some(total) => (ProgressBar::new(total), "replay [{bar:30}] {pos}/{len} {msg}"),
        None => (ProgressBar::new_spinner(), "replay {spinner} {pos} requests {msg}"),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    bar
}

fn run_gui(args: GuiArgs) -> anyhow::Result<()> {
    let parse = |s: Option<String>| s.map(|s| ModelSource::parse(&s)).transpose();
    let log = (!args.no_log).then(|| args.log.unwrap_or_else(default_log_path));
    let config = modeldeck::ui::AppConfig {
        a: parse(args.a)?,
        b: parse(args.b)?,
        precisions: args.precision.given(),
        log,
        metrics_addr: args.metrics_addr.map(|a| (a, args.metrics_allow_remote)),
        retention: args.retention.into(),
        ..Default::default()
    };
    modeldeck::ui::run(config).map_err(anyhow::Error::msg)
}
