//! `mediflow plan`: the stratified plan, its cells, and the estimated teacher work.

use super::ConfigArgs;
use crate::check::{self, Loaded};
use crate::error::Error;
use crate::plan::PlanItem;
use crate::prompt::{self, Stage};
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only the first N planned items.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print the plan (summary, estimate, cells and items) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Completion tokens of one judge verdict (a short rationale and five scores).
const JUDGE_TOKENS: f64 = 80.0;

/// Rough token counts: ~4 characters per token for prompts; documents sized by their
/// type's word range, ~1.35 tokens per word.
pub fn estimate(l: &Loaded, items: &[PlanItem]) -> serde_json::Value {
    let sample: Vec<&PlanItem> = items.iter().step_by((items.len() / 2000).max(1)).collect();
    let scale = items.len() as f64 / sample.len().max(1) as f64;
    let (mut prompt_tok, mut completion_tok) = (0f64, 0f64);
    let judge_samples = if l.cfg.judge.enabled {
        l.cfg.judge.samples as usize
    } else {
        0
    };
    for it in &sample {
        let doc = l.tax.document(&it.document).expect("planned");
        let doc_tokens = (doc.length_words[0] + doc.length_words[1]) as f64 / 2.0 * 1.35;
        let fake_doc = "word ".repeat((doc_tokens / 1.35) as usize);
        let instr_tokens = 80.0;
        let answer_tokens = if it.format == "json" { 250.0 } else { 300.0 };
        let base = prompt::base_context(&l.tax, &l.schemas, it);
        let fake_answer = "word ".repeat((answer_tokens / 1.35) as usize);
        let ctx = prompt::with(
            base.clone(),
            &[
                ("document", &fake_doc),
                ("instruction", "x"),
                ("answer", &fake_answer),
            ],
        );
        let chars = |stage: Stage, ctx: &serde_json::Value| -> f64 {
            l.prompts
                .render(&l.prompts.template_for(stage, it), ctx)
                .map(|m| m.iter().map(|x| x.content.len()).sum::<usize>() as f64)
                .unwrap_or(0.0)
        };
        prompt_tok += (chars(Stage::Document, &base)
            + chars(Stage::Instruction, &ctx)
            + chars(Stage::Answer, &ctx))
            / 4.0
            + instr_tokens;
        completion_tok += doc_tokens + instr_tokens + answer_tokens;
        if judge_samples > 0 {
            prompt_tok += judge_samples as f64 * (chars(Stage::Judge, &ctx) / 4.0 + instr_tokens);
            completion_tok += judge_samples as f64 * JUDGE_TOKENS;
        }
    }
    let json_items = items.iter().filter(|i| i.format == "json").count();
    json!({
        "teacher_calls": items.len() * (3 + judge_samples),
        "teacher_calls_max_with_repairs": items.len() * (3 + judge_samples) + json_items * l.cfg.engine.repair_attempts as usize,
        "prompt_tokens": (prompt_tok * scale).round() as u64,
        "completion_tokens": (completion_tok * scale).round() as u64,
        "method": "prompts rendered from the templates (4 chars/token), documents at the middle of their word range (1.35 tokens/word); judge verdicts ~80 tokens; excludes retries and quota refills",
    })
}

pub fn exec(a: PlanArgs) -> Result<(), Error> {
    let l = check::load(&a.config.config, &a.config.overrides())?;
    let items: Vec<PlanItem> = l
        .plan
        .items
        .iter()
        .take(a.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let est = estimate(&l, &items);
    let summary = l.plan.summary();
    if a.json {
        let cells: Vec<_> = l
            .plan
            .quotas
            .iter()
            .map(|(c, q)| json!({"task": c.task, "document": c.document, "difficulty": c.difficulty, "format": c.format, "quota": q}))
            .collect();
        super::print_json(
            &json!({"seed": l.plan.seed, "summary": summary, "estimate": est, "cells": cells, "items": items}),
        );
        return Ok(());
    }
    println!(
        "plan for {:?}: {} items over {} cells ({} document types), seed {}",
        l.cfg.name, summary["items"], summary["cells"], summary["document_types"], l.plan.seed
    );
    if let Some(n) = a.limit {
        println!(
            "(--limit {n}: showing the first {} planned items)",
            items.len()
        );
    }
    for (title, key) in [
        ("task", "by_task"),
        ("family", "by_family"),
        ("difficulty", "by_difficulty"),
        ("format", "by_format"),
    ] {
        let parts: Vec<String> = summary[key]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("  by {title}: {}", parts.join("  "));
    }
    println!(
        "estimate: {} teacher calls (up to {} with repairs), ~{} prompt tokens, ~{} completion tokens",
        est["teacher_calls"], est["teacher_calls_max_with_repairs"], est["prompt_tokens"], est["completion_tokens"]
    );
    Ok(())
}
