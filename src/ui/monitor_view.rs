//! The Monitor view: live charts of what the models do, drawn from the monitor's published
//! [`MonitorSnapshot`] (never from the log, never re-scanned per frame).
//!
//! Chart data is rebuilt only when a new snapshot arrives (about twice a second); each frame
//! then decimates the visible part of every series to at most two points per pixel column
//! ([`crate::monitor::decimate`]), so a chart costs the same with a minute or three hours of data.
//! Time charts share their x axis (clock time) and cursor.

use std::sync::Arc;

use egui::{Color32, RichText};
use egui_plot::{Corner, FilledArea, Legend, Line, Plot, PlotPoint, PlotPoints};

use super::Command;
use crate::engine::Slot;
use crate::monitor::decimate::min_max_per_column;
use crate::monitor::drift::{HistogramBins, Verdict, PREDICTION_COLUMN};
use crate::monitor::metrics::Window;
use crate::monitor::{ModelSnapshot, MonitorSnapshot};

/// What the replay panel asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayForm {
    pub slot: Slot,
    /// A data set path; empty means the embedded demo digits.
    pub data: String,
    /// Requests per second; `None` as fast as the model goes.
    pub rate: Option<f64>,
    pub drift: String,
    pub label_delay_s: f64,
    pub looping: bool,
}

impl Default for ReplayForm {
    fn default() -> Self {
        Self {
            slot: Slot::A,
            data: String::new(),
            rate: Some(50.0),
            drift: "brightness=-0.5@600+300".into(),
            label_delay_s: 2.0,
            looping: true,
        }
    }
}

/// What the view shows about a running replay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayStatus {
    pub running: bool,
    pub paused: bool,
    pub text: String,
}

/// One named series, as chart points (x = seconds since the epoch).
struct Series {
    name: String,
    points: Vec<[f64; 2]>,
}

/// A stacked band of the class-proportion chart.
struct Band {
    name: String,
    xs: Vec<f64>,
    low: Vec<f64>,
    high: Vec<f64>,
}

/// Chart data derived from one snapshot.
#[derive(Default)]
struct Charts {
    version: u64,
    latency: Vec<Series>,
    throughput: Vec<Series>,
    cpu: Vec<Series>,
    memory: Vec<Series>,
    classes: Vec<Band>,
    /// Accuracy per 10-s bucket (by prediction time), per model.
    accuracy: Vec<Series>,
}

impl Charts {
    fn build(snapshot: &MonitorSnapshot) -> Self {
        let secs = |t_ms: i64| t_ms as f64 / 1000.0;
        let mut charts = Charts { version: snapshot.version, ..Default::default() };
        for model in &snapshot.models {
            let with_latency = || model.series.iter().filter_map(|p| p.latency.map(|l| (secs(p.t_ms), l)));
            for (name, pick) in [("p50", 0), ("p95", 1), ("p99", 2)] {
                let points = with_latency().map(|(t, l)| [t, [l.p50, l.p95, l.p99][pick]]).collect::<Vec<_>>();
                charts.latency.push(Series { name: format!("{} {name}", model.name), points });
            }
            charts.throughput.push(Series {
                name: format!("{} requests/s", model.name),
                points: model.series.iter().map(|p| [secs(p.t_ms), p.requests as f64]).collect(),
            });
            charts.throughput.push(Series {
                name: format!("{} errors/s", model.name),
                points: model.series.iter().map(|p| [secs(p.t_ms), p.errors as f64]).collect(),
            });
            let labels = &model.classes.labels;
            let mut bands: Vec<Band> = labels
                .iter()
                .map(|l| Band { name: format!("{} {l}", model.name), xs: vec![], low: vec![], high: vec![] })
                .collect();
            for (t, shares) in model.classes.shares() {
                let mut below = 0.0;
                for (band, share) in bands.iter_mut().zip(shares) {
                    band.xs.push(secs(t));
                    band.low.push(below);
                    below += share;
                    band.high.push(below);
                }
            }
            charts.classes.extend(bands);
            charts.accuracy.push(Series {
                name: format!("{} accuracy", model.name),
                points: model
                    .accuracy_series
                    .iter()
                    .filter_map(|b| Some([secs(b.t_ms), b.accuracy()? * 100.0]))
                    .collect(),
            });
        }
        charts.cpu.push(Series {
            name: "CPU %".into(),
            points: snapshot.process.iter().map(|p| [secs(p.t_ms), p.cpu_percent]).collect(),
        });
        charts.memory.push(Series {
            name: "resident MB".into(),
            points: snapshot.process.iter().map(|p| [secs(p.t_ms), p.rss_bytes as f64 / 1e6]).collect(),
        });
        charts
    }
}

