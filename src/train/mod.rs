//! `mediflow train sft`: LoRA supervised fine-tuning of a llama GGUF model on an
//! `sft-messages` export, natively on candle (f32 on the CPU). The base model's weights
//! are dequantised and frozen (`model`), adapters sit on the chosen projections (`lora`,
//! written in PEFT's layout), loss falls on the assistant tokens only, through the
//! model's own chat template (`data`), AdamW with warmup + cosine (`optim`), and a killed
//! training resumes from its last checkpoint with the optimizer state (`checkpoint`).

pub mod checkpoint;
pub mod data;
pub mod lora;
pub mod model;
pub mod optim;

use crate::error::{Error, Problem};
use crate::teacher::embedded::chat_template::{template_source, ChatTemplate};
use crate::teacher::embedded::model as emodel;
use crate::teacher::embedded::tokenizer::TextTokenizer;
use anyhow::Context;
use candle_core::Tensor;
use checkpoint::{Settings, State};
use data::{Encoder, Fitted, Overlong};
use lora::{Adapters, LoraConfig};
use model::Base;
use optim::{AdamW, Plan};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `train sft` is told.
#[derive(Debug, Clone)]
pub struct SftOptions {
    pub data: PathBuf,
    pub base: PathBuf,
    pub out: PathBuf,
    /// Steps to train; None: `epochs` passes over the train split.
    pub max_steps: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub warmup: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_seq_len: usize,
    pub overlong: Overlong,
    pub lora: LoraConfig,
    pub seed: u64,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    /// Validation loss every N steps and at the end (0: never).
    pub eval_every: usize,
    /// A checkpoint every N steps (0: only at the end).
    pub save_every: usize,
    /// Stop after this many steps of this invocation, as if killed: no checkpoint or
    /// adapter is written for them (tests of resuming).
    pub stop_after: Option<usize>,
}

/// One logged optimizer step (a line of `train_log.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
}

/// What the caller hears as training goes.
pub enum Event<'a> {
    Start {
        start_step: usize,
        total_steps: usize,
    },
    Step(&'a StepLog),
    Eval {
        step: usize,
        eval_loss: f64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub base: PathBuf,
    pub architecture: String,
    /// The step a resumed training started from (0: a fresh one).
    pub resumed_from: usize,
    pub steps: usize,
    pub train: Fitted,
    pub validation: Option<Fitted>,
    pub final_loss: Option<f64>,
    pub eval_loss: Option<f64>,
    /// Mean training tokens per second of this invocation's steps.
    pub tokens_per_s: Option<f64>,
    pub wall_s: f64,
    pub trainable_params: usize,
    pub files: Vec<PathBuf>,
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Input(vec![Problem::new(path, msg)])
}

fn validate(o: &SftOptions) -> Result<(), Error> {
    let mut p = Vec::new();
    let mut need = |ok: bool, m: &str| {
        if !ok {
            p.push(Problem::new(&o.out, m));
        }
    };
    need(o.batch_size > 0, "--batch-size must be at least 1");
    need(o.grad_accum > 0, "--grad-accum must be at least 1");
    need(o.max_seq_len >= 2, "--max-seq-len must be at least 2");
    need(o.lr > 0.0 && o.lr.is_finite(), "--lr must be positive");
    need(o.lora.rank > 0, "--lora-rank must be at least 1");
    need(o.lora.alpha > 0.0, "--lora-alpha must be positive");
    need(
        (0.0..1.0).contains(&o.lora.dropout),
        "--lora-dropout must be in [0, 1)",
    );
    need(
        !o.lora.targets.is_empty(),
        "--lora-targets names no projection",
    );
    need(o.max_steps != Some(0), "--max-steps must be at least 1");
    need(
        o.max_steps.is_some() || o.epochs > 0,
        "--epochs must be at least 1",
    );
    match p.is_empty() {
        true => Ok(()),
        false => Err(Error::Input(p)),
    }
}

/// Encode and fit one split; `what` names it in messages.
fn prepare(
    enc: &Encoder,
    rows: &[Vec<crate::teacher::Message>],
    o: &SftOptions,
    what: &str,
) -> Result<Fitted, Error> {
    let mut all = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let e = enc
            .encode(r)
            .map_err(|e| bad(&o.data, format!("{what} row {}: {e:#}", i + 1)))?;
        all.push(e);
    }
    Ok(data::fit(all, o.max_seq_len, o.overlong))
}

