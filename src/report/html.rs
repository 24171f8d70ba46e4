//! The stakeholder report of an evaluation or a comparison: one self-contained HTML file
//! (inline CSS, inline SVG charts from [`super::svg`], thumbnails as PNG data URIs, no scripts
//! and no network references; a Content-Security-Policy says so to the browser too) and a
//! Markdown summary that pastes into a pull request. Every string that comes from the data or
//! a model is escaped here; the raw data set is never embedded (only a handful of examples).

use std::fmt::Write as _;
use std::io::Cursor;

use base64::Engine as _;

use super::svg;
use crate::eval::evaluation::{Comparison, Evaluation, ExampleOutcome};
use crate::eval::metrics::{ClassMetrics, Metrics};
use crate::model::ModelCard;

/// Examples shown with thumbnails (most confidently wrong, disagreements).
pub const MAX_EXAMPLES: usize = 8;
/// Longest side of a thumbnail, CSS pixels.
pub const THUMBNAIL_PX: u32 = 96;
/// Characters of a text record shown in an example.
pub const MAX_TEXT_CHARS: usize = 300;
/// Rows of the per-class table in the HTML report (beyond: the lowest F1).
pub const MAX_HTML_CLASS_ROWS: usize = 100;
/// Rows of the per-class table in the Markdown summary (beyond: the lowest F1).
pub const MAX_MARKDOWN_CLASS_ROWS: usize = 20;
const MAX_FAILED_REASONS: usize = 5;
const MAX_UNKNOWN_LABELS: usize = 20;
const MAX_SLOWEST: usize = 5;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Milliseconds with precision that suits their size: `0.42 ms`, `12.3 ms`, `1234 ms`.
pub fn format_ms(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match v.abs() {
        a if a < 10.0 => format!("{v:.2} ms"),
        a if a < 1_000.0 => format!("{v:.1} ms"),
        _ => format!("{v:.0} ms"),
    }
}

/// An integer with thousands separators: `10,000`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share as a percentage with two decimals: `97.30%`.
pub fn format_percent(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", x * 100.0)
    } else {
        "–".into()
    }
}

/// A p-value: four decimals, or scientific notation below 0.001.
pub fn format_p(p: f64) -> String {
    if !p.is_finite() {
        "–".into()
    } else if p >= 1e-3 || p == 0.0 {
        format!("{p:.4}")
    } else {
        format!("{p:.2e}")
    }
}

