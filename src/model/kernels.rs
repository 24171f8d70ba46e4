//! CPU kernels behind the model code where candle's generic ops are the bottleneck: f32 matrix
//! products straight into caller-owned buffers (the `gemm` crate that candle itself uses, without
//! the zeroed temporaries, transposed copies and broadcast batches), fused epilogues (bias,
//! activation, residual, layer norm) applied while a row is still in cache, vectorised `exp` and
//! `erf`, and multi-head attention that reads query/key/value in place from one fused projection.
//!
//! Everything works on row-major `f32` slices; rows (or a product's output columns) are split
//! across the rayon pool that candle also uses (`RAYON_NUM_THREADS`). Each kernel has a test
//! against candle's own result.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::quant::{self, Precision};
use super::sgemm;

/// Worker threads for the maths (candle's own count: `RAYON_NUM_THREADS`, else the physical
/// cores), read once: without the variable candle parses /proc/cpuinfo on every call, which every
/// parallel step made (4135 reads in a 50-iteration MiniLM benchmark).
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(candle_core::utils::get_num_threads)
}

/// Runs `f(0)..f(tasks - 1)` on `threads()` threads of the kernels' spinning pool (`pool.rs`),
/// each task once; returns when all are done.
pub fn par_for(tasks: usize, f: impl Fn(usize) + Sync) {
    super::pool::run(threads(), tasks, f)
}

/// `data.par_chunks_mut(chunk).enumerate().for_each(f)` on the kernels' pool.
pub fn par_chunks<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let (len, chunk) = (data.len(), chunk.max(1));
    let base = SendPtr(data.as_mut_ptr());
    par_for(len.div_ceil(chunk), |i| {
        let start = i * chunk;
        // SAFETY: chunk i is elements start..min(start + chunk, len) of `data`, disjoint from every
        // other task's, and `data` stays mutably borrowed until `par_for` has returned.
        let block = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), chunk.min(len - start)) };
        f(i, block)
    })
}

/// A contiguous f32 copy of `t`.
pub fn to_vec(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// Runs `f` on `t`'s f32 elements in row-major order, reading candle's own storage in place when
/// it is a contiguous f32 CPU tensor (weights at load time: no extra copy of the model).
pub fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if t.dtype() == DType::F32 {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(f(&cpu.as_slice::<f32>()?[start..end]));
        }
    }
    Ok(f(&to_vec(t)?))
}

pub fn tensor(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &Device::Cpu)
}

/// A zeroed buffer for `len` elements, backed by transparent huge pages where the kernel offers
/// them on request (Linux's `madvise` mode, the default of many distributions; `always` needs no
/// advice): a model's weights are hundreds of megabytes, and faulting them in 4 KiB at a time was
/// most of the load time (ViT-B/16: 105,000 page faults). Huge pages also spare the TLB while the
/// weights stream through every forward pass.
pub fn alloc_zeroed_huge(len: usize) -> Vec<f32> {
    // Large zeroed allocations usually come straight from mmap, untouched, so the advice comes in
    // time; one carved from already touched heap memory just keeps its small pages.
    let v = vec![0f32; len];
    advise_huge_pages(&v);
    v
}

#[cfg(target_os = "linux")]
pub(crate) fn advise_huge_pages<T>(v: &[T]) {
    const HUGE: usize = 2 << 20;
    let start = v.as_ptr() as usize;
    let end = start + std::mem::size_of_val(v);
    let first = start.next_multiple_of(HUGE);
    if end >= first + HUGE {
        let len = (end - first) / HUGE * HUGE;
        // SAFETY: first..first + len lies inside `v`'s live allocation (first is rounded up to a
        // huge page and len down), and MADV_HUGEPAGE is advice: it never changes the contents.
        unsafe {
            libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_huge_pages<T>(_: &[T]) {}

/// Recycled scratch buffers. Fresh multi-megabyte allocations come from the kernel as untouched
/// pages, and faulting them in cost ~8% of a forward pass; activations have the same sizes from
/// layer to layer and call to call, so they are handed back here and reused.
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
const POOL_MAX_BYTES: usize = 256 << 20;
const POOL_MIN_LEN: usize = 16 * 1024;
const POOL_MAX_BUFFERS: usize = 48;

/// A buffer of `len` elements with unspecified contents: callers overwrite all of it. Only a
/// buffer of exactly that length is reused (shapes repeat from call to call, and a big buffer is
/// never cut down for a small request).
pub fn alloc(len: usize) -> Vec<f32> {
    if len >= POOL_MIN_LEN {
        let found = {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            pool.iter().position(|b| b.len() == len).map(|i| pool.swap_remove(i))
        };
        if let Some(mut v) = found {
            if cfg!(test) {
                v.fill(f32::NAN); // every kernel must overwrite what it is handed
            }
            return v;
        }
    }
    vec![0f32; len]
}

/// Hands a buffer back for reuse.
pub fn recycle(v: Vec<f32>) {
    if v.len() < POOL_MIN_LEN {
        return;
    }
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(v);
    // Keep the largest buffers within the budget.
    pool.sort_by_key(|b| std::cmp::Reverse(b.len()));
    let mut total = 0;
    pool.retain(|b| {
        total += b.len() * 4;
        total <= POOL_MAX_BYTES
    });
    pool.truncate(POOL_MAX_BUFFERS);
}

/// Strided matrix view: element `(i, j)` is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub struct MatRef {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// `dst (m x n, row stride dst_rs) = beta * lhs · rhs (+ dst when accumulate)`.
///
/// # Safety
/// Every element the views address must be in bounds of live allocations, and `dst` must not
/// overlap `lhs` or `rhs`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_raw(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: MatRef,
    rhs: MatRef,
    beta: f32,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of `dst` (n elements from i * dst_rs) is in bounds by the contract.
                std::ptr::write_bytes(dst.add(i * dst_rs), 0, n);
            }
        }
        return;
    }
    // SAFETY: the caller guarantees that every element the three views address is in bounds and
    // that `dst` overlaps neither input, which is all gemm requires; dst_cs = 1 matches `dst_rs`.
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        1.0,
        beta,
        false,
        false,
        false,
        par,
    );
}

