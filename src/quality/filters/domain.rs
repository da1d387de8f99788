//! Domain: is the record English, and is it clinical? Language by whatlang on longer texts
//! and by function-word counts on short ones; the clinical signal is the share of a
//! text's content words that our clinical vocabulary knows (see `quality::vocab`).

use super::{word_count, DocPattern, Filter, FilterCtx, Prepared, Verdict};
use crate::quality::vocab::{Class, Word};
use regex::Regex;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::sync::LazyLock;

/// Function words of the languages a teacher drifts into, for texts too short for whatlang.
const FOREIGN: &[(&str, &[&str])] = &[
    (
        "Spanish",
        &[
            "el", "la", "los", "las", "del", "una", "para", "con", "por", "que", "es", "está",
            "paciente", "resuma", "nota", "según", "cuál", "qué",
        ],
    ),
    (
        "French",
        &[
            "le", "les", "des", "une", "pour", "avec", "est", "dans", "du", "au", "et", "qui",
            "sur", "résumez", "selon", "quelle",
        ],
    ),
    (
        "German",
        &[
            "der", "die", "das", "und", "ist", "mit", "für", "ein", "eine", "nicht", "den", "dem",
            "zu", "von", "bitte", "fassen",
        ],
    ),
    (
        "Portuguese",
        &[
            "os", "da", "do", "das", "dos", "uma", "para", "com", "não", "é", "em", "que",
            "paciente",
        ],
    ),
    (
        "Italian",
        &[
            "il", "gli", "della", "delle", "una", "per", "con", "è", "che", "non", "nel",
            "paziente",
        ],
    ),
];
const ENGLISH: &[&str] = &[
    "the", "and", "of", "to", "in", "is", "with", "for", "on", "was", "a", "an", "this", "that",
    "patient", "what", "which", "are", "from", "by", "as", "at", "be", "has", "no", "not",
];

/// Each function word with a bit per language of `FOREIGN` (bit 7: English).
static FUNCTION_WORDS: LazyLock<FxHashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut m: FxHashMap<&'static str, u8> = FxHashMap::default();
    for (i, (_, words)) in FOREIGN.iter().enumerate() {
        for w in *words {
            *m.entry(w).or_default() |= 1 << i;
        }
    }
    for w in ENGLISH {
        *m.entry(w).or_default() |= 1 << 7;
    }
    m
});

/// English function words among `words`, and the language `words` look like when it is
/// clearly not English.
fn function_words(words: &[Word]) -> (usize, Option<&'static str>) {
    let mut counts = [0usize; 8];
    for w in words {
        if let Some(bits) = FUNCTION_WORDS.get(w.as_str()) {
            for (i, c) in counts.iter_mut().enumerate() {
                *c += usize::from(bits & (1 << i) != 0);
            }
        }
    }
    let english = counts[7];
    let foreign = (0..FOREIGN.len())
        .filter(|&i| counts[i] >= 2 && counts[i] > english * 2)
        .max_by_key(|&i| counts[i])
        .map(|i| FOREIGN[i].0);
    (english, foreign)
}

/// whatlang reads this much of a text (its verdict settles within a few hundred bytes).
const DETECT_BYTES: usize = 500;

