//! SentencePiece models (`spiece.model`) for checkpoints that ship no tokenizer.json: SigLIP v1
//! (google/siglip-*), whose tokenizer transformers only has as a slow, SentencePiece-backed class.
//! The model file is a protobuf `ModelProto`; its pieces, scores and normaliser charsmap become a
//! tokenizers-library Unigram tokenizer that does what transformers' `SiglipTokenizer` does:
//! lower-case (its `do_lower_case`, on by default), drop ASCII punctuation, collapse whitespace
//! and strip (its `canonicalize_text`), the model's own charsmap normalisation (NFKC for the
//! released checkpoints), "▁" before every word, and `</s>` after the text.

use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value};
use tokenizers::Tokenizer;

/// One piece of the vocabulary.
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    text: String,
    score: f32,
    /// SentencePiece's type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    kind: u64,
}

/// What ModelDeck reads of a `ModelProto`.
#[derive(Debug, Default)]
struct SentencePieceModel {
    pieces: Vec<Piece>,
    charsmap: Vec<u8>,
}

/// A minimal protobuf reader: varints, fixed32 and length-delimited fields.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("field runs past the end")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// The next field number and value, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.at >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Field::Bytes(self.take(len)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => return Err(format!("unsupported protobuf wire type {other}")),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn parse(bytes: &[u8]) -> Result<SentencePieceModel, String> {
    let mut model = SentencePieceModel::default();
    let mut top = Reader::new(bytes);
    while let Some((number, field)) = top.next()? {
        match (number, field) {
            // repeated SentencePiece pieces = 1
            (1, Field::Bytes(body)) => {
                let mut piece = Piece { text: String::new(), score: 0.0, kind: 1 };
                let mut inner = Reader::new(body);
                while let Some((n, f)) = inner.next()? {
                    match (n, f) {
                        (1, Field::Bytes(text)) => {
                            piece.text = String::from_utf8(text.to_vec()).map_err(|_| "a piece is not UTF-8")?
                        }
                        (2, Field::Fixed32(bits)) => piece.score = f32::from_bits(bits),
                        (3, Field::Varint(kind)) => piece.kind = kind,
                        _ => {}
                    }
                }
                model.pieces.push(piece);
            }
            // NormalizerSpec normalizer_spec = 3; its precompiled_charsmap = 2
            (3, Field::Bytes(body)) => {
                let mut inner = Reader::new(body);
                while let Some((n, f)) = inner.next()? {
                    if let (2, Field::Bytes(map)) = (n, f) {
                        model.charsmap = map.to_vec();
                    }
                }
            }
            _ => {}
        }
    }
    if model.pieces.is_empty() {
        return Err("no vocabulary (not a SentencePiece model file?)".into());
    }
    Ok(model)
}

/// transformers' `SiglipTokenizer` as a tokenizers-library tokenizer, from `spiece.model` and the
/// checkpoint's tokenizer_config.json (`do_lower_case`, `eos_token`).
pub fn siglip_tokenizer(spiece: &Path, tokenizer_config: Option<&Path>) -> Result<Tokenizer, String> {
    let bytes = std::fs::read(spiece).map_err(|e| e.to_string())?;
    let model = parse(&bytes)?;
    let config: Value = tokenizer_config
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let token_text = |key: &str, default: &str| -> String {
        match config.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or(default).to_string(),
            _ => default.to_string(),
        }
    };
    let lower = config.get("do_lower_case").and_then(Value::as_bool).unwrap_or(true);
    let eos = token_text("eos_token", "</s>");
    let unk_id = model.pieces.iter().position(|p| p.kind == 2).ok_or("the model has no unknown piece")?;
    let eos_id = model.pieces.iter().position(|p| p.text == eos).ok_or(format!("the model has no `{eos}` piece"))?;
    // Control and unknown pieces (<pad>, </s>, <unk>) are matched whole in the text, as the slow
    // tokenizer splits on its special tokens first.
    let added: Vec<Value> = model
        .pieces
        .iter()
        .enumerate()
        .filter(|(_, p)| matches!(p.kind, 2 | 3))
        .map(|(id, p)| {
            json!({"id": id, "content": p.text, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let mut normalizers = vec![json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "})];
    if lower {
        normalizers.push(json!({"type": "Lowercase"}));
    }
    normalizers.extend([
        // Python's string.punctuation: the ASCII punctuation characters.
        json!({"type": "Replace", "pattern": {"Regex": "[!-/:-@\\[-`{-~]"}, "content": ""}),
        json!({"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}),
        json!({"type": "Strip", "strip_left": true, "strip_right": true}),
    ]);
    if !model.charsmap.is_empty() {
        let map = base64::engine::general_purpose::STANDARD.encode(&model.charsmap);
        normalizers.push(json!({"type": "Precompiled", "precompiled_charsmap": map}));
    }
    let vocab: Vec<Value> = model.pieces.iter().map(|p| json!([p.text, p.score as f64])).collect();
    let special = |id: &str| json!({"SpecialToken": {"id": id, "type_id": 0}});
    let sequence = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [sequence("A"), special(&eos)],
            "pair": [sequence("A"), special(&eos), sequence("B"), special(&eos)],
            "special_tokens": {eos.clone(): {"id": eos, "ids": [eos_id], "tokens": [eos]}},
        },
        "decoder": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "always", "split": true},
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": false},
    });
    spec.to_string().parse::<Tokenizer>().map_err(|e| format!("cannot build a tokenizer from it: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, body: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    fn piece(text: &str, score: f32, kind: u64) -> Vec<u8> {
        let mut p = Vec::new();
        bytes_field(1, text.as_bytes(), &mut p);
        varint(2 << 3 | 5, &mut p);
        p.extend_from_slice(&score.to_le_bytes());
        varint(3 << 3, &mut p);
        varint(kind, &mut p);
        p
    }

    #[test]
    fn reads_pieces_scores_types_and_the_charsmap() {
        let mut proto = Vec::new();
        bytes_field(1, &piece("<pad>", 0.0, 3), &mut proto);
        bytes_field(1, &piece("</s>", 0.0, 3), &mut proto);
        bytes_field(1, &piece("<unk>", 0.0, 2), &mut proto);
        bytes_field(1, &piece("\u{2581}cat", -1.5, 1), &mut proto);
        let mut normalizer = Vec::new();
        bytes_field(1, b"nmt_nfkc", &mut normalizer);
        bytes_field(2, &[1, 2, 3], &mut normalizer);
        bytes_field(3, &normalizer, &mut proto);
        let model = parse(&proto).unwrap();
        assert_eq!(model.pieces.len(), 4);
        assert_eq!(model.pieces[3], Piece { text: "\u{2581}cat".into(), score: -1.5, kind: 1 });
        assert_eq!(model.pieces[2].kind, 2);
        assert_eq!(model.charsmap, vec![1, 2, 3]);
        assert!(parse(&proto[..proto.len() - 2]).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"\x0f\xff").is_err());
    }
}
