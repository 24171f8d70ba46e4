//! The real hub code (hf-hub) against a local stand-in for the Hub: download with progress into
//! a Python-compatible cache, offline reuse, fallback when the network is down, 404/401 errors,
//! gated repos and tokens, dropped connections, cancellation.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::hub_server::{HubServer, RepoSpec, COMMIT};
use modeldeck::model::{self, Request, Response};
use modeldeck::source::{self, CancelToken, DownloadUpdate, ModelSource, ResolveOptions, SourceError};

const REPO: &str = "test-org/tiny-bert";

fn server() -> HubServer {
    let mut repos = HashMap::new();
    repos.insert(REPO.to_string(), RepoSpec { dir: common::fixture_model("bert-cls-5"), token: None });
    repos.insert(
        "test-org/gated".to_string(),
        RepoSpec { dir: common::fixture_model("vit-p8-32"), token: Some("secret-token".into()) },
    );
    repos.insert("test-org/st".to_string(), RepoSpec { dir: common::fixture_model("st-bert-mean"), token: None });
    HubServer::start(repos)
}

fn options(endpoint: &str, cache: &std::path::Path) -> ResolveOptions {
    ResolveOptions {
        endpoint: Some(endpoint.to_string()),
        cache_dir: Some(cache.to_path_buf()),
        token: Some(String::new()),
        ..Default::default()
    }
}

fn hub(repo: &str) -> ModelSource {
    ModelSource::parse(repo).unwrap()
}

fn predict_text(files: &source::ModelFiles) -> Vec<f32> {
    let model = model::load(files).expect("load");
    let texts = vec!["what a wonderful day".to_string()];
    match model.run(&Request::Texts { texts: &texts, max_tokens: None }).expect("run") {
        Response::Scores(s) => s[0].probs.clone(),
        Response::Embeddings(e) => e[0].clone(),
    }
}

#[test]
fn downloads_into_the_python_cache_layout_with_progress_and_predicts_like_disk() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let updates: Arc<Mutex<Vec<DownloadUpdate>>> = Arc::default();
    let mut opts = options(&server.endpoint, cache.path());
    let sink = updates.clone();
    opts.progress = Some(Arc::new(move |u: &DownloadUpdate| sink.lock().unwrap().push(u.clone())));

    let files = source::resolve(&hub(REPO), &opts).expect("download");
    let snapshot = cache.path().join("models--test-org--tiny-bert/snapshots").join(COMMIT);
    assert_eq!(files.root, snapshot);
    assert_eq!(files.revision.as_deref(), Some(COMMIT));
    assert!(snapshot.join("model.safetensors").is_file());
    assert!(files.tokenizer.is_some());
    assert_eq!(
        std::fs::read_to_string(cache.path().join("models--test-org--tiny-bert/refs/main")).unwrap().trim(),
        COMMIT
    );
    // The weights' progress reached their full size.
    let weights_len = std::fs::metadata(common::fixture_model("bert-cls-5").join("model.safetensors")).unwrap().len();
    let updates = updates.lock().unwrap();
    let last = updates.iter().rev().find(|u| u.file == "model.safetensors").expect("weights progress");
    assert_eq!((last.bytes_done, last.bytes_total), (weights_len, weights_len));
    assert!(updates.iter().all(|u| u.file_index >= 1 && u.file_index <= u.file_count));

    let local = source::resolve(&ModelSource::Local { path: common::fixture_model("bert-cls-5") }, &Default::default())
        .unwrap();
    assert_eq!(predict_text(&files), predict_text(&local));
}

#[test]
fn offline_reads_the_cache_and_network_failures_fall_back_to_it() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&server.endpoint, cache.path());
    // Offline before anything is cached: a clear error.
    let offline = ResolveOptions { offline: true, ..opts.clone() };
    let err = source::resolve(&hub(REPO), &offline).unwrap_err();
    assert!(matches!(err, SourceError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");

    source::resolve(&hub(REPO), &opts).expect("download");
    let before = server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let files = source::resolve(&hub(REPO), &offline).expect("offline from cache");
    assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), before, "offline made requests");
    assert!(files.weights[0].is_file());

    // Network down (nothing listens there): hf-hub falls back to the cached copy.
    let dead = options("http://127.0.0.1:9", cache.path());
    let files = source::resolve(&hub(REPO), &dead).expect("fallback to cache");
    assert!(files.config.is_file());
    drop(server);
}

