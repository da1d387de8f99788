//! Checkpoints (`DIR/checkpoint/`: the adapter in PEFT's layout, the optimizer's moments,
//! and `state.json` with the step and the settings it was trained with), written to a
//! temporary folder and swapped in, so a killed training always finds a whole one; and
//! the training log, cut back to the checkpoint's step when a training resumes.

use super::lora::{Adapters, Dims, LoraConfig};
use super::optim::AdamW;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DIR: &str = "checkpoint";
pub const LOG: &str = "train_log.jsonl";

/// What a resumed training must share with the one that wrote the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// SHA-256 of the export's files.
    pub data_hash: String,
    /// The base model's file name and size.
    pub base: String,
    pub base_bytes: u64,
    pub max_steps: Option<usize>,
    pub epochs: usize,
    pub lr: f64,
    pub warmup: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_seq_len: usize,
    pub overlong: super::data::Overlong,
    pub lora: LoraConfig,
    pub seed: u64,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
}

impl Settings {
    /// The names of the settings that differ from `other`.
    pub fn differences(&self, other: &Settings) -> Vec<String> {
        let (a, b) = (serde_json::to_value(self), serde_json::to_value(other));
        match (a, b) {
            (Ok(Value::Object(a)), Ok(Value::Object(b))) => a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| {
                    format!(
                        "{k} (checkpoint {}, now {v})",
                        b.get(k).unwrap_or(&Value::Null)
                    )
                })
                .collect(),
            _ => vec!["settings".into()],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Optimizer steps completed.
    pub step: usize,
    pub optimizer_t: usize,
    pub tokens: u64,
    pub settings: Settings,
}

/// Write a checkpoint of `step` into `out/checkpoint`.
pub fn save(out: &Path, state: &State, ad: &Adapters, opt: &AdamW, base_name: &str) -> Result<()> {
    let tmp = out.join(format!("{DIR}.tmp"));
    let old = out.join(format!("{DIR}.old"));
    let dir = out.join(DIR);
    // Folders a kill left behind are older than this step; `dir` stays until replaced.
    if !dir.join("state.json").is_file() {
        let _ = std::fs::remove_dir_all(&dir);
        for d in [&tmp, &old] {
            if d.join("state.json").is_file() {
                std::fs::rename(d, &dir).with_context(|| format!("moving {}", d.display()))?;
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    ad.save(&tmp, base_name)?;
    opt.save(&tmp.join("optimizer.safetensors"))?;
    std::fs::write(
        tmp.join("state.json"),
        serde_json::to_string_pretty(state)? + "\n",
    )?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(&dir, &old).with_context(|| format!("moving {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("moving {}", tmp.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The checkpoint folder to resume from: of `checkpoint`, `checkpoint.old` and
/// `checkpoint.tmp` (a kill can leave any of them between the steps of a swap), the one
/// of the latest step whose `state.json` reads (it is written last, so such a folder is
/// whole).
pub fn find(out: &Path) -> Option<PathBuf> {
    [DIR.to_string(), format!("{DIR}.old"), format!("{DIR}.tmp")]
        .iter()
        .map(|d| out.join(d))
        .filter_map(|d| {
            let s: State =
                serde_json::from_slice(&std::fs::read(d.join("state.json")).ok()?).ok()?;
            Some((s.step, d))
        })
        .max_by_key(|(step, _)| *step)
        .map(|(_, d)| d)
}

/// Read a checkpoint's state, adapters and optimizer moments.
pub fn load(dir: &Path, dims: Dims, weight_decay: f64) -> Result<(State, Adapters, AdamW)> {
    let p = dir.join("state.json");
    let state: State = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    let ad = Adapters::load(dir, &state.settings.lora, dims)?;
    let mut opt = AdamW::new(ad.named_vars(), weight_decay)?;
    opt.load(&dir.join("optimizer.safetensors"), state.optimizer_t)?;
    Ok((state, ad, opt))
}

/// Keep the log lines of steps up to `step` (a killed training may have logged more).
pub fn trim_log(out: &Path, step: usize) -> Result<()> {
    let p = out.join(LOG);
    let Ok(text) = std::fs::read_to_string(&p) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&p, kept).with_context(|| format!("writing {}", p.display()))
}

/// Appends one JSON line per event to the training log, flushed each time.
pub struct Log(std::fs::File);

impl Log {
    pub fn open(out: &Path) -> Result<Log> {
        let p = out.join(LOG);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        Ok(Log(f))
    }

    pub fn line(&mut self, v: &impl Serialize) -> Result<()> {
        let s = serde_json::to_string(v)? + "\n";
        self.0.write_all(s.as_bytes())?;
        self.0.flush()?;
        Ok(())
    }
}
