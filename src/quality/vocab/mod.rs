//! The clinical vocabulary the gate measures text against, built from our own data: the
//! ICD-10-CM descriptions of the disease and injury chapters (A00-T88), the taxonomy's
//! document sections, names and descriptions, and a hand-kept list of clinical
//! abbreviations, lay symptom words, units and drug names. Built once per taxonomy.

use crate::taxonomy::Taxonomy;
use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

// The word lists, apart from the code that builds the vocabulary from them.
mod drugs;
mod lexicon;
mod terms;

use drugs::{BRANDS, DRUGS, DRUG_SUFFIXES};
pub use lexicon::STOPWORDS;
use lexicon::{EXTRA_CLINICAL, GENERIC_WORDS};
use terms::{EXPANSIONS, MEDICAL_AFFIXES};

/// The words of a text are `crate::text`'s.
pub use crate::text::{words, Word};

/// `needle` occurs in `hay` not inside a longer word.
pub fn contains_word(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The first `n` characters of a word: a crude stem for matching inflections.
pub fn stem(w: &str, n: usize) -> &str {
    match w.char_indices().nth(n) {
        Some((i, _)) => &w[..i],
        None => w,
    }
}

const CLINICAL: u8 = 1;
const MEDICAL: u8 = 2;
const GENERIC: u8 = 4;
const STOP: u8 = 8;
const DRUG: u8 = 16;
const TERM: u8 = 32;

/// The classes a word belongs to (a drug-name stem counts as a drug, a term, medical and
/// clinical).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Class(u8);

impl Class {
    pub fn stop(self) -> bool {
        self.0 & STOP != 0
    }
    pub fn clinical(self) -> bool {
        self.0 & CLINICAL != 0
    }
    /// A clinical word that looks medical (a Greek or Latin root, an abbreviation we list
    /// as clinical, or a drug), as opposed to everyday words ICD descriptions also use
    /// ("head", "wall", "card").
    pub fn medical(self) -> bool {
        self.0 & MEDICAL != 0
    }
    /// A medical term with content (a root or a drug; not a lay word like "doctor").
    pub fn term(self) -> bool {
        self.0 & TERM != 0
    }
    /// A word that names a drug (listed, a known brand, or an INN stem).
    pub fn drug(self) -> bool {
        self.0 & DRUG != 0
    }
    /// A clinical word that carries content (not a stopword, not generic); words under
    /// four letters are not specific (`Vocab::is_specific` checks the length).
    pub fn specific(self) -> bool {
        self.0 & (GENERIC | STOP) == 0 && self.clinical()
    }
}

/// What the gate knows about clinical language: one map from a word to its classes,
/// computed once, so a record's words are classified by one lookup each.
pub struct Vocab {
    /// By `hash` of the word.
    flags: FxHashMap<u64, u8>,
    brands: FxHashMap<&'static str, &'static str>,
    expansions: FxHashMap<&'static str, &'static str>,
}

impl Vocab {
    fn build(tax: &Taxonomy) -> Vocab {
        let mut flags: FxHashMap<String, u8> = FxHashMap::default();
        let mut set = |w: &str, f: u8| *flags.entry(w.to_string()).or_default() |= f;
        for w in STOPWORDS {
            set(w, STOP);
        }
        let mut clinical_text = Vec::new();
        // Chapters 1-19 (A00-T88): diseases, findings and injuries. The external-cause,
        // place-of-occurrence and health-status chapters (V-Z) name everyday things
        // (vehicles, sports, hotels) that say nothing about clinical text.
        for c in tax
            .icd
            .codes
            .iter()
            .filter(|c| c.code.as_bytes()[0] <= b'T')
        {
            clinical_text.push(c.description.as_str());
        }
        for d in &tax.documents {
            clinical_text.push(d.name.as_str());
            clinical_text.extend(d.sections.iter().map(String::as_str));
        }
        clinical_text.extend(tax.tasks.iter().map(|t| t.name.as_str()));
        for text in clinical_text {
            for w in words(text) {
                if w.len() >= 3
                    && !w.chars().all(|c| c.is_ascii_digit())
                    && !STOPWORDS.contains(&w.as_str())
                {
                    set(&w, CLINICAL);
                }
            }
        }
        for w in GENERIC_WORDS {
            set(w, GENERIC);
        }
        for w in EXTRA_CLINICAL {
            set(w, CLINICAL | MEDICAL);
        }
        for w in DRUGS.iter().chain(BRANDS.iter().map(|(b, _)| b)) {
            set(w, CLINICAL | MEDICAL | DRUG | TERM);
        }
        for (w, f) in flags.iter_mut() {
            if *f & CLINICAL != 0
                && *f & (GENERIC | STOP) == 0
                && w.len() >= 6
                && has_medical_affix(w)
            {
                *f |= MEDICAL | TERM;
            }
        }
        Vocab {
            flags: flags.into_iter().map(|(w, f)| (hash(&w), f)).collect(),
            brands: BRANDS.iter().copied().collect(),
            expansions: EXPANSIONS.iter().copied().collect(),
        }
    }

    /// The vocabulary of `tax`, built on first use and shared.
    pub fn of(tax: &Taxonomy) -> Arc<Vocab> {
        // The first taxonomy's vocabulary without a lock (one process, one taxonomy, as a
        // rule); any other behind one.
        static FIRST: OnceLock<(String, Arc<Vocab>)> = OnceLock::new();
        let (hash, v) = FIRST.get_or_init(|| (tax.hash.clone(), Arc::new(Vocab::build(tax))));
        if *hash == tax.hash {
            return v.clone();
        }
        static CACHE: LazyLock<Mutex<Option<(String, Arc<Vocab>)>>> =
            LazyLock::new(|| Mutex::new(None));
        let mut slot = CACHE.lock().expect("vocab cache");
        match &*slot {
            Some((hash, v)) if *hash == tax.hash => v.clone(),
            _ => {
                let v = Arc::new(Vocab::build(tax));
                *slot = Some((tax.hash.clone(), v.clone()));
                v
            }
        }
    }

    /// The classes of `w`, whose `hash` is `h` (callers that hashed the word already pass
    /// it).
    pub fn class_hashed(&self, w: &str, h: u64) -> Class {
        const STEM: u8 = CLINICAL | MEDICAL | TERM | DRUG;
        let f = self.flags.get(&h).copied().unwrap_or(0);
        Class(match f & STEM != STEM && drug_stem(w) {
            true => f | STEM,
            false => f,
        })
    }

    pub fn class(&self, w: &str) -> Class {
        self.class_hashed(w, hash(w))
    }

    pub fn is_stop(&self, w: &str) -> bool {
        self.class(w).stop()
    }

    pub fn is_clinical(&self, w: &str) -> bool {
        self.class(w).clinical()
    }

    pub fn is_specific(&self, w: &str) -> bool {
        w.len() >= 4 && self.class(w).specific()
    }

    pub fn is_term(&self, w: &str) -> bool {
        self.class(w).term()
    }

    pub fn is_drug(&self, w: &str) -> bool {
        self.class(w).drug()
    }

    /// The generic a brand stands for (or the word itself).
    pub fn generic_drug<'a>(&'a self, w: &'a str) -> &'a str {
        self.brands.get(w).copied().unwrap_or(w)
    }

    /// The words an abbreviation expands to, if we know it.
    pub fn expand(&self, w: &str) -> Option<&'static str> {
        self.expansions.get(w).copied()
    }
}

