//! The desktop app (eframe/egui). Views are small structs with `*_ui` methods and never do work:
//! they push [`Command`]s that the app handles at the end of the frame, and all loading and
//! inference runs in the [`Engine`]'s threads, whose events are polled at the start of each frame.
//! Only [`PersistedState`] survives a restart (eframe persistence also keeps the window layout).
//!
//! The tab bar has room for the Monitor, Deploy and Evaluate views that later work adds.

pub mod decode;
pub mod deploy_view;
pub mod dialogs;
pub mod evaluate_view;
mod models_view;
mod monitor_view;
mod playground;
mod replay_control;
mod status;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use crate::engine::{Engine, EngineEvent, Slot};
use crate::model::{ModelCard, Task};
use crate::monitor::Monitor;
use crate::predict::{NamedImage, PredictRequest};
use crate::source::{DownloadUpdate, ModelSource, ResolveOptions};
use decode::{DecodePool, ImageSource, Purpose};
pub use dialogs::{DialogKind, FileDialogs, NativeDialogs};
use playground::{InputImage, Playground};

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PersistedState {
    pub slots: [Option<ModelSource>; 2],
    /// What each slot loads its model's layers in.
    #[serde(default)]
    pub precisions: [crate::model::Precision; 2],
    pub recent: Vec<String>,
    pub dark_mode: Option<bool>,
    pub tab: Tab,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Models,
    #[default]
    Playground,
    Monitor,
    Deploy,
    Evaluate,
}

/// How the app starts.
pub struct AppConfig {
    /// Models for the slots; `None` restores the last session's, else the demos.
    pub a: Option<ModelSource>,
    pub b: Option<ModelSource>,
    /// Precisions for the slots (`--precision-a/-b`); `None` keeps the last session's.
    pub precisions: [Option<crate::model::Precision>; 2],
    pub dialogs: Arc<dyn FileDialogs>,
    pub resolve: ResolveOptions,
    /// Ignore saved state (tests).
    pub fresh: bool,
    /// The prediction log; `None` keeps no log.
    pub log: Option<PathBuf>,
    /// Serve Prometheus metrics here (`--metrics-addr`), and whether a non-loopback address is
    /// allowed.
    pub metrics_addr: Option<(std::net::SocketAddr, bool)>,
    /// How much of the log to keep (`--log-max-rows`, `--log-max-age`).
    pub retention: crate::store::Retention,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            a: None,
            b: None,
            precisions: [None; 2],
            dialogs: Arc::new(NativeDialogs),
            resolve: ResolveOptions::default(),
            fresh: false,
            log: None,
            metrics_addr: None,
            retention: crate::store::Retention::default(),
        }
    }
}

/// Work the views ask for, handled after drawing.
pub enum Command {
    Load(Slot, ModelSource),
    LoadText(Slot, String),
    /// A slot's precision changed: its model is loaded again in it.
    SetPrecision(Slot, crate::model::Precision),
    /// Load the model of the first slot into the second (e.g. the same checkpoint as int8 in B).
    CopySlot(Slot, Slot),
    PickFolder(Slot),
    PickFile(Slot),
    CancelLoad(Slot),
    PickImage,
    /// Decode an image (off the UI thread) and make it the Playground's input.
    OpenImage(ImageSource),
    /// Re-run the current image (continuous mode): only slots that are not busy.
    PredictCurrent,
    /// The current image with changed labels or template: every image model, now.
    PredictChanged,
    PredictText,
    StartReplay(monitor_view::ReplayForm),
    PauseReplay,
    ResumeReplay,
    StopReplay,
    ShowMonitor,
    /// A new drift reference for a model: its current window, or its next `first` predictions.
    ResetReference {
        model: Arc<str>,
        first: Option<usize>,
    },
    /// A drift reference read from the log (`what` names it), or why it could not be read.
    SetReference {
        model: Arc<str>,
        what: String,
        samples: Result<Vec<crate::monitor::drift::DriftSample>, String>,
    },
    /// The user's label for slot's answer to engine request `request` ("this should be …").
    Correct {
        slot: Slot,
        request: u64,
        predicted: String,
        label: String,
    },
}

/// A dialog running on its own thread: which one, for which slot, and the answer.
type DialogAnswer = (DialogKind, Option<Slot>, Option<PathBuf>);

