//! Injected input drift for images (brightness, contrast, Gaussian noise, blur and rotation) and
//! for texts (casing, typos, truncation, words from another vocabulary), each with a strength,
//! deterministic given a seed. Used to build drifted evaluation sets, the "newer
//! data" a model update is trained on, and drifted traffic to replay. This is data preparation,
//! not deployment: `deploy/` is for routing and release strategies.
//!
//! Image spec syntax: `brightness=0.2,contrast=0.5,noise=0.1,blur=0.8,rotate=20` (any subset, any
//! order). Text drift has no spec of its own here: the replay's drift schedule
//! (`monitor::replay::DriftSchedule`) sets it.

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

/// The spec [`ImageDrift::parse`] reads back: the non-zero fields, `contrast=0.5,noise=0.1`.
impl std::fmt::Display for ImageDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields = [
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("noise", self.noise),
            ("blur", self.blur),
            ("rotate", self.rotate),
        ];
        let parts: Vec<String> = fields.iter().filter(|(_, v)| *v != 0.0).map(|(n, v)| format!("{n}={v}")).collect();
        f.write_str(&parts.join(","))
    }
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

/// How a text's letters are recased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Casing {
    Upper,
    Lower,
    /// Each letter upper or lower case at random.
    Random,
}

impl Casing {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "upper" => Some(Self::Upper),
            "lower" => Some(Self::Lower),
            "random" => Some(Self::Random),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Upper => "upper",
            Self::Lower => "lower",
            Self::Random => "random",
        }
    }
}

/// How strongly to drift each text. [`TextDrift::default`] leaves texts alone (note `keep_share`
/// is 1 there, not 0).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextDrift {
    /// Share of words (0..1) kept from the start of the text; the rest is cut off.
    pub keep_share: f32,
    /// Share of words (0..1) replaced by words of [`OTHER_VOCABULARY`].
    pub vocabulary_share: f32,
    /// How recased words are recased, and the share of words (0..1) recased.
    pub casing: Option<Casing>,
    pub casing_share: f32,
    /// Chance (0..1) that each letter is dropped or swapped with the next one.
    pub typo_rate: f32,
}

impl Default for TextDrift {
    fn default() -> Self {
        Self { keep_share: 1.0, vocabulary_share: 0.0, casing: None, casing_share: 0.0, typo_rate: 0.0 }
    }
}

/// The "different vocabulary" drifted texts borrow from: legal, engineering and finance words
/// that review and chat corpora rarely contain, so a model trained on those sees unfamiliar
/// (often unknown) tokens.
pub const OTHER_VOCABULARY: [&str; 48] = [
    "indemnification",
    "subrogation",
    "tortfeasor",
    "escrow",
    "amortization",
    "debenture",
    "covenant",
    "arbitrage",
    "collateralized",
    "fiduciary",
    "promissory",
    "lien",
    "torque",
    "flange",
    "hydraulic",
    "thermocouple",
    "impedance",
    "capacitor",
    "gearbox",
    "manifold",
    "crankshaft",
    "viscosity",
    "tensile",
    "alloy",
    "sediment",
    "aquifer",
    "isotope",
    "catalyst",
    "enzyme",
    "mitochondria",
    "ribosome",
    "tectonic",
    "jurisdiction",
    "affidavit",
    "plaintiff",
    "statute",
    "easement",
    "bylaw",
    "tariff",
    "ledger",
    "accrual",
    "depreciation",
    "solvency",
    "annuity",
    "underwriter",
    "actuarial",
    "derivative",
    "liquidity",
];

impl TextDrift {
    pub fn is_identity(&self) -> bool {
        self.keep_share >= 1.0
            && self.vocabulary_share <= 0.0
            && (self.casing.is_none() || self.casing_share <= 0.0)
            && self.typo_rate <= 0.0
    }

