//! An Open Inference Protocol v2 model as a [`Network`]: the model metadata decides the request
//! (BYTES text, BYTES encoded images, or numeric image tensors preprocessed here), and the answer
//! is checked against what the model declared before it becomes scores or embeddings.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use candle_core::Device;
use serde_json::{json, Value};

use super::http::{Endpoint, Retry};
use super::spec::{BytesKind, OutputKind, RemoteSpec};
use super::{EndpointCard, RemoteCard, RemoteError};
use crate::model::image::ProcessorFamily;
use crate::model::{Batch, ImagePreprocessor, ModelError, Network, RawInputs, Request, Response, Task};
use crate::oip;

/// What goes in the request's one input.
enum InputPlan {
    Bytes {
        name: String,
        kind: BytesKind,
        /// Dimensions after the batch one (all 1 for one element per input).
        item_shape: Vec<i64>,
    },
    /// Images preprocessed here into `item_shape` values each.
    Tensor { name: String, datatype: String, item_shape: Vec<i64>, preprocessor: Box<ImagePreprocessor> },
}

pub(crate) struct OipNetwork {
    endpoint: Arc<Endpoint>,
    infer_path: String,
    input: InputPlan,
    /// The output to request by name (`None`: take the only one the server sends).
    output: Option<String>,
    kind: OutputKind,
    labels: usize,
    /// The task `connect` read from the metadata.
    task: Task,
    next_id: AtomicU64,
}

