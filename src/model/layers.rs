//! Building blocks shared by every network: activations, a transformer encoder that covers
//! post-norm (BERT family) and pre-norm (ViT, CLIP) layers under each family's tensor names,
//! and attention masks. Speed work on attention and MLPs happens here, once.

use candle_core::{DType, Result, Tensor, D};
use candle_nn::{LayerNorm, VarBuilder};

use super::kernels::{self, Act, AttnMask, Dense};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU: transformers' "gelu".
    Gelu,
    /// Tanh approximation: "gelu_new", "gelu_pytorch_tanh", "gelu_fast".
    GeluTanh,
    Relu,
    /// CLIP's x * sigmoid(1.702 x).
    QuickGelu,
    Tanh,
}

impl Activation {
    pub fn from_name(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "relu" => Self::Relu,
            "quick_gelu" => Self::QuickGelu,
            "tanh" => Self::Tanh,
            other => {
                return Err(format!(
                    "unsupported activation `{other}` (supported: gelu, gelu_new, relu, quick_gelu, tanh)"
                ))
            }
        })
    }
}

/// Read from a config's `hidden_act`; an unsupported name is an error naming the field.
impl<'de> serde::Deserialize<'de> for Activation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_name(&name).map_err(serde::de::Error::custom)
    }
}

/// Tensor names inside one encoder layer, relative to the layer's prefix.
pub struct LayerNames {
    pub query: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub attn_out: &'static str,
    pub attn_norm: &'static str,
    pub ffn_in: &'static str,
    pub ffn_out: &'static str,
    pub ffn_norm: &'static str,
}

pub const BERT_NAMES: LayerNames = LayerNames {
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

pub const DISTILBERT_NAMES: LayerNames = LayerNames {
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attn_out: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
};

pub const VIT_NAMES: LayerNames = LayerNames {
    query: "attention.attention.query",
    key: "attention.attention.key",
    value: "attention.attention.value",
    attn_out: "attention.output.dense",
    attn_norm: "layernorm_before",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "layernorm_after",
};

pub const CLIP_NAMES: LayerNames = LayerNames {
    query: "self_attn.q_proj",
    key: "self_attn.k_proj",
    value: "self_attn.v_proj",
    attn_out: "self_attn.out_proj",
    attn_norm: "layer_norm1",
    ffn_in: "mlp.fc1",
    ffn_out: "mlp.fc2",
    ffn_norm: "layer_norm2",
};

/// Shape of a transformer encoder.
#[derive(Debug, Clone, Copy)]
pub struct EncoderSpec {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub eps: f64,
    pub activation: Activation,
    /// Layer norm before attention/MLP (ViT, CLIP) instead of after the residual (BERT).
    pub pre_norm: bool,
    /// Whether query/key/value projections have biases (ViT's `qkv_bias`).
    pub qkv_bias: bool,
}

struct EncoderLayer {
    /// Query, key and value stacked into one `(3 * hidden, hidden)` product.
    qkv: Dense,
    rest: LayerRest,
}

/// What a transformer layer has besides its attention: the output projection, the MLP and their
/// two layer norms (under `names`' `attn_out`, `attn_norm`, `ffn_in`, `ffn_out`, `ffn_norm`).
pub(crate) struct LayerRest {
    attn_out: Dense,
    attn_norm: Norm,
    ffn_in: Dense,
    ffn_out: Dense,
    ffn_norm: Norm,
}

impl LayerRest {
    /// `context` is the attention's output width (`heads * head size`, usually `hidden`).
    pub fn load(vb: &VarBuilder, names: &LayerNames, context: usize, spec: &EncoderSpec) -> Result<Self> {
        let (h, eps) = (spec.hidden, spec.eps);
        let norm = |name: &str| Norm::from_layer_norm(&candle_nn::layer_norm(h, eps, vb.pp(name))?);
        Ok(Self {
            attn_out: Dense::load(&vb.pp(names.attn_out), context, h, true)?,
            attn_norm: norm(names.attn_norm)?,
            ffn_in: Dense::load(&vb.pp(names.ffn_in), h, spec.intermediate, true)?,
            ffn_out: Dense::load(&vb.pp(names.ffn_out), spec.intermediate, h, true)?,
            ffn_norm: norm(names.ffn_norm)?,
        })
    }

    /// A post-norm (BERT) layer after its attention: `x = norm(x + out(context))`, then
    /// `x = norm(x + mlp(x))`, in place. Takes `context` and hands its buffer back.
    pub fn post_norm(&self, x: &mut [f32], context: Vec<f32>, act: Act) {
        let attn = self.attn_out.forward(&context, Act::None);
        kernels::recycle(context);
        let n = &self.attn_norm;
        kernels::add_layer_norm_in_place(x, &attn, &n.gamma, &n.beta, n.eps);
        kernels::recycle(attn);
        let inner = self.ffn_in.forward(x, act);
        let ffn = self.ffn_out.forward(&inner, Act::None);
        kernels::recycle(inner);
        let n = &self.ffn_norm;
        kernels::add_layer_norm_in_place(x, &ffn, &n.gamma, &n.beta, n.eps);
        kernels::recycle(ffn);
    }
}

/// A layer norm's parameters as plain vectors for the fused kernels.
pub struct Norm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub eps: f32,
}