    /// Applies every transformation, in a fixed order: truncation, vocabulary, casing, typos.
    /// Words are split on whitespace and joined with single spaces once any word-level change
    /// applies. Shares of words are exact (rounded), chosen at random; typos are per letter.
    pub fn apply(&self, text: &str, seed: u64) -> String {
        if self.is_identity() {
            return text.to_string();
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if self.keep_share < 1.0 {
            let keep = share_of(words.len(), self.keep_share.max(0.0));
            words.truncate(keep);
        }
        if self.vocabulary_share > 0.0 {
            for i in pick(&mut rng, words.len(), self.vocabulary_share) {
                words[i] = OTHER_VOCABULARY[rng.random_range(0..OTHER_VOCABULARY.len())].to_string();
            }
        }
        if let Some(casing) = self.casing.filter(|_| self.casing_share > 0.0) {
            for i in pick(&mut rng, words.len(), self.casing_share) {
                words[i] = match casing {
                    Casing::Upper => words[i].to_uppercase(),
                    Casing::Lower => words[i].to_lowercase(),
                    Casing::Random => words[i]
                        .chars()
                        .flat_map(|c| {
                            let upper: bool = rng.random();
                            let cased: Vec<char> =
                                if upper { c.to_uppercase().collect() } else { c.to_lowercase().collect() };
                            cased
                        })
                        .collect(),
                };
            }
        }
        let mut out = words.join(" ");
        if self.typo_rate > 0.0 {
            out = typos(&out, self.typo_rate.min(1.0), &mut rng);
        }
        out
    }
}

/// `share` of `n`, rounded, within 0..=n.
fn share_of(n: usize, share: f32) -> usize {
    ((n as f64 * share.clamp(0.0, 1.0) as f64).round() as usize).min(n)
}

/// A random `share` of the indices `0..n` (exactly the rounded count).
fn pick(rng: &mut impl Rng, n: usize, share: f32) -> Vec<usize> {
    let count = share_of(n, share);
    let mut indices: Vec<usize> = (0..n).collect();
    // Partial Fisher-Yates: the first `count` entries are a uniform sample.
    for i in 0..count {
        let j = rng.random_range(i..n);
        indices.swap(i, j);
    }
    indices.truncate(count);
    indices
}

/// Each letter, with chance `rate`, is dropped or swapped with the following letter.
fn typos(text: &str, rate: f32, rng: &mut impl Rng) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() && rng.random::<f32>() < rate {
            let next_is_letter = chars.get(i + 1).is_some_and(|n| n.is_alphabetic());
            if next_is_letter && rng.random::<bool>() {
                out.push(chars[i + 1]);
                out.push(c);
                i += 2;
                continue;
            }
            i += 1; // dropped
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
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
    #[test]
    fn text_drift_is_deterministic_and_does_what_it_says() {
        let text = "the staff were kind and the room was spotless and quiet every night";
        let words = text.split_whitespace().count();
        assert_eq!(TextDrift::default().apply(text, 1), text);

        let cut = TextDrift { keep_share: 0.5, ..Default::default() }.apply(text, 1);
        assert_eq!(cut.split_whitespace().count(), (words as f64 * 0.5).round() as usize);
        assert!(text.starts_with(&cut));

        let other = TextDrift { vocabulary_share: 0.5, ..Default::default() };
        let swapped = other.apply(text, 9);
        let replaced = swapped.split_whitespace().zip(text.split_whitespace()).filter(|(a, b)| a != b).count();
        let foreign = swapped.split_whitespace().filter(|w| OTHER_VOCABULARY.contains(w)).count();
        let half_of_words = (words as f64 * 0.5).round() as usize;
        assert_eq!(foreign, half_of_words, "{swapped}");
        assert_eq!(replaced, half_of_words, "{swapped}");
        assert_eq!(other.apply(text, 9), swapped);
        assert_ne!(other.apply(text, 10), swapped);

        let upper = TextDrift { casing: Some(Casing::Upper), casing_share: 1.0, ..Default::default() };
        assert_eq!(upper.apply(text, 3), text.to_uppercase());
        let half = TextDrift { casing: Some(Casing::Upper), casing_share: 0.5, ..Default::default() }.apply(text, 3);
        assert_eq!(half.split_whitespace().filter(|w| w.chars().all(char::is_uppercase)).count(), half_of_words);
        let random = TextDrift { casing: Some(Casing::Random), casing_share: 1.0, ..Default::default() }.apply(text, 3);
        assert_eq!(random.to_lowercase(), text);
        assert!(random != text && random != text.to_uppercase());

        let typo = TextDrift { typo_rate: 0.2, ..Default::default() };
        let typed = typo.apply(text, 5);
        assert_eq!(typed, typo.apply(text, 5));
        assert_ne!(typed, typo.apply(text, 6));
        assert_ne!(typed, text);
        // Every letter keeps or loses its place; letters are never invented.
        let letters = |s: &str| {
            let mut v: Vec<char> = s.chars().filter(|c| c.is_alphabetic()).collect();
            v.sort();
            v
        };
        let (before, after) = (letters(text), letters(&typed));
        assert!(after.len() < before.len() && after.len() > before.len() * 6 / 10, "{typed}");
        assert!(after.iter().all(|c| before.contains(c)));
        assert_eq!(Casing::parse(" Upper"), Some(Casing::Upper));
        assert_eq!(Casing::parse("title"), None);
    }
}
