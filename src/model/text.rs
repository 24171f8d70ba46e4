//! Text inputs: the checkpoint's tokenizer.json, with a truncation length that follows what the
//! reference implementations do (sentence-transformers' `max_seq_length`, else
//! `model_max_length`, else tokenizer.json's truncation, never beyond the model's position table) and padding to
//! the longest sequence of a batch with an attention mask. Each text is tokenized once: its full
//! length (before truncation) is kept for monitoring ([`TextLength`]), then it is truncated
//! exactly as the tokenizers library would and given the model's special tokens.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::models::ModelWrapper;
use tokenizers::{Encoding, PostProcessor as _, Tokenizer, TruncationDirection};

use super::ModelError;
use crate::source::ModelFiles;

/// Tokenized texts as tensors.
pub struct EncodedBatch {
    /// `(batch, seq)` u32 token ids.
    pub input_ids: Tensor,
    /// `(batch, seq)` f32, 1 for real tokens and 0 for padding.
    pub attention_mask: Tensor,
    /// `(batch, seq)` u32 segment ids, for text pairs whose tokenizer marks the second text (BERT's
    /// and DeBERTa's 1 on the hypothesis); `None` when every id is 0.
    pub type_ids: Option<Tensor>,
    /// Token ids per text, before padding.
    pub ids: Vec<Vec<u32>>,
    pub has_padding: bool,
    /// Each text's length before truncation.
    pub lengths: Vec<TextLength>,
}

/// How long a text is for its model, before truncation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextLength {
    /// Unicode scalar values.
    pub chars: usize,
    /// Tokens, with the special tokens the model adds, before truncation.
    pub tokens: usize,
    /// Tokens that are the tokenizer's unknown token (never a special token the model adds).
    pub unknown: usize,
    /// The model did not see all of the text: more tokens than its maximum length, or a text so
    /// long that it was cut before tokenizing (then `tokens` counts the part that was kept).
    pub truncated: bool,
}

/// A tokenizer configured for one model.
pub struct TextEncoder {
    /// Without truncation or padding: [`TextEncoder::encode`] truncates itself.
    tokenizer: Tokenizer,
    max_len: usize,
    pad_id: u32,
    /// Special tokens the post-processor adds to one text ([CLS] and [SEP]: 2).
    added_tokens: usize,
    /// ... and to a pair of texts ([CLS] a [SEP] b [SEP]: 3).
    added_pair_tokens: usize,
    unknown_id: Option<u32>,
}

