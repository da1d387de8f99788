//! `mediflow eval`: score a model on task files (see mediflow::eval); `eval compare A B`;
//! `eval export-lm-eval`.

use clap::{Args, Subcommand};
use mediflow::error::{Error, Problem};
use mediflow::eval::{backend, compare, lm_eval, predictions, report, runner, task};
use mediflow::teacher::retry::Backoff;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    cmd: Option<EvalCmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum EvalCmd {
    /// Compare two eval outputs task by task (delta, bootstrap CI, tasks that got worse).
    Compare(CompareArgs),
    /// Write the tasks as lm-evaluation-harness task configs + data files.
    ExportLmEval(ExportArgs),
}

/// Where tasks come from (shared by `eval` and `eval export-lm-eval`).
#[derive(Args)]
struct TaskArgs {
    /// Task files or folders of them (e.g. `evals/`); repeat or separate with commas.
    #[arg(long, value_delimiter = ',', required = true)]
    tasks: Vec<PathBuf>,
    /// The `mediflow export` directory that export-sourced tasks read (overrides their
    /// `source.dir`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Only the first N items of each task.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    /// The model: a TOML file with a [teacher] table (a run config will do), `embedded`,
    /// or an OpenAI-compatible base URL (with --model-name).
    #[arg(long, required = true)]
    model: Option<String>,
    /// The served model's name, for a URL --model.
    #[arg(long)]
    model_name: Option<String>,
    #[command(flatten)]
    tasks: Option<TaskArgs>,
    /// The judge of tasks with a `judge` metric (same forms as --model); without it their
    /// judge scores are left out.
    #[arg(long)]
    judge: Option<String>,
    /// The served model's name, for a URL --judge.
    #[arg(long)]
    judge_model_name: Option<String>,
    /// Output directory (predictions, results); rerun with the same to resume.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Attempts per request (first try + retries) for retryable failures.
    #[arg(long, default_value_t = 4)]
    max_attempts: u32,
    #[arg(long, default_value_t = 250)]
    backoff_initial_ms: u64,
    #[arg(long, default_value_t = 20_000)]
    backoff_max_ms: u64,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Enforce the answer schema while decoding (server `response_format`, the embedded
    /// model's grammar); by default the schema is only in the prompt and validity is measured.
    #[arg(long)]
    constrain: bool,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Print results.json instead of the Markdown table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CompareArgs {
    /// The baseline eval output directory.
    a: PathBuf,
    /// The eval output directory compared with it.
    b: PathBuf,
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    tasks: TaskArgs,
    /// Output directory (absent or empty).
    #[arg(long)]
    out: PathBuf,
}

pub async fn exec(a: EvalArgs) -> Result<(), Error> {
    match a.cmd {
        Some(EvalCmd::Compare(c)) => exec_compare(c),
        Some(EvalCmd::ExportLmEval(e)) => exec_export(e),
        None => exec_run(a.run).await,
    }
}

async fn exec_run(a: RunArgs) -> Result<(), Error> {
    // clap enforces these without a subcommand.
    let (Some(model), Some(ta), Some(out)) = (a.model, a.tasks, a.out) else {
        unreachable!("required arguments")
    };
    if a.concurrency == 0 || a.max_attempts == 0 || a.bootstrap == 0 {
        return Err(Error::Input(vec![Problem::new(
            "command line",
            "--concurrency, --max-attempts and --bootstrap must be at least 1",
        )]));
    }
    // Everything is checked before the model is loaded or called.
    let tasks = Arc::new(task::load(&ta.tasks, ta.data.as_deref())?);
    let cfg = backend::teacher_config(&model, a.model_name.as_deref())?;
    let judge_cfg = match &a.judge {
        Some(j) => Some(backend::teacher_config(j, a.judge_model_name.as_deref())?),
        None => None,
    };
    let desc = backend::describe(&cfg);
    let backend = Arc::new(backend::Backend::build(&cfg).await?);
    let judge = match judge_cfg {
        Some(c) => Some((
            backend::Backend::build(&c).await?.chat,
            backend::describe(&c),
        )),
        None => None,
    };
    let judged = judge.is_some();
    let opts = runner::Options {
        out: out.clone(),
        concurrency: a.concurrency,
        max_attempts: a.max_attempts,
        backoff: Backoff {
            initial: Duration::from_millis(a.backoff_initial_ms),
            max: Duration::from_millis(a.backoff_max_ms.max(a.backoff_initial_ms)),
        },
        temperature: a.temperature,
        constrain: a.constrain,
        limit: ta.limit,
        quiet: a.quiet,
        judge,
    };
    let outcome = runner::run(backend.clone(), tasks.clone(), desc.clone(), &opts).await?;
    let preds = predictions::read(&out)?;
    predictions::write_parquet(&out.join(predictions::PARQUET), &preds)?;
    let results = report::build(
        &tasks,
        &preds,
        desc,
        ta.limit,
        report::Bootstrap {
            resamples: a.bootstrap,
            level: report::LEVEL,
            seed: a.seed,
        },
        backend.unsupported().as_deref(),
        judged,
    );
    report::write(&out, &results)?;
    if a.json {
        super::print_json(&results);
    } else {
        print!("{}", report::markdown(&results));
        if !a.quiet {
            println!(
                "\n{} item(s) scored now, {} earlier, in {:.1}s; output: {}",
                outcome.scored,
                outcome.resumed,
                outcome.elapsed_secs,
                out.display()
            );
        }
    }
    if let Some((t, id, e)) = outcome.failed.first() {
        return Err(Error::Other(anyhow::anyhow!(
            "{} item(s) failed after every retry (first: {t}/{id}: {e}); results cover the rest; \
             run the same command again to retry them",
            outcome.failed.len()
        )));
    }
    Ok(())
}

fn exec_compare(c: CompareArgs) -> Result<(), Error> {
    let cmp = compare::compare(&c.a, &c.b, c.bootstrap.max(1), c.seed)?;
    if c.json {
        super::print_json(&cmp);
    } else {
        print!("{}", compare::markdown(&cmp, &c.a, &c.b));
    }
    Ok(())
}

fn exec_export(e: ExportArgs) -> Result<(), Error> {
    if std::fs::read_dir(&e.out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Input(vec![Problem::new(
            &e.out,
            "output directory exists and is not empty; choose another --out",
        )]));
    }
    let tasks = task::load(&e.tasks.tasks, e.tasks.data.as_deref())?;
    let files = lm_eval::export(&tasks, &e.out, e.tasks.limit)?;
    for f in files {
        println!("{}", f.display());
    }
    Ok(())
}
