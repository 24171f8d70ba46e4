//! Serves ModelDeck's Prometheus metrics while a synthetic workload runs through the real
//! recording API, for `scripts/prometheus_smoke.sh` until `modeldeck monitor --metrics-addr`
//! replaces it. Each "prediction" is real work (a dot product of a size drawn per request) timed
//! with a monotonic clock; every 25th fails; a brightness-like feature drifts after 20 s and is
//! tested every second with the statistics core's KS test; process CPU and memory are sampled
//! every second. Stops by itself after `--seconds`.
//!
//! `cargo run --release --example metrics_demo -- --metrics-addr 127.0.0.1:9464 --rate 200 --seconds 60`

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use modeldeck::monitor::metrics::{ModelMetrics, ProcessMetrics, Window};
use modeldeck::monitor::prometheus::{parse_metrics_addr, Access, MetricsServer, PromMetrics};
use modeldeck::stats::drift::DriftMethod;
use modeldeck::stats::ks::ks_2samp;
use modeldeck::store::Origin;

struct Args {
    addr: String,
    rate_per_s: f64,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { addr: "127.0.0.1:9464".into(), rate_per_s: 200.0, seconds: 60.0 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--metrics-addr" => args.addr = value,
            "--rate" => args.rate_per_s = value.parse().map_err(|_| format!("--rate {value}: not a number"))?,
            "--seconds" => args.seconds = value.parse().map_err(|_| format!("--seconds {value}: not a number"))?,
            _ => return Err(format!("unknown flag {flag}; flags: --metrics-addr A --rate R --seconds S")),
        }
    }
    if !(args.rate_per_s > 0.0 && args.seconds > 0.0) {
        return Err("--rate and --seconds must be positive".into());
    }
    Ok(args)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// SplitMix64 uniforms in (0, 1).
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("metrics_demo: {e}");
            std::process::exit(2);
        }
    };
    let prom = Arc::new(PromMetrics::new());
    let server = match parse_metrics_addr(&args.addr)
        .and_then(|a| MetricsServer::start(a, prom.clone(), Access::LoopbackOnly))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("metrics_demo: {e}");
            std::process::exit(1);
        }
    };
    println!("serving http://{}/metrics for {} s at {} requests/s", server.addr(), args.seconds, args.rate_per_s);

    let model: Arc<str> = Arc::from("demo-model");
    let mut ops = ModelMetrics::new(now_ms());
    let mut process = ProcessMetrics::new();
    let mut rng = Uniform(11);
    let (mut reference, mut current) = (Vec::new(), std::collections::VecDeque::new());
    let data: Vec<f32> = (0..1 << 20).map(|i| (i % 97) as f32 * 0.01).collect();
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / args.rate_per_s);
    let (mut next_request, mut next_report) = (start, start);
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < args.seconds {
        // One "prediction": a dot product over 1k..1M values, timed.
        let len = 1024 + (rng.next() * (data.len() - 1024) as f64) as usize;
        let t = Instant::now();
        let score: f32 = data[..len].iter().zip(data[..len].iter().rev()).map(|(a, b)| a * b).sum();
        std::hint::black_box(score);
        let latency_ms = t.elapsed().as_secs_f64() * 1000.0;
        let error = sent % 25 == 24;
        sent += 1;
        let at = now_ms();
        ops.record(at, (!error).then_some(latency_ms), error);
        prom.observe_prediction(&model, Origin::Replay, (!error).then_some(latency_ms), error);

        // Brightness around 0.5, darker by 0.3 after 20 s.
        let shift = if start.elapsed().as_secs_f64() > 20.0 { -0.3 } else { 0.0 };
        let brightness = 0.5 + shift + (rng.next() - 0.5) * 0.4;
        if reference.len() < 300 {
            reference.push(brightness);
        } else {
            current.push_back(brightness);
            if current.len() > 300 {
                current.pop_front();
            }
        }

        if Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            if let Some(point) = process.sample(at) {
                prom.set_process(&point);
            }
            let current: Vec<f64> = current.iter().copied().collect();
            let verdict = if current.len() >= 30 { ks_2samp(&reference, &current).ok() } else { None };
            if let Some(test) = verdict {
                prom.set_drift_score(&model, "brightness", DriftMethod::Ks.name(), test.pvalue);
            }
            prom.set_drift_detected(&model, "brightness", verdict.map(|t| DriftMethod::Ks.is_drift(t.pvalue)));
            let summary = ops.summary(at);
            let p95 = summary.latency(Window::LastMinute).map(|p| p.p95);
            prom.set_alert_firing(&model, "error rate above 1%", summary.error_rate.is_some_and(|r| r > 0.01));
            println!(
                "t={:>3.0}s requests={} rps={:.1} error_rate={:?} p95_1min_ms={:?}",
                start.elapsed().as_secs_f64(),
                summary.requests,
                summary.throughput_rps,
                summary.error_rate,
                p95
            );
        }
        next_request += period;
        if let Some(wait) = next_request.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    drop(server);
}