pub enum SlotStatus {
    Idle,
    Loading { source: ModelSource, progress: Option<DownloadUpdate>, started: Instant },
    Failed { source: ModelSource, error: String },
}

/// What the UI knows about a slot.
pub struct SlotView {
    pub status: SlotStatus,
    pub card: Option<ModelCard>,
}

impl Default for SlotView {
    fn default() -> Self {
        Self { status: SlotStatus::Idle, card: None }
    }
}

pub struct ModelDeckApp {
    engine: Engine,
    state: PersistedState,
    slots: [SlotView; 2],
    models: models_view::ModelsView,
    playground: Playground,
    monitor: Monitor,
    monitor_view: monitor_view::MonitorView,
    /// Publishes the monitor's snapshot twice a second (and repaints).
    _refresher: Option<crate::monitor::Refresher>,
    _metrics_server: Option<crate::monitor::prometheus::MetricsServer>,
    /// Alerts firing and resolving, from the refresher, for the Log panel.
    alerts: Receiver<crate::monitor::alerts::AlertEvent>,
    replay: replay_control::ReplayControl,
    deploy_view: deploy_view::DeployView,
    evaluate_view: evaluate_view::EvaluateView,
    log: status::Log,
    memory: status::MemoryProbe,
    frame_times: egui::util::History<f32>,
    last_latency_ms: Option<f64>,
    dialogs: Arc<dyn FileDialogs>,
    /// The dialog being shown, if any (one at a time).
    dialog_open: Option<DialogKind>,
    dialog_tx: Sender<DialogAnswer>,
    dialog_rx: Receiver<DialogAnswer>,
    commands: Vec<Command>,
    decoder: DecodePool,
    /// Until the user picks an input, the first models to load answer a gallery sample.
    auto_sample: bool,
}

