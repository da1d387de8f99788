//! `mediflow dpo`: build preference pairs from the accepted records of a run, with the
//! run's teacher and judge. Records are processed concurrently; each pair is appended to
//! the output as it is made, and records that already have a pair there are skipped.

use crate::config::{ResponseFormatMode, TeacherConfig};
use crate::dpo::{error_description, Pair, Scores};
use crate::engine::worker::{self, Target};
use crate::engine::{JudgeRuntime, Shared};
use crate::plan::{PlanItem, SeedAttrs};
use crate::prompt::{self, Stage};
use crate::quality::judge::Aggregate;
use crate::record::{bare_instruction, Record};
use crate::schemas::{self, TaskSchema};
use crate::sink::{read_jsonl, shard_files, JsonlAppender};
use crate::taxonomy::IcdTable;
use crate::teacher::Teacher;
use crate::text::{normalize, words};
use crate::util::{seed_from, short_hash};
use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How the rejected answer of a pair is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The teacher rewrites a good answer with one error of a named type.
    ErrorInjection,
    /// N teacher answers judged pointwise: the best against the worst.
    BestOfN,
    /// The reference answer against a student model's answer.
    OnPolicy,
}

impl Strategy {
    pub const NAMES: [&'static str; 3] = ["error_injection", "best_of_n", "on_policy"];

    pub fn from_name(name: &str) -> Option<Strategy> {
        match name {
            "error_injection" => Some(Strategy::ErrorInjection),
            "best_of_n" => Some(Strategy::BestOfN),
            "on_policy" => Some(Strategy::OnPolicy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Strategy::ErrorInjection => "error_injection",
            Strategy::BestOfN => "best_of_n",
            Strategy::OnPolicy => "on_policy",
        }
    }
}

/// The student of `on_policy`: its teacher, its settings and its own cap on requests.
pub struct Student {
    pub teacher: Arc<dyn Teacher>,
    pub cfg: TeacherConfig,
    pub requests: Semaphore,
}

pub struct Options {
    pub strategy: Strategy,
    /// The pairs file (appended to; pairs already in it are kept).
    pub out: PathBuf,
    /// Only the first N records that have no pair yet.
    pub limit: Option<usize>,
    pub student: Option<Student>,
}

/// What `mediflow dpo` reports.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub strategy: String,
    pub out: PathBuf,
    /// Accepted records in the run.
    pub records: usize,
    /// Records that already had a pair in the output (skipped).
    pub already_paired: usize,
    /// Records processed by this invocation.
    pub considered: usize,
    pub pairs_written: usize,
    /// Records that made no pair, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The first few failure details (teacher, judge, verification).
    pub errors: Vec<String>,
}

/// One record's outcome.
enum Made {
    Pair(Box<Pair>),
    Skip(&'static str, Option<String>),
}

fn skip(reason: &'static str) -> Made {
    Made::Skip(reason, None)
}

fn fail(reason: &'static str, record: &Record, detail: impl std::fmt::Display) -> Made {
    Made::Skip(reason, Some(format!("{}: {reason}: {detail}", record.id)))
}

const MAX_ERRORS: usize = 20;

/// Build pairs for the accepted records of `run_dir` with the strategy in `opts`.
pub async fn build(sh: &Shared, run_dir: &Path, opts: &Options) -> anyhow::Result<Summary> {
    let judge = sh.judge.as_ref().context("pair building needs a judge")?;
    let mut records = Vec::new();
    for f in shard_files(run_dir)? {
        records.extend(read_jsonl::<Record>(&f, false)?);
    }
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let done: HashSet<String> = read_jsonl::<Pair>(&opts.out, true)?
        .into_iter()
        .map(|p| p.record_id)
        .collect();
    let todo: Vec<&Record> = records
        .iter()
        .filter(|r| !done.contains(&r.id))
        .take(opts.limit.unwrap_or(usize::MAX))
        .collect();
    let mut summary = Summary {
        strategy: opts.strategy.name().to_string(),
        out: opts.out.clone(),
        records: records.len(),
        already_paired: records.iter().filter(|r| done.contains(&r.id)).count(),
        considered: todo.len(),
        ..Default::default()
    };
    let mut out = JsonlAppender::open(&opts.out)?;
    let mut made = futures::stream::iter(todo.into_iter().map(|r| one(sh, judge, opts, r)))
        .buffer_unordered(sh.cfg.dpo.concurrency);
    while let Some(m) = made.next().await {
        match m {
            Made::Pair(p) => {
                out.append(&*p)?;
                summary.pairs_written += 1;
            }
            Made::Skip(reason, detail) => {
                *summary.skipped.entry(reason.to_string()).or_default() += 1;
                if let Some(d) = detail.filter(|_| summary.errors.len() < MAX_ERRORS) {
                    summary.errors.push(d);
                }
            }
        }
    }
    out.sync()?;
    Ok(summary)
}

async fn one(sh: &Shared, j: &JudgeRuntime, opts: &Options, r: &Record) -> Made {
    let Some(item) = item_of(sh, r) else {
        return fail(
            "unknown_cell",
            r,
            "task, document or difficulty not in the taxonomy",
        );
    };
    match opts.strategy {
        Strategy::ErrorInjection => inject(sh, j, &item, r).await,
        Strategy::BestOfN => best_of_n(sh, j, &item, r).await,
        Strategy::OnPolicy => {
            let student = opts.student.as_ref().expect("on_policy has a student");
            on_policy(sh, j, &item, r, student).await
        }
    }
}

/// The plan item a record was generated from (what the templates' context is built from).
fn item_of(sh: &Shared, r: &Record) -> Option<PlanItem> {
    sh.tax.task(&r.task_type)?;
    sh.tax.document(&r.input_data)?;
    sh.tax.difficulty(r.difficulty_level)?;
    let concept = sh.tax.icd.get(&r.concept_code);
    Some(PlanItem {
        id: r.id.clone(),
        task: r.task_type.clone(),
        document: r.input_data.clone(),
        family: r.document_family.clone(),
        difficulty: r.difficulty_level,
        format: r.output_format.clone(),
        cell_index: r.cell_index,
        seed: SeedAttrs {
            specialty: r.specialty.clone(),
            age_band: r.age_band.clone(),
            sex: r.sex.clone(),
            care_setting: r.care_setting.clone(),
            writing_style: r.writing_style.clone(),
            concept_code: r.concept_code.clone(),
            concept_description: r.concept_description.clone(),
            concept_chapter: concept.map(|c| c.chapter.clone()).unwrap_or_default(),
            concept_block: concept.map(|c| c.block.clone()).unwrap_or_default(),
        },
    })
}

/// A record-like scratch for one teacher call (seeds, format and accounting).
fn scratch(r: &Record) -> Record {
    Record {
        request_seed: r.request_seed,
        task_type: r.task_type.clone(),
        output_format: r.output_format.clone(),
        ..Default::default()
    }
}

/// The answer prompt's context: the document and the instruction the teacher wrote.
fn answer_context(sh: &Shared, item: &PlanItem, r: &Record) -> serde_json::Value {
    prompt::with(
        prompt::base_context(&sh.tax, &sh.schemas, item),
        &[
            ("document", &r.input),
            ("instruction", bare_instruction(&r.instruction)),
        ],
    )
}

fn scores(a: &Aggregate) -> Scores {
    let [quality, alignment, coherence, realism, difficulty] = a.scores;
    Scores {
        quality,
        alignment,
        coherence,
        realism,
        difficulty,
    }
}

/// The record's own judge scores, if it was judged.
fn record_scores(r: &Record) -> Option<Scores> {
    Some(Scores {
        quality: r.quality?,
        alignment: r.alignment?,
        coherence: r.coherence?,
        realism: r.realism?,
        difficulty: r.difficulty?,
    })
}

/// The mean of the five judge medians: what pairs are ranked and separated by.
pub fn mean(s: &Scores) -> f64 {
    crate::text::mean(&[s.quality, s.alignment, s.coherence, s.realism, s.difficulty])
}

async fn judge(
    sh: &Shared,
    j: &JudgeRuntime,
    item: &PlanItem,
    r: &Record,
    answer: &str,
) -> Result<Scores, String> {
    let (agg, _) = worker::score(sh, j, item, r, answer, r.request_seed).await;
    agg.map(|a| scores(&a))
}

fn judge_model(sh: &Shared) -> String {
    let c = &sh.cfg;
    c.judge
        .teacher
        .as_ref()
        .map_or(&c.teacher.model, |t| &t.model)
        .clone()
}

/// A pair from `r` with the given answers; the caller fills in the rest.
fn pair(sh: &Shared, strategy: Strategy, r: &Record, variant: &str, rejected: String) -> Pair {
    Pair {
        id: short_hash(format!("{}/{}/{variant}", strategy.name(), r.id)),
        record_id: r.id.clone(),
        strategy: strategy.name().to_string(),
        task_type: r.task_type.clone(),
        input_data: r.input_data.clone(),
        output_format: r.output_format.clone(),
        difficulty_level: r.difficulty_level,
        instruction: r.instruction.clone(),
        input: r.input.clone(),
        output: r.output.clone(),
        rejected_output: rejected,
        error_type: None,
        chosen_scores: None,
        rejected_scores: None,
        margin: None,
        chosen_model: r.teacher_model.clone(),
        rejected_model: sh.cfg.teacher.model.clone(),
        judge_model: Some(judge_model(sh)),
    }
}

/// The error type injected into a record: picked by its id among the configured types
/// that apply to its format.
pub fn pick_error_type<'a>(types: &'a [String], record_id: &str, format: &str) -> Option<&'a str> {
    let usable: Vec<&str> = types
        .iter()
        .map(String::as_str)
        .filter(|t| format == "json" || *t != "schema_violation")
        .collect();
    (!usable.is_empty()).then(|| usable[(seed_from(record_id) % usable.len() as u64) as usize])
}

