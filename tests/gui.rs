//! The desktop app driven through egui_kittest: widgets are found by their accessibility labels,
//! clicked and typed into, while models load and predict on the engine's threads.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hub_server::{HubServer, RepoSpec};
use common::ScriptedDialogs;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use modeldeck::engine::Slot;
use modeldeck::source::{ModelSource, ResolveOptions};
use modeldeck::ui::{AppConfig, ModelDeckApp};

fn app(config: AppConfig) -> Harness<'static, ModelDeckApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(1000)
        .build_eframe(move |cc| ModelDeckApp::new(cc, config))
}

fn demo_config() -> AppConfig {
    AppConfig { fresh: true, dialogs: Arc::new(ScriptedDialogs::default()), ..Default::default() }
}

/// Steps the UI (in real time, the engine works on other threads) until `done` holds.
fn wait_until(harness: &mut Harness<'_, ModelDeckApp>, what: &str, done: impl Fn(&Harness<'_, ModelDeckApp>) -> bool) {
    let started = Instant::now();
    while !done(harness) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; log: {:?}",
            harness.state().log_messages()
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.step();
}

fn has_text(harness: &Harness<'_, ModelDeckApp>, text: &str) -> bool {
    harness.query_all_by_label_contains(text).next().is_some()
}

fn answered(harness: &Harness<'_, ModelDeckApp>, slot: Slot, input: &str) -> bool {
    harness.state().answered_input(slot) == Some(input)
}

#[test]
fn the_demo_opens_on_both_models_answering_a_gallery_sample_then_predicts_a_click() {
    let mut harness = app(demo_config());
    // Before any click: both demo models answer a gallery digit.
    wait_until(&mut harness, "both answers to the first sample", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    assert_eq!(harness.state().card(Slot::A).unwrap().name, "digits-v1");
    assert!(has_text(&harness, "A: digits-v1") && has_text(&harness, "B: digits-v2"));
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("3"));
    assert_eq!(harness.state().top_label(Slot::B).as_deref(), Some("3"));
    assert!(has_text(&harness, "A · digits-v1") && has_text(&harness, "B · digits-v2"));
    assert!(has_text(&harness, "digit 3 ·"), "the answer names its input and latency");

    wait_until(&mut harness, "the gallery", |h| h.query_by_label("digit 7").is_some());
    harness.get_by_label("digit 7").click();
    wait_until(&mut harness, "both answers to the click", |h| {
        answered(h, Slot::A, "digit 7") && answered(h, Slot::B, "digit 7")
    });
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("7"));
    assert_eq!(harness.state().top_label(Slot::B).as_deref(), Some("7"));
}

#[test]
fn a_broken_model_folder_shows_an_error_and_the_app_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), "{ not json").unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), b"junk").unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    *dialogs.folder.lock().unwrap() = Some(tmp.path().to_path_buf());
    let mut harness = app(AppConfig { fresh: true, dialogs: dialogs.clone(), ..Default::default() });
    wait_until(&mut harness, "demo A", |h| h.state().card(Slot::A).is_some());
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Open folder… (B)").click();
    wait_until(&mut harness, "the load error", |h| has_text(h, "Could not load"));
    assert!(has_text(&harness, "not valid JSON"));
    assert!(harness.state().log_messages().iter().any(|m| m.contains("not valid JSON")));

    // Still working: A predicts.
    harness.get_by_label("Playground").click();
    wait_until(&mut harness, "the gallery", |h| h.query_by_label("digit 7").is_some());
    harness.get_by_label("digit 7").click();
    wait_until(&mut harness, "A's answer", |h| answered(h, Slot::A, "digit 7"));
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("7"));
}

#[test]
fn hub_loading_shows_progress_then_the_model_card() {
    let mut repos = HashMap::new();
    repos.insert("test-org/tiny-bert".to_string(), RepoSpec { dir: common::fixture_model("bert-cls-5"), token: None });
    let server = HubServer::start(repos);
    server.behaviour.lock().unwrap().slow.push("model.safetensors".into());
    let cache = tempfile::tempdir().unwrap();
    let resolve = ResolveOptions {
        endpoint: Some(server.endpoint.clone()),
        cache_dir: Some(cache.path().to_path_buf()),
        token: Some(String::new()),
        ..Default::default()
    };
    let config = AppConfig { resolve, ..demo_config() };
    let mut harness = app(config);
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Hub repo id (B)").click();
    harness.step();
    harness.get_by_label("Hub repo id (B)").type_text("test-org/tiny-bert");
    harness.step();
    harness.get_by_label("Load from Hub into B").click();
    wait_until(&mut harness, "download progress", |h| has_text(h, "model.safetensors"));
    wait_until(&mut harness, "the hub model card", |h| {
        h.state().card(Slot::B).is_some_and(|c| c.source == "test-org/tiny-bert")
    });
    assert!(has_text(&harness, "BertForSequenceClassification"));
    assert!(has_text(&harness, "sadness"), "labels are on the card");
    assert_eq!(harness.state().state().slots[1], Some(ModelSource::parse("test-org/tiny-bert").unwrap()));
    assert!(harness.state().state().recent.iter().any(|r| r == "test-org/tiny-bert"));
}

