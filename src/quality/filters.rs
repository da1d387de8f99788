//! Heuristic filters: cheap checks that drop a schema-valid record for a named reason
//! (length, refusals, leaked templates, loops, language, copying, off-task instructions,
//! empty JSON content, grounding). `check` runs the enabled ones in order; the first drop wins.

use super::grounding::Grounding;
use crate::record::{bare_instruction, Record};
use crate::schemas::Schemas;
use crate::taxonomy::Taxonomy;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::LazyLock;

/// `[filters]` in the run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    /// Run the filters at all.
    #[serde(default = "d_true")]
    pub enabled: bool,
    /// Names of filters (see `FILTERS`) to skip.
    #[serde(default)]
    pub disable: Vec<String>,
    /// A document shorter than this times its type's minimum `length_words` is dropped.
    #[serde(default = "d_document_min_factor")]
    pub document_min_factor: f64,
    /// A document longer than this times its type's maximum `length_words` is dropped.
    #[serde(default = "d_document_max_factor")]
    pub document_max_factor: f64,
    /// Fewest words of a plain_text answer.
    #[serde(default = "d_answer_min_words")]
    pub answer_min_words: usize,
    /// Most words of any answer (for json: of its string values).
    #[serde(default = "d_answer_max_words")]
    pub answer_max_words: usize,
    /// Largest share of non-empty lines that repeat an earlier line...
    #[serde(default = "d_fraction")]
    pub max_duplicate_line_fraction: f64,
    /// ...checked from this many lines on.
    #[serde(default = "d_repetition_min_lines")]
    pub repetition_min_lines: usize,
    /// Largest share of word 4-grams that repeat an earlier 4-gram...
    #[serde(default = "d_fraction")]
    pub max_repeated_ngram_fraction: f64,
    /// ...checked from this many words on.
    #[serde(default = "d_repetition_min_words")]
    pub repetition_min_words: usize,
    /// Language detection runs on texts of at least this many words.
    #[serde(default = "d_language_min_words")]
    pub language_min_words: usize,
    /// A plain_text answer whose word 5-grams lie in the input at least this much...
    #[serde(default = "d_max_copy_containment")]
    pub max_copy_containment: f64,
    /// ...and that has at least this share of the input's words copies the input.
    #[serde(default = "d_copy_min_answer_share")]
    pub copy_min_answer_share: f64,
}

fn d_true() -> bool {
    true
}
fn d_document_min_factor() -> f64 {
    0.25
}
fn d_document_max_factor() -> f64 {
    2.0
}
fn d_answer_min_words() -> usize {
    3
}
fn d_answer_max_words() -> usize {
    1500
}
fn d_fraction() -> f64 {
    0.3
}
fn d_repetition_min_lines() -> usize {
    4
}
fn d_repetition_min_words() -> usize {
    40
}
fn d_language_min_words() -> usize {
    20
}
fn d_max_copy_containment() -> f64 {
    0.9
}
fn d_copy_min_answer_share() -> f64 {
    0.5
}

impl Default for FiltersConfig {
    fn default() -> Self {
        FiltersConfig {
            enabled: d_true(),
            disable: Vec::new(),
            document_min_factor: d_document_min_factor(),
            document_max_factor: d_document_max_factor(),
            answer_min_words: d_answer_min_words(),
            answer_max_words: d_answer_max_words(),
            max_duplicate_line_fraction: d_fraction(),
            repetition_min_lines: d_repetition_min_lines(),
            max_repeated_ngram_fraction: d_fraction(),
            repetition_min_words: d_repetition_min_words(),
            language_min_words: d_language_min_words(),
            max_copy_containment: d_max_copy_containment(),
            copy_min_answer_share: d_copy_min_answer_share(),
        }
    }
}

