//! Task fit: is the instruction a task at all, and a task of the record's type? An
//! instruction must ask for something (a request verb or a question) about the document;
//! it must not ask for something outside clinical NLP (a poem, a translation into French);
//! its wording must carry a cue of its task type and the answer must have the shape that
//! task's answers have (a list of entities, an entailment label, ICD codes, a SOAP note...).
//! A `json` answer's shape is the schema's business, so there the cue test is skipped.

use super::{Filter, FilterCtx, Prepared, Verdict};
use regex::Regex;
use std::sync::LazyLock;

/// A request: a question, a modal opening, or a request verb that opens a clause ("List
/// ...", "Using the note, list ...", "please list"); a statement that merely contains
/// one ("Extracting the symptoms is an important part of ...") is no request.
static REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?i)\?|(?:^|[.!?:;,\n]\s*|\b(?:please|kindly|you to|then|and|also|now|briefly|first|carefully)\s+)(?:return|output|delete|erase|strip|scrub|hide|obscure|transform|summari[sz]e|list|identify|extract|classify|categori[sz]e|assign|determine|decide|rewrite|re-write|explain|answer|find|correct|fix|write|draft|generate|create|compose|prepare|produce|label|tag|code|redact|remove|mask|replace|de-?identify|anonymi[sz]e|mark|highlight|give|provide|state|tell|describe|outline|pull|capture|record|fill|map|link|pair|match|build|construct|convert|turn|translate|simplify|paraphrase|condense|shorten|sum\s+up|recap|note|flag|point\s+out|show|report|assess|evaluate|judge|check|review|verify|detect|spot|locate|select|choose|pick|rate|rank|order|sort|put|organi[sz]e|arrange|enumerate|specify|indicate|name|document|chart|convert|compile|tabulate|structure|normali[sz]e|infer|conclude|predict|estimate|compare|contrast|clarify|interpret|reword|restate|edit|proofread|revise|update)\b|^\s*(?:please|can|could|would|will|what|which|who|when|where|why|how|is|are|does|do|did|was|were|has|have)\b|\b(?:needs? to be|should be|must be|has to be|have to be|i need|we need|i'd like|i would like|i want|we want)\b",
    )
    .expect("valid regex")
});

/// Words by which an instruction refers to the document it is about.
static REFERS: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?i)\b(?:note|notes|report|letter|document|text|record|records|summary|message|conversation|dialogue|transcript|passage|excerpt|chart|form|label|guideline|protocol|abstract|case|patient|patient's|pt|he|she|his|her|their|it|this|these|above|below|visit|encounter|admission|discharge|results?|findings?|list|order|sheet|handout|leaflet|instructions|claim|request|statement|hypothesis|history|plan|exam|study|trial|narrative|section)\b",
    )
    .expect("valid regex")
});

/// Requests that are no clinical NLP task, whatever the task type.
static FOREIGN_TASK: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?i)\b(?:poem|poetry|haiku|limerick|song|lyrics|rap|joke|jokes|riddle|short\s+story|bedtime\s+story|fairy\s*tale|screenplay|recipe|tweet|slogan|advertisement|ad copy|marketing|essay about|birthday|weather|horoscope|movie\s+review|python|javascript|sql|c\+\+|source\s+code|lines?\s+of\s+code|code\s+snippet|programming|regular\s+expression|(?:in|into|to)\s+(?:french|spanish|german|italian|portuguese|chinese|japanese|russian|arabic|hindi|korean)\b)",
    )
    .expect("valid regex")
});

