//! Every schema file in `schemas/` (the directory is listed, so a schema added without
//! coverage fails here): it compiles; it accepts every example it carries (the `examples`
//! keyword), its example in `schemas/examples/<name>.json`, the worked example the
//! compact templates show for its task (`templates/compact/examples/<task>.j2`, each
//! document family) and the mock teacher's instances; and for every constraint it uses, at
//! every place it uses it, it rejects a valid instance changed to break that constraint
//! there, with an error from that keyword at that place. A keyword this test cannot break
//! fails it, so a schema that starts using one (`const`, `format`, ...) gets a case here.

use mediflow::schemas::{compile, validate, Schemas, TaskSchema};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Keywords that only describe.
const ANNOTATIONS: &[&str] = &["$schema", "title", "description", "examples"];
/// Keywords that hold subschemas, walked into.
const STRUCTURE: &[&str] = &["properties", "items"];
/// Constraints this test knows how to break.
const CONSTRAINTS: &[&str] = &[
    "type",
    "enum",
    "required",
    "additionalProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
];

/// One step from a value to a part of it: an object key or an array index.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index,
}

/// A subschema and where its instances sit (array items: index 0 of each array).
struct Node<'a> {
    schema: &'a Value,
    at: Vec<Step>,
    /// JSON pointer of the subschema in the schema file.
    pointer: String,
}

fn walk<'a>(
    name: &str,
    schema: &'a Value,
    at: Vec<Step>,
    pointer: String,
    out: &mut Vec<Node<'a>>,
) {
    let obj = schema.as_object().expect("a subschema is an object");
    for k in obj.keys() {
        let k = k.as_str();
        assert!(
            ANNOTATIONS.contains(&k) || STRUCTURE.contains(&k) || CONSTRAINTS.contains(&k),
            "{name}#{pointer}: keyword {k:?} is one tests/schemas.rs cannot break yet: add a case"
        );
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            let mut at = at.clone();
            at.push(Step::Key(k.clone()));
            walk(name, sub, at, format!("{pointer}/properties/{k}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        let mut at = at.clone();
        at.push(Step::Index);
        walk(name, items, at, format!("{pointer}/items"), out);
    }
    out.push(Node {
        schema,
        at,
        pointer,
    });
}

/// The part of `v` at `at`, if `v` has it (index 0 of arrays).
fn get_mut<'v>(v: &'v mut Value, at: &[Step]) -> Option<&'v mut Value> {
    let mut cur = v;
    for s in at {
        cur = match s {
            Step::Key(k) => cur.get_mut(k.as_str())?,
            Step::Index => cur.get_mut(0)?,
        };
    }
    Some(cur)
}

fn pointer_of(at: &[Step]) -> String {
    at.iter()
        .map(|s| match s {
            Step::Key(k) => format!("/{k}"),
            Step::Index => "/0".to_string(),
        })
        .collect()
}

