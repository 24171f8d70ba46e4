//! `modeldeck batch`, `eval` and `compare`: the batch pipeline and offline evaluation on the
//! command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use modeldeck::eval::evaluation::{Comparison, Evaluation};
use modeldeck::eval::output::{BatchWriter, RunInfo};
use modeldeck::eval::perturb::ImageDrift;
use modeldeck::eval::pipeline::{self, PipelineOptions, Progress};
use modeldeck::eval::{self, Dataset, EvalOptions};

use crate::CommonSource;

#[derive(Args)]
pub struct BatchArgs {
    /// Hub repo id, local folder or file, or demo:<name>.
    #[arg(long)]
    model: String,
    #[command(flatten)]
    precision: crate::PrecisionArgs,
    /// Image folder (DIR/<label>/*.png or a flat folder), CSV or JSONL with a `text` or `image`
    /// column (and optional `id`, `label`).
    #[arg(long)]
    input: PathBuf,
    /// Where the answers go, one row per record: .csv or .jsonl.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Threads that decode and preprocess while the model runs (0: automatic).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Continue an interrupted run of the same model and input: the records already in OUTPUT
    /// are not run again.
    #[arg(long)]
    resume: bool,
    /// Replace OUTPUT if it exists.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Labels kept per record.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
    /// Candidate labels for zero-shot models, image (CLIP, SigLIP) or text (NLI) (default: the data set's labels).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Drift to inject into every image, e.g. "contrast=0.5,noise=0.1".
    #[arg(long)]
    drift: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The answers also go to the prediction log, with origin `batch`.
    #[command(flatten)]
    log: crate::DefaultLogArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonSource,
}

/// What an evaluation runs on, shared by `eval` and `compare`.
#[derive(Args)]
pub struct EvalDataArgs {
    /// Image folder (DIR/<label>/*.png), CSV or JSONL with labels.
    #[arg(long)]
    data: PathBuf,
    /// Drift to inject into every image, e.g. "contrast=0.5,noise=0.1,rotate=20".
    #[arg(long)]
    drift: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Threads that decode and preprocess while the model runs (0: automatic).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// The k of top-k accuracy, comma-separated (default: 3 and 5, below the number of classes).
    #[arg(long, value_delimiter = ',')]
    top_k: Vec<usize>,
    /// Candidate labels for zero-shot models, image (CLIP, SigLIP) or text (NLI) (default: the data set's labels).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Write a report: a self-contained HTML file, or Markdown (by --format or the extension).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The report's format (default: from the extension; html otherwise).
    #[arg(long, value_parser = ["html", "md"])]
    format: Option<String>,
    /// Also append the answers to this prediction log as a batch run (origin `batch`), e.g. to
    /// make it a Monitor drift reference later (`modeldeck log runs`).
    #[arg(long)]
    log: Option<PathBuf>,
    #[command(flatten)]
    common: CommonSource,
}

#[derive(Args)]
pub struct EvalArgs {
    #[arg(long)]
    model: String,
    #[command(flatten)]
    precision: crate::PrecisionArgs,
    #[command(flatten)]
    data: EvalDataArgs,
}

#[derive(Args)]
pub struct CompareArgs {
    /// The current model.
    #[arg(long)]
    a: String,
    /// The candidate.
    #[arg(long)]
    b: String,
    /// Disagreements to list (all of them with --json).
    #[arg(long, default_value_t = 10)]
    show: usize,
    /// Per-model precision: the same checkpoint as f32 (A) and int8 (B) gives quantisation's
    /// accuracy cost on the data set.
    #[command(flatten)]
    precision: crate::ArmPrecisionArgs,
    #[command(flatten)]
    data: EvalDataArgs,
}

/// This process's command line, quoted for a POSIX shell.
fn command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "modeldeck".to_string() } else { a };
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn progress_bar(total: usize, what: &str, hidden: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::new(total as u64);
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!("{what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}");
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "),
    );
    bar
}

fn show_progress(bar: &indicatif::ProgressBar, p: &Progress) {
    bar.set_length(p.total as u64);
    bar.set_position(p.done as u64);
    if p.failed > 0 {
        bar.set_message(format!("{} failed", p.failed));
    }
}

/// A failure reason without the record's own details (its path), to count alike ones together.
fn reason_kind(reason: &str) -> String {
    let reason = reason.split_once(": ").map_or(reason, |(head, tail)| if head.contains('/') { tail } else { reason });
    reason.chars().take(80).collect()
}

