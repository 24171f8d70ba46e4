//! config.json: which architecture a checkpoint is, its hyper-parameters and its labels.

use std::path::{Path, PathBuf};

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
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Self::ImageClassification => "image-classification",
            Self::TextClassification => "text-classification",
            Self::TextEmbedding => "text-embedding",
            Self::ZeroShotImageClassification => "zero-shot-image-classification",
        }
    }
    /// Whether the model's labels come from its config (not from the user, not embeddings).
    pub fn has_fixed_labels(self) -> bool {
        matches!(self, Self::ImageClassification | Self::TextClassification)
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
}

/// Architecture names as they appear in config.json, for matching and for error messages.
const SUPPORTED: [(&str, Architecture); 11] = [
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
            Self::Bert | Self::DistilBert | Self::Roberta | Self::XlmRoberta | Self::SentenceClassifier => {
                Task::TextClassification
            }
            Self::SentenceBert => Task::TextEmbedding,
            Self::Clip => Task::ZeroShotImageClassification,
        }
    }
}

/// A parsed config.json (or a sub-config such as CLIP's `vision_config`).
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub path: PathBuf,
    pub json: Value,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read(path).map_err(|e| ModelError::Config { path: path.into(), reason: e.to_string() })?;
        let json: Value = serde_json::from_slice(&text)
            .map_err(|e| ModelError::Config { path: path.into(), reason: format!("not valid JSON: {e}") })?;
        if !json.is_object() {
            return Err(ModelError::Config { path: path.into(), reason: "must be a JSON object".into() });
        }
        Ok(Self { path: path.into(), json })
    }

    pub fn error(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Config { path: self.path.clone(), reason: reason.into() }
    }

    /// A nested config (e.g. `text_config`); missing means all defaults.
    pub fn sub(&self, key: &str) -> Self {
        Self { path: self.path.clone(), json: self.json.get(key).cloned().unwrap_or(Value::Object(Default::default())) }
    }

    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize, ModelError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| self.error(format!("`{key}` must be a non-negative integer, found {v}"))),
        }
    }

    pub fn usize_req(&self, key: &str) -> Result<usize, ModelError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Err(self.error(format!("missing `{key}`"))),
            Some(_) => self.usize_or(key, 0),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, ModelError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.error(format!("`{key}` must be a number, found {v}"))),
        }
    }

    pub fn str_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.json.get(key).and_then(Value::as_str).unwrap_or(default)
    }

    pub fn bool_or(&self, key: &str, default: bool) -> bool {
        self.json.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    pub fn usize_list(&self, key: &str) -> Result<Vec<usize>, ModelError> {
        let list =
            self.json.get(key).and_then(Value::as_array).ok_or_else(|| self.error(format!("missing list `{key}`")))?;
        list.iter()
            .map(|v| v.as_u64().map(|n| n as usize).ok_or_else(|| self.error(format!("`{key}` must hold integers"))))
            .collect()
    }

    /// Which architecture to build: `architectures[0]`, else `model_type`; sentence-transformers
    /// folders are recognised by their modules.json.
    pub fn architecture(&self, files: &ModelFiles) -> Result<Architecture, ModelError> {
        let declared =
            self.json.get("architectures").and_then(Value::as_array).and_then(|a| a.first()).and_then(Value::as_str);
        let model_type = self.json.get("model_type").and_then(Value::as_str);
        let found = match declared {
            Some(name) => SUPPORTED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a),
            None => match model_type {
                Some("clip") => Some(Architecture::Clip),
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

    /// Labels in id order from `id2label`, falling back to `LABEL_i` for `num_labels` classes.
    pub fn labels(&self) -> Vec<String> {
        let map = self.json.get("id2label").and_then(Value::as_object);
        let n = map
            .map(|m| m.len())
            .or_else(|| self.json.get("num_labels").and_then(Value::as_u64).map(|n| n as usize))
            .unwrap_or(2);
        (0..n)
            .map(|i| {
                map.and_then(|m| m.get(&i.to_string()))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("LABEL_{i}"))
            })
            .collect()
    }

    /// Softmax for single-label classification, sigmoid for multi-label or a single logit (as
    /// the transformers pipelines do).
    pub fn uses_sigmoid(&self, num_labels: usize) -> bool {
        num_labels == 1 || self.str_or("problem_type", "") == "multi_label_classification"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: Value) -> ModelConfig {
        ModelConfig { path: "config.json".into(), json }
    }

    #[test]
    fn labels_follow_id2label_order_with_fallback() {
        let c = config(serde_json::json!({"id2label": {"1": "dog", "0": "cat"}}));
        assert_eq!(c.labels(), vec!["cat", "dog"]);
        let c = config(serde_json::json!({"num_labels": 3}));
        assert_eq!(c.labels(), vec!["LABEL_0", "LABEL_1", "LABEL_2"]);
        let c = config(serde_json::json!({"id2label": {"0": "a", "2": "c", "1": 5}}));
        assert_eq!(c.labels(), vec!["a", "LABEL_1", "c"]);
    }

    #[test]
    fn numbers_are_checked() {
        let c = config(serde_json::json!({"hidden_size": "big", "layers": 4}));
        assert!(c.usize_or("hidden_size", 1).unwrap_err().to_string().contains("hidden_size"));
        assert_eq!(c.usize_or("layers", 1).unwrap(), 4);
        assert_eq!(c.usize_or("missing", 7).unwrap(), 7);
        assert!(c.usize_req("missing").is_err());
    }
}