fn type_names(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Break `keyword` of `schema` in `target` (a valid value for it); `None` when the
/// constraint cannot be broken from this value (e.g. an empty array for `maxItems`) or
/// does not constrain anything (`minLength: 0`).
fn break_it(keyword: &str, schema: &Value, target: &mut Value) -> Option<()> {
    let n = |k: &str| schema[k].as_u64();
    match keyword {
        "type" => {
            let allowed = type_names(schema);
            let fits = |v: &Value| {
                allowed.iter().any(|t| match *t {
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "number" => v.is_number(),
                    "boolean" => v.is_boolean(),
                    "array" => v.is_array(),
                    "object" => v.is_object(),
                    "null" => v.is_null(),
                    other => panic!("unknown type {other}"),
                })
            };
            *target = [
                json!("x"),
                json!(7),
                json!(true),
                json!([]),
                json!({}),
                json!(1.5),
            ]
            .into_iter()
            .find(|v| !fits(v))?;
        }
        "enum" => {
            let listed = schema["enum"].as_array().unwrap();
            let v = json!("not_a_listed_value");
            assert!(!listed.contains(&v));
            *target = v;
        }
        "required" => {
            let key = schema["required"].as_array()?.first()?.as_str()?;
            target.as_object_mut()?.remove(key)?;
        }
        "additionalProperties" => {
            if schema["additionalProperties"] != json!(false) {
                return None;
            }
            target
                .as_object_mut()?
                .insert("unexpected_property".into(), json!(1));
        }
        "minLength" => {
            let min = n("minLength")? as usize;
            if min == 0 {
                return None;
            }
            *target = json!("x".repeat(min - 1));
        }
        "maxLength" => *target = json!("x".repeat(n("maxLength")? as usize + 1)),
        "pattern" => {
            let len = n("minLength").unwrap_or(1).max(1) as usize;
            *target = json!("?".repeat(len));
        }
        "minItems" => {
            let min = n("minItems")? as usize;
            if min == 0 {
                return None;
            }
            target.as_array_mut()?.truncate(min - 1);
        }
        "maxItems" => {
            let a = target.as_array_mut()?;
            let first = a.first()?.clone();
            a.resize(n("maxItems")? as usize + 1, first);
        }
        "minimum" => *target = json!(schema["minimum"].as_i64()? - 1),
        "maximum" => *target = json!(schema["maximum"].as_i64()? + 1),
        other => panic!("no way to break {other}"),
    }
    Some(())
}

/// The worked `json` answers of the compact templates for `task`, one per family.
fn template_examples(task: &str, families: &[String]) -> Vec<(String, Value)> {
    let dir = repo().join("templates");
    let file = format!("compact/examples/{task}.j2");
    assert!(
        dir.join(&file).is_file(),
        "{task} has no worked example {file}"
    );
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_loader(minijinja::path_loader(&dir));
    env.set_trim_blocks(true);
    let source = format!("{{% import {file:?} as ex %}}{{{{ ex.answer(\"json\", family) }}}}");
    families
        .iter()
        .map(|family| {
            let text = env
                .render_str(&source, minijinja::context! { family })
                .unwrap_or_else(|e| panic!("{file} ({family}): {e:#}"));
            let v = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{file} ({family}): not JSON ({e}): {text}"));
            (format!("{file} for {family}"), v)
        })
        .collect()
}

/// Every `examples` value inside the schema validates against the subschema it sits in.
fn check_keyword_examples(name: &str, nodes: &[Node]) -> usize {
    let mut n = 0;
    for node in nodes {
        for ex in node.schema["examples"].as_array().into_iter().flatten() {
            let v = jsonschema::validator_for(node.schema).unwrap();
            let errors: Vec<String> = v.iter_errors(ex).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "{name}{}: its example {ex} is invalid: {errors:?}",
                node.pointer
            );
            n += 1;
        }
    }
    n
}

fn schema_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".schema.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "schemas/ lists {} schemas", files.len());
    files
}

/// The valid instances of one schema: its example file, the template examples of its
/// task, and mock instances.
fn valid_instances(
    path: &Path,
    s: &TaskSchema,
    task: Option<&str>,
    families: &[String],
) -> Vec<(String, Value)> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let stem = name.trim_end_matches(".schema.json");
    let ex_path = repo().join(format!("schemas/examples/{stem}.json"));
    let text = std::fs::read_to_string(&ex_path)
        .unwrap_or_else(|e| panic!("{name} has no example {}: {e}", ex_path.display()));
    let mut out = vec![(
        format!("schemas/examples/{stem}.json"),
        serde_json::from_str(&text).unwrap(),
    )];
    if let Some(task) = task {
        out.extend(template_examples(task, families));
    }
    for seed in 0..20 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let inst = mediflow::teacher::mock::instance(&s.value, "", &Default::default(), &mut rng);
        out.push((format!("mock instance (seed {seed})"), inst));
    }
    out
}

