//! The quality gate: heuristic filters and grounding checks, the LLM judge (and its
//! calibration), and exact + near-duplicate removal.

pub mod calibration;
pub mod dedup;
pub mod examples;
pub mod filters;
pub mod judge;
pub mod vocab;
