//! Malformed input to the `drift` and `abtest` reports gives one clear error naming the
//! file, the row and the column — never a panic.

use std::path::{Path, PathBuf};

use modeldeck::report::{abtest_report, drift_report};

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write temp file");
    p
}

const GOOD_ARM: &str = "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10.5\nr2,dog,cat,0,12\n";

#[test]
fn missing_column_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", "request_id,prediction,label,latency_ms\nr1,cat,cat,10\n");
    let b = write(dir.path(), "b.csv", GOOD_ARM);
    let msg = abtest_report(&a, &b, false).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv") && msg.contains("`correct`"), "{msg}");
}

#[test]
fn ragged_row_names_row_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.csv", GOOD_ARM);
    let b = write(dir.path(), "b.csv", "request_id,prediction,label,correct,latency_ms\nr1,cat,cat,1,10\nr2,cat,cat\n");
    let msg = abtest_report(&a, &b, false).expect_err("must fail").to_string();
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
    let msg = abtest_report(&a, &b, false).expect_err("must fail").to_string();
    assert!(msg.contains("a.csv") && msg.contains("row 3") && msg.contains("`latency_ms`"), "{msg}");
}

#[test]
fn empty_files_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.csv", "");
    let good = write(dir.path(), "good.csv", GOOD_ARM);
    let msg = abtest_report(&empty, &good, false).expect_err("must fail").to_string();
    assert!(msg.contains("empty.csv") && msg.contains("empty"), "{msg}");
    let header_only = write(dir.path(), "header.csv", "request_id,prediction,label,correct,latency_ms\n");
    let msg = abtest_report(&good, &header_only, false).expect_err("must fail").to_string();
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
    assert!(abtest_report(&a, &b, false).is_ok());
    let msg = abtest_report(&a, &b, true).expect_err("must fail").to_string();
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
    let text = abtest_report(&a, &b, true).expect("report").render_text();
    assert!(text.contains("B is 50.0 points more accurate"), "{text}");
    assert!(text.contains("McNemar"), "{text}");
}
