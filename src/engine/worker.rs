//! One work item through the stages: document -> instruction -> answer -> validate (with
//! repair rounds for `json`). Each teacher call is retried by policy
//! (`teacher::retry::Policy`: a count of failed attempts, and one time budget for all the
//! item's calls); the item ends as an accepted Record or a Rejection naming the stage and
//! reason.

use super::{JudgeRuntime, Shared};
use crate::config::ResponseFormatMode;
use crate::plan::PlanItem;
use crate::prompt::{self, Stage};
use crate::quality::filters::{self, FilterCtx};
use crate::quality::judge::{self, Verdict};
use crate::record::{Record, Rejection, SCHEMA_NOTE};
use crate::schemas;
use crate::teacher::retry::{classify, Clock, Decision, Next};
use crate::teacher::{self, ChatRequest, Teacher, TeacherError};
use crate::util::seed_from;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::Semaphore;

tokio::task_local! {
    /// The retry clock of the item `process` is working on: its calls (and concurrent
    /// judge samples) share one time budget.
    static ITEM_CLOCK: Arc<Clock>;
}

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

/// Where a stage's request goes and with which sampling settings.
pub struct Target<'a> {
    pub teacher: &'a dyn Teacher,
    pub requests: &'a Semaphore,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    pub json_schema: Option<serde_json::Value>,
}

/// The generator teacher with its settings for `stage`.
fn generator<'a>(sh: &'a Shared, rec: &Record, stage: Stage) -> Target<'a> {
    let t = &sh.cfg.teacher;
    let json_item = rec.output_format == "json" && matches!(stage, Stage::Answer | Stage::Repair);
    Target {
        teacher: &*sh.teacher,
        requests: &sh.requests,
        max_tokens: match stage {
            Stage::Document => document_cap(sh, &rec.input_data),
            Stage::Instruction => t.max_tokens.instruction,
            _ => t.max_tokens.answer,
        },
        temperature: t.temperature,
        top_p: t.top_p,
        json_schema: (json_item && t.response_format == ResponseFormatMode::Server)
            .then(|| sh.schemas.get(&rec.task_type).map(|s| s.value.clone()))
            .flatten(),
    }
}

/// The document stage's token cap for a document type: from its word range, at most
/// `teacher.max_tokens.document` (see `StageTokens::document_for`).
pub fn document_cap(sh: &Shared, document: &str) -> u32 {
    let t = &sh.cfg.teacher.max_tokens;
    match sh.tax.document(document) {
        Some(d) => t.document_for(d.length_words[1]),
        None => t.document,
    }
}

/// A generator stage: `call` with the generator teacher's settings.
pub async fn generate(
    sh: &Shared,
    rec: &mut Record,
    stage: Stage,
    template: &str,
    ctx: &serde_json::Value,
    round: u32,
) -> Result<String, (String, String)> {
    let to = generator(sh, rec, stage);
    call(sh, rec, stage, template, ctx, round, to).await
}

