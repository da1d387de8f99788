//! Per-task JSON Schemas for `json` outputs: loaded from `schemas/`, each compiled once,
//! kept with its pretty-printed text (embedded in prompts) and content hash.

use crate::error::Problem;
use crate::taxonomy::Taxonomy;
use crate::util;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

pub struct TaskSchema {
    pub value: Value,
    pub pretty: String,
    pub validator: jsonschema::Validator,
    pub hash: String,
}

pub struct Schemas {
    by_task: HashMap<String, TaskSchema>,
    pub hash: String,
}

impl Schemas {
    pub fn get(&self, task: &str) -> Option<&TaskSchema> {
        self.by_task.get(task)
    }

    /// Load and compile the schema of every task that supports the `json` format.
    pub fn load(dir: &Path, tax: &Taxonomy) -> Result<Schemas, Vec<Problem>> {
        let (schemas, problems) = Self::load_partial(dir, tax);
        if problems.is_empty() {
            Ok(schemas)
        } else {
            Err(problems)
        }
    }

    /// Like `load`, but also returns the schemas that did compile (so the other checks can
    /// still run and every problem is reported at once).
    pub fn load_partial(dir: &Path, tax: &Taxonomy) -> (Schemas, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut by_task = HashMap::new();
        for t in tax
            .tasks
            .iter()
            .filter(|t| t.formats.iter().any(|f| f == "json"))
        {
            let path = dir.join(&t.schema);
            match compile(&path) {
                Ok(s) => {
                    by_task.insert(t.id.clone(), s);
                }
                Err(p) => problems.push(p),
            }
        }
        (
            Schemas {
                by_task,
                hash: util::hash_dir(dir),
            },
            problems,
        )
    }
}

/// Read, parse and compile one schema file.
pub fn compile(path: &Path) -> Result<TaskSchema, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, format!("cannot read schema: {e}")))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Problem::at(path, Some(e.line()), format!("invalid JSON: {e}")))?;
    if value.get("type").and_then(Value::as_str) != Some("object") {
        return Err(Problem::new(
            path,
            "schema root must have \"type\": \"object\"",
        ));
    }
    let validator = jsonschema::validator_for(&value)
        .map_err(|e| Problem::new(path, format!("invalid JSON Schema: {e}")))?;
    let pretty = serde_json::to_string_pretty(&value).expect("serializable");
    Ok(TaskSchema {
        hash: util::short_hash(&text),
        value,
        pretty,
        validator,
    })
}

/// Up to `max` violations of `instance`, each with where it is.
pub fn violations(validator: &jsonschema::Validator, instance: &Value, max: usize) -> Vec<String> {
    validator
        .iter_errors(instance)
        .take(max)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect()
}

/// Validate an instance; the error text lists every violation (for repair prompts).
pub fn validate(schema: &TaskSchema, instance: &Value) -> Result<(), String> {
    let errors = violations(&schema.validator, instance, 8);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Pull the JSON object out of a teacher answer: tolerate surrounding code fences or prose.
pub fn extract_json(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Ok(v);
    }
    let (Some(start), Some(end)) = (t.find('{'), t.rfind('}')) else {
        return Err("no JSON object found in the answer".into());
    };
    if end < start {
        return Err("no JSON object found in the answer".into());
    }
    serde_json::from_str::<Value>(&t[start..=end]).map_err(|e| format!("invalid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_json_tolerates_fences_and_rejects_garbage() {
        assert_eq!(extract_json("```json\n{\"a\": 1}\n```").unwrap()["a"], 1);
        assert_eq!(
            extract_json("Here: {\"a\": [1,2]} done").unwrap()["a"][1],
            2
        );
        assert!(extract_json("no json here").is_err());
        assert!(extract_json("{\"a\": ").is_err());
    }
}
