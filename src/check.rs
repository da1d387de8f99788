//! Pre-flight: load config, taxonomy, schemas and templates, render every template the
//! run can use with a sample context, build the plan, and report every problem at once.
//! `mediflow check` and `mediflow run` both go through here before any teacher call, then
//! build the configured teacher and probe it (`build_teacher`, `probe`).

use crate::config::{Overrides, RunConfig, TeacherConfig, TeacherKind, TemplateProfile};
use crate::error::{Error, Problem};
use crate::plan::{self, Plan, PlanItem, SeedAttrs};
use crate::prompt::{self, Prompts, Stage};
use crate::schemas::{self, Schemas, TaskSchema};
use crate::taxonomy::{self, Taxonomy};
use crate::teacher::embedded::EmbeddedTeacher;
use crate::teacher::embedded::{model, pull};
use crate::teacher::http::HttpTeacher;
use crate::teacher::Teacher;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Loaded {
    pub cfg: RunConfig,
    pub tax: Taxonomy,
    pub schemas: Schemas,
    pub prompts: Prompts,
    pub plan: Plan,
    /// The judge's verdict schema, when `[judge]` is enabled.
    pub judge_schema: Option<TaskSchema>,
}

/// Load and check everything a run needs.
pub fn load(config: &Path, ov: &Overrides) -> Result<Loaded, Error> {
    let cfg = RunConfig::load(config, ov)?;
    let mut problems = Vec::new();
    let tax = taxonomy::load(&cfg.taxonomy_dir)
        .map_err(|p| problems.extend(p))
        .ok();
    let profile = cfg.templates.profile;
    if profile == TemplateProfile::Compact && !cfg.templates_dir.join(prompt::COMPACT_DIR).is_dir()
    {
        problems.push(Problem::new(
            cfg.templates_dir.join(prompt::COMPACT_DIR),
            "`templates.profile = \"compact\"` needs this folder of compact templates",
        ));
    }
    let prompts = Prompts::load(&cfg.templates_dir)
        .map(|p| p.with_profile(profile))
        .map_err(|p| problems.extend(p))
        .ok();
    let (Some(tax), Some(prompts)) = (tax, prompts) else {
        return Err(Error::Input(problems));
    };
    let (schemas, schema_problems) = Schemas::load_partial(&cfg.schemas_dir, &tax);
    problems.extend(schema_problems);
    let extra: &[Stage] = if cfg.judge.enabled {
        &[Stage::Judge]
    } else {
        &[]
    };
    problems.extend(smoke_render(&tax, &schemas, &prompts, extra));
    let judge_schema = if cfg.judge.enabled {
        let path = cfg
            .judge
            .schema
            .clone()
            .unwrap_or_else(|| cfg.schemas_dir.join("judge.schema.json"));
        // A calibration named but unreadable is bad input (no calibration at all only warns).
        if let Some(cal) = &cfg.judge.calibration {
            if let Err(p) = crate::quality::calibration::Calibration::load(cal) {
                problems.push(p);
            }
        }
        schemas::compile(&path).map_err(|p| problems.push(p)).ok()
    } else {
        None
    };
    problems.extend(embedded_caps(&cfg, config));
    let plan = plan::build(&tax, cfg.seed, cfg.items, &cfg.plan)
        .map_err(|m| problems.push(Problem::new(config, m)));
    match plan {
        Ok(plan) if problems.is_empty() => Ok(Loaded {
            cfg,
            tax,
            schemas,
            prompts,
            plan,
            judge_schema,
        }),
        _ => Err(Error::Input(problems)),
    }
}

/// The teacher `t` describes: the embedded model (loaded, and pulled if missing, off the
/// async runtime's threads) or an OpenAI-compatible client.
pub async fn build_teacher(t: &TeacherConfig) -> Result<Arc<dyn Teacher>, Error> {
    match t.kind {
        // Loading reads the model (and may pull it): off the async runtime's threads.
        TeacherKind::Embedded => {
            let cfg = t.embedded.clone();
            let teacher = tokio::task::spawn_blocking(move || EmbeddedTeacher::load(&cfg))
                .await
                .map_err(anyhow::Error::from)?
                .map_err(|e| Error::TeacherUnavailable(format!("{e:#}")))?;
            Ok(Arc::new(teacher))
        }
        TeacherKind::Openai => Ok(Arc::new(HttpTeacher::new(t).map_err(Error::Other)?)),
    }
}

