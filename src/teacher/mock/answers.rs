//! What the mock teacher answers, per stage: documents, instructions, answers grounded in
//! the document (schema-valid JSON for `json` answers), judge verdicts and error
//! injections. Deterministic given the request and the mock's seed.

use super::{hash64, MockOptions};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// The first ```json fenced block in the prompt that parses as an object schema.
pub(super) fn schema_in_prompt(prompt: &str) -> Option<Value> {
    let mut rest = prompt;
    while let Some(i) = rest.find("```json") {
        let after = &rest[i + 7..];
        let end = after.find("```")?;
        if let Ok(v) = serde_json::from_str::<Value>(after[..end].trim()) {
            if v.get("type").and_then(Value::as_str) == Some("object")
                && v.get("properties").is_some()
            {
                return Some(v);
            }
        }
        rest = &after[end + 3..];
    }
    None
}

const NAMES: &[&str] = &[
    "Marisol Vega",
    "James Carter",
    "Aiko Tanaka",
    "Samuel Okafor",
    "Elena Petrova",
    "David Cohen",
];
const PROBLEMS: &[&str] = &[
    "community-acquired pneumonia",
    "type 2 diabetes mellitus with hyperglycemia",
    "acute kidney injury",
    "atrial fibrillation with rapid ventricular response",
    "COPD exacerbation",
    "cellulitis of the left leg",
];
const MEDS: &[&str] = &[
    "metformin 500 mg PO BID",
    "apixaban 5 mg PO BID",
    "ceftriaxone 1 g IV daily",
    "furosemide 40 mg IV BID",
    "lisinopril 10 mg PO daily",
    "prednisone 40 mg PO daily",
];

/// Extra sentences a document draws on (without repeats) to reach its minimum length.
const MORE: &[&str] = &[
    "Social history: lives with spouse, former smoker with 20 pack-years, drinks alcohol rarely.",
    "Family history: father with coronary artery disease in his sixties, mother with breast cancer.",
    "Allergies: penicillin causes a rash; no known food allergies.",
    "Review of systems: positive for fatigue and reduced appetite, negative for weight loss or night sweats.",
    "Medications on admission included atorvastatin 20 mg nightly and aspirin 81 mg daily.",
    "Nursing notes document good oral intake overnight and ambulation in the hallway with a walker.",
    "Physical therapy evaluated the patient and recommended home exercises after discharge.",
    "The case was discussed with the attending physician, who agreed with the current plan.",
    "Repeat laboratory tests this morning showed a sodium of 136 and potassium of 4.1 mmol/L.",
    "The patient and family were updated at the bedside and their questions were answered.",
    "Code status was confirmed as full code after discussion with the patient.",
    "Diet was advanced to a cardiac diet, which the patient tolerated without nausea.",
];

/// One fixed document (padded with every extra sentence), a quarter of the time with an addendum:
/// exact and near duplicates across items.
pub(super) fn duplicate_document(seed: u64, rng: &mut ChaCha8Rng) -> String {
    let mut text = document("", &mut ChaCha8Rng::seed_from_u64(seed));
    for s in MORE {
        text.push_str("\n\n");
        text.push_str(s);
    }
    if rng.random_range(0..4) == 0 {
        text.push_str("\n\nAddendum: chart reviewed again by the covering physician today.");
    }
    text
}

