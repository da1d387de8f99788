//! Human review in the report: the reviewers' journal (`review::journal`) summed up, the
//! judge against the reviewers, and the reviewers against each other.
//!
//! Judge vs human: every (record, reviewer) with the reviewer's latest decision. Spearman
//! per dimension between the judge's score and the reviewer's Likert score (where both
//! exist); Cohen's kappa on accept / reject, the judge's side being whether the gate kept
//! the record (records that stopped before the gate are left out) and the reviewer's
//! `accept` or `edit` = accept, `reject` = reject. Inter-rater: for each pair of
//! reviewers, the records both decided: kappa on the three verdicts, Spearman per
//! dimension on the scores both gave.

use super::collect::JudgeSide;
use super::statistics::{kappa, spearman, Figure};
use crate::quality::judge::DIMENSIONS;
use crate::review::journal::{latest, resolve, Decision, Outcome, Verdict};
use std::collections::{BTreeMap, HashMap};

/// Agreement of two raters: kappa on decisions, Spearman per dimension.
#[derive(Debug, Clone)]
pub struct Agreement {
    pub kappa: Figure,
    pub spearman: Vec<(&'static str, Figure)>,
}

#[derive(Debug, Clone)]
pub struct Pair {
    pub a: String,
    pub b: String,
    pub agreement: Agreement,
}

#[derive(Debug, Clone, Default)]
pub struct Review {
    pub decisions: usize,
    /// Records decided per reviewer.
    pub reviewers: BTreeMap<String, usize>,
    /// Records with a decision, and what the reviewers' decisions come to.
    pub reviewed: usize,
    pub accepted: usize,
    pub edited: usize,
    pub rejected: usize,
    pub judge: Option<Agreement>,
    pub pairs: Vec<Pair>,
}

fn spearman_of(pairs: &[(f64, f64)]) -> Figure {
    let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    Figure::new(pairs.len(), spearman(&x, &y))
}

fn score(d: &Decision, dim: &str) -> Option<f64> {
    d.scores.get(dim).map(|&s| s as f64)
}

/// Sum up the journal; `judged` is the judge's side of each reviewed record found.
pub fn review(decisions: &[Decision], judged: &HashMap<String, JudgeSide>) -> Review {
    let by_record = latest(decisions);
    let mut r = Review {
        decisions: decisions.len(),
        reviewed: by_record.len(),
        ..Review::default()
    };
    for o in resolve(decisions).values() {
        match o {
            Outcome::Accepted => r.accepted += 1,
            Outcome::Edited(_) => r.edited += 1,
            Outcome::Rejected => r.rejected += 1,
        }
    }
    let mut verdicts: Vec<(bool, bool)> = Vec::new();
    let mut dims: Vec<Vec<(f64, f64)>> = vec![Vec::new(); DIMENSIONS.len()];
    for (id, by) in &by_record {
        for d in by.values() {
            *r.reviewers.entry(d.reviewer.clone()).or_default() += 1;
            let Some(side) = judged.get(id) else { continue };
            if let Some(kept) = side.accepted {
                verdicts.push((kept, d.decision != Verdict::Reject));
            }
            if let Some(s) = side.scores {
                for (i, dim) in DIMENSIONS.iter().enumerate() {
                    dims[i].extend(score(d, dim).map(|h| (s[i], h)));
                }
            }
        }
    }
    if !judged.is_empty() {
        r.judge = Some(Agreement {
            kappa: Figure::new(verdicts.len(), kappa(&verdicts)),
            spearman: DIMENSIONS
                .iter()
                .copied()
                .zip(dims.iter().map(|p| spearman_of(p)))
                .collect(),
        });
    }
    let names: Vec<&String> = r.reviewers.keys().collect();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let both: Vec<(&Decision, &Decision)> = by_record
                .values()
                .filter_map(|by| Some((by.get(*a)?, by.get(*b)?)))
                .collect();
            if both.is_empty() {
                continue;
            }
            let v: Vec<(Verdict, Verdict)> =
                both.iter().map(|(x, y)| (x.decision, y.decision)).collect();
            let spearman = DIMENSIONS
                .iter()
                .map(|dim| {
                    let p: Vec<(f64, f64)> = both
                        .iter()
                        .filter_map(|(x, y)| Some((score(x, dim)?, score(y, dim)?)))
                        .collect();
                    (*dim, spearman_of(&p))
                })
                .collect();
            r.pairs.push(Pair {
                a: a.to_string(),
                b: b.to_string(),
                agreement: Agreement {
                    kappa: Figure::new(v.len(), kappa(&v)),
                    spearman,
                },
            });
        }
    }
    r
}

