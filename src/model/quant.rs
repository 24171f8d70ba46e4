//! Reduced-precision weights for the linear and convolution layers (`kernels::Dense`): bf16 and
//! dynamically quantised int8. Everything else (embeddings, layer norms, softmax, attention's
//! own products, depthwise convolutions) stays f32.
//!
//! **int8** (dynamic quantisation, as ONNX Runtime's `quantize_dynamic` but finer-grained):
//! weights are quantised once, symmetrically, per output channel (`w ≈ s_w[n] · q`, `q` in
//! -127..=127); activations per row at run time (`x ≈ s_x[r] · q`, symmetric, the scale from the
//! row's largest magnitude). The product is exact in i32 and dequantised once per output:
//! `y[r][n] = s_x[r] · s_w[n] · Σ_k q_x q_w`. AVX-512 VNNI's `vpdpbusd` multiplies unsigned by
//! signed bytes, so activations are stored offset by 128 and `128 · Σ_k q_w[k][n]` is taken off
//! afterwards (no saturation: `vpdpbusd` adds four 16-bit products into 32 bits). Per-row and
//! per-channel scales are what keeps int8 MiniLM at cosine > 0.99 to f32, where per-tensor
//! activation scales (ONNX Runtime's default) fall to ~0.95 on long inputs.
//!
//! **bf16**: weights rounded to bfloat16 (round to nearest even), activations rounded per row at
//! run time, products accumulated in f32 (`vdpbf16ps` where the CPU has AVX512-BF16).
//!
//! Kernels are chosen at run time: the AVX-512 ones where the CPU has the extension, else a
//! portable version of the same arithmetic (compiled for AVX2 where available). The int8 paths
//! agree exactly (integer arithmetic); the bf16 ones agree to f32 rounding. `MODELDECK_KERNELS=portable`
//! forces the portable kernels for a whole process (to test them on a CPU that has the others).

use std::cell::RefCell;
use std::sync::OnceLock;

use super::amx;

/// The numeric format of a model's linear and convolution weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::Int8];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// What the model card says about how weights and activations are stored.
    pub fn scheme(self) -> &'static str {
        match self {
            Precision::F32 => "f32 weights and activations",
            Precision::Bf16 => "bf16 weights and activations of linear and convolution layers, f32 accumulation",
            Precision::Int8 => {
                "int8 dynamic quantisation of linear and convolution layers: symmetric per-output-channel weights, activations per row and group of 64 inputs at run time, exact int32 sums"
            }
        }
    }

    /// `scheme` in a few words, for a model card's row (none for f32).
    pub fn short_scheme(self) -> Option<&'static str> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some("bf16 weights and activations, f32 sums"),
            Precision::Int8 => Some("int8 weights per channel, activations per row and 64 inputs"),
        }
    }

    /// The kernel that runs this precision on this CPU.
    pub fn kernel(self) -> &'static str {
        match (self, isa(self)) {
            (Precision::F32, _) if super::sgemm::available() => "f32 AVX-512 (weights packed at load)",
            (Precision::F32, _) => "f32 portable (gemm crate)",
            (Precision::Int8, Isa::Amx) => "int8 AMX + AVX-512 VNNI",
            (Precision::Bf16, Isa::Amx) => "bf16 AMX + AVX512-BF16",
            (Precision::Int8, Isa::Avx512) => "int8 AVX-512 VNNI",
            (Precision::Bf16, Isa::Avx512) => "bf16 AVX512-BF16",
            (Precision::Int8, _) => "int8 portable",
            (Precision::Bf16, _) => "bf16 portable (f32 arithmetic)",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" | "qint8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision `{other}`: use f32, bf16 or int8")),
        }
    }
}

/// Which instruction set a reduced-precision product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    /// AVX-512 VNNI (int8) or AVX512-BF16 (bf16).
    Avx512,
    /// AMX tiles (`tdpbusd`, `tdpbf16ps`; see `amx`) for products of at least `AMX_MIN_ROWS`
    /// rows, the AVX-512 kernels for fewer. Only chosen where the CPU also has those.
    Amx,
}

impl Isa {
    /// The vector kernels that go with this choice (AMX products convert their activations and
    /// run their few-row products with AVX-512).
    fn vector(self) -> Isa {
        match self {
            Isa::Amx => Isa::Avx512,
            other => other,
        }
    }

    /// The kernel for a product of `rows` rows.
    fn for_rows(self, rows: usize) -> Isa {
        if self == Isa::Amx && rows < AMX_MIN_ROWS {
            Isa::Avx512
        } else {
            self
        }
    }
}

/// Below this many rows a product runs on the AVX-512 kernels even where AMX is there: a tile
/// holds 16 rows, and for one or two rows the padded tile multiplies mostly zeros while the weight
/// tiles cost as much to load as the vector kernel's whole pass.
pub const AMX_MIN_ROWS: usize = 4;

/// `MODELDECK_KERNELS`, lower-cased (empty when unset): `portable` or `avx512` to force kernels.
pub(crate) fn forced_kernels() -> String {
    std::env::var("MODELDECK_KERNELS").unwrap_or_default().to_ascii_lowercase()
}

/// The kernel for `precision` on this CPU. `MODELDECK_KERNELS=portable` forces the portable one,
/// `MODELDECK_KERNELS=avx512` the AVX-512 ones without AMX (to compare and to test both).
pub fn isa(precision: Precision) -> Isa {
    static DETECTED: OnceLock<(Isa, Isa)> = OnceLock::new();
    let (int8, bf16) = *DETECTED.get_or_init(|| {
        let forced = forced_kernels();
        if forced == "portable" {
            return (Isa::Portable, Isa::Portable);
        }
        #[cfg(target_arch = "x86_64")]
        {
            if forced != "avx512" && super::amx::available() {
                return (Isa::Amx, Isa::Amx);
            }
            let avx512 =
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw");
            let vnni = avx512 && std::arch::is_x86_feature_detected!("avx512vnni");
            let bf16 = avx512 && std::arch::is_x86_feature_detected!("avx512bf16");
            let pick = |on: bool| if on { Isa::Avx512 } else { Isa::Portable };
            (pick(vnni), pick(bf16))
        }
        #[cfg(not(target_arch = "x86_64"))]
        (Isa::Portable, Isa::Portable)
    });
    match precision {
        Precision::Int8 => int8,
        Precision::Bf16 => bf16,
        Precision::F32 => Isa::Portable,
    }
}

