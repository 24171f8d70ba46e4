//! The engine runs models off the caller's thread: one worker per model slot (A and B) owns the
//! loaded model, loads run on their own threads (so a slow download never blocks the other slot
//! and can be cancelled), and results come back as [`EngineEvent`]s on a channel. A `wake`
//! callback lets a GUI repaint when something arrives; the engine knows nothing about GUIs.
//!
//! Queueing policy: each slot runs one prediction at a time and keeps at most one waiting; a newer
//! request replaces the waiting one ("latest wins"), which keeps an interactive UI responsive
//! when inputs arrive faster than the model answers. Replaced requests are reported as such.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};

use crate::model::{self, LoadedModel, ModelCard};
use crate::monitor::Monitor;
use crate::predict::{self, PredictOutput, PredictRequest};
use crate::source::{self, CancelToken, DownloadUpdate, ModelSource, ResolveOptions};
use crate::store::{self, Origin, PredictionLog};

/// The two model slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub const ALL: [Slot; 2] = [Slot::A, Slot::B];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "A",
            Slot::B => "B",
        }
    }
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub request: u64,
    pub output: Arc<PredictOutput>,
}

/// Everything the engine reports.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    LoadStarted {
        slot: Slot,
        source: ModelSource,
    },
    Download {
        slot: Slot,
        update: DownloadUpdate,
    },
    Loaded {
        slot: Slot,
        card: ModelCard,
    },
    LoadFailed {
        slot: Slot,
        source: ModelSource,
        error: String,
    },
    LoadCancelled {
        slot: Slot,
    },
    Predicted {
        slot: Slot,
        prediction: Prediction,
    },
    PredictFailed {
        slot: Slot,
        request: u64,
        error: String,
    },
    /// A waiting request was replaced by a newer one before it ran.
    Replaced {
        slot: Slot,
        request: u64,
    },
}

type Wake = Arc<dyn Fn() + Send + Sync>;

/// One slot's worker: the model, the waiting request, and a condition variable to wake it.
#[derive(Default)]
struct SlotState {
    model: Option<Arc<LoadedModel>>,
    pending: Option<(u64, PredictRequest)>,
    /// Why the slot's worker thread is not running, if it could not be started.
    worker_error: Option<String>,
    /// Bumped when a new load starts; results of older loads are ignored.
    generation: u64,
    load_cancel: Option<CancelToken>,
    shutdown: bool,
}

struct Shared {
    slots: [Mutex<SlotState>; 2],
    /// Where every prediction is recorded, when the app keeps a log.
    log: Mutex<Option<PredictionLog>>,
    /// The live monitor every prediction is observed by, when there is one.
    monitor: Mutex<Option<Monitor>>,
    ready: [Condvar; 2],
    events: Sender<EngineEvent>,
    wake: Wake,
}

impl Shared {
    fn emit(&self, event: EngineEvent) {
        // The receiver only disappears when the engine is dropped.
        let _ = self.events.send(event);
        (self.wake)();
    }
}

pub struct Engine {
    shared: Arc<Shared>,
    events: Receiver<EngineEvent>,
    next_request: u64,
    resolve: ResolveOptions,
    /// What each slot's next load builds its layers in.
    precisions: [crate::model::Precision; 2],
}

