//! The quality gate: heuristic filters and grounding checks, the LLM judge, and exact +
//! near-duplicate removal.

pub mod dedup;
pub mod filters;
pub mod grounding;
pub mod judge;
pub mod vocab;
