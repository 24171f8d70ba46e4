//! The stakeholder report: HTML structure, escaping, self-containment, size on a large model,
//! robustness to unreadable inputs, the Markdown summary, and a render in headless Chromium.
//!
//! The evaluations here are built by hand (the fixture computes its metrics with the plain
//! textbook formulas) so that the report is tested apart from the metrics code.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modeldeck::eval::evaluation::{Comparison, Evaluation, ExampleOutcome, LatencySummary};
use modeldeck::eval::metrics::{Averages, ClassMetrics, Metrics, ReliabilityBin, TopK, UnknownLabel, ECE_BINS};
use modeldeck::model::{LabelScore, ModelCard, Task};
use modeldeck::report::{comparison_html, comparison_markdown, evaluation_html, evaluation_markdown};
use modeldeck::stats::{correctness_table, mcnemar};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped digit images of class `label`, sorted.
fn digit_images(label: usize) -> Vec<String> {
    let dir = root().join("assets/digits/test").join(label.to_string());
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".png"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no images in {}", dir.display());
    files
}

/// Deterministic pseudo-random numbers in [0, 1) (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn card(name: &str, labels: &[String]) -> ModelCard {
    ModelCard {
        name: name.into(),
        source: format!("assets/models/{name}"),
        revision: None,
        architecture: "ResNet".into(),
        task: Task::ImageClassification,
        labels: labels.to_vec(),
        parameters: 1_234_567,
        dtype: "F32".into(),
        precision: modeldeck::model::Precision::F32,
        quantization: modeldeck::model::Precision::F32.scheme().into(),
        kernel: modeldeck::model::Precision::F32.kernel().into(),
        size_bytes: 4_938_268,
        memory_bytes: 4_938_268,
        load_ms: 12.5,
        endpoint: None,
    }
}

/// One record for the fixture: input, label, prediction and its top labels.
struct Record {
    input: String,
    is_image: bool,
    label: Option<String>,
    top: Vec<LabelScore>,
    latency_ms: f64,
    error: Option<String>,
}

