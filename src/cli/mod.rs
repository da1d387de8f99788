//! Command-line interface: clap structs and dispatch. Each command lives in its own file
//! and is a thin layer over the library. Part of the binary (`src/main.rs` declares it),
//! so it reaches the library as `mediflow::` and adds nothing to its public API.

mod audit;
mod bench;
mod dedup;
mod dpo;
mod eval;
mod export;
mod init;
mod inspect;
mod merge;
#[cfg(feature = "mock")]
mod mock;
mod model;
mod plan;
mod report;
mod review;
mod run;
mod taxonomy;
mod train;

use clap::{Args, Parser, Subcommand};
use mediflow::config::Overrides;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mediflow",
    version,
    about = "Generate synthetic clinical instruction data with a teacher model"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a commented run.toml to start from (`mediflow init [DIR]`).
    Init(init::InitArgs),
    /// Print a summary of the taxonomy (counts per family, tasks per document, cells).
    Taxonomy(taxonomy::TaxonomyArgs),
    /// Load and check config, taxonomy, templates and schemas; probe the teacher.
    Check(run::CheckArgs),
    /// Print the stratified plan: summary, cells and estimated teacher calls and tokens.
    Plan(plan::PlanArgs),
    /// Generate the dataset (resumes where a previous attempt stopped).
    Run(run::RunArgs),
    /// Combine the shards of a sharded run (`run --shard I/N`) into one dataset.
    Merge(merge::MergeArgs),
    /// Serve the mock OpenAI-compatible teacher (for tests, benchmarks and demos).
    #[cfg(feature = "mock")]
    MockTeacher(mock::MockArgs),
    /// Show counts, sample rows and rejection reasons of a run directory.
    Inspect(inspect::InspectArgs),
    /// Run the quality gate over existing rows (JSONL, Parquet, chat rows); `--calibrate`
    /// measures the judge against labelled rows.
    Audit(audit::AuditArgs),
    /// Build preference pairs (DPO) from a run's accepted records.
    Dpo(dpo::DpoArgs),
    /// Drop exact and near duplicates from a run's records into a new run directory.
    Dedup(dedup::DedupArgs),
    /// Review a run's records in the browser (physician review; decisions go to
    /// `review/decisions.jsonl` and `export` applies them).
    Review(review::ReviewArgs),
    /// Write a run's (or an audit's) report: one self-contained HTML page of charts, the
    /// human review's agreement figures and a sample browser.
    Report(report::ReportArgs),
    /// Export a run as a training dataset (SFT or DPO; Parquet + JSONL + dataset card).
    Export(export::ExportArgs),
    /// Fine-tune a model on an export (`train sft`: LoRA on a llama GGUF, in-process).
    Train(train::TrainArgs),
    /// Score a model on held-out and benchmark tasks (`eval compare`, `eval export-lm-eval`).
    Eval(eval::EvalArgs),
    /// Obtain or list the embedded teacher's models.
    Model(model::ModelArgs),
    /// Benchmarks (`bench teacher`: the embedded teacher vs llama.cpp; `bench dedup`:
    /// deduplication vs datasketch; `bench concurrency`: adaptive concurrency vs a
    /// fixed-concurrency sweep against a server).
    Bench(bench::BenchArgs),
}

/// Knobs shared by the commands that read a run config.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// The run configuration (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Teacher base URL (repeat for several endpoints); overrides `teacher.base_urls` and
    /// selects the OpenAI-compatible client even where the config names the embedded teacher.
    #[arg(long = "teacher-url")]
    pub teacher_url: Vec<String>,
    /// Overrides `teacher.model`.
    #[arg(long)]
    pub model: Option<String>,
    /// A fixed number of teacher requests in flight (overrides `engine.concurrency` and
    /// turns adaptive concurrency off).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Overrides the run seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Overrides the number of work items to plan (`items`). Part of what a run generates:
    /// resuming, or merging shards, takes the same value.
    #[arg(long)]
    pub items: Option<usize>,
}

impl ConfigArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            teacher_urls: self.teacher_url.clone(),
            model: self.model.clone(),
            concurrency: self.concurrency,
            seed: self.seed,
            items: self.items,
        }
    }
}

/// Parse arguments, run, and return the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEDIFLOW_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async {
        match cli.cmd {
            Cmd::Init(a) => init::exec(a),
            Cmd::Taxonomy(a) => taxonomy::exec(a),
            Cmd::Check(a) => run::check(a).await,
            Cmd::Plan(a) => plan::exec(a),
            Cmd::Run(a) => run::exec(a).await,
            Cmd::Merge(a) => merge::exec(a),
            #[cfg(feature = "mock")]
            Cmd::MockTeacher(a) => mock::exec(a).await,
            Cmd::Inspect(a) => inspect::exec(a),
            Cmd::Audit(a) => audit::exec(a).await,
            Cmd::Dedup(a) => dedup::exec(a),
            Cmd::Dpo(a) => dpo::exec(a).await,
            Cmd::Review(a) => review::exec(a).await,
            Cmd::Export(a) => export::exec(a),
            Cmd::Report(a) => report::exec(a),
            Cmd::Train(a) => train::exec(a),
            Cmd::Eval(a) => eval::exec(a).await,
            Cmd::Model(a) => model::exec(a),
            Cmd::Bench(a) => bench::exec(a).await,
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Print pretty JSON to stdout.
pub fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

/// Peak resident memory of this process so far in MB.
pub use mediflow::bench::peak_rss_mb;