/// Probe the teacher (one short call); an answer is its status line, a failure means the
/// teacher is unavailable.
pub async fn probe(teacher: &dyn Teacher) -> Result<String, Error> {
    teacher.probe().await.map_err(Error::TeacherUnavailable)
}

/// The API keys of the server teachers a run calls (the generator's, the judge's own
/// when the judge is on), before any request: a variable named by `api_key_env` that is
/// unset or empty is an input error, not an unauthenticated run.
pub fn api_keys(cfg: &RunConfig, config: &Path) -> Result<(), Error> {
    let judge = cfg.judge.teacher.as_ref().filter(|_| cfg.judge.enabled);
    let problems: Vec<Problem> = [("", Some(&cfg.teacher)), ("judge.teacher: ", judge)]
        .into_iter()
        .filter_map(|(prefix, t)| {
            let t = t.filter(|t| t.kind == TeacherKind::Openai)?;
            let m = t.api_key().err()?;
            Some(Problem::new(config, format!("{prefix}{m}")))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Input(problems))
    }
}

/// The context of the embedded model `t` names, from its GGUF header when the file is
/// there (nothing is loaded or pulled): its length and the file.
fn embedded_context(t: &TeacherConfig) -> Option<(usize, PathBuf)> {
    if t.kind != TeacherKind::Embedded {
        return None;
    }
    let path = match &t.embedded.path {
        Some(p) => p.clone(),
        None => pull::default_model_path(&t.embedded.cache()),
    };
    let (ct, _) = model::read_gguf(&path).ok()?;
    Some((model::model_config(&ct).ok()?.n_ctx, path))
}

/// Token caps beyond the context of the embedded models the config names (the teacher's,
/// the judge's), before any model is loaded.
fn embedded_caps(cfg: &RunConfig, config: &Path) -> Vec<Problem> {
    let mut p = Vec::new();
    let source = |path: &Path| format!("{}, from its GGUF metadata", path.display());
    if let Some((ctx, path)) = embedded_context(&cfg.teacher) {
        p.extend(cfg.teacher.caps_beyond_context(ctx, &source(&path)));
    }
    if cfg.judge.enabled {
        let judge = cfg.judge.teacher.as_ref().unwrap_or(&cfg.teacher);
        if let Some((ctx, path)) = embedded_context(judge) {
            p.extend(judge_cap_beyond(cfg.judge.max_tokens, ctx, &source(&path)));
        }
    }
    p.into_iter().map(|m| Problem::new(config, m)).collect()
}

fn judge_cap_beyond(cap: u32, ctx: usize, source: &str) -> Option<String> {
    (cap as usize >= ctx).then(|| {
        format!(
            "`judge.max_tokens` = {cap} does not fit the judge's context of {ctx} tokens \
             ({source}), which the prompt shares"
        )
    })
}

/// The token caps against the contexts the built teachers report (an embedded model's
/// metadata; a server's `max_model_len`, learnt by the probe): an input error before any
/// request. `judge`: the judge's own teacher (`[judge.teacher]`) when it was built; the
/// judge's cap is checked against the generator's context when it has none.
pub fn teacher_fits(
    cfg: &RunConfig,
    config: &Path,
    teacher: &dyn Teacher,
    judge: Option<&dyn Teacher>,
) -> Result<(), Error> {
    let source = |t: &dyn Teacher| match t.backend() {
        "embedded" => "the model's, from its GGUF metadata".to_string(),
        "openai" => "the server's max_model_len in /models".to_string(),
        other => format!("as the {other} teacher reports it"),
    };
    let mut p = Vec::new();
    if let Some(ctx) = teacher.context_tokens() {
        p.extend(cfg.teacher.caps_beyond_context(ctx, &source(teacher)));
    }
    let judge = match (judge, &cfg.judge.teacher) {
        (Some(j), _) => Some(j),
        (None, None) => Some(teacher),
        (None, Some(_)) => None,
    };
    let judge_ctx = judge.and_then(|j| Some((j, j.context_tokens()?)));
    if let Some((judge, ctx)) = judge_ctx.filter(|_| cfg.judge.enabled) {
        p.extend(judge_cap_beyond(cfg.judge.max_tokens, ctx, &source(judge)));
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(Error::Input(
            p.into_iter().map(|m| Problem::new(config, m)).collect(),
        ))
    }
}

