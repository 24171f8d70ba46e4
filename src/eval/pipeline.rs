//! The batch pipeline: worker threads read, decode and preprocess whole batches while the
//! caller's thread runs the model on the batches already prepared, so the model never waits on
//! I/O. Batches reach the model (and the caller) in data-set order. A record that cannot be
//! scored (a missing or unreadable image, an empty text, an invalid row) becomes a failed
//! [`Answer`] with its reason and the run goes on. Cancelling stops at the next batch.
//!
//! At most [`PipelineOptions::ahead`] batches are prepared ahead of the model, so memory stays
//! bounded when one worker is slow (a huge image) and the others race ahead.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::Instant;

use image::RgbImage;
use rayon::prelude::*;

use crate::eval::evaluation::ExampleOutcome;
use crate::eval::perturb::ImageDrift;
use crate::eval::{Dataset, Example, ExampleInput};
use crate::model::{Batch, LabelScore, LoadedModel, Request, Response, Task};
use crate::monitor::{features, Features};
use crate::source::CancelToken;
use crate::Error;

#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub batch_size: usize,
    /// Threads that decode and preprocess (0: one per core, at most 4).
    pub workers: usize,
    /// Drift applied to every image (seeded per example, as `eval --drift`).
    pub drift: Option<ImageDrift>,
    pub seed: u64,
    pub cancel: CancelToken,
    /// Data-set indices already done (a resumed run): not run again.
    pub skip: HashSet<usize>,
    /// How many labels each answer keeps.
    pub top_k: usize,
    /// Compute the Monitor's input and output features of every record (a drift reference).
    pub features: bool,
    /// Zero-shot image models: the candidate labels (default: the data set's labels).
    pub candidate_labels: Vec<String>,
    /// Batches prepared ahead of the model at most (0: two per worker).
    pub ahead: usize,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            workers: 0,
            drift: None,
            seed: 0,
            cancel: CancelToken::default(),
            skip: HashSet::new(),
            top_k: 5,
            features: true,
            candidate_labels: Vec::new(),
            ahead: 0,
        }
    }
}

/// One record's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub outcome: ExampleOutcome,
    /// Probabilities in label order (empty for embeddings and failed records).
    pub probs: Vec<f32>,
    pub embedding: Option<Vec<f32>>,
    /// Input and output features, when asked for.
    pub features: Features,
}

impl Answer {
    /// The prediction-log row of this answer in batch run `run` (origin `batch`, request id
    /// `batch-RUN-INDEX`), with its features and its label.
    pub fn log_record(&self, card: &crate::model::ModelCard, run: &str) -> crate::store::PredictionRecord {
        use crate::store::{Origin, PredictionRecord};
        let o = &self.outcome;
        let mut r = PredictionRecord::new(card.source.clone(), Origin::Batch, format!("batch-{run}-{}", o.index));
        r.revision = card.revision.clone();
        r.input_ref = Some(if o.is_image { o.input.clone() } else { crate::store::text_reference(&o.input) });
        r.features = (!self.features.is_empty()).then(|| self.features.to_json());
        r.prediction = o.prediction.clone();
        r.score = o.prediction.as_ref().map(|_| o.confidence as f64);
        r.top_k = (!o.top.is_empty()).then(|| serde_json::to_value(&o.top).unwrap_or_default());
        r.latency_ms = o.error.is_none().then_some(o.latency_ms);
        r.error = o.error.clone();
        r.label = o.label.clone();
        r
    }
}

/// A new batch run's id: local time to the millisecond (`20261201-031947414`).
pub fn new_run_id() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S%3f").to_string()
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Progress {
    /// Records answered or failed in this run.
    pub done: usize,
    /// Records this run has to do (skipped ones excluded).
    pub total: usize,
    pub failed: usize,
    pub elapsed_s: f64,
}

