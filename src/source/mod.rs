//! Where model files come from: the Hugging Face Hub (through `hf-hub`, sharing Python's cache),
//! a folder or file on disk, or a demo model compiled into the binary ([`embedded`]). Everything resolves to
//! [`ModelFiles`]: local paths of the files a checkpoint is made of. Nothing here knows about
//! tensors or architectures.

mod disk;
pub mod embedded;
mod hub;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use disk::resolve_dir;
pub use hub::{download, hub_cache_dir};

/// Where a model comes from, as a user writes it: `org/name[@revision]`, a path, `demo:<name>`,
/// or a remote endpoint (`oip+http(s)://…`, `tei+http(s)://…`; see [`crate::remote`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    Hub {
        repo_id: String,
        revision: Option<String>,
    },
    Local {
        path: PathBuf,
    },
    Demo {
        name: String,
    },
    /// A served model, as written (validated by [`crate::remote::RemoteSpec::parse`]).
    Remote {
        url: String,
    },
}

impl ModelSource {
    /// Parses what a user typed. An existing path wins over a hub id, so `./models/x` and `x/y`
    /// folders on disk load from disk.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SourceError::InvalidSource("an empty model source".into()));
        }
        if let Some(name) = text.strip_prefix("demo:") {
            return Ok(Self::Demo { name: name.to_string() });
        }
        if crate::remote::RemoteSpec::is_remote(text) {
            crate::remote::RemoteSpec::parse(text).map_err(SourceError::InvalidSource)?;
            return Ok(Self::Remote { url: text.to_string() });
        }
        let path = Path::new(text);
        if path.exists() {
            return Ok(Self::Local { path: path.to_path_buf() });
        }
        let looks_like_path = text.starts_with('.')
            || text.starts_with('/')
            || text.starts_with('~')
            || text.contains('\\')
            || text.matches('/').count() != 1;
        if looks_like_path {
            return Err(SourceError::NotFound(path.to_path_buf()));
        }
        let (repo_id, revision) = match text.split_once('@') {
            Some((repo, rev)) if !rev.is_empty() => (repo.to_string(), Some(rev.to_string())),
            Some(_) => return Err(SourceError::InvalidSource(format!("`{text}` has an empty revision after `@`"))),
            None => (text.to_string(), None),
        };
        let valid = repo_id
            .split('/')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
        if !valid {
            return Err(SourceError::InvalidSource(format!(
                "`{text}` is neither an existing path nor a Hub repo id like `org/name[@revision]`"
            )));
        }
        Ok(Self::Hub { repo_id, revision })
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub { repo_id, revision: Some(rev) } => write!(f, "{repo_id}@{rev}"),
            Self::Hub { repo_id, revision: None } => write!(f, "{repo_id}"),
            Self::Local { path } => write!(f, "{}", path.display()),
            Self::Demo { name } => write!(f, "demo:{name}"),
            Self::Remote { url } => write!(f, "{url}"),
        }
    }
}

/// The on-disk format of a checkpoint's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsFormat {
    Safetensors,
    /// PyTorch pickle (`.bin`, `.pth`, `.pt`), read without executing anything.
    PyTorch,
}

/// Local paths of everything a checkpoint is made of.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The folder the files live in (a hub snapshot folder for hub models).
    pub root: PathBuf,
    pub source: ModelSource,
    /// The commit a hub download resolved to, if known.
    pub revision: Option<String>,
    pub config: PathBuf,
    /// One file, or the shards of a sharded checkpoint.
    pub weights: Vec<PathBuf>,
    pub weights_format: WeightsFormat,
    pub tokenizer: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    /// A SentencePiece model (`spiece.model`), looked for only when there is no tokenizer.json.
    pub sentencepiece: Option<PathBuf>,
    pub preprocessor: Option<PathBuf>,
    /// sentence-transformers files: modules.json, the pooling config and sentence_bert_config.json.
    pub st_modules: Option<PathBuf>,
    pub st_pooling: Option<PathBuf>,
    pub st_config: Option<PathBuf>,
}