/// Element-wise function applied after a matrix product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    /// Exact (erf) GELU.
    Gelu,
    /// Tanh-approximated GELU.
    GeluTanh,
    /// `x * sigmoid(1.702 x)`.
    QuickGelu,
    Tanh,
}

/// A fully connected layer `y = x Wᵀ + b`. In f32 the weight is kept transposed, `(in, out)`
/// row-major, the layout `gemm` packs fastest (most so for few rows, as with one short sentence);
/// in bf16 and int8 it is packed for `quant`'s kernels.
pub struct Dense {
    weights: Packed,
    pub bias: Option<Vec<f32>>,
    pub inputs: usize,
    pub outputs: usize,
}

enum Packed {
    /// `Wᵀ`: `inputs x outputs`, row-major, for `gemm` (CPUs without AVX-512F).
    F32(Vec<f32>),
    /// Packed once for the AVX-512 kernel (`sgemm`).
    F32Blocks(sgemm::F32Weights),
    Bf16(quant::Bf16Weights),
    Int8(quant::Int8Weights),
}

impl Dense {
    /// From a weight as PyTorch stores it, `(out, in)` row-major, and an optional bias `(out,)`,
    /// in the precision of the model load under way (`quant::with_load_precision`; f32 outside one).
    pub fn new(weight: &[f32], bias: Option<Vec<f32>>, outputs: usize, inputs: usize) -> Self {
        Self::with_precision(weight, bias, outputs, inputs, quant::load_precision())
    }

    /// As `new`, in the given precision.
    pub fn with_precision(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        outputs: usize,
        inputs: usize,
        precision: Precision,
    ) -> Self {
        assert_eq!(weight.len(), outputs * inputs);
        if let Some(b) = &bias {
            assert_eq!(b.len(), outputs);
        }
        let weights = match precision {
            Precision::F32 if sgemm::available() => Packed::F32Blocks(sgemm::F32Weights::new(weight, outputs, inputs)),
            Precision::F32 => Packed::F32(transpose(weight, outputs, inputs)),
            Precision::Bf16 => Packed::Bf16(quant::Bf16Weights::new(weight, outputs, inputs)),
            Precision::Int8 => Packed::Int8(quant::Int8Weights::quantize(weight, outputs, inputs)),
        };
        let dense = Self { weights, bias, inputs, outputs };
        quant::record_layer(inputs * outputs + outputs * dense.bias.is_some() as usize, dense.bytes());
        dense
    }

    /// From candle tensors: weight `(out, in)`, optional bias `(out,)`.
    pub fn from_tensors(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let bias = bias.map(to_vec).transpose()?;
        with_slice(weight, |w| Self::new(w, bias, outputs, inputs))
    }

    /// The layer under `vb` (`weight` `(outputs, inputs)`, optional `bias`), its weight read in
    /// place from the checkpoint's file mapping when it can be ([`weights::read_mapped`]): one pass
    /// from the page cache into the packed layout, instead of a copy first.
    pub fn load(vb: &candle_nn::VarBuilder, inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        let name = format!("{}.weight", vb.prefix());
        let bias = || -> Result<Option<Vec<f32>>> { bias.then(|| to_vec(&vb.get(outputs, "bias")?)).transpose() };
        // The weight first, so that a wrong shape is reported by its name.
        let mapped =
            super::weights::read_mapped(&name, &[outputs, inputs], |w| Ok(Self::new(w, bias()?, outputs, inputs)));
        match mapped {
            Some(dense) => dense,
            None => {
                let weight = vb.get((outputs, inputs), "weight")?;
                with_slice(&weight, |w| Ok(Self::new(w, bias()?, outputs, inputs)))?
            }
        }
    }

    /// Layers under `vbs` with the same input size, stacked into one (query/key/value): their
    /// outputs side by side. Weights come from the file mapping as in [`Dense::load`].
    pub fn load_stacked(vbs: &[candle_nn::VarBuilder], inputs: usize, outputs: usize, bias: bool) -> Result<Self> {
        let mut weight = Vec::with_capacity(vbs.len() * outputs * inputs);
        let mut biases = Vec::with_capacity(vbs.len() * outputs);
        for vb in vbs {
            let name = format!("{}.weight", vb.prefix());
            if super::weights::read_mapped(&name, &[outputs, inputs], |w| weight.extend_from_slice(w)).is_none() {
                weight.extend(to_vec(&vb.get((outputs, inputs), "weight")?)?);
            }
            if bias {
                biases.extend(to_vec(&vb.get(outputs, "bias")?)?);
            }
        }
        Ok(Self::new(&weight, bias.then_some(biases), vbs.len() * outputs, inputs))
    }

    pub fn from_linear(linear: &candle_nn::Linear) -> Result<Self> {
        Self::from_tensors(linear.weight(), linear.bias())
    }

