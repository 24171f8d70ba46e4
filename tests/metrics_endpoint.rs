//! The Prometheus endpoint over real HTTP: predictions recorded through `PromMetrics` come back
//! from `GET /metrics` as the counters, histogram and gauges that were recorded; other paths are
//! 404; a port in use and a non-loopback address are clear errors.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use modeldeck::monitor::metrics::ProcessPoint;
use modeldeck::monitor::prometheus::{Access, MetricsServer, MetricsServerError, PromMetrics, LATENCY_BUCKETS_S};
use modeldeck::store::Origin;

struct Response {
    status: u16,
    content_type: Option<String>,
    body: String,
}

/// One HTTP/1.1 GET with `Connection: close`, read to the end.
fn get(addr: SocketAddr, path: &str) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string());
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Response { status, content_type, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// `name{labels}` -> value for every sample line of an OpenMetrics text.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[test]
fn a_scrape_returns_what_was_recorded() {
    let metrics = Arc::new(PromMetrics::new());
    let server = MetricsServer::start(loopback_any_port(), metrics.clone(), Access::LoopbackOnly).unwrap();
    assert!(server.addr().port() != 0);

    let (vit, resnet): (Arc<str>, Arc<str>) = (Arc::from("vit-base"), Arc::from("resnet-50"));
    // 200 replayed vit predictions with latencies 1..200 ms, every 25th failing; 3 from the CLI.
    for i in 1..=200 {
        metrics.observe_prediction(&vit, Origin::Replay, Some(i as f64), i % 25 == 0);
    }
    for _ in 0..3 {
        metrics.observe_prediction(&vit, Origin::Cli, Some(0.2), false);
    }
    metrics.observe_prediction(&resnet, Origin::Playground, None, true);
    for _ in 0..4 {
        metrics.record_drop(&resnet);
    }
    metrics.set_drift_score(&vit, "brightness", "ks", 0.00042);
    metrics.set_drift_detected(&vit, "brightness", Some(true));
    metrics.set_accuracy(&vit, Some(0.9125));
    metrics.set_alert_firing(&vit, "error rate", false);
    metrics.set_process(&ProcessPoint { t_ms: 0, cpu_percent: 87.5, rss_bytes: 512 * 1024 * 1024 });

    let response = get(server.addr(), "/metrics");
    assert_eq!(response.status, 200);
    let content_type = response.content_type.unwrap();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(response.body.ends_with("# EOF\n"));
    let s = samples(&response.body);
    let at = |k: &str| *s.get(k).unwrap_or_else(|| panic!("no `{k}` in\n{}", response.body));

    assert_eq!(at(r#"modeldeck_predictions_total{model="vit-base",origin="replay"}"#), 200.0);
    assert_eq!(at(r#"modeldeck_predictions_total{model="vit-base",origin="cli"}"#), 3.0);
    assert_eq!(at(r#"modeldeck_predictions_total{model="resnet-50",origin="playground"}"#), 1.0);
    assert_eq!(at(r#"modeldeck_prediction_errors_total{model="vit-base"}"#), 8.0);
    assert_eq!(at(r#"modeldeck_prediction_errors_total{model="resnet-50"}"#), 1.0);
    assert_eq!(at(r#"modeldeck_queue_drops_total{model="resnet-50"}"#), 4.0);

    // The histogram: 203 latencies (a failed request without latency adds none), the sum in
    // seconds, and cumulative buckets counted from the recorded values.
    let recorded: Vec<f64> = (1..=200).map(|i| i as f64 / 1000.0).chain([0.0002; 3]).collect();
    assert_eq!(at(r#"modeldeck_prediction_latency_seconds_count{model="vit-base"}"#), 203.0);
    let sum = at(r#"modeldeck_prediction_latency_seconds_sum{model="vit-base"}"#);
    assert!((sum - recorded.iter().sum::<f64>()).abs() < 1e-9, "sum {sum}");
    for le in LATENCY_BUCKETS_S {
        let expected = recorded.iter().filter(|&&v| v <= le).count() as f64;
        let key = format!(r#"modeldeck_prediction_latency_seconds_bucket{{le="{le:?}",model="vit-base"}}"#);
        assert_eq!(at(&key), expected, "{key}");
    }
    assert_eq!(at(r#"modeldeck_prediction_latency_seconds_bucket{le="+Inf",model="vit-base"}"#), 203.0);
    assert!(!s.contains_key(r#"modeldeck_prediction_latency_seconds_count{model="resnet-50"}"#));

    assert_eq!(at(r#"modeldeck_drift_score{model="vit-base",feature="brightness",method="ks"}"#), 0.00042);
    assert_eq!(at(r#"modeldeck_drift_detected{model="vit-base",feature="brightness"}"#), 1.0);
    assert_eq!(at(r#"modeldeck_accuracy{model="vit-base"}"#), 0.9125);
    assert_eq!(at(r#"modeldeck_alert_firing{model="vit-base",rule="error rate"}"#), 0.0);
    assert_eq!(at("modeldeck_process_cpu_percent"), 87.5);
    assert_eq!(at("modeldeck_process_resident_memory_bytes"), 536_870_912.0);

    // A later scrape sees later updates.
    metrics.observe_prediction(&vit, Origin::Replay, Some(5.0), false);
    let s = samples(&get(server.addr(), "/metrics").body);
    assert_eq!(s[r#"modeldeck_predictions_total{model="vit-base",origin="replay"}"#], 201.0);
}

#[test]
fn other_paths_are_404_and_the_server_stops_on_drop() {
    let server = MetricsServer::start(loopback_any_port(), Arc::new(PromMetrics::new()), Access::LoopbackOnly).unwrap();
    let addr = server.addr();
    for path in ["/", "/metric", "/metrics/extra", "/favicon.ico"] {
        let r = get(addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(r.body.contains("/metrics"), "{path}: {}", r.body);
    }
    // A client still connected (keep-alive, nothing sent) does not hold the server up.
    let idle = TcpStream::connect(addr).unwrap();
    drop(server);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(), "still listening after drop");
    drop(idle);
}

#[test]
fn a_port_in_use_and_a_remote_address_are_clear_errors() {
    let metrics = Arc::new(PromMetrics::new());
    let first = MetricsServer::start(loopback_any_port(), metrics.clone(), Access::LoopbackOnly).unwrap();
    let err = MetricsServer::start(first.addr(), metrics.clone(), Access::LoopbackOnly).err().unwrap();
    assert!(matches!(err, MetricsServerError::PortInUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("already in use") && message.contains(&first.addr().to_string()), "{message}");

    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let err = MetricsServer::start(unspecified, metrics.clone(), Access::LoopbackOnly).err().unwrap();
    assert!(matches!(err, MetricsServerError::NotLoopback(_)), "{err:?}");
    // With remote access allowed the loopback check is skipped, and an address that is not
    // this machine's (TEST-NET-1: binding sends nothing) fails to bind, naming the address.
    let foreign = SocketAddr::from(([192, 0, 2, 1], 0));
    let err = MetricsServer::start(foreign, metrics.clone(), Access::AllowRemote).err().unwrap();
    assert!(matches!(err, MetricsServerError::NotThisMachine { .. }), "{err:?}");
    assert!(err.to_string().contains("192.0.2.1:0: it is not an address of this machine"), "{err}");
    // Allowing remote access does not stop loopback from working.
    let allowed = MetricsServer::start(loopback_any_port(), metrics, Access::AllowRemote).unwrap();
    assert_eq!(get(allowed.addr(), "/metrics").status, 200);
}