impl FiltersConfig {
    /// The filters this config runs (name, drop reasons), in run order.
    pub fn active(&self) -> Vec<(&'static str, &'static [&'static str])> {
        FILTERS
            .iter()
            .filter(|(name, _)| self.enabled && !self.disable.iter().any(|d| d == name))
            .copied()
            .collect()
    }

    /// Problems serde cannot see (empty = ok).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        for name in &self.disable {
            if !FILTERS.iter().any(|(f, _)| f == name) {
                let known: Vec<&str> = FILTERS.iter().map(|(f, _)| *f).collect();
                p.push(format!(
                    "`filters.disable`: unknown filter {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        if !(self.document_min_factor >= 0.0
            && self.document_min_factor <= self.document_max_factor)
        {
            p.push(format!(
                "`filters.document_min_factor` ({}) must be within 0..=document_max_factor ({})",
                self.document_min_factor, self.document_max_factor
            ));
        }
        if self.answer_min_words > self.answer_max_words {
            p.push(format!(
                "`filters.answer_min_words` ({}) is above `answer_max_words` ({})",
                self.answer_min_words, self.answer_max_words
            ));
        }
        for (name, v) in [
            (
                "max_duplicate_line_fraction",
                self.max_duplicate_line_fraction,
            ),
            (
                "max_repeated_ngram_fraction",
                self.max_repeated_ngram_fraction,
            ),
            ("max_copy_containment", self.max_copy_containment),
            ("copy_min_answer_share", self.copy_min_answer_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                p.push(format!("`filters.{name}` must be within 0..=1, got {v}"));
            }
        }
        p
    }
}

pub struct FilterCtx<'a> {
    pub tax: &'a Taxonomy,
    pub schemas: &'a Schemas,
    pub cfg: &'a FiltersConfig,
}

/// Why a filter dropped a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub filter: &'static str,
    pub reason: &'static str,
    pub detail: String,
}

/// The filters in the order they run, each with the reasons it can drop for.
pub const FILTERS: &[(&str, &[&str])] = &[
    ("schema", &["invalid_json", "schema_invalid"]),
    (
        "length",
        &[
            "document_too_short",
            "document_too_long",
            "answer_too_short",
            "answer_too_long",
        ],
    ),
    ("refusal", &["refusal"]),
    ("placeholder", &["template_leak"]),
    ("repetition", &["repetitive"]),
    ("language", &["non_english"]),
    ("copy", &["answer_copies_input"]),
    ("instruction", &["instruction_off_task"]),
    ("json_content", &["empty_required_content"]),
    (
        "grounding",
        &[
            "unknown_icd10_code",
            "no_icd10_code",
            "implausible_icd10_code",
            "span_not_in_input",
        ],
    ),
];

/// The filter implementations, in the order of `FILTERS`.
const CHAIN: &[&dyn Filter] = &[
    &SchemaCheck,
    &Length,
    &Refusal,
    &Placeholder,
    &Repetition,
    &Language,
    &CopiedInput,
    &OffTask,
    &EmptyContent,
    &Grounding,
];

/// Run every enabled filter in order; the first drop wins.
pub fn check(rec: &Record, cx: &FilterCtx) -> Result<(), Drop> {
    match drops(rec, cx, true).into_iter().next() {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// Every enabled filter's drop, in run order (empty = kept): for audits that list all
/// the reasons a record fails, not only the first.
pub fn check_all(rec: &Record, cx: &FilterCtx) -> Vec<Drop> {
    drops(rec, cx, false)
}

fn drops(rec: &Record, cx: &FilterCtx, first_only: bool) -> Vec<Drop> {
    let mut out = Vec::new();
    if !cx.cfg.enabled {
        return out;
    }
    for f in CHAIN {
        if cx.cfg.disable.iter().any(|d| d == f.name()) {
            continue;
        }
        if let Verdict::Drop(reason, detail) = f.check(rec, cx) {
            debug_assert!(FILTERS
                .iter()
                .any(|(n, rs)| *n == f.name() && rs.contains(&reason)));
            out.push(Drop {
                filter: f.name(),
                reason,
                detail,
            });
            if first_only {
                break;
            }
        }
    }
    out
}

pub(crate) enum Verdict {
    Keep,
    /// The reason (one of the filter's in `FILTERS`) and a human-readable detail.
    Drop(&'static str, String),
}

pub(crate) trait Filter {
    fn name(&self) -> &'static str;
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict;
}

fn is_json(rec: &Record) -> bool {
    rec.output_format == "json"
}

/// The parsed answer of a json record; None for plain_text.
pub(crate) fn json_answer(rec: &Record) -> Option<Value> {
    is_json(rec)
        .then(|| crate::schemas::extract_json(&rec.output).ok())
        .flatten()
}

/// Every string value inside a JSON value, depth first.
fn string_values<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| string_values(x, out)),
        Value::Object(o) => o.values().for_each(|x| string_values(x, out)),
        _ => {}
    }
}

