//! Shared by the benchmark examples.

use std::time::Instant;

/// The fastest of `runs` timed calls of `f`, in seconds, after three untimed ones.
pub fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    for _ in 0..3 {
        f();
    }
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
