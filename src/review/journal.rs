//! The reviewers' journal: `DIR/review/decisions.jsonl`, append-only, one decision per
//! line, each line written whole and fsynced before the write is acknowledged. The last
//! decision of a reviewer on a record wins; `resolve` combines the reviewers.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal's path inside a run (or audit) directory.
pub fn path(run_dir: &Path) -> PathBuf {
    run_dir.join("review").join("decisions.jsonl")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Accept,
    Edit,
    Reject,
}

/// The fields a reviewer changed (absent = unchanged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl Edit {
    pub fn is_empty(&self) -> bool {
        self.instruction.is_none() && self.input.is_none() && self.output.is_none()
    }
}

/// One reviewer's decision on one record, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub id: String,
    pub reviewer: String,
    pub decision: Verdict,
    /// MediFlow's five dimensions (`quality::judge::DIMENSIONS`) as 1-5 Likert scores;
    /// a dimension the reviewer left unrated is absent.
    #[serde(default)]
    pub scores: BTreeMap<String, u8>,
    #[serde(default, skip_serializing_if = "Edit::is_empty")]
    pub edit: Edit,
    #[serde(default)]
    pub comment: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// Appends decisions to a run's journal; each `append` is on disk when it returns.
pub struct Journal {
    file: std::fs::File,
    path: PathBuf,
}

impl Journal {
    pub fn open(run_dir: &Path) -> anyhow::Result<Journal> {
        let path = path(run_dir);
        let dir = path.parent().expect("journal path has a parent");
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", dir.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("{}: cannot open: {e}", path.display()))?;
        Ok(Journal { file, path })
    }

    /// Writes one line (a single `write` call) and fsyncs it.
    pub fn append(&mut self, d: &Decision) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(d)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", self.path.display()))
    }
}

/// Every decision in the journal, in the order written (none when there is no journal).
/// A last line without its newline (a write cut by a crash) is skipped; any other line
/// that does not parse is an error naming the file and line.
pub fn read(run_dir: &Path) -> anyhow::Result<Vec<Decision>> {
    let path = path(run_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => anyhow::bail!("{}: cannot read: {e}", path.display()),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Decision>(line) {
            Ok(d) => out.push(d),
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => anyhow::bail!("{}:{}: not a decision: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// The last decision of each reviewer on each record: `id -> reviewer -> decision`.
pub fn latest(decisions: &[Decision]) -> BTreeMap<String, BTreeMap<String, Decision>> {
    let mut out: BTreeMap<String, BTreeMap<String, Decision>> = BTreeMap::new();
    for d in decisions {
        out.entry(d.id.clone())
            .or_default()
            .insert(d.reviewer.clone(), d.clone());
    }
    out
}

/// What the reviewers' latest decisions on a record come to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted,
    /// The edit to apply: the fields of the most recent `edit` decision.
    Edited(Edit),
    /// Rejected by at least one reviewer (when in doubt, reject).
    Rejected,
}

/// Combines the reviewers per record: any reviewer's latest `reject` rejects the record;
/// otherwise the most recent `edit` among the reviewers' latest decisions applies;
/// otherwise it is accepted. Records nobody reviewed are absent.
pub fn resolve(decisions: &[Decision]) -> HashMap<String, Outcome> {
    let order: HashMap<(&str, &str), usize> = decisions
        .iter()
        .enumerate()
        .map(|(i, d)| ((d.id.as_str(), d.reviewer.as_str()), i))
        .collect();
    let mut out = HashMap::new();
    for (id, by) in latest(decisions) {
        let outcome = if by.values().any(|d| d.decision == Verdict::Reject) {
            Outcome::Rejected
        } else {
            let last_edit = by
                .values()
                .filter(|d| d.decision == Verdict::Edit)
                .max_by_key(|d| order[&(d.id.as_str(), d.reviewer.as_str())]);
            match last_edit {
                Some(d) => Outcome::Edited(d.edit.clone()),
                None => Outcome::Accepted,
            }
        };
        out.insert(id, outcome);
    }
    out
}

/// The time now, as the journal writes it.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, who: &str, v: Verdict, output: Option<&str>) -> Decision {
        Decision {
            id: id.into(),
            reviewer: who.into(),
            decision: v,
            scores: BTreeMap::from([("quality".to_string(), 4)]),
            edit: Edit {
                output: output.map(str::to_string),
                ..Edit::default()
            },
            comment: String::new(),
            at: now(),
        }
    }

    #[test]
    fn appends_reads_back_and_skips_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&d("a", "ann", Verdict::Accept, None)).unwrap();
        j.append(&d("b", "ann", Verdict::Edit, Some("new"))).unwrap();
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path(dir.path()))
            .unwrap();
        f.write_all(br#"{"id":"c","revie"#).unwrap();
        let got = read(dir.path()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].edit.output.as_deref(), Some("new"));
        // a bad line in the middle is an error naming the line
        f.write_all(b"\n").unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        j.append(&d("c", "ann", Verdict::Reject, None)).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("decisions.jsonl:3"), "{err}");
    }

    #[test]
    fn last_decision_of_a_reviewer_wins_and_any_reject_rejects() {
        let ds = vec![
            d("a", "ann", Verdict::Reject, None),
            d("a", "ann", Verdict::Accept, None), // ann changed her mind
            d("b", "ann", Verdict::Accept, None),
            d("b", "bob", Verdict::Reject, None),
            d("c", "ann", Verdict::Edit, Some("first")),
            d("c", "bob", Verdict::Edit, Some("second")),
            d("c", "ann", Verdict::Accept, None),
        ];
        let r = resolve(&ds);
        assert_eq!(r["a"], Outcome::Accepted);
        assert_eq!(r["b"], Outcome::Rejected);
        match &r["c"] {
            Outcome::Edited(e) => assert_eq!(e.output.as_deref(), Some("second")),
            o => panic!("{o:?}"),
        }
        assert_eq!(r.len(), 3);
    }
}
