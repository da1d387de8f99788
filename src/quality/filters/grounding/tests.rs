use crate::quality::filters::tests::{json_record, reason, record, run_with, NOTE};
use crate::record::Record;
use serde_json::{json, Value};

fn coding(output: &str, seed: &str) -> Record {
    Record {
        task_type: "clinical_coding".into(),
        instruction: "Assign the ICD-10-CM codes supported by this note.".into(),
        output: output.into(),
        concept_code: seed.into(),
        ..record()
    }
}

fn coding_json(codes: &[&str], seed: &str) -> Record {
    let items: Vec<Value> = codes
        .iter()
        .map(|c| {
            json!({"code": c, "description": "Heart failure", "role": "secondary",
            "evidence": "Acute on chronic heart failure"})
        })
        .collect();
    let rec = json_record(
        "clinical_coding",
        "Assign the ICD-10-CM codes.",
        json!({"codes": items}),
    );
    Record {
        concept_code: seed.into(),
        ..rec
    }
}

#[test]
fn icd10_codes_exist() {
    assert_eq!(reason(&coding_json(&["I50.23", "J90"], "I50.23")), None);
    assert_eq!(
        reason(&coding_json(&["I50.23", "J18.7"], "")),
        Some("unknown_icd10_code")
    );
    let plain = "I50.23 Acute on chronic systolic heart failure; J90 Pleural effusion.";
    assert_eq!(reason(&coding(plain, "I50.23")), None);
    // Undotted codes are keyed without the dot; "vitamin B12" is no code.
    let b12 = "E119 type 2 diabetes and vitamin B12 deficiency anemia D51.0 are documented.";
    let with_b12 = Record {
        input: format!("{NOTE}\nAlso type 2 diabetes mellitus and vitamin B12 deficiency anemia due to intrinsic factor deficiency."),
        ..coding(b12, "")
    };
    assert_eq!(reason(&with_b12), None);
    let made_up = "Heart failure is coded as I50.23 and the anemia as D51.Q9.";
    assert_eq!(reason(&coding(made_up, "")), Some("unknown_icd10_code"));
    // An answer with no code at all has no coding answer's shape (task fit); past that
    // check, grounding says so too.
    let none = coding(
        "The note documents acute on chronic systolic heart failure.",
        "",
    );
    assert_eq!(reason(&none), Some("instruction_off_task"));
    let no_fit = crate::quality::filters::FiltersConfig {
        disable: vec!["instruction".into()],
        ..Default::default()
    };
    assert_eq!(
        run_with(&none, &no_fit).unwrap_err().reason,
        "no_icd10_code"
    );
}

#[test]
fn icd10_codes_fit_the_seed_concept() {
    // I50.23 shares the circulatory chapter with the seed.
    assert_eq!(reason(&coding_json(&["J90", "I50.23"], "I50.23")), None);
    let rec = coding_json(&["J90"], "I50.23");
    let d = run_with(&rec, &Default::default()).unwrap_err();
    assert_eq!(
        (d.filter, d.reason),
        ("grounding", "implausible_icd10_code")
    );
    assert!(
        d.detail.contains("J90") && d.detail.contains("circulatory"),
        "{}",
        d.detail
    );
    // An unknown seed (or none) checks nothing.
    assert_eq!(reason(&coding_json(&["J90"], "ZZZ")), None);
}

fn spans_record(task: &str, instruction: &str, field: &str, texts: &[&str]) -> Record {
    let items: Vec<Value> = texts
        .iter()
        .map(|t| {
            // Offsets into the (ASCII) note where the text occurs; 0..1 where it does not.
            let (start, end) = NOTE.find(t).map_or((0, 1), |i| (i, i + t.len()));
            match task {
                "deidentification" => json!({"text": t, "category": "name", "start": start, "end": end}),
                _ => json!({"text": t, "type": "problem", "assertion": "present", "start": start, "end": end}),
            }
        })
        .collect();
    json_record(task, instruction, json!({ field: items }))
}

#[test]
fn spans_occur_in_the_document() {
    let ner = |texts: &[&str]| {
        spans_record(
            "named_entity_recognition",
            "Identify the problems.",
            "entities",
            texts,
        )
    };
    assert_eq!(
        reason(&ner(&["shortness of breath", "Bibasilar  CRACKLES"])),
        None
    );
    let d = run_with(&ner(&["ankle edema", "pleural rub"]), &Default::default()).unwrap_err();
    assert_eq!(d.reason, "span_not_in_input");
    assert!(
        d.detail.contains("/entities/1/text") && d.detail.contains("pleural rub"),
        "{}",
        d.detail
    );
    let deid = |texts: &[&str]| spans_record("deidentification", "Find all PHI.", "phi", texts);
    assert_eq!(reason(&deid(&["Alvarez"])), None);
    assert_eq!(reason(&deid(&["Mrs. Alvarado"])), Some("span_not_in_input"));
    assert!(NOTE.contains("Mrs. Alvarez"));
}

