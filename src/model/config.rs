//! config.json: which architecture a checkpoint is, and the typed reading of it. Each network
//! declares its own `#[derive(Deserialize)]` config beside its code (as candle-transformers does);
//! this module finds the architecture, reads the label fields every classifier shares, and turns
//! a field of the wrong type or a missing required field into an error that names the field.
//!
//! Which fields are required: transformers' `save_pretrained` writes every field of a model's
//! config class, so the fields that set the size of the network (widths, depths, heads,
//! vocabulary, positions, patches) are always there in a real checkpoint, and a guess would build
//! a different network (a missing `num_attention_heads` would split the heads wrongly without any
//! tensor shape noticing). Those are required. The others (activations, epsilons, flags, token
//! ids, fields added to a class after its first release) default to what transformers' config
//! class itself defaults them to. Fields ModelDeck does not read are ignored, as transformers
//! keeps them without looking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::ModelError;
use crate::source::ModelFiles;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    ImageClassification,
    TextClassification,
    TextEmbedding,
    ZeroShotImageClassification,
    /// An NLI classifier scoring candidate labels the user gives (the `zero-shot-classification`
    /// pipeline).
    ZeroShotTextClassification,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Self::ImageClassification => "image-classification",
            Self::TextClassification => "text-classification",
            Self::TextEmbedding => "text-embedding",
            Self::ZeroShotImageClassification => "zero-shot-image-classification",
            Self::ZeroShotTextClassification => "zero-shot-text-classification",
        }
    }
    /// Whether the model's labels come from its config (not from the user, not embeddings).
    pub fn has_fixed_labels(self) -> bool {
        matches!(self, Self::ImageClassification | Self::TextClassification)
    }
    /// Whether the user names the labels (zero-shot models).
    pub fn takes_candidate_labels(self) -> bool {
        matches!(self, Self::ZeroShotImageClassification | Self::ZeroShotTextClassification)
    }
    pub fn takes_images(self) -> bool {
        matches!(self, Self::ImageClassification | Self::ZeroShotImageClassification)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The architectures ModelDeck can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Vit,
    ResNet,
    ConvNext,
    Bert,
    DistilBert,
    Roberta,
    XlmRoberta,
    SentenceBert,
    Clip,
    /// ModelDeck's own compact CNN (the demo models).
    Cnn,
    /// A sentence-transformers embedder with a trained linear head.
    SentenceClassifier,
    /// DeBERTa-v2 and DeBERTa-v3.
    DebertaV2,
    ModernBert,
    Siglip,
}

/// Architecture names as they appear in config.json, for matching and for error messages.
const SUPPORTED: [(&str, Architecture); 14] = [
    ("ViTForImageClassification", Architecture::Vit),
    ("ResNetForImageClassification", Architecture::ResNet),
    ("ConvNextForImageClassification", Architecture::ConvNext),
    ("BertForSequenceClassification", Architecture::Bert),
    ("DistilBertForSequenceClassification", Architecture::DistilBert),
    ("RobertaForSequenceClassification", Architecture::Roberta),
    ("XLMRobertaForSequenceClassification", Architecture::XlmRoberta),
    ("BertModel", Architecture::SentenceBert),
    ("CLIPModel", Architecture::Clip),
    ("ModelDeckCnnForImageClassification", Architecture::Cnn),
    ("ModelDeckSentenceClassifier", Architecture::SentenceClassifier),
    ("DebertaV2ForSequenceClassification", Architecture::DebertaV2),
    ("ModernBertForSequenceClassification", Architecture::ModernBert),
    ("SiglipModel", Architecture::Siglip),
];

pub fn supported_list() -> String {
    let mut names: Vec<&str> = SUPPORTED.iter().map(|(n, _)| *n).collect();
    names[7] = "BertModel (sentence-transformers)";
    names.join(", ")
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Self::SentenceBert => "BertModel (sentence-transformers)",
            other => SUPPORTED.iter().find(|(_, a)| *a == other).map(|(n, _)| *n).unwrap_or("?"),
        }
    }
    pub fn task(self) -> Task {
        match self {
            Self::Vit | Self::ResNet | Self::ConvNext | Self::Cnn => Task::ImageClassification,
            Self::Bert
            | Self::DistilBert
            | Self::Roberta
            | Self::XlmRoberta
            | Self::SentenceClassifier
            | Self::DebertaV2
            | Self::ModernBert => Task::TextClassification,
            Self::SentenceBert => Task::TextEmbedding,
            Self::Clip | Self::Siglip => Task::ZeroShotImageClassification,
        }
    }
}

/// A config.json, parsed as JSON and read into typed configs on demand.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub path: PathBuf,
    json: Value,
}

/// The fields that say which architecture a config describes.
#[derive(Deserialize)]
struct Declared {
    architectures: Option<Vec<String>>,
    model_type: Option<String>,
}

/// The label fields of transformers' `PretrainedConfig`, shared by every classifier.
#[derive(Deserialize)]
struct LabelFields {
    /// Keys are class indices written as strings (JSON keys are strings).
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
    problem_type: Option<ProblemType>,
}