async fn inject(sh: &Shared, j: &JudgeRuntime, item: &PlanItem, r: &Record) -> Made {
    let dpo = &sh.cfg.dpo;
    // Records the run did not judge are judged first: only good answers are corrupted.
    let chosen_scores = match record_scores(r) {
        Some(s) => s,
        None => match judge(sh, j, item, r, &r.output).await {
            Ok(s) => s,
            Err(e) => return fail("judge_failed", r, e),
        },
    };
    if chosen_scores.quality < dpo.min_quality {
        return skip("below_min_quality");
    }
    let Some(error_type) = pick_error_type(&dpo.error_types, &r.id, &r.output_format) else {
        return skip("no_error_type");
    };
    let description = error_description(error_type).expect("validated error type");
    let ctx = prompt::with(
        answer_context(sh, item, r),
        &[
            ("answer", &r.output),
            ("error_type", error_type),
            ("error_description", description),
        ],
    );
    let template = sh.prompts.template_for(Stage::Inject, item);
    let mut spent = scratch(r);
    let text = match worker::generate(sh, &mut spent, Stage::Inject, &template, &ctx, 0).await {
        Ok(t) => t,
        Err((reason, detail)) => return fail("teacher_failed", r, format!("{reason}: {detail}")),
    };
    let rejected = match verify_injection(
        &r.output,
        &text,
        &r.output_format,
        &r.task_type,
        error_type,
        sh.schemas.get(&r.task_type),
        &sh.tax.icd,
    ) {
        Ok(t) => t,
        Err((reason, detail)) => return fail(reason, r, format!("{error_type}: {detail}")),
    };
    let mut p = pair(sh, Strategy::ErrorInjection, r, error_type, rejected);
    p.error_type = Some(error_type.to_string());
    p.chosen_scores = Some(chosen_scores);
    Made::Pair(Box::new(p))
}

