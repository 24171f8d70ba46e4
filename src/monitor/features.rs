//! Numeric features of inputs and outputs, the quantities drift is measured on. The prediction
//! path ([`crate::predict::predict`]) computes them for every prediction: image features on the
//! image as decoded (before resizing), text features from the tokenization the model runs on,
//! output features from the full score vector (before top-k).
//!
//! Image statistics are exact: luminance is kept as the integer `299 R + 587 G + 114 B` (Rec. 601
//! luma times 255,000) and every sum is an integer, so the only rounding is the final division.

use image::RgbImage;
use serde::ser::SerializeMap;

use super::Features;
use crate::model::text::TextLength;
use crate::model::{LoadedModel, ModelError};

/// Image features: mean luminance (0–1), sd of luminance, variance of the Laplacian of the
/// luminance (sharpness), size, aspect ratio (width / height), per-channel means (0–1).
pub const IMAGE_FEATURES: [&str; 9] =
    ["brightness", "contrast", "sharpness", "width", "height", "aspect_ratio", "mean_r", "mean_g", "mean_b"];
/// Text features: characters, tokens, share of unknown tokens, truncated (1) or not (0).
pub const TEXT_FEATURES: [&str; 4] = ["chars", "tokens", "unknown_share", "truncated"];
/// Output features: top-1 probability and entropy (classifiers), embedding norm (embedders).
pub const OUTPUT_FEATURES: [&str; 3] = ["confidence", "entropy", "embedding_norm"];

/// Every feature name in the order exports list them: image, text, output.
pub fn all_feature_names() -> impl Iterator<Item = &'static str> {
    IMAGE_FEATURES.into_iter().chain(TEXT_FEATURES).chain(OUTPUT_FEATURES)
}

/// Luma weights of Rec. 601 in thousandths: they sum to 1000, so luma × 1000 is an integer.
const LUMA_WEIGHTS: [u32; 3] = [299, 587, 114];
/// Integer luma of a white pixel: `1000 × 255`.
const LUMA_SCALE: f64 = 255_000.0;
/// Pixels summed into a u64 before it is moved to the u128 total (no overflow for any width).
const CHUNK: usize = 1 << 16;

/// Brightness, contrast, sharpness, size, aspect ratio and channel means of an image; see
/// [`IMAGE_FEATURES`]. With luminance `Y = (0.299 R + 0.587 G + 0.114 B) / 255`:
/// - brightness is the mean of `Y`, contrast its population standard deviation;
/// - sharpness is the population variance of the 4-neighbour Laplacian
///   `Y[x-1,y] + Y[x+1,y] + Y[x,y-1] + Y[x,y+1] - 4 Y[x,y]` over interior pixels (those with
///   all four neighbours); an image narrower or shorter than 3 pixels has none, and sharpness 0;
/// - channel means are in [0, 1]; aspect ratio is width / height (0 for an empty image, whose
///   other features are 0 too).
///
/// Under 1 ms for a 1-megapixel image (`examples/monitor_bench.rs`): one pass over the pixels
/// with three rolling rows of luma, integer arithmetic throughout, AVX2 where the CPU has it.
pub fn image_features(image: &RgbImage) -> Features {
    let (width, height) = image.dimensions();
    let (w, h) = (width as usize, height as usize);
    let n = (w * h) as u128;
    let totals = image_totals(image.as_raw(), w, h);
    let mut features = Features(Vec::with_capacity(IMAGE_FEATURES.len()));
    let [r, g, b] = totals.channels.map(u128::from);
    let luma_sum = r * LUMA_WEIGHTS[0] as u128 + g * LUMA_WEIGHTS[1] as u128 + b * LUMA_WEIGHTS[2] as u128;
    let mean = |sum: u128, scale: f64| if n == 0 { 0.0 } else { sum as f64 / n as f64 / scale };
    let luma_variance = variance(n, luma_sum as i128, totals.luma_squares) / (LUMA_SCALE * LUMA_SCALE);
    let interior = (w.saturating_sub(2) * h.saturating_sub(2)) as u128;
    let laplacian_variance =
        variance(interior, totals.laplacian_sum, totals.laplacian_squares) / (LUMA_SCALE * LUMA_SCALE);
    features.push("brightness", mean(luma_sum, LUMA_SCALE));
    features.push("contrast", luma_variance.sqrt());
    features.push("sharpness", laplacian_variance);
    features.push("width", width as f64);
    features.push("height", height as f64);
    features.push("aspect_ratio", if height == 0 { 0.0 } else { width as f64 / height as f64 });
    features.push("mean_r", mean(r, 255.0));
    features.push("mean_g", mean(g, 255.0));
    features.push("mean_b", mean(b, 255.0));
    features
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    channels: [u64; 3],
    luma_squares: u128,
    laplacian_sum: i128,
    laplacian_squares: u128,
}