impl Progress {
    pub fn rate_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.done as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
    /// Seconds left at the rate so far.
    pub fn eta_s(&self) -> Option<f64> {
        let rate = self.rate_per_s();
        (rate > 0.0).then(|| (self.total - self.done) as f64 / rate)
    }
}

/// A finished (or cancelled) run.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub answered: usize,
    pub failed: usize,
    /// Records skipped as already done.
    pub skipped: usize,
    pub cancelled: bool,
    pub wall_s: f64,
    /// Time in the model's forward pass alone (batched; records that ran alone after their
    /// batch failed are not counted).
    pub forward_s: f64,
    /// Time on the caller's thread per batch: the forward pass, reading the scores, and the
    /// caller's own handling of the answers (writing them out).
    pub consume_s: f64,
    /// Time the workers spent decoding and preprocessing (summed over workers).
    pub prepare_s: f64,
    pub batch_size: usize,
    pub workers: usize,
}

impl Summary {
    /// Records per second, wall clock.
    pub fn throughput_per_s(&self) -> f64 {
        if self.wall_s > 0.0 {
            (self.answered + self.failed) as f64 / self.wall_s
        } else {
            0.0
        }
    }
}

/// What the model takes.
#[derive(Debug, Clone)]
enum Decoded {
    Image(RgbImage),
    Text(String),
}

struct Item {
    index: usize,
    input: Result<Decoded, String>,
    decode_ms: f64,
    features: Features,
}

struct Prepared {
    chunk: usize,
    items: Vec<Item>,
    batch: Option<Result<Batch, String>>,
    prepare_ms: f64,
}

