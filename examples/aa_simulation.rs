//! The A/A simulation of issue 12: many seeded replays of two arms with the same true accuracy,
//! one request at a time, looking at both tests every few requests. Stopping at the first look
//! with p < 5 % is a false positive; the table shows how often that happens with the always-valid
//! sequential p-value, with the fixed-horizon z-test peeked at every look, and with the z-test read
//! once at the end (its intended use), each with a 95 % Wilson interval.
//!
//! `cargo run --release --example aa_simulation -- --runs 10000 --seed 12`
//! Options: --runs N, --seed S, --requests R (both arms together), --look-every K,
//! --accuracy-a P, --accuracy-b P (unequal: the table shows power), --weight-b W (random split;
//! `--alternate` alternates A, B, A, ...), --tau2 T, --json.

use std::time::Instant;

use modeldeck::stats::sequential::{simulate_peeking, ArmSplit, PeekingOptions, RejectionRate};

fn parse_args() -> Result<(PeekingOptions, bool), String> {
    let mut options = PeekingOptions::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, text: String| text.parse::<f64>().map_err(|e| format!("{name} {text}: {e}"));
        let count = |name: &str, text: String| text.parse::<u64>().map_err(|e| format!("{name} {text}: {e}"));
        match flag.as_str() {
            "--runs" => options.runs = count("--runs", value("--runs")?)?,
            "--seed" => options.seed = count("--seed", value("--seed")?)?,
            "--requests" => options.requests = count("--requests", value("--requests")?)?,
            "--look-every" => options.look_every = count("--look-every", value("--look-every")?)?,
            "--accuracy-a" => options.accuracy_a = number("--accuracy-a", value("--accuracy-a")?)?,
            "--accuracy-b" => options.accuracy_b = number("--accuracy-b", value("--accuracy-b")?)?,
            "--weight-b" => options.split = ArmSplit::Random { weight_b: number("--weight-b", value("--weight-b")?)? },
            "--alternate" => options.split = ArmSplit::Alternate,
            "--tau2" => options.tau2 = number("--tau2", value("--tau2")?)?,
            "--json" => json = true,
            other => return Err(format!("unknown option {other}; see the header of examples/aa_simulation.rs")),
        }
    }
    Ok((options, json))
}

fn row(label: &str, rate: &RejectionRate) -> String {
    format!(
        "{label:<48} {:>7}/{:<7} {:>6.2} %   [{:.2}, {:.2}] %",
        rate.rejections,
        rate.runs,
        100.0 * rate.rate,
        100.0 * rate.wilson_ci95[0],
        100.0 * rate.wilson_ci95[1]
    )
}

fn main() {
    let (options, json) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let report = match simulate_peeking(&options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        return;
    }
    let split = match options.split {
        ArmSplit::Alternate => "alternating A, B".to_string(),
        ArmSplit::Random { weight_b } => format!("each to B with probability {weight_b}"),
    };
    let level = 100.0 * options.alpha;
    let equal = options.accuracy_a == options.accuracy_b;
    println!(
        "{}: A {:.1} %, B {:.1} % accurate; {} runs of {} requests ({split}); a look every {} requests ({} looks); \
         tau² = {}; seed {}",
        if equal { "A/A simulation" } else { "A/B simulation (power)" },
        100.0 * options.accuracy_a,
        100.0 * options.accuracy_b,
        options.runs,
        options.requests,
        options.look_every,
        report.looks_per_run,
        options.tau2,
        options.seed
    );
    let what = if equal { "false positives" } else { "rejections" };
    println!("{:<48} {:>15} {:>8}   95 % Wilson interval", "stop at the first look with", what, "rate");
    println!("{}", row(&format!("sequential p <= {level} % (peeking allowed)"), &report.sequential));
    println!("{}", row(&format!("fixed-horizon p < {level} %, peeked at every look"), &report.fixed_peeking));
    println!("{}", row(&format!("fixed-horizon p < {level} %, read once at the end"), &report.fixed_once));
    if let Some(mean) = report.sequential_mean_requests_to_reject {
        println!("sequential rejections came after {mean:.0} requests on average");
    }
    println!("({:.2} s)", started.elapsed().as_secs_f64());
}