/// The answer's prose: the plain_text answer, or each string value of a json answer.
fn answer_strings(rec: &Record) -> Vec<Cow<'_, str>> {
    match json_answer(rec) {
        Some(v) => {
            let mut out = Vec::new();
            string_values(&v, &mut out);
            out.into_iter().map(|s| Cow::Owned(s.to_string())).collect()
        }
        None => vec![Cow::Borrowed(rec.output.as_str())],
    }
}

/// `answer_strings` as one text, one string a line.
fn answer_text(rec: &Record) -> Cow<'_, str> {
    let mut strings = answer_strings(rec);
    match strings.len() {
        1 => strings.pop().expect("one string"),
        _ => Cow::Owned(strings.join("\n")),
    }
}

/// The document, the instruction the teacher wrote and the answer's prose, with their names.
fn parts(rec: &Record) -> [(&'static str, Cow<'_, str>); 3] {
    [
        ("document", Cow::Borrowed(&rec.input)),
        (
            "instruction",
            Cow::Borrowed(bare_instruction(&rec.instruction)),
        ),
        ("answer", answer_text(rec)),
    ]
}

fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Lowercased words without surrounding punctuation (for n-gram comparisons).
fn tokens(s: &str) -> Vec<String> {
    s.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A `json` answer must parse and conform to its task's schema (the engine has already
/// checked this for its own records; an audited dataset has not).
struct SchemaCheck;
impl Filter for SchemaCheck {
    fn name(&self) -> &'static str {
        "schema"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        let Some(schema) = cx.schemas.get(&rec.task_type).filter(|_| is_json(rec)) else {
            return Verdict::Keep;
        };
        match crate::schemas::extract_json(&rec.output) {
            Err(e) => Verdict::Drop("invalid_json", e),
            Ok(v) => match crate::schemas::validate(schema, &v) {
                Err(e) => Verdict::Drop("schema_invalid", e),
                Ok(()) => Verdict::Keep,
            },
        }
    }
}

struct Length;
impl Filter for Length {
    fn name(&self) -> &'static str {
        "length"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        let c = cx.cfg;
        if let Some(doc) = cx.tax.document(&rec.input_data) {
            let n = word_count(&rec.input);
            let [lo, hi] = doc.length_words;
            let (min, max) = (
                lo as f64 * c.document_min_factor,
                hi as f64 * c.document_max_factor,
            );
            if (n as f64) < min {
                let d = format!("{n} words; {} needs at least {min:.0}", doc.id);
                return Verdict::Drop("document_too_short", d);
            }
            if n as f64 > max {
                let d = format!("{n} words; {} allows at most {max:.0}", doc.id);
                return Verdict::Drop("document_too_long", d);
            }
        }
        let n = word_count(&answer_text(rec));
        if !is_json(rec) && n < c.answer_min_words {
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

/// AI disclaimers and refusals: dropped wherever they appear.
static REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\bas an ai\b|\bas an? (?:large |ai )?language model\b|\bi (?:cannot|can ?not|can['’]t|am unable to|['’]m unable to|am not able to) (?:provide|assist|help with|fulfill?|comply|generate|create|write)\b",
    )
    .expect("valid regex")
});

/// Apologies: dropped in the instruction and the answer only, since dialogue documents
/// legitimately contain them ("I'm sorry, but the biopsy showed ...").
static APOLOGY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bi apologi[sz]e\b|\bi(?:['’]m| am) sorry,? but\b").expect("valid regex")
});

