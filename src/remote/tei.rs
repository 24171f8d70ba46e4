//! A Hugging Face text-embeddings-inference server as a [`Network`]: `/info` says whether it
//! embeds or classifies (and its labels), `/embed` and `/predict` answer. Requests larger than the
//! server's `max_client_batch_size` are split.

use std::sync::Arc;

use serde_json::{json, Value};

use super::http::{Endpoint, Retry};
use super::spec::{OutputKind, RemoteSpec};
use super::{EndpointCard, RemoteCard, RemoteError};
use crate::model::{Batch, ModelError, Network, RawInputs, Request, Response, Scores, Task};

pub(crate) struct TeiNetwork {
    endpoint: Arc<Endpoint>,
    task: Task,
    labels: Vec<String>,
    max_batch: usize,
}

impl TeiNetwork {
    pub fn connect(spec: &RemoteSpec, endpoint: Arc<Endpoint>) -> Result<(Self, RemoteCard), ModelError> {
        let setup = |reason: String| -> ModelError { RemoteError::Setup { endpoint: spec.endpoint(), reason }.into() };
        let rtt_ms = super::measure_rtt(&endpoint, "health")?;
        let (info, _) = endpoint.get_json("info")?;
        let model_id = info.get("model_id").and_then(Value::as_str).unwrap_or("text-embeddings-inference").to_string();
        let model_type = info.get("model_type").ok_or_else(|| setup("/info has no `model_type`".into()))?;
        let (task, labels) = if model_type.get("embedding").is_some() {
            (Task::TextEmbedding, Vec::new())
        } else if let Some(classifier) = model_type.get("classifier") {
            let map = classifier
                .get("id2label")
                .and_then(Value::as_object)
                .ok_or_else(|| setup("/info's classifier has no `id2label`".into()))?;
            let mut labels = vec![None; map.len()];
            for (key, label) in map {
                let i = key
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < labels.len())
                    .ok_or_else(|| setup(format!("id2label key `{key}` is not a class index")))?;
                labels[i] = label.as_str().map(str::to_string);
            }
            let labels: Option<Vec<String>> = labels.into_iter().collect();
            (Task::TextClassification, labels.ok_or_else(|| setup("id2label is missing a class index".into()))?)
        } else {
            return Err(setup(format!(
                "the server's model type {} is not supported (embedding and classifier models are)",
                model_type.as_object().and_then(|o| o.keys().next()).map(String::as_str).unwrap_or("?")
            )));
        };
        let labels = match &spec.options.labels {
            Some(given) if task == Task::TextClassification && given.len() != labels.len() => {
                return Err(setup(format!("{} labels are given but the server has {}", given.len(), labels.len())))
            }
            Some(given) if task == Task::TextClassification => given.clone(),
            _ => labels,
        };
        let max_batch =
            info.get("max_client_batch_size").and_then(Value::as_u64).filter(|&n| n > 0).unwrap_or(32) as usize;
        let version = info.get("version").and_then(Value::as_str).unwrap_or("");
        let kind = if task == Task::TextEmbedding { OutputKind::Embedding } else { OutputKind::Probabilities };
        let card = RemoteCard {
            name: model_id,
            version: info.get("model_sha").and_then(Value::as_str).map(str::to_string),
            architecture: "remote (text-embeddings-inference)".into(),
            task,
            labels: labels.clone(),
            dtype: info.get("model_dtype").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            endpoint: EndpointCard {
                endpoint: spec.endpoint(),
                protocol: spec.protocol.name().into(),
                server: Some(format!("text-embeddings-inference {version}").trim().to_string()),
                platform: None,
                input: "inputs: text".into(),
                output: format!(
                    "{}: {} (at most {max_batch} texts a request)",
                    if task == Task::TextEmbedding { "/embed" } else { "/predict" },
                    kind.name()
                ),
                rtt_ms,
                token_env: spec.options.token_env.clone(),
                timeout_s: spec.options.timeout.as_secs_f64(),
                concurrency: spec.options.concurrency,
            },
        };
        Ok((Self { endpoint, task, labels, max_batch }, card))
    }

    fn embed(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, Option<f64>), RemoteError> {
        let body = json!({"inputs": texts, "normalize": true, "truncate": true});
        let (answer, reply) = self.endpoint.post_json("embed", &body, Retry::NotReceived)?;
        let url = self.endpoint.url("embed");
        let protocol = |reason: String| RemoteError::Protocol { url: url.clone(), reason };
        let rows = answer.as_array().ok_or_else(|| protocol("/embed did not answer an array of embeddings".into()))?;
        if rows.len() != texts.len() {
            return Err(protocol(format!("{} embeddings for {} texts", rows.len(), texts.len())));
        }
        let vectors = rows
            .iter()
            .map(|row| {
                let values = crate::oip::numbers(row).map_err(|e| protocol(format!("an embedding: {e}")))?;
                if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
                    return Err(protocol("an embedding is empty or holds a non-finite value".into()));
                }
                Ok(values.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if vectors.windows(2).any(|w| w[0].len() != w[1].len()) {
            return Err(protocol("the embeddings have different lengths".into()));
        }
        Ok((vectors, reply.server_ms))
    }

    fn predict(&self, texts: &[String]) -> Result<(Vec<Scores>, Option<f64>), RemoteError> {
        // A batch is a list of one-element lists (a two-element list would be a text pair).
        let inputs: Vec<[&String; 1]> = texts.iter().map(|t| [t]).collect();
        let body = json!({"inputs": inputs, "truncate": true});
        let (answer, reply) = self.endpoint.post_json("predict", &body, Retry::NotReceived)?;
        let url = self.endpoint.url("predict");
        let protocol = |reason: String| RemoteError::Protocol { url: url.clone(), reason };
        let rows = answer.as_array().ok_or_else(|| protocol("/predict did not answer an array".into()))?;
        if rows.len() != texts.len() {
            return Err(protocol(format!("{} answers for {} texts", rows.len(), texts.len())));
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let entries = row.as_array().ok_or_else(|| protocol("an answer is not a list of {label, score}".into()))?;
            let mut probs = vec![f64::NAN; self.labels.len()];
            for entry in entries {
                let label = entry
                    .get("label")
                    .and_then(Value::as_str)
                    .ok_or_else(|| protocol("an entry has no label".into()))?;
                let score = entry
                    .get("score")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| protocol(format!("label `{label}` has no score")))?;
                let i = self
                    .labels
                    .iter()
                    .position(|l| l == label)
                    .ok_or_else(|| protocol(format!("label `{label}` is not one of the model's labels")))?;
                probs[i] = score;
            }
            if probs.iter().any(|p| p.is_nan()) {
                return Err(protocol(format!(
                    "an answer scores {} of the {} labels",
                    entries.len(),
                    self.labels.len()
                )));
            }
            out.append(&mut super::scores_from_rows(vec![probs], OutputKind::Probabilities, &url, "score")?);
        }
        Ok((out, reply.server_ms))
    }
}

