//! The Deploy view: rehearse a release of slot B against slot A on replayed traffic (A/B test,
//! shadow, canary, side by side) and read the evidence live.
//!
//! The rollout runs on the replay thread ([`crate::deploy::Rollout`]); its answers go to the
//! monitor and the prediction log like any replay, under arms "A" and "B", so the Monitor view
//! shows the same traffic split by arm. This view reads a [`RolloutSnapshot`] at most four
//! times a second (computing it runs Kayenta over the recent latencies) and draws from that.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use egui::{Color32, RichText};
use egui_plot::{Corner, HLine, Legend, Line, Plot, PlotPoint, PlotPoints};

use crate::deploy::canary::{percent, Action, DecidedBy, Decision, GateVerdict, Phase};
use crate::deploy::{Arm, CanaryPlan, Gates, Rollout, RolloutConfig, RolloutSnapshot, Strategy};
use crate::model::LoadedModel;
use crate::monitor::replay::{DriftSchedule, Fault, ReplayOptions};
use crate::monitor::Monitor;
use crate::store::PredictionLog;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    Ab,
    Shadow,
    Canary,
    SideBySide,
}

impl StrategyKind {
    const ALL: [StrategyKind; 4] = [Self::Canary, Self::Ab, Self::Shadow, Self::SideBySide];

    fn label(self) -> &'static str {
        match self {
            Self::Ab => "A/B test",
            Self::Shadow => "Shadow",
            Self::Canary => "Canary",
            Self::SideBySide => "Side by side",
        }
    }
}

/// What the user set up.
#[derive(Debug, Clone)]
pub struct DeployForm {
    pub strategy: StrategyKind,
    pub weight_b: f64,
    pub steps: String,
    pub min_requests: u64,
    pub min_labels: u64,
    pub allowed_increase: f64,
    pub allowed_ms: f64,
    pub max_error_increase: f64,
    pub max_accuracy_drop: f64,
    pub threshold: u32,
    pub manual: bool,
    /// Injected into B: extra milliseconds per answer, and the share of requests that fail (%).
    pub delay_ms: f64,
    pub error_percent: f64,
    /// A data set path; empty means the embedded demo digits.
    pub data: String,
    pub rate: String,
    pub drift: String,
    pub label_delay_s: f64,
}

impl Default for DeployForm {
    fn default() -> Self {
        let gates = Gates::default();
        Self {
            strategy: StrategyKind::Canary,
            weight_b: 50.0,
            steps: "1,5,25,50,100".into(),
            min_requests: 50,
            min_labels: 50,
            allowed_increase: gates.latency_allowed_increase,
            allowed_ms: gates.latency_allowed_ms,
            max_error_increase: gates.max_error_increase,
            max_accuracy_drop: gates.max_accuracy_drop,
            threshold: crate::deploy::canary::DEFAULT_THRESHOLD,
            manual: false,
            delay_ms: 0.0,
            error_percent: 0.0,
            data: String::new(),
            rate: "400".into(),
            drift: "brightness=0.25,contrast=0.5,noise=0.1,rotate=15".into(),
            label_delay_s: 1.0,
        }
    }
}

impl DeployForm {
    fn strategy(&self) -> Result<Strategy, String> {
        Ok(match self.strategy {
            StrategyKind::Ab => {
                if !(0.0..=100.0).contains(&self.weight_b) {
                    return Err(format!("B's weight must be between 0 and 100 %, not {}", self.weight_b));
                }
                Strategy::Ab { weight_b: self.weight_b }
            }
            StrategyKind::Shadow => Strategy::Shadow,
            StrategyKind::SideBySide => Strategy::SideBySide,
            StrategyKind::Canary => {
                let steps = CanaryPlan::parse_steps(&self.steps).map_err(|e| e.to_string())?;
                let gates = Gates {
                    min_requests: self.min_requests,
                    min_labels: self.min_labels,
                    latency_allowed_increase: self.allowed_increase,
                    latency_allowed_ms: self.allowed_ms,
                    max_error_increase: self.max_error_increase,
                    max_accuracy_drop: self.max_accuracy_drop,
                    ..Gates::default()
                };
                Strategy::Canary(CanaryPlan::new(steps, gates, self.threshold, self.manual).map_err(|e| e.to_string())?)
            }
        })
    }