pub struct MonitorView {
    pub form: ReplayForm,
    rate_text: String,
    charts: Charts,
    scratch: Vec<[f64; 2]>,
    /// The model whose drift the view shows (by name); the busiest one when unset.
    pub selected_model: Option<String>,
    /// The feature whose histogram the view shows.
    pub selected_feature: String,
    /// The prediction log, for the commands that reproduce the drift table.
    pub log_path: Option<std::path::PathBuf>,
    /// When this app session started (ms since the epoch), for `--since`.
    pub session_start_ms: i64,
    /// How much time the time charts show, in seconds (ending at the latest refresh).
    window_s: f64,
    /// This frame's x range of the time charts (seconds since the epoch).
    x_range: (f64, f64),
    /// The batch runs in the log (listed when the "batch run" menu opens) and the loader
    /// thread's answers.
    batch_runs: Option<Result<Vec<crate::store::BatchRun>, String>>,
    batch_menu_open: bool,
    loader: Option<std::sync::mpsc::Receiver<Loaded>>,
}

/// What the log-reading thread sends back.
enum Loaded {
    Runs(Result<Vec<crate::store::BatchRun>, String>),
    Reference { model: Arc<str>, run: String, samples: Result<Vec<crate::monitor::drift::DriftSample>, String> },
}

impl Default for MonitorView {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock time (local) of x = seconds since the epoch.
pub fn clock(seconds: f64) -> String {
    use chrono::TimeZone as _;
    match chrono::Local.timestamp_millis_opt((seconds * 1000.0) as i64) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.format("%H:%M:%S").to_string(),
        chrono::LocalResult::None => String::new(),
    }
}

impl MonitorView {
    pub fn new() -> Self {
        let form = ReplayForm::default();
        let rate_text = form.rate.map(|r| format!("{r}")).unwrap_or_default();
        Self {
            form,
            rate_text,
            charts: Charts::default(),
            scratch: Vec::new(),
            selected_model: None,
            selected_feature: "brightness".into(),
            log_path: None,
            session_start_ms: crate::store::now_ms(),
            window_s: 300.0,
            x_range: (0.0, 1.0),
            batch_runs: None,
            batch_menu_open: false,
            loader: None,
        }
    }

    /// Reads the log on a thread (never on the UI thread); the answer arrives in
    /// [`Self::receive_loaded`].
    fn load(&mut self, ctx: &egui::Context, job: impl FnOnce() -> Loaded + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        let ctx = ctx.clone();
        let spawned = std::thread::Builder::new().name("modeldeck-log-reader".into()).spawn(move || {
            let _ = tx.send(job());
            ctx.request_repaint();
        });
        match spawned {
            Ok(_) => self.loader = Some(rx),
            Err(e) => self.batch_runs = Some(Err(format!("could not start a thread: {e}"))),
        }
    }

