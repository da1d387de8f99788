use super::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

/// The real taxonomy and schemas, loaded once.
pub(crate) fn fixture() -> &'static (Taxonomy, Schemas) {
    static F: LazyLock<(Taxonomy, Schemas)> = LazyLock::new(|| {
        let tax = crate::taxonomy::load(Path::new("taxonomy")).expect("taxonomy loads");
        let schemas = Schemas::load(Path::new("schemas"), &tax).expect("schemas load");
        (tax, schemas)
    });
    &F
}

pub(crate) fn run_with(rec: &Record, cfg: &FiltersConfig) -> Result<(), Drop> {
    let (tax, schemas) = fixture();
    check(
        rec,
        &FilterCtx {
            tax,
            schemas,
            cfg,
            examples: None,
        },
    )
}

/// The reason the default filters drop `rec` for, if any.
pub(crate) fn reason(rec: &Record) -> Option<&'static str> {
    run_with(rec, &FiltersConfig::default())
        .err()
        .map(|d| d.reason)
}

pub(crate) const NOTE: &str = "Interval events: No acute events overnight. Afebrile, tolerating a regular diet.
Subjective: Mrs. Alvarez reports less shortness of breath and slept through the night. She denies chest pain, palpitations or leg swelling.
Objective: T 37.1 C, HR 88, BP 132/78, RR 18, SpO2 95% on 2 L nasal cannula. Bibasilar crackles, improved. Trace ankle edema.
Labs and imaging: Na 138, K 4.1, creatinine 1.3 (from 1.6). Chest X-ray shows decreasing bilateral effusions.
Assessment and plan: Acute on chronic heart failure with reduced ejection fraction, improving with IV furosemide 40 mg twice daily. Transition to oral furosemide tomorrow, continue metoprolol and lisinopril, daily weights, strict intake and output.";

/// A realistic plain_text summarization record of a progress note that every filter keeps.
pub(crate) fn record() -> Record {
    Record {
        task_type: "summarization".into(),
        input_data: "progress_note".into(),
        output_format: "plain_text".into(),
        instruction: "Summarize this progress note in two sentences for the covering night physician.".into(),
        input: NOTE.into(),
        output: "Mrs. Alvarez's acute on chronic HFrEF is improving on IV furosemide, with less dyspnea, \
                 falling creatinine and shrinking effusions. Plan to switch to oral furosemide tomorrow \
                 and continue metoprolol, lisinopril and daily weights."
            .into(),
        ..Default::default()
    }
}

/// `record()` with a json answer for `task`, its instruction carrying the schema note.
pub(crate) fn json_record(task: &str, instruction: &str, output: Value) -> Record {
    let schema = &fixture().1.get(task).expect("task has a schema").pretty;
    Record {
        task_type: task.into(),
        output_format: "json".into(),
        instruction: format!("{instruction}{}{schema}\n```", crate::record::SCHEMA_NOTE),
        output: output.to_string(),
        ..record()
    }
}

#[test]
fn realistic_record_passes_every_filter() {
    assert_eq!(run_with(&record(), &FiltersConfig::default()), Ok(()));
}

#[test]
fn table_matches_chain_and_reasons_are_unique() {
    let names: Vec<&str> = CHAIN.iter().map(|f| f.name()).collect();
    let table: Vec<&str> = FILTERS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, table);
    let reasons: Vec<&str> = FILTERS
        .iter()
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    assert_eq!(reasons.iter().collect::<HashSet<_>>().len(), reasons.len());
}

#[test]
fn config_defaults_and_validation() {
    let parsed: FiltersConfig = toml::from_str("").unwrap();
    assert_eq!(parsed, FiltersConfig::default());
    assert!(FiltersConfig::default().validate().is_empty());
    assert!(toml::from_str::<FiltersConfig>("min_words = 3").is_err());
    let bad = FiltersConfig {
        disable: vec!["refusal".into(), "lenght".into()],
        document_min_factor: 3.0,
        answer_min_words: 2000,
        max_copy_containment: 1.5,
        ..Default::default()
    };
    let problems = bad.validate();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems[0].contains("\"lenght\""), "{problems:?}");
}