/// Lowercase stems whose presence in an instruction says it asks for `task`.
fn cues(task: &str) -> Option<&'static [&'static str]> {
    Some(match task {
        "summarization" => &[
            "summar",
            "brief",
            "concise",
            "condens",
            "overview",
            "synops",
            "gist",
            "recap",
            "sum up",
            "key point",
            "highlight",
            "main point",
            "short version",
            "one-line",
            "one line",
            "in a sentence",
            "sentences",
            "bullet",
            "hand-off",
            "handoff",
            "sign-out",
            "signout",
            "nutshell",
            "takeaway",
            "take-away",
            "essentials",
            "snapshot",
            "shorten",
            "problem list",
            "impression",
            "what happened",
            "course",
        ],
        "question_answering" => &[
            "?",
            "question",
            "answer",
            "what ",
            "which ",
            "when ",
            "why ",
            "how ",
            "who ",
            "where ",
            "does ",
            "did ",
            "is there",
            "was ",
            "were ",
            "according to",
            "tell me",
            "find out",
            "whether",
        ],
        "named_entity_recognition" => &[
            "entit",
            "identif",
            "extract",
            "tag",
            "list",
            "find all",
            "mention",
            "label",
            "highlight",
            "pull out",
            "span",
            "pick out",
            "every ",
            "all the",
            "each ",
            "mark",
            "term",
            "name",
        ],
        "relation_extraction" => &[
            "relation",
            "link",
            "pair",
            "between",
            "connect",
            "associat",
            "which drug",
            "dose",
            "for which",
            "map",
            "treat",
            "caus",
            "attribut",
            "goes with",
            "match",
            "what for",
            "indicat",
            "result",
            "side effect",
            "adverse",
            "tie",
        ],
        "classification" => &[
            "classif",
            "categor",
            "label",
            "type of",
            "which type",
            "what type",
            "which kind",
            "what kind",
            "triage",
            "urgen",
            "priorit",
            "route",
            "assign",
            "is this",
            "decide",
            "risk",
            "level",
            "specialty",
            "acuity",
            "bucket",
            "sort",
            "status",
            "which service",
            "severity",
            "category",
            "disposition",
            "tier",
            "grade",
            "whether",
        ],
        "natural_language_inference" => &[
            "entail",
            "contradict",
            "neutral",
            "hypothes",
            "statement",
            "claim",
            "follow",
            "support",
            "infer",
            "true",
            "false",
            "consistent",
            "conclude",
            "premise",
            "assertion",
            "implied",
            "imply",
            "refute",
        ],
        "clinical_coding" => &[
            "icd", "code", "coding", "bill", "diagnos", "claim", "abstract", "cm",
        ],
        "error_correction" => &[
            "error",
            "mistake",
            "incorrect",
            "wrong",
            "correct",
            "inaccura",
            "inconsisten",
            "fix",
            "proofread",
            "discrepan",
            "accurate",
            "check",
            "verify",
            "review",
            "typo",
            "safety",
            "problem with",
        ],
        "note_generation" => &[
            "note",
            "soap",
            "document",
            "write up",
            "write-up",
            "chart",
            "draft",
            "encounter",
            "hpi",
            "assessment",
            "plan",
            "visit",
            "progress",
            "record",
            "consult",
        ],
        "sdoh_extraction" => &[
            "social",
            "sdoh",
            "determinant",
            "housing",
            "living",
            "lives",
            "employ",
            "job",
            "work",
            "substance",
            "tobacco",
            "smok",
            "alcohol",
            "drink",
            "drug use",
            "support",
            "transport",
            "food",
            "financ",
            "insurance",
            "barrier",
            "risk factor",
            "home",
            "caregiver",
            "education",
            "stress",
            "isolation",
            "safety",
        ],
        "information_extraction" => &[
            "extract",
            "pull",
            "list",
            "medication",
            "vital",
            "lab",
            "value",
            "fill",
            "form",
            "field",
            "table",
            "structur",
            "capture",
            "record",
            "dose",
            "result",
            "tabulate",
            "what are",
            "which",
            "collect",
            "gather",
            "enumerate",
        ],
        "simplification" => &[
            "simpl",
            "plain",
            "lay",
            "patient-friendly",
            "patient friendly",
            "everyday",
            "explain",
            "rewrite",
            "re-write",
            "understand",
            "easier",
            "easy",
            "reading level",
            "grade level",
            "non-medical",
            "jargon",
            "layperson",
            "family",
            "without medical",
            "words",
            "language",
            "translate",
            "for the patient",
            "for a patient",
            "for her",
            "for him",
            "for them",
            "reword",
            "paraphrase",
        ],
        "deidentification" => &[
            "de-identif",
            "deidentif",
            "redact",
            "phi",
            "protected health",
            "anonymi",
            "identif",
            "mask",
            "remove",
            "scrub",
            "privacy",
            "personal",
            "hipaa",
            "names",
            "confidential",
            "strip",
            "replace",
            "surrogate",
            "pseudonym",
        ],
        "temporal_extraction" => &[
            "timeline",
            "chronolog",
            "when",
            "date",
            "time",
            "temporal",
            "sequence",
            "order",
            "timing",
            "before",
            "after",
            "duration",
            "how long",
            "onset",
            "day",
            "events",
            "schedule",
            "history",
        ],
        _ => return None,
    })
}

const TIME_WORDS: &[&str] = &[
    "day",
    "week",
    "month",
    "year",
    "yesterday",
    "today",
    "tomorrow",
    "tonight",
    "prior",
    "before",
    "after",
    "admission",
    "discharge",
    "morning",
    "evening",
    "night",
    "hour",
    "minute",
    "since",
    "until",
    "during",
    "ago",
    "later",
    "earlier",
    "then",
    "now",
    "current",
    "ongoing",
    "onset",
    "recent",
    "previous",
    "past",
    "childhood",
    "age",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "postoperative",
    "postop",
    "preoperative",
    "preop",
    "overnight",
    "daily",
    "weekly",
    "first",
    "last",
    "next",
    "start",
    "stop",
    "when",
    "while",
    "follow",
    "hospital",
    "visit",
    "stay",
];

