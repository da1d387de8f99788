//! Form: is the record well-formed text? Schema conformance of `json` answers, lengths,
//! degenerate repetition, text cut off mid-sentence or mid-word, markup residue, and JSON
//! whose values are empty or filler.

use super::{word_count, DocPattern, Filter, FilterCtx, FiltersConfig, Prepared, Verdict};
use crate::quality::vocab::Word;
use regex::Regex;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::LazyLock;

/// A `json` answer must parse and conform to its task's schema (the engine has already
/// checked this for its own records; an audited dataset has not).
pub(crate) struct SchemaCheck;
impl Filter for SchemaCheck {
    fn name(&self) -> &'static str {
        "schema"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let Some(schema) = cx.schemas.get(&p.rec.task_type).filter(|_| p.is_json()) else {
            return Verdict::Keep;
        };
        match &p.json {
            None => match crate::schemas::extract_json(&p.rec.output) {
                Err(e) => Verdict::Drop("invalid_json", e),
                Ok(_) => Verdict::Drop("invalid_json", "unparseable answer".into()),
            },
            Some(v) => match crate::schemas::validate(schema, v) {
                Err(e) => Verdict::Drop("schema_invalid", e),
                Ok(()) => Verdict::Keep,
            },
        }
    }
}

/// HTML tags and entities, markdown images and links, code fences in prose.
pub(super) const MARKUP_PATTERN: &str = r"(?i)</?(?:div|span|img|br|p|a|table|tr|td|th|html|body|head|script|style|strong|em|ul|ol|li|h[1-6]|font|iframe|input|form|meta|link)(?:\s|/?>)|&(?:nbsp|amp|lt|gt|quot|apos|#\d{1,5});|!\[[^\]\n]*\]\(|\]\(https?://|https?://\S+|\bwww\.\S+\.\w+";
static MARKUP: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(MARKUP_PATTERN).expect("valid regex"));
static FENCE: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(r"```").expect("valid regex"));

pub(crate) struct Markup;
impl Filter for Markup {
    fn name(&self) -> &'static str {
        "markup"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        for (part, text) in p.parts() {
            let scan = part != "document" || p.doc_may_match(DocPattern::Markup);
            if let Some(m) = scan.then(|| MARKUP.find(text)).flatten() {
                return Verdict::Drop("markup_residue", format!("{part}: {:?}", m.as_str()));
            }
            // A fenced block in prose (a json answer's fences are stripped by the parser).
            if !(part == "answer" && p.is_json()) && FENCE.is_match(text) {
                return Verdict::Drop("markup_residue", format!("{part}: code fence"));
            }
        }
        Verdict::Keep
    }
}

/// Labels of a message's or letter's header fields.
const HEADER_FIELDS: &[&str] = &[
    "from",
    "to",
    "re",
    "subject",
    "sent",
    "date",
    "cc",
    "bcc",
    "dob",
    "mrn",
    "attn",
    "fax",
    "tel",
    "phone",
    "sender and recipient",
    "recipient",
    "sender",
];

/// A header field line ("From: ...", "Sent: ...").
fn is_header_line(line: &str) -> bool {
    line.split_once(':').is_some_and(|(label, _)| {
        let label = label.trim();
        label.len() <= 20 && HEADER_FIELDS.iter().any(|f| label.eq_ignore_ascii_case(f))
    })
}