/// The validation loss: mean NLL over every scored token, without dropout.
fn eval_loss(base: &Base, ad: &Adapters, v: &Fitted, bs: usize) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for chunk in v.examples.chunks(bs) {
        let refs: Vec<&data::Example> = chunk.iter().collect();
        let b = data::batch(&refs);
        total += base
            .loss(ad, &b, v.scored_tokens, None)?
            .to_scalar::<f32>()? as f64;
    }
    Ok(total)
}

/// Train (or resume training) as `o` says; see the module documentation.
pub fn sft(o: &SftOptions, on: &mut dyn FnMut(Event)) -> Result<Summary, Error> {
    let t0 = Instant::now();
    validate(o)?;
    if !o.base.is_file() {
        return Err(bad(&o.base, "base model file not found"));
    }
    let (ct, mut file) = emodel::read_gguf(&o.base)?;
    let arch = model::check_architecture(&ct).map_err(|e| bad(&o.base, format!("{e:#}")))?;
    let mcfg = emodel::model_config(&ct)?;
    if o.max_seq_len > mcfg.n_ctx {
        return Err(bad(
            &o.base,
            format!(
                "--max-seq-len {} exceeds the model's context length {}",
                o.max_seq_len, mcfg.n_ctx
            ),
        ));
    }
    let tok = TextTokenizer::load(&ct, None, mcfg.vocab)?;
    let template = ChatTemplate::new(&template_source(&ct), &tok.bos_text, &tok.eos_text)?;
    let enc = Encoder {
        template: &template,
        tok: &tok,
    };
    let train_rows =
        data::read_split(&o.data, "train").map_err(|e| bad(&o.data, format!("{e:#}")))?;
    if train_rows.is_empty() {
        let msg = match o.data.join("manifest.json").is_file() {
            true => {
                "a run directory, not an export: make one with `mediflow export --run DIR \
                     --format sft-messages`"
            }
            false => "the export has no train rows",
        };
        return Err(bad(&o.data, msg));
    }
    let train = prepare(&enc, &train_rows, o, "train")?;
    if train.kept == 0 {
        return Err(bad(
            &o.data,
            format!(
                "all {} train rows are longer than --max-seq-len {} (longest {} tokens); raise \
                 it{}",
                train.rows,
                o.max_seq_len,
                train.longest,
                if o.overlong == Overlong::Drop {
                    " or pass --overlong cut"
                } else {
                    ""
                }
            ),
        ));
    }
    let validation = match o.eval_every {
        0 => None,
        _ => {
            let rows = data::read_split(&o.data, "validation")
                .map_err(|e| bad(&o.data, format!("{e:#}")))?;
            if rows.is_empty() {
                return Err(bad(
                    &o.data,
                    "--eval-every: the export has no validation rows",
                ));
            }
            let v = prepare(&enc, &rows, o, "validation")?;
            if v.kept == 0 {
                return Err(bad(
                    &o.data,
                    "--eval-every: every validation row is too long",
                ));
            }
            Some(v)
        }
    };
    let settings = Settings {
        data_hash: crate::util::hash_dir(&o.data),
        base: o
            .base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        base_bytes: std::fs::metadata(&o.base).map_or(0, |m| m.len()),
        max_steps: o.max_steps,
        epochs: o.epochs,
        lr: o.lr,
        warmup: o.warmup,
        batch_size: o.batch_size,
        grad_accum: o.grad_accum,
        max_seq_len: o.max_seq_len,
        overlong: o.overlong,
        lora: o.lora.clone(),
        seed: o.seed,
        max_grad_norm: o.max_grad_norm,
        weight_decay: o.weight_decay,
    };

    let _lock = crate::dirlock::DirLock::acquire(&o.out, "train sft")?;
    let base = Base::load(&ct, &mut file, &o.base, o.max_seq_len)
        .with_context(|| format!("cannot load {}", o.base.display()))?;
    let base_name = ct
        .metadata
        .get("general.name")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| settings.base.clone());
    let (mut state, ad, mut opt) = match checkpoint::find(&o.out) {
        Some(dir) => {
            let (st, ad, opt) = checkpoint::load(&dir, base.dims, o.weight_decay)?;
            let diff = settings.differences(&st.settings);
            if !diff.is_empty() {
                return Err(Error::RunMismatch(format!(
                    "{} holds a checkpoint of a different training; use another --out or the \
                     same settings. Differs: {}",
                    o.out.display(),
                    diff.join("; ")
                )));
            }
            checkpoint::trim_log(&o.out, st.step)?;
            (st, ad, opt)
        }
        None => {
            if crate::dirlock::has_content(&o.out) {
                return Err(bad(
                    &o.out,
                    "the output directory holds files but no checkpoint; give an empty or new \
                     --out",
                ));
            }
            let ad = Adapters::new(&o.lora, base.dims, o.seed)?;
            let opt = AdamW::new(ad.named_vars(), o.weight_decay)?;
            let st = State {
                step: 0,
                optimizer_t: 0,
                tokens: 0,
                settings: settings.clone(),
            };
            (st, ad, opt)
        }
    };
    let plan = Plan::new(
        train.kept,
        o.batch_size,
        o.grad_accum,
        o.epochs,
        o.max_steps,
        o.seed,
    );
    let resumed_from = state.step;
    on(Event::Start {
        start_step: state.step,
        total_steps: plan.total_steps,
    });
    let mut log = checkpoint::Log::open(&o.out)?;
    let (mut final_loss, mut last_eval) = (None, None);
    let (mut run_tokens, mut run_secs) = (0usize, 0f64);
    while state.step < plan.total_steps {
        let s = state.step;
        let ts = Instant::now();
        let lr = optim::lr_at(s, plan.total_steps, o.warmup, o.lr);
        let (epoch, micro) = plan.step(s);
        let batches: Vec<_> = micro
            .iter()
            .map(|rows| {
                let refs: Vec<&data::Example> = rows.iter().map(|&i| &train.examples[i]).collect();
                data::batch(&refs)
            })
            .collect();
        let denom: usize = batches.iter().map(|b| b.pos.len()).sum();
        let mut grads: Vec<Option<Tensor>> = vec![None; opt.vars.len()];
        let (mut loss, mut tokens) = (0f64, 0usize);
        for (mi, b) in batches.iter().enumerate() {
            let seed = crate::util::seed_from(&format!("{}/{s}/{mi}", o.seed));
            let l = base.loss(&ad, b, denom, Some(seed))?;
            loss += l.to_scalar::<f32>().map_err(anyhow::Error::from)? as f64;
            let g = l.backward().map_err(anyhow::Error::from)?;
            for (i, (_, var)) in opt.vars.iter().enumerate() {
                if let Some(gi) = g.get(var) {
                    grads[i] = Some(match grads[i].take() {
                        Some(acc) => (acc + gi).map_err(anyhow::Error::from)?,
                        None => gi.clone(),
                    });
                }
            }
            tokens += b.tokens;
        }
        let grad_norm = optim::clip(&mut grads, o.max_grad_norm)?;
        opt.step(&grads, lr)?;
        state.step += 1;
        state.optimizer_t = opt.t;
        state.tokens += tokens as u64;
        let secs = ts.elapsed().as_secs_f64();
        (run_tokens, run_secs) = (run_tokens + tokens, run_secs + secs);
        let entry = StepLog {
            step: state.step,
            epoch,
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / secs.max(1e-9),
        };
        log.line(&entry)?;
        on(Event::Step(&entry));
        final_loss = Some(loss);
        let last = state.step == plan.total_steps;
        if let Some(v) = &validation {
            if state.step.is_multiple_of(o.eval_every) || last {
                let e = eval_loss(&base, &ad, v, o.batch_size)?;
                log.line(&serde_json::json!({"step": state.step, "eval_loss": e}))?;
                on(Event::Eval {
                    step: state.step,
                    eval_loss: e,
                });
                last_eval = Some(e);
            }
        }
        if o.stop_after == Some(state.step - resumed_from) && !last {
            return Err(Error::Other(anyhow::anyhow!(
                "stopped after step {} (--stop-after)",
                state.step
            )));
        }
        if last || (o.save_every > 0 && state.step.is_multiple_of(o.save_every)) {
            checkpoint::save(&o.out, &state, &ad, &opt, &base_name)?;
        }
    }
    ad.save(&o.out, &base_name)?;
    let files = [
        checkpoint::LOG,
        "adapter_model.safetensors",
        "adapter_config.json",
        checkpoint::DIR,
    ]
    .iter()
    .map(|f| o.out.join(f))
    .collect();
    Ok(Summary {
        out: o.out.clone(),
        base: o.base.clone(),
        architecture: arch,
        resumed_from,
        steps: state.step,
        train,
        validation,
        final_loss,
        eval_loss: last_eval,
        tokens_per_s: (run_secs > 0.0).then(|| run_tokens as f64 / run_secs),
        wall_s: t0.elapsed().as_secs_f64(),
        trainable_params: ad.named_vars().iter().map(|(_, v)| v.elem_count()).sum(),
        files,
    })
}
