//! Drift schedules: how strongly a replay's inputs are drifted at each request index.
//!
//! # Grammar
//!
//! What users type in the Monitor view's replay panel and after `modeldeck monitor --drift`:
//!
//! ```text
//! SCHEDULE := STEP ( (',' | ';') STEP )*
//! STEP     := NAME '=' VALUE [ '@' START [ '+' RAMP ] ]
//! ```
//!
//! From request `START` (counted from 0 over the whole replay, loops included; default 0) the
//! drift moves linearly from where it was (no drift, or what an earlier step of the same name
//! left) to `VALUE` over `RAMP` requests (default 0: a step change), then holds. At request
//! `START + k` a step has moved `min(k / RAMP, 1)` of the way, so `brightness=-0.4@500+300` is 0
//! at request 500, -0.2 at 650 and -0.4 from 800 on. Later steps of the same name take over from
//! the value reached when they start. Whitespace is ignored.
//!
//! | NAME         | VALUE                        | no drift | applies to |
//! |--------------|------------------------------|----------|------------|
//! | `brightness` | -1..1, share of full scale added | 0    | images     |
//! | `contrast`   | 0..1, share of contrast removed  | 0    | images     |
//! | `noise`      | 0..1, sd of Gaussian noise       | 0    | images     |
//! | `blur`       | 0..20, Gaussian sigma in pixels  | 0    | images     |
//! | `rotate`     | -180..180 degrees                | 0    | images     |
//! | `casing`     | `upper`, `lower` or `random`; the share of words recased ramps from 0 to 1 | 0 | texts |
//! | `typos`      | 0..1, chance per letter of a drop or swap | 0 | texts |
//! | `truncate`   | 0..1, share of words KEPT        | 1        | texts      |
//! | `vocabulary` | 0..1, share of words replaced by [`OTHER_VOCABULARY`] words | 0 | texts |
//!
//! Example: `brightness=-0.4@500+300; noise=0.1@1000` or `typos=0.1@200+100, truncate=0.5@400`.
//!
//! [`OTHER_VOCABULARY`]: crate::eval::perturb::OTHER_VOCABULARY

use std::fmt;

use crate::eval::perturb::{Casing, ImageDrift, TextDrift};

/// The drift one request gets: image and text parts (only the part matching the data applies).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AppliedDrift {
    pub image: ImageDrift,
    pub text: TextDrift,
}

impl AppliedDrift {
    pub fn is_identity(&self) -> bool {
        self.image.is_identity() && self.text.is_identity()
    }
}

/// What a schedule step drifts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftKnob {
    Brightness,
    Contrast,
    Noise,
    Blur,
    Rotate,
    Casing,
    Typos,
    Truncate,
    Vocabulary,
}

impl DriftKnob {
    pub const ALL: [DriftKnob; 9] = [
        Self::Brightness,
        Self::Contrast,
        Self::Noise,
        Self::Blur,
        Self::Rotate,
        Self::Casing,
        Self::Typos,
        Self::Truncate,
        Self::Vocabulary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Brightness => "brightness",
            Self::Contrast => "contrast",
            Self::Noise => "noise",
            Self::Blur => "blur",
            Self::Rotate => "rotate",
            Self::Casing => "casing",
            Self::Typos => "typos",
            Self::Truncate => "truncate",
            Self::Vocabulary => "vocabulary",
        }
    }

    pub fn is_image(self) -> bool {
        matches!(self, Self::Brightness | Self::Contrast | Self::Noise | Self::Blur | Self::Rotate)
    }

    /// The value that means "no drift".
    fn identity(self) -> f32 {
        if self == Self::Truncate {
            1.0
        } else {
            0.0
        }
    }

    fn range(self) -> (f32, f32) {
        match self {
            Self::Brightness => (-1.0, 1.0),
            Self::Blur => (0.0, 20.0),
            Self::Rotate => (-180.0, 180.0),
            _ => (0.0, 1.0),
        }
    }
}

/// One `NAME=VALUE@START+RAMP` step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftStep {
    pub knob: DriftKnob,
    /// The value reached after the ramp (for `casing`, the share of words recased: 1).
    pub target: f32,
    /// `casing` steps only.
    pub casing: Option<Casing>,
    pub start: u64,
    pub ramp: u64,
    /// Where the ramp starts from: the value earlier steps of this knob had reached at `start`.
    from: f32,
}

