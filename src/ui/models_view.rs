//! The Models view: slots A and B, each loadable from the Hub (repo id and revision, progress with
//! speed and ETA, cancel), from disk (folder or file dialog, or drag and drop) or from the
//! embedded demos; each shows its model card. Recent models are one click away.

use std::time::Instant;

use egui::RichText;

use super::{Command, SlotStatus, SlotView};
use crate::engine::Slot;
use crate::model::Precision;
use crate::source::{self, DownloadUpdate, ModelSource};

/// What the user is typing in a slot's form.
#[derive(Default)]
pub struct SlotForm {
    pub repo: String,
    pub revision: String,
    /// A served model: `oip+http(s)://HOST:PORT/MODEL[@VERSION]` or `tei+http(s)://HOST:PORT`.
    pub remote: String,
}

#[derive(Default)]
pub struct ModelsView {
    forms: [SlotForm; 2],
    demos: Vec<String>,
}

impl ModelsView {
    pub fn new() -> Self {
        Self { forms: Default::default(), demos: source::list_demo_models() }
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        slots: &[SlotView; 2],
        recent: &[String],
        precisions: [Precision; 2],
        commands: &mut Vec<Command>,
    ) {
        ui.columns(2, |columns| {
            for slot in Slot::ALL {
                let ui = &mut columns[slot.index()];
                self.slot_ui(ui, slot, &slots[slot.index()], precisions[slot.index()], commands);
            }
        });
        ui.separator();
        ui.horizontal_wrapped(|ui| {
            ui.strong("Recent models:");
            if recent.is_empty() {
                ui.weak("none yet");
            }
            for source_text in recent.iter().take(8) {
                ui.label(source_text);
                for slot in Slot::ALL {
                    if ui
                        .small_button(format!("to {}", slot.name()))
                        .on_hover_text(format!("Load {source_text} into slot {}", slot.name()))
                        .clicked()
                    {
                        if let Ok(source) = ModelSource::parse(source_text) {
                            commands.push(Command::Load(slot, source));
                        }
                    }
                }
                ui.add_space(12.0);
            }
        });
    }

    fn slot_ui(
        &mut self,
        ui: &mut egui::Ui,
        slot: Slot,
        view: &SlotView,
        precision: Precision,
        commands: &mut Vec<Command>,
    ) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_min_height(ui.available_height().min(520.0));
            ui.heading(format!("Model {}", slot.name()));
            let form = &mut self.forms[slot.index()];
            ui.horizontal(|ui| {
                let label = ui.label(format!("Hub repo id ({})", slot.name()));
                ui.add(egui::TextEdit::singleline(&mut form.repo).hint_text("org/name").desired_width(200.0))
                    .labelled_by(label.id);
                let label = ui.label(format!("revision ({})", slot.name()));
                ui.add(egui::TextEdit::singleline(&mut form.revision).hint_text("main").desired_width(70.0))
                    .labelled_by(label.id);
            });
            ui.horizontal(|ui| {
                let typed = form.repo.trim();
                let load =
                    ui.add_enabled(!typed.is_empty(), egui::Button::new(format!("Load from Hub into {}", slot.name())));
                if load.clicked() {
                    let text = match form.revision.trim() {
                        "" => typed.to_string(),
                        rev => format!("{typed}@{rev}"),
                    };
                    commands.push(Command::LoadText(slot, text));
                }
                if ui.button(format!("Open folder… ({})", slot.name())).clicked() {
                    commands.push(Command::PickFolder(slot));
                }
                if ui.button(format!("Open file… ({})", slot.name())).clicked() {
                    commands.push(Command::PickFile(slot));
                }
            });
            ui.horizontal(|ui| {
                let label = ui.label(format!("Remote endpoint ({})", slot.name()));
                let edit = ui
                    .add(
                        egui::TextEdit::singleline(&mut form.remote)
                            .hint_text("oip+http://127.0.0.1:8080/model  or  tei+http://host:port")
                            .desired_width(330.0),
                    )
                    .labelled_by(label.id)
                    .on_hover_text(
                        "A model served elsewhere: the Open Inference Protocol v2 (KServe, Triton, MLServer, \
                         modeldeck serve) or text-embeddings-inference. Options go in the query string: \
                         ?preprocessor=FILE or ?card=DIR for servers that take image tensors, ?labels=a,b, \
                         ?token_env=VAR for a bearer token, ?timeout=30s.",
                    );
                let typed = form.remote.trim().to_string();
                let connect = ui.add_enabled(!typed.is_empty(), egui::Button::new(format!("Connect {}", slot.name())));
                let entered = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if (connect.clicked() || entered) && !typed.is_empty() {
                    commands.push(Command::LoadText(slot, typed));
                }
            });
            if !self.demos.is_empty() {
                ui.horizontal_wrapped(|ui| {
                    ui.label("Demos:");
                    for name in &self.demos {
                        if ui.button(format!("demo:{name} to {}", slot.name())).clicked() {
                            commands.push(Command::Load(slot, ModelSource::Demo { name: name.clone() }));
                        }
                    }
                });
            }
            ui.weak("…or drop a model folder or weights file on this side of the window.");
            precision_ui(ui, slot, precision, commands);
            ui.separator();
            status_ui(ui, slot, view, commands);
        });
    }
}