pub(crate) struct Language;
impl Filter for Language {
    fn name(&self) -> &'static str {
        "language"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        // A json answer's words are taken from its prose strings below.
        let none = Vec::new();
        let answer_words = if p.is_json() { &none } else { &p.answer_words };
        for (part, text, words) in [
            ("document", p.rec.input.as_str(), &p.doc_words),
            ("instruction", p.instruction, &p.instr_words),
            ("answer", p.answer.as_str(), answer_words),
        ] {
            let json_answer = part == "answer" && p.is_json();
            // A json answer's prose is its longer strings; labels and codes say nothing.
            let prose: Cow<str> = if json_answer {
                p.strings
                    .iter()
                    .filter(|(_, s)| word_count(s) >= 6)
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into()
            } else {
                text.into()
            };
            let words_owned;
            let words = if json_answer {
                words_owned = super::vocab::words(&prose);
                &words_owned
            } else {
                words
            };
            let (english, foreign) = function_words(words);
            if let Some(lang) = foreign {
                return Verdict::Drop("non_english", format!("{part} reads as {lang}"));
            }
            // Plenty of English function words and none of another language's: English.
            if english >= 8 || (english >= 3 && english * 12 >= words.len()) {
                continue;
            }
            if word_count(&prose) < cx.cfg.language_min_words {
                continue;
            }
            let mut end = prose.len().min(DETECT_BYTES);
            while !prose.is_char_boundary(end) {
                end -= 1;
            }
            if let Some(info) = whatlang::detect(&prose[..end]) {
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

/// Fewest content words a text needs before its clinical share is judged.
const MIN_CONTENT_WORDS: usize = 20;
/// Least share of a document's content words that must be clinical.
const MIN_DOCUMENT_SHARE: f64 = 0.33;
/// The same for a plain_text answer, which may be lay language (simplification).
const MIN_ANSWER_SHARE: f64 = 0.08;
/// Least share of a document's content words that must be medical (roots, drugs, clinical
/// abbreviations and lay symptom words): everyday text scores well on ICD words alone
/// ("head", "wall", "corner", "card" of a football report).
const MIN_DOCUMENT_MEDICAL: f64 = 0.07;

/// Pleasantries, boilerplate and promotional filler: a small teacher pads a document with
/// them when it has nothing clinical to say. One is ordinary in a real message; three or
/// more distinct ones are a document made of filler.
pub(super) const FILLER_PATTERN: &str = r"(?i)\bi hope (?:this|my) (?:message|email|letter|note) finds you\b|\bi hope you are (?:well|doing well)\b|\b(?:i am|i'm|we are|we're) (?:pleased|delighted|excited|thrilled|honou?red|happy) (?:to (?:report|announce|inform|share|let you know)|about the opportunity)\b|\bexcited about the opportunity\b|\bthose who need it most\b|\b(?:excellent|exceptional|outstanding|compassionate|high-quality|world-class) (?:and compassionate )?(?:care|team|service|support)\b|\bdedicated to (?:providing|helping|delivering)\b|\bit(?:'s| is) (?:a great|an) honou?r\b|\bwe(?:'re| are) all in this together\b|\byour story is (?:very )?inspiring\b|\bthank you for (?:your willingness|being there|your time and|your understanding)\b|\bi have a lot of work ahead\b|\bthere are many (?:different )?(?:types|kinds|medical conditions|options|treatments)\b|\bit is important (?:for us )?to (?:take all|discuss|remember|note|consider)\b|\bmake an informed decision\b|\bi would (?:like|love) to (?:discuss this further|share my experience|learn more)\b|\bplease (?:do not|don't) hesitate to\b|\blook(?:ing)? forward to (?:hearing|working|your)\b";
static FILLER: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(FILLER_PATTERN).expect("valid regex"));
const MAX_FILLER: usize = 3;

pub(crate) struct ClinicalDomain;
impl Filter for ClinicalDomain {
    fn name(&self) -> &'static str {
        "clinical_domain"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        let mut filler: Vec<String> = match p.doc_may_match(DocPattern::Filler) {
            true => FILLER
                .find_iter(&p.rec.input)
                .map(|m| m.as_str().to_lowercase())
                .collect(),
            false => Vec::new(),
        };
        filler.sort();
        filler.dedup();
        if filler.len() >= MAX_FILLER {
            let d = format!(
                "document: {} filler phrases: {}",
                filler.len(),
                filler.join("; ")
            );
            return Verdict::Drop("filler_text", d);
        }
        if let Some((share, medical, n)) = clinical_share(&p.doc_words, p.doc_classes()) {
            if medical < MIN_DOCUMENT_MEDICAL {
                let d = format!(
                    "document: {:.0}% of {n} content words are medical terms (need {:.0}%)",
                    medical * 100.0,
                    MIN_DOCUMENT_MEDICAL * 100.0
                );
                return Verdict::Drop("non_clinical", d);
            }
            if share < MIN_DOCUMENT_SHARE {
                let d = format!(
                    "document: {:.0}% of {n} content words are clinical (need {:.0}%)",
                    share * 100.0,
                    MIN_DOCUMENT_SHARE * 100.0
                );
                return Verdict::Drop("non_clinical", d);
            }
        }
        if !p.is_json() {
            if let Some((share, _, n)) = clinical_share(&p.answer_words, p.answer_classes()) {
                if share < MIN_ANSWER_SHARE {
                    let d = format!(
                        "answer: {:.0}% of {n} content words are clinical (need {:.0}%)",
                        share * 100.0,
                        MIN_ANSWER_SHARE * 100.0
                    );
                    return Verdict::Drop("non_clinical", d);
                }
            }
        }
        Verdict::Keep
    }
}

/// The shares of `words`' content words (not stopwords, not bare numbers) that are
/// clinical and that are medical, and how many content words there were; None when too
/// few to judge.
pub(crate) fn clinical_share(words: &[Word], classes: &[Class]) -> Option<(f64, f64, usize)> {
    let (mut content, mut clinical, mut medical) = (0usize, 0usize, 0usize);
    for (w, c) in words.iter().zip(classes) {
        if w.len() < 2 || c.stop() || w.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        content += 1;
        let measure = is_measure(w);
        clinical += usize::from(c.clinical() || measure);
        medical += usize::from(c.medical() || measure);
    }
    if content < MIN_CONTENT_WORDS {
        return None;
    }
    let n = content as f64;
    Some((clinical as f64 / n, medical as f64 / n, content))
}

/// A number fused with a unit or a clinical shorthand: `40mg`, `2l`, `x3d`, `q6h`.
fn is_measure(w: &str) -> bool {
    let digits = w.chars().filter(char::is_ascii_digit).count();
    digits > 0 && digits < w.len() && w.len() <= 8
}
