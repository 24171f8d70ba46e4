//! Malformed input to the `drift` and `abtest` reports gives one clear error naming the
//! file, the row and the column — never a panic.

use std::path::{Path, PathBuf};

use modeldeck::report::{abtest_report, drift_report, AbOptions};

const UNPAIRED: AbOptions =
    AbOptions { paired: false, kayenta: modeldeck::stats::KayentaOptions { confidence: 0.98, tolerance: 0.25 } };
const PAIRED: AbOptions = AbOptions { paired: true, ..UNPAIRED };

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write temp file");
    p
}

const GOOD_ARM: &str = "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10.5\nr2,dog,cat,0,12\n";

#[test]
fn a_missing_column_skips_only_the_analysis_that_needs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", "request_id,prediction,label,latency_ms\nr1,cat,cat,10\nr2,cat,cat,14\n");
    let b = write(dir.path(), "b.csv", GOOD_ARM);
    let report = abtest_report(&a, &b, &UNPAIRED).expect("latency alone is enough");
    assert!(report.accuracy.is_none() && report.latency.is_some());
    let json = report.to_json();
    assert!(json.get("accuracy").is_none() && json["latency"]["kayenta"]["verdict"].is_string(), "{json}");
    assert_eq!(json["skipped"][0]["analysis"], "accuracy");
    let reason = json["skipped"][0]["reason"].as_str().expect("reason");
    assert!(reason.contains("a.csv has no `correct` column, which the accuracy comparison needs"), "{reason}");
    let text = report.render_text();
    assert!(text.contains("skipped: ") && text.contains("`correct`") && text.contains("Kayenta"), "{text}");
}

#[test]
fn unpaired_analysis_needs_only_correct_or_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", "correct\n1\n0\n1\n");
    let b = write(dir.path(), "b.csv", "correct,extra\ntrue,x\ntrue,y\n");
    let report = abtest_report(&a, &b, &UNPAIRED).expect("accuracy from `correct` alone");
    let json = report.to_json();
    assert_eq!(json["accuracy"]["b"]["correct"], 2);
    assert!(json.get("latency").is_none() && json.get("paired").is_none(), "{json}");
    assert_eq!(json["skipped"][0]["analysis"], "latency");
    assert!(json["skipped"][0]["reason"].as_str().is_some_and(|r| r.contains("`latency_ms`")), "{json}");

    let a = write(dir.path(), "la.csv", "latency_ms\n10\n11\n12\n");
    let b = write(dir.path(), "lb.csv", "latency_ms\n20\n21\n22\n23\n");
    let json = abtest_report(&a, &b, &UNPAIRED).expect("latency from `latency_ms` alone").to_json();
    assert!(json.get("accuracy").is_none(), "{json}");
    assert_eq!(json["latency"]["b"]["n"], 4);
    assert_eq!(json["latency"]["kayenta"]["confidence"], 0.98);
}

#[test]
fn paired_names_the_column_it_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.csv", GOOD_ARM);
    let no_id = write(dir.path(), "a.csv", "prediction,correct,latency_ms\ncat,1,10\n");
    let msg = abtest_report(&no_id, &good, &PAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv has no `request_id` column, which --paired needs to join requests"), "{msg}");
    assert!(abtest_report(&no_id, &good, &UNPAIRED).is_ok(), "request_id is only needed with --paired");
    let no_prediction = write(dir.path(), "b.csv", "request_id,correct,latency_ms\nr1,1,10\n");
    let msg = abtest_report(&good, &no_prediction, &PAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("b.csv has no `prediction` column, which --paired needs"), "{msg}");
    let no_correct = write(dir.path(), "c.csv", "request_id,prediction,latency_ms\nr1,cat,10\n");
    let msg = abtest_report(&no_correct, &good, &PAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("c.csv has no `correct` column, which --paired needs for McNemar"), "{msg}");
}

#[test]
fn no_columns_for_any_analysis_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", "request_id,prediction\nr1,cat\n");
    let b = write(dir.path(), "b.csv", GOOD_ARM);
    let msg = abtest_report(&a, &b, &UNPAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv") && msg.contains("`correct`") && msg.contains("`latency_ms`"), "{msg}");
    assert!(msg.contains("request_id, prediction"), "names what the file has: {msg}");
}

