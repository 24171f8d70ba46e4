//! Time of every convolution shape in ResNet-50 at 224x224, batch 1, through ModelDeck's NHWC
//! kernels (`fastconv::Conv`), weighted by how often the network runs it: where a forward pass
//! spends its time and how close each shape comes to the machine's matmul throughput.
//! `cargo run --release --example conv_bench`. Threads: RAYON_NUM_THREADS (default: all cores).

mod common;

use std::time::Instant;

use candle_core::{Device, Tensor};
use common::best_of;
use modeldeck::model::fastconv::{Conv, Nhwc};
use modeldeck::model::kernels::Act;

fn main() -> candle_core::Result<()> {
    // (times run, c_in, input size, c_out, k, stride, pad)
    let shapes = [
        (1, 3, 224, 64, 7, 2, 3),
        (1, 64, 56, 256, 1, 1, 0),
        (1, 64, 56, 64, 1, 1, 0),
        (3, 64, 56, 64, 3, 1, 1),
        (3, 64, 56, 256, 1, 1, 0),
        (2, 256, 56, 64, 1, 1, 0),
        (1, 256, 56, 512, 1, 2, 0),
        (1, 256, 56, 128, 1, 1, 0),
        (1, 128, 56, 128, 3, 2, 1),
        (4, 128, 28, 512, 1, 1, 0),
        (3, 512, 28, 128, 1, 1, 0),
        (3, 128, 28, 128, 3, 1, 1),
        (1, 512, 28, 1024, 1, 2, 0),
        (1, 512, 28, 256, 1, 1, 0),
        (1, 256, 28, 256, 3, 2, 1),
        (6, 256, 14, 1024, 1, 1, 0),
        (5, 1024, 14, 256, 1, 1, 0),
        (5, 256, 14, 256, 3, 1, 1),
        (1, 1024, 14, 2048, 1, 2, 0),
        (1, 1024, 14, 512, 1, 1, 0),
        (1, 512, 14, 512, 3, 2, 1),
        (3, 512, 7, 2048, 1, 1, 0),
        (2, 2048, 7, 512, 1, 1, 0),
        (2, 512, 7, 512, 3, 1, 1),
    ];
    println!("threads {}", candle_core::utils::get_num_threads());
    println!(
        "{:>3} {:>5} {:>4} {:>5} {:>2} {:>2} {:>9} {:>8} {:>10}",
        "n", "c_in", "h", "c_out", "k", "s", "ms", "GFLOP/s", "total ms"
    );
    let (mut total, mut total_flops) = (0.0, 0.0);
    // Optional arguments: indices of the shapes to run (default all).
    let only: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    for (i, &(count, c_in, h, c_out, k, stride, pad)) in shapes.iter().enumerate() {
        if !only.is_empty() && !only.contains(&i) {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (1, c_in, h, h), &Device::Cpu)?;
        let w = (Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &Device::Cpu)? * 0.05)?;
        let b = Tensor::randn(0f32, 1.0, c_out, &Device::Cpu)?;
        let conv = Conv::new(&w, Some(&b), stride, pad)?;
        let x = Nhwc::from_nchw(&x)?;
        let oh = (h + 2 * pad - k) / stride + 1;
        let flops = 2.0 * (oh * oh * c_out * c_in * k * k) as f64;
        let secs = best_of(20, || {
            if let Ok(y) = conv.forward(&x, Act::Relu, None) {
                modeldeck::model::kernels::recycle(y.data);
            }
        });
        total += secs * count as f64;
        total_flops += flops * count as f64;
        println!(
            "{count:>3} {c_in:>5} {h:>4} {c_out:>5} {k:>2} {stride:>2} {:>9.3} {:>8.1} {:>10.2}",
            secs * 1e3,
            flops / secs / 1e9,
            secs * count as f64 * 1e3
        );
    }
    println!(
        "all convolutions: {:.2} ms, {:.2} GFLOP, {:.1} GFLOP/s",
        total * 1e3,
        total_flops / 1e9,
        total_flops / total / 1e9
    );

    // The same convolutions as one chain, each with its own weights (about 100 MB, as in the
    // network: no weight stays in cache from one run to the next), timed per shape.
    let mut chain = Vec::new();
    for (i, &(count, c_in, h, c_out, k, stride, pad)) in shapes.iter().enumerate() {
        if !only.is_empty() && !only.contains(&i) {
            continue;
        }
        for _ in 0..count {
            let w = (Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &Device::Cpu)? * 0.05)?;
            let x = Nhwc::from_nchw(&Tensor::randn(0f32, 1.0, (1, c_in, h, h), &Device::Cpu)?)?;
            chain.push((i, Conv::new(&w, None, stride, pad)?, x));
        }
    }
    let mut per_shape = vec![f64::INFINITY; shapes.len()];
    let mut best_total = f64::INFINITY;
    for _ in 0..20 {
        let mut round = vec![0.0; shapes.len()];
        let start = Instant::now();
        for (i, conv, x) in &chain {
            let t = Instant::now();
            let y = conv.forward(x, Act::Relu, None)?;
            modeldeck::model::kernels::recycle(y.data);
            round[*i] += t.elapsed().as_secs_f64();
        }
        best_total = best_total.min(start.elapsed().as_secs_f64());
        per_shape.iter_mut().zip(&round).for_each(|(b, r)| *b = b.min(*r));
    }
    println!("chained, cold weights: {:.2} ms in all", best_total * 1e3);
    for (i, t) in per_shape.iter().enumerate() {
        if *t > 0.0 {
            println!("  shape {i:>2}: {:>7.3} ms", t * 1e3);
        }
    }
    Ok(())
}
