//! Exact and near-duplicate removal.
//!
//! A text is normalised first: lowercased, split into Unicode-alphanumeric words (everything
//! else separates words), joined by single spaces. Two records are
//! - **exact duplicates** when the xxh3-64 hashes of their normalised texts are equal;
//! - **near duplicates** when their MinHash signatures collide in an LSH band: word
//!   `shingle_words`-grams (a text of fewer words is one shingle) hashed with xxh3-64,
//!   `num_perm` permutations `(a*h + b) mod (2^61 - 1)` drawn from `ChaCha8Rng(seed)`,
//!   `bands` x `rows` LSH (default: datasketch's optimum for `threshold`, see
//!   [`optimal_param`]). As in datasketch's `MinHashLSH`, a band collision with a kept record
//!   is a duplicate: signatures are not stored and candidates are not verified.
//!
//! Records are processed in a canonical order and a record is dropped when it duplicates an
//! *earlier kept* record (dropped records are not inserted), so the survivors depend only on
//! that order: plan order in the engine, id order offline ([`dedup_sorted`]).
//!
//! Memory is bounded by the kept records: per kept record one `(u64, u32)` slot in each band
//! table and in the exact table, and its id in a string arena; no signatures or texts. The
//! tables grow by doubling, so that is about 215-410 bytes per kept record with 9 bands;
//! measured by `mediflow bench dedup` ([`Dedup::index_bytes`]): 406 bytes at 924,870 kept
//! records (the tables had just doubled), peak RSS +401 MB.

use crate::record::Record;
use crate::text::normalize;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use xxhash_rust::xxh3::xxh3_64;

/// The Mersenne prime 2^61 - 1, the modulus of the MinHash permutations.
const MERSENNE: u64 = (1 << 61) - 1;

/// `[dedup]` in the run config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// Drop records whose normalised text equals a kept record's.
    #[serde(default = "d_true")]
    pub exact: bool,
    /// Drop records whose MinHash collides with a kept record's in an LSH band.
    #[serde(default = "d_true")]
    pub near: bool,
    /// MinHash permutations.
    #[serde(default = "d_num_perm")]
    pub num_perm: usize,
    /// Words per shingle.
    #[serde(default = "d_shingle_words")]
    pub shingle_words: usize,
    /// Jaccard similarity the LSH parameters are tuned for.
    #[serde(default = "d_threshold")]
    pub threshold: f64,
    /// Seed of the MinHash permutations.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// LSH bands; with `rows`, overrides the optimum for `threshold` (give both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<usize>,
    /// Signature values per band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
}

fn d_true() -> bool {
    true
}
fn d_num_perm() -> usize {
    128
}
fn d_shingle_words() -> usize {
    5
}
fn d_threshold() -> f64 {
    0.8
}
fn d_seed() -> u64 {
    1
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: d_true(),
            near: d_true(),
            num_perm: d_num_perm(),
            shingle_words: d_shingle_words(),
            threshold: d_threshold(),
            seed: d_seed(),
            bands: None,
            rows: None,
        }
    }
}

impl DedupConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.num_perm == 0 {
            return Err("dedup.num_perm must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!(
                "dedup.threshold must be between 0 and 1 (exclusive), got {}",
                self.threshold
            ));
        }
        if self.shingle_words == 0 {
            return Err("dedup.shingle_words must be at least 1".into());
        }
        match (self.bands, self.rows) {
            (None, None) => Ok(()),
            (Some(b), Some(r)) if b >= 1 && r >= 1 && b.saturating_mul(r) <= self.num_perm => {
                Ok(())
            }
            (Some(b), Some(r)) => Err(format!(
                "dedup.bands x dedup.rows ({b} x {r}) must be at least 1 and at most num_perm ({})",
                self.num_perm
            )),
            _ => Err("dedup.bands and dedup.rows go together: give both or neither".into()),
        }
    }

    /// (bands, rows): the override, else [`optimal_param`] for `threshold` and `num_perm`.
    pub fn lsh_params(&self) -> (usize, usize) {
        self.bands
            .zip(self.rows)
            .unwrap_or_else(|| optimal_param(self.threshold, self.num_perm))
    }
}