#[test]
fn all_tied_latencies_give_no_kayenta_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", "latency_ms\n10\n10\n10\n");
    let b = write(dir.path(), "b.csv", "latency_ms\n10\n10\n");
    let report = abtest_report(&a, &b, &UNPAIRED).expect("report");
    let json = report.to_json();
    let error = json["latency"]["kayenta"]["error"].as_str().expect("no interval");
    assert!(error.contains("every observation is tied"), "{error}");
    assert_eq!(json["latency"]["mann_whitney"]["pvalue"], 1.0);
    assert!(report.render_text().contains("Kayenta: no interval: every observation is tied"));
}

#[test]
fn invalid_kayenta_options_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", GOOD_ARM);
    let bad = AbOptions { kayenta: modeldeck::stats::KayentaOptions { confidence: 98.0, tolerance: 0.25 }, ..UNPAIRED };
    let msg = abtest_report(&a, &a, &bad).expect_err("must fail").to_string();
    assert!(msg.contains("confidence level must lie strictly between 0 and 1"), "{msg}");
}

#[test]
fn ragged_row_names_row_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", GOOD_ARM);
    let b = write(dir.path(), "b.csv", "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10\nr2,cat,cat\n");
    let msg = abtest_report(&a, &b, &UNPAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("b.csv") && msg.contains("row 3") && msg.contains("`correct`"), "{msg}");
}

#[test]
fn non_numeric_latency_names_row_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(
        dir.path(),
        "a.csv",
        "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10\nr2,cat,cat,1,fast\n",
    );
    let b = write(dir.path(), "b.csv", GOOD_ARM);
    let msg = abtest_report(&a, &b, &UNPAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv") && msg.contains("row 3") && msg.contains("`latency_ms`"), "{msg}");
}

#[test]
fn empty_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.csv", "");
    let good = write(dir.path(), "good.csv", GOOD_ARM);
    let msg = abtest_report(&empty, &good, &UNPAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("empty.csv") && msg.contains("empty"), "{msg}");
    let header_only = write(dir.path(), "header.csv", "request_id,prediction,label,correct,latency_ms\n");
    let msg = abtest_report(&good, &header_only, &UNPAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("header.csv") && msg.contains("no data rows"), "{msg}");
    let msg = drift_report(&empty, &good, &[], &[]).expect_err("must fail").to_string();
    assert!(msg.contains("empty.csv"), "{msg}");
}

#[test]
fn duplicate_request_ids_are_rejected_when_paired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(
        dir.path(),
        "a.csv",
        "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10\nr1,cat,cat,1,11\n",
    );
    let b = write(dir.path(), "b.csv", GOOD_ARM);
    assert!(abtest_report(&a, &b, &UNPAIRED).is_ok());
    let msg = abtest_report(&a, &b, &PAIRED).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv") && msg.contains("row 3") && msg.contains("r1"), "{msg}");
}

#[test]
fn drift_column_errors_stay_per_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = write(dir.path(), "r.csv", "x,y\n1,a\n2,b\n3,NA\n");
    let c = write(dir.path(), "c.csv", "x,y\n1,NA\n2,null\n4,\n");
    let report = drift_report(&r, &c, &[], &[]).expect("report");
    let json = report.to_json();
    assert!(json["columns"]["y"]["error"].is_string(), "{json}");
    assert_eq!(json["columns"]["x"]["kind"], "numerical");
    assert_eq!(json["columns"]["x"]["default_test"]["enough_data"], false);
    // Only `x` has a result (its new value 4 makes chi-square infinite): share 1 of 1.
    assert_eq!(json["dataset_drift"]["share_drifted"], 1.0);
    let text = report.render_text();
    assert!(text.contains("not enough data") && text.contains("error"), "{text}");
    let msg = drift_report(&r, &c, &["z".to_string()], &[]).expect_err("unknown column").to_string();
    assert!(msg.contains("`z`"), "{msg}");
}

#[test]
fn text_reports_give_plain_verdicts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", GOOD_ARM);
    let b = write(
        dir.path(),
        "b.csv",
        "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,11\nr2,cat,cat,1,13\n",
    );
    let text = abtest_report(&a, &b, &PAIRED).expect("report").render_text();
    assert!(text.contains("B is 50.0 points more accurate"), "{text}");
    assert!(text.contains("McNemar"), "{text}");
}
