//! The LLM judge: k self-consistency samples of a verdict (template `judge.j2`) (scores 1-5 on MediFlow's five
//! dimensions plus a rationale, constrained by `judge.schema.json`), aggregated by median;
//! the spread (max - min over samples, worst dimension) is kept. The stage that calls the
//! teacher lives in `engine::worker`; this module holds the config and the arithmetic.

use crate::teacher::TeacherConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// MediFlow's judge dimensions, in column order.
pub const DIMENSIONS: [&str; 5] = ["quality", "alignment", "coherence", "realism", "difficulty"];

/// `[judge] thresholds`: which thresholds select when the calibration is usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Thresholds {
    /// `[judge] min` and `min_mean`.
    #[default]
    Configured,
    /// The calibration's mean-score threshold (and no per-dimension minimum).
    Calibrated,
}

impl Thresholds {
    pub fn is_configured(&self) -> bool {
        *self == Thresholds::Configured
    }
}

/// `[judge]` in the run config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JudgeConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Self-consistency samples per record (MediFlow used 5).
    #[serde(default = "d_samples")]
    pub samples: u32,
    /// Valid samples needed for a verdict (default: a majority of `samples`).
    #[serde(default)]
    pub min_valid: Option<u32>,
    #[serde(default = "d_temperature")]
    pub temperature: f32,
    #[serde(default = "d_max_tokens")]
    pub max_tokens: u32,
    /// Verdict schema (default: `judge.schema.json` under `schemas_dir`).
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Minimum median score per dimension (dimensions not named are not thresholded).
    #[serde(default = "d_min")]
    pub min: BTreeMap<String, f64>,
    /// Minimum mean of the five median scores (0 = no threshold).
    #[serde(default = "d_min_mean")]
    pub min_mean: f64,
    /// A different teacher for judging (default: the generator's teacher).
    #[serde(default)]
    pub teacher: Option<TeacherConfig>,
    /// The judge's `calibration.json` (`mediflow audit --calibrate`). Without a usable one
    /// for this judge model and template, scores are recorded and no threshold applies
    /// (see `quality::calibration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<PathBuf>,
    /// With a usable calibration: `configured` (`min`, `min_mean`) or `calibrated` (the
    /// calibration's mean-score threshold).
    #[serde(default, skip_serializing_if = "Thresholds::is_configured")]
    pub thresholds: Thresholds,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig {
            enabled: false,
            samples: d_samples(),
            min_valid: None,
            temperature: d_temperature(),
            max_tokens: d_max_tokens(),
            schema: None,
            min: d_min(),
            min_mean: d_min_mean(),
            teacher: None,
            calibration: None,
            thresholds: Thresholds::Configured,
        }
    }
}

fn d_samples() -> u32 {
    5
}
fn d_temperature() -> f32 {
    0.7
}
fn d_max_tokens() -> u32 {
    300
}
fn d_min() -> BTreeMap<String, f64> {
    ["quality", "alignment", "coherence", "realism"]
        .into_iter()
        .map(|d| (d.to_string(), 3.0))
        .collect()
}
fn d_min_mean() -> f64 {
    3.0
}

impl JudgeConfig {
    pub fn min_valid(&self) -> u32 {
        self.min_valid.unwrap_or(self.samples / 2 + 1)
    }

    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.samples == 0 {
            p.push("`judge.samples` must be at least 1".to_string());
        }
        if self.min_valid() == 0 || self.min_valid() > self.samples {
            p.push(format!(
                "`judge.min_valid` must be within 1..={}, got {}",
                self.samples,
                self.min_valid()
            ));
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            p.push("`judge.temperature` must be within 0..=2".into());
        }
        if self.max_tokens == 0 {
            p.push("`judge.max_tokens` must be at least 1".into());
        }
        for (k, v) in &self.min {
            if !DIMENSIONS.contains(&k.as_str()) {
                p.push(format!(
                    "`judge.min`: unknown dimension {k:?} (known: {})",
                    DIMENSIONS.join(", ")
                ));
            }
            if !(1.0..=5.0).contains(v) {
                p.push(format!("`judge.min.{k}` must be within 1..=5, got {v}"));
            }
        }
        if !(0.0..=5.0).contains(&self.min_mean) {
            p.push("`judge.min_mean` must be within 0..=5".into());
        }
        if self.thresholds == Thresholds::Calibrated && self.calibration.is_none() {
            p.push("`judge.thresholds = \"calibrated\"` needs `judge.calibration`".into());
        }
        p
    }
}

/// One sample's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub scores: [f64; 5],
    pub rationale: String,
}

