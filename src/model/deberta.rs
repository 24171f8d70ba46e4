//! DeBERTa-v2 and DeBERTa-v3 (`DebertaV2ForSequenceClassification`), written against transformers'
//! tensor names on ModelDeck's fused kernels.
//!
//! Why not candle-transformers' `debertav2`: its config requires fields transformers defaults
//! (`relative_attention`, `pooler_hidden_size`, `initializer_range`...), it recomputes the
//! relative-position projections on every call, and its layers are plain candle ops, outside the
//! kernels every other family runs on (and so outside `--precision int8|bf16`). Here the linear
//! layers are the shared [`Dense`] kernels and the disentangled attention is one fused pass per
//! (sequence, head): content-to-content, content-to-position and position-to-content scores added
//! in place before the softmax, with the position projections of the relative embeddings
//! computed once at load (they do not depend on the input).
//!
//! What transformers does, which this reproduces: scores
//! `(q_i·k_j + q_i·pk[δ(i,j)] + k_j·pq[δ(i,j)]) / √(d·s)` where `pk`, `pq` are the key and query
//! projections of the (layer-normed) relative embeddings, `δ(i,j)` the clamped, optionally
//! log-bucketed distance `i - j` shifted by the attention span, and `s` 1 plus the number of
//! position terms; post-norm layers as BERT; the context pooler (dense + activation on the first
//! token) before the classifier.

use candle_core::{Module, Tensor};
use candle_nn::{Embedding, Linear};
use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::head::{TextBackbone, TextClassifier};
use super::kernels::{self, Act, Dense, MatRef};
use super::layers::{Activation, EncoderSpec, LayerRest, BERT_NAMES};
use super::text::{EncodedBatch, TextEncoder};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

/// config.json of a DeBERTa-v2/v3 model (transformers' `DebertaV2Config`); the optional fields
/// default as that class does.
#[derive(Debug, Clone, Deserialize)]
pub struct DebertaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "eps_1e_7")]
    pub layer_norm_eps: f64,
    #[serde(default = "defaults::gelu")]
    pub hidden_act: Activation,
    #[serde(default)]
    pub relative_attention: bool,
    #[serde(default = "minus_one")]
    pub max_relative_positions: i64,
    #[serde(default = "minus_one")]
    pub position_buckets: i64,
    #[serde(default)]
    pub pos_att_type: PosAttType,
    #[serde(default)]
    pub share_att_key: bool,
    #[serde(default = "defaults::yes")]
    pub position_biased_input: bool,
    pub embedding_size: Option<usize>,
    #[serde(default)]
    pub norm_rel_ebd: Option<String>,
    #[serde(default)]
    pub conv_kernel_size: usize,
    pub pooler_hidden_size: Option<usize>,
    #[serde(default = "defaults::gelu")]
    pub pooler_hidden_act: Activation,
    pub pad_token_id: Option<usize>,
    pub attention_head_size: Option<usize>,
}

fn eps_1e_7() -> f64 {
    1e-7
}

fn minus_one() -> i64 {
    -1
}

/// `pos_att_type`: a list (`["p2c", "c2p"]`) or, in older configs, one string `"p2c|c2p"`.
#[derive(Debug, Clone, Default)]
pub struct PosAttType {
    pub c2p: bool,
    pub p2c: bool,
}

impl<'de> Deserialize<'de> for PosAttType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            Many(Vec<String>),
            None(()),
        }
        let names: Vec<String> = match Form::deserialize(deserializer)? {
            Form::One(s) => s.split('|').map(|p| p.trim().to_lowercase()).collect(),
            Form::Many(v) => v.into_iter().map(|p| p.trim().to_lowercase()).collect(),
            Form::None(()) => Vec::new(),
        };
        if let Some(other) = names.iter().find(|n| !matches!(n.as_str(), "c2p" | "p2c" | "")) {
            return Err(serde::de::Error::custom(format!(
                "unsupported position attention type `{other}` (supported: c2p, p2c)"
            )));
        }
        Ok(Self { c2p: names.iter().any(|n| n == "c2p"), p2c: names.iter().any(|n| n == "p2c") })
    }
}

/// Relative attention: the precomputed position projections of one layer.
struct PositionTerms {
    /// Key projection of the relative embeddings, `(2 * span) x all_head` (c2p).
    keys: Option<Vec<f32>>,
    /// Query projection, likewise (p2c).
    queries: Option<Vec<f32>>,
}