    /// Layers with the same input size stacked into one (query/key/value in one product): the
    /// outputs of `parts` side by side.
    pub fn stacked(parts: &[candle_nn::Linear]) -> Result<Self> {
        let weights: Vec<&Tensor> = parts.iter().map(|p| p.weight()).collect();
        let weight = Tensor::cat(&weights, 0)?;
        let bias = if parts.iter().any(|p| p.bias().is_some()) {
            let biases = parts
                .iter()
                .map(|p| match p.bias() {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(p.weight().dim(0)?, p.weight().dtype(), p.weight().device()),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Self::from_tensors(&weight, bias.as_ref())
    }

    pub fn precision(&self) -> Precision {
        match self.weights {
            Packed::F32(_) | Packed::F32Blocks(_) => Precision::F32,
            Packed::Bf16(_) => Precision::Bf16,
            Packed::Int8(_) => Precision::Int8,
        }
    }

    /// The bytes the prepared weights and bias hold.
    pub fn bytes(&self) -> usize {
        let weights = match &self.weights {
            Packed::F32(w) => w.len() * 4,
            Packed::F32Blocks(w) => w.bytes(),
            Packed::Bf16(w) => w.bytes(),
            Packed::Int8(w) => w.bytes(),
        };
        weights + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// `x`: `rows x inputs` row-major → `rows x outputs`, with bias and `act`.
    pub fn forward(&self, x: &[f32], act: Act) -> Vec<f32> {
        self.forward_with(x, act, None)
    }

    /// As `forward`, adding `residual` (`rows x outputs`) after the bias and before `act`.
    pub fn forward_with(&self, x: &[f32], act: Act, residual: Option<&[f32]>) -> Vec<f32> {
        let rows = x.len() / self.inputs.max(1);
        assert_eq!(rows * self.inputs, x.len());
        let mut out = alloc(rows * self.outputs);
        self.run(x, rows, &mut out, &Epilogue { bias: self.bias.as_deref(), residual, act });
        out
    }

    /// As `forward_with` for an input that is never materialised whole: `gather(first_row,
    /// block)` writes rows `first_row..` of it (`block.len() / inputs` of them) into `block`, as a
    /// convolution gathers its windows. Each thread gathers and multiplies its own rows in tiles
    /// that stay in cache; with few rows (split by columns) the input is gathered once.
    pub fn forward_gathered<G>(&self, rows: usize, act: Act, residual: Option<&[f32]>, gather: G) -> Vec<f32>
    where
        G: Fn(usize, &mut [f32]) + Sync,
    {
        let (k, n) = (self.inputs, self.outputs);
        let mut out = alloc(rows * n);
        let epilogue = Epilogue { bias: self.bias.as_deref(), residual, act };
        let per = match self.split(rows) {
            Split::Cols(_) => {
                let mut x = alloc(rows * k);
                let per_task = rows.div_ceil(threads()).max(1);
                par_chunks(&mut x, per_task * k, |t, block| gather(t * per_task, block));
                self.run(&x, rows, &mut out, &epilogue);
                recycle(x);
                return out;
            }
            Split::Rows(per) => per,
            Split::None => rows.max(1),
        };
        // Tiles of about 512 KB of gathered input (in L2 when the product reads them back), but
        // at least as many rows as outputs, so that packing the weights (once per tile) costs no
        // more than gathering; wide late layers therefore take bigger tiles.
        let tile = ((128usize << 10) / k.max(1)).max(n).max(64).min(per);
        let dst = SendPtr(out.as_mut_ptr());
        let block = |r0: usize, r1: usize| {
            let mut x = alloc(tile.min(r1 - r0) * k);
            for start in (r0..r1).step_by(tile) {
                let len = tile.min(r1 - start);
                gather(start, &mut x[..len * k]);
                // SAFETY: `x` holds len <= tile.min(r1 - r0) rows of k; rows start..start + len of
                // `out` (rows * n elements) are in bounds as start + len <= r1 <= rows, and only
                // this task writes them (tasks own disjoint row ranges r0..r1); `out`, `x` and the
                // weights are distinct allocations.
                unsafe {
                    self.block(x.as_ptr(), len, dst.get().add(start * n), 0, n, &mut |a, b| {
                        epilogue.apply(dst.get(), n, start + a, start + b, 0, n)
                    });
                }
            }
            recycle(x);
        };
        if per >= rows {
            block(0, rows);
        } else {
            par_for(rows.div_ceil(per), |t| block(t * per, ((t + 1) * per).min(rows)));
        }
        out
    }

    /// `out = x Wᵀ`, then `epilogue` on each block while it is still in cache. The product is
    /// split across threads by hand, one single-threaded product per thread and no other
    /// synchronisation: by rows when there are at least as many rows as outputs, else by output
    /// columns (few rows, as for one image's last stages or one sentence). On two cores this beats
    /// the `gemm` crate's own threading by 10-60% on those shapes (`examples/matmul_bench.rs`).
    fn run(&self, x: &[f32], rows: usize, out: &mut [f32], epilogue: &Epilogue) {
        let (k, n) = (self.inputs, self.outputs);
        assert!(x.len() >= rows * k && out.len() >= rows * n);
        let block = |r0: usize, r1: usize, c0: usize, c1: usize, dst: SendPtr| {
            // SAFETY: every call below has r1 <= rows and c1 <= n, so the x rows read
            // (x.len() >= rows * k, asserted) and the dst block written (rows r0..r1, columns
            // c0..c1 of `out`, out.len() >= rows * n) are in bounds; the calls made in parallel
            // write disjoint row ranges or disjoint column ranges, and `x`, `out` and the weights
            // cannot overlap (`x: &[f32]` and `out: &mut [f32]` are both borrowed here).
            unsafe {
                self.block(x[r0 * k..].as_ptr(), r1 - r0, dst.get().add(r0 * n + c0), c0, c1 - c0, &mut |a, b| {
                    epilogue.apply(dst.get(), n, r0 + a, r0 + b, c0, c1)
                });
            }
        };
        let dst = SendPtr(out.as_mut_ptr());
        match self.split(rows) {
            Split::None => block(0, rows, 0, n, dst),
            Split::Rows(per) => par_for(rows.div_ceil(per), |t| block(t * per, ((t + 1) * per).min(rows), 0, n, dst)),
            Split::Cols(per) => par_for(n.div_ceil(per), |t| block(0, rows, t * per, ((t + 1) * per).min(n), dst)),
        }
    }

    /// How a product of `rows` rows is shared among the threads. The AMX kernels convert each
    /// thread's activations themselves, so a split by columns would convert every row once per
    /// thread: with enough rows for a few 16-row tiles each, they split by rows instead.
    fn split(&self, rows: usize) -> Split {
        let (k, n) = (self.inputs, self.outputs);
        let amx = match &self.weights {
            Packed::F32(_) | Packed::F32Blocks(_) => false,
            Packed::Bf16(_) => quant::isa(Precision::Bf16) == quant::Isa::Amx,
            Packed::Int8(_) => quant::isa(Precision::Int8) == quant::Isa::Amx,
        };
        match split(rows, n, k) {
            Split::Cols(_) if amx && rows >= 64 * threads() => Split::Rows(rows.div_ceil(threads())),
            other => other,
        }
    }

    /// Single-threaded `dst[i][..cols] = x[i] · Wᵀ[:, c0..c0 + cols]` for `rows` rows; `x` has row
    /// stride `inputs`, `dst` row stride `outputs`. `done(a, b)` is called as rows `a..b` are
    /// finished, in order, covering all rows once: at the end, or for the AMX kernels after each
    /// 16-row tile (int8) or 128-row chunk (bf16), so that the epilogue finds them still in cache.
    ///
    /// # Safety
    /// `x` must hold `rows x inputs` elements, `dst` `rows` rows of `outputs` from its start, and
    /// `c0 + cols <= outputs`.
    unsafe fn block(
        &self,
        x: *const f32,
        rows: usize,
        dst: *mut f32,
        c0: usize,
        cols: usize,
        done: &mut dyn FnMut(usize, usize),
    ) {
        let (k, n) = (self.inputs as isize, self.outputs);
        let wt = match &self.weights {
            Packed::F32(wt) => wt,
            Packed::F32Blocks(w) => {
                // SAFETY: the same contract; `F32Weights` exists only where `sgemm::available()`,
                // and column ranges start at multiples of 16 (`split_for`).
                w.matmul(x, rows, dst, n, c0, cols);
                return done(0, rows);
            }
            // SAFETY: the same contract; `split_for` hands out column ranges from multiples of 16.
            Packed::Bf16(w) => return w.matmul(x, rows, dst, n, c0, cols, quant::isa(Precision::Bf16), done),
            Packed::Int8(w) => return w.matmul(x, rows, dst, n, c0, cols, quant::isa(Precision::Int8), done),
        };
        // SAFETY: `wt` is inputs x outputs, so from column c0 the right-hand view addresses
        // wt[i * n + c0 + j] for i < inputs, j < cols <= outputs - c0; `x` and `dst` are in bounds
        // by this function's contract, and `wt` is owned by `self`, apart from both.
        matmul_raw(
            rows,
            cols,
            self.inputs,
            dst,
            n,
            MatRef { ptr: x, rs: k, cs: 1 },
            MatRef { ptr: wt.as_ptr().add(c0), rs: n as isize, cs: 1 },
            1.0,
            false,
            gemm::Parallelism::None,
        );
        done(0, rows);
    }
}

/// How a `rows x k · k x n` product is shared among the threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    None,
    /// Blocks of this many rows.
    Rows(usize),
    /// Blocks of this many output columns.
    Cols(usize),
}

fn split(rows: usize, n: usize, k: usize) -> Split {
    split_for(threads(), rows, n, k)
}

/// `split` for `t` threads.
fn split_for(t: usize, rows: usize, n: usize, k: usize) -> Split {
    if t <= 1 || rows * n * k < 1 << 18 {
        Split::None
    } else if rows >= n {
        Split::Rows(rows.div_ceil(t))
    } else {
        // Multiples of 16 columns per thread: whole AVX2 tiles, and whole 16-wide vectors of the
        // AVX-512 kernels.
        Split::Cols(n.div_ceil(t).next_multiple_of(16).min(n))
    }
}

/// What follows a product, element-wise: `act(y + bias (+ residual))`.
struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    act: Act,
}

impl Epilogue<'_> {
    /// On rows `r0..r1`, columns `c0..c1` of the `width`-wide row-major matrix at `dst`.
    ///
    /// # Safety
    /// `dst` must hold `r1` rows of `width`, with no other thread touching that block.
    unsafe fn apply(&self, dst: *mut f32, width: usize, r0: usize, r1: usize, c0: usize, c1: usize) {
        if self.bias.is_none() && self.residual.is_none() && self.act == Act::None {
            return;
        }
        if c0 == 0 && c1 == width {
            // Contiguous rows: one pass over the block.
            // SAFETY: rows r0..r1 of `width` lie inside `dst` by the contract, and no other thread
            // touches them while this slice lives.
            let block = std::slice::from_raw_parts_mut(dst.add(r0 * width), (r1 - r0) * width);
            let residual = self.residual.map(|r| &r[r0 * width..r1 * width]);
            epilogue_serial(block, width, self.bias, residual, self.act);
            return;
        }
        for r in r0..r1 {
            // SAFETY: columns c0..c1 of row r < r1 lie inside `dst`, and belong to this caller alone.
            let row = std::slice::from_raw_parts_mut(dst.add(r * width + c0), c1 - c0);
            if let Some(b) = self.bias {
                add_assign(row, &b[c0..c1]);
            }
            if let Some(res) = self.residual {
                add_assign(row, &res[r * width + c0..r * width + c1]);
            }
            activate(row, self.act);
        }
    }
}

/// `x += bias (+ residual)`, then `act`, on this thread; `x` and `residual` are `rows x width`.
fn epilogue_serial(x: &mut [f32], width: usize, bias: Option<&[f32]>, residual: Option<&[f32]>, act: Act) {
    for (r, row) in x.chunks_mut(width).enumerate() {
        if let Some(b) = bias {
            add_assign(row, b);
        }
        if let Some(res) = residual {
            add_assign(row, &res[r * width..(r + 1) * width]);
        }
    }
    activate(x, act);
}

/// `rows x cols` row-major → `cols x rows` row-major (in cache-sized tiles).
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(x.len(), rows * cols);
    let mut out = alloc_zeroed_huge(rows * cols);
    const T: usize = 32;
    out.par_chunks_mut(T * rows.max(1)).enumerate().for_each(|(cb, block)| {
        let c0 = cb * T;
        let cw = block.len() / rows.max(1);
        for r0 in (0..rows).step_by(T) {
            for c in 0..cw {
                for r in r0..(r0 + T).min(rows) {
                    block[c * rows + r] = x[r * cols + c0 + c];
                }
            }
        }
    });
    out
}