#[test]
fn sentence_transformers_subfolders_come_along() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let files = source::resolve(&hub("test-org/st"), &options(&server.endpoint, cache.path())).unwrap();
    assert!(files.st_pooling.as_ref().is_some_and(|p| p.ends_with("1_Pooling/config.json") && p.is_file()));
    assert_eq!(predict_text(&files).len(), 32);
}

#[test]
fn missing_repos_revisions_and_network_errors_are_explained() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&server.endpoint, cache.path());
    let err = source::resolve(&hub("test-org/no-such-model"), &opts).unwrap_err();
    assert!(matches!(err, SourceError::RepoNotFound(_)), "{err}");
    assert!(err.to_string().contains("test-org/no-such-model"));

    let err = source::resolve(&hub("test-org/tiny-bert@v9"), &opts).unwrap_err();
    assert!(err.to_string().contains("v9"), "{err}");

    let dead = options("http://127.0.0.1:9", cache.path());
    let err = source::resolve(&hub(REPO), &dead).unwrap_err();
    assert!(matches!(err, SourceError::Network { .. }), "{err}");
}

#[test]
fn gated_repos_ask_for_a_token_and_work_with_one() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&server.endpoint, cache.path());
    let err = source::resolve(&hub("test-org/gated"), &opts).unwrap_err();
    assert!(matches!(err, SourceError::Unauthorized(_)), "{err}");
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    let with_token = ResolveOptions { token: Some("secret-token".into()), ..opts };
    let files = source::resolve(&hub("test-org/gated"), &with_token).expect("token works");
    assert!(files.preprocessor.is_some());
}

#[test]
fn a_dropped_connection_is_retried_and_a_persistent_one_fails_cleanly() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&server.endpoint, cache.path());
    server.behaviour.lock().unwrap().drop_body.insert("model.safetensors".into(), 1);
    let files = source::resolve(&hub(REPO), &opts).expect("retried");
    let want = std::fs::read(common::fixture_model("bert-cls-5").join("model.safetensors")).unwrap();
    assert_eq!(std::fs::read(&files.weights[0]).unwrap(), want, "the retried file is complete");

    let cache2 = tempfile::tempdir().unwrap();
    server.behaviour.lock().unwrap().drop_body.insert("model.safetensors".into(), 100);
    let err = source::resolve(&hub(REPO), &options(&server.endpoint, cache2.path())).unwrap_err();
    assert!(matches!(err, SourceError::Network { .. }), "{err}");
    let snapshot = cache2.path().join("models--test-org--tiny-bert/snapshots").join(COMMIT);
    assert!(!snapshot.join("model.safetensors").exists(), "no half file in the snapshot");
}

#[test]
fn a_download_can_be_cancelled() {
    let server = server();
    server.behaviour.lock().unwrap().slow.push("model.safetensors".into());
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(&server.endpoint, cache.path());
    let cancel = CancelToken::new();
    opts.cancel = cancel.clone();
    opts.progress = Some(Arc::new(move |u: &DownloadUpdate| {
        if u.file == "model.safetensors" && u.bytes_done > 0 {
            cancel.cancel();
        }
    }));
    let started = std::time::Instant::now();
    let err = source::resolve(&hub(REPO), &opts).unwrap_err();
    assert!(matches!(err, SourceError::Cancelled), "{err}");
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn the_download_command_fetches_into_the_cache() {
    let server = server();
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["download", REPO])
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HUB_CACHE", cache.path())
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("models--test-org--tiny-bert"), "{stdout}");
    assert!(cache
        .path()
        .join("models--test-org--tiny-bert/snapshots")
        .join(COMMIT)
        .join("model.safetensors")
        .is_file());

    // And predict reads it back offline by repo id.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["predict", "--model", REPO, "--text", "lovely", "--json"])
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["model"]["source"], REPO);
    assert_eq!(json["model"]["revision"], COMMIT);
}

/// A failed download is one clean line on stderr: no hf-hub tracing line before it, no colour
/// codes when stderr is not a terminal.
#[test]
fn a_failed_download_prints_one_clean_error_line() {
    let server = server();
    server.behaviour.lock().unwrap().drop_body.insert("model.safetensors".into(), 100);
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["download", REPO])
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HUB_CACHE", cache.path())
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("RUST_LOG")
        .env_remove("MODELDECK_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: network error while downloading `test-org/tiny-bert`"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI colour codes: {stderr:?}");

    // RUST_LOG still reaches the library's own lines.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["download", REPO])
        .env("HF_ENDPOINT", &server.endpoint)
        .env("HF_HUB_CACHE", tempfile::tempdir().unwrap().path())
        .env("RUST_LOG", "modeldeck=debug,hf_hub=debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() > 1 && stderr.contains("retrying"), "{stderr}");
}