impl Engine {
    /// `wake` is called after every event (e.g. `ctx.request_repaint()`).
    pub fn new(resolve: ResolveOptions, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            slots: [Mutex::default(), Mutex::default()],
            log: Mutex::new(None),
            monitor: Mutex::new(None),
            ready: [Condvar::new(), Condvar::new()],
            events: tx,
            wake: Arc::new(wake),
        });
        for slot in Slot::ALL {
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("modeldeck-slot-{}", slot.name()))
                .spawn(move || predict_loop(&worker, slot));
            if let Err(e) = spawned {
                // Every prediction sent to this slot then fails with this reason instead of waiting.
                if let Ok(mut state) = shared.slots[slot.index()].lock() {
                    state.worker_error = Some(format!("cannot start slot {}'s worker thread: {e}", slot.name()));
                }
            }
        }
        let precisions = [resolve.precision; 2];
        Self { shared, events: rx, next_request: 1, resolve, precisions }
    }

    /// Events that arrived since the last call.
    pub fn poll(&self) -> Vec<EngineEvent> {
        self.events.try_iter().collect()
    }

    /// The precision `slot`'s next load uses (remote models always load as the server runs them).
    pub fn set_precision(&mut self, slot: Slot, precision: crate::model::Precision) {
        self.precisions[slot.index()] = precision;
    }

    pub fn precision(&self, slot: Slot) -> crate::model::Precision {
        self.precisions[slot.index()]
    }

    /// Starts loading `source` into `slot`, cancelling a load already running there.
    pub fn load(&mut self, slot: Slot, source: ModelSource) {
        let cancel = CancelToken::new();
        let generation = {
            let Ok(mut state) = self.shared.slots[slot.index()].lock() else { return };
            if let Some(old) = state.load_cancel.replace(cancel.clone()) {
                old.cancel();
            }
            state.generation += 1;
            state.generation
        };
        let shared = self.shared.clone();
        let mut options = self.resolve.clone();
        options.cancel = cancel.clone();
        options.precision = match source {
            ModelSource::Remote { .. } => crate::model::Precision::F32,
            _ => self.precisions[slot.index()],
        };
        let progress_shared = shared.clone();
        options.progress = Some(Arc::new(move |u: &DownloadUpdate| {
            progress_shared.emit(EngineEvent::Download { slot, update: u.clone() })
        }));
        shared.emit(EngineEvent::LoadStarted { slot, source: source.clone() });
        let failed_source = source.clone();
        let spawned = std::thread::Builder::new().name(format!("modeldeck-load-{}", slot.name())).spawn(move || {
            let result = model::load_source(&source, &options);
            let Ok(mut state) = shared.slots[slot.index()].lock() else { return };
            if state.generation != generation {
                return; // a newer load replaced this one
            }
            state.load_cancel = None;
            match result {
                Ok(model) => {
                    let card = model.card().clone();
                    state.model = Some(Arc::new(model));
                    drop(state);
                    shared.emit(EngineEvent::Loaded { slot, card });
                }
                Err(crate::Error::Source(source::SourceError::Cancelled)) => {
                    drop(state);
                    shared.emit(EngineEvent::LoadCancelled { slot });
                }
                Err(e) => {
                    drop(state);
                    shared.emit(EngineEvent::LoadFailed { slot, source, error: e.to_string() });
                }
            }
        });
        if let Err(e) = spawned {
            self.shared.emit(EngineEvent::LoadFailed {
                slot,
                source: failed_source,
                error: format!("cannot start a loading thread: {e}"),
            });
        }
    }

    /// Records every prediction from now on in `log` (origin `playground`, arm = the slot).
    pub fn set_log(&self, log: Option<PredictionLog>) {
        if let Ok(mut current) = self.shared.log.lock() {
            *current = log;
        }
    }

    /// Every prediction from now on is observed by `monitor` (series = the model's source, as in the log).
    pub fn set_monitor(&self, monitor: Option<Monitor>) {
        if let Ok(mut current) = self.shared.monitor.lock() {
            *current = monitor;
        }
    }

    /// The prediction log, when the engine keeps one.
    pub fn log(&self) -> Option<PredictionLog> {
        self.shared.log.lock().ok().and_then(|l| l.clone())
    }

    /// The request id the log and the monitor know engine request `id` by.
    pub fn log_request_id(id: u64) -> String {
        format!("playground-{}-{id}", std::process::id())
    }

    /// Records a late label (a user's correction) for engine request `id` in the log.
    pub fn set_label(&self, id: u64, label: &str) {
        if let Ok(guard) = self.shared.log.lock() {
            if let Some(log) = guard.as_ref() {
                log.set_label(&Self::log_request_id(id), label);
            }
        }
    }

    /// Cancels a running load of `slot`, if any.
    pub fn cancel_load(&self, slot: Slot) {
        if let Ok(state) = self.shared.slots[slot.index()].lock() {
            if let Some(cancel) = &state.load_cancel {
                cancel.cancel();
            }
        }
    }

    /// Queues `request` for `slot`; returns the request id.
    pub fn predict(&mut self, slot: Slot, request: PredictRequest) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        let Ok(mut state) = self.shared.slots[slot.index()].lock() else {
            self.shared.emit(EngineEvent::PredictFailed {
                slot,
                request: id,
                error: "the slot's worker stopped".into(),
            });
            return id;
        };
        if let Some(error) = state.worker_error.clone() {
            drop(state);
            self.shared.emit(EngineEvent::PredictFailed { slot, request: id, error });
            return id;
        }
        if let Some((old, _)) = state.pending.replace((id, request)) {
            self.shared.emit(EngineEvent::Replaced { slot, request: old });
        }
        self.shared.ready[slot.index()].notify_one();
        id
    }

    pub fn model(&self, slot: Slot) -> Option<Arc<LoadedModel>> {
        self.shared.slots[slot.index()].lock().ok().and_then(|s| s.model.clone())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for slot in Slot::ALL {
            if let Ok(mut state) = self.shared.slots[slot.index()].lock() {
                state.shutdown = true;
                if let Some(c) = &state.load_cancel {
                    c.cancel();
                }
            }
            self.shared.ready[slot.index()].notify_all();
        }
    }
}

