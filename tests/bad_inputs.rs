//! Bad input never crashes: each broken model folder, image or text gives one clear line on
//! stderr and a non-zero exit from the CLI, and never a panic.

mod common;

use std::path::Path;

use common::{copy_model, fails_with, modeldeck};

fn predict_text(dir: &Path) -> Vec<String> {
    vec!["predict".into(), "--model".into(), dir.display().to_string(), "--text".into(), "hello there".into()]
}

fn run_text(dir: &Path, needles: &[&str]) {
    let args = predict_text(dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_with(&args, needles);
}

#[test]
fn broken_model_folders_are_explained() {
    let tmp = tempfile::tempdir().unwrap();

    let dir = copy_model("bert-cls-5", tmp.path());
    std::fs::remove_file(dir.join("config.json")).unwrap();
    run_text(&dir, &["no config.json"]);

    let dir = copy_model("distilbert-cls-a", tmp.path());
    std::fs::write(dir.join("config.json"), "{ not json").unwrap();
    run_text(&dir, &["config.json", "not valid JSON"]);

    std::fs::write(dir.join("config.json"), r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}"#).unwrap();
    run_text(&dir, &["GPT2LMHeadModel", "supported", "ViTForImageClassification", "CLIPModel"]);

    let dir = copy_model("roberta-cls", tmp.path());
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    run_text(&dir, &["no weights", "model.safetensors"]);
}

#[test]
fn broken_weights_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("bert-cls-5", tmp.path());
    let weights = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();

    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    run_text(&dir, &["model.safetensors", "truncated"]);

    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&weights, noise).unwrap();
    run_text(&dir, &["model.safetensors", "not a safetensors file"]);

    std::fs::write(&weights, b"").unwrap();
    run_text(&dir, &["model.safetensors"]);

    // A tensor of the wrong shape: config.json says one thing, the file another.
    std::fs::write(&weights, &bytes).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["intermediate_size"] = serde_json::json!(48);
    std::fs::write(dir.join("config.json"), json.to_string()).unwrap();
    run_text(&dir, &["intermediate.dense.weight", "48"]);

    // Weights of another architecture.
    let vit_config = std::fs::read(common::fixture_model("vit-p8-32").join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), vit_config).unwrap();
    let (ok, _, err) =
        modeldeck(&["predict", "--model", dir.to_str().unwrap(), "--image", "assets/samples/chelsea.png"]);
    assert!(!ok && err.contains("vit.embeddings") && err.contains("bert"), "{err}");
}

#[test]
fn a_missing_tokenizer_is_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("distilbert-cls-a", tmp.path());
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    run_text(&dir, &["tokenizer.json"]);
}

#[test]
fn bad_images_are_named_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let model = common::fixture_model("vit-p8-32");
    let model = model.to_str().unwrap();

    let noise = tmp.path().join("noise.jpg");
    std::fs::write(&noise, b"this is not a jpeg at all").unwrap();
    fails_with(&["predict", "--model", model, "--image", noise.to_str().unwrap()], &["noise.jpg"]);

    let png = std::fs::read(common::root().join("assets/samples/chelsea.png")).unwrap();
    let truncated = tmp.path().join("truncated.png");
    std::fs::write(&truncated, &png[..png.len() / 3]).unwrap();
    fails_with(&["predict", "--model", model, "--image", truncated.to_str().unwrap()], &["truncated.png"]);

    // The sample's own header, enlarged, with its CRC made right again: the pixel guard refuses it.
    let mut bomb = png.clone();
    bomb[16..20].copy_from_slice(&70000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&70000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let bomb_path = tmp.path().join("bomb.png");
    std::fs::write(&bomb_path, bomb).unwrap();
    fails_with(
        &["predict", "--model", model, "--image", bomb_path.to_str().unwrap()],
        &["bomb.png", "70000x70000", "100-megapixel limit"],
    );

    fails_with(&["predict", "--model", model, "--image", "/no/such/image.png"], &["/no/such/image.png"]);
    fails_with(&["predict", "--model", model, "--text", "hello"], &["image"]);
}