fn format_parameters(n: u64) -> String {
    match n {
        0..=99_999 => format_count(n),
        100_000..=999_999_999 => format!("{:.1} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}

fn format_bytes(n: u64) -> String {
    match n {
        0..=999_999 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// How a headline number is shown, and which direction is better.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Count,
    Percent,
    Ratio,
    Ms,
    PerSecond,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
    Neither,
}

#[derive(Debug, Clone)]
struct Headline {
    name: String,
    value: Option<f64>,
    kind: Kind,
    better: Better,
}

impl Headline {
    fn new(name: impl Into<String>, value: Option<f64>, kind: Kind, better: Better) -> Self {
        Self { name: name.into(), value, kind, better }
    }
}

fn format_value(kind: Kind, value: Option<f64>) -> String {
    let Some(v) = value else { return "–".into() };
    match kind {
        Kind::Count => format_count(v.max(0.0).round() as u64),
        Kind::Percent => format_percent(v),
        Kind::Ratio => format!("{v:.4}"),
        Kind::Ms => format_ms(v),
        Kind::PerSecond => format!("{v:.1}/s"),
    }
}

/// `B − A` in the headline's own unit (percentage points for shares).
fn format_delta(kind: Kind, a: Option<f64>, b: Option<f64>) -> Option<(String, f64)> {
    let d = b? - a?;
    if !d.is_finite() {
        return None;
    }
    let text = match kind {
        Kind::Count => format!("{:+}", d.round() as i64),
        Kind::Percent => format!("{:+.2} pp", d * 100.0),
        Kind::Ratio => format!("{d:+.4}"),
        Kind::Ms => format!("{d:+.2} ms"),
        Kind::PerSecond => format!("{d:+.1}/s"),
    };
    Some((text, d))
}

fn headlines(e: &Evaluation) -> Vec<Headline> {
    use Better::*;
    use Kind::*;
    let mut rows = vec![
        Headline::new("Records", Some(e.n as f64), Count, Neither),
        Headline::new("Failed records", Some(e.n_failed as f64), Count, Lower),
    ];
    if let Some(m) = &e.metrics {
        rows.push(Headline::new("Labelled records scored", Some(m.n as f64), Count, Neither));
        rows.push(Headline::new("Accuracy", Some(m.accuracy), Percent, Higher));
        for t in m.top_k.iter().filter(|t| t.k != 1) {
            rows.push(Headline::new(format!("Top-{} accuracy", t.k), Some(t.accuracy), Percent, Higher));
        }
        rows.push(Headline::new("Macro precision", Some(m.macro_avg.precision), Ratio, Higher));
        rows.push(Headline::new("Macro recall", Some(m.macro_avg.recall), Ratio, Higher));
        rows.push(Headline::new("Macro F1", Some(m.macro_avg.f1), Ratio, Higher));
        rows.push(Headline::new("Weighted precision", Some(m.weighted_avg.precision), Ratio, Higher));
        rows.push(Headline::new("Weighted recall", Some(m.weighted_avg.recall), Ratio, Higher));
        rows.push(Headline::new("Weighted F1", Some(m.weighted_avg.f1), Ratio, Higher));
        rows.push(Headline::new("Log loss", m.log_loss, Ratio, Lower));
        rows.push(Headline::new("ECE (15 bins)", Some(m.ece), Ratio, Lower));
    }
    let l = &e.latency;
    rows.push(Headline::new("Throughput", Some(l.throughput_per_s), PerSecond, Higher));
    rows.push(Headline::new("Latency mean", Some(l.mean_ms), Ms, Lower));
    rows.push(Headline::new("Latency p50", Some(l.p50_ms), Ms, Lower));
    rows.push(Headline::new("Latency p95", Some(l.p95_ms), Ms, Lower));
    rows.push(Headline::new("Latency p99", Some(l.p99_ms), Ms, Lower));
    rows.push(Headline::new("Latency max", Some(l.max_ms), Ms, Lower));
    rows
}

/// A headline of both models: name, kind, which way is better, A's value, B's value.
type PairedHeadline = (String, Kind, Better, Option<f64>, Option<f64>);

/// A's and B's headlines aligned by name (A's order, then B's extras).
fn paired_headlines(a: &Evaluation, b: &Evaluation) -> Vec<PairedHeadline> {
    let (ha, hb) = (headlines(a), headlines(b));
    let mut rows: Vec<_> = ha
        .iter()
        .map(|h| {
            (h.name.clone(), h.kind, h.better, h.value, hb.iter().find(|x| x.name == h.name).and_then(|x| x.value))
        })
        .collect();
    for h in hb.iter().filter(|h| !ha.iter().any(|x| x.name == h.name)) {
        rows.push((h.name.clone(), h.kind, h.better, None, h.value));
    }
    rows
}

/// The per-class rows a table shows: every class up to `max`, else the `max` with the lowest
/// F1, lowest first. The flag says whether rows were left out.
fn class_rows(m: &Metrics, max: usize) -> (Vec<&ClassMetrics>, bool) {
    if m.classes.len() <= max {
        return (m.classes.iter().collect(), false);
    }
    let mut rows: Vec<&ClassMetrics> = m.classes.iter().collect();
    rows.sort_by(|a, b| a.f1.total_cmp(&b.f1).then(b.support.cmp(&a.support)));
    rows.truncate(max);
    (rows, true)
}

fn unknown_labels_sentence(m: &Metrics) -> Option<String> {
    if m.unknown_labels.is_empty() {
        return None;
    }
    let total: u64 = m.unknown_labels.iter().map(|u| u.count).sum();
    let mut listed: Vec<String> =
        m.unknown_labels.iter().take(MAX_UNKNOWN_LABELS).map(|u| format!("{} ({})", u.label, u.count)).collect();
    if m.unknown_labels.len() > MAX_UNKNOWN_LABELS {
        listed.push(format!("and {} more labels", m.unknown_labels.len() - MAX_UNKNOWN_LABELS));
    }
    Some(format!(
        "{} record{} carr{} labels the model does not know: {}.",
        format_count(total),
        if total == 1 { "" } else { "s" },
        if total == 1 { "ies" } else { "y" },
        listed.join(", ")
    ))
}

fn failed_reasons(e: &Evaluation) -> Vec<(&str, &str)> {
    e.outcomes.iter().filter_map(|o| o.error.as_deref().map(|r| (o.id.as_str(), r))).take(MAX_FAILED_REASONS).collect()
}

fn generated_at() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

// ---------------------------------------------------------------------------------------
// HTML

const CSS: &str = "\
:root{color-scheme:light}*{box-sizing:border-box}\
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;color:#1d2430;background:#eef1f5}\
main{max-width:1140px;margin:0 auto;padding:28px 32px 40px;background:#fff;min-height:100vh}\
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:30px 0 10px;padding-bottom:4px;border-bottom:1px solid #e3e6eb}\
h3{font-size:15px;margin:18px 0 8px}.sub{color:#5b6472;margin:0}\
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}\
th,td{padding:4px 12px;border-bottom:1px solid #e8ebef;text-align:left;vertical-align:top}\
th{background:#f6f7f9;font-weight:600}td.n,th.n{text-align:right}\
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:18px 28px;align-items:start}\
figure{margin:0;break-inside:avoid}figcaption{color:#5b6472;font-size:12px;margin-top:4px;max-width:640px}\
svg{max-width:100%;height:auto;display:block}\
.callout{border-left:4px solid #e08a00;background:#fff8eb;padding:8px 12px;margin:8px 0}\
.callout.error{border-color:#c62828;background:#fdf0f0}.callout ul{margin:4px 0 0;padding-left:20px}\
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:12px}\
.example{border:1px solid #e3e6eb;border-radius:6px;padding:10px;display:flex;gap:12px;break-inside:avoid;min-width:0}\
.example img{image-rendering:pixelated;border:1px solid #d5d9e0;background:#fff;flex:none}\
.example dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:1px 8px;font-size:13px;min-width:0}\
.example dt{color:#5b6472}.example dd{margin:0;overflow-wrap:anywhere}\
.placeholder{width:96px;height:96px;flex:none;display:flex;align-items:center;justify-content:center;text-align:center;\
font-size:11px;color:#5b6472;background:#f0f2f5;border:1px dashed #b8bfca;padding:4px;overflow:hidden;overflow-wrap:anywhere}\
.text-input{font-size:12px;background:#f6f7f9;padding:6px 8px;border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere;margin:0 0 6px}\
.example.text{flex-direction:column}.wrong{color:#c62828;font-weight:600}.right{color:#2e7d32;font-weight:600}\
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}\
pre{background:#f6f7f9;border:1px solid #e3e6eb;padding:10px 12px;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere}\
.better{color:#2e7d32}.worse{color:#c62828}.tag{font-size:11px;color:#8a5a00;background:#fff3d6;border-radius:3px;padding:0 4px}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:18px}\
.verdict{font-size:15px;margin:8px 0}footer{color:#5b6472;font-size:12px;margin-top:36px}\
@media print{body{background:#fff}main{padding:0;max-width:none;min-height:0}h2,h3{break-after:avoid}\
table,figure,.example{break-inside:avoid}}@page{margin:14mm}";

fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + CSS.len() + 600);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    // Nothing may load or run: images only from data URIs, styles only inline.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<meta name=\"generator\" content=\"ModelDeck {}\">", env!("CARGO_PKG_VERSION"));
    let _ = write!(out, "<title>{}</title><style>{CSS}</style></head>\n<body><main>\n", escape_html(title));
    out.push_str(body);
    let _ = write!(
        out,
        "\n<footer>Made by ModelDeck {} on {}. Self-contained: no scripts, no external files; the data set itself is not included.</footer>\n</main></body></html>\n",
        env!("CARGO_PKG_VERSION"),
        generated_at()
    );
    out
}

/// A PNG data URI of the image at `path`, shrunk to fit [`THUMBNAIL_PX`], and the size to show
/// it at (small images are kept small in the file and scaled up by the browser).
fn thumbnail(image: image::RgbImage) -> Result<(String, u32, u32), String> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err("the image is empty".into());
    }
    let small = if w > THUMBNAIL_PX || h > THUMBNAIL_PX {
        let (tw, th) = crate::eval::fit_box(w, h, THUMBNAIL_PX);
        image::imageops::thumbnail(&image, tw, th)
    } else {
        image
    };
    let mut png = Vec::new();
    small.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| e.to_string())?;
    let scale = THUMBNAIL_PX as f64 / w.max(h) as f64;
    let (dw, dh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
    Ok((format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png)), dw, dh))
}

