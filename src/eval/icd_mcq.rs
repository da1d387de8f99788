//! The ICD-10-CM concept benchmark (in the manner of MedConceptsQA, CLUE+'s ICD10CM task):
//! 4-option questions built from the shipped CMS code table, description -> code or
//! code -> description. Distractors come from the same block as the answer (the same
//! chapter where the block has too few codes), so a question cannot be solved by telling
//! chapters apart. Seeded: the same table, direction, n and seed give the same questions.

use crate::taxonomy::{IcdCode, IcdTable};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

pub const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    DescriptionToCode,
    CodeToDescription,
}

/// One question: the options (4, distinct), the index of the right one, and where the
/// distractors came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    pub id: String,
    pub question: String,
    pub options: Vec<String>,
    pub gold: usize,
    /// The answer's code (whatever the direction).
    pub code: String,
    /// The codes behind the options, in option order.
    pub option_codes: Vec<String>,
    pub block: String,
    pub chapter: String,
    /// `block` or `chapter`: the pool the distractors were drawn from.
    pub pool: &'static str,
}

fn usable(c: &IcdCode) -> bool {
    c.billable && !c.block.is_empty() && !c.chapter.is_empty()
}

/// `n` questions (fewer only if the table has fewer usable codes).
pub fn generate(table: &IcdTable, direction: Direction, n: usize, seed: u64) -> Vec<Question> {
    let codes: Vec<&IcdCode> = table.codes.iter().filter(|c| usable(c)).collect();
    let mut by_block: BTreeMap<&str, Vec<&IcdCode>> = BTreeMap::new();
    let mut by_chapter: BTreeMap<&str, Vec<&IcdCode>> = BTreeMap::new();
    for c in &codes {
        by_block.entry(&c.block).or_default().push(c);
        by_chapter.entry(&c.chapter).or_default().push(c);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = codes.clone();
    order.shuffle(&mut rng);
    let prefix = match direction {
        Direction::DescriptionToCode => "d2c",
        Direction::CodeToDescription => "c2d",
    };
    let mut out = Vec::with_capacity(n);
    for answer in order {
        if out.len() == n {
            break;
        }
        // Distractors: other codes whose descriptions differ from the answer's and from
        // each other (so every option reads differently whatever the direction).
        let pick = |pool: &[&IcdCode], rng: &mut ChaCha8Rng| -> Option<Vec<IcdCode>> {
            let mut seen: HashSet<&str> = HashSet::from([answer.description.as_str()]);
            let mut cands: Vec<&IcdCode> = pool
                .iter()
                .filter(|c| c.code != answer.code)
                .copied()
                .collect();
            cands.shuffle(rng);
            let chosen: Vec<IcdCode> = cands
                .into_iter()
                .filter(|c| seen.insert(c.description.as_str()))
                .take(3)
                .cloned()
                .collect();
            (chosen.len() == 3).then_some(chosen)
        };
        let (distractors, pool) = match pick(&by_block[answer.block.as_str()], &mut rng) {
            Some(d) => (d, "block"),
            None => match pick(&by_chapter[answer.chapter.as_str()], &mut rng) {
                Some(d) => (d, "chapter"),
                None => continue,
            },
        };
        let mut opts: Vec<&IcdCode> = distractors.iter().collect();
        opts.push(answer);
        opts.shuffle(&mut rng);
        let gold = opts
            .iter()
            .position(|c| c.code == answer.code)
            .expect("answer is an option");
        let (question, options) = match direction {
            Direction::DescriptionToCode => (
                format!(
                    "Which ICD-10-CM code corresponds to the diagnosis \"{}\"?",
                    answer.description
                ),
                opts.iter().map(|c| c.code.clone()).collect(),
            ),
            Direction::CodeToDescription => (
                format!("What is the description of ICD-10-CM code {}?", answer.code),
                opts.iter().map(|c| c.description.clone()).collect(),
            ),
        };
        out.push(Question {
            id: format!("{prefix}-{seed}-{:04}", out.len()),
            question,
            options,
            gold,
            code: answer.code.clone(),
            option_codes: opts.iter().map(|c| c.code.clone()).collect(),
            block: answer.block.clone(),
            chapter: answer.chapter.clone(),
            pool,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn table() -> IcdTable {
        IcdTable::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("taxonomy/icd10cm"))
            .expect("shipped table loads")
    }

    #[test]
    fn questions_have_four_distinct_options_with_the_answer_and_same_block_distractors() {
        let t = table();
        for dir in [Direction::DescriptionToCode, Direction::CodeToDescription] {
            let qs = generate(&t, dir, 300, 11);
            assert_eq!(qs.len(), 300);
            let mut ids = HashSet::new();
            for q in &qs {
                assert!(ids.insert(q.id.clone()), "duplicate id {}", q.id);
                assert_eq!(q.options.len(), 4);
                let distinct: HashSet<&String> = q.options.iter().collect();
                assert_eq!(distinct.len(), 4, "{q:?}");
                let answer = t.get(&q.code).unwrap();
                assert!(answer.billable);
                match dir {
                    Direction::DescriptionToCode => {
                        assert_eq!(q.options[q.gold], answer.code);
                        assert!(q.question.contains(&answer.description));
                    }
                    Direction::CodeToDescription => {
                        assert_eq!(q.options[q.gold], answer.description);
                        assert!(q.question.contains(&answer.code));
                    }
                }
                for c in &q.option_codes {
                    let o = t.get(c).unwrap();
                    assert_eq!(o.chapter, answer.chapter, "{q:?}");
                    if q.pool == "block" {
                        assert_eq!(o.block, answer.block, "{q:?}");
                    }
                }
            }
            // Nearly every question draws its distractors from the block itself.
            let from_block = qs.iter().filter(|q| q.pool == "block").count();
            assert!(from_block >= 290, "{from_block} of 300 from the block");
            // The answer's position is spread over the four letters.
            for k in 0..4 {
                let at = qs.iter().filter(|q| q.gold == k).count();
                assert!((40..=110).contains(&at), "gold at {k}: {at} of 300");
            }
        }
    }

    #[test]
    fn generation_is_seeded_and_reproducible() {
        let t = table();
        let a = generate(&t, Direction::DescriptionToCode, 50, 3);
        let b = generate(&t, Direction::DescriptionToCode, 50, 3);
        let c = generate(&t, Direction::DescriptionToCode, 50, 4);
        assert_eq!(a, b);
        assert_ne!(
            a.iter().map(|q| &q.code).collect::<Vec<_>>(),
            c.iter().map(|q| &q.code).collect::<Vec<_>>()
        );
    }
}