/// datasketch's `MinHashLSH._optimal_param` with false-positive and false-negative weights
/// 0.5/0.5: the (bands, rows) with bands x rows <= `num_perm` minimising the weighted areas
/// under the LSH S-curve below and above `threshold`, integrated like datasketch's
/// `_integration` (midpoint rule, step 0.001; scipy's `quad`, which datasketch prefers when
/// installed, picks the same parameters).
pub fn optimal_param(threshold: f64, num_perm: usize) -> (usize, usize) {
    fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        let p = 0.001;
        let (mut area, mut x) = (0.0, a);
        while x < b {
            area += f(x + 0.5 * p) * p;
            x += p;
        }
        area
    }
    let mut best = (f64::INFINITY, (0, 0));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let collide = |s: f64| 1.0 - (1.0 - s.powf(r as f64)).powf(b as f64);
            let fp = integrate(collide, 0.0, threshold);
            let fneg = integrate(|s| 1.0 - collide(s), threshold, 1.0);
            let error = 0.5 * fp + 0.5 * fneg;
            if error < best.0 {
                best = (error, (b, r));
            }
        }
    }
    best.1
}

#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// `exact_duplicate` or `near_duplicate`.
    pub reason: &'static str,
    /// The id of the kept record this one duplicates.
    pub of: String,
}

/// Call `f` with the xxh3-64 of every `n`-word shingle of a normalised text (its words
/// joined by single spaces: a slice of the text); a text of fewer than `n` words is one
/// shingle.
pub fn for_each_shingle(norm: &str, n: usize, mut f: impl FnMut(u64)) {
    let starts: Vec<usize> = std::iter::once(0)
        .chain(norm.match_indices(' ').map(|(i, _)| i + 1))
        .collect();
    if starts.len() <= n {
        return f(xxh3_64(norm.as_bytes()));
    }
    for k in 0..=starts.len() - n {
        let end = starts.get(k + n).map_or(norm.len(), |s| s - 1);
        f(xxh3_64(&norm.as_bytes()[starts[k]..end]));
    }
}

/// `(a*h + b) mod (2^61 - 1)` for a, b < 2^61, by folding (no division).
#[inline]
fn permute(a: u64, b: u64, h: u64) -> u64 {
    let m = MERSENNE as u128;
    let x = a as u128 * h as u128 + b as u128;
    let x = (x & m) + (x >> 61);
    let x = ((x & m) + (x >> 61)) as u64;
    if x >= MERSENNE {
        x - MERSENNE
    } else {
        x
    }
}

/// The keys a text is deduplicated on.
struct Keys {
    exact: u64,
    bands: Vec<u64>,
}

/// Computes keys: normalisation, MinHash, band hashes (no state: shared across threads).
struct Sketcher {
    exact: bool,
    shingle_words: usize,
    rows: usize,
    /// Permutation parameters; only the bands x rows that LSH reads are kept (empty when
    /// near-duplicate detection is off).
    a: Vec<u64>,
    b: Vec<u64>,
}

impl Sketcher {
    fn new(cfg: &DedupConfig) -> Self {
        let (bands, rows) = cfg.lsh_params();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut a: Vec<u64> = (0..cfg.num_perm)
            .map(|_| rng.random_range(1..MERSENNE))
            .collect();
        let mut b: Vec<u64> = (0..cfg.num_perm)
            .map(|_| rng.random_range(0..MERSENNE))
            .collect();
        let used = if cfg.near { bands * rows } else { 0 };
        a.truncate(used);
        b.truncate(used);
        Sketcher {
            exact: cfg.exact,
            shingle_words: cfg.shingle_words,
            rows,
            a,
            b,
        }
    }

