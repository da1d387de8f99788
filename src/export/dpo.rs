//! DPO rows from the pairs of `<run>/dpo/*.jsonl`: `prompt` / `chosen` / `rejected` as
//! strings (prompt as in `sft-prompt-completion`), or with `--conversational` as message
//! lists (prompt = system + user, chosen / rejected = one assistant message each); the
//! pair's provenance as extra columns.

use super::sft::{message, messages_type, prompt_text, system_text};
use crate::dpo::Pair;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

/// Every pair under `<run>/dpo/` (files in name order).
pub fn read_pairs(run: &Path) -> anyhow::Result<Vec<Pair>> {
    let files = crate::sink::jsonl_files(&run.join(crate::dpo::DPO_DIR))?;
    let mut out = Vec::new();
    for f in files {
        out.extend(crate::sink::read_jsonl::<Pair>(&f, false)?);
    }
    Ok(out)
}

fn scores_type() -> DataType {
    DataType::Struct(Fields::from(
        crate::quality::judge::DIMENSIONS
            .map(|n| Field::new(n, DataType::Float64, true))
            .to_vec(),
    ))
}

pub fn schema(conversational: bool) -> SchemaRef {
    let text = if conversational {
        messages_type()
    } else {
        DataType::Utf8
    };
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        Field::new("prompt", text.clone(), false),
        Field::new("chosen", text.clone(), false),
        Field::new("rejected", text, false),
        s("id"),
        s("record_id"),
        s("strategy"),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("margin", DataType::Float64, true),
        Field::new("chosen_scores", scores_type(), true),
        Field::new("rejected_scores", scores_type(), true),
        s("task_type"),
        s("input_data"),
        s("output_format"),
        Field::new("difficulty_level", DataType::UInt8, false),
        s("chosen_model"),
        s("rejected_model"),
        Field::new("judge_model", DataType::Utf8, true),
    ]))
}

pub fn row(p: &Pair, conversational: bool) -> Value {
    let (prompt, chosen, rejected) = if conversational {
        (
            json!([
                message("system", &system_text(&p.instruction)),
                message("user", &p.input),
            ]),
            json!([message("assistant", &p.output)]),
            json!([message("assistant", &p.rejected_output)]),
        )
    } else {
        (
            json!(prompt_text(&p.instruction, &p.input)),
            json!(p.output),
            json!(p.rejected_output),
        )
    };
    json!({
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "id": p.id,
        "record_id": p.record_id,
        "strategy": p.strategy,
        "error_type": p.error_type,
        "margin": p.margin,
        "chosen_scores": p.chosen_scores,
        "rejected_scores": p.rejected_scores,
        "task_type": p.task_type,
        "input_data": p.input_data,
        "output_format": p.output_format,
        "difficulty_level": p.difficulty_level,
        "chosen_model": p.chosen_model,
        "rejected_model": p.rejected_model,
        "judge_model": p.judge_model,
    })
}