/// What a model load built, counted by the layers as they are prepared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Weights and biases held by the linear and convolution layers.
    pub dense_parameters: u64,
    /// The bytes those layers hold in their prepared (packed, quantised) form.
    pub dense_bytes: u64,
}

struct LoadScope {
    precision: Precision,
    stats: LoadStats,
}

thread_local! {
    static LOAD: RefCell<Option<LoadScope>> = const { RefCell::new(None) };
}

/// Runs a model load with its linear and convolution layers built at `precision`, and returns
/// what they hold. Layers built outside such a scope are f32. (A scope rather than a parameter
/// threaded through every architecture's loader: the layers are built on this thread, deep in
/// each family's code, and only `Dense` needs to know.)
pub fn with_load_precision<R>(precision: Precision, load: impl FnOnce() -> R) -> (R, LoadStats) {
    let outer = LOAD.with(|l| l.borrow_mut().replace(LoadScope { precision, stats: LoadStats::default() }));
    let result = load();
    let scope = LOAD.with(|l| std::mem::replace(&mut *l.borrow_mut(), outer));
    (result, scope.map(|s| s.stats).unwrap_or_default())
}

/// The precision layers built now should take.
pub(crate) fn load_precision() -> Precision {
    LOAD.with(|l| l.borrow().as_ref().map_or(Precision::F32, |s| s.precision))
}

/// Counts a prepared layer in the current load scope.
pub(crate) fn record_layer(parameters: usize, bytes: usize) {
    LOAD.with(|l| {
        if let Some(s) = l.borrow_mut().as_mut() {
            s.stats.dense_parameters += parameters as u64;
            s.stats.dense_bytes += bytes as u64;
        }
    });
}

/// Output columns per packed block: one 512-bit vector of i32 or f32 accumulators.
const NB: usize = 16;
/// Rows and column blocks per micro-kernel call (6 x 4 blocks: 24 accumulator registers).
const MR: usize = 6;
const NR: usize = 4;

// ---------------------------------------------------------------------------------------------
// int8

/// Activations take one scale per row and per group of this many inputs: a row's few large
/// values (BERT's outlier features) then coarsen only their own group. Per-row scales alone
/// leave int8 MiniLM at cosine 0.984 to f32 on a two-word input, groups of 64 at 0.994.
pub const GROUP: usize = 64;
const GROUP4: usize = GROUP / 4;
/// int8 micro-kernel: 4 rows x 3 blocks, 12 int32 and 12 f32 accumulators.
const MR8: usize = 4;
const NR8: usize = 3;

/// A weight `(n, k)` quantised per output channel and packed for the kernels: blocks of 16
/// output columns, each `k4` groups of 16 x 4 bytes (`[nb][k4][16][4]`), zero padded; `k4` is
/// `ceil(k / 4)` rounded up to whole groups of `GROUP` inputs, so that a block is also a column of
/// AMX tiles (16 rows of 64 bytes per group).
pub struct Int8Weights {
    pub k: usize,
    pub n: usize,
    k4: usize,
    data: Vec<i8>,
    /// Per output column (padded to whole blocks).
    scale: Vec<f32>,
    /// `128 · Σ_{k in group} q[k][n]` per group of `GROUP` inputs and column (`[group][n]`,
    /// padded): what the +128 offset of the activations adds to each group's sum.
    offset: Vec<i32>,
}

