//! Leaks: text that is about the generation rather than part of the data. Chat-role and
//! special tokens, refusals and AI disclaimers, unfilled placeholders, meta-text (an answer
//! that describes how one would answer) and prompt echo (a "document" that is a
//! generation prompt or a template description).

use super::{DocPattern, Filter, FilterCtx, Prepared, Verdict};
use regex::Regex;
use std::sync::LazyLock;

/// Chat-template markers, special tokens and role turns of a transcript.
pub(super) const CHAT_PATTERN: &str = r"(?im)<\|[a-z_0-9]{2,30}\|>|</?s>|\[/?INST\]|<<\s*/?SYS\s*>>|<(?:start|end)_of_turn>|</?think>|^\s*#{2,4}\s*(?:response|instruction|input|output|answer|assistant|user|system|human)\b|^\s*(?:user|assistant|system|human|ai|bot|gpt|chatgpt|model)\s*:";
static CHAT: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(CHAT_PATTERN).expect("valid regex"));

pub(crate) struct ChatMarkup;
impl Filter for ChatMarkup {
    fn name(&self) -> &'static str {
        "chat_markup"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        for (part, text) in p.parts() {
            if part == "document" && !p.doc_may_match(DocPattern::Chat) {
                continue;
            }
            if let Some(m) = CHAT.find(text) {
                return Verdict::Drop("chat_markup", format!("{part}: {:?}", m.as_str().trim()));
            }
        }
        Verdict::Keep
    }
}

/// AI disclaimers and refusals: dropped wherever they appear.
pub(super) const REFUSAL_PATTERN: &str = r"(?i)\bas an ai\b|\bas an? (?:large |ai )?language model\b|\bi(?:'m| am) (?:just |only )?an? (?:ai|artificial intelligence|language model|chatbot|virtual assistant)\b|\bi (?:cannot|can ?not|can['’]t|am unable to|['’]m unable to|am not able to|won['’]t be able to) (?:provide|assist|help with|fulfill?|comply|generate|create|write|give|offer|answer|access|diagnose)\b|\bi(?:'m| am) not (?:a|your) (?:doctor|physician|medical professional|healthcare provider)\b|\bi (?:do not|don['’]t) have access to\b|\bnot (?:a substitute for|intended as) (?:professional )?medical advice\b|\bfor (?:informational|educational) purposes only\b";
static REFUSAL: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(REFUSAL_PATTERN).expect("valid regex"));

/// Apologies: dropped in the instruction and the answer only, since dialogue documents
/// legitimately contain them ("I'm sorry, but the biopsy showed ...").
static APOLOGY: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?i)\bi apologi[sz]e\b|\bi(?:['’]m| am) sorry,? but\b|\bunfortunately,? i\b",
    )
    .expect("valid regex")
});

pub(crate) struct Refusal;
impl Filter for Refusal {
    fn name(&self) -> &'static str {
        "refusal"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        for (part, text) in p.parts() {
            // The document is checked for refusals only, not apologies.
            if part == "document" && !p.doc_may_match(DocPattern::Refusal) {
                continue;
            }
            let found = REFUSAL
                .find(text)
                .or_else(|| (part != "document").then(|| APOLOGY.find(text)).flatten());
            if let Some(m) = found {
                return Verdict::Drop("refusal", format!("{part}: {:?}", m.as_str()));
            }
        }
        Verdict::Keep
    }
}

/// Template syntax and filler: a leak anywhere.
pub(super) const TEMPLATE_PATTERN: &str = r"\{\{|\}\}|\{%|%\}|\{[A-Za-z_][A-Za-z_ ]{1,30}\}|(?i:lorem ipsum)|XXX-XX|\b(?:XX|MM|DD)/(?:XX|DD|MM)/(?:XX|YY){1,2}\b|\bX{2,}\b|_{4,}";
static TEMPLATE: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(TEMPLATE_PATTERN).expect("valid regex"));

/// Bracketed placeholders such as `[Patient Name]`, `[Insert date]`, `<placeholder>`.
pub(super) fn bracketed_pattern() -> String {
    const SLOT: &str = r"insert\b[^\]>\n]*|enter\b[^\]>\n]*|(?:patient|doctor|physician|provider|clinician|nurse|your|my|hospital|clinic|facility|practice|pharmacy)(?:['’]s)? (?:name|address|phone(?: number)?|signature|title)|(?:first |last |full )?name|date(?: of [a-z ]+)?|time|patient|address|phone(?: number)?|mrn|dob|age|location|hospital|clinic|signature|medication(?: name)?|drug(?: name)?|dose|dosage|diagnosis|condition|number|city|state|zip(?: code)?|email|specialty|title";
    format!(r"(?i)\[\s*(?:{SLOT})\s*\]|<\s*(?:{SLOT}|placeholder)\s*>")
}
static BRACKETED: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(&bracketed_pattern()).expect("valid regex"));

