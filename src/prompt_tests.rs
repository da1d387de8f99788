//! Tests of the template profiles: every compact template renders for every task,
//! document type and format; each system prompt stays within its budget (counted with
//! the embedded model's tokenizer); the worked examples are valid answers; and
//! `estimate_tokens` tracks the real tokenizer.

use super::*;
use crate::plan::SeedAttrs;
use crate::schemas::{self, Schemas};
use crate::taxonomy::{self, Taxonomy};
use crate::teacher::embedded::{config, model, pull, tokenizer::TextTokenizer};
use std::sync::OnceLock;

/// Most tokens a compact system prompt may hold.
const SYSTEM_BUDGET: usize = 300;
/// Most tokens of a compact prompt besides the document and instruction it carries (system
/// prompt, worked example, request wording).
const OVERHEAD_BUDGET: usize = 700;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn inputs() -> &'static (Taxonomy, Schemas) {
    static I: OnceLock<(Taxonomy, Schemas)> = OnceLock::new();
    I.get_or_init(|| {
        let tax = taxonomy::load(&repo().join("taxonomy")).expect("taxonomy");
        let schemas = Schemas::load(&repo().join("schemas"), &tax).expect("schemas");
        (tax, schemas)
    })
}

fn prompts(profile: TemplateProfile) -> Prompts {
    Prompts::load(&repo().join("templates"))
        .expect("templates")
        .with_profile(profile)
}

/// The embedded default model's tokenizer (the model is pulled into the cache if missing,
/// as the embedded teacher's own tests do).
fn tokenizer() -> &'static TextTokenizer {
    static T: OnceLock<TextTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let path = pull::pull(&config::default_cache_dir()).expect("pull the default model");
        let (ct, _) = model::read_gguf(&path).expect("read the model");
        let vocab = model::model_config(&ct).expect("model config").vocab;
        TextTokenizer::load(&ct, None, vocab).expect("tokenizer")
    })
}

fn tokens(text: &str) -> usize {
    tokenizer().encode(text).expect("encode").len()
}

fn item(tax: &Taxonomy, task: &str, document: &str, format: &str, level: u8) -> PlanItem {
    let doc = tax.document(document).unwrap();
    let concept = tax.icd.codes.iter().find(|c| c.billable).unwrap();
    PlanItem {
        id: "t".into(),
        task: task.into(),
        document: document.into(),
        family: doc.family.clone(),
        difficulty: level,
        format: format.into(),
        cell_index: 0,
        seed: SeedAttrs {
            specialty: tax.seeds.specialties[0].clone(),
            age_band: tax.seeds.age_bands[0].clone(),
            sex: tax.seeds.sexes[0].clone(),
            care_setting: tax.seeds.care_settings[0].clone(),
            writing_style: tax.seeds.writing_styles[0].clone(),
            concept_code: concept.code.clone(),
            concept_description: concept.description.clone(),
            concept_chapter: concept.chapter.clone(),
            concept_block: concept.block.clone(),
        },
    }
}

/// Every (task, compatible document, format) of the taxonomy.
fn cells(tax: &Taxonomy) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (ti, task) in tax.tasks.iter().enumerate() {
        for (di, doc) in tax.documents.iter().enumerate() {
            if tax.compat[ti][di] > 0.0 {
                for f in &task.formats {
                    out.push((task.id.clone(), doc.id.clone(), f.clone()));
                }
            }
        }
    }
    out
}

const DOCUMENT: &str = "Sample document text.";
const INSTRUCTION: &str = "Sample instruction.";

fn context(stage: Stage, base: &Value) -> Value {
    let outputs: &[(&str, &str)] = match stage {
        Stage::Document => &[],
        Stage::Instruction => &[("document", DOCUMENT)],
        Stage::Answer => &[("document", DOCUMENT), ("instruction", INSTRUCTION)],
        _ => &[
            ("document", DOCUMENT),
            ("instruction", INSTRUCTION),
            ("previous_output", "{}"),
            ("validation_error", "sample error"),
            ("answer", "Sample answer."),
        ],
    };
    with(base.clone(), outputs)
}

#[test]
fn both_profiles_pass_the_check_render() {
    let (tax, schemas) = inputs();
    for profile in [TemplateProfile::Full, TemplateProfile::Compact] {
        let problems = crate::check::smoke_render(tax, schemas, &prompts(profile), &[Stage::Judge]);
        assert!(problems.is_empty(), "{profile:?}: {problems:?}");
    }
}