    fn receive_loaded(&mut self, commands: &mut Vec<Command>) {
        let Some(rx) = &self.loader else { return };
        let loaded = match rx.try_recv() {
            Ok(loaded) => loaded,
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.loader = None;
                self.batch_runs = Some(Err("reading the log failed unexpectedly".into()));
                return;
            }
        };
        self.loader = None;
        match loaded {
            Loaded::Runs(runs) => self.batch_runs = Some(runs),
            Loaded::Reference { model, run, samples } => {
                commands.push(Command::SetReference { model, what: format!("batch run {run}"), samples })
            }
        }
    }

    /// The "batch run" menu: the runs of `model` in the log; a click makes one the reference.
    fn batch_run_menu(&mut self, ui: &mut egui::Ui, model: &Arc<str>) {
        let Some(log) = self.log_path.clone() else {
            ui.add_enabled(false, egui::Button::new("Reference: a batch run"))
                .on_disabled_hover_text("no prediction log (the app runs with --no-log)");
            return;
        };
        let mut open = false;
        let mut chosen = None;
        ui.menu_button("Reference: a batch run", |ui| {
            open = true;
            match &self.batch_runs {
                _ if self.loader.is_some() => {
                    ui.spinner();
                }
                None => {}
                Some(Err(e)) => {
                    ui.label(RichText::new(e).color(ui.visuals().error_fg_color));
                }
                Some(Ok(runs)) => {
                    let mine: Vec<_> = runs.iter().filter(|r| r.model == model.as_ref()).collect();
                    if mine.is_empty() {
                        ui.label(format!(
                            "No batch run of {model} in the log yet: run `modeldeck batch`, `eval --log` or the Evaluate view."
                        ));
                    }
                    for r in mine {
                        let when = chrono::DateTime::from_timestamp_millis(r.first_at_ms)
                            .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default();
                        if ui.button(format!("{} · {when} · {} rows", r.run, r.rows)).clicked() {
                            chosen = Some(r.run.clone());
                            ui.close();
                        }
                    }
                }
            }
        });
        if open && !self.batch_menu_open && self.loader.is_none() {
            let path = log.clone();
            self.load(ui.ctx(), move || Loaded::Runs(crate::store::batch_runs(&path, 100).map_err(|e| e.to_string())));
        }
        self.batch_menu_open = open;
        if let Some(run) = chosen {
            let model = Arc::clone(model);
            self.load(ui.ctx(), move || {
                let samples =
                    crate::monitor::batch_run_reference(&log, &run, Some(&model)).map_err(|e| e.to_string()).and_then(
                        |(_, s)| {
                            if s.is_empty() {
                                Err(format!("batch run {run} has no answered rows"))
                            } else {
                                Ok(s)
                            }
                        },
                    );
                Loaded::Reference { model, run, samples }
            });
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        snapshot: &Arc<MonitorSnapshot>,
        replay: &ReplayStatus,
        commands: &mut Vec<Command>,
    ) {
        if self.charts.version != snapshot.version || snapshot.version == 0 {
            self.charts = Charts::build(snapshot);
        }
        let now = snapshot.at_ms as f64 / 1e3;
        self.x_range = (now - self.window_s, now);
        self.replay_ui(ui, replay, commands);
        alerts_banner(ui, snapshot);
        ui.separator();
        self.summary_ui(ui, snapshot);
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("Time charts show the last");
                for (seconds, name) in [(60.0, "1 min"), (300.0, "5 min"), (1800.0, "30 min"), (10_800.0, "3 h")] {
                    ui.selectable_value(&mut self.window_s, seconds, name);
                }
            });
            let height = 170.0;
            ui.columns(2, |columns| {
                self.time_chart(&mut columns[0], "Latency (ms)", "latency", height, ChartKind::Latency);
                self.time_chart(
                    &mut columns[1],
                    "Throughput and errors (per second)",
                    "throughput",
                    height,
                    ChartKind::Throughput,
                );
            });
            latency_distribution_chart(ui, snapshot, 130.0);
            ui.columns(2, |columns| {
                self.classes_chart(&mut columns[0], height);
                self.accuracy_chart(&mut columns[1], snapshot, height);
            });
            ui.columns(2, |columns| {
                self.time_chart(&mut columns[0], "Process CPU (% of one core)", "cpu", height, ChartKind::Cpu);
                self.time_chart(&mut columns[1], "Resident memory (MB)", "memory", height, ChartKind::Memory);
            });
            ui.separator();
            self.drift_ui(ui, snapshot, commands);
            ui.separator();
            alert_log_ui(ui, snapshot);
        });
    }

    /// The model the drift section shows: the selected one, else the one with most requests.
    fn drift_model<'s>(&self, snapshot: &'s MonitorSnapshot) -> Option<&'s ModelSnapshot> {
        let selected = self.selected_model.as_deref();
        snapshot
            .models
            .iter()
            .find(|m| Some(m.name.as_ref()) == selected)
            .or_else(|| snapshot.models.iter().max_by_key(|m| m.ops.requests))
    }

    fn drift_ui(&mut self, ui: &mut egui::Ui, snapshot: &MonitorSnapshot, commands: &mut Vec<Command>) {
        self.receive_loaded(commands);
        let Some(model) = self.drift_model(snapshot) else { return };
        ui.horizontal(|ui| {
            ui.heading("Drift");
            if snapshot.models.len() > 1 {
                let label = ui.label("of");
                egui::ComboBox::from_id_salt("drift-model")
                    .selected_text(model.name.as_ref())
                    .show_ui(ui, |ui| {
                        for m in &snapshot.models {
                            if ui.selectable_label(m.name == model.name, m.name.as_ref()).clicked() {
                                self.selected_model = Some(m.name.to_string());
                            }
                        }
                    })
                    .response
                    .labelled_by(label.id);
            } else {
                ui.label(format!("of {}", model.name));
            }
        });
        let Some(result) = &model.drift else {
            ui.label("Drift is computed once predictions arrive (about once a second).");
            return;
        };
        let window = |r: &Option<crate::monitor::drift::WindowRange>| {
            r.as_ref().map_or("empty".to_string(), |r| {
                format!("{} predictions, {} – {}", r.n, clock(r.from_ms as f64 / 1e3), clock(r.to_ms as f64 / 1e3))
            })
        };
        let source = match result.source {
            crate::monitor::drift::ReferenceSource::FirstPredictions { size } => {
                format!("the first {size} predictions")
            }
            crate::monitor::drift::ReferenceSource::Given => "a data set".into(),
            crate::monitor::drift::ReferenceSource::SavedWindow => "a saved window".into(),
        };
        ui.horizontal_wrapped(|ui| {
            ui.label(format!(
                "reference: {source} ({}) · current: the last {}",
                window(&result.reference),
                window(&result.current)
            ));
            if ui
                .button("Use the current window as reference")
                .on_hover_text("e.g. after a deliberate change: later predictions are compared with this window")
                .clicked()
            {
                commands.push(Command::ResetReference { model: model.name.clone(), first: None });
            }
            if ui.button("Reference: the next 500").clicked() {
                commands.push(Command::ResetReference {
                    model: model.name.clone(),
                    first: Some(crate::monitor::drift::DEFAULT_REFERENCE_SIZE),
                });
            }
            self.batch_run_menu(ui, &model.name);
        });
        let (decided, drifted) = result.feature_verdicts();
        if decided > 0 {
            let text = format!("{drifted} of {decided} input features drift");
            let color = if drifted > 0 { drift_color(ui) } else { ui.visuals().text_color() };
            ui.label(RichText::new(text).color(color).strong());
        }
        egui::Grid::new("drift-table").striped(true).num_columns(7).show(ui, |ui| {
            for h in ["feature", "test", "score", "threshold", "verdict", "samples (ref / cur)", "score over time"] {
                ui.strong(h);
            }
            ui.end_row();
            for column in &result.columns {
                let name = column.name;
                if ui.selectable_label(self.selected_feature == name, name).clicked() {
                    self.selected_feature = name.to_string();
                }
                ui.label(column.method.map_or("–", |m| m.name()));
                ui.label(column.score.map_or("–".into(), score_text));
                ui.label(column.threshold.map_or("–".into(), |v| format!("{v}")));
                let (text, color) = match &column.verdict {
                    Verdict::Drift => ("DRIFT".to_string(), drift_color(ui)),
                    Verdict::NoDrift => ("no drift".to_string(), ok_color(ui)),
                    Verdict::NotEnoughData => ("not enough data".to_string(), ui.visuals().weak_text_color()),
                    Verdict::Error(e) => (format!("error: {e}"), super::status::error_color(ui)),
                };
                ui.label(RichText::new(text).color(color).strong());
                ui.label(format!("{} / {}", column.n_reference, column.n_current));
                let history = model.drift_history.iter().find(|(n, _)| *n == name).map(|(_, p)| p.as_slice());
                sparkline(ui, history.unwrap_or(&[]), column.threshold, &mut self.scratch);
                ui.end_row();
            }
        });
        ui.columns(2, |columns| {
            let feature = self.selected_feature.clone();
            histogram_ui(&mut columns[0], model, &feature);
            histogram_ui(&mut columns[1], model, "confidence");
        });
        self.reproduce_ui(ui, model);
    }

    /// The commands that reproduce the drift table from the prediction log.
    fn reproduce_ui(&self, ui: &mut egui::Ui, model: &ModelSnapshot) {
        let (Some(result), Some(log)) = (&model.drift, &self.log_path) else { return };
        let (Some(reference), Some(current)) = (&result.reference, &result.current) else { return };
        if !matches!(result.source, crate::monitor::drift::ReferenceSource::FirstPredictions { .. }) {
            return;
        }
        let since = self.session_start_ms;
        let export = |offset: u64, limit: usize, out: &str| {
            format!(
                "modeldeck log export --log '{}' --model '{}' --since {since} --answered --offset {offset} --limit {limit} --format csv > {out}",
                log.display(),
                model.name,
            )
        };
        let text = format!(
            "{}\n{}\nmodeldeck drift --reference reference.csv --current current.csv --categorical prediction --column {}",
            export(reference.first_seq, reference.n, "reference.csv"),
            export(current.first_seq, current.n, "current.csv"),
            result.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(" --column "),
        );
        egui::CollapsingHeader::new("Reproduce these verdicts from the log").show(ui, |ui| {
            ui.label("Export both windows from the prediction log and run the drift command on them:");
            let mut shown = text.clone();
            ui.add(egui::TextEdit::multiline(&mut shown).code_editor().desired_width(f32::INFINITY));
            if ui.button("Copy commands").clicked() {
                ui.ctx().copy_text(text);
            }
        });
    }

    fn accuracy_chart(&mut self, ui: &mut egui::Ui, snapshot: &MonitorSnapshot, height: f32) {
        let mut title = "Accuracy (%, labelled predictions per 10 s)".to_string();
        if let Some(model) = self.drift_model(snapshot) {
            let a = &model.accuracy;
            if let Some(delay) = a.median_delay_ms {
                title.push_str(&format!(" · labels arrive after {:.1} s (median)", delay / 1e3));
            }
        }
        ui.label(RichText::new(title).strong());
        let series = &self.charts.accuracy;
        let references: Vec<(String, f64)> = snapshot
            .models
            .iter()
            .filter_map(|m| Some((format!("{} reference", m.name), m.accuracy.reference.as_ref()?.accuracy * 100.0)))
            .collect();
        let scratch = &mut self.scratch;
        let x_range = self.x_range;
        time_plot("accuracy", height, true).include_y(100.0).show(ui, |plot_ui| {
            draw_lines(plot_ui, series, x_range, scratch);
            for (name, value) in &references {
                plot_ui.hline(egui_plot::HLine::new(name.clone(), *value).style(egui_plot::LineStyle::dashed_loose()));
            }
        });
    }

    fn replay_ui(&mut self, ui: &mut egui::Ui, replay: &ReplayStatus, commands: &mut Vec<Command>) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("Replay traffic");
            ui.label("to");
            for slot in Slot::ALL {
                ui.selectable_value(&mut self.form.slot, slot, slot.name());
            }
            let label = ui.label("data");
            ui.add(
                egui::TextEdit::singleline(&mut self.form.data)
                    .hint_text("demo digits (540 images)")
                    .desired_width(220.0),
            )
            .on_hover_text("an image folder (one sub-folder per label) or a CSV/JSONL of texts or image paths")
            .labelled_by(label.id);
            let label = ui.label("rate");
            let rate = ui
                .add(egui::TextEdit::singleline(&mut self.rate_text).hint_text("max").desired_width(48.0))
                .on_hover_text("requests per second; empty: as fast as the model goes")
                .labelled_by(label.id);
            if rate.changed() {
                self.form.rate = self.rate_text.trim().parse::<f64>().ok().filter(|r| *r > 0.0);
            }
            ui.label("req/s");
            let label = ui.label("drift");
            ui.add(egui::TextEdit::singleline(&mut self.form.drift).hint_text("none").desired_width(200.0))
                .labelled_by(label.id)
                .on_hover_text(
                    "a drift schedule: from request 600, brightness ramps to -0.5 over 300 requests: \
                     brightness=-0.5@600+300 (also contrast, noise, blur, rotate; for text: casing, typos, \
                     truncate, vocabulary)",
                );
            let label = ui.label("labels after");
            ui.add(egui::DragValue::new(&mut self.form.label_delay_s).range(0.0..=3600.0).suffix(" s").speed(0.1))
                .labelled_by(label.id);
            ui.checkbox(&mut self.form.looping, "loop");
            if !replay.running {
                if ui.button("Start replay").clicked() {
                    commands.push(Command::StartReplay(self.form.clone()));
                }
            } else {
                if replay.paused {
                    if ui.button("Resume").clicked() {
                        commands.push(Command::ResumeReplay);
                    }
                } else if ui.button("Pause").clicked() {
                    commands.push(Command::PauseReplay);
                }
                if ui.button("Stop").clicked() {
                    commands.push(Command::StopReplay);
                }
            }
            if !replay.text.is_empty() {
                ui.label(&replay.text);
            }
        });
    }

    fn summary_ui(&self, ui: &mut egui::Ui, snapshot: &MonitorSnapshot) {
        if snapshot.models.is_empty() {
            ui.label("No predictions yet: use the Playground, or start a replay above.");
            return;
        }
        egui::Grid::new("monitor-summary").striped(true).num_columns(8).show(ui, |ui| {
            for h in [
                "model",
                "requests",
                "errors",
                "error rate (1 min)",
                "req/s (1 min)",
                "p50 / p95 / p99 (1 min)",
                "p95 (10 min)",
                "p95 (session)",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for model in &snapshot.models {
                let ops = &model.ops;
                ui.label(model.name.as_ref());
                ui.label(ops.requests.to_string());
                ui.label(ops.errors.to_string());
                ui.label(ops.error_rate.map_or("–".into(), |r| format!("{:.2}%", r * 100.0)));
                ui.label(format!("{:.1}", ops.throughput_rps));
                let window = |w: Window| ops.latency.iter().find(|(x, _)| *x == w).and_then(|(_, p)| *p);
                ui.label(
                    window(Window::LastMinute)
                        .map_or("–".into(), |p| format!("{:.2} / {:.2} / {:.2} ms", p.p50, p.p95, p.p99)),
                );
                for w in [Window::Last10Minutes, Window::Session] {
                    ui.label(window(w).map_or("–".into(), |p| format!("{:.2} ms", p.p95)));
                }
                ui.end_row();
            }
        });
    }

    fn time_chart(&mut self, ui: &mut egui::Ui, title: &str, id: &str, height: f32, kind: ChartKind) {
        ui.label(RichText::new(title).strong());
        let series = match kind {
            ChartKind::Latency => &self.charts.latency,
            ChartKind::Throughput => &self.charts.throughput,
            ChartKind::Cpu => &self.charts.cpu,
            ChartKind::Memory => &self.charts.memory,
        };
        let scratch = &mut self.scratch;
        let x_range = self.x_range;
        time_plot(id, height, true).show(ui, |plot_ui| draw_lines(plot_ui, series, x_range, scratch));
    }

    fn classes_chart(&mut self, ui: &mut egui::Ui, height: f32) {
        ui.label(RichText::new("Predicted classes (share per 10 s)").strong());
        let bands = &self.charts.classes;
        let x_range = self.x_range;
        // A key instead of a legend: ten classes would cover the chart.
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 4.0;
            for (i, band) in bands.iter().enumerate() {
                let color = CLASS_COLORS[i % CLASS_COLORS.len()];
                let (rect, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                ui.painter().rect_filled(rect, 2.0, color);
                ui.label(RichText::new(&band.name).small());
            }
        });
        time_plot("classes", height, false).include_y(1.0).show(ui, |plot_ui| {
            plot_ui.set_plot_bounds_x(x_range.0..=x_range.1);
            for (i, band) in bands.iter().enumerate() {
                let color = CLASS_COLORS[i % CLASS_COLORS.len()];
                plot_ui.add(FilledArea::new(band.name.clone(), &band.xs, &band.low, &band.high).fill_color(color));
            }
        });
    }
}