struct Refusal;
impl Filter for Refusal {
    fn name(&self) -> &'static str {
        "refusal"
    }
    fn check(&self, rec: &Record, _cx: &FilterCtx) -> Verdict {
        for (part, text) in parts(rec) {
            let found = REFUSAL
                .find(&text)
                .or_else(|| (part != "document").then(|| APOLOGY.find(&text)).flatten());
            if let Some(m) = found {
                return Verdict::Drop("refusal", format!("{part}: {:?}", m.as_str()));
            }
        }
        Verdict::Keep
    }
}

/// Template syntax and filler: a leak anywhere.
static TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{\{|\}\}|\{%|%\}|(?i:lorem ipsum)|XXX-XX|XX/XX/XX").expect("valid regex")
});

/// Bracketed placeholders such as `[Patient Name]`, `[Insert date]`, `<placeholder>`.
static BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
    const SLOT: &str = r"insert\b[^\]>\n]*|(?:patient|doctor|physician|provider|clinician|your|hospital|clinic|facility)(?:['’]s)? name|name|date(?: of [a-z ]+)?|patient|address|phone(?: number)?|mrn|dob|age|location|hospital|clinic";
    Regex::new(&format!(
        r"(?i)\[\s*(?:{SLOT})\s*\]|<\s*(?:{SLOT}|placeholder)\s*>"
    ))
    .expect("valid regex")
});

struct Placeholder;
impl Filter for Placeholder {
    fn name(&self) -> &'static str {
        "placeholder"
    }
    fn check(&self, rec: &Record, _cx: &FilterCtx) -> Verdict {
        // A de-identification answer may replace PHI with surrogate tags like `[NAME]`.
        let tags_ok = rec.task_type == "deidentification";
        for (part, text) in parts(rec) {
            let found = TEMPLATE.find(&text).or_else(|| {
                (part != "answer" || !tags_ok)
                    .then(|| BRACKETED.find(&text))
                    .flatten()
            });
            if let Some(m) = found {
                return Verdict::Drop("template_leak", format!("{part}: {:?}", m.as_str()));
            }
        }
        Verdict::Keep
    }
}

struct Repetition;
impl Filter for Repetition {
    fn name(&self) -> &'static str {
        "repetition"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        // Each json string on its own: enum values legitimately repeat across items.
        let answer = answer_strings(rec).into_iter().map(|s| ("answer", s));
        let texts = std::iter::once(("document", Cow::Borrowed(rec.input.as_str()))).chain(answer);
        for (part, text) in texts {
            if let Some(d) = repetitive(&text, cx.cfg) {
                return Verdict::Drop("repetitive", format!("{part}: {d}"));
            }
        }
        Verdict::Keep
    }
}

/// Why `text` loops, if it does: too many duplicate lines or repeated word 4-grams.
fn repetitive(text: &str, c: &FiltersConfig) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().any(char::is_alphanumeric))
        .collect();
    if lines.len() >= c.repetition_min_lines {
        let distinct = lines.iter().collect::<HashSet<_>>().len();
        let frac = (lines.len() - distinct) as f64 / lines.len() as f64;
        if frac > c.max_duplicate_line_fraction {
            return Some(format!(
                "{:.0}% of {} lines repeat an earlier line",
                frac * 100.0,
                lines.len()
            ));
        }
    }
    let words = tokens(text);
    if words.len() >= c.repetition_min_words.max(4) {
        let mut seen = HashSet::new();
        let grams = words.windows(4);
        let total = grams.len();
        let repeats = grams.filter(|g| !seen.insert(*g)).count();
        let frac = repeats as f64 / total as f64;
        if frac > c.max_repeated_ngram_fraction {
            return Some(format!(
                "{:.0}% of {total} word 4-grams repeat an earlier one",
                frac * 100.0
            ));
        }
    }
    None
}

struct Language;
impl Filter for Language {
    fn name(&self) -> &'static str {
        "language"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        for (part, text) in parts(rec) {
            if (part == "answer" && is_json(rec)) || word_count(&text) < cx.cfg.language_min_words {
                continue;
            }
            if let Some(info) = whatlang::detect(&text) {
                if info.lang() != whatlang::Lang::Eng && info.is_reliable() {
                    let d = format!(
                        "{part} detected as {} (confidence {:.2})",
                        info.lang().eng_name(),
                        info.confidence()
                    );
                    return Verdict::Drop("non_english", d);
                }
            }
        }
        Verdict::Keep
    }
}