impl Int8Weights {
    /// From a weight as PyTorch stores it, `(n, k)` row-major.
    pub fn quantize(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k);
        let k4 = k.div_ceil(4).next_multiple_of(GROUP4);
        let blocks = n.div_ceil(NB);
        let width = blocks * NB;
        let groups = k.div_ceil(GROUP).max(1);
        let mut scale = vec![1.0f32; width];
        let mut data = vec![0i8; blocks * k4 * NB * 4];
        use rayon::prelude::*;
        data.par_chunks_mut((k4 * NB * 4).max(1)).zip(scale.par_chunks_mut(NB)).enumerate().for_each(
            |(nb, (block, scales))| {
                for j in 0..NB.min(n.saturating_sub(nb * NB)) {
                    let col = nb * NB + j;
                    let row = &weight[col * k..(col + 1) * k];
                    let (s, inv) = symmetric_scale(row);
                    scales[j] = s;
                    for (kk, &w) in row.iter().enumerate() {
                        block[((kk / 4) * NB + j) * 4 + kk % 4] = quantize_one(w, inv);
                    }
                }
            },
        );
        let mut w = Self { k, n, k4, data, scale, offset: Vec::new() };
        let mut offset = vec![0i32; groups * width];
        for col in 0..n {
            for kk in 0..k {
                offset[(kk / GROUP) * width + col] += 128 * w.get(kk, col) as i32;
            }
        }
        w.offset = offset;
        w
    }

    /// The quantised weight at input `kk`, output `col`.
    fn get(&self, kk: usize, col: usize) -> i8 {
        self.data[(((col / NB) * self.k4 + kk / 4) * NB + col % NB) * 4 + kk % 4]
    }

    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.scale.len() + 4 * self.offset.len()
    }

    /// The quantised weight `q[k][n]` and scales, unpacked (tests and references).
    pub fn unpacked(&self) -> (Vec<i8>, Vec<f32>) {
        let mut q = vec![0i8; self.k * self.n];
        for col in 0..self.n {
            for kk in 0..self.k {
                q[kk * self.n + col] = self.get(kk, col);
            }
        }
        (q, self.scale[..self.n].to_vec())
    }

    /// `dst[r][c] = x[r] · W[c0 + c]ᵀ` for `rows` rows of `x` (row stride `k`) and `cols`
    /// columns from `c0` (a multiple of 16), `dst` with row stride `dst_rs`. Single-threaded.
    /// `done(a, b)` is called as rows `a..b` are finished, in order, covering every row once.
    ///
    /// # Safety
    /// `x` must hold `rows * k` elements and `dst` `rows` rows of `dst_rs >= cols` from its start;
    /// `c0 + cols <= n`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul(
        &self,
        x: *const f32,
        rows: usize,
        dst: *mut f32,
        dst_rs: usize,
        c0: usize,
        cols: usize,
        isa: Isa,
        done: &mut dyn FnMut(usize, usize),
    ) {
        assert!(c0.is_multiple_of(NB) && c0 + cols <= self.n);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let lda = self.k4 * 4;
            let groups = self.k.div_ceil(GROUP).max(1);
            let isa = isa.for_rows(rows);
            // AMX reads whole tiles of 16 rows: the rows past `rows` are quantised zeros.
            let padded = if isa == Isa::Amx { rows.next_multiple_of(amx::TILE) } else { rows };
            // AMX multiplies signed bytes by signed bytes (the padding rows zero, then laid out
            // by `amx::tile_rows`); the vector kernels take unsigned activations offset by 128
            // (`vpdpbusd`).
            // (No tiles for an empty product.)
            let amx = isa == Isa::Amx && self.k > 0;
            let offset = if amx { 0 } else { 128 };
            // The tiling buffer is the scratch's own, lent out while `a` borrows the scratch.
            let mut tiling = if amx { std::mem::take(&mut s.tiling) } else { Vec::new() };
            let (a, sx) = s.int8(padded, lda, groups);
            for r in 0..rows {
                // SAFETY: row r < rows of `x` holds k elements by the contract.
                let row = std::slice::from_raw_parts(x.add(r * self.k), self.k);
                let (out, scales) = (&mut a[r * lda..(r + 1) * lda], &mut sx[r * groups..(r + 1) * groups]);
                quantize_row(row, out, scales, offset, isa.vector());
            }
            a[rows * lda..].fill(offset as u8);
            sx[rows * groups..].fill(0.0);
            #[cfg(target_arch = "x86_64")]
            if amx {
                amx::tile_rows(a, lda, &mut tiling);
            }
            let width = self.scale.len();
            let end = (c0 + cols).div_ceil(NB);
            #[cfg(target_arch = "x86_64")]
            if amx {
                let b0 = c0 / NB;
                let lhs = amx::Lhs { a: a.as_ptr(), lda, rows };
                let scales = amx::Int8Scales { scales: sx.as_ptr(), groups, scale: self.scale.as_ptr().add(b0 * NB) };
                let out = amx::Out { dst, dst_rs, c0, c1: c0 + cols };
                // SAFETY: Isa::Amx is only chosen when `amx::available()`; `a` holds `padded`
                // rows of lda = 4 · k4 bytes (padding zeros, scales finite); the packed blocks
                // b0..end and their scales are in bounds (c0 + cols <= n); `dst` holds rows x cols
                // by the contract.
                amx::int8_matmul(
                    &lhs,
                    self.data.as_ptr().add(b0 * self.k4 * NB * 4),
                    self.k4,
                    b0,
                    end,
                    &scales,
                    &out,
                    done,
                );
                s.tiling = tiling;
                return;
            }
            let isa = isa.vector();
            let mut tile = [[0f32; NB * NR8]; MR8];
            for b0 in (c0 / NB..end).step_by(NR8) {
                let nr = NR8.min(end - b0);
                let panel = Int8Panel {
                    b: self.data.as_ptr().add(b0 * self.k4 * NB * 4),
                    k4: self.k4,
                    offset: self.offset.as_ptr().add(b0 * NB),
                    offset_stride: width,
                    scale: self.scale.as_ptr().add(b0 * NB),
                };
                for r0 in (0..rows).step_by(MR8) {
                    let mr = MR8.min(rows - r0);
                    let rows_of =
                        Int8Rows { a: a.as_ptr().add(r0 * lda), lda, scales: sx.as_ptr().add(r0 * groups), groups };
                    int8_tile(isa, mr, nr, &rows_of, &panel, &mut tile);
                    // SAFETY: rows r0..r0 + mr < rows of `dst`; the blocks lie in c0..c0 + cols.
                    store_tile(&tile[..mr], dst.add(r0 * dst_rs), dst_rs, c0, cols, b0, nr);
                }
            }
            done(0, rows);
        });
    }
}

/// Copies a tile of `nr` column blocks from block `b0` into `dst` (row stride `dst_rs`), whose
/// columns are the weight's `c0..c0 + cols` (`c0` a multiple of `NB`): the last block may be cut.
///
/// # Safety
/// `dst` must hold `tile.len()` rows of `dst_rs >= cols`, apart from `tile`, and `b0 * NB` must lie
/// in `c0..c0 + cols`.
unsafe fn store_tile<const W: usize>(
    tile: &[[f32; W]],
    dst: *mut f32,
    dst_rs: usize,
    c0: usize,
    cols: usize,
    b0: usize,
    nr: usize,
) {
    let col = b0 * NB - c0;
    let width = ((b0 + nr) * NB).min(c0 + cols) - b0 * NB;
    for (i, row) in tile.iter().enumerate() {
        std::slice::from_raw_parts_mut(dst.add(i * dst_rs + col), width).copy_from_slice(&row[..width]);
    }
}

/// `(scale, 1 / scale)` of a symmetric 8-bit quantisation of `values` (scale 1 for all zeros).
fn symmetric_scale(values: &[f32]) -> (f32, f32) {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax > 0.0 && amax.is_finite() {
        (amax / 127.0, 127.0 / amax)
    } else {
        (1.0, 1.0)
    }
}

/// `round_ties_even(v · inv)` clamped to ±127 (NaN to 0). Clamped first, the value is rounded by
/// adding and taking off 1.5 · 2^23, where the float spacing is 1: the FPU's round-to-nearest-even
/// does it in two instructions, where `f32::round_ties_even` is a call to `rintf` on baseline x86-64
/// (a fifth of int8 ViT's load time).
#[inline(always)]
fn quantize_one(v: f32, inv: f32) -> i8 {
    const SHIFT: f32 = 12_582_912.0;
    (((v * inv).clamp(-127.0, 127.0) + SHIFT) - SHIFT) as i8
}

/// Quantises one activation row into `out` (each byte the quantised value plus `offset`, 128 for
/// the unsigned bytes of `vpdpbusd` or 0 for signed ones; padded with quantised zeros to
/// `out.len()`), one scale per group of `GROUP` values into `scales`.
fn quantize_row(row: &[f32], out: &mut [u8], scales: &mut [f32], offset: i32, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: Isa::Avx512 for int8 is only chosen when the CPU has AVX-512 F/BW.
        return unsafe { quantize_row_avx512(row, out, scales, offset) };
    }
    let _ = isa;
    quantize_row_portable(row, out, scales, offset)
}

