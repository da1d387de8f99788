//! One work item through the stages: document -> instruction -> answer -> validate (with
//! repair rounds for `json`). Each teacher call is retried by policy; the item ends as an
//! accepted Record or a Rejection naming the stage and reason.

use super::Shared;
use crate::config::ResponseFormatMode;
use crate::plan::PlanItem;
use crate::prompt::{self, Stage};
use crate::record::{Record, Rejection, SCHEMA_NOTE};
use crate::schemas;
use crate::teacher::retry::{classify, Decision};
use crate::teacher::{ChatRequest, TeacherError};
use crate::util::seed_from;
use std::sync::atomic::Ordering;

type Outcome = Result<Record, Rejection>;

fn reject(rec: Record, stage: &str, reason: &str, detail: impl Into<String>) -> Rejection {
    Rejection {
        id: rec.id.clone(),
        stage: stage.into(),
        reason: reason.into(),
        detail: detail.into(),
        record: rec,
    }
}

/// A fresh record carrying the item's cell, seed attributes and the run's provenance.
pub fn new_record(sh: &Shared, item: &PlanItem) -> Record {
    let t = &sh.cfg.teacher;
    let s = &item.seed;
    Record {
        id: item.id.clone(),
        task_type: item.task.clone(),
        input_data: item.document.clone(),
        output_format: item.format.clone(),
        difficulty_level: item.difficulty,
        document_family: item.family.clone(),
        specialty: s.specialty.clone(),
        age_band: s.age_band.clone(),
        sex: s.sex.clone(),
        care_setting: s.care_setting.clone(),
        writing_style: s.writing_style.clone(),
        concept_code: s.concept_code.clone(),
        concept_description: s.concept_description.clone(),
        run_seed: sh.cfg.seed,
        cell_index: item.cell_index,
        teacher_backend: sh.teacher.backend().to_string(),
        teacher_model: t.model.clone(),
        temperature: t.temperature as f64,
        top_p: t.top_p as f64,
        request_seed: t.send_seed.then(|| seed_from(&item.id) & 0x7fff_ffff),
        template_document: sh
            .prompts
            .tag(&sh.prompts.template_for(Stage::Document, item)),
        template_instruction: sh
            .prompts
            .tag(&sh.prompts.template_for(Stage::Instruction, item)),
        template_answer: sh
            .prompts
            .tag(&sh.prompts.template_for(Stage::Answer, item)),
        ..Default::default()
    }
}

