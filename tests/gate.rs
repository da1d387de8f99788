//! The quality gate against a hand-labelled set (tests/fixtures/gate/: 120 records written
//! by hand, half good and half junk of the kinds small and broken teachers write, across
//! all 14 tasks). `tuning.jsonl` is the half the filters were tuned on; `heldout.jsonl`
//! was written separately and is only measured. The gate runs without a judge here.

use mediflow::quality::filters::{self, FilterCtx, FiltersConfig};
use mediflow::record::Record;
use mediflow::schemas::Schemas;
use mediflow::taxonomy::{self, Taxonomy};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

struct Labelled {
    id: String,
    good: bool,
    kind: String,
    rec: Record,
}

fn load(file: &str) -> Vec<Labelled> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gate")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("fixture file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("fixture line is JSON");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Labelled {
                id: s("id"),
                good: s("label") == "good",
                kind: s("kind"),
                rec: Record {
                    id: s("id"),
                    task_type: s("task_type"),
                    input_data: s("input_data"),
                    output_format: s("output_format"),
                    difficulty_level: v["difficulty_level"].as_u64().unwrap_or(0) as u8,
                    instruction: s("instruction"),
                    input: s("input"),
                    output: s("output"),
                    ..Default::default()
                },
            }
        })
        .collect()
}

fn setup() -> (Taxonomy, Schemas) {
    let tax = taxonomy::load(Path::new("taxonomy")).expect("taxonomy");
    let schemas = Schemas::load(Path::new("schemas"), &tax).expect("schemas");
    (tax, schemas)
}

/// Junk caught and good kept, as fractions, with a line per wrong call.
fn measure(file: &str, tax: &Taxonomy, schemas: &Schemas) -> (f64, f64, Vec<String>) {
    let cfg = FiltersConfig::default();
    // The worked examples of our own templates, as `run` compares with them.
    let examples = mediflow::quality::examples::Examples::from_dir(Path::new("templates"));
    let cx = FilterCtx {
        tax,
        schemas,
        cfg: &cfg,
        examples: Some(&examples),
    };
    let rows = load(file);
    assert!(rows.len() >= 50, "{file}: {} rows", rows.len());
    let (mut caught, mut junk, mut kept, mut good) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    let mut caught_by = Vec::new();
    let mut by_kind: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &rows {
        let verdict = filters::check(&r.rec, &cx);
        let e = by_kind.entry(r.kind.clone()).or_default();
        e.1 += 1;
        if r.good {
            good += 1;
            match verdict {
                Ok(()) => {
                    kept += 1;
                    e.0 += 1;
                }
                Err(d) => wrong.push(format!(
                    "{} good {} dropped: {}: {}",
                    r.id, r.rec.task_type, d.reason, d.detail
                )),
            }
        } else {
            junk += 1;
            match verdict {
                Err(d) => {
                    caught += 1;
                    e.0 += 1;
                    caught_by.push(format!(
                        "{} {} caught: {}: {}",
                        r.id, r.kind, d.reason, d.detail
                    ));
                }
                Ok(()) => wrong.push(format!(
                    "{} junk {} ({}) passed",
                    r.id, r.kind, r.rec.task_type
                )),
            }
        }
    }
    eprintln!("{file}: junk caught {caught}/{junk}, good kept {kept}/{good}");
    for (k, (ok, n)) in &by_kind {
        eprintln!("  {k:<20} {ok}/{n} right");
    }
    for w in caught_by.iter().chain(&wrong) {
        eprintln!("  {w}");
    }
    (
        caught as f64 / junk as f64,
        kept as f64 / good as f64,
        wrong,
    )
}

#[test]
fn gate_catches_junk_and_keeps_good_records_on_the_tuning_half() {
    let (tax, schemas) = setup();
    let (caught, kept, wrong) = measure("tuning.jsonl", &tax, &schemas);
    assert!(
        caught >= 0.90 && kept >= 0.95,
        "tuning half: {:.1}% junk caught (need 90%), {:.1}% good kept (need 95%):\n{}",
        caught * 100.0,
        kept * 100.0,
        wrong.join("\n")
    );
}

/// The held-out half is measured, not tuned on: its figures go to docs/quality-gate.md. The floor
/// here only guards against a change that breaks the gate on data it was not fitted to.
#[test]
fn gate_generalises_to_the_held_out_half() {
    let (tax, schemas) = setup();
    let (caught, kept, wrong) = measure("heldout.jsonl", &tax, &schemas);
    assert!(
        caught >= 0.75 && kept >= 0.85,
        "held-out half: {:.1}% junk caught, {:.1}% good kept:\n{}",
        caught * 100.0,
        kept * 100.0,
        wrong.join("\n")
    );
}

#[test]
fn fixture_sets_are_balanced_and_cover_every_task() {
    let (tax, _) = setup();
    for file in ["tuning.jsonl", "heldout.jsonl"] {
        let rows = load(file);
        let good = rows.iter().filter(|r| r.good).count();
        assert_eq!(good * 2, rows.len(), "{file}: half good");
        for t in &tax.tasks {
            for label in [true, false] {
                assert!(
                    rows.iter()
                        .any(|r| r.good == label && r.rec.task_type == t.id),
                    "{file}: no {} record of {}",
                    if label { "good" } else { "junk" },
                    t.id
                );
            }
        }
    }
}