impl DriftStep {
    fn value_at(&self, index: u64) -> f32 {
        let progress = if self.ramp == 0 { 1.0 } else { ((index - self.start) as f64 / self.ramp as f64).min(1.0) };
        (self.from as f64 + (self.target as f64 - self.from as f64) * progress) as f32
    }
}

impl fmt::Display for DriftStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.casing {
            Some(c) => write!(f, "casing={}", c.name())?,
            None => write!(f, "{}={}", self.knob.name(), self.target)?,
        }
        if self.start > 0 || self.ramp > 0 {
            write!(f, "@{}", self.start)?;
        }
        if self.ramp > 0 {
            write!(f, "+{}", self.ramp)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("drift schedule step `{step}`: {reason}")]
pub struct ScheduleError {
    /// The offending step, as typed.
    pub step: String,
    pub reason: String,
}

/// A parsed schedule (see the module docs for the grammar).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftSchedule {
    /// Sorted by knob, then start.
    steps: Vec<DriftStep>,
}

impl DriftSchedule {
    pub fn parse(spec: &str) -> Result<Self, ScheduleError> {
        let mut steps = Vec::new();
        for part in spec.split([',', ';']).map(str::trim).filter(|p| !p.is_empty()) {
            steps.push(parse_step(part)?);
        }
        if steps.is_empty() {
            return Err(ScheduleError {
                step: spec.trim().into(),
                reason: "no steps; expected NAME=VALUE[@START[+RAMP]], e.g. brightness=-0.4@500+300".into(),
            });
        }
        steps.sort_by_key(|s| (DriftKnob::ALL.iter().position(|k| *k == s.knob), s.start));
        // Each step ramps from what the steps before it (same knob) had reached at its start.
        for i in 0..steps.len() {
            let knob = steps[i].knob;
            let earlier = steps[..i].iter().rev().find(|s| s.knob == knob);
            steps[i].from = earlier.map_or(knob.identity(), |s| s.value_at(steps[i].start));
        }
        Ok(Self { steps })
    }

    pub fn steps(&self) -> &[DriftStep] {
        &self.steps
    }

    pub fn affects_images(&self) -> bool {
        self.steps.iter().any(|s| s.knob.is_image())
    }

    pub fn affects_texts(&self) -> bool {
        self.steps.iter().any(|s| !s.knob.is_image())
    }

    /// The drift request `index` gets.
    pub fn at(&self, index: u64) -> AppliedDrift {
        let mut drift = AppliedDrift::default();
        for knob in DriftKnob::ALL {
            let Some(step) = self.steps.iter().rev().find(|s| s.knob == knob && s.start <= index) else { continue };
            let value = step.value_at(index);
            match knob {
                DriftKnob::Brightness => drift.image.brightness = value,
                DriftKnob::Contrast => drift.image.contrast = value,
                DriftKnob::Noise => drift.image.noise = value,
                DriftKnob::Blur => drift.image.blur = value,
                DriftKnob::Rotate => drift.image.rotate = value,
                DriftKnob::Casing => {
                    drift.text.casing = step.casing;
                    drift.text.casing_share = value;
                }
                DriftKnob::Typos => drift.text.typo_rate = value,
                DriftKnob::Truncate => drift.text.keep_share = value,
                DriftKnob::Vocabulary => drift.text.vocabulary_share = value,
            }
        }
        drift
    }
}