/// Tasks whose plain_text answer is by design an edited copy of the input (the corrected
/// or the redacted document): exempt from the copy filter.
const EDITS_INPUT: &[&str] = &["error_correction", "deidentification"];

struct CopiedInput;
impl Filter for CopiedInput {
    fn name(&self) -> &'static str {
        "copy"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        if is_json(rec) || EDITS_INPUT.contains(&rec.task_type.as_str()) {
            return Verdict::Keep;
        }
        let (answer, input) = (tokens(&rec.output), tokens(&rec.input));
        if answer.len() < 5
            || (answer.len() as f64) < cx.cfg.copy_min_answer_share * input.len() as f64
        {
            return Verdict::Keep;
        }
        let in_input: HashSet<&[String]> = input.windows(5).collect();
        let total = answer.len() - 4;
        let contained = answer.windows(5).filter(|g| in_input.contains(g)).count();
        let frac = contained as f64 / total as f64;
        if frac >= cx.cfg.max_copy_containment {
            let d = format!(
                "{:.0}% of the answer's word 5-grams occur in the input ({} of {} words)",
                frac * 100.0,
                answer.len(),
                input.len()
            );
            return Verdict::Drop("answer_copies_input", d);
        }
        Verdict::Keep
    }
}

struct OffTask;
impl Filter for OffTask {
    fn name(&self) -> &'static str {
        "instruction"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        let Some(task) = cx.tax.task(&rec.task_type) else {
            return Verdict::Keep;
        };
        let instruction = bare_instruction(&rec.instruction).to_lowercase();
        if task.keywords.is_empty() || task.keywords.iter().any(|k| instruction.contains(k)) {
            return Verdict::Keep;
        }
        let d = format!("mentions none of {:?}", task.keywords);
        Verdict::Drop("instruction_off_task", d)
    }
}

struct EmptyContent;
impl Filter for EmptyContent {
    fn name(&self) -> &'static str {
        "json_content"
    }
    fn check(&self, rec: &Record, cx: &FilterCtx) -> Verdict {
        let (Some(answer), Some(schema)) = (json_answer(rec), cx.schemas.get(&rec.task_type))
        else {
            return Verdict::Keep;
        };
        match empty_required(&schema.value, &answer, "") {
            Some(path) => Verdict::Drop("empty_required_content", format!("{path} is empty")),
            None => Verdict::Keep,
        }
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// The real taxonomy and schemas, loaded once.
    pub(crate) fn fixture() -> &'static (Taxonomy, Schemas) {
        static F: LazyLock<(Taxonomy, Schemas)> = LazyLock::new(|| {
            let tax = crate::taxonomy::load(Path::new("taxonomy")).expect("taxonomy loads");
            let schemas = Schemas::load(Path::new("schemas"), &tax).expect("schemas load");
            (tax, schemas)
        });
        &F
    }

    pub(crate) fn run_with(rec: &Record, cfg: &FiltersConfig) -> Result<(), Drop> {
        let (tax, schemas) = fixture();
        check(rec, &FilterCtx { tax, schemas, cfg })
    }

    /// The reason the default filters drop `rec` for, if any.
    pub(crate) fn reason(rec: &Record) -> Option<&'static str> {
        run_with(rec, &FiltersConfig::default())
            .err()
            .map(|d| d.reason)
    }

    pub(crate) const NOTE: &str = "Interval events: No acute events overnight. Afebrile, tolerating a regular diet.
