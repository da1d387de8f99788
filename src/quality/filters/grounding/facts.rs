//! Facts an answer states must be the document's: every number (a dose with its unit, a
//! date's parts, a value), every drug name, and most of its specific clinical terms. A
//! natural-language-inference label of "entailment" must not be contradicted by a negated
//! term or a number the document does not have.
//!
//! Exempt by design: the corrected text of error correction (it changes the document),
//! de-identification (surrogates), clinical coding (codes are checked in `codes`), a
//! hypothesis (it may state what the document contradicts) and normalised time values
//! (`2024-03-14` for "yesterday").

use crate::quality::filters::{Prepared, Verdict};
use crate::quality::vocab::{self, Word};
use regex::Regex;
use rustc_hash::FxHashSet as HashSet;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Tasks whose answers restate the document, so what they state must be in it.
fn restates(task: &str) -> bool {
    !matches!(
        task,
        "error_correction" | "deidentification" | "clinical_coding"
    )
}

/// JSON fields whose values are not claims about the document.
fn exempt_field(path: &str) -> bool {
    let last = path
        .rsplit('/')
        .find(|k| k.parse::<usize>().is_err())
        .unwrap_or("");
    matches!(
        last,
        "hypothesis"
            | "normalized"
            | "reading_level"
            | "axis"
            | "label"
            | "confidence"
            | "category"
            | "type"
            | "assertion"
            | "role"
            | "relation"
            | "domain"
            | "status"
            | "timex_type"
            | "relation_to_admission"
            | "flag"
            | "error_type"
    )
}

/// The answer's strings that state facts, joined (the whole answer when none is exempt).
fn claims_text<'p>(p: &'p Prepared) -> Cow<'p, str> {
    if !p.strings.iter().any(|(at, _)| exempt_field(at)) {
        return Cow::Borrowed(&p.answer);
    }
    Cow::Owned(
        p.strings
            .iter()
            .filter(|(at, _)| !exempt_field(at))
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(r"\d+(?:[.,]\d+)*").expect("valid regex"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b").expect("valid regex")
});
static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"(?i)(?:\b|x)(\d+(?:\.\d+)?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|a|an|last|past|this)[\s-]*(minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|wks?|months?|mos?|years?|yrs?|y)\b")
        .expect("valid regex")
});
/// A duration's unit, whatever its spelling ("wk", "weeks", "d").
fn duration_unit(u: &str) -> &'static str {
    match u.to_lowercase().trim_end_matches('s') {
        "minute" | "min" => "minute",
        "hour" | "hr" | "h" => "hour",
        "day" | "d" => "day",
        "week" | "wk" => "week",
        "month" | "mo" => "month",
        _ => "year",
    }
}
static LIST_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"(?m)^\s*\(?\d{1,2}[.)]\s").expect("valid regex")
});
static DOSE: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"(?i)(\d+(?:\.\d+)?)\s*(mg|mcg|µg|ug|micrograms?|milligrams?|grams?|g|kg|ml|milliliters?|cc|units?|iu|meq|mmol|percent|%)\b")
        .expect("valid regex")
});

/// A number as a canonical string: no thousands commas, no leading or trailing zeros.
fn canon(n: &str) -> String {
    let n = if n.contains(',') && n.split(',').skip(1).all(|g| g.len() == 3) {
        n.replace(',', "")
    } else {
        n.replace(',', ".")
    };
    let (int, frac) = match n.split_once('.') {
        Some((i, f)) => (i, f.trim_end_matches('0')),
        None => (n.as_str(), ""),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

fn unit(u: &str) -> &'static str {
    match u.to_lowercase().as_str() {
        "mg" | "milligram" | "milligrams" => "mg",
        "mcg" | "µg" | "ug" | "microgram" | "micrograms" => "mcg",
        "g" | "gram" | "grams" => "g",
        "kg" => "kg",
        "ml" | "milliliter" | "milliliters" | "cc" => "ml",
        "unit" | "units" | "iu" => "unit",
        "meq" => "meq",
        "mmol" => "mmol",
        _ => "%",
    }
}

/// The digits a number word stands for.
fn word_number(w: &str) -> Option<&'static str> {
    Some(match w {
        "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        "eleven" => "11",
        "twelve" => "12",
        "fifteen" => "15",
        "twenty" => "20",
        "thirty" => "30",
        "forty" => "40",
        "fifty" => "50",
        "hundred" => "100",
        "once" => "1",
        "twice" => "2",
        "half" => "0.5",
        _ => return None,
    })
}

