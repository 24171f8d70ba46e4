//! Image inputs: decoding anything the `image` crate reads into RGB (EXIF orientation applied,
//! as `transformers.image_utils.load_image` does), and the Hugging Face image processors'
//! preprocessing, reproduced exactly: PIL's resampling (ported from Pillow's `Resample.c`,
//! fixed-point 8-bit arithmetic included, so pixels match bit for bit), shortest-edge and
//! `crop_pct` rules, centre crop with zero padding, rescale and normalise in float32.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use serde_json::Value;

/// Images above this many pixels are refused before decoding (Pillow warns at 89 M).
pub const MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("image {} is {width}x{height} pixels, over the {}-megapixel limit", path.display(), MAX_PIXELS / 1_000_000)]
    TooLarge { path: PathBuf, width: u32, height: u32 },
    #[error("image {} has no pixels", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Preprocessor { path: PathBuf, reason: String },
}

/// Decodes an image file to RGB.
pub fn decode_image_file(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = std::fs::read(path).map_err(|e| ImageError::Unreadable { path: path.into(), reason: e.to_string() })?;
    decode_image_bytes(&bytes, path)
}

/// Decodes image bytes to RGB; `name` is only used in messages.
pub fn decode_image_bytes(bytes: &[u8], name: &Path) -> Result<RgbImage, ImageError> {
    let unreadable = |reason: String| ImageError::Unreadable { path: name.into(), reason };
    if bytes.is_empty() {
        return Err(unreadable("the file is empty".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| unreadable(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(unreadable("not a recognised image format (PNG, JPEG, GIF, WebP, BMP, TIFF, ...)".into()));
    };
    let mut decoder = reader.into_decoder().map_err(|e| unreadable(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    check_dimensions(width as u64, height as u64, name)?;
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let libjpeg = if format == image::ImageFormat::Jpeg { decode_jpeg_like_pillow(bytes) } else { None };
    let mut image = match libjpeg {
        Some(result) => DynamicImage::ImageRgb8(result.map_err(unreadable)?),
        None => DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e.to_string()))?,
    };
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// The limits every image input meets before its pixels are touched, whatever its origin (a
/// file, a drop, the clipboard): at most [`MAX_PIXELS`], at least one pixel.
pub fn check_dimensions(width: u64, height: u64, name: &Path) -> Result<(), ImageError> {
    if width.saturating_mul(height) > MAX_PIXELS || width > u32::MAX as u64 || height > u32::MAX as u64 {
        let clamp = |v: u64| v.min(u32::MAX as u64) as u32;
        return Err(ImageError::TooLarge { path: name.into(), width: clamp(width), height: clamp(height) });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Empty { path: name.into() });
    }
    Ok(())
}

/// Decodes a JPEG with libjpeg (mozjpeg's decoder is libjpeg-turbo's: accurate integer IDCT and
/// fancy upsampling), as Pillow does, so pixels match the Python pipelines exactly; other JPEG
/// decoders round differently. `None` for CMYK/YCCK files, which the `image` crate converts.
fn decode_jpeg_like_pillow(bytes: &[u8]) -> Option<Result<RgbImage, String>> {
    let result = std::panic::catch_unwind(|| -> Result<Option<RgbImage>, String> {
        let decompress = mozjpeg::Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
        if matches!(decompress.color_space(), mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK) {
            return Ok(None);
        }
        let mut started = decompress.rgb().map_err(|e| e.to_string())?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
        // A truncated file still yields rows; libjpeg warns and pads, Pillow raises.
        started.finish().map_err(|e| format!("truncated or corrupt JPEG ({e})"))?;
        RgbImage::from_raw(width, height, pixels).map(Some).ok_or_else(|| "JPEG decoder returned too few pixels".into())
    });
    match result {
        Ok(Ok(Some(image))) => Some(Ok(image)),
        Ok(Ok(None)) => None,
        Ok(Err(reason)) => Some(Err(reason)),
        Err(_) => Some(Err("corrupt JPEG data".into())),
    }
}

/// Pillow's resampling filters, numbered as in `PIL.Image.Resampling` (and preprocessor configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Nearest,
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Resample {
    pub fn from_pil(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Nearest,
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Self::Nearest | Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        }
        match self {
            Self::Nearest | Self::Box => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: the first input index and fixed-point weights (Pillow's `precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
fn coefficients(in_size: u32, out_size: u32, filter: Resample) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut weights: Vec<f64> =
                (0..count).map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss)).collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            let fixed = weights
                .iter()
                .map(|&w| {
                    let scaled = w * (1u32 << PRECISION_BITS) as f64;
                    if w < 0.0 {
                        (-0.5 + scaled) as i32
                    } else {
                        (0.5 + scaled) as i32
                    }
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(value: i64) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes like `PIL.Image.resize(size, resample)` on an RGB image. Two separable passes with
/// 8-bit rounding in between; as in Pillow 10+, the vertical pass runs first when the height
/// shrinks by more than twice as many pixels as the width (which changes rounding, so it matters).
pub fn resize_like_pil(image: &RgbImage, width: u32, height: u32, filter: Resample) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    if (in_w, in_h) == (width, height) {
        return image.clone();
    }
    if filter == Resample::Nearest {
        return resize_nearest(image, width, height);
    }
    let shrink_h = in_h as i64 - height as i64;
    let vertical_first = shrink_h > 0 && shrink_h > (in_w as i64 - width as i64) * 2;
    if vertical_first {
        resample_pass(&resample_pass(image, height, filter, Axis::Vertical), width, filter, Axis::Horizontal)
    } else {
        resample_pass(&resample_pass(image, width, filter, Axis::Horizontal), height, filter, Axis::Vertical)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Axis {
    Horizontal,
    Vertical,
}

/// One pass of Pillow's `ImagingResample{Horizontal,Vertical}_8bpc`. Integer sums, so the
/// order of the additions does not change the result: the vertical pass accumulates whole rows
/// (contiguous, vectorisable) instead of walking each column.
fn resample_pass(image: &RgbImage, out_size: u32, filter: Resample, axis: Axis) -> RgbImage {
    let (w, h) = image.dimensions();
    let in_size = if axis == Axis::Horizontal { w } else { h };
    if in_size == out_size {
        return image.clone();
    }
    let (out_w, out_h) = if axis == Axis::Horizontal { (out_size, h) } else { (w, out_size) };
    let coeffs = coefficients(in_size, out_size, filter);
    // 32-bit sums, as Pillow's: |weights| sum to under 1.5 for every filter, so 255 × that ×
    // 2^22 stays below 2^31.
    let half = 1i32 << (PRECISION_BITS - 1);
    let src = image.as_raw();
    let (row_in, row_out) = (w as usize * 3, out_w as usize * 3);
    let mut out = vec![0u8; row_out * out_h as usize];
    match axis {
        Axis::Horizontal => {
            for (row, out_row) in src.chunks_exact(row_in).zip(out.chunks_exact_mut(row_out)) {
                for ((start, weights), pixel) in coeffs.iter().zip(out_row.chunks_exact_mut(3)) {
                    let mut sums = [half; 3];
                    let taps = &row[start * 3..(start + weights.len()) * 3];
                    for (&weight, p) in weights.iter().zip(taps.chunks_exact(3)) {
                        sums[0] += p[0] as i32 * weight;
                        sums[1] += p[1] as i32 * weight;
                        sums[2] += p[2] as i32 * weight;
                    }
                    pixel.copy_from_slice(&[clip8(sums[0] as i64), clip8(sums[1] as i64), clip8(sums[2] as i64)]);
                }
            }
        }
        Axis::Vertical => {
            let mut sums = vec![0i32; row_in];
            for ((start, weights), out_row) in coeffs.iter().zip(out.chunks_exact_mut(row_out)) {
                sums.fill(half);
                for (k, &weight) in weights.iter().enumerate() {
                    let row = &src[(start + k) * row_in..(start + k + 1) * row_in];

                    for (sum, &value) in sums.iter_mut().zip(row) {
                        *sum += value as i32 * weight;
                    }
                }
                for (o, &sum) in out_row.iter_mut().zip(&sums) {
                    *o = clip8(sum as i64);
                }
            }
        }
    }
    RgbImage::from_raw(out_w, out_h, out).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

fn resize_nearest(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let (sx, sy) = (in_w as f64 / width as f64, in_h as f64 / height as f64);
    RgbImage::from_fn(width, height, |x, y| {
        let ix = (((x as f64 + 0.5) * sx) as u32).min(in_w - 1);
        let iy = (((y as f64 + 0.5) * sy) as u32).min(in_h - 1);
        *image.get_pixel(ix, iy)
    })
}

/// `transformers.image_transforms.center_crop`, zero padding included.
pub fn center_crop(image: &RgbImage, crop_w: u32, crop_h: u32) -> RgbImage {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (cw, ch) = (crop_w as i64, crop_h as i64);
    let top = (h - ch).div_euclid(2);
    let left = (w - cw).div_euclid(2);
    if top >= 0 && left >= 0 {
        return image::imageops::crop_imm(image, left as u32, top as u32, crop_w, crop_h).to_image();
    }
    let (new_h, new_w) = (ch.max(h), cw.max(w));
    let top_pad = (new_h - h + 1) / 2;
    let left_pad = (new_w - w + 1) / 2;
    let mut canvas = RgbImage::new(new_w as u32, new_h as u32);
    image::imageops::replace(&mut canvas, image, left_pad, top_pad);
    let (top, left) = ((top + top_pad).max(0), (left + left_pad).max(0));
    let bottom = (top + ch).min(new_h);
    let right = (left + cw).min(new_w);
    image::imageops::crop_imm(&canvas, left as u32, top as u32, (right - left) as u32, (bottom - top) as u32).to_image()
}

/// `get_resize_output_image_size(..., default_to_square=False)`: the short side becomes `size`.
fn shortest_edge_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = (size as u64 * long as u64 / short.max(1) as u64) as u32;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ResizeRule {
    None,
    Exact {
        width: u32,
        height: u32,
    },
    ShortestEdge(u32),
    /// ConvNeXt: below 384, resize the short side to `size / crop_pct` and crop `size`; else warp.
    CropPct {
        size: u32,
        crop_pct: f64,
    },
}

/// A Hugging Face image processor, read from preprocessor_config.json.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocessor {
    resize: ResizeRule,
    resample: Resample,
    crop: Option<(u32, u32)>,
    rescale: Option<f64>,
    normalize: Option<([f32; 3], [f32; 3])>,
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.261_302_6, 0.275_777_1];

/// Which image processor family a checkpoint uses when it has no preprocessor_config.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessorFamily {
    Vit,
    ConvNext,
    Clip,
    /// SiglipImageProcessor: a square resize (bicubic), no crop, mean and std 0.5.
    Siglip,
}

impl ImagePreprocessor {
    /// The transformers defaults for a processor family at a given image size.
    pub fn defaults(family: ProcessorFamily, image_size: u32) -> Self {
        match family {
            ProcessorFamily::Vit => Self {
                resize: ResizeRule::Exact { width: image_size, height: image_size },
                resample: Resample::Bilinear,
                crop: None,
                rescale: Some(1.0 / 255.0),
                normalize: Some(([0.5; 3], [0.5; 3])),
            },
            ProcessorFamily::ConvNext => Self {
                resize: ResizeRule::CropPct { size: image_size, crop_pct: 224.0 / 256.0 },
                resample: Resample::Bicubic,
                crop: None,
                rescale: Some(1.0 / 255.0),
                normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
            },
            ProcessorFamily::Siglip => Self {
                resize: ResizeRule::Exact { width: image_size, height: image_size },
                resample: Resample::Bicubic,
                crop: None,
                rescale: Some(1.0 / 255.0),
                normalize: Some(([0.5; 3], [0.5; 3])),
            },
            ProcessorFamily::Clip => Self {
                resize: ResizeRule::ShortestEdge(image_size),
                resample: Resample::Bicubic,
                crop: Some((image_size, image_size)),
                rescale: Some(1.0 / 255.0),
                normalize: Some((CLIP_MEAN, CLIP_STD)),
            },
        }
    }

    /// Reads preprocessor_config.json, or the family defaults when the checkpoint has none.
    pub fn load(path: Option<&Path>, family: ProcessorFamily, image_size: u32) -> Result<Self, ImageError> {
        let Some(path) = path else { return Ok(Self::defaults(family, image_size)) };
        let error = |reason: String| ImageError::Preprocessor { path: path.into(), reason };
        let text = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let json: Value = serde_json::from_slice(&text).map_err(|e| error(format!("not valid JSON: {e}")))?;
        Self::from_json(&json, family, image_size).map_err(error)
    }

    fn from_json(json: &Value, family: ProcessorFamily, image_size: u32) -> Result<Self, String> {
        let mut p = Self::defaults(family, image_size);
        let kind = json
            .get("image_processor_type")
            .or_else(|| json.get("feature_extractor_type"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let is_convnext = kind.starts_with("ConvNext") || (kind.is_empty() && family == ProcessorFamily::ConvNext);
        // `size: 224` means a square for ViT-style processors and the short side for the others.
        let square_ints = kind.starts_with("ViT")
            || kind.starts_with("DeiT")
            || kind.starts_with("Siglip")
            || (kind.is_empty() && matches!(family, ProcessorFamily::Vit | ProcessorFamily::Siglip));
        let flag = |key: &str, default: bool| json.get(key).and_then(Value::as_bool).unwrap_or(default);
        let size = match json.get("size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_size(v, square_ints)?),
        };
        if let Some(code) = json.get("resample").and_then(Value::as_u64) {
            p.resample = Resample::from_pil(code).ok_or_else(|| format!("unknown `resample` {code}"))?;
        }
        p.resize = if !flag("do_resize", true) {
            ResizeRule::None
        } else if is_convnext {
            let shortest = match size.unwrap_or(Size::Shortest(image_size)) {
                Size::Shortest(s) => s,
                Size::Exact { width, .. } => width,
            };
            let crop_pct = json.get("crop_pct").and_then(Value::as_f64).unwrap_or(224.0 / 256.0);
            if !(crop_pct > 0.0 && crop_pct <= 1.0) {
                return Err(format!("`crop_pct` must be in (0, 1], found {crop_pct}"));
            }
            ResizeRule::CropPct { size: shortest, crop_pct }
        } else {
            match size {
                Some(Size::Exact { width, height }) => ResizeRule::Exact { width, height },
                Some(Size::Shortest(s)) => ResizeRule::ShortestEdge(s),
                None => p.resize,
            }
        };
        p.crop = if is_convnext || !flag("do_center_crop", p.crop.is_some()) {
            None
        } else {
            match json.get("crop_size") {
                None | Some(Value::Null) => p.crop,
                Some(v) => match parse_size(v, true)? {
                    Size::Exact { width, height } => Some((width, height)),
                    Size::Shortest(s) => Some((s, s)),
                },
            }
        };
        p.rescale = if flag("do_rescale", true) {
            Some(json.get("rescale_factor").and_then(Value::as_f64).unwrap_or(1.0 / 255.0))
        } else {
            None
        };
        p.normalize = if flag("do_normalize", true) {
            let (default_mean, default_std) = p.normalize.unwrap_or(([0.5; 3], [0.5; 3]));
            Some((
                parse_triplet(json.get("image_mean"), default_mean)?,
                parse_triplet(json.get("image_std"), default_std)?,
            ))
        } else {
            None
        };
        Ok(p)
    }

    /// The geometric part: resize and crop, on 8-bit pixels as PIL does.
    pub fn resize_and_crop(&self, image: &RgbImage) -> RgbImage {
        let (w, h) = image.dimensions();
        match &self.resize {
            ResizeRule::None => self.crop_if_needed(image.clone()),
            ResizeRule::Exact { width, height } => {
                self.crop_if_needed(resize_like_pil(image, *width, *height, self.resample))
            }
            ResizeRule::ShortestEdge(size) => {
                let (nw, nh) = shortest_edge_size(w, h, *size);
                self.crop_if_needed(resize_like_pil(image, nw, nh, self.resample))
            }
            ResizeRule::CropPct { size, crop_pct } => {
                if *size < 384 {
                    let short = (*size as f64 / crop_pct) as u32;
                    let (nw, nh) = shortest_edge_size(w, h, short);
                    center_crop(&resize_like_pil(image, nw, nh, self.resample), *size, *size)
                } else {
                    resize_like_pil(image, *size, *size, self.resample)
                }
            }
        }
    }

    fn crop_if_needed(&self, image: RgbImage) -> RgbImage {
        match self.crop {
            Some((cw, ch)) => center_crop(&image, cw, ch),
            None => image,
        }
    }

    /// Channel-first float32 values of one image: rescale, then normalise, in float32.
    pub fn pixel_values(&self, image: &RgbImage) -> (Vec<f32>, u32, u32) {
        let image = self.resize_and_crop(image);
        let (w, h) = image.dimensions();
        let plane = (w * h) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, pixel) in image.pixels().enumerate() {
            for c in 0..3 {
                let mut v = match self.rescale {
                    Some(factor) => (pixel.0[c] as f64 * factor) as f32,
                    None => pixel.0[c] as f32,
                };
                if let Some((mean, std)) = &self.normalize {
                    v = (v - mean[c]) / std[c];
                }
                out[c * plane + i] = v;
            }
        }
        (out, w, h)
    }

    /// A `(batch, 3, height, width)` tensor for a batch of images.
    pub fn batch_tensor(&self, images: &[RgbImage], device: &Device) -> Result<Tensor, candle_core::Error> {
        let mut data = Vec::new();
        let mut dims = None;
        for image in images {
            let (values, w, h) = self.pixel_values(image);
            if *dims.get_or_insert((w, h)) != (w, h) {
                // Shortest-edge resizing without a crop keeps aspect ratios: batch one by one.
                return Err(candle_core::Error::Msg(
                    "images of different aspect ratios cannot be batched by this processor".into(),
                ));
            }
            data.extend_from_slice(&values);
        }
        let (w, h) = dims.unwrap_or((0, 0));
        Tensor::from_vec(data, (images.len(), 3, h as usize, w as usize), device)
    }
}

enum Size {
    Exact { width: u32, height: u32 },
    Shortest(u32),
}

fn parse_size(value: &Value, square_ints: bool) -> Result<Size, String> {
    let positive = |v: Option<&Value>, key: &str| -> Result<Option<u32>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 && n <= 16384 => Ok(Some(n as u32)),
                _ => Err(format!("`{key}` must be a positive integer, found {v}")),
            },
        }
    };
    match value {
        Value::Number(_) => {
            let n = positive(Some(value), "size")?.unwrap_or(224);
            Ok(if square_ints { Size::Exact { width: n, height: n } } else { Size::Shortest(n) })
        }
        Value::Object(map) => {
            let height = positive(map.get("height"), "height")?;
            let width = positive(map.get("width"), "width")?;
            if let (Some(width), Some(height)) = (width, height) {
                return Ok(Size::Exact { width, height });
            }
            if let Some(s) = positive(map.get("shortest_edge"), "shortest_edge")? {
                return Ok(Size::Shortest(s));
            }
            Err(format!("unsupported `size` {value}: expected height/width or shortest_edge"))
        }
        Value::Array(items) if items.len() == 2 => {
            let height = positive(items.first(), "size[0]")?.unwrap_or(224);
            let width = positive(items.get(1), "size[1]")?.unwrap_or(224);
            Ok(Size::Exact { width, height })
        }
        other => Err(format!("unsupported `size` {other}")),
    }
}

fn parse_triplet(value: Option<&Value>, default: [f32; 3]) -> Result<[f32; 3], String> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
        Some(Value::Array(items)) if items.len() == 3 => {
            let mut out = [0f32; 3];
            for (o, v) in out.iter_mut().zip(items) {
                *o = v.as_f64().ok_or_else(|| format!("mean/std values must be numbers, found {v}"))? as f32;
            }
            Ok(out)
        }
        Some(other) => Err(format!("image mean/std must be a list of 3 numbers, found {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant_images_survive_resizing() {
        let image = RgbImage::from_pixel(37, 23, image::Rgb([10, 200, 255]));
        for filter in [Resample::Bilinear, Resample::Bicubic, Resample::Lanczos, Resample::Box, Resample::Hamming] {
            let out = resize_like_pil(&image, 11, 50, filter);
            assert_eq!(out.dimensions(), (11, 50));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{filter:?}");
        }
    }

    #[test]
    fn bilinear_halving_averages_pairs() {
        // Reference values from Pillow: Image.fromarray(ramp).resize((4, 1), Image.BILINEAR).
        let image = RgbImage::from_fn(8, 1, |x, _| image::Rgb([(x * 10) as u8; 3]));
        let out = resize_like_pil(&image, 4, 1, Resample::Bilinear);
        let values: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(values, vec![7, 25, 45, 63]);
    }

    #[test]
    fn crop_pads_small_images_with_zeros() {
        let image = RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9]));
        let out = center_crop(&image, 4, 3);
        assert_eq!(out.dimensions(), (4, 3));
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(1, 1).0, [9, 9, 9]);
    }

    #[test]
    fn shortest_edge_keeps_aspect_ratio_like_transformers() {
        assert_eq!(shortest_edge_size(451, 300, 224), (336, 224));
        assert_eq!(shortest_edge_size(300, 451, 36), (36, 54));
    }

    #[test]
    fn odd_images_decode_or_fail_clearly() {
        let err = decode_image_bytes(b"definitely not an image", Path::new("x.png")).unwrap_err();
        assert!(err.to_string().contains("x.png"), "{err}");
        let err = decode_image_bytes(b"", Path::new("empty.jpg")).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
        // A PNG header that claims 60000 x 60000 pixels.
        let mut png = Vec::new();
        image::RgbImage::new(1, 1).write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        png[16..20].copy_from_slice(&60000u32.to_be_bytes());
        png[20..24].copy_from_slice(&60000u32.to_be_bytes());
        let err = decode_image_bytes(&png, Path::new("bomb.png")).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. } | ImageError::Unreadable { .. }), "{err}");
    }
}
