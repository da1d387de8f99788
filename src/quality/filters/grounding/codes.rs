//! ICD-10-CM codes of a clinical coding answer: each exists in the shipped table, one
//! shares the seed concept's chapter (when the item had one), and each code's
//! description shares content words with the document (after expanding abbreviations:
//! "DM2" supports "Type 2 diabetes mellitus").

use crate::quality::filters::{Prepared, Verdict};
use crate::quality::vocab;
use crate::taxonomy::{IcdCode, IcdTable};
use regex::Regex;
use std::sync::LazyLock;

/// Something shaped like an ICD-10-CM code in free text.
pub(crate) static CODE: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"\b[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b")
        .expect("valid regex")
});

/// The codes a coding answer assigns: `codes[].code` of a json answer; in a plain_text
/// answer every code-shaped token that has a dot or is in the table (so that "vitamin B12"
/// or "D5W" are not taken for codes).
fn answer_codes<'a>(p: &'a Prepared, icd: &IcdTable) -> Vec<&'a str> {
    match &p.json {
        Some(v) => v["codes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["code"].as_str())
            .collect(),
        None => CODE
            .find_iter(&p.rec.output)
            .map(|m| m.as_str())
            .filter(|c| c.contains('.') || icd.get(c).is_some())
            .collect(),
    }
}

pub(super) fn check(p: &Prepared, icd: &IcdTable) -> Verdict {
    let codes = answer_codes(p, icd);
    if codes.is_empty() {
        return match &p.json {
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
    for c in &codes {
        let code = icd.get(c).expect("known");
        if !description_fits(p, code) {
            let d = format!(
                "{} ({}) shares too few content words with the document",
                code.code, code.description
            );
            return Verdict::Drop("icd10_description_mismatch", d);
        }
    }
    let seed = match p.rec.concept_code.as_str() {
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

/// Words of a code description that name nothing the document must say.
const ICD_FILLER: &[&str] = &[
    "unspecified",
    "specified",
    "other",
    "without",
    "with",
    "type",
    "site",
    "part",
    "initial",
    "encounter",
    "subsequent",
    "sequela",
    "left",
    "right",
    "bilateral",
    "unilateral",
    "acute",
    "chronic",
    "disease",
    "disorder",
    "conditions",
    "condition",
    "complications",
    "due",
    "elsewhere",
    "classified",
    "not",
    "and",
    "the",
    "for",
    "from",
    "than",
    "stage",
    "region",
    "level",
    "mild",
    "moderate",
    "severe",
    "certain",
    "primary",
    "secondary",
    "unknown",
    "organ",
    "organs",
    "system",
    "involvement",
    "manifestations",
    "personal",
    "history",
    "status",
    "abnormal",
    "findings",
    "finding",
    "other",
    "use",
    "long",
    "term",
    "current",
];

/// Whether enough content words of the code's description (or their stems) are in the
/// document.
fn description_fits(p: &Prepared, code: &IcdCode) -> bool {
    let mut content: Vec<vocab::Word> = vocab::words(&code.description)
        .into_iter()
        .filter(|w| {
            w.len() >= 3
                && !ICD_FILLER.contains(&w.as_str())
                && !w.chars().all(|c| c.is_ascii_digit())
        })
        .collect();
    content.sort();
    content.dedup();
    if content.is_empty() {
        return true;
    }
    // Long-term drug therapy (Z79): the document must name a drug.
    if code.code.starts_with("Z79") && p.doc_words.iter().any(|w| p.vocab.is_drug(w)) {
        return true;
    }
    let src = p.source();
    // "No rib fracture" does not support a rib fracture code.
    let negated = super::facts::negated_terms(p, &p.rec.input);
    // Six-letter stems: "fracture" is not "fraction" (of an ejection fraction).
    let stems6: rustc_hash::FxHashSet<&str> = p
        .doc_words
        .iter()
        .chain(&p.instr_words)
        .map(|w| vocab::stem(w, 6))
        .collect();
    let doc_has = |w: &str| {
        !negated.contains(w) && (src.has(w) || (w.len() >= 6 && stems6.contains(vocab::stem(w, 6))))
    };
    // Half the content words, or two: a pneumonia note's "Neck: supple" alone does not
    // support "Fracture of ... neck of right femur".
    let matched = content.iter().filter(|w| doc_has(w)).count();
    matched * 2 >= content.len() || matched >= 2
}
