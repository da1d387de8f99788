//! A reviewer's edit applied to a record and re-validated: an edited field must not be
//! empty, and a `json` record's edited answer must parse and match its task's JSON
//! Schema. The review app refuses an invalid edit; `export` checks it again.

use crate::record::Record;
use crate::review::journal::Edit;
use crate::schemas::{self, Schemas};
use std::path::Path;

/// The record with the edit's fields in place of its own, or what is wrong with the
/// edit. A `json` answer is stored as the engine stores it (compact, canonical JSON).
/// `schemas` is needed only when the edit changes a `json` record's answer.
pub fn apply(rec: &Record, edit: &Edit, schemas: Option<&Schemas>) -> Result<Record, String> {
    let mut out = rec.clone();
    for (name, new, field) in [
        ("instruction", &edit.instruction, &mut out.instruction),
        ("input", &edit.input, &mut out.input),
        ("output", &edit.output, &mut out.output),
    ] {
        if let Some(text) = new {
            if text.trim().is_empty() {
                return Err(format!("the edited {name} is empty"));
            }
            *field = text.clone();
        }
    }
    if let (Some(text), "json") = (&edit.output, rec.output_format.as_str()) {
        let v: serde_json::Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("the edited output is not JSON: {e}"))?;
        let schemas = schemas.ok_or_else(|| {
            "cannot validate the edited JSON output: the run's schemas are not known".to_string()
        })?;
        let schema = schemas.get(&rec.task_type).ok_or_else(|| {
            format!(
                "no JSON Schema for task {} in the run's schemas",
                rec.task_type
            )
        })?;
        schemas::validate(schema, &v).map_err(|e| {
            format!(
                "the edited output does not match the {} schema: {e}",
                rec.task_type
            )
        })?;
        out.output = v.to_string();
    }
    Ok(out)
}

/// The fields of `edit` that differ from the record's (an unchanged field is no edit; a
/// `json` answer re-indented but equal as JSON is unchanged).
pub fn changed(rec: &Record, edit: Edit) -> Edit {
    let keep = |new: Option<String>, old: &str| new.filter(|n| n != old);
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).ok();
    let same_json = |new: &String| {
        rec.output_format == "json"
            && matches!((parse(new), parse(&rec.output)), (Some(a), Some(b)) if a == b)
    };
    Edit {
        instruction: keep(edit.instruction, &rec.instruction),
        input: keep(edit.input, &rec.input),
        output: keep(edit.output, &rec.output).filter(|o| !same_json(o)),
    }
}

/// The JSON Schemas the run was generated with: the taxonomy and schema folders its
/// `manifest.json` names (relative ones against the current directory, as `run` read
/// them).
pub fn run_schemas(run: &Path) -> anyhow::Result<Schemas> {
    let path = run.join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let m: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?;
    let dir = |key: &str| {
        m["config"][key]
            .as_str()
            .map(std::path::PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("{}: no config.{key}", path.display()))
    };
    let (tax_dir, schemas_dir) = (dir("taxonomy_dir")?, dir("schemas_dir")?);
    let problems = |ps: Vec<crate::error::Problem>| {
        let list: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
        anyhow::anyhow!(
            "{}: the run's schemas do not load: {}",
            path.display(),
            list.join("; ")
        )
    };
    let tax = crate::taxonomy::load(&tax_dir).map_err(problems)?;
    Schemas::load(&schemas_dir, &tax).map_err(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> Schemas {
        let tax = crate::taxonomy::load(Path::new("taxonomy")).unwrap();
        Schemas::load(Path::new("schemas"), &tax).unwrap()
    }

    fn coding() -> Record {
        Record {
            id: "a".into(),
            task_type: "clinical_coding".into(),
            output_format: "json".into(),
            instruction: "Code it.".into(),
            input: "Note.".into(),
            output: "{}".into(),
            ..Record::default()
        }
    }

    #[test]
    fn an_edit_is_checked_against_the_task_schema() {
        let s = schemas();
        let bad = Edit {
            output: Some(r#"{"codes": "not a list"}"#.into()),
            ..Edit::default()
        };
        let err = apply(&coding(), &bad, Some(&s)).unwrap_err();
        assert!(err.contains("clinical_coding schema"), "{err}");
        let not_json = Edit {
            output: Some("{codes".into()),
            ..Edit::default()
        };
        assert!(apply(&coding(), &not_json, Some(&s))
            .unwrap_err()
            .contains("not JSON"));
        let empty = Edit {
            instruction: Some("  ".into()),
            ..Edit::default()
        };
        assert!(apply(&coding(), &empty, Some(&s))
            .unwrap_err()
            .contains("edited instruction is empty"));
        let plain = Record {
            output_format: "plain_text".into(),
            ..coding()
        };
        let e = Edit {
            output: Some("A better answer.".into()),
            ..Edit::default()
        };
        assert_eq!(apply(&plain, &e, None).unwrap().output, "A better answer.");
    }

    #[test]
    fn unchanged_fields_are_no_edit() {
        let e = changed(
            &coding(),
            Edit {
                instruction: Some("Code it.".into()),
                input: Some("Note!".into()),
                output: Some("{\n  }".into()),
            },
        );
        assert_eq!(e.output, None, "the same JSON, re-indented");
        assert_eq!(e.instruction, None);
        assert_eq!(e.input.as_deref(), Some("Note!"));
    }
}