/// Every model's latency distribution over the last 10 minutes on shared log-spaced bins, as
/// frequency polygons of each bin's share of the model's requests: a local and a remote arm side
/// by side.
fn latency_distribution_chart(ui: &mut egui::Ui, snapshot: &MonitorSnapshot, height: f32) {
    use crate::monitor::metrics::LatencyDistribution;
    ui.label(RichText::new("Latency distribution (last 10 min, % of each model's requests)").strong());
    let models: Vec<(&str, &LatencyDistribution)> = snapshot
        .models
        .iter()
        .map(|m| (m.name.as_ref(), &m.ops.latency_distribution))
        .filter(|(_, d)| d.n > 0)
        .collect();
    // The x range: the occupied bins of every model, one bin of margin each side.
    let occupied =
        models.iter().flat_map(|(_, d)| d.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(k, _)| k));
    let (lo, hi) = occupied.fold((usize::MAX, 0), |(lo, hi), k| (lo.min(k), hi.max(k)));
    let edge = |k: usize| LatencyDistribution::edge_ms(k).log10();
    Plot::new("latency-distribution")
        .height(height)
        .legend(Legend::default().position(Corner::RightTop).text_style(egui::TextStyle::Small))
        .x_axis_formatter(|mark, _| format_ms(10f64.powf(mark.value)))
        .label_formatter(|hover| {
            let (name, p) = hover_point(hover);
            Some(format!("{name}\n{}  {:.1} %", format_ms(10f64.powf(p.x)), p.y))
        })
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_boxed_zoom(false)
        .include_y(0.0)
        .show(ui, |plot_ui| {
            if lo > hi {
                return;
            }
            let (from, to) = (lo.saturating_sub(1), (hi + 2).min(crate::monitor::metrics::LATENCY_BINS));
            plot_ui.set_plot_bounds_x(edge(from)..=edge(to));
            // Frequency polygons: each bin's share at the bin's centre (in log space).
            for (name, d) in &models {
                let points: Vec<PlotPoint> = (from..to)
                    .map(|k| PlotPoint::new((edge(k) + edge(k + 1)) / 2.0, 100.0 * d.counts[k] as f64 / d.n as f64))
                    .collect();
                plot_ui.line(Line::new(format!("{name} (n = {})", d.n), PlotPoints::Owned(points)).width(1.5));
            }
        });
}