pub(crate) struct Placeholder;
impl Filter for Placeholder {
    fn name(&self) -> &'static str {
        "placeholder"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        // A de-identification answer may replace PHI with surrogate tags like `[NAME]`,
        // and its instruction may name the tags to use.
        let tags_ok = p.rec.task_type == "deidentification";
        for (part, text) in p.parts() {
            if part == "document"
                && !p.doc_may_match(DocPattern::Template)
                && !p.doc_may_match(DocPattern::Bracketed)
            {
                continue;
            }
            let found = TEMPLATE.find(text).or_else(|| {
                (part == "document" || !tags_ok)
                    .then(|| BRACKETED.find(text))
                    .flatten()
            });
            if let Some(m) = found {
                return Verdict::Drop("template_leak", format!("{part}: {:?}", m.as_str()));
            }
        }
        Verdict::Keep
    }
}

/// An answer that talks about the task instead of doing it.
static META: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?ix)
        ^\s*(?:sure|certainly|of\ course|absolutely|great|okay|ok)\b[,!.]
      | ^\s*here(?:'s|’s|\ is|\ are)\ (?:a|an|the|your|my|some)\b
      | \b(?:the\ )?(?:instructions?|prompt|template|task|request)\ (?:given|provided|stated|described|mentioned|shown|above|below)\b
      | \b(?:given|provided|mentioned|stated|described)\ (?:above|below)\b
      | \bthe\ above\ (?:instructions?|prompt|template|task|request|text|document|note|example)\b
      | \b(?:to|in\ order\ to)\ (?:answer|complete|address|solve|respond\ to)\ (?:this|the)\ (?:question|task|instruction|request|prompt)\b
      | \b(?:one|you|we)\ (?:would|should|could|must|need\ to|will\ need\ to)\ (?:first\ )?(?:read|review|look|analy[sz]e|identify|consider|examine|start)\b
      | \bthe\ (?:summary|answer|response|output|instruction|note|document)\ (?:should|must|will|would|needs\ to)\ (?:include|contain|be|cover|mention|focus|list|describe|have)\b
      | \b(?:this|the\ following|the)\ (?:instruction|prompt|task)\ (?:asks|requires|is\ asking|wants|involves)\b
      | \b(?:your|the)\ task\ is\b|\bin\ this\ task\b|\byou\ are\ (?:asked|required|instructed)\ to\b
      | \bi\ will\ (?:now\ )?(?:summari[sz]e|answer|provide|write|generate|create|extract|identify|list|classify|analy[sz]e)\b
      | \blet\ me\ (?:know|summari[sz]e|explain|help|provide|analy[sz]e|break)\b|\blet's\ (?:break|look|analy[sz]e|start)\b
      | \bhope\ (?:this|that)\ helps\b|\bfeel\ free\ to\b|\bif\ you\ (?:need|have)\ (?:any|more|further)\b
      | \b(?:possible|sample|example)\ (?:instruction|answer|response|output|prompt)s?\b
      | \b(?:instruction|answer|response|output)\s*:\s*$
      | ^\s*(?:instruction|answer|response|output|question|task)\s*:
      | \bas\ (?:requested|instructed|asked)\b
      | \bthe\ (?:model|assistant|ai)\ (?:should|must|will)\b
    ",
    )
    .expect("valid regex")
});

/// A letter's closing line.
static SIGN_OFF: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?im)^\s*(?:best wishes|best regards|kind regards|warm regards|regards|sincerely|yours (?:truly|sincerely)|thanks|thank you|many thanks|cheers),?\s*$",
    )
    .expect("valid regex")
});