fn record(input: &str, label: &str, top: &[(&str, f32)], latency_ms: f64) -> Record {
    Record {
        input: input.into(),
        is_image: true,
        label: Some(label.into()),
        top: top.iter().map(|(l, s)| LabelScore { label: (*l).into(), score: *s }).collect(),
        latency_ms,
        error: None,
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Textbook metrics over the answered, labelled records (scikit-learn's conventions: classes
/// that occur as a label or a prediction, zero when a ratio has no denominator).
fn metrics(outcomes: &[ExampleOutcome], model_labels: &[String]) -> Option<Metrics> {
    let scored: Vec<&ExampleOutcome> =
        outcomes.iter().filter(|o| o.label.is_some() && o.prediction.is_some()).collect();
    if scored.is_empty() {
        return None;
    }
    let occurs = |l: &str| scored.iter().any(|o| o.label.as_deref() == Some(l) || o.prediction.as_deref() == Some(l));
    let mut classes: Vec<String> = model_labels.iter().filter(|l| occurs(l)).cloned().collect();
    let mut unknown: Vec<String> =
        scored.iter().filter_map(|o| o.label.clone()).filter(|l| !model_labels.contains(l)).collect();
    unknown.sort();
    unknown.dedup();
    classes.extend(unknown.iter().cloned());
    let index = |l: &str| classes.iter().position(|c| c == l).unwrap();
    let k = classes.len();
    let mut confusion = vec![vec![0u64; k]; k];
    for o in &scored {
        confusion[index(o.label.as_deref().unwrap())][index(o.prediction.as_deref().unwrap())] += 1;
    }
    let n = scored.len() as u64;
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|i| {
            let support: u64 = confusion[i].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[i]).sum();
            let tp = confusion[i][i] as f64;
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics {
                label: classes[i].clone(),
                precision,
                recall,
                f1,
                support,
                predicted,
                known_to_model: model_labels.contains(&classes[i]),
            }
        })
        .collect();
    let mean = |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / k as f64;
    let weighted =
        |f: fn(&ClassMetrics) -> f64| per_class.iter().map(|c| f(c) * c.support as f64).sum::<f64>() / n as f64;
    let mut reliability: Vec<ReliabilityBin> = (0..ECE_BINS)
        .map(|b| ReliabilityBin {
            lower: b as f64 / ECE_BINS as f64,
            upper: (b + 1) as f64 / ECE_BINS as f64,
            count: 0,
            mean_confidence: 0.0,
            accuracy: 0.0,
        })
        .collect();
    for o in &scored {
        let c = o.confidence as f64;
        let b = ((c * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        reliability[b].count += 1;
        reliability[b].mean_confidence += c;
        reliability[b].accuracy += o.is_right() as u64 as f64;
    }
    let mut ece = 0.0;
    for bin in &mut reliability {
        if bin.count > 0 {
            bin.mean_confidence /= bin.count as f64;
            bin.accuracy /= bin.count as f64;
            ece += bin.count as f64 / n as f64 * (bin.accuracy - bin.mean_confidence).abs();
        }
    }
    let known: Vec<&&ExampleOutcome> =
        scored.iter().filter(|o| model_labels.contains(o.label.as_ref().unwrap())).collect();
    let log_loss = (!known.is_empty()).then(|| {
        -known
            .iter()
            .map(|o| {
                let p = o.top.iter().find(|t| Some(&t.label) == o.label.as_ref()).map(|t| t.score).unwrap_or(1e-3);
                (p as f64).ln()
            })
            .sum::<f64>()
            / known.len() as f64
    });
    let top5 = scored.iter().filter(|o| o.top.iter().take(5).any(|t| Some(&t.label) == o.label.as_ref())).count();
    let mut unknown_labels: Vec<UnknownLabel> = unknown
        .iter()
        .map(|l| UnknownLabel {
            label: l.clone(),
            count: scored.iter().filter(|o| o.label.as_ref() == Some(l)).count() as u64,
        })
        .collect();
    unknown_labels.sort_by(|a, b| a.label.cmp(&b.label));
    Some(Metrics {
        n,
        correct,
        accuracy: correct as f64 / n as f64,
        top_k: vec![TopK { k: 5, accuracy: top5 as f64 / n as f64 }],
        macro_avg: Averages { precision: mean(|c| c.precision), recall: mean(|c| c.recall), f1: mean(|c| c.f1) },
        weighted_avg: Averages {
            precision: weighted(|c| c.precision),
            recall: weighted(|c| c.recall),
            f1: weighted(|c| c.f1),
        },
        classes: per_class,
        confusion,
        log_loss,
        n_log_loss: known.len() as u64,
        ece,
        reliability,
        unknown_labels,
    })
}

fn evaluation(name: &str, model_labels: &[String], records: Vec<Record>) -> Evaluation {
    let outcomes: Vec<ExampleOutcome> = records
        .into_iter()
        .enumerate()
        .map(|(index, r)| ExampleOutcome {
            index,
            id: format!("{index:05}"),
            prediction: if r.error.is_some() { None } else { r.top.first().map(|t| t.label.clone()) },
            confidence: if r.error.is_some() { 0.0 } else { r.top.first().map(|t| t.score).unwrap_or(0.0) },
            input: r.input,
            is_image: r.is_image,
            label: r.label,
            top: r.top,
            latency_ms: r.latency_ms,
            error: r.error,
        })
        .collect();
    let mut latencies: Vec<f64> = outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let wall_s = latencies.iter().sum::<f64>() / 1e3 / 4.0;
    let mut slowest: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].error.is_none()).collect();
    slowest.sort_by(|&a, &b| outcomes[b].latency_ms.total_cmp(&outcomes[a].latency_ms));
    slowest.truncate(20);
    let mut confidently_wrong: Vec<usize> = (0..outcomes.len()).filter(|&i| outcomes[i].is_wrong()).collect();
    confidently_wrong.sort_by(|&a, &b| outcomes[b].confidence.total_cmp(&outcomes[a].confidence));
    confidently_wrong.truncate(20);
    Evaluation {
        model: card(name, model_labels),
        data: "assets/digits/test".into(),
        drift: None,
        seed: 0,
        n: outcomes.len(),
        n_failed: outcomes.iter().filter(|o| o.error.is_some()).count(),
        metrics: metrics(&outcomes, model_labels),
        latency: LatencySummary {
            mean_ms: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
            p50_ms: percentile(&latencies, 0.5),
            p90_ms: percentile(&latencies, 0.9),
            p95_ms: percentile(&latencies, 0.95),
            p99_ms: percentile(&latencies, 0.99),
            max_ms: latencies.last().copied().unwrap_or(0.0),
            batch_size: 32,
            throughput_per_s: latencies.len() as f64 / wall_s.max(1e-9),
            wall_s,
        },
        slowest,
        confidently_wrong,
        command: format!("modeldeck eval --model assets/models/{name} --data assets/digits/test --batch-size 32"),
        outcomes,
    }
}

/// Digits as a realistic classifier would answer them: mostly right and confident, with the
/// classic confusions (4/9, 3/5, 7/1, 8/3) and less confident mistakes. `skill` in [0, 1] moves
/// the error rate.
fn digit_records(seed: u64, per_class: usize, skill: f64) -> Vec<Record> {
    let mut rng = Rng(seed);
    let confusable = [6, 7, 3, 5, 9, 3, 0, 1, 3, 4];
    let mut records = Vec::new();
    for i in 0..per_class {
        for (c, &confused) in confusable.iter().enumerate() {
            let files = digit_images(c);
            let input = &files[i % files.len()];
            let wrong = rng.next() < 0.08 * (1.0 - skill) + 0.01;
            let predicted = if wrong {
                if rng.next() < 0.7 {
                    confused
                } else {
                    (c + 1 + (rng.next() * 8.0) as usize) % 10
                }
            } else {
                c
            };
            let confidence = if wrong { 0.42 + 0.55 * rng.next() } else { 1.0 - 0.35 * rng.next().powi(3) };
            let second = if wrong { c } else { confusable[c] };
            let rest = 1.0 - confidence;
            let mut top = vec![(predicted.to_string(), confidence as f32), (second.to_string(), (rest * 0.7) as f32)];
            let third = (0..10).find(|d| *d != predicted && *d != second).unwrap();
            top.push((third.to_string(), (rest * 0.2) as f32));
            let latency_ms = 1.6 + 0.5 * rng.next() + if rng.next() < 0.02 { 3.0 * rng.next() } else { 0.0 };
            records.push(Record {
                input: input.clone(),
                is_image: true,
                label: Some(c.to_string()),
                top: top.into_iter().map(|(label, score)| LabelScore { label, score }).collect(),
                latency_ms,
                error: None,
            });
        }
    }
    records
}

fn digit_labels() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// The shipped-digits evaluation of the screenshots, plus two records with a label the model
/// does not know and one that failed.
fn digits_evaluation(name: &str, seed: u64, skill: f64) -> Evaluation {
    let mut records = digit_records(seed, 54, skill);
    let seven = digit_images(7);
    for _ in 0..2 {
        records.push(record(&seven[0], "cat", &[("7", 0.61), ("1", 0.2)], 1.9));
    }
    records.push(Record {
        input: root().join("assets/digits/test/missing.png").display().to_string(),
        is_image: true,
        label: Some("3".into()),
        top: vec![],
        latency_ms: 0.1,
        error: Some("cannot read assets/digits/test/missing.png: No such file or directory".into()),
    });
    evaluation(name, &digit_labels(), records)
}

fn compare(a: Evaluation, b: Evaluation) -> Comparison {
    let pairs: Vec<usize> = (0..a.outcomes.len())
        .filter(|&i| a.outcomes[i].prediction.is_some() && b.outcomes[i].prediction.is_some())
        .collect();
    let agree = pairs.iter().filter(|&&i| a.outcomes[i].prediction == b.outcomes[i].prediction).count();
    let labelled: Vec<usize> = pairs.iter().copied().filter(|&i| a.outcomes[i].label.is_some()).collect();
    let table = correctness_table(labelled.iter().map(|&i| (a.outcomes[i].is_right(), b.outcomes[i].is_right())));
    let acc =
        |e: &Evaluation| labelled.iter().filter(|&&i| e.outcomes[i].is_right()).count() as f64 / labelled.len() as f64;
    Comparison {
        n_paired: pairs.len(),
        agreement: agree as f64 / pairs.len() as f64,
        n_labelled_pairs: labelled.len(),
        correctness: table,
        mcnemar: Some(mcnemar(&table)),
        accuracy_diff: Some(acc(&b) - acc(&a)),
        disagreements: pairs
            .iter()
            .copied()
            .filter(|&i| a.outcomes[i].prediction != b.outcomes[i].prediction)
            .collect(),
        command:
            "modeldeck compare --a assets/models/digits-small --b assets/models/digits-large --data assets/digits/test"
                .into(),
        a,
        b,
    }
}

/// Every `src="..."` and `href="..."` value in the page.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            // Only attributes count: inside a tag, after a space (escaped text such as
            // "&lt;img src=x" is not a reference).
            let before = &rest[..at];
            let in_tag = before.rfind('<') > before.rfind('>') && before.ends_with(' ');
            rest = &rest[at + attr.len()..];
            if !in_tag {
                continue;
            }
            let quote = rest.chars().next().unwrap();
            let value: String = if quote == '"' || quote == '\'' {
                rest[1..].chars().take_while(|c| *c != quote).collect()
            } else {
                rest.chars().take_while(|c| !c.is_whitespace() && *c != '>').collect()
            };
            found.push(value);
        }
    }
    found
}