/// The review section's body.
pub fn render(r: &Review) -> String {
    use super::html::{esc, note, table};
    if r.decisions == 0 {
        return note("no review yet: `mediflow review` writes review/decisions.jsonl");
    }
    let mut out = table(&[
        [
            "reviewed",
            "accepted",
            "edited",
            "rejected",
            "decisions",
            "reviewers",
        ]
        .map(String::from)
        .to_vec(),
        vec![
            r.reviewed.to_string(),
            r.accepted.to_string(),
            r.edited.to_string(),
            r.rejected.to_string(),
            r.decisions.to_string(),
            r.reviewers
                .iter()
                .map(|(w, n)| format!("{} ({n})", esc(w)))
                .collect::<Vec<_>>()
                .join(", "),
        ],
    ]);
    out.push_str(&note(
        "A record's outcome: rejected if any reviewer's latest decision rejects it, else \
         edited if one edited it, else accepted. Figures below a few observations read \
         \"not enough data\".",
    ));
    let agreement = |title: String, on: &str, a: &Agreement| {
        let mut rows = vec![vec!["".to_string(), esc(&title)]];
        rows.push(vec![esc(&format!("Cohen's kappa, {on}")), a.kappa.show()]);
        for (dim, f) in &a.spearman {
            rows.push(vec![esc(&format!("Spearman's rho, {dim}")), f.show()]);
        }
        table(&rows)
    };
    out.push_str("<h3>Judge vs reviewers</h3>");
    match &r.judge {
        Some(a) => {
            out.push_str(&note(
                "Each (record, reviewer): the gate's decision (kept, or rejected by the \
                 filters, judge or deduplication) against the reviewer's (accept or edit = \
                 accept); the judge's median scores against the reviewer's 1-5 scores.",
            ));
            out.push_str(&agreement(
                "judge vs reviewers".into(),
                "accept / reject",
                a,
            ));
        }
        None => out.push_str(&note("none of the reviewed records is in this directory")),
    }
    out.push_str("<h3>Between reviewers</h3>");
    if r.pairs.is_empty() {
        out.push_str(&note("no two reviewers decided the same record"));
    } else {
        out.push_str(&note(
            "kappa on accept / edit / reject; Spearman on the scores both gave",
        ));
    }
    for p in &r.pairs {
        let title = format!("{} vs {}", p.a, p.b);
        out.push_str(&agreement(title, "accept / edit / reject", &p.agreement));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, who: &str, v: Verdict, q: u8) -> Decision {
        Decision {
            id: id.into(),
            reviewer: who.into(),
            decision: v,
            scores: BTreeMap::from([("quality".to_string(), q)]),
            edit: Default::default(),
            comment: String::new(),
            at: String::new(),
        }
    }

    #[test]
    fn counts_judge_agreement_and_pairs() {
        use Verdict::*;
        // Six records; the judge kept 1-3 and rejected 4-6 with quality 5,4,3,3,2,1.
        let judged: HashMap<String, JudgeSide> = (1..=6)
            .map(|i| {
                let q = [5.0, 4.0, 3.0, 3.0, 2.0, 1.0][i - 1];
                let side = JudgeSide {
                    scores: Some([q; 5]),
                    accepted: Some(i <= 3),
                };
                (format!("r{i}"), side)
            })
            .collect();
        let mut ds = vec![
            d("r1", "ann", Reject, 1), // overruled below: ann's last decision wins
            d("r1", "ann", Accept, 5),
            d("r2", "ann", Edit, 4),
            d("r3", "ann", Accept, 3),
            d("r4", "ann", Reject, 3),
            d("r5", "ann", Reject, 2),
            d("r6", "ann", Accept, 1),
        ];
        ds.extend([d("r1", "bob", Accept, 4), d("r6", "bob", Reject, 2)]);
        let r = review(&ds, &judged);
        assert_eq!((r.decisions, r.reviewed), (9, 6));
        // r6: ann accepts, bob rejects -> rejected; r2 edited
        assert_eq!((r.accepted, r.edited, r.rejected), (2, 1, 3));
        assert_eq!(r.reviewers["ann"], 6);
        let j = r.judge.unwrap();
        // 8 (record, reviewer) pairs: judge kept / human accept:
        // ann: (T,T)(T,T)(T,T)(F,F)(F,F)(F,T); bob: (T,T)(F,F). p_o = 7/8;
        // judge T 4/8, human T 5/8: p_e = .5*.625 + .5*.375 = .5; kappa = .375/.5 = .75
        assert_eq!(j.kappa.n, 8);
        assert!((j.kappa.value.unwrap() - 0.75).abs() < 1e-9);
        // ann's quality equals the judge's on every record: rho = 1 (ties averaged alike)
        let q = j.spearman[0].1;
        assert_eq!(q.n, 8);
        assert!(j.spearman[1].1.n == 0 && j.spearman[1].1.show().starts_with("not enough"));
        assert!(q.value.unwrap() > 0.9);
        // ann and bob share r1 and r6
        assert_eq!(r.pairs.len(), 1);
        assert_eq!(r.pairs[0].agreement.kappa.n, 2);
        assert!(r.pairs[0]
            .agreement
            .kappa
            .show()
            .starts_with("not enough data"));
    }
}