/// The numbers of the document and the instruction (digits and number words), and where
/// each digit number starts in the document (`[0]`) and the instruction (`[1]`).
type SourceNumbers = (HashSet<String>, [Vec<(usize, String)>; 2]);

fn source_numbers(p: &Prepared) -> SourceNumbers {
    let at = |text: &str| -> Vec<(usize, String)> {
        NUMBER
            .find_iter(text)
            .map(|m| (m.start(), canon(m.as_str())))
            .collect()
    };
    let at = [at(&p.rec.input), at(p.instruction)];
    let mut all: HashSet<String> = at.iter().flatten().map(|(_, n)| n.clone()).collect();
    for w in p.doc_words.iter().chain(&p.instr_words) {
        if let Some(d) = word_number(w) {
            all.insert(d.to_string());
        }
    }
    (all, at)
}

/// What the answer claims: its fact-stating strings joined, and their words.
pub(super) struct Claims<'p> {
    text: Cow<'p, str>,
    words: Cow<'p, [Word]>,
}

impl<'p> Claims<'p> {
    pub(super) fn of(p: &'p Prepared) -> Claims<'p> {
        let text = claims_text(p);
        let words = match &text {
            Cow::Borrowed(_) => Cow::Borrowed(&p.answer_words[..]),
            Cow::Owned(t) => Cow::Owned(vocab::words(t)),
        };
        Claims { text, words }
    }
}

pub(super) fn numbers(p: &Prepared, c: &Claims) -> Verdict {
    if !restates(&p.rec.task_type) || !c.text.bytes().any(|b| b.is_ascii_digit()) {
        return Verdict::Keep;
    }
    let text = LIST_MARKER.replace_all(&c.text, " ");
    // A date is grounded as a whole: "2/31/2024" is not "12/31/2024" for having its parts.
    let dates = |t: &str| -> Vec<(u32, u32, u32, String)> {
        DATE.captures_iter(t)
            .map(|c| {
                let n = |i: usize| c[i].parse::<u32>().unwrap_or(0);
                (n(1), n(2), n(3) % 100, c[0].to_string())
            })
            .collect()
    };
    let doc_dates: HashSet<(u32, u32, u32)> = dates(&p.rec.input)
        .into_iter()
        .chain(dates(p.instruction))
        .map(|(a, b, y, _)| (a, b, y))
        .collect();
    if let Some((.., d)) = dates(&text)
        .into_iter()
        .find(|(a, b, y, _)| !doc_dates.contains(&(*a, *b, *y)))
    {
        let d = format!("the answer states the date {d:?}, which the document does not");
        return Verdict::Drop("ungrounded_number", d);
    }
    let (have, at) = source_numbers(p);
    for m in NUMBER.find_iter(&text) {
        // A number inside a code-like token (E11.9, B12) is checked as part of its word.
        let before = text[..m.start()].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_uppercase()) {
            continue;
        }
        let n = canon(m.as_str());
        if !have.contains(&n) {
            let d = format!(
                "the answer states {:?}, which the document does not",
                m.as_str()
            );
            return Verdict::Drop("ungrounded_number", d);
        }
    }
    // A duration must be the document's: "3 months ago" is not "three weeks ago".
    // Durations as (number, unit); "a", "last", "this" (week) count as one, in the
    // document only: an answer that says "a week" states no number to check.
    let durations = |t: &str, answer: bool| -> Vec<((String, &'static str), String)> {
        DURATION
            .captures_iter(t)
            .filter(|c| {
                let after = &t[c.get(0).unwrap().end()..];
                !after
                    .trim_start_matches('-')
                    .trim_start()
                    .starts_with("old")
            })
            .filter_map(|c| {
                let n = c[1].to_lowercase();
                let n = match n.as_str() {
                    "a" | "an" | "last" | "past" | "this" if answer => return None,
                    "a" | "an" | "last" | "past" | "this" => "1".to_string(),
                    _ => word_number(&n).map_or_else(|| canon(&n), str::to_string),
                };
                // A bare letter unit ("3 d", "x3d") is the document's shorthand only.
                if answer && c[2].len() == 1 {
                    return None;
                }
                Some(((n, duration_unit(&c[2])), c[0].trim().to_string()))
            })
            .collect()
    };
    let doc_durations: HashSet<(String, &str)> = durations(&p.rec.input, false)
        .into_iter()
        .chain(durations(p.instruction, false))
        .map(|(k, _)| k)
        .collect();
    if let Some((_, said)) = durations(&text, true)
        .into_iter()
        .find(|(k, _)| !doc_durations.contains(k))
    {
        let d = format!("the answer states {said:?}; the document has no such duration");
        return Verdict::Drop("ungrounded_number", d);
    }
    // A dose must be the document's with its unit, or a number the document states bare
    // ("hydrochlorothiazide, 25 in the morning").
    if !DOSE.is_match(&text) {
        return Verdict::Keep;
    }
    // The document's doses, and its numbers that carry no dose unit after them.
    let mut doses: HashSet<(String, &str)> = HashSet::default();
    let mut bare: HashSet<&str> = HashSet::default();
    for (text, at) in [p.rec.input.as_str(), p.instruction].into_iter().zip(&at) {
        let mut starts = HashSet::default();
        for c in DOSE.captures_iter(text) {
            starts.insert(c.get(0).expect("match").start());
            doses.insert((canon(&c[1]), unit(&c[2])));
        }
        bare.extend(
            at.iter()
                .filter(|(i, _)| !starts.contains(i))
                .map(|(_, n)| n.as_str()),
        );
    }
    for c in DOSE.captures_iter(&text) {
        let dose = (canon(&c[1]), unit(&c[2]));
        if !doses.contains(&dose) && !bare.contains(dose.0.as_str()) {
            let d = format!(
                "the answer states {:?}; the document has no {} {}",
                &c[0], dose.0, dose.1
            );
            return Verdict::Drop("ungrounded_number", d);
        }
    }
    Verdict::Keep
}

pub(super) fn drugs(p: &Prepared, c: &Claims) -> Verdict {
    if !restates(&p.rec.task_type) {
        return Verdict::Keep;
    }
    for w in c.words.iter() {
        if p.vocab.is_drug(w) && !p.in_source(w) {
            let d = format!("the answer names {w:?}, which the document does not");
            return Verdict::Drop("ungrounded_drug", d);
        }
    }
    Verdict::Keep
}

/// How many specific clinical terms absent from the document an answer may state, and
/// which share of its specific terms they may be, by task. Lay rewrites and notes written
/// from a conversation legitimately name what the source says in other words.
fn claim_limits(task: &str) -> Option<(usize, f64)> {
    match task {
        "simplification" | "note_generation" => Some((4, 0.35)),
        "summarization" | "classification" | "natural_language_inference" => Some((3, 0.2)),
        "question_answering"
        | "named_entity_recognition"
        | "relation_extraction"
        | "information_extraction"
        | "temporal_extraction"
        | "sdoh_extraction" => Some((2, 0.2)),
        _ => None,
    }
}

pub(super) fn claims(p: &Prepared, c: &Claims) -> Verdict {
    let Some((max_new, max_share)) = claim_limits(&p.rec.task_type) else {
        return Verdict::Keep;
    };
    let specific: HashSet<&Word> = c.words.iter().filter(|w| p.vocab.is_term(w)).collect();
    let mut new: Vec<&&Word> = specific.iter().filter(|w| !p.in_source(w)).collect();
    new.sort();
    let share = new.len() as f64 / specific.len().max(1) as f64;
    if new.len() >= max_new && share >= max_share {
        let d = format!(
            "the answer states {} clinical terms the document does not have ({:.0}% of its terms): {}",
            new.len(),
            share * 100.0,
            new.iter().take(6).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
        return Verdict::Drop("ungrounded_claim", d);
    }
    Verdict::Keep
}

static NEGATION: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"(?i)\b(?:no|not|denies|denied|without|negative for|absent|never|none|free of|ruled out|resolved)\b")
        .expect("valid regex")
});