impl ModelFiles {
    /// Bytes on disk of every file the model is made of (symlinks followed).
    pub fn size_bytes(&self) -> u64 {
        let optional = [
            &self.tokenizer,
            &self.tokenizer_config,
            &self.sentencepiece,
            &self.preprocessor,
            &self.st_modules,
            &self.st_pooling,
            &self.st_config,
        ];
        std::iter::once(&self.config)
            .chain(self.weights.iter())
            .chain(optional.into_iter().flatten())
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// Progress of a download, reported per file.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadUpdate {
    pub file: String,
    /// 1-based index of the file among those being fetched, and their count.
    pub file_index: usize,
    pub file_count: usize,
    pub bytes_done: u64,
    /// Zero when the server did not say.
    pub bytes_total: u64,
}

pub type ProgressFn = Arc<dyn Fn(&DownloadUpdate) + Send + Sync>;

/// A flag shared between whoever starts long work and whoever may cancel it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How to resolve a source.
#[derive(Clone, Default)]
pub struct ResolveOptions {
    pub progress: Option<ProgressFn>,
    pub cancel: CancelToken,
    /// Never touch the network; also on when `HF_HUB_OFFLINE=1`.
    pub offline: bool,
    /// Overrides the Hub endpoint (otherwise `HF_ENDPOINT` or huggingface.co).
    pub endpoint: Option<String>,
    /// Overrides the cache folder (otherwise `HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Overrides the token (otherwise `HF_TOKEN`, `HF_TOKEN_PATH` or `HF_HOME/token`).
    pub token: Option<String>,
    /// What `model::load_source` builds the linear and convolution layers in.
    pub precision: crate::model::Precision,
}

impl ResolveOptions {
    pub fn is_offline(&self) -> bool {
        self.offline || env_flag("HF_HUB_OFFLINE")
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Resolves any source to local files, downloading from the Hub when needed.
pub fn resolve(source: &ModelSource, options: &ResolveOptions) -> Result<ModelFiles, SourceError> {
    match source {
        ModelSource::Local { path } => disk::resolve_path(path, source.clone()),
        ModelSource::Demo { name } => {
            let Some(demo) = embedded::demo(name) else {
                return Err(SourceError::UnknownDemo { name: name.clone(), known: list_demo_models().join(", ") });
            };
            disk::resolve_dir(&embedded::materialize(demo)?, source.clone())
        }
        ModelSource::Hub { repo_id, revision } => hub::resolve(repo_id, revision.as_deref(), options),
        ModelSource::Remote { url } => Err(SourceError::RemoteHasNoFiles(url.clone())),
    }
}

/// Names of the demo models compiled into the binary.
pub fn list_demo_models() -> Vec<String> {
    embedded::DEMOS.iter().map(|d| d.name.to_string()).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid model source: {0}")]
    InvalidSource(String),
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("unknown demo model `{name}` (available: {known})")]
    UnknownDemo { name: String, known: String },
    #[error("{} has no config.json: a model folder needs config.json plus weights (model.safetensors or pytorch_model.bin)", .0.display())]
    MissingConfig(PathBuf),
    #[error("{} has no weights: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or a single .safetensors/.bin/.pth file", .0.display())]
    MissingWeights(PathBuf),
    #[error("{path}: {reason}")]
    InvalidShardIndex { path: PathBuf, reason: String },
    #[error("Hub repository `{0}` was not found (check the spelling; private or gated repos need HF_TOKEN)")]
    RepoNotFound(String),
    #[error("Hub repository `{repo_id}` has no config.json at revision `{revision}`: check the repo id and revision (a private repo looks missing without HF_TOKEN)")]
    NoConfig { repo_id: String, revision: String },
    #[error("revision `{revision}` was not found in Hub repository `{repo_id}`")]
    RevisionNotFound { repo_id: String, revision: String },
    #[error("Hub repository `{repo_id}` has no `{file}`")]
    FileNotFound { repo_id: String, file: String },
    #[error("Hub repository `{0}` is gated or private: accept its terms on the Hub and set HF_TOKEN (or run `huggingface-cli login`)")]
    Unauthorized(String),
    #[error("offline and `{repo_id}` is not in the Hugging Face cache at {} (unset HF_HUB_OFFLINE and connect once to download it)", cache.display())]
    NotCached { repo_id: String, cache: PathBuf },
    #[error("network error while downloading `{repo_id}` and no cached copy: {detail}")]
    Network { repo_id: String, detail: String },
    #[error("{0} is served remotely: it has no local files to read, train or download (load it with `--model` to predict, compare or monitor it)")]
    RemoteHasNoFiles(String),
    #[error("download cancelled")]
    Cancelled,
    #[error("Hub error for `{repo_id}`: {detail}")]
    Hub { repo_id: String, detail: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_ids_paths_and_demos() {
        assert_eq!(
            ModelSource::parse("google/vit-base-patch16-224").unwrap(),
            ModelSource::Hub { repo_id: "google/vit-base-patch16-224".into(), revision: None }
        );
        assert_eq!(
            ModelSource::parse("org/name@v1.0").unwrap(),
            ModelSource::Hub { repo_id: "org/name".into(), revision: Some("v1.0".into()) }
        );
        assert_eq!(ModelSource::parse("demo:digits-v1").unwrap(), ModelSource::Demo { name: "digits-v1".into() });
        assert!(matches!(ModelSource::parse("src").unwrap(), ModelSource::Local { .. }));
        assert!(matches!(ModelSource::parse("./no/such/dir"), Err(SourceError::NotFound(_))));
        assert!(matches!(ModelSource::parse("org/na me"), Err(SourceError::InvalidSource(_))));
        assert!(matches!(ModelSource::parse("org/name@"), Err(SourceError::InvalidSource(_))));
        assert!(matches!(ModelSource::parse("  "), Err(SourceError::InvalidSource(_))));
        assert_eq!(ModelSource::parse("a/b@c").unwrap().to_string(), "a/b@c");
        let remote = "oip+http://127.0.0.1:8080/digits@v1?labels=a,b";
        assert_eq!(ModelSource::parse(remote).unwrap(), ModelSource::Remote { url: remote.into() });
        assert_eq!(ModelSource::parse(remote).unwrap().to_string(), remote);
        assert!(matches!(ModelSource::parse("tei+http://h:1?bogus=1"), Err(SourceError::InvalidSource(_))));
    }
}
