//! How fast f32 weights are packed at load (`sgemm::F32Weights::new`), in GB/s of weights, for
//! the shapes of ViT-B/16's layers: the part of a cold load that ModelDeck itself spends.
//! `cargo run --release --example pack_bench`.

mod common;

use common::best_of;
use modeldeck::model::sgemm::F32Weights;

fn main() {
    for (n, k) in [(2304, 768), (3072, 768), (768, 3072), (768, 768)] {
        let w: Vec<f32> = (0..n * k).map(|i| i as f32).collect();
        let t = best_of(10, || {
            std::hint::black_box(F32Weights::new(&w, n, k));
        });
        println!("{n:>5} x {k:<5} {:>8.2} ms {:>6.1} GB/s", t * 1e3, (n * k * 4) as f64 / t / 1e9);
    }
}
