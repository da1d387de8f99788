//! Grounding checks, run as the `grounding` filter: ICD-10-CM codes of clinical coding
//! answers exist in the shipped code table and fit the item's seed concept; spans that the
//! task's schema says are copied from the document (`text` of list items: NER entities,
//! de-identification PHI) occur in it.

use super::filters::{json_answer, Filter, FilterCtx, Verdict};
use crate::record::Record;
use crate::taxonomy::IcdTable;
use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

/// Something shaped like an ICD-10-CM code in free text.
static CODE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b").expect("valid regex")
});

pub(crate) struct Grounding;
impl Filter for Grounding {
    fn name(&self) -> &'static str {
        "grounding"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        let answer = json_answer(rec);
        if rec.task_type == "clinical_coding" {
            if let v @ Verdict::Drop(..) = codes(rec, answer.as_ref(), &cx.tax.icd) {
                return v;
            }
        }
        match (answer, cx.schemas.get(&rec.task_type)) {
            (Some(a), Some(s)) => spans(&rec.input, &a, &s.value),
            _ => Verdict::Keep,
        }
    }
}

/// The codes a coding answer assigns: `codes[].code` of a json answer; in a plain_text
/// answer every code-shaped token that has a dot or is in the table (so that "vitamin B12"
/// or "D5W" are not taken for codes).
fn answer_codes<'a>(rec: &'a Record, answer: Option<&'a Value>, icd: &IcdTable) -> Vec<&'a str> {
    match answer {
        Some(v) => v["codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str())
            .collect(),
        None => CODE
            .find_iter(&rec.output)
            .map(|m| m.as_str())
            .filter(|c| c.contains('.') || icd.get(c).is_some())
            .collect(),
    }
}

fn codes(rec: &Record, answer: Option<&Value>, icd: &IcdTable) -> Verdict {
    let codes = answer_codes(rec, answer, icd);
    if codes.is_empty() {
        return match answer {
            Some(_) => Verdict::Keep, // the schema requires at least one code
            None => Verdict::Drop("no_icd10_code", "the answer names no ICD-10-CM code".into()),
        };
    }
    let unknown: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|c| icd.get(c).is_none())
        .collect();
    if !unknown.is_empty() {
        let d = format!("not in the ICD-10-CM table: {}", unknown.join(", "));
        return Verdict::Drop("unknown_icd10_code", d);
    }
    let seed = match rec.concept_code.as_str() {
        "" => None,
        c => icd.get(c),
    };
    let Some(seed) = seed else {
        return Verdict::Keep;
    };
    if codes
        .iter()
        .any(|c| icd.get(c).is_some_and(|k| k.chapter == seed.chapter))
    {
        return Verdict::Keep;
    }
    let d = format!(
        "none of {} is in the chapter of the seed concept {} ({})",
        codes.join(", "),
        seed.code,
        seed.chapter
    );
    Verdict::Drop("implausible_icd10_code", d)
}