fn assert_self_contained(html: &str) {
    assert!(!html.to_ascii_lowercase().contains("<script"), "the report has a script");
    assert!(!html.contains("http://") && !html.contains("https://"), "the report names a URL");
    assert!(!html.contains("@import") && !html.contains("@font-face") && !html.contains("url("));
    for r in references(html) {
        assert!(
            r.starts_with("data:image/png;base64,") || r.starts_with('#'),
            "external reference: {}",
            &r[..r.len().min(80)]
        );
    }
}

#[test]
fn evaluation_report_has_every_section_chart_and_number() {
    let e = digits_evaluation("digits-small", 7, 0.0);
    let m = e.metrics.as_ref().unwrap();
    let html = evaluation_html(&e);
    assert_self_contained(&html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for section in [
        "<h2>Summary</h2>",
        "<h2>Errors and calibration</h2>",
        "<h2>Per class</h2>",
        "<h2>Latency</h2>",
        "<h2>Most confidently wrong</h2>",
        "<h2>Model and data</h2>",
        "<h2>Reproduce</h2>",
    ] {
        assert!(html.contains(section), "missing {section}");
    }
    for chart in [
        "aria-label=\"Confusion matrix",
        "aria-label=\"Reliability diagram\"",
        "aria-label=\"Precision, recall and F1 per class\"",
        "aria-label=\"Latency histogram\"",
    ] {
        assert_eq!(html.matches(chart).count(), 1, "{chart}");
    }
    assert_eq!(html.matches("<svg").count(), 4);
    // Headline numbers as formatted.
    assert!(html.contains(&format!("<td>Accuracy</td><td class=\"n\">{:.2}%</td>", m.accuracy * 100.0)));
    assert!(html.contains(&format!("<td>Macro F1</td><td class=\"n\">{:.4}</td>", m.macro_avg.f1)));
    assert!(html.contains(&format!("<td>ECE (15 bins)</td><td class=\"n\">{:.4}</td>", m.ece)));
    assert!(html.contains(&format!("Reliability · ECE {:.4}", m.ece)));
    assert!(html.contains("<td>Records</td><td class=\"n\">543</td>"));
    assert!(html.contains("<td>Failed records</td><td class=\"n\">1</td>"));
    assert!(html.contains("<td>Top-5 accuracy</td>"));
    assert!(html.contains(&format!("<td>Latency p95</td><td class=\"n\">{:.2} ms</td>", e.latency.p95_ms)));
    // Unknown labels and the failed record, in plain words.
    assert!(html.contains("2 records carry labels the model does not know: cat (2)."), "unknown labels");
    assert!(html.contains("not a model label"));
    assert!(html.contains("1 of 543 records could not be scored; the first:"));
    assert!(html.contains("No such file or directory"));
    // The confusion matrix cell of a known count: the diagonal of class 0.
    assert!(html.contains(&format!(">{}</text>", m.confusion[0][0])));
    // Eight thumbnails of the most confidently wrong, real PNGs.
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 8);
    // Model card and the command, verbatim in a code block.
    assert!(html.contains("<th>Parameters</th><td>1.2 M</td>"));
    assert!(html.contains(&format!("<pre><code>{}</code></pre>", e.command)));
    // The 15 reliability bins each carry their count.
    assert_eq!(m.reliability.len(), 15);
}

