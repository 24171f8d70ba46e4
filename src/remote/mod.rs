//! Remote models: a model served elsewhere, loaded into a slot like a local one ("edge vs
//! cloud"). Two protocols:
//! - `oip+http(s)://HOST:PORT/MODEL[@VERSION]`: the Open Inference Protocol v2 REST API (KServe,
//!   Triton, Seldon MLServer, `modeldeck serve`). The model's metadata decides what is sent: text
//!   or encoded images as BYTES, or image tensors preprocessed here by a `preprocessor_config.json`
//!   the user names (`?preprocessor=FILE` or `?card=DIR`).
//! - `tei+http(s)://HOST:PORT`: Hugging Face text-embeddings-inference (`/info`, `/embed`,
//!   `/predict`).
//!
//! A remote model is a [`crate::model::Network`] whose `prepare` does the local part (texts kept
//! as they are, images encoded or preprocessed) and whose `forward` is the HTTP call, so the
//! Playground, slots, replay, deploy strategies, batch and eval use it unchanged. Options go in the
//! query string ([`spec`]). Nothing here blocks a UI thread: the engine loads and predicts on its
//! own threads, and every call has a timeout.

mod http;
mod oip;
pub mod spec;
mod tei;

use std::sync::Arc;
use std::time::Instant;

pub use spec::{BytesKind, OutputKind, Protocol, RemoteOptions, RemoteSpec};

use crate::model::{LoadedModel, ModelCard, ModelConfig, ModelError, Task};

/// What the model card shows about an endpoint. The token's value never appears here, only the
/// variable it is read from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EndpointCard {
    pub endpoint: String,
    pub protocol: String,
    /// The server's name and version from its metadata ("mlserver 1.7.1").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// What is sent and what is read back, as the metadata declares them.
    pub input: String,
    pub output: String,
    /// The median round trip of three health checks at load time.
    pub rtt_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    pub timeout_s: f64,
    pub concurrency: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url} refused the connection: is the server running and listening there?")]
    Refused { url: String },
    #[error("{url} did not answer within {seconds} s (the timeout; change it with ?timeout=SECONDS)")]
    Timeout { url: String, seconds: f64 },
    #[error("{url}: the connection closed before a complete answer ({detail})")]
    Dropped { url: String, detail: String },
    #[error("{url}: network error: {detail}")]
    Network { url: String, detail: String },
    #[error("{url} answered HTTP {status}: {message}")]
    Http { url: String, status: u16, message: String },
    #[error("{url} refused access (HTTP {status}: {message}); {}", if *has_token { "check the token in the variable named by ?token_env" } else { "it needs a bearer token: set it in an environment variable and add ?token_env=VAR to the source" })]
    Unauthorized { url: String, status: u16, message: String, has_token: bool },
    #[error("{url} answered HTTP {status} with a body that is not JSON: {snippet}")]
    NotJson { url: String, status: u16, snippet: String },
    #[error("{url}: the answer does not fit the model: {reason}")]
    Protocol { url: String, reason: String },
    #[error("the token variable `{0}` (named by ?token_env) is not set or empty")]
    MissingToken(String),
    #[error("{endpoint}: {reason}")]
    Setup { endpoint: String, reason: String },
}

/// Connects to a remote model and reads what it takes and answers.
pub fn load(spec: &RemoteSpec) -> Result<LoadedModel, ModelError> {
    let started = Instant::now();
    let endpoint = Arc::new(http::Endpoint::new(spec)?);
    let (network, card): (Box<dyn crate::model::Network>, RemoteCard) = match spec.protocol {
        Protocol::Oip => {
            let (n, c) = oip::OipNetwork::connect(spec, endpoint)?;
            (Box::new(n), c)
        }
        Protocol::Tei => {
            let (n, c) = tei::TeiNetwork::connect(spec, endpoint)?;
            (Box::new(n), c)
        }
    };
    let card = ModelCard {
        name: card.name,
        source: spec.to_string(),
        revision: card.version,
        architecture: card.architecture,
        task: card.task,
        labels: card.labels,
        parameters: 0,
        dtype: card.dtype,
        precision: crate::model::Precision::F32,
        quantization: "decided by the server".into(),
        kernel: "the server's".into(),
        size_bytes: 0,
        memory_bytes: 0,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        endpoint: Some(Box::new(card.endpoint)),
    };
    Ok(LoadedModel::from_parts(card, network))
}

/// What a protocol's `connect` learns, for the model card.
pub(crate) struct RemoteCard {
    pub name: String,
    pub version: Option<String>,
    pub architecture: String,
    pub task: Task,
    pub labels: Vec<String>,
    pub dtype: String,
    pub endpoint: EndpointCard,
}

/// The median round trip of three calls to a health path (a missing one, 404, counts as up).
pub(crate) fn measure_rtt(endpoint: &http::Endpoint, path: &str) -> Result<f64, RemoteError> {
    let mut times = Vec::with_capacity(3);
    for _ in 0..3 {
        let started = Instant::now();
        match endpoint.call(reqwest::Method::GET, path, None, http::Retry::Idempotent) {
            Ok(_) | Err(RemoteError::Http { status: 404, .. }) => {}
            Err(RemoteError::Http { url, status, message }) => {
                return Err(RemoteError::Http { url, status, message: format!("the server is not ready: {message}") })
            }
            Err(e) => return Err(e),
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Labels from a model folder's config.json (`?card=DIR`).
pub(crate) fn card_labels(spec: &RemoteSpec) -> Result<Option<Vec<String>>, ModelError> {
    let Some(dir) = &spec.options.card else { return Ok(None) };
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(RemoteError::Setup {
            endpoint: spec.endpoint(),
            reason: format!("?card={} has no config.json to read labels from", dir.display()),
        }
        .into());
    }
    let labels = ModelConfig::from_file(&config)?.classes()?.labels;
    Ok((!labels.is_empty()).then_some(labels))
}

/// A string cut to 60 characters for error messages.
pub(crate) fn short(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Turns probabilities or logits rows into scores, checking they are what they claim.
pub(crate) fn scores_from_rows(
    rows: Vec<Vec<f64>>,
    kind: OutputKind,
    url: &str,
    output: &str,
) -> Result<Vec<crate::model::Scores>, RemoteError> {
    let protocol = |reason: String| RemoteError::Protocol { url: url.to_string(), reason };
    let mut scores = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(bad) = row.iter().find(|v| !v.is_finite()) {
            return Err(protocol(format!("output `{output}` holds {bad}")));
        }
        let as_f32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
        scores.push(match kind {
            OutputKind::Logits => crate::model::Scores { probs: crate::model::softmax(&as_f32), logits: as_f32 },
            _ => {
                if let Some(bad) = row.iter().find(|&&v| !(-1e-4..=1.0 + 1e-4).contains(&v)) {
                    return Err(protocol(format!(
                        "output `{output}` holds {bad}, which is not a probability (if it holds logits, add ?output_kind=logits)"
                    )));
                }
                let logits = as_f32.iter().map(|&p| p.max(f32::MIN_POSITIVE).ln()).collect();
                crate::model::Scores { probs: as_f32, logits }
            }
        });
    }
    Ok(scores)
}