/// The record's input: a thumbnail, a placeholder that says why there is none, or the text.
/// `image` is what the model saw (the file with the evaluation's drift).
fn input_html(o: &ExampleOutcome, image: Result<image::RgbImage, String>) -> String {
    if !o.is_image {
        return format!("<p class=\"text-input\">{}</p>", escape_html(&truncate_chars(&o.input, MAX_TEXT_CHARS)));
    }
    match image.and_then(thumbnail) {
        Ok((uri, w, h)) => format!(
            "<img src=\"{uri}\" width=\"{w}\" height=\"{h}\" alt=\"{}\" title=\"{}\">",
            escape_html(&o.id),
            escape_html(&o.input)
        ),
        Err(reason) => format!(
            "<div class=\"placeholder\" title=\"{}\">image not available<br>({})</div>",
            escape_html(&reason),
            escape_html(&truncate_chars(&o.input, 60))
        ),
    }
}

fn prediction_html(o: &ExampleOutcome) -> String {
    match &o.prediction {
        None => format!(
            "<span class=\"wrong\">failed</span>{}",
            o.error.as_deref().map(|r| format!(": {}", escape_html(r))).unwrap_or_default()
        ),
        Some(p) => {
            let class = if o.is_wrong() {
                "wrong"
            } else if o.is_right() {
                "right"
            } else {
                ""
            };
            format!("<span class=\"{class}\">{}</span> ({})", escape_html(p), format_percent(o.confidence as f64))
        }
    }
}

fn top_html(o: &ExampleOutcome) -> String {
    o.top.iter().take(3).map(|t| format!("{} {:.3}", escape_html(&t.label), t.score)).collect::<Vec<_>>().join(" · ")
}

fn example_card(e: &Evaluation, o: &ExampleOutcome, fields: &[(&str, String)]) -> String {
    let mut s = format!("<div class=\"example{}\">", if o.is_image { "" } else { " text" });
    s.push_str(&input_html(o, e.input_image(o)));
    s.push_str("<dl>");
    let _ = write!(s, "<dt>record</dt><dd><code>{}</code></dd>", escape_html(&o.id));
    let _ = write!(s, "<dt>label</dt><dd>{}</dd>", o.label.as_deref().map(escape_html).unwrap_or_else(|| "–".into()));
    for (name, value) in fields {
        let _ = write!(s, "<dt>{}</dt><dd>{value}</dd>", escape_html(name));
    }
    s.push_str("</dl></div>");
    s
}