/// transformers' `problem_type`: it accepts these three and refuses anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProblemType {
    Regression,
    SingleLabelClassification,
    MultiLabelClassification,
}

/// A classifier's outputs: one label per class, and how logits become probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Classes {
    /// In class-index order.
    pub labels: Vec<String>,
    /// Sigmoid for multi-label classification or a single logit, softmax otherwise (as the
    /// transformers pipelines choose).
    pub use_sigmoid: bool,
}

impl Classes {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read(path).map_err(|e| ModelError::Config { path: path.into(), reason: e.to_string() })?;
        let json: Value = serde_json::from_slice(&text)
            .map_err(|e| ModelError::Config { path: path.into(), reason: format!("not valid JSON: {e}") })?;
        Self::from_json(path, json)
    }

    /// A config already in memory; `path` is what errors name.
    pub fn from_json(path: &Path, json: Value) -> Result<Self, ModelError> {
        if !json.is_object() {
            return Err(ModelError::Config { path: path.into(), reason: "must be a JSON object".into() });
        }
        Ok(Self { path: path.into(), json })
    }

    pub fn error(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Config { path: self.path.clone(), reason: reason.into() }
    }

    /// Reads the whole config as `T`. A wrong type or a missing required field is an error that
    /// names the field by its path (`hidden_size`, `text_config.hidden_size`, `id2label.3`).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ModelError> {
        parse_value(&self.json).map_err(|reason| self.error(reason))
    }

    /// A nested config such as CLIP's `text_config`, read as `T`; a missing or null one is `{}`
    /// (all defaults, as transformers builds it). A `{key}_dict` beside it (the layout of older
    /// transformers releases) overrides its fields, as transformers' CLIPConfig does.
    pub fn parse_sub<T: DeserializeOwned>(&self, key: &str) -> Result<T, ModelError> {
        let mut merged = serde_json::Map::new();
        let dict_key = format!("{key}_dict");
        for name in [key, dict_key.as_str()] {
            match self.json.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::Object(fields)) => merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone()))),
                Some(other) => {
                    return Err(self.error(format!("field `{name}`: expected a JSON object, found {}", kind(other))))
                }
            }
        }
        parse_value(&Value::Object(merged)).map_err(|reason| self.error(format!("in `{key}`: {reason}")))
    }

    /// Which architecture to build: `architectures[0]`, else `model_type`; sentence-transformers
    /// folders are recognised by their modules.json.
    pub fn architecture(&self, files: &ModelFiles) -> Result<Architecture, ModelError> {
        let fields: Declared = self.parse()?;
        let declared = fields.architectures.as_ref().and_then(|a| a.first()).map(String::as_str);
        let model_type = fields.model_type.as_deref();
        let found = match declared {
            Some(name) => SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a),
            None => match model_type {
                Some("clip") => Some(Architecture::Clip),
                Some("siglip") => Some(Architecture::Siglip),
                Some("bert") if files.st_modules.is_some() => Some(Architecture::SentenceBert),
                _ => None,
            },
        };
        found.ok_or_else(|| ModelError::Unsupported {
            found: match (declared, model_type) {
                (Some(name), _) => name.to_string(),
                (None, Some(t)) => format!("model_type {t} (config.json has no `architectures` field)"),
                (None, None) => "none (config.json has neither `architectures` nor `model_type`)".into(),
            },
            supported: supported_list(),
        })
    }

    /// The classes from `id2label` (class indices 0..n, each once), else `LABEL_i` for
    /// `num_labels` classes (2 when neither is given, transformers' default).
    pub fn classes(&self) -> Result<Classes, ModelError> {
        let fields: LabelFields = self.parse()?;
        let labels: Vec<String> = match fields.id2label {
            Some(map) if !map.is_empty() => {
                let mut by_index: Vec<Option<String>> = vec![None; map.len()];
                for (key, label) in map {
                    let index = key.trim().parse::<usize>().ok().filter(|&i| i < by_index.len()).ok_or_else(|| {
                        self.error(format!(
                            "field `id2label`: key `{key}` is not a class index (the keys must be \"0\" to \"{}\")",
                            by_index.len() - 1
                        ))
                    })?;
                    if by_index[index].replace(label).is_some() {
                        return Err(self.error(format!("field `id2label`: class index {index} appears twice")));
                    }
                }
                // n distinct indices below n: every slot is filled.
                by_index.into_iter().map(Option::unwrap_or_default).collect()
            }
            _ => (0..fields.num_labels.unwrap_or(2)).map(|i| format!("LABEL_{i}")).collect(),
        };
        let use_sigmoid = labels.len() == 1 || fields.problem_type == Some(ProblemType::MultiLabelClassification);
        Ok(Classes { labels, use_sigmoid })
    }
}

/// Deserialises `json` as `T`; the error names the failing field's path.
fn parse_value<T: DeserializeOwned>(json: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("field `{path}`: {}", e.into_inner())
        }
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Defaults that transformers' config classes share, for `#[serde(default = "...")]`.
pub(crate) mod defaults {
    use crate::model::layers::Activation;