impl fmt::Display for DriftSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DriftSchedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn parse_step(part: &str) -> Result<DriftStep, ScheduleError> {
    let bad = |reason: String| ScheduleError { step: part.into(), reason };
    let (name, rest) = part
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=VALUE[@START[+RAMP]], e.g. brightness=-0.4@500+300".into()))?;
    let name = name.trim().to_ascii_lowercase();
    let knob = DriftKnob::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
        let known: Vec<&str> = DriftKnob::ALL.iter().map(|k| k.name()).collect();
        bad(format!("unknown drift `{name}` (known: {})", known.join(", ")))
    })?;
    let (value, timing) = match rest.split_once('@') {
        Some((v, t)) => (v.trim(), Some(t.trim())),
        None => (rest.trim(), None),
    };
    let count = |text: &str, what: &str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| bad(format!("{what} `{}` is not a whole number of requests", text.trim())))
    };
    let (start, ramp) = match timing {
        None => (0, 0),
        Some(t) => match t.split_once('+') {
            Some((s, r)) => (count(s, "start")?, count(r, "ramp")?),
            None => (count(t, "start")?, 0),
        },
    };
    let (target, casing) = if knob == DriftKnob::Casing {
        let casing =
            Casing::parse(value).ok_or_else(|| bad(format!("casing `{value}` is not one of upper, lower, random")))?;
        (1.0, Some(casing))
    } else {
        let target: f32 = value.parse().map_err(|_| bad(format!("value `{value}` is not a number")))?;
        let (low, high) = knob.range();
        if !target.is_finite() || target < low || target > high {
            return Err(bad(format!("{} = {value} is out of range ({low}..{high})", knob.name())));
        }
        (target, None)
    };
    Ok(DriftStep { knob, target, casing, start, ramp, from: knob.identity() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_linearly_then_holds() {
        let s = DriftSchedule::parse("brightness=-0.4@500+300").unwrap();
        let b = |i| s.at(i).image.brightness;
        assert_eq!((b(0), b(499), b(500)), (0.0, 0.0, 0.0));
        assert!((b(650) + 0.2).abs() < 1e-6);
        assert!((b(575) + 0.1).abs() < 1e-6);
        assert_eq!((b(800), b(10_000)), (-0.4, -0.4));
        assert!(s.at(400).is_identity() && !s.at(501).is_identity());
        assert!(s.affects_images() && !s.affects_texts());
    }

    #[test]
    fn several_steps_chain_from_where_the_last_one_was() {
        let s = DriftSchedule::parse(" noise=0.2@10 ; brightness=0.5@0+100, brightness=0@50+50;casing=upper@5+10 ")
            .unwrap();
        let at = |i| s.at(i);
        // The second brightness step starts at 0.25 (half of the first ramp) and goes to 0.
        assert!((at(50).image.brightness - 0.25).abs() < 1e-6);
        assert!((at(75).image.brightness - 0.125).abs() < 1e-6);
        assert_eq!(at(100).image.brightness, 0.0);
        assert_eq!((at(9).image.noise, at(10).image.noise), (0.0, 0.2));
        assert_eq!(at(4).text.casing, None);
        assert_eq!(at(10).text.casing, Some(Casing::Upper));
        assert!((at(10).text.casing_share - 0.5).abs() < 1e-6);
        assert_eq!(s.to_string(), "brightness=0.5@0+100, brightness=0@50+50, noise=0.2@10, casing=upper@5+10");
        assert_eq!(DriftSchedule::parse(&s.to_string()).unwrap(), s);

        let t = DriftSchedule::parse("truncate=0.5@0+10,typos=0.1,vocabulary=0.3@2").unwrap();
        assert_eq!(t.at(0).text.keep_share, 1.0);
        assert!((t.at(5).text.keep_share - 0.75).abs() < 1e-6);
        assert_eq!(
            (t.at(0).text.typo_rate, t.at(1).text.vocabulary_share, t.at(2).text.vocabulary_share),
            (0.1, 0.0, 0.3)
        );
        assert!(t.affects_texts() && !t.affects_images());
    }

    #[test]
    fn errors_name_the_bad_step() {
        let err = |spec: &str| DriftSchedule::parse(spec).unwrap_err();
        let e = err("brightness=-0.4@500+300, fog=1@3");
        assert_eq!(e.step, "fog=1@3");
        assert!(e.to_string().contains("unknown drift `fog`") && e.to_string().contains("brightness"), "{e}");
        assert!(err("brightness=-2").to_string().contains("out of range (-1..1)"));
        assert!(err("brightness=dark").to_string().contains("value `dark` is not a number"));
        assert!(err("contrast=0.5@x").to_string().contains("start `x`"));
        assert!(err("contrast=0.5@5+-3").to_string().contains("ramp `-3`"));
        assert!(err("casing=title").to_string().contains("upper, lower, random"));
        assert!(err("noise").to_string().contains("NAME=VALUE"));
        assert!(err(" ,; ").to_string().contains("no steps"));
        assert_eq!(err("truncate=1.5").step, "truncate=1.5");
    }
}