pub fn run_batch(args: BatchArgs) -> anyhow::Result<()> {
    let data = Dataset::load(&args.input)?;
    let model = crate::replay_model(&args.model, &data, &args.common, args.precision.precision, args.json)?;
    let drift = args.drift.as_deref().map(ImageDrift::parse).transpose()?.filter(|d| !d.is_identity());
    let info = RunInfo {
        run: pipeline::new_run_id(),
        model: model.card().source.clone(),
        data: std::fs::canonicalize(&args.input).unwrap_or_else(|_| args.input.clone()).display().to_string(),
        records: data.examples.len(),
        drift: drift.map(|d| d.to_string()),
        seed: args.seed,
        fingerprint: Some(data.fingerprint()),
    };
    let mut writer = BatchWriter::open(&args.output, info, args.resume, args.overwrite)?;
    let log = args.log.open()?;
    let candidate_labels = match (model.task(), args.labels.is_empty()) {
        (task, true) if task.takes_candidate_labels() => data.labels(),
        (task, false) if task.takes_candidate_labels() => args.labels.clone(),
        (_, true) => Vec::new(),
        (_, false) => anyhow::bail!(
            "candidate labels (--labels) are for zero-shot models; {} answers with its own labels",
            model.card().name
        ),
    };
    let options = PipelineOptions {
        batch_size: args.batch_size,
        workers: args.workers,
        drift,
        seed: args.seed,
        skip: writer.done().clone(),
        top_k: args.top_k,
        features: log.is_some(),
        candidate_labels,
        ..Default::default()
    };
    let run = writer.info().run.clone();
    let card = model.card().clone();
    let bar = progress_bar(data.examples.len().saturating_sub(options.skip.len()), "batch", args.json);
    let mut reasons: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let summary = pipeline::run(
        &model,
        &data,
        &options,
        |answers| {
            writer.write(answers)?;
            for a in answers {
                let o = &a.outcome;
                if let Some(error) = &o.error {
                    let entry = reasons.entry(reason_kind(error)).or_insert((0, format!("{}: {error}", o.id)));
                    entry.0 += 1;
                }
                if let Some(log) = &log {
                    log.record(a.log_record(&card, &run));
                }
            }
            Ok(())
        },
        |p| show_progress(&bar, p),
    )?;
    bar.finish_and_clear();
    if let Some(log) = &log {
        log.flush()?;
    }
    let model_only = (summary.forward_s > 0.0).then(|| summary.answered as f64 / summary.forward_s);
    if args.json {
        let failures: Vec<_> = reasons
            .iter()
            .map(|(kind, (n, example))| serde_json::json!({"reason": kind, "count": n, "example": example}))
            .collect();
        let mut out = serde_json::json!({
            "run": run,
            "output": args.output,
            "summary": summary,
            "throughput_per_s": summary.throughput_per_s(),
            "model_only_per_s": model_only,
            "failures": failures,
        });
        if let Some(log) = &log {
            out["log"] = serde_json::json!(log.path());
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} records: {} answered, {} failed{} in {:.2} s ({:.1}/s; the model alone {}, batch {}, {} workers)",
        summary.answered + summary.failed + summary.skipped,
        summary.answered,
        summary.failed,
        if summary.skipped > 0 { format!(", {} already done (resumed)", summary.skipped) } else { String::new() },
        summary.wall_s,
        summary.throughput_per_s(),
        model_only.map_or("-".into(), |r| format!("{r:.1}/s")),
        summary.batch_size,
        summary.workers,
    );
    for (kind, (n, example)) in &reasons {
        println!("  {n} x {kind}  (e.g. {example})");
    }
    println!("answers in {}", args.output.display());
    if let Some(log) = &log {
        println!("logged to {} as run batch-{run}", log.path().display());
    }
    Ok(())
}

fn eval_options(args: &EvalDataArgs) -> anyhow::Result<EvalOptions> {
    let log = crate::open_log(args.log.as_deref(), Default::default())?;
    Ok(EvalOptions {
        log: log.map(|log| eval::BatchLog { log, run: pipeline::new_run_id() }),
        batch_size: args.batch_size,
        drift: args.drift.as_deref().map(ImageDrift::parse).transpose()?,
        seed: args.seed,
        workers: args.workers,
        top_k: args.top_k.clone(),
        command: command_line(),
        candidate_labels: args.labels.clone(),
        ..Default::default()
    })
}

/// Writes the report `args` asks for, if any.
fn write_report(
    args: &EvalDataArgs,
    html: impl FnOnce() -> String,
    markdown: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let Some(path) = &args.report else { return Ok(()) };
    let md = match args.format.as_deref() {
        Some(f) => f == "md",
        None => path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("md")),
    };
    let text = if md { markdown() } else { html() };
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !args.json {
        println!("report written to {} ({:.0} kB)", path.display(), std::fs::metadata(path)?.len() as f64 / 1e3);
    }
    Ok(())
}

