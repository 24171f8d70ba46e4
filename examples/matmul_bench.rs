//! f32 matmul throughput on this machine: candle's `Tensor::matmul` and the `gemm` crate called
//! directly (row-major and transposed right-hand side), at 512x512 and at the shapes the
//! benchmark models use. `cargo run --release --example matmul_bench [-- M K N ...]`.
//! Threads: RAYON_NUM_THREADS (default: all cores).

use std::time::Instant;

use candle_core::{Device, Tensor};

fn best_of<F: FnMut()>(mut f: F) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut best = f64::INFINITY;
    for _ in 0..15 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() -> candle_core::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let shapes: Vec<(usize, usize, usize)> = if args.len() >= 3 {
        args.chunks(3).filter(|c| c.len() == 3).map(|c| (c[0], c[1], c[2])).collect()
    } else {
        vec![
            (512, 512, 512),
            (2048, 384, 1152),
            (2048, 384, 1536),
            (2048, 1536, 384),
            (197, 768, 2304),
            (197, 3072, 768),
            (3136, 576, 64),
            (17, 384, 1152),
        ]
    };
    let threads = candle_core::utils::get_num_threads();
    println!("threads {threads}");
    println!(
        "{:>18} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "m k n", "candle", "gemm", "gemm w^T", "split-m w^T", "swapped", "split-n"
    );
    for (m, k, n) in shapes {
        let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
        let bt = b.t()?.contiguous()?; // (n, k): a Linear weight
        let flops = 2.0 * (m * k * n) as f64;
        let t_candle = best_of(|| {
            a.matmul(&b).unwrap();
        });
        let av = a.flatten_all()?.to_vec1::<f32>()?;
        let bv = b.flatten_all()?.to_vec1::<f32>()?;
        let btv = bt.flatten_all()?.to_vec1::<f32>()?;
        let mut dst = vec![0f32; m * n];
        let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
        let t_gemm = best_of(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                av.as_ptr(),
                1,
                k as isize,
                bv.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        });
        let t_gemm_t = best_of(|| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                av.as_ptr(),
                1,
                k as isize,
                btv.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        });
        // Rows split across threads, one single-threaded gemm each.
        let rows_per = m.div_ceil(threads);
        let dptr = dst.as_mut_ptr() as usize;
        let t_split = best_of(|| {
            use rayon::prelude::*;
            (0..threads).into_par_iter().for_each(|t| {
                let r0 = t * rows_per;
                let rows = rows_per.min(m.saturating_sub(r0));
                if rows == 0 {
                    return;
                }
                unsafe {
                    gemm::gemm(
                        rows,
                        n,
                        k,
                        (dptr as *mut f32).add(r0 * n),
                        1,
                        n as isize,
                        false,
                        av.as_ptr().add(r0 * k),
                        1,
                        k as isize,
                        btv.as_ptr(),
                        k as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            });
        });
        // Operands swapped: dstᵀ (n x m) = W (n x k, read in place from the (k, n) row-major
        // copy, i.e. column-major) · xᵀ; gemm then packs only the small xᵀ.
        let t_swap = best_of(|| unsafe {
            gemm::gemm(
                n,
                m,
                k,
                dst.as_mut_ptr(),
                n as isize,
                1,
                false,
                bv.as_ptr(),
                n as isize,
                1,
                av.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        });
        // Columns (output channels) split across threads, one single-threaded gemm each.
        let cols_per = n.div_ceil(threads).next_multiple_of(16);
        let t_split_n = best_of(|| {
            use rayon::prelude::*;
            (0..threads).into_par_iter().for_each(|t| {
                let c0 = (t * cols_per).min(n);
                let cols = cols_per.min(n - c0);
                if cols == 0 {
                    return;
                }
                unsafe {
                    gemm::gemm(
                        m,
                        cols,
                        k,
                        (dptr as *mut f32).add(c0),
                        1,
                        n as isize,
                        false,
                        av.as_ptr(),
                        1,
                        k as isize,
                        bv.as_ptr().add(c0),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            });
        });
        println!(
            "{:>18} {:>9.1} GF {:>9.1} GF {:>9.1} GF {:>9.1} GF {:>9.1} GF {:>9.1} GF",
            format!("{m} {k} {n}"),
            flops / t_candle / 1e9,
            flops / t_gemm / 1e9,
            flops / t_gemm_t / 1e9,
            flops / t_split / 1e9,
            flops / t_swap / 1e9,
            flops / t_split_n / 1e9
        );
    }
    Ok(())
}
