//! Zero-shot text classification with any NLI sequence classifier, as transformers'
//! `zero-shot-classification` pipeline runs it: each text is the premise, each candidate label
//! goes into the hypothesis template ("This example is {}." by default), and every
//! (premise, hypothesis) pair runs through the classifier. Single-label: the entailment logits
//! soft-maxed over the candidates. Multi-label (or a single candidate): for each candidate on its
//! own, the softmax of (contradiction, entailment) logits, taking entailment.
//!
//! The classifier is any of ModelDeck's text classifier families; this wrapper only builds the
//! pairs and regroups the answers, so each family's own network and tokenizer do the work.

use super::{prompts, Batch, ModelError, Network, Request, Response, Scores, Task, TextEncoder};

/// The pipeline's default `hypothesis_template`.
pub const HYPOTHESIS_TEMPLATE: &str = "This example is {}.";

/// How a batch of pairs regroups into one answer per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLayout {
    /// Candidate labels per text (the pairs of text `i` are rows `i * labels..`).
    pub labels: usize,
    pub multi_label: bool,
}

/// Which logits mean entailment and contradiction, from the checkpoint's labels: entailment is
/// the first label starting with "entail" (any case), contradiction is label 0, or the last label
/// when entailment is label 0 (the pipeline's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NliLabels {
    pub entailment: usize,
    pub contradiction: usize,
}

impl NliLabels {
    /// `None` when no label starts with "entail": the model is not an NLI model.
    pub fn find(labels: &[String]) -> Option<Self> {
        let entailment = labels.iter().position(|l| l.to_lowercase().starts_with("entail"))?;
        if labels.len() < 2 {
            return None;
        }
        let contradiction = if entailment == 0 { labels.len() - 1 } else { 0 };
        Some(Self { entailment, contradiction })
    }
}

/// An NLI text classifier answering zero-shot requests.
pub struct ZeroShotText {
    classifier: Box<dyn Network>,
    nli: NliLabels,
}

impl ZeroShotText {
    pub fn new(classifier: Box<dyn Network>, nli: NliLabels) -> Self {
        Self { classifier, nli }
    }

    fn encoder(&self) -> Result<&TextEncoder, ModelError> {
        self.classifier.text_encoder().ok_or_else(|| ModelError::Input("this model has no tokenizer".into()))
    }

    /// One text's scores from its pairs' logits (`labels` rows of the classifier's outputs).
    fn scores(&self, rows: &[Scores], multi_label: bool) -> Result<Scores, ModelError> {
        let NliLabels { entailment, contradiction } = self.nli;
        let logit = |row: &Scores, i: usize| {
            row.logits.get(i).copied().ok_or_else(|| {
                ModelError::Input(format!("the classifier gave {} logits; its labels name {}", row.logits.len(), i + 1))
            })
        };
        let entail = rows.iter().map(|r| logit(r, entailment)).collect::<Result<Vec<f32>, _>>()?;
        let probs = if multi_label || rows.len() == 1 {
            rows.iter()
                .map(|r| Ok(super::softmax(&[logit(r, contradiction)?, logit(r, entailment)?])[1]))
                .collect::<Result<Vec<f32>, ModelError>>()?
        } else {
            super::softmax(&entail)
        };
        Ok(Scores { logits: entail, probs })
    }
}

impl Network for ZeroShotText {
    fn prepare(&self, request: &Request) -> Result<Batch, ModelError> {
        let Request::ZeroShotTexts { texts, labels, template, multi_label } = request else {
            return Err(ModelError::WrongInput {
                task: Task::ZeroShotTextClassification,
                expected: "text with candidate labels",
                given: match request {
                    Request::Texts { .. } => "text without candidate labels",
                    _ => "images",
                },
            });
        };
        if texts.is_empty() {
            return Err(ModelError::Input("no text given".into()));
        }
        let labels = super::candidate_labels(labels)?;
        let hypotheses = prompts(template.unwrap_or(HYPOTHESIS_TEMPLATE), &labels)?;
        let text = self.encoder()?.encode_pairs(texts, &hypotheses, &candle_core::Device::Cpu)?;
        Ok(Batch {
            size: texts.len(),
            pixel_values: None,
            text: Some(text),
            raw: None,
            pairs: Some(PairLayout { labels: labels.len(), multi_label: *multi_label }),
        })
    }

    fn forward(&self, batch: &Batch) -> Result<Response, ModelError> {
        let layout = batch.pairs.ok_or_else(|| ModelError::Input("this batch holds no text pairs".into()))?;
        let Response::Scores(rows) = self.classifier.forward(batch)? else {
            return Err(ModelError::Input("the NLI classifier did not return scores".into()));
        };
        if layout.labels == 0 || rows.len() != batch.size * layout.labels {
            return Err(ModelError::Input(format!(
                "{} answers for {} texts with {} labels",
                rows.len(),
                batch.size,
                layout.labels
            )));
        }
        let scores =
            rows.chunks(layout.labels).map(|chunk| self.scores(chunk, layout.multi_label)).collect::<Result<_, _>>()?;
        Ok(Response::Scores(scores))
    }

    fn text_encoder(&self) -> Option<&TextEncoder> {
        self.classifier.text_encoder()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn entailment_and_contradiction_follow_the_pipeline() {
        let mnli = NliLabels::find(&labels(&["contradiction", "neutral", "entailment"])).unwrap();
        assert_eq!(mnli, NliLabels { entailment: 2, contradiction: 0 });
        let first = NliLabels::find(&labels(&["ENTAILMENT", "neutral", "contradiction"])).unwrap();
        assert_eq!(first, NliLabels { entailment: 0, contradiction: 2 });
        let two = NliLabels::find(&labels(&["entailment", "not_entailment"])).unwrap();
        assert_eq!(two, NliLabels { entailment: 0, contradiction: 1 });
        assert_eq!(NliLabels::find(&labels(&["negative", "positive"])), None);
        assert_eq!(NliLabels::find(&labels(&["entailment"])), None);
    }
}
