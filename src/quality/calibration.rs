//! Judge calibration: does the judge tell good rows from junk? `mediflow audit --calibrate`
//! judges hand-labelled rows and measures, per dimension and for the mean of the five
//! scores, the AUC of the score separating `good` from `junk` and the threshold that
//! classifies them most accurately; it writes that as `calibration.json`.
//!
//! A run reads the file named by `[judge] calibration` and decides here (`Selection`)
//! whether the judge may select records. The rule: the calibration is **usable** when the
//! mean score's AUC is at least `USABLE_AUC` (0.7: a random good row outscores a random
//! junk row 70% of the time); otherwise it is `near_chance`. Without a file, with a
//! near-chance one, or with one made for another judge model or judge template, the scores
//! are recorded and no threshold is applied. With a usable one the configured thresholds
//! apply (`thresholds = "configured"`, the default) or the calibrated mean threshold alone
//! (`thresholds = "calibrated"`: the per-dimension thresholds are reported, not applied,
//! since all of them together reject more rows than any one of them was measured to).

use super::judge::{JudgeConfig, Thresholds, DIMENSIONS};
use crate::error::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The mean score's AUC at or above which a calibration is `usable`.
pub const USABLE_AUC: f64 = 0.7;
pub const USABLE: &str = "usable";
pub const NEAR_CHANCE: &str = "near_chance";
/// The rule, as written into `calibration.json`.
pub const RULE: &str = "usable when the AUC of the mean of the five judge scores (good vs junk) \
                        is at least 0.7, else near_chance";
/// The key of the mean score among the dimensions of a calibration.
pub const MEAN: &str = "mean";

/// How well one score separates good from junk rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Separation {
    /// P(score of a random good row > that of a random junk row), ties counting half.
    pub auc: f64,
    /// Accept when score >= threshold: the observed score with the best accuracy (the
    /// lowest such score on ties, so ties keep more rows).
    pub threshold: f64,
    /// Share of all rows classified right at `threshold`.
    pub accuracy: f64,
    /// Share of good rows at or above `threshold`, and of junk rows below it.
    pub good_kept: f64,
    pub junk_rejected: f64,
}

/// `calibration.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub judge_model: String,
    pub judge_backend: String,
    /// The judge template as `name@content-hash`.
    pub template: String,
    pub samples: u32,
    /// Labelled rows with a judge verdict (those behind the figures).
    pub n: usize,
    pub n_good: usize,
    pub n_junk: usize,
    /// Labelled rows the judge gave no verdict (too few valid samples); not in the figures.
    #[serde(default)]
    pub n_unscored: usize,
    /// Per dimension, then `mean` (the mean of the five scores).
    pub dimensions: BTreeMap<String, Separation>,
    /// `usable` or `near_chance` (see `rule`).
    pub verdict: String,
    pub rule: String,
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub created_at: String,
}

impl Calibration {
    pub fn mean(&self) -> Option<&Separation> {
        self.dimensions.get(MEAN)
    }

    pub fn is_usable(&self) -> bool {
        self.verdict == USABLE
    }

    /// Read a `calibration.json`.
    pub fn load(path: &Path) -> Result<Calibration, Problem> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, format!("cannot read the judge calibration: {e}")))?;
        let cal: Calibration = serde_json::from_str(&text).map_err(|e| {
            Problem::at(
                path,
                Some(e.line()),
                format!("not a judge calibration (from `mediflow audit --calibrate`): {e}"),
            )
        })?;
        if cal.verdict == USABLE && cal.mean().is_none() {
            return Err(Problem::new(
                path,
                "a usable calibration needs a `mean` entry",
            ));
        }
        Ok(cal)
    }
}