impl Norm {
    pub fn from_layer_norm(norm: &LayerNorm) -> Result<Self> {
        let gamma = kernels::to_vec(norm.weight())?;
        let beta = match norm.bias() {
            Some(b) => kernels::to_vec(b)?,
            None => vec![0.0; gamma.len()],
        };
        Ok(Self { gamma, beta, eps: norm.eps() as f32 })
    }

    /// Row-wise over `rows x width`, in place.
    pub fn apply(&self, x: &mut [f32]) {
        kernels::layer_norm_in_place(x, &self.gamma, &self.beta, self.eps);
    }
}

impl Activation {
    pub fn kernel(self) -> Act {
        match self {
            Self::Gelu => Act::Gelu,
            Self::GeluTanh => Act::GeluTanh,
            Self::Relu => Act::Relu,
            Self::QuickGelu => Act::QuickGelu,
            Self::Tanh => Act::Tanh,
        }
    }
}

/// The transformer encoder. It runs on the fused kernels of [`kernels`]: one product for
/// query/key/value, attention read in place from it, bias/activation/residual/layer norm applied
/// as each product's epilogue, and no layout copies between layers.
pub struct Encoder {
    spec: EncoderSpec,
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    /// `vb` points at the list of layers (e.g. `bert.encoder.layer`).
    pub fn load(vb: VarBuilder, spec: EncoderSpec, names: &LayerNames) -> Result<Self> {
        if spec.heads == 0 || !spec.hidden.is_multiple_of(spec.heads) {
            candle_core::bail!("hidden size {} is not divisible by {} attention heads", spec.hidden, spec.heads);
        }
        let h = spec.hidden;
        let layers = (0..spec.layers)
            .map(|i| {
                let vb = vb.pp(i);
                let qkv = [vb.pp(names.query), vb.pp(names.key), vb.pp(names.value)];
                Ok(EncoderLayer {
                    qkv: Dense::load_stacked(&qkv, h, h, spec.qkv_bias)?,
                    rest: LayerRest::load(&vb, names, h, &spec)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { spec, layers })
    }

    /// `x`: `(batch, seq, hidden)`; `mask`: additive, broadcastable to `(batch, heads, seq, seq)`
    /// as `(batch or 1, 1, seq or 1, seq)`.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        if h != self.spec.hidden {
            candle_core::bail!("encoder input has hidden size {h}, expected {}", self.spec.hidden);
        }
        let mask = mask.map(|m| AttnMask::from_tensor(m, b, t)).transpose()?;
        let x = self.forward_rows(kernels::to_vec(x)?, b, t, mask.as_ref());
        kernels::tensor(x, &[b, t, h])
    }

    /// As `forward` on `(batch * seq) x hidden` rows.
    pub fn forward_rows(&self, mut x: Vec<f32>, b: usize, t: usize, mask: Option<&AttnMask>) -> Vec<f32> {
        assert_eq!(x.len(), b * t * self.spec.hidden);
        for layer in &self.layers {
            x = self.layer_forward(layer, x, b, t, mask);
        }
        x
    }

    fn layer_forward(
        &self,
        layer: &EncoderLayer,
        mut x: Vec<f32>,
        b: usize,
        t: usize,
        mask: Option<&AttnMask>,
    ) -> Vec<f32> {
        let (h, heads) = (self.spec.hidden, self.spec.heads);
        let act = self.spec.activation.kernel();
        let normed = |x: &[f32], norm: &Norm| {
            let mut n = kernels::alloc(x.len());
            n.copy_from_slice(x);
            norm.apply(&mut n);
            n
        };
        if self.spec.pre_norm {
            let rest = &layer.rest;
            let n = normed(&x, &rest.attn_norm);
            let qkv = layer.qkv.forward(&n, Act::None);
            kernels::recycle(n);
            let context = kernels::attention(&qkv, b, t, heads, h, mask);
            kernels::recycle(qkv);
            let y = rest.attn_out.forward_with(&context, Act::None, Some(&x));
            kernels::recycle(context);
            kernels::recycle(x);
            let n = normed(&y, &rest.ffn_norm);
            let inner = rest.ffn_in.forward(&n, act);
            kernels::recycle(n);
            let out = rest.ffn_out.forward_with(&inner, Act::None, Some(&y));
            kernels::recycle(inner);
            kernels::recycle(y);
            out
        } else {
            let qkv = layer.qkv.forward(&x, Act::None);
            let context = kernels::attention(&qkv, b, t, heads, h, mask);
            kernels::recycle(qkv);
            layer.rest.post_norm(&mut x, context, act);
            x
        }
    }
}

/// `(batch, seq)` 1/0 mask → `(batch, 1, 1, seq)` additive mask (0 or the most negative f32).
pub fn padding_mask(attention_mask: &Tensor) -> Result<Tensor> {
    let (b, t) = attention_mask.dims2()?;
    let inverted = (attention_mask.ones_like()? - attention_mask)?;
    (inverted * f32::MIN as f64)?.reshape((b, 1, 1, t))
}

/// `(1, 1, seq, seq)` additive causal mask.
pub fn causal_mask(seq: usize, device: &candle_core::Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..seq).flat_map(|i| (0..seq).map(move |j| if j > i { f32::MIN } else { 0.0 })).collect();
    Tensor::from_vec(values, (1, 1, seq, seq), device)
}