#[test]
fn every_schema_accepts_its_examples_and_rejects_each_broken_constraint() {
    let tax = mediflow::taxonomy::load(&repo().join("taxonomy")).unwrap();
    // The loader agrees: every json task has its schema.
    Schemas::load(&repo().join("schemas"), &tax).unwrap();
    let families: Vec<String> = tax.families.iter().map(|f| f.id.clone()).collect();
    let mut broken = 0;
    for path in schema_files() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let s = compile(&path).unwrap_or_else(|p| panic!("{p}"));
        let task = tax
            .tasks
            .iter()
            .find(|t| t.schema == name)
            .map(|t| t.id.as_str());
        assert!(
            task.is_some() || name == "judge.schema.json",
            "{name} belongs to no task of the taxonomy"
        );
        let valid = valid_instances(&path, &s, task, &families);
        for (what, v) in &valid {
            validate(&s, v).unwrap_or_else(|e| panic!("{name}: {what} is invalid: {e}\n{v}"));
        }
        let mut nodes = Vec::new();
        walk(&name, &s.value, Vec::new(), String::new(), &mut nodes);
        check_keyword_examples(&name, &nodes);

        for node in &nodes {
            for &keyword in CONSTRAINTS {
                if node.schema.get(keyword).is_none() {
                    continue;
                }
                // The first valid instance that reaches this place and can be broken here.
                let mut done = false;
                let mut applicable = false;
                for (what, v) in &valid {
                    let mut bad = v.clone();
                    let Some(target) = get_mut(&mut bad, &node.at) else {
                        continue;
                    };
                    if break_it(keyword, node.schema, target).is_none() {
                        continue;
                    }
                    applicable = true;
                    let at = pointer_of(&node.at);
                    let wanted = format!("{}/{keyword}", node.pointer);
                    let errors: Vec<(String, String)> = s
                        .validator
                        .iter_errors(&bad)
                        .map(|e| (e.instance_path().to_string(), e.schema_path().to_string()))
                        .collect();
                    assert!(
                        errors.iter().any(|(i, sp)| *i == at && *sp == wanted),
                        "{name}: {what} with `{keyword}` broken at {at:?} is not rejected by \
                         {wanted}; errors: {errors:?}\n{bad}"
                    );
                    done = true;
                    broken += 1;
                    break;
                }
                // A constraint that constrains nothing (minLength 0, minItems 0) is fine;
                // one that does but that no valid instance reaches needs an example.
                let vacuous = (matches!(keyword, "minLength" | "minItems")
                    && node.schema[keyword].as_u64() == Some(0))
                    || (keyword == "additionalProperties" && node.schema[keyword] != json!(false));
                assert!(
                    done || (vacuous && !applicable),
                    "{name}{}: no valid instance reaches this `{keyword}` to break it (an \
                     empty list in every example?): extend schemas/examples/",
                    node.pointer
                );
            }
        }
    }
    assert!(broken > 100, "only {broken} broken instances checked");
}

#[test]
fn unknown_keywords_are_refused_and_each_break_is_rejected() {
    // The walker refuses keywords it cannot break.
    let s = json!({"type": "object", "properties": {"a": {"type": "string", "format": "date"}}});
    let r =
        std::panic::catch_unwind(|| walk("test", &s, Vec::new(), String::new(), &mut Vec::new()));
    assert!(r.is_err(), "`format` went unnoticed");
    // And each kind of break is one the validator rejects.
    let s = json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 3}},
                   "required": ["n"], "additionalProperties": false});
    let v = jsonschema::validator_for(&s).unwrap();
    for keyword in ["minimum", "maximum", "type"] {
        let mut bad = json!({"n": 1});
        break_it(keyword, &s["properties"]["n"], bad.get_mut("n").unwrap()).unwrap();
        assert!(!v.is_valid(&bad), "{keyword}: {bad}");
    }
    for keyword in ["required", "additionalProperties"] {
        let mut bad = json!({"n": 1});
        break_it(keyword, &s, &mut bad).unwrap();
        assert!(!v.is_valid(&bad), "{keyword}: {bad}");
    }
}