#[inline(always)]
fn quantize_row_portable(row: &[f32], out: &mut [u8], scales: &mut [f32], offset: i32) {
    for ((chunk, o), scale) in row.chunks(GROUP).zip(out.chunks_mut(GROUP)).zip(scales.iter_mut()) {
        let (s, inv) = symmetric_scale(chunk);
        *scale = s;
        for (o, &v) in o.iter_mut().zip(chunk) {
            *o = (quantize_one(v, inv) as i32 + offset) as u8;
        }
    }
    out[row.len()..].fill(offset as u8);
}

/// `quantize_row_portable` in AVX-512, with the same results bit for bit: the same product by
/// `1 / scale`, rounding to nearest even (the default MXCSR mode of `vcvtps2dq`), clamping to
/// ±127, NaN to 0 (as Rust's `as i8`), and NaN left out of the group's largest magnitude (as
/// `f32::max`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row_avx512(row: &[f32], out: &mut [u8], scales: &mut [f32], offset: i32) {
    use std::arch::x86_64::*;
    let lo = _mm512_set1_ps(-127.0);
    let hi = _mm512_set1_ps(127.0);
    let bias = _mm512_set1_epi32(offset);
    for ((chunk, o), scale) in row.chunks(GROUP).zip(out.chunks_mut(GROUP)).zip(scales.iter_mut()) {
        let mask = |v: usize| -> __mmask16 {
            let n = chunk.len().saturating_sub(v * 16).min(16);
            ((1u32 << n) - 1) as __mmask16
        };
        let mut amax = _mm512_setzero_ps();
        for v in 0..chunk.len().div_ceil(16) {
            // SAFETY: the mask covers only elements of `chunk`.
            let x = _mm512_maskz_loadu_ps(mask(v), chunk.as_ptr().add(v * 16));
            // max(a, b) gives b when a is NaN: NaN never wins, as with f32::max.
            amax = _mm512_max_ps(_mm512_abs_ps(x), amax);
        }
        let amax = _mm512_reduce_max_ps(amax);
        let (s, inv) = if amax > 0.0 && amax.is_finite() { (amax / 127.0, 127.0 / amax) } else { (1.0, 1.0) };
        *scale = s;
        let inv = _mm512_set1_ps(inv);
        for v in 0..chunk.len().div_ceil(16) {
            let m = mask(v);
            // SAFETY: as above; the store writes only the masked bytes of `o` (o.len() >= chunk.len()).
            let x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, chunk.as_ptr().add(v * 16)), inv);
            let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(x, x);
            let clamped = _mm512_maskz_mov_ps(ordered, _mm512_min_ps(_mm512_max_ps(x, lo), hi));
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(clamped), bias);
            _mm512_mask_cvtepi32_storeu_epi8(o.as_mut_ptr().add(v * 16) as *mut _, m, q);
        }
    }
    out[row.len()..].fill(offset as u8);
}

/// The quantised rows a micro-kernel reads: `lda` bytes per row, `groups` scales per row.
struct Int8Rows {
    a: *const u8,
    lda: usize,
    scales: *const f32,
    groups: usize,
}

/// The packed column blocks a micro-kernel reads, with their per-group offsets.
struct Int8Panel {
    b: *const i8,
    k4: usize,
    offset: *const i32,
    offset_stride: usize,
    /// The weight scales of the panel's columns (`NB` per block).
    scale: *const f32,
}

/// One micro-kernel call: `tile[i][j] = s_w[j] · Σ_g s_x[i][g] · (Σ_{p in g} a[i][p] · b[p][j] -
/// offset[g][j])` over `mr` rows and `nr` blocks, each group's sum exact in i32 and added in f32
/// with one rounding (a fused multiply-add), groups in order, then one product by the weight scale.
///
/// # Safety
/// `rows` must hold `mr` rows and `panel` `nr` blocks as their fields describe.
unsafe fn int8_tile(
    isa: Isa,
    mr: usize,
    nr: usize,
    rows: &Int8Rows,
    panel: &Int8Panel,
    tile: &mut [[f32; NB * NR8]; MR8],
) {
    macro_rules! go {
        ($f:ident) => {
            macro_rules! cols {
                ($r:literal) => {
                    match nr {
                        1 => $f::<$r, 1>(rows, panel, tile),
                        2 => $f::<$r, 2>(rows, panel, tile),
                        _ => $f::<$r, 3>(rows, panel, tile),
                    }
                };
            }
            match mr {
                1 => cols!(1),
                2 => cols!(2),
                3 => cols!(3),
                _ => cols!(4),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        go!(int8_tile_vnni);
        return;
    }
    let _ = isa;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        go!(int8_tile_avx2);
        return;
    }
    go!(int8_tile_portable);
}

#[inline(always)]
unsafe fn int8_tile_generic<const R: usize, const C: usize>(
    rows: &Int8Rows,
    panel: &Int8Panel,
    tile: &mut [[f32; NB * NR8]; MR8],
) {
    let mut out = [[0f32; NB * NR8]; R];
    for g in 0..rows.groups {
        let mut acc = [[0i32; NB * NR8]; R];
        for p in g * GROUP4..((g + 1) * GROUP4).min(panel.k4) {
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row i < R of `a` holds lda = 4 · k4 bytes; block c < C of `b` k4 · 64.
                let av = std::slice::from_raw_parts(rows.a.add(i * rows.lda + p * 4), 4);
                for c in 0..C {
                    let bv = std::slice::from_raw_parts(panel.b.add((c * panel.k4 + p) * NB * 4), NB * 4);
                    for j in 0..NB {
                        let mut s = 0i32;
                        for t in 0..4 {
                            s += av[t] as i32 * bv[j * 4 + t] as i32;
                        }
                        acc[c * NB + j] += s;
                    }
                }
            }
        }
        let offsets = std::slice::from_raw_parts(panel.offset.add(g * panel.offset_stride), NB * C);
        for i in 0..R {
            let s = *rows.scales.add(i * rows.groups + g);
            for (j, off) in offsets.iter().enumerate() {
                out[i][j] = ((acc[i][j] - off) as f32).mul_add(s, out[i][j]);
            }
        }
    }
    let scale = std::slice::from_raw_parts(panel.scale, NB * C);
    for (t, o) in tile.iter_mut().zip(&out) {
        for ((t, o), s) in t.iter_mut().zip(&o[..NB * C]).zip(scale) {
            *t = o * s;
        }
    }
}