pub(crate) struct Length;
impl Filter for Length {
    fn name(&self) -> &'static str {
        "length"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let c = cx.cfg;
        if let Some(doc) = cx.tax.document(&p.rec.input_data) {
            let n = word_count(&p.rec.input);
            let [lo, hi] = doc.length_words;
            let (min, max) = (
                lo as f64 * c.document_min_factor,
                hi as f64 * c.document_max_factor,
            );
            // Header lines (From:, To:, Re:, Sent:...) are no document by themselves.
            let body: usize = p
                .rec
                .input
                .lines()
                .filter(|l| !is_header_line(l))
                .map(word_count)
                .sum();
            if (body as f64) < min {
                let d = format!(
                    "{body} words outside header lines ({n} in all); {} needs at least {min:.0}",
                    doc.id
                );
                return Verdict::Drop("document_too_short", d);
            }
            if n as f64 > max {
                let d = format!("{n} words; {} allows at most {max:.0}", doc.id);
                return Verdict::Drop("document_too_long", d);
            }
        }
        let n = word_count(&p.answer);
        if !p.is_json() && n < c.answer_min_words {
            let d = format!("{n} words (minimum {})", c.answer_min_words);
            return Verdict::Drop("answer_too_short", d);
        }
        if n > c.answer_max_words {
            let d = format!("{n} words (maximum {})", c.answer_max_words);
            return Verdict::Drop("answer_too_long", d);
        }
        Verdict::Keep
    }
}

pub(crate) struct Repetition;
impl Filter for Repetition {
    fn name(&self) -> &'static str {
        "repetition"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        // Each json string on its own: enum values legitimately repeat across items.
        type Text<'a> = (&'a str, &'a str, Cow<'a, [Word]>, Option<&'a [u64]>);
        let mut texts: Vec<Text> = vec![
            (
                "document",
                p.rec.input.as_str(),
                (&p.doc_words[..]).into(),
                Some(&p.doc_hashes),
            ),
            (
                "instruction",
                p.instruction,
                (&p.instr_words[..]).into(),
                None,
            ),
        ];
        if p.is_json() {
            for (_, s) in &p.strings {
                texts.push(("answer", s.as_str(), super::vocab::words(s).into(), None));
            }
        } else {
            let words = (&p.answer_words[..]).into();
            texts.push(("answer", p.answer.as_str(), words, Some(&p.answer_hashes)));
        }
        for (part, text, words, hashes) in &texts {
            if let Some(d) = repetitive(text, words, *hashes, cx.cfg) {
                return Verdict::Drop("repetitive", format!("{part}: {d}"));
            }
        }
        // The same list item (a key point, an entity) given twice or more.
        if let Some(v) = &p.json {
            if let Some(d) = repeated_items(v) {
                return Verdict::Drop("repetitive", format!("answer: {d}"));
            }
        }
        Verdict::Keep
    }
}

/// Why `text` (of `words`) loops, if it does: duplicate lines, repeated word 4-grams, a
/// sentence said three times, a word four times in a row, or a run of one character.
/// `hashes` are the words' `vocab::hash`es when the caller has them.
pub(crate) fn repetitive(
    text: &str,
    words: &[Word],
    hashes: Option<&[u64]>,
    c: &FiltersConfig,
) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().any(char::is_alphanumeric))
        .collect();
    if lines.len() >= c.repetition_min_lines {
        let distinct = lines.iter().collect::<FxHashSet<_>>().len();
        let frac = (lines.len() - distinct) as f64 / lines.len() as f64;
        if frac > c.max_duplicate_line_fraction {
            return Some(format!(
                "{:.0}% of {} lines repeat an earlier line",
                frac * 100.0,
                lines.len()
            ));
        }
    }
    let owned: Vec<u64>;
    let hashes = match hashes {
        Some(h) => h,
        None => {
            owned = words.iter().map(|w| super::vocab::hash(w)).collect();
            &owned
        }
    };
    if words.len() >= c.repetition_min_words.max(4) {
        let mut seen = FxHashSet::default();
        let total = hashes.len() - 3;
        let repeats = hashes
            .windows(4)
            .filter(|g| {
                !seen.insert(
                    g[0] ^ g[1].rotate_left(16) ^ g[2].rotate_left(32) ^ g[3].rotate_left(48),
                )
            })
            .count();
        let frac = repeats as f64 / total as f64;
        if frac > c.max_repeated_ngram_fraction {
            return Some(format!(
                "{:.0}% of {total} word 4-grams repeat an earlier one",
                frac * 100.0
            ));
        }
    }
    if let Some(i) = (0..hashes.len().saturating_sub(3)).find(|&i| {
        hashes[i + 1..i + 4].iter().all(|h| *h == hashes[i])
            && words[i].len() > 1
            && !words[i].chars().all(|c| c.is_ascii_digit())
    }) {
        return Some(format!("{:?} four times in a row", words[i]));
    }
    // ASCII text (the rule) without decoding UTF-8.
    if text.is_ascii() {
        let chars = text.bytes().enumerate().map(|(i, b)| (i, b as char));
        sentence_loops(text, chars)
    } else {
        sentence_loops(text, text.char_indices())
    }
}

