//! `modeldeck batch`: answers in data-set order, bad records kept with their reason, the
//! prediction log with origin `batch`, and a run killed with SIGKILL that resumes without
//! duplicating or losing a row.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modeldeck"));
    c.env("HF_HUB_OFFLINE", "1");
    c
}

fn run(args: &[&str]) -> serde_json::Value {
    let out = bin().args(args).arg("--json").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "modeldeck {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn digits() -> PathBuf {
    common::root().join("assets/digits/test")
}

/// The digits test images, `repeat` times over, as a CSV with ids `r-<file>`.
fn repeated_digits(dir: &Path, repeat: usize) -> (PathBuf, usize) {
    let mut images: Vec<(PathBuf, String)> = Vec::new();
    for label in 0..10 {
        let folder = digits().join(label.to_string());
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        images.extend(files.into_iter().map(|f| (f, label.to_string())));
    }
    let mut csv = String::from("id,image,label\n");
    for r in 0..repeat {
        for (path, label) in &images {
            csv.push_str(&format!("{r}-{},{},{label}\n", path.file_name().unwrap().to_string_lossy(), path.display()));
        }
    }
    let path = dir.join("data.csv");
    std::fs::write(&path, csv).unwrap();
    (path, images.len() * repeat)
}

/// A row's id, input, prediction and error.
type Row = (String, String, String, String);

/// The rows of a CSV output: index -> (id, input, prediction, error).
fn rows(path: &Path) -> (Vec<usize>, HashMap<usize, Row>) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(headers.iter().collect::<Vec<_>>(), modeldeck::eval::output::CSV_COLUMNS);
    let mut order = Vec::new();
    let mut map = HashMap::new();
    for record in reader.records() {
        let r = record.unwrap();
        let index: usize = r[0].parse().unwrap();
        order.push(index);
        map.insert(index, (r[1].to_string(), r[2].to_string(), r[4].to_string(), r[8].to_string()));
    }
    (order, map)
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_a_row() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, n) = repeated_digits(tmp.path(), 60);
    let out = tmp.path().join("answers.csv");
    let out_arg = out.to_str().unwrap();
    let data_arg = data.to_str().unwrap();
    // Batches of one: many small writes, so the kill lands mid-run.
    let args = [
        "batch",
        "--model",
        "demo:digits-v1",
        "--input",
        data_arg,
        "--output",
        out_arg,
        "--batch-size",
        "1",
        "--no-log",
    ];
    let mut child = bin().args(args).stdout(std::process::Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    loop {
        let written = std::fs::read(&out).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
        if written > 2000 {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed: make the data bigger");
        assert!(started.elapsed() < Duration::from_secs(120), "no progress in the output");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the kill");
    let (before, _) = rows(&out);
    assert!(before.len() > 2000 && before.len() < n, "{} rows before the kill", before.len());

    // Without --resume the half-done file is not replaced.
    let refused = bin().args(args).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));

    let summary = run(&[&args[..], &["--resume"]].concat());
    let done_before = summary["summary"]["skipped"].as_u64().unwrap() as usize;
    assert!(done_before >= before.len(), "{done_before} skipped, {} rows were complete", before.len());
    assert_eq!(summary["summary"]["answered"].as_u64().unwrap() as usize + done_before, n);

    let (order, resumed) = rows(&out);
    assert_eq!(order, (0..n).collect::<Vec<_>>(), "every record exactly once, in data-set order");
    // The same answers as an uninterrupted run (of each distinct image).
    let reference = tmp.path().join("reference.csv");
    run(&[
        "batch",
        "--model",
        "demo:digits-v1",
        "--input",
        digits().to_str().unwrap(),
        "--output",
        reference.to_str().unwrap(),
        "--no-log",
    ]);
    let (_, reference) = rows(&reference);
    let by_image: HashMap<&str, &str> =
        reference.values().map(|(_, input, p, _)| (input.as_str(), p.as_str())).collect();
    assert_eq!(by_image.len(), n / 60);
    for (index, (id, input, prediction, error)) in &resumed {
        assert!(error.is_empty(), "{index}: {error}");
        assert_eq!(Path::new(input).file_name(), Path::new(id.split_once('-').unwrap().1).file_name());
        let expected = by_image
            .iter()
            .find(|(k, _)| Path::new(k).ends_with(Path::new(input).strip_prefix(digits()).unwrap()))
            .map(|(_, v)| *v);
        assert_eq!(Some(prediction.as_str()), expected, "record {index} ({input})");
    }
}