    fn keys(&self, text: &str) -> Keys {
        let norm = normalize(text);
        let mut sig = vec![u64::MAX; self.a.len()];
        if !sig.is_empty() {
            for_each_shingle(&norm, self.shingle_words, |h| {
                for ((m, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                    *m = (*m).min(permute(a, b, h));
                }
            });
        }
        let bands = sig
            .chunks_exact(self.rows)
            .map(|band| {
                let bytes: Vec<u8> = band.iter().flat_map(|v| v.to_le_bytes()).collect();
                xxh3_64(&bytes)
            })
            .collect();
        Keys {
            exact: if self.exact {
                xxh3_64(norm.as_bytes())
            } else {
                0
            },
            bands,
        }
    }
}

/// The tables' keys are xxh3 hashes already: use them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("dedup tables are keyed by u64")
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

/// Key -> index of the kept record that holds it.
type Table = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// The streaming deduplicator: feed records in the canonical order.
pub struct Dedup {
    sketcher: Sketcher,
    exact: Table,
    bands: Vec<Table>,
    /// The kept ids, concatenated; kept record `i` ends at `ends[i]`.
    ids: String,
    ends: Vec<usize>,
}

impl Dedup {
    /// `cfg` must pass [`DedupConfig::validate`].
    pub fn new(cfg: &DedupConfig) -> Self {
        let sketcher = Sketcher::new(cfg);
        let bands = (0..sketcher.a.len() / sketcher.rows)
            .map(|_| Table::default())
            .collect();
        Dedup {
            sketcher,
            exact: Table::default(),
            bands,
            ids: String::new(),
            ends: Vec::new(),
        }
    }

    /// Check `text` against the kept records; keep (insert) it if it is no duplicate.
    pub fn check_insert(&mut self, id: &str, text: &str) -> Result<(), Duplicate> {
        let keys = self.sketcher.keys(text);
        self.insert_keys(id, &keys)
    }

    /// Check `text` against the kept records without keeping it.
    pub fn check(&self, text: &str) -> Result<(), Duplicate> {
        self.find(&self.sketcher.keys(text))
    }

    /// Keep `text` whether or not it duplicates a kept record (for a reference set, such as
    /// a train split, that later texts are checked against: every member's keys count; a
    /// key already held keeps pointing at the earlier record).
    pub fn insert(&mut self, id: &str, text: &str) {
        let keys = self.sketcher.keys(text);
        self.keep(id, &keys);
    }

    fn find(&self, keys: &Keys) -> Result<(), Duplicate> {
        let hit = if self.sketcher.exact {
            self.exact.get(&keys.exact)
        } else {
            None
        };
        if let Some(&k) = hit {
            return Err(self.duplicate("exact_duplicate", k));
        }
        let near = keys
            .bands
            .iter()
            .zip(&self.bands)
            .filter_map(|(key, t)| t.get(key))
            .min();
        if let Some(&k) = near {
            return Err(self.duplicate("near_duplicate", k));
        }
        Ok(())
    }

    fn insert_keys(&mut self, id: &str, keys: &Keys) -> Result<(), Duplicate> {
        self.find(keys)?;
        self.keep(id, keys);
        Ok(())
    }

    /// Add `id` with `keys`; a key already held keeps its earlier record.
    fn keep(&mut self, id: &str, keys: &Keys) {
        let idx = u32::try_from(self.ends.len()).expect("at most 2^32 kept records");
        if self.sketcher.exact {
            self.exact.entry(keys.exact).or_insert(idx);
        }
        for (key, t) in keys.bands.iter().zip(&mut self.bands) {
            t.entry(*key).or_insert(idx);
        }
        self.ids.push_str(id);
        self.ends.push(self.ids.len());
    }

    fn duplicate(&self, reason: &'static str, k: u32) -> Duplicate {
        let k = k as usize;
        let start = if k == 0 { 0 } else { self.ends[k - 1] };
        Duplicate {
            reason,
            of: self.ids[start..self.ends[k]].to_string(),
        }
    }

