//! Shared by the benchmark examples.

use std::time::Instant;

/// Matrix shapes `m k n` from the command line (three numbers each), else `default`.
#[allow(dead_code)] // not every example that shares this module takes shapes
pub fn shapes(default: Vec<(usize, usize, usize)>) -> Vec<(usize, usize, usize)> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    if args.len() >= 3 {
        args.chunks(3).filter(|c| c.len() == 3).map(|c| (c[0], c[1], c[2])).collect()
    } else {
        default
    }
}

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