Subjective: Mrs. Alvarez reports less shortness of breath and slept through the night. She denies chest pain, palpitations or leg swelling.
Objective: T 37.1 C, HR 88, BP 132/78, RR 18, SpO2 95% on 2 L nasal cannula. Bibasilar crackles, improved. Trace ankle edema.
Labs and imaging: Na 138, K 4.1, creatinine 1.3 (from 1.6). Chest X-ray shows decreasing bilateral effusions.
Assessment and plan: Acute on chronic heart failure with reduced ejection fraction, improving with IV furosemide 40 mg twice daily. Transition to oral furosemide tomorrow, continue metoprolol and lisinopril, daily weights, strict intake and output.";

    /// A realistic plain_text summarization record of a progress note that every filter keeps.
    pub(crate) fn record() -> Record {
        Record {
            task_type: "summarization".into(),
            input_data: "progress_note".into(),
            output_format: "plain_text".into(),
            instruction: "Summarize this progress note in two sentences for the covering night physician.".into(),
            input: NOTE.into(),
            output: "Mrs. Alvarez's acute on chronic HFrEF is improving on IV furosemide, with less dyspnea, \
                     falling creatinine and shrinking effusions. Plan to switch to oral furosemide tomorrow \
                     and continue metoprolol, lisinopril and daily weights."
                .into(),
            ..Default::default()
        }
    }

    /// `record()` with a json answer for `task`, its instruction carrying the schema note.
    pub(crate) fn json_record(task: &str, instruction: &str, output: Value) -> Record {
        let schema = &fixture().1.get(task).expect("task has a schema").pretty;
        Record {
            task_type: task.into(),
            output_format: "json".into(),
            instruction: format!("{instruction}{}{schema}\n```", crate::record::SCHEMA_NOTE),
            output: output.to_string(),
            ..record()
        }
    }

    #[test]
    fn realistic_record_passes_every_filter() {
        assert_eq!(run_with(&record(), &FiltersConfig::default()), Ok(()));
    }

    #[test]
    fn table_matches_chain_and_reasons_are_unique() {
        let names: Vec<&str> = CHAIN.iter().map(|f| f.name()).collect();
        let table: Vec<&str> = FILTERS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, table);
        let reasons: Vec<&str> = FILTERS
            .iter()
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        assert_eq!(reasons.iter().collect::<HashSet<_>>().len(), reasons.len());
    }

    #[test]
    fn config_defaults_and_validation() {
        let parsed: FiltersConfig = toml::from_str("").unwrap();
        assert_eq!(parsed, FiltersConfig::default());
        assert!(FiltersConfig::default().validate().is_empty());
        assert!(toml::from_str::<FiltersConfig>("min_words = 3").is_err());
        let bad = FiltersConfig {
            disable: vec!["refusal".into(), "lenght".into()],
            document_min_factor: 3.0,
            answer_min_words: 2000,
            max_copy_containment: 1.5,
            ..Default::default()
        };
        let problems = bad.validate();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("\"lenght\""), "{problems:?}");
    }

    #[test]
    fn length() {
        let short = Record {
            input: "Patient stable, no acute events overnight, continue current plan.".into(),
            ..record()
        };
        assert_eq!(reason(&short), Some("document_too_short"));
        let words: Vec<String> = (0..1600).map(|i| format!("w{i}")).collect();
        let long = Record {
            input: words.join(" "),
            ..record()
        };
        assert_eq!(reason(&long), Some("document_too_long"));
        let terse = Record {
            output: "Improving.".into(),
            ..record()
        };
        assert_eq!(reason(&terse), Some("answer_too_short"));
        let verbose = Record {
            output: words[..1501].join(" "),
            ..record()
        };
        assert_eq!(reason(&verbose), Some("answer_too_long"));
        // A one-word json value is a complete answer.
        let label = serde_json::json!({"axis": "urgency", "label": "routine", "confidence": "high",
            "rationale": "Stable vitals and improving heart failure on diuresis."});
        let rec = json_record(
            "classification",
            "Classify the urgency of this note.",
            label,
        );
        assert_eq!(reason(&rec), None);
    }

    #[test]
    fn refusal() {
        let sorry = Record {
            output: "I'm sorry, but I cannot provide a summary of this clinical note.".into(),
            ..record()
        };
        let d = run_with(&sorry, &FiltersConfig::default()).unwrap_err();
        assert_eq!((d.filter, d.reason), ("refusal", "refusal"));
        assert!(d.detail.starts_with("answer: "), "{}", d.detail);
        let ai_doc = Record {
            input: format!("As an AI language model, I can't create real patient records, but here is a fictional example.\n{NOTE}"),
            ..record()
        };
        assert_eq!(reason(&ai_doc), Some("refusal"));
        // Apologies inside a dialogue document are speech, not a refusal.
        let dialogue = Record {
            input: format!(
                "Doctor: I'm sorry, but the scan shows fluid around your lungs again.\n{NOTE}"
            ),
            ..record()
        };
        assert_eq!(reason(&dialogue), None);
    }

    #[test]
    fn placeholder() {
        let instr = Record {
            instruction: "Summarize this progress note for [Patient Name]'s family.".into(),
            ..record()
        };
        assert_eq!(reason(&instr), Some("template_leak"));
        let doc = Record {
            input: NOTE.replace("Mrs. Alvarez", "{{ patient_name }}"),
            ..record()
        };
        assert_eq!(reason(&doc), Some("template_leak"));
        let answer = Record {
            output: format!("{} Signed, [Your Name].", record().output),
            ..record()
        };
        assert_eq!(reason(&answer), Some("template_leak"));
        // Compact JSON ends nested objects with `}}`: only string values are searched.
        let codes = serde_json::json!({"codes": [{"code": "I50.23", "description":
            "Acute on chronic systolic (congestive) heart failure", "role": "principal",
            "evidence": "Acute on chronic heart failure with reduced ejection fraction"}]});
        let rec = json_record("clinical_coding", "Assign the ICD-10-CM codes.", codes);
        assert!(rec.output.contains("}]}"));
        assert_eq!(reason(&rec), None);
    }

    #[test]
    fn deidentification_answer_may_hold_surrogate_tags() {
        let deid = |output: &str| Record {
            task_type: "deidentification".into(),
            instruction: "Redact all protected health information in this note.".into(),
            output: output.into(),
            ..record()
        };
        let redacted = NOTE.replace("Mrs. Alvarez", "[NAME]");
        assert_eq!(reason(&deid(&redacted)), None);
        let leaked = NOTE.replace("Mrs. Alvarez", "{{NAME}}");
        assert_eq!(reason(&deid(&leaked)), Some("template_leak"));
        // The exemption is for the answer only.
        let doc = Record {
            input: redacted,
            ..deid("Name: Mrs. Alvarez (patient).")
        };
        assert_eq!(reason(&doc), Some("template_leak"));
    }

    #[test]
    fn repetition() {
        let looping = Record {
            output: format!(
                "Mrs. Alvarez is improving and {}",
                "the patient was ".repeat(20)
            ),
            ..record()
        };
        let d = run_with(&looping, &FiltersConfig::default()).unwrap_err();
        assert_eq!(d.reason, "repetitive");
        assert!(d.detail.contains("4-grams"), "{}", d.detail);
        let lines = format!(
            "{NOTE}\n{}",
            "Continue furosemide 40 mg IV twice daily.\n".repeat(4)
        );
        let doc = Record {
            input: lines,
            ..record()
        };
        let d = run_with(&doc, &FiltersConfig::default()).unwrap_err();
        assert_eq!(d.reason, "repetitive");
        assert!(d.detail.starts_with("document: ") && d.detail.contains("lines"));
        // Enum values repeat across json items; that is no loop.
        let entities: Vec<Value> = [
            "shortness of breath",
            "chest pain",
            "palpitations",
            "leg swelling",
            "ankle edema",
            "effusions",
        ]
        .iter()
        .map(|t| {
            let start = NOTE.find(t).unwrap();
            serde_json::json!({"text": t, "type": "problem", "assertion": "present",
                    "start": start, "end": start + t.len()})
        })
        .collect();
        let rec = json_record(
            "named_entity_recognition",
            "Identify the clinical problems in this note.",
            serde_json::json!({ "entities": entities }),
        );
        assert_eq!(reason(&rec), None);
    }

    #[test]
    fn language() {
        let spanish = Record {
            output: "La paciente presenta mejoría de la insuficiencia cardíaca con furosemida intravenosa, \
                     con menos disnea y una creatinina en descenso. Se cambiará a furosemida oral mañana \
                     y se continuará con metoprolol y lisinopril."
                .into(),
            ..record()
        };
        assert_eq!(reason(&spanish), Some("non_english"));
        let terse =
            "Pt is a 67 yo M w/ HTN, DM2, CKD3 p/w SOB x3d. BP 150/90, HR 102, SpO2 91% RA.";
        let abbreviated = Record {
            output: terse.into(),
            input: format!("{terse}\n{NOTE}"),
            ..record()
        };
        assert_eq!(reason(&abbreviated), None);
    }

    #[test]
    fn copy() {
        let copied = Record {
            output: NOTE.into(),
            ..record()
        };
        assert_eq!(reason(&copied), Some("answer_copies_input"));
        let quote = Record {
            task_type: "question_answering".into(),
            instruction: "Answer the question: what is the diuretic plan?".into(),
            output: "Transition to oral furosemide tomorrow, continue metoprolol and lisinopril."
                .into(),
            ..record()
        };
        assert_eq!(reason(&quote), None);
        let corrected = Record {
            task_type: "error_correction".into(),
            instruction: "Find and correct the error in this note.".into(),
            output: NOTE.replace("40 mg", "20 mg"),
            ..record()
        };
        assert_eq!(reason(&corrected), None);
    }

    #[test]
    fn instruction() {
        let off = Record {
            instruction: "Translate this progress note into French.".into(),
            ..record()
        };
        let d = run_with(&off, &FiltersConfig::default()).unwrap_err();
        assert_eq!(d.reason, "instruction_off_task");
        assert!(d.detail.contains("\"summar\""), "{}", d.detail);
        // The schema note appended to json instructions does not count.
        let summary = serde_json::json!({"summary": "HFrEF improving on IV diuresis.",
            "key_points": ["Switch to oral furosemide"], "problem_list": []});
        let json_off = json_record("summarization", "Rewrite this note.", summary.clone());
        assert!(json_off.instruction.contains("summary"));
        assert_eq!(reason(&json_off), Some("instruction_off_task"));
        let on = json_record(
            "summarization",
            "Give a brief overview of this note.",
            summary,
        );
        assert_eq!(reason(&on), None);
    }

    #[test]
    fn json_content() {
        let summary = |s: &str, points: Value| {
            let out = serde_json::json!({"summary": s, "key_points": points, "problem_list": []});
            json_record("summarization", "Summarize this note.", out)
        };
        // An empty problem list is allowed (`"minItems": 0`).
        let ok = summary(
            "HFrEF improving on IV diuresis.",
            serde_json::json!(["Oral furosemide tomorrow"]),
        );
        assert_eq!(reason(&ok), None);
        let blank = summary("  ", serde_json::json!(["Oral furosemide tomorrow"]));
        let d = run_with(&blank, &FiltersConfig::default()).unwrap_err();
        assert_eq!(
            (d.reason, d.detail.as_str()),
            ("empty_required_content", "/summary is empty")
        );
        let blank_item = summary(
            "HFrEF improving.",
            serde_json::json!(["Oral furosemide", " \n"]),
        );
        let d = run_with(&blank_item, &FiltersConfig::default()).unwrap_err();
        assert_eq!(d.detail, "/key_points/1 is empty");
    }

    #[test]
    fn disable_and_first_drop_order() {
        let both = Record {
            input: "As an AI, I cannot create clinical notes.".into(),
            ..record()
        };
        assert_eq!(reason(&both), Some("document_too_short"));
        let no_length = FiltersConfig {
            disable: vec!["length".into()],
            ..Default::default()
        };
        assert_eq!(run_with(&both, &no_length).unwrap_err().reason, "refusal");
        let neither = FiltersConfig {
            disable: vec!["length".into(), "refusal".into()],
            ..Default::default()
        };
        assert_eq!(run_with(&both, &neither), Ok(()));
        let off = FiltersConfig {
            enabled: false,
            ..Default::default()
        };
        assert_eq!(run_with(&both, &off), Ok(()));
    }
}
