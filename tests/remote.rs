//! Remote models as sources: a real Seldon MLServer (from PyPI) serving a scikit-learn digits
//! classifier over the Open Inference Protocol, a text-embeddings-inference stand-in that follows
//! TEI's documented shapes, and a server that fails in every way a network can.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http_stub::{json, Reply, Request, Stub};
use modeldeck::eval::{self, Dataset, EvalOptions};
use modeldeck::model::{self, LoadedModel, Task};
use modeldeck::predict::{self, NamedImage, PredictRequest};
use modeldeck::source::{ModelSource, ResolveOptions};
use serde_json::Value;

fn load(source: &str) -> Result<LoadedModel, modeldeck::Error> {
    model::load_source(&ModelSource::parse(source)?, &ResolveOptions::default())
}

fn image(path: &Path) -> NamedImage {
    NamedImage { name: path.display().to_string(), image: Arc::new(model::decode_image_file(path).unwrap()) }
}

/// MLServer, started by scripts/mlserver_digits.py and stopped (with its process group) on drop.
struct MlServer {
    child: Child,
    port: u16,
}

impl Drop for MlServer {
    fn drop(&mut self) {
        // SIGTERM lets the wrapper stop MLServer's process group; SIGKILL is the fallback.
        #[cfg(unix)]
        // SAFETY: kill(2) on our own child's pid; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Trains the scikit-learn classifier on the shipped digits and serves it with MLServer.
fn start_mlserver(python: &Path, dir: &Path) -> MlServer {
    let script = common::root().join("scripts/mlserver_digits.py");
    let trained = Command::new(python).arg(&script).arg("train").arg(dir).output().unwrap();
    assert!(trained.status.success(), "training failed: {}", String::from_utf8_lossy(&trained.stderr));
    let port = free_port();
    let mut child = Command::new(python)
        .arg(&script)
        .arg("serve")
        .arg(dir)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = MlServer { child, port };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim() == "ready" {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("MLServer did not become ready within 120 s");
    server
}

#[test]
fn an_mlserver_sklearn_model_answers_like_sklearn_and_compares_with_the_demo() {
    let Some(python) = common::peers_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let server = start_mlserver(&python, dir.path());
    let reference: Value = serde_json::from_slice(&std::fs::read(dir.path().join("reference.json")).unwrap()).unwrap();
    let preprocessor = common::root().join("models/digits-v1/preprocessor_config.json");
    let source =
        format!("oip+http://127.0.0.1:{}/digits-sklearn@v1?preprocessor={}", server.port, preprocessor.display());
    let remote = load(&source).unwrap();

    // The card says what is on the other side.
    let card = remote.card();
    assert_eq!(card.task, Task::ImageClassification);
    assert_eq!(card.labels, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    let endpoint = card.endpoint.as_ref().unwrap();
    assert_eq!(endpoint.server.as_deref(), Some("mlserver 1.7.1"));
    assert_eq!(endpoint.protocol, "Open Inference Protocol v2");
    assert!(endpoint.input.starts_with("input-0 FP32 [-1, 192]"), "{}", endpoint.input);
    assert!(endpoint.output.starts_with("predict_proba FP32 [-1, 10]"), "{}", endpoint.output);
    assert!(endpoint.rtt_ms > 0.0 && endpoint.rtt_ms < 1000.0);

    // Every test image, in batches of 60: the probabilities are sklearn's predict_proba.
    let test = common::root().join("assets/digits/test");
    let samples = reference["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 540);
    let mut worst = 0f64;
    for chunk in samples.chunks(60) {
        let images: Vec<NamedImage> = chunk.iter().map(|s| image(&test.join(s["path"].as_str().unwrap()))).collect();
        let request = PredictRequest { top_k: 10, ..PredictRequest::images(images) };
        let output = predict::predict(&remote, &request).unwrap();
        for (sample, result) in chunk.iter().zip(&output.results) {
            let expected: Vec<f64> =
                sample["predict_proba"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            for p in result.predictions.as_ref().unwrap() {
                let i: usize = p.label.parse().unwrap();
                worst = worst.max((p.score as f64 - expected[i]).abs());
            }
        }
    }
    assert!(worst < 1e-6, "largest difference from predict_proba: {worst}");

    // Side by side with the local demo on the same records: the remote arm's accuracy is the one
    // sklearn measured, and the paired comparison runs.
    let demo = load("demo:digits-v1").unwrap();
    let data = Dataset::load(&test).unwrap();
    let options = EvalOptions { batch_size: 32, ..EvalOptions::default() };
    let (a, b, comparison) = eval::compare(&demo, &remote, &data, &options, |_, _| {}).unwrap();
    let accuracy = |run: &eval::EvalRun| run.evaluation.metrics.as_ref().unwrap().accuracy;
    assert!((accuracy(&b) - reference["test_accuracy"].as_f64().unwrap()).abs() < 1e-12, "{}", accuracy(&b));
    assert!((accuracy(&a) - 534.0 / 540.0).abs() < 1e-12);
    assert_eq!(comparison.n_paired, 540);
    assert!(comparison.agreement > 0.9 && comparison.agreement < 1.0, "{}", comparison.agreement);

    // The CLI takes the same source.
    let out = Command::new(env!("CARGO_BIN_EXE_modeldeck"))
        .args(["eval", "--model", &source, "--data"])
        .arg(&test)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((json["metrics"]["accuracy"].as_f64().unwrap() - accuracy(&b)).abs() < 1e-12, "{json}");

    // Without the preprocessing, or with the wrong one, loading says what is missing.
    let bare = format!("oip+http://127.0.0.1:{}/digits-sklearn", server.port);
    let error = load(&bare).err().unwrap().to_string();
    assert!(error.contains("?preprocessor=") && error.contains("[-1, 192]"), "{error}");
    let wrong = format!(
        "{bare}?preprocessor={}",
        common::fixture_model("vit-p4-24").join("preprocessor_config.json").display()
    );
    let error = load(&wrong).err().unwrap().to_string();
    assert!(error.contains("takes 192 values per input"), "{error}");
    // A model the server does not have: its own message.
    let error = load(&format!("oip+http://127.0.0.1:{}/nope", server.port)).err().unwrap().to_string();
    assert!(error.contains("404") && error.contains("nope"), "{error}");
}

/// Metadata of a two-class text classifier, as an OIP server declares it.
fn text_metadata(name: &str) -> Value {
    serde_json::json!({
        "name": name, "versions": ["1"], "platform": "stub",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
    })
}

fn probabilities(n: usize, row: [f64; 2]) -> Value {
    serde_json::json!({"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [n, 2],
        "data": (0..n).flat_map(|_| row).collect::<Vec<_>>()}]})
}

/// A server that misbehaves in one way per model name.
fn faulty_server(flaky_calls: Arc<AtomicUsize>) -> Stub {
    Stub::start(move |r: &Request| {
        let path = r.path.trim_start_matches('/');
        if path == "v2/health/ready" || path == "v2" {
            return json(200, serde_json::json!({"name": "stub", "version": "0"}));
        }
        let Some(rest) = path.strip_prefix("v2/models/") else { return json(404, serde_json::json!({"error": "no"})) };
        let (model, infer) = match rest.strip_suffix("/infer") {
            Some(m) => (m, true),
            None => (rest, false),
        };
        if model == "locked" && r.header("authorization") != Some("Bearer s3cret") {
            return json(401, serde_json::json!({"error": "missing or bad token"}));
        }
        if !infer {
            return json(200, text_metadata(model));
        }
        let n = r.json()["inputs"][0]["data"].as_array().map_or(1, Vec::len);
        match model {
            "ok" | "locked" => {
                Reply::Json(200, probabilities(n, [0.25, 0.75]), vec![("Server-Timing", "total;dur=1.5".into())])
            }
            "slow" => Reply::After(Duration::from_secs(3), Box::new(json(200, probabilities(n, [0.5, 0.5])))),
            "drop" => Reply::Drop,
            "error500" => json(500, serde_json::json!({"error": "CUDA out of memory"})),
            "html502" => Reply::Body(502, "text/html", b"<html><body>Bad Gateway</body></html>".to_vec()),
            "garbage" => Reply::Body(200, "application/json", b"\x00\x9f{not json at all".to_vec()),
            "shape" => json(
                200,
                serde_json::json!({"outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [n, 3], "data": vec![0.2; n * 3]}]}),
            ),
            "batch" => json(200, probabilities(n + 1, [0.5, 0.5])),
            "notprob" => json(200, probabilities(n, [3.0, -1.0])),
            "strings" => json(
                200,
                serde_json::json!({"outputs": [{"name": "probabilities", "datatype": "BYTES", "shape": [n, 2], "data": vec!["a"; n * 2]}]}),
            ),
            "flaky" => {
                if flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    json(503, serde_json::json!({"error": "warming up"}))
                } else {
                    json(200, probabilities(n, [0.9, 0.1]))
                }
            }
            _ => json(404, serde_json::json!({"error": format!("Model {model} not found")})),
        }
    })
}

fn texts(model: &LoadedModel, texts: &[&str]) -> Result<predict::PredictOutput, modeldeck::Error> {
    predict::predict(model, &PredictRequest::texts(texts.iter().map(|t| t.to_string()).collect()))
}

#[test]
fn every_network_failure_gives_its_own_clear_error_and_the_model_keeps_working() {
    let flaky = Arc::new(AtomicUsize::new(0));
    let stub = faulty_server(flaky.clone());
    let base = format!("oip+{}", stub.url());
    let ok = load(&format!("{base}/ok")).unwrap();
    let out = texts(&ok, &["good", "bad"]).unwrap();
    assert_eq!(out.results.len(), 2);
    assert_eq!(out.labels().unwrap()[0].label, "1"); // labels default to class indices
    assert!((out.labels().unwrap()[0].score - 0.75).abs() < 1e-6);
    assert_eq!(out.server_ms, Some(1.5));
    // The tokenizer is on the server: the characters are the input feature measured here.
    assert_eq!(out.results[1].features.get("chars"), Some(3.0));
    assert!(out.latency_ms >= 1.5 || out.latency_ms > 0.0);

    let cases: &[(&str, &str, &[&str])] = &[
        ("slow?timeout=300ms", "did not answer within 0.3 s", &["timeout"]),
        ("drop", "connection closed before a complete answer", &[]),
        ("error500", "answered HTTP 500: CUDA out of memory", &[]),
        ("html502", "answered HTTP 502: <html><body>Bad Gateway</body></html>", &[]),
        ("garbage", "answered HTTP 200 with a body that is not JSON", &[]),
        ("shape", "has 3 columns per input (shape [1, 3]) but the model has 2 labels", &[]),
        ("batch", "has shape [2, 2] for 1 inputs", &[]),
        ("notprob", "holds 3, which is not a probability", &["output_kind=logits"]),
        ("strings", "has datatype `BYTES`, not a number type", &[]),
    ];
    for (model, needle, also) in cases {
        let m = load(&format!("{base}/{model}")).unwrap();
        let started = Instant::now();
        let error = texts(&m, &["x"]).err().unwrap().to_string();
        assert!(error.contains(needle), "{model}: {error}");
        for a in *also {
            assert!(error.contains(a), "{model}: {error}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{model} took {:?}", started.elapsed());
        // The same endpoint's healthy model still answers afterwards.
        assert!(texts(&ok, &["still here"]).is_ok());
    }

    // 503 is retried (the server never started on it) and then succeeds.
    let m = load(&format!("{base}/flaky")).unwrap();
    let out = texts(&m, &["x"]).unwrap();
    assert_eq!(out.labels().unwrap()[0].label, "0");
    assert_eq!(flaky.load(Ordering::SeqCst), 2);

    // Refused connections name the address; nothing listens on a fresh port.
    let error = load(&format!("oip+http://127.0.0.1:{}/m", free_port())).err().unwrap().to_string();
    assert!(error.contains("refused the connection"), "{error}");

    // Tokens: missing variable, refused without one, accepted with one; never in the card.
    let error = load(&format!("{base}/locked?token_env=MODELDECK_TEST_NO_SUCH_VAR")).err().unwrap().to_string();
    assert!(error.contains("`MODELDECK_TEST_NO_SUCH_VAR` (named by ?token_env) is not set"), "{error}");
    let error = load(&format!("{base}/locked")).err().unwrap().to_string();
    assert!(error.contains("HTTP 401") && error.contains("?token_env=VAR"), "{error}");
    std::env::set_var("MODELDECK_TEST_REMOTE_TOKEN", "s3cret");
    let locked = load(&format!("{base}/locked?token_env=MODELDECK_TEST_REMOTE_TOKEN")).unwrap();
    assert!(texts(&locked, &["x"]).is_ok());
    let card = serde_json::to_string(locked.card()).unwrap();
    assert!(!card.contains("s3cret") && card.contains("MODELDECK_TEST_REMOTE_TOKEN"), "{card}");
    assert!(ModelSource::parse(&format!("{base}/m?token=abc")).is_err());

    // Images to a text model: refused before anything is sent.
    let before = stub.requests.load(Ordering::SeqCst);
    let digit = common::root().join("assets/digits/test/3/0045.png");
    let error = predict::predict(&ok, &PredictRequest::images(vec![image(&digit)])).err().unwrap().to_string();
    assert!(error.contains("does not take images"), "{error}");
    assert_eq!(stub.requests.load(Ordering::SeqCst), before);
}

/// A text-embeddings-inference stand-in that follows TEI's documented shapes, answering with a
/// local ModelDeck model so its numbers can be checked.
fn tei_stub(local: Arc<LoadedModel>, classifier: bool, calls: Arc<AtomicUsize>) -> Stub {
    Stub::start(move |r: &Request| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/health") => Reply::Body(200, "text/plain", Vec::new()),
        ("GET", "/info") => {
            let model_type = if classifier {
                let id2label: serde_json::Map<String, Value> =
                    local.labels().iter().enumerate().map(|(i, l)| (i.to_string(), Value::from(l.clone()))).collect();
                serde_json::json!({"classifier": {"id2label": id2label}})
            } else {
                serde_json::json!({"embedding": {"pooling": "mean"}})
            };
            json(
                200,
                serde_json::json!({"model_id": "stub/model", "model_dtype": "float32", "model_type": model_type,
                "max_client_batch_size": 2, "version": "1.5.0"}),
            )
        }
        ("POST", "/embed") if !classifier => {
            calls.fetch_add(1, Ordering::SeqCst);
            let body = r.json();
            assert_eq!(body["normalize"], true);
            let inputs: Vec<String> =
                body["inputs"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
            if inputs.len() > 2 {
                return json(
                    413,
                    serde_json::json!({"error": "batch size 3 > maximum allowed batch size 2", "error_type": "Validation"}),
                );
            }
            let out = predict::predict(&local, &PredictRequest::texts(inputs)).unwrap();
            let vectors: Vec<Vec<f32>> =
                out.results.iter().map(|res| normalized(res.embedding.as_ref().unwrap())).collect();
            Reply::Json(200, serde_json::json!(vectors), vec![("x-total-time", "2".into())])
        }
        ("POST", "/predict") if classifier => {
            calls.fetch_add(1, Ordering::SeqCst);
            let inputs: Vec<String> = r.json()["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let pair = pair.as_array().expect("a batch is a list of one-element lists");
                    assert_eq!(pair.len(), 1);
                    pair[0].as_str().unwrap().to_string()
                })
                .collect();
            let request = PredictRequest { top_k: 100, ..PredictRequest::texts(inputs) };
            let out = predict::predict(&local, &request).unwrap();
            let rows: Vec<Value> =
                out.results.iter().map(|res| serde_json::json!(res.predictions.as_ref().unwrap())).collect();
            json(200, Value::Array(rows))
        }
        _ => json(404, serde_json::json!({"error": "not found"})),
    })
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

#[test]
fn a_tei_endpoint_embeds_and_classifies_in_server_sized_batches() {
    let sentences = ["a cat sat", "dogs bark loudly", "the stock market", "rain again", "hello"];
    let embedder = Arc::new(load(&common::fixture_model("st-bert-mean").display().to_string()).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let stub = tei_stub(embedder.clone(), false, calls.clone());
    let remote = load(&format!("tei+{}", stub.url())).unwrap();
    assert_eq!(remote.task(), Task::TextEmbedding);
    assert_eq!(remote.card().name, "stub/model");
    assert_eq!(remote.card().endpoint.as_ref().unwrap().server.as_deref(), Some("text-embeddings-inference 1.5.0"));
    let owned: Vec<String> = sentences.iter().map(|s| s.to_string()).collect();
    let got = predict::predict(&remote, &PredictRequest::texts(owned.clone())).unwrap();
    let local = predict::predict(&embedder, &PredictRequest::texts(owned.clone())).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "5 texts at most 2 a request");
    for (g, l) in got.results.iter().zip(&local.results) {
        let (g, l) = (g.embedding.as_ref().unwrap(), normalized(l.embedding.as_ref().unwrap()));
        assert!(g.iter().zip(&l).all(|(a, b)| (a - b).abs() < 1e-6));
    }
    assert_eq!(got.server_ms, Some(6.0), "x-total-time summed over the three requests");
    assert!(
        (got.similarity.unwrap()
            - predict::cosine(
                &normalized(local.results[0].embedding.as_ref().unwrap()),
                &normalized(local.results[1].embedding.as_ref().unwrap())
            ))
        .abs()
            < 1e-5
    );

    let classifier = Arc::new(load(&common::fixture_model("distilbert-cls-a").display().to_string()).unwrap());
    let stub = tei_stub(classifier.clone(), true, Arc::new(AtomicUsize::new(0)));
    let remote = load(&format!("tei+{}", stub.url())).unwrap();
    assert_eq!(remote.task(), Task::TextClassification);
    assert_eq!(remote.labels(), classifier.labels());
    let request = PredictRequest { top_k: 100, ..PredictRequest::texts(owned) };
    let got = predict::predict(&remote, &request).unwrap();
    let local = predict::predict(&classifier, &request).unwrap();
    for (g, l) in got.results.iter().zip(&local.results) {
        let (g, l) = (g.scores.as_ref().unwrap(), l.scores.as_ref().unwrap());
        assert!(g.probs.iter().zip(&l.probs).all(|(a, b)| (a - b).abs() < 1e-6), "{g:?} vs {l:?}");
    }
    // An image to a TEI model is refused with the task's words.
    let digit = common::root().join("assets/digits/test/3/0045.png");
    let error = predict::predict(&remote, &PredictRequest::images(vec![image(&digit)])).err().unwrap().to_string();
    assert!(error.contains("does not take images"), "{error}");
}