/// A sentence (of three words or more, by the hash of its words) said three times, or one
/// character 12 times in a row; `chars` are `text`'s characters with their byte offsets.
fn sentence_loops(text: &str, chars: impl Iterator<Item = (usize, char)>) -> Option<String> {
    let mut sentences: FxHashMap<u64, u8> = FxHashMap::default();
    let (mut h, mut n, mut start) = (0u64, 0usize, 0usize);
    let mut in_word = false;
    let mut run = (' ', 0usize);
    for (i, ch) in chars.chain(std::iter::once((text.len(), '.'))) {
        run = if ch == run.0 {
            (ch, run.1 + 1)
        } else {
            (ch, 1)
        };
        if run.1 >= 12
            && i < text.len()
            && !ch.is_whitespace()
            && !matches!(ch, '-' | '=' | '_' | '*' | '#' | '.')
        {
            return Some(format!("{ch:?} {} times in a row", run.1));
        }
        if ch.is_alphanumeric() {
            if !in_word {
                n += 1;
                h = h.rotate_left(5) ^ 0x9e37_79b9;
            }
            in_word = true;
            h = (h ^ ch.to_ascii_lowercase() as u64).wrapping_mul(0x100_0000_01b3);
        } else {
            in_word = false;
            if matches!(ch, '.' | '!' | '?' | '\n') {
                if n >= 3 {
                    let k = sentences.entry(h).or_default();
                    *k += 1;
                    if *k == 3 {
                        return Some(format!(
                            "the sentence {:?} three times",
                            text[start..i].trim()
                        ));
                    }
                }
                (h, n, start) = (0, 0, i + ch.len_utf8());
            }
        }
    }
    None
}

/// The first list of strings (or of objects) in a json answer with an item given twice.
fn repeated_items(v: &Value) -> Option<String> {
    match v {
        Value::Array(a) if a.len() >= 2 => {
            let mut seen = FxHashSet::default();
            for x in a {
                let key = match x {
                    Value::String(s) => crate::text::normalize(s),
                    other => other.to_string(),
                };
                if !key.is_empty() && !seen.insert(key) {
                    return Some(format!("a list repeats the item {x}"));
                }
            }
            a.iter().find_map(repeated_items)
        }
        Value::Array(a) => a.iter().find_map(repeated_items),
        Value::Object(o) => o.values().find_map(repeated_items),
        _ => None,
    }
}

/// Words a complete sentence does not end on.
const DANGLING: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "but",
    "of",
    "to",
    "with",
    "for",
    "in",
    "on",
    "at",
    "by",
    "from",
    "is",
    "are",
    "was",
    "were",
    "be",
    "that",
    "which",
    "who",
    "as",
    "into",
    "than",
    "his",
    "her",
    "their",
    "its",
    "our",
    "your",
    "my",
    "this",
    "these",
    "those",
    "if",
    "because",
    "including",
    "such",
    "per",
    "via",
    "no",
    "not",
    "nor",
    "then",
    "also",
    "will",
    "should",
    "would",
    "could",
    "has",
    "have",
    "had",
    "been",
    "being",
    "while",
    "whether",
    "both",
];