/// A white vertical bar on black: a "1" to the digits models.
fn bar_image(w: usize, h: usize) -> egui::ColorImage {
    let pixels = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if (w * 7 / 16..w * 9 / 16).contains(&x) && (h / 8..h * 7 / 8).contains(&y) {
                egui::Color32::WHITE
            } else {
                egui::Color32::BLACK
            }
        })
        .collect();
    egui::ColorImage::new([w, h], pixels)
}

/// A file dropped on the window, as the windowing integration hands it to egui.
#[derive(Debug)]
struct DroppedPath(std::path::PathBuf);

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn write_png(dir: &std::path::Path, name: &str, image: &egui::ColorImage) -> std::path::PathBuf {
    let [w, h] = image.size;
    let raw: Vec<u8> = image.pixels.iter().flat_map(|c| [c.r(), c.g(), c.b()]).collect();
    let path = dir.join(name);
    image::RgbImage::from_raw(w as u32, h as u32, raw).unwrap().save(&path).unwrap();
    path
}

#[test]
fn a_pasted_image_is_predicted() {
    let mut harness = app(demo_config());
    wait_until(&mut harness, "demo A", |h| h.state().card(Slot::A).is_some());
    harness.event(egui::Event::PasteImage(Arc::new(bar_image(32, 32))));
    wait_until(&mut harness, "A's answer", |h| answered(h, Slot::A, "pasted image"));
    assert!(has_text(&harness, "pasted image ·"));
}

/// Odd shapes from every way in (paste, drop, the Open dialog) are predicted with previews the
/// renderer can take; images over the limit and damaged clipboard buffers give a clear error;
/// the app keeps running throughout and renders.
#[test]
fn odd_images_from_every_way_in_are_predicted_or_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    let mut harness = app(AppConfig { fresh: true, dialogs: dialogs.clone(), ..Default::default() });
    wait_until(&mut harness, "both demo models", |h| {
        h.state().card(Slot::A).is_some() && h.state().card(Slot::B).is_some()
    });

    // A 20000x200 panorama, pasted: wider than any GPU texture.
    harness.event(egui::Event::PasteImage(Arc::new(bar_image(20_000, 200))));
    wait_until(&mut harness, "the panorama's answers", |h| {
        answered(h, Slot::A, "pasted image") && answered(h, Slot::B, "pasted image")
    });
    assert_eq!(harness.state().input_image().map(|i| i.1), Some([20_000, 200]), "the model gets the full image");
    let preview = harness.state().input_preview_size().expect("a preview is shown");
    assert!(preview[0] <= 1024 && preview[1] >= 1, "preview {preview:?}");
    harness.render().expect("the window renders with the panorama on screen");

    // A 200x20000 strip, dropped on the window.
    let tall = write_png(tmp.path(), "tall.png", &bar_image(200, 20_000));
    harness.input_mut().dropped_files.push(Arc::new(DroppedPath(tall)));
    wait_until(&mut harness, "the strip's answers", |h| {
        answered(h, Slot::A, "tall.png") && answered(h, Slot::B, "tall.png")
    });
    let preview = harness.state().input_preview_size().expect("a preview is shown");
    assert!(preview[1] <= 1024, "preview {preview:?}");

    // A 1x1 image through the Open image dialog.
    let dot = write_png(tmp.path(), "dot.png", &egui::ColorImage::new([1, 1], vec![egui::Color32::WHITE]));
    *dialogs.image.lock().unwrap() = Some(dot);
    harness.get_by_label("Open image…").click();
    wait_until(&mut harness, "the dot's answers", |h| {
        answered(h, Slot::A, "dot.png") && answered(h, Slot::B, "dot.png")
    });
    assert_eq!(harness.state().input_preview_size(), Some([1, 1]));

    // Over the pixel limit, and a damaged buffer: clear errors, nothing else changes.
    let errors_before = harness.state().log_messages().len();
    let huge = egui::ColorImage { size: [12_000, 12_000], pixels: Vec::new(), source_size: egui::Vec2::ZERO };
    harness.event(egui::Event::PasteImage(Arc::new(huge)));
    wait_until(&mut harness, "the over-limit error", |h| {
        h.state().log_messages().iter().any(|m| m.contains("12000x12000") && m.contains("100-megapixel limit"))
    });
    let damaged =
        egui::ColorImage { size: [100, 100], pixels: vec![egui::Color32::RED; 37], source_size: egui::Vec2::ZERO };
    harness.event(egui::Event::PasteImage(Arc::new(damaged)));
    wait_until(&mut harness, "the damaged-buffer error", |h| {
        h.state().log_messages().iter().any(|m| m.contains("pasted image is damaged"))
    });
    assert!(harness.state().log_messages().len() >= errors_before + 2);
    assert!(has_text(&harness, "Log (2 errors)"), "the error count is shown");
    assert_eq!(harness.state().input_image().map(|i| i.0), Some("dot.png"), "the last good input stays");

    // Still working.
    harness.get_by_label("digit 4").click();
    wait_until(&mut harness, "A's answer after the errors", |h| answered(h, Slot::A, "digit 4"));
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("4"));
    harness.render().expect("the window still renders");
}