pub(super) fn document(prompt: &str, rng: &mut ChaCha8Rng) -> String {
    let mut pick = |v: &[&'static str]| v[rng.random_range(0..v.len())];
    let (name, problem, med, med2) = (pick(NAMES), pick(PROBLEMS), pick(MEDS), pick(MEDS));
    let (day, mrn, age) = (
        rng.random_range(1..28),
        rng.random_range(100000..999999),
        rng.random_range(19..92),
    );
    // The seed concept ("Central condition: <description> (ICD-10-CM <code>; ...") and the
    // minimum length ("between <n> and ... words") the document prompt asks for.
    let concept = prompt
        .split_once("Central condition: ")
        .and_then(|(_, r)| r.split_once("; chapter"))
        .map(|(c, _)| c.replace("(ICD-10-CM ", "(ICD-10-CM code ").to_string());
    let min_words: usize = prompt
        .split_once("Length: between ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut text = format!(
        "Patient: {name}    MRN: {mrn}    Date: 2024-03-{day:02}\n\n\
         Chief complaint: shortness of breath and fatigue for 3 days.\n\n\
         History of present illness: {age}-year-old patient admitted with {problem}. \
         Symptoms began gradually; denies chest pain. Past history notable for hypertension.\n\n\
         Examination: T 38.1 C, HR 104, BP 132/78, SpO2 92% on room air. Crackles at the right base.\n\n\
         Results: WBC 13.2 x10^9/L (high), creatinine 1.4 mg/dL, CXR with right lower lobe opacity.\n\n\
         Assessment and plan: {problem}. Start {med}; continue {med2}. Reassess in 48 hours; \
         follow up with primary care physician Dr. Patel within 1 week of discharge."
    );
    if let Some(c) = concept {
        text.push_str(&format!("\n\nWorking diagnosis: {c})."));
    }
    let mut more: Vec<&str> = MORE.to_vec();
    while text.split_whitespace().count() < min_words / 2 && !more.is_empty() {
        let s = more.swap_remove(rng.random_range(0..more.len()));
        text.push_str("\n\n");
        text.push_str(s);
    }
    text
}

/// A judge verdict. Whether a record is "low" is decided by its prompt (the same for all
/// its samples); each sample then varies by up to one point.
pub(super) fn verdict(prompt: &str, o: &MockOptions, rng: &mut ChaCha8Rng) -> Value {
    let mut record = ChaCha8Rng::seed_from_u64(o.seed ^ hash64(prompt.as_bytes()));
    let low = o.rate_low_judge > 0.0 && record.random::<f64>() < o.rate_low_judge;
    let (base, noise) = if low { (1, 1) } else { (4, 1) };
    let mut score = || base + rng.random_range(0..=noise);
    json!({
        "rationale": if low { "The answer is not supported by the document." } else { "Accurate, complete and well aligned with the instruction." },
        "quality": score(), "alignment": score(), "coherence": score(),
        "realism": score(), "difficulty": score(),
    })
}

/// An error-injection rewrite: the answer quoted in the prompt with one value (`json`) or
/// its first sentence (plain text) changed; for `schema_violation`, a JSON object missing
/// the schema's fields.
pub(super) fn inject(prompt: &str, schema: Option<&Value>, rng: &mut ChaCha8Rng) -> String {
    let answer = prompt
        .split_once("<answer>")
        .and_then(|(_, r)| r.split_once("</answer>"))
        .map_or("", |(a, _)| a.trim());
    let error = prompt
        .split_once("Error type: ")
        .and_then(|(_, r)| r.lines().next())
        .unwrap_or("")
        .trim();
    if error == "schema_violation" {
        return json!({"unexpected": true}).to_string();
    }
    if let (Some(schema), Ok(mut v)) = (schema, serde_json::from_str::<Value>(answer)) {
        alter_one(&mut v, schema, rng);
        return v.to_string();
    }
    let p = PROBLEMS[rng.random_range(0..PROBLEMS.len())];
    let rest = answer.split_once(". ").map_or("", |(_, r)| r);
    format!(
        "The document describes a patient with {p} and no fever or other abnormal findings. {rest}"
    )
}

/// Replace the first free-text string (no enum, const or pattern) with a new instance of
/// its schema; true when one was changed.
fn alter_one(v: &mut Value, schema: &Value, rng: &mut ChaCha8Rng) -> bool {
    match v {
        Value::Object(m) => m.iter_mut().any(|(k, x)| {
            let sub = &schema["properties"][k.as_str()];
            sub.is_object() && alter_one(x, sub, rng)
        }),
        Value::Array(a) => a.iter_mut().any(|x| alter_one(x, &schema["items"], rng)),
        Value::String(old) => {
            if ["enum", "const", "pattern"]
                .iter()
                .any(|k| schema.get(k).is_some())
            {
                return false;
            }
            let new = instance(schema, "", &Source::default(), rng);
            if new.as_str().is_some_and(|n| n != old) {
                *v = new;
                return true;
            }
            false
        }
        _ => false,
    }
}

pub(super) fn instruction(prompt: &str) -> String {
    let wants_json = prompt.contains("```json");
    let line = |label: &str| {
        prompt
            .split_once(label)
            .and_then(|(_, r)| r.lines().next())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut s = format!(
        "{} task. {} Read the clinical document below and complete the task described: \
         identify the relevant findings, cite the supporting text, and be precise.",
        line("Task: "),
        line("What the task is: ")
    );
    if wants_json {
        s.push_str(" Answer with a single JSON object that conforms to this schema.");
    }
    s
}

pub(super) fn answer(prompt: &str, src: &Source, rng: &mut ChaCha8Rng) -> String {
    // The task, as the mock's own instruction names it ("<Task name> task. ...").
    let task = prompt.to_lowercase();
    let codes = if src.codes.is_empty() {
        String::new()
    } else {
        format!(" Diagnosis codes (ICD-10-CM): {}.", src.codes.join(", "))
    };
    // Grounded in the document: its history and plan sentences, as a teacher would restate
    // them (the mock's own documents always have both).
    let sentence = |label: &str| {
        src.doc.split_once(label).map(|(_, r)| {
            r.split_once(". ")
                .map_or(r, |(s, _)| s)
                .trim()
                .trim_end_matches('.')
                .to_string()
        })
    };
    let (Some(history), Some(plan)) = (
        sentence("History of present illness: "),
        sentence("Assessment and plan: "),
    ) else {
        let p = PROBLEMS[rng.random_range(0..PROBLEMS.len())];
        return format!("The document describes a patient with {p}.{codes}");
    };
    if task.contains("de-identification task") {
        return redact(&src.doc);
    }
    if task.contains("named entity recognition task") {
        let after = |label: &str, end: char| {
            src.doc
                .split_once(label)
                .and_then(|(_, r)| r.split_once(end))
                .map(|(x, _)| x.trim().to_string())
        };
        let items: Vec<String> = [
            ("problem", after("admitted with ", '.')),
            ("drug", after("Start ", ';')),
            ("drug", after("continue ", '.')),
        ]
        .into_iter()
        .filter_map(|(t, x)| x.map(|x| format!("- {x} ({t})")))
        .collect();
        if items.len() >= 2 {
            return items.join("\n");
        }
    }
    // What an answer of the task always has (its label, its verdict, its social history).
    let label = if task.contains("natural language inference task") {
        " Label: entailment, since the note states it."
    } else if task.contains("error detection and correction task") {
        " No error found: the note is consistent."
    } else if task.contains("social determinants of health extraction task") {
        " Social history: not documented."
    } else {
        ""
    };
    // Sampled, as a model's answer is: which of the document's findings it adds.
    let extra = ["Examination: ", "Results: ", "Chief complaint: "]
        .get(rng.random_range(0..4))
        .and_then(|l| sentence(l))
        .map(|x| format!(" {x}."))
        .unwrap_or_default();
    format!("{history}. The assessment and plan: {plan}.{extra}{codes}{label}")
}

/// The mock's PHI in its own documents: the patient's name, the MRN, the physician.
fn phi(doc: &str) -> Vec<(String, &'static str)> {
    static RE: std::sync::LazyLock<[(regex::Regex, &str); 3]> = std::sync::LazyLock::new(|| {
        let r = |s: &str| regex::Regex::new(s).expect("valid");
        [
            (r(r"Patient: ([A-Z][a-z]+ [A-Z][a-z]+)"), "name"),
            (r(r"MRN: (\d+)"), "id"),
            (r(r"(Dr\. [A-Z][a-z]+)"), "name"),
        ]
    });
    RE.iter()
        .flat_map(|(re, cat)| {
            re.captures_iter(doc)
                .map(|c| (c[1].to_string(), *cat))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn redact(doc: &str) -> String {
    phi(doc).iter().fold(doc.to_string(), |d, (text, cat)| {
        d.replace(text.as_str(), &format!("[{}]", cat.to_uppercase()))
    })
}

/// A deterministic instance of a (simple) JSON Schema: honours type, enum, const,
/// examples, min/max lengths and items, minimum/maximum; includes every property.
/// What the mock's answers are grounded in: the words and ICD-10-CM codes of the
/// document in the prompt (so spans occur in the input and codes exist).
#[derive(Default)]
pub struct Source {
    doc: String,
    words: Vec<String>,
    codes: Vec<String>,
}

impl Source {
    /// From the last message: the document itself (answer prompts) or the `<document>`
    /// it quotes (repair prompts).
    pub(super) fn from_message(message: &str) -> Source {
        let doc = message
            .split_once("<document>")
            .and_then(|(_, rest)| rest.split_once("</document>"))
            .map_or(message, |(d, _)| d);
        let code = regex::Regex::new(r"ICD-10-CM code ([A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?)")
            .expect("valid");
        Source {
            doc: doc.trim().to_string(),
            words: doc.split_whitespace().map(str::to_string).collect(),
            codes: code.captures_iter(doc).map(|c| c[1].to_string()).collect(),
        }
    }

    /// A run of 2-4 consecutive document words, if there is a document.
    fn span(&self, rng: &mut ChaCha8Rng, max_len: usize) -> Option<String> {
        let n = rng.random_range(2..=4).min(self.words.len());
        (n > 0).then(|| {
            let start = rng.random_range(0..=self.words.len() - n);
            // Whole words only, within the length limit: a word cut short ("200" -> "20")
            // would say what the document does not.
            let mut s = String::new();
            for w in &self.words[start..start + n] {
                if s.chars().count() + w.chars().count() + 1 > max_len && !s.is_empty() {
                    break;
                }
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(w);
            }
            s.chars()
                .take(max_len)
                .collect::<String>()
                .trim()
                .to_string()
        })
    }
}

/// A schema instance with plausible values: `key` is the property name it fills.
pub fn instance(schema: &Value, key: &str, src: &Source, rng: &mut ChaCha8Rng) -> Value {
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    if let Some(e) = schema
        .get("enum")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
        return e[rng.random_range(0..e.len())].clone();
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "string".into(),
    };
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    out.insert(k.clone(), instance(v, k, src, rng));
                }
            }
            // Character offsets of a span, where the document has it.
            if let Some(text) = out.get("text").and_then(Value::as_str) {
                if let Some(i) = src.doc.find(text) {
                    let start = src.doc[..i].chars().count();
                    let end = start + text.chars().count();
                    if out.contains_key("start") {
                        out.insert("start".into(), json!(start));
                        out.insert("end".into(), json!(end));
                    }
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = num("minItems").unwrap_or(1.0) as usize;
            let max = num("maxItems").unwrap_or(3.0) as usize;
            let min = min.max(1).min(max);
            let n = rng.random_range(min..=(min + 2).min(max).max(min));
            // A PHI list names the document's PHI.
            let found = phi(&src.doc);
            if key == "phi" && !found.is_empty() {
                return Value::Array(
                    found
                        .iter()
                        .map(|(text, cat)| {
                            let mut item = instance(&schema["items"], key, src, rng);
                            item["text"] = json!(text);
                            item["category"] = json!(cat);
                            let start = src.doc[..src.doc.find(text.as_str()).unwrap_or(0)]
                                .chars()
                                .count();
                            item["start"] = json!(start);
                            item["end"] = json!(start + text.chars().count());
                            item
                        })
                        .collect(),
                );
            }
            // Distinct items, as a real answer's list has (a few tries per item).
            let mut items: Vec<Value> = Vec::new();
            for _ in 0..n * 4 {
                if items.len() == n {
                    break;
                }
                let v = instance(&schema["items"], key, src, rng);
                if !items.contains(&v) {
                    items.push(v);
                }
            }
            Value::Array(items)
        }
        "integer" => {
            let lo = num("minimum").unwrap_or(0.0) as i64;
            let hi = num("maximum").map(|m| m as i64).unwrap_or(lo + 50).max(lo);
            json!(rng.random_range(lo..=hi))
        }
        "number" => {
            let lo = num("minimum").unwrap_or(0.0);
            let hi = num("maximum").unwrap_or(lo + 1.0).max(lo);
            json!(((lo + (hi - lo) * rng.random::<f64>()) * 100.0).round() / 100.0)
        }
        "boolean" => json!(rng.random::<bool>()),
        "null" => Value::Null,
        _ => {
            let max = num("maxLength").unwrap_or(60.0) as usize;
            let verbatim = schema["description"]
                .as_str()
                .is_some_and(|d| d.contains("verbatim") || d.contains("exactly from"));
            if key == "code" && !src.codes.is_empty() {
                return json!(src.codes[rng.random_range(0..src.codes.len())]);
            }
            // Every free-text value is the document's words (as a grounded answer's are),
            // except where the schema wants a pattern, which its examples show.
            if matches!(key, "text" | "evidence") || verbatim || schema.get("pattern").is_none() {
                if let Some(span) = src.span(rng, max) {
                    return json!(span);
                }
            }
            if let Some(ex) = schema
                .get("examples")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                return ex.clone();
            }
            let min = num("minLength").unwrap_or(0.0) as usize;
            let words = [
                "fever",
                "cough",
                "metformin",
                "creatinine",
                "pneumonia",
                "follow-up",
                "stable",
                "chest",
            ];
            let mut s = String::new();
            while s.len() < min.max(12) {
                if !s.is_empty() {
                    s.push(' ');
                }
                s.push_str(words[rng.random_range(0..words.len())]);
            }
            let mut s: String = s.chars().take(max.max(min)).collect();
            if s.ends_with(' ') {
                s.pop();
                s.push('x');
            }
            Value::String(s)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The mock's people are none of the templates' worked examples, or `example_copy`
    /// would reject the mock's documents as copies.
    #[test]
    fn names_are_not_the_templates_examples() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let ex = crate::quality::examples::Examples::from_dir(&dir);
        assert!(
            ex.name_in("Frank Miller").is_some(),
            "the examples were read"
        );
        for n in super::NAMES.iter().chain(["Dr. Patel"].iter()) {
            assert_eq!(ex.name_in(n), None, "{n}");
        }
    }
}