fn image_totals(raw: &[u8], w: usize, h: usize) -> Totals {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { image_totals_avx2(raw, w, h) };
    }
    image_totals_body(raw, w, h)
}

/// The same loops eight u32 lanes wide: about 2.5× faster than the SSE2 baseline.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn image_totals_avx2(raw: &[u8], w: usize, h: usize) -> Totals {
    image_totals_body(raw, w, h)
}

#[inline(always)]
fn image_totals_body(raw: &[u8], w: usize, h: usize) -> Totals {
    let mut totals = Totals::default();
    // Luma of the last three rows, as a ring: row y lives in rows[y % 3].
    let mut rows = [vec![0u32; w], vec![0u32; w], vec![0u32; w]];
    for y in 0..h {
        luma_row(&raw[y * w * 3..(y + 1) * w * 3], &mut rows[y % 3], &mut totals);
        if y >= 2 && w >= 3 {
            laplacian_row(&rows[(y - 2) % 3], &rows[(y - 1) % 3], &rows[y % 3], &mut totals);
        }
    }
    totals
}

/// Population variance `(n Σx² − (Σx)²) / n²` from exact integer sums (0 for no samples).
fn variance(n: u128, sum: i128, squares: u128) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let sum = sum.unsigned_abs();
    // n Σx² ≥ (Σx)² always; saturating keeps a corrupt input from wrapping.
    let numerator = (n * squares).saturating_sub(sum * sum);
    numerator as f64 / (n as f64 * n as f64)
}

/// Integer luma of one row into `out`, channel sums and squared luma into `totals`.
#[inline(always)]
fn luma_row(pixels: &[u8], out: &mut [u32], totals: &mut Totals) {
    for (pixels, out) in pixels.chunks(3 * CHUNK).zip(out.chunks_mut(CHUNK)) {
        let (mut r_sum, mut g_sum, mut b_sum, mut squares) = (0u32, 0u32, 0u32, 0u64);
        for (p, y) in pixels.chunks_exact(3).zip(out.iter_mut()) {
            let (r, g, b) = (p[0] as u32, p[1] as u32, p[2] as u32);
            let luma = LUMA_WEIGHTS[0] * r + LUMA_WEIGHTS[1] * g + LUMA_WEIGHTS[2] * b;
            *y = luma;
            // 255 × 2^16 fits a u32; luma² < 2^36, times 2^16 fits a u64.
            r_sum += r;
            g_sum += g;
            b_sum += b;
            squares += luma as u64 * luma as u64;
        }
        totals.channels[0] += r_sum as u64;
        totals.channels[1] += g_sum as u64;
        totals.channels[2] += b_sum as u64;
        totals.luma_squares += squares as u128;
    }
}

/// The Laplacian over the interior of the middle row.
#[inline(always)]
fn laplacian_row(above: &[u32], row: &[u32], below: &[u32], totals: &mut Totals) {
    let w = row.len();
    let mut start = 1;
    while start < w - 1 {
        let end = (start + CHUNK).min(w - 1);
        let (mut sum, mut squares) = (0i64, 0u64);
        // Equal-length slices, so the loop has no bounds checks and vectorizes.
        let (up, down, centre) = (&above[start..end], &below[start..end], &row[start..end]);
        let (left, right) = (&row[start - 1..end - 1], &row[start + 1..end + 1]);
        for i in 0..centre.len() {
            // Each luma < 2^18, so the neighbour sum < 2^20 and fits an i32 with the centre.
            let l = (up[i] + down[i] + left[i] + right[i]) as i32 - 4 * centre[i] as i32;
            let magnitude = l.unsigned_abs() as u64;
            sum += l as i64;
            squares += magnitude * magnitude; // < 2^40 per pixel, 2^56 per chunk
        }
        totals.laplacian_sum += sum as i128;
        totals.laplacian_squares += squares as u128;
        start = end;
    }
}

/// Text features (see [`TEXT_FEATURES`]) measured with the model's own tokenizer: the tokens it
/// would run, special tokens included, before truncation.
pub fn text_features(model: &LoadedModel, text: &str) -> Result<Features, ModelError> {
    let encoder = model
        .text_encoder()
        .ok_or_else(|| ModelError::Input(format!("{} has no tokenizer to measure text with", model.card().name)))?;
    Ok(text_length_features(&encoder.measure(text)?))
}