/// Waits for the log to commit the run's rows (`--log`) and says where they are.
fn finish_log(options: &EvalOptions, json: bool) -> anyhow::Result<()> {
    if let Some(eval::BatchLog { log, run }) = &options.log {
        log.flush()?;
        if !json {
            eprintln!("logged to {} as run batch-{run}", log.path().display());
        }
    }
    Ok(())
}

pub fn run_eval(args: EvalArgs) -> anyhow::Result<()> {
    let a = &args.data;
    let data = Dataset::load(&a.data)?;
    let model = crate::replay_model(&args.model, &data, &a.common, args.precision.precision, a.json)?;
    let options = eval_options(a)?;
    let bar = progress_bar(data.examples.len(), "eval", a.json);
    let run = eval::evaluate(&model, &data, &options, |p| show_progress(&bar, p))?;
    bar.finish_and_clear();
    finish_log(&options, a.json)?;
    let e = &run.evaluation;
    if a.json {
        println!("{}", serde_json::to_string_pretty(e)?);
    } else {
        print_evaluation(e, 12);
    }
    write_report(a, || modeldeck::report::evaluation_html(e), || modeldeck::report::evaluation_markdown(e))
}

pub fn run_compare(args: CompareArgs) -> anyhow::Result<()> {
    let d = &args.data;
    let data = Dataset::load(&d.data)?;
    let a = crate::replay_model(&args.a, &data, &d.common, args.precision.a(), d.json)?;
    let b = crate::replay_model(&args.b, &data, &d.common, args.precision.b(), d.json)?;
    let options = eval_options(d)?;
    let bar = progress_bar(data.examples.len(), "A", d.json);
    let (_, _, c) = eval::compare(&a, &b, &data, &options, |arm, p| {
        bar.set_prefix(arm.to_string());
        show_progress(&bar, p)
    })?;
    bar.finish_and_clear();
    finish_log(&options, d.json)?;
    if d.json {
        let mut value = serde_json::to_value(&c)?;
        value["disagreement_records"] = serde_json::json!(c
            .disagreements
            .iter()
            .map(|&i| serde_json::json!({
                "index": i,
                "id": c.a.outcomes[i].id,
                "input": c.a.outcomes[i].input,
                "label": c.a.outcomes[i].label,
                "a": c.a.outcomes[i].prediction,
                "a_confidence": c.a.outcomes[i].confidence,
                "b": c.b.outcomes[i].prediction,
                "b_confidence": c.b.outcomes[i].confidence,
            }))
            .collect::<Vec<_>>());
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_comparison(&c, args.show);
    }
    write_report(d, || modeldeck::report::comparison_html(&c), || modeldeck::report::comparison_markdown(&c))
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The readable summary of an evaluation.
pub fn print_evaluation(e: &Evaluation, examples: usize) {
    println!(
        "{} on {} ({} records{}{})",
        e.model.source,
        e.data,
        e.n,
        e.drift.as_ref().map_or(String::new(), |d| format!(", drift {d}")),
        if e.n_failed > 0 { format!(", {} failed", e.n_failed) } else { String::new() }
    );
    match &e.metrics {
        None => println!("no answered record has a label: nothing to score"),
        Some(m) => {
            println!("accuracy {} ({}/{})", pct(m.accuracy), m.correct, m.n);
            for t in &m.top_k {
                println!("top-{} accuracy {}", t.k, pct(t.accuracy));
            }
            println!(
                "macro P/R/F1 {:.4} {:.4} {:.4} · weighted {:.4} {:.4} {:.4}",
                m.macro_avg.precision,
                m.macro_avg.recall,
                m.macro_avg.f1,
                m.weighted_avg.precision,
                m.weighted_avg.recall,
                m.weighted_avg.f1
            );
            match m.log_loss {
                Some(l) => println!("log loss {l:.4} · ECE (15 bins) {:.4}", m.ece),
                None => println!("ECE (15 bins) {:.4}", m.ece),
            }
            for u in &m.unknown_labels {
                println!("  {} records are labelled `{}`, a label the model does not have", u.count, u.label);
            }
            println!(
                "  {:<14} {:>9} {:>9} {:>9} {:>8} {:>9}",
                "class", "precision", "recall", "f1", "support", "predicted"
            );
            for c in &m.classes {
                println!(
                    "  {:<14} {:>9.4} {:>9.4} {:>9.4} {:>8} {:>9}",
                    c.label, c.precision, c.recall, c.f1, c.support, c.predicted
                );
            }
            if m.classes.len() <= 12 && !m.confusion.is_empty() {
                println!("confusion matrix (rows: label, columns: prediction)");
                let width = m.classes.iter().map(|c| c.label.len()).max().unwrap_or(1).max(5);
                let head: Vec<String> = m.classes.iter().map(|c| format!("{:>width$}", c.label)).collect();
                println!("  {:>width$} {}", "", head.join(" "));
                for (c, row) in m.classes.iter().zip(&m.confusion) {
                    let cells: Vec<String> = row.iter().map(|v| format!("{v:>width$}")).collect();
                    println!("  {:>width$} {}", c.label, cells.join(" "));
                }
            }
        }
    }
    let l = &e.latency;
    println!(
        "latency per record p50 {:.3} ms, p95 {:.3}, p99 {:.3}, max {:.3} (batch {}); {:.1} records/s",
        l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.batch_size, l.throughput_per_s
    );
    let line = |i: usize| {
        let o = &e.outcomes[i];
        format!(
            "  {} label {} → {} ({:.1}%), {:.2} ms",
            o.id,
            o.label.as_deref().unwrap_or("-"),
            o.prediction.as_deref().unwrap_or("-"),
            o.confidence * 100.0,
            o.latency_ms
        )
    };
    if !e.confidently_wrong.is_empty() {
        println!("most confidently wrong:");
        e.confidently_wrong.iter().take(examples.min(5)).for_each(|&i| println!("{}", line(i)));
    }
    if !e.slowest.is_empty() {
        println!("slowest:");
        e.slowest.iter().take(examples.min(3)).for_each(|&i| println!("{}", line(i)));
    }
    let failed: Vec<_> = e.outcomes.iter().filter(|o| o.error.is_some()).collect();
    if !failed.is_empty() {
        println!("failed records:");
        for o in failed.iter().take(examples.min(5)) {
            println!("  {}: {}", o.id, o.error.as_deref().unwrap_or_default());
        }
    }
}

/// A metric of an evaluation, read from its metrics.
type MetricOf = fn(&modeldeck::eval::metrics::Metrics) -> f64;

pub fn print_comparison(c: &Comparison, show: usize) {
    let metric = |e: &Evaluation, f: MetricOf| e.metrics.as_ref().map_or("-".to_string(), |m| format!("{:.4}", f(m)));
    println!("{} records of {}", c.a.n, c.a.data);
    println!("A: {} ({})", c.a.model.name, c.a.model.source);
    println!("B: {} ({})", c.b.model.name, c.b.model.source);
    println!("  {:<22} {:>12} {:>12}", "", "A", "B");
    let rows: [(&str, MetricOf); 5] = [
        ("accuracy", |m| m.accuracy),
        ("macro F1", |m| m.macro_avg.f1),
        ("weighted F1", |m| m.weighted_avg.f1),
        ("log loss", |m| m.log_loss.unwrap_or(f64::NAN)),
        ("ECE", |m| m.ece),
    ];
    for (name, f) in rows {
        println!("  {:<22} {:>12} {:>12}", name, metric(&c.a, f), metric(&c.b, f));
    }
    println!(
        "  {:<22} {:>12} {:>12}",
        "latency p50 (ms)",
        format!("{:.3}", c.a.latency.p50_ms),
        format!("{:.3}", c.b.latency.p50_ms)
    );
    println!("  {:<22} {:>12} {:>12}", "failed records", c.a.n_failed, c.b.n_failed);
    println!("agreement {} on {} records both answered", pct(c.agreement), c.n_paired);
    if let (Some(m), Some(diff)) = (&c.mcnemar, c.accuracy_diff) {
        let [[both, a_only], [b_only, neither]] = c.correctness;
        println!(
            "on {} labelled pairs: both right {both}, only A {a_only}, only B {b_only}, both wrong {neither}",
            c.n_labelled_pairs
        );
        println!(
            "B − A accuracy {:+.2} points; McNemar exact p = {}, χ² (corrected) {:.3}, p = {}",
            diff * 100.0,
            modeldeck::stats::sequential::format_p(m.exact.pvalue),
            m.chi2_corrected.statistic,
            modeldeck::stats::sequential::format_p(m.chi2_corrected.pvalue)
        );
    }
    if !c.disagreements.is_empty() {
        println!(
            "{} disagreements{}:",
            c.disagreements.len(),
            if c.disagreements.len() > show { format!(" (first {show})") } else { String::new() }
        );
        for &i in c.disagreements.iter().take(show) {
            let (a, b) = (&c.a.outcomes[i], &c.b.outcomes[i]);
            println!(
                "  {} label {}: A {} ({:.1}%) · B {} ({:.1}%)",
                a.id,
                a.label.as_deref().unwrap_or("-"),
                a.prediction.as_deref().unwrap_or("-"),
                a.confidence * 100.0,
                b.prediction.as_deref().unwrap_or("-"),
                b.confidence * 100.0
            );
        }
    }
}