/// A `json` answer as the canonical compact JSON, if it parses and conforms.
fn valid_json(text: &str, schema: Option<&TaskSchema>) -> Result<String, String> {
    let v = schemas::extract_json(text)?;
    if let Some(schema) = schema {
        schemas::validate(schema, &v)?;
    }
    Ok(v.to_string())
}

async fn best_of_n(sh: &Shared, j: &JudgeRuntime, item: &PlanItem, r: &Record) -> Made {
    let dpo = &sh.cfg.dpo;
    let ctx = answer_context(sh, item, r);
    let template = sh.prompts.template_for(Stage::Answer, item);
    // Rounds 1..=N: a distinct request seed per sample (round 0 made the record's answer).
    let sample = |k: u32| {
        let (ctx, template) = (&ctx, &template);
        async move {
            let mut spent = scratch(r);
            worker::generate(sh, &mut spent, Stage::Answer, template, ctx, k).await
        }
    };
    let made = futures::future::join_all((1..=dpo.samples).map(sample)).await;
    let (mut answers, mut teacher_errors, mut invalid) = (Vec::<String>::new(), Vec::new(), 0);
    for m in made {
        match m {
            Ok(text) => {
                let text = if r.output_format == "json" {
                    match valid_json(&text, sh.schemas.get(&r.task_type)) {
                        Ok(t) => t,
                        Err(_) => {
                            invalid += 1;
                            continue;
                        }
                    }
                } else {
                    text
                };
                if !answers.iter().any(|a| normalize(a) == normalize(&text)) {
                    answers.push(text);
                }
            }
            Err((reason, detail)) => teacher_errors.push(format!("{reason}: {detail}")),
        }
    }
    if answers.len() < 2 {
        if !teacher_errors.is_empty() {
            return fail("teacher_failed", r, teacher_errors.join("; "));
        }
        let detail = format!(
            "{} distinct valid answers ({invalid} invalid)",
            answers.len()
        );
        return fail("too_few_answers", r, detail);
    }
    let judged = futures::future::join_all(answers.iter().map(|a| judge(sh, j, item, r, a))).await;
    let mut scored: Vec<(String, Scores)> = Vec::new();
    let mut judge_errors = Vec::new();
    for (a, s) in answers.into_iter().zip(judged) {
        match s {
            Ok(s) => scored.push((a, s)),
            Err(e) => judge_errors.push(e),
        }
    }
    if scored.len() < 2 {
        return fail("judge_failed", r, judge_errors.join("; "));
    }
    // Stable: among equal scores the earlier sample comes first.
    scored.sort_by(|a, b| mean(&b.1).total_cmp(&mean(&a.1)));
    match rank(
        &scored.iter().map(|(_, s)| mean(s)).collect::<Vec<_>>(),
        dpo.min_margin,
    ) {
        Ok(margin) => {
            let (chosen, chosen_scores) = scored.first().expect("two or more").clone();
            let (rejected, rejected_scores) = scored.last().expect("two or more").clone();
            let mut p = pair(sh, Strategy::BestOfN, r, "best-worst", rejected);
            p.output = chosen;
            p.chosen_model = sh.cfg.teacher.model.clone();
            p.chosen_scores = Some(chosen_scores);
            p.rejected_scores = Some(rejected_scores);
            p.margin = Some(margin);
            Made::Pair(Box::new(p))
        }
        Err(reason) => skip(reason),
    }
}

