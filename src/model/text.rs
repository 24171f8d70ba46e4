//! Text inputs: the checkpoint's tokenizer.json, with a truncation length that follows what the
//! reference implementations do (sentence-transformers' `max_seq_length`, else tokenizer.json's
//! truncation, else `model_max_length`, never beyond the model's position table) and padding to
//! the longest sequence of a batch with an attention mask.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{Tokenizer, TruncationParams};

use super::ModelError;
use crate::source::ModelFiles;

/// Tokenized texts as tensors.
pub struct EncodedBatch {
    /// `(batch, seq)` u32 token ids.
    pub input_ids: Tensor,
    /// `(batch, seq)` f32, 1 for real tokens and 0 for padding.
    pub attention_mask: Tensor,
    /// Token ids per text, before padding.
    pub ids: Vec<Vec<u32>>,
    pub has_padding: bool,
}

/// A tokenizer configured for one model.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl TextEncoder {
    /// `position_limit` is the longest sequence the model's position table allows.
    pub fn load(files: &ModelFiles, position_limit: usize, config_pad_id: Option<u32>) -> Result<Self, ModelError> {
        let path = files.tokenizer.as_deref().ok_or_else(|| ModelError::MissingTokenizer(files.root.clone()))?;
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
            path: path.into(),
            reason: format!("not a valid tokenizer.json: {e}"),
        })?;
        let st_max = files.st_config.as_deref().and_then(|p| read_usize(p, "max_seq_length"));
        let file_max = tokenizer.get_truncation().map(|t| t.max_length);
        let config_max = files
            .tokenizer_config
            .as_deref()
            .and_then(|p| read_usize(p, "model_max_length"))
            .filter(|&n| n < 1_000_000);
        let max_len = st_max.or(file_max).or(config_max).unwrap_or(position_limit).min(position_limit).max(2);
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or(config_pad_id)
            .or_else(|| ["[PAD]", "<pad>", "<|endoftext|>"].iter().find_map(|t| tokenizer.token_to_id(t)))
            .unwrap_or(0);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| ModelError::Tokenizer { path: path.into(), reason: e.to_string() })?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer, max_len, pad_id })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes a batch, truncating each text to the model's limit (or `max_tokens` if lower).
    pub fn encode(
        &self,
        texts: &[String],
        max_tokens: Option<usize>,
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
        let mut tokenizer = self.tokenizer.clone();
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| ModelError::Input(format!("tokenizer: {e}")))?;
        // Very long inputs are cut before tokenizing: no token spans more than 1000 characters.
        let budget = max_len.saturating_mul(1000).max(100_000);
        let inputs: Vec<&str> = texts.iter().map(|t| truncate_chars(t, budget)).collect();
        let encodings = tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| ModelError::Input(format!("cannot tokenize the text: {e}")))?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let longest = ids.iter().map(Vec::len).max().unwrap_or(0);
        if longest == 0 {
            return Err(ModelError::Input("the tokenizer produced no tokens for this text".into()));
        }
        let mut flat_ids = Vec::with_capacity(ids.len() * longest);
        let mut mask = Vec::with_capacity(ids.len() * longest);
        for seq in &ids {
            flat_ids.extend_from_slice(seq);
            flat_ids.extend(std::iter::repeat_n(self.pad_id, longest - seq.len()));
            mask.extend(std::iter::repeat_n(1f32, seq.len()));
            mask.extend(std::iter::repeat_n(0f32, longest - seq.len()));
        }
        let has_padding = ids.iter().any(|s| s.len() < longest);
        Ok(EncodedBatch {
            input_ids: Tensor::from_vec(flat_ids, (ids.len(), longest), device)?,
            attention_mask: Tensor::from_vec(mask, (ids.len(), longest), device)?,
            ids,
            has_padding,
        })
    }
}

fn truncate_chars(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

fn read_usize(path: &Path, key: &str) -> Option<usize> {
    let text = std::fs::read(path).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&text).ok()?;
    json.get(key)?.as_u64().map(|n| n as usize)
}