/// Whether a plain_text answer has the shape of an answer to `task`.
fn answer_fits(task: &str, p: &Prepared) -> bool {
    let a = p.answer.to_lowercase();
    let n = p.answer_words.len();
    let items = p
        .answer
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
        .max(p.answer.matches([',', ';']).count() + 1);
    let has = |words: &[&str]| words.iter().any(|w| a.contains(w));
    match task {
        "summarization" => n >= 8 && (n as f64) < 0.8 * p.doc_words.len().max(1) as f64,
        "question_answering" => true,
        "named_entity_recognition" => items >= 2,
        "relation_extraction" => {
            items >= 1
                && (has(&[
                    "->",
                    "→",
                    ":",
                    " - ",
                    "–",
                    "treat",
                    "for ",
                    "caus",
                    "dose",
                    "due to",
                    "associated",
                    "result",
                ]))
        }
        "classification" => n <= 120,
        "natural_language_inference" => has(&[
            "entail",
            "contradict",
            "neutral",
            "not supported",
            "supported",
            "follows",
            "cannot be determined",
            "consistent",
            "inconsistent",
            "true",
            "false",
        ]),
        "clinical_coding" => super::grounding::codes::CODE.is_match(&p.answer),
        "error_correction" => {
            has(&[
                "error",
                "incorrect",
                "correct",
                "should be",
                "should read",
                "wrong",
                "no error",
                "mistake",
            ]) || n as f64 >= 0.6 * p.doc_words.len() as f64
        }
        "note_generation" => {
            has(&[
                "subjective",
                "objective",
                "assessment",
                "plan",
                "hpi",
                "chief complaint",
                "history of present",
            ]) || n >= 60
        }
        "sdoh_extraction" => has(&[
            "housing",
            "employ",
            "smok",
            "alcohol",
            "tobacco",
            "drug",
            "social",
            "support",
            "transport",
            "food",
            "financ",
            "insurance",
            "lives",
            "living",
            "work",
            "job",
            "education",
            "none documented",
            "not documented",
            "no social",
        ]),
        "information_extraction" => p.answer.chars().any(|c| c.is_ascii_digit()) || items >= 2,
        "simplification" => n >= 15,
        "deidentification" => {
            p.answer.contains('[') || items >= 2 || n as f64 >= 0.6 * p.doc_words.len() as f64
        }
        // Every line of a timeline carries its time.
        "temporal_extraction" => p
            .answer
            .lines()
            .filter(|l| l.chars().any(char::is_alphanumeric))
            .all(|l| {
                l.chars().any(|c| c.is_ascii_digit())
                    || crate::quality::vocab::words(l)
                        .iter()
                        .any(|w| TIME_WORDS.contains(&w.trim_end_matches('s')))
            }),
        _ => true,
    }
}

pub(crate) struct Instruction;
impl Filter for Instruction {
    fn name(&self) -> &'static str {
        "instruction"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let instruction = p.instruction;
        if !REQUEST.is_match(instruction) {
            return Verdict::Drop("not_a_task", "the instruction asks for nothing".into());
        }
        let lower = instruction.to_lowercase();
        let task_cues = cues(&p.rec.task_type).unwrap_or(&[]);
        let about_document = REFERS.is_match(instruction)
            || p.instr_words
                .iter()
                .any(|w| w.len() >= 5 && p.vocab.is_clinical(w))
            || task_cues.iter().any(|k| k.len() >= 3 && lower.contains(k));
        if !about_document {
            return Verdict::Drop(
                "not_a_task",
                "the instruction refers to no document and no clinical content".into(),
            );
        }
        if let Some(m) = FOREIGN_TASK.find(instruction) {
            let d = format!("asks for {:?}, which is no clinical NLP task", m.as_str());
            return Verdict::Drop("instruction_off_task", d);
        }
        if p.is_json() {
            return Verdict::Keep;
        }
        let keywords: Vec<&str> = match cues(&p.rec.task_type) {
            Some(c) => c.to_vec(),
            None => match cx.tax.task(&p.rec.task_type) {
                Some(t) => t.keywords.iter().map(String::as_str).collect(),
                None => return Verdict::Keep,
            },
        };
        let cued = keywords.is_empty() || keywords.iter().any(|k| lower.contains(k));
        if cued && answer_fits(&p.rec.task_type, p) {
            return Verdict::Keep;
        }
        let d = match cued {
            true => format!(
                "the answer does not have the shape of a {} answer",
                p.rec.task_type
            ),
            false => format!("the instruction has no cue of {}", p.rec.task_type),
        };
        Verdict::Drop("instruction_off_task", d)
    }
}
