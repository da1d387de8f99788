//! Copying: an answer that is the document (for tasks whose answer is not by design an
//! edited copy of it) or that restates the instruction.

use super::{Filter, FilterCtx, Prepared, Verdict};
use rustc_hash::FxHashSet;

/// Tasks whose plain_text answer is by design an edited copy of the input (the corrected
/// or the redacted document): exempt from the document-copy check.
const EDITS_INPUT: &[&str] = &["error_correction", "deidentification"];

pub(crate) struct Copy;
impl Filter for Copy {
    fn name(&self) -> &'static str {
        "copy"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let answer = &p.answer_words;
        if answer.len() < 5 {
            return Verdict::Keep;
        }
        if let Some(frac) = containment(&p.answer_hashes, &p.instr_hashes, 3) {
            if frac >= 0.8 && answer.len() <= p.instr_words.len() + 8 {
                let d = format!(
                    "{:.0}% of the answer's word 3-grams are the instruction's",
                    frac * 100.0
                );
                return Verdict::Drop("answer_copies_instruction", d);
            }
        }
        if p.is_json() || EDITS_INPUT.contains(&p.rec.task_type.as_str()) {
            return Verdict::Keep;
        }
        let input = &p.doc_words;
        if (answer.len() as f64) < cx.cfg.copy_min_answer_share * input.len() as f64 {
            return Verdict::Keep;
        }
        match containment(&p.answer_hashes, &p.doc_hashes, 5) {
            Some(frac) if frac >= cx.cfg.max_copy_containment => {
                let d = format!(
                    "{:.0}% of the answer's word 5-grams occur in the input ({} of {} words)",
                    frac * 100.0,
                    answer.len(),
                    input.len()
                );
                Verdict::Drop("answer_copies_input", d)
            }
            _ => Verdict::Keep,
        }
    }
}

/// The share of `text`'s word n-grams that occur in `source` (None if `text` has none),
/// both given as their words' hashes.
fn containment(text: &[u64], source: &[u64], n: usize) -> Option<f64> {
    if text.len() < n || source.len() < n {
        return None;
    }
    let gram = |g: &[u64]| g.iter().fold(0u64, |h, x| h.rotate_left(13) ^ x);
    let grams: FxHashSet<u64> = source.windows(n).map(gram).collect();
    let total = text.len() + 1 - n;
    let hit = text.windows(n).filter(|g| grams.contains(&gram(g))).count();
    Some(hit as f64 / total as f64)
}
