//! `mediflow dedup`: a run directory with planted exact and near duplicates, written in two
//! record orders, gives the same survivors and rejects; outputs + rejects = inputs.

mod common;
use common::*;
use mediflow::record::{Record, SCHEMA_NOTE};
use mediflow::sink::Sinks;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A 60-word clinical-ish text, unrelated to other salts.
fn text(salt: usize) -> String {
    (0..60)
        .map(|i| format!("finding{salt}x{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rec(id: &str, instruction: &str, input: &str) -> Record {
    Record {
        id: id.into(),
        instruction: instruction.into(),
        input: input.into(),
        output: format!("answer of {id}"),
        ..Default::default()
    }
}

/// Ten originals and, with ids sorting after theirs, planted duplicates: (record, expected
/// reason and kept id).
fn planted() -> Vec<(Record, Option<(&'static str, &'static str)>)> {
    let mut v: Vec<_> = (0..10)
        .map(|i| {
            (
                rec(&format!("a{i:02}"), "Summarize the note.", &text(i)),
                None,
            )
        })
        .collect();
    // Case and punctuation differ only.
    v.push((
        rec(
            "b-exact",
            "SUMMARIZE the note!",
            &text(3).replace(' ', ", "),
        ),
        Some(("exact_duplicate", "a03")),
    ));
    // The schema note appended to json instructions is not part of the text.
    v.push((
        rec(
            "c-schema",
            &format!("Summarize the note.{SCHEMA_NOTE}{{}}\n```"),
            &text(5),
        ),
        Some(("exact_duplicate", "a05")),
    ));
    // The last word changed: one shingle of 59 differs.
    v.push((
        rec(
            "d-near",
            "Summarize the note.",
            &text(7).replace("finding7x59", "changed"),
        ),
        Some(("near_duplicate", "a07")),
    ));
    v
}

fn write_run(dir: &Path, recs: impl Iterator<Item = Record>) {
    let mut sinks = Sinks::open(dir, 4, |_| {}).unwrap();
    for r in recs {
        sinks.accept(r).unwrap();
    }
    sinks.finish().unwrap();
}

fn dedup(input: &Path, out: &Path) -> std::process::Output {
    Command::new(bin())
        .args([
            "dedup",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

/// Rejects as id -> (stage, reason, detail).
type Rejects = BTreeMap<String, (String, String, String)>;

/// Survivor ids (sorted) and rejects.
fn outcome(out: &Path) -> (Vec<String>, Rejects) {
    let mut kept: Vec<String> = records(out).into_iter().map(|r| r.id).collect();
    kept.sort();
    let rej = rejects(out)
        .into_iter()
        .map(|j| (j.id, (j.stage, j.reason, j.detail)))
        .collect();
    (kept, rej)
}

#[test]
fn dedup_drops_planted_duplicates_whatever_the_record_order() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = planted();
    let (in1, in2) = (tmp.path().join("in1"), tmp.path().join("in2"));
    write_run(&in1, planted.iter().map(|(r, _)| r.clone()));
    write_run(&in2, planted.iter().rev().map(|(r, _)| r.clone()));

    let out1 = tmp.path().join("out1");
    let o = dedup(&in1, &out1);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["input_records"], 13);
    assert_eq!(summary["kept"], 10);
    assert_eq!(summary["exact_duplicates"], 2);
    assert_eq!(summary["near_duplicates"], 1);

    let (kept, rej) = outcome(&out1);
    let expected_kept: Vec<String> = (0..10).map(|i| format!("a{i:02}")).collect();
    assert_eq!(kept, expected_kept);
    let expected_rej: Rejects = planted
        .iter()
        .filter_map(|(r, e)| {
            e.map(|(reason, of)| {
                let j = ("dedup".into(), reason.into(), format!("duplicate of {of}"));
                (r.id.clone(), j)
            })
        })
        .collect();
    assert_eq!(rej, expected_rej);
    // Outputs + rejects = inputs, the records unchanged.
    let mut all: Vec<Record> = records(&out1);
    all.extend(rejects(&out1).into_iter().map(|j| j.record));
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let mut inputs: Vec<Record> = planted.into_iter().map(|(r, _)| r).collect();
    inputs.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all, inputs);

    // The reversed input gives the same survivors and rejects.
    let out2 = tmp.path().join("out2");
    let o = dedup(&in2, &out2);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(outcome(&out2), (kept, rej));

    // A non-empty output directory is refused.
    let o = dedup(&in1, &out1);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
}
