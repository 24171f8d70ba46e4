//! The desktop app (eframe/egui). Views are small structs with `*_ui` methods and never do work:
//! they push [`Command`]s that the app handles at the end of the frame, and all loading and
//! inference runs in the [`Engine`]'s threads, whose events are polled at the start of each frame.
//! Only [`PersistedState`] survives a restart (eframe persistence also keeps the window layout).
//!
//! The tab bar has room for the Monitor, Deploy and Evaluate views that later work adds.

pub mod dialogs;
mod models_view;
mod playground;
mod status;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use image::RgbImage;

use crate::engine::{Engine, EngineEvent, PredictionInput, Slot};
use crate::model::{ModelCard, Task};
use crate::source::{DownloadUpdate, ModelSource, ResolveOptions};
pub use dialogs::{FileDialogs, NativeDialogs, ScriptedDialogs};
use playground::{InputImage, Playground};

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PersistedState {
    pub slots: [Option<ModelSource>; 2],
    pub recent: Vec<String>,
    pub dark_mode: Option<bool>,
    pub tab: Tab,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    Models,
    #[default]
    Playground,
}

/// How the app starts.
pub struct AppConfig {
    /// Models for the slots; `None` restores the last session's, else the demos.
    pub a: Option<ModelSource>,
    pub b: Option<ModelSource>,
    pub dialogs: Box<dyn FileDialogs>,
    pub resolve: ResolveOptions,
    /// Ignore saved state (tests).
    pub fresh: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self { a: None, b: None, dialogs: Box::new(NativeDialogs), resolve: ResolveOptions::default(), fresh: false }
    }
}

