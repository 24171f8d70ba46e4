//! Injected input drift for images: brightness, contrast, Gaussian noise, blur and rotation, each
//! with a strength, deterministic given a seed. Used to build drifted evaluation sets, the "newer
//! data" a model update is trained on, and drifted traffic to replay. This is data preparation,
//! not deployment: `deploy/` is for routing and release strategies.
//!
//! Spec syntax: `brightness=0.2,contrast=0.5,noise=0.1,blur=0.8,rotate=20` (any subset, any order).

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};

/// How strongly to drift each image. Zero means "leave alone" for every field.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageDrift {
    /// Added to every channel, as a fraction of full scale (-1..1).
    pub brightness: f32,
    /// Fraction of contrast removed (0..1): pixels move towards the image mean by this share.
    pub contrast: f32,
    /// Standard deviation of additive Gaussian noise, as a fraction of full scale.
    pub noise: f32,
    /// Gaussian blur sigma, in pixels.
    pub blur: f32,
    /// Rotation in degrees (counter-clockwise) about the centre; corners fill with black.
    pub rotate: f32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DriftError {
    #[error("drift spec `{0}`: expected name=value pairs such as `contrast=0.5,noise=0.1`")]
    Syntax(String),
    #[error("unknown drift `{0}` (known: brightness, contrast, noise, blur, rotate)")]
    Unknown(String),
    #[error("drift `{name}` = {value} is out of range ({range})")]
    Range { name: String, value: f32, range: &'static str },
}

impl ImageDrift {
    pub fn parse(spec: &str) -> Result<Self, DriftError> {
        let mut drift = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| DriftError::Syntax(part.into()))?;
            let value: f32 = value.trim().parse().map_err(|_| DriftError::Syntax(part.into()))?;
            let (slot, range, ok) = match name.trim() {
                "brightness" => (&mut drift.brightness, "-1..1", (-1.0..=1.0).contains(&value)),
                "contrast" => (&mut drift.contrast, "0..1", (0.0..=1.0).contains(&value)),
                "noise" => (&mut drift.noise, "0..1", (0.0..=1.0).contains(&value)),
                "blur" => (&mut drift.blur, "0..20", (0.0..=20.0).contains(&value)),
                "rotate" => (&mut drift.rotate, "-180..180", (-180.0..=180.0).contains(&value)),
                other => return Err(DriftError::Unknown(other.into())),
            };
            if !ok || !value.is_finite() {
                return Err(DriftError::Range { name: name.trim().into(), value, range });
            }
            *slot = value;
        }
        Ok(drift)
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// Applies every transformation, in a fixed order: rotate, blur, contrast, brightness, noise.
    pub fn apply(&self, image: &RgbImage, seed: u64) -> RgbImage {
        let mut out = image.clone();
        if self.rotate != 0.0 {
            out = rotate(&out, self.rotate);
        }
        if self.blur > 0.0 {
            out = image::imageops::blur(&out, self.blur);
        }
        if self.contrast > 0.0 {
            out = reduce_contrast(&out, self.contrast);
        }
        if self.brightness != 0.0 {
            let shift = self.brightness * 255.0;
            out.pixels_mut().for_each(|p| p.0 = p.0.map(|v| clamp_u8(v as f32 + shift)));
        }
        if self.noise > 0.0 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let sd = self.noise * 255.0;
            out.pixels_mut().for_each(|p| p.0 = p.0.map(|v| clamp_u8(v as f32 + sd * standard_normal(&mut rng))));
        }
        out
    }
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Box-Muller; one draw per call keeps the stream simple and deterministic.
fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn reduce_contrast(image: &RgbImage, amount: f32) -> RgbImage {
    let n = (image.width() * image.height()).max(1) as f32;
    let mean: f32 = image.pixels().map(|p| p.0.iter().map(|&v| v as f32).sum::<f32>() / 3.0).sum::<f32>() / n;
    let keep = 1.0 - amount;
    let mut out = image.clone();
    out.pixels_mut().for_each(|p| p.0 = p.0.map(|v| clamp_u8(mean + (v as f32 - mean) * keep)));
    out
}

