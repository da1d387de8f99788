//! `mediflow report`: a run directory or an audit output as one self-contained HTML file
//! (inline SVG charts, inline style and script, nothing fetched). One streaming pass
//! (`collect`) computes every chart's aggregate and a bounded, stratified sample for the
//! browser, so the page's size does not grow with the number of records; the reviewers'
//! journal (`review::journal`) adds counts and agreement figures (`review`, computed with
//! `statistics`). Sits above `audit` and `export` (it reads both kinds of directory).

mod browser;
mod collect;
mod highlight;
pub mod html;
mod review;
mod sample;
mod sections;
pub mod statistics;
mod svg;

use collect::Kind;

use crate::error::{Error, Problem};
use crate::review::journal;
use std::collections::HashSet;
use std::path::PathBuf;

/// The report's file name inside the directory, by default.
pub const REPORT: &str = "report.html";
/// Accepted and rejected records the sample browser embeds at most, by default.
pub const SAMPLE_ACCEPTED: usize = 500;
pub const SAMPLE_REJECTED: usize = 200;

pub struct Options {
    pub dir: PathBuf,
    /// Default: `dir/report.html`.
    pub out: Option<PathBuf>,
    /// Records the browser embeds at most (accepted, rejected).
    pub sample_accepted: usize,
    pub sample_rejected: usize,
    pub seed: u64,
}

impl Options {
    pub fn new(dir: PathBuf) -> Options {
        Options {
            dir,
            out: None,
            sample_accepted: SAMPLE_ACCEPTED,
            sample_rejected: SAMPLE_REJECTED,
            seed: 0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub bytes: u64,
    pub kind: &'static str,
    pub records: u64,
    pub sampled: usize,
    pub decisions: usize,
}

/// Write the report of `opts.dir`.
pub fn report(opts: &Options) -> Result<Written, Error> {
    let html = render(opts)?;
    let path = opts.out.clone().unwrap_or_else(|| opts.dir.join(REPORT));
    std::fs::write(&path, &html.0)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    Ok(Written {
        bytes: html.0.len() as u64,
        path,
        ..html.1
    })
}

/// The page, and what went into it.
fn render(opts: &Options) -> Result<(String, Written), Error> {
    if !opts.dir.is_dir() {
        return Err(Error::Input(vec![Problem::new(
            &opts.dir,
            "not a directory (a run directory or an audit output)",
        )]));
    }
    let decisions = journal::read(&opts.dir).map_err(|e| {
        Error::Input(vec![Problem::new(
            journal::path(&opts.dir),
            format!("{e:#}"),
        )])
    })?;
    let reviewed: HashSet<String> = decisions.iter().map(|d| d.id.clone()).collect();
    let limits = collect::Limits {
        accepted: opts.sample_accepted,
        rejected: opts.sample_rejected,
        seed: opts.seed,
    };
    let c = collect::collect(&opts.dir, limits, &reviewed)?;
    let rv = review::review(&decisions, &c.judged);
    let latest = journal::latest(&decisions);
    let sections: [(&str, &str, String); 10] = [
        ("overview", "Overview", sections::overview(&c)),
        (
            "coverage",
            "Coverage: task x document family",
            sections::coverage(&c),
        ),
        ("funnel", "Yield funnel", sections::funnel(&c)),
        ("judge", "Judge scores", sections::judge(&c)),
        ("usage", "Tokens and latency", sections::usage(&c)),
        (
            "duplicates",
            "Near-duplicate clusters",
            sections::duplicates(&c),
        ),
        ("dpo", "Preference pairs (DPO) margins", sections::dpo(&c)),
        ("quotas", "Quota fill per cell", sections::quotas(&c)),
        ("review", "Human review", review::render(&rv)),
        ("samples", "Sample browser", browser::browser(&c, &latest)),
    ];
    let body: String = sections
        .iter()
        .map(|(id, t, b)| html::section(id, t, b))
        .collect();
    let nav: Vec<(&str, &str)> = sections.iter().map(|(id, t, _)| (*id, *t)).collect();
    let name = opts.dir.canonicalize().unwrap_or_else(|_| opts.dir.clone());
    let kind = match c.kind {
        Kind::Run => "run",
        Kind::Audit => "audit",
    };
    let title = format!("mediflow report: {} ({kind})", name.display());
    let written = Written {
        path: PathBuf::new(),
        bytes: 0,
        kind,
        records: c.accepted_seen + c.rejected_seen,
        sampled: c.accepted_sample.len() + c.rejected_sample.len(),
        decisions: decisions.len(),
    };
    Ok((html::page(&title, &nav, &body), written))
}
