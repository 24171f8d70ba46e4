//! Local checkpoints: a folder in Hugging Face layout, or a single weights/config file inside one.

use std::path::{Path, PathBuf};

use super::{ModelFiles, ModelSource, SourceError, WeightsFormat};

/// Resolves a path a user gave: a model folder, or a file inside one (config.json or weights).
pub(super) fn resolve_path(path: &Path, source: ModelSource) -> Result<ModelFiles, SourceError> {
    if !path.exists() {
        return Err(SourceError::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        return resolve_dir(path, source);
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut files = resolve_dir_with(dir, source, Some(path))?;
    if let Some(format) = weights_format_of(path) {
        files.weights = vec![path.to_path_buf()];
        files.weights_format = format;
    }
    Ok(files)
}

/// Resolves a model folder.
pub fn resolve_dir(dir: &Path, source: ModelSource) -> Result<ModelFiles, SourceError> {
    resolve_dir_with(dir, source, None)
}

fn resolve_dir_with(dir: &Path, source: ModelSource, chosen: Option<&Path>) -> Result<ModelFiles, SourceError> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(SourceError::MissingConfig(dir.to_path_buf()));
    }
    let (weights, weights_format) = match chosen.filter(|p| weights_format_of(p).is_some()) {
        Some(p) => (vec![p.to_path_buf()], weights_format_of(p).unwrap_or(WeightsFormat::Safetensors)),
        None => find_weights(dir)?,
    };
    let existing = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    let st_modules = existing("modules.json");
    let st_pooling = st_modules
        .as_deref()
        .and_then(pooling_dir_from_modules)
        .map(|sub| dir.join(sub).join("config.json"))
        .or_else(|| Some(dir.join("1_Pooling/config.json")))
        .filter(|p| p.is_file());
    let tokenizer = existing("tokenizer.json");
    Ok(ModelFiles {
        sentencepiece: if tokenizer.is_none() { existing("spiece.model") } else { None },
        root: dir.to_path_buf(),
        source,
        revision: None,
        config,
        weights,
        weights_format,
        tokenizer,
        tokenizer_config: existing("tokenizer_config.json"),
        preprocessor: existing("preprocessor_config.json"),
        st_modules,
        st_pooling,
        st_config: existing("sentence_bert_config.json"),
    })
}

fn weights_format_of(path: &Path) -> Option<WeightsFormat> {
    match path.extension()?.to_str()? {
        "safetensors" => Some(WeightsFormat::Safetensors),
        "bin" | "pth" | "pt" => Some(WeightsFormat::PyTorch),
        _ => None,
    }
}

/// Safetensors first, then PyTorch pickles; sharded checkpoints through their index.
fn find_weights(dir: &Path) -> Result<(Vec<PathBuf>, WeightsFormat), SourceError> {
    for (name, format) in
        [("model.safetensors", WeightsFormat::Safetensors), ("pytorch_model.bin", WeightsFormat::PyTorch)]
    {
        let single = dir.join(name);
        if single.is_file() {
            return Ok((vec![single], format));
        }
        let index = dir.join(format!("{name}.index.json"));
        if index.is_file() {
            return Ok((shards_from_index(&index)?, format));
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| SourceError::Io { path: dir.to_path_buf(), source })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && weights_format_of(p).is_some())
        .collect();
    candidates.sort_by_key(|p| (weights_format_of(p) != Some(WeightsFormat::Safetensors), p.clone()));
    match candidates.first() {
        Some(p) => Ok((vec![p.clone()], weights_format_of(p).unwrap_or(WeightsFormat::Safetensors))),
        None => Err(SourceError::MissingWeights(dir.to_path_buf())),
    }
}

/// Reads `*.index.json` (`{"weight_map": {tensor: shard_file}}`) into the list of shard paths.
pub(super) fn shard_names(index: &Path) -> Result<Vec<String>, SourceError> {
    let invalid = |reason: String| SourceError::InvalidShardIndex { path: index.to_path_buf(), reason };
    let text =
        std::fs::read_to_string(index).map_err(|source| SourceError::Io { path: index.to_path_buf(), source })?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let map =
        json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| invalid("no `weight_map` object".into()))?;
    let mut names: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(invalid("`weight_map` lists no shard files".into()));
    }
    if let Some(bad) = names.iter().find(|n| n.contains("..") || Path::new(n).is_absolute()) {
        return Err(invalid(format!("shard name `{bad}` points outside the model folder")));
    }
    Ok(names)
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let dir = index.parent().unwrap_or(Path::new("."));
    let paths: Vec<PathBuf> = shard_names(index)?.iter().map(|n| dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(SourceError::InvalidShardIndex {
            path: index.to_path_buf(),
            reason: format!("shard {} is missing", missing.display()),
        });
    }
    Ok(paths)
}

/// The folder of the Pooling module named in a sentence-transformers `modules.json`.
pub(super) fn pooling_dir_from_modules(modules: &Path) -> Option<String> {
    let text = std::fs::read_to_string(modules).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.as_array()?.iter().find_map(|m| {
        let kind = m.get("type")?.as_str()?;
        if kind.ends_with("Pooling") {
            m.get("path")?.as_str().map(str::to_string)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path) -> ModelSource {
        ModelSource::Local { path: dir.to_path_buf() }
    }

    #[test]
    fn prefers_safetensors_and_reads_shards() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert!(matches!(resolve_dir(dir, source(dir)), Err(SourceError::MissingWeights(_))));
        std::fs::write(dir.join("pytorch_model.bin"), b"x").unwrap();
        let files = resolve_dir(dir, source(dir)).unwrap();
        assert_eq!(files.weights_format, WeightsFormat::PyTorch);
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        // The pickle still wins over a broken sharded index? No: safetensors is tried first.
        let err = resolve_dir(dir, source(dir)).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::write(dir.join("model-00001-of-00002.safetensors"), b"x").unwrap();
        std::fs::write(dir.join("model-00002-of-00002.safetensors"), b"x").unwrap();
        let files = resolve_dir(dir, source(dir)).unwrap();
        assert_eq!(files.weights.len(), 2);
        assert_eq!(files.weights_format, WeightsFormat::Safetensors);
    }

    #[test]
    fn missing_config_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let err = resolve_dir(tmp.path(), source(tmp.path())).unwrap_err();
        assert!(err.to_string().contains("no config.json"), "{err}");
    }

    #[test]
    fn a_weights_file_selects_itself() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), b"x").unwrap();
        std::fs::write(dir.join("other.pth"), b"x").unwrap();
        let files = resolve_path(&dir.join("other.pth"), source(dir)).unwrap();
        assert_eq!(files.weights, vec![dir.join("other.pth")]);
        assert_eq!(files.weights_format, WeightsFormat::PyTorch);
    }
}
