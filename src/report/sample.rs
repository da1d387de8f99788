//! The sample browser's records: a seeded, stratified sample kept while the records stream
//! by. Each record gets a key from the hash of its id; each stratum (accepted or not, by
//! task) keeps its `cap` lowest keys, and the sample takes them round-robin over the
//! strata until `cap` is reached, so every task is represented and the same run always
//! gives the same sample, whatever order its files are read in.

use crate::record::Record;
use std::collections::{BTreeMap, BinaryHeap};

/// The most characters of one text field the page embeds.
pub const MAX_FIELD_CHARS: usize = 4000;

/// How a record left the gate (None: accepted).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub stage: String,
    pub reason: String,
    pub detail: String,
}

/// One record of the browser.
#[derive(Debug, Clone)]
pub struct Item {
    pub record: Record,
    pub rejected: Option<Outcome>,
    /// The text fields were cut to `MAX_FIELD_CHARS`.
    pub cut: bool,
    /// Byte ranges of the (cut) document holding the answer's verbatim strings.
    pub grounded: Vec<(usize, usize)>,
    /// Where an audited row came from (`file`, `line`): its text is read back from there.
    pub source: Option<(String, usize)>,
}

impl Item {
    pub fn new(record: Record, rejected: Option<Outcome>) -> Item {
        Item {
            record,
            rejected,
            cut: false,
            grounded: Vec::new(),
            source: None,
        }
    }

    /// Find the grounded spans (on the whole document) and cut the long fields (the
    /// spans are kept where the document was cut).
    pub fn prepare(&mut self) {
        let r = &mut self.record;
        self.grounded = super::highlight::grounded_ranges(r);
        let doc_end = cut(&mut r.input);
        let others = [cut(&mut r.instruction), cut(&mut r.output)];
        self.cut = doc_end.is_some() || others.iter().any(Option::is_some);
        if let Some(end) = doc_end {
            self.grounded.retain(|g| g.0 < end);
            for g in &mut self.grounded {
                g.1 = g.1.min(end);
            }
        }
    }

    pub fn with_source(self, source: (String, usize)) -> Item {
        Item {
            source: Some(source),
            ..self
        }
    }
}

struct Keyed(u64, Box<Item>);
impl PartialEq for Keyed {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl Eq for Keyed {}
impl PartialOrd for Keyed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Keyed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.cmp(&o.0)
    }
}

/// A stratified sample of at most `cap` records of one kind (accepted or rejected).
pub struct Sampler {
    cap: usize,
    seed: u64,
    seen: u64,
    strata: BTreeMap<String, BinaryHeap<Keyed>>,
}

/// Cut `s` to `MAX_FIELD_CHARS` (marked " …"); the byte length kept, if it was cut.
fn cut(s: &mut String) -> Option<usize> {
    let (i, _) = s.char_indices().nth(MAX_FIELD_CHARS)?;
    s.truncate(i);
    s.push_str(" …");
    Some(i)
}

impl Sampler {
    pub fn new(cap: usize, seed: u64) -> Sampler {
        Sampler {
            cap,
            seed,
            seen: 0,
            strata: BTreeMap::new(),
        }
    }

    /// Records offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Offer a record; `make` builds its item only when it is kept (for now).
    pub fn offer(&mut self, id: &str, stratum: &str, make: impl FnOnce() -> Item) {
        self.seen += 1;
        if self.cap == 0 {
            return;
        }
        let key = xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), self.seed);
        let heap = self.strata.entry(stratum.to_string()).or_default();
        if heap.len() >= self.cap && heap.peek().is_some_and(|top| top.0 <= key) {
            return;
        }
        let mut item = make();
        item.prepare();
        heap.push(Keyed(key, Box::new(item)));
        if heap.len() > self.cap {
            heap.pop();
        }
    }

    /// The sample: round-robin over the strata (each in key order) up to `cap`.
    pub fn finish(self) -> Vec<Item> {
        let mut lists: Vec<std::vec::IntoIter<Keyed>> = self
            .strata
            .into_values()
            .map(|h| h.into_sorted_vec().into_iter())
            .collect();
        let mut out = Vec::new();
        while out.len() < self.cap {
            let before = out.len();
            for l in lists.iter_mut() {
                if out.len() < self.cap {
                    out.extend(l.next().map(|k| *k.1));
                }
            }
            if out.len() == before {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, task: &str) -> Item {
        let record = Record {
            id: id.into(),
            task_type: task.into(),
            input: "x".repeat(MAX_FIELD_CHARS + 10),
            ..Record::default()
        };
        Item::new(record, None)
    }

    fn sample(order: &[usize]) -> Vec<String> {
        let mut s = Sampler::new(10, 7);
        for &i in order {
            let task = if i % 10 == 0 { "rare" } else { "common" };
            let id = format!("r{i}");
            s.offer(&id, task, || item(&id, task));
        }
        assert_eq!(s.seen(), order.len() as u64);
        s.finish().into_iter().map(|i| i.record.id).collect()
    }

    #[test]
    fn stratified_seeded_and_independent_of_order() {
        let fwd: Vec<usize> = (0..1000).collect();
        let rev: Vec<usize> = (0..1000).rev().collect();
        let a = sample(&fwd);
        assert_eq!(a.len(), 10);
        assert_eq!(a, sample(&rev));
        // the rare task (10% of records) gets half of the sample
        let rare = a
            .iter()
            .filter(|id| id[1..].parse::<usize>().unwrap() % 10 == 0);
        assert_eq!(rare.count(), 5);
        // fewer records than the cap: all of them
        assert_eq!(sample(&[1, 2, 3]).len(), 3);
    }

    #[test]
    fn long_fields_are_cut() {
        let mut s = Sampler::new(1, 7);
        s.offer("a", "t", || item("a", "t"));
        let got = s.finish();
        assert!(got[0].cut);
        assert_eq!(got[0].record.input.chars().count(), MAX_FIELD_CHARS + 2);
    }

    #[test]
    fn grounded_spans_stop_where_the_document_was_cut() {
        let schema = r#"{"properties":{"q":{"description":"verbatim","type":"string"}}}"#;
        let mut it = item("a", "t");
        let r = &mut it.record;
        r.output_format = "json".into();
        r.instruction = format!("Quote.{}{schema}\n```", crate::record::SCHEMA_NOTE);
        // "x...x" (MAX_FIELD_CHARS + 10) then "tail words": the quote lies past the cut
        r.input.push_str(" tail words");
        r.output = r#"{"q": "tail words"}"#.into();
        let mut early = it.clone();
        early.record.input = format!("tail words {}", early.record.input);
        it.prepare();
        assert!(it.cut && it.grounded.is_empty());
        early.prepare();
        assert_eq!(early.grounded, [(0, 10)]);
    }
}