struct DebertaLayer {
    /// Query, key and value in one product.
    qkv: Dense,
    positions: Option<PositionTerms>,
    /// Output projection, MLP and layer norms: BERT's, under BERT's names.
    rest: LayerRest,
}

/// Distances between tokens as indices into the relative embeddings.
#[derive(Debug, Clone, Copy)]
struct RelativePositions {
    /// Half the number of relative embeddings: distances map to `0..2 * span`.
    span: usize,
    /// Log buckets beyond `buckets / 2` (DeBERTa-v3), when positive.
    buckets: i64,
    max_position: i64,
}

impl RelativePositions {
    /// transformers' `make_log_bucket_position` for one distance, in f32 as torch computes it.
    fn bucket(&self, distance: i64) -> i64 {
        if self.buckets <= 0 || self.max_position <= 0 {
            return distance;
        }
        let mid = self.buckets / 2;
        let abs = if distance < mid && distance > -mid { mid - 1 } else { distance.abs() };
        if abs <= mid {
            return distance;
        }
        let log = ((abs as f32 / mid as f32).ln() / ((self.max_position - 1) as f32 / mid as f32).ln()
            * (mid - 1) as f32)
            .ceil()
            + mid as f32;
        (log * distance.signum() as f32) as i64
    }

    /// `seq x seq` row-major: the embedding row for query `i` and key `j`.
    fn indices(&self, seq: usize) -> Vec<u32> {
        let span = self.span as i64;
        let by_distance: Vec<u32> =
            (-(seq as i64) + 1..seq as i64).map(|d| (self.bucket(d) + span).clamp(0, 2 * span - 1) as u32).collect();
        let mut out = Vec::with_capacity(seq * seq);
        for i in 0..seq {
            // distance i - j for j = 0.. is by_distance[(i - j) + seq - 1].
            out.extend((0..seq).map(|j| by_distance[i + seq - 1 - j]));
        }
        out
    }
}

struct Embeddings {
    word: Embedding,
    position: Option<Embedding>,
    token_type: Option<Embedding>,
    projection: Option<Linear>,
    norm: candle_nn::LayerNorm,
}

impl Embeddings {
    fn forward(&self, batch: &EncodedBatch) -> candle_core::Result<Tensor> {
        let t = batch.input_ids.dim(1)?;
        let mut x = self.word.forward(&batch.input_ids)?;
        if let Some(position) = &self.position {
            let ids = Tensor::arange(0u32, t as u32, batch.input_ids.device())?;
            x = x.broadcast_add(&position.forward(&ids)?.unsqueeze(0)?)?;
        }
        if let Some(table) = &self.token_type {
            x = match &batch.type_ids {
                // A one-row table has no second segment to look up.
                Some(types) if table.embeddings().dim(0)? > 1 => (x + table.forward(types)?)?,
                _ => x.broadcast_add(&table.embeddings().narrow(0, 0, 1)?)?,
            };
        }
        if let Some(projection) = &self.projection {
            x = projection.forward(&x)?;
        }
        self.norm.forward(&x)
    }
}

/// Embeddings, encoder and context pooler; [`TextClassifier`] adds the classifier.
pub struct DebertaBackbone {
    embeddings: Embeddings,
    layers: Vec<DebertaLayer>,
    relative: Option<RelativePositions>,
    heads: usize,
    head_size: usize,
    /// 1 plus one per position term: scores are divided by √(head_size · this).
    scale_factor: usize,
    hidden: usize,
    act: Act,
    pooler: Dense,
    pooler_act: Act,
}

