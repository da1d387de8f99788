//! Task files (`evals/*.yaml`, or `.toml`): what to ask, of which items, and how to score.
//! `load` reads every file named, checks everything (schema, templates, metrics, sources,
//! every item's prompt renders) and reports all problems at once, naming the file, before
//! any model is called.

use super::icd_mcq::LETTERS;
use super::metrics::MetricSpec;
use super::source;
pub use super::source::SourceSpec;
use crate::error::{Error, Problem};
use crate::taxonomy::IcdTable;
use crate::teacher::Message;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One task file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique among the tasks of one eval; names the task in results.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub source: SourceSpec,
    pub prompt: PromptSpec,
    /// The answer's JSON Schema: a file (relative to the task file) or inline.
    pub schema: SchemaSpec,
    /// The first metric's first score is the task's headline (used by the macro average
    /// and by `eval compare`).
    pub metrics: Vec<MetricSpec>,
    #[serde(default)]
    pub scoring: Scoring,
    /// Token cap of a generated answer.
    #[serde(default = "d_max_tokens")]
    pub max_tokens: u32,
}

fn d_max_tokens() -> u32 {
    1024
}
/// minijinja templates of the two chat messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub system: String,
    pub user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SchemaSpec {
    File(PathBuf),
    Inline(serde_json::Map<String, Value>),
}

/// How answers are obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Generate the JSON answer and parse it.
    #[default]
    Generate,
    /// Multiple choice: the option with the highest log-likelihood (needs a backend with
    /// log-probabilities).
    Loglikelihood,
    /// Log-likelihood where the backend has log-probabilities, else generation.
    Auto,
}

/// One item, its prompts rendered.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    /// The prompt when generating.
    pub messages: Vec<Message>,
    /// The prompt when scoring options by log-likelihood (multiple choice only).
    pub ll_messages: Option<Vec<Message>>,
    /// Multiple choice: the option texts (the answer field holds their letters).
    pub options: Vec<String>,
    pub reference: Value,
}

pub struct Task {
    pub spec: TaskSpec,
    pub path: PathBuf,
    pub schema: Value,
    pub validator: jsonschema::Validator,
    /// The code table of a `code_match` metric.
    pub icd: Option<Arc<IcdTable>>,
    pub items: Vec<Item>,
    /// The prompt of a `judge` metric.
    pub judge: Option<JudgeTemplate>,
    /// Rows of the source left out because their reference is not a JSON object.
    pub skipped: usize,
    /// Short hash of the file (a resumed eval must use the same tasks).
    pub hash: String,
}

impl Task {
    /// The headline score's name.
    pub fn headline(&self) -> &'static str {
        self.spec.metrics[0].names()[0]
    }
    pub fn is_multiple_choice(&self) -> bool {
        matches!(self.spec.source, SourceSpec::Icd10cmMcq { .. })
    }
}

/// A judge metric's template: rendered with `prompt` (what the model was asked, as plain
/// text), `reference` and `answer` (pretty JSON).
#[derive(Clone)]
pub struct JudgeTemplate {
    pub prompts: Arc<crate::prompt::Prompts>,
    pub name: String,
}

impl JudgeTemplate {
    fn load(path: &Path) -> Result<JudgeTemplate, Vec<Problem>> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(vec![Problem::new(path, "not a template file")]);
        };
        let prompts = crate::prompt::Prompts::load(dir)?;
        let name = name.to_string_lossy().into_owned();
        if !prompts.exists(&name) {
            return Err(vec![Problem::new(path, "judge template not found")]);
        }
        let t = JudgeTemplate {
            prompts: Arc::new(prompts),
            name,
        };
        t.render("task", &json!({"a": 1}), &json!({"a": 2}))
            .map_err(|p| vec![p])?;
        Ok(t)
    }

    pub fn render(
        &self,
        prompt: &str,
        reference: &Value,
        answer: &Value,
    ) -> Result<Vec<Message>, Problem> {
        let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("serializable");
        self.prompts.render(
            &self.name,
            &json!({ "prompt": prompt, "reference": pretty(reference), "answer": pretty(answer) }),
        )
    }
}