#[test]
fn bad_records_are_written_with_their_reason_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let good = digits().join("3/0003.png");
    let good = if good.exists() {
        good
    } else {
        std::fs::read_dir(digits().join("3")).unwrap().next().unwrap().unwrap().path()
    };
    std::fs::write(tmp.path().join("corrupt.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(tmp.path().join("empty.png"), b"").unwrap();
    let data = tmp.path().join("data.jsonl");
    std::fs::write(
        &data,
        format!(
            "{{\"id\": \"ok\", \"image\": \"{}\", \"label\": 3}}\n{{\"id\": \"missing\", \"image\": \"nope.png\"}}\n\
             {{\"id\": \"corrupt\", \"image\": \"corrupt.png\"}}\n{{broken json\n{{\"id\": \"empty\", \"image\": \"empty.png\"}}\n\
             {{\"id\": \"ok2\", \"image\": \"{}\"}}\n",
            good.display(),
            good.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("answers.jsonl");
    let log = tmp.path().join("log.sqlite");
    let summary = run(&[
        "batch",
        "--model",
        "demo:digits-v1",
        "--input",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--batch-size",
        "4",
    ]);
    assert_eq!(summary["summary"]["answered"], 2);
    assert_eq!(summary["summary"]["failed"], 4);
    let failures = summary["failures"].as_array().unwrap();
    assert_eq!(failures.iter().map(|f| f["count"].as_u64().unwrap()).sum::<u64>(), 4);

    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ok", "missing", "corrupt", "4", "empty", "ok2"]);
    assert_eq!(lines[0]["prediction"], "3");
    assert!(lines[0]["error"].is_null() && lines[5]["error"].is_null());
    assert_eq!(lines[0]["prediction"], lines[5]["prediction"]);
    for (i, needle) in [(1, "nope.png"), (2, "corrupt.png"), (3, "not JSON"), (4, "empty.png")] {
        let error = lines[i]["error"].as_str().unwrap_or_else(|| panic!("row {i} has no error"));
        assert!(error.contains(needle), "row {i}: {error}");
        assert!(lines[i]["prediction"].is_null());
    }

    // Every record reached the prediction log with origin `batch` and the run's id.
    let run_id = summary["run"].as_str().unwrap();
    let rows = modeldeck::store::read(
        &log,
        &modeldeck::store::Query { origin: Some(modeldeck::store::Origin::Batch), ..Default::default() },
    )
    .unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.record.request_id.starts_with(&format!("batch-{run_id}-"))));
    let first = &rows[0].record;
    assert_eq!((first.prediction.as_deref(), first.label.as_deref()), (Some("3"), Some("3")));
    let features = first.features.as_ref().unwrap();
    assert!(features.get("brightness").is_some() && features.get("confidence").is_some(), "{features}");
    assert_eq!(rows.iter().filter(|r| r.record.error.is_some()).count(), 4);

    // The run is listed, and its answered rows become a Monitor drift reference.
    let runs = modeldeck::store::batch_runs(&log, 10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].run.as_str(), runs[0].rows), (run_id, 6));
    let (model, samples) = modeldeck::monitor::batch_run_reference(&log, &format!("batch-{run_id}"), None).unwrap();
    assert_eq!(model, runs[0].model);
    assert_eq!(samples.len(), 2, "the answered rows");
    assert!(samples.iter().all(|s| s.predicted.as_deref() == Some("3")));
    assert!(samples[0].features.get("brightness").is_some() && samples[0].features.get("entropy").is_some());
    assert_eq!(samples[0].features.get("confidence"), features.get("confidence").and_then(|v| v.as_f64()));
    let (_, none) = modeldeck::monitor::batch_run_reference(&log, "20000101-000000000", None).unwrap();
    let (_, other) = modeldeck::monitor::batch_run_reference(&log, run_id, Some("demo:other")).unwrap();
    assert!(other.is_empty(), "another model's rows of the run");
    assert!(none.is_empty());
}

#[test]
fn text_and_embedding_models_write_their_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("texts.csv");
    let mut bytes = b"id,text\na,a fine film\nb,\"  \"\nc,caf".to_vec();
    bytes.extend_from_slice(b"\xe9 au lait\nd,\"two\nlines\"\n");
    std::fs::write(&data, bytes).unwrap();
    let out = tmp.path().join("emb.csv");
    let model = common::fixture_model("st-bert-mean");
    let summary = run(&[
        "batch",
        "--model",
        model.to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--no-log",
    ]);
    assert_eq!((summary["summary"]["answered"].as_u64(), summary["summary"]["failed"].as_u64()), (Some(2), Some(2)));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4);
    assert_eq!(&records[3][2], "two\nlines");
    let embedding: Vec<f32> = serde_json::from_str(&records[0][9]).unwrap();
    assert!(embedding.len() > 8 && embedding.iter().all(|x| x.is_finite()));
    assert_eq!(&records[1][8], "empty text");
    assert!(records[2][8].contains("UTF-8"), "{:?}", &records[2]);
}

/// `eval --log` and `compare --log` put their answers in the log as a batch run, each model's
/// rows apart, and `log runs` lists them.
#[test]
fn eval_and_compare_can_log_their_answers_as_a_batch_run() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.sqlite");
    let log_arg = log.display().to_string();
    let e = run(&["eval", "--model", "demo:digits-v1", "--data", "assets/digits/test", "--log", &log_arg]);
    assert_eq!(e["metrics"]["correct"], 534);
    run(&[
        "compare",
        "--a",
        "demo:digits-v1",
        "--b",
        "demo:digits-v2",
        "--data",
        "assets/digits/test",
        "--log",
        &log_arg,
    ]);
    let runs = modeldeck::store::batch_runs(&log, 10).unwrap();
    let mut seen: Vec<(&str, u64)> = runs.iter().map(|r| (r.model.as_str(), r.rows)).collect();
    seen.sort();
    assert_eq!(seen, [("demo:digits-v1", 540), ("demo:digits-v1", 540), ("demo:digits-v2", 540)], "{runs:?}");
    let listed = run(&["log", "runs", "--log", &log_arg]);
    assert_eq!(listed.as_array().unwrap().len(), 3);
    // The comparison's run holds both models; each is its own reference.
    let compare_run = &runs[0].run;
    let (_, b) = modeldeck::monitor::batch_run_reference(&log, compare_run, Some("demo:digits-v2")).unwrap();
    assert_eq!(b.len(), 540);
}