/// Render each template the taxonomy can select, once per (task, format) and per document,
/// so a missing file, a syntax error or an undefined variable shows up before the run.
/// `extra`: stages beyond generation whose templates must render too (judge, inject).
pub fn smoke_render(
    tax: &Taxonomy,
    schemas: &Schemas,
    prompts: &Prompts,
    extra: &[Stage],
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let concept = tax.icd.codes.iter().find(|c| c.billable);
    let seed = SeedAttrs {
        specialty: tax.seeds.specialties[0].clone(),
        age_band: tax.seeds.age_bands[0].clone(),
        sex: tax.seeds.sexes[0].clone(),
        care_setting: tax.seeds.care_settings[0].clone(),
        writing_style: tax.seeds.writing_styles[0].clone(),
        concept_code: concept.map(|c| c.code.clone()).unwrap_or_default(),
        concept_description: concept.map(|c| c.description.clone()).unwrap_or_default(),
        concept_chapter: concept.map(|c| c.chapter.clone()).unwrap_or_default(),
        concept_block: concept.map(|c| c.block.clone()).unwrap_or_default(),
    };
    for (ti, task) in tax.tasks.iter().enumerate() {
        for (di, doc) in tax.documents.iter().enumerate() {
            if tax.compat[ti][di] <= 0.0 {
                continue;
            }
            for format in &task.formats {
                let item = PlanItem {
                    id: "check".into(),
                    task: task.id.clone(),
                    document: doc.id.clone(),
                    family: doc.family.clone(),
                    difficulty: tax.difficulties.last().map(|d| d.level).unwrap_or(1),
                    format: format.clone(),
                    cell_index: 0,
                    seed: seed.clone(),
                };
                let base = prompt::base_context(tax, schemas, &item);
                let full = prompt::with(
                    base.clone(),
                    &[
                        ("document", "Sample document text."),
                        ("instruction", "Sample instruction."),
                        ("previous_output", "{}"),
                        ("validation_error", "sample error"),
                        ("answer", "Sample answer."),
                        ("error_type", "factual_error"),
                        ("error_description", "a sample error"),
                    ],
                );
                let stages = [
                    Stage::Document,
                    Stage::Instruction,
                    Stage::Answer,
                    Stage::Repair,
                ];
                for stage in stages.into_iter().chain(extra.iter().copied()) {
                    let name = prompts.template_for(stage, &item);
                    // One render per template, document type and format is enough.
                    let key = (
                        name.clone(),
                        if stage == Stage::Document {
                            doc.id.clone()
                        } else {
                            String::new()
                        },
                        format.clone(),
                    );
                    if !seen.insert(key) {
                        continue;
                    }
                    if !prompts.exists(&name) {
                        problems.push(Problem::new(
                            prompts.dir().join(&name),
                            "template not found",
                        ));
                        continue;
                    }
                    let ctx = match stage {
                        Stage::Document => base.clone(),
                        Stage::Instruction => {
                            prompt::with(base.clone(), &[("document", "Sample document text.")])
                        }
                        Stage::Answer => prompt::with(
                            base.clone(),
                            &[
                                ("document", "Sample document text."),
                                ("instruction", "Sample instruction."),
                            ],
                        ),
                        Stage::Repair | Stage::Judge | Stage::Inject => full.clone(),
                    };
                    if let Err(p) = prompts.render(&name, &ctx) {
                        if !problems.contains(&p) {
                            problems.push(p);
                        }
                    }
                }
            }
        }
    }
    problems
}
