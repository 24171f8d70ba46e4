//! ModernBERT (`ModernBertForSequenceClassification`), written against transformers' tensor names
//! on ModelDeck's fused kernels.
//!
//! Why not candle-transformers' `modernbert`: its classifier returns soft-maxed probabilities
//! (no logits, and no sigmoid for multi-label checkpoints), it reads `layer_norm_eps` where
//! transformers' config has `norm_eps`, it hard-codes the biases off (`attention_bias`,
//! `mlp_bias`, `norm_bias`, `classifier_bias` are config options) and it runs outside the kernels
//! `--precision` quantises. The network is small enough to write here: pre-norm layers (the
//! first without its attention norm), fused query/key/value with rotary positions (θ per layer:
//! global layers every `global_attn_every_n_layers`, the others attend within a sliding window of
//! `local_attention / 2` tokens each side), a GeGLU MLP, a final norm, then cls or mean pooling,
//! the prediction head (dense, activation, norm) and the classifier.

use candle_core::{Module, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};
use serde::Deserialize;

use super::config::{defaults, Architecture, ModelConfig};
use super::head::{TextBackbone, TextClassifier};
use super::kernels::{self, Act, AttnMask, Dense};
use super::layers::{Activation, Norm};
use super::text::{EncodedBatch, TextEncoder};
use super::weights::Weights;
use super::ModelError;
use crate::source::ModelFiles;

/// config.json of a ModernBERT model (transformers' `ModernBertConfig`); optional fields default
/// as that class does.
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "defaults::gelu")]
    pub hidden_activation: Activation,
    #[serde(default = "max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "eps_1e_5")]
    pub norm_eps: f64,
    #[serde(default)]
    pub norm_bias: bool,
    pub pad_token_id: Option<usize>,
    #[serde(default = "global_theta")]
    pub global_rope_theta: f64,
    pub local_rope_theta: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "three")]
    pub global_attn_every_n_layers: usize,
    #[serde(default = "window")]
    pub local_attention: usize,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub classifier_bias: bool,
    #[serde(default = "defaults::gelu")]
    pub classifier_activation: Activation,
    #[serde(default)]
    pub classifier_pooling: Pooling,
    pub rope_scaling: Option<serde_json::Value>,
}

fn max_positions() -> usize {
    8192
}
fn eps_1e_5() -> f64 {
    1e-5
}
fn global_theta() -> f64 {
    160_000.0
}
fn three() -> usize {
    3
}
fn window() -> usize {
    128
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    #[default]
    Cls,
    Mean,
}

struct ModernBertLayer {
    /// `None` on layer 0 (transformers uses an identity there).
    attn_norm: Option<Norm>,
    qkv: Dense,
    attn_out: Dense,
    mlp_norm: Norm,
    /// Input and gate halves side by side: `hidden -> 2 * intermediate`.
    mlp_in: Dense,
    mlp_out: Dense,
    /// Sliding-window layers: tokens further apart than this do not attend to each other.
    window: Option<usize>,
    theta: f64,
}

/// Embeddings, layers, pooling and the prediction head; [`TextClassifier`] adds the classifier.
pub struct ModernBertBackbone {
    embeddings: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<ModernBertLayer>,
    final_norm: Norm,
    heads: usize,
    hidden: usize,
    act: Act,
    pooling: Pooling,
    head_dense: Dense,
    head_act: Act,
    head_norm: Norm,
}