impl Verdict {
    /// Read a verdict from a schema-valid JSON object.
    pub fn from_json(v: &Value) -> Result<Verdict, String> {
        let mut scores = [0.0; 5];
        for (i, d) in DIMENSIONS.iter().enumerate() {
            let s = v[d]
                .as_f64()
                .ok_or_else(|| format!("`{d}` is not a number"))?;
            if !(1.0..=5.0).contains(&s) {
                return Err(format!("`{d}` = {s} is outside 1..=5"));
            }
            scores[i] = s;
        }
        Ok(Verdict {
            scores,
            rationale: v["rationale"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
    }
}

/// The aggregate of k samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Median per dimension (mean of the middle two for an even count).
    pub scores: [f64; 5],
    /// Largest max - min over the samples, over the dimensions.
    pub spread: f64,
    /// The rationale of the sample closest (L1) to the medians; the first on ties.
    pub rationale: String,
    pub samples: u32,
}

/// Aggregate the valid samples (at least one).
pub fn aggregate(samples: &[Verdict]) -> Aggregate {
    assert!(!samples.is_empty(), "aggregate needs a sample");
    let mut scores = [0.0; 5];
    let mut spread: f64 = 0.0;
    for (i, s) in scores.iter_mut().enumerate() {
        let col: Vec<f64> = samples.iter().map(|v| v.scores[i]).collect();
        let (lo, hi) = col
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        spread = spread.max(hi - lo);
        *s = crate::text::median(&col);
    }
    let distance = |v: &Verdict| -> f64 {
        v.scores
            .iter()
            .zip(&scores)
            .map(|(a, b)| (a - b).abs())
            .sum()
    };
    let closest = samples
        .iter()
        .min_by(|a, b| distance(a).total_cmp(&distance(b)))
        .expect("non-empty");
    Aggregate {
        scores,
        spread,
        rationale: closest.rationale.clone(),
        samples: samples.len() as u32,
    }
}

/// The acceptance rule with `[judge] min` and `min_mean`: `Err(detail)` names every
/// threshold the scores miss. Runs go through `calibration::Selection`, which applies it
/// only when the judge is calibrated.
pub fn accept(cfg: &JudgeConfig, scores: &[f64; 5]) -> Result<(), String> {
    accept_with(&cfg.min, cfg.min_mean, scores)
}

/// The acceptance rule with these minimums (per dimension; of the mean, 0 = none).
pub fn accept_with(
    min: &BTreeMap<String, f64>,
    min_mean: f64,
    scores: &[f64; 5],
) -> Result<(), String> {
    let mut misses = Vec::new();
    for (i, d) in DIMENSIONS.iter().enumerate() {
        if let Some(min) = min.get(*d) {
            if scores[i] < *min {
                misses.push(format!("{d} {} < {min}", scores[i]));
            }
        }
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    if mean < min_mean {
        misses.push(format!("mean {mean:.2} < {min_mean}"));
    }
    if misses.is_empty() {
        Ok(())
    } else {
        Err(misses.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: [f64; 5], r: &str) -> Verdict {
        Verdict {
            scores: s,
            rationale: r.into(),
        }
    }

    #[test]
    fn median_spread_and_closest_rationale() {
        let a = aggregate(&[
            v([4.0, 5.0, 3.0, 4.0, 2.0], "a"),
            v([5.0, 5.0, 4.0, 4.0, 3.0], "b"),
            v([1.0, 4.0, 4.0, 4.0, 3.0], "c"),
        ]);
        assert_eq!(a.scores, [4.0, 5.0, 4.0, 4.0, 3.0]);
        assert_eq!(a.spread, 4.0); // quality ranges 1..5
        assert_eq!(a.rationale, "b"); // distance 1, vs a: 2, c: 4
        assert_eq!(a.samples, 3);
        let even = aggregate(&[v([2.0; 5], "x"), v([5.0; 5], "y")]);
        assert_eq!(even.scores, [3.5; 5]);
        assert_eq!(even.rationale, "x", "ties go to the first sample");
        let one = aggregate(&[v([3.0; 5], "only")]);
        assert_eq!((one.spread, one.samples), (0.0, 1));
    }

    #[test]
    fn acceptance_names_every_miss() {
        let cfg = JudgeConfig::default();
        assert_eq!(accept(&cfg, &[4.0, 4.0, 3.0, 3.0, 1.0]), Ok(()));
        let e = accept(&cfg, &[2.0, 4.0, 3.0, 3.0, 1.0]).unwrap_err();
        assert!(
            e.contains("quality 2 < 3") && e.contains("mean 2.60 < 3"),
            "{e}"
        );
        // Difficulty has no minimum by default.
        assert_eq!(accept(&cfg, &[5.0, 5.0, 5.0, 5.0, 1.0]), Ok(()));
    }

    #[test]
    fn verdict_parsing_and_config_checks() {
        let ok = serde_json::json!({"rationale": " fine ", "quality": 4, "alignment": 5,
            "coherence": 4, "realism": 3, "difficulty": 2});
        assert_eq!(
            Verdict::from_json(&ok).unwrap().scores,
            [4.0, 5.0, 4.0, 3.0, 2.0]
        );
        let mut bad = ok.clone();
        bad["realism"] = serde_json::json!(9);
        assert!(Verdict::from_json(&bad).unwrap_err().contains("realism"));
        let cfg = JudgeConfig {
            samples: 4,
            min: [("tone".to_string(), 3.0)].into(),
            ..Default::default()
        };
        assert_eq!(cfg.min_valid(), 3);
        let p = cfg.validate();
        assert!(
            p.len() == 1 && p[0].contains("unknown dimension \"tone\""),
            "{p:?}"
        );
    }
}
