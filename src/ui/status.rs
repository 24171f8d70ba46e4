//! Notifications (short-lived toasts), the log they are also kept in, and the status bar.

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

/// Every message the app showed, in order; errors also pop up as toasts for a few seconds.
#[derive(Default)]
pub struct Log {
    pub entries: Vec<LogEntry>,
    pub open: bool,
    started: Option<Instant>,
}

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
        self.entries.push(LogEntry { at: now, level, text });
    }

    pub fn errors(&self) -> usize {
        self.entries.iter().filter(|e| e.level == Level::Error).count()
    }

    /// Recent errors, top right, each with a close button.
    pub fn toasts_ui(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        let recent: Vec<usize> = (0..self.entries.len())
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

    pub fn log_ui(&self, ui: &mut egui::Ui) {
        let origin = self.started.unwrap_or_else(Instant::now);
        egui::ScrollArea::vertical().stick_to_bottom(true).auto_shrink([false, false]).show(ui, |ui| {
            if self.entries.is_empty() {
                ui.weak("Nothing logged yet.");
            }
            for e in &self.entries {
                let t = e.at.duration_since(origin).as_secs_f32();
                let text = format!("{t:8.1} s  {}", e.text);
                match e.level {
                    Level::Info => ui.label(text),
                    Level::Error => ui.label(RichText::new(text).color(error_color(ui))),
                };
            }
        });
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