#[test]
fn profiles_select_their_own_tree_and_compact_falls_back_to_full() {
    let (tax, _) = inputs();
    let it = item(tax, "summarization", "discharge_summary", "plain_text", 3);
    let full = prompts(TemplateProfile::Full);
    let compact = prompts(TemplateProfile::Compact);
    assert_eq!(
        full.template_for(Stage::Document, &it),
        "document/clinical_note.j2"
    );
    assert_eq!(
        full.template_for(Stage::Instruction, &it),
        "instruction/summarization.j2"
    );
    assert_eq!(full.template_for(Stage::Answer, &it), "answer/_default.j2");
    assert_eq!(
        compact.template_for(Stage::Document, &it),
        "compact/document/clinical_note.j2"
    );
    assert_eq!(
        compact.template_for(Stage::Instruction, &it),
        "compact/instruction/_default.j2"
    );
    assert_eq!(
        compact.template_for(Stage::Answer, &it),
        "compact/answer/_default.j2"
    );
    // No compact repair or judge template: the full ones.
    assert_eq!(compact.template_for(Stage::Repair, &it), "repair.j2");
    assert_eq!(compact.template_for(Stage::Judge, &it), "judge.j2");
    // A missing instruction template is named by its task, not the compact default.
    let mut odd = it.clone();
    odd.task = "no_such_task".into();
    assert_eq!(
        full.template_for(Stage::Instruction, &odd),
        "instruction/no_such_task.j2"
    );
}

