//! Copied text: spans and quotes that the task's schema says come from the document.
//! Fields whose schema description says "verbatim", "copied" or "quote" (or an array so
//! described) must occur in the document after whitespace, case and punctuation are
//! normalised ("..." may join pieces that each occur); fields described "as written" or
//! "from the document" must have every content word in it. List items with `text` and
//! `start`/`end` offsets must have `document[start..end] == text` (character offsets).

use crate::quality::filters::{Prepared, Verdict};
use crate::quality::vocab;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq)]
enum Copied {
    No,
    /// Every content word in the document.
    Words,
    /// The text itself, normalised.
    Verbatim,
}

fn copied(schema: &Value) -> Copied {
    let d = schema["description"].as_str().unwrap_or("").to_lowercase();
    if d.contains("verbatim") || d.contains("copied") || d.contains("quote") {
        Copied::Verbatim
    } else if d.contains("as written")
        || d.contains("from the document")
        || d.contains("from the original document")
    {
        Copied::Words
    } else {
        Copied::No
    }
}

pub(super) fn check(p: &Prepared, answer: &Value, schema: &Value) -> Verdict {
    // The document's words, joined: its normal form (`text::normalize`), computed once.
    let doc_loose = p.doc_words.join(" ");
    let mut found = None;
    walk(p, &doc_loose, answer, schema, Copied::No, "", &mut found);
    match found {
        Some((reason, d)) => Verdict::Drop(reason, d),
        None => Verdict::Keep,
    }
}

fn walk(
    p: &Prepared,
    doc_loose: &str,
    v: &Value,
    schema: &Value,
    inherited: Copied,
    path: &str,
    found: &mut Option<(&'static str, String)>,
) {
    if found.is_some() {
        return;
    }
    let mode = match copied(schema) {
        Copied::No => inherited,
        m => m,
    };
    match v {
        Value::String(s) => {
            if let Some(why) = not_copied(p, doc_loose, s, mode) {
                let reason = if path.ends_with("/text") {
                    "span_not_in_input"
                } else {
                    "quote_not_in_input"
                };
                *found = Some((reason, format!("{path} {s:?} {why}")));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(
                    p,
                    doc_loose,
                    x,
                    &schema["items"],
                    mode,
                    &format!("{path}/{i}"),
                    found,
                );
            }
        }
        Value::Object(o) => {
            if let (Some(text), Some(start), Some(end)) = (
                o.get("text").and_then(Value::as_str),
                o.get("start").and_then(Value::as_u64),
                o.get("end").and_then(Value::as_u64),
            ) {
                let at: String = p
                    .rec
                    .input
                    .chars()
                    .skip(start as usize)
                    .take(end.saturating_sub(start) as usize)
                    .collect();
                if at != text && p.rec.input.contains(text) {
                    let d = format!("{path}: offsets {start}..{end} hold {at:?}, not {text:?}");
                    *found = Some(("span_not_in_input", d));
                    return;
                }
            }
            for (k, x) in o {
                walk(
                    p,
                    doc_loose,
                    x,
                    &schema["properties"][k],
                    Copied::No,
                    &format!("{path}/{k}"),
                    found,
                );
            }
        }
        _ => {}
    }
}

/// Why `s` is not copied from the document as `mode` demands, if it is not.
fn not_copied(p: &Prepared, doc_loose: &str, s: &str, mode: Copied) -> Option<&'static str> {
    match mode {
        Copied::No => None,
        Copied::Verbatim => {
            let pieces = verbatim_pieces(s);
            let ok =
                !pieces.is_empty() && pieces.iter().all(|x| vocab::contains_word(doc_loose, x));
            (!ok).then_some("is not in the document")
        }
        Copied::Words => {
            let missing = vocab::words(s)
                .iter()
                .filter(|w| !p.vocab.is_stop(w) && !p.in_source(w))
                .count();
            (missing > 0).then_some("has words the document does not")
        }
    }
}

/// The normalised pieces a verbatim string must each occur as in the document ("..." may
/// join pieces).
pub(crate) fn verbatim_pieces(s: &str) -> Vec<String> {
    s.split("...")
        .flat_map(|x| x.split('…'))
        .map(crate::text::normalize)
        .filter(|x| !x.is_empty())
        .collect()
}

/// The strings of `answer` that its task `schema` says are copied verbatim from the
/// document (what `check` looks for in it), in answer order: the report highlights them.
pub(crate) fn verbatim_strings<'a>(answer: &'a Value, schema: &Value) -> Vec<&'a str> {
    fn collect<'a>(v: &'a Value, schema: &Value, inherited: Copied, out: &mut Vec<&'a str>) {
        let mode = match copied(schema) {
            Copied::No => inherited,
            m => m,
        };
        match v {
            Value::String(s) if mode == Copied::Verbatim => out.push(s),
            Value::Array(a) => a
                .iter()
                .for_each(|x| collect(x, &schema["items"], mode, out)),
            Value::Object(o) => o
                .iter()
                .for_each(|(k, x)| collect(x, &schema["properties"][k], Copied::No, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(answer, schema, Copied::No, &mut out);
    out
}
