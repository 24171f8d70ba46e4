//! `modeldeck monitor` end to end: a drifting replay of the demo digits into a real SQLite log;
//! the drift verdicts it prints are reproduced exactly by `modeldeck drift` on `log export`s of
//! its two windows, the alerts it raised are in the log, and Prometheus scrapes it over HTTP.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn modeldeck() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modeldeck"))
}

fn digits() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/digits/test").display().to_string()
}

fn run(args: &[&str]) -> String {
    let out = modeldeck().args(args).output().unwrap();
    assert!(out.status.success(), "modeldeck {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn monitor_drift_verdicts_are_reproduced_by_the_drift_command_on_log_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log.sqlite");
    let log_s = log.display().to_string();
    let started_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // 540 clean digits make the reference and the first windows; the second pass darkens them.
    let stdout = run(&[
        "monitor",
        "--model",
        "demo:digits-v1",
        "--data",
        &digits(),
        "--loop",
        "--max-requests",
        "1000",
        "--drift",
        "brightness=-0.6@540+100",
        "--reference-size",
        "400",
        "--window",
        "300",
        "--log",
        &log_s,
        "--json",
    ]);
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let windows: Vec<&Value> = lines.iter().filter(|l| l["type"] == "window").collect();
    let last = windows.last().expect("at least the final window");
    assert_eq!(last["requests"], 1000);
    let drift = &last["drift"];
    let columns = drift["columns"].as_array().unwrap();
    let verdict = |name: &str| {
        columns.iter().find(|c| c["name"] == name).map(|c| c["verdict"]["verdict"].as_str().unwrap().to_string())
    };
    assert_eq!(verdict("brightness").as_deref(), Some("drift"), "{drift:#}");
    assert_eq!(verdict("prediction").as_deref(), Some("drift"), "{drift:#}");
    // The predicted class and the confidence drift; the image size cannot.
    assert_eq!(verdict("width").as_deref(), Some("no_drift"));
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "alert").collect();
    let fired = |rule: &str| alerts.iter().any(|a| a["rule"] == rule && a["state"] == "firing");
    assert!(fired("prediction drift") && fired("feature drift"), "{alerts:?}");

    // Export exactly the two windows from the log and run the drift command on them.
    let export = |window: &Value, out: &Path| {
        let (offset, n) = (window["first_seq"].as_u64().unwrap(), window["n"].as_u64().unwrap());
        run(&[
            "log",
            "export",
            "--log",
            &log_s,
            "--model",
            "demo:digits-v1",
            "--since",
            &started_ms.to_string(),
            "--answered",
            "--offset",
            &offset.to_string(),
            "--limit",
            &n.to_string(),
            "--out",
            &out.display().to_string(),
        ]);
    };
    let (reference, current) = (tmp.path().join("reference.csv"), tmp.path().join("current.csv"));
    export(&drift["reference"], &reference);
    export(&drift["current"], &current);
    let mut args: Vec<String> = vec![
        "drift".into(),
        "--reference".into(),
        reference.display().to_string(),
        "--current".into(),
        current.display().to_string(),
        "--categorical".into(),
        "prediction".into(),
        "--json".into(),
    ];
    for c in columns {
        args.extend(["--column".to_string(), c["name"].as_str().unwrap().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report: Value = serde_json::from_str(&run(&args)).unwrap();
    let report_columns = report["columns"].as_object().unwrap();
    assert_eq!(report_columns.len(), columns.len());
    for ours in columns {
        let name = ours["name"].as_str().unwrap();
        let theirs = &report_columns[name];
        let default = &theirs["default_test"];
        assert_eq!(ours["method"], default["method"], "{name}: {theirs:#}");
        assert_eq!(ours["score"], default["score"], "{name}: {theirs:#}");
        assert_eq!(ours["threshold"], default["threshold"], "{name}");
        let drifted = ours["verdict"]["verdict"] == "drift";
        assert_eq!(Value::Bool(drifted), default["drift_detected"], "{name}: {theirs:#}");
        assert_eq!(ours["n_current"], theirs["n_current"], "{name}");
    }

    // The alerts are in the log database.
    let logged = run(&["log", "alerts", "--log", &log_s, "--json"]);
    assert!(logged.contains("prediction drift") && logged.contains("firing"), "{logged}");
}

/// A GET over a plain TCP connection; returns the status line and body.
fn http_get(addr: &str, path: &str) -> Option<(String, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.lines().next()?.to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

#[test]
fn monitor_serves_prometheus_metrics_while_it_replays() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = modeldeck()
        .args([
            "monitor",
            "--model",
            "demo:digits-v1",
            "--data",
            &digits(),
            "--loop",
            "--rate",
            "200",
            "--max-requests",
            "100000",
            "--metrics-addr",
            &addr,
            "--json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut scraped = None;
    while Instant::now() < deadline {
        if let Some((status, body)) = http_get(&addr, "/metrics") {
            let count = body
                .lines()
                .find(|l| l.starts_with("modeldeck_predictions_total{") && l.contains("origin=\"replay\""))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
            if count.is_some_and(|c| c >= 300.0) && body.contains("modeldeck_drift_score") {
                scraped = Some((status, body));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let missing = http_get(&addr, "/nothing");
    let _ = child.kill();
    let _ = child.wait();
    let (status, body) = scraped.expect("a scrape with 300 predictions and drift scores within 60 s");
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("modeldeck_prediction_latency_seconds_bucket{"), "{body}");
    assert!(body.contains("modeldeck_process_resident_memory_bytes"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"));
    assert!(missing.is_some_and(|(s, _)| s.contains("404")));
}