/// Rotation about the centre with bilinear sampling.
fn rotate(image: &RgbImage, degrees: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    let sample = |x: f32, y: f32, c: usize| -> f32 {
        if x < 0.0 || y < 0.0 || x > (w - 1) as f32 || y > (h - 1) as f32 {
            return 0.0;
        }
        let (x0, y0) = (x.floor() as u32, y.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let p = |xx, yy| image.get_pixel(xx, yy).0[c] as f32;
        let top = p(x0, y0) * (1.0 - fx) + p(x1, y0) * fx;
        let bottom = p(x0, y1) * (1.0 - fx) + p(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    RgbImage::from_fn(w, h, |x, y| {
        // Inverse mapping: where in the source does this output pixel come from?
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = cos * dx - sin * dy + cx;
        let sy = sin * dx + cos * dy + cy;
        Rgb([0, 1, 2].map(|c| clamp_u8(sample(sx, sy, c))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image() -> RgbImage {
        RgbImage::from_fn(16, 12, |x, y| Rgb([(x * 15) as u8, (y * 20) as u8, ((x + y) * 7) as u8]))
    }

    fn mean(image: &RgbImage) -> f32 {
        image.pixels().flat_map(|p| p.0).map(|v| v as f32).sum::<f32>() / (image.len() as f32)
    }

    fn sd(image: &RgbImage) -> f32 {
        let m = mean(image);
        (image.pixels().flat_map(|p| p.0).map(|v| (v as f32 - m).powi(2)).sum::<f32>() / image.len() as f32).sqrt()
    }

    #[test]
    fn parses_specs_and_rejects_bad_ones() {
        let d = ImageDrift::parse("contrast=0.5, noise=0.1,rotate=-15").unwrap();
        assert_eq!((d.contrast, d.noise, d.rotate, d.blur), (0.5, 0.1, -15.0, 0.0));
        assert!(ImageDrift::parse("").unwrap().is_identity());
        assert!(matches!(ImageDrift::parse("fog=1"), Err(DriftError::Unknown(_))));
        assert!(matches!(ImageDrift::parse("contrast"), Err(DriftError::Syntax(_))));
        assert!(matches!(ImageDrift::parse("contrast=2"), Err(DriftError::Range { .. })));
    }

    #[test]
    fn each_transformation_moves_the_statistic_it_should() {
        let image = test_image();
        let brighter = ImageDrift { brightness: 0.2, ..Default::default() }.apply(&image, 1);
        assert!(mean(&brighter) > mean(&image) + 30.0);
        let flat = ImageDrift { contrast: 0.5, ..Default::default() }.apply(&image, 1);
        assert!((sd(&flat) - sd(&image) * 0.5).abs() < 1.5, "{} vs {}", sd(&flat), sd(&image));
        assert!((mean(&flat) - mean(&image)).abs() < 1.5);
        let blurred = ImageDrift { blur: 2.0, ..Default::default() }.apply(&image, 1);
        assert!(sd(&blurred) < sd(&image));
        let noisy = ImageDrift { noise: 0.2, ..Default::default() }.apply(&image, 1);
        let diff: f32 = noisy.pixels().zip(image.pixels()).map(|(a, b)| (a.0[0] as f32 - b.0[0] as f32).abs()).sum();
        assert!(diff / (image.width() * image.height()) as f32 > 10.0);
        // A quarter turn of a square image moves the left column to the bottom row.
        let square = RgbImage::from_fn(5, 5, |x, _| Rgb([if x == 0 { 255 } else { 0 }; 3]));
        let turned = ImageDrift { rotate: 90.0, ..Default::default() }.apply(&square, 1);
        assert!((0..5).all(|x| turned.get_pixel(x, 4).0[0] == 255), "{:?}", turned);
        assert!((0..4).all(|y| turned.get_pixel(0, y).0[0] == 0));
    }

    #[test]
    fn deterministic_given_a_seed() {
        let image = test_image();
        let drift = ImageDrift::parse("noise=0.1,contrast=0.3,rotate=10,blur=0.5,brightness=-0.1").unwrap();
        assert_eq!(drift.apply(&image, 42), drift.apply(&image, 42));
        assert_ne!(drift.apply(&image, 42), drift.apply(&image, 43));
        assert_eq!(ImageDrift::default().apply(&image, 3), image);
    }
}