#[test]
fn length() {
    let short = Record {
        input: "Patient stable, no acute events overnight, continue current plan.".into(),
        ..record()
    };
    assert_eq!(reason(&short), Some("document_too_short"));
    let words: Vec<String> = (0..1600).map(|i| format!("w{i}")).collect();
    let long = Record {
        input: words.join(" "),
        ..record()
    };
    assert_eq!(reason(&long), Some("document_too_long"));
    let terse = Record {
        output: "Improving.".into(),
        ..record()
    };
    assert_eq!(reason(&terse), Some("answer_too_short"));
    let verbose = Record {
        output: words[..1501].join(" "),
        ..record()
    };
    assert_eq!(reason(&verbose), Some("answer_too_long"));
    // A one-word json value is a complete answer.
    let label = serde_json::json!({"axis": "urgency", "label": "routine", "confidence": "high",
        "rationale": "Stable vitals and improving heart failure on diuresis."});
    let rec = json_record(
        "classification",
        "Classify the urgency of this note.",
        label,
    );
    assert_eq!(reason(&rec), None);
}

#[test]
fn refusal() {
    let sorry = Record {
        output: "I'm sorry, but I cannot provide a summary of this clinical note.".into(),
        ..record()
    };
    let d = run_with(&sorry, &FiltersConfig::default()).unwrap_err();
    assert_eq!((d.filter, d.reason), ("refusal", "refusal"));
    assert!(d.detail.starts_with("answer: "), "{}", d.detail);
    let ai_doc = Record {
        input: format!("As an AI language model, I can't create real patient records, but here is a fictional example.\n{NOTE}"),
        ..record()
    };
    assert_eq!(reason(&ai_doc), Some("refusal"));
    // Apologies inside a dialogue document are speech, not a refusal.
    let dialogue = Record {
        input: format!(
            "Doctor: I'm sorry, but the scan shows fluid around your lungs again.\n{NOTE}"
        ),
        ..record()
    };
    assert_eq!(reason(&dialogue), None);
}

#[test]
fn placeholder() {
    let instr = Record {
        instruction: "Summarize this progress note for [Patient Name]'s family.".into(),
        ..record()
    };
    assert_eq!(reason(&instr), Some("template_leak"));
    let doc = Record {
        input: NOTE.replace("Mrs. Alvarez", "{{ patient_name }}"),
        ..record()
    };
    assert_eq!(reason(&doc), Some("template_leak"));
    let answer = Record {
        output: format!("{} Signed, [Your Name].", record().output),
        ..record()
    };
    assert_eq!(reason(&answer), Some("template_leak"));
    // Compact JSON ends nested objects with `}}`: only string values are searched.
    let codes = serde_json::json!({"codes": [{"code": "I50.23", "description":
        "Acute on chronic systolic (congestive) heart failure", "role": "principal",
        "evidence": "Acute on chronic heart failure with reduced ejection fraction"}]});
    let rec = json_record("clinical_coding", "Assign the ICD-10-CM codes.", codes);
    assert!(rec.output.contains("}]}"));
    assert_eq!(reason(&rec), None);
}

#[test]
fn deidentification_answer_may_hold_surrogate_tags() {
    let deid = |output: &str| Record {
        task_type: "deidentification".into(),
        instruction: "Redact all protected health information in this note.".into(),
        output: output.into(),
        ..record()
    };
    let redacted = NOTE.replace("Mrs. Alvarez", "[NAME]");
    assert_eq!(reason(&deid(&redacted)), None);
    let leaked = NOTE.replace("Mrs. Alvarez", "{{NAME}}");
    assert_eq!(reason(&deid(&leaked)), Some("template_leak"));
    // The exemption is for the answer only.
    let doc = Record {
        input: redacted,
        ..deid("Name: Mrs. Alvarez (patient).")
    };
    assert_eq!(reason(&doc), Some("template_leak"));
}

