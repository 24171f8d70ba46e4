//! Release strategies rehearsed on replayed traffic: A/B tests, shadow deployments and canary
//! releases of a model B against the current model A.
//!
//! - **Side by side**: every request to both models (the Playground's comparison, on traffic).
//! - **A/B** ([`Strategy::Ab`]): each request to exactly one arm, B with weight w, chosen by a
//!   stable hash of the request id ([`arm_for`]): the same id always lands on the same arm,
//!   and raising w only moves requests from A to B, never back.
//! - **Shadow**: A answers; B gets a copy on its own thread ([`crate::monitor::replay::Route::shadow`])
//!   whose answer is only recorded, so a slow or failing B never delays or breaks A. Paired
//!   analysis on the request id.
//! - **Canary** ([`canary`]): B's weight steps up while each step is judged against A; failed
//!   checks roll back, the last step promotes.
//!
//! [`rollout::Rollout`] runs a strategy over a [`crate::monitor::replay::Replay`]: it routes
//! each request, keeps the per-arm statistics (counts, latency percentiles, accuracy with
//! Wilson intervals, fixed-horizon and always-valid sequential significance, paired shadow
//! statistics, the canary's decision trail) and passes every event on, so the predictions go
//! through the same monitor and prediction log as any other traffic, with their arm recorded.

pub mod canary;
pub mod report;
pub mod rollout;

use serde::Serialize;

pub use canary::{Action, Canary, CanaryPlan, CheckOutcome, Decision, GateResult, GateVerdict, Gates, Phase};
pub use rollout::{Rollout, RolloutConfig, RolloutError, RolloutSnapshot};

/// The current model (A, control) or the new one (B, candidate / canary / experiment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Arm {
    A,
    B,
}

impl Arm {
    pub const BOTH: [Arm; 2] = [Arm::A, Arm::B];

    pub fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "A" => Some(Self::A),
            "B" => Some(Self::B),
            _ => None,
        }
    }
}

/// How requests are split between A and B.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Strategy {
    SideBySide,
    /// `weight_b`: B's share of the requests, in percent.
    Ab {
        weight_b: f64,
    },
    Shadow,
    Canary(CanaryPlan),
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::SideBySide => "side by side",
            Self::Ab { .. } => "A/B",
            Self::Shadow => "shadow",
            Self::Canary(_) => "canary",
        }
    }
}

/// The arm request `request_id` goes to when B takes `weight_b` percent of the traffic: the
/// request's point in [0, 100) from a hash of its id (FNV-1a, then SplitMix64's finaliser so
/// that ids differing in their last digit spread evenly) is below `weight_b` for B.
pub fn arm_for(request_id: &str, weight_b: f64) -> Arm {
    if request_point(request_id) < weight_b {
        Arm::B
    } else {
        Arm::A
    }
}

/// The request's stable point in [0, 100).
fn request_point(request_id: &str) -> f64 {
    let mut z = crate::store::fnv1a(request_id.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_even_and_monotone() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("replay-18f3a-0-{i}")).collect();
        for w in [1.0, 5.0, 25.0, 50.0] {
            let b = ids.iter().filter(|id| arm_for(id, w) == Arm::B).count() as f64 / ids.len() as f64 * 100.0;
            // Binomial sd at 50 %: 0.35 points; 4 sd.
            assert!((b - w).abs() < 1.5, "weight {w}: B got {b:.2} %");
        }
        for id in &ids[..500] {
            assert_eq!(arm_for(id, 25.0), arm_for(id, 25.0));
            if arm_for(id, 5.0) == Arm::B {
                assert_eq!(arm_for(id, 25.0), Arm::B, "raising B's weight never moves a request back to A");
            }
        }
        assert_eq!(arm_for("x", 0.0), Arm::A);
        assert_eq!(arm_for("x", 100.0), Arm::B);
    }
}
