//! The Evaluate view: run a slot's model (or both, paired) over a data set — an image folder, a
//! CSV or a JSONL, dropped on the window or typed — and read the result: the metrics, the
//! confusion matrix (click a cell to see its records), the reliability diagram, the slowest and
//! most confidently wrong records, the disagreements of two models side by side; export the
//! report, and make the data set the Monitor's drift reference.
//!
//! The run happens on a thread of its own (the batch pipeline under it has its own workers); the
//! view reads its progress and picks up the result when it ends. Thumbnails decode on another
//! thread, a few at a time, as they scroll into view.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use crate::engine::Slot;
use crate::eval::evaluation::{Comparison, Evaluation, ExampleOutcome};
use crate::eval::metrics::Metrics;
use crate::eval::perturb::ImageDrift;
use crate::eval::pipeline::Progress;
use crate::eval::{self, BatchLog, EvalOptions, EvalRun};
use crate::model::LoadedModel;
use crate::monitor::Monitor;
use crate::source::CancelToken;
use crate::store::PredictionLog;

/// A message for the app's log: `Ok` for information, `Err` for an error.
pub type Note = Result<String, String>;

/// What the view needs from the app for one frame.
pub struct EvaluateContext<'a> {
    pub a: Option<Arc<LoadedModel>>,
    pub b: Option<Arc<LoadedModel>>,
    pub monitor: &'a Monitor,
    pub log: Option<PredictionLog>,
    /// Where exported reports and answers go.
    pub export_dir: PathBuf,
}

/// What the user set up.
#[derive(Debug, Clone)]
pub struct EvaluateForm {
    /// A folder, CSV or JSONL; empty means the shipped digits test split.
    pub data: String,
    /// Image drift for a drifted copy (`contrast=0.5,noise=0.1`); empty for none.
    pub drift: String,
    pub batch_size: usize,
}

impl Default for EvaluateForm {
    fn default() -> Self {
        Self { data: String::new(), drift: String::new(), batch_size: 64 }
    }
}

/// What a finished run holds.
pub enum Outcome {
    One { slot: Slot, run: Box<EvalRun> },
    Two { a: Box<EvalRun>, b: Box<EvalRun>, comparison: Box<Comparison> },
}

impl Outcome {
    fn evaluation(&self, side: Slot) -> &Evaluation {
        match (self, side) {
            (Outcome::One { run, .. }, _) => &run.evaluation,
            (Outcome::Two { a, .. }, Slot::A) => &a.evaluation,
            (Outcome::Two { b, .. }, Slot::B) => &b.evaluation,
        }
    }
    fn run(&self, side: Slot) -> &EvalRun {
        match (self, side) {
            (Outcome::One { run, .. }, _) => run,
            (Outcome::Two { a, .. }, Slot::A) => a,
            (Outcome::Two { b, .. }, Slot::B) => b,
        }
    }
}

/// Which records the browser lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Browse {
    /// Label `classes[row]` predicted as `classes[column]` (of the shown model's metrics).
    Cell {
        row: usize,
        column: usize,
    },
    ConfidentlyWrong,
    Slowest,
    Failed,
    Disagreements,
    All,
}

struct Job {
    cancel: CancelToken,
    progress: Arc<Mutex<(char, Progress)>>,
    rx: Receiver<Result<Outcome, String>>,
    started: Instant,
    what: String,
}

enum Thumb {
    Loading,
    Ready(egui::TextureHandle),
    Failed(String),
}

pub struct EvaluateView {
    pub form: EvaluateForm,
    job: Option<Job>,
    result: Option<Outcome>,
    /// The model whose matrix, diagram and classes are shown (A or B when comparing).
    pub side: Slot,
    pub browse: Browse,
    /// Records of the browser shown (grows with "Show more").
    shown: usize,
    /// The browser's record indices for (result generation, side, selection): a filter over
    /// every outcome, so it runs when the selection changes, not every frame.
    listed: Option<(ListKey, Arc<[usize]>)>,
    /// Thumbnails of the shown result's records, by record index.
    thumbs: HashMap<usize, Thumb>,
    /// Bumped with every new result, so a late thumbnail of an old one is dropped.
    generation: u64,
    thumb_tx: Option<Sender<ThumbJob>>,
    thumb_rx: Option<Receiver<ThumbDone>>,
    /// Notes of the exports running in the background.
    export_tx: Sender<Note>,
    export_rx: Receiver<Note>,
}

/// What the browser lists: the result's generation, the side shown and the selection.
type ListKey = (u64, Slot, Browse);

/// A made thumbnail: the result generation, the record's index, the image or why there is none.
type ThumbDone = (u64, usize, Result<egui::ColorImage, String>);

/// A thumbnail to make: the image the model saw (with the evaluation's drift).
struct ThumbJob {
    generation: u64,
    index: usize,
    path: String,
    drift: Option<String>,
    seed: u64,
}

