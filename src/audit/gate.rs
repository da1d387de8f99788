//! The gate an audited row goes through: the run's heuristic filters and grounding
//! (`quality::filters::check_all`, every drop listed), then, with a teacher, the run's judge
//! stage (`engine::worker::judge_with`, the same code `run` calls), in a prompt context
//! built from the row. Deduplication is the driver's (in input order).

use crate::config::RunConfig;
use crate::engine::{worker, Shared, JUDGE_TEMPLATE};
use crate::error::Error;
use crate::plan::{PlanItem, SeedAttrs};
use crate::prompt::{self, Prompts};
use crate::quality::calibration::{Calibration, Selection};
use crate::quality::examples::Examples;
use crate::quality::filters::{self, Drop, FilterCtx};
use crate::record::{Record, Rejection};
use crate::schemas::{self, Schemas};
use crate::taxonomy::{self, Taxonomy};
use crate::teacher::Teacher;
use serde_json::{json, Value};
use std::sync::Arc;

/// Notes on rows the taxonomy does not know (those checks are skipped, not failed).
pub const UNKNOWN_TASK: &str = "task_type_not_in_taxonomy";
pub const UNKNOWN_DOCUMENT: &str = "input_data_not_in_taxonomy";

/// No teacher: what the checks that need no model read.
struct Plain {
    cfg: RunConfig,
    tax: Taxonomy,
    schemas: Schemas,
    /// The config's templates' worked examples (empty where there are none).
    examples: Examples,
}

enum Inner {
    Plain(Box<Plain>),
    /// With the judge (the engine's shared state, its teacher being the judge's).
    Judged(Arc<Shared>),
}

pub struct Gate {
    inner: Inner,
}

impl Gate {
    /// Load the taxonomy and schemas (and, with a judge teacher, the templates and the
    /// verdict schema) that `cfg` names; every problem at once.
    pub fn load(cfg: RunConfig, judge: Option<Arc<dyn Teacher>>) -> Result<Gate, Error> {
        let mut problems = Vec::new();
        let tax = taxonomy::load(&cfg.taxonomy_dir)
            .map_err(|p| problems.extend(p))
            .ok();
        let Some(tax) = tax else {
            return Err(Error::Input(problems));
        };
        let (schemas, p) = Schemas::load_partial(&cfg.schemas_dir, &tax);
        problems.extend(p);
        let Some(teacher) = judge else {
            return match problems.is_empty() {
                true => {
                    let examples = Examples::from_dir(&cfg.templates_dir);
                    Ok(Gate {
                        inner: Inner::Plain(Box::new(Plain {
                            cfg,
                            tax,
                            schemas,
                            examples,
                        })),
                    })
                }
                false => Err(Error::Input(problems)),
            };
        };
        let prompts = Prompts::load(&cfg.templates_dir)
            .map_err(|p| problems.extend(p))
            .ok();
        let path = cfg
            .judge
            .schema
            .clone()
            .unwrap_or_else(|| cfg.schemas_dir.join("judge.schema.json"));
        let verdict = schemas::compile(&path).map_err(|p| problems.push(p)).ok();
        if let Some(cal) = &cfg.judge.calibration {
            if let Err(p) = Calibration::load(cal) {
                problems.push(p);
            }
        }
        if let Some(prompts) = &prompts {
            // The judge template must render in the context audited rows get.
            let ctx = prompt::with(
                judge_context(&tax, &schemas, &Record::default()),
                &[("document", "d"), ("instruction", "i"), ("answer", "a")],
            );
            if let Err(p) = prompts.render(JUDGE_TEMPLATE, &ctx) {
                problems.push(p);
            }
        }
        match (prompts, verdict) {
            (Some(prompts), Some(verdict)) if problems.is_empty() => {
                let sh = Shared::new(cfg, tax, schemas, prompts, teacher).with_judge(None, verdict);
                Ok(Gate {
                    inner: Inner::Judged(Arc::new(sh)),
                })
            }
            _ => Err(Error::Input(problems)),
        }
    }

    pub fn cfg(&self) -> &RunConfig {
        match &self.inner {
            Inner::Plain(p) => &p.cfg,
            Inner::Judged(sh) => &sh.cfg,
        }
    }

    pub fn tax(&self) -> &Taxonomy {
        match &self.inner {
            Inner::Plain(p) => &p.tax,
            Inner::Judged(sh) => &sh.tax,
        }
    }

    fn schemas(&self) -> &Schemas {
        match &self.inner {
            Inner::Plain(p) => &p.schemas,
            Inner::Judged(sh) => &sh.schemas,
        }
    }

    fn examples(&self) -> &Examples {
        match &self.inner {
            Inner::Plain(p) => &p.examples,
            Inner::Judged(sh) => &sh.prompts.examples,
        }
    }

