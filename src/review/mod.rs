//! Physician review: the journal of reviewers' decisions (`journal`), read by `export`
//! (which applies them) and by the report.

pub mod journal;