/// Rows per parallel task so that each task has at least ~`min_elems` elements.
fn rows_per_task(rows: usize, width: usize, min_elems: usize) -> usize {
    let t = threads().max(1);
    let by_threads = rows.div_ceil(t * 4).max(1);
    let by_size = min_elems.div_ceil(width.max(1)).max(1);
    by_threads.max(by_size).min(rows.max(1))
}

#[inline]
fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// Applies `act` to every element of `x`, in parallel.
pub fn activate_par(x: &mut [f32], act: Act) {
    if act == Act::None {
        return;
    }
    let chunk = (x.len().div_ceil(threads().max(1) * 4)).max(16 * 1024);
    par_chunks(x, chunk, |_, c| activate(c, act));
}

/// Applies `act` to every element of `x` on this thread.
pub fn activate(x: &mut [f32], act: Act) {
    match act {
        Act::None => {}
        Act::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        _ => simd::activate(x, act),
    }
}

/// Row-wise layer norm in place: `(x - mean) / sqrt(var + eps) * gamma + beta`, in parallel.
pub fn layer_norm_in_place(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    let rows = x.len() / width;
    let chunk = rows_per_task(rows, width, 8 * 1024);
    par_chunks(x, chunk * width, |_, block| {
        for row in block.chunks_mut(width) {
            layer_norm_row(row, gamma, beta, eps);
        }
    });
}