#[test]
fn every_string_from_data_or_models_is_escaped() {
    let evil = "<script>alert(1)</script>";
    let labels = vec![evil.to_string(), "cats & dogs".to_string(), "\"quoted\"".to_string()];
    let mut records = Vec::new();
    for i in 0..12 {
        let (label, predicted) = (&labels[i % 3], &labels[(i + i / 6) % 3]);
        let mut r = record(&format!("{evil}/x & y {i}.png"), label, &[(predicted, 0.9), (label, 0.05)], 1.0 + i as f64);
        if i % 4 == 0 {
            r.is_image = false;
            r.input = format!("a text with {evil} & an <img src=x onerror=alert(1)>");
        }
        records.push(r);
    }
    records.push(record("x.png", "<b>unknown</b>", &[(&labels[0], 0.9)], 1.0));
    records.push(Record { error: Some(format!("bad {evil}")), ..record("y.png", &labels[1], &[], 1.0) });
    let mut e = evaluation(evil, &labels, records);
    e.model.source = format!("{evil}&src");
    e.data = format!("/data/{evil}");
    e.drift = Some(format!("noise={evil}"));
    e.command = format!("modeldeck eval --model '{evil}' --data 'a&b'");
    let c = compare(e.clone(), {
        let mut b = e.clone();
        for o in &mut b.outcomes {
            o.prediction = o.label.clone().filter(|_| o.error.is_none());
        }
        b
    });
    for html in [evaluation_html(&e), comparison_html(&c)] {
        assert_self_contained(&html);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("cats &amp; dogs"));
        assert!(html.contains("&quot;quoted&quot;"));
        assert!(!html.contains("<img src=x"));
        assert!(!html.contains("<b>unknown</b>"));
        assert!(!html.contains(" & "), "an unescaped ampersand");
    }
    for md in [evaluation_markdown(&e), comparison_markdown(&c)] {
        // Code spans and the command's code block keep the text verbatim (Markdown shows
        // them literally, and the command must paste back into a shell); everywhere else
        // HTML is escaped.
        assert!(!outside_code(&md).to_ascii_lowercase().contains("<script"), "{md}");
        assert!(md.contains("&lt;script&gt;"));
        assert!(md.contains(&e.command) || md.contains(&c.command), "the command verbatim");
    }
}