/// Every `text` of the items of a list whose item schema has a `text` property must occur in
/// the document: exactly, or after collapsing whitespace and lowercasing both.
fn spans(input: &str, answer: &Value, schema: &Value) -> Verdict {
    let Some(props) = schema["properties"].as_object() else {
        return Verdict::Keep;
    };
    let mut norm_input = None;
    for (field, sub) in props {
        if sub["items"]["properties"]["text"].is_null() {
            continue;
        }
        for (i, item) in answer[field].as_array().into_iter().flatten().enumerate() {
            let Some(text) = item["text"].as_str() else {
                continue;
            };
            if input.contains(text) {
                continue;
            }
            let norm_input = norm_input.get_or_insert_with(|| normalize(input));
            if !norm_input.contains(&normalize(text)) {
                let d = format!("{field}[{i}].text {text:?} is not in the document");
                return Verdict::Drop("span_not_in_input", d);
            }
        }
    }
    Verdict::Keep
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::super::filters::tests::{json_record, reason, record, run_with, NOTE};
    use crate::record::Record;
    use serde_json::{json, Value};

    fn coding(output: &str, seed: &str) -> Record {
        Record {
            task_type: "clinical_coding".into(),
            instruction: "Assign the ICD-10-CM codes supported by this note.".into(),
            output: output.into(),
            concept_code: seed.into(),
            ..record()
        }
    }

    fn coding_json(codes: &[&str], seed: &str) -> Record {
        let items: Vec<Value> = codes
            .iter()
            .map(|c| {
                json!({"code": c, "description": "Heart failure", "role": "secondary",
                "evidence": "Acute on chronic heart failure"})
            })
            .collect();
        let rec = json_record(
            "clinical_coding",
            "Assign the ICD-10-CM codes.",
            json!({"codes": items}),
        );
        Record {
            concept_code: seed.into(),
            ..rec
        }
    }

    #[test]
    fn icd10_codes_exist() {
        assert_eq!(reason(&coding_json(&["I50.23", "I10"], "I50.23")), None);
        assert_eq!(
            reason(&coding_json(&["I50.23", "J18.7"], "")),
            Some("unknown_icd10_code")
        );
        let plain = "I50.23 Acute on chronic systolic heart failure; I10 Essential hypertension.";
        assert_eq!(reason(&coding(plain, "I50.23")), None);
        // Undotted codes are keyed without the dot; "vitamin B12" is no code.
        let b12 = "E119 type 2 diabetes and vitamin B12 deficiency anemia D51.0 are documented.";
        assert_eq!(reason(&coding(b12, "")), None);
        let made_up = "Heart failure is coded as I50.23 and the anemia as D51.Q9.";
        assert_eq!(reason(&coding(made_up, "")), Some("unknown_icd10_code"));
        let none = "The note documents acute on chronic systolic heart failure.";
        assert_eq!(reason(&coding(none, "")), Some("no_icd10_code"));
    }

    #[test]
    fn icd10_codes_fit_the_seed_concept() {
        // I10 shares the circulatory chapter with I50.23.
        assert_eq!(reason(&coding_json(&["J18.9", "I10"], "I50.23")), None);
        let rec = coding_json(&["J18.9", "E11.9"], "I50.23");
        let d = run_with(&rec, &Default::default()).unwrap_err();
        assert_eq!(
            (d.filter, d.reason),
            ("grounding", "implausible_icd10_code")
        );
        assert!(
            d.detail.contains("J18.9, E11.9") && d.detail.contains("circulatory"),
            "{}",
            d.detail
        );
        // An unknown seed (or none) checks nothing.
        assert_eq!(reason(&coding_json(&["J18.9"], "ZZZ")), None);
    }

    fn spans_record(task: &str, instruction: &str, field: &str, texts: &[&str]) -> Record {
        let items: Vec<Value> = texts
            .iter()
            .map(|t| match task {
                "deidentification" => json!({"text": t, "category": "name", "start": 0, "end": 1}),
                _ => json!({"text": t, "type": "problem", "assertion": "present", "start": 0, "end": 1}),
            })
            .collect();
        json_record(task, instruction, json!({ field: items }))
    }

    #[test]
    fn spans_occur_in_the_document() {
        let ner = |texts: &[&str]| {
            spans_record(
                "named_entity_recognition",
                "Identify the problems.",
                "entities",
                texts,
            )
        };
        assert_eq!(
            reason(&ner(&["shortness of breath", "Bibasilar  CRACKLES"])),
            None
        );
        let d = run_with(&ner(&["ankle edema", "pleural rub"]), &Default::default()).unwrap_err();
        assert_eq!(d.reason, "span_not_in_input");
        assert!(
            d.detail.contains("entities[1]") && d.detail.contains("pleural rub"),
            "{}",
            d.detail
        );
        let deid = |texts: &[&str]| spans_record("deidentification", "Find all PHI.", "phi", texts);
        assert_eq!(reason(&deid(&["Alvarez"])), None);
        assert_eq!(reason(&deid(&["Mrs. Alvarado"])), Some("span_not_in_input"));
        assert!(NOTE.contains("Mrs. Alvarez"));
    }
}
