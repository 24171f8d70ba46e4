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
use std::time::Instant;

use image::RgbImage;

use crate::model::{self, LabelScore, LoadedModel, ModelCard, Request, Response, Task};
use crate::source::{self, CancelToken, DownloadUpdate, ModelSource, ResolveOptions};

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

/// An input for a prediction, already decoded.
#[derive(Debug, Clone)]
pub enum PredictionInput {
    Image(Arc<RgbImage>),
    /// One text for classifiers; two or more for embedding models (similarity of the first two).
    Texts(Vec<String>),
    ZeroShot {
        image: Arc<RgbImage>,
        labels: Vec<String>,
    },
}

impl PredictionInput {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Image(_) => "an image",
            Self::Texts(_) => "text",
            Self::ZeroShot { .. } => "an image with candidate labels",
        }
    }

    /// Whether a model of `task` can take this input.
    pub fn fits(&self, task: Task) -> bool {
        matches!(
            (self, task),
            (Self::Image(_), Task::ImageClassification)
                | (Self::Texts(_), Task::TextClassification | Task::TextEmbedding)
                | (Self::ZeroShot { .. }, Task::ZeroShotImageClassification)
        )
    }
}

/// A model's answer to one input.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Labels(Vec<LabelScore>),
    Embeddings { dims: usize, similarity: Option<f32> },
}

impl Answer {
    pub fn top_label(&self) -> Option<&str> {
        match self {
            Answer::Labels(l) => l.first().map(|s| s.label.as_str()),
            Answer::Embeddings { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Prediction {
    pub request: u64,
    pub answer: Answer,
    pub latency_ms: f64,
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
    pending: Option<(u64, PredictionInput, usize)>,
    /// Bumped when a new load starts; results of older loads are ignored.
    generation: u64,
    load_cancel: Option<CancelToken>,
    shutdown: bool,
}

struct Shared {
    slots: [Mutex<SlotState>; 2],
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
}

impl Engine {
    /// `wake` is called after every event (e.g. `ctx.request_repaint()`).
    pub fn new(resolve: ResolveOptions, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            slots: [Mutex::default(), Mutex::default()],
            ready: [Condvar::new(), Condvar::new()],
            events: tx,
            wake: Arc::new(wake),
        });
        for slot in Slot::ALL {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("modeldeck-slot-{}", slot.name()))
                .spawn(move || predict_loop(&shared, slot))
                .ok();
        }
        Self { shared, events: rx, next_request: 1, resolve }
    }

    /// Events that arrived since the last call.
    pub fn poll(&self) -> Vec<EngineEvent> {
        self.events.try_iter().collect()
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
        let progress_shared = shared.clone();
        options.progress = Some(Arc::new(move |u: &DownloadUpdate| {
            progress_shared.emit(EngineEvent::Download { slot, update: u.clone() })
        }));
        shared.emit(EngineEvent::LoadStarted { slot, source: source.clone() });
        std::thread::Builder::new()
            .name(format!("modeldeck-load-{}", slot.name()))
            .spawn(move || {
                let result = source::resolve(&source, &options)
                    .map_err(crate::Error::from)
                    .and_then(|files| model::load(&files).map_err(crate::Error::from));
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
            })
            .ok();
    }

    /// Cancels a running load of `slot`, if any.
    pub fn cancel_load(&self, slot: Slot) {
        if let Ok(state) = self.shared.slots[slot.index()].lock() {
            if let Some(cancel) = &state.load_cancel {
                cancel.cancel();
            }
        }
    }

    /// Queues `input` for `slot`; returns the request id. `top_k` labels are kept.
    pub fn predict(&mut self, slot: Slot, input: PredictionInput, top_k: usize) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        if let Ok(mut state) = self.shared.slots[slot.index()].lock() {
            if let Some((old, _, _)) = state.pending.replace((id, input, top_k)) {
                self.shared.emit(EngineEvent::Replaced { slot, request: old });
            }
            self.shared.ready[slot.index()].notify_one();
        }
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
        let (request, input, top_k, model) = {
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
            let Some((request, input, top_k)) = state.pending.take() else { continue };
            (request, input, top_k, state.model.clone())
        };
        let Some(model) = model else {
            shared.emit(EngineEvent::PredictFailed { slot, request, error: "no model is loaded".into() });
            continue;
        };
        match run(&model, &input, top_k) {
            Ok((answer, latency_ms)) => {
                shared.emit(EngineEvent::Predicted { slot, prediction: Prediction { request, answer, latency_ms } })
            }
            Err(error) => shared.emit(EngineEvent::PredictFailed { slot, request, error }),
        }
    }
}

/// Runs one input through a model; the single prediction path shared with the CLI's timing rules.
pub fn run(model: &LoadedModel, input: &PredictionInput, top_k: usize) -> Result<(Answer, f64), String> {
    let task = model.task();
    if !input.fits(task) {
        return Err(format!("{} is a {task} model and does not take {}", model.card().name, input.kind()));
    }
    let started = Instant::now();
    let (response, labels) = match input {
        PredictionInput::Image(image) => {
            (model.run(&Request::Images(std::slice::from_ref(image.as_ref()))), model.labels().to_vec())
        }
        PredictionInput::Texts(texts) => {
            let texts: Vec<String> =
                if task == Task::TextClassification { texts[..1.min(texts.len())].to_vec() } else { texts.clone() };
            (model.run(&Request::Texts { texts: &texts, max_tokens: None }), model.labels().to_vec())
        }
        PredictionInput::ZeroShot { image, labels } => {
            let clean: Vec<String> = labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
            (
                model.run(&Request::ZeroShot {
                    images: std::slice::from_ref(image.as_ref()),
                    labels: &clean,
                    template: None,
                }),
                clean,
            )
        }
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    let answer = match response.map_err(|e| e.to_string())? {
        Response::Scores(scores) => Answer::Labels(scores.first().map(|s| s.top_k(&labels, top_k)).unwrap_or_default()),
        Response::Embeddings(vectors) => Answer::Embeddings {
            dims: vectors.first().map_or(0, Vec::len),
            similarity: (vectors.len() >= 2).then(|| crate::predict::cosine(&vectors[0], &vectors[1])),
        },
    };
    Ok((answer, latency_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        let image = Arc::new(RgbImage::from_pixel(8, 8, image::Rgb([0, 0, 0])));
        let id = engine.predict(Slot::A, PredictionInput::Image(image), 3);
        let events = wait_for(&engine, |e| matches!(e, EngineEvent::Predicted { .. }));
        let Some(EngineEvent::Predicted { prediction, .. }) = events.last() else { unreachable!() };
        assert_eq!(prediction.request, id);
        assert!(matches!(&prediction.answer, Answer::Labels(l) if l.len() == 3));

        // Text into an image model: a clear error, and the slot keeps working.
        engine.predict(Slot::A, PredictionInput::Texts(vec!["hi".into()]), 3);
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
