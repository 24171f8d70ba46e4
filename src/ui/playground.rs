//! The Playground: inputs that fit the loaded models (images from the gallery, a file, a drop or
//! the drawing canvas; text; candidate labels for CLIP; two texts for embedding models) and the
//! answers of A and B side by side, with disagreement highlighted.

use std::sync::Arc;

use egui::{Color32, Pos2, RichText, Sense, Stroke, TextureHandle, Vec2};
use image::RgbImage;

use super::decode::{DecodedImage, ImageSource};
use super::{Command, SlotView};
use crate::engine::Slot;
use crate::model::Task;
use crate::predict::PredictOutput;

/// The image currently fed to image models: full size for the models, and a preview no larger
/// than [`super::decode::PREVIEW_SIDE`] that becomes a texture when first drawn.
pub struct InputImage {
    pub image: Arc<RgbImage>,
    pub name: String,
    preview: Option<egui::ColorImage>,
    texture: Option<TextureHandle>,
}

impl InputImage {
    pub fn new(decoded: DecodedImage) -> Self {
        Self { image: decoded.image, name: decoded.name, preview: Some(decoded.preview), texture: None }
    }

    pub fn texture_size(&self) -> Option<[usize; 2]> {
        self.texture.as_ref().map(TextureHandle::size)
    }
}

/// One slot's latest answer.
#[derive(Default)]
pub struct SlotResult {
    /// Request id and input generation of the request in flight.
    pub pending: Option<(u64, u64)>,
    /// The answer and the input generation it belongs to.
    pub answer: Option<(Arc<PredictOutput>, u64)>,
    pub error: Option<String>,
    pub replaced: u64,
    pub input_name: String,
    /// The engine request the answer belongs to, and when it arrived (ms since the epoch).
    pub answered: Option<(u64, i64)>,
    /// The label the user chose in "this should be …", sent as a late label.
    pub corrected: Option<String>,
    /// The label picked in the correction box, not yet sent.
    pub correction: String,
}

/// A gallery entry: its thumbnail, and the embedded file a click decodes in full.
struct GalleryItem {
    name: String,
    bytes: &'static [u8],
    thumbnail: Option<egui::ColorImage>,
    texture: Option<TextureHandle>,
}

#[derive(Default)]
struct Canvas {
    /// Strokes in canvas coordinates normalised to 0..1.
    strokes: Vec<Vec<Pos2>>,
}

pub struct Playground {
    pub image: Option<InputImage>,
    pub text: String,
    pub text_b: String,
    pub labels: String,
    /// Zero-shot hypothesis template (`{}` stands for each label).
    pub template: String,
    /// Candidate labels for zero-shot text (NLI) models, comma-separated.
    pub text_labels: String,
    /// Their hypothesis template.
    pub text_template: String,
    /// Zero-shot text: each label scored on its own.
    pub multi_label: bool,
    pub results: [SlotResult; 2],
    pub continuous: bool,
    pub top_k: usize,
    /// Bumped for every new input, to pair A's and B's answers.
    pub generation: u64,
    canvas: Canvas,
    gallery: Vec<GalleryItem>,
}

impl Playground {
    pub fn new() -> Self {
        Self {
            image: None,
            text: "I loved this film, the acting was wonderful.".into(),
            text_b: "What a great movie, brilliant performances.".into(),
            labels: "a cat, a dog, a cup of coffee".into(),
            template: crate::model::ZERO_SHOT_TEMPLATE.into(),
            text_labels: "movies, food, travel, politics".into(),
            text_template: crate::model::ZERO_SHOT_TEXT_TEMPLATE.into(),
            multi_label: false,
            results: Default::default(),
            continuous: false,
            top_k: 5,
            generation: 0,
            canvas: Canvas::default(),
            gallery: Vec::new(),
        }
    }

