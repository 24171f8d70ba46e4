//! A timing harness for the statistics: drift over 10 columns × 100,000 rows and an A/B
//! report over 100,000 requests per arm, each timed as pure statistics and end to end
//! (CSV files written to the temp directory, read back and reported). Prints seconds per
//! stage as JSON: `cargo run --release --example stats_bench`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use modeldeck::report::{abtest_report, drift_report, AbOptions};
use modeldeck::stats;

const ROWS: usize = 100_000;
const COLUMNS: usize = 10;

/// Deterministic normal variates (SplitMix64 + Box-Muller), so runs are comparable.
struct Gaussian(u64);

impl Gaussian {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), String> {
    let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}

fn drift_csv(columns: &[Vec<f64>]) -> String {
    let mut s = String::with_capacity(ROWS * COLUMNS * 10);
    let header: Vec<String> = (0..columns.len()).map(|c| format!("f{c}")).collect();
    let _ = writeln!(s, "{}", header.join(","));
    for r in 0..ROWS {
        for (c, col) in columns.iter().enumerate() {
            let sep = if c + 1 == columns.len() { "\n" } else { "," };
            let _ = write!(s, "{:.4}{sep}", col[r]);
        }
    }
    s
}

fn arm_csv(g: &mut Gaussian, accuracy: f64, latency_scale: f64) -> (String, Vec<f64>, u64) {
    let mut s = String::from("request_id,prediction,label,correct,latency_ms\n");
    let mut lat = Vec::with_capacity(ROWS);
    let mut correct = 0;
    for i in 0..ROWS {
        let ok = g.uniform() < accuracy;
        correct += u64::from(ok);
        let l = (latency_scale * g.normal(0.0, 0.4).exp() * 100.0).round() / 100.0;
        lat.push(l);
        let _ = writeln!(s, "r{i},cat,{},{},{l}", if ok { "cat" } else { "dog" }, u8::from(ok));
    }
    (s, lat, correct)
}

fn main() -> std::process::ExitCode {
    match run_bench() {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stats_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_bench() -> Result<Value, String> {
    let dir: PathBuf = std::env::temp_dir().join(format!("modeldeck-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut g = Gaussian(42);
    let reference: Vec<Vec<f64>> = (0..COLUMNS).map(|_| (0..ROWS).map(|_| g.normal(0.0, 1.0)).collect()).collect();
    let current: Vec<Vec<f64>> =
        (0..COLUMNS).map(|c| (0..ROWS).map(|_| g.normal(0.02 * c as f64, 1.0)).collect()).collect();

    let t = Instant::now();
    for (r, c) in reference.iter().zip(&current) {
        stats::numerical_drift(r, c).map_err(|e| e.to_string())?;
    }
    let drift_stats_s = t.elapsed().as_secs_f64();

    let (ref_path, cur_path) = (dir.join("reference.csv"), dir.join("current.csv"));
    write_file(&ref_path, &drift_csv(&reference))?;
    write_file(&cur_path, &drift_csv(&current))?;
    let t = Instant::now();
    let report = drift_report(&ref_path, &cur_path, &[], &[]).map_err(|e| e.to_string())?;
    let _ = report.to_json();
    let drift_report_s = t.elapsed().as_secs_f64();

    let (csv_a, lat_a, correct_a) = arm_csv(&mut g, 0.90, 40.0);
    let (csv_b, lat_b, correct_b) = arm_csv(&mut g, 0.91, 42.0);
    let n = ROWS as u64;
    let t = Instant::now();
    stats::two_proportion_ztest(correct_a, n, correct_b, n).map_err(|e| e.to_string())?;
    stats::mann_whitney_u(&lat_a, &lat_b).map_err(|e| e.to_string())?;
    stats::kayenta(&lat_a, &lat_b).map_err(|e| e.to_string())?;
    let ab_stats_s = t.elapsed().as_secs_f64();

    let (path_a, path_b) = (dir.join("a.csv"), dir.join("b.csv"));
    write_file(&path_a, &csv_a)?;
    write_file(&path_b, &csv_b)?;
    let t = Instant::now();
    let unpaired = AbOptions::default();
    let ab = abtest_report(&path_a, &path_b, &unpaired).map_err(|e| e.to_string())?;
    let _ = ab.to_json();
    let ab_report_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let paired = AbOptions { paired: true, ..AbOptions::default() };
    abtest_report(&path_a, &path_a, &paired).map_err(|e| e.to_string())?;
    let ab_paired_report_s = t.elapsed().as_secs_f64();

    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "rows_per_column": ROWS,
        "drift_columns": COLUMNS,
        "requests_per_arm": ROWS,
        "drift_stats_s": drift_stats_s,
        "drift_report_with_csv_s": drift_report_s,
        "ab_stats_s": ab_stats_s,
        "ab_report_with_csv_s": ab_report_s,
        "ab_paired_report_with_csv_s": ab_paired_report_s,
    }))
}
