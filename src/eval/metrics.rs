//! Per-item metrics over the parsed JSON answer and the reference answer. Each metric kind
//! named in a task file yields one or more named scores in [0, 1] per item (`None` where a
//! score is undefined for that item, e.g. the valid-code ratio of an answer with no codes).
//! A malformed answer scores 0 on everything.

use crate::taxonomy::IcdTable;
use crate::text::words;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// A metric as a task file names it (`- kind: span_f1` ...). `field` is a key of the
/// answer object (dots go deeper: `a.b`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricSpec {
    /// 1 when the answer parses and conforms to the task's schema.
    SchemaValid,
    /// 1 when `field` equals the reference's (case and spacing ignored).
    Accuracy { field: String },
    /// Precision / recall / F1 of the set of `keys` tuples of the objects in the array
    /// `field` (entities, PHI spans, SDoH factors, events, relations).
    SpanF1 { field: String, keys: Vec<String> },
    /// ICD-10 codes (`key` of the objects in the array `field`): exact and approximate
    /// (same 3-character category) match P/R/F1, and the share of predicted codes that
    /// exist in the code table (`table`, relative to the task file).
    CodeMatch {
        field: String,
        key: String,
        table: PathBuf,
    },
    /// ROUGE-L F1 between the texts of `fields` (joined by line breaks).
    RougeL { fields: Vec<String> },
    /// A judge model's 1-5 grade of the answer against the reference, as (grade - 1) / 4,
    /// with the prompt `template` (relative to the task file; `system` and `user` blocks).
    /// Needs `--judge`; computed by the runner (a model call), not here.
    Judge { template: PathBuf },
}

impl MetricSpec {
    /// The names of the scores this metric yields (the first is its headline).
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            MetricSpec::SchemaValid => vec!["schema_valid"],
            MetricSpec::Accuracy { .. } => vec!["accuracy"],
            MetricSpec::SpanF1 { .. } => vec!["span_f1", "span_precision", "span_recall"],
            MetricSpec::CodeMatch { .. } => vec![
                "code_exact_f1",
                "code_exact_precision",
                "code_exact_recall",
                "code_approx_f1",
                "valid_code_ratio",
            ],
            MetricSpec::RougeL { .. } => vec!["rouge_l"],
            MetricSpec::Judge { .. } => vec!["judge_score"],
        }
    }

    /// Scores of one item. `answer` is None for a malformed answer (every score 0);
    /// `icd` is the loaded table of a `code_match` metric. (A well-formed answer's judge
    /// score is left to the runner.)
    pub fn score(
        &self,
        answer: Option<&Value>,
        reference: &Value,
        icd: Option<&IcdTable>,
        out: &mut BTreeMap<String, Option<f64>>,
    ) {
        let names = self.names();
        let Some(ans) = answer else {
            for n in names {
                out.insert(n.into(), Some(0.0));
            }
            return;
        };
        let values: Vec<Option<f64>> = match self {
            MetricSpec::Judge { .. } => return,
            MetricSpec::SchemaValid => vec![Some(1.0)],
            MetricSpec::Accuracy { field } => {
                let same = scalar(get(ans, field)) == scalar(get(reference, field));
                vec![Some(if same { 1.0 } else { 0.0 })]
            }
            MetricSpec::SpanF1 { field, keys } => {
                let (p, r, f) = prf(&tuples(ans, field, keys), &tuples(reference, field, keys));
                vec![Some(f), Some(p), Some(r)]
            }
            MetricSpec::CodeMatch { field, key, .. } => {
                let pred = codes(ans, field, key);
                let gold = codes(reference, field, key);
                let (p, r, f) = prf(&pred, &gold);
                let cat = |s: &HashSet<String>| -> HashSet<String> {
                    s.iter().map(|c| c.chars().take(3).collect()).collect()
                };
                let (_, _, fa) = prf(&cat(&pred), &cat(&gold));
                let valid = icd.and_then(|t| {
                    (!pred.is_empty()).then(|| {
                        pred.iter().filter(|c| t.get(c).is_some()).count() as f64
                            / pred.len() as f64
                    })
                });
                vec![Some(f), Some(p), Some(r), Some(fa), valid]
            }
            MetricSpec::RougeL { fields } => {
                let text = |v: &Value| {
                    fields
                        .iter()
                        .filter_map(|f| get(v, f).and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                vec![Some(rouge_l(&text(ans), &text(reference)))]
            }
        };
        for (n, v) in names.into_iter().zip(values) {
            out.insert(n.into(), v);
        }
    }
}

/// `v[a][b]...` for the dotted path `a.b`.
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// Lower case, inner whitespace collapsed, outer whitespace and punctuation trimmed.
pub fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_string()
}

fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(normalize(s)),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn tuples(v: &Value, field: &str, keys: &[String]) -> HashSet<String> {
    let items = get(v, field).and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .map(|o| {
            keys.iter()
                .map(|k| scalar(o.get(k)).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect()
}

fn codes(v: &Value, field: &str, key: &str) -> HashSet<String> {
    let items = get(v, field).and_then(Value::as_array);
    items
        .into_iter()
        .flatten()
        .filter_map(|o| o.get(key).and_then(Value::as_str))
        .map(|c| c.trim().to_ascii_uppercase().replace('.', ""))
        .filter(|c| !c.is_empty())
        .collect()
}

/// Precision, recall and F1 of a predicted set against a gold set (both empty: all 1).
pub fn prf(pred: &HashSet<String>, gold: &HashSet<String>) -> (f64, f64, f64) {
    if pred.is_empty() && gold.is_empty() {
        return (1.0, 1.0, 1.0);
    }
    let tp = pred.intersection(gold).count() as f64;
    let p = if pred.is_empty() {
        0.0
    } else {
        tp / pred.len() as f64
    };
    let r = if gold.is_empty() {
        0.0
    } else {
        tp / gold.len() as f64
    };
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

/// ROUGE-L F1 (longest common subsequence of tokens; both empty: 1).
pub fn rouge_l(pred: &str, gold: &str) -> f64 {
    let (a, b) = (words(pred), words(gold));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let mut prev = vec![0usize; b.len() + 1];
    for x in &a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                cur[j].max(prev[j + 1])
            };
        }
        prev = cur;
    }
    let lcs = prev[b.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, r) = (lcs / a.len() as f64, lcs / b.len() as f64);
    2.0 * p * r / (p + r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(v: &[&str]) -> HashSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn scores(m: &MetricSpec, a: Option<&Value>, r: &Value) -> BTreeMap<String, Option<f64>> {
        let mut out = BTreeMap::new();
        m.score(a, r, None, &mut out);
        out
    }

    #[test]
    fn prf_against_hand_computed_values() {
        // tp = 2 (b, c); p = 2/4, r = 2/3, f1 = 2*(1/2)(2/3)/(1/2+2/3) = 4/7.
        let (p, r, f) = prf(&set(&["a", "b", "c", "d"]), &set(&["b", "c", "e"]));
        assert_eq!((p, r), (0.5, 2.0 / 3.0));
        assert!((f - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(prf(&set(&[]), &set(&[])), (1.0, 1.0, 1.0));
        assert_eq!(prf(&set(&[]), &set(&["a"])), (0.0, 0.0, 0.0));
        assert_eq!(prf(&set(&["a"]), &set(&[])), (0.0, 0.0, 0.0));
        assert_eq!(prf(&set(&["x"]), &set(&["y"])), (0.0, 0.0, 0.0));
    }

    #[test]
    fn rouge_l_against_hand_computed_values() {
        // LCS("the cat sat on the mat", "the cat lay on the mat") = the cat on the mat = 5;
        // p = r = 5/6.
        assert!(
            (rouge_l("The cat sat on the mat.", "the cat lay on the mat") - 5.0 / 6.0).abs()
                < 1e-12
        );
        // LCS = "a c" (2): p = 2/3, r = 2/4, f = 2*(2/3)(1/2)/(2/3+1/2) = 4/7.
        assert!((rouge_l("a b c", "a c d e") - 4.0 / 7.0).abs() < 1e-12);
        // Order matters: "b a" vs "a b" has LCS 1: p = r = 1/2.
        assert!((rouge_l("b a", "a b") - 0.5).abs() < 1e-12);
        assert_eq!(rouge_l("", ""), 1.0);
        assert_eq!(rouge_l("x", ""), 0.0);
        assert_eq!(rouge_l("x y", "z"), 0.0);
    }

    #[test]
    fn span_f1_matches_tuples_after_normalisation() {
        let m = MetricSpec::SpanF1 {
            field: "entities".into(),
            keys: vec!["text".into(), "type".into()],
        };
        let gold = json!({"entities": [
            {"text": "Metformin", "type": "drug"},
            {"text": "type 2 diabetes", "type": "problem"},
            {"text": "HbA1c", "type": "test"}]});
        let pred = json!({"entities": [
            {"text": " metformin ", "type": "DRUG"},
            {"text": "type 2  diabetes.", "type": "problem"},
            {"text": "HbA1c", "type": "problem"},
            {"text": "insulin", "type": "drug"}]});
        // tp = 2 of 4 predicted and 3 gold: p 1/2, r 2/3, f 4/7.
        let s = scores(&m, Some(&pred), &gold);
        assert!((s["span_f1"].unwrap() - 4.0 / 7.0).abs() < 1e-12);
        assert_eq!(s["span_precision"], Some(0.5));
        assert_eq!(s["span_recall"], Some(2.0 / 3.0));
        let s = scores(&m, None, &gold);
        assert_eq!(s["span_f1"], Some(0.0));
    }

    #[test]
    fn code_match_exact_approximate_and_valid_ratio() {
        let table = IcdTable::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("taxonomy/icd10cm"),
        )
        .unwrap();
        let m = MetricSpec::CodeMatch {
            field: "codes".into(),
            key: "code".into(),
            table: "unused".into(),
        };
        let gold = json!({"codes": [{"code": "E11.9"}, {"code": "I10"}]});
        // E11.65 is the right category but not the code; Q99.99 does not exist.
        let pred = json!({"codes": [{"code": "e11.65"}, {"code": "I10"}, {"code": "Q99.99"}]});
        let mut s = BTreeMap::new();
        m.score(Some(&pred), &gold, Some(&table), &mut s);
        // exact: tp 1 of 3 / 2: p 1/3, r 1/2, f 2/5.
        assert!((s["code_exact_f1"].unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(s["code_exact_precision"], Some(1.0 / 3.0));
        assert_eq!(s["code_exact_recall"], Some(0.5));
        // categories: {E11, I10, Q99} vs {E11, I10}: p 2/3, r 1, f 0.8.
        assert!((s["code_approx_f1"].unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(s["valid_code_ratio"], Some(2.0 / 3.0));
        // No predicted codes: the ratio is undefined, not 0 or 1.
        let mut s = BTreeMap::new();
        m.score(Some(&json!({"codes": []})), &gold, Some(&table), &mut s);
        assert_eq!(s["valid_code_ratio"], None);
        assert_eq!(s["code_exact_f1"], Some(0.0));
    }

    #[test]
    fn accuracy_compares_normalised_scalars() {
        let m = MetricSpec::Accuracy {
            field: "label".into(),
        };
        let r = json!({"label": "Entailment"});
        assert_eq!(
            scores(&m, Some(&json!({"label": "entailment "})), &r)["accuracy"],
            Some(1.0)
        );
        assert_eq!(
            scores(&m, Some(&json!({"label": "neutral"})), &r)["accuracy"],
            Some(0.0)
        );
        assert_eq!(scores(&m, Some(&json!({})), &r)["accuracy"], Some(0.0));
        let b = MetricSpec::Accuracy {
            field: "x.has_error".into(),
        };
        let r = json!({"x": {"has_error": true}});
        assert_eq!(
            scores(&b, Some(&json!({"x": {"has_error": true}})), &r)["accuracy"],
            Some(1.0)
        );
        assert_eq!(
            scores(&b, Some(&json!({"x": {"has_error": false}})), &r)["accuracy"],
            Some(0.0)
        );
    }
}