    /// Records kept so far.
    pub fn kept(&self) -> usize {
        self.ends.len()
    }

    /// Heap bytes the index holds: every table's buckets (a `(u64, u32)` slot, 16 bytes, and
    /// a control byte each) and the id arena.
    pub fn index_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(u64, u32)>() + 1;
        let table = |t: &Table| match t.capacity() {
            0 => 0,
            c => (c * 8 / 7).next_power_of_two() * slot,
        };
        self.bands.iter().map(table).sum::<usize>()
            + table(&self.exact)
            + self.ids.capacity()
            + self.ends.capacity() * std::mem::size_of::<usize>()
    }
}

/// Deduplicate in id order (any input order gives the same result): signatures in parallel,
/// then the greedy pass. Returns the dropped ids with what they duplicate, in id order.
pub fn dedup_sorted(
    mut items: Vec<(String, String)>,
    cfg: &DedupConfig,
) -> Vec<(String, Duplicate)> {
    items.sort_unstable();
    let mut d = Dedup::new(cfg);
    let keys: Vec<Keys> = items.par_iter().map(|(_, t)| d.sketcher.keys(t)).collect();
    items
        .into_iter()
        .zip(keys)
        .filter_map(|((id, _), k)| d.insert_keys(&id, &k).err().map(|dup| (id, dup)))
        .collect()
}