/// The series name (empty away from data) and the position a plot's hover label describes.
fn hover_point<'a>(hover: &'a egui_plot::HoverPosition<'a>) -> (&'a str, PlotPoint) {
    match hover {
        egui_plot::HoverPosition::NearDataPoint { plot_name, position, .. } => (plot_name, *position),
        egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
    }
}

/// A latency for an axis: µs below a millisecond, ms below a second, else s.
fn format_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1e3)
    } else if ms < 1000.0 {
        format!("{} ms", if ms < 10.0 { format!("{ms:.1}") } else { format!("{ms:.0}") })
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

/// A chart over clock time, sharing its cursor and its x range (the chosen window, ending at the
/// latest refresh) with the view's other time charts.
fn time_plot<'a>(id: &str, height: f32, legend: bool) -> Plot<'a> {
    let group = egui::Id::unique("monitor-time");
    let plot = Plot::new(id)
        .height(height)
        .link_cursor(group, [true, false])
        .x_axis_formatter(|mark, _| clock(mark.value))
        .label_formatter(|hover| {
            let (name, p) = hover_point(hover);
            Some(format!("{name}\n{}  {:.3}", clock(p.x), p.y))
        })
        // Every time chart shows the same window, ending now: no panning or zooming.
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_y(0.0);
    if legend {
        // Small text: with two arms and remote endpoints' long names, a body-size legend hides
        // the lines it names.
        plot.legend(Legend::default().position(Corner::LeftTop).text_style(egui::TextStyle::Small))
    } else {
        plot
    }
}

/// Lines for `series` over `x_range`, decimated to at most two points per pixel column.
fn draw_lines(
    plot_ui: &mut egui_plot::PlotUi<'_>,
    series: &[Series],
    x_range: (f64, f64),
    scratch: &mut Vec<[f64; 2]>,
) {
    plot_ui.set_plot_bounds_x(x_range.0..=x_range.1);
    let columns = plot_ui.response().rect.width().max(1.0) as usize;
    for s in series {
        scratch.clear();
        min_max_per_column(&s.points, x_range, columns, scratch);
        let points: Vec<PlotPoint> = scratch.iter().map(|p| PlotPoint::new(p[0], p[1])).collect();
        plot_ui.line(Line::new(s.name.clone(), PlotPoints::Owned(points)));
    }
}

/// A score or p-value: 4 decimals, or scientific when tiny.
fn score_text(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.2e}")
    } else {
        format!("{v:.4}")
    }
}

