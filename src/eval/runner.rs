//! Running the tasks against the model: every item not already in `predictions.jsonl`
//! (so a killed eval resumes where it stopped, nothing duplicated or lost), with at most
//! `concurrency` requests in flight and the teacher retry policy (`teacher::retry`).
//! Deterministic failures of the model's answer (cut at the token cap, empty) are
//! malformed answers, not retried.

use super::backend::{Backend, LogLik};
use super::icd_mcq::LETTERS;
use super::predictions::{self, Prediction};
use super::task::{Item, Scoring, Task};
use super::{answer, metrics::get};
use crate::error::Error;
use crate::sink::JsonlAppender;
use crate::teacher::retry::{classify, Backoff, Decision};
use crate::teacher::{ChatRequest, Teacher, TeacherError, Usage};
use anyhow::Context;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, Semaphore};

pub const MANIFEST: &str = "eval.json";

pub struct Options {
    pub out: PathBuf,
    pub concurrency: usize,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub temperature: f32,
    /// Send the answer schema with each request (server-side `response_format`, the
    /// embedded model's constrained decoding). Off by default: schema validity is measured.
    pub constrain: bool,
    /// Only the first N items of each task.
    pub limit: Option<usize>,
    pub quiet: bool,
    /// The judge of `judge` metrics and its description (None: judge scores are left out).
    pub judge: Option<(Arc<dyn Teacher>, Value)>,
}

/// What one invocation did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub resumed: usize,
    pub scored: usize,
    /// Items that failed after every retry (task, id, error): not written, so the same
    /// command tries them again.
    pub failed: Vec<(String, String, String)>,
    pub elapsed_secs: f64,
}