impl OipNetwork {
    pub fn connect(spec: &RemoteSpec, endpoint: Arc<Endpoint>) -> Result<(Self, RemoteCard), ModelError> {
        let setup = |reason: String| -> ModelError { RemoteError::Setup { endpoint: spec.endpoint(), reason }.into() };
        let rtt_ms = super::measure_rtt(&endpoint, "v2/health/ready")?;
        // Server metadata is optional in practice; a transport failure is not.
        let server = match endpoint.get_json("v2") {
            Ok((meta, _)) => {
                let name = meta.get("name").and_then(Value::as_str).unwrap_or("");
                let version = meta.get("version").and_then(Value::as_str).unwrap_or("");
                let text = format!("{name} {version}").trim().to_string();
                (!text.is_empty()).then_some(text)
            }
            Err(RemoteError::Http { .. } | RemoteError::NotJson { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let model_path = spec.model_path();
        let (meta, _) = endpoint.get_json(&model_path)?;
        let model_name = spec.model.clone().unwrap_or_default();
        let inputs = tensors(&meta, "inputs").map_err(&setup)?;
        let outputs = tensors(&meta, "outputs").map_err(&setup)?;
        let input = plan_input(spec, &inputs).map_err(&setup)?;
        let (output, kind, width, declared_labels) = plan_output(spec, &outputs).map_err(&setup)?;

        let card_labels = super::card_labels(spec)?;
        let labels: Vec<String> = match kind {
            OutputKind::Embedding => Vec::new(),
            _ => {
                let labels = spec.options.labels.clone().or(declared_labels).or(card_labels);
                match (labels, width) {
                    (Some(l), Some(w)) if l.len() != w => {
                        return Err(setup(format!("{} labels are given but the output has {w} columns", l.len())))
                    }
                    (Some(l), _) => l,
                    // Class indices, as scikit-learn's classes_ usually are.
                    (None, Some(w)) => (0..w).map(|i| i.to_string()).collect(),
                    (None, None) => return Err(setup(
                        "the metadata does not say how many classes the output has: pass ?labels=a,b,c or ?card=DIR"
                            .into(),
                    )),
                }
            }
        };
        let task = match (&input, kind) {
            (InputPlan::Bytes { kind: BytesKind::Text, .. }, OutputKind::Embedding) => Task::TextEmbedding,
            (InputPlan::Bytes { kind: BytesKind::Text, .. }, _) => Task::TextClassification,
            (_, OutputKind::Embedding) => {
                return Err(setup(
                    "image embedding models are not supported; image models must answer class scores".into(),
                ))
            }
            _ => Task::ImageClassification,
        };
        let input_text = describe_input(spec, &input);
        let output_text = format!(
            "{} {}: {}",
            output.as_deref().unwrap_or("(the only output)"),
            outputs
                .iter()
                .find(|t| Some(&t.name) == output.as_ref())
                .map(|t| format!("{} {}", t.datatype, oip::shape_text(&t.shape)))
                .unwrap_or_default(),
            kind.name()
        );
        let dtype = match &input {
            InputPlan::Tensor { datatype, .. } => datatype.to_lowercase(),
            InputPlan::Bytes { .. } => "bytes".into(),
        };
        let platform = meta.get("platform").and_then(Value::as_str).filter(|p| !p.is_empty()).map(str::to_string);
        let card = RemoteCard {
            name: match &spec.version {
                Some(v) => format!("{model_name}@{v}"),
                None => model_name,
            },
            version: spec.version.clone(),
            architecture: format!("remote ({})", platform.as_deref().unwrap_or("Open Inference Protocol")),
            task,
            labels: labels.clone(),
            dtype,
            endpoint: EndpointCard {
                endpoint: spec.endpoint(),
                protocol: spec.protocol.name().into(),
                server,
                platform,
                input: input_text,
                output: output_text,
                rtt_ms,
                token_env: spec.options.token_env.clone(),
                timeout_s: spec.options.timeout.as_secs_f64(),
                concurrency: spec.options.concurrency,
            },
        };
        let network = Self {
            endpoint,
            infer_path: format!("{model_path}/infer"),
            input,
            output,
            kind,
            labels: labels.len(),
            task,
            next_id: AtomicU64::new(1),
        };
        Ok((network, card))
    }

    fn request_body(&self, batch: &Batch) -> Result<Value, ModelError> {
        let n = batch.size as i64;
        let input = match (&self.input, &batch.raw, &batch.pixel_values) {
            (InputPlan::Bytes { name, kind: BytesKind::Text, item_shape }, Some(RawInputs::Texts(texts)), _) => json!({
                "name": name, "datatype": "BYTES", "shape": batch_shape(n, item_shape),
                "parameters": {"content_type": "str"}, "data": texts,
            }),
            (InputPlan::Bytes { name, kind: BytesKind::Image, item_shape }, Some(RawInputs::Encoded(files)), _) => {
                let data: Vec<String> =
                    files.iter().map(|f| base64::engine::general_purpose::STANDARD.encode(f)).collect();
                json!({
                    "name": name, "datatype": "BYTES", "shape": batch_shape(n, item_shape),
                    "parameters": {"content_type": "base64"}, "data": data,
                })
            }
            (InputPlan::Tensor { name, datatype, item_shape, .. }, _, Some(pixels)) => {
                let values = pixels.flatten_all()?.to_vec1::<f32>()?;
                json!({"name": name, "datatype": datatype, "shape": batch_shape(n, item_shape), "data": values})
            }
            _ => return Err(ModelError::Input("this batch was not prepared for this remote model".into())),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut body = json!({"id": format!("modeldeck-{id}"), "inputs": [input]});
        if let Some(output) = &self.output {
            body["outputs"] = json!([{"name": output}]);
        }
        Ok(body)
    }

    fn read_answer(&self, answer: &Value, n: usize) -> Result<Response, RemoteError> {
        let url = self.endpoint.url(&self.infer_path);
        let protocol = |reason: String| RemoteError::Protocol { url: url.clone(), reason };
        let Some(Value::Array(outputs)) = answer.get("outputs") else {
            return Err(protocol("the answer has no `outputs` array".into()));
        };
        let tensor = match &self.output {
            Some(name) => outputs
                .iter()
                .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
                .ok_or_else(|| protocol(format!("output `{name}` is missing (it sent {})", names(outputs))))?,
            None => match outputs.as_slice() {
                [only] => only,
                _ => {
                    return Err(protocol(format!(
                        "{} outputs ({}): name one with ?output=NAME",
                        outputs.len(),
                        names(outputs)
                    )))
                }
            },
        };
        let name = tensor.get("name").and_then(Value::as_str).unwrap_or("?").to_string();
        let datatype = tensor.get("datatype").and_then(Value::as_str).unwrap_or("");
        if !oip::NUMERIC.contains(&datatype) {
            return Err(protocol(format!("output `{name}` has datatype `{datatype}`, not a number type")));
        }
        let shape = oip::shape_of(tensor).map_err(|e| protocol(format!("output `{name}` {e}")))?;
        let data = tensor.get("data").ok_or_else(|| protocol(format!("output `{name}` has no `data`")))?;
        let values = oip::numbers(data).map_err(|e| protocol(format!("output `{name}`: {e}")))?;
        if oip::element_count(&shape) != Some(values.len()) {
            return Err(protocol(format!(
                "output `{name}` has shape {} but {} values",
                oip::shape_text(&shape),
                values.len()
            )));
        }
        if n == 0 || values.len() % n != 0 || shape.first().copied() != Some(n as i64) {
            return Err(protocol(format!(
                "output `{name}` has shape {} for {n} inputs (the first dimension must be the batch)",
                oip::shape_text(&shape)
            )));
        }
        let width = values.len() / n;
        if self.kind != OutputKind::Embedding && width != self.labels {
            return Err(protocol(format!(
                "output `{name}` has {width} columns per input (shape {}) but the model has {} labels",
                oip::shape_text(&shape),
                self.labels
            )));
        }
        let rows: Vec<Vec<f64>> = values.chunks(width.max(1)).map(<[f64]>::to_vec).collect();
        match self.kind {
            OutputKind::Embedding => {
                if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                    return Err(protocol(format!("output `{name}` holds {bad}")));
                }
                Ok(Response::Embeddings(rows.into_iter().map(|r| r.into_iter().map(|v| v as f32).collect()).collect()))
            }
            kind => Ok(Response::Scores(super::scores_from_rows(rows, kind, &url, &name)?)),
        }
    }
}

impl Network for OipNetwork {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        let task = self.task;
        match (&self.input, request) {
            (InputPlan::Bytes { kind: BytesKind::Text, .. }, Request::Texts { texts, .. }) => {
                if texts.is_empty() {
                    return Err(ModelError::Input("no text given".into()));
                }
                Ok(raw_batch(texts.len(), RawInputs::Texts(texts.to_vec())))
            }
            (InputPlan::Bytes { kind: BytesKind::Image, .. }, Request::Images(images)) => {
                if images.is_empty() {
                    return Err(ModelError::Input("no image given".into()));
                }
                let files = images.iter().map(encode_png).collect::<Result<Vec<_>, _>>()?;
                Ok(raw_batch(images.len(), RawInputs::Encoded(files)))
            }
            (InputPlan::Tensor { preprocessor, .. }, Request::Images(_)) => {
                crate::model::image_batch(preprocessor, request, &Device::Cpu, task)
            }
            (_, Request::ZeroShot { .. } | Request::ZeroShotTexts { .. }) => Err(ModelError::WrongInput {
                task,
                expected: "inputs without candidate labels",
                given: "candidate labels",
            }),
            (InputPlan::Bytes { kind: BytesKind::Text, .. }, _) => {
                Err(ModelError::WrongInput { task, expected: "text", given: "images" })
            }
            _ => Err(ModelError::WrongInput { task, expected: "images", given: "text" }),
        }
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        Ok(self.forward_timed(batch)?.0)
    }

    fn forward_timed(&self, batch: &Batch) -> Result<(Response, Option<f64>), ModelError> {
        let body = self.request_body(batch)?;
        // Inference has no side effects, but a slow model must not get a second copy: retried
        // only when the server cannot have started on it.
        let (answer, reply) = self.endpoint.post_json(&self.infer_path, &body, Retry::NotReceived)?;
        Ok((self.read_answer(&answer, batch.size)?, reply.server_ms))
    }
}

fn raw_batch(size: usize, raw: RawInputs) -> Batch {
    Batch { size, pixel_values: None, text: None, raw: Some(raw), pairs: None }
}

fn encode_png(image: &::image::RgbImage) -> Result<Vec<u8>, ModelError> {
    let mut out = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut out), ::image::ImageFormat::Png)
        .map_err(|e| ModelError::Input(format!("cannot encode the image as PNG: {e}")))?;
    Ok(out)
}