#[test]
fn repetition() {
    let looping = Record {
        output: format!(
            "Mrs. Alvarez is improving and {}",
            "the patient was ".repeat(20)
        ),
        ..record()
    };
    let d = run_with(&looping, &FiltersConfig::default()).unwrap_err();
    assert_eq!(d.reason, "repetitive");
    assert!(d.detail.contains("4-grams"), "{}", d.detail);
    let lines = format!(
        "{NOTE}\n{}",
        "Continue furosemide 40 mg IV twice daily.\n".repeat(4)
    );
    let doc = Record {
        input: lines,
        ..record()
    };
    let d = run_with(&doc, &FiltersConfig::default()).unwrap_err();
    assert_eq!(d.reason, "repetitive");
    assert!(d.detail.starts_with("document: ") && d.detail.contains("lines"));
    // Enum values repeat across json items; that is no loop.
    let entities: Vec<Value> = [
        "shortness of breath",
        "chest pain",
        "palpitations",
        "leg swelling",
        "ankle edema",
        "effusions",
    ]
    .iter()
    .map(|t| {
        let start = NOTE.find(t).unwrap();
        serde_json::json!({"text": t, "type": "problem", "assertion": "present",
                "start": start, "end": start + t.len()})
    })
    .collect();
    let rec = json_record(
        "named_entity_recognition",
        "Identify the clinical problems in this note.",
        serde_json::json!({ "entities": entities }),
    );
    assert_eq!(reason(&rec), None);
}

#[test]
fn language() {
    let spanish = Record {
        output: "La paciente presenta mejoría de la insuficiencia cardíaca con furosemida intravenosa, \
                 con menos disnea y una creatinina en descenso. Se cambiará a furosemida oral mañana \
                 y se continuará con metoprolol y lisinopril."
            .into(),
        ..record()
    };
    assert_eq!(reason(&spanish), Some("non_english"));
    let terse = "Pt is a 67 yo M w/ HTN, DM2, CKD3 p/w SOB x3d. BP 150/90, HR 102, SpO2 91% RA.";
    let abbreviated = Record {
        output: terse.into(),
        input: format!("{terse}\n{NOTE}"),
        ..record()
    };
    assert_eq!(reason(&abbreviated), None);
}

#[test]
fn copy() {
    let copied = Record {
        output: NOTE.into(),
        ..record()
    };
    assert_eq!(reason(&copied), Some("answer_copies_input"));
    let quote = Record {
        task_type: "question_answering".into(),
        instruction: "Answer the question: what is the diuretic plan?".into(),
        output: "Transition to oral furosemide tomorrow, continue metoprolol and lisinopril."
            .into(),
        ..record()
    };
    assert_eq!(reason(&quote), None);
    let corrected = Record {
        task_type: "error_correction".into(),
        instruction: "Find and correct the error in this note.".into(),
        output: NOTE.replace("40 mg", "20 mg"),
        ..record()
    };
    assert_eq!(reason(&corrected), None);
}

#[test]
fn instruction() {
    let off = Record {
        instruction: "Translate this progress note into French.".into(),
        ..record()
    };
    let d = run_with(&off, &FiltersConfig::default()).unwrap_err();
    assert_eq!(d.reason, "instruction_off_task");
    assert!(d.detail.contains("French"), "{}", d.detail);
    let poem = Record {
        instruction: "Write a short poem about this patient's recovery.".into(),
        ..record()
    };
    assert_eq!(reason(&poem), Some("instruction_off_task"));
    // Small talk is no task.
    for chat in ["Thanks, that's very helpful!", "Hello, how are you today?"] {
        let rec = Record {
            instruction: chat.into(),
            ..record()
        };
        assert_eq!(reason(&rec), Some("not_a_task"), "{chat}");
    }
    // No summarization keyword, but a summary-shaped answer: kept.
    let gist = Record {
        instruction: "Give the night team the gist of this note.".into(),
        ..record()
    };
    assert_eq!(reason(&gist), None);
    // A question for a summarization item, answered in three words: neither cue nor shape.
    let qa = Record {
        instruction: "What is her creatinine now?".into(),
        output: "It is 1.3.".into(),
        ..record()
    };
    assert_eq!(reason(&qa), Some("instruction_off_task"));
    // A json answer's shape is the schema's: the cue test does not apply.
    let summary = serde_json::json!({"summary": "HFrEF improving on IV diuresis with furosemide.",
        "key_points": ["Switch to oral furosemide"], "problem_list": []});
    let json = json_record(
        "summarization",
        "Rewrite this note for the covering physician.",
        summary,
    );
    assert_eq!(reason(&json), None);
}