fn headline_table_html(e: &Evaluation) -> String {
    let mut s = String::from(
        "<table class=\"headline\"><thead><tr><th>Metric</th><th class=\"n\">Value</th></tr></thead><tbody>",
    );
    for h in headlines(e) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            escape_html(&h.name),
            escape_html(&format_value(h.kind, h.value))
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn callouts_html(e: &Evaluation) -> String {
    let mut s = String::new();
    match &e.metrics {
        None => s.push_str(
            "<p class=\"callout\">No answered record has a label, so there is no accuracy, confusion matrix or calibration; only latency is reported.</p>",
        ),
        Some(m) => {
            if let Some(sentence) = unknown_labels_sentence(m) {
                let _ = write!(
                    s,
                    "<p class=\"callout\">{} They count as wrong answers and have no log loss.</p>",
                    escape_html(&sentence)
                );
            }
        }
    }
    if e.n_failed > 0 {
        let _ = write!(
            s,
            "<div class=\"callout error\">{} of {} record{} could not be scored{}",
            format_count(e.n_failed as u64),
            format_count(e.n as u64),
            if e.n == 1 { "" } else { "s" },
            if failed_reasons(e).is_empty() { "." } else { "; the first:" }
        );
        let reasons = failed_reasons(e);
        if !reasons.is_empty() {
            s.push_str("<ul>");
            for (id, reason) in reasons {
                let _ = write!(s, "<li><code>{}</code>: {}</li>", escape_html(id), escape_html(reason));
            }
            s.push_str("</ul>");
        }
        s.push_str("</div>");
    }
    s
}

fn figure(svg: &str, caption: &str, note: Option<&str>) -> String {
    format!(
        "<figure>{svg}<figcaption>{}{}</figcaption></figure>",
        escape_html(caption),
        note.map(|n| format!(" {}", escape_html(n))).unwrap_or_default()
    )
}

fn confusion_and_reliability_html(m: &Metrics) -> String {
    let cm = svg::confusion_matrix(m);
    let mut s = String::from("<div class=\"grid\">");
    s.push_str(&figure(
        &cm.svg,
        "Confusion matrix: rows are the true labels, columns the predictions; each cell gives its count, shaded by its share of the true class (blue: right, red: wrong).",
        cm.note.as_deref(),
    ));
    s.push_str(&figure(
        &svg::reliability_diagram(m),
        &format!(
            "Reliability diagram, {} equal-width confidence bins: the accuracy of the predictions in each bin against the diagonal of perfect calibration; the numbers on top count the predictions per bin. ECE {:.4}.",
            m.reliability.len(),
            m.ece
        ),
        None,
    ));
    s.push_str("</div>");
    s
}

fn latencies(e: &Evaluation) -> Vec<f64> {
    e.outcomes.iter().filter(|o| o.error.is_none()).map(|o| o.latency_ms).collect()
}

fn class_table_html(m: &Metrics) -> String {
    let (rows, truncated) = class_rows(m, MAX_HTML_CLASS_ROWS);
    let mut s = String::new();
    if truncated {
        let _ = write!(
            s,
            "<p>The {} classes with the lowest F1 of {}, lowest first (<code>modeldeck eval --json</code> has them all).</p>",
            rows.len(),
            format_count(m.classes.len() as u64)
        );
    }
    s.push_str(
        "<table class=\"classes\"><thead><tr><th>Class</th><th class=\"n\">Precision</th><th class=\"n\">Recall</th>\
         <th class=\"n\">F1</th><th class=\"n\">Support</th><th class=\"n\">Predicted</th></tr></thead><tbody>",
    );
    for c in rows {
        let tag = if c.known_to_model { "" } else { " <span class=\"tag\">not a model label</span>" };
        let _ = write!(
            s,
            "<tr><td>{}{tag}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape_html(&c.label),
            c.precision,
            c.recall,
            c.f1,
            format_count(c.support),
            format_count(c.predicted)
        );
    }
    let _ = write!(
        s,
        "</tbody><tfoot><tr><th>Macro average</th><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{}</td><td></td></tr>\
         <tr><th>Weighted average</th><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{}</td><td></td></tr></tfoot></table>",
        m.macro_avg.precision,
        m.macro_avg.recall,
        m.macro_avg.f1,
        format_count(m.n),
        m.weighted_avg.precision,
        m.weighted_avg.recall,
        m.weighted_avg.f1,
        format_count(m.n)
    );
    s
}

fn model_card_html(card: &ModelCard, heading: &str) -> String {
    let mut s = format!("<div><h3>{}</h3><table class=\"card\"><tbody>", escape_html(heading));
    let revision = card.revision.as_deref().map(|r| format!(" @ {}", escape_html(r))).unwrap_or_default();
    let rows = [
        ("Name", escape_html(&card.name)),
        ("Source", format!("<code>{}</code>{revision}", escape_html(&card.source))),
        ("Architecture", escape_html(&card.architecture)),
        ("Task", escape_html(card.task.name())),
        ("Parameters", format_parameters(card.parameters)),
        ("Weights dtype", escape_html(&card.dtype)),
        ("Size on disk", format_bytes(card.size_bytes)),
        ("Labels", format_count(card.labels.len() as u64)),
        ("Load time", format_ms(card.load_ms)),
    ];
    for (name, value) in rows {
        let _ = write!(s, "<tr><th>{name}</th><td>{value}</td></tr>");
    }
    s.push_str("</tbody></table></div>");
    s
}

fn data_html(e: &Evaluation) -> String {
    format!(
        "<table class=\"data\"><tbody><tr><th>Data set</th><td><code>{}</code></td></tr><tr><th>Drift</th><td>{}</td></tr>\
         <tr><th>Batch size</th><td>{}</td></tr><tr><th>Wall time</th><td>{:.1} s</td></tr></tbody></table>",
        escape_html(&e.data),
        e.drift.as_deref().map(|d| format!("<code>{}</code>", escape_html(d))).unwrap_or_else(|| "none".into()),
        e.latency.batch_size,
        e.latency.wall_s
    )
}

fn command_html(command: &str) -> String {
    format!("<h2>Reproduce</h2><pre><code>{}</code></pre>", escape_html(command))
}

/// The report of one evaluation as a self-contained HTML page.
fn class_bars_html(m: &Metrics) -> String {
    let bars = svg::class_bars(&m.classes);
    figure(&bars.svg, "Precision, recall and F1 of each class.", bars.note.as_deref())
}

fn latency_html(e: &Evaluation) -> String {
    let hist = svg::latency_histogram(&latencies(e), &e.latency);
    figure(
        &hist.svg,
        &format!(
            "Latency of each scored record: its decoding plus its share of the batch's preprocessing and forward pass (batch size {}). p50 {}, p95 {}, p99 {}.",
            e.latency.batch_size,
            format_ms(e.latency.p50_ms),
            format_ms(e.latency.p95_ms),
            format_ms(e.latency.p99_ms)
        ),
        hist.note.as_deref(),
    )
}

pub fn evaluation_html(e: &Evaluation) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><h1>Evaluation of {}</h1><p class=\"sub\">on <code>{}</code>{} · {} records</p></header>",
        escape_html(&e.model.name),
        escape_html(&e.data),
        e.drift.as_deref().map(|d| format!(" with drift <code>{}</code>", escape_html(d))).unwrap_or_default(),
        format_count(e.n as u64)
    );
    b.push_str("<h2>Summary</h2>");
    b.push_str(&headline_table_html(e));
    b.push_str(&callouts_html(e));
    if let Some(m) = &e.metrics {
        b.push_str("<h2>Errors and calibration</h2>");
        b.push_str(&confusion_and_reliability_html(m));
        b.push_str("<h2>Per class</h2>");
        b.push_str(&class_bars_html(m));
        b.push_str(&class_table_html(m));
    }
    b.push_str("<h2>Latency</h2>");
    b.push_str(&latency_html(e));
    let slowest: Vec<&ExampleOutcome> = e.slowest.iter().filter_map(|&i| e.outcomes.get(i)).take(MAX_SLOWEST).collect();
    if !slowest.is_empty() {
        b.push_str(
            "<h3>Slowest records</h3><table><thead><tr><th>Record</th><th class=\"n\">Latency</th></tr></thead><tbody>",
        );
        for o in slowest {
            let _ = write!(
                b,
                "<tr><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                escape_html(&o.id),
                format_ms(o.latency_ms)
            );
        }
        b.push_str("</tbody></table>");
    }
    if e.metrics.is_some() {
        b.push_str("<h2>Most confidently wrong</h2>");
        let wrong: Vec<&ExampleOutcome> =
            e.confidently_wrong.iter().filter_map(|&i| e.outcomes.get(i)).take(MAX_EXAMPLES).collect();
        if wrong.is_empty() {
            b.push_str("<p>No wrong answers.</p>");
        } else {
            b.push_str("<div class=\"examples\">");
            for o in wrong {
                b.push_str(&example_card(e, o, &[("predicted", prediction_html(o)), ("top 3", top_html(o))]));
            }
            b.push_str("</div>");
        }
    }
    b.push_str("<h2>Model and data</h2><div class=\"cards\">");
    b.push_str(&model_card_html(&e.model, "Model"));
    b.push_str("<div><h3>Data</h3>");
    b.push_str(&data_html(e));
    b.push_str("</div></div>");
    b.push_str(&command_html(&e.command));
    page(&format!("Evaluation of {} on {}", e.model.name, e.data), &b)
}