/// Content words that follow a negation within a few words ("denies chest pain").
pub(super) fn negated_terms(p: &Prepared, text: &str) -> HashSet<Word> {
    let mut out = HashSet::default();
    for m in NEGATION.find_iter(text) {
        let rest = &text[m.end()..];
        // The negation's scope ends at the sentence's end.
        let scope = &rest[..rest.find(['.', ';', '\n']).unwrap_or(rest.len())];
        for w in vocab::words(scope).into_iter().take(6) {
            if w.len() >= 3 && !p.vocab.is_stop(&w) {
                out.insert(w);
            }
        }
    }
    out
}

/// The label and hypothesis of an inference answer (json fields, or for plain_text the
/// first label word of the answer and the quoted hypothesis of the instruction).
fn label_and_hypothesis(p: &Prepared) -> Option<(String, String, String)> {
    if let Some(v) = &p.json {
        let label = v["label"].as_str()?.to_lowercase();
        let hyp = v["hypothesis"].as_str()?.to_string();
        let premise = v["premise_excerpt"]
            .as_str()
            .unwrap_or(&p.rec.input)
            .to_string();
        return Some((label, hyp, premise));
    }
    let a = p.answer.to_lowercase();
    let label = ["contradict", "neutral", "entail"]
        .iter()
        .filter_map(|l| a.find(l).map(|i| (i, *l)))
        .min()?
        .1
        .to_string();
    static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
        crate::quality::vocab::regex(r#"["“]([^"”]{8,})["”]|(?i)hypothesis\s*:\s*(.+)"#)
            .expect("valid regex")
    });
    let c = QUOTED.captures(p.instruction)?;
    let hyp = c.get(1).or_else(|| c.get(2))?.as_str().to_string();
    Some((label, hyp, p.rec.input.clone()))
}