/// Row `index` of every sequence: `(batch, seq, hidden)` → `(batch, hidden)`.
pub fn token_at(x: &Tensor, index: usize) -> Result<Tensor> {
    x.narrow(1, index, 1)?.squeeze(1)
}

/// `(batch, n)` tensor → rows as vectors.
pub fn rows(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    x.to_dtype(DType::F32)?.to_vec2::<f32>()
}

/// L2-normalise each row.
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&norm.maximum(1e-12)?)
}

/// A convolution followed by an inference-mode batch norm, folded into one convolution with bias:
/// `w·γ/√(σ²+ε)` and `β − μ·γ/√(σ²+ε)`.
pub fn conv_bn(
    conv: VarBuilder,
    norm: VarBuilder,
    (in_channels, out_channels, kernel): (usize, usize, usize),
    stride: usize,
    eps: f64,
) -> Result<candle_nn::Conv2d> {
    let weight = conv.get((out_channels, in_channels, kernel, kernel), "weight")?;
    let gamma = norm.get(out_channels, "weight")?;
    let beta = norm.get(out_channels, "bias")?;
    let mean = norm.get(out_channels, "running_mean")?;
    let var = norm.get(out_channels, "running_var")?;
    let scale = (gamma / (var + eps)?.sqrt()?)?;
    let weight = weight.broadcast_mul(&scale.reshape((out_channels, 1, 1, 1))?)?;
    let bias = (beta - (mean * &scale)?)?;
    let config = candle_nn::Conv2dConfig { padding: kernel / 2, stride, ..Default::default() };
    Ok(candle_nn::Conv2d::new(weight, Some(bias), config))
}