fn batch_shape(n: i64, item_shape: &[i64]) -> Vec<i64> {
    std::iter::once(n).chain(item_shape.iter().copied()).collect()
}

fn names(outputs: &[Value]) -> String {
    let names: Vec<String> =
        outputs.iter().map(|o| format!("`{}`", o.get("name").and_then(Value::as_str).unwrap_or("?"))).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A tensor as the metadata declares it.
struct TensorMeta {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    parameters: Value,
}

fn tensors(meta: &Value, field: &str) -> Result<Vec<TensorMeta>, String> {
    let Some(list) = meta.get(field) else { return Ok(Vec::new()) };
    let Value::Array(list) = list else { return Err(format!("the model metadata's `{field}` is not an array")) };
    list.iter()
        .map(|t| {
            let name =
                t.get("name").and_then(Value::as_str).ok_or_else(|| format!("an entry of `{field}` has no name"))?;
            Ok(TensorMeta {
                name: name.to_string(),
                datatype: t.get("datatype").and_then(Value::as_str).unwrap_or("").to_ascii_uppercase(),
                shape: oip::shape_of(t).unwrap_or_default(),
                parameters: t.get("parameters").cloned().unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn plan_input(spec: &RemoteSpec, inputs: &[TensorMeta]) -> Result<InputPlan, String> {
    let chosen = match (&spec.options.input, inputs) {
        (Some(name), []) => {
            // Nothing declared: the user says what the input is.
            let kind = spec.options.kind.ok_or_else(|| {
                format!("the metadata declares no inputs; say what `{name}` holds with ?kind=text or ?kind=image")
            })?;
            return Ok(InputPlan::Bytes { name: name.clone(), kind, item_shape: Vec::new() });
        }
        (Some(name), _) => inputs.iter().find(|t| &t.name == name).ok_or_else(|| {
            format!("the model has no input `{name}` (it declares {})", inputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", "))
        })?,
        (None, [one]) => one,
        (None, []) => {
            return Err("the model metadata declares no inputs: declare them on the server (MLServer: `inputs` in model-settings.json), or pass ?input=NAME&kind=text|image".into())
        }
        (None, many) => {
            return Err(format!(
                "the model takes {} inputs ({}); ModelDeck sends one: choose it with ?input=NAME",
                many.len(),
                many.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    };
    let item_shape: Vec<i64> = chosen.shape.iter().skip(1).copied().collect();
    if chosen.datatype == "BYTES" {
        let content = chosen.parameters.get("content_type").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
        let lower = chosen.name.to_ascii_lowercase();
        let kind = spec
            .options
            .kind
            .or(match content.as_str() {
                "str" | "string" | "text" => Some(BytesKind::Text),
                "base64" | "image" | "bytes" | "pil_image" => Some(BytesKind::Image),
                _ => None,
            })
            .or_else(|| {
                ["image", "img", "photo", "picture"].iter().any(|k| lower.contains(k)).then_some(BytesKind::Image)
            })
            .or_else(|| {
                ["text", "sentence", "prompt", "query", "string", "input_str"]
                    .iter()
                    .any(|k| lower.contains(k))
                    .then_some(BytesKind::Text)
            })
            .ok_or_else(|| {
                format!(
                    "cannot tell whether BYTES input `{}` takes text or images: add ?kind=text or ?kind=image",
                    chosen.name
                )
            })?;
        let item_shape = item_shape.iter().map(|&d| if d < 0 { 1 } else { d }).collect::<Vec<_>>();
        if item_shape.iter().product::<i64>() != 1 {
            return Err(format!(
                "BYTES input `{}` has shape {}: ModelDeck sends one element per input",
                chosen.name,
                oip::shape_text(&chosen.shape)
            ));
        }
        return Ok(InputPlan::Bytes { name: chosen.name.clone(), kind, item_shape });
    }
    if !matches!(chosen.datatype.as_str(), "FP32" | "FP64" | "FP16" | "BF16") {
        return Err(format!(
            "input `{}` has datatype `{}`; ModelDeck sends text or images (BYTES) or image tensors (FP32/FP64/FP16)",
            chosen.name, chosen.datatype
        ));
    }
    if item_shape.is_empty() || item_shape.iter().any(|&d| d <= 0) {
        return Err(format!(
            "input `{}` has shape {}: an image tensor needs a batch dimension and fixed sizes after it",
            chosen.name,
            oip::shape_text(&chosen.shape)
        ));
    }
    let path: PathBuf = match (&spec.options.preprocessor, &spec.options.card) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.join("preprocessor_config.json"),
        (None, None) => {
            return Err(format!(
                "input `{}` takes {} {} tensors: ModelDeck needs the preprocessing that makes them; point at it with ?preprocessor=preprocessor_config.json or ?card=MODEL_DIR",
                chosen.name,
                chosen.datatype,
                oip::shape_text(&chosen.shape)
            ))
        }
    };
    if !path.is_file() {
        return Err(format!("the preprocessing file {} does not exist", path.display()));
    }
    let preprocessor = ImagePreprocessor::load(Some(&path), ProcessorFamily::Vit, 224).map_err(|e| e.to_string())?;
    // What the preprocessing makes of one image must fill the declared tensor exactly.
    let probe = ::image::RgbImage::new(32, 32);
    let values = preprocessor
        .batch_tensor(std::slice::from_ref(&probe), &Device::Cpu)
        .map_err(|e| format!("the preprocessing in {} fails: {e}", path.display()))?;
    let made = values.dims()[1..].to_vec();
    let made_count: usize = made.iter().product();
    let wanted = oip::element_count(&item_shape).unwrap_or(0);
    if made_count != wanted {
        return Err(format!(
            "input `{}` takes {} values per input ({}), but {} makes {} ({})",
            chosen.name,
            wanted,
            oip::shape_text(&chosen.shape),
            path.display(),
            made_count,
            made.iter().map(usize::to_string).collect::<Vec<_>>().join("×")
        ));
    }
    Ok(InputPlan::Tensor {
        name: chosen.name.clone(),
        datatype: if chosen.datatype == "FP64" { "FP64".into() } else { "FP32".into() },
        item_shape,
        preprocessor: Box::new(preprocessor),
    })
}

type OutputPlan = (Option<String>, OutputKind, Option<usize>, Option<Vec<String>>);

fn plan_output(spec: &RemoteSpec, outputs: &[TensorMeta]) -> Result<OutputPlan, String> {
    let by_name = |name: &str| -> Option<OutputKind> {
        let lower = name.to_ascii_lowercase();
        if lower.contains("logit") {
            Some(OutputKind::Logits)
        } else if lower.contains("prob") || lower.contains("softmax") {
            Some(OutputKind::Probabilities)
        } else if lower.contains("embed") || lower.contains("pooler") || lower.contains("sentence") {
            Some(OutputKind::Embedding)
        } else {
            None
        }
    };
    let chosen: Option<&TensorMeta> = match &spec.options.output {
        Some(name) => match outputs.iter().find(|t| &t.name == name) {
            Some(t) => Some(t),
            None if outputs.is_empty() => None,
            None => {
                return Err(format!(
                    "the model has no output `{name}` (it declares {})",
                    outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            }
        },
        None => {
            let numeric: Vec<&TensorMeta> =
                outputs.iter().filter(|t| oip::NUMERIC.contains(&t.datatype.as_str())).collect();
            let preferred = [OutputKind::Probabilities, OutputKind::Logits, OutputKind::Embedding]
                .iter()
                .find_map(|k| numeric.iter().find(|t| by_name(&t.name) == Some(*k)).copied());
            match (preferred, numeric.as_slice()) {
                (Some(t), _) => Some(t),
                (None, [one]) => Some(*one),
                (None, []) if outputs.is_empty() => None,
                (None, []) => {
                    return Err(format!(
                        "none of the model's outputs ({}) holds numbers",
                        outputs.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                }
                (None, many) => {
                    return Err(format!(
                        "the model declares {} outputs ({}): choose one with ?output=NAME",
                        many.len(),
                        many.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
        }
    };
    let name = chosen.map(|t| t.name.clone()).or_else(|| spec.options.output.clone());
    let kind = spec.options.output_kind.or_else(|| name.as_deref().and_then(by_name)).ok_or_else(|| {
        format!(
            "cannot tell whether output `{}` holds probabilities, logits or an embedding: add ?output_kind=probabilities|logits|embedding",
            name.as_deref().unwrap_or("(undeclared)")
        )
    })?;
    let width = chosen.and_then(|t| match t.shape.as_slice() {
        [_, w] if *w > 0 => Some(*w as usize),
        _ => None,
    });
    let labels = chosen
        .and_then(|t| t.parameters.get("labels"))
        .and_then(|l| l.as_array()?.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<String>>>());
    Ok((name, kind, width, labels))
}

fn describe_input(spec: &RemoteSpec, input: &InputPlan) -> String {
    match input {
        InputPlan::Bytes { name, kind: BytesKind::Text, .. } => format!("{name} BYTES: text"),
        InputPlan::Bytes { name, kind: BytesKind::Image, .. } => format!("{name} BYTES: images (sent as PNG)"),
        InputPlan::Tensor { name, datatype, item_shape, .. } => {
            let from = spec
                .options
                .preprocessor
                .clone()
                .or_else(|| spec.options.card.as_ref().map(|d| d.join("preprocessor_config.json")))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!(
                "{name} {datatype} {}: images preprocessed here by {from}",
                oip::shape_text(&batch_shape(-1, item_shape))
            )
        }
    }
}
