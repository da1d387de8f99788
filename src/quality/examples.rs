//! What the templates show the teacher: the worked examples' people, record numbers and
//! phrases. A small teacher copies them into its own output ("Frank Miller" writing about
//! a different condition, the example's MRN, a sentence of the example answer); the
//! `example_copy` filter drops a record that does. Built from the literal text of every
//! template under `templates_dir` (both profiles), so it follows edits to the examples.

use super::vocab::{self, Word};
use regex::Regex;
use rustc_hash::FxHashSet;
use std::path::Path;
use std::sync::LazyLock;

/// Words in a row that make a copied phrase.
/// (Long enough that standard phrasing a real document shares with an example, such as
/// "adalimumab 40 mg subcutaneous injection every 2 weeks", does not count.)
pub const GRAM: usize = 12;

#[derive(Default)]
pub struct Examples {
    /// The examples' people ("Frank Miller", "Dr. Lee") and record numbers, as one
    /// whole-word alternation; None when the templates have none.
    names: Option<Regex>,
    /// Hashes of every run of `GRAM` words of the templates' literal text.
    grams: FxHashSet<u64>,
}

/// A person named in a template: after a title, or a capitalised pair after a label.
static PERSON: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(
        r"\b(?:Dr|Mr|Mrs|Ms|Prof)\.\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?|(?:From|To|Patient|Re|for|Name|Dear|Child|Mother|Father|Signed):\s+([A-Z][a-z]+\s+[A-Z][a-z]+)\b",
    )
    .expect("valid regex")
});
/// A worked example's subject or title line, copied whole ("Subject: Dizzy since the dose
/// change").
static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    vocab::regex(r"(?m)^(?:Subject|Re|Title):\s*([A-Z][^\n]{10,80}?)\s*$").expect("valid regex")
});
/// Record numbers: 6 digits or more in a row.
static RECORD_NUMBER: LazyLock<Regex> =
    LazyLock::new(|| vocab::regex(r"\b\d{6,}\b").expect("valid regex"));
/// Template tags and comments: the text between them is what the teacher sees.
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}").expect("valid regex"));

impl Examples {
    /// The index of every `.j2` file under `dir` (unreadable files are skipped: the
    /// template loader reports them).
    pub fn from_dir(dir: &Path) -> Examples {
        let texts: Vec<String> = crate::util::files_with_extension(dir, "j2")
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        Examples::from_texts(texts.iter().map(String::as_str))
    }

    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Examples {
        let mut names: Vec<String> = Vec::new();
        let mut grams = FxHashSet::default();
        for t in texts {
            for literal in TAG.split(t) {
                for c in PERSON.captures_iter(literal) {
                    let whole = c.get(0).unwrap().as_str();
                    let person = c.get(1).map_or(whole, |m| m.as_str());
                    names.push(person.split_whitespace().collect::<Vec<_>>().join(" "));
                    // "Dr. Tom Becker" is also copied as "Dr. Becker".
                    let parts: Vec<&str> = person.split_whitespace().collect();
                    if parts.len() == 3 && parts[0].ends_with('.') {
                        names.push(format!("{} {}", parts[0], parts[2]));
                    }
                }
                names.extend(RECORD_NUMBER.find_iter(literal).map(|m| m.as_str().into()));
                names.extend(SUBJECT.captures_iter(literal).map(|c| c[1].to_string()));
                let hashes: Vec<u64> = vocab::words(literal)
                    .iter()
                    .map(|w| vocab::hash(w))
                    .collect();
                grams.extend(gram_hashes(&hashes));
            }
        }
        names.sort();
        names.dedup();
        let names = (!names.is_empty()).then(|| {
            let alt: Vec<String> = names.iter().map(|n| regex::escape(n)).collect();
            vocab::regex(&format!(r"\b(?:{})\b", alt.join("|"))).expect("valid regex")
        });
        Examples { names, grams }
    }

    /// The first example person or record number in `text`.
    pub fn name_in<'t>(&self, text: &'t str) -> Option<&'t str> {
        self.names.as_ref()?.find(text).map(|m| m.as_str())
    }

    /// The first run of `GRAM` words that is one of the templates': `words` lowercased
    /// (as `vocab::words` gives) and `hashes` their `vocab::hash`es.
    pub fn copied_gram<'w>(&self, words: &'w [Word], hashes: &[u64]) -> Option<&'w [Word]> {
        if self.grams.is_empty() {
            return None;
        }
        let i = gram_hashes(hashes).position(|h| self.grams.contains(&h))?;
        Some(&words[i..i + GRAM])
    }
}

/// The hash of each run of `GRAM` word hashes, in order: a polynomial rolling hash, so each
/// run costs one step, not `GRAM`.
fn gram_hashes(hashes: &[u64]) -> impl Iterator<Item = u64> + '_ {
    const B: u64 = 0x100_0000_01b3;
    let top = B.wrapping_pow(GRAM as u32 - 1);
    let mut h = 0u64;
    hashes.iter().enumerate().filter_map(move |(i, x)| {
        if i >= GRAM {
            h = h.wrapping_sub(hashes[i - GRAM].wrapping_mul(top));
        }
        h = h.wrapping_mul(B).wrapping_add(*x);
        (i + 1 >= GRAM).then_some(h)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_phrases_of_the_literal_text_only() {
        let ex = Examples::from_texts([
            "Subject: Cough after starting lisinopril\n{# Dr. Hidden Comment #}From: Frank Miller (DOB 03/02/1961)\nMRN 5520913\nFollow up with Dr. Alan Chen in 1 week.{{ c.name }} Dear Dr. Ortiz, I started lisinopril 10 mg once a day three weeks ago.",
        ]);
        assert_eq!(ex.name_in("Signed, Frank Miller"), Some("Frank Miller"));
        assert_eq!(ex.name_in("seen by Dr. Chen today"), Some("Dr. Chen"));
        assert_eq!(ex.name_in("MRN 5520913"), Some("5520913"));
        assert_eq!(
            ex.name_in("Subject: Cough after starting lisinopril\nFrom: Ann"),
            Some("Cough after starting lisinopril")
        );
        assert_eq!(ex.name_in("Dr. Ortizo and Frank Millerson"), None);
        assert_eq!(ex.name_in("Dr. Hidden Comment"), None);
        let gram = |t: &str| {
            let w = vocab::words(t);
            let h: Vec<u64> = w.iter().map(|x| vocab::hash(x)).collect();
            ex.copied_gram(&w, &h).map(|g| g.join(" "))
        };
        let copied = gram("She wrote: Dear Dr. Ortiz, I started lisinopril 10 mg once a day three weeks ago, then");
        assert_eq!(
            copied.as_deref(),
            Some("dear dr ortiz i started lisinopril 10 mg once a day three")
        );
        assert_eq!(
            gram("I started amlodipine 5 mg once a day two weeks ago for pressure"),
            None
        );
        assert!(Examples::default().name_in("Frank Miller").is_none());
    }
}