pub(crate) struct Truncation;
impl Filter for Truncation {
    fn name(&self) -> &'static str {
        "truncation"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        let doc = p.rec.input.as_str();
        if let Some(d) = cut_off(doc, None) {
            return Verdict::Drop("truncated_text", format!("document: {d}"));
        }
        if let Some(d) = cut_off(p.instruction, None) {
            return Verdict::Drop("truncated_text", format!("instruction: {d}"));
        }
        // "...using the following format:" with no format after it.
        if p.instruction.trim_end().ends_with(':') {
            let d = "instruction: ends on ':' with nothing after it".to_string();
            return Verdict::Drop("truncated_text", d);
        }
        for (at, s) in &p.strings {
            // Short json values (labels, names, values) carry no sentence to cut.
            if p.is_json() && word_count(s) < 6 {
                continue;
            }
            if let Some(d) = cut_off(s, Some(p)) {
                let at = if at.is_empty() {
                    String::new()
                } else {
                    format!(" {at}")
                };
                return Verdict::Drop("truncated_text", format!("answer{at}: {d}"));
            }
        }
        Verdict::Keep
    }
}

/// A title or the start of a header field as the last thing written: "To: Dr.".
static TRAILING_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(r"\b(?:(?:To|From|Re|Cc|Date|Sent)\s*:\s*)?(?:(?:Dr|Mr|Mrs|Ms|Prof)\.|(?:To|From|Re|Cc|Date|Sent)\s*:)$")
        .expect("valid regex")
});

/// Why `text` looks cut off, if it does: it ends on a word no sentence ends on, on a comma
/// or an opening bracket, with a bracket or quote left open, or (for an answer) on a
/// fragment of a longer word of the document ("...and lisin" where the note has
/// "lisinopril").
fn cut_off(text: &str, answer_of: Option<&Prepared>) -> Option<String> {
    let t = text.trim_end();
    let last_line = t.lines().last().unwrap_or("").trim();
    if last_line.is_empty() {
        return None;
    }
    let last_char = t.chars().last()?;
    if let Some(m) = TRAILING_TITLE.find(t) {
        return Some(format!("ends with {:?}", m.as_str()));
    }
    if matches!(last_char, ',' | '(' | '[' | '{' | '/' | '&' | '+') || t.ends_with(" -") {
        return Some(format!("ends with {last_char:?}"));
    }
    let opens = t.matches('(').count();
    if opens > t.matches(')').count() && opens - t.matches(')').count() >= 1 {
        if let Some(i) = t.rfind('(') {
            if !t[i..].contains(')') && t.len() - i < 80 {
                return Some("a bracket is left open at the end".into());
            }
        }
    }
    if t.matches('"').count() % 2 == 1
        && t.rfind('"')
            .is_some_and(|i| t.len() - i < 60 && i > t.len() / 2)
    {
        return Some("a quotation is left open at the end".into());
    }
    if last_char.is_alphanumeric() {
        let words = super::vocab::words(last_line);
        let last = words.last()?;
        // Lines of a list or a form ("Plan: continue", "- aspirin") end without a stop.
        let prose = words.len() >= 6;
        if prose && DANGLING.contains(&last.as_str()) {
            return Some(format!("ends on {last:?}"));
        }
        if let Some(p) = answer_of {
            if last.len() >= 3
                && last.chars().all(|c| c.is_alphabetic())
                && !p.source().has(last)
                && !p.vocab.is_clinical(last)
                && p.doc_words
                    .iter()
                    .any(|w| w.len() > last.len() + 1 && w.starts_with(last.as_str()))
            {
                return Some(format!("ends mid-word on {last:?}"));
            }
        }
    }
    None
}