/// The text a record is deduplicated on: the bare instruction and the input.
pub fn record_text(rec: &Record) -> String {
    format!(
        "{}\n{}",
        crate::record::bare_instruction(&rec.instruction),
        rec.input
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;

    /// A 60-word text without repeated 5-word shingles.
    fn text60(salt: &str) -> String {
        (0..60)
            .map(|i| format!("w{i}{salt}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn check_does_not_keep_and_insert_always_keeps() {
        let mut d = Dedup::new(&DedupConfig::default());
        d.insert("a", &text60("a"));
        d.insert("a2", &text60("a"));
        assert_eq!(d.kept(), 2);
        let near = text60("a").replace("w59a", "other");
        assert_eq!(d.check(&near).unwrap_err().of, "a");
        assert_eq!(d.check(&text60("a")).unwrap_err().reason, "exact_duplicate");
        assert!(d.check(&text60("b")).is_ok());
        assert!(d.check(&text60("b")).is_ok(), "check keeps nothing");
        assert_eq!(d.kept(), 2);
    }

    #[test]
    fn defaults_equal_serde_defaults_and_validate() {
        let from_toml: DedupConfig = toml::from_str("").unwrap();
        assert_eq!(
            serde_json::to_value(&from_toml).unwrap(),
            serde_json::to_value(DedupConfig::default()).unwrap()
        );
        assert!(DedupConfig::default().validate().is_ok());
        assert!(toml::from_str::<DedupConfig>("bandz = 3").is_err());
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let bad = [
            DedupConfig {
                num_perm: 0,
                ..Default::default()
            },
            DedupConfig {
                threshold: 1.0,
                ..Default::default()
            },
            DedupConfig {
                threshold: 0.0,
                ..Default::default()
            },
            DedupConfig {
                threshold: f64::NAN,
                ..Default::default()
            },
            DedupConfig {
                shingle_words: 0,
                ..Default::default()
            },
            DedupConfig {
                bands: Some(16),
                rows: Some(9),
                ..Default::default()
            },
            DedupConfig {
                bands: Some(0),
                rows: Some(4),
                ..Default::default()
            },
            DedupConfig {
                bands: Some(16),
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        let ok = DedupConfig {
            bands: Some(16),
            rows: Some(8),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.lsh_params(), (16, 8));
    }

    #[test]
    fn optimal_param_matches_datasketch() {
        // Expected values printed by datasketch 2.0.0 (scipy quad) and by the same code with
        // its midpoint `_integration` swapped in (both agree):
        //   from datasketch.lsh import _optimal_param; _optimal_param(t, 128, 0.5, 0.5)
        assert_eq!(optimal_param(0.8, 128), (9, 13));
        assert_eq!(optimal_param(0.5, 128), (25, 5));
        assert_eq!(optimal_param(0.9, 128), (5, 25));
        assert_eq!(DedupConfig::default().lsh_params(), (9, 13));
    }

    #[test]
    fn normalizes_and_shingles() {
        assert_eq!(
            normalize("  Pt. had CHEST-pain, 3x/day; Ärger_  "),
            "pt had chest pain 3x day ärger"
        );
        let mut n = 0;
        for_each_shingle("a b c", 5, |h| {
            assert_eq!(h, xxh3_64(b"a b c"));
            n += 1;
        });
        assert_eq!(n, 1);
        let mut hs = vec![];
        for_each_shingle("a b c d", 2, |h| hs.push(h));
        assert_eq!(hs, [xxh3_64(b"a b"), xxh3_64(b"b c"), xxh3_64(b"c d")]);
        for (a, b, h) in [
            (MERSENNE - 1, MERSENNE - 1, u64::MAX),
            (1, 0, MERSENNE),
            (12345, 6789, 1 << 63),
        ] {
            let want = (a as u128 * h as u128 + b as u128) % MERSENNE as u128;
            assert_eq!(permute(a, b, h) as u128, want);
        }
    }

    #[test]
    fn drops_exact_and_near_duplicates_keeps_unrelated() {
        let mut d = Dedup::new(&DedupConfig::default());
        let base = text60("");
        assert_eq!(d.check_insert("a", &base), Ok(()));
        // Same normalised text.
        let exact = format!("  {}!", base.to_uppercase().replace(' ', ", "));
        assert_eq!(
            d.check_insert("b", &exact),
            Err(Duplicate {
                reason: "exact_duplicate",
                of: "a".into()
            })
        );
        // One word of 60 changed (the first: one shingle of 56 differs, Jaccard 55/57).
        let near = base.replacen("w0 ", "changed ", 1);
        assert_eq!(
            d.check_insert("c", &near),
            Err(Duplicate {
                reason: "near_duplicate",
                of: "a".into()
            })
        );
        assert_eq!(d.check_insert("d", &text60("x")), Ok(()));
        assert_eq!(d.kept(), 2);
        assert!(d.index_bytes() > 0);
        let off = DedupConfig {
            exact: false,
            near: false,
            ..Default::default()
        };
        let mut d = Dedup::new(&off);
        assert!(d.check_insert("a", &base).is_ok() && d.check_insert("b", &base).is_ok());
    }

    #[test]
    fn any_input_order_gives_the_same_result() {
        let mut items: Vec<(String, String)> = Vec::new();
        for i in 0..40 {
            let t = text60(&format!("r{i}"));
            items.push((format!("id{i:03}"), t.clone()));
            if i % 3 == 0 {
                items.push((format!("id{i:03}-exact"), t.to_uppercase()));
            }
            if i % 4 == 0 {
                items.push((format!("id{i:03}-near"), t.replacen("w0", "other", 1)));
            }
        }
        let cfg = DedupConfig::default();
        let expected = dedup_sorted(items.clone(), &cfg);
        assert!(expected.len() >= 20, "{expected:?}");
        // The streaming path in id order agrees with the parallel one.
        let mut sorted = items.clone();
        sorted.sort();
        let mut d = Dedup::new(&cfg);
        let streamed: Vec<(String, Duplicate)> = sorted
            .into_iter()
            .filter_map(|(id, t)| d.check_insert(&id, &t).err().map(|x| (id, x)))
            .collect();
        assert_eq!(streamed, expected);
        for seed in 0..5 {
            items.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(dedup_sorted(items.clone(), &cfg), expected, "seed {seed}");
        }
    }
}