impl ModelDeckApp {
    pub fn new(cc: &eframe::CreationContext<'_>, config: AppConfig) -> Self {
        let saved: Option<PersistedState> =
            if config.fresh { None } else { cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)) };
        let mut state = saved.unwrap_or_default();
        if let Some(dark) = state.dark_mode {
            cc.egui_ctx.set_theme(if dark { egui::Theme::Dark } else { egui::Theme::Light });
        }
        let ctx = cc.egui_ctx.clone();
        let mut engine = Engine::new(config.resolve, move || ctx.request_repaint());
        let demo = |name: &str| Some(ModelSource::Demo { name: name.into() });
        let starting = [
            config.a.or_else(|| state.slots[0].clone()).or_else(|| demo("digits-v1")),
            config.b.or_else(|| state.slots[1].clone()).or_else(|| demo("digits-v2")),
        ];
        let mut slots: [SlotView; 2] = Default::default();
        for slot in Slot::ALL {
            if let Some(p) = config.precisions[slot.index()] {
                state.precisions[slot.index()] = p;
            }
            engine.set_precision(slot, state.precisions[slot.index()]);
            if let Some(source) = &starting[slot.index()] {
                engine.load(slot, source.clone());
                slots[slot.index()].status =
                    SlotStatus::Loading { source: source.clone(), progress: None, started: Instant::now() };
            }
        }
        state.slots = starting;
        let ctx = cc.egui_ctx.clone();
        let decoder = DecodePool::new(2, move || ctx.request_repaint());
        let mut log = status::Log::default();
        let monitor = Monitor::with_defaults(crate::store::now_ms());
        let mut monitor_view = monitor_view::MonitorView::new();
        if let Some(path) = &config.log {
            // A log that cannot be used is reported; the app starts anyway, with a fresh log.
            let (opened, note) = crate::store::PredictionLog::open_or_fresh(path, config.retention);
            if let Some(note) = note {
                log.error(note);
            }
            match opened {
                Ok(prediction_log) => {
                    log.info(format!("logging predictions to {}", prediction_log.path().display()));
                    monitor_view.log_path = Some(prediction_log.path().to_path_buf());
                    monitor.set_log(Some(prediction_log.clone()));
                    engine.set_log(Some(prediction_log));
                }
                Err(e) => log.error(format!("predictions are not logged: {e}")),
            }
        }
        for item in crate::source::embedded::GALLERY {
            let source = ImageSource::Embedded { name: item.name.to_string(), bytes: item.bytes };
            if let Err(e) = decoder.submit(source, Purpose::Gallery) {
                log.error(e);
            }
        }
        engine.set_monitor(Some(monitor.clone()));
        let metrics_server = config.metrics_addr.and_then(|(addr, allow_remote)| {
            let metrics = Arc::new(crate::monitor::prometheus::PromMetrics::new());
            let access = if allow_remote {
                crate::monitor::prometheus::Access::AllowRemote
            } else {
                crate::monitor::prometheus::Access::LoopbackOnly
            };
            match crate::monitor::prometheus::MetricsServer::start(addr, metrics.clone(), access) {
                Ok(server) => {
                    log.info(format!("serving Prometheus metrics on http://{}/metrics", server.addr()));
                    monitor.set_prometheus(Some(metrics));
                    Some(server)
                }
                Err(e) => {
                    log.error(format!("no Prometheus endpoint: {e}"));
                    None
                }
            }
        });
        let ctx = cc.egui_ctx.clone();
        let (alert_tx, alert_rx) = std::sync::mpsc::channel();
        let refresher = match monitor.start_refresher(move |events| {
            for e in events {
                let _ = alert_tx.send(e.clone());
            }
            ctx.request_repaint();
        }) {
            Ok(r) => Some(r),
            Err(e) => {
                log.error(format!("the Monitor view will not update: cannot start its thread: {e}"));
                None
            }
        };
        let (dialog_tx, dialog_rx) = std::sync::mpsc::channel();
        Self {
            engine,
            state,
            slots,
            models: models_view::ModelsView::new(),
            playground: Playground::new(),
            monitor,
            monitor_view,
            _refresher: refresher,
            _metrics_server: metrics_server,
            alerts: alert_rx,
            replay: Default::default(),
            deploy_view: Default::default(),
            evaluate_view: Default::default(),
            log,
            memory: status::MemoryProbe::default(),
            frame_times: egui::util::History::new(0..300, 2.0),
            last_latency_ms: None,
            dialogs: config.dialogs,
            dialog_open: None,
            dialog_tx,
            dialog_rx,
            commands: Vec::new(),
            decoder,
            auto_sample: true,
        }
    }

    /// The live monitor every prediction flows into.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The Deploy view's form as the user set it (tests).
    pub fn deploy_form(&self) -> &deploy_view::DeployForm {
        &self.deploy_view.form
    }

    /// The Evaluate view (tests).
    pub fn evaluate_view(&self) -> &evaluate_view::EvaluateView {
        &self.evaluate_view
    }

    /// The Deploy view's latest rollout snapshot (tests).
    pub fn rollout(&self) -> Option<&crate::deploy::RolloutSnapshot> {
        self.deploy_view.snapshot()
    }

    pub fn state(&self) -> &PersistedState {
        &self.state
    }

    /// The card of the model in `slot`, once loaded.
    pub fn card(&self, slot: Slot) -> Option<&ModelCard> {
        self.slots[slot.index()].card.as_ref()
    }

    /// The top label of `slot`'s latest answer.
    pub fn top_label(&self, slot: Slot) -> Option<String> {
        let (output, _) = self.playground.results[slot.index()].answer.as_ref()?;
        output.top_label().map(str::to_string)
    }

    /// `slot`'s latest answer.
    pub fn answer(&self, slot: Slot) -> Option<Arc<crate::predict::PredictOutput>> {
        self.playground.results[slot.index()].answer.as_ref().map(|(output, _)| output.clone())
    }

    /// The name of the input `slot` last answered ("digit 3", "pasted image", a file name).
    pub fn answered_input(&self, slot: Slot) -> Option<&str> {
        let result = &self.playground.results[slot.index()];
        result.answer.as_ref().map(|_| result.input_name.as_str())
    }

    /// The Playground's current input image: its name and full size.
    pub fn input_image(&self) -> Option<(&str, [u32; 2])> {
        self.playground.image.as_ref().map(|i| (i.name.as_str(), [i.image.width(), i.image.height()]))
    }

    /// The size of the preview texture of the current input, once drawn.
    pub fn input_preview_size(&self) -> Option<[usize; 2]> {
        self.playground.image.as_ref().and_then(InputImage::texture_size)
    }

    /// The error `slot` showed for its latest input, if any.
    pub fn slot_error(&self, slot: Slot) -> Option<&str> {
        self.playground.results[slot.index()].error.as_deref()
    }

    /// Every message shown so far.
    pub fn log_messages(&self) -> Vec<String> {
        self.log.entries.iter().map(|e| e.text.clone()).collect()
    }

    pub fn set_continuous(&mut self, on: bool) {
        self.playground.continuous = on;
    }

    /// Mean frame time over the last two seconds, in ms.
    pub fn mean_frame_ms(&self) -> Option<f32> {
        self.frame_times.average().map(|s| s * 1e3)
    }

    pub fn max_frame_ms(&self) -> Option<f32> {
        self.frame_times.values().fold(None, |m: Option<f32>, v| Some(m.map_or(v, |m| m.max(v)))).map(|s| s * 1e3)
    }

    fn handle_engine_events(&mut self) {
        for event in self.engine.poll() {
            match event {
                EngineEvent::LoadStarted { slot, source } => {
                    self.slots[slot.index()].status =
                        SlotStatus::Loading { source, progress: None, started: Instant::now() };
                }
                EngineEvent::Download { slot, update } => {
                    if let SlotStatus::Loading { progress, started, .. } = &mut self.slots[slot.index()].status {
                        if progress.as_ref().is_none_or(|p| p.file != update.file) {
                            *started = Instant::now();
                        }
                        *progress = Some(update);
                    }
                }
                EngineEvent::Loaded { slot, card } => {
                    self.log.info(format!(
                        "{}: loaded {} ({}) in {:.0} ms",
                        slot.name(),
                        card.name,
                        card.architecture,
                        card.load_ms
                    ));
                    let source_text = card.source.clone();
                    self.state.recent.retain(|r| r != &source_text);
                    self.state.recent.insert(0, source_text);
                    self.state.recent.truncate(12);
                    if let SlotStatus::Loading { source, .. } = &self.slots[slot.index()].status {
                        self.state.slots[slot.index()] = Some(source.clone());
                    }
                    let view = &mut self.slots[slot.index()];
                    view.status = SlotStatus::Idle;
                    view.card = Some(card);
                    self.playground.results[slot.index()] = Default::default();
                    // A newly loaded model answers whatever the Playground shows.
                    self.predict_slot(slot);
                }
                EngineEvent::LoadFailed { slot, source, error } => {
                    self.log.error(format!("{}: could not load {source}: {error}", slot.name()));
                    self.slots[slot.index()].status = SlotStatus::Failed { source, error };
                }
                EngineEvent::LoadCancelled { slot } => {
                    self.log.info(format!("{}: loading cancelled", slot.name()));
                    self.slots[slot.index()].status = SlotStatus::Idle;
                }
                EngineEvent::Predicted { slot, prediction } => {
                    let result = &mut self.playground.results[slot.index()];
                    if let Some((id, generation)) = result.pending {
                        if id == prediction.request {
                            result.pending = None;
                            result.error = None;
                            self.last_latency_ms = Some(prediction.output.latency_ms);
                            result.answered = Some((prediction.request, crate::store::now_ms()));
                            result.corrected = None;
                            result.correction.clear();
                            result.answer = Some((prediction.output, generation));
                        }
                    }
                    if self.playground.continuous {
                        self.commands.push(Command::PredictCurrent);
                    }
                }
                EngineEvent::PredictFailed { slot, request, error } => {
                    let result = &mut self.playground.results[slot.index()];
                    if result.pending.is_some_and(|(id, _)| id == request) {
                        result.pending = None;
                        result.answer = None;
                        result.error = Some(error.clone());
                    }
                    self.log.error(format!("{}: {error}", slot.name()));
                }
                EngineEvent::Replaced { slot, .. } => self.playground.results[slot.index()].replaced += 1,
            }
        }
    }

    /// Images the decoder finished: gallery thumbnails, or a new input to predict.
    fn handle_decoded_images(&mut self) {
        for outcome in self.decoder.poll() {
            match outcome {
                Ok(decoded) if decoded.purpose == Purpose::Gallery => self.playground.add_to_gallery(decoded),
                Ok(decoded) => {
                    self.auto_sample = false;
                    self.playground.image = Some(InputImage::new(decoded));
                    self.playground.generation += 1;
                    self.predict_images(true);
                }
                Err(error) => self.log.error(error),
            }
        }
    }

    /// Answers from dialogs that ran on their own threads.
    fn handle_dialog_answers(&mut self) {
        for (kind, slot, path) in self.dialog_rx.try_iter().collect::<Vec<_>>() {
            self.dialog_open = None;
            let Some(path) = path else { continue };
            match (kind, slot) {
                (DialogKind::Image, _) => self.open_image(ImageSource::File(path)),
                (DialogKind::ModelFolder | DialogKind::ModelFile, Some(slot)) => {
                    self.engine.load(slot, ModelSource::Local { path })
                }
                (_, None) => {}
            }
        }
    }

    /// Shows a dialog on a thread of its own; the answer arrives in a later frame.
    fn open_dialog(&mut self, kind: DialogKind, slot: Option<Slot>) {
        if self.dialog_open.is_some() {
            self.log.info("a file dialog is already open");
            return;
        }
        let (dialogs, tx) = (self.dialogs.clone(), self.dialog_tx.clone());
        let spawned = std::thread::Builder::new().name("modeldeck-dialog".into()).spawn(move || {
            let _ = tx.send((kind, slot, dialogs.pick(kind)));
        });
        match spawned {
            Ok(_) => self.dialog_open = Some(kind),
            Err(e) => self.log.error(format!("cannot open the file dialog: {e}")),
        }
    }

    fn open_image(&mut self, source: ImageSource) {
        self.auto_sample = false;
        if let Err(e) = self.decoder.submit(source, Purpose::Input) {
            self.log.error(e);
        }
    }

    /// Until the user chooses an input, show the loaded models answering a gallery sample: a
    /// digit for digit classifiers, else a photo.
    fn auto_sample(&mut self) {
        if !self.auto_sample || self.playground.image.is_some() {
            return;
        }
        let cards: Vec<&ModelCard> = self.slots.iter().filter_map(|s| s.card.as_ref()).collect();
        if !cards.iter().any(|c| c.task.takes_images()) {
            return;
        }
        let digits = cards.iter().any(|c| c.labels.iter().any(|l| l == "3"));
        let wanted = if digits { "digit 3" } else { "sample chelsea" };
        if let Some(item) = crate::source::embedded::GALLERY.iter().find(|g| g.name == wanted) {
            self.auto_sample = false;
            self.open_image(ImageSource::Embedded { name: item.name.to_string(), bytes: item.bytes });
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let (dropped, pointer, width) = ctx.input(|i| {
            let files: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
            (files, i.pointer.hover_pos(), i.viewport_rect().width())
        });
        // Ctrl+V with an image on the clipboard: converted and checked on the decoder's threads.
        let pasted: Vec<Arc<egui::ColorImage>> = ctx.input(|i| {
            i.events
                .iter()
                .filter_map(|e| match e {
                    egui::Event::PasteImage(image) => Some(image.clone()),
                    _ => None,
                })
                .collect()
        });
        for image in pasted {
            self.open_image(ImageSource::Pasted(image));
            self.state.tab = Tab::Playground;
        }
        for path in dropped {
            if is_data_set(&path, self.state.tab == Tab::Evaluate) {
                self.evaluate_view.set_data(&path);
                self.state.tab = Tab::Evaluate;
            } else if looks_like_model(&path) {
                // Left half of the window loads into A, right half into B.
                let slot = match pointer {
                    Some(p) if p.x > width / 2.0 => Slot::B,
                    _ => Slot::A,
                };
                self.commands.push(Command::Load(slot, ModelSource::Local { path }));
                self.state.tab = Tab::Models;
            } else {
                self.open_image(ImageSource::File(path));
                self.state.tab = Tab::Playground;
            }
        }
    }

    fn handle_commands(&mut self) {
        for command in std::mem::take(&mut self.commands) {
            match command {
                Command::Load(slot, source) => self.engine.load(slot, source),
                Command::LoadText(slot, text) => match ModelSource::parse(&text) {
                    Ok(source) => self.engine.load(slot, source),
                    Err(e) => self.log.error(format!("{}: {e}", slot.name())),
                },
                Command::SetPrecision(slot, precision) => {
                    self.state.precisions[slot.index()] = precision;
                    self.engine.set_precision(slot, precision);
                    if let Some(
                        source @ (ModelSource::Hub { .. } | ModelSource::Local { .. } | ModelSource::Demo { .. }),
                    ) = self.state.slots[slot.index()].clone()
                    {
                        self.log.info(format!("{}: loading {source} again as {precision}", slot.name()));
                        self.engine.load(slot, source);
                    }
                }
                Command::CopySlot(from, to) => match self.state.slots[from.index()].clone() {
                    Some(source) => self.engine.load(to, source),
                    None => self.log.error(format!("slot {} has no model to copy", from.name())),
                },
                Command::PickFolder(slot) => self.open_dialog(DialogKind::ModelFolder, Some(slot)),
                Command::PickFile(slot) => self.open_dialog(DialogKind::ModelFile, Some(slot)),
                Command::CancelLoad(slot) => self.engine.cancel_load(slot),
                Command::PickImage => self.open_dialog(DialogKind::Image, None),
                Command::OpenImage(source) => self.open_image(source),
                Command::PredictCurrent => self.predict_images(false),
                Command::PredictChanged => {
                    self.playground.generation += 1;
                    self.predict_images(true);
                }
                Command::PredictText => {
                    self.playground.generation += 1;
                    self.predict_text();
                }
                Command::StartReplay(form) => {
                    let model = self.engine.model(form.slot);
                    match self.replay.start(&form, model, &self.monitor, self.engine.log()) {
                        Ok(note) => self.log.info(note),
                        Err(e) => self.log.error(format!("replay: {e}")),
                    }
                }
                Command::PauseReplay => self.replay.pause(),
                Command::ResumeReplay => self.replay.resume(),
                Command::StopReplay => self.replay.stop(),
                Command::ShowMonitor => self.state.tab = Tab::Monitor,
                Command::ResetReference { model, first } => {
                    self.monitor.reset_reference(&model, first);
                    self.log.info(match first {
                        None => format!("{model}: the current window is now the drift reference"),
                        Some(n) => format!("{model}: the next {n} predictions will be the drift reference"),
                    });
                }
                Command::SetReference { model, what, samples } => match samples {
                    Ok(samples) => {
                        self.monitor.set_reference(&model, &samples);
                        self.log.info(format!("{model}: the drift reference is now {what} ({} rows)", samples.len()));
                    }
                    Err(e) => self.log.error(format!("{model}: {what} cannot be the drift reference: {e}")),
                },
                Command::Correct { slot, request, predicted, label } => self.correct(slot, request, &predicted, &label),
            }
        }
    }

    /// Records the user's label for an answer: in the log (by request id) and in the monitor,
    /// where it counts in accuracy.
    fn correct(&mut self, slot: Slot, request: u64, predicted: &str, label: &str) {
        let result = &mut self.playground.results[slot.index()];
        let Some((answered, at_ms)) = result.answered.filter(|(id, _)| *id == request) else { return };
        result.corrected = Some(label.to_string());
        self.engine.set_label(answered, label);
        if let Some(card) = &self.slots[slot.index()].card {
            self.monitor.feedback(crate::monitor::Feedback {
                model: card.source.as_str().into(),
                request_id: Engine::log_request_id(answered).into(),
                label: label.into(),
                correct: predicted == label,
                predicted_at_ms: at_ms,
                at_ms: crate::store::now_ms(),
            });
        }
        self.log.info(format!("{}: labelled {label} (the model said {predicted})", slot.name()));
    }

    /// The Playground's current input as a request for a model of `task`, with its display name.
    fn request_for(&self, task: Task) -> Option<(PredictRequest, String)> {
        let pg = &self.playground;
        let text_name = || format!("text ({} chars)", pg.text.chars().count());
        let (mut request, name) = match task {
            Task::ImageClassification | Task::ZeroShotImageClassification => {
                let current = pg.image.as_ref()?;
                let image = NamedImage { name: current.name.clone(), image: current.image.clone() };
                (PredictRequest::images(vec![image]), current.name.clone())
            }
            Task::TextClassification | Task::ZeroShotTextClassification => {
                (PredictRequest::texts(vec![pg.text.clone()]), text_name())
            }
            Task::TextEmbedding => (PredictRequest::texts(vec![pg.text.clone(), pg.text_b.clone()]), text_name()),
        };
        if task == Task::ZeroShotImageClassification {
            request.labels = pg.labels.split(',').map(|s| s.trim().to_string()).collect();
            let template = pg.template.trim();
            request.template = (!template.is_empty()).then(|| template.to_string());
        }
        if task == Task::ZeroShotTextClassification {
            request.labels = pg.text_labels.split(',').map(|s| s.trim().to_string()).collect();
            let template = pg.text_template.trim();
            request.template = (!template.is_empty()).then(|| template.to_string());
            request.multi_label = pg.multi_label;
        }
        request.top_k = pg.top_k;
        Some((request, name))
    }

    /// Sends the current input to `slot`, if it has a model that takes it.
    fn predict_slot(&mut self, slot: Slot) {
        let Some(task) = self.slots[slot.index()].card.as_ref().map(|c| c.task) else { return };
        if let Some((request, name)) = self.request_for(task) {
            self.submit(slot, request, &name);
        }
    }

    /// Sends the current image to every image model; with `new_input` false (continuous mode),
    /// only to slots that are not busy.
    fn predict_images(&mut self, new_input: bool) {
        for slot in Slot::ALL {
            let Some(card) = &self.slots[slot.index()].card else { continue };
            if !card.task.takes_images() {
                continue;
            }
            if !new_input && self.playground.results[slot.index()].pending.is_some() {
                continue;
            }
            self.predict_slot(slot);
        }
    }

    fn predict_text(&mut self) {
        for slot in Slot::ALL {
            if self.slots[slot.index()].card.as_ref().is_some_and(|c| !c.task.takes_images()) {
                self.predict_slot(slot);
            }
        }
    }

    fn submit(&mut self, slot: Slot, request: PredictRequest, name: &str) {
        let id = self.engine.predict(slot, request);
        let result = &mut self.playground.results[slot.index()];
        result.pending = Some((id, self.playground.generation));
        result.input_name = name.to_string();
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("ModelDeck");
            ui.separator();
            ui.selectable_value(&mut self.state.tab, Tab::Playground, "Playground");
            ui.selectable_value(&mut self.state.tab, Tab::Models, "Models");
            ui.selectable_value(&mut self.state.tab, Tab::Monitor, "Monitor");
            ui.selectable_value(&mut self.state.tab, Tab::Deploy, "Deploy");
            ui.selectable_value(&mut self.state.tab, Tab::Evaluate, "Evaluate");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let dark = ui.visuals().dark_mode;
                if ui.button(if dark { "Light theme" } else { "Dark theme" }).clicked() {
                    ui.ctx().set_theme(if dark { egui::Theme::Light } else { egui::Theme::Dark });
                    self.state.dark_mode = Some(!dark);
                }
                let errors = self.log.errors();
                let text = if errors > 0 { format!("Log ({errors} errors)") } else { "Log".to_string() };
                ui.toggle_value(&mut self.log.open, text);
            });
        });
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for slot in Slot::ALL {
                let view = &self.slots[slot.index()];
                let text = match (&view.status, &view.card) {
                    (SlotStatus::Loading { source, .. }, _) => format!("{}: loading {source}", slot.name()),
                    (_, Some(card)) => format!("{}: {}", slot.name(), card.name),
                    (SlotStatus::Failed { .. }, None) => format!("{}: failed", slot.name()),
                    _ => format!("{}: empty", slot.name()),
                };
                ui.label(text);
                ui.separator();
            }
            if let Some(kind) = self.dialog_open {
                let what = match kind {
                    DialogKind::ModelFolder => "a model folder",
                    DialogKind::ModelFile => "a model file",
                    DialogKind::Image => "an image",
                };
                ui.label(format!("choosing {what} in a file dialog…"));
                ui.separator();
            }
            if let Some(ms) = self.last_latency_ms {
                ui.label(format!("last latency {ms:.1} ms"));
                ui.separator();
            }
            if let Some(rss) = self.memory.rss_bytes {
                ui.label(format!("memory {}", models_view::human_bytes(rss)));
                ui.separator();
            }
            if let (Some(mean), Some(max)) = (self.mean_frame_ms(), self.max_frame_ms()) {
                ui.label(format!("frame {mean:.1} ms (max {max:.1})"))
                    .on_hover_text("CPU time per frame over the last 2 s; 16.7 ms is the 60 fps budget");
            }
        });
    }
}