/// Firing alerts, as a banner over the view.
fn alerts_banner(ui: &mut egui::Ui, snapshot: &MonitorSnapshot) {
    if snapshot.firing.is_empty() {
        return;
    }
    let color = drift_color(ui);
    egui::Frame::group(ui.style()).stroke(egui::Stroke::new(2.0, color)).show(ui, |ui| {
        ui.set_min_width(ui.available_width());
        for alert in &snapshot.firing {
            ui.label(
                RichText::new(format!(
                    "ALERT {}: {} (since {})",
                    alert.rule,
                    alert.message,
                    clock(alert.since_ms as f64 / 1e3)
                ))
                .color(color)
                .strong(),
            );
        }
    });
}

fn alert_log_ui(ui: &mut egui::Ui, snapshot: &MonitorSnapshot) {
    egui::CollapsingHeader::new(format!("Alert history ({})", snapshot.alert_log.len()))
        .id_salt("alert-history")
        .default_open(true)
        .show(ui, |ui| {
            if snapshot.alert_log.is_empty() {
                ui.weak("No alert has fired.");
            }
            for event in snapshot.alert_log.iter().rev().take(50) {
                let state = match event.state {
                    crate::monitor::alerts::AlertState::Firing => {
                        RichText::new("FIRING").color(drift_color(ui)).strong()
                    }
                    crate::monitor::alerts::AlertState::Resolved => RichText::new("resolved").color(ok_color(ui)),
                };
                ui.horizontal(|ui| {
                    ui.monospace(clock(event.at_ms as f64 / 1e3));
                    ui.label(state);
                    ui.label(format!("{}: {}", event.rule, event.message));
                });
            }
        });
}

