//! De-identification answers against the PHI we can find in the document ourselves:
//! titled and credentialed names, labelled names, record numbers, phone numbers, e-mail
//! addresses, dates and social security numbers. A redacted copy must leave none of it
//! in; a PHI list (plain text or `phi[]`) must miss none of it.

use crate::quality::filters::{Prepared, Verdict};
use regex::Regex;
use std::sync::LazyLock;

static PHI: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    let r = |s: &str| crate::quality::vocab::regex(s).expect("valid regex");
    vec![
        (
            "name",
            r(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+((?:[A-Z][a-zA-Z'’-]+\s+)?[A-Z][a-zA-Z'’-]+)"),
        ),
        (
            "name",
            r(
                r"\b((?:[A-Z][a-z'’-]+\s+)(?:[A-Z]\.\s+)?[A-Z][a-z'’-]+),?\s+(?:MD|DO|RN|NP|PA-C|PA|PhD|PharmD|LPN|CNA|MSW|LCSW|DPM|DDS)\b",
            ),
        ),
        (
            "name",
            r(
                r"(?i:\b(?:patient|pt|name|patient name|resident|client)\s*:\s*)([A-Z][a-z'’-]+(?:\s+[A-Z]\.?)?\s+[A-Z][a-z'’-]+)",
            ),
        ),
        (
            "id",
            r(
                r"(?i:\b(?:MRN|medical record(?: number| no\.?)?|acct|account(?: number| no\.?)?|member id|policy(?: number| no\.?)?|ssn)\s*(?:#|no\.?|number)?\s*:?\s*)([A-Z0-9][A-Z0-9-]{3,})",
            ),
        ),
        ("contact", r(r"(\(?\b\d{3}\)?[-.\s]\d{3}[-.]\d{4}\b)")),
        (
            "contact",
            r(r"\b([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,})\b"),
        ),
        ("date", r(r"\b(\d{1,2}/\d{1,2}/\d{2,4})\b")),
        (
            "date",
            r(
                r"\b((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4})\b",
            ),
        ),
        ("id", r(r"\b(\d{3}-\d{2}-\d{4})\b")),
    ]
});

/// PHI strings in `text`: for a name its last word (the surname), else the whole match.
fn phi_in(text: &str) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (kind, re) in PHI.iter() {
        for c in re.captures_iter(text) {
            let m = c.get(1).map_or("", |m| m.as_str());
            let key = match *kind {
                "name" => m
                    .split_whitespace()
                    .last()
                    .unwrap_or(m)
                    .trim_end_matches(['’', '\''])
                    .to_string(),
                _ => m.to_string(),
            };
            if key.chars().count() >= 2 && !out.iter().any(|(_, k)| *k == key) {
                out.push((kind, key));
            }
        }
    }
    out
}

/// The first item of a plain-text PHI list ("Frank Miller - name", "date: 03/12/2024")
/// that the document does not contain (case and spacing aside).
fn listed_not_in<'a>(answer: &'a str, doc: &str) -> Option<&'a str> {
    let doc = crate::text::normalize(doc);
    answer.lines().find_map(|line| {
        let line = line.trim().trim_start_matches(['-', '*', '•']).trim();
        let line = LIST_NUMBER.replace(line, "");
        let item = match (line.split_once(" - "), line.split_once(':')) {
            (Some((item, _)), _) => item,
            (None, Some((_, item))) => item,
            (None, None) => return None,
        };
        // "Maria Lopez (patient)": the kind in parentheses is not part of the item.
        let item = item.split(" (").next().unwrap_or(item);
        let item = item
            .trim()
            .trim_matches(|c: char| c == '"' || c == '\'' || c == '.');
        let words = crate::text::normalize(item);
        let known = words.is_empty() || format!(" {doc} ").contains(&format!(" {words} "));
        (!known).then(|| {
            let start = answer.find(item).unwrap_or(0);
            &answer[start..start + item.len()]
        })
    })
}

static LIST_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(r"^\(?\d{1,2}[.)]\s*").expect("valid regex"));

pub(super) fn check(p: &Prepared) -> Verdict {
    if p.rec.task_type != "deidentification" {
        return Verdict::Keep;
    }
    let found = phi_in(&p.rec.input);
    if found.is_empty() {
        return Verdict::Keep;
    }
    let listed: Vec<&str> = match &p.json {
        Some(v) => v["phi"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["text"].as_str())
            .collect(),
        None => Vec::new(),
    };
    // A plain_text answer is a redacted copy when it keeps most of the document (or uses
    // surrogate tags); otherwise it lists the PHI it found.
    let redacted_copy = p.json.is_none()
        && (p.answer.contains('[')
            || p.answer.contains("***")
            || p.answer_words.len() as f64 >= 0.5 * p.doc_words.len() as f64);
    if !redacted_copy && p.json.is_none() {
        if let Some(item) = listed_not_in(&p.answer, &p.rec.input) {
            let d = format!("the answer lists {item:?} as PHI; the document does not have it");
            return Verdict::Drop("phi_not_in_input", d);
        }
    }
    for (kind, key) in &found {
        let missed = if p.json.is_some() {
            !listed
                .iter()
                .any(|t| t.contains(key.as_str()) || (t.len() >= 4 && key.contains(t)))
        } else if redacted_copy {
            crate::quality::vocab::contains_word(&p.answer, key)
        } else {
            !crate::quality::vocab::contains_word(&p.answer, key)
        };
        if missed {
            let d = if redacted_copy {
                format!("the redacted answer still has the {kind} {key:?}")
            } else {
                format!("the answer does not list the {kind} {key:?} of the document")
            };
            return Verdict::Drop("phi_left_in", d);
        }
    }
    Verdict::Keep
}