/// `md` without its fenced code blocks and inline code spans.
fn outside_code(md: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.extend(line.split('`').step_by(2));
            out.push('\n');
        }
    }
    out
}

#[test]
fn large_model_report_stays_small() {
    let labels: Vec<String> = (0..1000).map(|i| format!("class_{i:04}")).collect();
    let mut rng = Rng(11);
    let images: Vec<Vec<String>> = (0..10).map(digit_images).collect();
    let records: Vec<Record> = (0..10_000)
        .map(|i| {
            let label = &labels[i % 1000];
            let right = rng.next() < 0.8;
            let predicted = if right { label.clone() } else { labels[(rng.next() * 1000.0) as usize % 1000].clone() };
            let conf = if right { 0.6 + 0.4 * rng.next() } else { 0.2 + 0.7 * rng.next() };
            let mut r = record(
                &images[i % 10][i % 50],
                label,
                &[(&predicted, conf as f32), (label, 0.1)],
                5.0 + 20.0 * rng.next(),
            );
            r.top.dedup_by(|a, b| a.label == b.label);
            r
        })
        .collect();
    let a = evaluation("wide-a", &labels, records);
    let mut b = a.clone();
    for (i, o) in b.outcomes.iter_mut().enumerate() {
        if i % 7 == 0 {
            o.prediction = o.label.clone();
        }
    }
    b.model.name = "wide-b".into();
    b.metrics = metrics(&b.outcomes, &labels);
    let started = Instant::now();
    let html = evaluation_html(&a);
    let elapsed = started.elapsed();
    let comparison = comparison_html(&compare(a.clone(), b));
    let md = evaluation_markdown(&a);
    println!(
        "1000 classes, 10,000 outcomes: evaluation HTML {} bytes ({elapsed:?}), comparison HTML {} bytes, Markdown {} bytes",
        html.len(),
        comparison.len(),
        md.len()
    );
    assert_self_contained(&html);
    assert!(html.len() < 300_000, "evaluation report is {} bytes", html.len());
    assert!(comparison.len() < 400_000, "comparison report is {} bytes", comparison.len());
    assert!(md.len() < 8_000, "Markdown summary is {} bytes", md.len());
    assert!(html.contains("Showing the 25 of 1000 classes with the most errors"));
    assert!(html.contains("Showing the 25 of 1000 classes with the lowest F1"));
    assert!(html.contains("The 100 classes with the lowest F1 of 1,000"));
    assert!(md.contains("Per class: the 20 of 1,000 classes with the lowest F1."));
    assert_eq!(md.matches("\n| class\\_").count(), 20, "Markdown escapes the underscore");
    // The matrix shows 25 x 25 cells at most.
    let matrix = &html[html.find("aria-label=\"Confusion matrix").unwrap()..];
    let matrix = &matrix[..matrix.find("</svg>").unwrap()];
    assert_eq!(matrix.matches("<rect").count(), 625);
}