    fn options(&self) -> Result<ReplayOptions, String> {
        let rate = match self.rate.trim() {
            "" => None,
            text => match text.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Some(r),
                _ => return Err(format!("the rate must be a positive number of requests per second, not {text:?}")),
            },
        };
        let drift = match self.drift.trim() {
            "" => None,
            spec => Some(DriftSchedule::parse(spec).map_err(|e| format!("drift: {e}"))?),
        };
        Ok(ReplayOptions {
            rate_per_s: rate,
            looping: true,
            shuffle: true,
            drift,
            label_delay: Duration::from_secs_f64(self.label_delay_s.clamp(0.0, 3600.0)),
            ..Default::default()
        })
    }

    fn fault(&self) -> Result<Option<Fault>, String> {
        if !(self.delay_ms.is_finite() && (0.0..=60_000.0).contains(&self.delay_ms)) {
            return Err(format!("the injected delay must be between 0 and 60000 ms, not {}", self.delay_ms));
        }
        if !(0.0..=100.0).contains(&self.error_percent) {
            return Err(format!("the injected error share must be between 0 and 100 %, not {}", self.error_percent));
        }
        let fault =
            Fault { delay: Duration::from_secs_f64(self.delay_ms / 1e3), error_rate: self.error_percent / 100.0 };
        Ok((!fault.is_none()).then_some(fault))
    }
}

type Note = Result<String, String>;

enum Message {
    Started(Box<Rollout>, String),
    Note(Note),
}

/// What the app hands the view each frame.
pub struct DeployContext<'a> {
    pub a: Option<Arc<LoadedModel>>,
    pub b: Option<Arc<LoadedModel>>,
    pub monitor: &'a Monitor,
    pub log: Option<PredictionLog>,
    /// Where exported decision trails go.
    pub export_dir: std::path::PathBuf,
}

pub struct DeployView {
    pub form: DeployForm,
    rollout: Option<Rollout>,
    starting: bool,
    snapshot: Option<Arc<RolloutSnapshot>>,
    started_ms: i64,
    decisions_logged: usize,
    /// The decision whose evidence is open.
    open_decision: Option<usize>,
    tx: Sender<Message>,
    rx: Receiver<Message>,
}

impl Default for DeployView {
    fn default() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        Self {
            form: DeployForm::default(),
            rollout: None,
            starting: false,
            snapshot: None,
            started_ms: 0,
            decisions_logged: 0,
            open_decision: None,
            tx,
            rx,
        }
    }
}

impl DeployView {
    /// The latest snapshot (tests).
    pub fn snapshot(&self) -> Option<&RolloutSnapshot> {
        self.snapshot.as_deref()
    }

    pub fn is_running(&self) -> bool {
        self.starting || self.rollout.as_ref().is_some_and(|r| !r.is_finished())
    }