/// Render a stage's template and call the teacher, retrying by policy.
async fn call(
    sh: &Shared,
    rec: &mut Record,
    stage: Stage,
    template: &str,
    ctx: &serde_json::Value,
    round: u32,
) -> Result<String, (String, String)> {
    let messages = sh
        .prompts
        .render(template, ctx)
        .map_err(|p| ("template_error".to_string(), p.to_string()))?;
    let t = &sh.cfg.teacher;
    let json_item = rec.output_format == "json" && matches!(stage, Stage::Answer | Stage::Repair);
    let seed = |attempt: u32| {
        rec.request_seed.map(|s| {
            (s + 1000 * stage as u64 + round as u64 + 7919 * (attempt as u64 - 1)) & 0x7fff_ffff
        })
    };
    let mut req = ChatRequest {
        messages,
        max_tokens: match stage {
            Stage::Document => t.max_tokens.document,
            Stage::Instruction => t.max_tokens.instruction,
            Stage::Answer | Stage::Repair => t.max_tokens.answer,
        },
        temperature: t.temperature,
        top_p: t.top_p,
        // Set per attempt: each attempt samples anew, as a seeded retry would otherwise
        // repeat a truncated or unusable answer exactly.
        seed: None,
        json_schema: (json_item && t.response_format == ResponseFormatMode::Server)
            .then(|| sh.schemas.get(&rec.task_type).map(|s| s.value.clone()))
            .flatten(),
        stage: stage.as_str(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        rec.attempts += 1;
        req.seed = seed(attempt);
        let (result, latency) = {
            let _permit = sh.requests.acquire().await.expect("semaphore open");
            sh.progress.in_flight.fetch_add(1, Ordering::Relaxed);
            let t0 = std::time::Instant::now();
            let r = sh.teacher.chat(&req).await;
            sh.progress.in_flight.fetch_sub(1, Ordering::Relaxed);
            (r, t0.elapsed())
        };
        // Tokens spent count whether or not the text is kept.
        let usage = match &result {
            Ok(resp) => Some(resp.usage),
            Err(TeacherError::Truncated { usage, .. }) => Some(*usage),
            Err(_) => None,
        };
        if let Some(u) = usage {
            rec.latency_ms += latency.as_millis() as u64;
            rec.prompt_tokens += u.prompt_tokens;
            rec.completion_tokens += u.completion_tokens;
            sh.progress
                .tokens
                .fetch_add(u.completion_tokens, Ordering::Relaxed);
        }
        match result {
            Ok(resp) => return Ok(resp.content.trim().to_string()),
            // Free text cut at the token cap is kept up to its last complete sentence (and
            // flagged) rather than regenerated at the same cap: a document is source material,
            // an instruction a request that is complete at a sentence end.
            Err(TeacherError::Truncated { partial, .. })
                if matches!(stage, Stage::Document | Stage::Instruction) =>
            {
                let min_words = match stage {
                    Stage::Document => MIN_TRIMMED_DOCUMENT_WORDS,
                    _ => MIN_TRIMMED_INSTRUCTION_WORDS,
                };
                let Some(text) = trim_to_sentence(&partial, min_words) else {
                    return Err((
                        "truncated".to_string(),
                        format!(
                            "cut at {} tokens with fewer than {min_words} words in complete \
                             sentences",
                            req.max_tokens
                        ),
                    ));
                };
                match stage {
                    Stage::Document => rec.document_truncated = true,
                    _ => rec.instruction_truncated = true,
                }
                return Ok(text);
            }
            Err(e) => {
                sh.progress.retries.fetch_add(1, Ordering::Relaxed);
                if classify(&e) == Decision::DontRetry || attempt >= sh.cfg.engine.max_attempts {
                    return Err((
                        e.reason().to_string(),
                        format!("after {attempt} attempt(s): {e}"),
                    ));
                }
                tokio::time::sleep(sh.backoff.delay(attempt, &e)).await;
            }
        }
    }
}

/// Text cut at the token cap with fewer words than this in complete sentences is rejected.
const MIN_TRIMMED_DOCUMENT_WORDS: usize = 25;
const MIN_TRIMMED_INSTRUCTION_WORDS: usize = 8;

/// `text` up to the end of its last complete sentence or line, if that holds at least
/// `min_words` words.
fn trim_to_sentence(text: &str, min_words: usize) -> Option<String> {
    let end = text
        .char_indices()
        .filter(|&(i, c)| {
            c == '\n'
                || (matches!(c, '.' | '!' | '?')
                    && text[i + 1..].starts_with(|n: char| n.is_whitespace()))
        })
        .map(|(i, c)| i + c.len_utf8())
        .next_back()?;
    let kept = text[..end].trim();
    (kept.split_whitespace().count() >= min_words).then(|| kept.to_string())
}

/// Run one item through every stage.
pub async fn process(sh: &Shared, item: &PlanItem) -> Outcome {
    let mut rec = new_record(sh, item);
    let base = prompt::base_context(&sh.tax, &sh.schemas, item);

    let tpl = sh.prompts.template_for(Stage::Document, item);
    let document = match call(sh, &mut rec, Stage::Document, &tpl, &base, 0).await {
        Ok(d) => d,
        Err((reason, detail)) => return Err(reject(rec, "document", &reason, detail)),
    };
    rec.input = document.clone();

    let ctx = prompt::with(base, &[("document", &document)]);
    let tpl = sh.prompts.template_for(Stage::Instruction, item);
    let instruction = match call(sh, &mut rec, Stage::Instruction, &tpl, &ctx, 0).await {
        Ok(i) => i,
        Err((reason, detail)) => return Err(reject(rec, "instruction", &reason, detail)),
    };
    // A stored `json` instruction carries its schema, so the dataset is self-contained: a
    // model trained on it sees the format it must produce. The answer prompt gets the bare
    // instruction (its template adds the schema once itself).
    rec.instruction = match sh.schemas.get(&item.task) {
        Some(schema)
            if item.format == "json"
                && sh.cfg.teacher.response_format != ResponseFormatMode::Off
                && !instruction.contains(&schema.pretty) =>
        {
            format!("{instruction}{SCHEMA_NOTE}{}\n```", schema.pretty)
        }
        _ => instruction.clone(),
    };

    let ctx = prompt::with(ctx, &[("instruction", &instruction)]);
    let tpl = sh.prompts.template_for(Stage::Answer, item);
    let answer = match call(sh, &mut rec, Stage::Answer, &tpl, &ctx, 0).await {
        Ok(a) => a,
        Err((reason, detail)) => return Err(reject(rec, "answer", &reason, detail)),
    };
    rec.output = answer;

    if item.format != "json" {
        return Ok(rec);
    }
    let schema = sh
        .schemas
        .get(&item.task)
        .expect("json tasks have schemas (checked)");
    let check = |text: &str| -> Result<serde_json::Value, (&'static str, String)> {
        let v = schemas::extract_json(text).map_err(|e| ("invalid_json", e))?;
        schemas::validate(schema, &v).map_err(|e| ("schema_invalid", e))?;
        Ok(v)
    };
    let mut verdict = check(&rec.output);
    let mut round = 0;
    while let Err((_, error)) = &verdict {
        if round >= sh.cfg.engine.repair_attempts {
            break;
        }
        round += 1;
        rec.repairs += 1;
        let rctx = prompt::with(
            ctx.clone(),
            &[
                ("previous_output", &rec.output),
                ("validation_error", error),
            ],
        );
        match call(sh, &mut rec, Stage::Repair, "repair.j2", &rctx, round).await {
            Ok(fixed) => {
                rec.output = fixed;
                verdict = check(&rec.output);
            }
            Err((reason, detail)) => {
                return Err(reject(
                    rec,
                    "validate",
                    &reason,
                    format!("during repair: {detail}"),
                ))
            }
        }
    }
    match verdict {
        // Store the canonical compact JSON (no fences or prose around it).
        Ok(v) => {
            rec.output = v.to_string();
            Ok(rec)
        }
        Err((reason, error)) => Err(reject(rec, "validate", reason, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::trim_to_sentence;

    #[test]
    fn truncated_text_is_cut_at_its_last_complete_sentence() {
        let words = "word ".repeat(10);
        let text = format!("{words}ends here. {words}and then it was cut of");
        let kept = trim_to_sentence(&text, 5).unwrap();
        assert!(kept.ends_with("ends here."), "{kept}");
        assert_eq!(trim_to_sentence(&text, 50), None);
        assert_eq!(trim_to_sentence("no sentence end at all", 1), None);
        assert_eq!(
            trim_to_sentence("HPI: chest pain\nPlan: admit and obs", 2).as_deref(),
            Some("HPI: chest pain")
        );
    }
}
