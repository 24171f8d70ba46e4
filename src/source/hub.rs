//! The Hugging Face Hub through `hf-hub`: the same cache layout and folder as Python's
//! `huggingface_hub` (HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub), HF_TOKEN and the token
//! file, HF_ENDPOINT, HF_HUB_OFFLINE, and a fallback to the cache when the network fails
//! (hf-hub does that for transient errors and retries them with backoff).
//!
//! The async client runs on a private current-thread runtime so that a download can be cancelled
//! by dropping its future; callers stay synchronous.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::progress::{DownloadEvent, ProgressEvent, ProgressHandler};
use hf_hub::{HFClient, HFError};

use super::{disk, DownloadUpdate, ModelFiles, ModelSource, ProgressFn, ResolveOptions, SourceError, WeightsFormat};

/// Extra attempts after a download breaks off mid-transfer.
const NETWORK_RETRIES: u32 = 2;

/// Optional files, fetched when the repo has them.
const OPTIONAL_FILES: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "modules.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
];

/// The cache folder hub downloads go to and are looked up in.
pub fn hub_cache_dir(options: &ResolveOptions) -> PathBuf {
    match &options.cache_dir {
        Some(dir) => dir.clone(),
        None => hf_hub::resolve_cache_dir(),
    }
}

/// Fetches (or finds in the cache) every file a model needs; same as [`super::resolve`] for a hub source.
pub fn download(repo_id: &str, revision: Option<&str>, options: &ResolveOptions) -> Result<ModelFiles, SourceError> {
    resolve(repo_id, revision, options)
}

pub(super) fn resolve(
    repo_id: &str,
    revision: Option<&str>,
    options: &ResolveOptions,
) -> Result<ModelFiles, SourceError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| SourceError::Hub {
        repo_id: repo_id.into(),
        detail: format!("cannot start the network runtime: {e}"),
    })?;
    runtime.block_on(resolve_async(repo_id, revision, options))
}

struct Fetcher<'a> {
    repo: hf_hub::repository::HFRepository<hf_hub::repository::RepoTypeModel>,
    repo_id: &'a str,
    revision: Option<&'a str>,
    options: &'a ResolveOptions,
    offline: bool,
    cache: PathBuf,
    fetched: usize,
    expected: usize,
    /// Set when the network failed and the remaining files come from the cache.
    network_error: Option<String>,
}