/// Runs every record of `data` not in `options.skip` through `model`. `on_batch` gets each
/// batch's answers in data-set order (an error from it stops the run and is returned);
/// `on_progress` is called after each batch.
pub fn run(
    model: &LoadedModel,
    data: &Dataset,
    options: &PipelineOptions,
    mut on_batch: impl FnMut(&[Answer]) -> Result<(), Error>,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Summary, Error> {
    let started = Instant::now();
    let task = model.task();
    if task.takes_candidate_labels() && options.candidate_labels.is_empty() {
        return Err(Error::Usage(format!(
            "{} is a zero-shot model: it needs candidate labels (the data set's labels, or --labels)",
            model.card().name
        )));
    }
    let labels: Vec<String> =
        if task.takes_candidate_labels() { options.candidate_labels.clone() } else { model.labels().to_vec() };
    let batch_size = options.batch_size.max(1);
    let todo: Vec<usize> = (0..data.examples.len()).filter(|i| !options.skip.contains(i)).collect();
    let chunks: Vec<&[usize]> = todo.chunks(batch_size).collect();
    let workers = match options.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        n => n,
    }
    .min(chunks.len().max(1));
    let ahead = if options.ahead == 0 { 2 * workers } else { options.ahead };
    let mut summary = Summary { skipped: data.examples.len() - todo.len(), batch_size, workers, ..Default::default() };
    let mut progress = Progress { total: todo.len(), ..Default::default() };

    let next_chunk = AtomicUsize::new(0);
    // The first chunk the model has not finished: workers wait while they are `ahead` past it.
    let window = (Mutex::new(0usize), Condvar::new());
    let prepare_ns = AtomicUsize::new(0);
    // Set when the run stops early (cancelled, or `on_batch` failed).
    let stop = AtomicBool::new(false);
    let stopping = || stop.load(Ordering::Relaxed) || options.cancel.is_cancelled();
    let (tx, rx) = mpsc::sync_channel::<Prepared>(ahead);
    let prepared_by_workers = |tx: mpsc::SyncSender<Prepared>| loop {
        let chunk = next_chunk.fetch_add(1, Ordering::Relaxed);
        if chunk >= chunks.len() {
            return;
        }
        {
            let (lock, ready) = &window;
            let mut processed = lock.lock().unwrap_or_else(|e| e.into_inner());
            while chunk >= *processed + ahead && !stopping() {
                processed = ready
                    .wait_timeout(processed, std::time::Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        if stopping() {
            return;
        }
        let t = Instant::now();
        let prepared = prepare_chunk(model, data, options, &labels, chunk, chunks[chunk]);
        prepare_ns.fetch_add(t.elapsed().as_nanos() as usize, Ordering::Relaxed);
        if tx.send(prepared).is_err() {
            return;
        }
    };

    let outcome = std::thread::scope(|scope| -> Result<(), Error> {
        for _ in 0..workers {
            let tx = tx.clone();
            std::thread::Builder::new()
                .name("modeldeck-batch".into())
                .spawn_scoped(scope, || prepared_by_workers(tx))
                .map_err(|e| Error::Usage(format!("could not start a batch worker: {e}")))?;
        }
        drop(tx);
        let _stop_on_unwind = StopOnDrop(&stop);
        let mut waiting: BTreeMap<usize, Prepared> = BTreeMap::new();
        let mut next = 0;
        let result = (|| {
            for prepared in &rx {
                waiting.insert(prepared.chunk, prepared);
                while let Some(prepared) = waiting.remove(&next) {
                    let t = Instant::now();
                    let (answers, forward_s) = answer_chunk(model, &labels, options, data, prepared);
                    summary.forward_s += forward_s;
                    let failed = answers.iter().filter(|a| a.outcome.error.is_some()).count();
                    summary.failed += failed;
                    summary.answered += answers.len() - failed;
                    on_batch(&answers)?;
                    summary.consume_s += t.elapsed().as_secs_f64();
                    next += 1;
                    {
                        let (lock, ready) = &window;
                        *lock.lock().unwrap_or_else(|e| e.into_inner()) = next;
                        ready.notify_all();
                    }
                    progress.done += answers.len();
                    progress.failed += failed;
                    progress.elapsed_s = started.elapsed().as_secs_f64();
                    on_progress(&progress);
                }
                if options.cancel.is_cancelled() {
                    return Ok(());
                }
            }
            Ok(())
        })();
        // Unblock the workers: they see the flag (or the closed channel) and stop.
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        window.1.notify_all();
        result
    });
    outcome?;
    summary.cancelled = options.cancel.is_cancelled() && progress.done < progress.total;
    summary.prepare_s = prepare_ns.load(Ordering::Relaxed) as f64 / 1e9;
    summary.wall_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Decodes one record on a worker: the image (with drift) or the text, and its input features.
fn decode(model: &LoadedModel, example: &Example, options: &PipelineOptions, index: usize) -> Item {
    let t = Instant::now();
    let input = match &example.input {
        ExampleInput::Image(_) if !model.task().takes_images() => {
            Err(format!("{} reads text, and this record is an image", model.card().name))
        }
        ExampleInput::Text(_) if model.task().takes_images() => {
            Err(format!("{} reads images, and this record is a text", model.card().name))
        }
        ExampleInput::Image(_) => super::load_image(example, options.drift.as_ref(), options.seed, index)
            .map(Decoded::Image)
            .map_err(|e| e.to_string()),
        ExampleInput::Text(text) if text.trim().is_empty() => Err("empty text".into()),
        ExampleInput::Text(text) => Ok(Decoded::Text(text.clone())),
        ExampleInput::Invalid(reason) => Err(reason.clone()),
    };
    let decode_ms = t.elapsed().as_secs_f64() * 1e3;
    let features = match (&input, options.features) {
        (Ok(Decoded::Image(image)), true) => features::image_features(image),
        (Ok(Decoded::Text(text)), true) => features::text_features(model, text).unwrap_or_default(),
        _ => Features::default(),
    };
    Item { index, input, decode_ms, features }
}

fn request<'a>(task: Task, labels: &'a [String], images: &'a [RgbImage], texts: &'a [String]) -> Request<'a> {
    if task == Task::ZeroShotTextClassification {
        Request::ZeroShotTexts { texts, labels, template: None, multi_label: false }
    } else if !task.takes_images() {
        Request::Texts { texts, max_tokens: None }
    } else if task == Task::ZeroShotImageClassification {
        Request::ZeroShot { images, labels, template: None }
    } else {
        Request::Images(images)
    }
}

/// Preprocesses the decodable records of `items` as one batch.
fn prepare_items(model: &LoadedModel, labels: &[String], items: &[&Item]) -> Result<Batch, String> {
    let (mut images, mut texts) = (Vec::new(), Vec::new());
    for item in items {
        match &item.input {
            Ok(Decoded::Image(image)) => images.push(image.clone()),
            Ok(Decoded::Text(text)) => texts.push(text.clone()),
            Err(_) => {}
        }
    }
    model.prepare(&request(model.task(), labels, &images, &texts)).map_err(|e| e.to_string())
}

fn prepare_chunk(
    model: &LoadedModel,
    data: &Dataset,
    options: &PipelineOptions,
    labels: &[String],
    chunk: usize,
    indices: &[usize],
) -> Prepared {
    // Decoding runs in the rayon pool the model's kernels use, record by record, so decoding and
    // the forward pass share the cores instead of oversubscribing them.
    // A panic in a decoder or the preprocessing fails its records (or its batch), never the run:
    // a lost chunk would leave the in-order delivery waiting for it.
    let items: Vec<Item> = indices
        .par_iter()
        .with_max_len(4)
        .map(|&i| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode(model, &data.examples[i], options, i)))
                .unwrap_or_else(|panic| Item {
                    index: i,
                    input: Err(format!("internal error while decoding: {}", panic_message(&panic))),
                    decode_ms: 0.0,
                    features: Features::default(),
                })
        })
        .collect();
    let good: Vec<&Item> = items.iter().filter(|i| i.input.is_ok()).collect();
    let t = Instant::now();
    let batch = (!good.is_empty()).then(|| prepare_caught(model, labels, &good));
    Prepared { chunk, items, batch, prepare_ms: t.elapsed().as_secs_f64() * 1e3 }
}