/// A drift score's history in a small box: the line, and the threshold dashed.
fn sparkline(ui: &mut egui::Ui, points: &[[f64; 2]], threshold: Option<f64>, scratch: &mut Vec<[f64; 2]>) {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(160.0, 18.0), egui::Sense::hover());
    let finite = points.iter().filter(|p| p[1].is_finite());
    let (Some(first), Some(last)) = (points.first(), points.last()) else { return };
    let top = finite.clone().map(|p| p[1]).fold(threshold.unwrap_or(0.0), f64::max).max(1e-12);
    let (x0, x1) = (first[0], last[0].max(first[0] + 1.0));
    scratch.clear();
    min_max_per_column(points, (x0, x1), rect.width() as usize, scratch);
    let to_screen = |p: &[f64; 2]| {
        egui::pos2(
            rect.left() + ((p[0] - x0) / (x1 - x0)) as f32 * rect.width(),
            rect.bottom() - (p[1] / top).clamp(0.0, 1.0) as f32 * rect.height(),
        )
    };
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
    if let Some(t) = threshold {
        let y = rect.bottom() - (t / top).clamp(0.0, 1.0) as f32 * rect.height();
        painter.hline(rect.x_range(), y, egui::Stroke::new(1.0, drift_color(ui).gamma_multiply(0.6)));
    }
    let line: Vec<egui::Pos2> = scratch.iter().map(to_screen).collect();
    painter.add(egui::Shape::line(line, egui::Stroke::new(1.2, ui.visuals().text_color())));
    if let Some(last) = points.iter().rev().find(|p| p[1].is_finite()) {
        response.on_hover_text(format!("latest score {:.4} at {}", last[1], clock(last[0])));
    }
}