fn delta_cell(kind: Kind, better: Better, a: Option<f64>, b: Option<f64>) -> String {
    match format_delta(kind, a, b) {
        None => "<td class=\"n\">–</td>".into(),
        Some((text, d)) => {
            let class = match better {
                _ if d == 0.0 => "",
                Better::Higher if d > 0.0 => "better",
                Better::Lower if d < 0.0 => "better",
                Better::Neither => "",
                _ => "worse",
            };
            format!("<td class=\"n {class}\">{}</td>", escape_html(&text))
        }
    }
}

fn mcnemar_sentence(c: &Comparison) -> Option<String> {
    let m = c.mcnemar.as_ref()?;
    let (only_a, only_b) = (c.correctness[0][1], c.correctness[1][0]);
    let significant = m.exact.pvalue < 0.05;
    Some(format!(
        "{} records only A got right and {} only B got right: the difference is {}statistically significant at the 5% level (McNemar's exact test, p = {}).",
        format_count(only_a),
        format_count(only_b),
        if significant { "" } else { "not " },
        format_p(m.exact.pvalue)
    ))
}

/// The report of a paired comparison of two models as a self-contained HTML page.
pub fn comparison_html(c: &Comparison) -> String {
    let (a, bm) = (&c.a, &c.b);
    let mut b = String::new();
    let _ = write!(
        b,
        "<header><h1>{} vs {}</h1><p class=\"sub\">A: {} · B: {} · on <code>{}</code>{} · {} paired records</p></header>",
        escape_html(&a.model.name),
        escape_html(&bm.model.name),
        escape_html(&a.model.name),
        escape_html(&bm.model.name),
        escape_html(&a.data),
        a.drift.as_deref().map(|d| format!(" with drift <code>{}</code>", escape_html(d))).unwrap_or_default(),
        format_count(c.n_paired as u64)
    );
    if let Some(sentence) = mcnemar_sentence(c) {
        let _ = write!(b, "<p class=\"verdict\">{}</p>", escape_html(&sentence));
    }
    b.push_str("<h2>Headline</h2>");
    let _ = write!(
        b,
        "<table class=\"headline\"><thead><tr><th>Metric</th><th class=\"n\">A: {}</th><th class=\"n\">B: {}</th><th class=\"n\">Δ (B − A)</th></tr></thead><tbody>",
        escape_html(&a.model.name),
        escape_html(&bm.model.name)
    );
    for (name, kind, better, va, vb) in paired_headlines(a, bm) {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>{}</tr>",
            escape_html(&name),
            escape_html(&format_value(kind, va)),
            escape_html(&format_value(kind, vb)),
            delta_cell(kind, better, va, vb)
        );
    }
    b.push_str("</tbody></table>");

    b.push_str("<h2>Paired</h2><div class=\"cards\"><div>");
    let _ = write!(
        b,
        "<table><tbody><tr><th>Paired records (both answered)</th><td class=\"n\">{}</td></tr>\
         <tr><th>Agreement (same prediction)</th><td class=\"n\">{}</td></tr>\
         <tr><th>Labelled pairs</th><td class=\"n\">{}</td></tr>\
         <tr><th>Accuracy difference (B − A)</th><td class=\"n\">{}</td></tr>",
        format_count(c.n_paired as u64),
        format_percent(c.agreement),
        format_count(c.n_labelled_pairs as u64),
        c.accuracy_diff.map(|d| format!("{:+.2} pp", d * 100.0)).unwrap_or_else(|| "–".into())
    );
    if let Some(m) = &c.mcnemar {
        let _ = write!(
            b,
            "<tr><th>McNemar exact p</th><td class=\"n\">{}</td></tr>\
             <tr><th>McNemar χ² (continuity-corrected)</th><td class=\"n\">{:.4} (p = {})</td></tr>\
             <tr><th>McNemar χ² (uncorrected)</th><td class=\"n\">{:.4} (p = {})</td></tr>",
            format_p(m.exact.pvalue),
            m.chi2_corrected.statistic,
            format_p(m.chi2_corrected.pvalue),
            m.chi2_uncorrected.statistic,
            format_p(m.chi2_uncorrected.pvalue)
        );
    }
    b.push_str("</tbody></table></div><div>");
    let t = &c.correctness;
    let _ = write!(
        b,
        "<table class=\"correctness\"><thead><tr><th></th><th class=\"n\">B right</th><th class=\"n\">B wrong</th><th class=\"n\">Total</th></tr></thead><tbody>\
         <tr><th>A right</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\
         <tr><th>A wrong</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\
         <tr><th>Total</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></tbody></table>\
         <p class=\"sub\">Labelled pairs by which model got them right; McNemar's test uses the off-diagonal cells.</p>",
        format_count(t[0][0]),
        format_count(t[0][1]),
        format_count(t[0][0] + t[0][1]),
        format_count(t[1][0]),
        format_count(t[1][1]),
        format_count(t[1][0] + t[1][1]),
        format_count(t[0][0] + t[1][0]),
        format_count(t[0][1] + t[1][1]),
        format_count(t[0][0] + t[0][1] + t[1][0] + t[1][1])
    );
    b.push_str("</div></div>");

    let _ = write!(
        b,
        "<h2>Disagreements</h2><p>{} records where the two predictions differ",
        format_count(c.disagreements.len() as u64)
    );
    let shown: Vec<(&ExampleOutcome, &ExampleOutcome)> = c
        .disagreements
        .iter()
        .filter_map(|&i| Some((a.outcomes.get(i)?, bm.outcomes.get(i)?)))
        .take(MAX_EXAMPLES)
        .collect();
    if shown.is_empty() {
        b.push_str(".</p>");
    } else {
        let _ = write!(b, "; the first {}:</p><div class=\"examples\">", shown.len());
        for (oa, ob) in shown {
            b.push_str(&example_card(a, oa, &[("A", prediction_html(oa)), ("B", prediction_html(ob))]));
        }
        b.push_str("</div>");
    }

    for (which, e) in [("A", a), ("B", bm)] {
        let _ = write!(b, "<h2>{which}: {}</h2>", escape_html(&e.model.name));
        b.push_str(&callouts_html(e));
        if let Some(m) = &e.metrics {
            b.push_str(&confusion_and_reliability_html(m));
            b.push_str(&class_bars_html(m));
        }
        b.push_str(&latency_html(e));
    }
    b.push_str("<h2>Models and data</h2><div class=\"cards\">");
    b.push_str(&model_card_html(&a.model, &format!("A: {}", a.model.name)));
    b.push_str(&model_card_html(&bm.model, &format!("B: {}", bm.model.name)));
    b.push_str("</div>");
    b.push_str(&data_html(a));
    b.push_str(&command_html(&c.command));
    page(&format!("{} vs {} on {}", a.model.name, bm.model.name, a.data), &b)
}