#[test]
fn unreadable_images_and_long_texts_do_not_break_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.png");
    std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let long_text: String = "word ".repeat(200);
    let mut records = vec![
        record(&garbage.display().to_string(), "a", &[("b", 0.99)], 1.0),
        record(&dir.path().join("gone.png").display().to_string(), "a", &[("b", 0.98)], 1.0),
        record("", "b", &[("a", 0.97)], 1.0),
    ];
    let mut text = record(&long_text, "b", &[("a", 0.96)], 1.0);
    text.is_image = false;
    records.push(text);
    records.push(record(&digit_images(3)[0], "a", &[("a", 0.9)], 1.0));
    let e = evaluation("mixed", &["a".to_string(), "b".to_string()], records);
    let html = evaluation_html(&e);
    assert_eq!(html.matches("class=\"placeholder\"").count(), 3);
    assert!(html.contains("image not available"));
    let shown = html.split("class=\"text-input\">").nth(1).unwrap();
    let shown = &shown[..shown.find("</p>").unwrap()];
    assert_eq!(shown.chars().count(), 300);
    assert!(shown.ends_with('…'));
}

#[test]
fn comparison_report_pairs_the_models() {
    let a = digits_evaluation("digits-small", 7, 0.0);
    let mut b = digits_evaluation("digits-large", 8, 0.8);
    b.command = "unused".into();
    let c = compare(a, b);
    let html = comparison_html(&c);
    assert_self_contained(&html);
    for section in [
        "<h2>Headline</h2>",
        "<h2>Paired</h2>",
        "<h2>Disagreements</h2>",
        "<h2>A: digits-small</h2>",
        "<h2>B: digits-large</h2>",
        "<h2>Models and data</h2>",
        "<h2>Reproduce</h2>",
    ] {
        assert!(html.contains(section), "missing {section}");
    }
    assert_eq!(html.matches("aria-label=\"Confusion matrix").count(), 2);
    assert_eq!(html.matches("aria-label=\"Reliability diagram\"").count(), 2);
    assert_eq!(html.matches("aria-label=\"Latency histogram\"").count(), 2, "each model's latency");
    assert_eq!(html.matches("aria-label=\"Precision, recall and F1").count(), 2, "each model's classes");
    let (ma, mb) = (c.a.metrics.as_ref().unwrap(), c.b.metrics.as_ref().unwrap());
    assert!(html.contains(&format!(
        "<td>Accuracy</td><td class=\"n\">{:.2}%</td><td class=\"n\">{:.2}%</td><td class=\"n better\">{:+.2} pp</td>",
        ma.accuracy * 100.0,
        mb.accuracy * 100.0,
        (mb.accuracy - ma.accuracy) * 100.0
    )));
    let m = c.mcnemar.as_ref().unwrap();
    let t = c.correctness;
    assert!(
        html.contains(&format!("<tr><th>A right</th><td class=\"n\">{}</td><td class=\"n\">{}</td>", t[0][0], t[0][1]))
    );
    assert!(html
        .contains(&format!("McNemar χ² (continuity-corrected)</th><td class=\"n\">{:.4}", m.chi2_corrected.statistic)));
    assert!(html.contains(&format!(
        "<tr><th>Agreement (same prediction)</th><td class=\"n\">{:.2}%</td>",
        c.agreement * 100.0
    )));
    assert!(html.contains(&format!("{} records where the two predictions differ; the first 8:", c.disagreements.len())));
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), 8);
    assert!(html.contains(&format!("<pre><code>{}</code></pre>", c.command)));
    assert!(!html.contains("unused"));

    let md = comparison_markdown(&c);
    assert!(md.contains("| Metric | A: digits-small | B: digits-large | Δ (B − A) |"));
    assert!(md.contains(&format!("| McNemar χ² (corrected) | {:.4}", m.chi2_corrected.statistic)));
    assert!(md.contains(&format!("```sh\n{}\n```", c.command)));
    assert!(!md.contains("<img") && !md.contains("data:image"));
}

