//! Prompt rendering: a minijinja environment over `templates_dir` with strict undefined
//! variables. Each template defines a `system` and a `user` block, rendered separately
//! into the two chat messages of one teacher request.

use crate::error::Problem;
use crate::plan::PlanItem;
use crate::schemas::Schemas;
use crate::taxonomy::Taxonomy;
use crate::teacher::Message;
use crate::util;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pipeline stages that call the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Document,
    Instruction,
    Answer,
    Repair,
    Judge,
    /// `mediflow dpo --strategy error_injection`: rewrite an answer with one error.
    Inject,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Document => "document",
            Stage::Instruction => "instruction",
            Stage::Answer => "answer",
            Stage::Repair => "repair",
            Stage::Judge => "judge",
            Stage::Inject => "inject",
        }
    }
}

pub struct Prompts {
    env: Environment<'static>,
    dir: PathBuf,
    /// Template name -> short content hash of the file.
    hashes: HashMap<String, String>,
    pub hash: String,
}

impl Prompts {
    pub fn load(dir: &Path) -> Result<Prompts, Vec<Problem>> {
        if !dir.is_dir() {
            return Err(vec![Problem::new(dir, "templates folder not found")]);
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_loader(minijinja::path_loader(dir));
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(false);
        let mut hashes = HashMap::new();
        let mut problems = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "j2") {
                    let name = p
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    match std::fs::read(&p) {
                        Ok(bytes) => {
                            hashes.insert(name, util::short_hash(bytes));
                        }
                        Err(e) => problems.push(Problem::new(&p, format!("cannot read: {e}"))),
                    }
                }
            }
        }
        let prompts = Prompts {
            env,
            dir: dir.to_path_buf(),
            hashes,
            hash: util::hash_dir(dir),
        };
        let mut names: Vec<&String> = prompts.hashes.keys().collect();
        names.sort();
        for name in names {
            if let Err(e) = prompts.env.get_template(name) {
                problems.push(prompts.problem(&e));
            }
        }
        if problems.is_empty() {
            Ok(prompts)
        } else {
            Err(problems)
        }
    }

    fn problem(&self, e: &minijinja::Error) -> Problem {
        let file = e
            .name()
            .map(|n| self.dir.join(n))
            .unwrap_or_else(|| self.dir.clone());
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        // Quote the offending line: minijinja's message does not name the variable.
        if let Some(src) = e.line().and_then(|l| {
            std::fs::read_to_string(&file)
                .ok()?
                .lines()
                .nth(l - 1)
                .map(String::from)
        }) {
            msg.push_str(&format!(" in `{}`", src.trim()));
        }
        Problem::at(file, e.line(), msg)
    }

    /// Which template a stage of an item uses (document- and task-specific files win).
    pub fn template_for(&self, stage: Stage, item: &PlanItem) -> String {
        let pick = |specific: String, fallback: String| {
            if self.hashes.contains_key(&specific) {
                specific
            } else {
                fallback
            }
        };
        match stage {
            Stage::Document => pick(
                format!("document/{}.j2", item.document),
                format!("document/{}.j2", item.family),
            ),
            Stage::Instruction => format!("instruction/{}.j2", item.task),
            Stage::Answer => pick(
                format!("answer/{}.j2", item.task),
                "answer/_default.j2".into(),
            ),
            Stage::Repair => "repair.j2".into(),
            Stage::Judge => "judge.j2".into(),
            Stage::Inject => "dpo/inject.j2".into(),
        }
    }

    /// `name@hash` provenance tag for a template.
    pub fn tag(&self, name: &str) -> String {
        format!(
            "{name}@{}",
            self.hashes
                .get(name)
                .map(String::as_str)
                .unwrap_or("missing")
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn exists(&self, name: &str) -> bool {
        self.hashes.contains_key(name)
    }

    /// Render a template's `system` and `user` blocks into chat messages.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<Vec<Message>, Problem> {
        let tmpl = self.env.get_template(name).map_err(|e| self.problem(&e))?;
        // `eval_to_state` runs `extends` and keeps the state so each block renders alone.
        #[allow(deprecated)]
        let mut state = tmpl.eval_to_state(ctx).map_err(|e| self.problem(&e))?;
        let mut block = |b: &str| -> Result<String, Problem> {
            let text = state.render_block(b).map_err(|e| self.problem(&e))?;
            let text = text.trim().to_string();
            if text.is_empty() {
                return Err(Problem::new(
                    self.dir.join(name),
                    format!("block `{b}` rendered to empty text"),
                ));
            }
            Ok(text)
        };
        let system = block("system")?;
        let user = block("user")?;
        Ok(vec![Message::system(system), Message::user(user)])
    }
}

/// The context every stage sees. Stage outputs (`document`, `instruction`, ...) are added
/// by the caller as they become available; strict mode rejects anything else.
pub fn base_context(tax: &Taxonomy, schemas: &Schemas, item: &PlanItem) -> Value {
    let task = tax.task(&item.task).expect("planned task exists");
    let doc = tax
        .document(&item.document)
        .expect("planned document exists");
    let family = tax
        .family(&doc.family)
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let diff = tax
        .difficulty(item.difficulty)
        .expect("planned difficulty exists");
    let schema = schemas
        .get(&item.task)
        .map(|s| s.pretty.clone())
        .unwrap_or_default();
    let s = &item.seed;
    json!({
        "task": { "id": task.id, "name": task.name, "description": task.description },
        "doc": {
            "id": doc.id, "name": doc.name, "family": doc.family, "family_name": family,
            "description": doc.description, "sections": doc.sections,
            "min_words": doc.length_words[0], "max_words": doc.length_words[1],
        },
        "difficulty": { "level": diff.level, "name": diff.name, "description": diff.description },
        "format": item.format,
        "schema": schema,
        "seed": {
            "specialty": s.specialty, "age_band": s.age_band, "sex": s.sex,
            "care_setting": s.care_setting, "writing_style": s.writing_style,
            "concept": {
                "code": s.concept_code, "description": s.concept_description,
                "chapter": s.concept_chapter, "block": s.concept_block,
            },
        },
    })
}

/// Add stage outputs to a context.
pub fn with(mut ctx: Value, pairs: &[(&str, &str)]) -> Value {
    let obj = ctx.as_object_mut().expect("context is an object");
    for (k, v) in pairs {
        obj.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    ctx
}
