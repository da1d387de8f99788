//! `mediflow bench`: the flags of each benchmark, handed to `mediflow::bench`, which measures;
//! the report is printed here (JSON with `--json`).

use super::ConfigArgs;
use clap::{Args, Subcommand};
use mediflow::bench::{self, Report};
use mediflow::error::Error;
use mediflow::teacher::embedded::config::Weights;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Benchmark the embedded teacher (and llama.cpp on the same file).
    Teacher(TeacherBench),
    /// Benchmark deduplication on synthetic records (and datasketch's results on them).
    Dedup(DedupBench),
    /// Adaptive concurrency vs a fixed-concurrency sweep against a teacher server.
    Concurrency(ConcurrencyBench),
    /// Records per second through the quality gate (no judge).
    Gate(GateBench),
}

#[derive(Args)]
pub struct TeacherBench {
    /// GGUF file (default: the default model, pulled if missing).
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Weights mode: auto | native | q8_0 | f16 | f32.
    #[arg(long, default_value = "auto")]
    pub weights: String,
    /// CPU threads (also passed to llama-bench).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Context already in each sequence while generating (prompt tokens; the pipeline's
    /// answer prompts hold 1,000-2,000). 0 = a one-line prompt.
    #[arg(long, default_value_t = 0)]
    pub gen_context: usize,
    /// Batch sizes for the aggregate generation figure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,48")]
    pub batches: Vec<usize>,
    /// Path of llama.cpp's llama-bench, to measure the reference in the same run.
    #[arg(long)]
    pub llama_bench: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DedupBench {
    /// Records to generate.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fraction of records that are an earlier record with 1-3 words changed.
    #[arg(long, default_value_t = 0.1)]
    pub near_fraction: f64,
    /// Fraction of records that are an earlier record in upper case (same normalised text).
    #[arg(long, default_value_t = 0.02)]
    pub exact_fraction: f64,
    /// Write the records as JSONL (`{"id": .., "text": ..}`) for the reference.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Results of scripts/dedup_reference.py on the exported records, to compare with.
    #[arg(long)]
    pub reference_results: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConcurrencyBench {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Fixed concurrency levels of the sweep, in the order run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64,128,256"
    )]
    pub levels: Vec<usize>,
    /// Stop the sweep at the first level above the best so far whose rate is below this
    /// fraction of the best (0: run every level).
    #[arg(long, default_value_t = 0.75)]
    pub stop_below: f64,
    /// Run the best sweep level again after the adaptive run: the best point is the highest of
    /// several noisy points, and the repeat shows the spread between two runs of a level.
    #[arg(long)]
    pub confirm: bool,
    /// Run the sweep and the adaptive run this many times, in rounds (levels, adaptive;
    /// levels, adaptive; ...), so that a machine whose speed drifts affects all alike. A
    /// level's point and the adaptive figure are then the means of their runs, and each
    /// round also compares its adaptive run with its own run of the best level. Where one
    /// run of a level differs from the next by more than the margin sought (a flat curve
    /// on a busy CPU), one sweep cannot tell the levels apart; the means of several can.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Scratch directory for the runs' outputs (default: a temporary directory, removed
    /// afterwards).
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GateBench {
    /// JSONL files of records (task_type, input_data, output_format, instruction, input,
    /// output); default: tests/fixtures/gate/tuning.jsonl and heldout.jsonl.
    #[arg(long = "in")]
    pub inputs: Vec<PathBuf>,
    /// Records to run through the gate (the input rows, cycled).
    #[arg(long, default_value_t = 100_000)]
    pub records: usize,
    #[arg(long, default_value = "taxonomy")]
    pub taxonomy_dir: PathBuf,
    #[arg(long, default_value = "schemas")]
    pub schemas_dir: PathBuf,
    /// Templates whose worked examples `example_copy` compares with.
    #[arg(long, default_value = "templates")]
    pub templates_dir: PathBuf,
    /// Also time each filter alone (on the first 2,000 records, one thread).
    #[arg(long)]
    pub per_filter: bool,
    #[arg(long)]
    pub json: bool,
}

/// The report as pretty JSON with `--json`, else its lines.
fn print(r: &Report, json: bool) {
    if json {
        super::print_json(&r.json);
    } else {
        print!("{}", r.text);
    }
}

pub async fn exec(a: BenchArgs) -> Result<(), Error> {
    match a.cmd {
        BenchCmd::Teacher(a) => {
            let weights: Weights = serde_json::from_value(json!(a.weights)).map_err(|_| {
                Error::Other(anyhow::anyhow!(
                    "--weights: expected auto, native, q8_0, f16 or f32"
                ))
            })?;
            let r = bench::teacher::run(bench::teacher::TeacherOptions {
                model_path: a.model_path,
                weights,
                threads: a.threads,
                prompt_tokens: a.prompt_tokens,
                gen_tokens: a.gen_tokens,
                gen_context: a.gen_context,
                batches: a.batches,
                llama_bench: a.llama_bench,
            })
            .await?;
            print(&r, a.json);
        }
        // Always the table, then the report's JSON on one line.
        BenchCmd::Dedup(a) => print(
            &bench::dedup::run(bench::dedup::DedupOptions {
                records: a.records,
                seed: a.seed,
                near_fraction: a.near_fraction,
                exact_fraction: a.exact_fraction,
                export: a.export,
                reference_results: a.reference_results,
            })?,
            false,
        ),
        BenchCmd::Concurrency(a) => {
            let r = bench::concurrency::run(bench::concurrency::ConcurrencyOptions {
                overrides: a.config.overrides(),
                config: a.config.config,
                levels: a.levels,
                stop_below: a.stop_below,
                confirm: a.confirm,
                rounds: a.rounds,
                scratch: a.scratch,
                progress: !a.json,
            })
            .await?;
            print(&r, a.json);
        }
        BenchCmd::Gate(a) => {
            let r = bench::gate::run(bench::gate::GateOptions {
                inputs: a.inputs,
                records: a.records,
                taxonomy_dir: a.taxonomy_dir,
                schemas_dir: a.schemas_dir,
                templates_dir: a.templates_dir,
                per_filter: a.per_filter,
            })?;
            print(&r, a.json);
        }
    }
    Ok(())
}