/// The task files named: files as given, folders' `*.yaml|*.yml|*.toml` in name order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(format!("reading {}", p.display()), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .is_some_and(|x| x == "yaml" || x == "yml" || x == "toml")
                })
                .collect();
            v.sort();
            if v.is_empty() {
                problems.push(Problem::new(p, "no task files (*.yaml, *.yml, *.toml)"));
            }
            out.extend(v);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            problems.push(Problem::new(p, "task file or folder not found"));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::Input(problems))
    }
}

/// Load and check every task; `data` overrides the export directory of export tasks.
pub fn load(paths: &[PathBuf], data: Option<&Path>) -> Result<Vec<Task>, Error> {
    let files = expand(paths)?;
    let mut problems = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    let mut tables: HashMap<PathBuf, Arc<IcdTable>> = HashMap::new();
    for f in &files {
        match load_one(f, data, &mut tables) {
            Ok(t) => tasks.push(t),
            Err(mut p) => problems.append(&mut p),
        }
    }
    let mut names = HashSet::new();
    for t in &tasks {
        if !names.insert(t.spec.name.clone()) {
            problems.push(Problem::new(
                &t.path,
                format!("task name {:?} is used by another task file", t.spec.name),
            ));
        }
    }
    if problems.is_empty() {
        Ok(tasks)
    } else {
        Err(Error::Input(problems))
    }
}

fn parse_spec(path: &Path) -> Result<(TaskSpec, String), Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, format!("cannot read: {e}")))?;
    let spec = if path.extension().is_some_and(|x| x == "toml") {
        crate::util::load_toml(path)?
    } else {
        serde_norway::from_str(&text)
            .map_err(|e| Problem::at(path, e.location().map(|l| l.line()), e.to_string()))?
    };
    Ok((spec, crate::util::short_hash(&text)))
}

fn load_one(
    path: &Path,
    data: Option<&Path>,
    tables: &mut HashMap<PathBuf, Arc<IcdTable>>,
) -> Result<Task, Vec<Problem>> {
    let (spec, hash) = parse_spec(path).map_err(|p| vec![p])?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();
    let mut bad = |m: String| problems.push(Problem::new(path, m));
    if spec.name.trim().is_empty() || spec.name.contains(['/', '\\', ' ']) {
        bad(format!(
            "`name` must be a non-empty word, got {:?}",
            spec.name
        ));
    }
    if spec.metrics.is_empty() {
        bad("`metrics` is empty: name at least one".into());
    }
    if spec.max_tokens == 0 {
        bad("`max_tokens` must be at least 1".into());
    }
    let mut seen = HashSet::new();
    for m in &spec.metrics {
        for n in m.names() {
            if !seen.insert(n) {
                bad(format!("two metrics both yield the score `{n}`"));
            }
        }
        match m {
            MetricSpec::SpanF1 { keys, .. } if keys.is_empty() => {
                bad("`span_f1` needs at least one key".into())
            }
            _ => {}
        }
    }
    let mcq = matches!(spec.source, SourceSpec::Icd10cmMcq { .. });
    if spec.scoring != Scoring::Generate && !mcq {
        bad(format!(
            "`scoring: {}` needs a multiple-choice source (icd10cm_mcq)",
            serde_json::to_value(spec.scoring).expect("serializable")
        ));
    }
    let schema = match &spec.schema {
        SchemaSpec::File(f) => match crate::schemas::compile(&base.join(f)) {
            Ok(s) => Some((s.value, s.validator)),
            Err(p) => {
                problems.push(p);
                None
            }
        },
        SchemaSpec::Inline(m) => {
            let v = Value::Object(m.clone());
            match jsonschema::validator_for(&v) {
                Ok(val) if v["type"] == "object" => Some((v, val)),
                Ok(_) => {
                    bad("inline `schema` must have \"type\": \"object\"".into());
                    None
                }
                Err(e) => {
                    bad(format!("inline `schema` is not a valid JSON Schema: {e}"));
                    None
                }
            }
        }
    };
    let (mut icd, mut judge) = (None, None);
    for m in &spec.metrics {
        let r = match m {
            MetricSpec::CodeMatch { table, .. } => {
                source::table_at(&base.join(table), tables).map(|t| icd = Some(t))
            }
            MetricSpec::Judge { template } => {
                JudgeTemplate::load(&base.join(template)).map(|t| judge = Some(t))
            }
            _ => Ok(()),
        };
        if let Err(mut p) = r {
            problems.append(&mut p);
        }
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    for (name, src) in [("system", &spec.prompt.system), ("user", &spec.prompt.user)] {
        if let Err(e) = env.add_template_owned(name.to_string(), src.clone()) {
            problems.push(Problem::new(path, format!("prompt.{name}: {e}")));
        }
    }
    let rows = match source::rows(&spec.source, path, data, tables) {
        Ok(r) => Some(r),
        Err(mut p) => {
            problems.append(&mut p);
            None
        }
    };
    if let (true, Some((_, v))) = (mcq, &schema) {
        if !LETTERS.iter().all(|l| v.is_valid(&json!({ "answer": l }))) {
            problems.push(Problem::new(
                path,
                "a multiple-choice task's schema must accept {\"answer\": \"A\"} .. \"D\"",
            ));
        }
    }
    let (Some((schema, validator)), Some((rows, skipped)), true) =
        (schema, rows, problems.is_empty())
    else {
        return Err(problems);
    };
    let pretty = serde_json::to_string_pretty(&schema).expect("serializable");
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let render = |mode: &str| -> Result<Vec<Message>, Problem> {
            let mut ctx = row.vars.clone();
            ctx["schema"] = json!(pretty);
            ctx["mode"] = json!(mode);
            let mut msgs = Vec::new();
            for (name, make) in [
                ("system", Message::system as fn(String) -> Message),
                ("user", Message::user),
            ] {
                let text = env
                    .get_template(name)
                    .and_then(|t| t.render(&ctx))
                    .map_err(|e| {
                        Problem::new(path, format!("prompt.{name} (item {}): {e}", row.id))
                    })?;
                msgs.push(make(text.trim().to_string()));
            }
            Ok(msgs)
        };
        let rendered = render("generate").and_then(|g| {
            let ll = if mcq {
                Some(render("loglikelihood")?)
            } else {
                None
            };
            Ok((g, ll))
        });
        match rendered {
            Ok((messages, ll_messages)) => items.push(Item {
                id: row.id,
                messages,
                ll_messages,
                options: row.options,
                reference: row.reference,
            }),
            // One item's failure says what is wrong with the template.
            Err(p) => return Err(vec![p]),
        }
    }
    Ok(Task {
        spec,
        path: path.to_path_buf(),
        schema,
        validator,
        icd,
        judge,
        items,
        skipped,
        hash,
    })
}

