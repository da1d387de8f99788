//! Sharded runs: `run --shard I/N` processes a deterministic 1/N slice of the plan in its
//! own directory (`<out>/shards/I-of-N`, with its own journal), so N machines of any
//! scheduler (a Slurm job array, a Kubernetes Indexed Job) can share one run over a shared
//! filesystem; `merge` then combines the shards into one dataset.
//!
//! The slice is by taxonomy cell: each cell (with its quota refills) belongs to one shard,
//! so quotas and refills work inside a shard exactly as in an unsharded run. Cells are
//! dealt in key order to the shard with the fewest items so far, which balances the
//! shards to within one cell's items.

use crate::plan::{Cell, PlanItem};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardSpec {
    /// 0-based, as Slurm's `SLURM_ARRAY_TASK_ID` (with `--array=0-N-1`) and Kubernetes'
    /// `JOB_COMPLETION_INDEX` are.
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 0 <= I < N (e.g. 0/8)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(ShardSpec { index, count })
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Where shards live under a run directory.
pub const SHARDS_DIR: &str = "shards";

impl ShardSpec {
    /// This shard's directory under the run directory `out`.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(SHARDS_DIR)
            .join(format!("{:04}-of-{:04}", self.index, self.count))
    }
}

/// The shard each cell of `items` belongs to (`count` shards).
pub fn assign(items: &[PlanItem], count: usize) -> BTreeMap<Cell, usize> {
    let mut per_cell: BTreeMap<Cell, usize> = BTreeMap::new();
    for it in items {
        *per_cell.entry(it.cell()).or_default() += 1;
    }
    let mut load = vec![0usize; count];
    per_cell
        .into_iter()
        .map(|(cell, n)| {
            let s = (0..count).min_by_key(|&s| (load[s], s)).expect("count > 0");
            load[s] += n;
            (cell, s)
        })
        .collect()
}

/// The items of `items` in shard `spec`, in their original order.
pub fn select(items: Vec<PlanItem>, spec: ShardSpec) -> Vec<PlanItem> {
    let owner = assign(&items, spec.count);
    items
        .into_iter()
        .filter(|it| owner[&it.cell()] == spec.index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_specs() {
        let s: ShardSpec = "3/8".parse().unwrap();
        assert_eq!((s.index, s.count), (3, 8));
        assert_eq!(s.to_string(), "3/8");
        for bad in ["8/8", "1", "a/2", "0/0", "-1/2"] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        assert!(s.dir(Path::new("out")).ends_with("shards/0003-of-0008"));
    }
}
