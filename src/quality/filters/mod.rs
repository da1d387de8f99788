//! The quality gate's heuristic filters: cheap checks that drop a record for a named
//! reason. They are grouped by family: `form` (schema, length, loops, truncation, markup,
//! empty or garbage JSON), `leaks` (chat markup, refusals, placeholders, meta-text and
//! prompt echo), `domain` (language, non-clinical content), `copy`, `task_fit` (is the
//! instruction a task of its type), and `grounding` (codes, quotes, numbers, drugs, PHI).
//! `check` runs the enabled ones in order and the first drop wins; `check_all` lists every
//! drop. The same chain serves `run` (on generated records) and `audit` (on any dataset).

mod coherence;
mod copy;
mod domain;
mod form;
pub(crate) mod grounding;
mod leaks;
mod task_fit;

use super::examples::Examples;
use super::vocab::{self, Class, Vocab, Word};
use crate::record::{bare_instruction, Record};
use crate::schemas::Schemas;
use crate::taxonomy::Taxonomy;
use grounding::Grounding;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, LazyLock, OnceLock};

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
    /// The templates' worked examples (None: `example_copy` has nothing to compare with,
    /// as for a dataset audited without a config).
    pub examples: Option<&'a Examples>,
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
    ("chat_markup", &["chat_markup"]),
    ("refusal", &["refusal"]),
    ("placeholder", &["template_leak"]),
    ("markup", &["markup_residue"]),
    ("meta_text", &["meta_text", "prompt_echo"]),
    ("example_copy", &["example_copy"]),
    ("language", &["non_english"]),
    ("clinical_domain", &["non_clinical", "filler_text"]),
    (
        "coherence",
        &[
            "sender_is_recipient",
            "impossible_date_time",
            "age_contradicts_dob",
        ],
    ),
    (
        "length",
        &[
            "document_too_short",
            "document_too_long",
            "answer_too_short",
            "answer_too_long",
        ],
    ),
    ("repetition", &["repetitive"]),
    ("truncation", &["truncated_text"]),
    (
        "copy",
        &["answer_copies_input", "answer_copies_instruction"],
    ),
    ("instruction", &["not_a_task", "instruction_off_task"]),
    ("json_content", &["empty_required_content", "garbage_value"]),
    (
        "grounding",
        &[
            "unknown_icd10_code",
            "no_icd10_code",
            "implausible_icd10_code",
            "icd10_description_mismatch",
            "span_not_in_input",
            "quote_not_in_input",
            "ungrounded_number",
            "ungrounded_drug",
            "ungrounded_claim",
            "phi_left_in",
            "phi_not_in_input",
            "nli_label_unsupported",
        ],
    ),
];