/// `layer_norm(x + y)` row-wise, written into `x`.
pub fn add_layer_norm_in_place(x: &mut [f32], y: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    let rows = x.len() / width;
    assert_eq!(x.len(), y.len());
    let chunk = rows_per_task(rows, width, 8 * 1024);
    par_chunks(x, chunk * width, |i, block| {
        let yb = &y[i * chunk * width..];
        for (row, yr) in block.chunks_mut(width).zip(yb.chunks(width)) {
            add_assign(row, yr);
            layer_norm_row(row, gamma, beta, eps);
        }
    });
}

#[inline]
fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum(row) / n;
    let mut var = 0f32;
    // Eight partial sums: vectorises without reassociation.
    let mut acc = [0f32; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    for &v in rest {
        var += (v - mean) * (v - mean);
    }
    var += acc.iter().sum::<f32>();
    let rstd = 1.0 / (var / n + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * rstd * g + b;
    }
}

#[inline]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Softmax of one row in place (max-subtracted).
#[inline]
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    simd::exp_sub(row, max);
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Multi-head scaled dot-product attention reading query, key and value in place from a fused
/// projection `qkv`: `(batch * seq) x (3 * hidden)` with each row `[q | k | v]`, heads side by side
/// inside each part. `mask`: additive, `(batch or 1) x (seq or 1) x seq` row-major. Returns
/// `(batch * seq) x hidden`, heads side by side (the layout the output projection reads).
pub fn attention(
    qkv: &[f32],
    batch: usize,
    seq: usize,
    heads: usize,
    hidden: usize,
    mask: Option<&AttnMask>,
) -> Vec<f32> {
    let d = hidden / heads;
    let ld = 3 * hidden;
    assert_eq!(qkv.len(), batch * seq * ld);
    let mut out = alloc(batch * seq * hidden);
    let scale = 1.0 / (d as f32).sqrt();
    let out_ptr = SendPtr(out.as_mut_ptr());
    let tasks = batch * heads;
    // Larger problems: each (batch, head) pair is a task of two small products and a softmax.
    let work = |task: usize, scores: &mut Vec<f32>| {
        let (b, h) = (task / heads, task % heads);
        scores.resize(seq * seq, 0.0);
        let base = b * seq * ld;
        let q = MatRef { ptr: qkv[base + h * d..].as_ptr(), rs: ld as isize, cs: 1 };
        // Kᵀ: element (i, j) = K[j][i].
        let kt = MatRef { ptr: qkv[base + hidden + h * d..].as_ptr(), rs: 1, cs: ld as isize };
        let v = MatRef { ptr: qkv[base + 2 * hidden + h * d..].as_ptr(), rs: ld as isize, cs: 1 };
        // SAFETY: qkv.len() == batch * seq * 3 * hidden (asserted) and heads * d <= hidden, so Q
        // (seq x d from column h * d) and Kᵀ (d x seq from column hidden + h * d), both with row
        // stride 3 * hidden inside sequence b, stay inside qkv; `scores` holds seq x seq and is this
        // task's own buffer, apart from qkv.
        unsafe {
            matmul_raw(seq, seq, d, scores.as_mut_ptr(), seq, q, kt, scale, false, gemm::Parallelism::None);
        }
        for (i, row) in scores.chunks_mut(seq).enumerate() {
            if let Some(m) = mask {
                add_assign(row, m.row(b, i));
            }
            softmax_row(row);
        }
        let p = MatRef { ptr: scores.as_ptr(), rs: seq as isize, cs: 1 };
        let dst = out_ptr;
        // SAFETY: P is `scores` (seq x seq); V (seq x d from column 2 * hidden + h * d) stays inside
        // qkv as above; the destination, rows b * seq.. of `out` (batch * seq x hidden) at columns
        // h * d..(h + 1) * d, is in bounds and written by this (batch, head) task alone; `out`
        // outlives the parallel loop and overlaps neither input.
        unsafe {
            matmul_raw(
                seq,
                d,
                seq,
                dst.0.add(b * seq * hidden + h * d),
                hidden,
                p,
                v,
                1.0,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    thread_local! {
        static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    par_for(tasks, |task| SCORES.with(|scores| work(task, &mut scores.borrow_mut())));
    out
}

/// A buffer's pointer shared with the threads that each write their own block of it.
pub(crate) struct SendPtr<T = f32>(pub(crate) *mut T);
// SAFETY: a raw pointer is only an address; every user writes a block no other thread touches,
// and the buffer outlives the parallel loop that shares it (`par_for` returns only when all its
// tasks are done), so moving or sharing the address is sound for elements that may cross threads.
unsafe impl<T: Send> Send for SendPtr<T> {}
// SAFETY: as for Send: shared references to it only copy the address out.
unsafe impl<T: Send> Sync for SendPtr<T> {}

// By hand: a derive would ask `T: Copy`, and the address is copyable whatever it points to.
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// An additive attention mask, `(batch or 1, seq or 1, seq)`.
pub struct AttnMask {
    data: Vec<f32>,
    batch: usize,
    rows: usize,
    seq: usize,
}

impl AttnMask {
    /// From a tensor broadcastable to `(batch, 1, seq, seq)`: `(b or 1, 1, seq or 1, seq)`.
    pub fn from_tensor(mask: &Tensor, batch: usize, seq: usize) -> Result<Self> {
        let (mb, mh, mr, mc) = mask.dims4()?;
        if mh != 1 || mc != seq || !(mb == 1 || mb == batch) || !(mr == 1 || mr == seq) {
            candle_core::bail!(
                "attention mask of shape {:?} does not broadcast to ({batch}, heads, {seq}, {seq})",
                mask.dims()
            );
        }
        Ok(Self { data: to_vec(mask)?, batch: mb, rows: mr, seq })
    }

    /// From values laid out `(batch, rows, seq)` row-major, `rows` 1 (the same for every query)
    /// or `seq`.
    pub(crate) fn from_rows(data: Vec<f32>, batch: usize, rows: usize, seq: usize) -> Self {
        assert_eq!(data.len(), batch * rows * seq, "attention mask size");
        Self { data, batch, rows, seq }
    }

    /// The additive mask of query row `i` in sequence `b`.
    #[inline]
    pub(crate) fn row(&self, b: usize, i: usize) -> &[f32] {
        let b = if self.batch == 1 { 0 } else { b };
        let i = if self.rows == 1 { 0 } else { i };
        let start = (b * self.rows + i) * self.seq;
        &self.data[start..start + self.seq]
    }
}

/// Vectorised transcendental functions: one generic body, compiled for AVX2+FMA when the CPU has
/// it (checked once at run time) and for the baseline otherwise.
pub mod simd {
    use super::Act;

    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two for an exact range reduction (Cephes).
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;

    /// `a * b + c`, fused where the instantiation is compiled with FMA.
    #[inline(always)]
    pub(crate) fn ma<const F: bool>(a: f32, b: f32, c: f32) -> f32 {
        if F {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }

    /// `e^x` to about 2 ulp (Cephes `expf` polynomial), 0 below -87.3, branch-free.
    #[inline(always)]
    pub fn exp<const F: bool>(x: f32) -> f32 {
        let xc = x.clamp(-87.33, 88.37);
        let n = (xc * LOG2E + 0.5).floor();
        let r = xc - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4f32;
        p = ma::<F>(p, r, 1.398_199_9e-3);
        p = ma::<F>(p, r, 8.333_452e-3);
        p = ma::<F>(p, r, 4.166_579_6e-2);
        p = ma::<F>(p, r, 0.166_666_65);
        p = ma::<F>(p, r, 0.5);
        let y = ma::<F>(p * r, r, r) + 1.0;
        // 2^n from n's bits: adding 1.5 · 2^23 puts the integer n in the low mantissa bits. A
        // plain `n as i32` (saturating, NaN to 0) does not vectorise: it compiled to one scalar
        // conversion per lane and was most of GELU's time (15% of ConvNeXt-T). n is in -126..=127.
        let ni = (n + 12_582_912.0).to_bits().wrapping_sub(0x4b40_0000) as i32;
        let scale = f32::from_bits(((ni + 127) << 23) as u32);
        let v = y * scale;
        if x < -87.33 {
            0.0
        } else {
            v
        }
    }

    /// `erf(x)` (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7; PyTorch's vectorised
    /// CPU `erf` uses the same formula).
    #[inline(always)]
    pub fn erf<const F: bool>(x: f32) -> f32 {
        let a = x.abs();
        let t = 1.0 / ma::<F>(0.327_591_1, a, 1.0);
        let mut p = 1.061_405_4f32;
        p = ma::<F>(p, t, -1.453_152);
        p = ma::<F>(p, t, 1.421_413_8);
        p = ma::<F>(p, t, -0.284_496_74);
        p = ma::<F>(p, t, 0.254_829_6);
        let y = 1.0 - p * t * exp::<F>(-a * a);
        y.copysign(x)
    }

    #[inline(always)]
    fn tanh<const F: bool>(x: f32) -> f32 {
        // 1 - 2 / (e^{2x} + 1): saturates cleanly at both ends.
        1.0 - 2.0 / (exp::<F>(2.0 * x) + 1.0)
    }

    #[inline(always)]
    fn act_one<const F: bool>(v: f32, act: Act) -> f32 {
        match act {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::Gelu => 0.5 * v * (1.0 + erf::<F>(v * std::f32::consts::FRAC_1_SQRT_2)),
            Act::GeluTanh => {
                let u = 0.797_884_6 * (v + 0.044_715 * v * v * v);
                0.5 * v * (1.0 + tanh::<F>(u))
            }
            Act::QuickGelu => v / (1.0 + exp::<F>(-1.702 * v)),
            Act::Tanh => tanh::<F>(v),
        }
    }

    #[inline(always)]
    fn activate_body<const F: bool>(x: &mut [f32], act: Act) {
        macro_rules! each {
            ($a:expr) => {
                x.iter_mut().for_each(|v| *v = act_one::<F>(*v, $a))
            };
        }
        match act {
            Act::None => {}
            Act::Relu => each!(Act::Relu),
            Act::Gelu => each!(Act::Gelu),
            Act::GeluTanh => each!(Act::GeluTanh),
            Act::QuickGelu => each!(Act::QuickGelu),
            Act::Tanh => each!(Act::Tanh),
        }
    }

    #[inline(always)]
    fn exp_sub_body<const F: bool>(x: &mut [f32], shift: f32) {
        x.iter_mut().for_each(|v| *v = exp::<F>(*v - shift));
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA (`has_avx2`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn activate_avx2(x: &mut [f32], act: Act) {
        activate_body::<true>(x, act)
    }

    /// The same body sixteen lanes wide: half the instructions for the long activation passes
    /// (GELU over a ConvNeXt or BERT intermediate layer).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, AVX2 and FMA (`has_avx512`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn activate_avx512(x: &mut [f32], act: Act) {
        activate_body::<true>(x, act)
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx512() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| has_avx2() && is_x86_feature_detected!("avx512f"))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA (`has_avx2`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp_sub_avx2(x: &mut [f32], shift: f32) {
        exp_sub_body::<true>(x, shift)
    }

    /// Whether the CPU has AVX2 and FMA (checked once).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn has_avx2() -> bool {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }

    pub fn activate(x: &mut [f32], act: Act) {
        #[cfg(target_arch = "x86_64")]
        if has_avx512() {
            // SAFETY: has_avx512 checked AVX-512F, AVX2 and FMA at run time.
            return unsafe { activate_avx512(x, act) };
        }
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: has_avx2 checked AVX2 and FMA at run time.
            return unsafe { activate_avx2(x, act) };
        }
        activate_body::<false>(x, act)
    }

    /// `x = e^(x - shift)`.
    pub fn exp_sub(x: &mut [f32], shift: f32) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: has_avx2 checked AVX2 and FMA at run time.
            return unsafe { exp_sub_avx2(x, shift) };
        }
        exp_sub_body::<false>(x, shift)
    }
}

/// Deterministic pseudo-random values in `[-amplitude, amplitude)`, for kernel tests.
#[cfg(test)]
pub(crate) fn random_tensor(shape: &[usize], seed: u64, amplitude: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 * amplitude - amplitude
        })
        .collect();
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu).expect("shape matches the data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Module, D};

    fn rand(shape: &[usize], seed: u64) -> Tensor {
        random_tensor(shape, seed, 2.0)
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn exp_matches_std() {
        // Normal results only: below -87.3 (denormals) the kernel returns 0.
        for i in -8700..8800 {
            let x = i as f32 * 0.01;
            let mut v = [x; 1];
            simd::exp_sub(&mut v, 0.0);
            let want = x.exp();
            assert!(((v[0] - want) / want).abs() < 4e-7, "exp({x}) = {} vs {want}", v[0]);
        }
        let mut v = [f32::MIN, -1e30, -100.0, f32::NEG_INFINITY];
        simd::exp_sub(&mut v, 0.0);
        assert_eq!(v, [0.0; 4]);
    }

    #[test]
    fn activations_match_candle() {
        let x = rand(&[4, 1000], 1);
        let x = (x * 3.0).unwrap();
        let data = to_vec(&x).unwrap();
        let cases: [(Act, Tensor); 4] = [
            (Act::Gelu, x.gelu_erf().unwrap()),
            (Act::GeluTanh, x.gelu().unwrap()),
            (Act::QuickGelu, x.broadcast_mul(&candle_nn::ops::sigmoid(&(&x * 1.702).unwrap()).unwrap()).unwrap()),
            (Act::Tanh, x.tanh().unwrap()),
        ];
        for (act, want) in cases {
            let mut got = data.clone();
            activate_par(&mut got, act);
            let d = max_diff(&got, &to_vec(&want).unwrap());
            assert!(d < 2e-6, "{act:?}: max difference {d}");
        }
        let mut got = data.clone();
        activate_par(&mut got, Act::Relu);
        assert_eq!(got, to_vec(&x.relu().unwrap()).unwrap());
    }

    #[test]
    fn dense_matches_candle_linear() {
        // Serial, split by columns (a ragged last block too), split by rows.
        for &(rows, k, n) in &[(1, 7, 5), (17, 384, 1152), (5, 300, 1000), (40, 200, 70), (300, 64, 33)] {
            if (rows, k, n) == (40, 200, 70) {
                assert_eq!(split_for(2, rows, n, k), Split::Cols(48));
                assert_eq!(split_for(4, rows, n, k), Split::Cols(32));
            }
            let x = rand(&[rows, k], 2);
            let w = rand(&[n, k], 3);
            let b = rand(&[n], 4);
            let linear = candle_nn::Linear::new(w.clone(), Some(b.clone()));
            let want = linear.forward(&x).unwrap().gelu_erf().unwrap();
            let dense = Dense::from_linear(&linear).unwrap();
            let got = dense.forward(&to_vec(&x).unwrap(), Act::Gelu);
            let d = max_diff(&got, &to_vec(&want).unwrap());
            assert!(d < 1e-4, "{rows}x{k}x{n}: {d}");
            // Residual in the epilogue.
            let r = rand(&[rows, n], 5);
            let want = (linear.forward(&x).unwrap() + &r).unwrap();
            let got = dense.forward_with(&to_vec(&x).unwrap(), Act::None, Some(&to_vec(&r).unwrap()));
            assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-4);
        }
        // Stacked layers give the parts side by side (one part without a bias).
        let x = rand(&[3, 8], 6);
        let linears: Vec<candle_nn::Linear> = (0..3)
            .map(|i| candle_nn::Linear::new(rand(&[4, 8], 10 + i), (i != 1).then(|| rand(&[4], 20 + i))))
            .collect();
        let singles: Vec<Vec<f32>> =
            linears.iter().map(|p| Dense::from_linear(p).unwrap().forward(&to_vec(&x).unwrap(), Act::None)).collect();
        let fused = Dense::stacked(&linears).unwrap().forward(&to_vec(&x).unwrap(), Act::None);
        for r in 0..3 {
            for (i, s) in singles.iter().enumerate() {
                assert_eq!(&fused[r * 12 + i * 4..r * 12 + i * 4 + 4], &s[r * 4..r * 4 + 4]);
            }
        }
    }

    #[test]
    fn reduced_precision_layers_follow_f32_through_the_threaded_paths() {
        // Shapes that take each split (none, by rows, by columns) and a gathered input, in every
        // precision: the reduced ones within their rounding of f32.
        for &(rows, k, n) in &[(3, 40, 24), (300, 128, 64), (4, 384, 1536), (17, 384, 384)] {
            let x = to_vec(&rand(&[rows, k], 31)).unwrap();
            let w = to_vec(&rand(&[n, k], 32)).unwrap();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let reference = Dense::with_precision(&w, Some(bias.clone()), n, k, Precision::F32).forward(&x, Act::Gelu);
            let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (precision, tolerance) in [(Precision::Bf16, 0.01), (Precision::Int8, 0.03)] {
                let dense = Dense::with_precision(&w, Some(bias.clone()), n, k, precision);
                assert_eq!(dense.precision(), precision);
                let got = dense.forward(&x, Act::Gelu);
                let d = max_diff(&got, &reference);
                assert!(d < tolerance * scale, "{precision} {rows}x{k}x{n}: {d} (scale {scale})");
                let gathered = dense.forward_gathered(rows, Act::Gelu, None, |start, block| {
                    block.copy_from_slice(&x[start * k..start * k + block.len()])
                });
                assert_eq!(gathered, got, "{precision}: gathered rows give the same result");
            }
        }
        // Sizes in memory: bf16 half of f32; int8 a quarter plus, per output, one f32 scale and
        // one i32 offset sum per group of 64 inputs.
        let w = vec![0.5f32; 64 * 256];
        let f = Dense::with_precision(&w, None, 64, 256, Precision::F32).bytes();
        assert_eq!(f, 64 * 256 * 4);
        assert_eq!(Dense::with_precision(&w, None, 64, 256, Precision::Bf16).bytes() * 2, f);
        assert_eq!(Dense::with_precision(&w, None, 64, 256, Precision::Int8).bytes(), f / 4 + 64 * 4 * (1 + 256 / 64));
    }

    #[test]
    fn layer_norm_matches_candle() {
        let x = (rand(&[37, 384], 7) * 5.0).unwrap();
        let y = rand(&[37, 384], 8);
        let g = rand(&[384], 9);
        let b = rand(&[384], 10);
        let want = candle_nn::ops::layer_norm(&(&x + &y).unwrap(), &g, &b, 1e-12).unwrap();
        let mut got = to_vec(&x).unwrap();
        add_layer_norm_in_place(&mut got, &to_vec(&y).unwrap(), &to_vec(&g).unwrap(), &to_vec(&b).unwrap(), 1e-12);
        assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-5);
        let want = candle_nn::ops::layer_norm(&x, &g, &b, 1e-5).unwrap();
        let mut got = to_vec(&x).unwrap();
        layer_norm_in_place(&mut got, &to_vec(&g).unwrap(), &to_vec(&b).unwrap(), 1e-5);
        assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-5);
    }

    /// Attention as candle ops: split heads, scores, mask, softmax, context.
    fn candle_attention(qkv: &Tensor, b: usize, t: usize, heads: usize, h: usize, mask: Option<&Tensor>) -> Tensor {
        let d = h / heads;
        let split = |i: usize| {
            qkv.narrow(D::Minus1, i * h, h)
                .unwrap()
                .reshape((b, t, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (q, k, v) = (split(0), split(1), split(2));
        let scores = (q.matmul(&k.t().unwrap()).unwrap() * (1.0 / (d as f64).sqrt())).unwrap();
        let scores = match mask {
            Some(m) => scores.broadcast_add(m).unwrap(),
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        probs.matmul(&v).unwrap().transpose(1, 2).unwrap().reshape((b * t, h)).unwrap()
    }

    #[test]
    fn attention_matches_candle() {
        let (b, t, heads, h) = (3, 11, 4, 32);
        let qkv = rand(&[b * t, 3 * h], 11);
        let data = to_vec(&qkv).unwrap();
        // No mask.
        let want = candle_attention(&qkv, b, t, heads, h, None);
        let got = attention(&data, b, t, heads, h, None);
        assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-5);
        // Padding mask (batch, 1, 1, seq): the last 4 tokens of sequence 1 are padding.
        let mut pad = vec![1f32; b * t];
        pad[t + 7..2 * t].iter_mut().for_each(|v| *v = 0.0);
        let pad = crate::model::layers::padding_mask(&tensor(pad, &[b, t]).unwrap()).unwrap();
        let want = candle_attention(&qkv, b, t, heads, h, Some(&pad));
        let got = attention(&data, b, t, heads, h, Some(&AttnMask::from_tensor(&pad, b, t).unwrap()));
        assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-5);
        // Causal mask (1, 1, seq, seq).
        let causal = crate::model::layers::causal_mask(t, &Device::Cpu).unwrap();
        let want = candle_attention(&qkv, b, t, heads, h, Some(&causal));
        let got = attention(&data, b, t, heads, h, Some(&AttnMask::from_tensor(&causal, b, t).unwrap()));
        assert!(max_diff(&got, &to_vec(&want).unwrap()) < 1e-5);
    }
}