/// The slot's precision (changing it loads the model again) and, in B, A's model in one click:
/// the same checkpoint as f32 in A and int8 in B is the quantisation comparison.
fn precision_ui(ui: &mut egui::Ui, slot: Slot, precision: Precision, commands: &mut Vec<Command>) {
    ui.horizontal(|ui| {
        let label = ui.label(format!("Precision ({})", slot.name()));
        let mut chosen = precision;
        egui::ComboBox::from_id_salt(("precision", slot.index()))
            .selected_text(chosen.name())
            .show_ui(ui, |ui| {
                for p in Precision::ALL {
                    ui.selectable_value(&mut chosen, p, p.name()).on_hover_text(p.scheme());
                }
            })
            .response
            .labelled_by(label.id)
            .on_hover_text(format!(
                "The linear and convolution layers in f32, bf16 or int8 (dynamic quantisation); \
                 the rest stays f32. Kernels here: {}, {}.",
                Precision::Bf16.kernel(),
                Precision::Int8.kernel()
            ));
        if chosen != precision {
            commands.push(Command::SetPrecision(slot, chosen));
        }
        if slot == Slot::B && ui.button("Same model as A").on_hover_text("Load slot A's model into B").clicked() {
            commands.push(Command::CopySlot(Slot::A, Slot::B));
        }
    });
}

fn status_ui(ui: &mut egui::Ui, slot: Slot, view: &SlotView, commands: &mut Vec<Command>) {
    if let SlotStatus::Loading { source, progress, started } = &view.status {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("Loading {source}…"));
            if ui.button(format!("Cancel loading {}", slot.name())).clicked() {
                commands.push(Command::CancelLoad(slot));
            }
        });
        if let Some(p) = progress {
            download_ui(ui, p, started);
        }
    }
    if let SlotStatus::Failed { source, error } = &view.status {
        ui.label(RichText::new(format!("Could not load {source}:")).color(super::status::error_color(ui)).strong());
        ui.label(RichText::new(error).color(super::status::error_color(ui)));
    }
    match &view.card {
        Some(card) => card_ui(ui, slot, card),
        None => {
            ui.weak(format!("Slot {} is empty.", slot.name()));
        }
    }
}

/// Bytes, speed and ETA of the file being downloaded.
fn download_ui(ui: &mut egui::Ui, p: &DownloadUpdate, started: &Instant) {
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    let speed = p.bytes_done as f64 / elapsed;
    let fraction = if p.bytes_total > 0 { p.bytes_done as f32 / p.bytes_total as f32 } else { 0.0 };
    let eta = if speed > 0.0 && p.bytes_total > p.bytes_done {
        format!("{:.0} s left", (p.bytes_total - p.bytes_done) as f64 / speed)
    } else {
        String::new()
    };
    ui.label(format!("file {}/{}: {}", p.file_index, p.file_count, p.file));
    ui.add(egui::ProgressBar::new(fraction).show_percentage().text(format!(
        "{} / {} · {}/s · {eta}",
        human_bytes(p.bytes_done),
        human_bytes(p.bytes_total),
        human_bytes(speed as u64)
    )));
}

pub fn human_bytes(bytes: u64) -> String {
    scaled(bytes, ["GB", "MB", "kB", "B"])
}

/// `n` with a decimal (SI) unit: giga, mega, kilo, or the plain unit.
fn scaled(n: u64, units: [&str; 4]) -> String {
    let f = n as f64;
    match f {
        f if f >= 1e9 => format!("{:.2} {}", f / 1e9, units[0]),
        f if f >= 1e6 => format!("{:.1} {}", f / 1e6, units[1]),
        f if f >= 1e3 => format!("{:.1} {}", f / 1e3, units[2]),
        _ => format!("{n} {}", units[3]),
    }
}

fn card_ui(ui: &mut egui::Ui, slot: Slot, card: &crate::model::ModelCard) {
    ui.label(RichText::new(&card.name).heading().strong());
    egui::Grid::new(("card", slot.index())).num_columns(2).striped(true).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            let value = ui.label(v);
            ui.end_row();
            value
        };
        row("Source", card.source.clone());
        row("Revision", card.revision.clone().unwrap_or_else(|| "—".into()));
        row("Architecture", card.architecture.clone());
        row("Task", card.task.to_string());
        let labels = match card.labels.len() {
            0 => "given at prediction time".to_string(),
            n if n <= 6 => card.labels.join(", "),
            n => format!("{}, … ({n} labels)", card.labels[..5].join(", ")),
        };
        row("Labels", labels);
        match &card.endpoint {
            // A served model: where and how, instead of weights on disk.
            Some(e) => {
                row("Endpoint", e.endpoint.clone());
                row("Protocol", e.protocol.clone());
                row("Server", e.server.clone().unwrap_or_else(|| "not reported".into()));
                row("Sends", e.input.clone());
                row("Reads", e.output.clone());
                row("Round trip", format!("{:.2} ms (median of 3 health checks at load)", e.rtt_ms));
                row("Limits", format!("timeout {} s, {} requests in flight", e.timeout_s, e.concurrency));
                row("Token", e.token_env.as_ref().map_or("none".into(), |v| format!("from ${v}")));
                row("Connect time", format!("{:.0} ms", card.load_ms));
            }
            None => {
                row("Parameters", format_count(card.parameters));
                row("Stored as", card.dtype.clone());
                // The kernel's name starts with the precision ("int8 AMX + AVX-512 VNNI").
                row("Runs in", card.kernel.clone());
                if let Some(short) = card.precision.short_scheme() {
                    row("Scheme", short.into()).on_hover_text(&card.quantization);
                }
                row("Size on disk", human_bytes(card.size_bytes));
                row("In memory", human_bytes(card.memory_bytes));
                row("Load time", format!("{:.0} ms", card.load_ms));
            }
        }
    });
}

fn format_count(n: u64) -> String {
    scaled(n, ["B", "M", "k", ""]).trim_end().to_string()
}