/// Check (or write) the manifest: a resumed eval must be of the same model, tasks and
/// decoding settings.
fn manifest(out: &Path, want: &Value) -> Result<(), Error> {
    let path = out.join(MANIFEST);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let have: Value = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", path.display()))?;
            if &have != want {
                return Err(Error::RunMismatch(format!(
                    "{} holds an eval of another model, task set or decoding settings \
                     ({have} vs {want}); choose another --out",
                    out.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
            std::fs::write(
                &path,
                serde_json::to_string_pretty(want).expect("serializable"),
            )
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

pub async fn run(
    backend: Arc<Backend>,
    tasks: Arc<Vec<Task>>,
    model: Value,
    opts: &Options,
) -> Result<Outcome, Error> {
    let out = &opts.out;
    manifest(
        out,
        &json!({
            "model": model, "tasks": super::task::fingerprint(&tasks),
            "temperature": opts.temperature, "constrain": opts.constrain,
            "judge": opts.judge.as_ref().map(|j| &j.1),
        }),
    )?;
    let done: HashSet<(String, String)> = predictions::read(out)?
        .into_iter()
        .map(|p| (p.task, p.id))
        .collect();
    let mut todo = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        let n = opts.limit.unwrap_or(usize::MAX).min(t.items.len());
        for ii in 0..n {
            if !done.contains(&(t.spec.name.clone(), t.items[ii].id.clone())) {
                todo.push((ti, ii));
            }
        }
    }
    if !done.is_empty() && !opts.quiet {
        eprintln!("resuming: {} item(s) already scored", done.len());
    }
    let started = Instant::now();
    let total = todo.len();
    let mut journal = JsonlAppender::open(&out.join(predictions::JSONL))?;
    let sem = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (tx, mut rx) = mpsc::channel::<Result<Prediction, (String, String, String)>>(64);
    let shared = Arc::new(Settings {
        max_attempts: opts.max_attempts.max(1),
        backoff: opts.backoff,
        temperature: opts.temperature,
        constrain: opts.constrain,
        judge: opts.judge.as_ref().map(|j| j.0.clone()),
    });
    for (ti, ii) in todo {
        let (backend, tasks, sem, tx, shared) = (
            backend.clone(),
            tasks.clone(),
            sem.clone(),
            tx.clone(),
            shared.clone(),
        );
        tokio::spawn(async move {
            let (task, item) = (&tasks[ti], &tasks[ti].items[ii]);
            let r = evaluate(&backend, task, item, &sem, &shared)
                .await
                .map_err(|e| (task.spec.name.clone(), item.id.clone(), e.to_string()));
            let _ = tx.send(r).await;
        });
    }
    drop(tx);
    let (mut scored, mut failed) = (0, Vec::new());
    let step = (total / 20).max(1);
    while let Some(r) = rx.recv().await {
        match r {
            Ok(p) => {
                journal.append(&p)?;
                scored += 1;
            }
            Err(f) => failed.push(f),
        }
        let k = scored + failed.len();
        if !opts.quiet && (k % step == 0 || k == total) {
            eprintln!("eval: {k}/{total} items ({} failed)", failed.len());
        }
    }
    journal.sync()?;
    Ok(Outcome {
        resumed: done.len(),
        scored,
        failed,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

struct Settings {
    max_attempts: u32,
    backoff: Backoff,
    temperature: f32,
    constrain: bool,
    judge: Option<Arc<dyn Teacher>>,
}

/// Retry `f` by the teacher policy, one semaphore permit per attempt.
async fn retrying<T, Fut>(
    sem: &Semaphore,
    s: &Settings,
    attempts: &mut u32,
    mut f: impl FnMut() -> Fut,
) -> Result<T, TeacherError>
where
    Fut: std::future::Future<Output = Result<T, TeacherError>>,
{
    loop {
        *attempts += 1;
        let r = {
            let _permit = sem.acquire().await.expect("semaphore open");
            f().await
        };
        match r {
            Ok(v) => return Ok(v),
            Err(e) if classify(&e) == Decision::DontRetry || *attempts >= s.max_attempts => {
                return Err(e)
            }
            Err(e) => tokio::time::sleep(s.backoff.delay(*attempts, &e)).await,
        }
    }
}

/// All scores of one item.
pub fn score(
    task: &Task,
    answer: Option<&Value>,
    reference: &Value,
) -> BTreeMap<String, Option<f64>> {
    let mut out = BTreeMap::new();
    for m in &task.spec.metrics {
        m.score(answer, reference, task.icd.as_deref(), &mut out);
    }
    out
}

async fn evaluate(
    backend: &Backend,
    task: &Task,
    item: &Item,
    sem: &Semaphore,
    s: &Settings,
) -> Result<Prediction, TeacherError> {
    let mut attempts = 0;
    let t0 = Instant::now();
    let mut p = Prediction {
        task: task.spec.name.clone(),
        id: item.id.clone(),
        mode: "generate".into(),
        raw: None,
        answer: None,
        malformed: None,
        reference: item.reference.clone(),
        scores: BTreeMap::new(),
        option_logprobs: None,
        attempts: 0,
        latency_ms: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
    };
    let ll_messages = item
        .ll_messages
        .as_ref()
        .filter(|_| backend.unsupported().is_none());
    if let (Scoring::Loglikelihood | Scoring::Auto, Some(ll)) = (task.spec.scoring, ll_messages) {
        let options = &item.options;
        let r = retrying(sem, s, &mut attempts, move || {
            backend.loglikelihood(ll, options)
        })
        .await?;
        if let LogLik::Scores(lp) = r {
            let argmax = |f: &dyn Fn(usize) -> f64| {
                (0..lp.len())
                    .max_by(|&a, &b| f(a).total_cmp(&f(b)))
                    .expect("options")
            };
            let best = argmax(&|i| lp[i]);
            // Length-normalised (per byte), as lm-evaluation-harness's acc_norm.
            let norm = argmax(&|i| lp[i] / item.options[i].len().max(1) as f64);
            let answer = json!({ "answer": LETTERS[best] });
            p.scores = score(task, Some(&answer), &item.reference);
            let gold = get(&item.reference, "answer");
            p.scores.insert(
                "accuracy_norm".into(),
                Some(if gold == Some(&json!(LETTERS[norm])) {
                    1.0
                } else {
                    0.0
                }),
            );
            p.mode = "loglikelihood".into();
            p.answer = Some(answer);
            p.option_logprobs = Some(lp);
            p.attempts = attempts;
            p.latency_ms = t0.elapsed().as_millis() as u64;
            return Ok(p);
        }
    }
    let req = ChatRequest {
        messages: item.messages.clone(),
        max_tokens: task.spec.max_tokens,
        temperature: s.temperature,
        top_p: 1.0,
        seed: Some(
            crate::util::seed_from(&format!("{}/{}", task.spec.name, item.id)) & 0x7fff_ffff,
        ),
        json_schema: s.constrain.then(|| task.schema.clone()),
        stage: "eval",
    };
    // A cut or empty answer is the model's answer (decoding would repeat it): malformed.
    let (chat, req) = (&backend.chat, &req);
    let r = retrying(sem, s, &mut attempts, move || async move {
        match chat.chat(req).await {
            Ok(resp) => Ok((resp.content, resp.usage, None)),
            Err(TeacherError::Truncated { partial, usage }) => Ok((
                partial,
                usage,
                Some(format!("cut at the token cap ({})", req.max_tokens)),
            )),
            Err(TeacherError::Empty) => {
                Ok((String::new(), Usage::default(), Some("empty answer".into())))
            }
            Err(e) => Err(e),
        }
    })
    .await?;
    let (text, usage, cut) = r;
    let parsed = match cut {
        Some(why) => Err(why),
        None => answer::parse(&text, &task.validator),
    };
    p.scores = score(task, parsed.as_ref().ok(), &item.reference);
    match (&task.judge, &s.judge, &parsed) {
        (Some(tpl), Some(judge), Ok(a)) => {
            let v = grade(tpl, judge, item, a, sem, s).await;
            p.scores.insert("judge_score".into(), v);
        }
        // Without a judge the score is left out altogether (not 0 for malformed answers only).
        (Some(_), None, _) => {
            p.scores.remove("judge_score");
        }
        _ => {}
    }
    p.malformed = parsed.as_ref().err().cloned();
    p.answer = parsed.ok();
    p.raw = Some(text);
    p.attempts = attempts;
    p.latency_ms = t0.elapsed().as_millis() as u64;
    p.prompt_tokens = usage.prompt_tokens;
    p.completion_tokens = usage.completion_tokens;
    Ok(p)
}

/// The verdict a judge must give.
fn judge_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "rationale": {"type": "string", "maxLength": 600},
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
        },
        "required": ["rationale", "score"],
        "additionalProperties": false,
    })
}

/// The judge's grade of a well-formed answer, as (score - 1) / 4; None when the judge
/// gives no usable verdict (the item then has no judge score).
async fn grade(
    tpl: &super::task::JudgeTemplate,
    judge: &Arc<dyn Teacher>,
    item: &Item,
    answer: &Value,
    sem: &Semaphore,
    s: &Settings,
) -> Option<f64> {
    let messages = tpl
        .render(
            &super::backend::plain_context(&item.messages),
            &item.reference,
            answer,
        )
        .map_err(|p| tracing::warn!("judge prompt of {}: {p}", item.id))
        .ok()?;
    let schema = judge_schema();
    let req = ChatRequest {
        messages,
        max_tokens: 512,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(crate::util::seed_from(&format!("judge/{}", item.id)) & 0x7fff_ffff),
        json_schema: Some(schema.clone()),
        stage: "eval",
    };
    let mut attempts = 0;
    let req = &req;
    let text = retrying(sem, s, &mut attempts, move || async move {
        judge.chat(req).await.map(|r| r.content)
    })
    .await
    .map_err(|e| tracing::warn!("judge of {}: {e}", item.id))
    .ok()?;
    let v = jsonschema::validator_for(&schema).expect("valid schema");
    let verdict = answer::parse(&text, &v)
        .map_err(|e| tracing::warn!("judge verdict of {}: {e}", item.id))
        .ok()?;
    verdict["score"].as_f64().map(|g| (g - 1.0) / 4.0)
}