/// A CSV or JSONL file, or (on the Evaluate tab, or without a model's config.json) a folder:
/// something to evaluate rather than a model to load.
fn is_data_set(path: &Path, evaluating: bool) -> bool {
    if path.is_dir() {
        return evaluating || !(path.join("config.json").is_file() || path.join("model.safetensors").is_file());
    }
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "csv" | "jsonl" | "ndjson"))
}

fn looks_like_model(path: &Path) -> bool {
    if path.is_dir() {
        return true;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "config.json"
        || path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "safetensors" | "bin" | "pth" | "pt"))
}

impl eframe::App for ModelDeckApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if let Some(cpu) = frame.info().cpu_usage {
            self.frame_times.add(ctx.input(|i| i.time), cpu);
        }
        self.memory.refresh();
        self.handle_engine_events();
        self.handle_decoded_images();
        self.handle_dialog_answers();
        self.handle_dropped_files(&ctx);
        self.auto_sample();

        egui::Panel::top("top").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui));
        if self.log.open {
            egui::Panel::bottom("log").resizable(true).default_size(160.0).show(ui, |ui| {
                ui.strong("Log");
                self.log.log_ui(ui);
            });
        }
        let export_dir = self
            .engine
            .log()
            .as_ref()
            .and_then(|l| l.path().parent().map(Path::to_path_buf))
            .unwrap_or_else(crate::source::embedded::cache_dir);
        egui::CentralPanel::default_margins().show(ui, |ui| match self.state.tab {
            Tab::Models => {
                self.models.ui(ui, &self.slots, &self.state.recent, self.state.precisions, &mut self.commands)
            }
            Tab::Playground => self.playground.ui(ui, &self.slots, &mut self.commands),
            Tab::Monitor => {
                let snapshot = self.monitor.snapshot();
                let status = self.replay.status();
                self.monitor_view.ui(ui, &snapshot, &status, &mut self.commands);
            }
            Tab::Deploy => {
                let cx = deploy_view::DeployContext {
                    a: self.engine.model(Slot::A),
                    b: self.engine.model(Slot::B),
                    monitor: &self.monitor,
                    log: self.engine.log(),
                    export_dir: export_dir.clone(),
                };
                for note in self.deploy_view.ui(ui, cx) {
                    match note {
                        Ok(text) => self.log.info(text),
                        Err(text) => self.log.error(text),
                    }
                }
            }
            Tab::Evaluate => {
                let cx = evaluate_view::EvaluateContext {
                    a: self.engine.model(Slot::A),
                    b: self.engine.model(Slot::B),
                    monitor: &self.monitor,
                    log: self.engine.log(),
                    export_dir: export_dir.clone(),
                };
                for note in self.evaluate_view.ui(ui, cx) {
                    match note {
                        Ok(text) => self.log.info(text),
                        Err(text) => self.log.error(text),
                    }
                }
            }
        });
        while let Ok(alert) = self.alerts.try_recv() {
            match alert.state {
                crate::monitor::alerts::AlertState::Firing => {
                    self.log.error(format!("alert {}: {}", alert.rule, alert.message))
                }
                crate::monitor::alerts::AlertState::Resolved => {
                    self.log.info(format!("resolved {}: {}", alert.rule, alert.message))
                }
            }
        }
        for note in self.replay.poll() {
            match note {
                Ok(text) => self.log.info(text),
                Err(text) => self.log.error(text),
            }
        }
        self.log.toasts_ui(&ctx);
        if ctx.input(|i| !i.raw.hovered_files.is_empty()) {
            egui::Area::new(egui::Id::unique("drop-hint")).anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO).show(
                &ctx,
                |ui| {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.heading(
                            "Drop a model folder (left half: A, right half: B), an image, or a data set to evaluate \
                         (a folder of images, a CSV or a JSONL)",
                        );
                    });
                },
            );
        }
        self.handle_commands();
        if self.playground.continuous {
            ctx.request_repaint();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state);
    }
}

/// Opens the desktop app.
pub fn run(config: AppConfig) -> Result<(), String> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("ModelDeck")
            .with_app_id("modeldeck")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 600.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native("ModelDeck", options, Box::new(|cc| Ok(Box::new(ModelDeckApp::new(cc, config)))))
        .map_err(|e| format!("cannot open the window: {e}"))
}