/// AUC of `good` vs `junk` scores (Mann-Whitney, ties half). NaN when a class is empty.
pub fn auc(good: &[f64], junk: &[f64]) -> f64 {
    if good.is_empty() || junk.is_empty() {
        return f64::NAN;
    }
    let mut wins = 0.0;
    for g in good {
        for j in junk {
            wins += match g.total_cmp(j) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    wins / (good.len() * junk.len()) as f64
}

/// AUC and the most accurate threshold (`score >= t` = good) over the observed scores.
pub fn separation(good: &[f64], junk: &[f64]) -> Separation {
    let mut candidates: Vec<f64> = good.iter().chain(junk).copied().collect();
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    let n = (good.len() + junk.len()).max(1) as f64;
    let mut best = Separation {
        auc: auc(good, junk),
        threshold: f64::NAN,
        accuracy: -1.0,
        good_kept: 0.0,
        junk_rejected: 0.0,
    };
    for t in candidates {
        let kept = good.iter().filter(|s| **s >= t).count();
        let rejected = junk.iter().filter(|s| **s < t).count();
        let accuracy = (kept + rejected) as f64 / n;
        // Ascending candidates and a strict comparison: the lowest best threshold wins.
        if accuracy > best.accuracy {
            best.threshold = t;
            best.accuracy = accuracy;
            best.good_kept = kept as f64 / good.len().max(1) as f64;
            best.junk_rejected = rejected as f64 / junk.len().max(1) as f64;
        }
    }
    best
}

/// The mean of the five scores (what `min_mean` and the calibrated threshold apply to).
pub fn mean_score(scores: &[f64; 5]) -> f64 {
    crate::text::mean(scores)
}

/// Per dimension and for the mean score, the separation of good (`true`) from junk rows,
/// and the verdict by `RULE`. Needs at least one row of each label.
pub fn measure(
    rows: &[(bool, [f64; 5])],
) -> Result<(BTreeMap<String, Separation>, String), String> {
    let (n_good, n_junk) = (
        rows.iter().filter(|r| r.0).count(),
        rows.iter().filter(|r| !r.0).count(),
    );
    if n_good == 0 || n_junk == 0 {
        return Err(format!(
            "calibration needs judged rows of both labels, got {n_good} good and {n_junk} junk"
        ));
    }
    let split = |f: &dyn Fn(&[f64; 5]) -> f64| -> (Vec<f64>, Vec<f64>) {
        let good = rows.iter().filter(|r| r.0).map(|r| f(&r.1)).collect();
        let junk = rows.iter().filter(|r| !r.0).map(|r| f(&r.1)).collect();
        (good, junk)
    };
    let mut dims = BTreeMap::new();
    for (i, d) in DIMENSIONS.iter().enumerate() {
        let (g, j) = split(&|s| s[i]);
        dims.insert(d.to_string(), separation(&g, &j));
    }
    let (g, j) = split(&mean_score);
    let mean = separation(&g, &j);
    let verdict = if mean.auc >= USABLE_AUC {
        USABLE
    } else {
        NEAR_CHANCE
    };
    dims.insert(MEAN.to_string(), mean);
    Ok((dims, verdict.to_string()))
}

/// Whether and how the judge selects records in a run or an audit.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Thresholds apply.
    Select {
        min: BTreeMap<String, f64>,
        min_mean: f64,
        thresholds: Thresholds,
        calibration: PathBuf,
        auc_mean: f64,
        n: usize,
    },
    /// Scores are recorded; no threshold applies.
    Annotate {
        why: String,
        calibration: Option<PathBuf>,
        auc_mean: Option<f64>,
    },
}

impl Selection {
    /// Decide from `[judge]` and the calibration file it names (read here; an unreadable
    /// one is reported as the reason not to select: `check` reports it before a run).
    /// `judge_model` and `template` (`judge.j2@hash`) are the judge that will score.
    pub fn resolve(cfg: &JudgeConfig, judge_model: &str, template: &str) -> Selection {
        let Some(path) = &cfg.calibration else {
            return Selection::Annotate {
                why: "the judge is not calibrated (no `[judge] calibration` file; make one \
                      with `mediflow audit --calibrate`)"
                    .into(),
                calibration: None,
                auc_mean: None,
            };
        };
        let cal = match Calibration::load(path) {
            Ok(c) => c,
            Err(p) => {
                return Selection::Annotate {
                    why: p.to_string(),
                    calibration: Some(path.clone()),
                    auc_mean: None,
                }
            }
        };
        Selection::from_calibration(cfg, &cal, path, judge_model, template)
    }

    pub fn from_calibration(
        cfg: &JudgeConfig,
        cal: &Calibration,
        path: &Path,
        judge_model: &str,
        template: &str,
    ) -> Selection {
        let auc_mean = cal.mean().map(|m| m.auc);
        let annotate = |why: String| Selection::Annotate {
            why,
            calibration: Some(path.to_path_buf()),
            auc_mean,
        };
        if cal.judge_model != judge_model {
            return annotate(format!(
                "the calibration in {} is for judge model {:?}, not {judge_model:?}",
                path.display(),
                cal.judge_model
            ));
        }
        if cal.template != template {
            return annotate(format!(
                "the calibration in {} was made with judge template {}, not {template}",
                path.display(),
                cal.template
            ));
        }
        let Some(mean) = cal.mean().filter(|_| cal.is_usable()) else {
            return annotate(format!(
                "the judge is near chance: mean-score AUC {} on {} labelled rows ({})",
                auc_mean.map_or("n/a".into(), |a| format!("{a:.2}")),
                cal.n,
                path.display()
            ));
        };
        let (min, min_mean) = match cfg.thresholds {
            Thresholds::Configured => (cfg.min.clone(), cfg.min_mean),
            Thresholds::Calibrated => (BTreeMap::new(), mean.threshold),
        };
        Selection::Select {
            min,
            min_mean,
            thresholds: cfg.thresholds,
            calibration: path.to_path_buf(),
            auc_mean: mean.auc,
            n: cal.n,
        }
    }

    pub fn selects(&self) -> bool {
        matches!(self, Selection::Select { .. })
    }

    /// `Err(detail)` names every threshold the scores miss; always `Ok` when annotating.
    pub fn accept(&self, scores: &[f64; 5]) -> Result<(), String> {
        match self {
            Selection::Select { min, min_mean, .. } => {
                super::judge::accept_with(min, *min_mean, scores)
            }
            Selection::Annotate { .. } => Ok(()),
        }
    }

    /// The line `run` and `audit` print on stderr when a judge is used.
    pub fn message(&self) -> String {
        match self {
            Selection::Select {
                min,
                min_mean,
                thresholds,
                calibration,
                auc_mean,
                n,
            } => {
                let mut t: Vec<String> = min.iter().map(|(d, v)| format!("{d} >= {v}")).collect();
                if *min_mean > 0.0 {
                    t.push(format!("mean >= {min_mean}"));
                }
                format!(
                    "judge: calibrated on {n} labelled rows ({}): mean-score AUC {auc_mean:.2}, \
                     usable; thresholds {} ({})",
                    calibration.display(),
                    if thresholds.is_configured() {
                        "configured"
                    } else {
                        "calibrated"
                    },
                    if t.is_empty() {
                        "none".to_string()
                    } else {
                        t.join(", ")
                    }
                )
            }
            Selection::Annotate { why, .. } => format!(
                "warning: {why}. The judge's scores are recorded but do not select: thresholds \
                 not applied."
            ),
        }
    }

    /// For `stats.json` and `summary.json`.
    pub fn report(&self) -> Value {
        match self {
            Selection::Select {
                min,
                min_mean,
                thresholds,
                calibration,
                auc_mean,
                n,
            } => json!({
                "thresholds_applied": true, "thresholds": thresholds, "min": min,
                "min_mean": min_mean, "calibration": calibration, "auc_mean": auc_mean,
                "calibration_rows": n,
            }),
            Selection::Annotate {
                why,
                calibration,
                auc_mean,
            } => json!({
                "thresholds_applied": false, "why": why, "calibration": calibration,
                "auc_mean": auc_mean,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs_with_ties_half() {
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), 1.0);
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), 0.0);
        assert_eq!(auc(&[3.0], &[3.0]), 0.5);
        // good 2,4,5 vs junk 1,4: pairs (2>1) (2<4) (4>1) (4=4) (5>1) (5>4) = 4.5 of 6.
        assert_eq!(auc(&[2.0, 4.0, 5.0], &[1.0, 4.0]), 4.5 / 6.0);
        assert!(auc(&[], &[1.0]).is_nan());
    }

    #[test]
    fn threshold_is_the_most_accurate_observed_score() {
        // good 2,4,5 vs junk 1,4: t=2 keeps 3 good, rejects 1 junk: 4/5; t=4: 3/5; t=5: 3/5.
        let s = separation(&[2.0, 4.0, 5.0], &[1.0, 4.0]);
        assert_eq!((s.threshold, s.accuracy), (2.0, 0.8));
        assert_eq!((s.good_kept, s.junk_rejected), (1.0, 0.5));
        // Perfectly separated: the lowest good score.
        let s = separation(&[4.0, 4.5, 5.0], &[1.0, 2.0, 3.5]);
        assert_eq!((s.auc, s.threshold, s.accuracy), (1.0, 4.0, 1.0));
        // Ties in accuracy go to the lowest threshold: good 1,3 / junk 2: t=1 (2/3),
        // t=2 (1/3), t=3 (2/3) -> 1.
        let s = separation(&[1.0, 3.0], &[2.0]);
        assert_eq!((s.threshold, s.accuracy), (1.0, 2.0 / 3.0));
    }

    #[test]
    fn measure_decides_by_the_mean_auc() {
        let good = [4.0, 4.0, 4.0, 4.0, 3.0];
        let junk = [2.0, 2.0, 2.0, 2.0, 3.0];
        let rows = vec![(true, good), (true, good), (false, junk), (false, good)];
        let (dims, verdict) = measure(&rows).unwrap();
        // mean: good 3.8, 3.8 vs junk 2.2, 3.8: pairs 1 + 0.5 + 1 + 0.5 = 3 of 4.
        assert_eq!(dims[MEAN].auc, 0.75);
        assert_eq!(dims["difficulty"].auc, 0.5);
        assert_eq!(verdict, USABLE);
        let rows = vec![(true, good), (false, good)];
        assert_eq!(measure(&rows).unwrap().1, NEAR_CHANCE);
        assert!(measure(&[(true, good)]).is_err());
    }

    fn cal(verdict: &str, auc: f64) -> Calibration {
        let sep = Separation {
            auc,
            threshold: 3.4,
            accuracy: 0.8,
            good_kept: 0.9,
            junk_rejected: 0.7,
        };
        Calibration {
            judge_model: "m".into(),
            judge_backend: "openai".into(),
            template: "judge.j2@abc".into(),
            samples: 3,
            n: 40,
            n_good: 20,
            n_junk: 20,
            n_unscored: 0,
            dimensions: [(MEAN.to_string(), sep)].into(),
            verdict: verdict.into(),
            rule: RULE.into(),
            inputs: vec![],
            created_at: String::new(),
        }
    }

    #[test]
    fn selection_follows_the_calibration() {
        let p = Path::new("c.json");
        let mut cfg = JudgeConfig::default();
        let low = [2.0, 2.0, 2.0, 2.0, 2.0];
        // No file: annotate.
        let s = Selection::resolve(&cfg, "m", "judge.j2@abc");
        assert!(!s.selects() && s.accept(&low).is_ok());
        assert!(
            s.message().contains("thresholds not applied"),
            "{}",
            s.message()
        );
        // Near chance: annotate.
        let s = Selection::from_calibration(&cfg, &cal(NEAR_CHANCE, 0.55), p, "m", "judge.j2@abc");
        assert!(!s.selects() && s.accept(&low).is_ok());
        assert!(s.message().contains("0.55"), "{}", s.message());
        assert_eq!(s.report()["thresholds_applied"], false);
        // Another model or template: annotate.
        let good = cal(USABLE, 0.85);
        assert!(!Selection::from_calibration(&cfg, &good, p, "other", "judge.j2@abc").selects());
        assert!(!Selection::from_calibration(&cfg, &good, p, "m", "judge.j2@new").selects());
        // Usable: the configured thresholds...
        let s = Selection::from_calibration(&cfg, &good, p, "m", "judge.j2@abc");
        assert!(s.selects());
        assert!(s.accept(&low).unwrap_err().contains("quality 2 < 3"));
        assert!(s.accept(&[3.0, 3.0, 3.0, 3.0, 3.0]).is_ok());
        // ...or the calibrated mean threshold alone.
        cfg.thresholds = Thresholds::Calibrated;
        let s = Selection::from_calibration(&cfg, &good, p, "m", "judge.j2@abc");
        assert!(s
            .accept(&[3.0, 3.0, 3.0, 3.0, 3.0])
            .unwrap_err()
            .contains("mean 3.00 < 3.4"));
        assert!(s.accept(&[5.0, 2.0, 3.0, 4.0, 4.0]).is_ok());
        assert_eq!(s.report()["min_mean"], 3.4);
    }
}