// ---------------------------------------------------------------------------------------
// Markdown

/// Escapes text for a Markdown table cell: HTML specials (GitHub renders inline HTML), the
/// cell separator and line breaks.
fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '\\' | '`' | '*' | '_' | '[' | ']' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// A fenced code block whose fence is longer than any run of backticks in `code`.
fn md_code_block(code: &str) -> String {
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}sh\n{code}\n{fence}\n")
}

fn md_notes(out: &mut String, e: &Evaluation) {
    if let Some(sentence) = e.metrics.as_ref().and_then(unknown_labels_sentence) {
        let _ = writeln!(out, "> {}\n", escape_md(&sentence));
    }
    if e.metrics.is_none() {
        out.push_str("> No answered record has a label, so only latency is reported.\n\n");
    }
    if e.n_failed > 0 {
        let _ = write!(
            out,
            "> {} of {} records could not be scored",
            format_count(e.n_failed as u64),
            format_count(e.n as u64)
        );
        let reasons: Vec<String> =
            failed_reasons(e).into_iter().map(|(id, r)| format!("{}: {}", escape_md(id), escape_md(r))).collect();
        if reasons.is_empty() {
            out.push_str(".\n\n");
        } else {
            let _ = writeln!(out, "; the first: {}.\n", reasons.join("; "));
        }
    }
}