#[test]
fn images_too_small_for_the_network_are_explained() {
    // A preprocessor that shrinks images below ConvNeXt's 4x4 patch stem.
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_model("convnext-a", tmp.path());
    let config = dir.join("preprocessor_config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["size"] = serde_json::json!({ "shortest_edge": 2 });
    std::fs::write(&config, json.to_string()).unwrap();
    let image = common::root().join("assets/samples/chelsea.png");
    fails_with(
        &["predict", "--model", dir.to_str().unwrap(), "--image", image.to_str().unwrap()],
        &["2x2 feature map is too small", "images are too small for this model"],
    );

    // A zero-width stage is refused when loading.
    let config = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["hidden_sizes"] = serde_json::json!([16, 0]);
    std::fs::write(&config, json.to_string()).unwrap();
    fails_with(&["predict", "--model", dir.to_str().unwrap(), "--image", image.to_str().unwrap()], &["no zero size"]);

    // The demo CNN's hidden layer fits one input size: a preprocessor making another is named.
    let cnn = tmp.path().join("digits");
    std::fs::create_dir_all(&cnn).unwrap();
    for f in ["config.json", "model.safetensors", "preprocessor_config.json"] {
        std::fs::copy(common::root().join("models/digits-v1").join(f), cnn.join(f)).unwrap();
    }
    let config = cnn.join("preprocessor_config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["size"] = serde_json::json!({ "height": 32, "width": 1 });
    std::fs::write(&config, json.to_string()).unwrap();
    fails_with(
        &["predict", "--model", cnn.to_str().unwrap(), "--image", image.to_str().unwrap()],
        &["takes 8x8 images but the preprocessor made 32x1"],
    );
}

#[test]
fn a_zero_shot_template_needs_one_placeholder() {
    let clip = common::fixture_model("clip-a");
    let image = common::root().join("assets/samples/chelsea.png");
    let args = |template: &str| -> Vec<String> {
        ["predict", "--model", clip.to_str().unwrap(), "--image", image.to_str().unwrap(), "--labels", "cat,dog"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--template".to_string(), template.to_string()])
            .collect()
    };
    let run = |template: &str, needles: &[&str]| {
        let args = args(template);
        fails_with(&args.iter().map(String::as_str).collect::<Vec<_>>(), needles);
    };
    run("a photo of a cat", &["template `a photo of a cat` has no `{}`"]);
    run("{} or {}", &["template `{} or {}` has 2 `{}`"]);
    let vit = common::fixture_model("vit-p8-32");
    fails_with(
        &["predict", "--model", vit.to_str().unwrap(), "--image", image.to_str().unwrap(), "--template", "{}"],
        &["template (--template) is for zero-shot models, not image-classification"],
    );
}

#[test]
fn empty_text_fails_and_long_text_is_truncated() {
    let model = common::fixture_model("bert-cls-trunc");
    let model = model.to_str().unwrap();
    fails_with(&["predict", "--model", model, "--text", "   "], &["empty text"]);
    let long = "word ".repeat(5000);
    let (ok, out, err) = modeldeck(&["predict", "--model", model, "--text", &long, "--json"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["predictions"].as_array().unwrap().len(), 2);
}

#[test]
fn unknown_sources_are_explained() {
    fails_with(&["predict", "--model", "./no/such/folder", "--text", "x"], &["./no/such/folder", "does not exist"]);
    fails_with(&["predict", "--model", "demo:nope", "--text", "x"], &["demo model `nope`"]);
    fails_with(&["predict", "--model", "some-org/some-model", "--text", "x"], &["some-org/some-model"]);
}

/// CRC-32 as PNG chunks carry it (ISO-HDLC, reflected 0xEDB88320), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

/// A PNG that declares `width`x`height` 8-bit RGB pixels and holds one grey pixel row of
/// image data (zlib, one stored block): a complete, valid file for a 1x1 image.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // bit depth 8, RGB, deflate, no filter, no interlace
    let row = [0u8, 128, 128, 128]; // filter byte "none", then one pixel
    let (mut a, mut b) = (1u32, 0u32); // Adler-32 of the row
    for &byte in &row {
        a = (a + byte as u32) % 65521;
        b = (b + a) % 65521;
    }
    let mut zlib = vec![0x78, 0x01, 0x01]; // zlib header, last stored block
    zlib.extend_from_slice(&(row.len() as u16).to_le_bytes());
    zlib.extend_from_slice(&(!(row.len() as u16)).to_le_bytes());
    zlib.extend_from_slice(&row);
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &zlib));
    png.extend(png_chunk(b"IEND", b""));
    png
}

#[test]
fn the_pixel_guard_refuses_a_valid_png_declaring_144_megapixels() {
    // The CRC is PNG's: it reproduces the checksum of a real file's header.
    let sample = std::fs::read(common::root().join("assets/samples/chelsea.png")).unwrap();
    assert_eq!(&sample[12..16], b"IHDR");
    assert_eq!(crc32(&sample[12..29]).to_be_bytes(), sample[29..33]);

    // The same bytes at 1x1 are a valid image, so nothing but the declared size can stop the big one.
    let tiny = modeldeck::model::image::decode_image_bytes(&png_declaring(1, 1), Path::new("tiny.png")).unwrap();
    assert_eq!((tiny.dimensions(), tiny.get_pixel(0, 0).0), ((1, 1), [128, 128, 128]));

    // 12000x12000 is 144 MP: over the 100 MP guard, yet 432 MB of RGB stays under the image
    // crate's 512 MiB allocation limit, and the file itself is under 100 bytes.
    let huge = png_declaring(12000, 12000);
    assert!(huge.len() < 100);
    match modeldeck::model::image::decode_image_bytes(&huge, Path::new("huge.png")) {
        Err(modeldeck::model::ImageError::TooLarge { width: 12000, height: 12000, .. }) => {}
        Err(other) => panic!("expected the 100-megapixel guard, got: {other}"),
        Ok(image) => panic!("decoded a {:?} image", image.dimensions()),
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("huge.png");
    std::fs::write(&path, &huge).unwrap();
    let model = common::fixture_model("vit-p8-32");
    fails_with(
        &["predict", "--model", model.to_str().unwrap(), "--image", path.to_str().unwrap()],
        &["huge.png", "12000x12000 pixels, over the 100-megapixel limit"],
    );
}

/// Rewrites `dir`/config.json through `edit`.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
}

#[test]
fn config_fields_of_the_wrong_type_or_missing_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let image = common::root().join("assets/samples/chelsea.png");
    let image = image.to_str().unwrap();

    // ViT: a string where a size belongs, a required size missing, an unknown activation.
    let vit = copy_model("vit-p8-32", tmp.path());
    let predict_image = ["predict", "--model", vit.to_str().unwrap(), "--image", image];
    edit_config(&vit, |c| c["hidden_size"] = "x".into());
    fails_with(&predict_image, &["config.json: field `hidden_size`: invalid type: string \"x\", expected usize"]);
    edit_config(&vit, |c| {
        c["hidden_size"] = 32.into();
        c.as_object_mut().unwrap().remove("num_attention_heads");
    });
    fails_with(&predict_image, &["config.json", "missing field `num_attention_heads`"]);
    edit_config(&vit, |c| {
        c["num_attention_heads"] = 4.into();
        c["hidden_act"] = "swish".into();
    });
    fails_with(&predict_image, &["config.json: field `hidden_act`: unsupported activation `swish`"]);
    // Fields ModelDeck does not read are ignored, as transformers ignores them.
    edit_config(&vit, |c| {
        c["hidden_act"] = "gelu".into();
        c["some_future_field"] = serde_json::json!({"nested": [1, 2]});
    });
    let (ok, _, err) = modeldeck(&predict_image);
    assert!(ok, "{err}");

    // BERT: the same for a text model, and the label map.
    let bert = copy_model("bert-cls-5", tmp.path());
    edit_config(&bert, |c| c["num_hidden_layers"] = "2".into());
    run_text(&bert, &["config.json: field `num_hidden_layers`: invalid type: string \"2\", expected usize"]);
    edit_config(&bert, |c| {
        c["num_hidden_layers"] = 2.into();
        c.as_object_mut().unwrap().remove("vocab_size");
    });
    run_text(&bert, &["config.json", "missing field `vocab_size`"]);
    let original = std::fs::read_to_string(common::fixture_model("bert-cls-5").join("config.json")).unwrap();
    let vocab = serde_json::from_str::<serde_json::Value>(&original).unwrap()["vocab_size"].clone();
    edit_config(&bert, |c| {
        c["vocab_size"] = vocab;
        c["layer_norm_eps"] = "small".into();
    });
    run_text(&bert, &["field `layer_norm_eps`: invalid type: string \"small\", expected f64"]);
    edit_config(&bert, |c| {
        c["layer_norm_eps"] = 1e-12.into();
        c["id2label"]["1"] = 7.into();
    });
    run_text(&bert, &["field `id2label.1`: invalid type: integer `7`, expected a string"]);

    // DistilBERT names its fields differently.
    let distil = copy_model("distilbert-cls-a", tmp.path());
    edit_config(&distil, |c| c["n_heads"] = (-4).into());
    run_text(&distil, &["field `n_heads`: invalid value: integer `-4`, expected usize"]);

    // CLIP: a field inside a sub-config is named with its path.
    let clip = copy_model("clip-a", tmp.path());
    edit_config(&clip, |c| c["vision_config"]["patch_size"] = 8.5.into());
    fails_with(
        &["predict", "--model", clip.to_str().unwrap(), "--image", image, "--labels", "cat,dog"],
        &["in `vision_config`: field `patch_size`: invalid type: floating point `8.5`, expected usize"],
    );
}