/// [`prepare_items`], with a panic in the preprocessing turned into this batch's error.
fn prepare_caught(model: &LoadedModel, labels: &[String], items: &[&Item]) -> Result<Batch, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare_items(model, labels, items)))
        .unwrap_or_else(|panic| Err(format!("internal error while preprocessing: {}", panic_message(&panic))))
}

/// The forward pass, with a panic in a kernel turned into this batch's error.
fn forward_caught(model: &LoadedModel, batch: &Batch) -> Result<Response, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.forward(batch))) {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(panic) => Err(format!("internal error in the model: {}", panic_message(&panic))),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Sets the run's stop flag when dropped, so the workers end even if the delivering thread
/// unwinds.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One record's part of a response.
enum Single {
    Scores(crate::model::Scores),
    Embedding(Vec<f32>),
}

fn split(response: Response) -> Vec<Single> {
    match response {
        Response::Scores(s) => s.into_iter().map(Single::Scores).collect(),
        Response::Embeddings(e) => e.into_iter().map(Single::Embedding).collect(),
    }
}

/// Runs the model on a prepared chunk; returns the answers and the seconds in the batched
/// forward pass. When the batch as a whole fails (one record the tokenizer or the network
/// rejects), each record runs alone so only the bad one fails.
fn answer_chunk(
    model: &LoadedModel,
    labels: &[String],
    options: &PipelineOptions,
    data: &Dataset,
    prepared: Prepared,
) -> (Vec<Answer>, f64) {
    let Prepared { items, batch, prepare_ms, .. } = prepared;
    let good: Vec<&Item> = items.iter().filter(|i| i.input.is_ok()).collect();
    let t = Instant::now();
    let batched = batch.map(|b| b.and_then(|b| forward_caught(model, &b)));
    let forward_s = t.elapsed().as_secs_f64();
    let mut results: Vec<Result<(Single, f64), String>> = Vec::with_capacity(good.len());
    match batched {
        Some(Ok(response)) => {
            let share = (prepare_ms + forward_s * 1e3) / good.len().max(1) as f64;
            let mut singles = split(response).into_iter();
            for item in &good {
                results.push(
                    singles
                        .next()
                        .map(|s| (s, item.decode_ms + share))
                        .ok_or_else(|| "the model gave no answer".into()),
                );
            }
        }
        Some(Err(_)) => {
            for item in &good {
                let t = Instant::now();
                let r = prepare_caught(model, labels, &[item])
                    .and_then(|b| forward_caught(model, &b))
                    .and_then(|r| split(r).pop().ok_or_else(|| "the model gave no answer".into()))
                    .map(|s| (s, item.decode_ms + t.elapsed().as_secs_f64() * 1e3));
                results.push(r);
            }
        }
        None => {}
    }
    let mut results = results.into_iter();
    let answers = items
        .into_iter()
        .map(|item| {
            let example = &data.examples[item.index];
            let result = match item.input {
                Ok(_) => results.next().unwrap_or_else(|| Err("no answer from the model".into())),
                Err(reason) => Err(reason),
            };
            answer(example, item.index, item.features, result, labels, options)
        })
        .collect();
    (answers, forward_s)
}

fn answer(
    example: &Example,
    index: usize,
    mut features: Features,
    result: Result<(Single, f64), String>,
    labels: &[String],
    options: &PipelineOptions,
) -> Answer {
    let (input, is_image) = match &example.input {
        ExampleInput::Image(path) => (path.display().to_string(), true),
        ExampleInput::Text(text) => (text.clone(), false),
        ExampleInput::Invalid(_) => (String::new(), false),
    };
    let mut outcome = ExampleOutcome {
        index,
        id: example.id.clone(),
        input,
        is_image,
        label: example.label.clone(),
        prediction: None,
        confidence: 0.0,
        top: Vec::new(),
        latency_ms: 0.0,
        error: None,
    };
    let (mut probs, mut embedding) = (Vec::new(), None);
    match result {
        Err(reason) => outcome.error = Some(reason),
        Ok((single, latency_ms)) => {
            outcome.latency_ms = latency_ms;
            match single {
                Single::Scores(s) => {
                    outcome.top = s.top_k(labels, options.top_k.max(1));
                    if let Some(LabelScore { label, score }) = outcome.top.first() {
                        outcome.prediction = Some(label.clone());
                        outcome.confidence = *score;
                    }
                    if options.features {
                        features.extend(features::score_features(&s.probs));
                    }
                    probs = s.probs;
                }
                Single::Embedding(v) => {
                    if options.features {
                        features.extend(features::embedding_features(&v));
                    }
                    embedding = Some(v);
                }
            }
        }
    }
    Answer { outcome, probs, embedding, features }
}

/// The model alone on the same data and batch size: every batch is decoded and preprocessed
/// first (untimed), then the forward passes run back to back. Returns the records run and the
/// seconds in the forward passes: the throughput the pipeline is measured against.
pub fn model_only(model: &LoadedModel, data: &Dataset, options: &PipelineOptions) -> Result<(usize, f64), Error> {
    let labels: Vec<String> =
        if model.task().takes_candidate_labels() { options.candidate_labels.clone() } else { model.labels().to_vec() };
    let indices: Vec<usize> = (0..data.examples.len()).collect();
    let mut batches = Vec::new();
    for (chunk, indices) in indices.chunks(options.batch_size.max(1)).enumerate() {
        let prepared = prepare_chunk(model, data, options, &labels, chunk, indices);
        if let Some(Ok(batch)) = prepared.batch {
            batches.push(batch);
        }
    }
    let records: usize = batches.iter().map(|b| b.size).sum();
    let t = Instant::now();
    for batch in &batches {
        model.forward(batch)?;
    }
    Ok((records, t.elapsed().as_secs_f64()))
}
