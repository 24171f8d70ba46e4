//! The prediction log as a user meets it: `predict --log` writes rows, `log export` gives a CSV
//! that `abtest` reads, and a writer killed with SIGKILL mid-stream loses nothing it reported
//! as committed; the log then reopens cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use modeldeck::store::{self, PredictionLog, Query, Retention};

fn modeldeck() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modeldeck"))
}

#[test]
fn a_writer_killed_mid_stream_loses_nothing_it_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log.sqlite");
    let mut child = modeldeck()
        .args(["log", "bench", "--log", path.to_str().unwrap(), "--rows", "100000000", "--progress-every", "3000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reported = 0u64;
    for line in BufReader::new(stdout).lines().take(8) {
        let line = line.unwrap();
        reported = line.strip_prefix("committed ").and_then(|n| n.parse().ok()).expect("a progress line");
    }
    child.kill().unwrap(); // SIGKILL, mid-stream: rows are still being queued and committed
    child.wait().unwrap();
    assert!(reported >= 24_000, "reported {reported}");

    let rows = store::read(&path, &Query::default()).unwrap();
    assert!(rows.len() as u64 >= reported, "{} rows on disk, {reported} reported committed", rows.len());
    // Rows are whole and in order: ids bench-0, bench-1, ... with no gap.
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.record.request_id, format!("bench-{i}"));
        assert_eq!(row.record.prediction.as_deref(), Some((i % 10).to_string().as_str()));
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    // The dead writer's lock is gone: a new writer opens it and appends.
    let log = PredictionLog::open(&path, Retention::default()).unwrap();
    log.record(store::PredictionRecord::new("m", store::Origin::Cli, "after"));
    log.flush().unwrap();
    assert_eq!(store::read(&path, &Query::default()).unwrap().len(), rows.len() + 1);
}

#[test]
fn predict_logs_and_the_export_feeds_abtest() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.sqlite");
    for (model, digit) in [("demo:digits-v1", 3), ("demo:digits-v1", 7), ("demo:digits-v2", 3), ("demo:digits-v2", 7)] {
        let image = common::root().join(format!("assets/digits/test/{digit}"));
        let image = std::fs::read_dir(image).unwrap().flatten().map(|e| e.path()).min().unwrap();
        let out = modeldeck()
            .args(["predict", "--model", model, "--image", image.to_str().unwrap(), "--log", log.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // A failed prediction is logged with its error.
    let out = modeldeck()
        .args(["predict", "--model", "demo:digits-v1", "--text", "hello", "--log", log.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let rows = store::read(&log, &Query::default()).unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0].record.prediction.as_deref(), Some("3"));
    assert!(rows[0].record.input_ref.as_deref().is_some_and(|r| r.ends_with(".png")));
    assert!(rows[4].record.error.as_deref().is_some_and(|e| e.contains("does not take text")));

    let export = |model: &str, file: &str| {
        let out_path = tmp.path().join(file);
        let out = modeldeck()
            .args(["log", "export", "--log", log.to_str().unwrap(), "--model", model, "--out"])
            .arg(&out_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out_path
    };
    let (a, b) = (export("demo:digits-v1", "a.csv"), export("demo:digits-v2", "b.csv"));
    let a_text = std::fs::read_to_string(&a).unwrap();
    assert_eq!(a_text.lines().count(), 4, "header + 3 rows of v1:\n{a_text}");
    assert!(a_text.starts_with("request_id,prediction,label,correct,latency_ms,"));

    // No labels yet: abtest compares latency and says why accuracy is skipped.
    let out = modeldeck().args(["abtest", "--a"]).arg(&a).arg("--b").arg(&b).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["latency"]["a"]["n"].as_u64().is_some(), "{report}");
    assert!(report["skipped"][0]["reason"].as_str().unwrap().contains("no labelled row"), "{report}");

    // JSON lines too, filtered by time.
    let out = modeldeck()
        .args(["log", "export", "--log", log.to_str().unwrap(), "--format", "jsonl", "--since", "1h"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
    let out = modeldeck()
        .args(["log", "export", "--log", log.to_str().unwrap(), "--since", "4102444800000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1, "only the header after 2100");
}

#[test]
fn exporting_something_that_is_not_a_log_is_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.sqlite");
    std::fs::write(&junk, "hello").unwrap();
    let out = modeldeck().args(["log", "export", "--log", junk.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a ModelDeck prediction log"), "{stderr}");
    assert_eq!(std::fs::read(&junk).unwrap(), b"hello");
}