/// Text features from a length the tokenization already measured (the prediction path's).
pub fn text_length_features(length: &TextLength) -> Features {
    let unknown_share = if length.tokens == 0 { 0.0 } else { length.unknown as f64 / length.tokens as f64 };
    Features(vec![
        ("chars", length.chars as f64),
        ("tokens", length.tokens as f64),
        ("unknown_share", unknown_share),
        ("truncated", if length.truncated { 1.0 } else { 0.0 }),
    ])
}

/// The one text feature measurable without the model's tokenizer (remote models): characters.
pub fn text_char_features(text: &str) -> Features {
    Features(vec![("chars", text.chars().count() as f64)])
}

/// Confidence (top-1 probability) and entropy (natural log) of a classifier's full score vector.
/// Scores that do not sum to 1 (sigmoid, multi-label models) are normalised first, so entropy
/// is always that of a distribution over the labels: 0 when one label takes everything, ln(k)
/// when k labels are equally likely. No scores: both 0.
pub fn score_features(probs: &[f32]) -> Features {
    let confidence = probs.iter().copied().fold(0.0f32, f32::max) as f64;
    let total: f64 = probs.iter().map(|&p| p.max(0.0) as f64).sum();
    let entropy = if total > 0.0 {
        -probs.iter().map(|&p| p.max(0.0) as f64 / total).filter(|&q| q > 0.0).map(|q| q * q.ln()).sum::<f64>()
    } else {
        0.0
    };
    // -0.0 for a one-hot distribution reads oddly in an export.
    Features(vec![("confidence", confidence), ("entropy", entropy.max(0.0))])
}

/// The Euclidean norm of an embedding.
pub fn embedding_features(embedding: &[f32]) -> Features {
    let norm = embedding.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    Features(vec![("embedding_norm", norm)])
}

