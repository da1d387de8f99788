//! The reviewers' decisions (`review/decisions.jsonl`, see `crate::review::journal`)
//! applied to the records an export reads: rejected records are dropped, edited fields
//! replace the record's own (re-validated: an invalid edit stops the export).

use crate::error::{Error, Problem};
use crate::record::Record;
use crate::review::journal::{self, Outcome};
use crate::review_app::edit;
use std::collections::HashSet;
use std::path::Path;

/// What the review did to the run's records (for the card and the summary).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Reviewers with a decision on at least one of the run's records.
    pub reviewers: usize,
    /// The run's records with a decision (decisions on sampled rejects do not count).
    pub reviewed: usize,
    pub accepted: usize,
    pub edited: usize,
    /// Dropped from the export.
    pub rejected: usize,
}

/// The records with the decisions applied, and the counts (`None`: no journal, the
/// records unchanged).
pub fn apply(run: &Path, recs: Vec<Record>) -> Result<(Vec<Record>, Option<Counts>), Error> {
    let decisions = journal::read(run)?;
    if decisions.is_empty() {
        return Ok((recs, None));
    }
    let outcomes = journal::resolve(&decisions);
    let ids: HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    let mut counts = Counts {
        reviewers: decisions
            .iter()
            .filter(|d| ids.contains(d.id.as_str()))
            .map(|d| d.reviewer.as_str())
            .collect::<HashSet<_>>()
            .len(),
        ..Counts::default()
    };
    let path = journal::path(run);
    let invalid = |id: &str, msg: String| {
        Error::Input(vec![Problem::new(
            &path,
            format!("record {id}: invalid edit: {msg} (decide on it again in `mediflow review`)"),
        )])
    };
    // Loaded only when an edit changes a `json` answer.
    let mut schemas = None;
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        match outcomes.get(&r.id) {
            None => out.push(r),
            Some(Outcome::Accepted) => {
                counts.accepted += 1;
                out.push(r);
            }
            Some(Outcome::Rejected) => counts.rejected += 1,
            Some(Outcome::Edited(e)) => {
                if e.output.is_some() && r.output_format == "json" && schemas.is_none() {
                    schemas = Some(
                        edit::run_schemas(run).map_err(|err| invalid(&r.id, format!("{err:#}")))?,
                    );
                }
                let edited = edit::apply(&r, e, schemas.as_ref()).map_err(|m| invalid(&r.id, m))?;
                counts.edited += 1;
                out.push(edited);
            }
        }
    }
    counts.reviewed = counts.accepted + counts.edited + counts.rejected;
    Ok((out, Some(counts)))
}