/// A column's reference and current distributions, overlaid.
fn histogram_ui(ui: &mut egui::Ui, model: &ModelSnapshot, feature: &str) {
    let title = if feature == PREDICTION_COLUMN { "predicted class".to_string() } else { feature.to_string() };
    ui.label(RichText::new(format!("{title}: reference against current (share of each window)")).strong());
    let Some((_, histogram)) = model.histograms.iter().find(|(n, _)| *n == feature) else {
        ui.weak("no values yet");
        return;
    };
    let (centres, width, names): (Vec<f64>, f64, Vec<String>) = match &histogram.bins {
        HistogramBins::Edges(edges) => {
            let centres = edges.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
            let width = edges.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
            (centres, width, Vec::new())
        }
        HistogramBins::Values(values) => {
            let gap = values.windows(2).map(|w| w[1] - w[0]).fold(f64::INFINITY, f64::min);
            (values.clone(), if gap.is_finite() { gap * 0.8 } else { 1.0 }, Vec::new())
        }
        HistogramBins::Categories(names) => ((0..names.len()).map(|i| i as f64).collect(), 0.8, names.clone()),
    };
    let bars = |shares: &[f64]| -> Vec<egui_plot::Bar> {
        centres.iter().zip(shares).map(|(x, y)| egui_plot::Bar::new(*x, *y).width(width)).collect()
    };
    let reference =
        egui_plot::BarChart::new(format!("reference ({})", histogram.n_reference), bars(&histogram.reference_shares))
            .color(Color32::from_rgba_unmultiplied(78, 121, 167, 140));
    let current =
        egui_plot::BarChart::new(format!("current ({})", histogram.n_current), bars(&histogram.current_shares))
            .color(Color32::from_rgba_unmultiplied(242, 142, 43, 140));
    let mut plot = Plot::new(("histogram", feature))
        .height(150.0)
        .legend(Legend::default().position(Corner::RightTop))
        .allow_scroll(false)
        .include_y(0.0);
    if !names.is_empty() {
        plot = plot.x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        });
    }
    plot.show(ui, |plot_ui| {
        plot_ui.bar_chart(reference);
        plot_ui.bar_chart(current);
    });
}

fn drift_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(255, 110, 100)
    } else {
        Color32::from_rgb(190, 30, 30)
    }
}

fn ok_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(120, 200, 120)
    } else {
        Color32::from_rgb(20, 120, 40)
    }
}

enum ChartKind {
    Latency,
    Throughput,
    Cpu,
    Memory,
}

/// Ten distinguishable colours (Tableau 10) for classes.
const CLASS_COLORS: [Color32; 10] = [
    Color32::from_rgb(78, 121, 167),
    Color32::from_rgb(242, 142, 43),
    Color32::from_rgb(225, 87, 89),
    Color32::from_rgb(118, 183, 178),
    Color32::from_rgb(89, 161, 79),
    Color32::from_rgb(237, 201, 72),
    Color32::from_rgb(176, 122, 161),
    Color32::from_rgb(255, 157, 167),
    Color32::from_rgb(156, 117, 95),
    Color32::from_rgb(186, 176, 172),
];
