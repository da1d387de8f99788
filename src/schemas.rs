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

/// Pull the JSON object out of a teacher answer. An answer that is JSON as a whole is
/// taken as it is (whatever its type: the schema then says what is wrong with it).
/// Otherwise the first fenced code block (```` ```json ```` or untagged) whose content
/// parses as an object wins, then the first balanced `{...}` in the text that parses as
/// an object. Braces are balanced the way JSON reads them (braces inside strings and
/// escaped quotes do not count), so prose with braces before or after the object, or a
/// second object, does not change which one is found. A candidate that looks like JSON
/// (`{` then `"` or `}`) but does not parse is skipped whole, not searched inside: the
/// objects nested in a malformed or truncated answer are parts of it, not the answer.
pub fn extract_json(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Ok(v);
    }
    let mut first_error: Option<String> = None;
    for block in fenced_blocks(t) {
        match serde_json::from_str::<Value>(block.trim()) {
            Ok(v) if v.is_object() => return Ok(v),
            _ => {}
        }
    }
    let bytes = t.as_bytes();
    let mut from = 0;
    while let Some(off) = t[from..].find('{') {
        let start = from + off;
        let looks_like_json = t[start + 1..]
            .trim_start()
            .starts_with(|c| c == '"' || c == '}');
        match balanced_end(bytes, start) {
            None if looks_like_json => {
                let msg = format!(
                    "unterminated JSON object (opened at line {} of the answer, never closed)",
                    line_of(t, start)
                );
                return Err(first_error.unwrap_or(msg));
            }
            // A stray `{` in prose.
            None => from = start + 1,
            Some(end) => match serde_json::from_str::<Value>(&t[start..end]) {
                // Text that starts with `{` parses only as an object.
                Ok(v) => return Ok(v),
                Err(e) if looks_like_json => {
                    first_error.get_or_insert_with(|| {
                        format!(
                            "invalid JSON in the object at line {} of the answer: {e}",
                            line_of(t, start)
                        )
                    });
                    from = end;
                }
                // Prose in braces (`{see below}`): objects may still follow or sit inside.
                Err(_) => from = start + 1,
            },
        }
    }
    Err(first_error.unwrap_or_else(|| "no JSON object found in the answer".into()))
}

/// The contents of the markdown code fences in `text` whose info string is empty or
/// `json` (any case), in order; an unclosed last fence runs to the end of the text.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let (info, body) = after.split_once('\n').unwrap_or((after, ""));
        let (content, next) = match body.find("```") {
            Some(close) => (&body[..close], &body[close + 3..]),
            None => (body, ""),
        };
        let info = info.trim();
        if info.is_empty() || info.eq_ignore_ascii_case("json") {
            out.push(content);
        }
        rest = next;
    }
    out
}

