//! f32 products over weights packed once, at load, for an AVX-512 micro-kernel.
//!
//! The `gemm` crate (the fallback, and what candle uses) takes any strided right-hand side and so
//! repacks it on every call: for a model's linear layers, whose weights never change, that is a
//! full read and write of every weight per inference on top of the product itself, which matters
//! most where the product is small (one sentence: 17 rows against 10 M weights). Here each
//! weight is stored once in the layout the kernel reads: blocks of 16 output columns, each block
//! `k` rows of 16 contiguous (64-byte aligned) values, columns past `n` zero.
//!
//! The micro-kernel multiplies up to 6 rows of activations (read in place, one broadcast per
//! element) by up to 4 blocks (64 columns) into 24 AVX-512 accumulators, over at most `KC`
//! inputs at a time so that the weight panel it walks (128 KiB) stays in L2 across the row
//! tiles; a product with more inputs adds each later pass onto the first. Sums are in the same
//! order for every row count and thread split (input by input, `KC` at a time), so results do
//! not depend on how a product is shared among threads.
//!
//! Chosen at run time where the CPU has AVX-512F; `MODELDECK_KERNELS=portable` (or a CPU without
//! it) keeps the `gemm` path.

/// Output columns per packed block: one AVX-512 vector.
pub const NB: usize = 16;
/// Rows per micro-tile.
const MR: usize = 6;
/// Blocks per micro-tile (`NR * NB` = 64 columns).
const NR: usize = 4;
/// Inputs per pass over a panel: 512 x 64 f32 = 128 KiB.
const KC: usize = 512;

/// One packed row of a block: 16 values on one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lane([f32; NB]);

/// A weight `(n, k)` (PyTorch's `(out, in)`) packed for [`F32Weights::matmul`].
pub struct F32Weights {
    pub k: usize,
    pub n: usize,
    data: Vec<Lane>,
}

/// Whether the packed kernel runs on this CPU (AVX-512F, and not `MODELDECK_KERNELS=portable`).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if super::quant::forced_kernels() == "portable" {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

impl F32Weights {
    /// From `weight`, `n x k` row-major, in one pass.
    pub fn new(weight: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(weight.len(), n * k);
        let len = n.div_ceil(NB) * k;
        // Written once, in place: a fresh allocation of this size is untouched memory, advised
        // onto huge pages before the first write (4 KiB faults were most of a cold load).
        let mut data: Vec<Lane> = Vec::with_capacity(len);
        super::kernels::advise_huge_pages(data.spare_capacity_mut());
        use rayon::prelude::*;
        // One block (k x 16, at most a few hundred KiB) per task, lane by lane: its 16 source
        // rows are read in step.
        data.spare_capacity_mut()[..len].par_chunks_mut(k.max(1)).enumerate().for_each(|(b, block)| {
            let cols = NB.min(n - b * NB);
            let src = &weight[b * NB * k..(b * NB + cols) * k];
            for (p, lane) in block.iter_mut().enumerate() {
                let mut values = [0f32; NB];
                for (j, v) in values[..cols].iter_mut().enumerate() {
                    *v = src[j * k + p];
                }
                lane.write(Lane(values));
            }
        });
        // SAFETY: the chunks cover all `len` lanes (blocks of k, the last one too, as len is a
        // multiple of k), each written above.
        unsafe { data.set_len(len) };
        Self { k, n, data }
    }