impl Default for EvaluateView {
    fn default() -> Self {
        let (export_tx, export_rx) = std::sync::mpsc::channel();
        Self {
            export_tx,
            export_rx,
            form: EvaluateForm::default(),
            job: None,
            result: None,
            side: Slot::A,
            browse: Browse::ConfidentlyWrong,
            shown: PAGE,
            listed: None,
            thumbs: HashMap::new(),
            generation: 0,
            thumb_tx: None,
            thumb_rx: None,
        }
    }
}

/// Records per page of the browser.
const PAGE: usize = 24;
/// Thumbnail edge, pixels.
const THUMB: u32 = 72;

impl EvaluateView {
    /// The finished run, if any (tests).
    pub fn result(&self) -> Option<&Outcome> {
        self.result.as_ref()
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// A dropped folder, CSV or JSONL becomes the data set.
    pub fn set_data(&mut self, path: &Path) {
        self.form.data = path.display().to_string();
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, cx: EvaluateContext<'_>) -> Vec<Note> {
        let mut notes = self.poll();
        notes.extend(self.export_rx.try_iter());
        self.receive_thumbs(ui.ctx());
        self.form_ui(ui, &cx, &mut notes);
        ui.separator();
        if self.result.is_none() {
            ui.label(
                "Evaluate a slot's model on a labelled data set (a folder DIR/<label>/*.png, or a CSV/JSONL with \
                 `image` or `text` and `label` columns; drop one on the window), or compare A and B on the same \
                 records. Leave the data set empty for the shipped digits test split; add a drift for a drifted \
                 copy. Unlabelled data works too: you get the answers and the latency.",
            );
            return notes;
        }
        // A new result starts at its top (its own scroll state).
        egui::ScrollArea::vertical()
            .id_salt(("evaluate-result", self.generation))
            .auto_shrink([false, false])
            .show(ui, |ui| self.result_ui(ui, &cx, &mut notes));
        notes
    }

    fn poll(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        let Some(job) = &self.job else { return notes };
        match job.rx.try_recv() {
            Ok(Ok(outcome)) => {
                notes.push(Ok(format!("{} done in {:.1} s", job.what, job.started.elapsed().as_secs_f64())));
                self.browse = match &outcome {
                    Outcome::Two { .. } => Browse::Disagreements,
                    Outcome::One { run, .. } if run.evaluation.metrics.is_none() => Browse::All,
                    _ => Browse::ConfidentlyWrong,
                };
                self.side = match &outcome {
                    Outcome::One { slot, .. } => *slot,
                    Outcome::Two { .. } => Slot::A,
                };
                self.shown = PAGE;
                self.thumbs.clear();
                self.generation += 1;
                self.result = Some(outcome);
                self.job = None;
            }
            Ok(Err(e)) => {
                notes.push(Err(format!("{}: {e}", job.what)));
                self.job = None;
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                notes.push(Err(format!("{}: the evaluation thread ended without an answer", job.what)));
                self.job = None;
            }
        }
        notes
    }

    fn form_ui(&mut self, ui: &mut egui::Ui, cx: &EvaluateContext<'_>, notes: &mut Vec<Note>) {
        let running = self.job.is_some();
        ui.add_enabled_ui(!running, |ui| {
            ui.horizontal_wrapped(|ui| {
                let label = ui.label("Data set");
                ui.add(
                    egui::TextEdit::singleline(&mut self.form.data)
                        .hint_text("the shipped digits test split")
                        .desired_width(320.0),
                )
                .on_hover_text("an image folder (DIR/<label>/*.png), a .csv or a .jsonl; or drop one on the window")
                .labelled_by(label.id);
                let label = ui.label("drift");
                ui.add(egui::TextEdit::singleline(&mut self.form.drift).hint_text("none").desired_width(170.0))
                    .on_hover_text("image drift for a drifted copy, e.g. contrast=0.5,noise=0.1,rotate=20")
                    .labelled_by(label.id);
                let label = ui.label("batch");
                ui.add(egui::DragValue::new(&mut self.form.batch_size).range(1..=1024)).labelled_by(label.id);
            });
            ui.horizontal_wrapped(|ui| {
                let name = |m: &Option<Arc<LoadedModel>>| m.as_ref().map(|m| m.card().name.clone());
                for (slot, model) in [(Slot::A, &cx.a), (Slot::B, &cx.b)] {
                    let text = match name(model) {
                        Some(n) => format!("Evaluate {} ({n})", slot.name()),
                        None => format!("Evaluate {} (empty)", slot.name()),
                    };
                    if ui.add_enabled(model.is_some(), egui::Button::new(text)).clicked() {
                        self.start(ui.ctx(), cx, vec![slot], notes);
                    }
                }
                if ui.add_enabled(cx.a.is_some() && cx.b.is_some(), egui::Button::new("Compare A and B")).clicked() {
                    self.start(ui.ctx(), cx, vec![Slot::A, Slot::B], notes);
                }
            });
        });
        if let Some(job) = &self.job {
            let (arm, p) = *job.progress.lock().unwrap_or_else(|e| e.into_inner());
            ui.horizontal(|ui| {
                let fraction = if p.total > 0 { p.done as f32 / p.total as f32 } else { 0.0 };
                let eta = p.eta_s().map_or(String::new(), |s| format!(", {s:.0} s left"));
                let failed = if p.failed > 0 { format!(", {} failed", p.failed) } else { String::new() };
                ui.add(egui::ProgressBar::new(fraction).desired_width(360.0).text(format!(
                    "{arm}: {}/{} · {:.0}/s{eta}{failed}",
                    p.done,
                    p.total,
                    p.rate_per_s()
                )));
                if ui.button("Cancel").clicked() {
                    job.cancel.cancel();
                }
            });
            ui.ctx().request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn start(&mut self, ctx: &egui::Context, cx: &EvaluateContext<'_>, slots: Vec<Slot>, notes: &mut Vec<Note>) {
        let drift = match self.form.drift.trim() {
            "" => None,
            spec => match ImageDrift::parse(spec) {
                Ok(d) => Some(d),
                Err(e) => {
                    notes.push(Err(format!("drift: {e}")));
                    return;
                }
            },
        };
        let models: Vec<Arc<LoadedModel>> =
            slots.iter().filter_map(|s| if *s == Slot::A { cx.a.clone() } else { cx.b.clone() }).collect();
        if models.len() != slots.len() {
            notes.push(Err("load a model into the slot first (Models view)".into()));
            return;
        }
        let data_text = self.form.data.trim().to_string();
        let what = match slots.as_slice() {
            [one] => format!("evaluation of {}", one.name()),
            _ => "comparison of A and B".to_string(),
        };
        let cancel = CancelToken::new();
        let progress = Arc::new(Mutex::new(('A', Progress::default())));
        let (tx, rx) = std::sync::mpsc::channel();
        let command = command_line(&slots, &models, &data_text, &self.form.drift, self.form.batch_size);
        let options = EvalOptions {
            batch_size: self.form.batch_size,
            drift,
            cancel: cancel.clone(),
            command,
            log: cx.log.clone().map(|log| BatchLog { log, run: eval::pipeline::new_run_id() }),
            ..Default::default()
        };
        let (ctx, shared) = (ctx.clone(), progress.clone());
        let spawned = std::thread::Builder::new().name("modeldeck-eval".into()).spawn(move || {
            let report = |arm: char, p: &Progress| {
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = (arm, *p);
                ctx.request_repaint();
            };
            let outcome = run_job(&slots, &models, &data_text, &options, report);
            let _ = tx.send(outcome);
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.job = Some(Job { cancel, progress, rx, started: Instant::now(), what }),
            Err(e) => notes.push(Err(format!("cannot start the evaluation thread: {e}"))),
        }
    }

    fn result_ui(&mut self, ui: &mut egui::Ui, cx: &EvaluateContext<'_>, notes: &mut Vec<Note>) {
        let Some(outcome) = &self.result else { return };
        let comparing = matches!(outcome, Outcome::Two { .. });
        actions_ui(ui, outcome, cx, &self.export_tx, notes);
        ui.add_space(4.0);
        match outcome {
            Outcome::One { run, .. } => headline_ui(ui, &[&run.evaluation]),
            Outcome::Two { a, b, comparison } => {
                headline_ui(ui, &[&a.evaluation, &b.evaluation]);
                paired_ui(ui, comparison);
            }
        }
        ui.separator();
        if comparing {
            ui.horizontal(|ui| {
                ui.label("Show the classes of");
                ui.selectable_value(&mut self.side, Slot::A, "A");
                ui.selectable_value(&mut self.side, Slot::B, "B");
            });
        }
        let side = self.side;
        let evaluation = outcome.evaluation(side);
        if let Some(metrics) = &evaluation.metrics {
            let mut clicked = None;
            ui.columns(2, |columns| {
                clicked = confusion_ui(&mut columns[0], metrics, &self.browse);
                reliability_ui(&mut columns[1], metrics);
            });
            if let Some((row, column)) = clicked {
                self.browse = Browse::Cell { row, column };
                self.shown = PAGE;
            }
            ui.collapsing(format!("Per-class precision, recall and F1 ({} classes)", metrics.classes.len()), |ui| {
                classes_ui(ui, metrics)
            });
        }
        ui.separator();
        self.browser_ui(ui);
    }

    fn browser_ui(&mut self, ui: &mut egui::Ui) {
        let Some(outcome) = &self.result else { return };
        let comparison = match outcome {
            Outcome::Two { comparison, .. } => Some(comparison.as_ref()),
            Outcome::One { .. } => None,
        };
        let evaluation = outcome.evaluation(self.side);
        ui.horizontal_wrapped(|ui| {
            ui.strong("Records");
            let failed = evaluation.n_failed;
            let mut choices = vec![
                (Browse::ConfidentlyWrong, format!("Most confidently wrong ({})", evaluation.confidently_wrong.len())),
                (Browse::Slowest, "Slowest".to_string()),
                (Browse::Failed, format!("Failed ({failed})")),
                (Browse::All, format!("All ({})", evaluation.n)),
            ];
            if let Some(c) = comparison {
                choices.insert(0, (Browse::Disagreements, format!("Disagreements ({})", c.disagreements.len())));
            }
            for (choice, text) in choices {
                if ui.selectable_label(self.browse == choice, text).clicked() {
                    self.browse = choice;
                    self.shown = PAGE;
                }
            }
            if let (Browse::Cell { row, column }, Some(m)) = (&self.browse, &evaluation.metrics) {
                if let (Some(r), Some(c)) = (m.classes.get(*row), m.classes.get(*column)) {
                    ui.label(RichText::new(format!("label {} predicted {}", r.label, c.label)).strong());
                }
            }
        });
        let key = (self.generation, self.side, self.browse);
        let indices = match &self.listed {
            Some((k, indices)) if *k == key => Arc::clone(indices),
            _ => {
                let indices: Arc<[usize]> = self.browse_indices(outcome).into();
                self.listed = Some((key, Arc::clone(&indices)));
                indices
            }
        };
        if indices.is_empty() {
            ui.label("No records here.");
            return;
        }
        let noun = if indices.len() == 1 { "record" } else { "records" };
        ui.label(format!(
            "{} {noun}{}",
            indices.len(),
            if indices.len() > self.shown { format!(", the first {}", self.shown) } else { String::new() }
        ));
        let side_b = comparison.map(|c| &c.b);
        let mut wanted = Vec::new();
        egui::Grid::new("evaluate-records").striped(true).num_columns(6).show(ui, |ui| {
            ui.strong("input");
            ui.strong("id");
            ui.strong("label");
            if side_b.is_some() {
                ui.strong("A");
                ui.strong("B");
            } else {
                ui.strong("prediction");
                ui.strong("top labels");
            }
            ui.strong("latency");
            ui.end_row();
            // The image shown is the one A saw (both models saw the same drift).
            let seen = comparison.map_or(evaluation, |c| &c.a);
            for &i in indices.iter().take(self.shown) {
                let a = &seen.outcomes[i];
                if input_cell(ui, a, &self.thumbs) {
                    wanted.push(ThumbJob {
                        generation: self.generation,
                        index: a.index,
                        path: a.input.clone(),
                        drift: seen.drift.clone(),
                        seed: seen.seed,
                    });
                }
                ui.label(&a.id);
                ui.label(a.label.as_deref().unwrap_or("–"));
                match side_b {
                    Some(b) => {
                        prediction_cell(ui, a);
                        prediction_cell(ui, &b.outcomes[i]);
                    }
                    None => {
                        prediction_cell(ui, a);
                        let top: Vec<String> = a
                            .top
                            .iter()
                            .skip(1)
                            .take(3)
                            .map(|t| format!("{} {:.1}%", t.label, t.score * 100.0))
                            .collect();
                        ui.label(top.join(", "));
                    }
                }
                ui.label(if a.error.is_none() { format!("{:.2} ms", a.latency_ms) } else { String::new() });
                ui.end_row();
            }
        });
        if indices.len() > self.shown && ui.button("Show more").clicked() {
            self.shown += PAGE;
        }
        for job in wanted {
            self.request_thumb(ui.ctx(), job);
        }
    }

    fn browse_indices(&self, outcome: &Outcome) -> Vec<usize> {
        let e = outcome.evaluation(self.side);
        match &self.browse {
            Browse::ConfidentlyWrong => e.confidently_wrong.clone(),
            Browse::Slowest => e.slowest.clone(),
            Browse::Failed => e.outcomes.iter().filter(|o| o.error.is_some()).map(|o| o.index).collect(),
            Browse::All => (0..e.outcomes.len()).collect(),
            Browse::Disagreements => match outcome {
                Outcome::Two { comparison, .. } => comparison.disagreements.clone(),
                Outcome::One { .. } => Vec::new(),
            },
            Browse::Cell { row, column } => {
                let Some(m) = &e.metrics else { return Vec::new() };
                let (Some(r), Some(c)) = (m.classes.get(*row), m.classes.get(*column)) else { return Vec::new() };
                e.outcomes
                    .iter()
                    .filter(|o| o.label.as_deref() == Some(&r.label) && o.prediction.as_deref() == Some(&c.label))
                    .map(|o| o.index)
                    .collect()
            }
        }
    }

    fn request_thumb(&mut self, ctx: &egui::Context, job: ThumbJob) {
        if self.thumbs.contains_key(&job.index) {
            return;
        }
        if self.thumb_tx.is_none() {
            let (tx, rx) = std::sync::mpsc::channel::<ThumbJob>();
            let (back_tx, back_rx) = std::sync::mpsc::channel();
            let ctx = ctx.clone();
            let spawned = std::thread::Builder::new().name("modeldeck-thumbs".into()).spawn(move || {
                for job in rx {
                    let thumb =
                        crate::eval::seen_image(&job.path, job.drift.as_deref(), job.seed, job.index).map(|image| {
                            // Small images stay as they are: the texture scales them up, pixel by pixel.
                            let small = if image.width().max(image.height()) > THUMB {
                                let (w, h) = crate::eval::fit_box(image.width(), image.height(), THUMB);
                                image::imageops::thumbnail(&image, w, h)
                            } else {
                                image
                            };
                            egui::ColorImage::from_rgb(
                                [small.width() as usize, small.height() as usize],
                                small.as_raw(),
                            )
                        });
                    if back_tx.send((job.generation, job.index, thumb)).is_err() {
                        return;
                    }
                    ctx.request_repaint();
                }
            });
            if spawned.is_err() {
                return;
            }
            self.thumb_tx = Some(tx);
            self.thumb_rx = Some(back_rx);
        }
        if let Some(tx) = &self.thumb_tx {
            let index = job.index;
            if tx.send(job).is_ok() {
                self.thumbs.insert(index, Thumb::Loading);
            }
        }
    }

    fn receive_thumbs(&mut self, ctx: &egui::Context) {
        let Some(rx) = &self.thumb_rx else { return };
        for (generation, index, result) in rx.try_iter() {
            if generation != self.generation {
                continue;
            }
            let thumb = match result {
                Ok(image) => Thumb::Ready(ctx.load_texture(
                    format!("thumb:{generation}:{index}"),
                    image,
                    egui::TextureOptions::NEAREST,
                )),
                Err(e) => Thumb::Failed(e),
            };
            self.thumbs.insert(index, thumb);
        }
    }
}

/// Runs the evaluation (one slot) or the comparison (two) on the evaluation thread.
fn run_job(
    slots: &[Slot],
    models: &[Arc<LoadedModel>],
    data: &str,
    options: &EvalOptions,
    report: impl Fn(char, &Progress),
) -> Result<Outcome, String> {
    let data = super::replay_control::load_dataset(data)?;
    for model in models {
        if data.has_images() != model.task().takes_images() {
            return Err(format!(
                "{} is for {} but {} holds {}",
                model.card().name,
                model.task(),
                data.source.display(),
                if data.has_images() { "images" } else { "texts" }
            ));
        }
    }
    match (slots, models) {
        ([slot], [model]) => {
            let arm = slot.name().chars().next().unwrap_or('A');
            let run = eval::evaluate(model, &data, options, |p| report(arm, p)).map_err(|e| e.to_string())?;
            Ok(Outcome::One { slot: *slot, run: Box::new(run) })
        }
        ([_, _], [a, b]) => {
            let (a, b, comparison) = eval::compare(a, b, &data, options, report).map_err(|e| e.to_string())?;
            Ok(Outcome::Two { a: Box::new(a), b: Box::new(b), comparison: Box::new(comparison) })
        }
        _ => Err("evaluate one slot or compare two".into()),
    }
}

/// The equivalent command line, for the report.
fn command_line(slots: &[Slot], models: &[Arc<LoadedModel>], data: &str, drift: &str, batch: usize) -> String {
    let quote = |s: &str| {
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c)) {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let data = if data.is_empty() { "assets/digits/test" } else { data };
    let mut line = match (slots, models) {
        ([_], [m]) => format!("modeldeck eval --model {}", quote(&m.card().source)),
        (_, [a, b]) => format!("modeldeck compare --a {} --b {}", quote(&a.card().source), quote(&b.card().source)),
        _ => "modeldeck eval".to_string(),
    };
    line.push_str(&format!(" --data {} --batch-size {batch}", quote(data)));
    if !drift.trim().is_empty() {
        line.push_str(&format!(" --drift {}", quote(drift.trim())));
    }
    line
}

/// Runs `job` (rendering, writing a file) on its own thread; its note arrives through `tx`.
fn in_background(
    ctx: &egui::Context,
    tx: &Sender<Note>,
    notes: &mut Vec<Note>,
    job: impl FnOnce() -> Note + Send + 'static,
) {
    let (tx, ctx) = (tx.clone(), ctx.clone());
    let spawned = std::thread::Builder::new().name("modeldeck-export".into()).spawn(move || {
        let _ = tx.send(job());
        ctx.request_repaint();
    });
    if let Err(e) = spawned {
        notes.push(Err(format!("could not start the export: {e}")));
    }
}

fn actions_ui(
    ui: &mut egui::Ui,
    outcome: &Outcome,
    cx: &EvaluateContext<'_>,
    tx: &Sender<Note>,
    notes: &mut Vec<Note>,
) {
    ui.horizontal_wrapped(|ui| {
        let stem = match outcome {
            Outcome::One { run, .. } => format!("eval-{}", file_stem(&run.evaluation.model.name)),
            Outcome::Two { a, b, .. } => {
                format!("compare-{}-{}", file_stem(&a.evaluation.model.name), file_stem(&b.evaluation.model.name))
            }
        };
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S");
        if ui.button("Export report (HTML)").clicked() {
            // Rendering reads and shrinks the example images: off the UI thread.
            let (dir, name) = (cx.export_dir.clone(), format!("{stem}-{stamp}.html"));
            match outcome {
                Outcome::One { run, .. } => {
                    let e = run.evaluation.clone();
                    in_background(ui.ctx(), tx, notes, move || {
                        write_export(&dir, &name, crate::report::evaluation_html(&e).as_bytes())
                    });
                }
                Outcome::Two { comparison, .. } => {
                    let c = (**comparison).clone();
                    in_background(ui.ctx(), tx, notes, move || {
                        write_export(&dir, &name, crate::report::comparison_html(&c).as_bytes())
                    });
                }
            }
        }
        if ui.button("Copy Markdown summary").clicked() {
            let md = match outcome {
                Outcome::One { run, .. } => crate::report::evaluation_markdown(&run.evaluation),
                Outcome::Two { comparison, .. } => crate::report::comparison_markdown(comparison),
            };
            ui.ctx().copy_text(md);
            notes.push(Ok("the Markdown summary is on the clipboard".into()));
        }
        let sides: &[Slot] = match outcome {
            Outcome::One { slot, .. } => std::slice::from_ref(slot),
            Outcome::Two { .. } => &Slot::ALL,
        };
        for &side in sides {
            let run = outcome.run(side);
            let name = &run.evaluation.model.name;
            if ui
                .button(format!("Use as {name}'s drift reference"))
                .on_hover_text("the Monitor compares this model's live inputs and predictions with this data set's")
                .clicked()
            {
                let series: Arc<str> = run.evaluation.model.source.as_str().into();
                cx.monitor.set_reference(&series, &run.samples);
                notes.push(Ok(format!(
                    "{name}: the Monitor's drift reference is now {} ({} records)",
                    run.evaluation.data,
                    run.samples.len()
                )));
            }
            if ui.button(format!("Export {name}'s answers (CSV)")).clicked() {
                let (dir, file) = (cx.export_dir.clone(), format!("{stem}-{}-{stamp}.csv", side.name()));
                let (info, answers) = answers_of(&file, run);
                in_background(ui.ctx(), tx, notes, move || export_answers(&dir, &file, info, &answers));
            }
        }
    });
}

fn file_stem(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

fn write_export(dir: &Path, name: &str, bytes: &[u8]) -> Note {
    let dir = dir.join("reports");
    let path = dir.join(name);
    std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(&path, bytes))
        .map(|_| format!("wrote {} ({:.0} kB)", path.display(), bytes.len() as f64 / 1e3))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A run's answers as the batch writer takes them.
fn answers_of(name: &str, run: &EvalRun) -> (crate::eval::output::RunInfo, Vec<crate::eval::pipeline::Answer>) {
    use crate::eval::output::RunInfo;
    use crate::eval::pipeline::Answer;
    let e = &run.evaluation;
    let info = RunInfo {
        run: name.to_string(),
        model: e.model.source.clone(),
        data: e.data.clone(),
        records: e.n,
        drift: e.drift.clone(),
        seed: e.seed,
        fingerprint: None,
    };
    let answers: Vec<Answer> = e
        .outcomes
        .iter()
        .zip(&run.embeddings)
        .map(|(o, emb)| Answer {
            outcome: o.clone(),
            probs: Vec::new(),
            embedding: emb.clone(),
            features: Default::default(),
        })
        .collect();
    (info, answers)
}

fn export_answers(
    dir: &Path,
    name: &str,
    info: crate::eval::output::RunInfo,
    answers: &[crate::eval::pipeline::Answer],
) -> Note {
    use crate::eval::output::BatchWriter;
    let dir = dir.join("reports");
    let path = dir.join(name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
        .and_then(|_| BatchWriter::open(&path, info, false, true).map_err(|e| e.to_string()))
        .and_then(|mut w| w.write(answers).map_err(|e| e.to_string()))
        .map(|_| format!("wrote {} answers to {}", answers.len(), path.display()))
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// The headline numbers, one column per model (and B − A when comparing).
fn headline_ui(ui: &mut egui::Ui, evaluations: &[&Evaluation]) {
    let first = evaluations[0];
    ui.label(format!(
        "{} records of {}{}",
        first.n,
        first.data,
        first.drift.as_ref().map_or(String::new(), |d| format!(", drift {d}"))
    ));
    /// A percentage, or a number with this many decimals.
    #[derive(Clone, Copy)]
    enum Fmt {
        Pct,
        Dec(usize),
    }
    type Row = (&'static str, fn(&Evaluation) -> Option<f64>, Fmt);
    let rows: [Row; 9] = [
        ("accuracy", |e| e.metrics.as_ref().map(|m| m.accuracy), Fmt::Pct),
        (
            "top-3 accuracy",
            |e| e.metrics.as_ref().and_then(|m| m.top_k.iter().find(|t| t.k == 3)).map(|t| t.accuracy),
            Fmt::Pct,
        ),
        ("macro F1", |e| e.metrics.as_ref().map(|m| m.macro_avg.f1), Fmt::Dec(4)),
        ("weighted F1", |e| e.metrics.as_ref().map(|m| m.weighted_avg.f1), Fmt::Dec(4)),
        ("log loss", |e| e.metrics.as_ref().and_then(|m| m.log_loss), Fmt::Dec(4)),
        ("ECE (15 bins)", |e| e.metrics.as_ref().map(|m| m.ece), Fmt::Dec(4)),
        ("latency p50 (ms)", |e| Some(e.latency.p50_ms), Fmt::Dec(3)),
        ("latency p99 (ms)", |e| Some(e.latency.p99_ms), Fmt::Dec(3)),
        ("records/s", |e| Some(e.latency.throughput_per_s), Fmt::Dec(0)),
    ];
    egui::Grid::new("evaluate-headline").striped(true).num_columns(evaluations.len() + 2).show(ui, |ui| {
        ui.label("");
        for e in evaluations {
            ui.strong(&e.model.name);
        }
        if evaluations.len() == 2 {
            ui.strong("B − A");
        }
        ui.end_row();
        for (name, value, fmt) in rows {
            let values: Vec<Option<f64>> = evaluations.iter().map(|e| value(e)).collect();
            if values.iter().all(Option::is_none) {
                continue;
            }
            ui.label(name);
            for v in &values {
                ui.label(match (v, fmt) {
                    (Some(v), Fmt::Pct) => pct(*v),
                    (Some(v), Fmt::Dec(d)) => format!("{v:.d$}"),
                    (None, _) => "–".into(),
                });
            }
            if let [Some(a), Some(b)] = values.as_slice() {
                ui.label(match fmt {
                    Fmt::Pct => format!("{:+.2} pts", (b - a) * 100.0),
                    Fmt::Dec(d) => format!("{:+.d$}", b - a),
                });
            }
            ui.end_row();
        }
        ui.label("failed records");
        for e in evaluations {
            ui.label(e.n_failed.to_string());
        }
        ui.end_row();
    });
    for e in evaluations {
        if let Some(m) = &e.metrics {
            for u in &m.unknown_labels {
                ui.colored_label(
                    Color32::from_rgb(200, 120, 0),
                    format!(
                        "{}: {} records are labelled `{}`, a label the model does not have (counted as wrong)",
                        e.model.name, u.count, u.label
                    ),
                );
            }
        } else {
            ui.label(format!("{}: no answered record has a label the model could be scored on", e.model.name));
        }
    }
}

fn paired_ui(ui: &mut egui::Ui, c: &Comparison) {
    ui.label(format!("agreement {} on {} records both answered", pct(c.agreement), c.n_paired));
    if let (Some(m), Some(diff)) = (&c.mcnemar, c.accuracy_diff) {
        let [[both, a_only], [b_only, neither]] = c.correctness;
        ui.label(format!(
            "on {} labelled pairs: both right {both}, only A {a_only}, only B {b_only}, both wrong {neither}; \
             B − A {:+.2} points, McNemar exact p = {}",
            c.n_labelled_pairs,
            diff * 100.0,
            crate::stats::sequential::format_p(m.exact.pvalue)
        ));
    }
}

/// The confusion matrix as clickable cells; returns the cell clicked.
fn confusion_ui(ui: &mut egui::Ui, m: &Metrics, browse: &Browse) -> Option<(usize, usize)> {
    ui.strong("Confusion matrix (rows: label, columns: prediction; click a cell for its records)");
    let max_off = m
        .confusion
        .iter()
        .enumerate()
        .flat_map(|(i, row)| row.iter().enumerate().filter(move |(j, _)| *j != i).map(|(_, v)| *v))
        .max()
        .unwrap_or(0)
        .max(1);
    let max_diag = (0..m.confusion.len()).map(|i| m.confusion[i][i]).max().unwrap_or(0).max(1);
    let dark = ui.visuals().dark_mode;
    let mut clicked = None;
    // Many classes: the ones with the most errors, as in the report (a 1000×1000 grid of
    // buttons would stall every frame).
    let shown = crate::report::svg::confusion_selection(m);
    if shown.len() < m.classes.len() {
        ui.label(format!("the {} of {} classes with the most errors", shown.len(), m.classes.len()));
    }
    egui::ScrollArea::both().id_salt("confusion").max_height(360.0).show(ui, |ui| {
        egui::Grid::new("confusion-grid").spacing([2.0, 2.0]).show(ui, |ui| {
            ui.label("");
            for &j in &shown {
                ui.label(RichText::new(&m.classes[j].label).small().strong());
            }
            ui.end_row();
            for &i in &shown {
                let Some(row) = m.confusion.get(i) else { continue };
                ui.label(RichText::new(&m.classes[i].label).small().strong());
                for &j in &shown {
                    let count = row.get(j).copied().unwrap_or(0);
                    let share = if i == j { count as f32 / max_diag as f32 } else { count as f32 / max_off as f32 };
                    let base = if i == j { Color32::from_rgb(40, 140, 80) } else { Color32::from_rgb(210, 60, 50) };
                    let fill = if count == 0 {
                        if dark {
                            Color32::from_gray(40)
                        } else {
                            Color32::from_gray(235)
                        }
                    } else {
                        base.gamma_multiply(0.25 + 0.75 * share)
                    };
                    let selected = *browse == Browse::Cell { row: i, column: j };
                    let text = RichText::new(count.to_string()).small().color(if count == 0 {
                        Color32::GRAY
                    } else {
                        Color32::WHITE
                    });
                    let mut button =
                        egui::Button::new(text).fill(fill).min_size(egui::vec2(30.0, 20.0)).selected(selected);
                    if selected {
                        button = button.stroke(egui::Stroke::new(2.0, ui.visuals().strong_text_color()));
                    }
                    let label = format!("label {} predicted {}: {count}", m.classes[i].label, m.classes[j].label);
                    let response = ui.add(button).on_hover_text(&label);
                    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
                    if response.clicked() {
                        clicked = Some((i, j));
                    }
                }
                ui.end_row();
            }
        });
    });
    clicked
}

fn reliability_ui(ui: &mut egui::Ui, m: &Metrics) {
    ui.strong(format!("Reliability diagram (ECE {:.4})", m.ece));
    let bars: Vec<Bar> = m
        .reliability
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| {
            Bar::new((b.lower + b.upper) / 2.0, b.accuracy).width(b.upper - b.lower).name(format!(
                "{:.2}–{:.2}: {} records, accuracy {:.3}, confidence {:.3}",
                b.lower, b.upper, b.count, b.accuracy, b.mean_confidence
            ))
        })
        .collect();
    let confidence: Vec<[f64; 2]> =
        m.reliability.iter().filter(|b| b.count > 0).map(|b| [(b.lower + b.upper) / 2.0, b.mean_confidence]).collect();
    Plot::new("reliability")
        .height(260.0)
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_label("confidence")
        .y_axis_label("accuracy")
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("accuracy per bin", bars).color(Color32::from_rgb(70, 130, 200)));
            plot.line(
                Line::new("perfect calibration", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]])).color(Color32::GRAY),
            );
            plot.line(
                Line::new("mean confidence", PlotPoints::from(confidence)).color(Color32::from_rgb(220, 140, 40)),
            );
        });
}

fn classes_ui(ui: &mut egui::Ui, m: &Metrics) {
    egui::Grid::new("evaluate-classes").striped(true).num_columns(6).show(ui, |ui| {
        for h in ["class", "precision", "recall", "F1", "support", "predicted"] {
            ui.strong(h);
        }
        ui.end_row();
        for c in &m.classes {
            ui.label(if c.known_to_model { c.label.clone() } else { format!("{} (unknown to the model)", c.label) });
            ui.label(format!("{:.4}", c.precision));
            ui.label(format!("{:.4}", c.recall));
            ui.label(format!("{:.4}", c.f1));
            ui.label(c.support.to_string());
            ui.label(c.predicted.to_string());
            ui.end_row();
        }
        for (name, a) in [("macro average", m.macro_avg), ("weighted average", m.weighted_avg)] {
            ui.strong(name);
            ui.label(format!("{:.4}", a.precision));
            ui.label(format!("{:.4}", a.recall));
            ui.label(format!("{:.4}", a.f1));
            ui.label(m.n.to_string());
            ui.label("");
            ui.end_row();
        }
    });
}

/// Shows the record's input; true when its thumbnail is still to be made.
fn input_cell(ui: &mut egui::Ui, o: &ExampleOutcome, thumbs: &HashMap<usize, Thumb>) -> bool {
    if !o.is_image {
        let text: String = o.input.chars().take(120).collect();
        let more = if o.input.chars().count() > 120 { "…" } else { "" };
        ui.label(format!("{text}{more}")).on_hover_text(&o.input);
        return false;
    }
    match thumbs.get(&o.index) {
        Some(Thumb::Ready(texture)) => {
            let size = texture.size_vec2();
            let scale = (THUMB as f32 / size.x.max(size.y).max(1.0)).min(8.0);
            ui.add(egui::Image::new((texture.id(), size * scale))).on_hover_text(&o.input);
        }
        Some(Thumb::Failed(e)) => {
            ui.label(RichText::new("unreadable").weak()).on_hover_text(e);
        }
        Some(Thumb::Loading) => {
            ui.spinner();
        }
        None => {
            ui.spinner();
            return true;
        }
    }
    false
}

fn prediction_cell(ui: &mut egui::Ui, o: &ExampleOutcome) {
    match (&o.prediction, &o.error) {
        (_, Some(e)) => {
            ui.colored_label(Color32::from_rgb(200, 60, 50), e);
        }
        (Some(p), None) => {
            let text = format!("{p} ({:.1}%)", o.confidence * 100.0);
            if o.is_wrong() {
                ui.colored_label(Color32::from_rgb(200, 60, 50), text);
            } else {
                ui.label(text);
            }
        }
        (None, None) => {
            ui.label("embedding");
        }
    }
}