/// The margin of best over worst among scores sorted best first, if it makes a pair: a
/// tie for the best place never does (which of the tied answers is better is unknown),
/// nor a margin under `min_margin`.
pub fn rank(sorted_means: &[f64], min_margin: f64) -> Result<f64, &'static str> {
    let (best, worst) = match sorted_means {
        [best, .., worst] => (*best, *worst),
        _ => return Err("too_few_answers"),
    };
    if sorted_means[1] >= best {
        return Err("tie");
    }
    let margin = best - worst;
    // Judge means are multiples of 0.1 (medians of integers over five dimensions):
    // compare with a tolerance so 5.0 - 4.0 counts as 1.0.
    if margin + 1e-9 < min_margin {
        return Err("margin_too_small");
    }
    Ok(margin)
}

async fn on_policy(
    sh: &Shared,
    j: &JudgeRuntime,
    item: &PlanItem,
    r: &Record,
    student: &Student,
) -> Made {
    let ctx = answer_context(sh, item, r);
    let template = sh.prompts.template_for(Stage::Answer, item);
    let s = &student.cfg;
    let json = r.output_format == "json";
    let to = Target {
        teacher: &*student.teacher,
        requests: &student.requests,
        max_tokens: s.max_tokens.answer,
        temperature: s.temperature,
        top_p: s.top_p,
        json_schema: (json && s.response_format == ResponseFormatMode::Server)
            .then(|| sh.schemas.get(&r.task_type).map(|x| x.value.clone()))
            .flatten(),
    };
    let mut spent = scratch(r);
    let answer = match worker::call(sh, &mut spent, Stage::Answer, &template, &ctx, 0, to).await {
        Ok(a) => a,
        Err((reason, detail)) => return fail("teacher_failed", r, format!("{reason}: {detail}")),
    };
    // A student's `json` answer that does not conform is kept as it is: a fine rejected answer.
    let answer = if json {
        valid_json(&answer, sh.schemas.get(&r.task_type)).unwrap_or(answer)
    } else {
        answer
    };
    if normalize(&answer) == normalize(&r.output) {
        return skip("identical");
    }
    let (reference, theirs) = futures::join!(
        judge(sh, j, item, r, &r.output),
        judge(sh, j, item, r, &answer)
    );
    let (reference, theirs) = match (reference, theirs) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail("judge_failed", r, e),
    };
    let margin = mean(&reference) - mean(&theirs);
    if margin + 1e-9 < sh.cfg.dpo.min_margin {
        return skip("student_not_worse");
    }
    let mut p = pair(sh, Strategy::OnPolicy, r, &s.model, answer);
    p.rejected_model = s.model.clone();
    p.chosen_scores = Some(reference);
    p.rejected_scores = Some(theirs);
    p.margin = Some(margin);
    Made::Pair(Box::new(p))
}