pub(super) fn nli(p: &Prepared) -> Verdict {
    if p.rec.task_type != "natural_language_inference" {
        return Verdict::Keep;
    }
    let Some((label, hyp, premise)) = label_and_hypothesis(p) else {
        return Verdict::Keep;
    };
    if !label.starts_with("entail") {
        return Verdict::Keep;
    }
    let hyp_negated = NEGATION.is_match(&hyp);
    let hyp_words: HashSet<Word> = vocab::words(&hyp).into_iter().collect();
    if !hyp_negated {
        // Negated in the premise, or anywhere in the document ("without ... acute
        // cholecystitis" in the impression while the premise quotes the stones).
        let mut neg = negated_terms(p, &premise);
        neg.extend(negated_terms(p, &p.rec.input));
        if let Some(w) = hyp_words
            .iter()
            .find(|w| neg.contains(*w) && p.vocab.is_specific(w))
        {
            let d = format!(
                "labelled entailment, but the premise negates {w:?}, which the hypothesis asserts"
            );
            return Verdict::Drop("nli_label_unsupported", d);
        }
    }
    let premise_numbers: HashSet<String> = NUMBER
        .find_iter(&premise)
        .map(|m| canon(m.as_str()))
        .collect();
    if let Some(m) = NUMBER
        .find_iter(&hyp)
        .find(|m| !premise_numbers.contains(&canon(m.as_str())))
    {
        let d = format!(
            "labelled entailment, but the hypothesis states {:?}, which the premise does not",
            m.as_str()
        );
        return Verdict::Drop("nli_label_unsupported", d);
    }
    Verdict::Keep
}

#[cfg(test)]
mod tests {
    use super::canon;

    #[test]
    fn numbers_are_canonical() {
        assert_eq!(canon("040"), "40");
        assert_eq!(canon("1,200"), "1200");
        assert_eq!(canon("1.30"), "1.3");
        assert_eq!(canon("2.0"), "2");
        assert_eq!(canon("0.5"), "0.5");
        assert_eq!(canon("37,5"), "37.5");
    }
}
