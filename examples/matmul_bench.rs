//! f32 matmul throughput on this machine: candle's `Tensor::matmul` and the `gemm` crate called
//! directly (row-major and transposed right-hand side, and split by hand across threads by rows or
//! by output columns), at 512x512 and at the shapes the benchmark models use.
//! `cargo run --release --example matmul_bench [-- M K N ...]`.
//! Threads: RAYON_NUM_THREADS (default: all cores).

mod common;

use candle_core::{Device, Tensor};
use common::best_of;
use gemm::Parallelism;
use modeldeck::model::kernels::{self, MatRef};
use rayon::prelude::*;

/// `dst (m x n, row-major) = lhs · rhs` through ModelDeck's gemm entry point.
///
/// # Safety
/// As `kernels::matmul_raw`.
unsafe fn product(m: usize, n: usize, k: usize, dst: *mut f32, lhs: MatRef, rhs: MatRef, par: Parallelism) {
    kernels::matmul_raw(m, n, k, dst, n, lhs, rhs, 1.0, false, par);
}

/// The pointer of a buffer the threads share, for an element offset.
fn at(base: usize, offset: usize) -> *const f32 {
    (base as *const f32).wrapping_add(offset)
}

fn main() -> candle_core::Result<()> {
    let shapes = common::shapes(vec![
        (512, 512, 512),
        (2048, 384, 1152),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (197, 768, 2304),
        (197, 3072, 768),
        (3136, 576, 64),
        (49, 1024, 2048),
        (17, 384, 1152),
    ]);
    let threads = candle_core::utils::get_num_threads();
    println!("threads {threads}");
    println!(
        "{:>18} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "m k n", "candle", "gemm", "gemm w^T", "split-m w^T", "split-n"
    );
    for (m, k, n) in shapes {
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
        let bt = b.t()?.contiguous()?; // (n, k): a Linear weight
        let flops = 2.0 * (m * k * n) as f64;
        let t_candle = best_of(15, || {
            a.matmul(&b).unwrap();
        });
        let av = a.flatten_all()?.to_vec1::<f32>()?;
        let bv = b.flatten_all()?.to_vec1::<f32>()?;
        let btv = bt.flatten_all()?.to_vec1::<f32>()?;
        let mut dst = vec![0f32; m * n];
        // Shared by the threads as addresses, each thread writing a block of its own.
        let (d, a_, w_, wt_) =
            (dst.as_mut_ptr() as usize, av.as_ptr() as usize, bv.as_ptr() as usize, btv.as_ptr() as usize);
        let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        let x = |row: usize| MatRef { ptr: at(a_, row * k), rs: k as isize, cs: 1 };
        // The weight (k, n) row-major from column `col`, and as stored by PyTorch, (n, k).
        let w = |col: usize| MatRef { ptr: at(w_, col), rs: n as isize, cs: 1 };
        let wt = || MatRef { ptr: at(wt_, 0), rs: 1, cs: k as isize };
        // SAFETY (every product below): `av` is m x k, `bv` k x n and `btv` n x k, all alive until
        // the end of this iteration; each view stays inside its buffer (x(r0) from row r0 for at
        // most m - r0 rows, w(c0) from column c0 for at most n - c0 columns), `dst` (m x n) is a
        // separate buffer, and the threads write disjoint row or column blocks of it.
        // gemm's own threading.
        let t_gemm = best_of(15, || {
            // SAFETY: the whole of `av`, `bv` and `dst`, as above.
            unsafe { product(m, n, k, at(d, 0).cast_mut(), x(0), w(0), par) }
        });
        let t_gemm_t = best_of(15, || {
            // SAFETY: the whole of `av`, `btv` and `dst`, as above.
            unsafe { product(m, n, k, at(d, 0).cast_mut(), x(0), wt(), par) }
        });
        // Rows split across threads, one single-threaded gemm each.
        let rows_per = m.div_ceil(threads);
        let t_split = best_of(15, || {
            (0..threads).into_par_iter().for_each(|t| {
                let r0 = (t * rows_per).min(m);
                let rows = rows_per.min(m - r0);
                if rows > 0 {
                    // SAFETY: rows r0..r0 + rows of `av` and `dst` exist (see above); blocks are disjoint.
                    unsafe { product(rows, n, k, at(d, r0 * n).cast_mut(), x(r0), wt(), Parallelism::None) };
                }
            });
        });
        // Columns (output channels) split across threads, one single-threaded gemm each; the
        // product's row stride stays n.
        let cols_per = n.div_ceil(threads).next_multiple_of(16);
        let t_split_n = best_of(15, || {
            (0..threads).into_par_iter().for_each(|t| {
                let c0 = (t * cols_per).min(n);
                if c0 < n {
                    let cols = cols_per.min(n - c0);
                    // SAFETY: columns c0..c0 + cols of `bv` and `dst` exist (see above); blocks are disjoint.
                    unsafe {
                        kernels::matmul_raw(
                            m,
                            cols,
                            k,
                            at(d, c0).cast_mut(),
                            n,
                            x(0),
                            w(c0),
                            1.0,
                            false,
                            Parallelism::None,
                        )
                    };
                }
            });
        });
        println!(
            "{:>18} {:>9.1} GF {:>9.1} GF {:>9.1} GF {:>9.1} GF {:>9.1} GF",
            format!("{m} {k} {n}"),
            flops / t_candle / 1e9,
            flops / t_gemm / 1e9,
            flops / t_gemm_t / 1e9,
            flops / t_split / 1e9,
            flops / t_split_n / 1e9
        );
    }
    Ok(())
}