/// Work the views ask for, handled after drawing.
pub enum Command {
    Load(Slot, ModelSource),
    LoadText(Slot, String),
    PickFolder(Slot),
    PickFile(Slot),
    CancelLoad(Slot),
    PickImage,
    SetImage(Arc<RgbImage>, String),
    PredictCurrent,
    PredictText,
}

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
    log: status::Log,
    memory: status::MemoryProbe,
    frame_times: egui::util::History<f32>,
    last_latency_ms: Option<f64>,
    dialogs: Box<dyn FileDialogs>,
    commands: Vec<Command>,
    decoded_tx: Sender<Result<(RgbImage, String), String>>,
    decoded_rx: Receiver<Result<(RgbImage, String), String>>,
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
            if let Some(source) = &starting[slot.index()] {
                engine.load(slot, source.clone());
                slots[slot.index()].status =
                    SlotStatus::Loading { source: source.clone(), progress: None, started: Instant::now() };
            }
        }
        state.slots = starting;
        let (decoded_tx, decoded_rx) = std::sync::mpsc::channel();
        Self {
            engine,
            state,
            slots,
            models: models_view::ModelsView::new(),
            playground: Playground::new(&cc.egui_ctx),
            log: status::Log::default(),
            memory: status::MemoryProbe::default(),
            frame_times: egui::util::History::new(0..300, 2.0),
            last_latency_ms: None,
            dialogs: config.dialogs,
            commands: Vec::new(),
            decoded_tx,
            decoded_rx,
        }
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
        let (answer, _, _) = self.playground.results[slot.index()].answer.as_ref()?;
        answer.top_label().map(str::to_string)
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
                            result.answer = Some((prediction.answer, prediction.latency_ms, generation));
                            self.last_latency_ms = Some(prediction.latency_ms);
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
        for decoded in self.decoded_rx.try_iter().collect::<Vec<_>>() {
            match decoded {
                Ok((image, name)) => self.commands.push(Command::SetImage(Arc::new(image), name)),
                Err(error) => self.log.error(error),
            }
        }
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let (dropped, pointer, width) = ctx.input(|i| {
            let files: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
            (files, i.pointer.hover_pos(), i.viewport_rect().width())
        });
        // Ctrl+V with an image on the clipboard.
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
            let [w, h] = image.size;
            let rgb = RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let c = image.pixels[y as usize * w + x as usize];
                image::Rgb([c.r(), c.g(), c.b()])
            });
            if w > 0 && h > 0 {
                self.commands.push(Command::SetImage(Arc::new(rgb), "pasted image".into()));
                self.state.tab = Tab::Playground;
            }
        }
        for path in dropped {
            if looks_like_model(&path) {
                // Left half of the window loads into A, right half into B.
                let slot = match pointer {
                    Some(p) if p.x > width / 2.0 => Slot::B,
                    _ => Slot::A,
                };
                self.commands.push(Command::Load(slot, ModelSource::Local { path }));
                self.state.tab = Tab::Models;
            } else {
                self.decode_in_background(path);
                self.state.tab = Tab::Playground;
            }
        }
    }

    fn decode_in_background(&self, path: PathBuf) {
        let tx = self.decoded_tx.clone();
        std::thread::spawn(move || {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let result = crate::model::decode_image_file(&path).map(|i| (i, name)).map_err(|e| e.to_string());
            let _ = tx.send(result);
        });
    }

    fn handle_commands(&mut self) {
        for command in std::mem::take(&mut self.commands) {
            match command {
                Command::Load(slot, source) => self.engine.load(slot, source),
                Command::LoadText(slot, text) => match ModelSource::parse(&text) {
                    Ok(source) => self.engine.load(slot, source),
                    Err(e) => self.log.error(format!("{}: {e}", slot.name())),
                },
                Command::PickFolder(slot) => {
                    if let Some(path) = self.dialogs.pick_model_folder() {
                        self.engine.load(slot, ModelSource::Local { path });
                    }
                }
                Command::PickFile(slot) => {
                    if let Some(path) = self.dialogs.pick_model_file() {
                        self.engine.load(slot, ModelSource::Local { path });
                    }
                }
                Command::CancelLoad(slot) => self.engine.cancel_load(slot),
                Command::PickImage => {
                    if let Some(path) = self.dialogs.pick_image() {
                        self.decode_in_background(path);
                    }
                }
                Command::SetImage(image, name) => {
                    self.playground.image = Some(InputImage::new(image, name));
                    self.playground.generation += 1;
                    self.predict_current(true);
                }
                Command::PredictCurrent => self.predict_current(false),
                Command::PredictText => {
                    self.playground.generation += 1;
                    self.predict_text();
                }
            }
        }
    }

    /// Sends the current image to every image model (zero-shot models get the labels too).
    fn predict_current(&mut self, new_input: bool) {
        let Some(current) = &self.playground.image else { return };
        let (image, name) = (current.image.clone(), current.name.clone());
        let labels: Vec<String> = self.playground.labels.split(',').map(|s| s.trim().to_string()).collect();
        for slot in Slot::ALL {
            let Some(card) = &self.slots[slot.index()].card else { continue };
            let input = match card.task {
                Task::ImageClassification => PredictionInput::Image(image.clone()),
                Task::ZeroShotImageClassification => {
                    PredictionInput::ZeroShot { image: image.clone(), labels: labels.clone() }
                }
                _ => continue,
            };
            if !new_input && self.playground.results[slot.index()].pending.is_some() {
                continue;
            }
            self.submit(slot, input, &name);
        }
    }

    fn predict_text(&mut self) {
        for slot in Slot::ALL {
            let Some(card) = &self.slots[slot.index()].card else { continue };
            let texts = match card.task {
                Task::TextClassification => vec![self.playground.text.clone()],
                Task::TextEmbedding => vec![self.playground.text.clone(), self.playground.text_b.clone()],
                _ => continue,
            };
            let name = format!("text ({} chars)", self.playground.text.chars().count());
            self.submit(slot, PredictionInput::Texts(texts), &name);
        }
    }

    fn submit(&mut self, slot: Slot, input: PredictionInput, name: &str) {
        let id = self.engine.predict(slot, input, self.playground.top_k);
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
        self.handle_dropped_files(&ctx);

        egui::Panel::top("top").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui));
        if self.log.open {
            egui::Panel::bottom("log").resizable(true).default_size(160.0).show(ui, |ui| {
                ui.strong("Log");
                self.log.log_ui(ui);
            });
        }
        egui::CentralPanel::default_margins().show(ui, |ui| match self.state.tab {
            Tab::Models => self.models.ui(ui, &self.slots, &self.state.recent, &mut self.commands),
            Tab::Playground => self.playground.ui(ui, &self.slots, &mut self.commands),
        });
        self.log.toasts_ui(&ctx);
        if ctx.input(|i| !i.raw.hovered_files.is_empty()) {
            egui::Area::new(egui::Id::unique("drop-hint")).anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO).show(
                &ctx,
                |ui| {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.heading("Drop a model folder (left half: A, right half: B) or an image");
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
