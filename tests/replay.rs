//! Traffic replay end to end: the digits test set replayed against demo:digits-v1 with a drift
//! schedule (magnitudes per request, accuracy before and after), delayed labels, pause, resume,
//! stop, pacing, looping, a corrupt image, text drift, routing to two arms, and the wiring into
//! the prediction log.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modeldeck::eval::perturb::ImageDrift;
use modeldeck::eval::{self, Dataset, EvalOptions};
use modeldeck::model::{self, LoadedModel};
use modeldeck::monitor::replay::{
    DriftSchedule, Replay, ReplayEvent, ReplayHandle, ReplayInput, ReplayOptions, ReplayPrediction, ReplayProgress,
    ReplayState, Route, RouteRequest, Targets,
};
use modeldeck::monitor::Features;
use modeldeck::source::{ModelSource, ResolveOptions};
use modeldeck::store::{self, Origin};

type Events = Arc<Mutex<Vec<(Instant, ReplayEvent)>>>;

fn load(source: &str) -> Arc<LoadedModel> {
    Arc::new(model::load_source(&ModelSource::parse(source).unwrap(), &ResolveOptions::default()).unwrap())
}

fn digits() -> Arc<Dataset> {
    Arc::new(Dataset::load(&common::root().join("assets/digits/test")).unwrap())
}

fn start(data: Arc<Dataset>, targets: Targets, options: ReplayOptions) -> (ReplayHandle, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let handle =
        Replay::start(data, targets, options, move |e| sink.lock().unwrap().push((Instant::now(), e))).unwrap();
    (handle, events)
}

fn run(data: Arc<Dataset>, targets: Targets, options: ReplayOptions) -> Vec<(Instant, ReplayEvent)> {
    let (mut handle, events) = start(data, targets, options);
    assert!(handle.wait(Duration::from_secs(300)), "the replay did not end");
    let events = std::mem::take(&mut *events.lock().unwrap());
    assert!(matches!(events.last(), Some((_, ReplayEvent::Finished(_)))), "{:?}", events.last());
    events
}

