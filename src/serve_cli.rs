//! `modeldeck serve` (a model behind the Open Inference Protocol) and `modeldeck loadtest`
//! (concurrent clients against any model, local or remote).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use modeldeck::eval::{Dataset, ExampleInput};
use modeldeck::model;
use modeldeck::predict::{self, NamedImage, PredictRequest};
use modeldeck::serve::{ServeOptions, Server};
use modeldeck::source::ModelSource;

use crate::CommonSource;

#[derive(Args)]
pub struct ServeArgs {
    /// The model to serve: anything `--model` takes (a Hub id, a folder, demo:<name>, even a
    /// remote endpoint, which makes this a logging proxy).
    #[arg(long)]
    model: String,
    /// Where to listen (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// The model's name in URLs, /v2/models/NAME (default: the model's name, made URL-safe).
    #[arg(long)]
    name: Option<String>,
    /// The version it answers as (/v2/models/NAME/versions/VERSION).
    #[arg(long, default_value = "1")]
    version: String,
    /// Most inputs run in one model call.
    #[arg(long, default_value_t = 32)]
    max_batch: usize,
    /// How long to wait for more requests to batch with the first one.
    #[arg(long, default_value = "2ms", value_parser = crate::parse_duration)]
    batch_window: Duration,
    /// Requests waiting for the model at most; beyond it the server answers 503.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    allow_remote: bool,
    /// Every request also goes to the prediction log, with origin `serve`.
    #[command(flatten)]
    log: crate::DefaultLogArgs,
    #[command(flatten)]
    precision: crate::PrecisionArgs,
    #[command(flatten)]
    common: CommonSource,
}

pub fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    let source = ModelSource::parse(&args.model)?;
    let show = matches!(source, ModelSource::Hub { .. });
    let model =
        Arc::new(model::load_source(&source, &crate::load_options(&args.common, args.precision.precision, show))?);
    let name = args.name.clone().unwrap_or_else(|| url_name(&model.card().name));
    let log = args.log.open()?;
    let log_path = log.as_ref().map(|l| l.path().display().to_string());
    let options = ServeOptions {
        addr: args.addr,
        name: name.clone(),
        version: args.version.clone(),
        max_batch: args.max_batch,
        window: args.batch_window,
        queue: args.queue,
        log,
        allow_remote: args.allow_remote,
    };
    let card = model.card();
    let labels = if card.labels.is_empty() { String::new() } else { format!(", {} labels", card.labels.len()) };
    eprintln!("{} ({}, {}{labels}) loaded in {:.0} ms", card.name, card.architecture, card.task, card.load_ms);
    // Printed once the port is bound (port 0 picks one).
    let printed = format!(
        "serving `{name}` version {} over the Open Inference Protocol v2\n  POST http://{{addr}}/v2/models/{name}/infer\n  metrics: http://{{addr}}/metrics{}\n  Ctrl+C stops (requests in flight are answered)",
        args.version,
        log_path.map(|p| format!("\n  every request is logged to {p}")).unwrap_or_default()
    );
    Server::run_until_signal(model, options, move |addr| {
        println!("{}", printed.replace("{addr}", &addr.to_string()));
    })?;
    Ok(())
}

/// A model name as a URL path segment: letters, digits, `-`, `_`, `.`.
fn url_name(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    let cleaned: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
    if cleaned.trim_matches('-').is_empty() {
        "model".into()
    } else {
        cleaned
    }
}

#[derive(Args)]
pub struct LoadtestArgs {
    /// The model: local (in-process) or remote (oip+http://…, tei+http://…).
    #[arg(long)]
    model: String,
    /// Records to send, cycled (a folder, CSV or JSONL; images or texts).
    #[arg(long)]
    data: PathBuf,
    /// Concurrent clients; several values run one after the other (1,8,32).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Inputs per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// How long each concurrency level runs (after a warm-up of one request per client).
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    duration: Duration,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
}

#[derive(serde::Serialize)]
struct LoadResult {
    concurrency: usize,
    batch: usize,
    requests: u64,
    errors: u64,
    seconds: f64,
    requests_per_s: f64,
    inputs_per_s: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_error: Option<String>,
}