fn predict_loop(shared: &Shared, slot: Slot) {
    loop {
        let (id, request, model) = {
            let Ok(mut state) = shared.slots[slot.index()].lock() else { return };
            loop {
                if state.shutdown {
                    return;
                }
                if state.pending.is_some() {
                    break;
                }
                state = match shared.ready[slot.index()].wait(state) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            let Some((id, request)) = state.pending.take() else { continue };
            (id, request, state.model.clone())
        };
        let Some(model) = model else {
            shared.emit(EngineEvent::PredictFailed { slot, request: id, error: "no model is loaded".into() });
            continue;
        };
        let result = predict::predict(&model, &request);
        record(shared, slot, id, &model, &result);
        match result {
            Ok(output) => shared.emit(EngineEvent::Predicted {
                slot,
                prediction: Prediction { request: id, output: Arc::new(output) },
            }),
            Err(error) => shared.emit(EngineEvent::PredictFailed { slot, request: id, error: error.to_string() }),
        }
    }
}

/// Hands the prediction to the log's writer thread (never waits on the disk).
fn record(shared: &Shared, slot: Slot, id: u64, model: &LoadedModel, result: &Result<PredictOutput, crate::Error>) {
    let request_id = Engine::log_request_id(id);
    if let Some(monitor) = shared.monitor.lock().ok().and_then(|m| m.clone()) {
        let at_ms = store::now_ms();
        let name: Arc<str> = model.card().source.as_str().into();
        match result {
            Ok(output) => {
                for o in crate::monitor::observations_from_output(output, &name, &request_id, at_ms) {
                    monitor.observe(o, Origin::Playground);
                }
            }
            Err(_) => monitor.observe(
                crate::monitor::Observation::failed(name, request_id.as_str().into(), at_ms),
                Origin::Playground,
            ),
        }
    }
    let Ok(guard) = shared.log.lock() else { return };
    let Some(log) = guard.as_ref() else { return };
    match result {
        Ok(output) => {
            for r in store::records_from_output(output, Origin::Playground, Some(slot.name()), &request_id) {
                log.record(r);
            }
        }
        Err(error) => {
            let mut r = store::PredictionRecord::new(model.card().source.clone(), Origin::Playground, request_id);
            r.revision = model.card().revision.clone();
            r.arm = Some(slot.name().to_string());
            r.error = Some(error.to_string());
            log.record(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(engine: &Engine, mut done: impl FnMut(&EngineEvent) -> bool) -> Vec<EngineEvent> {
        let started = Instant::now();
        let mut seen = Vec::new();
        while started.elapsed() < Duration::from_secs(30) {
            for e in engine.poll() {
                let stop = done(&e);
                seen.push(e);
                if stop {
                    return seen;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out; saw {seen:?}");
    }

    #[test]
    fn loads_predicts_and_reports_errors_without_blocking() {
        let mut engine = Engine::new(ResolveOptions::default(), || {});
        engine.load(Slot::A, ModelSource::Demo { name: "digits-v1".into() });
        wait_for(&engine, |e| matches!(e, EngineEvent::Loaded { slot: Slot::A, .. }));
        let image = Arc::new(image::RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 0])));
        let mut request = PredictRequest::images(vec![predict::NamedImage { name: "black".into(), image }]);
        request.top_k = 3;
        let id = engine.predict(Slot::A, request);
        let events = wait_for(&engine, |e| matches!(e, EngineEvent::Predicted { .. }));
        let Some(EngineEvent::Predicted { prediction, .. }) = events.last() else { unreachable!() };
        assert_eq!(prediction.request, id);
        assert_eq!(prediction.output.labels().map(<[_]>::len), Some(3));

        // Text into an image model: a clear error, and the slot keeps working.
        engine.predict(Slot::A, PredictRequest::texts(vec!["hi".into()]));
        let events = wait_for(&engine, |e| matches!(e, EngineEvent::PredictFailed { .. }));
        assert!(
            matches!(events.last(), Some(EngineEvent::PredictFailed { error, .. }) if error.contains("image-classification"))
        );

        engine.load(Slot::B, ModelSource::Local { path: "/no/such/model".into() });
        let events = wait_for(&engine, |e| matches!(e, EngineEvent::LoadFailed { .. }));
        assert!(
            matches!(events.last(), Some(EngineEvent::LoadFailed { error, .. }) if error.contains("/no/such/model"))
        );
        assert!(engine.model(Slot::A).is_some() && engine.model(Slot::B).is_none());
    }
}