fn predictions(events: &[(Instant, ReplayEvent)]) -> Vec<&ReplayPrediction> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            ReplayEvent::Predicted(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn final_progress(events: &[(Instant, ReplayEvent)]) -> &ReplayProgress {
    match events.last() {
        Some((_, ReplayEvent::Finished(p) | ReplayEvent::Stopped(p))) => p,
        other => panic!("no final event: {other:?}"),
    }
}

fn accuracy<'a>(predictions: impl Iterator<Item = &'a &'a ReplayPrediction>) -> (usize, usize) {
    let mut n = 0;
    let mut correct = 0;
    for p in predictions {
        n += 1;
        correct += usize::from(p.predicted().is_some() && p.predicted() == p.label.as_deref());
    }
    (correct, n)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn brightness_drift_ramps_per_request_and_accuracy_falls() {
    let model = load("demo:digits-v1");
    // Pass 1 clean; pass 2 darkens from request 540, reaching -0.4 at request 640.
    let schedule = DriftSchedule::parse("brightness=-0.4@540+100").unwrap();
    let options =
        ReplayOptions { looping: true, max_requests: Some(1080), drift: Some(schedule), seed: 7, ..Default::default() };
    let events = run(digits(), Targets::single(model.clone()), options);
    let predictions = predictions(&events);
    assert_eq!(predictions.len(), 1080);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p.index, i as u64);
        assert_eq!(p.example, i % 540);
        let want = if i < 540 { 0.0 } else { -0.4 * ((i - 540) as f32 / 100.0).min(1.0) };
        assert!((p.drift.image.brightness - want).abs() < 1e-6, "request {i}: {:?}", p.drift);
        assert_eq!((p.drift.image.contrast, p.drift.image.noise), (0.0, 0.0));
        assert!(p.error().is_none(), "{p:?}");
        // The drifted image is what the model saw.
        let Some(ReplayInput::Image(image)) = &p.input else { panic!("{p:?}") };
        if i == 700 {
            let clean = model::decode_image_file(&common::root().join("assets/digits/test").join(&*p.example_id));
            let dark = ImageDrift { brightness: -0.4, ..Default::default() }.apply(&clean.unwrap(), 0);
            assert_eq!(**image, dark);
        }
    }
    // The same 440 examples (positions 100..540), clean in pass 1 and at full drift in pass 2.
    let (clean_correct, n) = accuracy(predictions[100..540].iter());
    let (drift_correct, m) = accuracy(predictions[640..1080].iter());
    let (all_clean, all) = accuracy(predictions[..540].iter());
    let (clean, drifted) = (clean_correct as f64 / n as f64, drift_correct as f64 / m as f64);
    eprintln!(
        "digits-v1 accuracy: clean {:.4} ({all_clean}/{all}); same 440 examples clean {clean:.4}, at brightness -0.4 {drifted:.4}",
        all_clean as f64 / all as f64
    );
    assert!(clean > 0.95, "{clean}");
    assert!(drifted < clean - 0.2, "brightness -0.4 should hurt digits-v1: {clean} -> {drifted}");

    // Labels arrive for every answered request (no delay here), and say whether it was right.
    let labels: Vec<_> = events
        .iter()
        .filter_map(|(_, e)| match e {
            ReplayEvent::Label(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(labels.len(), 1080);
    assert_eq!(labels.iter().filter(|l| l.correct).count(), accuracy(predictions.iter()).0);
    let progress = final_progress(&events);
    assert_eq!((progress.sent, progress.answered, progress.errors, progress.labels_delivered), (1080, 1080, 0, 1080));
    assert_eq!(progress.state, ReplayState::Finished);
}

#[test]
fn constant_drift_replays_the_inputs_eval_scores() {
    // A replay at a constant drift sees the same inputs as `eval` with that drift and seed, so its
    // accuracy is the evaluation's (noise included, which depends on the seed per request).
    let model = load("demo:digits-v1");
    let drift = "brightness=-0.4,noise=0.1";
    let options = ReplayOptions { drift: Some(DriftSchedule::parse(drift).unwrap()), seed: 3, ..Default::default() };
    let events = run(digits(), Targets::single(model.clone()), options);
    let (correct, n) = accuracy(predictions(&events).iter());
    let eval_options =
        EvalOptions { batch_size: 1, drift: Some(ImageDrift::parse(drift).unwrap()), seed: 3, ..Default::default() };
    let metrics = eval::evaluate(&model, &digits(), &eval_options, |_| {}).unwrap().evaluation.metrics.unwrap();
    eprintln!("digits-v1 at {drift}: replay {correct}/{n}, eval {}/{}", metrics.correct, metrics.n);
    assert_eq!((correct as u64, n as u64), (metrics.correct, metrics.n));
}

#[test]
fn labels_arrive_after_the_delay_and_not_before() {
    let delay = Duration::from_millis(150);
    let options = ReplayOptions {
        rate_per_s: Some(100.0),
        max_requests: Some(30),
        label_delay: delay,
        shuffle: true,
        seed: 1,
        ..Default::default()
    };
    let events = run(digits(), Targets::single(load("demo:digits-v1")), options);
    let mut answered_at = std::collections::HashMap::new();
    let mut labels = 0;
    let mut pending_seen = false;
    for (at, event) in &events {
        match event {
            ReplayEvent::Predicted(p) => {
                answered_at.insert(p.request_id.clone(), (*at, p.predicted().map(str::to_string), p.label.clone()));
            }
            ReplayEvent::Label(l) => {
                labels += 1;
                let (predicted_at, predicted, label) =
                    answered_at.get(&l.request_id).expect("label before its prediction");
                assert!(
                    at.duration_since(*predicted_at) >= delay,
                    "label after {:?}",
                    at.duration_since(*predicted_at)
                );
                assert!(l.at_ms - l.predicted_at_ms >= 150, "{l:?}");
                assert!(l.at_ms - l.predicted_at_ms < 150 + 5_000, "{l:?}");
                assert_eq!(Some(&*l.label), label.as_deref());
                assert_eq!(l.predicted.as_deref(), predicted.as_deref());
                assert_eq!(l.correct, predicted.as_deref() == Some(&*l.label));
                let feedback = l.feedback();
                assert_eq!((feedback.request_id, feedback.correct), (l.request_id.clone(), l.correct));
            }
            ReplayEvent::Progress(p) => pending_seen |= p.labels_pending > 0,
            _ => {}
        }
    }
    assert_eq!(labels, 30);
    // Requests come every 10 ms and labels 150 ms later, so some wait while others are sent.
    assert!(pending_seen);
    // Shuffled: one pass visits every example once, not in file order.
    let order: Vec<usize> = predictions(&events).iter().map(|p| p.example).collect();
    assert_ne!(order, (0..30).collect::<Vec<_>>());
    let progress = final_progress(&events);
    assert_eq!((progress.labels_delivered, progress.labels_pending), (30, 0));
}

#[test]
fn pause_resume_and_stop_are_prompt() {
    let options = ReplayOptions { rate_per_s: Some(40.0), looping: true, ..Default::default() };
    let (mut handle, events) = start(digits(), Targets::single(load("demo:digits-v1")), options);
    wait_for("4 requests", || handle.progress().sent >= 4);
    handle.pause();
    assert!(handle.is_paused());
    wait_for("the paused state", || handle.progress().state == ReplayState::Paused);
    let paused_at = handle.progress().sent;
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(handle.progress().sent, paused_at, "requests were sent while paused");

    handle.resume();
    let resumed = Instant::now();
    wait_for("a request after resuming", || handle.progress().sent > paused_at);
    // The schedule moved by the pause: no burst of the ~16 requests the pause skipped.
    std::thread::sleep(Duration::from_millis(100).saturating_sub(resumed.elapsed()));
    assert!(handle.progress().sent <= paused_at + 10, "burst after resume: {:?}", handle.progress());
    assert!(!handle.is_finished());

    handle.stop();
    let stopping = Instant::now();
    assert!(handle.wait(Duration::from_secs(5)));
    let took = stopping.elapsed();
    assert!(took < Duration::from_millis(500), "stop took {took:?}");
    let events = events.lock().unwrap();
    let progress = final_progress(&events);
    assert_eq!(progress.state, ReplayState::Stopped);
    assert_eq!(handle.progress().state, ReplayState::Stopped);

    // As fast as the model goes, stop still lands within a request.
    let options = ReplayOptions { looping: true, ..Default::default() };
    let (mut handle, _events) = start(digits(), Targets::single(load("demo:digits-v1")), options.clone());
    wait_for("20 requests", || handle.progress().sent >= 20);
    handle.stop();
    let stopping = Instant::now();
    assert!(handle.wait(Duration::from_secs(5)));
    assert!(stopping.elapsed() < Duration::from_millis(500), "stop took {:?}", stopping.elapsed());

    // Dropping the handle stops the replay too.
    let (handle, events) = start(digits(), Targets::single(load("demo:digits-v1")), options);
    wait_for("5 requests", || handle.progress().sent >= 5);
    drop(handle);
    wait_for("the Stopped event", || matches!(events.lock().unwrap().last(), Some((_, ReplayEvent::Stopped(_)))));
}

#[test]
fn pacing_follows_an_absolute_schedule_and_reports_the_achieved_rate() {
    let model = load("demo:digits-v1");
    let rate = 100.0;
    let started = Instant::now();
    let events = run(
        digits(),
        Targets::single(model.clone()),
        ReplayOptions { rate_per_s: Some(rate), max_requests: Some(50), ..Default::default() },
    );
    let elapsed = started.elapsed().as_secs_f64();
    let predictions: Vec<Instant> =
        events.iter().filter(|(_, e)| matches!(e, ReplayEvent::Predicted(_))).map(|(at, _)| *at).collect();
    // Request k is never early: it starts no sooner than k / rate after the first.
    let first = predictions[0];
    for (k, at) in predictions.iter().enumerate() {
        let earliest = Duration::from_secs_f64(k as f64 / rate);
        assert!(at.duration_since(first) + Duration::from_millis(1) >= earliest, "request {k} early");
    }
    assert!((0.45..5.0).contains(&elapsed), "50 requests at 100/s took {elapsed} s");
    let progress = final_progress(&events);
    assert!(progress.mean_rate_per_s > 10.0 && progress.mean_rate_per_s < 110.0, "{progress:?}");
    eprintln!("paced at 100/s: 50 requests in {elapsed:.3} s, reported {:.1}/s", progress.mean_rate_per_s);

    // Asked for more than the model can do: it runs back to back, and the report says how fast.
    let events = run(
        digits(),
        Targets::single(model),
        ReplayOptions { rate_per_s: Some(1e6), max_requests: Some(300), ..Default::default() },
    );
    let progress = final_progress(&events);
    assert_eq!(progress.target_rate_per_s, Some(1e6));
    assert!(progress.mean_rate_per_s < 1e6 && progress.mean_rate_per_s > 0.0, "{progress:?}");
    eprintln!("asked 1e6/s: achieved {:.0}/s", progress.mean_rate_per_s);
    assert!(Replay::start(
        digits(),
        Targets::single(load("demo:digits-v1")),
        ReplayOptions { rate_per_s: Some(0.0), ..Default::default() },
        |_| {}
    )
    .is_err());
}

/// A labelled folder of a few digit images, and a corrupt "image" among them.
fn small_folder(dir: &Path) -> Arc<Dataset> {
    let source = common::root().join("assets/digits/test");
    for (label, file) in [("3", "0045.png"), ("3", "0103.png"), ("7", "0081.png")] {
        std::fs::create_dir_all(dir.join(label)).unwrap();
        std::fs::copy(source.join(label).join(file), dir.join(label).join(file)).unwrap();
    }
    std::fs::write(dir.join("7/0099-corrupt.png"), b"\x89PNG\r\n\x1a\nnot really a png").unwrap();
    Arc::new(Dataset::load(dir).unwrap())
}

#[test]
fn loops_and_carries_on_past_a_corrupt_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = small_folder(tmp.path());
    assert_eq!(data.examples.len(), 4);
    let options = ReplayOptions { looping: true, max_requests: Some(10), ..Default::default() };
    let events = run(data.clone(), Targets::single(load("demo:digits-v1")), options);
    let predictions = predictions(&events);
    assert_eq!(predictions.len(), 10);
    for (i, p) in predictions.iter().enumerate() {
        assert_eq!(p.example, i % 4);
        let corrupt = data.examples[p.example].id.contains("corrupt");
        assert_eq!(p.error().is_some(), corrupt, "{p:?}");
        if corrupt {
            assert!(p.error().unwrap().contains("0099-corrupt.png"), "{p:?}");
            assert!(p.input.is_none());
            let rows = p.records(None);
            assert_eq!(rows.len(), 1);
            assert!(rows[0].error.is_some() && rows[0].prediction.is_none());
            assert!(p.observation(Features::default()).error);
        }
    }
    let progress = final_progress(&events);
    // Positions 3 and 7 are the corrupt file; a failed request gets no label.
    assert_eq!((progress.sent, progress.answered, progress.errors, progress.labels_delivered), (10, 10, 2, 8));
}

#[test]
fn text_drift_is_deterministic_per_seed_and_request() {
    let model = load(common::fixture_model("bert-cls-5").to_str().unwrap());
    let data = Arc::new(Dataset::load(&common::root().join("assets/text/reviews_test.csv")).unwrap());
    let schedule = DriftSchedule::parse("casing=upper@5+10; typos=0.2@0+20, vocabulary=0.3@10").unwrap();
    let replay = |seed| {
        let options = ReplayOptions {
            drift: Some(schedule.clone()),
            looping: true,
            max_requests: Some(40),
            seed,
            ..Default::default()
        };
        let events = run(data.clone(), Targets::single(model.clone()), options);
        predictions(&events)
            .iter()
            .map(|p| {
                let Some(ReplayInput::Text(text)) = &p.input else { panic!("{p:?}") };
                assert!(p.error().is_none(), "{p:?}");
                assert!(model.labels().iter().any(|l| Some(l.as_str()) == p.predicted()));
                (text.to_string(), p.predicted().map(str::to_string), p.drift)
            })
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (replay(11), replay(11), replay(12));
    assert_eq!(a, b);
    assert_ne!(a.iter().map(|x| &x.0).collect::<Vec<_>>(), c.iter().map(|x| &x.0).collect::<Vec<_>>());
    let originals: Vec<&str> = data
        .examples
        .iter()
        .map(|e| match &e.input {
            eval::ExampleInput::Text(t) => t.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    // Request 0 has no drift yet; later ones carry the scheduled magnitudes.
    assert_eq!((a[0].0.as_str(), a[0].2.is_identity()), (originals[0], true));
    assert!((a[10].2.text.typo_rate - 0.1).abs() < 1e-6 && (a[10].2.text.casing_share - 0.5).abs() < 1e-6);
    assert_eq!((a[9].2.text.vocabulary_share, a[10].2.text.vocabulary_share), (0.0, 0.3));
    // From request 15 every word is upper case.
    assert!(a[15..].iter().all(|x| x.0.chars().filter(|c| c.is_alphabetic()).all(char::is_uppercase)));
    assert!(a[15..].iter().enumerate().all(|(i, x)| x.0 != originals[(15 + i) % originals.len()]));
}

#[test]
fn a_router_sends_the_same_traffic_to_two_arms_and_everything_lands_in_the_log() {
    let (v1, v2) = (load("demo:digits-v1"), load("demo:digits-v2"));
    let router = move |request: &RouteRequest<'_>| {
        assert!(request.request_id.ends_with(&format!("-{}", request.index)));
        vec![Route::with_arm(v1.clone(), "A"), Route::with_arm(v2.clone(), "B")]
    };
    let tmp = tempfile::tempdir().unwrap();
    let log = store::PredictionLog::open(&tmp.path().join("log.sqlite"), store::Retention::default()).unwrap();
    let log = Arc::new(log);
    let writer = log.clone();
    let options = ReplayOptions {
        max_requests: Some(25),
        label_delay: Duration::from_millis(20),
        shuffle: true,
        ..Default::default()
    };
    let observations = Arc::new(Mutex::new(Vec::new()));
    let monitor = observations.clone();
    // What the lead wires: predictions to the log and the monitor, labels to both.
    let mut handle = Replay::start(digits(), Targets::router(router), options, move |event| match event {
        ReplayEvent::Predicted(p) => {
            let features = Features(vec![("brightness", 0.5)]);
            p.records(Some(&features)).into_iter().for_each(|r| writer.record(r));
            monitor.lock().unwrap().push(p.observation(features));
        }
        ReplayEvent::Label(l) => writer.set_label(&l.request_id, &l.label),
        _ => {}
    })
    .unwrap();
    assert!(handle.wait(Duration::from_secs(120)));
    assert_eq!(handle.progress().answered, 50);
    log.flush().unwrap();
    let rows = store::read(log.path(), &store::Query::default()).unwrap();
    assert_eq!(rows.len(), 50);
    for arm in ["A", "B"] {
        let arm_rows: Vec<_> = rows.iter().filter(|r| r.record.arm.as_deref() == Some(arm)).collect();
        assert_eq!(arm_rows.len(), 25);
        assert!(arm_rows.iter().all(|r| r.record.origin == Origin::Replay && r.record.label.is_some()));
        assert!(arm_rows.iter().all(|r| r.record.features.as_ref().unwrap()["brightness"] == 0.5));
        assert!(arm_rows.iter().filter(|r| r.correct() == Some(true)).count() >= 20);
    }
    let observations = observations.lock().unwrap();
    assert_eq!(observations.len(), 50);
    assert!(observations.iter().all(|o| &*o.model == "A" || &*o.model == "B"));
    assert!(observations.iter().all(|o| o.latency_ms.is_some_and(|l| l > 0.0) && o.predicted.is_some()));
}

#[test]
fn the_monitor_command_replays_into_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.sqlite");
    let monitor = |data: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
            .current_dir(common::root())
            .args(["monitor", "--model", "demo:digits-v1", "--data", data, "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = monitor(
        "assets/digits/test",
        &[
            "--loop",
            "--max-requests",
            "600",
            "--drift",
            "brightness=-0.4@540",
            "--label-delay",
            "20ms",
            "--log",
            log.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["replay"]["sent"], 600);
    assert_eq!(summary["replay"]["state"], "finished");
    assert_eq!(summary["labelled"], 600);
    let rows = store::read(&log, &store::Query::default()).unwrap();
    assert_eq!(rows.len(), 600);
    assert!(rows.iter().all(|r| r.record.origin == Origin::Replay && r.record.label.is_some()));
    assert!(rows.iter().all(|r| r.label_at_ms.unwrap() >= r.record.at_ms + 20));
    let correct = rows.iter().filter(|r| r.correct() == Some(true)).count();
    assert!((summary["accuracy"].as_f64().unwrap() - correct as f64 / 600.0).abs() < 1e-12);

    let bad = monitor("assets/digits/test", &["--drift", "brightness=-0.4@500+300;fog=1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("step `fog=1`"));
    let wrong_kind = monitor("assets/text/reviews_test.csv", &[]);
    assert!(String::from_utf8_lossy(&wrong_kind.stderr).contains("holds texts"));
}
