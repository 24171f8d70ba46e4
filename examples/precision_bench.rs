//! Linear-layer throughput per precision (`kernels::Dense` in f32, bf16 and int8) at the shapes
//! the benchmark models use, on the kernels this CPU gets: run it as is (AMX where the CPU and OS
//! allow it), with `MODELDECK_KERNELS=avx512` (AVX-512 without AMX) and with
//! `MODELDECK_KERNELS=portable` to compare them.
//! `cargo run --release --example precision_bench [-- M K N ...]`.

mod common;

use common::best_of;
use modeldeck::model::kernels::{Act, Dense};
use modeldeck::model::quant::{self, Precision};

fn main() {
    let shapes = common::shapes(vec![
        (17, 384, 1152),
        (17, 1536, 384),
        (2048, 384, 1536),
        (2048, 1536, 384),
        (197, 768, 2304),
        (197, 3072, 768),
        (3136, 576, 64),
        (49, 1024, 2048),
        (1, 768, 768),
        (4, 768, 768),
        (8, 768, 768),
    ]);
    println!("threads {}", modeldeck::model::kernels::threads());
    for p in Precision::ALL {
        println!("{p}: {}", p.kernel());
    }
    println!("(AMX products of fewer than {} rows run on AVX-512)", quant::AMX_MIN_ROWS);
    println!("{:>18} {:>14} {:>14} {:>14}", "m k n", "f32 GFLOP/s", "bf16 GFLOP/s", "int8 GOP/s");
    for (m, k, n) in shapes {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let w: Vec<f32> = (0..n * k).map(|_| rand()).collect();
        let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
        let flops = 2.0 * (m * k * n) as f64;
        let rates: Vec<f64> = Precision::ALL
            .iter()
            .map(|&p| {
                let d = Dense::with_precision(&w, None, n, k, p);
                let t = best_of(20, || {
                    std::hint::black_box(d.forward(&x, Act::None));
                });
                flops / t / 1e9
            })
            .collect();
        println!("{:>18} {:>14.1} {:>14.1} {:>14.1}", format!("{m} {k} {n}"), rates[0], rates[1], rates[2]);
    }
}
