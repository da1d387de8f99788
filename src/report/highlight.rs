//! Grounded spans in a document: the strings of a `json` answer that its task schema says
//! are copied verbatim (`quality::filters::grounding::quotes`, the grounding filter's own
//! reading of the schema), found in the document the way that filter finds them (on
//! `text::words`), and marked in the escaped document.

use super::html::esc;
use crate::quality::filters::grounding::quotes::{verbatim_pieces, verbatim_strings};
use crate::record::{Record, SCHEMA_NOTE};
use crate::schemas::extract_json;

/// The words of `s` with their byte ranges: the same words as `text::words`.
fn word_spans(s: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), ' '))) {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(b)) => {
                out.push((b, i, s[b..i].to_lowercase()));
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Byte ranges of `rec.input` holding the answer's verbatim strings (sorted, merged).
pub fn grounded_ranges(rec: &Record) -> Vec<(usize, usize)> {
    if rec.output_format != "json" {
        return Vec::new();
    }
    let Some(at) = rec.instruction.find(SCHEMA_NOTE) else {
        return Vec::new();
    };
    let (Ok(schema), Ok(answer)) = (
        extract_json(&rec.instruction[at + SCHEMA_NOTE.len()..]),
        extract_json(&rec.output),
    ) else {
        return Vec::new();
    };
    let doc = word_spans(&rec.input);
    let mut ranges = Vec::new();
    for s in verbatim_strings(&answer, &schema) {
        for piece in verbatim_pieces(s) {
            let want: Vec<&str> = piece.split(' ').collect();
            for w in doc.windows(want.len()) {
                if w.iter().zip(&want).all(|(d, p)| d.2 == *p) {
                    ranges.push((w[0].0, w[want.len() - 1].1));
                }
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The escaped `text` with the byte `ranges` in `<mark>`; ranges past `text`'s end (a
/// document cut for the page) are dropped or clipped.
pub fn marked(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len() + 16 * ranges.len());
    let mut at = 0;
    for &(a, b) in ranges {
        let b = b.min(text.len());
        if a < at || a >= b || !text.is_char_boundary(a) || !text.is_char_boundary(b) {
            continue;
        }
        out.push_str(&esc(&text[at..a]));
        out.push_str("<mark>");
        out.push_str(&esc(&text[a..b]));
        out.push_str("</mark>");
        at = b;
    }
    out.push_str(&esc(&text[at..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_spans_are_the_words_of_text_words() {
        for s in [
            "BP 132/84, HbA1c 8.4% -- Müller's café; naïve 38.2°C",
            "",
            "  lead and trail  ",
            "ÉCG: Straße",
        ] {
            let w: Vec<String> = word_spans(s).into_iter().map(|x| x.2).collect();
            assert_eq!(w, crate::text::words(s), "{s:?}");
        }
    }

    #[test]
    fn verbatim_fields_are_marked_where_they_occur() {
        let schema = r#"{"type":"object","properties":{"evidence":{"type":"array",
            "description":"Verbatim quotes from the document","items":{"type":"string"}},
            "answer":{"type":"string"}}}"#;
        let rec = Record {
            output_format: "json".into(),
            instruction: format!("Answer.{SCHEMA_NOTE}{schema}\n```"),
            input: "Pt <b>denies chest pain</b>. Started metformin 500 mg daily.".into(),
            output: r#"{"evidence":["denies chest pain","metformin 500 mg ... daily"],
                "answer":"Started metformin"}"#
                .into(),
            ..Record::default()
        };
        let r = grounded_ranges(&rec);
        let got: Vec<&str> = r.iter().map(|&(a, b)| &rec.input[a..b]).collect();
        // "Started metformin" is not a verbatim field: not marked
        assert_eq!(got, ["denies chest pain", "metformin 500 mg", "daily"]);
        let html = marked(&rec.input, &r);
        assert!(html.starts_with("Pt &lt;b&gt;<mark>denies chest pain</mark>&lt;/b&gt;."));
        // plain-text answers have no grounded spans
        let plain = Record {
            output_format: "plain_text".into(),
            ..rec.clone()
        };
        assert!(grounded_ranges(&plain).is_empty());
        // a range past a cut document is clipped
        assert_eq!(marked("abc", &[(1, 10)]), "a<mark>bc</mark>");
    }
}
