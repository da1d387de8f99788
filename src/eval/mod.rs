//! `mediflow eval`: score a model (any teacher backend) on held-out clinical tasks and on
//! a real public benchmark, per task, with bootstrap confidence intervals.
//!
//! Tasks are files (`evals/*.yaml`, see `task`): a source of items (`source`: a mediflow
//! export's test split, or the built-in ICD-10-CM concept MCQ in `icd_mcq`), a prompt template, the
//! answer's JSON Schema and metrics (`metrics`). `runner` asks the model (generation, or
//! log-likelihood of each option where the backend has log-probabilities: `backend`),
//! journals per-item predictions, and resumes; `report` aggregates (`bootstrap`) into
//! `results.json` / `results.md`; `compare` diffs two result sets; `lm_eval` writes the same
//! tasks for lm-evaluation-harness.

pub mod answer;
pub mod backend;
pub mod bootstrap;
pub mod compare;
pub mod icd_mcq;
pub mod lm_eval;
pub mod metrics;
pub mod predictions;
pub mod report;
pub mod runner;
pub mod source;
pub mod task;