impl Fetcher<'_> {
    /// Downloads one file; `Ok(None)` when the repo does not have it.
    async fn fetch(&mut self, file: &str) -> Result<Option<PathBuf>, SourceError> {
        if self.options.cancel.is_cancelled() {
            return Err(SourceError::Cancelled);
        }
        self.fetched += 1;
        self.expected = self.expected.max(self.fetched);
        let handler = self.options.progress.clone().map(|callback| {
            hf_hub::progress::Progress::new(FileProgress {
                callback,
                file: file.to_string(),
                file_index: self.fetched,
                file_count: self.expected,
            })
        });
        let mut attempt = 0;
        let result = loop {
            let request = self
                .repo
                .download_file()
                .filename(file)
                .maybe_revision(self.revision.map(str::to_string))
                .local_files_only(self.offline)
                .maybe_progress(handler.clone())
                .send();
            let cancel = self.options.cancel.clone();
            let cancelled = async move {
                while !cancel.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            let result = tokio::select! {
                result = request => result,
                _ = cancelled => return Err(SourceError::Cancelled),
            };
            // hf-hub retries failed requests but not a connection dropped mid-body.
            match result {
                Err(HFError::Request { ref source, .. }) if !source.is_connect() && attempt < NETWORK_RETRIES => {
                    attempt += 1;
                    tracing::info!(file, attempt, "download interrupted; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                }
                other => break other,
            }
        };
        match result {
            Ok(path) => Ok(Some(path)),
            Err(HFError::EntryNotFound { .. }) => Ok(None),
            Err(HFError::LocalEntryNotFound { .. }) if self.offline && file != "config.json" => Ok(None),
            Err(error) if is_network_failure(&error) && !self.offline => {
                // The network is down: this file and the rest come from the cache, if there.
                let detail = match &error {
                    HFError::Request { source, .. } => describe_request_error(source),
                    other => other.to_string(),
                };
                self.network_error = Some(detail.clone());
                self.offline = true;
                self.fetched -= 1;
                let cached = Box::pin(self.fetch(file)).await;
                // Said only when the cache really serves it; otherwise the error says it all.
                if let Ok(Some(_)) = &cached {
                    tracing::warn!(repo = self.repo_id, %detail, "network failed; using the cache");
                }
                cached
            }
            Err(e) => Err(self.explain(e, file)),
        }
    }

    async fn require(&mut self, file: &str) -> Result<PathBuf, SourceError> {
        match self.fetch(file).await? {
            Some(path) => Ok(path),
            None if file == "config.json" => Err(SourceError::NoConfig {
                repo_id: self.repo_id.into(),
                revision: self.revision.unwrap_or("main").to_string(),
            }),
            None => Err(SourceError::FileNotFound { repo_id: self.repo_id.into(), file: file.into() }),
        }
    }

    fn explain(&self, error: HFError, file: &str) -> SourceError {
        let repo_id = self.repo_id.to_string();
        match error {
            HFError::RepoNotFound { .. } => SourceError::RepoNotFound(repo_id),
            HFError::AuthRequired { context } if context.error_code.as_deref() == Some("RepoNotFound") => {
                SourceError::RepoNotFound(repo_id)
            }
            HFError::EntryNotFound { .. } if file == "config.json" => {
                SourceError::NoConfig { repo_id, revision: self.revision.unwrap_or("main").to_string() }
            }
            HFError::RevisionNotFound { revision, .. } => SourceError::RevisionNotFound { repo_id, revision },
            HFError::EntryNotFound { .. } => SourceError::FileNotFound { repo_id, file: file.into() },
            HFError::AuthRequired { .. } | HFError::Forbidden { .. } => SourceError::Unauthorized(repo_id),
            HFError::LocalEntryNotFound { .. } if self.network_error.is_some() => {
                SourceError::Network { repo_id, detail: self.network_error.clone().unwrap_or_default() }
            }
            HFError::LocalEntryNotFound { .. } if self.offline => {
                SourceError::NotCached { repo_id, cache: self.cache.clone() }
            }
            HFError::LocalEntryNotFound { .. } => {
                SourceError::Network { repo_id, detail: format!("`{file}` could not be fetched") }
            }
            HFError::Request { source, .. } => {
                SourceError::Network { repo_id, detail: describe_request_error(&source) }
            }
            HFError::Http { context } if context.status.is_server_error() => {
                SourceError::Network { repo_id, detail: format!("the Hub answered {} for `{file}`", context.status) }
            }
            other => SourceError::Hub { repo_id, detail: other.to_string() },
        }
    }
}

fn is_network_failure(error: &HFError) -> bool {
    match error {
        HFError::Request { .. } => true,
        HFError::Http { context } => context.status.is_server_error(),
        _ => false,
    }
}

fn describe_request_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn resolve_async(
    repo_id: &str,
    revision: Option<&str>,
    options: &ResolveOptions,
) -> Result<ModelFiles, SourceError> {
    let (owner, name) = repo_id
        .split_once('/')
        .ok_or_else(|| SourceError::InvalidSource(format!("`{repo_id}` is not of the form org/name")))?;
    let cache = hub_cache_dir(options);
    let mut builder = HFClient::builder().cache_dir(cache.clone());
    if let Some(endpoint) = &options.endpoint {
        builder = builder.endpoint(endpoint.clone());
    }
    if let Some(token) = &options.token {
        builder = builder.token(token.clone());
    }
    let client = builder.build().map_err(|e| SourceError::Hub { repo_id: repo_id.into(), detail: e.to_string() })?;
    let mut fetcher = Fetcher {
        repo: client.model(owner, name),
        repo_id,
        revision,
        options,
        offline: options.is_offline(),
        cache,
        fetched: 0,
        expected: 2 + OPTIONAL_FILES.len(),
        network_error: None,
    };

    let config = fetcher.require("config.json").await?;
    let mut optional = Vec::new();
    for file in OPTIONAL_FILES {
        optional.push(fetcher.fetch(file).await?);
    }
    let [tokenizer, tokenizer_config, preprocessor, st_modules, st_config, _special] =
        <[Option<PathBuf>; 6]>::try_from(optional)
            .map_err(|_| SourceError::Hub { repo_id: repo_id.into(), detail: "internal: optional file list".into() })?;
    let st_pooling = match &st_modules {
        Some(modules) => {
            let dir = disk::pooling_dir_from_modules(modules).unwrap_or_else(|| "1_Pooling".into());
            fetcher.fetch(&format!("{dir}/config.json")).await?
        }
        None => None,
    };
    // SigLIP v1 and other SentencePiece-only repos: their tokenizer is this file.
    let sentencepiece = if tokenizer.is_none() { fetcher.fetch("spiece.model").await? } else { None };
    let (weights, weights_format) = fetch_weights(&mut fetcher).await?;
    let root = config.parent().map(Path::to_path_buf).unwrap_or_default();
    let commit = root.file_name().and_then(|n| n.to_str()).map(str::to_string);
    Ok(ModelFiles {
        root,
        source: ModelSource::Hub { repo_id: repo_id.into(), revision: revision.map(str::to_string) },
        revision: commit,
        config,
        weights,
        weights_format,
        tokenizer,
        tokenizer_config,
        sentencepiece,
        preprocessor,
        st_modules,
        st_pooling,
        st_config,
    })
}

/// Safetensors first (single file, then sharded), then PyTorch pickles.
async fn fetch_weights(fetcher: &mut Fetcher<'_>) -> Result<(Vec<PathBuf>, WeightsFormat), SourceError> {
    for (name, format) in
        [("model.safetensors", WeightsFormat::Safetensors), ("pytorch_model.bin", WeightsFormat::PyTorch)]
    {
        if let Some(path) = fetcher.fetch(name).await? {
            return Ok((vec![path], format));
        }
        if let Some(index) = fetcher.fetch(&format!("{name}.index.json")).await? {
            let shards = disk::shard_names(&index)?;
            fetcher.expected += shards.len();
            let mut paths = Vec::with_capacity(shards.len());
            for shard in &shards {
                paths.push(fetcher.require(shard).await?);
            }
            return Ok((paths, format));
        }
    }
    let repo_id = fetcher.repo_id.to_string();
    Err(match (&fetcher.network_error, fetcher.offline) {
        (Some(detail), _) => SourceError::Network { repo_id, detail: detail.clone() },
        (None, true) => SourceError::NotCached { repo_id, cache: fetcher.cache.clone() },
        (None, false) => SourceError::FileNotFound {
            repo_id,
            file: "model.safetensors (or pytorch_model.bin, or a sharded index)".into(),
        },
    })
}

/// Turns hf-hub's progress events for one file into [`DownloadUpdate`]s.
struct FileProgress {
    callback: ProgressFn,
    file: String,
    file_index: usize,
    file_count: usize,
}

impl FileProgress {
    fn report(&self, bytes_done: u64, bytes_total: u64) {
        (self.callback)(&DownloadUpdate {
            file: self.file.clone(),
            file_index: self.file_index,
            file_count: self.file_count,
            bytes_done,
            bytes_total,
        });
    }
}

impl ProgressHandler for FileProgress {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else { return };
        match event {
            DownloadEvent::Start { total_bytes, .. } => self.report(0, *total_bytes),
            DownloadEvent::Progress { files } => {
                for f in files {
                    self.report(f.bytes_completed, f.total_bytes);
                }
            }
            DownloadEvent::AggregateProgress { bytes_completed, total_bytes, .. } => {
                self.report(*bytes_completed, *total_bytes)
            }
            DownloadEvent::Complete => {}
        }
    }
}
