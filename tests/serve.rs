//! `modeldeck serve`: NVIDIA's tritonclient (from PyPI) calls it like any Open Inference Protocol
//! server; concurrent requests are batched without mixing answers; a full queue answers 503; bad
//! requests get 400 with a reason; every request reaches the log and /metrics; a ModelDeck client
//! on the other end gets what `predict` gives locally.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use modeldeck::model::{self, LoadedModel};
use modeldeck::predict::{self, NamedImage, PredictRequest};
use modeldeck::serve::{ServeOptions, Server};
use modeldeck::source::{ModelSource, ResolveOptions};
use modeldeck::store::{self, PredictionLog, Retention};
use serde_json::{json, Value};

fn load(source: &str) -> Arc<LoadedModel> {
    Arc::new(model::load_source(&ModelSource::parse(source).unwrap(), &ResolveOptions::default()).unwrap())
}

fn serve(model: Arc<LoadedModel>, name: &str, tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut options = ServeOptions::new(name);
    options.addr = "127.0.0.1:0".parse().unwrap();
    tweak(&mut options);
    Server::start(model, options).unwrap()
}

fn digit(label: usize, index: usize) -> std::path::PathBuf {
    let dir = common::root().join(format!("assets/digits/test/{label}"));
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files[index].clone()
}

fn local_probs(model: &LoadedModel, path: &Path) -> Vec<f32> {
    let image = NamedImage { name: "x".into(), image: Arc::new(model::decode_image_file(path).unwrap()) };
    let out = predict::predict(model, &PredictRequest::images(vec![image])).unwrap();
    out.results[0].scores.as_ref().unwrap().probs.clone()
}

fn top_label(model: &LoadedModel, path: &Path) -> String {
    let image = NamedImage { name: "x".into(), image: Arc::new(model::decode_image_file(path).unwrap()) };
    predict::predict(model, &PredictRequest::images(vec![image])).unwrap().top_label().unwrap().to_string()
}

fn post(url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let client = reqwest::blocking::Client::new();
    let mut request = client.post(url).body(body);
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().unwrap().to_vec())
}