/// An instruction that is the teacher talking about writing one.
static META_INSTRUCTION: LazyLock<Regex> = LazyLock::new(|| {
    crate::quality::vocab::regex(
        r"(?ix)
        ^\s*(?:sure|certainly|of\ course|absolutely|great|okay|ok)\b[,!.]
      | ^\s*here(?:'s|’s|\ is|\ are)\ (?:a|an|the|your|my|some|one)\b
      | \b(?:the\ )?(?:instructions?|prompt|template|request)\ (?:given|provided|stated|described|mentioned|shown)\ (?:above|below)\b
      | \bthe\ above\ (?:instructions?|prompt|template|task|request|example)\b
      | \b(?:possible|sample|example|realistic)\ (?:instruction|prompt)s?\b
      | ^\s*(?:instruction|task|prompt)\s*\d*\s*:
      | (?m:^\s*(?:instructions?|answer|response|output|solution|explanation)\s*:)
      | \bi\ will\ (?:now\ )?(?:write|generate|create|provide)\b
      | \bhope\ (?:this|that)\ helps\b
      | \bthe\ (?:model|assistant|ai)\ (?:should|must|will)\b
      | \b(?:the\ )?answer(?:ing)?\ (?:model|assistant)\b
      | \b(?:template|placeholder)s?\b
      | \b(?:fictional|synthetic|fictitious|made-up|hypothetical)\ (?:patient|document|note|report|case|record)\b
      | \b(?:document\ type|difficulty(?:\ level)?|writing\ style|output\ format)\s*:
    ",
    )
    .expect("valid regex")
});

/// A "document" that is a generation prompt, a template or a description of one.
pub(super) const ECHO_PATTERN: &str = r"(?ix)
        ^\s*(?:please\ )?(?:write|generate|create|compose|draft|produce|imagine)\ (?:a|an|one|the)\b
      | \b(?:write|generate|create|compose|draft)\ (?:a|an)\ (?:realistic|fictional|synthetic|detailed|sample|brief|short)\b
      | \b(?:include|including|use|with)\ (?:the\ )?(?:following\ )?sections?\ (?:such\ as|like|for|:)
      | \bthe\ following\ sections\b
      | \b(?:this|the)\ (?:document|note|report|letter|text)\ (?:is\ a|serves\ as\ a|provides\ a)\ (?:template|sample|example|format|outline|structure)\b
      | \b(?:template|placeholder)s?\b
      | \b(?:fictional|synthetic|fictitious|made-up|hypothetical)\ (?:patient|document|note|report|case|example|record)\b
      | \b(?:length|word\ count)\s*:\s*(?:about\ )?\d+\ words\b
      | (?m:^\s*sections?\s*:)
      | \b(?:should|must)\ (?:be\ )?(?:written|include|contain|cover|describe)\b.{0,60}\b(?:sections?|document|note|report)\b
      | \bdifficulty\ (?:level)?\s*:
      | \bwriting\ style\s*:
    ";
static ECHO: LazyLock<Regex> =
    LazyLock::new(|| crate::quality::vocab::regex(ECHO_PATTERN).expect("valid regex"));

pub(crate) struct MetaText;
impl Filter for MetaText {
    fn name(&self) -> &'static str {
        "meta_text"
    }
    fn check(&self, p: &Prepared, _cx: &FilterCtx) -> Verdict {
        let echo = p
            .doc_may_match(DocPattern::Echo)
            .then(|| ECHO.find(&p.rec.input));
        if let Some(m) = echo.flatten() {
            return Verdict::Drop("prompt_echo", format!("document: {:?}", m.as_str().trim()));
        }
        if let Some(m) = META_INSTRUCTION.find(p.instruction) {
            return Verdict::Drop("meta_text", format!("instruction: {:?}", m.as_str().trim()));
        }
        if let Some(m) = META.find(&p.answer) {
            return Verdict::Drop("meta_text", format!("answer: {:?}", m.as_str().trim()));
        }
        // A sign-off belongs to a letter, not to an extraction or a summary of one.
        let writes_letters = matches!(
            p.rec.task_type.as_str(),
            "simplification" | "note_generation" | "error_correction" | "deidentification"
        );
        if let Some(m) = SIGN_OFF.find(&p.answer).filter(|_| !writes_letters) {
            let d = format!("answer: signs off with {:?}", m.as_str().trim());
            return Verdict::Drop("meta_text", d);
        }
        Verdict::Keep
    }
}

/// Output that copies the templates' worked examples: their people or record numbers
/// anywhere the document does not have them, or a run of their words in the document
/// (or in an answer whose document does not have it). The instruction may copy an
/// example instruction's wording (they are generic on purpose), not its people.
pub(crate) struct ExampleCopy;
impl Filter for ExampleCopy {
    fn name(&self) -> &'static str {
        "example_copy"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let Some(ex) = cx.examples else {
            return Verdict::Keep;
        };
        let doc = p.rec.input.as_str();
        let drop = |part: &str, what: String| {
            Verdict::Drop(
                "example_copy",
                format!("{part}: {what} of the prompt's worked example"),
            )
        };
        if let Some(n) = ex.name_in(doc) {
            return drop("document", format!("{n:?}"));
        }
        if let Some(g) = ex.copied_gram(&p.doc_words, &p.doc_hashes) {
            return drop("document", format!("{:?}", g.join(" ")));
        }
        for (part, text) in [
            ("instruction", p.instruction),
            ("answer", p.answer.as_str()),
        ] {
            if let Some(n) = ex.name_in(text) {
                return drop(part, format!("{n:?}"));
            }
        }
        // A code's description is the code set's wording, not the example's.
        let coding = p.rec.task_type == "clinical_coding";
        if let Some(g) = ex
            .copied_gram(&p.answer_words, &p.answer_hashes)
            .filter(|_| !coding)
        {
            if !p.doc_words.join(" ").contains(&g.join(" ")) {
                return drop("answer", format!("{:?}", g.join(" ")));
            }
        }
        Verdict::Keep
    }
}