    /// The bytes held (padding columns included).
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<Lane>()
    }

    /// `dst[r][j] = Σ_p x[r][p] · w[c0 + j][p]` for `r < rows`, `j < cols`: `x` is row-major with
    /// row stride `k`, `dst` points at column `c0` of a matrix with row stride `dst_rs`.
    ///
    /// # Safety
    /// `available()` must be true; `x` must hold `rows x k` elements and `dst` `rows` rows of
    /// `dst_rs` (from column `c0`'s offset, `cols` of them), not overlapping `x`.
    pub unsafe fn matmul(&self, x: *const f32, rows: usize, dst: *mut f32, dst_rs: usize, c0: usize, cols: usize) {
        assert!(c0.is_multiple_of(NB) && c0 + cols <= self.n);
        let k = self.k;
        if rows == 0 || cols == 0 {
            return;
        }
        if k == 0 {
            for r in 0..rows {
                // SAFETY: row r < rows of `dst` holds `cols` values from its start.
                std::ptr::write_bytes(dst.add(r * dst_rs), 0, cols);
            }
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let (b0, b1) = (c0 / NB, (c0 + cols).div_ceil(NB));
            let base = self.data.as_ptr() as *const f32;
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                for bb in (b0..b1).step_by(NR) {
                    let nr = NR.min(b1 - bb);
                    // Columns of this tile that are in the requested range.
                    let valid = (c0 + cols).min((bb + nr) * NB) - bb * NB;
                    // SAFETY: block bb < blocks holds k lanes; from lane k0, kc <= k - k0 of them.
                    let panel = base.add((bb * k + k0) * NB);
                    for r0 in (0..rows).step_by(MR) {
                        let mr = MR.min(rows - r0);
                        // SAFETY: rows r0..r0 + mr of x (row stride k) from input k0, kc inputs;
                        // dst rows r0.. from column bb * NB - c0 >= 0, `valid` columns, all
                        // inside the caller's block; the CPU has AVX-512F (contract).
                        tile(
                            mr,
                            nr,
                            x.add(r0 * k + k0),
                            k,
                            panel,
                            k * NB,
                            kc,
                            dst.add(r0 * dst_rs + bb * NB - c0),
                            dst_rs,
                            valid,
                            k0 > 0,
                        );
                    }
                }
            }
        }
    }

    /// The weight back as `n x k` row-major (tests).
    pub fn unpacked(&self) -> Vec<f32> {
        let mut w = vec![0f32; self.n * self.k];
        for c in 0..self.n {
            for p in 0..self.k {
                w[c * self.k + p] = self.data[(c / NB) * self.k + p].0[c % NB];
            }
        }
        w
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    mr: usize,
    nr: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    bs: usize,
    kc: usize,
    dst: *mut f32,
    dst_rs: usize,
    valid: usize,
    accumulate: bool,
) {
    macro_rules! go {
        ($($r:literal)*) => {
            match (mr, nr) {
                $(
                    ($r, 1) => tile_avx512::<$r, 1>(a, lda, b, bs, kc, dst, dst_rs, valid, accumulate),
                    ($r, 2) => tile_avx512::<$r, 2>(a, lda, b, bs, kc, dst, dst_rs, valid, accumulate),
                    ($r, 3) => tile_avx512::<$r, 3>(a, lda, b, bs, kc, dst, dst_rs, valid, accumulate),
                    ($r, _) => tile_avx512::<$r, 4>(a, lda, b, bs, kc, dst, dst_rs, valid, accumulate),
                )*
                _ => unreachable!("tiles have 1 to {MR} rows"),
            }
        };
    }
    go!(1 2 3 4 5 6)
}

/// `R` rows by `C` blocks over `kc` inputs; `valid` of the `C * 16` columns are stored (added to
/// what `dst` holds when `accumulate`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_avx512<const R: usize, const C: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    bs: usize,
    kc: usize,
    dst: *mut f32,
    dst_rs: usize,
    valid: usize,
    accumulate: bool,
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    for p in 0..kc {
        let mut bv = [_mm512_setzero_ps(); C];
        for (c, v) in bv.iter_mut().enumerate() {
            // SAFETY: block c < C holds kc aligned lanes from `b` (caller).
            *v = _mm512_load_ps(b.add(c * bs + p * NB));
        }
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: row i < R of `a` holds kc values (caller).
            let av = _mm512_set1_ps(*a.add(i * lda + p));
            for c in 0..C {
                acc[c] = _mm512_fmadd_ps(av, bv[c], acc[c]);
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        for (c, &v) in acc.iter().enumerate() {
            let left = valid.saturating_sub(c * NB);
            if left == 0 {
                break;
            }
            let mask: __mmask16 = if left >= NB { 0xffff } else { (1u16 << left) - 1 };
            // SAFETY: the `left` columns from c * 16 of row i are in the caller's block.
            let d = dst.add(i * dst_rs + c * NB);
            let v = if accumulate { _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, d)) } else { v };
            _mm512_mask_storeu_ps(d, mask, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn packing_round_trips() {
        for (n, k) in [(1, 1), (15, 3), (16, 7), (33, 20), (0, 5), (5, 0)] {
            let w = data(n * k, 3);
            assert_eq!(F32Weights::new(&w, n, k).unpacked(), w, "{n} x {k}");
        }
    }

    /// Against an f64 reference, on every tile edge: rows not a multiple of 6, columns not a
    /// multiple of 16 or 64, a column range starting inside the weight, inputs over several
    /// passes of `KC`, and nothing to add (k = 0).
    #[test]
    fn products_match_an_f64_reference_on_every_edge() {
        if !available() {
            eprintln!("no AVX-512F: the packed kernel is not used on this CPU");
            return;
        }
        for (rows, k, n, c0, cols) in [
            (1, 1, 1, 0, 1),
            (17, 384, 100, 0, 100),
            (7, 1100, 70, 16, 54),
            (13, 513, 200, 64, 129),
            (6, 0, 20, 0, 20),
            (64, 40, 16, 0, 16),
        ] {
            let w = data(n * k, 1);
            let x = data(rows * k, 2);
            let packed = F32Weights::new(&w, n, k);
            // A sentinel column either side of the block: nothing outside it is written.
            let width = cols + 2;
            let mut out = vec![7f32; rows * width];
            // SAFETY: x holds rows x k; out holds rows rows of width from column 1, cols of them.
            unsafe { packed.matmul(x.as_ptr(), rows, out.as_mut_ptr().add(1), width, c0, cols) };
            for r in 0..rows {
                assert_eq!(out[r * width], 7.0);
                assert_eq!(out[r * width + cols + 1], 7.0);
                for j in 0..cols {
                    let want: f64 = (0..k).map(|p| x[r * k + p] as f64 * w[(c0 + j) * k + p] as f64).sum();
                    let got = out[r * width + 1 + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (k as f64).sqrt().max(1.0),
                        "{rows}x{k}x{n} [{r}][{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
