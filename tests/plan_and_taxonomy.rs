//! The taxonomy loads with its exact counts; the plan is deterministic, stratified and
//! stable under --limit.

mod common;
use common::*;

fn plan_json(cfg: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--config", cfg.to_str().unwrap(), "--json"];
    args.extend(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn taxonomy_command_reports_exact_counts() {
    let o = run(&[
        "taxonomy",
        "--dir",
        repo().join("taxonomy").to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tasks"], 14);
    assert_eq!(v["documents"], 98);
    assert_eq!(v["difficulties"], 6);
    assert_eq!(v["formats"], 2);
    assert!(v["icd10cm_billable"].as_u64().unwrap() > 70_000);
    let o = run(&[
        "taxonomy",
        "--dir",
        repo().join("taxonomy").to_str().unwrap(),
    ]);
    assert!(
        stdout(&o).contains("14 task types x 98 document types"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn plan_is_deterministic_stratified_and_prefix_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http://127.0.0.1:9/v1", 500, "");
    let a = plan_json(&cfg, &[]);
    let b = plan_json(&cfg, &[]);
    assert_eq!(a, b, "same config, same plan");
    let items = a["items"].as_array().unwrap();
    assert_eq!(items.len(), 500);
    let quota_sum: u64 = a["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["quota"].as_u64().unwrap())
        .sum();
    assert_eq!(quota_sum, 500);
    // Every task gets items, roughly in proportion to its weight; every family appears.
    assert_eq!(a["summary"]["by_task"].as_object().unwrap().len(), 14);
    assert_eq!(a["summary"]["by_family"].as_object().unwrap().len(), 10);
    for (_, n) in a["summary"]["by_task"].as_object().unwrap() {
        assert!(n.as_u64().unwrap() >= 20, "task share too small: {n}");
    }
    // Hardest levels are emphasised (weights in axes.toml).
    let d = &a["summary"]["by_difficulty"];
    assert!(d["5"].as_u64() > d["1"].as_u64());
    // Ids are unique and stable; the first N of a plan are the --limit N plan.
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 500);
    let limited = plan_json(&cfg, &["--limit", "20"]);
    assert_eq!(limited["items"].as_array().unwrap()[..], items[..20]);
    // Another seed gives other ids.
    let other = plan_json(&cfg, &["--seed", "8"]);
    assert_ne!(other["items"][0]["id"], items[0]["id"]);
    assert!(a["estimate"]["teacher_calls"].as_u64().unwrap() == 1500);
    assert!(a["estimate"]["prompt_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn small_plan_still_spreads_over_tasks_and_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http://127.0.0.1:9/v1", 24, "");
    let a = plan_json(&cfg, &[]);
    assert!(
        a["summary"]["by_task"].as_object().unwrap().len() >= 12,
        "{}",
        a["summary"]
    );
    assert_eq!(a["summary"]["by_format"].as_object().unwrap().len(), 2);
    assert!(a["summary"]["document_types"].as_u64().unwrap() >= 15);
}

#[test]
fn plan_shows_prompt_tokens_per_item_for_the_chosen_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "http://unused.invalid", 6, "");
    let full = plan_json(&cfg, &[]);
    let per_item = |v: &serde_json::Value| -> Vec<u64> {
        let rows = v["item_prompt_tokens"].as_array().unwrap();
        assert_eq!(rows.len(), 6);
        for (row, item) in rows.iter().zip(v["items"].as_array().unwrap()) {
            assert_eq!(row["id"], item["id"]);
            let parts: u64 = ["document", "instruction", "answer"]
                .iter()
                .map(|k| row[*k].as_u64().unwrap())
                .sum();
            assert!(
                parts > 0 && row["total"].as_u64().unwrap() == parts,
                "{row}"
            );
        }
        rows.iter().map(|r| r["total"].as_u64().unwrap()).collect()
    };
    assert_eq!(full["estimate"]["template_profile"], "full");
    let full_tokens = per_item(&full);
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[templates]\nprofile = \"compact\"\n"),
    )
    .unwrap();
    let compact = plan_json(&cfg, &[]);
    assert_eq!(compact["estimate"]["template_profile"], "compact");
    let compact_tokens = per_item(&compact);
    // The same items, with far shorter prompts.
    assert_eq!(compact["items"], full["items"]);
    for (c, f) in compact_tokens.iter().zip(&full_tokens) {
        assert!(c * 10 < f * 8, "compact {c} vs full {f} prompt tokens");
    }
    // The text output lists them too.
    let o = run(&["plan", "--config", cfg.to_str().unwrap()]);
    let out = stdout(&o);
    assert!(
        out.contains("prompt tokens per item (compact templates)"),
        "{out}"
    );
    assert!(
        out.contains(compact["items"][0]["id"].as_str().unwrap()),
        "{out}"
    );
}
