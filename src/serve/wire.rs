//! The server's side of the wire: reading an inference request (JSON, or JSON plus Triton's
//! binary tensor data), writing the answer, and the model metadata.

use std::path::Path;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use candle_core::{Device, Tensor};
use image::RgbImage;
use serde_json::{json, Value};

use crate::model::{LoadedModel, Task};
use crate::oip::{self, binary};
use crate::predict::PredictOutput;

/// The largest request body accepted (64 MiB: a batch of large photos).
pub(crate) const MAX_BODY: usize = 64 << 20;
/// The most inputs one request may carry.
const MAX_INPUTS: usize = 4096;

/// What one request asks the model to do.
#[derive(Clone)]
pub(crate) enum Work {
    Texts(Vec<String>),
    Images(Vec<(String, Arc<RgbImage>)>),
    /// Preprocessed pixels `[count, C, H, W]`.
    Pixels {
        tensor: Tensor,
        count: usize,
    },
    ZeroShot {
        images: Vec<(String, Arc<RgbImage>)>,
        labels: Vec<String>,
        template: Option<String>,
    },
    /// Zero-shot text classification with an NLI model.
    ZeroShotTexts {
        texts: Vec<String>,
        labels: Vec<String>,
        template: Option<String>,
        multi_label: bool,
    },
}

impl Work {
    pub fn len(&self) -> usize {
        match self {
            Self::Texts(t) | Self::ZeroShotTexts { texts: t, .. } => t.len(),
            Self::Images(i) | Self::ZeroShot { images: i, .. } => i.len(),
            Self::Pixels { count, .. } => *count,
        }
    }

    /// Whether `other` can run in the same model call.
    pub fn joins(&self, other: &Work) -> bool {
        match (self, other) {
            (Self::Texts(_), Self::Texts(_))
            | (Self::Images(_), Self::Images(_))
            | (Self::Pixels { .. }, Self::Pixels { .. }) => true,
            (Self::ZeroShot { labels: a, template: ta, .. }, Self::ZeroShot { labels: b, template: tb, .. }) => {
                a == b && ta == tb
            }
            (
                Self::ZeroShotTexts { labels: a, template: ta, multi_label: ma, .. },
                Self::ZeroShotTexts { labels: b, template: tb, multi_label: mb, .. },
            ) => a == b && ta == tb && ma == mb,
            _ => false,
        }
    }

    /// The works of a group as one (they all [`Work::joins`] the first).
    pub fn merge(works: &[&Work]) -> Result<Work, String> {
        let Some(first) = works.first() else { return Err("an empty batch".into()) };
        if works.len() == 1 {
            return Ok((*first).clone());
        }
        Ok(match first {
            Self::Texts(_) => Self::Texts(
                works.iter().flat_map(|w| if let Self::Texts(t) = w { t.clone() } else { Vec::new() }).collect(),
            ),
            Self::Images(_) => Self::Images(
                works.iter().flat_map(|w| if let Self::Images(i) = w { i.clone() } else { Vec::new() }).collect(),
            ),
            Self::ZeroShot { labels, template, .. } => Self::ZeroShot {
                images: works
                    .iter()
                    .flat_map(|w| if let Self::ZeroShot { images, .. } = w { images.clone() } else { Vec::new() })
                    .collect(),
                labels: labels.clone(),
                template: template.clone(),
            },
            Self::ZeroShotTexts { labels, template, multi_label, .. } => Self::ZeroShotTexts {
                texts: works
                    .iter()
                    .flat_map(|w| if let Self::ZeroShotTexts { texts, .. } = w { texts.clone() } else { Vec::new() })
                    .collect(),
                labels: labels.clone(),
                template: template.clone(),
                multi_label: *multi_label,
            },
            Self::Pixels { .. } => {
                let tensors: Vec<&Tensor> = works
                    .iter()
                    .filter_map(|w| if let Self::Pixels { tensor, .. } = w { Some(tensor) } else { None })
                    .collect();
                Self::Pixels { tensor: super::cat_pixels(&tensors)?, count: works.iter().map(|w| w.len()).sum() }
            }
        })
    }
}