/// Per-task facts for results and manifests.
pub fn fingerprint(tasks: &[Task]) -> BTreeMap<String, String> {
    tasks
        .iter()
        .map(|t| (t.spec.name.clone(), t.hash.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_task_file_loads_like_its_yaml_twin() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let yaml = repo.join("evals/icd10cm_code_to_description.yaml");
        let spec: TaskSpec =
            serde_norway::from_str(&std::fs::read_to_string(&yaml).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("t.toml");
        let mut spec_abs = spec.clone();
        if let SourceSpec::Icd10cmMcq { table, .. } = &mut spec_abs.source {
            *table = repo.join("taxonomy/icd10cm");
        }
        std::fs::write(&toml_path, toml::to_string(&spec_abs).unwrap()).unwrap();
        // A folder holds task files and anything else (ignored).
        std::fs::write(dir.path().join("notes.md"), "not a task").unwrap();
        let a = load(&[yaml], None).unwrap();
        let b = load(&[dir.path().to_path_buf()], None).unwrap();
        assert_eq!(b.len(), 1);
        let (a, b) = (&a[0], &b[0]);
        assert_eq!(a.items.len(), 200);
        assert_eq!(a.items.len(), b.items.len());
        // (The prompt quotes the schema in the file's key order, which toml sorts.)
        assert_eq!(a.schema, b.schema);
        for (x, y) in a.items.iter().zip(&b.items) {
            assert_eq!(
                (&x.id, &x.options, &x.reference, &x.ll_messages),
                (&y.id, &y.options, &y.reference, &y.ll_messages)
            );
        }
        // The two prompts differ only where the template asks for the JSON answer.
        let it = &a.items[0];
        assert!(it.messages[1].content.contains("```json"));
        let ll = &it.ll_messages.as_ref().unwrap()[1].content;
        assert!(ll.ends_with("Answer:") && !ll.contains("```json"), "{ll}");
        for (k, o) in it.options.iter().enumerate() {
            assert!(ll.contains(&format!("{}. {o}", LETTERS[k])));
        }
    }
}