#[test]
fn mcnemar_figures_are_the_statistics_core_s() {
    // 3 records only A got right, 9 only B: exact p = 2 * P(X <= 3; 12, 1/2) = 598/4096.
    let labels = digit_labels();
    let mut ra = Vec::new();
    let mut rb = Vec::new();
    let img = digit_images(1)[0].clone();
    for i in 0..30 {
        let (a_right, b_right) = match i {
            0..=2 => (true, false),
            3..=11 => (false, true),
            12..=25 => (true, true),
            _ => (false, false),
        };
        let pick = |right: bool| if right { "1" } else { "7" };
        ra.push(record(&img, "1", &[(pick(a_right), 0.9)], 1.0));
        rb.push(record(&img, "1", &[(pick(b_right), 0.8)], 1.0));
    }
    let c = compare(evaluation("a", &labels, ra), evaluation("b", &labels, rb));
    assert_eq!(c.correctness, [[14, 3], [9, 4]]);
    let html = comparison_html(&c);
    assert!(html.contains("<tr><th>McNemar exact p</th><td class=\"n\">0.1460</td></tr>"), "{}", 598.0 / 4096.0);
    assert!(html.contains("<td class=\"n\">2.0833 (p = "));
    assert!(html.contains(
        "3 records only A got right and 9 only B got right: the difference is not statistically significant"
    ));
    assert!(html.contains("<tr><th>Accuracy difference (B − A)</th><td class=\"n\">+20.00 pp</td></tr>"));
    let md = comparison_markdown(&c);
    assert!(md.contains("| McNemar exact p | 0.1460 |"));
    assert!(md.contains("| Both right / only A right / only B right / both wrong | 14 / 3 / 9 / 4 |"));
}