/// A parsed request: the work and how to answer.
pub(crate) struct ParsedRequest {
    pub id: Option<String>,
    pub work: Work,
    /// Requested outputs and whether each is wanted as binary; empty = all.
    pub outputs: Vec<(String, bool)>,
    /// `binary_data_output`: every output as binary unless it says otherwise.
    pub binary_all: bool,
}

/// An input tensor as sent.
struct Input {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    data: Data,
}

enum Data {
    Json(Value),
    Binary(Vec<u8>),
}

impl Input {
    fn count(&self) -> Result<usize, String> {
        oip::element_count(&self.shape)
            .ok_or_else(|| format!("input `{}` has an invalid shape {}", self.name, oip::shape_text(&self.shape)))
    }

    /// The data holds as many elements as the shape says.
    fn check_count(&self, n: usize, what: &str) -> Result<(), String> {
        if n != self.count()? {
            return Err(format!("input `{}` has shape {} but {n} {what}", self.name, oip::shape_text(&self.shape)));
        }
        Ok(())
    }

    /// BYTES elements; JSON strings are taken as they are (`base64`: decoded).
    fn bytes(&self, base64: bool) -> Result<Vec<Vec<u8>>, String> {
        if self.datatype != "BYTES" {
            return Err(format!("input `{}` must be BYTES, not {}", self.name, self.datatype));
        }
        let items = match &self.data {
            Data::Binary(raw) => binary::split_bytes(raw).map_err(|e| format!("input `{}`: {e}", self.name))?,
            Data::Json(v) => {
                let strings = oip::strings(v).map_err(|e| format!("input `{}`: {e}", self.name))?;
                if base64 {
                    strings
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let s = s.split_once(";base64,").map(|(_, b)| b).unwrap_or(s);
                            base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|e| {
                                format!(
                                    "input `{}` element {i} is not base64 ({e}); in JSON, images are base64 strings",
                                    self.name
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    strings.into_iter().map(String::into_bytes).collect()
                }
            }
        };
        self.check_count(items.len(), "elements")?;
        Ok(items)
    }

    fn texts(&self) -> Result<Vec<String>, String> {
        self.bytes(false)?
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                String::from_utf8(b).map_err(|_| format!("input `{}` element {i} is not valid UTF-8 text", self.name))
            })
            .collect()
    }

    fn numbers(&self) -> Result<Vec<f64>, String> {
        let values = match &self.data {
            Data::Binary(raw) => binary::numbers(&self.datatype, raw),
            Data::Json(v) => oip::numbers(v),
        }
        .map_err(|e| format!("input `{}`: {e}", self.name))?;
        self.check_count(values.len(), "values")?;
        Ok(values)
    }

    fn images(&self) -> Result<Vec<(String, Arc<RgbImage>)>, String> {
        self.bytes(true)?
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                let name = format!("{}[{i}]", self.name);
                crate::model::image::decode_image_bytes(bytes, Path::new(&name))
                    .map(|img| (name, Arc::new(img)))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }
}