fn md_model_line(card: &ModelCard) -> String {
    format!(
        "{} ({}, {}, {} parameters, {})",
        escape_md(&card.source),
        escape_md(&card.architecture),
        card.task.name(),
        format_parameters(card.parameters),
        escape_md(&card.dtype)
    )
}

/// A Markdown summary of an evaluation for a pull request: headline, per-class table (the
/// lowest F1 first when there are many classes) and the command; no images.
pub fn evaluation_markdown(e: &Evaluation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### Evaluation of {}\n", escape_md(&e.model.name));
    let _ = writeln!(out, "- Model: {}", md_model_line(&e.model));
    let _ = writeln!(
        out,
        "- Data: `{}`{}",
        e.data.replace('`', "'"),
        e.drift.as_deref().map(|d| format!(" with drift `{}`", d.replace('`', "'"))).unwrap_or_default()
    );
    let _ = writeln!(out, "- Records: {} ({} failed)\n", format_count(e.n as u64), format_count(e.n_failed as u64));
    md_notes(&mut out, e);
    out.push_str("| Metric | Value |\n|---|---:|\n");
    for h in headlines(e) {
        let _ = writeln!(out, "| {} | {} |", escape_md(&h.name), format_value(h.kind, h.value));
    }
    if let Some(m) = &e.metrics {
        let (rows, truncated) = class_rows(m, MAX_MARKDOWN_CLASS_ROWS);
        out.push('\n');
        if truncated {
            let _ = writeln!(
                out,
                "Per class: the {} of {} classes with the lowest F1.\n",
                rows.len(),
                format_count(m.classes.len() as u64)
            );
        }
        out.push_str("| Class | Precision | Recall | F1 | Support |\n|---|---:|---:|---:|---:|\n");
        for c in rows {
            let _ = writeln!(
                out,
                "| {}{} | {:.4} | {:.4} | {:.4} | {} |",
                escape_md(&c.label),
                if c.known_to_model { "" } else { " (not a model label)" },
                c.precision,
                c.recall,
                c.f1,
                format_count(c.support)
            );
        }
    }
    out.push_str("\nReproduce:\n\n");
    out.push_str(&md_code_block(&e.command));
    out
}

/// A Markdown summary of a comparison for a pull request: both models side by side with the
/// delta, the paired statistics and the command; no images.
pub fn comparison_markdown(c: &Comparison) -> String {
    let (a, b) = (&c.a, &c.b);
    let mut out = String::new();
    let _ = writeln!(out, "### {} vs {}\n", escape_md(&a.model.name), escape_md(&b.model.name));
    let _ = writeln!(out, "- A: {}", md_model_line(&a.model));
    let _ = writeln!(out, "- B: {}", md_model_line(&b.model));
    let _ = writeln!(
        out,
        "- Data: `{}`{}",
        a.data.replace('`', "'"),
        a.drift.as_deref().map(|d| format!(" with drift `{}`", d.replace('`', "'"))).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "- Paired records: {} ({} labelled)\n",
        format_count(c.n_paired as u64),
        format_count(c.n_labelled_pairs as u64)
    );
    if let Some(sentence) = mcnemar_sentence(c) {
        let _ = writeln!(out, "{}\n", escape_md(&sentence));
    }
    let _ = writeln!(
        out,
        "| Metric | A: {} | B: {} | Δ (B − A) |\n|---|---:|---:|---:|",
        escape_md(&a.model.name),
        escape_md(&b.model.name)
    );
    for (name, kind, _, va, vb) in paired_headlines(a, b) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            escape_md(&name),
            format_value(kind, va),
            format_value(kind, vb),
            format_delta(kind, va, vb).map(|(t, _)| t).unwrap_or_else(|| "–".into())
        );
    }
    let t = &c.correctness;
    let _ = writeln!(out, "\n| Paired | Value |\n|---|---:|");
    let _ = writeln!(out, "| Agreement | {} |", format_percent(c.agreement));
    let _ = writeln!(
        out,
        "| Both right / only A right / only B right / both wrong | {} / {} / {} / {} |",
        t[0][0], t[0][1], t[1][0], t[1][1]
    );
    if let Some(d) = c.accuracy_diff {
        let _ = writeln!(out, "| Accuracy difference (B − A) | {:+.2} pp |", d * 100.0);
    }
    if let Some(m) = &c.mcnemar {
        let _ = writeln!(out, "| McNemar exact p | {} |", format_p(m.exact.pvalue));
        let _ = writeln!(
            out,
            "| McNemar χ² (corrected) | {:.4} (p = {}) |",
            m.chi2_corrected.statistic,
            format_p(m.chi2_corrected.pvalue)
        );
    }
    let _ = writeln!(out, "| Disagreements | {} |", format_count(c.disagreements.len() as u64));
    md_notes_labelled(&mut out, "A", a);
    md_notes_labelled(&mut out, "B", b);
    out.push_str("\nReproduce:\n\n");
    out.push_str(&md_code_block(&c.command));
    out
}