/// A word with a drug name's INN stem ("-pril", "-sartan", "-mab").
fn drug_stem(w: &str) -> bool {
    // The suffixes by length, so a word costs one set lookup per length.
    static BY_LEN: LazyLock<Vec<(usize, rustc_hash::FxHashSet<&'static str>)>> =
        LazyLock::new(|| {
            let mut by: Vec<(usize, rustc_hash::FxHashSet<&str>)> = Vec::new();
            for s in DRUG_SUFFIXES {
                match by.iter_mut().find(|(n, _)| *n == s.len()) {
                    Some((_, set)) => {
                        set.insert(s);
                    }
                    None => by.push((s.len(), [*s].into_iter().collect())),
                }
            }
            by
        });
    w.len() >= 6
        && w.bytes().all(|c| c.is_ascii_lowercase())
        && BY_LEN
            .iter()
            .any(|(n, set)| w.len() > n + 2 && set.contains(&w[w.len() - n..]))
}

/// A regex with ASCII word boundaries: a Unicode `\b` keeps the regex crate off its fast
/// DFA engines, and the gate's patterns only ever bound ASCII words.
pub fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&ascii_boundaries(pattern))
}

/// `pattern` with its word boundaries ASCII ones (see `regex`).
pub fn ascii_boundaries(pattern: &str) -> String {
    pattern.replace(r"\b", r"(?-u:\b)")
}

/// A 64-bit hash of a word, for sets of a record's words that need no allocation.
pub fn hash(w: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(w.as_bytes())
}

fn has_medical_affix(w: &str) -> bool {
    MEDICAL_AFFIXES.iter().any(|a| w.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_normalisation() {
        assert_eq!(
            words("SpO2 95% on 2L, x3d."),
            ["spo2", "95", "on", "2l", "x3d"]
        );
        assert_eq!(
            crate::text::normalize("\"Chest pain\" — resolved."),
            "chest pain resolved"
        );
        // Letters of any script are word characters; other characters split.
        assert_eq!(
            words("Café ÜBER—naïve 5µg"),
            ["café", "über", "naïve", "5µg"]
        );
        // Drug-name stems, by suffix length.
        assert!(drug_stem("lisinopril") && drug_stem("olmesartan") && !drug_stem("april"));
        assert_eq!(stem("furosemide", 5), "furos");
        assert_eq!(stem("bp", 5), "bp");
    }

    #[test]
    fn vocabulary_knows_clinical_words_and_drugs() {
        let tax = &crate::quality::filters::tests::fixture().0;
        let v = Vocab::of(tax);
        for w in [
            "pneumonia",
            "femur",
            "htn",
            "furosemide",
            "lisinopril",
            "discharge",
        ] {
            assert!(v.is_clinical(w), "{w}");
        }
        for w in ["banana", "oven", "flour", "hotel", "football"] {
            assert!(!v.is_clinical(w), "{w}");
        }
        assert!(v.is_drug("metoprolol") && v.is_drug("lasix") && v.is_drug("olmesartan"));
        assert!(!v.is_drug("because") && !v.is_drug("provide"));
        assert!(v.is_specific("pneumonia") && !v.is_specific("unspecified"));
        assert_eq!(v.generic_drug("lasix"), "furosemide");
    }
}
