//! What the app needs at first start, compiled into the binary so that an installed `modeldeck`
//! run from any folder has its demo: the demo models (`models/` in the repository is their
//! source, ~60 kB each), the Playground's gallery and the benchmark's sample photo.
//!
//! Demo models are written once to a cache folder named after their content hash (a changed
//! model gets a new folder, so a stale copy is never served) and then load like any folder.

use std::path::{Path, PathBuf};

use super::SourceError;

/// A file compiled into the binary.
pub struct EmbeddedFile {
    pub name: &'static str,
    pub bytes: &'static [u8],
}

/// A demo model: its name (`demo:NAME`) and its folder's files.
pub struct EmbeddedDemo {
    pub name: &'static str,
    pub files: &'static [EmbeddedFile],
}

macro_rules! embed {
    ($name:expr, $path:expr) => {
        EmbeddedFile { name: $name, bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)) }
    };
}

macro_rules! demo {
    ($name:literal) => {
        EmbeddedDemo {
            name: $name,
            files: &[
                embed!("config.json", concat!("models/", $name, "/config.json")),
                embed!("model.safetensors", concat!("models/", $name, "/model.safetensors")),
                embed!("preprocessor_config.json", concat!("models/", $name, "/preprocessor_config.json")),
            ],
        }
    };
}

macro_rules! embed_abs {
    ($name:expr, $path:expr) => {
        EmbeddedFile { name: $name, bytes: include_bytes!($path) }
    };
}

/// The demo replay data set: the 540 test digits (assets/digits/test, `<digit>/<file>.png`),
/// listed by build.rs. About 100 kB.
pub const DIGITS_TEST: EmbeddedDemo =
    EmbeddedDemo { name: "digits-test", files: include!(concat!(env!("OUT_DIR"), "/digits_test.rs")) };

/// digits-shuffled is the deliberately bad one (near chance), for a canary to roll back.
pub const DEMOS: &[EmbeddedDemo] = &[demo!("digits-v1"), demo!("digits-v2"), demo!("digits-shuffled")];

/// The Playground's gallery: two CC0 photos (assets/samples/LICENSES.md) and one test image of
/// each digit (the first file of each class folder of assets/digits/test).
pub const GALLERY: &[EmbeddedFile] = &[
    embed!("sample chelsea", "assets/samples/chelsea.png"),
    embed!("sample coffee", "assets/samples/coffee.png"),
    embed!("digit 0", "assets/digits/test/0/0010.png"),
    embed!("digit 1", "assets/digits/test/1/0021.png"),
    embed!("digit 2", "assets/digits/test/2/0050.png"),
    embed!("digit 3", "assets/digits/test/3/0045.png"),
    embed!("digit 4", "assets/digits/test/4/0024.png"),
    embed!("digit 5", "assets/digits/test/5/0025.png"),
    embed!("digit 6", "assets/digits/test/6/0034.png"),
    embed!("digit 7", "assets/digits/test/7/0081.png"),
    embed!("digit 8", "assets/digits/test/8/0028.png"),
    embed!("digit 9", "assets/digits/test/9/0037.png"),
];

/// The photo `modeldeck bench` feeds image models unless `--image` is given.
pub const BENCH_IMAGE: EmbeddedFile = embed!("chelsea.png", "assets/samples/chelsea.png");

pub fn demo(name: &str) -> Option<&'static EmbeddedDemo> {
    DEMOS.iter().find(|d| d.name == name)
}

/// Where ModelDeck keeps files it can recreate: `MODELDECK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/modeldeck`, else `~/.cache/modeldeck`, else the temporary folder.
pub fn cache_dir() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    from_env("MODELDECK_CACHE_DIR")
        .or_else(|| from_env("XDG_CACHE_HOME").map(|d| d.join("modeldeck")))
        .or_else(|| from_env("HOME").map(|d| d.join(".cache/modeldeck")))
        .unwrap_or_else(|| std::env::temp_dir().join("modeldeck"))
}

/// FNV-1a over every file's name and bytes: a content address for the cache folder.
fn content_hash(demo: &EmbeddedDemo) -> u64 {
    demo.files.iter().fold(crate::store::FNV1A_OFFSET, |hash, file| {
        crate::store::fnv1a_extend(crate::store::fnv1a_extend(hash, file.name.as_bytes()), file.bytes)
    })
}

/// The demo's folder in the cache, written on first use.
pub fn materialize(demo: &EmbeddedDemo) -> Result<PathBuf, SourceError> {
    materialize_in(demo, &cache_dir())
}

fn materialize_in(demo: &EmbeddedDemo, cache: &Path) -> Result<PathBuf, SourceError> {
    let dir = cache.join("demos").join(format!("{}-{:016x}", demo.name, content_hash(demo)));
    if is_complete(demo, &dir) {
        return Ok(dir);
    }
    if dir.exists() {
        // Damaged (a file cut short or deleted): rebuild it.
        let _ = std::fs::remove_dir_all(&dir);
    }
    // Write into a private folder, then rename: a reader never sees half a model, and two
    // processes starting at once both end up with a complete folder.
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Io { path, source }
    };
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    for file in demo.files {
        let path = staging.join(file.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, file.bytes).map_err(io(&path))?;
    }
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if is_complete(demo, &dir) => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(SourceError::Io { path: dir, source: e })
        }
    }
}

fn is_complete(demo: &EmbeddedDemo, dir: &Path) -> bool {
    demo.files.iter().all(|f| std::fs::metadata(dir.join(f.name)).is_ok_and(|m| m.len() == f.bytes.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_demos_match_their_sources_in_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for demo in DEMOS {
            for file in demo.files {
                let on_disk = std::fs::read(root.join("models").join(demo.name).join(file.name)).unwrap();
                assert!(on_disk == file.bytes, "{}/{} differs from models/", demo.name, file.name);
            }
        }
    }

    #[test]
    fn the_demo_replay_data_set_is_the_digits_test_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits/test");
        assert_eq!(DIGITS_TEST.files.len(), 540);
        for file in DIGITS_TEST.files {
            assert!(std::fs::read(root.join(file.name)).unwrap() == file.bytes, "{}", file.name);
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize_in(&DIGITS_TEST, tmp.path()).unwrap();
        let data = crate::eval::Dataset::load(&dir).unwrap();
        assert_eq!(data.examples.len(), 540);
        assert_eq!(data.labels().len(), 10);
    }

    #[test]
    fn materialising_twice_reuses_the_folder_and_repairs_a_truncated_one() {
        let demo = &DEMOS[0];
        let tmp = tempfile::tempdir().unwrap();
        let dir = materialize_in(demo, tmp.path()).unwrap();
        assert!(dir.starts_with(tmp.path()));
        assert_eq!(materialize_in(demo, tmp.path()).unwrap(), dir);
        std::fs::write(dir.join("model.safetensors"), b"trunc").unwrap();
        let again = materialize_in(demo, tmp.path()).unwrap();
        assert_eq!(again, dir);
        assert_eq!(std::fs::read(again.join("model.safetensors")).unwrap(), demo.files[1].bytes);
    }
}
