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

#[test]
fn features_are_logged_and_exported_one_column_each_and_alerts_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.sqlite");
    let log_arg = log.to_str().unwrap();
    let image = common::root().join("assets/samples/chelsea.png");
    let text_model = common::fixture_model("bert-cls-5");
    for args in [
        vec!["predict", "--model", "demo:digits-v1", "--image", image.to_str().unwrap(), "--log", log_arg],
        vec!["predict", "--model", text_model.to_str().unwrap(), "--text", "The movie was great!", "--log", log_arg],
    ] {
        let out = modeldeck().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let export = |extra: &[&str]| -> csv::Reader<std::io::Cursor<Vec<u8>>> {
        let out = modeldeck().args(["log", "export", "--log", log_arg]).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        csv::Reader::from_reader(std::io::Cursor::new(out.stdout))
    };
    let mut all = export(&[]);
    let header: Vec<String> = all.headers().unwrap().iter().map(str::to_string).collect();
    let want: Vec<&str> = store::CSV_COLUMNS
        .into_iter()
        .chain(modeldeck::monitor::features::IMAGE_FEATURES)
        .chain(modeldeck::monitor::features::TEXT_FEATURES)
        .chain(["confidence", "entropy"])
        .collect();
    assert_eq!(header, want);
    let rows: Vec<csv::StringRecord> = all.records().map(Result::unwrap).collect();
    let cell = |row: usize, name: &str| rows[row][header.iter().position(|h| h == name).unwrap()].to_string();
    // The logged image features are the library's, to the last bit.
    let decoded = modeldeck::model::decode_image_file(&image).unwrap();
    for (name, value) in modeldeck::monitor::features::image_features(&decoded).0 {
        assert_eq!(cell(0, name).parse::<f64>().unwrap().to_bits(), value.to_bits(), "{name}");
    }
    assert_eq!(
        (cell(0, "tokens"), cell(1, "tokens"), cell(1, "brightness")),
        (String::new(), "12".into(), String::new())
    );
    assert!(cell(1, "entropy").parse::<f64>().unwrap() > 0.0);

    // Offset and limit pick rows in log order after the filters; --origin filters.
    let mut second = export(&["--offset", "1", "--limit", "1"]);
    let second: Vec<csv::StringRecord> = second.records().map(Result::unwrap).collect();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0][0], rows[1][0], "the text prediction's request id");
    assert_eq!(export(&["--origin", "replay"]).records().count(), 0);
    assert_eq!(export(&["--origin", "cli", "--limit", "5"]).records().count(), 2);

    // Alerts written through the log are listed by `log alerts`.
    let alerts = tmp.path().join("alerts.sqlite");
    let writer = PredictionLog::open(&alerts, Retention::default()).unwrap();
    for (at_ms, state) in
        [(1_796_065_200_000, store::AlertState::Firing), (1_796_065_260_000, store::AlertState::Resolved)]
    {
        writer.record_alert(store::AlertRecord {
            at_ms,
            model: "demo:digits-v1".into(),
            rule: "error rate".into(),
            state,
            value: 0.02,
            threshold: 0.01,
            message: "error rate 2% is above 1%".into(),
        });
    }
    writer.flush().unwrap();
    let out = modeldeck().args(["log", "alerts", "--log", alerts.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["state"], "firing");
    assert_eq!(listed[1]["state"], "resolved");
    assert_eq!(listed[1]["at_ms"], 1_796_065_260_000i64);
    let out = modeldeck().args(["log", "alerts", "--log", alerts.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().next().unwrap().starts_with("2026-11-30T19:00:00.000Z  firing"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
}