impl DebertaBackbone {
    pub fn load(
        files: &ModelFiles,
        config: &ModelConfig,
        weights: &Weights,
    ) -> Result<TextClassifier<Self>, ModelError> {
        let cfg: DebertaConfig = config.parse()?;
        if cfg.conv_kernel_size > 0 {
            return Err(config.error(format!(
                "field `conv_kernel_size`: {} (the convolution layer of DeBERTa-v2-xlarge and larger) is not supported",
                cfg.conv_kernel_size
            )));
        }
        let heads = cfg.num_attention_heads;
        if heads == 0 || (cfg.attention_head_size.is_none() && !cfg.hidden_size.is_multiple_of(heads)) {
            return Err(
                config.error(format!("hidden size {} is not divisible by {heads} attention heads", cfg.hidden_size))
            );
        }
        let head_size = cfg.attention_head_size.unwrap_or(cfg.hidden_size / heads);
        let classes = config.classes()?;
        let name = Architecture::DebertaV2.name();
        let vb = weights.builder();
        let relative = cfg.relative_attention.then(|| {
            let max_position = if cfg.max_relative_positions < 1 {
                cfg.max_position_embeddings as i64
            } else {
                cfg.max_relative_positions
            };
            let span = if cfg.position_buckets > 0 { cfg.position_buckets } else { max_position };
            RelativePositions { span: span.max(1) as usize, buckets: cfg.position_buckets, max_position }
        });
        let pos = if relative.is_some() { cfg.pos_att_type.clone() } else { PosAttType::default() };
        let scale_factor = 1 + pos.c2p as usize + pos.p2c as usize;
        let text = TextEncoder::load(files, cfg.max_position_embeddings, Some(cfg.pad_token_id.unwrap_or(0) as u32))?;
        let built = (move || -> candle_core::Result<TextClassifier<Self>> {
            let d = vb.pp("deberta");
            let h = cfg.hidden_size;
            let e = d.pp("embeddings");
            let esize = cfg.embedding_size.unwrap_or(h);
            let embeddings = Embeddings {
                word: candle_nn::embedding(cfg.vocab_size, esize, e.pp("word_embeddings"))?,
                position: cfg
                    .position_biased_input
                    .then(|| candle_nn::embedding(cfg.max_position_embeddings, esize, e.pp("position_embeddings")))
                    .transpose()?,
                token_type: (cfg.type_vocab_size > 0)
                    .then(|| candle_nn::embedding(cfg.type_vocab_size, esize, e.pp("token_type_embeddings")))
                    .transpose()?,
                projection: (esize != h)
                    .then(|| candle_nn::linear_no_bias(esize, h, e.pp("embed_proj")))
                    .transpose()?,
                norm: candle_nn::layer_norm(h, cfg.layer_norm_eps, e.pp("LayerNorm"))?,
            };
            let enc = d.pp("encoder");
            let rel_embeddings = match &relative {
                Some(r) => {
                    let table = enc.get((2 * r.span, h), "rel_embeddings.weight")?;
                    let norm_rel = cfg.norm_rel_ebd.as_deref().unwrap_or("none").to_lowercase();
                    if norm_rel.split('|').any(|p| p.trim() == "layer_norm") {
                        Some(candle_nn::layer_norm(h, cfg.layer_norm_eps, enc.pp("LayerNorm"))?.forward(&table)?)
                    } else {
                        Some(table)
                    }
                }
                None => None,
            };
            let all = heads * head_size;
            let spec = EncoderSpec {
                hidden: h,
                heads,
                intermediate: cfg.intermediate_size,
                layers: cfg.num_hidden_layers,
                eps: cfg.layer_norm_eps,
                activation: cfg.hidden_act,
                pre_norm: false,
                qkv_bias: true,
            };
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| {
                    let l = enc.pp("layer").pp(i);
                    let a = l.pp("attention.self");
                    let q = candle_nn::linear(h, all, a.pp("query_proj"))?;
                    let k = candle_nn::linear(h, all, a.pp("key_proj"))?;
                    let v = candle_nn::linear(h, all, a.pp("value_proj"))?;
                    let positions = match &rel_embeddings {
                        Some(rel) => {
                            let project = |linear: &Linear| -> candle_core::Result<Vec<f32>> {
                                kernels::to_vec(&linear.forward(rel)?)
                            };
                            let (keys, queries) = if cfg.share_att_key {
                                (pos.c2p.then(|| project(&k)).transpose()?, pos.p2c.then(|| project(&q)).transpose()?)
                            } else {
                                (
                                    pos.c2p
                                        .then(|| project(&candle_nn::linear(h, all, a.pp("pos_key_proj"))?))
                                        .transpose()?,
                                    pos.p2c
                                        .then(|| project(&candle_nn::linear(h, all, a.pp("pos_query_proj"))?))
                                        .transpose()?,
                                )
                            };
                            Some(PositionTerms { keys, queries })
                        }
                        None => None,
                    };
                    Ok(DebertaLayer {
                        qkv: Dense::stacked(&[q, k, v])?,
                        positions,
                        rest: LayerRest::load(&l, &BERT_NAMES, all, &spec)?,
                    })
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let pooled = cfg.pooler_hidden_size.unwrap_or(h);
            let backbone = Self {
                embeddings,
                layers,
                relative,
                heads,
                head_size,
                scale_factor,
                hidden: h,
                act: cfg.hidden_act.kernel(),
                pooler: Dense::load(&vb.pp("pooler.dense"), h, pooled, true)?,
                pooler_act: cfg.pooler_hidden_act.kernel(),
            };
            Ok(TextClassifier {
                backbone,
                classifier: candle_nn::linear(pooled, classes.len(), vb.pp("classifier"))?,
                use_sigmoid: classes.use_sigmoid,
                text,
            })
        })();
        built.map_err(|e| weights.mismatch(name, e))
    }

    fn encode(&self, batch: &EncodedBatch) -> Result<Vec<f32>, ModelError> {
        let (b, t) = batch.input_ids.dims2()?;
        let x = self.embeddings.forward(batch)?;
        let mut x = kernels::to_vec(&x)?;
        let key_mask: Option<Vec<f32>> = batch
            .has_padding
            .then(|| kernels::to_vec(&batch.attention_mask))
            .transpose()?
            .map(|m| m.into_iter().map(|v| if v > 0.5 { 0.0 } else { f32::MIN }).collect());
        let indices = self.relative.map(|r| r.indices(t));
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, Act::None);
            let context = self.attention(layer, &qkv, b, t, key_mask.as_deref(), indices.as_deref());
            kernels::recycle(qkv);
            layer.rest.post_norm(&mut x, context, self.act);
        }
        Ok(x)
    }

    /// Disentangled attention over a fused `(b * t) x (3 * all_head)` projection; returns
    /// `(b * t) x all_head`, heads side by side.
    fn attention(
        &self,
        layer: &DebertaLayer,
        qkv: &[f32],
        b: usize,
        t: usize,
        key_mask: Option<&[f32]>,
        indices: Option<&[u32]>,
    ) -> Vec<f32> {
        let (heads, d) = (self.heads, self.head_size);
        let all = heads * d;
        let ld = 3 * all;
        let scale = 1.0 / ((d * self.scale_factor) as f32).sqrt();
        let mut out = kernels::alloc(b * t * all);
        let span2 = self.relative.map_or(0, |r| 2 * r.span);
        let terms = layer.positions.as_ref().zip(indices);
        let out_ptr = kernels::SendPtr(out.as_mut_ptr());
        let work = |task: usize, buffers: &mut [Vec<f32>; 3]| {
            let (bi, hi) = (task / heads, task % heads);
            let [scores, c2p, p2c] = buffers;
            scores.resize(t * t, 0.0);
            let base = bi * t * ld;
            let q = MatRef { ptr: qkv[base + hi * d..].as_ptr(), rs: ld as isize, cs: 1 };
            let k = MatRef { ptr: qkv[base + all + hi * d..].as_ptr(), rs: ld as isize, cs: 1 };
            let kt = MatRef { ptr: k.ptr, rs: 1, cs: ld as isize };
            let v = MatRef { ptr: qkv[base + 2 * all + hi * d..].as_ptr(), rs: ld as isize, cs: 1 };
            // SAFETY: qkv holds b * t rows of 3 * all; Q, K and V of head hi in sequence bi are
            // t x d blocks inside them (row stride 3 * all, from column hi * d, all + hi * d,
            // 2 * all + hi * d); `scores` holds t x t and is this task's own buffer.
            unsafe {
                kernels::matmul_raw(t, t, d, scores.as_mut_ptr(), t, q, kt, scale, false, gemm::Parallelism::None);
            }
            if let Some((terms, indices)) = terms {
                // Position terms: content x position products, then gathered by distance.
                let product = |dst: &mut Vec<f32>, lhs: MatRef, table: &[f32]| {
                    dst.resize(t * span2, 0.0);
                    let pt = MatRef { ptr: table[hi * d..].as_ptr(), rs: 1, cs: all as isize };
                    // SAFETY: `table` is (2 * span) x all; its head-hi columns read transposed are a
                    // d x (2 * span) view inside it; `lhs` is a t x d block of qkv as above; `dst`
                    // holds t x 2 * span and is this task's own buffer.
                    unsafe {
                        kernels::matmul_raw(
                            t,
                            span2,
                            d,
                            dst.as_mut_ptr(),
                            span2,
                            lhs,
                            pt,
                            scale,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                };
                if let Some(keys) = &terms.keys {
                    product(c2p, q, keys);
                }
                if let Some(queries) = &terms.queries {
                    product(p2c, k, queries);
                }
                for i in 0..t {
                    let row = &mut scores[i * t..(i + 1) * t];
                    let idx = &indices[i * t..(i + 1) * t];
                    if terms.keys.is_some() {
                        let c = &c2p[i * span2..(i + 1) * span2];
                        row.iter_mut().zip(idx).for_each(|(s, &r)| *s += c[r as usize]);
                    }
                    if terms.queries.is_some() {
                        for (j, (s, &r)) in row.iter_mut().zip(idx).enumerate() {
                            *s += p2c[j * span2 + r as usize];
                        }
                    }
                }
            }
            for row in scores.chunks_mut(t) {
                if let Some(mask) = key_mask {
                    row.iter_mut().zip(&mask[bi * t..(bi + 1) * t]).for_each(|(s, m)| *s += m);
                }
                kernels::softmax_row(row);
            }
            let p = MatRef { ptr: scores.as_ptr(), rs: t as isize, cs: 1 };
            // SAFETY: P is `scores` (t x t); V is a t x d block of qkv; the destination, rows
            // bi * t.. of `out` (b * t x all) at columns hi * d.., is in bounds and written by this
            // task alone; `out` outlives the parallel loop and overlaps neither input.
            unsafe {
                kernels::matmul_raw(
                    t,
                    d,
                    t,
                    out_ptr.get().add(bi * t * all + hi * d),
                    all,
                    p,
                    v,
                    1.0,
                    false,
                    gemm::Parallelism::None,
                );
            }
        };
        thread_local! {
            static BUFFERS: std::cell::RefCell<[Vec<f32>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
        }
        kernels::par_for(b * heads, |task| BUFFERS.with(|buffers| work(task, &mut buffers.borrow_mut())));
        out
    }
}

impl TextBackbone for DebertaBackbone {
    /// The context pooler's output: dense and activation on each text's first token.
    fn features(&self, text: &EncodedBatch) -> Result<Tensor, ModelError> {
        let (b, t) = text.input_ids.dims2()?;
        let x = self.encode(text)?;
        let h = self.hidden;
        let mut first = Vec::with_capacity(b * h);
        for i in 0..b {
            first.extend_from_slice(&x[i * t * h..i * t * h + h]);
        }
        kernels::recycle(x);
        let pooled = self.pooler.forward(&first, self.pooler_act);
        Ok(kernels::tensor(pooled, &[b, self.pooler.outputs])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_match_transformers() {
        // torch: make_log_bucket_position(arange(-40, 41), 8, 48)
        let r = RelativePositions { span: 8, buckets: 8, max_position: 48 };
        let got: Vec<i64> = (-40..=40).map(|d| r.bucket(d)).collect();
        // Within +-4 distances are kept; beyond, ceil(log(|d|/4) / log(47/4) * 3) + 4, signed.
        for (d, g) in (-40i64..=40).zip(&got) {
            let want = if d.abs() <= 4 {
                d
            } else {
                let l = ((d.abs() as f32 / 4.0).ln() / (47f32 / 4.0).ln() * 3.0).ceil() as i64 + 4;
                l * d.signum()
            };
            assert_eq!(*g, want, "distance {d}");
        }
        assert_eq!(r.bucket(5), 5);
        assert_eq!(r.bucket(40), 7);
        assert_eq!(r.bucket(-40), -7);
        let plain = RelativePositions { span: 12, buckets: -1, max_position: 12 };
        assert_eq!(plain.bucket(-30), -30);
        let idx = plain.indices(20);
        // i = 19, j = 0: distance 19 → 19 + 12 clamped to 23.
        assert_eq!(idx[19 * 20], 23);
        // i = 0, j = 19: distance -19 → clamped to 0.
        assert_eq!(idx[19], 0);
        assert_eq!(idx[5 * 20 + 5], 12);
    }

    #[test]
    fn pos_att_type_reads_lists_and_pipes() {
        let p: PosAttType = serde_json::from_str(r#""p2c|c2p""#).unwrap();
        assert!(p.c2p && p.p2c);
        let p: PosAttType = serde_json::from_str(r#"["c2p"]"#).unwrap();
        assert!(p.c2p && !p.p2c);
        let p: PosAttType = serde_json::from_str("null").unwrap();
        assert!(!p.c2p && !p.p2c);
        assert!(serde_json::from_str::<PosAttType>(r#"["p2p"]"#).unwrap_err().to_string().contains("p2p"));
    }
}
