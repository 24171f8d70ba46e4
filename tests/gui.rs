//! The desktop app driven through egui_kittest: widgets are found by their accessibility labels,
//! clicked and typed into, while models load and predict on the engine's threads.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hub_server::{HubServer, RepoSpec};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use modeldeck::engine::Slot;
use modeldeck::source::{ModelSource, ResolveOptions};
use modeldeck::ui::{AppConfig, ModelDeckApp, ScriptedDialogs};

fn app(config: AppConfig) -> Harness<'static, ModelDeckApp> {
    Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(1000)
        .build_eframe(move |cc| ModelDeckApp::new(cc, config))
}

fn demo_config() -> AppConfig {
    AppConfig { fresh: true, dialogs: Box::new(ScriptedDialogs::default()), ..Default::default() }
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

#[test]
fn the_demo_loads_and_predicts_a_gallery_sample_side_by_side() {
    let mut harness = app(demo_config());
    wait_until(&mut harness, "both demo models", |h| {
        h.state().card(Slot::A).is_some() && h.state().card(Slot::B).is_some()
    });
    assert_eq!(harness.state().card(Slot::A).unwrap().name, "digits-v1");
    assert!(has_text(&harness, "A: digits-v1") && has_text(&harness, "B: digits-v2"));

    wait_until(&mut harness, "the gallery", |h| h.query_by_label("digit 3").is_some());
    harness.get_by_label("digit 3").click();
    wait_until(&mut harness, "both answers", |h| {
        h.state().top_label(Slot::A).is_some() && h.state().top_label(Slot::B).is_some()
    });
    assert_eq!(harness.state().top_label(Slot::A).as_deref(), Some("3"));
    assert_eq!(harness.state().top_label(Slot::B).as_deref(), Some("3"));
    assert!(has_text(&harness, "A · digits-v1") && has_text(&harness, "B · digits-v2"));
    assert!(has_text(&harness, "digit 3 ·"), "the answer names its input and latency");
}

#[test]
fn a_broken_model_folder_shows_an_error_and_the_app_keeps_working() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("config.json"), "{ not json").unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), b"junk").unwrap();
    let dialogs = Arc::new(ScriptedDialogs::default());
    *dialogs.folder.lock().unwrap() = Some(tmp.path().to_path_buf());
    let mut harness = app(AppConfig { fresh: true, dialogs: Box::new(dialogs.clone()), ..Default::default() });
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
    wait_until(&mut harness, "A's answer", |h| h.state().top_label(Slot::A).is_some());
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

#[test]
fn a_pasted_image_is_predicted() {
    let mut harness = app(demo_config());
    wait_until(&mut harness, "demo A", |h| h.state().card(Slot::A).is_some());
    // A white vertical bar on black: a "1" to the digits models.
    let (w, h) = (32usize, 32usize);
    let pixels = (0..w * h)
        .map(|i| {
            if (14..18).contains(&(i % w)) && (4..28).contains(&(i / w)) {
                egui::Color32::WHITE
            } else {
                egui::Color32::BLACK
            }
        })
        .collect();
    let image = egui::ColorImage::new([w, h], pixels);
    harness.event(egui::Event::PasteImage(Arc::new(image)));
    wait_until(&mut harness, "A's answer", |h| h.state().top_label(Slot::A).is_some());
    assert!(has_text(&harness, "pasted image ·"));
}