impl TextEncoder {
    /// `position_limit` is the longest sequence the model's position table allows.
    pub fn load(files: &ModelFiles, position_limit: usize, config_pad_id: Option<u32>) -> Result<Self, ModelError> {
        let (path, mut tokenizer) = match (&files.tokenizer, &files.sentencepiece) {
            (Some(path), _) => (
                path,
                Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
                    path: path.into(),
                    reason: format!("not a valid tokenizer.json: {e}"),
                })?,
            ),
            // transformers has SigLIP v1's tokenizer only as a SentencePiece-backed class.
            (None, Some(spiece)) if tokenizer_class(files).as_deref() == Some("SiglipTokenizer") => (
                spiece,
                super::spm::siglip_tokenizer(spiece, files.tokenizer_config.as_deref())
                    .map_err(|reason| ModelError::Tokenizer { path: spiece.into(), reason })?,
            ),
            _ => return Err(ModelError::MissingTokenizer(files.root.clone())),
        };
        let st_max = files.st_config.as_deref().and_then(|p| read_usize(p, "max_seq_length"));
        let file_max = tokenizer.get_truncation().map(|t| t.max_length);
        let config_max = files
            .tokenizer_config
            .as_deref()
            .and_then(|p| read_usize(p, "model_max_length"))
            .filter(|&n| n < 1_000_000);
        // transformers truncates to tokenizer_config.json's model_max_length and overrides the
        // truncation saved in tokenizer.json on every call; that one is only a fallback.
        let max_len = st_max.or(config_max).or(file_max).unwrap_or(position_limit).min(position_limit).max(2);
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or(config_pad_id)
            .or_else(|| ["[PAD]", "<pad>", "<|endoftext|>"].iter().find_map(|t| tokenizer.token_to_id(t)))
            .unwrap_or(0);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::Tokenizer { path: path.into(), reason: e.to_string() })?;
        tokenizer.with_padding(None);
        let added_tokens = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
        let added_pair_tokens = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(true));
        let unknown_id = unknown_token_id(&tokenizer);
        Ok(Self { tokenizer, max_len, pad_id, added_tokens, added_pair_tokens, unknown_id })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The checkpoint's tokenizer, without truncation or padding.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The tokenizer's unknown token (`[UNK]`, `<unk>`), if it has one.
    pub fn unknown_id(&self) -> Option<u32> {
        self.unknown_id
    }

    /// How long `text` is for this model (the same tokenization [`TextEncoder::encode`] does).
    pub fn measure(&self, text: &str) -> Result<TextLength, ModelError> {
        let input = truncate_chars(text, self.char_budget(self.max_len));
        let raw = self
            .tokenizer
            .encode(input, false)
            .map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))?;
        Ok(self.length(text, input, &raw))
    }

    /// Very long inputs are cut before tokenizing: no token spans more than 1000 characters.
    fn char_budget(&self, max_len: usize) -> usize {
        max_len.saturating_mul(1000).max(100_000)
    }

    /// `raw` is `kept` (a prefix of `text`) tokenized without special tokens.
    fn length(&self, text: &str, kept: &str, raw: &Encoding) -> TextLength {
        let tokens = raw.len() + self.added_tokens;
        let unknown = self.unknown_id.map_or(0, |unk| raw.get_ids().iter().filter(|&&id| id == unk).count());
        let cut = kept.len() < text.len();
        TextLength { chars: text.chars().count(), tokens, unknown, truncated: cut || tokens > self.max_len }
    }

    /// Tokenizes a batch, truncating each text to the model's limit (or `max_tokens` if lower).
    pub fn encode(
        &self,
        texts: &[String],
        max_tokens: Option<usize>,
        device: &Device,
    ) -> Result<EncodedBatch, ModelError> {
        self.encode_to(texts, max_tokens, 0, device)
    }

    /// As `encode` with `padding="max_length"`: truncated to `length` tokens and padded to exactly
    /// `length` (SigLIP's pipeline pads every prompt to 64).
    pub fn encode_padded(&self, texts: &[String], length: usize, device: &Device) -> Result<EncodedBatch, ModelError> {
        self.encode_to(texts, Some(length), length, device)
    }

    fn encode_to(
        &self,
        texts: &[String],
        max_tokens: Option<usize>,
        pad_to: usize,
        device: &Device,
    ) -> Result<EncodedBatch, ModelError> {
        if texts.is_empty() {
            return Err(ModelError::Input("no text given".into()));
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            let which = if texts.len() > 1 { format!(" (input {})", i + 1) } else { String::new() };
            return Err(ModelError::Input(format!("empty text{which}: there is nothing to run the model on")));
        }
        let max_len = max_tokens.map_or(self.max_len, |m| m.clamp(2, self.max_len));
        let budget = self.char_budget(max_len);
        let inputs: Vec<&str> = texts.iter().map(|t| truncate_chars(t, budget)).collect();
        let raw = self
            .tokenizer
            .encode_batch(inputs.clone(), false)
            .map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))?;
        let mut lengths = Vec::with_capacity(texts.len());
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(texts.len());
        // What `Tokenizer::encode(text, true)` does with truncation to `max_len` (right side,
        // no stride), on the one tokenization that also gave the full length.
        let keep = max_len.saturating_sub(self.added_tokens);
        for ((text, kept), mut encoding) in texts.iter().zip(&inputs).zip(raw) {
            lengths.push(self.length(text, kept, &encoding));
            if encoding.len() > keep {
                encoding.truncate(keep, 0, TruncationDirection::Right);
                // The cut-off pieces are never run; post-processing them would be wasted work.
                drop(encoding.take_overflowing());
            }
            let encoding = self
                .tokenizer
                .post_process(encoding, None, true)
                .map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))?;
            ids.push(encoding.get_ids().to_vec());
        }
        self.padded(ids, None, lengths, pad_to, device)
    }

    /// Tokenizes every (premise, hypothesis) pair, premise-major (the pairs of premise `i` are rows
    /// `i * hypotheses.len()..`), as transformers' tokenizers do with `truncation="only_first"` (the
    /// zero-shot-classification pipeline): special tokens for a pair, and a premise too long for the
    /// model cut from its end so that the hypothesis stays whole. `lengths` has one entry per premise.
    pub fn encode_pairs(
        &self,
        premises: &[String],
        hypotheses: &[String],
        device: &Device,
    ) -> Result<EncodedBatch, ModelError> {
        if premises.is_empty() || hypotheses.is_empty() {
            return Err(ModelError::Input("no text given".into()));
        }
        let budget = self.char_budget(self.max_len);
        let tokenize = |text: &str| {
            self.tokenizer.encode(text, false).map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))
        };
        // Each text and each hypothesis is tokenized once; a pair clones the two encodings.
        let hypotheses = hypotheses.iter().map(|h| Ok((h, tokenize(h)?))).collect::<Result<Vec<_>, ModelError>>()?;
        let pairs = premises.len() * hypotheses.len();
        let (mut ids, mut type_ids) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
        let mut lengths = Vec::with_capacity(premises.len());
        for premise in premises {
            if premise.trim().is_empty() {
                return Err(ModelError::Input("empty text: there is nothing to run the model on".into()));
            }
            let kept = truncate_chars(premise, budget);
            let whole = tokenize(kept)?;
            lengths.push(self.length(premise, kept, &whole));
            for (hypothesis, second) in &hypotheses {
                let mut first = whole.clone();
                let total = first.len() + second.len() + self.added_pair_tokens;
                if total > self.max_len {
                    let excess = total - self.max_len;
                    if excess >= first.len() {
                        return Err(ModelError::Input(format!(
                            "the hypothesis \"{hypothesis}\" takes {} of the model's {} tokens, leaving none for the text; use a shorter label or template",
                            second.len() + self.added_pair_tokens,
                            self.max_len
                        )));
                    }
                    first.truncate(first.len() - excess, 0, TruncationDirection::Right);
                    drop(first.take_overflowing());
                }
                let encoding = self
                    .tokenizer
                    .post_process(first, Some(second.clone()), true)
                    .map_err(|e| ModelError::Input(format!("cannot tokenize the text pair: {e}")))?;
                ids.push(encoding.get_ids().to_vec());
                type_ids.push(encoding.get_type_ids().to_vec());
            }
        }
        let types = type_ids.iter().flatten().any(|&t| t != 0).then_some(type_ids);
        self.padded(ids, types, lengths, 0, device)
    }

    /// Pads token ids (and segment ids) to the longest sequence or `pad_to` if longer, with the
    /// attention mask.
    fn padded(
        &self,
        ids: Vec<Vec<u32>>,
        type_ids: Option<Vec<Vec<u32>>>,
        lengths: Vec<TextLength>,
        pad_to: usize,
        device: &Device,
    ) -> Result<EncodedBatch, ModelError> {
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if longest == 0 {
            return Err(ModelError::Input("the tokenizer produced no tokens for this text".into()));
        }
        let longest = longest.max(pad_to);
        let pad = |rows: &[Vec<u32>], value: u32| -> Vec<u32> {
            let mut flat = Vec::with_capacity(rows.len() * longest);
            for seq in rows {
                flat.extend_from_slice(seq);
                flat.extend(std::iter::repeat_n(value, longest - seq.len()));
            }
            flat
        };
        let mut mask = Vec::with_capacity(ids.len() * longest);
        for seq in &ids {
            mask.extend(std::iter::repeat_n(1f32, seq.len()));
            mask.extend(std::iter::repeat_n(0f32, longest - seq.len()));
        }
        let has_padding = ids.iter().any(|s| s.len() < longest);
        let type_ids = type_ids.map(|t| Tensor::from_vec(pad(&t, 0), (t.len(), longest), device)).transpose()?;
        Ok(EncodedBatch {
            input_ids: Tensor::from_vec(pad(&ids, self.pad_id), (ids.len(), longest), device)?,
            attention_mask: Tensor::from_vec(mask, (ids.len(), longest), device)?,
            type_ids,
            ids,
            has_padding,
            lengths,
        })
    }
}

/// The id of the tokenizer model's unknown token. Unigram models keep it private; their
/// serialized form (done once, at load) names it.
fn unknown_token_id(tokenizer: &Tokenizer) -> Option<u32> {
    match tokenizer.get_model() {
        ModelWrapper::WordPiece(m) => tokenizer.token_to_id(&m.unk_token),
        ModelWrapper::WordLevel(m) => tokenizer.token_to_id(&m.unk_token),
        ModelWrapper::BPE(m) => m.get_unk_token().as_deref().and_then(|t| tokenizer.token_to_id(t)),
        ModelWrapper::Unigram(m) => {
            serde_json::to_value(m).ok()?.get("unk_id")?.as_u64().and_then(|id| u32::try_from(id).ok())
        }
    }
}

fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// tokenizer_config.json's `tokenizer_class`.
fn tokenizer_class(files: &ModelFiles) -> Option<String> {
    let text = std::fs::read(files.tokenizer_config.as_deref()?).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
    json.get("tokenizer_class")?.as_str().map(str::to_string)
}

fn read_usize(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read(path).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
    json.get(key)?.as_u64().map(|n| n as usize)
}