    /// A decoded gallery thumbnail, kept in the embedded gallery's order.
    pub fn add_to_gallery(&mut self, decoded: DecodedImage) {
        let embedded = crate::source::embedded::GALLERY;
        let Some(position) = embedded.iter().position(|g| g.name == decoded.name) else { return };
        let item = GalleryItem {
            name: decoded.name,
            bytes: embedded[position].bytes,
            thumbnail: Some(decoded.preview),
            texture: None,
        };
        let at = self.gallery.partition_point(|g| embedded.iter().position(|e| e.name == g.name) < Some(position));
        self.gallery.insert(at, item);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, slots: &[SlotView; 2], commands: &mut Vec<Command>) {
        let tasks: Vec<Task> = slots.iter().filter_map(|s| s.card.as_ref().map(|c| c.task)).collect();
        if tasks.is_empty() {
            ui.label("Load a model in the Models tab (or drop a model folder on the window) to start predicting.");
            return;
        }
        let wants_image = tasks.iter().any(|t| t.takes_images());
        let wants_text = tasks.iter().any(|t| !t.takes_images());
        ui.columns(2, |cols| {
            let ui = &mut cols[0];
            egui::ScrollArea::vertical().id_salt("inputs").show(ui, |ui| {
                if wants_image {
                    self.image_inputs_ui(ui, &tasks, commands);
                }
                if wants_text {
                    self.text_inputs_ui(ui, &tasks, commands);
                }
                ui.separator();
                ui.horizontal(|ui| {
                    ui.checkbox(&mut self.continuous, "Predict continuously")
                        .on_hover_text("Re-run the current input as soon as each answer arrives (a live load test)");
                    let label = ui.label("top-k");
                    ui.add(egui::DragValue::new(&mut self.top_k).range(1..=20)).labelled_by(label.id);
                    if ui
                        .button("Monitor")
                        .on_hover_text("Live latency, inputs, predictions and drift; replay traffic from there")
                        .clicked()
                    {
                        commands.push(Command::ShowMonitor);
                    }
                });
            });
            let ui = &mut cols[1];
            self.results_ui(ui, slots, commands);
        });
    }

    fn image_inputs_ui(&mut self, ui: &mut egui::Ui, tasks: &[Task], commands: &mut Vec<Command>) {
        ui.heading("Image");
        ui.horizontal(|ui| {
            if ui.button("Open image…").clicked() {
                commands.push(Command::PickImage);
            }
            ui.weak("or drop an image file on the window, or paste one (Ctrl+V)");
        });
        if tasks.contains(&Task::ZeroShotImageClassification) {
            ui.horizontal(|ui| {
                let label = ui.label("Candidate labels");
                let edit =
                    ui.add(egui::TextEdit::singleline(&mut self.labels).desired_width(260.0)).labelled_by(label.id);
                if edit.lost_focus() && self.image.is_some() {
                    commands.push(Command::PredictChanged);
                }
            });
            ui.horizontal(|ui| {
                let label = ui.label("Template");
                let edit =
                    ui.add(egui::TextEdit::singleline(&mut self.template).desired_width(260.0)).labelled_by(label.id);
                let edit = edit.on_hover_text("Each label is put in place of {} before the text encoder reads it");
                if edit.lost_focus() && self.image.is_some() {
                    commands.push(Command::PredictChanged);
                }
            });
        }
        ui.label("Gallery");
        ui.horizontal_wrapped(|ui| {
            for item in &mut self.gallery {
                let Some(texture) = texture_from(ui.ctx(), &item.name, &mut item.thumbnail, &mut item.texture) else {
                    continue;
                };
                let button = egui::Button::image(egui::Image::new(texture).fit_to_exact_size(Vec2::splat(56.0)));
                if ui.add(button).on_hover_text(&item.name).clicked() {
                    let source = ImageSource::Embedded { name: item.name.clone(), bytes: item.bytes };
                    commands.push(Command::OpenImage(source));
                }
            }
            if self.gallery.is_empty() {
                ui.spinner();
            }
        });
        ui.label("Draw a digit");
        ui.horizontal(|ui| {
            if let Some(image) = self.canvas.ui(ui) {
                commands.push(Command::OpenImage(ImageSource::Drawn(Arc::new(image))));
            }
            ui.vertical(|ui| {
                if ui.button("Clear drawing").clicked() {
                    self.canvas.strokes.clear();
                }
                if let Some(current) = &mut self.image {
                    let (w, h) = current.image.dimensions();
                    ui.label(format!("Input: {} ({w}x{h})", current.name));
                    if let Some(texture) =
                        texture_from(ui.ctx(), &current.name, &mut current.preview, &mut current.texture)
                    {
                        // Fit the preview in a 160 x 120 box, keeping its aspect ratio.
                        let size = texture.size_vec2();
                        let scale = (160.0 / size.x).min(120.0 / size.y);
                        ui.add(egui::Image::new(texture).fit_to_exact_size(size * scale));
                    }
                }
            });
        });
    }