/// Replaces a text field's contents the way a user does: focus, select all, type, Enter.
fn replace_text(harness: &mut Harness<'_, ModelDeckApp>, label: &str, text: &str) {
    harness.get_by_label(label).focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness.get_by_label(label).type_text(text);
    harness.step();
    harness.key_press(egui::Key::Enter);
    harness.step();
}

/// Steps until A shows exactly `labels`, each with its score in `want` (same order) within 1e-4.
fn wait_for_scores(harness: &mut Harness<'_, ModelDeckApp>, what: &str, labels: &[&str], want: Vec<f64>) {
    wait_until(harness, what, |h| {
        let Some(answer) = h.state().answer(Slot::A) else { return false };
        let shown = answer.labels().unwrap_or_default();
        shown.len() == labels.len()
            && shown.iter().all(|s| {
                labels.iter().position(|l| *l == s.label).is_some_and(|i| (s.score as f64 - want[i]).abs() < 1e-4)
            })
    });
}

/// The Playground's candidate labels and template reach CLIP: the scores are the transformers
/// pipeline's for the default, a custom and the identity template (tests/fixtures/reference).
#[test]
fn zero_shot_labels_and_template_from_the_playground_match_transformers() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/fixtures/reference/clip-a.json")).unwrap(),
    )
    .unwrap();
    let want = |template: Option<&str>, labels: &[&str]| -> Vec<f64> {
        let case = reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["input"]["image"] == "assets/samples/chelsea.png"
                    && c["input"].get("template").and_then(|t| t.as_str()) == template
                    && c["input"]["labels"] == serde_json::json!(labels)
            })
            .expect("reference case");
        case["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect()
    };
    let clip = ModelSource::Local { path: common::fixture_model("clip-a") };
    let config = AppConfig { a: Some(clip.clone()), b: Some(clip), ..demo_config() };
    let mut harness = app(config);
    // Not digit models: the first-start sample is the cat photo.
    wait_until(&mut harness, "the first-start sample", |h| answered(h, Slot::A, "sample chelsea"));

    // A's shown scores are, label by label, the reference's.
    let labels = ["cat", "dog", "coffee cup"];
    replace_text(&mut harness, "Candidate labels", "cat, dog, coffee cup");
    wait_for_scores(&mut harness, "the default template's scores", &labels, want(None, &labels));

    replace_text(&mut harness, "Template", "a photo of a {}.");
    wait_for_scores(&mut harness, "a custom template's scores", &labels, want(Some("a photo of a {}."), &labels));

    let sentences = ["a cat on a sofa", "a dog in the rain", "a cup of coffee"];
    replace_text(&mut harness, "Candidate labels", "a cat on a sofa, a dog in the rain, a cup of coffee");
    replace_text(&mut harness, "Template", "{}");
    wait_for_scores(&mut harness, "the identity template's scores", &sentences, want(Some("{}"), &sentences));

    // A template without a placeholder is explained, not run.
    replace_text(&mut harness, "Template", "a photo");
    wait_until(&mut harness, "the template error", |h| h.state().slot_error(Slot::A).is_some_and(|e| e.contains("{}")));
}