/// The end (exclusive byte offset) of the `{...}` opened at `start`, counting braces
/// outside JSON strings only; `None` when it is never closed.
fn balanced_end(bytes: &[u8], start: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, &b) in bytes.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Value {
        extract_json(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match extract_json(text) {
            Ok(v) => panic!("{text:?}: expected an error, got {v}"),
            Err(e) => e,
        }
    }

    #[test]
    fn whole_answers_and_fences() {
        assert_eq!(ok("  {\"a\": 1}\n"), json!({"a": 1}));
        // JSON as a whole is taken whatever its type (the schema then rejects it).
        assert_eq!(ok("[{\"a\": 1}]"), json!([{"a": 1}]));
        assert_eq!(ok("```json\n{\"a\": 1}\n```"), json!({"a": 1}));
        assert_eq!(ok("```JSON\n{\"a\": 1}\n```"), json!({"a": 1}));
        assert_eq!(ok("```\n{\"a\": 1}\n```"), json!({"a": 1}));
        // A fenced object wins over an object in the prose before it.
        assert_eq!(
            ok("The format is {\"name\": \"...\"}. Answer:\n```json\n{\"name\": \"x\"}\n```"),
            json!({"name": "x"})
        );
        // Models label JSON as another language: the object in such a fence is found too.
        assert_eq!(
            ok("```javascript\n{\"k\": 1}\n```\nThat is all."),
            json!({"k": 1})
        );
        // An unclosed fence (the answer stopped) still yields its object.
        assert_eq!(ok("```json\n{\"a\": [1, 2]}\n"), json!({"a": [1, 2]}));
        // Prose and a closing remark inside the fence.
        assert_eq!(
            ok("```json\nHere it is: {\"a\": 1} (done)\n```"),
            json!({"a": 1})
        );
    }

    #[test]
    fn prose_with_braces_and_two_objects() {
        assert_eq!(ok("Here: {\"a\": [1,2]} done"), json!({"a": [1, 2]}));
        // Braces in the prose before and after (the old first-`{`-to-last-`}` slice
        // failed on all of these).
        assert_eq!(
            ok("Using {curly} notation: {\"a\": 1} -- see {note}."),
            json!({"a": 1})
        );
        assert_eq!(ok("{see below}\n{\"a\": 1}"), json!({"a": 1}));
        assert_eq!(ok("{\"a\": 1}\nThe } closes it."), json!({"a": 1}));
        assert_eq!(ok("a stray { here, then {\"a\": 1}"), json!({"a": 1}));
        // Prose in braces around the object: the object inside is found.
        assert_eq!(ok("{note: {\"a\": 1}}"), json!({"a": 1}));
        // Two objects: the first, not a slice spanning both.
        assert_eq!(ok("{\"a\": 1}\n{\"b\": 2}"), json!({"a": 1}));
        assert_eq!(
            ok("First try: {\"a\": 1} Corrected: {\"a\": 2}"),
            json!({"a": 1})
        );
        // Nested objects come back whole.
        assert_eq!(
            ok("x {\"a\": {\"b\": {\"c\": []}}, \"d\": {}} y"),
            json!({"a": {"b": {"c": []}}, "d": {}})
        );
        assert_eq!(ok("empty: {} then"), json!({}));
    }

    #[test]
    fn braces_and_quotes_inside_strings() {
        assert_eq!(
            ok("Answer: {\"text\": \"a } brace and a { brace\"} ok"),
            json!({"text": "a } brace and a { brace"})
        );
        assert_eq!(
            ok("Answer: {\"q\": \"she said \\\"}\\\" twice\"} and {\"b\": 2}"),
            json!({"q": "she said \"}\" twice"})
        );
        // A backslash at the end of a string does not escape its closing quote.
        assert_eq!(
            ok("{\"path\": \"C:\\\\\"} trailing }"),
            json!({"path": "C:\\"})
        );
        assert_eq!(
            ok("Note: {\"unit\": \"\\u007b\", \"x\": \"é {ü}\"}"),
            json!({"unit": "{", "x": "é {ü}"})
        );
    }

    #[test]
    fn malformed_and_truncated_answers_are_errors() {
        assert!(err("no json here").contains("no JSON object"));
        assert!(err("").contains("no JSON object"));
        assert!(err("just {prose} in braces").contains("no JSON object"));
        // Truncated: an error naming where it opened, not a nested object of it.
        let e = err("{\"entities\": [{\"text\": \"a\"}, {\"text\": \"b");
        assert!(
            e.contains("unterminated JSON object") && e.contains("line 1"),
            "{e}"
        );
        let e = err("Sure.\n```json\n{\"codes\": [{\"code\": \"I10\"}, {\"code\":");
        assert!(e.contains("unterminated") && e.contains("line 3"), "{e}");
        assert!(err("{\"a\": ").contains("unterminated"));
        // Malformed but closed: serde's message, and no nested object in its place.
        let e = err("{\"a\": {\"b\": 1}, oops}");
        assert!(e.contains("invalid JSON") && e.contains("line 1"), "{e}");
        let e = err("{\"a\": 1,}");
        assert!(e.contains("invalid JSON"), "{e}");
        // A malformed object, then a good one: the good one.
        assert_eq!(ok("{\"a\": 1,}\n{\"a\": 1}"), json!({"a": 1}));
    }
}