    fn text_inputs_ui(&mut self, ui: &mut egui::Ui, tasks: &[Task], commands: &mut Vec<Command>) {
        ui.heading("Text");
        let label = ui.label("Text input (Ctrl+Enter runs)");
        let edit = ui.add(egui::TextEdit::multiline(&mut self.text).desired_rows(3).desired_width(f32::INFINITY));
        let edit = edit.labelled_by(label.id);
        let mut run = edit.has_focus() && ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));
        if tasks.contains(&Task::TextEmbedding) {
            let label = ui.label("Second text (for similarity)");
            let edit = ui.add(egui::TextEdit::multiline(&mut self.text_b).desired_rows(2).desired_width(f32::INFINITY));
            let edit = edit.labelled_by(label.id);
            run |= edit.has_focus() && ui.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Enter));
        }
        if tasks.contains(&Task::ZeroShotTextClassification) {
            ui.horizontal(|ui| {
                let label = ui.label("Text labels");
                let edit = ui.add(egui::TextEdit::singleline(&mut self.text_labels).desired_width(260.0));
                let edit = edit.labelled_by(label.id).on_hover_text(
                    "Candidate labels for the NLI model, comma-separated: each becomes a hypothesis the text is tested against",
                );
                run |= edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            });
            ui.horizontal(|ui| {
                let label = ui.label("Hypothesis");
                let edit = ui.add(egui::TextEdit::singleline(&mut self.text_template).desired_width(260.0));
                let edit = edit.labelled_by(label.id).on_hover_text("Each label is put in place of {}");
                run |= edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            });
            let multi = ui.checkbox(&mut self.multi_label, "Several labels can be true").on_hover_text(
                "Score each label on its own (entailment against contradiction) instead of one distribution over the labels",
            );
            run |= multi.changed();
        }
        if ui.button("Run text").clicked() || run {
            commands.push(Command::PredictText);
        }
    }

    fn results_ui(&mut self, ui: &mut egui::Ui, slots: &[SlotView; 2], commands: &mut Vec<Command>) {
        ui.heading("Predictions");
        let tops: Vec<Option<(String, u64)>> = self
            .results
            .iter()
            .map(|r| r.answer.as_ref().and_then(|(a, g)| a.top_label().map(|l| (l.to_string(), *g))))
            .collect();
        // Only models that answer in the same label space can disagree.
        let comparable = match (&slots[0].card, &slots[1].card) {
            (Some(a), Some(b)) => a.task == b.task && a.labels == b.labels,
            _ => false,
        };
        let disagree = comparable
            && match (&tops[0], &tops[1]) {
                (Some((a, ga)), Some((b, gb))) => ga == gb && a != b,
                _ => false,
            };
        if disagree {
            let (a, b) = (tops[0].as_ref().map(|t| t.0.as_str()), tops[1].as_ref().map(|t| t.0.as_str()));
            ui.label(
                RichText::new(format!("A and B disagree: A says {}, B says {}", a.unwrap_or(""), b.unwrap_or("")))
                    .color(warn_color(ui))
                    .strong(),
            );
        }
        ui.columns(2, |cols| {
            for slot in Slot::ALL {
                let ui = &mut cols[slot.index()];
                let view = &slots[slot.index()];
                let result = &mut self.results[slot.index()];
                let stroke = if disagree { Stroke::new(2.0, warn_color(ui)) } else { ui.visuals().window_stroke };
                egui::Frame::group(ui.style()).stroke(stroke).show(ui, |ui| {
                    ui.set_min_width(ui.available_width());
                    ui.set_max_width(ui.available_width());
                    let name = view.card.as_ref().map_or("empty", |c| c.name.as_str());
                    ui.strong(format!("{} · {name}", slot.name()));
                    result_ui(ui, result);
                    if let Some(card) = view
                        .card
                        .as_ref()
                        .filter(|c| c.task == Task::ImageClassification || c.task == Task::TextClassification)
                    {
                        correction_ui(ui, slot, &card.labels, result, commands);
                    }
                });
            }
        });
    }
}

fn result_ui(ui: &mut egui::Ui, result: &SlotResult) {
    if result.pending.is_some() {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.weak("predicting…");
        });
    }
    if let Some(error) = &result.error {
        ui.label(RichText::new(error).color(super::status::error_color(ui)));
    }
    match &result.answer {
        Some((output, _)) => {
            let latency = match output.server_ms {
                // A remote model: where the time went.
                Some(server) => format!(
                    "{:.1} ms (server {server:.1} + network {:.1})",
                    output.latency_ms,
                    (output.latency_ms - server).max(0.0)
                ),
                None => format!("{:.1} ms", output.latency_ms),
            };
            if let Some(labels) = output.labels() {
                ui.weak(format!("{} · {latency}", result.input_name));
                for (i, l) in labels.iter().enumerate() {
                    bar_ui(ui, &l.label, l.score, i == 0);
                }
                let independent = output
                    .results
                    .first()
                    .and_then(|r| r.scores.as_ref())
                    .is_some_and(|s| s.probs.len() > 1 && (s.probs.iter().sum::<f32>() - 1.0).abs() > 1e-3);
                if independent {
                    ui.weak("each label scored on its own: the scores need not sum to 100%").on_hover_text(
                        "A sigmoid per label (SigLIP, multi-label classifiers, zero-shot text with several labels true)",
                    );
                }
            } else {
                let dims = output.embedding_dims().unwrap_or(0);
                ui.weak(format!("{dims}-dimensional embedding · {latency}"));
                match output.similarity {
                    Some(s) => ui.label(RichText::new(format!("cosine similarity {s:.3}")).heading()),
                    None => ui.label("give a second text to compare"),
                };
            }
        }
        None if result.pending.is_none() && result.error.is_none() => {
            ui.weak("no prediction yet");
        }
        None => {}
    }
    if result.replaced > 0 {
        ui.weak(format!("{} waiting request(s) replaced by newer input", result.replaced))
            .on_hover_text("While a prediction runs, only the newest input waits; older waiting inputs are dropped.");
    }
}