unsafe fn int8_tile_portable<const R: usize, const C: usize>(
    rows: &Int8Rows,
    panel: &Int8Panel,
    tile: &mut [[f32; NB * NR8]; MR8],
) {
    int8_tile_generic::<R, C>(rows, panel, tile)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn int8_tile_avx2<const R: usize, const C: usize>(
    rows: &Int8Rows,
    panel: &Int8Panel,
    tile: &mut [[f32; NB * NR8]; MR8],
) {
    int8_tile_generic::<R, C>(rows, panel, tile)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn int8_tile_vnni<const R: usize, const C: usize>(
    rows: &Int8Rows,
    panel: &Int8Panel,
    tile: &mut [[f32; NB * NR8]; MR8],
) {
    use std::arch::x86_64::*;
    let mut out = [[_mm512_setzero_ps(); C]; R];
    for g in 0..rows.groups {
        let mut acc = [[_mm512_setzero_si512(); C]; R];
        for p in g * GROUP4..((g + 1) * GROUP4).min(panel.k4) {
            let mut bv = [_mm512_setzero_si512(); C];
            for (c, v) in bv.iter_mut().enumerate() {
                // SAFETY: block c < C of `b` holds k4 groups of 64 bytes.
                *v = _mm512_loadu_si512(panel.b.add((c * panel.k4 + p) * NB * 4) as *const _);
            }
            for (i, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row i < R of `a` holds lda = 4 · k4 bytes.
                let av = _mm512_set1_epi32((rows.a.add(i * rows.lda + p * 4) as *const i32).read_unaligned());
                for c in 0..C {
                    acc[c] = _mm512_dpbusd_epi32(acc[c], av, bv[c]);
                }
            }
        }
        for (i, (acc, out)) in acc.iter().zip(out.iter_mut()).enumerate() {
            let s = _mm512_set1_ps(*rows.scales.add(i * rows.groups + g));
            for c in 0..C {
                // SAFETY: the offsets of group g hold C blocks of 16 from the panel's first.
                let off = _mm512_loadu_si512(panel.offset.add(g * panel.offset_stride + c * NB) as *const _);
                out[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[c], off)), s, out[c]);
            }
        }
    }
    for (i, out) in out.iter().enumerate() {
        for (c, v) in out.iter().enumerate() {
            // SAFETY: the panel's scales hold C blocks of 16.
            let s = _mm512_loadu_ps(panel.scale.add(c * NB));
            _mm512_storeu_ps(tile[i][c * NB..].as_mut_ptr(), _mm512_mul_ps(*v, s));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// bf16

/// A weight `(n, k)` rounded to bf16 and packed as `[nb][k2][16][2]` (`k2 = ceil(k / 2)` rounded
/// up to a multiple of 16, zero padded: a block is then also a column of AMX tiles).
pub struct Bf16Weights {
    pub k: usize,
    pub n: usize,
    k2: usize,
    data: Vec<u16>,
}

/// Rounds to the nearest bf16 (ties to even); NaN stays NaN.
#[inline(always)]
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
pub fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

impl Bf16Weights {
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k);
        let k2 = k.div_ceil(2).next_multiple_of(16);
        let blocks = n.div_ceil(NB);
        let mut data = vec![0u16; blocks * k2 * NB * 2];
        use rayon::prelude::*;
        data.par_chunks_mut((k2 * NB * 2).max(1)).enumerate().for_each(|(nb, block)| {
            for j in 0..NB.min(n.saturating_sub(nb * NB)) {
                let col = nb * NB + j;
                for (kk, &w) in weight[col * k..(col + 1) * k].iter().enumerate() {
                    block[((kk / 2) * NB + j) * 2 + kk % 2] = to_bf16(w);
                }
            }
        });
        Self { k, n, k2, data }
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }

    /// The rounded weight `w[k][n]` as f32 (tests and references).
    pub fn unpacked(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.k * self.n];
        for col in 0..self.n {
            let (nb, j) = (col / NB, col % NB);
            for kk in 0..self.k {
                w[kk * self.n + col] = from_bf16(self.data[((nb * self.k2 + kk / 2) * NB + j) * 2 + kk % 2]);
            }
        }
        w
    }

    /// As `Int8Weights::matmul`.
    ///
    /// # Safety
    /// As `Int8Weights::matmul`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul(
        &self,
        x: *const f32,
        rows: usize,
        dst: *mut f32,
        dst_rs: usize,
        c0: usize,
        cols: usize,
        isa: Isa,
        done: &mut dyn FnMut(usize, usize),
    ) {
        assert!(c0.is_multiple_of(NB) && c0 + cols <= self.n);
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let lda = self.k2 * 2;
            let isa = isa.for_rows(rows);
            // AMX reads whole tiles of 16 rows: the rows past `rows` are zeros.
            let padded = if isa == Isa::Amx { rows.next_multiple_of(16) } else { rows };
            // AMX: the padding rows zero, then laid out by `amx::tile_rows` (no tiles for an
            // empty product).
            let amx = isa == Isa::Amx && self.k > 0;
            let mut tiling = if amx { std::mem::take(&mut s.tiling) } else { Vec::new() };
            let a = s.bf16(padded, lda);
            for r in 0..rows {
                // SAFETY: row r < rows of `x` holds k elements by the contract.
                let row = std::slice::from_raw_parts(x.add(r * self.k), self.k);
                let out = &mut a[r * lda..(r + 1) * lda];
                round_row(row, &mut out[..self.k], isa.vector());
                out[self.k..].fill(0);
            }
            a[rows * lda..].fill(0);
            #[cfg(target_arch = "x86_64")]
            if amx {
                // SAFETY: any u16 is two valid bytes; the slice covers the same memory.
                let bytes = std::slice::from_raw_parts_mut(a.as_mut_ptr() as *mut u8, a.len() * 2);
                amx::tile_rows(bytes, lda * 2, &mut tiling);
                let (b0, b1) = (c0 / NB, (c0 + cols).div_ceil(NB));
                let lhs = amx::Lhs { a: a.as_ptr() as *const u8, lda: lda * 2, rows };
                let out = amx::Out { dst, dst_rs, c0, c1: c0 + cols };
                // SAFETY: Isa::Amx is only chosen when `amx::available()`; `a` holds `padded`
                // rows of lda values (zero padded), k2 is a multiple of 16, blocks b0..b1 are in
                // the packing (c0 + cols <= n), and `dst` holds rows x cols by the contract.
                amx::bf16_matmul(&lhs, self.data.as_ptr().add(b0 * self.k2 * NB * 2), self.k2, b0, b1, &out, done);
                s.tiling = tiling;
                return;
            }
            let isa = isa.vector();
            let mut tile = [[0f32; NB * NR]; MR];
            for b0 in (c0 / NB..(c0 + cols).div_ceil(NB)).step_by(NR) {
                let nr = NR.min((c0 + cols).div_ceil(NB) - b0);
                let panel = self.data.as_ptr().add(b0 * self.k2 * NB * 2);
                for r0 in (0..rows).step_by(MR) {
                    let mr = MR.min(rows - r0);
                    bf16_tile(isa, mr, nr, a.as_ptr().add(r0 * lda), lda, panel, self.k2, &mut tile);
                    // SAFETY: rows r0..r0 + mr < rows of `dst`; the blocks lie in c0..c0 + cols.
                    store_tile(&tile[..mr], dst.add(r0 * dst_rs), dst_rs, c0, cols, b0, nr);
                }
            }
            done(0, rows);
        });
    }
}