#[test]
fn tritonclient_calls_modeldeck_serve_and_gets_what_predict_gives() {
    let Some(python) = common::peers_python() else { return };
    let script = common::root().join("scripts/oip_triton_client.py");
    let run = |addr: &str, model: &str, kind: &str, inputs: &[String]| -> Value {
        let out = Command::new(&python).arg(&script).args([addr, model, kind]).args(inputs).output().unwrap();
        assert!(out.status.success(), "tritonclient: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };

    // An image model: binary tensors both ways, and JSON with base64 images.
    let digits = load("demo:digits-v1");
    let server = serve(digits.clone(), "digits", |_| {});
    let files: Vec<_> = [(3, 0), (7, 1), (8, 2)].iter().map(|&(l, i)| digit(l, i)).collect();
    let paths: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let got = run(&server.addr().to_string(), "digits", "image", &paths);
    assert_eq!(
        (got["live"].as_bool(), got["ready"].as_bool(), got["model_ready"].as_bool()),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(got["server"]["name"], "modeldeck");
    assert_eq!(got["model"]["inputs"][0]["name"], "image");
    assert_eq!(got["model"]["outputs"][0]["parameters"]["labels"][3], "3");
    for mode in ["binary", "json"] {
        let probs = got[mode]["probabilities"].as_array().unwrap();
        for (row, file) in probs.iter().zip(&files) {
            let expected = local_probs(&digits, file);
            let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert!(
                row.iter().zip(&expected).all(|(a, b)| (a - *b as f64).abs() < 1e-6),
                "{mode}: {row:?} vs {expected:?}"
            );
        }
        let labels: Vec<&str> = got[mode]["label"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let expected: Vec<String> = files.iter().map(|f| top_label(&digits, f)).collect();
        assert_eq!(labels, expected, "{mode}");
        assert_eq!(got[mode]["id"], format!("triton-{mode}"));
    }
    let errors = &got["errors"];
    assert_eq!(errors["unknown_model"]["status"], "404");
    assert!(errors["unknown_model"]["message"].as_str().unwrap().contains("no-such-model"));
    assert_eq!(errors["wrong_input"]["status"], "400");
    assert!(errors["wrong_input"]["message"].as_str().unwrap().contains("not a recognised image format"), "{errors}");
    drop(server);

    // A text classifier and an embedding model.
    let texts = vec!["a fine day".to_string(), "terrible service".to_string()];
    let classifier = load(&common::fixture_model("distilbert-cls-a").display().to_string());
    let server = serve(classifier.clone(), "sentiment", |_| {});
    let got = run(&server.addr().to_string(), "sentiment", "text", &texts);
    let local = predict::predict(&classifier, &PredictRequest::texts(texts.clone())).unwrap();
    for mode in ["binary", "json"] {
        for (row, result) in got[mode]["probabilities"].as_array().unwrap().iter().zip(&local.results) {
            let expected = &result.scores.as_ref().unwrap().probs;
            let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert!(
                row.iter().zip(expected).all(|(a, b)| (a - *b as f64).abs() < 1e-5),
                "{mode}: {row:?} vs {expected:?}"
            );
        }
    }
    assert!(got["errors"]["wrong_input"]["message"].as_str().unwrap().contains("not valid UTF-8"), "{}", got["errors"]);
    drop(server);
    let embedder = load(&common::fixture_model("st-bert-mean").display().to_string());
    let server = serve(embedder.clone(), "embedder", |_| {});
    let got = run(&server.addr().to_string(), "embedder", "embedding", &texts);
    let local = predict::predict(&embedder, &PredictRequest::texts(texts.clone())).unwrap();
    for mode in ["binary", "json"] {
        for (row, result) in got[mode]["embedding"].as_array().unwrap().iter().zip(&local.results) {
            let expected = result.embedding.as_ref().unwrap();
            let row: Vec<f64> = row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(row.len(), expected.len());
            assert!(row.iter().zip(expected).all(|(a, b)| (a - *b as f64).abs() < 1e-5), "{mode}");
        }
    }
}

#[test]
fn concurrent_requests_are_batched_without_mixing_answers_and_all_are_logged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log.sqlite");
    let log = PredictionLog::open(&log_path, Retention::default()).unwrap();
    let digits = load("demo:digits-v1");
    let server = serve(digits.clone(), "digits", |o| {
        o.log = Some(log.clone());
        o.window = Duration::from_millis(20);
    });
    let url = format!("http://{}/v2/models/digits/infer", server.addr());
    let cases: Vec<(usize, std::path::PathBuf)> = (0..24).map(|i| (i % 10, digit(i % 10, i / 10))).collect();
    let answers: Vec<(usize, Vec<f32>, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(i, (label, path))| {
                let (url, digits) = (url.clone(), &digits);
                s.spawn(move || {
                    let bytes = std::fs::read(path).unwrap();
                    let body = json!({"id": format!("req-{i}"), "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64::engine::general_purpose::STANDARD.encode(bytes)]}]});
                    let (status, headers, body) = post(&url, body.to_string().into_bytes(), &[]);
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
                    assert!(headers.get("server-timing").unwrap().to_str().unwrap().contains("total;dur="));
                    let answer: Value = serde_json::from_slice(&body).unwrap();
                    (*label, local_probs(digits, path), answer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (label, expected, answer)) in answers.iter().enumerate() {
        assert_eq!(answer["id"], format!("req-{i}"));
        let probs = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probabilities").unwrap();
        assert_eq!(probs["shape"], json!([1, 10]));
        let row: Vec<f64> = probs["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(
            row.iter().zip(expected).all(|(a, b)| (a - *b as f64).abs() < 1e-6),
            "request {i} got another image's answer"
        );
        let top = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap()["data"][0]
            .as_str()
            .unwrap()
            .to_string();
        let _ = label; // the demo is right on most digits; the exact probabilities above are the check
        assert!(!top.is_empty());
    }
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", server.addr())).unwrap().text().unwrap();
    assert!(metrics.contains(r#"modeldeck_predictions_total{model="digits",origin="serve"} 24"#), "{metrics}");
    // 24 clients at once within a 20 ms window: some requests shared a model call.
    let (requests, calls, inputs) = server.stats().snapshot();
    assert_eq!((requests, inputs), (24, 24));
    assert!(calls < 24, "{calls} model calls for 24 concurrent requests: nothing was batched");
    server.stop();
    // Stopping flushed the log: one row per request, under the client's ids.
    let rows = store::read(&log_path, &store::Query::default()).unwrap();
    assert_eq!(rows.len(), 24);
    assert!(rows.iter().any(|r| r.record.request_id == "req-7" && r.record.origin == store::Origin::Serve));
}

#[test]
fn bad_requests_get_a_reason_and_pixels_binary_tensors_and_versions_work() {
    let digits = load("demo:digits-v1");
    let server = serve(digits.clone(), "digits", |o| o.version = "2".into());
    let base = format!("http://{}", server.addr());
    let infer = format!("{base}/v2/models/digits/infer");
    let error_of = |status: u16, body: &[u8]| -> (u16, String) {
        let v: Value =
            serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
        (status, v["error"].as_str().unwrap_or_default().to_string())
    };
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "not valid JSON"),
        (json!({"inputs": []}).to_string().into_bytes(), 400, "`inputs` is empty"),
        (json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}).to_string().into_bytes(), 400, "not base64"),
        (json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGVsbG8="]}]}).to_string().into_bytes(), 400, "shape [2] but 1 elements"),
        (json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGVsbG8="]}]}).to_string().into_bytes(), 400, "not a recognised image format"),
        (json!({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 5], "data": [0, 0, 0, 0, 0]}]}).to_string().into_bytes(), 400, "[N, 3, 8, 8] or [N, 192]"),
        (json!({"inputs": [{"name": "pixels", "datatype": "INT8", "shape": [1, 192], "data": vec![0; 192]}]}).to_string().into_bytes(), 400, "pixels are FP32"),
        (json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGVsbG8="]}], "outputs": [{"name": "colour"}]}).to_string().into_bytes(), 400, "no output `colour`"),
    ];
    for (body, status, needle) in cases {
        let (got, _, answer) = post(&infer, body, &[]);
        let (got, message) = error_of(got, &answer);
        assert_eq!(got, status, "{needle}: {message}");
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let (status, _, body) = post(&format!("{base}/v2/models/other/infer"), b"{}".to_vec(), &[]);
    assert_eq!(error_of(status, &body), (404, "model `other` is not served here (this server serves `digits`)".into()));
    let (status, _, body) = post(&format!("{base}/v2/models/digits/versions/1/infer"), b"{}".to_vec(), &[]);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    // Preprocessed pixels as FP32 give the same answer as the image, flat or [N, 3, 8, 8].
    let path = digit(5, 0);
    let image = model::decode_image_file(&path).unwrap();
    let batch = digits.prepare(&model::Request::Images(std::slice::from_ref(&image))).unwrap();
    let pixels: Vec<f32> = batch.pixel_values.unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let expected = local_probs(&digits, &path);
    for shape in [json!([1, 192]), json!([1, 3, 8, 8])] {
        let body = json!({"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": shape, "data": pixels}], "outputs": [{"name": "probabilities"}]});
        let (status, _, answer) =
            post(&format!("{base}/v2/models/digits/versions/2/infer"), body.to_string().into_bytes(), &[]);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["model_version"], "2");
        assert_eq!(answer["outputs"].as_array().unwrap().len(), 1);
        let row: Vec<f64> =
            answer["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert!(row.iter().zip(&expected).all(|(a, b)| (a - *b as f64).abs() < 1e-6));
    }

    // Triton's binary extension both ways, written by hand: the JSON header, then the raw image
    // as a 4-byte length and its bytes; the answer's probabilities come back as raw FP32.
    let file = std::fs::read(&path).unwrap();
    let mut raw = (file.len() as u32).to_le_bytes().to_vec();
    raw.extend_from_slice(&file);
    let header = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}, {"name": "label"}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&raw);
    let (status, headers, answer) =
        post(&infer, body, &[("Inference-Header-Content-Length", header.len().to_string())]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let json_len: usize = headers.get("inference-header-content-length").unwrap().to_str().unwrap().parse().unwrap();
    let meta: Value = serde_json::from_slice(&answer[..json_len]).unwrap();
    assert_eq!(meta["outputs"][0]["parameters"]["binary_data_size"], 40);
    assert_eq!(meta["outputs"][1]["data"], json!(["5"]));
    let floats: Vec<f32> = answer[json_len..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(floats, expected);

    // A ModelDeck client on the other end: the remote arm predicts what the local one does.
    let remote = load(&format!("oip+{base}/digits@2"));
    assert_eq!(remote.labels(), digits.labels());
    assert_eq!(
        remote.card().endpoint.as_ref().unwrap().server.as_deref(),
        Some(concat!("modeldeck ", env!("CARGO_PKG_VERSION")))
    );
    let image = NamedImage { name: "x".into(), image: Arc::new(image) };
    let out = predict::predict(&remote, &PredictRequest::images(vec![image])).unwrap();
    assert_eq!(out.results[0].scores.as_ref().unwrap().probs, expected);
    assert!(out.server_ms.is_some_and(|s| s > 0.0 && s <= out.latency_ms), "{:?} of {}", out.server_ms, out.latency_ms);
}

#[test]
fn a_full_queue_answers_503_and_loopback_is_the_default() {
    // A slow model: serve a remote stand-in that takes 400 ms per call (serve proxies any model).
    let slow = common::http_stub::Stub::start(|r: &common::http_stub::Request| {
        use common::http_stub::{json, Reply};
        match r.path.as_str() {
            "/v2/health/ready" | "/v2" => json(200, json!({"name": "stub"})),
            "/v2/models/slow" => json(
                200,
                json!({"name": "slow", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]}),
            ),
            _ => Reply::After(
                Duration::from_millis(400),
                Box::new(json(
                    200,
                    json!({"outputs": [{"name": "probabilities",
                "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]}]}),
                )),
            ),
        }
    });
    let model = load(&format!("oip+{}/slow", slow.url()));
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("log.sqlite");
    let log = PredictionLog::open(&log_path, Retention::default()).unwrap();
    let server = serve(model, "slow", |o| {
        o.queue = 1;
        o.max_batch = 1;
        o.log = Some(log.clone());
    });
    let url = format!("http://{}/v2/models/slow/infer", server.addr());
    let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hi"]}]}).to_string();
    let started = Instant::now();
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (url, body) = (url.clone(), body.clone());
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(30 * i));
                    let (status, _, answer) = post(&url, body.into_bytes(), &[]);
                    (status, String::from_utf8_lossy(&answer).into_owned())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!((ok, busy.len()), (2, 2), "{statuses:?}");
    assert!(busy[0].1.contains("the server is busy"), "{}", busy[0].1);
    assert!(started.elapsed() < Duration::from_secs(3));
    let metrics = reqwest::blocking::get(format!("http://{}/metrics", server.addr())).unwrap().text().unwrap();
    assert!(metrics.contains(r#"modeldeck_queue_drops_total{model="slow"} 2"#), "{metrics}");
    // Refused requests are logged too, with why, under the model's source.
    let bad = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [7]}]}).to_string();
    assert_eq!(post(&url, bad.into_bytes(), &[]).0, 400);
    server.stop();
    let rows = store::read(&log_path, &store::Query::default()).unwrap();
    assert_eq!(rows.len(), 5);
    let errors: Vec<&str> = rows.iter().filter_map(|r| r.record.error.as_deref()).collect();
    assert_eq!(errors.iter().filter(|e| e.contains("the server is busy")).count(), 2, "{errors:?}");
    assert_eq!(errors.iter().filter(|e| e.contains("not strings")).count(), 1, "{errors:?}");
    assert!(rows.iter().all(|r| r.record.model.starts_with("oip+http://")), "{rows:?}");

    let mut options = ServeOptions::new("x");
    options.addr = "0.0.0.0:0".parse().unwrap();
    let error = Server::start(load("demo:digits-v1"), options).err().unwrap().to_string();
    assert!(error.contains("--allow-remote"), "{error}");
}

#[test]
fn a_canary_between_a_local_and_a_served_arm_weighs_the_network_in_its_latency_check() {
    // Edge vs cloud: A runs here, B is digits-v2 behind `modeldeck serve`.
    let server = serve(load("demo:digits-v2"), "digits-v2", |_| {});
    let b = format!("oip+http://{}/digits-v2", server.addr());
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["simulate", "--a", "demo:digits-v1", "--b", &b, "--strategy", "canary", "--data"])
        .arg(common::root().join("assets/digits/test"))
        .args(["--min-requests", "50", "--seed", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["strategy"], "canary");
    // The served arm pays HTTP and PNG encoding on every request: slower than x1.1 of the
    // in-process arm, so the canary rolls back on latency.
    assert_eq!(json["canary"]["phase"], "rolled_back", "{json}");
    let gate = &json["canary"]["decisions"][0]["gates"][0];
    assert_eq!(gate["gate"], "latency");
    assert_eq!(gate["verdict"], "fail", "{gate}");
    let p50 = |arm: usize| json["arms"][arm]["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50(1) > 1.1 * p50(0), "A {} ms, B {} ms", p50(0), p50(1));
    // Both arms answered, and the server saw B's share of the traffic.
    let (requests, _, _) = server.stats().snapshot();
    assert!(requests >= 50, "{requests}");
}

/// An NLI model served zero-shot: `text` and `candidate_labels` inputs, the `template` and
/// `multi_label` parameters, answers equal to `predict` in process; concurrent requests with the
/// same labels share a batch without mixing answers, and a request without labels is a 400.
#[test]
fn an_nli_model_serves_zero_shot_text_like_predict() {
    let nli = load(common::fixture_model("bert-nli").to_str().unwrap());
    let server = serve(nli.clone(), "nli", |o| o.window = Duration::from_millis(20));
    let url = format!("http://{}/v2/models/nli/infer", server.addr());
    let labels = ["food", "travel", "politics"];
    let texts = ["The soup was cold.", "Our flight to Rome left on time.", "The senate passed the bill."];
    let local = |text: &str, multi_label: bool, template: Option<&str>| -> Vec<f32> {
        let request = PredictRequest {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            template: template.map(str::to_string),
            multi_label,
            ..PredictRequest::texts(vec![text.to_string()])
        };
        predict::predict(&nli, &request).unwrap().results[0].scores.as_ref().unwrap().probs.clone()
    };
    let ask = |text: &str, parameters: Value| -> (u16, Value) {
        let body = json!({"inputs": [
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]},
            {"name": "candidate_labels", "datatype": "BYTES", "shape": [3], "data": labels},
        ], "parameters": parameters});
        let (status, _, body) = post(&url, body.to_string().into_bytes(), &[]);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    };
    let probs = |answer: &Value| -> Vec<f32> {
        let out = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "probabilities").unwrap();
        out["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = texts.iter().map(|t| s.spawn(move || (t, ask(t, json!({}))))).collect();
        for h in handles {
            let (text, (status, answer)) = h.join().unwrap();
            assert_eq!(status, 200, "{answer}");
            // Batched with the others (padded together): equal up to float rounding.
            let (got, want) = (probs(&answer), local(text, false, None));
            assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-5), "{text}: {got:?} vs {want:?}");
        }
    });
    let (status, answer) = ask(texts[0], json!({"multi_label": true, "template": "The topic is {}."}));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(probs(&answer), local(texts[0], true, Some("The topic is {}.")));
    let (status, answer) = ask(texts[0], json!({"multi_label": "yes"}));
    assert_eq!(status, 400, "{answer}");
    let body = json!({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["x"]}]});
    let (status, _, body) = post(&url, body.to_string().into_bytes(), &[]);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("candidate_labels"));
}