/// Every Playground prediction reaches the prediction log, with its slot as the arm; a log
/// file that is not a ModelDeck log is reported, left untouched, and a fresh one is used.
#[test]
fn playground_predictions_are_logged_and_a_bad_log_file_does_not_stop_the_app() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("predictions.sqlite");
    std::fs::write(&path, "not a database").unwrap();
    let mut harness = app(AppConfig { log: Some(path.clone()), ..demo_config() });
    wait_until(&mut harness, "both answers to the first sample", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    assert!(harness
        .state()
        .log_messages()
        .iter()
        .any(|m| m.contains("is not a ModelDeck prediction log") && m.contains("instead")));
    assert_eq!(std::fs::read(&path).unwrap(), b"not a database", "the old file is left as it was");
    let fresh = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p != &path && p.extension().is_some_and(|e| e == "sqlite"))
        .expect("a fresh log beside it");
    // Committed within 250 ms of the prediction; allow the machine some slack.
    let started = Instant::now();
    let rows = loop {
        let rows = modeldeck::store::read(&fresh, &Default::default()).unwrap_or_default();
        if rows.len() >= 2 || started.elapsed() > Duration::from_secs(5) {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let arms: Vec<_> = rows.iter().map(|r| (r.record.arm.as_deref(), r.record.prediction.as_deref())).collect();
    assert!(arms.contains(&(Some("A"), Some("3"))) && arms.contains(&(Some("B"), Some("3"))), "{arms:?}");
    assert!(rows
        .iter()
        .all(|r| r.record.origin == modeldeck::store::Origin::Playground
            && r.record.input_ref.as_deref() == Some("digit 3")));
}

/// The Monitor view end to end: a user corrects a Playground answer, opens the Monitor, starts a
/// drifting replay of the demo digits, and watches drift fire on brightness and on the predicted
/// class and the accuracy alert trip; then the UI's frame time is measured with 100,000
/// predictions recorded and the replay still running.
#[test]
fn the_monitor_shows_a_drifting_replay_firing_alerts_and_stays_fluid() {
    let mut harness = app(demo_config());
    wait_until(&mut harness, "the first answers", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    // "This should be …": the user's label counts in the monitor's accuracy.
    harness.query_all_by_label("Correct").next().unwrap().click();
    harness.step();
    assert!(harness.state().log_messages().iter().any(|m| m.contains("labelled 3")));
    wait_until(&mut harness, "the correction in the monitor", |h| {
        h.state().monitor().snapshot().models.iter().any(|m| m.accuracy.labelled == 1)
    });

    harness.query_all_by_label("Monitor").next().unwrap().click();
    harness.step();
    replace_text(&mut harness, "rate", "400");
    replace_text(&mut harness, "drift", "brightness=-0.6@550+50");
    harness.get_by_label("Start replay").click();
    harness.step();
    wait_until(&mut harness, "the replay to run", |h| has_text(h, "Pause"));
    let fired = |h: &Harness<'_, ModelDeckApp>, rule: &str| {
        h.state().monitor().snapshot().firing.iter().any(|a| a.model == "demo:digits-v1" && a.rule == rule)
    };
    let started = Instant::now();
    while !(fired(&harness, "prediction drift") && fired(&harness, "feature drift") && fired(&harness, "accuracy drop"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "alerts: {:?}",
            harness.state().monitor().snapshot().firing
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.step();
    assert!(has_text(&harness, "ALERT prediction drift"), "the banner");
    assert!(harness.state().log_messages().iter().any(|m| m.starts_with("alert accuracy drop")));
    let snapshot = harness.state().monitor().snapshot();
    let model = snapshot.models.iter().find(|m| m.name.as_ref() == "demo:digits-v1").unwrap();
    let drift = model.drift.as_ref().unwrap();
    assert!(drift.column("brightness").unwrap().verdict.is_drift());
    assert!(!drift.column("width").unwrap().verdict.is_drift());
    assert!(has_text(&harness, "DRIFT") && has_text(&harness, "brightness"), "the drift table");
    // The drifted traffic becomes the new normal: its window is the reference from now on.
    harness.get_by_label("Use the current window as reference").scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label("Use the current window as reference").click();
    harness.step();
    assert!(harness.state().log_messages().iter().any(|m| m.contains("is now the drift reference")));
    wait_until(&mut harness, "drift against the saved window", |h| {
        h.state().monitor().snapshot().models.iter().any(|m| {
            m.drift.as_ref().is_some_and(|d| {
                d.source == modeldeck::monitor::drift::ReferenceSource::SavedWindow && d.current.is_some()
            })
        })
    });

    // 100,000 more predictions over the last three hours, then frame times with the replay on.
    let monitor = harness.state().monitor().clone();
    let now = modeldeck::store::now_ms();
    let name: Arc<str> = "load-test".into();
    for i in 0..100_000i64 {
        let mut features = modeldeck::monitor::Features::default();
        features.push("brightness", (i % 97) as f64 / 97.0);
        features.push("confidence", 0.5 + (i % 13) as f64 / 30.0);
        monitor.observe(
            modeldeck::monitor::Observation {
                at_ms: now - 10_800_000 + i * 108,
                model: name.clone(),
                request_id: format!("load-{i}").into(),
                latency_ms: Some(1.0 + (i % 50) as f64 / 10.0),
                error: i % 200 == 0,
                predicted: Some(if i % 3 == 0 { "a" } else { "b" }.into()),
                features,
            },
            modeldeck::store::Origin::Replay,
        );
    }
    harness.get_by_label("3 h").click();
    let mut frames = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        harness.step();
        frames.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(5));
    }
    frames.sort_by(f64::total_cmp);
    let p99 = frames[(frames.len() * 99).div_ceil(100) - 1];
    eprintln!("Monitor view with 100,000 recorded predictions and a replay running: frame p50 {:.2} ms, p99 {p99:.2} ms, max {:.2} ms (300 frames, UI thread, no GPU)", frames[150], frames[299]);
    assert!(harness
        .state()
        .monitor()
        .snapshot()
        .models
        .iter()
        .any(|m| m.name.as_ref() == "load-test" && m.ops.requests == 100_000));
    harness.get_by_label("Stop").click();
    harness.step();
}

/// Steps until `done`, for up to `limit`.
fn wait_long(
    harness: &mut Harness<'_, ModelDeckApp>,
    what: &str,
    limit: Duration,
    done: impl Fn(&Harness<'_, ModelDeckApp>) -> bool,
) {
    let started = Instant::now();
    while !done(harness) {
        assert!(started.elapsed() < limit, "timed out waiting for {what}; log: {:?}", harness.state().log_messages());
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.step();
}

fn canary_phase(harness: &Harness<'_, ModelDeckApp>) -> Option<modeldeck::deploy::Phase> {
    harness.state().rollout().and_then(|s| s.canary.as_ref()).map(|c| c.phase)
}

/// The Deploy view end to end: a canary of digits-v2 on drifted digits is promoted step by
/// step and each decision's evidence opens; a slower B (2 ms injected) with "wait for my
/// approval" proposes a rollback that the user approves; an A/B run shows both arms, with
/// their traffic in the Monitor under arms A and B.
#[test]
fn the_deploy_view_promotes_a_canary_rolls_back_a_slow_one_on_approval_and_runs_an_ab_test() {
    use modeldeck::deploy::Phase;
    let mut harness = app(demo_config());
    wait_until(&mut harness, "the first answers", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    harness.get_by_label("Deploy").click();
    harness.step();
    assert!(has_text(&harness, "A (current): digits-v1"));
    // As fast as the models go, so that the test does not wait on the pacing.
    replace_text(&mut harness, "rate", "");
    harness.get_by_label("Start").click();
    wait_long(&mut harness, "the canary's promotion", Duration::from_secs(120), |h| {
        canary_phase(h) == Some(Phase::Promoted)
    });
    harness.run_steps(3);
    assert!(has_text(&harness, "CANARY PROMOTED"), "the banner");
    let snapshot = harness.state().rollout().unwrap().clone();
    let canary = snapshot.canary.as_ref().unwrap();
    assert_eq!(canary.weights.iter().map(|w| w.1).collect::<Vec<_>>(), vec![1.0, 5.0, 25.0, 50.0, 100.0]);
    assert!(harness.state().log_messages().iter().any(|m| m.starts_with("canary:") && m.contains("promote B")));
    // The first check's evidence, one click away.
    harness.query_all_by_label_contains("#1 at 1 %").next().unwrap().click();
    harness.run_steps(2);
    assert!(has_text(&harness, "answers from A"), "the window of the check");
    assert!(has_text(&harness, "Kayenta"), "the latency gate's evidence");
    assert!(has_text(&harness, "Is B more accurate?"));
    harness.get_by_label("Stop").click();
    wait_long(&mut harness, "the stop", Duration::from_secs(10), |h| h.query_by_label("Start").is_some());

    // A slower B, and every decision waits for the user.
    // Through accesskit: an alert toast of the Monitor may cover the box's spot on screen.
    harness.get_by_label("wait for my approval").click_accesskit();
    harness.run_steps(2);
    assert!(harness.state().deploy_form().manual, "the approval box is ticked");
    replace_text(&mut harness, "delay", "2");
    assert_eq!(harness.state().deploy_form().delay_ms, 2.0);
    // The latency gate's absolute allowance is the form's too (0.05 ms unless changed).
    assert_eq!(harness.state().deploy_form().allowed_ms, 0.05);
    replace_text(&mut harness, "or ms", "0.1");
    assert_eq!(harness.state().deploy_form().allowed_ms, 0.1);
    harness.get_by_label("Start").click();
    wait_long(&mut harness, "a proposed rollback", Duration::from_secs(120), |h| {
        canary_phase(h) == Some(Phase::AwaitingApproval)
    });
    harness.run_steps(2);
    let snapshot = harness.state().rollout().unwrap().clone();
    let c = snapshot.canary.as_ref().unwrap();
    assert_eq!(c.pending, Some(modeldeck::deploy::Action::Rollback), "{:#?}", c.decisions);
    assert_eq!(snapshot.fault_b.unwrap().delay, Duration::from_millis(2));
    assert!(c.weight > 0.0, "nothing moves before the click");
    harness.get_by_label("Approve: roll back to A").click();
    wait_long(&mut harness, "the rollback", Duration::from_secs(10), |h| canary_phase(h) == Some(Phase::RolledBack));
    harness.run_steps(2);
    assert!(has_text(&harness, "CANARY ROLLED BACK"));
    harness.get_by_label("Stop").click();
    wait_long(&mut harness, "the stop", Duration::from_secs(10), |h| h.query_by_label("Start").is_some());

    // An A/B test at 50 %, without the injected delay.
    harness.get_by_label("A/B test").click();
    replace_text(&mut harness, "delay", "0");
    assert_eq!(harness.state().deploy_form().delay_ms, 0.0);
    harness.get_by_label("Start").click();
    wait_long(&mut harness, "labels on both arms", Duration::from_secs(120), |h| {
        h.state()
            .rollout()
            .is_some_and(|s| s.canary.is_none() && s.accuracy.as_ref().is_some_and(|a| a.a.n >= 200 && a.b.n >= 200))
    });
    harness.run_steps(2);
    assert!(has_text(&harness, "points more accurate"), "the plain-language verdict");
    assert!(has_text(&harness, "sequential p ="), "the always-valid verdict");
    let models: Vec<String> = harness.state().monitor().snapshot().models.iter().map(|m| m.name.to_string()).collect();
    assert!(models.contains(&"A".to_string()) && models.contains(&"B".to_string()), "{models:?}");
    harness.get_by_label("Stop").click();
    harness.run_steps(2);
}

fn evaluation_done(h: &Harness<'_, ModelDeckApp>) -> bool {
    !h.state().evaluate_view().is_running() && h.state().evaluate_view().result().is_some()
}

/// The Evaluate view end to end on the shipped digits test split: evaluate A, open a confusion
/// cell's records, export the report; then compare A and B on a drifted copy and browse the
/// disagreements. The numbers are the CLI's (`modeldeck eval --model demo:digits-v1 --data
/// assets/digits/test`: 534/540; `compare ... --drift contrast=0.5,noise=0.1`: 78 disagreements).
#[test]
fn the_evaluate_view_evaluates_opens_a_confusion_cell_compares_and_exports_a_report() {
    use modeldeck::ui::evaluate_view::Outcome;
    let tmp = tempfile::tempdir().unwrap();
    let mut harness = app(AppConfig { log: Some(tmp.path().join("log.sqlite")), ..demo_config() });
    wait_until(&mut harness, "the first answers", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    harness.get_by_label("Evaluate").click();
    harness.step();
    harness.get_by_label("Evaluate A (digits-v1)").click();
    wait_until(&mut harness, "the evaluation of A", evaluation_done);
    let Some(Outcome::One { slot, run }) = harness.state().evaluate_view().result() else { panic!("one evaluation") };
    assert_eq!(*slot, Slot::A);
    let m = run.evaluation.metrics.as_ref().unwrap();
    assert_eq!((m.n, m.correct), (540, 534), "the CLI's numbers");
    assert_eq!(run.evaluation.n_failed, 0);
    assert!(has_text(&harness, "98.89%"), "the headline accuracy");

    // A confusion cell opens its records: the "2" read as "1".
    harness.get_by_label("label 2 predicted 1: 1").click();
    harness.run_steps(3);
    assert!(has_text(&harness, "2/0077.png"), "the record behind the cell");

    // The report lands beside the log, self-contained.
    harness.get_by_label("Export report (HTML)").click();
    wait_until(&mut harness, "the report, written off the UI thread", |h| {
        h.state().log_messages().iter().any(|m| m.starts_with("wrote ") && m.contains(".html"))
    });
    let reports: Vec<_> = std::fs::read_dir(tmp.path().join("reports")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let html = std::fs::read_to_string(&reports[0]).unwrap();
    assert!(html.contains("Evaluation of digits-v1") && html.contains("98.89%") && !html.contains("<script"));

    // The evaluation went to the log as a batch run; the Monitor takes it as A's drift reference.
    let started = Instant::now();
    while !modeldeck::store::batch_runs(&tmp.path().join("log.sqlite"), 10)
        .is_ok_and(|r| r.iter().any(|r| r.rows == 540))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the evaluation's rows never reached the log");
        std::thread::sleep(Duration::from_millis(50));
    }
    harness.get_by_label("Monitor").click();
    wait_until(&mut harness, "the drift section", |h| has_text(h, "Reference: a batch run"));
    // Both slots have answered, so the drift section asks whose drift it shows: A's.
    if harness.query_by_label("of").is_some() {
        harness.get_by_label("of").click_accesskit();
        harness.run_steps(2);
        harness.query_all_by_label("demo:digits-v1").last().unwrap().click_accesskit();
        harness.run_steps(2);
    }
    harness.get_by_label("Reference: a batch run").click_accesskit();
    wait_until(&mut harness, "the batch runs", |h| has_text(h, "540 rows"));
    harness.query_all_by_label_contains("540 rows").next().unwrap().click_accesskit();
    wait_until(&mut harness, "the new reference", |h| {
        h.state()
            .log_messages()
            .iter()
            .any(|m| m.contains("the drift reference is now batch run") && m.contains("540 rows"))
    });
    wait_until(&mut harness, "drift against it", |h| has_text(h, "reference: a data set (540 predictions"));
    harness.get_by_label("Evaluate").click();
    harness.step();

    // A and B on a drifted copy.
    replace_text(&mut harness, "drift", "contrast=0.5,noise=0.1");
    harness.get_by_label("Compare A and B").click();
    wait_until(&mut harness, "the comparison", |h| {
        evaluation_done(h) && matches!(h.state().evaluate_view().result(), Some(Outcome::Two { .. }))
    });
    let Some(Outcome::Two { comparison, .. }) = harness.state().evaluate_view().result() else { unreachable!() };
    assert_eq!(comparison.n_paired, 540);
    assert_eq!(comparison.disagreements.len(), 78, "the CLI's disagreements");
    assert_eq!(comparison.correctness, [[450, 55], [18, 17]]);
    assert_eq!(comparison.a.drift.as_deref(), Some("contrast=0.5,noise=0.1"));
    harness.get_by_label("Disagreements (78)").click();
    harness.run_steps(3);
    assert!(has_text(&harness, "0/0328.png"), "the first disagreement");
}

/// Cancel stops an evaluation in flight: the view says how far it got and shows no partial
/// metrics.
#[test]
fn an_evaluation_can_be_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    // The test split 100 times over: long enough to cancel (about a second at full speed).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits/test");
    let mut csv = String::from("image,label\n");
    for _ in 0..100 {
        for class in std::fs::read_dir(&root).unwrap().flatten() {
            for file in std::fs::read_dir(class.path()).unwrap().flatten() {
                csv.push_str(&format!("{},{}\n", file.path().display(), class.file_name().to_string_lossy()));
            }
        }
    }
    let data = tmp.path().join("many.csv");
    std::fs::write(&data, csv).unwrap();
    let mut harness = app(demo_config());
    wait_until(&mut harness, "the first answers", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    harness.get_by_label("Evaluate").click();
    harness.step();
    replace_text(&mut harness, "Data set", &data.display().to_string());
    harness.get_by_label("Evaluate A (digits-v1)").click();
    wait_until(&mut harness, "the run to start", |h| h.query_by_label("Cancel").is_some());
    harness.get_by_label("Cancel").click();
    wait_until(&mut harness, "the run to stop", |h| !h.state().evaluate_view().is_running());
    assert!(harness.state().evaluate_view().result().is_none(), "no partial result");
    let messages = harness.state().log_messages();
    assert!(messages.iter().any(|m| m.starts_with("evaluation of A:") && m.contains("cancelled")), "{messages:?}");
}

#[test]
fn a_remote_model_connects_from_the_models_view_answers_beside_the_local_one_and_failures_are_explained() {
    // "The cloud": digits-v2 behind `modeldeck serve`, reached over HTTP.
    let served =
        modeldeck::model::load_source(&ModelSource::parse("demo:digits-v2").unwrap(), &ResolveOptions::default())
            .unwrap();
    let mut options = modeldeck::serve::ServeOptions::new("digits-v2");
    options.addr = "127.0.0.1:0".parse().unwrap();
    let server = modeldeck::serve::Server::start(Arc::new(served), options).unwrap();
    let url = format!("oip+http://{}/digits-v2", server.addr());

    let mut harness = app(demo_config());
    wait_until(&mut harness, "the demos' first answers", |h| {
        answered(h, Slot::A, "digit 3") && answered(h, Slot::B, "digit 3")
    });
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Remote endpoint (B)").click();
    harness.step();
    harness.get_by_label("Remote endpoint (B)").type_text(&url);
    harness.step();
    harness.get_by_label("Connect B").click();
    wait_until(&mut harness, "the remote card", |h| h.state().card(Slot::B).is_some_and(|c| c.source == url));
    assert!(has_text(&harness, "Open Inference Protocol v2"));
    assert!(has_text(&harness, concat!("modeldeck ", env!("CARGO_PKG_VERSION"))));
    assert!(has_text(&harness, "image BYTES: images (sent as PNG)"));
    // A model loaded later answers the current input at once, with its time split.
    harness.get_by_label("Playground").click();
    wait_until(&mut harness, "the remote answer", |h| {
        h.state().card(Slot::B).is_some_and(|c| c.source == url)
            && answered(h, Slot::B, "digit 3")
            && has_text(h, "+ network")
    });
    assert_eq!(harness.state().top_label(Slot::B).as_deref(), Some("3"));

    // The server goes away: B's next prediction fails with the reason, A keeps answering.
    server.stop();
    wait_until(&mut harness, "the gallery", |h| h.query_by_label("digit 7").is_some());
    harness.get_by_label("digit 7").click();
    wait_until(&mut harness, "A's answer and B's error", |h| {
        answered(h, Slot::A, "digit 7") && h.state().log_messages().iter().any(|m| m.contains("refused the connection"))
    });
    // A source that cannot be reached is explained and the slot keeps its model.
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Remote endpoint (A)").click();
    harness.step();
    harness.get_by_label("Remote endpoint (A)").type_text("oip+http://127.0.0.1:9/x?colour=red");
    harness.step();
    harness.get_by_label("Connect A").click();
    wait_until(&mut harness, "the refusal", |h| {
        h.state().log_messages().iter().any(|m| m.contains("unknown option `colour`"))
    });
    assert_eq!(harness.state().card(Slot::A).unwrap().name, "digits-v1");
}

#[test]
fn the_models_view_loads_a_as_f32_and_the_same_model_as_int8_in_b_and_both_answer() {
    let mut harness = app(demo_config());
    wait_until(&mut harness, "both demos", |h| h.state().card(Slot::A).is_some() && h.state().card(Slot::B).is_some());
    harness.get_by_label("Models").click();
    harness.step();
    harness.get_by_label("Same model as A").click();
    wait_until(&mut harness, "A's model in B", |h| h.state().card(Slot::B).is_some_and(|c| c.name == "digits-v1"));
    harness.get_by_label("Precision (B)").click();
    wait_until(&mut harness, "the precision list", |h| h.query_by_label("int8").is_some());
    harness.get_by_label("int8").click();
    wait_until(&mut harness, "B loaded again as int8", |h| {
        h.state()
            .card(Slot::B)
            .is_some_and(|c| c.name == "digits-v1" && c.precision == modeldeck::model::Precision::Int8)
    });
    let (a, b) = (harness.state().card(Slot::A).unwrap().clone(), harness.state().card(Slot::B).unwrap().clone());
    assert_eq!(a.precision, modeldeck::model::Precision::F32);
    assert_eq!(a.size_bytes, b.size_bytes, "the same file on disk");
    assert!(b.memory_bytes < a.memory_bytes, "int8 {} vs f32 {} in memory", b.memory_bytes, a.memory_bytes);
    // Each card says how its slot runs; B's names the scheme (in full on hover).
    assert!(has_text(&harness, "Runs in"));
    assert!(b.kernel.starts_with("int8") && has_text(&harness, &b.kernel), "B runs in {}", b.kernel);
    assert!(has_text(&harness, "int8 weights per channel, activations per row and 64 inputs"));
    assert_eq!(harness.query_all_by_label("Scheme").count(), 1, "only the reduced-precision card has a scheme row");

    harness.get_by_label("Playground").click();
    wait_until(&mut harness, "the gallery", |h| h.query_by_label("digit 7").is_some());
    harness.get_by_label("digit 7").click();
    wait_until(&mut harness, "both answers", |h| answered(h, Slot::A, "digit 7") && answered(h, Slot::B, "digit 7"));
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("7"));
    assert_eq!(harness.state().top_label(Slot::B).as_deref(), Some("7"));
}

/// The Playground runs an NLI model zero-shot: the text, candidate labels, hypothesis template and
/// the multi-label switch reach it, and the scores are the transformers pipeline's (reference
/// cases of tests/fixtures/reference/bert-nli.json).
#[test]
fn zero_shot_text_from_the_playground_matches_the_pipeline() {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/fixtures/reference/bert-nli.json")).unwrap(),
    )
    .unwrap();
    let case = |text: &str, labels: &[&str], template: Option<&str>, multi: bool| -> Vec<f64> {
        let case = reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| {
                c["input"]["text"] == text
                    && c["input"]["labels"] == serde_json::json!(labels)
                    && c["input"].get("template").and_then(|t| t.as_str()) == template
                    && c["input"]["multi_label"] == multi
            })
            .expect("reference case");
        case["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect()
    };
    let nli = ModelSource::Local { path: common::fixture_model("bert-nli") };
    let config = AppConfig { a: Some(nli), b: None, ..demo_config() };
    let mut harness = app(config);
    wait_until(&mut harness, "the NLI model", |h| h.state().card(Slot::A).is_some());
    assert_eq!(harness.state().card(Slot::A).unwrap().task, modeldeck::model::Task::ZeroShotTextClassification);

    let text = "The service was terrible, the food arrived cold, and nobody apologized.";
    harness.get_by_label("Text input (Ctrl+Enter runs)").focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    harness.step();
    harness.get_by_label("Text input (Ctrl+Enter runs)").type_text(text);
    harness.step();
    let labels = ["travel", "food", "movies", "politics", "a complaint about bad service"];
    replace_text(&mut harness, "Text labels", &labels.join(", "));
    wait_for_scores(&mut harness, "single-label scores", &labels, case(text, &labels, None, false));

    harness.get_by_label("Several labels can be true").click();
    harness.step();
    wait_for_scores(&mut harness, "multi-label scores", &labels, case(text, &labels, None, true));

    // A hypothesis template without a placeholder is explained, not run.
    replace_text(&mut harness, "Hypothesis", "no placeholder");
    wait_until(&mut harness, "the template error", |h| h.state().slot_error(Slot::A).is_some_and(|e| e.contains("{}")));
    harness.render().expect("the window still renders");
}

/// A replay from the Monitor view to a zero-shot model uses the data set's labels as its
/// candidate labels (as `modeldeck monitor` does): every replayed request is answered, none fails
/// for want of labels.
#[test]
fn a_monitor_replay_to_a_zero_shot_model_answers_in_the_data_sets_labels() {
    let clip = ModelSource::Local { path: common::fixture_model("clip-a") };
    let config = AppConfig { a: Some(clip), ..demo_config() };
    let mut harness = app(config);
    wait_until(&mut harness, "the zero-shot model", |h| h.state().card(Slot::A).is_some_and(|c| c.name == "clip-a"));
    harness.query_all_by_label("Monitor").next().unwrap().click();
    harness.step();
    replace_text(&mut harness, "rate", "200");
    harness.get_by_label("Start replay").click();
    harness.step();
    let ops = |h: &Harness<'_, ModelDeckApp>| {
        h.state().monitor().snapshot().models.iter().find(|m| m.name.contains("clip-a")).map(|m| m.ops.clone())
    };
    wait_until(&mut harness, "50 replayed answers", |h| ops(h).is_some_and(|o| o.requests >= 50));
    let ops = ops(&harness).unwrap();
    assert_eq!(ops.errors, 0, "{ops:?}; log: {:?}", harness.state().log_messages());
}