#[test]
fn evaluation_without_labels_reports_latency_only() {
    let mut records = digit_records(3, 2, 0.5);
    for r in &mut records {
        r.label = None;
    }
    let e = evaluation("unlabelled", &digit_labels(), records);
    assert!(e.metrics.is_none());
    let html = evaluation_html(&e);
    assert_self_contained(&html);
    assert!(html.contains("No answered record has a label"));
    assert_eq!(html.matches("<svg").count(), 1);
    let md = evaluation_markdown(&e);
    assert!(md.contains("only latency is reported"));
}

#[test]
fn markdown_summary_of_an_evaluation() {
    let e = digits_evaluation("digits-small", 7, 0.0);
    let m = e.metrics.as_ref().unwrap();
    let md = evaluation_markdown(&e);
    assert!(md.starts_with("### Evaluation of digits-small\n"));
    assert!(md.contains("| Metric | Value |\n|---|---:|\n| Records | 543 |\n| Failed records | 1 |"));
    assert!(md.contains(&format!("| Accuracy | {:.2}% |", m.accuracy * 100.0)));
    assert!(md.contains("| Class | Precision | Recall | F1 | Support |"));
    // Ten digits and the unknown label.
    assert_eq!(md.lines().filter(|l| l.starts_with("| ") && l.split('|').count() == 7).count(), 12);
    assert!(md.contains("| cat (not a model label) | 0.0000 | 0.0000 | 0.0000 | 2 |"));
    assert!(md.contains("> 2 records carry labels the model does not know: cat (2)."));
    assert!(md.contains("> 1 of 543 records could not be scored; the first: 00542: cannot read"));
    assert!(md.ends_with(&format!("```sh\n{}\n```\n", e.command)));
    assert!(!md.contains("<svg") && !md.contains("data:image"));
}

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Screenshots `html` in headless Chromium; `None` when no Chromium is installed and none is
/// required.
fn screenshot(html: &str, dir: &Path, name: &str) -> Option<image::RgbaImage> {
    let Some(chromium) = find_chromium() else {
        assert!(
            std::env::var("MODELDECK_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "MODELDECK_REQUIRE_CHROMIUM=1 but no chromium binary on PATH"
        );
        println!("skipped: chromium not installed");
        return None;
    };
    let page = dir.join(format!("{name}.html"));
    let png = dir.join(format!("{name}.png"));
    std::fs::write(&page, html).unwrap();
    let mut child = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", dir.join(format!("{name}-profile")).display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1280,2000")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            child.kill().unwrap();
            panic!("chromium did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(png.is_file(), "chromium wrote no screenshot: {}", String::from_utf8_lossy(&output.stderr));
    if let Ok(keep) = std::env::var("MODELDECK_KEEP_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join(format!("{name}.png"))).unwrap();
    }
    Some(image::open(&png).unwrap().to_rgba8())
}

/// Not blank: many distinct colours and a fair share of ink on the page.
fn assert_rendered(shot: &image::RgbaImage) {
    assert_eq!((shot.width(), shot.height()), (1280, 2000));
    let mut colours = std::collections::HashSet::new();
    let mut ink = 0usize;
    for p in shot.pixels() {
        colours.insert(p.0);
        if p.0[0] < 200 || p.0[1] < 200 || p.0[2] < 200 {
            ink += 1;
        }
    }
    let share = ink as f64 / (shot.width() * shot.height()) as f64;
    assert!(colours.len() > 100, "only {} colours", colours.len());
    assert!(share > 0.02, "ink on {:.3} of the page", share);
}

#[test]
fn reports_render_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let a = digits_evaluation("digits-small", 7, 0.0);
    let b = digits_evaluation("digits-large", 8, 0.8);
    let Some(shot) = screenshot(&evaluation_html(&a), dir.path(), "report-evaluation") else { return };
    assert_rendered(&shot);
    let shot = screenshot(&comparison_html(&compare(a, b)), dir.path(), "report-comparison").unwrap();
    assert_rendered(&shot);
}