/// Reads an inference request. Errors are messages for a 400 answer.
pub(crate) fn parse_request(
    headers: &HeaderMap,
    body: &[u8],
    task: Task,
    pixel_shape: Option<&[usize]>,
) -> Result<ParsedRequest, String> {
    let (json_part, mut binary_part) = match headers.get(binary::HEADER) {
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("header {} is not a byte count", binary::HEADER))?;
            if n > body.len() {
                return Err(format!(
                    "header {} says {n} bytes of JSON but the body has {}",
                    binary::HEADER,
                    body.len()
                ));
            }
            body.split_at(n)
        }
        None => (body, &[][..]),
    };
    let request: Value =
        serde_json::from_slice(json_part).map_err(|e| format!("the request is not valid JSON: {e}"))?;
    let Some(Value::Array(raw_inputs)) = request.get("inputs") else {
        return Err("the request has no `inputs` array".into());
    };
    if raw_inputs.is_empty() {
        return Err("the request's `inputs` is empty".into());
    }
    let mut inputs = Vec::with_capacity(raw_inputs.len());
    for raw in raw_inputs {
        let name = raw.get("name").and_then(Value::as_str).ok_or("an input has no `name`")?.to_string();
        let datatype = raw
            .get("datatype")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("input `{name}` has no `datatype`"))?
            .to_ascii_uppercase();
        let shape = oip::shape_of(raw).map_err(|e| format!("input `{name}` {e}"))?;
        if shape.iter().any(|&d| d < 0) {
            return Err(format!("input `{name}` has a negative dimension in {}", oip::shape_text(&shape)));
        }
        let size = raw.get("parameters").and_then(|p| p.get("binary_data_size"));
        let data = match size {
            Some(size) => {
                let n = size
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("input `{name}`: binary_data_size is not a byte count"))?;
                if n > binary_part.len() {
                    return Err(format!(
                        "input `{name}` announces {n} binary bytes but only {} follow the JSON",
                        binary_part.len()
                    ));
                }
                let (mine, rest) = binary_part.split_at(n);
                binary_part = rest;
                Data::Binary(mine.to_vec())
            }
            None => Data::Json(raw.get("data").cloned().ok_or_else(|| format!("input `{name}` has no `data`"))?),
        };
        inputs.push(Input { name, datatype, shape, data });
    }
    let mut outputs = Vec::new();
    if let Some(list) = request.get("outputs") {
        let list = list.as_array().ok_or("`outputs` is not an array")?;
        for o in list {
            let name = o.get("name").and_then(Value::as_str).ok_or("a requested output has no `name`")?;
            let binary = o.get("parameters").and_then(|p| p.get("binary_data")).and_then(Value::as_bool);
            if !output_names(task).contains(&name) {
                return Err(format!("this model has no output `{name}`; it answers {}", output_names(task).join(", ")));
            }
            outputs.push((name.to_string(), binary.unwrap_or(false)));
        }
    }
    let binary_all =
        request.get("parameters").and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool).unwrap_or(false);
    if binary_all {
        // binary_data_output applies to outputs that did not say.
        if let Some(list) = request.get("outputs").and_then(Value::as_array) {
            for (o, entry) in list.iter().zip(outputs.iter_mut()) {
                if o.get("parameters").and_then(|p| p.get("binary_data")).is_none() {
                    entry.1 = true;
                }
            }
        }
    }
    let find = |names: &[&str]| inputs.iter().find(|i| names.contains(&i.name.as_str()));
    let only = || match inputs.as_slice() {
        [one] => Ok(one),
        many => Err(format!(
            "this model takes one input; the request has {} ({})",
            many.len(),
            many.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )),
    };
    let work = match task {
        Task::TextClassification | Task::TextEmbedding => {
            let input = match find(&["text", "texts", "inputs"]) {
                Some(i) => i,
                None => only()?,
            };
            Work::Texts(input.texts()?)
        }
        Task::ImageClassification => {
            let input = match find(&["image", "images"]) {
                Some(i) => i,
                None => only()?,
            };
            if input.datatype == "BYTES" {
                Work::Images(input.images()?)
            } else {
                pixels(input, pixel_shape)?
            }
        }
        Task::ZeroShotImageClassification | Task::ZeroShotTextClassification => {
            let labels = find(&["candidate_labels", "labels"])
                .ok_or("zero-shot models take a BYTES `candidate_labels` input")?;
            let labels: Vec<String> =
                labels.texts()?.into_iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
            if labels.is_empty() {
                return Err("`candidate_labels` holds no label".into());
            }
            let parameter = |name: &str| request.get("parameters").and_then(|p| p.get(name));
            let template = parameter("template").and_then(Value::as_str).map(str::to_string);
            if let Some(t) = &template {
                if t.matches("{}").count() != 1 {
                    return Err(format!("the template `{t}` must hold `{{}}` once, where each label goes"));
                }
            }
            if task == Task::ZeroShotImageClassification {
                let image = find(&["image", "images"]).ok_or("zero-shot image models take a BYTES `image` input")?;
                Work::ZeroShot { images: image.images()?, labels, template }
            } else {
                let text =
                    find(&["text", "texts", "inputs"]).ok_or("zero-shot text models take a BYTES `text` input")?;
                let multi_label = match parameter("multi_label") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => {
                        return Err(format!("the `multi_label` parameter must be true or false, not {other}"))
                    }
                };
                Work::ZeroShotTexts { texts: text.texts()?, labels, template, multi_label }
            }
        }
    };
    if work.len() == 0 {
        return Err("the request holds no inputs (a dimension of 0)".into());
    }
    if work.len() > MAX_INPUTS {
        return Err(format!("{} inputs in one request; at most {MAX_INPUTS}", work.len()));
    }
    let id = request.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(|s| s.chars().take(200).collect());
    Ok(ParsedRequest { id, work, outputs, binary_all })
}