/// The filter implementations, in the order of `FILTERS`.
const CHAIN: &[&dyn Filter] = &[
    &form::SchemaCheck,
    &leaks::ChatMarkup,
    &leaks::Refusal,
    &leaks::Placeholder,
    &form::Markup,
    &leaks::MetaText,
    &leaks::ExampleCopy,
    &domain::Language,
    &domain::ClinicalDomain,
    &coherence::Coherence,
    &form::Length,
    &form::Repetition,
    &form::Truncation,
    &copy::Copy,
    &task_fit::Instruction,
    &form::JsonContent,
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
    let p = Prepared::new(rec, cx.tax);
    for f in CHAIN {
        if cx.cfg.disable.iter().any(|d| d == f.name()) {
            continue;
        }
        if let Verdict::Drop(reason, detail) = f.check(&p, cx) {
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
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict;
}

/// A record with what several filters need computed once: the parsed json answer, the
/// answer's prose, lowercased words of each part, the document's word set.
pub(crate) struct Prepared<'r> {
    pub rec: &'r Record,
    /// The parsed answer of a `json` record (None for plain_text or unparseable).
    pub json: Option<Value>,
    /// The instruction without the schema note the engine appends.
    pub instruction: &'r str,
    /// Each string of the answer with its JSON pointer ("" for a plain_text answer).
    pub strings: Vec<(String, String)>,
    /// `strings` joined, one a line.
    pub answer: String,
    pub doc_words: Vec<Word>,
    pub instr_words: Vec<Word>,
    pub answer_words: Vec<Word>,
    /// `vocab::hash` of each of `doc_words`, `instr_words` and `answer_words`, computed
    /// once.
    pub doc_hashes: Vec<u64>,
    pub instr_hashes: Vec<u64>,
    pub answer_hashes: Vec<u64>,
    doc_set: OnceLock<Source>,
    doc_classes: OnceLock<Vec<Class>>,
    answer_classes: OnceLock<Vec<Class>>,
    doc_scan: OnceLock<regex::SetMatches>,
    pub vocab: Arc<Vocab>,
}

impl<'r> Prepared<'r> {
    pub fn new(rec: &'r Record, tax: &Taxonomy) -> Prepared<'r> {
        let json = is_json(rec)
            .then(|| crate::schemas::extract_json(&rec.output).ok())
            .flatten();
        let strings = match &json {
            Some(v) => {
                let mut out = Vec::new();
                string_values(v, String::new(), &mut out);
                out
            }
            None => vec![(String::new(), rec.output.clone())],
        };
        let answer = strings
            .iter()
            .map(|(_, s)| s.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let instruction = bare_instruction(&rec.instruction);
        let doc_words = vocab::words(&rec.input);
        let answer_words = vocab::words(&answer);
        let instr_words = vocab::words(instruction);
        let hashes = |w: &[Word]| w.iter().map(|w| vocab::hash(w)).collect();
        Prepared {
            rec,
            doc_hashes: hashes(&doc_words),
            answer_hashes: hashes(&answer_words),
            instr_hashes: hashes(&instr_words),
            doc_words,
            instr_words,
            answer_words,
            json,
            instruction,
            strings,
            answer,
            doc_set: OnceLock::new(),
            doc_classes: OnceLock::new(),
            answer_classes: OnceLock::new(),
            doc_scan: OnceLock::new(),
            vocab: Vocab::of(tax),
        }
    }

    pub fn is_json(&self) -> bool {
        is_json(self.rec)
    }

    /// Whether the document can match `pattern` at all: one pass of all the document
    /// patterns together, so a clean document is read once, not once per filter.
    pub fn doc_may_match(&self, pattern: DocPattern) -> bool {
        static SET: LazyLock<regex::RegexSet> = LazyLock::new(|| {
            let bracketed = leaks::bracketed_pattern();
            let patterns = [
                leaks::CHAT_PATTERN,
                leaks::REFUSAL_PATTERN,
                leaks::TEMPLATE_PATTERN,
                &bracketed,
                form::MARKUP_PATTERN,
                leaks::ECHO_PATTERN,
                domain::FILLER_PATTERN,
            ];
            regex::RegexSet::new(patterns.map(vocab::ascii_boundaries)).expect("valid regexes")
        });
        self.doc_scan
            .get_or_init(|| SET.matches(&self.rec.input))
            .matched(pattern as usize)
    }

    /// The vocabulary classes of each of `doc_words`.
    pub fn doc_classes(&self) -> &[Class] {
        self.doc_classes
            .get_or_init(|| self.classes(&self.doc_words, &self.doc_hashes))
    }

    /// The vocabulary classes of each of `answer_words`.
    pub fn answer_classes(&self) -> &[Class] {
        self.answer_classes
            .get_or_init(|| self.classes(&self.answer_words, &self.answer_hashes))
    }

    fn classes(&self, words: &[Word], hashes: &[u64]) -> Vec<Class> {
        words
            .iter()
            .zip(hashes)
            .map(|(w, h)| self.vocab.class_hashed(w, *h))
            .collect()
    }

    /// The document's words (with known abbreviations expanded) and the instruction's.
    pub fn source(&self) -> &Source {
        self.doc_set.get_or_init(|| {
            let mut src = Source::default();
            src.words.extend(&self.doc_hashes);
            src.words.extend(&self.instr_hashes);
            // `known`: the word's own hash is in already.
            let mut add = |w: &str, known: bool| {
                if !known {
                    src.words.insert(vocab::hash(w));
                }
                if w.len() >= 5 && w.chars().count() >= 5 {
                    src.stems.insert(vocab::hash(vocab::stem(w, 5)));
                }
            };
            for w in self.doc_words.iter().chain(&self.instr_words) {
                if let Some(exp) = self.vocab.expand(w) {
                    exp.split(' ').for_each(|x| add(x, false));
                }
                let generic = self.vocab.generic_drug(w);
                if generic != w {
                    add(generic, false);
                }
                add(w, true);
            }
            src
        })
    }

    /// Whether the document or instruction has `w` (or a word sharing its first 5 letters).
    pub fn in_source(&self, w: &str) -> bool {
        let src = self.source();
        src.has(w)
            || src.has(self.vocab.generic_drug(w))
            || (w.chars().count() >= 5 && src.stems.contains(&vocab::hash(vocab::stem(w, 5))))
    }

    /// The document, the instruction and the answer's prose, with their names.
    pub fn parts(&self) -> [(&'static str, &str); 3] {
        [
            ("document", self.rec.input.as_str()),
            ("instruction", self.instruction),
            ("answer", self.answer.as_str()),
        ]
    }
}

/// The patterns several filters look for in a document, in `Prepared::doc_may_match`'s
/// set.
#[derive(Clone, Copy)]
pub(crate) enum DocPattern {
    Chat,
    Refusal,
    Template,
    Bracketed,
    Markup,
    Echo,
    Filler,
}

/// Hashes of the words of a record's document and instruction (abbreviations expanded,
/// brands mapped to generics), and of their 5-letter stems.
#[derive(Default)]
pub(crate) struct Source {
    words: FxHashSet<u64>,
    pub stems: FxHashSet<u64>,
}

impl Source {
    pub fn has(&self, w: &str) -> bool {
        self.words.contains(&vocab::hash(w))
    }
}

fn is_json(rec: &Record) -> bool {
    rec.output_format == "json"
}

/// Every string value inside a JSON value with its JSON pointer, depth first.
fn string_values(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((path, s.clone())),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| string_values(x, format!("{path}/{i}"), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| string_values(x, format!("{path}/{k}"), out)),
        _ => {}
    }
}

fn word_count(s: &str) -> usize {
    if !s.is_ascii() {
        return s.split_whitespace().count();
    }
    // ASCII: the same words as `split_whitespace`, byte by byte.
    let (mut n, mut prev_ws) = (0, true);
    for &c in s.as_bytes() {
        let ws = c == b' ' || (b'\t'..=b'\r').contains(&c);
        n += usize::from(prev_ws && !ws);
        prev_ws = ws;
    }
    n
}

#[cfg(test)]
pub(crate) mod tests;