pub(crate) struct JsonContent;
impl Filter for JsonContent {
    fn name(&self) -> &'static str {
        "json_content"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let (Some(answer), Some(schema)) = (&p.json, cx.schemas.get(&p.rec.task_type)) else {
            return Verdict::Keep;
        };
        if let Some(path) = empty_required(&schema.value, answer, "") {
            return Verdict::Drop("empty_required_content", format!("{path} is empty"));
        }
        for (at, s) in &p.strings {
            // An enum's values are the schema's own words ("name" is a PHI category).
            if schema_at(&schema.value, at).get("enum").is_some() {
                continue;
            }
            if let Some(why) = garbage(at, s) {
                return Verdict::Drop("garbage_value", format!("{at} is {s:?} ({why})"));
            }
        }
        Verdict::Keep
    }
}

/// The subschema that describes the value at JSON pointer `path`.
fn schema_at<'s>(schema: &'s Value, path: &str) -> &'s Value {
    path.split('/')
        .filter(|k| !k.is_empty())
        .fold(schema, |s, k| {
            if k.parse::<usize>().is_ok() {
                &s["items"]
            } else {
                &s["properties"][k]
            }
        })
}

/// Filler that stands where a value should be.
const FILLER: &[&str] = &[
    "string",
    "str",
    "text",
    "value",
    "values",
    "n/a",
    "na",
    "tbd",
    "todo",
    "example",
    "examples",
    "sample",
    "placeholder",
    "lorem ipsum",
    "xxx",
    "xx",
    "x",
    "...",
    "…",
    "null",
    "none",
    "undefined",
    "nan",
    "test",
    "foo",
    "bar",
    "abc",
    "etc",
    "?",
    "-",
    "--",
    "_",
    "your answer here",
    "answer",
    "insert here",
    "description",
    "detail",
    "details",
    "evidence",
    "quote",
    "label",
    "name",
    "type",
    "item",
    "entity",
    "summary",
    "key point",
    "sentence",
    "hypothesis",
    "premise",
    "rationale",
    "explanation",
    "object",
    "array",
];

/// Why a json string value is filler rather than content, if it is.
fn garbage(path: &str, s: &str) -> Option<&'static str> {
    let t = s.trim();
    let key = path
        .rsplit('/')
        .find(|k| k.parse::<usize>().is_err())
        .unwrap_or("");
    let low = t.to_lowercase();
    let bare = low.trim_matches(|c: char| !c.is_alphanumeric());
    if t.is_empty() {
        return None; // empty_required_content decides about blanks
    }
    if !t.chars().any(char::is_alphanumeric) {
        return Some("no letters or digits");
    }
    if FILLER.contains(&low.as_str()) || FILLER.contains(&bare) {
        return Some("a filler word");
    }
    if !key.is_empty() && bare.replace(['_', ' '], "") == key.replace('_', "") && key.len() > 3 {
        return Some("the field's own name");
    }
    if low.starts_with('<') && low.ends_with('>') {
        return Some("an angle-bracket slot");
    }
    None
}

/// The JSON pointer of the first required property or array item of `value` that is empty.
fn empty_required(schema: &Value, value: &Value, path: &str) -> Option<String> {
    let children: Vec<(String, &Value, &Value, bool)> = match value {
        Value::Object(o) => {
            let required = schema["required"].as_array();
            o.iter()
                .map(|(k, v)| {
                    let req = required.is_some_and(|r| r.iter().any(|x| x == k.as_str()));
                    (format!("{path}/{k}"), &schema["properties"][k], v, req)
                })
                .collect()
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{path}/{i}"), &schema["items"], v, true))
            .collect(),
        _ => return None,
    };
    for (p, sub, v, required) in children {
        if required && is_empty(sub, v) {
            return Some(p);
        }
        if let Some(found) = empty_required(sub, v, &p) {
            return Some(found);
        }
    }
    None
}

/// A blank string, an object without fields, or an empty array the schema does not
/// explicitly allow to be empty (`"minItems": 0` means "none documented" is an answer).
fn is_empty(schema: &Value, v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim().is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty() && schema["minItems"].as_u64() != Some(0),
        _ => false,
    }
}