/// Preprocessed pixels `[N, C, H, W]` or `[N, C·H·W]` for an image model.
fn pixels(input: &Input, pixel_shape: Option<&[usize]>) -> Result<Work, String> {
    let Some(item) = pixel_shape else {
        return Err(format!("input `{}`: this model takes encoded images as BYTES, not tensors", input.name));
    };
    if !matches!(input.datatype.as_str(), "FP32" | "FP64" | "FP16" | "BF16") {
        return Err(format!("input `{}` has datatype {}; pixels are FP32 (or FP64/FP16)", input.name, input.datatype));
    }
    let want: usize = item.iter().product();
    let dims: Vec<usize> = input.shape.iter().map(|&d| d as usize).collect();
    let ok = match dims.as_slice() {
        [_, flat] => *flat == want,
        [_, rest @ ..] => rest == item,
        _ => false,
    };
    let expected = format!("[N, {}] or [N, {want}]", item.iter().map(usize::to_string).collect::<Vec<_>>().join(", "));
    if !ok {
        return Err(format!(
            "input `{}` has shape {}; this model takes preprocessed pixels {expected}",
            input.name,
            oip::shape_text(&input.shape)
        ));
    }
    let count = dims[0];
    let values: Vec<f32> = input.numbers()?.into_iter().map(|v| v as f32).collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(format!("input `{}` holds a value that is not finite", input.name));
    }
    let mut shape = vec![count];
    shape.extend_from_slice(item);
    let tensor = Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())?;
    Ok(Work::Pixels { tensor, count })
}

/// The outputs a task answers with.
fn output_names(task: Task) -> &'static [&'static str] {
    match task {
        Task::TextEmbedding => &["embedding"],
        _ => &["probabilities", "logits", "label"],
    }
}

enum Payload {
    Floats(Vec<f32>),
    Bytes(Vec<Vec<u8>>),
}