    /// Draws the view; returns what to write to the Log panel.
    pub fn ui(&mut self, ui: &mut egui::Ui, cx: DeployContext<'_>) -> Vec<Note> {
        let mut notes = self.poll();
        self.refresh(false);
        notes.extend(self.new_decisions());
        self.form_ui(ui, &cx, &mut notes);
        ui.separator();
        let Some(snapshot) = self.snapshot.clone() else {
            ui.label(
                "Choose a strategy and press Start: slot B is released against slot A on replayed traffic. The \
                 default rehearses a canary of the Models view's B on drifted digits.",
            );
            return notes;
        };
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            self.live_ui(ui, &snapshot, &mut notes);
        });
        notes
    }

    /// Picks up a rollout that finished starting.
    fn poll(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            self.starting = false;
            match message {
                Message::Started(rollout, note) => {
                    self.rollout = Some(*rollout);
                    self.decisions_logged = 0;
                    self.open_decision = None;
                    self.started_ms = crate::store::now_ms();
                    self.refresh(true);
                    notes.push(Ok(note));
                }
                Message::Note(note) => notes.push(note),
            }
        }
        notes
    }

    /// Takes the rollout's latest published snapshot (cheap: an `Arc`); `force` computes one
    /// now instead, after the user changed something.
    fn refresh(&mut self, force: bool) {
        let Some(rollout) = &self.rollout else { return };
        if force {
            self.snapshot = Some(Arc::new(rollout.snapshot()));
        } else if let Some(latest) = rollout.latest() {
            // A snapshot forced after a click is newer than one published before it.
            if self.snapshot.as_ref().is_none_or(|s| latest.seq > s.seq) {
                self.snapshot = Some(latest);
            }
        }
    }

    /// Each new canary decision, once, for the Log panel.
    fn new_decisions(&mut self) -> Vec<Note> {
        let Some(c) = self.snapshot.as_ref().and_then(|s| s.canary.as_ref()) else { return Vec::new() };
        let notes = c.decisions[self.decisions_logged.min(c.decisions.len())..]
            .iter()
            .map(|d| {
                let line = format!("canary: {}", crate::deploy::report::decision_line(d));
                if d.action == Action::Rollback {
                    Err(line)
                } else {
                    Ok(line)
                }
            })
            .collect();
        self.decisions_logged = c.decisions.len();
        notes
    }

    fn start(&mut self, cx: &DeployContext<'_>, ctx: egui::Context) -> Result<String, String> {
        if self.is_running() {
            return Err("a rollout is already running: stop it first".into());
        }
        let (Some(a), Some(b)) = (cx.a.clone(), cx.b.clone()) else {
            return Err(
                "load a model into both slots first (Models view): A is the current model, B the new one".into()
            );
        };
        let strategy = self.form.strategy()?;
        let mut options = self.form.options()?;
        let fault_b = self.form.fault()?;
        let config = RolloutConfig { strategy, fault_b, stop_when_decided: false };
        let data = self.form.data.trim().to_string();
        let tx = self.tx.clone();
        let sink = super::replay_control::sink(cx.monitor.clone(), cx.log.clone());
        let what = format!("{} of {} against {}", config.strategy.name(), b.card().name, a.card().name);
        self.starting = true;
        let spawned = std::thread::Builder::new().name("rollout-start".into()).spawn(move || {
            let loaded = super::replay_control::load_dataset(&data);
            let message = match loaded {
                Err(e) => Message::Note(Err(format!("deploy: {e}"))),
                Ok(dataset)
                    if dataset.has_images() != a.task().takes_images()
                        || dataset.has_images() != b.task().takes_images() =>
                {
                    Message::Note(Err(format!(
                        "deploy: the data set holds {} but A is for {} and B for {}",
                        if dataset.has_images() { "images" } else { "texts" },
                        a.task(),
                        b.task()
                    )))
                }
                Ok(dataset) => {
                    let n = dataset.examples.len();
                    // Zero-shot arms answer in the data set's label space, as `modeldeck simulate`.
                    if a.task().takes_candidate_labels() || b.task().takes_candidate_labels() {
                        options.candidate_labels = dataset.labels();
                    }
                    let repaint = move || ctx.request_repaint();
                    match Rollout::start(Arc::new(dataset), a, b, config, options, sink, repaint) {
                        Ok(rollout) => {
                            Message::Started(Box::new(rollout), format!("deploy: {what} ({n} examples, looping)"))
                        }
                        Err(e) => Message::Note(Err(format!("deploy: {e}"))),
                    }
                }
            };
            let _ = tx.send(message);
        });
        if let Err(e) = spawned {
            self.starting = false;
            return Err(format!("cannot start the rollout: {e}"));
        }
        Ok("deploy: loading the data set…".into())
    }

    fn form_ui(&mut self, ui: &mut egui::Ui, cx: &DeployContext<'_>, notes: &mut Vec<Note>) {
        let running = self.is_running();
        ui.add_enabled_ui(!running, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.strong("Strategy");
                for kind in StrategyKind::ALL {
                    ui.selectable_value(&mut self.form.strategy, kind, kind.label());
                }
                ui.separator();
                let name =
                    |m: &Option<Arc<LoadedModel>>| m.as_ref().map_or("(empty)".to_string(), |m| m.card().name.clone());
                ui.label(format!("A (current): {}   B (new): {}", name(&cx.a), name(&cx.b)));
            });
            ui.horizontal_wrapped(|ui| match self.form.strategy {
                StrategyKind::Ab => {
                    let label = ui.label("B's weight");
                    ui.add(egui::Slider::new(&mut self.form.weight_b, 0.0..=100.0).suffix(" %")).labelled_by(label.id);
                }
                StrategyKind::Canary => {
                    let label = ui.label("steps");
                    ui.add(egui::TextEdit::singleline(&mut self.form.steps).desired_width(110.0))
                        .on_hover_text("B's weight at each step, in %; passing the last promotes B to 100 %")
                        .labelled_by(label.id);
                    let label = ui.label("min requests");
                    ui.add(egui::DragValue::new(&mut self.form.min_requests).range(1..=1_000_000))
                        .on_hover_text("answers per arm between checks")
                        .labelled_by(label.id);
                    let label = ui.label("min labels");
                    ui.add(egui::DragValue::new(&mut self.form.min_labels).range(1..=1_000_000))
                        .on_hover_text("labels per arm in a step before accuracy is judged")
                        .labelled_by(label.id);
                    let label = ui.label("latency allowed");
                    ui.add(
                        egui::DragValue::new(&mut self.form.allowed_increase)
                            .range(1.0..=100.0)
                            .speed(0.01)
                            .prefix("x"),
                    )
                    .on_hover_text("B may be this much slower (ratio) even when Kayenta finds it significantly slower")
                    .labelled_by(label.id);
                    let label = ui.label("or ms");
                    ui.add(
                        egui::DragValue::new(&mut self.form.allowed_ms)
                            .range(0.0..=10_000.0)
                            .speed(0.01)
                            .prefix("+")
                            .suffix(" ms"),
                    )
                    .on_hover_text("…or by at most this many milliseconds, whatever the ratio (0: the ratio alone)")
                    .labelled_by(label.id);
                    let label = ui.label("error bound");
                    ui.add(
                        egui::DragValue::new(&mut self.form.max_error_increase)
                            .range(0.0..=100.0)
                            .speed(0.1)
                            .suffix(" pts"),
                    )
                    .on_hover_text("B's error rate may exceed A's by this many points")
                    .labelled_by(label.id);
                    let label = ui.label("accuracy bound");
                    ui.add(
                        egui::DragValue::new(&mut self.form.max_accuracy_drop)
                            .range(0.0..=100.0)
                            .speed(0.1)
                            .suffix(" pts"),
                    )
                    .on_hover_text("B's accuracy may fall below A's by this many points")
                    .labelled_by(label.id);
                    let label = ui.label("threshold");
                    ui.add(egui::DragValue::new(&mut self.form.threshold).range(1..=100))
                        .on_hover_text("failed checks before the rollback (Flagger's threshold)")
                        .labelled_by(label.id);
                    ui.checkbox(&mut self.form.manual, "wait for my approval");
                }
                StrategyKind::Shadow | StrategyKind::SideBySide => {
                    ui.label(if self.form.strategy == StrategyKind::Shadow {
                        "A answers every request; B gets a copy on its own thread, answers only logged"
                    } else {
                        "every request to both models"
                    });
                }
            });
            ui.horizontal_wrapped(|ui| {
                let label = ui.label("data");
                ui.add(
                    egui::TextEdit::singleline(&mut self.form.data)
                        .hint_text("demo digits (540 images)")
                        .desired_width(200.0),
                )
                .on_hover_text("an image folder (one sub-folder per label) or a CSV/JSONL of texts or image paths")
                .labelled_by(label.id);
                let label = ui.label("rate");
                ui.add(egui::TextEdit::singleline(&mut self.form.rate).hint_text("max").desired_width(48.0))
                    .on_hover_text("requests per second; empty: as fast as the models go")
                    .labelled_by(label.id);
                ui.label("req/s");
                let label = ui.label("drift");
                ui.add(egui::TextEdit::singleline(&mut self.form.drift).hint_text("none").desired_width(260.0))
                    .on_hover_text("a drift schedule, as in the Monitor view")
                    .labelled_by(label.id);
                let label = ui.label("labels after");
                ui.add(egui::DragValue::new(&mut self.form.label_delay_s).range(0.0..=3600.0).suffix(" s").speed(0.1))
                    .labelled_by(label.id);
                ui.separator();
                ui.label("inject into B:");
                let label = ui.label("delay");
                ui.add(egui::DragValue::new(&mut self.form.delay_ms).range(0.0..=60_000.0).speed(0.1).suffix(" ms"))
                    .on_hover_text("extra latency per answer of B: rehearse a slower release")
                    .labelled_by(label.id);
                let label = ui.label("errors");
                ui.add(egui::DragValue::new(&mut self.form.error_percent).range(0.0..=100.0).speed(0.1).suffix(" %"))
                    .on_hover_text("share of B's requests that fail: rehearse a failing release")
                    .labelled_by(label.id);
            });
        });
        ui.horizontal_wrapped(|ui| {
            if !running {
                if ui.button("Start").clicked() {
                    notes.push(self.start(cx, ui.ctx().clone()));
                }
            } else if let Some(rollout) = &self.rollout {
                if rollout.is_paused() {
                    if ui.button("Resume").clicked() {
                        rollout.resume();
                    }
                } else if ui.button("Pause").clicked() {
                    rollout.pause();
                }
                if ui.button("Stop").clicked() {
                    rollout.stop();
                    notes.push(Ok("deploy: stopped".into()));
                }
            } else {
                ui.label("loading the data set…");
            }
            if let Some(s) = &self.snapshot {
                if let Some(p) = &s.progress {
                    let state = p.state.name();
                    ui.label(format!(
                        "{state}: {} requests, {:.0} req/s, {} errors, {} labels",
                        p.sent, p.rate_per_s, p.errors, p.labels_delivered
                    ));
                    if p.shadow_dropped > 0 {
                        ui.label(format!("{} shadow copies dropped (B too slow)", p.shadow_dropped));
                    }
                }
                if ui.button("Copy decision trail (JSON)").clicked() {
                    match serde_json::to_string_pretty(s) {
                        Ok(json) => {
                            ui.ctx().copy_text(json);
                            notes.push(Ok("deploy: the decision trail is on the clipboard".into()));
                        }
                        Err(e) => notes.push(Err(format!("deploy: {e}"))),
                    }
                }
                if ui.button("Export decision trail").clicked() {
                    notes.push(self.export(s, &cx.export_dir));
                }
            }
        });
    }

    /// Writes the snapshot as JSON next to the prediction log, on a thread.
    fn export(&self, snapshot: &RolloutSnapshot, dir: &std::path::Path) -> Note {
        let json = serde_json::to_string_pretty(snapshot).map_err(|e| format!("deploy: {e}"))?;
        let stamp = crate::store::iso_time(self.started_ms).replace([':', '-'], "").replace('T', "-");
        let name = format!("rollout-{}.json", stamp.get(..15).unwrap_or(&stamp));
        let path = dir.join(name);
        let tx = self.tx.clone();
        let target = path.clone();
        std::thread::Builder::new()
            .name("rollout-export".into())
            .spawn(move || {
                let result = std::fs::create_dir_all(target.parent().unwrap_or(std::path::Path::new(".")))
                    .and_then(|_| std::fs::write(&target, json));
                let _ = tx.send(Message::Note(match result {
                    Ok(()) => Ok(format!("deploy: decision trail saved to {}", target.display())),
                    Err(e) => Err(format!("deploy: cannot save {}: {e}", target.display())),
                }));
            })
            .map_err(|e| format!("deploy: cannot start the export: {e}"))?;
        Ok(format!("deploy: saving the decision trail to {}", path.display()))
    }

    fn live_ui(&mut self, ui: &mut egui::Ui, s: &RolloutSnapshot, notes: &mut Vec<Note>) {
        if let Some(error) = &s.failed {
            ui.colored_label(ui.visuals().error_fg_color, format!("the replay failed: {error}"));
        }
        if s.canary.is_some() {
            self.canary_banner_ui(ui, s, notes);
        }
        arms_ui(ui, s);
        ui.add_space(6.0);
        significance_ui(ui, s);
        if let Some(p) = &s.paired {
            ui.add_space(6.0);
            ui.strong("Paired: the same requests answered by both");
            for line in crate::deploy::report::paired_lines(p) {
                ui.label(line);
            }
        }
        if let Some(c) = &s.canary {
            ui.add_space(6.0);
            ui.columns(2, |cols| {
                cols[0].strong("B's weight over time");
                weight_chart(&mut cols[0], &c.weights, &c.decisions, self.started_ms);
                cols[1].strong(format!("Decisions ({})", c.decisions.len()));
                self.decisions_ui(&mut cols[1], &c.decisions);
            });
        }
    }

    fn canary_banner_ui(&mut self, ui: &mut egui::Ui, s: &RolloutSnapshot, notes: &mut Vec<Note>) {
        let Some(c) = &s.canary else { return };
        let color = match c.phase {
            Phase::Promoted => Color32::from_rgb(40, 160, 70),
            Phase::RolledBack => ui.visuals().error_fg_color,
            Phase::AwaitingApproval => ui.visuals().warn_fg_color,
            Phase::Progressing => ui.visuals().text_color(),
        };
        egui::Frame::group(ui.style()).stroke(egui::Stroke::new(2.0, color)).show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            let step = match c.phase {
                Phase::Progressing | Phase::AwaitingApproval => {
                    format!(" at {} (step {} of {})", percent(c.weight), c.step + 1, c.steps.len())
                }
                _ => String::new(),
            };
            ui.label(
                RichText::new(format!(
                    "CANARY {}{step}: {} failed checks of {}",
                    c.phase.label().to_uppercase(),
                    c.failed_checks,
                    c.threshold
                ))
                .color(color)
                .strong()
                .size(16.0),
            );
            if matches!(c.phase, Phase::Progressing | Phase::AwaitingApproval) {
                ui.label(format!(
                    "next check: {} / {} answers from A and {} / {} from B; labels in this step: A {}, B {} (of {} each)",
                    c.window_answered[0].min(c.min_requests),
                    c.min_requests,
                    c.window_answered[1].min(c.min_requests),
                    c.min_requests,
                    c.step_labels[0],
                    c.step_labels[1],
                    c.min_labels
                ));
            }
            let mut clicked: Option<UserAction> = None;
            ui.horizontal(|ui| {
                if let Some(action) = c.pending {
                    if ui.button(format!("Approve: {}", action.describe())).clicked() {
                        clicked = Some(UserAction::Approve);
                    }
                    if ui.button("Decline").clicked() {
                        clicked = Some(UserAction::Decline);
                    }
                }
                if !c.phase.is_final() {
                    if ui.button("Roll back now").clicked() {
                        clicked = Some(UserAction::Rollback);
                    }
                    if ui.button("Promote now").clicked() {
                        clicked = Some(UserAction::Promote);
                    }
                }
            });
            let (Some(action), Some(rollout)) = (clicked, &self.rollout) else { return };
            let decision = match action {
                UserAction::Approve => rollout.approve(),
                UserAction::Decline => rollout.reject(),
                UserAction::Rollback => rollout.rollback_now(),
                UserAction::Promote => rollout.promote_now(),
            };
            if decision.is_none() {
                notes.push(Err("canary: nothing to decide any more".into()));
            }
            self.refresh(true);
        });
        self.decisions_logged = self.decisions_logged.min(c.decisions.len());
    }

    fn decisions_ui(&mut self, ui: &mut egui::Ui, decisions: &[Decision]) {
        if decisions.is_empty() {
            ui.label("No check yet: each arm needs its minimum of answers first.");
            return;
        }
        egui::ScrollArea::vertical().id_salt("decisions").max_height(260.0).show(ui, |ui| {
            for (i, d) in decisions.iter().enumerate().rev() {
                let (mark, color) = decision_mark(ui, d);
                let time = crate::store::iso_time(d.at_ms);
                let clock = time.get(11..19).unwrap_or(&time).to_string();
                let title = format!("{clock}  #{} at {}  {mark}: {}", d.check, percent(d.weight), d.action.describe());
                let open = self.open_decision == Some(i);
                if ui.selectable_label(open, RichText::new(title).color(color)).clicked() {
                    self.open_decision = if open { None } else { Some(i) };
                }
                if open {
                    evidence_ui(ui, d);
                }
            }
        });
    }
}

