//! `modeldeck bench`: load time, forward-pass latency percentiles and throughput for one model at
//! one batch size, on the same inputs as `bench/pytorch_bench.py` so the two compare side by side.
//! Only the forward pass is timed (as on the PyTorch side); preprocessing is reported apart.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::model::{self, LoadedModel, Request, Task};
use crate::source::{ModelSource, ResolveOptions};
use crate::Error;

/// The text both benchmarks tokenize; each input is this paragraph truncated to `seq_len` tokens.
/// bench/pytorch_bench.py reads the same file.
pub const BENCH_TEXT: &str = include_str!("../bench/bench_text.txt");

/// Zero-shot candidate labels used by both benchmarks.
pub const BENCH_LABELS: [&str; 2] = ["a cat", "a dog"];

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub batch: usize,
    pub iters: usize,
    pub warmup: usize,
    /// Tokens per text input.
    pub seq_len: usize,
    pub image: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self { batch: 1, iters: 20, warmup: 3, seq_len: 17, image: None }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p95: f64,
    pub mean: f64,
    pub min: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub framework: &'static str,
    pub model: String,
    pub architecture: String,
    /// What the linear and convolution layers ran in, and on which kernel.
    pub precision: crate::model::Precision,
    pub kernel: &'static str,
    /// The prepared weights in memory, MiB.
    pub weights_mib: f64,
    pub batch: usize,
    pub seq_len: Option<usize>,
    /// The image fed to image models: the `--image` path, or the embedded sample's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub threads: usize,
    pub iters: usize,
    pub load_ms: f64,
    pub preprocess_ms: f64,
    pub latency_ms: LatencySummary,
    pub throughput_per_s: f64,
    /// The process's peak resident memory (VmHWM, Linux only), in MiB: weights, activations and
    /// the runtime together, loading included (the memory-mapped file and the weights copied out
    /// of it are both resident for a moment).
    pub peak_rss_mib: Option<f64>,
    /// Resident memory after the timed passes (VmRSS), in MiB: what the loaded model costs while
    /// it predicts.
    pub rss_mib: Option<f64>,
}

/// A memory figure of this process from /proc/self/status (Linux), in MiB: `VmHWM` (peak) or
/// `VmRSS` (now).
pub fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Percentile with linear interpolation (numpy's default), from the statistics module.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    crate::stats::describe::quantile_sorted(sorted, q).unwrap_or(f64::NAN)
}

/// The image benchmarks feed: the given file, else the sample photo compiled into the binary
/// (the same file `bench/pytorch_bench.py` reads).
fn bench_image(path: Option<&PathBuf>) -> Result<image::RgbImage, Error> {
    let image = match path {
        Some(p) => model::decode_image_file(p),
        None => {
            let embedded = &crate::source::embedded::BENCH_IMAGE;
            model::image::decode_image_bytes(embedded.bytes, std::path::Path::new(embedded.name))
        }
    };
    Ok(image.map_err(model::ModelError::from)?)
}

/// Loads `source` and times its forward pass.
pub fn run(source: &ModelSource, options: &BenchOptions, resolve: &ResolveOptions) -> Result<BenchReport, Error> {
    if options.batch == 0 || options.iters == 0 {
        return Err(Error::Usage("--batch and --iters must be at least 1".into()));
    }
    let started = Instant::now();
    let model = model::load_source(source, resolve)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let task = model.task();
    let prep_started = Instant::now();
    let batch = prepare(&model, task, options)?;
    let preprocess_ms = prep_started.elapsed().as_secs_f64() * 1e3;
    for _ in 0..options.warmup {
        model.forward(&batch)?;
    }
    let mut times = Vec::with_capacity(options.iters);
    for _ in 0..options.iters {
        let t = Instant::now();
        model.forward(&batch)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let p50 = percentile(&times, 0.5);
    Ok(BenchReport {
        framework: "modeldeck",
        model: source.to_string(),
        architecture: model.card().architecture.clone(),
        precision: model.card().precision,
        kernel: model.card().precision.kernel(),
        weights_mib: model.card().memory_bytes as f64 / (1 << 20) as f64,
        batch: options.batch,
        seq_len: (!task.takes_images()).then_some(options.seq_len),
        image: task.takes_images().then(|| match &options.image {
            Some(path) => path.display().to_string(),
            None => crate::source::embedded::BENCH_IMAGE.name.to_string(),
        }),
        threads: candle_core::utils::get_num_threads(),
        iters: options.iters,
        load_ms,
        preprocess_ms,
        latency_ms: LatencySummary {
            p50,
            p95: percentile(&times, 0.95),
            mean: times.iter().sum::<f64>() / times.len() as f64,
            min: times[0],
        },
        throughput_per_s: options.batch as f64 * 1000.0 / p50,
        peak_rss_mib: proc_status_mib("VmHWM"),
        rss_mib: proc_status_mib("VmRSS"),
    })
}

fn prepare(model: &LoadedModel, task: Task, options: &BenchOptions) -> Result<model::Batch, Error> {
    let n = options.batch;
    Ok(match task {
        Task::ImageClassification => {
            let images = vec![bench_image(options.image.as_ref())?; n];
            model.prepare(&Request::Images(&images))?
        }
        Task::ZeroShotImageClassification => {
            let images = vec![bench_image(options.image.as_ref())?; n];
            let labels: Vec<String> = BENCH_LABELS.iter().map(|s| s.to_string()).collect();
            model.prepare(&Request::ZeroShot { images: &images, labels: &labels, template: None })?
        }
        Task::ZeroShotTextClassification => {
            let texts = vec![BENCH_TEXT.to_string(); n];
            let labels: Vec<String> = BENCH_LABELS.iter().map(|s| s.to_string()).collect();
            model.prepare(&Request::ZeroShotTexts {
                texts: &texts,
                labels: &labels,
                template: None,
                multi_label: false,
            })?
        }
        Task::TextClassification | Task::TextEmbedding => {
            let texts = vec![BENCH_TEXT.to_string(); n];
            model.prepare(&Request::Texts { texts: &texts, max_tokens: Some(options.seq_len) })?
        }
    })
}
