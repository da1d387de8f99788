//! A small end-to-end `run` on the embedded teacher: the real default model (pulled into
//! the cache on first use), in-process, through every stage to JSONL + Parquet.

mod common;
use common::*;
use mediflow::sink::read_parquet;

#[test]
fn embedded_teacher_runs_the_pipeline_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "http://unused.invalid",
        24,
        r#"
[teacher.embedded]
device = "cpu"
max_batch = 8
repetition_penalty = 1.1

# The embedded model judges too (2 samples). A 135M model's scores say little, so the
# thresholds are at the floor: this checks the mechanics (constrained verdicts, medians).
[judge]
enabled = true
samples = 2
min = { quality = 1 }
min_mean = 1.0

# This test is about the embedded teacher's mechanics, not the quality of what a 135M model
# writes (which the gate rightly rejects, most of it: see tests/gate.rs and the quickstart).
[filters]
enabled = false
"#,
    );
    edit(&cfg, "kind = \"openai\"", "kind = \"embedded\"");
    edit(
        &cfg,
        "timeout_secs = 5",
        "timeout_secs = 600\ntemperature = 0.7",
    );
    edit(
        &cfg,
        "[engine]",
        "[teacher.max_tokens]\ndocument = 128\ninstruction = 64\nanswer = 192\n\n[engine]",
    );
    // The first 6 items of the plan cover both output formats.
    let limit = "6";
    let out = tmp.path().join("out");
    let o = run_to(&cfg, &out, &["--json", "--limit", limit]);
    assert!(o.status.success(), "run failed: {}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["planned"], 6, "{summary}");

    assert_exactly_once(&out, &planned_ids(&cfg, Some(6)));
    let recs = records(&out);
    let rejs = rejects(&out);
    assert!(!recs.is_empty(), "nothing accepted: {rejs:?}");
    // Every item that passed the filters was judged (rejects at the judge keep scores).
    for r in recs.iter().chain(
        rejs.iter()
            .filter(|j| j.stage == "judge")
            .map(|j| &j.record),
    ) {
        assert!(r.judge_samples >= 1, "{}: not judged", r.id);
        let scores = [r.quality, r.alignment, r.coherence, r.realism, r.difficulty];
        assert!(
            scores.iter().all(|s| (1.0..=5.0).contains(&s.unwrap())),
            "{scores:?}"
        );
    }
    let tax = mediflow::taxonomy::load(&repo().join("taxonomy")).unwrap();
    let schemas = mediflow::schemas::Schemas::load(&repo().join("schemas"), &tax).unwrap();
    for r in &recs {
        assert_eq!(r.teacher_backend, "embedded");
        assert!(!r.instruction.is_empty() && !r.input.is_empty() && !r.output.is_empty());
        assert!(r.completion_tokens > 0 && r.prompt_tokens > r.completion_tokens);
        if r.output_format == "json" {
            // Constrained decoding: the answer is schema-valid without a repair round.
            let v: serde_json::Value = serde_json::from_str(&r.output).unwrap();
            mediflow::schemas::validate(schemas.get(&r.task_type).unwrap(), &v).unwrap();
            assert_eq!(r.repairs, 0, "{}", r.output);
        }
    }
    // No rejection is a schema failure: the grammar makes those impossible.
    for rj in &rejs {
        assert!(
            rj.reason != "schema_invalid" && rj.reason != "invalid_json",
            "{rj:?}"
        );
    }
    let pq = read_parquet(&out.join("data/part-00000.parquet")).unwrap();
    assert_eq!(pq, recs);
}