#[derive(Clone, Copy)]
enum UserAction {
    Approve,
    Decline,
    Rollback,
    Promote,
}

fn decision_mark(ui: &egui::Ui, d: &Decision) -> (&'static str, Color32) {
    use crate::deploy::CheckOutcome;
    match (d.decided_by, d.outcome) {
        (DecidedBy::User | DecidedBy::UserApproved | DecidedBy::UserRejected, _) => {
            ("you", ui.visuals().hyperlink_color)
        }
        (_, Some(CheckOutcome::Pass)) => ("pass", Color32::from_rgb(40, 160, 70)),
        (_, Some(CheckOutcome::Fail)) => ("FAIL", ui.visuals().error_fg_color),
        (_, Some(CheckOutcome::Hold)) => ("hold", ui.visuals().warn_fg_color),
        (_, None) => ("", ui.visuals().text_color()),
    }
}

/// A decision's evidence: the window and each gate with its numbers.
fn evidence_ui(ui: &mut egui::Ui, d: &Decision) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.label(&d.summary);
        let span_s = (d.window_ms[1] - d.window_ms[0]) as f64 / 1e3;
        ui.label(format!(
            "window: {} answers from A, {} from B over {span_s:.1} s; failed checks {} of {}{}",
            d.window_requests[0],
            d.window_requests[1],
            d.failed_checks,
            d.threshold,
            if d.decided_by == DecidedBy::Proposed { "; waits for your approval" } else { "" }
        ));
        if d.gates.is_empty() {
            return;
        }
        egui::Grid::new(("gates", d.check, d.at_ms)).striped(true).num_columns(4).show(ui, |ui| {
            for h in ["gate", "verdict", "n (A / B)", "evidence"] {
                ui.strong(h);
            }
            ui.end_row();
            for g in &d.gates {
                ui.label(g.gate);
                let (text, color) = match g.verdict {
                    GateVerdict::Pass => ("pass", Color32::from_rgb(40, 160, 70)),
                    GateVerdict::Fail => ("FAIL", ui.visuals().error_fg_color),
                    GateVerdict::NotEnoughData => ("not enough data", ui.visuals().warn_fg_color),
                    GateVerdict::Inconclusive => ("inconclusive", ui.visuals().warn_fg_color),
                    GateVerdict::Skipped => ("skipped", ui.visuals().weak_text_color()),
                };
                ui.colored_label(color, text);
                ui.label(format!("{} / {}", g.n_a, g.n_b));
                ui.add(egui::Label::new(&g.summary).wrap());
                ui.end_row();
            }
        });
    });
}