#[test]
fn numbers_and_doses_come_from_the_document() {
    let changed = Record {
        output: "Mrs. Alvarez's heart failure is improving on IV furosemide 80 mg twice daily, with creatinine down to 1.3.".into(),
        ..record()
    };
    let d = run_with(&changed, &Default::default()).unwrap_err();
    assert_eq!(d.reason, "ungrounded_number", "{}", d.detail);
    let invented = Record {
        output: "Mrs. Alvarez's heart failure is improving; creatinine is down to 1.1 from 1.6."
            .into(),
        ..record()
    };
    assert_eq!(reason(&invented), Some("ungrounded_number"));
    let same = Record {
        output:
            "Heart failure improving on IV furosemide 40 mg twice daily; creatinine 1.3 from 1.6."
                .into(),
        ..record()
    };
    assert_eq!(reason(&same), None);
    // The corrected sentence of an error correction changes a number by design.
    let corrected = Record {
        task_type: "error_correction".into(),
        instruction: "Find and correct the error in this note.".into(),
        output: NOTE.replace("40 mg", "20 mg"),
        ..record()
    };
    assert_eq!(reason(&corrected), None);
}

#[test]
fn drugs_and_clinical_terms_come_from_the_document() {
    let drug = Record {
        output: "Heart failure improving on IV furosemide; start spironolactone and continue metoprolol.".into(),
        ..record()
    };
    assert_eq!(reason(&drug), Some("ungrounded_drug"));
    let brand = Record {
        output: "Heart failure improving on IV Lasix; switch to oral Lasix tomorrow and continue metoprolol.".into(),
        ..record()
    };
    assert_eq!(reason(&brand), None);
    let invented = Record {
        output: "Heart failure improving, but a new pericardial tamponade and pulmonary embolism with hemoptysis were found on imaging.".into(),
        ..record()
    };
    assert_eq!(reason(&invented), Some("ungrounded_claim"));
}

#[test]
fn icd10_descriptions_fit_the_document() {
    let fracture = coding_json(&["S72.001A"], "");
    let d = run_with(&fracture, &Default::default()).unwrap_err();
    assert_eq!(d.reason, "icd10_description_mismatch", "{}", d.detail);
    // "No rib fracture" supports no rib fracture code.
    let rib = Record {
        input: format!("{NOTE}\nChest X-ray: no rib fracture."),
        ..coding(
            "S22.31XA Fracture of one rib, right side, initial encounter.",
            "",
        )
    };
    assert_eq!(reason(&rib), Some("icd10_description_mismatch"));
}

#[test]
fn deidentification_leaves_no_phi_in() {
    let doc = format!(
        "Patient: Maria Alvarez, MRN 4471920, seen 03/14/2024.\n{NOTE}\nSigned: Dr. Okafor"
    );
    let deid = |output: &str| Record {
        task_type: "deidentification".into(),
        instruction: "Redact all protected health information in this note.".into(),
        input: doc.clone(),
        output: output.into(),
        ..record()
    };
    let full = doc
        .replace("Maria Alvarez", "[NAME]")
        .replace("Mrs. Alvarez", "[NAME]")
        .replace("4471920", "[ID]")
        .replace("03/14/2024", "[DATE]")
        .replace("Dr. Okafor", "[NAME]");
    assert_eq!(reason(&deid(&full)), None);
    let leaky = full.replace("Signed: [NAME]", "Signed: Dr. Okafor");
    let d = run_with(&deid(&leaky), &Default::default()).unwrap_err();
    assert_eq!(d.reason, "phi_left_in");
    assert!(d.detail.contains("Okafor"), "{}", d.detail);
    // A PHI list names what the document has, all of it, and nothing it does not.
    let list = "Maria Alvarez - name\nMRN 4471920 - record number\n03/14/2024 - date\nDr. Okafor - name\nMrs. Alvarez (patient) - name";
    assert_eq!(reason(&deid(list)), None);
    let invented = format!("{list}\nFrank Miller - name");
    let d = run_with(&deid(&invented), &Default::default()).unwrap_err();
    assert_eq!(d.reason, "phi_not_in_input", "{}", d.detail);
    assert!(d.detail.contains("Frank Miller"), "{}", d.detail);
    let labelled = "name: Maria Alvarez\nrecord number: 4471920\ndate: 03/14/2024\nname: Dr. Okafor\ndate of birth: 03/12/2024";
    assert_eq!(reason(&deid(labelled)), Some("phi_not_in_input"));
}

#[test]
fn dates_are_grounded_whole() {
    let timeline = |output: &str| {
        Record {
        task_type: "temporal_extraction".into(),
        instruction: "List the events of this message with their dates.".into(),
        input: format!("From: Dr. Becker    12/31/2024 19:57\nRe: supracondylar fracture of the left humerus, repaired on 12/30/2024.\n{NOTE}"),
        output: output.into(),
        ..record()
    }
    };
    assert_eq!(
        reason(&timeline(
            "- Fracture repair of the left humerus: 12/30/2024"
        )),
        None
    );
    let d = run_with(
        &timeline("- Fracture repair of the left humerus: 12/29/2024"),
        &Default::default(),
    )
    .unwrap_err();
    assert_eq!(d.reason, "ungrounded_number", "{}", d.detail);
}

#[test]
fn entailment_is_not_contradicted() {
    let nli = |hypothesis: &str, label: &str| {
        json_record(
            "natural_language_inference",
            "Does the note entail the hypothesis?",
            json!({"premise_excerpt": "She denies chest pain, palpitations or leg swelling.",
                   "hypothesis": hypothesis, "label": label,
                   "rationale": "The note records what she reports about chest pain."}),
        )
    };
    assert_eq!(
        reason(&nli("The patient reports chest pain.", "contradiction")),
        None
    );
    assert_eq!(
        reason(&nli("The patient reports chest pain.", "entailment")),
        Some("nli_label_unsupported")
    );
    assert_eq!(
        reason(&nli("The patient has no chest pain.", "entailment")),
        None
    );
}