/// As a JSON object, the way [`Features::to_json`] writes it (the CLI prints it).
impl serde::Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, &value.is_finite().then_some(*value))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definitions, written plainly in f64 over a full copy of the luminance.
    fn naive(image: &RgbImage) -> Vec<f64> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let lum: Vec<f64> =
            image.pixels().map(|p| (0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64) / 255.0).collect();
        let n = lum.len() as f64;
        let mean = lum.iter().sum::<f64>() / n;
        let sd = (lum.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n).sqrt();
        let mut lap = Vec::new();
        for y in 1..h.saturating_sub(1) {
            for x in 1..w.saturating_sub(1) {
                let at = |x: usize, y: usize| lum[y * w + x];
                lap.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
            }
        }
        let sharpness = if lap.is_empty() {
            0.0
        } else {
            let m = lap.iter().sum::<f64>() / lap.len() as f64;
            lap.iter().map(|l| (l - m).powi(2)).sum::<f64>() / lap.len() as f64
        };
        let channel = |c: usize| image.pixels().map(|p| p[c] as f64).sum::<f64>() / n / 255.0;
        vec![mean, sd, sharpness, w as f64, h as f64, w as f64 / h as f64, channel(0), channel(1), channel(2)]
    }

    fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut state = seed;
        RgbImage::from_fn(w, h, |_, _| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let b = (state >> 33).to_le_bytes();
            image::Rgb([b[0], b[1], b[2]])
        })
    }

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
    }

    #[test]
    fn image_features_follow_their_definitions_on_any_shape() {
        for (w, h) in [(1, 1), (2, 2), (3, 3), (1, 7), (7, 2), (5, 4), (64, 33), (257, 3)] {
            let image = noise(w, h, u64::from(w * 1000 + h));
            let got = image_features(&image);
            let names: Vec<&str> = got.0.iter().map(|(n, _)| *n).collect();
            assert_eq!(names, IMAGE_FEATURES);
            for ((name, g), want) in got.0.iter().zip(naive(&image)) {
                assert!(close(*g, want, 1e-9), "{w}x{h} {name}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn known_images_have_known_features() {
        let flat = RgbImage::from_pixel(10, 5, image::Rgb([255, 255, 255]));
        let f = image_features(&flat);
        assert_eq!(f.get("brightness"), Some(1.0));
        assert_eq!((f.get("contrast"), f.get("sharpness")), (Some(0.0), Some(0.0)));
        assert_eq!((f.get("width"), f.get("height"), f.get("aspect_ratio")), (Some(10.0), Some(5.0), Some(2.0)));
        // Half black, half white columns: luminance sd 0.5.
        let halves = RgbImage::from_fn(4, 4, |x, _| image::Rgb(if x < 2 { [0; 3] } else { [255; 3] }));
        let f = image_features(&halves);
        assert_eq!((f.get("brightness"), f.get("contrast")), (Some(0.5), Some(0.5)));
        // Interior Laplacians: +1 (black centre, one white neighbour) and -1: variance 1.
        assert_eq!(f.get("sharpness"), Some(1.0));
        // Pure red: luma 0.299.
        let red = image_features(&RgbImage::from_pixel(3, 3, image::Rgb([255, 0, 0])));
        assert_eq!((red.get("brightness"), red.get("mean_r"), red.get("mean_g")), (Some(0.299), Some(1.0), Some(0.0)));
        // Smaller than 3x3: no interior, sharpness 0; empty: all zeros, no division by zero.
        assert_eq!(image_features(&noise(2, 9, 1)).get("sharpness"), Some(0.0));
        let empty = image_features(&RgbImage::new(0, 0));
        assert!(empty.0.iter().all(|(_, v)| *v == 0.0), "{empty:?}");
    }

    #[test]
    fn wide_images_do_not_overflow_the_chunked_sums() {
        // Wider than one chunk: the chunk boundary must neither drop nor double a pixel.
        let image = noise(CHUNK as u32 + 37, 3, 7);
        for ((name, g), want) in image_features(&image).0.iter().zip(naive(&image)) {
            assert!(close(*g, want, 1e-9), "{name}: {g} vs {want}");
        }
        // All-white maximises every sum.
        let white = RgbImage::from_pixel(CHUNK as u32 * 2 + 1, 3, image::Rgb([255; 3]));
        let f = image_features(&white);
        assert_eq!((f.get("brightness"), f.get("contrast"), f.get("sharpness")), (Some(1.0), Some(0.0), Some(0.0)));
    }

    #[test]
    fn the_vector_and_baseline_paths_agree() {
        for (w, h) in [(1, 1), (3, 3), (17, 5), (1000, 7), (CHUNK as u32 + 9, 3)] {
            let image = noise(w, h, 99);
            let (w, h) = (w as usize, h as usize);
            assert_eq!(image_totals(image.as_raw(), w, h), image_totals_body(image.as_raw(), w, h), "{w}x{h}");
        }
    }

    #[test]
    fn score_features_are_confidence_and_entropy_of_the_whole_distribution() {
        let f = score_features(&[0.25, 0.25, 0.25, 0.25]);
        assert_eq!(f.get("confidence"), Some(0.25));
        assert!((f.get("entropy").unwrap() - 4f64.ln()).abs() < 1e-12);
        let one_hot = score_features(&[0.0, 1.0, 0.0]);
        assert_eq!((one_hot.get("confidence"), one_hot.get("entropy")), (Some(1.0), Some(0.0)));
        // scipy.stats.entropy([0.7, 0.2, 0.1]) = 0.8018185525433373
        let f = score_features(&[0.7, 0.2, 0.1]);
        assert!((f.get("entropy").unwrap() - 0.8018185525433373).abs() < 1e-7, "{f:?}");
        // Sigmoid scores are normalised: [0.9, 0.9] is as uncertain as [0.5, 0.5].
        assert!((score_features(&[0.9, 0.9]).get("entropy").unwrap() - 2f64.ln()).abs() < 1e-12);
        assert_eq!(score_features(&[]), Features(vec![("confidence", 0.0), ("entropy", 0.0)]));
        assert_eq!(embedding_features(&[3.0, 4.0]).get("embedding_norm"), Some(5.0));
    }

    #[test]
    fn text_length_features_and_json() {
        let f = text_length_features(&TextLength { chars: 12, tokens: 8, unknown: 2, truncated: true });
        assert_eq!(
            serde_json::to_value(&f).unwrap(),
            serde_json::json!({"chars": 12.0, "tokens": 8.0, "unknown_share": 0.25, "truncated": 1.0})
        );
        assert_eq!(serde_json::to_value(&f).unwrap(), f.to_json());
        let names: Vec<&str> = f.0.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, TEXT_FEATURES);
        let nan = Features(vec![("entropy", f64::NAN)]);
        assert_eq!(serde_json::to_value(&nan).unwrap(), serde_json::json!({"entropy": null}));
    }
}