fn arms_ui(ui: &mut egui::Ui, s: &RolloutSnapshot) {
    egui::Grid::new("deploy-arms").striped(true).num_columns(7).show(ui, |ui| {
        for h in ["arm", "model", "requests", "errors", "latency p50 / p95 / p99", "accuracy", "95 % interval (Wilson)"]
        {
            ui.strong(h);
        }
        ui.end_row();
        for arm in Arm::BOTH {
            let a = s.arm(arm);
            ui.strong(arm.name());
            ui.label(&a.model);
            ui.label(a.answered.to_string());
            ui.label(match a.error_rate {
                Some(r) => format!("{} ({:.2} %)", a.errors, r * 100.0),
                None => "–".into(),
            });
            let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2}"));
            ui.label(format!("{} / {} / {} ms", ms(a.latency_ms.p50), ms(a.latency_ms.p95), ms(a.latency_ms.p99)));
            match &a.accuracy {
                Some(acc) => {
                    ui.label(format!("{:.2} % (n = {})", acc.accuracy * 100.0, acc.n));
                    ui.label(format!("[{:.2}, {:.2}] %", acc.wilson_ci95[0] * 100.0, acc.wilson_ci95[1] * 100.0));
                }
                None => {
                    ui.label(if s.labels_expected { "waiting for labels" } else { "no labels" });
                    ui.label("–");
                }
            }
            ui.end_row();
        }
    });
    if let Some(l) = &s.latency {
        ui.label(crate::deploy::report::latency_line(l));
    }
}