/// Rounds `row` to bf16 into `out` (same length): `vcvtne2ps2bf16` where the CPU has it (round to
/// nearest even as `to_bf16`; it reads denormal inputs as zero), else `to_bf16`.
fn round_row(row: &[f32], out: &mut [u16], isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: Isa::Avx512 for bf16 is only chosen when the CPU has AVX512-BF16.
        return unsafe { round_row_avx512(row, out) };
    }
    let _ = isa;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = to_bf16(v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_row_avx512(row: &[f32], out: &mut [u16]) {
    use std::arch::x86_64::*;
    let n = row.len().min(out.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n elements of both.
        let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(row.as_ptr().add(i)));
        _mm256_storeu_si256(out.as_mut_ptr().add(i) as *mut _, std::mem::transmute::<__m256bh, __m256i>(v));
        i += 16;
    }
    for (o, &v) in out[i..n].iter_mut().zip(&row[i..n]) {
        *o = to_bf16(v);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn bf16_tile(
    isa: Isa,
    mr: usize,
    nr: usize,
    a: *const u16,
    lda: usize,
    b: *const u16,
    k2: usize,
    tile: &mut [[f32; NB * NR]; MR],
) {
    macro_rules! go {
        ($f:ident) => {
            match (mr, nr) {
                (1, 1) => $f::<1, 1>(a, lda, b, k2, tile),
                (1, 2) => $f::<1, 2>(a, lda, b, k2, tile),
                (1, 3) => $f::<1, 3>(a, lda, b, k2, tile),
                (1, _) => $f::<1, 4>(a, lda, b, k2, tile),
                (2, 1) => $f::<2, 1>(a, lda, b, k2, tile),
                (2, 2) => $f::<2, 2>(a, lda, b, k2, tile),
                (2, 3) => $f::<2, 3>(a, lda, b, k2, tile),
                (2, _) => $f::<2, 4>(a, lda, b, k2, tile),
                (3, 1) => $f::<3, 1>(a, lda, b, k2, tile),
                (3, 2) => $f::<3, 2>(a, lda, b, k2, tile),
                (3, 3) => $f::<3, 3>(a, lda, b, k2, tile),
                (3, _) => $f::<3, 4>(a, lda, b, k2, tile),
                (4, 1) => $f::<4, 1>(a, lda, b, k2, tile),
                (4, 2) => $f::<4, 2>(a, lda, b, k2, tile),
                (4, 3) => $f::<4, 3>(a, lda, b, k2, tile),
                (4, _) => $f::<4, 4>(a, lda, b, k2, tile),
                (5, 1) => $f::<5, 1>(a, lda, b, k2, tile),
                (5, 2) => $f::<5, 2>(a, lda, b, k2, tile),
                (5, 3) => $f::<5, 3>(a, lda, b, k2, tile),
                (5, _) => $f::<5, 4>(a, lda, b, k2, tile),
                (_, 1) => $f::<6, 1>(a, lda, b, k2, tile),
                (_, 2) => $f::<6, 2>(a, lda, b, k2, tile),
                (_, 3) => $f::<6, 3>(a, lda, b, k2, tile),
                (_, _) => $f::<6, 4>(a, lda, b, k2, tile),
            }
        };
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        go!(bf16_tile_avx512);
        return;
    }
    let _ = isa;
    go!(bf16_tile_portable);
}

/// The same sums as `vdpbf16ps`: per pair, the odd element's product is added first, then the
/// even one's (each product of two bf16 values is exact in f32).
unsafe fn bf16_tile_portable<const R: usize, const C: usize>(
    a: *const u16,
    lda: usize,
    b: *const u16,
    k2: usize,
    tile: &mut [[f32; NB * NR]; MR],
) {
    let mut acc = [[0f32; NB * NR]; R];
    for p in 0..k2 {
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row i < R of `a` holds lda = 2 · k2 values; block c < C of `b` k2 · 32.
            let (a0, a1) = (from_bf16(*a.add(i * lda + p * 2)), from_bf16(*a.add(i * lda + p * 2 + 1)));
            for c in 0..C {
                let bv = std::slice::from_raw_parts(b.add((c * k2 + p) * NB * 2), NB * 2);
                for j in 0..NB {
                    let v = &mut acc[c * NB + j];
                    *v += a1 * from_bf16(bv[j * 2 + 1]);
                    *v += a0 * from_bf16(bv[j * 2]);
                }
            }
        }
    }
    tile[..R].copy_from_slice(&acc);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn bf16_tile_avx512<const R: usize, const C: usize>(
    a: *const u16,
    lda: usize,
    b: *const u16,
    k2: usize,
    tile: &mut [[f32; NB * NR]; MR],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for p in 0..k2 {
        let mut bv = [_mm512_setzero_si512(); C];
        for (c, v) in bv.iter_mut().enumerate() {
            // SAFETY: block c < C of `b` holds k2 groups of 32 values.
            *v = _mm512_loadu_si512(b.add((c * k2 + p) * NB * 2) as *const _);
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row i < R of `a` holds lda = 2 · k2 values.
            let av = _mm512_set1_epi32((a.add(i * lda + p * 2) as *const i32).read_unaligned());
            for c in 0..C {
                acc[c] = _mm512_dpbf16_ps(
                    acc[c],
                    std::mem::transmute::<__m512i, __m512bh>(av),
                    std::mem::transmute::<__m512i, __m512bh>(bv[c]),
                );
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (c, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(tile[i][c * NB..].as_mut_ptr(), *v);
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Per-thread buffers for the converted activations.
#[derive(Default)]
struct Scratch {
    bytes: Vec<u8>,
    scales: Vec<f32>,
    halves: Vec<u16>,
    /// One 16-row tile of activations while `amx::tile_rows` rearranges it.
    tiling: Vec<u8>,
}

impl Scratch {
    fn int8(&mut self, rows: usize, lda: usize, groups: usize) -> (&mut [u8], &mut [f32]) {
        if self.bytes.len() < rows * lda {
            self.bytes.resize(rows * lda, 0);
        }
        if self.scales.len() < rows * groups {
            self.scales.resize(rows * groups, 0.0);
        }
        (&mut self.bytes[..rows * lda], &mut self.scales[..rows * groups])
    }
    fn bf16(&mut self, rows: usize, lda: usize) -> &mut [u16] {
        if self.halves.len() < rows * lda {
            self.halves.resize(rows * lda, 0);
        }
        &mut self.halves[..rows * lda]
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64, amplitude: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amplitude
            })
            .collect()
    }

    fn isas() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
            v.push(Isa::Avx512);
        }
        if amx::available() {
            v.push(Isa::Amx);
        }
        v
    }

    /// The exact reference: the same quantisation, each group's product in i64, groups added
    /// in order with one rounding each, then the weight's scale.
    fn int8_reference(w: &Int8Weights, x: &[f32], rows: usize) -> Vec<f32> {
        let (q, scales) = w.unpacked();
        let (k, n) = (w.k, w.n);
        let mut out = vec![0f32; rows * n];
        for r in 0..rows {
            let row = &x[r * k..(r + 1) * k];
            for c in 0..n {
                let mut y = 0f32;
                for (g, chunk) in row.chunks(GROUP).enumerate() {
                    let (s, inv) = symmetric_scale(chunk);
                    let acc: i64 = chunk
                        .iter()
                        .enumerate()
                        .map(|(t, &v)| quantize_one(v, inv) as i64 * q[(g * GROUP + t) * n + c] as i64)
                        .sum();
                    y = (acc as i32 as f32).mul_add(s, y);
                }
                out[r * n + c] = y * scales[c];
            }
        }
        out
    }

    #[test]
    fn int8_products_equal_the_exact_integer_reference_on_every_kernel() {
        // Odd sizes: partial column blocks, k not a multiple of 4, every row remainder.
        for &(rows, k, n) in
            // 150 rows: two AMX row chunks, odd 16-row tiles at the end; 33 and 48 rows: one pair of
            // tiles and a half-filled one.
            &[
                (1, 3, 5),
                (7, 33, 70),
                (13, 384, 1536 / 8),
                (2, 1, 16),
                (6, 64, 64),
                (19, 130, 97),
                (5, 1536, 40),
            ]
            .into_iter()
            .chain([(150, 200, 70), (33, 64, 32), (48, 129, 48)])
            .collect::<Vec<_>>()
        {
            let w = data(n * k, 1 + k as u64, 0.3);
            let x = data(rows * k, 7 + n as u64, 2.0);
            let q = Int8Weights::quantize(&w, n, k);
            let reference = int8_reference(&q, &x, rows);
            for isa in isas() {
                // Whole width, and a column range from a block boundary (as a thread gets).
                for (c0, cols) in [(0, n), (16.min(n / 16 * 16), n - 16.min(n / 16 * 16))] {
                    let mut out = vec![f32::NAN; rows * cols];
                    // Finished rows are reported in order, each once.
                    let mut finished = 0;
                    let mut done = |a: usize, b: usize| {
                        assert!(a == finished && b > a && b <= rows, "{isa:?}: rows {a}..{b} after {finished}");
                        finished = b;
                    };
                    // SAFETY: x is rows x k, out rows x cols, c0 + cols = n.
                    unsafe { q.matmul(x.as_ptr(), rows, out.as_mut_ptr(), cols, c0, cols, isa, &mut done) };
                    assert_eq!(finished, rows, "{isa:?}");
                    for r in 0..rows {
                        for c in 0..cols {
                            assert_eq!(
                                out[r * cols + c].to_bits(),
                                reference[r * n + c0 + c].to_bits(),
                                "{isa:?} {rows}x{k}x{n} at ({r}, {})",
                                c0 + c
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn int8_products_stay_close_to_f32() {
        let (rows, k, n) = (9, 384, 48);
        let w = data(n * k, 3, 0.1);
        let x = data(rows * k, 4, 1.0);
        let q = Int8Weights::quantize(&w, n, k);
        let mut out = vec![0f32; rows * n];
        // SAFETY: as above.
        unsafe { q.matmul(x.as_ptr(), rows, out.as_mut_ptr(), n, 0, n, isa(Precision::Int8), &mut |_, _| {}) };
        for r in 0..rows {
            for c in 0..n {
                let exact: f32 = (0..k).map(|kk| x[r * k + kk] * w[c * k + kk]).sum();
                // Each operand is off by at most half a step (amax / 254); the error of the sum
                // stays well inside 1.5% of the product's scale sqrt(k) · amax_x · amax_w.
                let bound = 0.015 * (k as f32).sqrt() * 1.0 * 0.1;
                assert!((out[r * n + c] - exact).abs() < bound, "({r}, {c}): {} vs {exact}", out[r * n + c]);
            }
        }
    }

    #[test]
    fn bf16_products_match_the_rounded_reference_on_every_kernel() {
        let mut kernels = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            kernels.push(Isa::Avx512);
        }
        if amx::available() {
            kernels.push(Isa::Amx);
        }
        for &(rows, k, n) in &[(1, 3, 5), (7, 33, 70), (13, 384, 64), (19, 129, 97), (150, 200, 70), (33, 64, 32)] {
            let w = data(n * k, 11 + k as u64, 0.3);
            let x = data(rows * k, 5 + n as u64, 2.0);
            let b = Bf16Weights::new(&w, n, k);
            let wr = b.unpacked();
            for isa in &kernels {
                let mut out = vec![f32::NAN; rows * n];
                let mut finished = 0;
                let mut done = |a: usize, b: usize| {
                    assert!(a == finished && b > a && b <= rows, "{isa:?}: rows {a}..{b} after {finished}");
                    finished = b;
                };
                // SAFETY: x is rows x k, out rows x n.
                unsafe { b.matmul(x.as_ptr(), rows, out.as_mut_ptr(), n, 0, n, *isa, &mut done) };
                assert_eq!(finished, rows, "{isa:?}");
                for r in 0..rows {
                    for c in 0..n {
                        // f64 sums of the bf16-rounded operands: only the f32 accumulation differs.
                        let exact: f64 =
                            (0..k).map(|kk| from_bf16(to_bf16(x[r * k + kk])) as f64 * wr[kk * n + c] as f64).sum();
                        let scale: f64 = (0..k).map(|kk| (x[r * k + kk] * wr[kk * n + c]).abs() as f64).sum();
                        let got = out[r * n + c] as f64;
                        assert!((got - exact).abs() <= 1e-6 * scale + 1e-30, "{isa:?} ({r}, {c}): {got} vs {exact}");
                    }
                }
            }
        }
    }

    #[test]
    fn int8_rounding_is_to_nearest_even_and_clamped() {
        let q = |v: f32| quantize_one(v, 1.0);
        assert_eq!([q(0.5), q(1.5), q(2.5), q(-0.5), q(-1.5), q(126.5), q(-126.5)], [0, 2, 2, 0, -2, 126, -126]);
        assert_eq!([q(0.49999997), q(2.5000002), q(-3.7), q(1e9), q(-1e9)], [0, 3, -4, 127, -127]);
        assert_eq!([q(f32::INFINITY), q(f32::NEG_INFINITY), q(f32::NAN)], [127, -127, 0]);
        for i in -2540..=2540 {
            let v = i as f32 * 0.05 + 0.013;
            assert_eq!(q(v), v.round_ties_even().clamp(-127.0, 127.0) as i8, "{v}");
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and the next bf16: ties to the even one (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 · 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: up to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
    }

    #[test]
    fn every_row_quantiser_gives_the_portable_bytes_and_scales() {
        let mut row = data(3 * GROUP + 37, 21, 3.0);
        // Edge values inside groups: NaN (left out of the scale, quantised to 0), infinities (scale
        // 1, clamped), a group of zeros, and a tail shorter than a vector.
        row[5] = f32::NAN;
        row[GROUP + 3] = f32::INFINITY;
        row[GROUP + 4] = f32::NEG_INFINITY;
        row[2 * GROUP..3 * GROUP].fill(0.0);
        for len in [row.len(), 1, 15, 16, 17, GROUP, GROUP + 1, 2 * GROUP + 5] {
            let row = &row[..len];
            let lda = len.div_ceil(4) * 4 + 8;
            let groups = len.div_ceil(GROUP);
            let (mut want, mut want_s) = (vec![0u8; lda], vec![0f32; groups]);
            quantize_row_portable(row, &mut want, &mut want_s, 128);
            for isa in isas() {
                let (mut got, mut got_s) = (vec![7u8; lda], vec![0f32; groups]);
                quantize_row(row, &mut got, &mut got_s, 128, isa.vector());
                assert_eq!(got, want, "{isa:?}, {len} values");
                // Signed (AMX's): the same values without the offset.
                let mut signed = vec![7u8; lda];
                quantize_row(row, &mut signed, &mut got_s, 0, isa.vector());
                assert!(signed.iter().zip(&want).all(|(s, w)| s.wrapping_add(128) == *w), "{isa:?} signed");
                assert_eq!(
                    got_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want_s.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn quantisation_handles_zero_and_extreme_rows() {
        let q = Int8Weights::quantize(&[0.0; 8], 2, 4);
        let mut out = [f32::NAN; 2];
        let x = [0.0f32, 1e30, -1e30, 3.0];
        // SAFETY: one row of 4, two outputs.
        unsafe { q.matmul(x.as_ptr(), 1, out.as_mut_ptr(), 2, 0, 2, Isa::Portable, &mut |_, _| {}) };
        assert_eq!(out, [0.0, 0.0]);
        // No inputs at all (a degenerate layer): zeros from every kernel, AMX's row counts too.
        let (q, b) = (Int8Weights::quantize(&[], 3, 0), Bf16Weights::new(&[], 3, 0));
        for isa in isas() {
            for rows in [1, 20] {
                let mut out = vec![f32::NAN; rows * 3];
                // SAFETY: x holds rows x 0 elements (none are read), out rows x 3.
                unsafe { q.matmul([].as_ptr(), rows, out.as_mut_ptr(), 3, 0, 3, isa, &mut |_, _| {}) };
                assert!(out.iter().all(|v| *v == 0.0), "int8 {isa:?} {rows}: {out:?}");
                out.fill(f32::NAN);
                // SAFETY: as above.
                unsafe { b.matmul([].as_ptr(), rows, out.as_mut_ptr(), 3, 0, 3, isa, &mut |_, _| {}) };
                assert!(out.iter().all(|v| *v == 0.0), "bf16 {isa:?} {rows}: {out:?}");
            }
        }
        assert_eq!("INT8".parse::<Precision>(), Ok(Precision::Int8));
        assert!("fp8".parse::<Precision>().is_err());
    }

    #[test]
    fn load_scope_counts_layers_and_restores_the_outer_precision() {
        let ((), outer) = with_load_precision(Precision::Int8, || {
            assert_eq!(load_precision(), Precision::Int8);
            let ((), inner) = with_load_precision(Precision::Bf16, || {
                assert_eq!(load_precision(), Precision::Bf16);
                record_layer(10, 20);
            });
            assert_eq!(inner, LoadStats { dense_parameters: 10, dense_bytes: 20 });
            assert_eq!(load_precision(), Precision::Int8);
            record_layer(1, 2);
        });
        assert_eq!(outer, LoadStats { dense_parameters: 1, dense_bytes: 2 });
        assert_eq!(load_precision(), Precision::F32);
    }
}