#[test]
fn json_content() {
    let summary = |s: &str, points: Value| {
        let out = serde_json::json!({"summary": s, "key_points": points, "problem_list": []});
        json_record("summarization", "Summarize this note.", out)
    };
    // An empty problem list is allowed (`"minItems": 0`).
    let ok = summary(
        "HFrEF improving on IV diuresis.",
        serde_json::json!(["Oral furosemide tomorrow"]),
    );
    assert_eq!(reason(&ok), None);
    let blank = summary("  ", serde_json::json!(["Oral furosemide tomorrow"]));
    let d = run_with(&blank, &FiltersConfig::default()).unwrap_err();
    assert_eq!(
        (d.reason, d.detail.as_str()),
        ("empty_required_content", "/summary is empty")
    );
    let blank_item = summary(
        "HFrEF improving.",
        serde_json::json!(["Oral furosemide", " \n"]),
    );
    let d = run_with(&blank_item, &FiltersConfig::default()).unwrap_err();
    assert_eq!(d.detail, "/key_points/1 is empty");
}

#[test]
fn disable_and_first_drop_order() {
    let both = Record {
        input: "As an AI, I cannot create clinical notes.".into(),
        ..record()
    };
    assert_eq!(reason(&both), Some("refusal"));
    let no_refusal = FiltersConfig {
        disable: vec!["refusal".into()],
        ..Default::default()
    };
    assert_eq!(
        run_with(&both, &no_refusal).unwrap_err().reason,
        "document_too_short"
    );
    let neither = FiltersConfig {
        disable: ["length", "refusal", "instruction", "grounding"]
            .map(String::from)
            .into(),
        ..Default::default()
    };
    assert_eq!(run_with(&both, &neither), Ok(()));
    let off = FiltersConfig {
        enabled: false,
        ..Default::default()
    };
    assert_eq!(run_with(&both, &off), Ok(()));
}

#[test]
fn a_document_of_filler_is_dropped() {
    let filler = Record {
        input_data: "clinician_secure_message".into(),
        input: "From: Dr. Janet Ibrahim, Orthopedic Surgery    To: Dr. Janet Russo, Telemedicine    12/31/2024 19:57\nRe: Displaced comminuted supracondylar fracture without intercondylar fracture of left humerus\nReply (Dr. Ibrahim, 16:08): Thank you for your willingness to consult with me. I am pleased to report that you have been referred to a multidisciplinary orthopedic surgery team at the University of California San Francisco. We are pleased to announce that we will be able to provide you with an excellent and compassionate team member who is dedicated to providing exceptional care to patients in need.".into(),
        ..record()
    };
    let d = run_with(&filler, &FiltersConfig::default()).unwrap_err();
    assert_eq!(d.reason, "filler_text", "{}", d.detail);
    // One pleasantry in a real message is no filler.
    let real = Record {
        input: format!("I hope this message finds you well.\n{NOTE}"),
        ..record()
    };
    assert_eq!(reason(&real), None);
}

#[test]
fn word_count_is_split_whitespace() {
    for s in [
        "",
        "  ",
        "one",
        " two  words ",
        "tab\tand\nnewline\r\nand\x0bvertical\x0cfeed",
        "non-ascii\u{a0}space — and é",
    ] {
        assert_eq!(super::word_count(s), s.split_whitespace().count(), "{s:?}");
    }
}