/// The accuracy comparison: fixed-horizon, and its p-value over the labels seen.
fn significance_ui(ui: &mut egui::Ui, s: &RolloutSnapshot) {
    ui.strong("Is B more accurate?");
    let Some(acc) = &s.accuracy else {
        ui.label(if s.labels_expected {
            "waiting for labels on both arms"
        } else {
            "the data set has no labels: no accuracy comparison"
        });
        return;
    };
    if let Some(seq) = &s.sequential {
        ui.label(RichText::new(seq.verdict_text()).strong());
    }
    ui.label(acc.verdict());
    ui.label(format!(
        "difference B - A {:+.2} points, 95 % interval [{:+.2}, {:+.2}] (Newcombe)",
        acc.difference_points, acc.interval_points[0], acc.interval_points[1]
    ));
    if s.history.len() < 2 {
        return;
    }
    let fixed: Vec<PlotPoint> =
        s.history.iter().map(|h| PlotPoint::new(h.labelled as f64, h.fixed_p.max(1e-300).log10())).collect();
    let sequential: Vec<PlotPoint> =
        s.history.iter().map(|h| PlotPoint::new(h.labelled as f64, h.sequential_p.max(1e-300).log10())).collect();
    Plot::new("deploy-significance")
        .height(140.0)
        .legend(Legend::default().position(Corner::RightTop))
        .x_axis_label("labelled requests")
        .y_axis_label("log10 p")
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new("sequential p (valid when watched)", PlotPoints::Owned(sequential)).width(2.0));
            plot.line(Line::new("fixed-horizon p (invalid when watched)", PlotPoints::Owned(fixed)));
            plot.hline(HLine::new("p = 0.05", 0.05f64.log10()));
        });
}