    pub fn num_channels() -> usize {
        3
    }
    pub fn gelu() -> Activation {
        Activation::Gelu
    }
    pub fn eps_1e_12() -> f64 {
        1e-12
    }
    pub fn yes() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> ModelConfig {
        ModelConfig::from_json(Path::new("config.json"), json).unwrap()
    }

    fn labels(json: Value) -> Result<Vec<String>, String> {
        config(json).classes().map(|c| c.labels).map_err(|e| e.to_string())
    }

    #[test]
    fn labels_follow_id2label_order_with_fallback() {
        assert_eq!(labels(serde_json::json!({"id2label": {"1": "dog", "0": "cat"}})).unwrap(), vec!["cat", "dog"]);
        // Ten classes: "10" sorts before "2" as a string but not as an index.
        let many: serde_json::Map<String, Value> = (0..11).map(|i| (i.to_string(), format!("c{i}").into())).collect();
        let got = labels(serde_json::json!({ "id2label": many })).unwrap();
        assert_eq!(got, (0..11).map(|i| format!("c{i}")).collect::<Vec<_>>());
        assert_eq!(labels(serde_json::json!({"num_labels": 3})).unwrap(), vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
        assert_eq!(labels(serde_json::json!({})).unwrap(), vec!["LABEL_0", "LABEL_1"]);
        // id2label wins over a disagreeing num_labels, as in transformers.
        assert_eq!(labels(serde_json::json!({"num_labels": 5, "id2label": {"0": "a"}})).unwrap(), vec!["a"]);
    }

    #[test]
    fn bad_label_maps_name_the_field() {
        let err = labels(serde_json::json!({"id2label": {"0": "a", "2": "c", "1": 5}})).unwrap_err();
        assert!(err.contains("field `id2label.1`") && err.contains("expected a string"), "{err}");
        let err = labels(serde_json::json!({"id2label": {"0": "a", "2": "c"}})).unwrap_err();
        assert!(err.contains("id2label") && err.contains("`2`"), "{err}");
        let err = labels(serde_json::json!({"id2label": {"0": "a", "x": "c"}})).unwrap_err();
        assert!(err.contains("id2label") && err.contains("`x`"), "{err}");
        let err = labels(serde_json::json!({"id2label": ["a", "b"]})).unwrap_err();
        assert!(err.contains("field `id2label`"), "{err}");
        let err = labels(serde_json::json!({"num_labels": "3"})).unwrap_err();
        assert!(err.contains("field `num_labels`"), "{err}");
        let err = labels(serde_json::json!({"problem_type": "ranking"})).unwrap_err();
        assert!(err.contains("field `problem_type`") && err.contains("multi_label_classification"), "{err}");
    }

    #[test]
    fn sigmoid_for_multi_label_or_one_logit() {
        let c =
            config(serde_json::json!({"id2label": {"0": "a", "1": "b"}, "problem_type": "multi_label_classification"}));
        assert!(c.classes().unwrap().use_sigmoid);
        assert!(config(serde_json::json!({"num_labels": 1})).classes().unwrap().use_sigmoid);
        assert!(!config(serde_json::json!({"num_labels": 3})).classes().unwrap().use_sigmoid);
    }

    #[derive(Debug, Deserialize)]
    struct Sub {
        #[serde(default = "defaults::num_channels")]
        width: usize,
        depth: usize,
    }

    #[test]
    fn sub_configs_merge_their_dict_and_name_their_path() {
        let c = config(serde_json::json!({"text_config": {"depth": 2, "width": 7}, "text_config_dict": {"depth": 4}}));
        let sub: Sub = c.parse_sub("text_config").unwrap();
        assert_eq!((sub.width, sub.depth), (7, 4));
        let c = config(serde_json::json!({"text_config": {"depth": "deep"}}));
        let err = c.parse_sub::<Sub>("text_config").unwrap_err().to_string();
        assert!(err.contains("in `text_config`: field `depth`: invalid type: string \"deep\""), "{err}");
        let err = config(serde_json::json!({"text_config": 3})).parse_sub::<Sub>("text_config").unwrap_err();
        assert!(err.to_string().contains("field `text_config`: expected a JSON object"), "{err}");
    }

    #[test]
    fn architecture_fields_are_typed() {
        let files = ModelFiles {
            root: PathBuf::new(),
            source: crate::source::ModelSource::Demo { name: "test".into() },
            revision: None,
            config: "config.json".into(),
            weights: Vec::new(),
            weights_format: crate::source::WeightsFormat::Safetensors,
            tokenizer: None,
            tokenizer_config: None,
            sentencepiece: None,
            preprocessor: None,
            st_modules: None,
            st_pooling: None,
            st_config: None,
        };
        let err = config(serde_json::json!({"architectures": "ViTForImageClassification"})).architecture(&files);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("field `architectures`") && err.contains("expected a sequence"), "{err}");
    }
}
