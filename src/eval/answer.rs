//! Answer extraction: the model's text must be the JSON object the task's schema describes
//! (one surrounding Markdown code fence is tolerated, nothing else: no regex fishing for
//! an answer in prose). Anything else is malformed, with the reason kept.

use serde_json::Value;

/// Parse `text` as the answer object and validate it against the task's schema.
pub fn parse(text: &str, validator: &jsonschema::Validator) -> Result<Value, String> {
    let t = text.trim();
    let body = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|r| r.trim_end().strip_suffix("```"))
        .unwrap_or(t);
    let v: Value = serde_json::from_str(body.trim()).map_err(|e| format!("not JSON: {e}"))?;
    let errors = crate::schemas::violations(validator, &v, 3);
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(format!("violates the schema: {}", errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_schema_conforming_object_is_an_answer() {
        let schema = json!({"type": "object", "properties": {"answer": {"enum": ["A", "B"]}},
                            "required": ["answer"], "additionalProperties": false});
        let v = jsonschema::validator_for(&schema).unwrap();
        assert_eq!(parse(" {\"answer\": \"A\"} ", &v).unwrap()["answer"], "A");
        assert_eq!(
            parse("```json\n{\"answer\": \"B\"}\n```", &v).unwrap()["answer"],
            "B"
        );
        // Prose around the object, a wrong value, a missing key: malformed, not guessed.
        assert!(parse("The answer is {\"answer\": \"A\"}", &v)
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(parse("{\"answer\": \"C\"}", &v)
            .unwrap_err()
            .starts_with("violates"));
        assert!(parse("{}", &v).is_err());
        assert!(parse("A", &v).is_err());
    }
}
