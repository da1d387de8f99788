//! `eval export-lm-eval`: the same tasks, items and prompts as lm-evaluation-harness task
//! configs, so the numbers can be reproduced there. Per task `<name>.yaml` and
//! `data/<name>.jsonl`; multiple choice becomes `output_type: multiple_choice` (acc,
//! acc_norm over the options' log-likelihoods), the other tasks `generate_until` scored by
//! `utils.py` (the same JSON parsing and metrics as `mediflow eval`, except the
//! valid-code ratio, which needs the code table, and the judge score, which needs a judge
//! model). The context is the system and user text
//! joined by a blank line (`backend::plain_context`); add `--apply_chat_template` for chat
//! models.

use super::backend::plain_context;
use super::metrics::MetricSpec;
use super::task::Task;
use anyhow::Context;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const UTILS: &str = include_str!("lm_eval_utils.py");

/// The metrics `utils.py` computes: all but the judge (a model call).
fn portable(metrics: &[MetricSpec]) -> Vec<MetricSpec> {
    metrics
        .iter()
        .filter(|m| !matches!(m, MetricSpec::Judge { .. }))
        .cloned()
        .collect()
}

/// The lm-eval task name of a mediflow task.
pub fn task_name(t: &Task) -> String {
    format!("mediflow_{}", t.spec.name)
}

/// Write every task under `out` (created; must be empty); returns the files written.
pub fn export(tasks: &[Task], out: &Path, limit: Option<usize>) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out.join("data"))
        .with_context(|| format!("creating {}", out.display()))?;
    let abs = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let mut files = Vec::new();
    let mut any_generate = false;
    for t in tasks {
        let items = &t.items[..limit.unwrap_or(usize::MAX).min(t.items.len())];
        let data = abs.join("data").join(format!("{}.jsonl", t.spec.name));
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(&data).with_context(|| format!("creating {}", data.display()))?,
        );
        let mcq = t.is_multiple_choice();
        for it in items {
            let row = if mcq {
                let gold = it.reference["answer"]
                    .as_str()
                    .and_then(|l| super::icd_mcq::LETTERS.iter().position(|x| *x == l))
                    .context("multiple-choice reference without a letter")?;
                json!({
                    "id": it.id,
                    "context": plain_context(it.ll_messages.as_ref().unwrap_or(&it.messages)),
                    "choices": it.options, "gold": gold,
                })
            } else {
                json!({
                    "id": it.id, "context": plain_context(&it.messages),
                    "reference": it.reference.to_string(), "schema": t.schema.to_string(),
                    "metrics": serde_json::to_string(&portable(&t.spec.metrics))?,
                })
            };
            serde_json::to_writer(&mut w, &row)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        files.push(data.clone());
        let mut cfg = json!({
            "task": task_name(t),
            "dataset_path": "json",
            "dataset_kwargs": { "data_files": { "test": data.to_string_lossy() } },
            "test_split": "test",
            "doc_to_text": "context",
            "metadata": { "version": 1.0, "mediflow_task": t.spec.name },
        });
        let mut tail = String::new();
        if mcq {
            cfg["output_type"] = json!("multiple_choice");
            cfg["doc_to_choice"] = json!("choices");
            cfg["doc_to_target"] = json!("gold");
            cfg["target_delimiter"] = json!(" ");
            cfg["metric_list"] = json!([
                {"metric": "acc", "aggregation": "mean", "higher_is_better": true},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": true},
            ]);
        } else {
            any_generate = true;
            cfg["output_type"] = json!("generate_until");
            cfg["doc_to_target"] = json!("reference");
            cfg["generation_kwargs"] = json!({
                "until": [], "max_gen_toks": t.spec.max_tokens, "do_sample": false,
            });
            // `!function` tags are written by hand: serde's YAML has no custom tags.
            tail.push_str("process_results: !function utils.process_results\nmetric_list:\n");
            for n in portable(&t.spec.metrics).iter().flat_map(|m| m.names()) {
                if n == "valid_code_ratio" {
                    continue;
                }
                tail.push_str(&format!(
                    "  - metric: {n}\n    aggregation: !function utils.mean\n    higher_is_better: true\n"
                ));
            }
        }
        let yaml = format!(
            "# Written by `mediflow eval export-lm-eval` from {}\n{}{tail}",
            t.path.display(),
            serde_norway::to_string(&cfg)?
        );
        let path = abs.join(format!("{}.yaml", t.spec.name));
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    if any_generate {
        let path = abs.join("utils.py");
        std::fs::write(&path, UTILS).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}
