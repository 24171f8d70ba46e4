//! Starts and steers the Monitor view's traffic replay. Loading the data set and the replay
//! itself run on their own threads; the UI only polls a channel and reads progress counters.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use super::monitor_view::{ReplayForm, ReplayStatus};
use crate::eval::Dataset;
use crate::model::LoadedModel;
use crate::monitor::replay::{DriftSchedule, Replay, ReplayEvent, ReplayHandle, ReplayOptions, Targets};
use crate::monitor::Monitor;
use crate::store::PredictionLog;

type Note = Result<String, String>;

enum Message {
    Started(ReplayHandle, String),
    Note(Note),
}

pub struct ReplayControl {
    handle: Option<ReplayHandle>,
    /// A replay is being prepared (its data set loading).
    starting: bool,
    tx: Sender<Message>,
    rx: Receiver<Message>,
}

impl Default for ReplayControl {
    fn default() -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        Self { handle: None, starting: false, tx, rx }
    }
}

/// The data set a replay form names: a path, or the embedded demo digits when empty. Reads
/// files: call it off the UI thread.
pub fn load_dataset(data: &str) -> Result<Dataset, String> {
    if data.is_empty() {
        crate::source::embedded::materialize(&crate::source::embedded::DIGITS_TEST)
            .map_err(|e| e.to_string())
            .and_then(|dir| Dataset::load(&dir).map_err(|e| e.to_string()))
    } else {
        Dataset::load(std::path::Path::new(data)).map_err(|e| e.to_string())
    }
}

/// Where the replay's answers go: the monitor (always) and the prediction log (when kept).
pub fn sink(monitor: Monitor, log: Option<PredictionLog>) -> impl FnMut(ReplayEvent) + Send + 'static {
    move |event| match event {
        ReplayEvent::Predicted(p) => {
            let features = p.features();
            if let Some(log) = &log {
                // The rows carry the features already (store::records_from_output).
                for r in p.records(None) {
                    log.record(r);
                }
            }
            monitor.observe(p.observation(features), crate::store::Origin::Replay);
        }
        ReplayEvent::Label(label) => {
            if let Some(log) = &log {
                log.set_label(&label.request_id, &label.label);
            }
            monitor.feedback(label.feedback());
        }
        _ => {}
    }
}

impl ReplayControl {
    /// Starts a replay of `form` on `model`; the data set loads on a thread. Returns what to log.
    pub fn start(
        &mut self,
        form: &ReplayForm,
        model: Option<Arc<LoadedModel>>,
        monitor: &Monitor,
        log: Option<PredictionLog>,
    ) -> Result<String, String> {
        if self.starting || self.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return Err("a replay is already running: stop it first".into());
        }
        let Some(model) = model else {
            return Err(format!("slot {} has no model loaded", form.slot.name()));
        };
        let drift = match form.drift.trim() {
            "" => None,
            spec => Some(DriftSchedule::parse(spec).map_err(|e| format!("drift: {e}"))?),
        };
        if let Some(rate) = form.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("the rate must be a positive number of requests per second, not {rate}"));
            }
        }
        let mut options = ReplayOptions {
            rate_per_s: form.rate,
            looping: form.looping,
            drift,
            label_delay: std::time::Duration::from_secs_f64(form.label_delay_s.clamp(0.0, 86_400.0)),
            ..Default::default()
        };
        let data = form.data.trim().to_string();
        let tx = self.tx.clone();
        let monitor = monitor.clone();
        let name = model.card().name.clone();
        self.starting = true;
        let spawned = std::thread::Builder::new().name("replay-start".into()).spawn(move || {
            let loaded = load_dataset(&data);
            let message = match loaded {
                Err(e) => Message::Note(Err(format!("replay: {e}"))),
                Ok(dataset) => {
                    let what = if data.is_empty() { "the demo digits".to_string() } else { data.clone() };
                    let n = dataset.examples.len();
                    // Zero-shot models answer in the data set's label space, as `modeldeck monitor`.
                    if model.task().takes_candidate_labels() {
                        options.candidate_labels = dataset.labels();
                    }
                    match Replay::start(Arc::new(dataset), Targets::single(model), options, sink(monitor, log)) {
                        Ok(handle) => Message::Started(handle, format!("replaying {what} ({n} examples) to {name}")),
                        Err(e) => Message::Note(Err(format!("replay: {e}"))),
                    }
                }
            };
            let _ = tx.send(message);
        });
        if let Err(e) = spawned {
            self.starting = false;
            return Err(format!("cannot start the replay: {e}"));
        }
        Ok(format!("starting a replay to {}", form.slot.name()))
    }

    /// Notes for the log since the last frame; picks up a replay that finished starting.
    pub fn poll(&mut self) -> Vec<Note> {
        let mut notes = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            self.starting = false;
            match message {
                Message::Started(handle, note) => {
                    self.handle = Some(handle);
                    notes.push(Ok(note));
                }
                Message::Note(note) => notes.push(note),
            }
        }
        notes
    }

    pub fn pause(&self) {
        if let Some(h) = &self.handle {
            h.pause();
        }
    }

    pub fn resume(&self) {
        if let Some(h) = &self.handle {
            h.resume();
        }
    }

    pub fn stop(&self) {
        if let Some(h) = &self.handle {
            h.stop();
        }
    }

    pub fn status(&self) -> ReplayStatus {
        if self.starting {
            return ReplayStatus { running: true, paused: false, text: "loading the data set…".into() };
        }
        let Some(handle) = &self.handle else { return ReplayStatus::default() };
        let p = handle.progress();
        let running = !handle.is_finished();
        let state = p.state.name();
        let total = p.total.map_or(String::new(), |t| format!(" of {t}"));
        let text = format!(
            "{state}: {}{total} sent, {:.1} req/s, {} errors, {} labels ({} waiting)",
            p.sent, p.rate_per_s, p.errors, p.labels_delivered, p.labels_pending
        );
        ReplayStatus { running, paused: handle.is_paused(), text }
    }
}
