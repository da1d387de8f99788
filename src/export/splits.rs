//! Stratified train / validation / test assignment and decontamination.
//!
//! Units (a record, or for DPO every pair of one source record) are grouped by taxonomy
//! cell; within a cell they are ordered by a seeded hash of their id and cut by the split
//! ratios with largest-remainder rounding, so every cell contributes to each split in
//! proportion and the same seed gives the same assignment whatever the input order.
//! Decontamination then moves (or drops) every validation / test unit that is an exact or
//! near duplicate of a train unit, until no such unit is left.

use crate::quality::dedup::{Dedup, DedupConfig};
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64_with_seed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// What is split: an id (unique), its taxonomy cell key and its dedup text.
#[derive(Debug, Clone)]
pub struct Unit {
    pub id: String,
    pub cell: String,
    pub text: String,
}

/// Parse `train,validation,test` ratios (non-negative, summing to 1).
pub fn parse_ratios(s: &str) -> Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--splits {s:?}: {e}"))?;
    let [a, b, c] = v[..] else {
        return Err(format!(
            "--splits {s:?}: give three ratios: train,validation,test"
        ));
    };
    if v.iter().any(|x| !x.is_finite() || *x < 0.0) {
        return Err(format!("--splits {s:?}: ratios must be non-negative"));
    }
    if ((a + b + c) - 1.0).abs() > 1e-6 {
        return Err(format!("--splits {s:?}: ratios must sum to 1"));
    }
    Ok([a, b, c])
}

/// Split sizes of `n` items by `ratios`, largest remainder (ties to the earlier split).
pub fn apportion(n: usize, ratios: [f64; 3]) -> [usize; 3] {
    let exact: Vec<f64> = ratios.iter().map(|r| r * n as f64).collect();
    let mut q: [usize; 3] = [0; 3];
    for (k, e) in exact.iter().enumerate() {
        q[k] = e.floor() as usize;
    }
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by(|&i, &j| {
        let (fi, fj) = (exact[i] - exact[i].floor(), exact[j] - exact[j].floor());
        fj.total_cmp(&fi).then(i.cmp(&j))
    });
    let left = n.saturating_sub(q.iter().sum());
    for &k in order.iter().filter(|&&k| ratios[k] > 0.0).take(left) {
        q[k] += 1;
    }
    q
}

/// The split of every unit (same order as `units`).
pub fn assign(units: &[Unit], ratios: [f64; 3], seed: u64) -> Vec<Split> {
    let mut cells: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, u) in units.iter().enumerate() {
        cells.entry(&u.cell).or_default().push(i);
    }
    let mut out = vec![Split::Train; units.len()];
    for idx in cells.values_mut() {
        idx.sort_by_key(|&i| {
            (
                xxh3_64_with_seed(units[i].id.as_bytes(), seed),
                &units[i].id,
            )
        });
        let q = apportion(idx.len(), ratios);
        let mut it = idx.iter();
        for (split, n) in Split::ALL.into_iter().zip(q) {
            for &i in it.by_ref().take(n) {
                out[i] = split;
            }
        }
    }
    out
}

/// What to do with a validation / test unit that duplicates a train unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decontaminate {
    /// Move it to train.
    Move,
    /// Drop it from the export.
    Drop,
}

/// Units moved to train or dropped, per split they came from.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DeconReport {
    pub moved_from_validation: usize,
    pub moved_from_test: usize,
    pub dropped_from_validation: usize,
    pub dropped_from_test: usize,
}

/// Decontaminate `splits` in place (None = dropped): no validation or test unit is left that
/// is an exact or near duplicate (`quality::dedup`, default config) of a train unit.
pub fn decontaminate(
    units: &[Unit],
    splits: &[Split],
    mode: Decontaminate,
) -> (Vec<Option<Split>>, DeconReport) {
    let mut out: Vec<Option<Split>> = splits.iter().copied().map(Some).collect();
    let mut report = DeconReport::default();
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&i, &j| units[i].id.cmp(&units[j].id));
    let mut index = Dedup::new(&DedupConfig::default());
    for &i in order.iter().filter(|&&i| splits[i] == Split::Train) {
        index.insert(&units[i].id, &units[i].text);
    }
    let mut pending: Vec<usize> = order
        .into_iter()
        .filter(|&i| splits[i] != Split::Train)
        .collect();
    // A unit moved to train can itself be duplicated by a held-out unit: repeat until no
    // held-out unit duplicates train (dropping needs one pass).
    loop {
        let (hit, rest): (Vec<usize>, Vec<usize>) = pending
            .into_iter()
            .partition(|&i| index.check(&units[i].text).is_err());
        pending = rest;
        if hit.is_empty() {
            break;
        }
        for &i in &hit {
            let from = splits[i];
            match (mode, from) {
                (Decontaminate::Move, Split::Validation) => report.moved_from_validation += 1,
                (Decontaminate::Move, _) => report.moved_from_test += 1,
                (Decontaminate::Drop, Split::Validation) => report.dropped_from_validation += 1,
                (Decontaminate::Drop, _) => report.dropped_from_test += 1,
            }
            match mode {
                Decontaminate::Move => {
                    out[i] = Some(Split::Train);
                    index.insert(&units[i].id, &units[i].text);
                }
                Decontaminate::Drop => out[i] = None,
            }
        }
        if mode == Decontaminate::Drop {
            break;
        }
    }
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_is_largest_remainder() {
        assert_eq!(apportion(20, [0.9, 0.05, 0.05]), [18, 1, 1]);
        assert_eq!(apportion(19, [0.9, 0.05, 0.05]), [17, 1, 1]);
        assert_eq!(apportion(1, [0.9, 0.05, 0.05]), [1, 0, 0]);
        assert_eq!(apportion(3, [0.0, 0.5, 0.5]), [0, 2, 1]);
        assert_eq!(apportion(0, [0.8, 0.1, 0.1]), [0, 0, 0]);
        for n in 0..200 {
            assert_eq!(apportion(n, [0.7, 0.2, 0.1]).iter().sum::<usize>(), n);
        }
    }

    #[test]
    fn ratios_must_sum_to_one() {
        assert_eq!(parse_ratios("0.9,0.05,0.05").unwrap(), [0.9, 0.05, 0.05]);
        assert!(parse_ratios("0.9,0.05").is_err());
        assert!(parse_ratios("0.9,0.2,0.05").is_err());
        assert!(parse_ratios("1.1,-0.1,0").is_err());
        assert!(parse_ratios("a,b,c").is_err());
    }
}