/// B's weight as a step chart over seconds since the start, with a mark per decision.
fn weight_chart(ui: &mut egui::Ui, weights: &[(i64, f64)], decisions: &[Decision], started_ms: i64) {
    let now = crate::store::now_ms();
    let t = |ms: i64| (ms - started_ms) as f64 / 1e3;
    let mut points = Vec::with_capacity(weights.len() * 2 + 1);
    for (i, &(at, w)) in weights.iter().enumerate() {
        if i > 0 {
            points.push(PlotPoint::new(t(at), weights[i - 1].1));
        }
        points.push(PlotPoint::new(t(at), w));
    }
    if let Some(&(_, w)) = weights.last() {
        points.push(PlotPoint::new(t(now).max(points.last().map_or(0.0, |p| p.x)), w));
    }
    let checks: Vec<PlotPoint> =
        decisions.iter().filter(|d| d.outcome.is_some()).map(|d| PlotPoint::new(t(d.at_ms), d.weight)).collect();
    Plot::new("deploy-weight")
        .height(200.0)
        .include_y(0.0)
        .include_y(100.0)
        .include_x(0.0)
        .x_axis_label("seconds since the start")
        .y_axis_label("B's share of traffic, %")
        .allow_scroll(false)
        .show(ui, |plot| {
            // A step chart: no min/max bands where a step's two points share a pixel column.
            plot.line(Line::new("B's weight", PlotPoints::Owned(points)).width(2.0).allow_band(false));
            plot.points(egui_plot::Points::new("checks", PlotPoints::Owned(checks)).radius(3.0));
        });
}