/// Render a stage's template and call the teacher, retrying by policy. `round` varies the
/// request seed between calls of one stage (repair rounds, judge samples).
pub async fn call(
    sh: &Shared,
    rec: &mut Record,
    stage: Stage,
    template: &str,
    ctx: &serde_json::Value,
    round: u32,
    to: Target<'_>,
) -> Result<String, (String, String)> {
    let messages = sh
        .prompts
        .render(template, ctx)
        .map_err(|p| ("template_error".to_string(), p.to_string()))?;
    let seed = |attempt: u32| {
        rec.request_seed.map(|s| {
            (s + 1000 * stage as u64 + round as u64 + 7919 * (attempt as u64 - 1)) & 0x7fff_ffff
        })
    };
    let mut req = ChatRequest {
        messages,
        max_tokens: to.max_tokens,
        temperature: to.temperature,
        top_p: to.top_p,
        // Set per attempt: each attempt samples anew, as a seeded retry would otherwise
        // repeat a truncated or unusable answer exactly.
        seed: None,
        json_schema: to.json_schema,
        stage: stage.as_str(),
    };
    // The item's retry clock (one per call outside `process`, e.g. in `audit`).
    let clock: Arc<Clock> = ITEM_CLOCK.try_with(Arc::clone).unwrap_or_default();
    let (mut attempt, mut failed) = (0, 0);
    // An answer cut at its cap gets one more try at a larger cap (not counted against
    // `engine.max_attempts`); cut again, it is rejected.
    let mut enlarged = false;
    loop {
        attempt += 1;
        rec.attempts += 1;
        req.seed = seed(attempt);
        let (result, latency) = {
            let _permit = to.requests.acquire().await.expect("semaphore open");
            sh.progress.in_flight.fetch_add(1, Ordering::Relaxed);
            let t0 = std::time::Instant::now();
            let r = to.teacher.chat(&req).await;
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
            tracing::debug!(
                target: "mediflow::calls",
                id = %rec.id,
                stage = stage.as_str(),
                attempt,
                prompt = u.prompt_tokens,
                cached = u.cached_tokens,
                generated = u.completion_tokens,
                ms = latency.as_millis() as u64,
                "teacher call"
            );
            rec.latency_ms += latency.as_millis() as u64;
            rec.prompt_tokens += u.prompt_tokens;
            rec.completion_tokens += u.completion_tokens;
            let p = &sh.progress;
            p.tokens.fetch_add(u.completion_tokens, Ordering::Relaxed);
            p.calls.fetch_add(1, Ordering::Relaxed);
            p.prompt_tokens
                .fetch_add(u.prompt_tokens, Ordering::Relaxed);
            p.cached_tokens
                .fetch_add(u.cached_tokens, Ordering::Relaxed);
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
            // An answer (or repaired answer) cut at its cap is not a sentence to keep, and
            // sampled again at the same cap it is likely cut again: one retry at a larger
            // cap, within the model's context, then `truncated`.
            Err(TeacherError::Truncated { usage, .. })
                if matches!(stage, Stage::Answer | Stage::Repair) =>
            {
                sh.progress.retries.fetch_add(1, Ordering::Relaxed);
                let larger = larger_cap(req.max_tokens, usage.prompt_tokens, to.teacher);
                match larger {
                    Some(cap) if !enlarged => {
                        tracing::debug!(
                            target: "mediflow::calls",
                            id = %rec.id,
                            stage = stage.as_str(),
                            "cut at {} tokens; once more at {cap}",
                            req.max_tokens
                        );
                        enlarged = true;
                        req.max_tokens = cap;
                    }
                    _ => {
                        return Err((
                            "truncated".to_string(),
                            format!(
                                "after {attempt} attempt(s): cut at the token cap ({} tokens){}",
                                req.max_tokens,
                                if enlarged {
                                    ", already raised once"
                                } else {
                                    ""
                                }
                            ),
                        ))
                    }
                }
            }
            Err(e) => {
                sh.progress.retries.fetch_add(1, Ordering::Relaxed);
                // Every endpoint down: the circuit is open and the next attempt waits for
                // one to come back; this failure is not the item's.
                let waiting = to.teacher.all_down();
                if classify(&e) == Decision::Retry && !waiting {
                    failed += 1;
                }
                let spent = clock.spend(latency);
                let give_up = match sh.retry.next(&e, (attempt, failed), waiting, spent) {
                    Next::After(delay) => {
                        tokio::time::sleep(delay).await;
                        clock.spend(delay);
                        continue;
                    }
                    Next::Refused => String::new(),
                    Next::OutOfAttempts => format!(
                        " ({failed} failed, engine.max_attempts = {})",
                        sh.retry.max_attempts
                    ),
                    Next::OutOfTime => format!(
                        " ({:.0}s of the item's engine.retry_budget_secs = {:.0} spent)",
                        spent.as_secs_f64(),
                        sh.retry.budget.as_secs_f64()
                    ),
                };
                return Err((
                    e.reason().to_string(),
                    format!("after {attempt} attempt(s){give_up}: {e}"),
                ));
            }
        }
    }
}

/// How much a truncated answer's cap grows for its one retry.
const TRUNCATED_CAP_FACTOR: u32 = 2;

