//! `mediflow plan`: the stratified plan, its cells, and the estimated teacher work.

use super::ConfigArgs;
use clap::Args;
use mediflow::check::{self, Loaded};
use mediflow::error::Error;
use mediflow::plan::PlanItem;
use mediflow::prompt::{self, Stage};
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
/// Words of the placeholder instruction in the answer and judge prompts.
const INSTRUCTION_WORDS: usize = 40;
/// Generated tokens per word of clinical English (SmolLM2 tokenizer).
const TOKENS_PER_WORD: f64 = 1.35;

/// Clinical-looking placeholder text of `words` words (so the token estimate sees digits,
/// units and punctuation as a real document has them).
fn placeholder(words: usize) -> String {
    const TEXT: &str = "Patient seen today for follow-up of hypertension and type 2 diabetes. \
        BP 132/84 mmHg, HR 76, SpO2 98% on room air. HbA1c 7.4% (ref < 5.7%). Denies chest \
        pain or shortness of breath. Continue lisinopril 10 mg daily and metformin 500 mg \
        twice daily; recheck labs in 3 months.";
    TEXT.split_whitespace()
        .cycle()
        .take(words)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Estimated prompt tokens of one item's requests, per stage, with the run's templates
/// (its profile): each template rendered for the item with placeholder text of the
/// expected length in place of the document (the middle of its type's word range, at
/// most what the document cap allows), the instruction (`INSTRUCTION_WORDS`) and the
/// answer, counted with `prompt::estimate_prompt_tokens`. `judge` is per judge sample.
pub fn item_prompt_tokens(l: &Loaded, it: &PlanItem) -> serde_json::Value {
    let doc = l.tax.document(&it.document).expect("planned");
    let cap = l.cfg.teacher.max_tokens.document_for(doc.length_words[1]) as f64;
    let doc_words = ((doc.length_words[0] + doc.length_words[1]) as f64 / 2.0)
        .min(cap / TOKENS_PER_WORD) as usize;
    let answer_tokens = if it.format == "json" { 250.0 } else { 300.0 };
    let base = prompt::base_context(&l.tax, &l.schemas, it);
    let ctx = prompt::with(
        base.clone(),
        &[
            ("document", &placeholder(doc_words)),
            ("instruction", &placeholder(INSTRUCTION_WORDS)),
            (
                "answer",
                &placeholder((answer_tokens / TOKENS_PER_WORD) as usize),
            ),
        ],
    );
    let tokens = |stage: Stage, ctx: &serde_json::Value| -> u64 {
        l.prompts
            .render(&l.prompts.template_for(stage, it), ctx)
            .map(|m| prompt::estimate_prompt_tokens(&m))
            .unwrap_or(0)
    };
    let (d, i, a) = (
        tokens(Stage::Document, &base),
        tokens(Stage::Instruction, &ctx),
        tokens(Stage::Answer, &ctx),
    );
    let judge = if l.cfg.judge.enabled {
        tokens(Stage::Judge, &ctx)
    } else {
        0
    };
    let samples = if l.cfg.judge.enabled {
        l.cfg.judge.samples as u64
    } else {
        0
    };
    json!({
        "id": it.id, "document": d, "instruction": i, "answer": a, "judge": judge,
        "total": d + i + a + samples * judge,
    })
}

/// Teacher calls and tokens for `items`: prompts as `item_prompt_tokens` counts them,
/// completions from the document caps and typical answer sizes.
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
        let cap = l.cfg.teacher.max_tokens.document_for(doc.length_words[1]) as f64;
        let doc_tokens =
            ((doc.length_words[0] + doc.length_words[1]) as f64 / 2.0 * TOKENS_PER_WORD).min(cap);
        let instr_tokens = INSTRUCTION_WORDS as f64 * TOKENS_PER_WORD;
        let answer_tokens = if it.format == "json" { 250.0 } else { 300.0 };
        prompt_tok += item_prompt_tokens(l, it)["total"].as_u64().unwrap_or(0) as f64;
        completion_tok += doc_tokens + instr_tokens + answer_tokens;
        completion_tok += judge_samples as f64 * JUDGE_TOKENS;
    }
    let json_items = items.iter().filter(|i| i.format == "json").count();
    json!({
        "teacher_calls": items.len() * (3 + judge_samples),
        "teacher_calls_max_with_repairs": items.len() * (3 + judge_samples) + json_items * l.cfg.engine.repair_attempts as usize,
        "template_profile": l.prompts.profile().as_str(),
        "prompt_tokens": (prompt_tok * scale).round() as u64,
        "prompt_tokens_per_item": (prompt_tok / sample.len().max(1) as f64).round() as u64,
        "completion_tokens": (completion_tok * scale).round() as u64,
        "method": "prompts rendered from the run's templates with placeholder document (middle of its word range, within the document cap), instruction (40 words) and answer text, tokens estimated as prompt::estimate_tokens counts them (SmolLM2-style: a token per digit, ~6 letters per word token); completions: documents at the middle of their word range (1.35 tokens/word, within the cap), judge verdicts ~80 tokens; excludes retries and quota refills",
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
        let per_item: Vec<_> = items.iter().map(|it| item_prompt_tokens(&l, it)).collect();
        super::print_json(&json!({
            "seed": l.plan.seed, "summary": summary, "estimate": est, "cells": cells,
            "items": items, "item_prompt_tokens": per_item,
        }));
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
    print_item_prompt_tokens(&l, &items, &est);
    Ok(())
}

/// Items listed one per line up to this many; beyond it, the spread only.
const LIST_ITEMS: usize = 24;

/// Prompt tokens per item, per stage: every item for a small plan, the mean and range for
/// any plan.
fn print_item_prompt_tokens(l: &Loaded, items: &[PlanItem], est: &serde_json::Value) {
    let judge = l.cfg.judge.enabled;
    let sample: Vec<&PlanItem> = items.iter().step_by((items.len() / 2000).max(1)).collect();
    let rows: Vec<_> = sample.iter().map(|it| item_prompt_tokens(l, it)).collect();
    let totals: Vec<u64> = rows
        .iter()
        .map(|r| r["total"].as_u64().unwrap_or(0))
        .collect();
    let mean = |k: &str| {
        rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>() / rows.len().max(1) as u64
    };
    println!(
        "prompt tokens per item ({} templates): mean {} (document {}, instruction {}, answer {}{}), min {}, max {}",
        est["template_profile"].as_str().unwrap_or(""),
        est["prompt_tokens_per_item"],
        mean("document"),
        mean("instruction"),
        mean("answer"),
        if judge {
            format!(", judge {} x {} samples", mean("judge"), l.cfg.judge.samples)
        } else {
            String::new()
        },
        totals.iter().min().unwrap_or(&0),
        totals.iter().max().unwrap_or(&0),
    );
    if items.len() > LIST_ITEMS {
        return;
    }
    println!(
        "  {:<16} {:<28} {:<34} {:<10} {:>8} {:>8} {:>8}{} {:>8}",
        "item",
        "task",
        "document",
        "format",
        "document",
        "instr",
        "answer",
        if judge { "    judge" } else { "" },
        "total"
    );
    for (it, r) in items.iter().zip(&rows) {
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        let judge_col = if judge {
            format!(" {:>8}", n("judge"))
        } else {
            String::new()
        };
        println!(
            "  {:<16} {:<28} {:<34} {:<10} {:>8} {:>8} {:>8}{judge_col} {:>8}",
            it.id,
            it.task,
            it.document,
            it.format,
            n("document"),
            n("instruction"),
            n("answer"),
            n("total")
        );
    }
}