impl TeiNetwork {
    /// Runs `call` on chunks of at most the server's batch size; the answers in order and the
    /// server times summed (when the server reports them).
    fn in_chunks<T>(
        &self,
        texts: &[String],
        call: impl Fn(&[String]) -> Result<(Vec<T>, Option<f64>), RemoteError>,
    ) -> Result<(Vec<T>, Option<f64>), RemoteError> {
        let mut all = Vec::with_capacity(texts.len());
        let mut server_ms: Option<f64> = None;
        for chunk in texts.chunks(self.max_batch) {
            let (mut answers, ms) = call(chunk)?;
            if let Some(ms) = ms {
                server_ms = Some(server_ms.unwrap_or(0.0) + ms);
            }
            all.append(&mut answers);
        }
        Ok((all, server_ms))
    }
}

impl Network for TeiNetwork {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        match request {
            Request::Texts { texts, .. } if !texts.is_empty() => Ok(Batch {
                size: texts.len(),
                pixel_values: None,
                text: None,
                raw: Some(RawInputs::Texts(texts.to_vec())),
                pairs: None,
            }),
            Request::Texts { .. } => Err(ModelError::Input("no text given".into())),
            _ => Err(ModelError::WrongInput { task: self.task, expected: "text", given: "images" }),
        }
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        Ok(self.forward_timed(batch)?.0)
    }

    fn forward_timed(&self, batch: &Batch) -> Result<(Response, Option<f64>), ModelError> {
        let Some(RawInputs::Texts(texts)) = &batch.raw else {
            return Err(ModelError::Input("this batch was not prepared for a text-embeddings-inference model".into()));
        };
        let (response, server_ms) = if self.task == Task::TextEmbedding {
            let (all, ms) = self.in_chunks(texts, |chunk| self.embed(chunk))?;
            (Response::Embeddings(all), ms)
        } else {
            let (all, ms) = self.in_chunks(texts, |chunk| self.predict(chunk))?;
            (Response::Scores(all), ms)
        };
        Ok((response, server_ms))
    }
}