/// The cap for the retry of an answer cut at `cap` tokens: `TRUNCATED_CAP_FACTOR` times
/// larger, within what the teacher's context leaves after the prompt (where it says);
/// `None` when that is no larger.
fn larger_cap(cap: u32, prompt_tokens: u64, teacher: &dyn Teacher) -> Option<u32> {
    let mut larger = cap.saturating_mul(TRUNCATED_CAP_FACTOR);
    if let Some(ctx) = teacher.context_tokens() {
        let room = (ctx as u64).saturating_sub(prompt_tokens + 1);
        larger = larger.min(room.min(u32::MAX as u64) as u32);
    }
    (larger > cap).then_some(larger)
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

/// Run one item through every stage: generation, then the quality gate (filters, judge).
/// Deduplication and quotas are decided by the writer, in plan order.
pub async fn process(sh: &Shared, item: &PlanItem) -> Outcome {
    let outcome = ITEM_CLOCK
        .scope(Arc::new(Clock::default()), gate(sh, item))
        .await;
    if let Err(j) = &outcome {
        // The stages it did not reach count as done for the progress display.
        let reached: u64 = match j.stage.as_str() {
            "document" => 0,
            "instruction" => 1,
            "answer" => 2,
            "judge" => 4,
            _ => 3,
        };
        sh.progress.stages_skipped.fetch_add(
            sh.stages_per_item().saturating_sub(reached),
            Ordering::Relaxed,
        );
    }
    outcome
}

async fn gate(sh: &Shared, item: &PlanItem) -> Outcome {
    let rec = produce(sh, item).await?;
    let cx = FilterCtx {
        tax: &sh.tax,
        schemas: &sh.schemas,
        cfg: &sh.cfg.filters,
        examples: Some(&sh.prompts.examples),
    };
    if let Err(d) = filters::check(&rec, &cx) {
        let detail = format!("{}: {}", d.filter, d.detail);
        return Err(reject(rec, "filter", d.reason, detail));
    }
    match &sh.judge {
        Some(j) => judge(sh, j, rec, item).await,
        None => Ok(rec),
    }
}

/// The judge stage of a planned item: `judge_with` in the item's prompt context.
async fn judge(sh: &Shared, j: &JudgeRuntime, rec: Record, item: &PlanItem) -> Outcome {
    let base = prompt::base_context(&sh.tax, &sh.schemas, item);
    let template = sh.prompts.template_for(Stage::Judge, item);
    judge_with(sh, j, rec, &template, base).await
}

/// Score a record with `samples` judge calls (concurrently), aggregate by median and
/// apply the judge's selection (its thresholds when calibrated). The scores land in the
/// record either way. `base`: the prompt context (`prompt::base_context` of a planned
/// item; `audit` builds one for a row that exists already). Used by `run` and `audit`.
pub async fn judge_with(
    sh: &Shared,
    j: &JudgeRuntime,
    mut rec: Record,
    template: &str,
    base: serde_json::Value,
) -> Outcome {
    let (output, seed) = (rec.output.clone(), rec.request_seed);
    let (agg, spent) = score_in(sh, j, template, base, &rec, &output, seed).await;
    sh.progress.stage_done(Stage::Judge);
    rec.attempts += spent.attempts;
    rec.latency_ms += spent.latency_ms;
    rec.prompt_tokens += spent.prompt_tokens;
    rec.completion_tokens += spent.completion_tokens;
    let agg = match agg {
        Ok(agg) => agg,
        Err((reason, detail)) => return Err(reject(rec, "judge", &reason, detail)),
    };
    let [q, a, c, r, d] = agg.scores;
    (
        rec.quality,
        rec.alignment,
        rec.coherence,
        rec.realism,
        rec.difficulty,
    ) = (Some(q), Some(a), Some(c), Some(r), Some(d));
    rec.judge_samples = agg.samples;
    rec.judge_spread = Some(agg.spread);
    rec.judge_rationale = Some(agg.rationale);
    match j.selection.accept(&agg.scores) {
        Ok(()) => Ok(rec),
        Err(misses) => Err(reject(rec, "judge", "judge_below_threshold", misses)),
    }
}

/// Judge `answer` to the document and instruction of `rec` with `[judge] samples` calls
/// (concurrently, request seeds derived from `seed`) and aggregate the valid verdicts by
/// median. Returns the aggregate (or why there is none) and a scratch record holding the
/// calls and tokens spent.
pub async fn score(
    sh: &Shared,
    j: &JudgeRuntime,
    item: &PlanItem,
    rec: &Record,
    answer: &str,
    seed: Option<u64>,
) -> (Result<judge::Aggregate, String>, Record) {
    let base = prompt::base_context(&sh.tax, &sh.schemas, item);
    let template = sh.prompts.template_for(Stage::Judge, item);
    let (agg, spent) = score_in(sh, j, &template, base, rec, answer, seed).await;
    (agg.map_err(|(_, detail)| detail), spent)
}

/// `score` with the judge template and prompt context given. Without an aggregate, the
/// reason is `judge_failed`, or a transient reason (`teacher::TRANSIENT_REASONS`) when
/// the samples lost to the server would have made up the valid ones missing.
async fn score_in(
    sh: &Shared,
    j: &JudgeRuntime,
    template: &str,
    base: serde_json::Value,
    rec: &Record,
    answer: &str,
    seed: Option<u64>,
) -> (Result<judge::Aggregate, (String, String)>, Record) {
    let cfg = &sh.cfg.judge;
    let ctx = prompt::with(
        base,
        &[
            ("document", &rec.input),
            ("instruction", &rec.instruction),
            ("answer", answer),
        ],
    );
    let sample = |k: u32| {
        let ctx = &ctx;
        let mut scratch = Record {
            request_seed: seed,
            ..Default::default()
        };
        async move {
            let to = Target {
                teacher: &*j.teacher,
                requests: j.requests.as_ref().unwrap_or(&sh.requests),
                max_tokens: cfg.max_tokens,
                temperature: cfg.temperature,
                top_p: sh.cfg.teacher.top_p,
                json_schema: Some(j.schema.value.clone()),
            };
            let verdict = match call(sh, &mut scratch, Stage::Judge, template, ctx, k, to).await {
                Ok(text) => schemas::extract_json(&text)
                    .and_then(|v| {
                        schemas::validate(&j.schema, &v)?;
                        Verdict::from_json(&v)
                    })
                    .map_err(|e| (None, e)),
                Err((reason, detail)) => {
                    let transient = teacher::is_transient(&reason).then_some(reason.clone());
                    Err((transient, format!("{reason}: {detail}")))
                }
            };
            (verdict, scratch)
        }
    };
    let results = futures::future::join_all((0..cfg.samples).map(sample)).await;
    let mut spent = Record::default();
    let mut verdicts = Vec::new();
    let mut errors = Vec::new();
    let mut transient: Vec<String> = Vec::new();
    for (verdict, scratch) in results {
        spent.attempts += scratch.attempts;
        spent.latency_ms += scratch.latency_ms;
        spent.prompt_tokens += scratch.prompt_tokens;
        spent.completion_tokens += scratch.completion_tokens;
        match verdict {
            Ok(v) => verdicts.push(v),
            Err((t, e)) => {
                transient.extend(t);
                errors.push(e);
            }
        }
    }
    if (verdicts.len() as u32) < cfg.min_valid() {
        let lost_to_the_server = (verdicts.len() + transient.len()) as u32 >= cfg.min_valid();
        let reason = match transient.first() {
            Some(t) if lost_to_the_server => t.clone(),
            _ => "judge_failed".to_string(),
        };
        let detail = format!(
            "{} of {} judge samples valid (need {}): {}",
            verdicts.len(),
            cfg.samples,
            cfg.min_valid(),
            errors.join("; ")
        );
        return (Err((reason, detail)), spent);
    }
    (Ok(judge::aggregate(&verdicts)), spent)
}

/// Generate an item's document, instruction and answer, and validate a `json` answer.
async fn produce(sh: &Shared, item: &PlanItem) -> Outcome {
    let mut rec = new_record(sh, item);
    let base = prompt::base_context(&sh.tax, &sh.schemas, item);

    let tpl = sh.prompts.template_for(Stage::Document, item);
    let document = match generate(sh, &mut rec, Stage::Document, &tpl, &base, 0).await {
        Ok(d) => d,
        Err((reason, detail)) => return Err(reject(rec, "document", &reason, detail)),
    };
    rec.input = document.clone();
    sh.progress.stage_done(Stage::Document);

    let ctx = prompt::with(base, &[("document", &document)]);
    let tpl = sh.prompts.template_for(Stage::Instruction, item);
    let instruction = match generate(sh, &mut rec, Stage::Instruction, &tpl, &ctx, 0).await {
        Ok(i) => i,
        Err((reason, detail)) => return Err(reject(rec, "instruction", &reason, detail)),
    };
    sh.progress.stage_done(Stage::Instruction);
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
    let answer = match generate(sh, &mut rec, Stage::Answer, &tpl, &ctx, 0).await {
        Ok(a) => a,
        Err((reason, detail)) => return Err(reject(rec, "answer", &reason, detail)),
    };
    rec.output = answer;
    sh.progress.stage_done(Stage::Answer);

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
        match generate(sh, &mut rec, Stage::Repair, "repair.j2", &rctx, round).await {
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
    use super::{larger_cap, trim_to_sentence};
    use crate::teacher::{ChatRequest, ChatResponse, Teacher, TeacherError};

    /// A teacher that only states its context length.
    struct Ctx(Option<usize>);

    #[async_trait::async_trait]
    impl Teacher for Ctx {
        fn backend(&self) -> &'static str {
            "test"
        }
        async fn chat(&self, _: &ChatRequest) -> Result<ChatResponse, TeacherError> {
            Err(TeacherError::Empty)
        }
        async fn probe(&self) -> Result<String, String> {
            Ok(String::new())
        }
        fn context_tokens(&self) -> Option<usize> {
            self.0
        }
    }

    #[test]
    fn a_truncated_answer_gets_twice_the_cap_within_the_context() {
        assert_eq!(larger_cap(128, 900, &Ctx(None)), Some(256));
        assert_eq!(larger_cap(128, 900, &Ctx(Some(8192))), Some(256));
        // the context leaves 8192 - 8000 - 1 = 191 tokens after the prompt
        assert_eq!(larger_cap(128, 8000, &Ctx(Some(8192))), Some(191));
        // no room to grow: no retry
        assert_eq!(larger_cap(128, 8100, &Ctx(Some(8192))), None);
    }

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