/// "This should be …": the user's ground truth for the answer shown, sent as a late label to the
/// log and the monitor (where it counts in accuracy).
fn correction_ui(
    ui: &mut egui::Ui,
    slot: Slot,
    labels: &[String],
    result: &mut SlotResult,
    commands: &mut Vec<Command>,
) {
    let (Some((output, _)), Some((request, _))) = (&result.answer, result.answered) else { return };
    let Some(predicted) = output.top_label() else { return };
    if let Some(label) = &result.corrected {
        let text =
            if label == predicted { format!("marked correct ({label})") } else { format!("corrected to {label}") };
        ui.weak(text);
        return;
    }
    ui.horizontal_wrapped(|ui| {
        if ui.button("Correct").on_hover_text("the model is right: log it as a labelled prediction").clicked() {
            commands.push(Command::Correct {
                slot,
                request,
                predicted: predicted.to_string(),
                label: predicted.to_string(),
            });
        }
        let label = ui.label("this should be");
        let selected = if result.correction.is_empty() { "…" } else { result.correction.as_str() };
        egui::ComboBox::from_id_salt(("correction", slot.index()))
            .selected_text(selected)
            .width(110.0)
            .show_ui(ui, |ui| {
                for l in labels {
                    ui.selectable_value(&mut result.correction, l.clone(), l);
                }
            })
            .response
            .labelled_by(label.id);
        let send = ui.add_enabled(!result.correction.is_empty(), egui::Button::new("Send"));
        if send.clicked() {
            commands.push(Command::Correct {
                slot,
                request,
                predicted: predicted.to_string(),
                label: result.correction.clone(),
            });
        }
    });
}

/// A horizontal bar: label, bar, percentage.
fn bar_ui(ui: &mut egui::Ui, label: &str, score: f32, top: bool) {
    ui.horizontal(|ui| {
        let text = RichText::new(format!("{:>6.2}%", score * 100.0)).monospace();
        ui.label(if top { text.strong() } else { text });
        let width = (ui.available_width() * 0.45).max(40.0);
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 14.0), Sense::hover());
        let painter = ui.painter();
        painter.rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
        let mut filled = rect;
        filled.set_width(rect.width() * score.clamp(0.0, 1.0));
        let color = if top { ui.visuals().selection.bg_fill } else { ui.visuals().widgets.inactive.bg_fill };
        painter.rect_filled(filled, 3.0, color);
        // Long labels (zero-shot sentences) are cut to the card, whole on hover.
        ui.add(egui::Label::new(label).truncate()).on_hover_text(label);
    });
}

fn warn_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(255, 190, 80)
    } else {
        Color32::from_rgb(170, 90, 0)
    }
}

/// The texture for a small (already downscaled) image, uploaded on first use.
fn texture_from<'t>(
    ctx: &egui::Context,
    name: &str,
    pixels: &mut Option<egui::ColorImage>,
    texture: &'t mut Option<TextureHandle>,
) -> Option<&'t TextureHandle> {
    if texture.is_none() {
        let image = pixels.take()?;
        // Small images (the 8x8 digits) stay crisp when magnified.
        let options = if image.size[0].max(image.size[1]) < 64 {
            egui::TextureOptions::NEAREST
        } else {
            egui::TextureOptions::LINEAR
        };
        *texture = Some(ctx.load_texture(name, image, options));
    }
    texture.as_ref()
}

impl Canvas {
    const SIDE: f32 = 168.0;
    const RASTER: u32 = 96;
    /// Pen radius as a share of the canvas side.
    const PEN: f32 = 0.08;