#[test]
fn every_compact_template_renders_within_budget_for_every_task_document_and_format() {
    let (tax, schemas) = inputs();
    let p = prompts(TemplateProfile::Compact);
    let levels: Vec<u8> = tax.difficulties.iter().map(|d| d.level).collect();
    let mut seen = std::collections::HashSet::new();
    let mut worst = [0usize; 2];
    for (n, (task, document, format)) in cells(tax).into_iter().enumerate() {
        // Every difficulty level somewhere, so level-dependent wording is rendered too.
        let level = levels[n % levels.len()];
        let it = item(tax, &task, &document, &format, level);
        let base = base_context(tax, schemas, &it);
        let stages = [
            Stage::Document,
            Stage::Instruction,
            Stage::Answer,
            Stage::Repair,
            Stage::Judge,
        ];
        for stage in stages {
            let name = p.template_for(stage, &it);
            let m = p
                .render(&name, &context(stage, &base))
                .unwrap_or_else(|e| panic!("{task}/{document}/{format} {stage:?}: {e}"));
            // The expensive checks once per template, family, task and format.
            let key = (
                name.clone(),
                it.family.clone(),
                task.clone(),
                format.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            let system = tokens(&m[0].content);
            assert!(
                system <= SYSTEM_BUDGET,
                "{name} for {task}/{document}/{format}: system prompt of {system} tokens"
            );
            worst[0] = worst[0].max(system);
            if matches!(stage, Stage::Document | Stage::Instruction | Stage::Answer) {
                assert!(name.starts_with("compact/"), "{stage:?} uses {name}");
                let roles: Vec<&str> = m.iter().map(|x| x.role.as_str()).collect();
                assert_eq!(roles, ["system", "user", "assistant", "user"], "{name}");
                let overhead: usize = m.iter().map(|x| tokens(&x.content)).sum();
                assert!(
                    overhead <= OVERHEAD_BUDGET,
                    "{name} for {task}/{document}/{format}: {overhead} tokens around the inputs"
                );
                worst[1] = worst[1].max(overhead);
            }
        }
    }
    eprintln!(
        "largest compact system prompt {} tokens, largest prompt overhead {}",
        worst[0], worst[1]
    );
}

/// The example document and the example answer of a task's answer prompt.
fn worked_example(p: &Prompts, it: &PlanItem) -> (String, String) {
    let (tax, schemas) = inputs();
    let base = base_context(tax, schemas, it);
    let instr = p
        .render(
            &p.template_for(Stage::Instruction, it),
            &context(Stage::Instruction, &base),
        )
        .unwrap();
    let answer = p
        .render(
            &p.template_for(Stage::Answer, it),
            &context(Stage::Answer, &base),
        )
        .unwrap();
    let instruction = &instr[2].content;
    let doc = answer[1]
        .content
        .strip_prefix(&format!("{instruction}\n\nDocument:\n"))
        .unwrap_or_else(|| panic!("{}: example prompt shape: {}", it.task, answer[1].content))
        .to_string();
    (doc, answer[2].content.clone())
}

#[test]
fn worked_examples_are_valid_answers() {
    let (tax, schemas) = inputs();
    let p = prompts(TemplateProfile::Compact);
    for (ti, task) in tax.tasks.iter().enumerate() {
        // One compatible document per family: examples may differ by family.
        let mut families = std::collections::HashSet::new();
        let documents: Vec<&str> = tax
            .documents
            .iter()
            .enumerate()
            .filter(|(di, d)| tax.compat[ti][*di] > 0.0 && families.insert(d.family.clone()))
            .map(|(_, d)| d.id.as_str())
            .collect();
        for (document, format) in documents
            .iter()
            .flat_map(|d| task.formats.iter().map(move |f| (*d, f)))
        {
            let it = item(tax, &task.id, document, format, 3);
            let (doc, answer) = worked_example(&p, &it);
            let instruction = {
                let base = base_context(tax, schemas, &it);
                p.render(
                    &p.template_for(Stage::Instruction, &it),
                    &context(Stage::Instruction, &base),
                )
                .unwrap()[2]
                    .content
                    .clone()
            };
            // The example instruction passes the keyword check a real one must pass.
            let lower = instruction.to_lowercase();
            assert!(
                task.keywords.iter().any(|k| lower.contains(k.as_str())),
                "{}: example instruction names none of {:?}: {instruction}",
                task.id,
                task.keywords
            );
            if format != "json" {
                assert!(
                    !answer.trim_start().starts_with('{'),
                    "{}: {answer}",
                    task.id
                );
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&answer)
                .unwrap_or_else(|e| panic!("{}: example answer is not JSON: {e}", task.id));
            schemas::validate(schemas.get(&task.id).unwrap(), &v)
                .unwrap_or_else(|e| panic!("{}: example answer: {e}", task.id));
            // Spans with offsets index the example document exactly.
            for key in ["entities", "phi"] {
                for s in v[key].as_array().into_iter().flatten() {
                    let (a, b) = (
                        s["start"].as_u64().unwrap() as usize,
                        s["end"].as_u64().unwrap() as usize,
                    );
                    assert_eq!(doc.get(a..b), s["text"].as_str(), "{}: span {s}", task.id);
                }
            }
            // Verbatim evidence is verbatim.
            for key in ["evidence", "premise_excerpt"] {
                let quotes: Vec<&str> = match &v[key] {
                    serde_json::Value::String(s) => vec![s.as_str()],
                    serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
                    _ => Vec::new(),
                };
                for q in quotes {
                    assert!(
                        doc.contains(q),
                        "{}: {key} {q:?} not in the example",
                        task.id
                    );
                }
            }
            for list in ["codes", "relations", "factors"] {
                for x in v[list].as_array().into_iter().flatten() {
                    let q = x["evidence"].as_str().unwrap();
                    assert!(
                        doc.contains(q),
                        "{}: evidence {q:?} not in the example",
                        task.id
                    );
                }
            }
        }
    }
}

#[test]
fn estimate_tokens_tracks_the_real_tokenizer() {
    let (tax, schemas) = inputs();
    let mut texts: Vec<String> = Vec::new();
    for profile in [TemplateProfile::Full, TemplateProfile::Compact] {
        let p = prompts(profile);
        for (task, document, format) in cells(tax).into_iter().step_by(97) {
            let it = item(tax, &task, &document, &format, 4);
            let base = base_context(tax, schemas, &it);
            for stage in [Stage::Document, Stage::Instruction, Stage::Answer] {
                let m = p
                    .render(&p.template_for(stage, &it), &context(stage, &base))
                    .unwrap();
                texts.extend(m.into_iter().map(|x| x.content));
            }
        }
    }
    let (mut real, mut est) = (0usize, 0u64);
    for t in &texts {
        let (r, e) = (tokens(t), estimate_tokens(t));
        // Each text within 30%, the total within 10%.
        assert!(
            (e as f64) > 0.7 * r as f64 && (e as f64) < 1.3 * r as f64,
            "estimate {e} vs {r} tokens for {:?}",
            &t[..t.len().min(200)]
        );
        real += r;
        est += e;
    }
    let ratio = est as f64 / real as f64;
    eprintln!(
        "estimate / real tokens over {} prompts: {ratio:.3}",
        texts.len()
    );
    assert!((0.9..1.1).contains(&ratio), "{ratio}");
}

#[test]
fn people_are_not_the_examples_and_compact_requests_name_them() {
    let (tax, schemas) = inputs();
    let p = prompts(TemplateProfile::Compact);
    for i in 0..200 {
        for sex in ["female", "male"] {
            let people = people(&format!("item-{i}"), sex);
            for role in ["patient", "clinician", "colleague", "mrn"] {
                let name = people[role].as_str().unwrap();
                assert_eq!(p.examples.name_in(name), None, "{role} {name:?}");
            }
            assert_ne!(people["clinician"], people["colleague"]);
        }
    }
    // The same item gets the same people (a resumed run renders the same prompt).
    assert_eq!(people("a", "male"), people("a", "male"));
    let it = item(tax, "summarization", "progress_note", "plain_text", 1);
    let ctx = base_context(tax, schemas, &it);
    let msgs = p
        .render(&p.template_for(Stage::Document, &it), &ctx)
        .expect("renders");
    let request = &msgs.last().unwrap().content;
    let patient = ctx["people"]["patient"].as_str().unwrap();
    assert!(request.contains(patient), "{request}");
    let guideline = tax
        .documents
        .iter()
        .find(|d| d.family == "guideline_label")
        .unwrap();
    let it = item(tax, "summarization", &guideline.id, "plain_text", 1);
    let ctx = base_context(tax, schemas, &it);
    let msgs = p
        .render(&p.template_for(Stage::Document, &it), &ctx)
        .expect("renders");
    assert!(!msgs.last().unwrap().content.contains("Names to use"));
}
