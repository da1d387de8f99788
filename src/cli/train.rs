//! `mediflow train sft --data EXPORT_DIR --base MODEL.gguf --out DIR`: LoRA fine-tuning
//! on an export (see mediflow::train), with a progress bar of loss and tokens/s.

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mediflow::error::{Error, Problem};
use mediflow::train::data::Overlong;
use mediflow::train::lora::{LoraConfig, Target};
use mediflow::train::{self, Event, SftOptions};
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    cmd: TrainCmd,
}

#[derive(Subcommand)]
enum TrainCmd {
    /// Supervised fine-tuning (LoRA) on an `sft-messages` export; resumes from DIR's last
    /// checkpoint when there is one.
    Sft(SftArgs),
}

#[derive(Args)]
pub struct SftArgs {
    /// The export directory (`mediflow export --format sft-messages`).
    #[arg(long)]
    data: PathBuf,
    /// The base model (a llama-architecture GGUF file, e.g. SmolLM2).
    #[arg(long)]
    base: PathBuf,
    /// Output directory: train_log.jsonl, adapter_model.safetensors, adapter_config.json,
    /// checkpoint/. Absent, empty, or holding a checkpoint of the same training to resume.
    #[arg(long)]
    out: PathBuf,
    /// Optimizer steps to train (overrides --epochs).
    #[arg(long)]
    max_steps: Option<usize>,
    /// Passes over the train split (when --max-steps is not given).
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Steps of linear warmup before the cosine decay to 0.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Rows per micro-batch.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    /// Longest example in tokens (chat template included).
    #[arg(long, default_value_t = 1024)]
    max_seq_len: usize,
    /// Examples longer than --max-seq-len: left out, or cut to it (both are counted).
    #[arg(long, value_enum, default_value = "drop")]
    overlong: Overlong,
    /// The adapters' rank r.
    #[arg(long, default_value_t = 16)]
    lora_rank: usize,
    /// The adapters' alpha (their output is scaled by alpha / r).
    #[arg(long, default_value_t = 32.0)]
    lora_alpha: f64,
    /// Dropout on the adapters' input (PEFT's default 0; 0.05 halves tokens/s on CPU).
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// Projections that get adapters (q,k,v,o,gate,up,down).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    lora_targets: String,
    /// Seeds the adapters' initialisation, the row order and the dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Loss on the export's validation split every N steps and at the end (0: never).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// A checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = 50)]
    save_every: usize,
    /// Gradient clipping by global norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Stop after N steps as if killed, without saving them (for tests of resuming).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
}

pub fn exec(a: TrainArgs) -> Result<(), Error> {
    match a.cmd {
        TrainCmd::Sft(s) => sft(s),
    }
}

fn sft(a: SftArgs) -> Result<(), Error> {
    let targets = Target::parse_list(&a.lora_targets)
        .map_err(|e| Error::Input(vec![Problem::new(&a.out, format!("{e:#}"))]))?;
    let opts = SftOptions {
        data: a.data,
        base: a.base,
        out: a.out,
        max_steps: a.max_steps,
        epochs: a.epochs,
        lr: a.lr,
        warmup: a.warmup,
        batch_size: a.batch_size,
        grad_accum: a.grad_accum,
        max_seq_len: a.max_seq_len,
        overlong: a.overlong,
        lora: LoraConfig {
            rank: a.lora_rank,
            alpha: a.lora_alpha,
            dropout: a.lora_dropout,
            targets,
        },
        seed: a.seed,
        max_grad_norm: a.max_grad_norm,
        weight_decay: a.weight_decay,
        eval_every: a.eval_every,
        save_every: a.save_every,
        stop_after: a.stop_after,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} steps  {msg}  ETA {eta}",
        )
        .expect("valid template"),
    );
    let (mut step, mut eval) = (String::new(), String::new());
    let summary = train::sft(&opts, &mut |e| match e {
        Event::Start {
            start_step,
            total_steps,
        } => {
            bar.set_length(total_steps as u64);
            bar.set_position(start_step as u64);
            bar.reset_eta();
            if start_step > 0 {
                bar.println(format!("resuming from the checkpoint at step {start_step}"));
            }
        }
        Event::Step(s) => {
            bar.set_position(s.step as u64);
            step = format!(
                "loss {:.4}  {:.0} tok/s  lr {:.2e}",
                s.loss, s.tokens_per_s, s.lr
            );
            bar.set_message(format!("{step}{eval}"));
        }
        Event::Eval { eval_loss, .. } => {
            eval = format!("  eval {eval_loss:.4}");
            bar.set_message(format!("{step}{eval}"));
        }
    });
    bar.finish_and_clear();
    let summary = summary?;
    for (what, f) in [
        ("train", Some(&summary.train)),
        ("validation", summary.validation.as_ref()),
    ] {
        if let Some(f) = f.filter(|f| f.cut + f.dropped > 0) {
            eprintln!(
                "{what}: {} of {} rows longer than --max-seq-len {} (longest {} tokens): {} cut, {} \
                 dropped",
                f.cut + f.dropped,
                f.rows,
                opts.max_seq_len,
                f.longest,
                f.cut,
                f.dropped
            );
        }
    }
    super::print_json(&summary);
    Ok(())
}