fn md_notes_labelled(out: &mut String, which: &str, e: &Evaluation) {
    let mut notes = String::new();
    md_notes(&mut notes, e);
    if !notes.is_empty() {
        let _ = write!(out, "\n{which}:\n\n{notes}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_specials() {
        assert_eq!(
            escape_html("<script>alert('1')</script> & \"x\""),
            "&lt;script&gt;alert(&#39;1&#39;)&lt;/script&gt; &amp; &quot;x&quot;"
        );
    }

    #[test]
    fn escapes_markdown_cells() {
        assert_eq!(escape_md("a|b <i> *c*\nd"), "a\\|b &lt;i&gt; \\*c\\* d");
    }

    #[test]
    fn code_fence_outgrows_backticks_in_the_command() {
        let block = md_code_block("echo ```` done");
        assert!(block.starts_with("`````sh\n"));
        assert!(block.ends_with("\n`````\n"));
        assert_eq!(md_code_block("modeldeck eval"), "```sh\nmodeldeck eval\n```\n");
    }

    #[test]
    fn truncates_on_characters_not_bytes() {
        assert_eq!(truncate_chars("ééééé", 3), "éé…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }

    #[test]
    fn number_formats() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(10_000), "10,000");
        assert_eq!(format_count(1_234_567), "1,234,567");
        assert_eq!(format_percent(0.973), "97.30%");
        assert_eq!(format_ms(0.4249), "0.42 ms");
        assert_eq!(format_ms(12.34), "12.3 ms");
        assert_eq!(format_ms(1234.4), "1234 ms");
        assert_eq!(format_p(0.04567), "0.0457");
        assert_eq!(format_p(3.2e-7), "3.20e-7");
        assert_eq!(format_p(1.0), "1.0000");
        assert_eq!(format_parameters(86_567_656), "86.6 M");
        assert_eq!(format_parameters(12_345), "12,345");
        assert_eq!(format_bytes(330_300_000), "330.3 MB");
        assert_eq!(format_delta(Kind::Percent, Some(0.9), Some(0.925)).map(|d| d.0), Some("+2.50 pp".into()));
        assert_eq!(format_delta(Kind::Ms, Some(2.0), Some(1.5)).map(|d| d.0), Some("-0.50 ms".into()));
        assert_eq!(format_delta(Kind::Ratio, None, Some(1.5)), None);
    }

    #[test]
    fn unreadable_and_missing_images_become_placeholders() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"not a png at all").unwrap();
        for path in [garbage.display().to_string(), dir.path().join("missing.png").display().to_string(), String::new()]
        {
            let o = ExampleOutcome {
                index: 0,
                id: "r<1>".into(),
                input: path,
                is_image: true,
                label: Some("a".into()),
                prediction: Some("b".into()),
                confidence: 0.9,
                top: vec![],
                latency_ms: 1.0,
                error: None,
            };
            let image = crate::model::decode_image_file(std::path::Path::new(&o.input)).map_err(|e| e.to_string());
            let html = input_html(&o, image);
            assert!(html.contains("class=\"placeholder\""), "{html}");
            assert!(!html.contains("<img"));
        }
    }

    #[test]
    fn thumbnails_fit_the_box_and_keep_the_aspect_ratio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        image::RgbImage::from_pixel(400, 200, image::Rgb([10, 200, 30])).save(&path).unwrap();
        let (uri, w, h) = thumbnail(image::open(&path).unwrap().to_rgb8()).unwrap();
        assert_eq!((w, h), (96, 48));
        let png =
            base64::engine::general_purpose::STANDARD.decode(uri.trim_start_matches("data:image/png;base64,")).unwrap();
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (96, 48));
        // Small images stay small in the file and are shown at 96 px.
        let small = dir.path().join("small.png");
        image::RgbImage::from_pixel(28, 28, image::Rgb([0, 0, 0])).save(&small).unwrap();
        let (uri, w, h) = thumbnail(image::open(&small).unwrap().to_rgb8()).unwrap();
        assert_eq!((w, h), (96, 96));
        let png =
            base64::engine::general_purpose::STANDARD.decode(uri.trim_start_matches("data:image/png;base64,")).unwrap();
        assert_eq!(image::load_from_memory(&png).unwrap().width(), 28);
    }
}
