//! Notifications (short-lived toasts), the log they are also kept in, and the status bar.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use egui::{Color32, RichText};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

#[derive(Debug, Clone)]
pub struct LogEntry {
    pub at: Instant,
    pub level: Level,
    pub text: String,
}

/// The most recent messages the app showed (at most [`LOG_CAPACITY`], oldest dropped first);
/// errors also pop up as toasts for a few seconds.
#[derive(Default)]
pub struct Log {
    pub entries: VecDeque<LogEntry>,
    pub open: bool,
    started: Option<Instant>,
    /// Errors since start, including those that have left the bounded history.
    error_count: usize,
    /// Messages dropped from the front of the history.
    dropped: usize,
}

/// Lines kept in the Log panel.
pub const LOG_CAPACITY: usize = 10_000;
const TOAST_SECONDS: u64 = 8;

impl Log {
    pub fn info(&mut self, text: impl Into<String>) {
        self.push(Level::Info, text.into());
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.push(Level::Error, text.into());
    }

    fn push(&mut self, level: Level, text: String) {
        let now = Instant::now();
        self.started.get_or_insert(now);
        if level == Level::Error {
            self.error_count += 1;
        }
        if self.entries.len() == LOG_CAPACITY {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(LogEntry { at: now, level, text });
    }

    pub fn errors(&self) -> usize {
        self.error_count
    }

    /// Recent errors, top right, each with a close button. Only the newest entries are looked at.
    pub fn toasts_ui(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        let first = self.entries.len().saturating_sub(64);
        let recent: Vec<usize> = (first..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                e.level == Level::Error && now.duration_since(e.at) < Duration::from_secs(TOAST_SECONDS)
            })
            .collect();
        if recent.is_empty() {
            return;
        }
        ctx.request_repaint_after(Duration::from_millis(500));
        egui::Area::new(egui::Id::unique("toasts"))
            .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-12.0, 48.0))
            .order(egui::Order::Foreground)
            .show(ctx, |ui| {
                ui.set_max_width(420.0);
                for i in recent.into_iter().rev().take(4) {
                    egui::Frame::popup(ui.style()).fill(ui.visuals().extreme_bg_color).show(ui, |ui| {
                        ui.horizontal_wrapped(|ui| {
                            ui.label(RichText::new("Error").strong().color(error_color(ui)));
                            ui.label(&self.entries[i].text);
                        });
                        if ui.small_button("Dismiss").clicked() {
                            // Age it out of the toast window; it stays in the log.
                            self.entries[i].at = now - Duration::from_secs(TOAST_SECONDS);
                        }
                    });
                }
            });
    }

    /// The history, one line per message; only the rows in view are laid out.
    pub fn log_ui(&self, ui: &mut egui::Ui) {
        let origin = self.started.unwrap_or_else(Instant::now);
        if self.entries.is_empty() {
            ui.weak("Nothing logged yet.");
            return;
        }
        if self.dropped > 0 {
            ui.weak(format!("{} older messages dropped; the last {LOG_CAPACITY} are kept", self.dropped));
        }
        let row_height = ui.text_style_height(&egui::TextStyle::Body);
        egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show_rows(
            ui,
            row_height,
            self.entries.len(),
            |ui, rows| {
                for e in self.entries.range(rows) {
                    let t = e.at.duration_since(origin).as_secs_f32();
                    // One line per row keeps the row height fixed, which show_rows relies on.
                    let first_line = e.text.lines().next().unwrap_or("");
                    let text = format!("{t:8.1} s  {first_line}");
                    let text = match e.level {
                        Level::Info => RichText::new(text),
                        Level::Error => RichText::new(text).color(error_color(ui)),
                    };
                    ui.add(egui::Label::new(text).truncate()).on_hover_text(&e.text);
                }
            },
        );
    }
}

pub fn error_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(255, 120, 110)
    } else {
        Color32::from_rgb(190, 30, 20)
    }
}

/// Resident memory of this process, refreshed at most every two seconds.
pub struct MemoryProbe {
    system: Option<sysinfo::System>,
    pid: Option<sysinfo::Pid>,
    last: Option<Instant>,
    pub rss_bytes: Option<u64>,
}

impl Default for MemoryProbe {
    fn default() -> Self {
        Self { system: sysinfo::System::new().ok(), pid: sysinfo::get_current_pid().ok(), last: None, rss_bytes: None }
    }
}

impl MemoryProbe {
    pub fn refresh(&mut self) {
        if self.last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
            return;
        }
        self.last = Some(Instant::now());
        let (Some(pid), Some(system)) = (self.pid, self.system.as_mut()) else { return };
        system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            true,
            sysinfo::ProcessRefreshKind::nothing().with_memory(),
        );
        self.rss_bytes = system.process(pid).map(|p| p.memory());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_keeps_a_bounded_history_and_counts_every_error() {
        let mut log = Log::default();
        for i in 0..LOG_CAPACITY + 500 {
            log.error(format!("e{i}"));
        }
        log.info("last");
        assert_eq!(log.entries.len(), LOG_CAPACITY);
        assert_eq!(log.errors(), LOG_CAPACITY + 500);
        assert_eq!(log.entries.back().map(|e| e.text.as_str()), Some("last"));
        assert_eq!(log.entries.front().map(|e| e.text.as_str()), Some("e501"));
    }
}
