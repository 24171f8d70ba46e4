//! A rollout in words: the lines `modeldeck simulate` prints and the Deploy view's trail shows.

use super::canary::{percent, DecidedBy, Decision, GateVerdict, Phase};
use super::rollout::{LatencyComparison, PairedSummary, RolloutSnapshot};
use super::{Arm, Strategy};
use crate::stats::sequential::format_p;
use crate::store;

/// One decision of the trail: "12:03:04 check 3 at 5 %: pass → advance to 25 % (A 100 / B 100 requests)".
pub fn decision_line(d: &Decision) -> String {
    let who = match d.decided_by {
        DecidedBy::Analysis => "",
        DecidedBy::Proposed => " [waits for approval]",
        DecidedBy::UserApproved | DecidedBy::UserRejected | DecidedBy::User => " [by you]",
    };
    let time = store::iso_time(d.at_ms);
    let clock = time.get(11..19).unwrap_or(&time);
    format!(
        "{clock} check {} at {}{who}: {} (window: A {} / B {} requests)",
        d.check,
        percent(d.weight),
        d.summary,
        d.window_requests[0],
        d.window_requests[1]
    )
}

/// The gates of a check, one line each, indented.
pub fn gate_lines(d: &Decision) -> Vec<String> {
    d.gates
        .iter()
        .map(|g| {
            // Every summary starts with its verdict ("pass: ...", "not enough data: ...").
            let mark = if g.verdict == GateVerdict::Fail { "✗" } else { " " };
            format!("  {mark} {:<8} {}", g.gate, g.summary)
        })
        .collect()
}

/// The whole outcome: traffic, per-arm numbers, comparisons and, for a canary, its end.
pub fn report_lines(s: &RolloutSnapshot) -> Vec<String> {
    let mut lines = Vec::new();
    let strategy = match &s.strategy {
        Strategy::Ab { weight_b } => format!("A/B, {} to B", percent(*weight_b)),
        Strategy::Canary(plan) => {
            let steps: Vec<String> = plan.steps.iter().map(|w| percent(*w)).collect();
            format!("canary, steps {} then 100 %", steps.join(", "))
        }
        other => other.name().to_string(),
    };
    lines.push(format!("strategy: {strategy}; A = {}, B = {}", s.arm(Arm::A).model, s.arm(Arm::B).model));
    if let Some(f) = &s.fault_b {
        lines.push(format!(
            "injected into B: +{:.1} ms per answer, {:.1} % of requests fail",
            f.delay.as_secs_f64() * 1e3,
            f.error_rate * 100.0
        ));
    }
    if let Some(p) = &s.progress {
        lines.push(format!(
            "{} requests in {:.1} s ({:.0}/s), {} answers, {} errors, {} labels{}",
            p.sent,
            p.active_s,
            p.mean_rate_per_s,
            p.answered,
            p.errors,
            p.labels_delivered,
            if p.shadow_sent + p.shadow_dropped > 0 {
                format!(", {} shadow copies ({} dropped: queue full)", p.shadow_sent, p.shadow_dropped)
            } else {
                String::new()
            }
        ));
    }
    for arm in &s.arms {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        let accuracy = arm.accuracy.as_ref().map_or("no labels".into(), |a| {
            format!(
                "accuracy {:.2} % [{:.2}, {:.2}] (Wilson 95 %, n = {})",
                a.accuracy * 100.0,
                a.wilson_ci95[0] * 100.0,
                a.wilson_ci95[1] * 100.0,
                a.n
            )
        });
        lines.push(format!(
            "  {} {}: {} requests, {} errors, latency p50 {} / p95 {} / p99 {} ms, {accuracy}",
            arm.arm.name(),
            arm.model,
            arm.answered,
            arm.errors,
            ms(arm.latency_ms.p50),
            ms(arm.latency_ms.p95),
            ms(arm.latency_ms.p99)
        ));
    }
    if let Some(acc) = &s.accuracy {
        lines.push(format!("accuracy: {}", acc.verdict()));
    }
    if let Some(seq) = &s.sequential {
        lines.push(format!("sequential: {}", seq.verdict_text()));
    }
    if let Some(l) = &s.latency {
        lines.push(latency_line(l));
    }
    if let Some(p) = &s.paired {
        lines.extend(paired_lines(p).into_iter().map(|l| format!("paired: {l}")));
    }
    if let Some(c) = &s.canary {
        lines.push(format!(
            "canary: {} at {} after {} checks ({} failed of threshold {})",
            c.phase.label(),
            percent(c.weight),
            c.decisions.iter().filter(|d| d.outcome.is_some()).count(),
            c.failed_checks,
            c.threshold
        ));
        if c.phase == Phase::Progressing || c.phase == Phase::AwaitingApproval {
            lines.push(format!(
                "  undecided: {} / {} answers toward the next check (A / B; {} needed each), {} / {} labels this step",
                c.window_answered[0], c.window_answered[1], c.min_requests, c.step_labels[0], c.step_labels[1]
            ));
        }
    }
    lines
}

/// Shadow and side by side: agreement, McNemar on the labelled pairs, the latency difference.
pub fn paired_lines(p: &PairedSummary) -> Vec<String> {
    let agreement = p.agreement.map_or("-".into(), |a| format!("{:.2} %", a * 100.0));
    let mut lines = vec![format!(
        "{} requests answered by both, same prediction on {agreement}, median B − A latency {} ms, {} waiting, {} \
         unpaired",
        p.pairs,
        p.median_latency_diff_ms.map_or("-".into(), |v| format!("{v:+.3}")),
        p.waiting,
        p.unpaired
    )];
    if let Some(m) = &p.mcnemar {
        let t = p.table;
        lines.push(format!(
            "on {} labelled pairs: both right {}, only A right {}, only B right {}, both wrong {}; McNemar exact p = {}",
            p.labelled_pairs,
            t[0][0],
            t[0][1],
            t[1][0],
            t[1][1],
            format_p(m.exact.pvalue)
        ));
    }
    lines
}

/// Kayenta's judgement of the arms' recent latencies.
pub fn latency_line(l: &LatencyComparison) -> String {
    let k = &l.kayenta;
    format!(
        "latency, last {} / {} answers: B − A {:+.3} ms ({:.0} % interval [{:+.3}, {:+.3}]), Kayenta: {:?}",
        l.n_a,
        l.n_b,
        k.estimate,
        k.confidence * 100.0,
        k.lower,
        k.upper,
        k.verdict
    )
}
