//! mediflow: generate synthetic clinical instruction data (MediFlow-style) with a teacher
//! model, validate it against per-task JSON Schemas, and write Parquet + JSONL datasets.
//!
//! The pipeline is `taxonomy -> plan -> (document -> instruction -> answer) -> validate -> sinks`.
//! The CLI (`src/main.rs`, `src/cli/`, part of the binary, not of this library) is a thin
//! layer over it.

pub mod audit;
pub mod bench;
pub mod check;
pub mod config;
pub mod dirlock;
pub mod dpo;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod merge;
pub mod plan;
pub mod prompt;
pub mod quality;
pub mod record;
pub mod report;
pub mod review;
pub mod review_app;
pub mod schemas;
pub mod shard;
pub mod sink;
pub mod taxonomy;
pub mod teacher;
pub mod text;
pub mod train;
pub mod util;

pub use config::RunConfig;
pub use error::{Error, Problem};
pub use record::{Record, Rejection};