impl ModernBertBackbone {
    pub fn load(
        files: &ModelFiles,
        config: &ModelConfig,
        weights: &Weights,
    ) -> Result<TextClassifier<Self>, ModelError> {
        let cfg: ModernBertConfig = config.parse()?;
        if let Some(scaling) = cfg.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return Err(config.error(format!("field `rope_scaling`: {scaling} is not supported (default RoPE only)")));
        }
        let heads = cfg.num_attention_heads;
        if heads == 0 || !cfg.hidden_size.is_multiple_of(heads) || !(cfg.hidden_size / heads).is_multiple_of(2) {
            return Err(config.error(format!(
                "hidden size {} does not split into {heads} attention heads of an even size",
                cfg.hidden_size
            )));
        }
        if cfg.global_attn_every_n_layers == 0 {
            return Err(config.error("field `global_attn_every_n_layers`: must be at least 1"));
        }
        let classes = config.classes()?;
        let text = TextEncoder::load(files, cfg.max_position_embeddings, cfg.pad_token_id.map(|p| p as u32))?;
        let (h, eps) = (cfg.hidden_size, cfg.norm_eps);
        let norm = |vb: VarBuilder| -> candle_core::Result<LayerNorm> {
            let config = candle_nn::LayerNormConfig { eps, remove_mean: true, affine: cfg.norm_bias };
            candle_nn::layer_norm(h, config, vb)
        };
        let vb = weights.builder();
        let m = vb.pp("model");
        let built = (move || -> candle_core::Result<TextClassifier<Self>> {
            let layers = (0..cfg.num_hidden_layers)
                .map(|i| {
                    let l = m.pp("layers").pp(i);
                    let local = i % cfg.global_attn_every_n_layers != 0;
                    let linear = |inputs, outputs, bias, name: &str| Dense::load(&l.pp(name), inputs, outputs, bias);
                    Ok(ModernBertLayer {
                        attn_norm: (i > 0).then(|| Norm::from_layer_norm(&norm(l.pp("attn_norm"))?)).transpose()?,
                        qkv: linear(h, 3 * h, cfg.attention_bias, "attn.Wqkv")?,
                        attn_out: linear(h, h, cfg.attention_bias, "attn.Wo")?,
                        mlp_norm: Norm::from_layer_norm(&norm(l.pp("mlp_norm"))?)?,
                        mlp_in: linear(h, 2 * cfg.intermediate_size, cfg.mlp_bias, "mlp.Wi")?,
                        mlp_out: linear(cfg.intermediate_size, h, cfg.mlp_bias, "mlp.Wo")?,
                        window: local.then_some(cfg.local_attention / 2),
                        theta: if local {
                            cfg.local_rope_theta.unwrap_or(cfg.global_rope_theta)
                        } else {
                            cfg.global_rope_theta
                        },
                    })
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let backbone = Self {
                embeddings: candle_nn::embedding(cfg.vocab_size, h, m.pp("embeddings.tok_embeddings"))?,
                embed_norm: norm(m.pp("embeddings.norm"))?,
                layers,
                final_norm: Norm::from_layer_norm(&norm(m.pp("final_norm"))?)?,
                heads,
                hidden: h,
                act: cfg.hidden_activation.kernel(),
                pooling: cfg.classifier_pooling,
                head_dense: Dense::load(&vb.pp("head.dense"), h, h, cfg.classifier_bias)?,
                head_act: cfg.classifier_activation.kernel(),
                head_norm: Norm::from_layer_norm(&norm(vb.pp("head.norm"))?)?,
            };
            Ok(TextClassifier {
                backbone,
                classifier: candle_nn::linear(h, classes.len(), vb.pp("classifier"))?,
                use_sigmoid: classes.use_sigmoid,
                text,
            })
        })();
        built.map_err(|e| weights.mismatch(Architecture::ModernBert.name(), e))
    }

    /// The final hidden states, `(b * t) x hidden`.
    fn encode(&self, batch: &EncodedBatch) -> Result<Vec<f32>, ModelError> {
        let (b, t) = batch.input_ids.dims2()?;
        let x = self.embed_norm.forward(&self.embeddings.forward(&batch.input_ids)?)?;
        let mut x = kernels::to_vec(&x)?;
        let keep: Vec<f32> = kernels::to_vec(&batch.attention_mask)?;
        let (h, heads) = (self.hidden, self.heads);
        let d = h / heads;
        let mut masks: Vec<(Option<usize>, Option<AttnMask>)> = Vec::new();
        let mut rotaries: Vec<(f64, Rotary)> = Vec::new();
        for layer in &self.layers {
            if !masks.iter().any(|(w, _)| *w == layer.window) {
                masks.push((layer.window, attention_mask(&keep, b, t, layer.window, batch.has_padding)));
            }
            if !rotaries.iter().any(|(theta, _)| *theta == layer.theta) {
                rotaries.push((layer.theta, Rotary::new(layer.theta, d, t)));
            }
        }
        for layer in &self.layers {
            let mask = masks.iter().find(|(w, _)| *w == layer.window).and_then(|(_, m)| m.as_ref());
            let rotary = rotaries.iter().find(|(theta, _)| *theta == layer.theta).map(|(_, r)| r);
            let normed = match &layer.attn_norm {
                Some(norm) => {
                    let mut n = kernels::alloc(x.len());
                    n.copy_from_slice(&x);
                    norm.apply(&mut n);
                    Some(n)
                }
                None => None,
            };
            let mut qkv = layer.qkv.forward(normed.as_deref().unwrap_or(&x), Act::None);
            if let Some(n) = normed {
                kernels::recycle(n);
            }
            if let Some(rotary) = rotary {
                rotary.apply(&mut qkv, b, t, heads, h);
            }
            let context = kernels::attention(&qkv, b, t, heads, h, mask);
            kernels::recycle(qkv);
            let y = layer.attn_out.forward_with(&context, Act::None, Some(&x));
            kernels::recycle(context);
            kernels::recycle(x);
            let mut n = kernels::alloc(y.len());
            n.copy_from_slice(&y);
            layer.mlp_norm.apply(&mut n);
            let wi = layer.mlp_in.forward(&n, Act::None);
            kernels::recycle(n);
            let inner = geglu(&wi, layer.mlp_out.inputs, self.act);
            kernels::recycle(wi);
            x = layer.mlp_out.forward_with(&inner, Act::None, Some(&y));
            kernels::recycle(inner);
            kernels::recycle(y);
        }
        self.final_norm.apply(&mut x);
        Ok(x)
    }
}

/// GeGLU: `act(input) * gate` for rows of `[input | gate]`, each `width` wide.
fn geglu(wi: &[f32], width: usize, act: Act) -> Vec<f32> {
    let rows = wi.len() / (2 * width).max(1);
    let mut out = kernels::alloc(rows * width);
    for (dst, src) in out.chunks_mut(width).zip(wi.chunks(2 * width)) {
        dst.copy_from_slice(&src[..width]);
    }
    kernels::activate_par(&mut out, act);
    for (dst, src) in out.chunks_mut(width).zip(wi.chunks(2 * width)) {
        dst.iter_mut().zip(&src[width..]).for_each(|(v, g)| *v *= g);
    }
    out
}

/// The additive mask of one kind of layer: padding keys, and for sliding-window layers the keys
/// more than `window` tokens away. `None` when nothing is masked.
fn attention_mask(keep: &[f32], b: usize, t: usize, window: Option<usize>, padded: bool) -> Option<AttnMask> {
    let outside = |i: usize, j: usize| window.is_some_and(|w| i.abs_diff(j) > w);
    let windowed = (0..t).any(|i| (0..t).any(|j| outside(i, j)));
    if !padded && !windowed {
        return None;
    }
    let rows = if windowed { t } else { 1 };
    let mut data = Vec::with_capacity(b * rows * t);
    for bi in 0..b {
        for i in 0..rows {
            data.extend((0..t).map(
                |j| {
                    if keep[bi * t + j] < 0.5 || (windowed && outside(i, j)) {
                        f32::MIN
                    } else {
                        0.0
                    }
                },
            ));
        }
    }
    Some(AttnMask::from_rows(data, b, rows, t))
}

/// Rotary position embedding tables (transformers' default RoPE, `rotate_half` layout).
struct Rotary {
    /// `t x d/2` each.
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl Rotary {
    fn new(theta: f64, d: usize, t: usize) -> Self {
        let half = d / 2;
        // As torch: inv_freq = 1 / theta^(2i/d) and angle = position * inv_freq, in f32.
        let inv: Vec<f32> = (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / d as f32)).collect();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in 0..t {
            for &f in &inv {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self { cos, sin, half }
    }

    /// Rotates the query and key parts of a fused `(b * t) x (3 * hidden)` projection in place.
    fn apply(&self, qkv: &mut [f32], b: usize, t: usize, heads: usize, hidden: usize) {
        let (half, d) = (self.half, 2 * self.half);
        for (row, values) in qkv.chunks_mut(3 * hidden).enumerate().take(b * t) {
            let p = row % t;
            let (cos, sin) = (&self.cos[p * half..(p + 1) * half], &self.sin[p * half..(p + 1) * half]);
            for head in values[..2 * hidden].chunks_mut(d).take(2 * heads) {
                let (x1, x2) = head.split_at_mut(half);
                for i in 0..half {
                    let (a, c) = (x1[i], x2[i]);
                    x1[i] = a * cos[i] - c * sin[i];
                    x2[i] = c * cos[i] + a * sin[i];
                }
            }
        }
    }
}

impl TextBackbone for ModernBertBackbone {
    /// The pooled final hidden states (first token or masked mean) through the prediction head.
    fn features(&self, text: &EncodedBatch) -> Result<Tensor, ModelError> {
        let (b, t) = text.input_ids.dims2()?;
        let x = self.encode(text)?;
        let h = self.hidden;
        let mut pooled = vec![0f32; b * h];
        for (i, out) in pooled.chunks_mut(h).enumerate() {
            let rows = &x[i * t * h..(i + 1) * t * h];
            match self.pooling {
                Pooling::Cls => out.copy_from_slice(&rows[..h]),
                Pooling::Mean => {
                    let n = text.ids[i].len();
                    for row in rows.chunks(h).take(n) {
                        out.iter_mut().zip(row).for_each(|(o, v)| *o += v);
                    }
                    out.iter_mut().for_each(|o| *o /= n.max(1) as f32);
                }
            }
        }
        kernels::recycle(x);
        let mut y = self.head_dense.forward(&pooled, self.head_act);
        self.head_norm.apply(&mut y);
        Ok(kernels::tensor(y, &[b, h])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_rotates_pairs_half_a_head_apart() {
        let rotary = Rotary::new(10_000.0, 4, 3);
        // One sequence of 3 tokens, one head of 4: q = k = v = [1, 2, 3, 4].
        let mut qkv: Vec<f32> = (0..3).flat_map(|_| [1.0, 2.0, 3.0, 4.0].repeat(3)).collect();
        rotary.apply(&mut qkv, 1, 3, 1, 4);
        // Position 0 is unchanged; v is never rotated.
        assert_eq!(&qkv[..12], &[1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
        // Position 2, pair (x0, x2) at angle 2 * 1 and pair (x1, x3) at angle 2 / 100.
        let q = &qkv[24..28];
        let (c0, s0, c1, s1) = (2f32.cos(), 2f32.sin(), 0.02f32.cos(), 0.02f32.sin());
        let want = [1.0 * c0 - 3.0 * s0, 2.0 * c1 - 4.0 * s1, 3.0 * c0 + 1.0 * s0, 4.0 * c1 + 2.0 * s1];
        for (g, w) in q.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{q:?} vs {want:?}");
        }
        assert_eq!(&qkv[32..36], &[1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn sliding_window_masks_far_keys_and_padding() {
        let keep = [1.0, 1.0, 1.0, 1.0, 0.0];
        let mask = attention_mask(&keep, 1, 5, Some(1), true).unwrap();
        let tensor_rows: Vec<Vec<f32>> = (0..5).map(|i| mask_row(&mask, i)).collect();
        assert_eq!(tensor_rows[0], vec![0.0, 0.0, f32::MIN, f32::MIN, f32::MIN]);
        assert_eq!(tensor_rows[2], vec![f32::MIN, 0.0, 0.0, 0.0, f32::MIN]);
        // A window wider than the sequence and no padding: nothing to mask.
        assert!(attention_mask(&[1.0; 3], 1, 3, Some(4), false).is_none());
        assert!(attention_mask(&[1.0; 3], 1, 3, None, false).is_none());
    }

    fn mask_row(mask: &AttnMask, i: usize) -> Vec<f32> {
        mask.row(0, i).to_vec()
    }

    #[test]
    fn geglu_multiplies_the_activated_input_by_the_gate() {
        let wi = [1.0, -1.0, 2.0, 3.0, 0.5, 0.0, 4.0, -2.0];
        let out = geglu(&wi, 2, Act::Relu);
        assert_eq!(out, vec![2.0, 0.0, 2.0, 0.0]);
    }
}