pub fn run_loadtest(args: LoadtestArgs) -> anyhow::Result<()> {
    let source = ModelSource::parse(&args.model)?;
    let model = Arc::new(model::load_source(&source, &crate::resolve_options(&args.common, false))?);
    let data = Dataset::load(&args.data)?;
    let inputs: Vec<Input> = data
        .examples
        .iter()
        .filter_map(|e| match &e.input {
            ExampleInput::Image(path) => model::decode_image_file(path)
                .ok()
                .map(|img| Input::Image(NamedImage { name: path.display().to_string(), image: Arc::new(img) })),
            ExampleInput::Text(t) => Some(Input::Text(t.clone())),
            ExampleInput::Invalid(_) => None,
        })
        .collect();
    if inputs.is_empty() {
        anyhow::bail!("{} holds no readable records", args.data.display());
    }
    if inputs.iter().any(|i| matches!(i, Input::Image(_))) != model.task().takes_images() {
        anyhow::bail!("{} is for {} but {} holds other inputs", model.card().name, model.task(), args.data.display());
    }
    if model.task().takes_candidate_labels() {
        anyhow::bail!("loadtest does not run zero-shot models (they need candidate labels per request)");
    }
    let inputs = Arc::new(inputs);
    let mut results = Vec::new();
    for &clients in &args.concurrency {
        let result = load_level(&model, &inputs, clients.max(1), args.batch.max(1), args.duration);
        if !args.json {
            println!(
                "{:>3} clients x batch {}: {:>9.1} requests/s  {:>9.1} inputs/s  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  errors {}",
                result.concurrency, result.batch, result.requests_per_s, result.inputs_per_s, result.p50_ms, result.p90_ms, result.p99_ms, result.errors
            );
            if let Some(e) = &result.first_error {
                println!("    first error: {e}");
            }
        }
        results.push(result);
    }
    if args.json {
        let card = model.card();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "model": card.name, "source": card.source, "remote": model.is_remote(), "results": results,
            }))?
        );
    }
    Ok(())
}

#[derive(Clone)]
enum Input {
    Image(NamedImage),
    Text(String),
}

/// `batch` records from `start` on, cycling; the data set holds one kind of input.
fn make_request(inputs: &[Input], start: usize, batch: usize) -> PredictRequest {
    let picked = (0..batch).map(|k| &inputs[(start + k) % inputs.len()]);
    match &inputs[0] {
        Input::Image(_) => PredictRequest::images(
            picked.filter_map(|i| if let Input::Image(n) = i { Some(n.clone()) } else { None }).collect(),
        ),
        Input::Text(_) => PredictRequest::texts(
            picked.filter_map(|i| if let Input::Text(t) = i { Some(t.clone()) } else { None }).collect(),
        ),
    }
}

fn load_level(
    model: &Arc<model::LoadedModel>,
    inputs: &Arc<Vec<Input>>,
    clients: usize,
    batch: usize,
    duration: Duration,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(Mutex::new(None::<String>));
    // Warm-up: one request per client, not timed.
    for c in 0..clients {
        let _ = predict::predict(model, &make_request(inputs, c * batch, batch));
    }
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (model, next, stop, first_error) = (model.clone(), next.clone(), stop.clone(), first_error.clone());
            let inputs = inputs.clone();
            std::thread::spawn(move || {
                let mut latencies = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok();
                let (mut ok, mut errors) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let req = make_request(&inputs, next.fetch_add(batch, Ordering::Relaxed), batch);
                    let t = Instant::now();
                    match predict::predict(&model, &req) {
                        Ok(_) => {
                            ok += 1;
                            if let Some(h) = latencies.as_mut() {
                                let _ = h.record((t.elapsed().as_secs_f64() * 1e6).max(1.0) as u64);
                            }
                        }
                        Err(e) => {
                            errors += 1;
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                }
                (ok, errors, latencies)
            })
        })
        .collect();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    let mut merged = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).ok();
    let (mut ok, mut errors) = (0u64, 0u64);
    for h in handles {
        if let Ok((o, e, lat)) = h.join() {
            ok += o;
            errors += e;
            if let (Some(m), Some(l)) = (merged.as_mut(), lat) {
                let _ = m.add(l);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let q = |p: f64| merged.as_ref().map_or(f64::NAN, |h| h.value_at_quantile(p) as f64 / 1e3);
    let first_error = first_error.lock().ok().and_then(|e| e.clone());
    LoadResult {
        concurrency: clients,
        batch,
        requests: ok,
        errors,
        seconds,
        requests_per_s: ok as f64 / seconds,
        inputs_per_s: (ok as usize * batch) as f64 / seconds,
        p50_ms: q(0.5),
        p90_ms: q(0.9),
        p99_ms: q(0.99),
        first_error,
    }
}