    /// The engine state behind the judge, if there is one.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        match &self.inner {
            Inner::Judged(sh) => Some(sh),
            Inner::Plain(_) => None,
        }
    }

    /// Whether the judge's scores select, and why not.
    pub fn selection(&self) -> Option<&Selection> {
        self.shared()
            .and_then(|sh| sh.judge.as_ref())
            .map(|j| &j.selection)
    }

    /// The judge template's `name@hash` (calibrations are tied to it).
    pub fn judge_template(&self) -> Option<String> {
        self.shared().map(|sh| sh.prompts.tag(JUDGE_TEMPLATE))
    }

    /// Every filter's drop, in run order (empty: the row passes the filters).
    pub fn filters(&self, rec: &Record) -> Vec<Drop> {
        let cx = FilterCtx {
            tax: self.tax(),
            schemas: self.schemas(),
            cfg: &self.cfg().filters,
            examples: Some(self.examples()),
        };
        filters::check_all(rec, &cx)
    }

    /// What the taxonomy does not know about a row (checks that need it are skipped).
    pub fn unknowns(&self, rec: &Record) -> Vec<&'static str> {
        let tax = self.tax();
        let mut v = Vec::new();
        if tax.task(&rec.task_type).is_none() {
            v.push(UNKNOWN_TASK);
        }
        if tax.document(&rec.input_data).is_none() {
            v.push(UNKNOWN_DOCUMENT);
        }
        v
    }

    /// The run's judge stage on a row (None without a judge): the record with its scores,
    /// or the rejection (`judge_failed`, or `judge_below_threshold` when it selects).
    pub async fn judge(&self, rec: Record) -> Option<Result<Record, Rejection>> {
        let sh = self.shared()?;
        let j = sh.judge.as_ref()?;
        let base = judge_context(&sh.tax, &sh.schemas, &rec);
        Some(worker::judge_with(sh, j, rec, JUDGE_TEMPLATE, base).await)
    }
}

/// The planned item a row would have come from (ids and seed attributes from the row).
fn plan_item(rec: &Record, family: &str) -> PlanItem {
    PlanItem {
        id: rec.id.clone(),
        task: rec.task_type.clone(),
        document: rec.input_data.clone(),
        family: family.to_string(),
        difficulty: rec.difficulty_level,
        format: rec.output_format.clone(),
        cell_index: 0,
        seed: SeedAttrs {
            specialty: rec.specialty.clone(),
            age_band: rec.age_band.clone(),
            sex: rec.sex.clone(),
            care_setting: rec.care_setting.clone(),
            writing_style: rec.writing_style.clone(),
            concept_code: rec.concept_code.clone(),
            concept_description: rec.concept_description.clone(),
            concept_chapter: String::new(),
            concept_block: String::new(),
        },
    }
}

/// The judge's prompt context for a row: the run's (`prompt::base_context`) when the
/// taxonomy knows its task, document type and difficulty; else the same keys with what
/// is known and neutral names for the rest ("clinical task", "clinical document").
pub fn judge_context(tax: &Taxonomy, schemas: &Schemas, rec: &Record) -> Value {
    let (task, doc, diff) = (
        tax.task(&rec.task_type),
        tax.document(&rec.input_data),
        tax.difficulty(rec.difficulty_level),
    );
    if let (Some(_), Some(d), Some(_)) = (task, doc, diff) {
        return prompt::base_context(tax, schemas, &plan_item(rec, &d.family));
    }
    fallback_context(tax, schemas, rec)
}

fn fallback_context(tax: &Taxonomy, schemas: &Schemas, rec: &Record) -> Value {
    let (task, doc, diff) = (
        tax.task(&rec.task_type),
        tax.document(&rec.input_data),
        tax.difficulty(rec.difficulty_level),
    );
    let named = |id: &str, neutral: &str| match id {
        "" | "unknown" => neutral.to_string(),
        id => id.replace('_', " "),
    };
    let family = doc.and_then(|d| tax.family(&d.family));
    let item = plan_item(rec, doc.map_or("", |d| d.family.as_str()));
    let s = &item.seed;
    json!({
        "task": {
            "id": rec.task_type,
            "name": task.map_or_else(|| named(&rec.task_type, "clinical task"), |t| t.name.clone()),
            "description": task.map_or("", |t| t.description.as_str()),
        },
        "doc": {
            "id": rec.input_data,
            "name": doc.map_or_else(|| named(&rec.input_data, "clinical document"), |d| d.name.clone()),
            "family": item.family,
            "family_name": family.map_or("", |f| f.name.as_str()),
            "description": doc.map_or("", |d| d.description.as_str()),
            "sections": doc.map_or(&[][..], |d| d.sections.as_slice()),
            "min_words": doc.map_or(0, |d| d.length_words[0]),
            "max_words": doc.map_or(0, |d| d.length_words[1]),
        },
        "difficulty": {
            "level": rec.difficulty_level,
            "name": diff.map_or("unspecified", |d| d.name.as_str()),
            "description": diff.map_or("", |d| d.description.as_str()),
        },
        "format": rec.output_format,
        "schema": schemas.get(&rec.task_type).map(|s| s.pretty.clone()).unwrap_or_default(),
        "people": prompt::people(&item.id, &s.sex),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_fallback_context_is_the_runs_when_everything_is_known() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tax = taxonomy::load(&root.join("taxonomy")).unwrap();
        let (schemas, _) = Schemas::load_partial(&root.join("schemas"), &tax);
        let doc = &tax.documents[0];
        let rec = Record {
            task_type: tax.tasks[0].id.clone(),
            input_data: doc.id.clone(),
            difficulty_level: tax.difficulties[0].level,
            output_format: "json".into(),
            specialty: "cardiology".into(),
            ..Default::default()
        };
        let run = prompt::base_context(&tax, &schemas, &plan_item(&rec, &doc.family));
        assert_eq!(fallback_context(&tax, &schemas, &rec), run);
        assert_eq!(judge_context(&tax, &schemas, &rec), run);
        // Unknown task and document: neutral names, the same keys.
        let odd = Record {
            task_type: "unknown".into(),
            input_data: "tweet".into(),
            ..Default::default()
        };
        let v = judge_context(&tax, &schemas, &odd);
        assert_eq!(v["task"]["name"], "clinical task");
        assert_eq!(v["doc"]["name"], "tweet");
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = Vec::new();
            for (a, x) in v.as_object().unwrap() {
                k.push(a.clone());
                if let Some(o) = x.as_object() {
                    k.extend(o.keys().map(|b| format!("{a}.{b}")));
                }
            }
            k
        };
        assert_eq!(keys(&v), keys(&run));
    }
}
