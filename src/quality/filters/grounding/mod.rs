//! Grounding, run as the `grounding` filter: what an answer states must come from its
//! document. ICD-10-CM codes exist, fit the seed concept's chapter and the document's
//! words (`codes`); spans and quotes the schema says are copied occur in the document
//! (`quotes`); numbers, doses, dates and drug names an answer states, and its specific
//! clinical terms, are in the document (`facts`); a de-identified answer leaves no PHI in
//! and a PHI list misses none (`phi`); an entailment label is not contradicted by a
//! negation or a number (`facts::nli`).

pub(crate) mod codes;
mod facts;
mod phi;
pub(crate) mod quotes;

use super::{Filter, FilterCtx, Prepared, Verdict};

pub(crate) struct Grounding;
impl Filter for Grounding {
    fn name(&self) -> &'static str {
        "grounding"
    }
    fn check(&self, p: &Prepared, cx: &FilterCtx) -> Verdict {
        let claims = facts::Claims::of(p);
        let checks: [&dyn Fn() -> Verdict; 7] = [
            &|| match p.rec.task_type.as_str() {
                "clinical_coding" => codes::check(p, &cx.tax.icd),
                _ => Verdict::Keep,
            },
            &|| match (&p.json, cx.schemas.get(&p.rec.task_type)) {
                (Some(a), Some(s)) => quotes::check(p, a, &s.value),
                _ => Verdict::Keep,
            },
            &|| facts::numbers(p, &claims),
            &|| facts::drugs(p, &claims),
            &|| phi::check(p),
            &|| facts::nli(p),
            &|| facts::claims(p, &claims),
        ];
        for c in checks {
            if let v @ Verdict::Drop(..) = c() {
                return v;
            }
        }
        Verdict::Keep
    }
}

#[cfg(test)]
mod tests;