/// The answer to one request, JSON or with binary outputs as asked.
pub(crate) fn response(
    name: &str,
    version: &str,
    id: &str,
    request: &ParsedRequest,
    output: &PredictOutput,
) -> Response {
    let n = output.results.len() as i64;
    let mut tensors: Vec<(&str, &str, Vec<i64>, Payload)> = Vec::new();
    if output.task == Task::TextEmbedding {
        let vectors: Vec<&Vec<f32>> = output.results.iter().filter_map(|r| r.embedding.as_ref()).collect();
        let d = vectors.first().map_or(0, |v| v.len()) as i64;
        tensors.push((
            "embedding",
            "FP32",
            vec![n, d],
            Payload::Floats(vectors.into_iter().flatten().copied().collect()),
        ));
    } else {
        let scores: Vec<&crate::model::Scores> = output.results.iter().filter_map(|r| r.scores.as_ref()).collect();
        let l = scores.first().map_or(0, |s| s.probs.len()) as i64;
        let probs = scores.iter().flat_map(|s| s.probs.iter().copied()).collect();
        let logits = scores.iter().flat_map(|s| s.logits.iter().copied()).collect();
        let labels = output
            .results
            .iter()
            .map(|r| {
                r.predictions.as_ref().and_then(|p| p.first()).map(|p| p.label.clone().into_bytes()).unwrap_or_default()
            })
            .collect();
        tensors.push(("probabilities", "FP32", vec![n, l], Payload::Floats(probs)));
        tensors.push(("logits", "FP32", vec![n, l], Payload::Floats(logits)));
        tensors.push(("label", "BYTES", vec![n], Payload::Bytes(labels)));
    }
    let wanted: Vec<(&str, bool)> = if request.outputs.is_empty() {
        tensors.iter().map(|t| (t.0, request.binary_all)).collect()
    } else {
        request.outputs.iter().map(|(name, binary)| (name.as_str(), *binary)).collect()
    };
    let mut json_outputs = Vec::new();
    let mut blobs: Vec<u8> = Vec::new();
    for (want, as_binary) in wanted {
        let Some((tname, datatype, shape, payload)) = tensors.iter().find(|t| t.0 == want) else { continue };
        let mut entry = json!({"name": tname, "datatype": datatype, "shape": shape});
        if as_binary {
            let raw = match payload {
                Payload::Floats(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
                Payload::Bytes(items) => binary::join_bytes(items.iter().map(Vec::as_slice)),
            };
            entry["parameters"] = json!({"binary_data_size": raw.len()});
            blobs.extend_from_slice(&raw);
        } else {
            entry["data"] = match payload {
                Payload::Floats(v) => json!(v),
                Payload::Bytes(items) => {
                    json!(items.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>())
                }
            };
        }
        json_outputs.push(entry);
    }
    let body = json!({
        "model_name": name,
        "model_version": version,
        "id": id,
        "parameters": {},
        "outputs": json_outputs,
    });
    let text = body.to_string();
    if blobs.is_empty() {
        return (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json".to_string())], text)
            .into_response();
    }
    let header_len = text.len();
    let mut all = text.into_bytes();
    all.extend_from_slice(&blobs);
    (
        StatusCode::OK,
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (axum::http::HeaderName::from_static(binary::HEADER), header_len.to_string()),
        ],
        all,
    )
        .into_response()
}

/// The model metadata: inputs and outputs by task, labels in the probabilities' parameters.
pub(crate) fn model_metadata(
    model: &LoadedModel,
    name: &str,
    version: &str,
    pixel_shape: Option<&[usize]>,
    embedding_dims: Option<usize>,
) -> Value {
    let card = model.card();
    let labels = card.labels.len() as i64;
    let inputs = match card.task {
        Task::TextClassification | Task::TextEmbedding => {
            json!([{"name": "text", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}}])
        }
        Task::ImageClassification => {
            json!([{"name": "image", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "base64"}}])
        }
        Task::ZeroShotImageClassification => json!([
            {"name": "image", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "base64"}},
            {"name": "candidate_labels", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}},
        ]),
        Task::ZeroShotTextClassification => json!([
            {"name": "text", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}},
            {"name": "candidate_labels", "datatype": "BYTES", "shape": [-1], "parameters": {"content_type": "str"}},
        ]),
    };
    let outputs = match card.task {
        Task::TextEmbedding => {
            json!([{"name": "embedding", "datatype": "FP32", "shape": [-1, embedding_dims.map_or(-1, |d| d as i64)]}])
        }
        Task::ZeroShotImageClassification | Task::ZeroShotTextClassification => json!([
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ]),
        _ => json!([
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, labels], "parameters": {"labels": card.labels}},
            {"name": "logits", "datatype": "FP32", "shape": [-1, labels], "parameters": {"labels": card.labels}},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ]),
    };
    let mut parameters = json!({"task": card.task.name(), "source": card.source, "architecture": card.architecture});
    if let Some(shape) = pixel_shape {
        let mut dims = vec![-1i64];
        dims.extend(shape.iter().map(|&d| d as i64));
        parameters["pixel_values_shape"] = json!(dims);
    }
    json!({
        "name": name,
        "versions": [version],
        "platform": "modeldeck",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    })
}