/// Word-level similarity of two texts: 2 * LCS / (|a| + |b|) over their normalised words
/// (1 = same words in the same order).
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (words(a), words(b));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut row = vec![0usize; b.len() + 1];
    for x in &a {
        let mut diag = 0;
        for (k, y) in b.iter().enumerate() {
            let up = row[k + 1];
            row[k + 1] = if x == y { diag + 1 } else { up.max(row[k]) };
            diag = up;
        }
    }
    2.0 * row[b.len()] as f64 / (a.len() + b.len()) as f64
}

/// A rejected answer this similar (or more) to the original is not a corruption.
pub const MAX_SIMILARITY: f64 = 0.98;

/// ICD-10-CM-shaped codes in a text.
fn codes(text: &str) -> BTreeSet<String> {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"\b[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?\b").expect("valid")
    })
    .find_iter(text)
    .map(|m| m.as_str().to_string())
    .collect()
}

/// Check an injected answer: it must differ from the original, a `schema_violation` must
/// fail the task schema and any other `json` rewrite pass it, and a `wrong_code_or_dose`
/// in clinical coding must change the codes to codes that exist. Returns the rejected
/// answer to store (canonical JSON where it conforms) or `(reason, detail)`.
pub fn verify_injection(
    original: &str,
    rejected: &str,
    format: &str,
    task: &str,
    error_type: &str,
    schema: Option<&TaskSchema>,
    icd: &IcdTable,
) -> Result<String, (&'static str, String)> {
    let rejected = if format != "json" {
        rejected.trim().to_string()
    } else if error_type == "schema_violation" {
        if valid_json(rejected, schema).is_ok() {
            return Err((
                "corruption_unverified",
                "still conforms to the schema".into(),
            ));
        }
        rejected.trim().to_string()
    } else {
        valid_json(rejected, schema).map_err(|e| ("corruption_unverified", e))?
    };
    let sim = similarity(original, &rejected);
    if sim >= MAX_SIMILARITY {
        return Err((
            "corruption_identical",
            format!("word similarity {sim:.3} to the original"),
        ));
    }
    if error_type == "wrong_code_or_dose" && task == "clinical_coding" {
        let (before, after) = (codes(original), codes(&rejected));
        if before == after {
            return Err(("corruption_unverified", "the codes did not change".into()));
        }
        if let Some(c) = after.difference(&before).find(|c| icd.get(c).is_none()) {
            return Err((
                "corruption_unverified",
                format!("{c} is not an ICD-10-CM code"),
            ));
        }
    }
    Ok(rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
    }

    fn coding_schema() -> TaskSchema {
        schemas::compile(&repo("schemas/clinical_coding.schema.json")).unwrap()
    }

    fn icd() -> IcdTable {
        IcdTable::load(&repo("taxonomy/icd10cm")).unwrap()
    }

    fn coding(code: &str, evidence: &str) -> String {
        serde_json::json!({"codes": [{"code": code, "description": "Essential (primary) hypertension",
            "role": "principal", "evidence": evidence}]})
        .to_string()
    }

    #[test]
    fn similarity_is_word_level_and_ignores_case_and_punctuation() {
        assert_eq!(similarity("The BP is high.", "the bp is high"), 1.0);
        assert_eq!(similarity("", ""), 1.0);
        assert_eq!(similarity("a b", "c d"), 0.0);
        let s = similarity("a b c d", "a b x d");
        assert!((s - 0.75).abs() < 1e-12, "{s}");
        let long = "word ".repeat(200);
        assert!(similarity(&long, &format!("{long} extra")) >= MAX_SIMILARITY);
    }

    #[test]
    fn plain_text_corruptions_must_differ_from_the_original() {
        let t = IcdTable::default();
        let ok = verify_injection(
            "Start metformin 500 mg twice daily.",
            "Start metformin 5000 mg twice daily.",
            "plain_text",
            "summarization",
            "wrong_code_or_dose",
            None,
            &t,
        );
        assert_eq!(ok.unwrap(), "Start metformin 5000 mg twice daily.");
        let same = verify_injection(
            "Start metformin.",
            "  start METFORMIN ",
            "plain_text",
            "summarization",
            "omission",
            None,
            &t,
        );
        assert_eq!(same.unwrap_err().0, "corruption_identical");
    }

    #[test]
    fn json_corruptions_are_checked_against_the_schema() {
        let (schema, icd) = (coding_schema(), icd());
        let original = coding("I10", "BP 182/100, on lisinopril");
        let v = |rejected: &str, error: &str| {
            verify_injection(
                &original,
                rejected,
                "json",
                "clinical_coding",
                error,
                Some(&schema),
                &icd,
            )
        };
        // A schema violation must actually violate the schema.
        assert!(v(r#"{"unexpected": true}"#, "schema_violation").is_ok());
        let conforming = coding("I10", "patient denies headache today");
        assert_eq!(
            v(&conforming, "schema_violation").unwrap_err().0,
            "corruption_unverified"
        );
        // Other json errors must still conform (and are stored canonically).
        assert!(v(&conforming, "factual_error").is_ok());
        assert_eq!(
            v(r#"{"unexpected": true}"#, "factual_error").unwrap_err().0,
            "corruption_unverified"
        );
        assert_eq!(
            v(&original, "ambiguity").unwrap_err().0,
            "corruption_identical"
        );
        // A wrong code must change the codes, to codes that exist.
        let real = coding("E11.9", "BP 182/100, on lisinopril");
        assert!(v(&real, "wrong_code_or_dose").is_ok());
        assert_eq!(
            v(&conforming, "wrong_code_or_dose").unwrap_err().0,
            "corruption_unverified"
        );
        let made_up = coding("Z99.99", "BP 182/100, on lisinopril");
        let e = v(&made_up, "wrong_code_or_dose").unwrap_err();
        assert_eq!(e.0, "corruption_unverified", "{e:?}");
    }

    #[test]
    fn error_types_are_picked_by_record_and_format() {
        let types: Vec<String> = vec!["schema_violation".into(), "omission".into()];
        assert_eq!(
            pick_error_type(&types, "r1", "plain_text"),
            Some("omission")
        );
        let only: Vec<String> = vec!["schema_violation".into()];
        assert_eq!(pick_error_type(&only, "r1", "plain_text"), None);
        let all = crate::dpo::DpoConfig::default().error_types;
        let a = pick_error_type(&all, "some-record", "json");
        assert_eq!(a, pick_error_type(&all, "some-record", "json"));
        let picked: HashSet<&str> = (0..50)
            .filter_map(|i| pick_error_type(&all, &format!("r{i}"), "json"))
            .collect();
        assert!(picked.len() > 4, "{picked:?}");
    }

    #[test]
    fn ranking_skips_ties_and_small_margins() {
        assert_eq!(rank(&[4.8, 4.2, 2.0], 1.0), Ok(2.8));
        assert_eq!(rank(&[5.0, 4.0], 1.0), Ok(1.0));
        assert_eq!(rank(&[4.8, 4.8, 2.0], 1.0), Err("tie"));
        assert_eq!(rank(&[4.0, 4.0], 0.0), Err("tie"));
        assert_eq!(rank(&[4.8, 4.2], 1.0), Err("margin_too_small"));
        assert_eq!(rank(&[4.8], 1.0), Err("too_few_answers"));
    }

    #[test]
    fn dpo_config_defaults_are_valid_and_bad_values_reported() {
        assert!(crate::dpo::DpoConfig::default().validate().is_empty());
        let bad = crate::dpo::DpoConfig {
            min_quality: 7.0,
            error_types: vec!["nope".into()],
            samples: 1,
            min_margin: f64::NAN,
            concurrency: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().len(), 5, "{:?}", bad.validate());
    }
}