    /// Draws the canvas; returns the rasterised drawing when a stroke ends.
    fn ui(&mut self, ui: &mut egui::Ui) -> Option<RgbImage> {
        let (response, painter) = ui.allocate_painter(Vec2::splat(Self::SIDE), Sense::drag());
        let response = response.on_hover_text("Draw a digit with the mouse");
        let rect = response.rect;
        painter.rect_filled(rect, 4.0, Color32::BLACK);
        if response.drag_started() {
            self.strokes.push(Vec::new());
        }
        if response.dragged() {
            if let (Some(pos), Some(stroke)) = (response.interact_pointer_pos(), self.strokes.last_mut()) {
                let p = ((pos - rect.min) / Self::SIDE).to_pos2();
                if stroke.last() != Some(&p) {
                    stroke.push(p);
                }
            }
        }
        let width = Self::SIDE * 2.0 * Self::PEN;
        for stroke in &self.strokes {
            let points: Vec<Pos2> = stroke.iter().map(|p| rect.min + p.to_vec2() * Self::SIDE).collect();
            if points.len() == 1 {
                painter.circle_filled(points[0], width / 2.0, Color32::WHITE);
            } else {
                painter.add(egui::Shape::line(points, Stroke::new(width, Color32::WHITE)));
            }
        }
        response.drag_stopped().then(|| self.rasterize())
    }

    /// White strokes on black, like the training digits (ink is bright), then centred and scaled
    /// to fill the square the way the digits data set was normalised.
    fn rasterize(&self) -> RgbImage {
        center_ink(&self.rasterize_raw())
    }

    fn rasterize_raw(&self) -> RgbImage {
        let n = Self::RASTER;
        let mut image = RgbImage::new(n, n);
        let radius = n as f32 * Self::PEN;
        let mut stamp = |c: Pos2| {
            let (cx, cy) = (c.x * n as f32, c.y * n as f32);
            let (x0, x1) = ((cx - radius).floor().max(0.0) as u32, ((cx + radius).ceil() as u32).min(n - 1));
            let (y0, y1) = ((cy - radius).floor().max(0.0) as u32, ((cy + radius).ceil() as u32).min(n - 1));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                    if d <= radius {
                        image.put_pixel(x, y, image::Rgb([255, 255, 255]));
                    }
                }
            }
        };
        for stroke in &self.strokes {
            for pair in stroke.windows(2) {
                let steps = ((pair[1] - pair[0]).length() * n as f32).ceil().max(1.0) as usize;
                for s in 0..=steps {
                    stamp(pair[0] + (pair[1] - pair[0]) * (s as f32 / steps as f32));
                }
            }
            if let [only] = stroke.as_slice() {
                stamp(*only);
            }
        }
        image
    }
}

/// Crops a drawing to its ink (plus a margin), squares it, and scales it back to the full size.
fn center_ink(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let ink: Vec<(u32, u32)> =
        image.enumerate_pixels().filter(|(_, _, p)| p.0[0] > 0).map(|(x, y, _)| (x, y)).collect();
    let (Some(x0), Some(x1)) = (ink.iter().map(|p| p.0).min(), ink.iter().map(|p| p.0).max()) else {
        return image.clone();
    };
    let (y0, y1) = (ink.iter().map(|p| p.1).min().unwrap_or(0), ink.iter().map(|p| p.1).max().unwrap_or(0));
    let side = ((x1 - x0 + 1).max(y1 - y0 + 1) as f32 * 1.5).ceil() as u32;
    let mut square = RgbImage::new(side, side);
    let left = (side as i64 - (x1 - x0 + 1) as i64) / 2 - x0 as i64;
    let top = (side as i64 - (y1 - y0 + 1) as i64) / 2 - y0 as i64;
    image::imageops::replace(&mut square, image, left, top);
    image::imageops::resize(&square, w, h, image::imageops::FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_stroke_becomes_white_ink_on_black() {
        let canvas = Canvas { strokes: vec![vec![Pos2::new(0.5, 0.1), Pos2::new(0.5, 0.9)]] };
        let raw = canvas.rasterize_raw();
        assert_eq!(raw.get_pixel(48, 48).0, [255, 255, 255]);
        assert_eq!(raw.get_pixel(10, 48).0, [0, 0, 0]);
        // Centred and scaled: the stroke now spans most of the height and stays in the middle.
        let image = canvas.rasterize();
        assert_eq!(image.get_pixel(48, 20).0[0], 255);
        assert_eq!(image.get_pixel(48, 5).0[0], 0, "a margin like the training digits");
        assert_eq!(image.get_pixel(5, 48).0[0], 0);
        assert!(image.pixels().filter(|p| p.0[0] > 128).count() > 500);
    }
}
