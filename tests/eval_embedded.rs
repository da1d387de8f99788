//! `mediflow eval --model embedded` on a few ICD-10-CM questions: multiple choice scored by
//! the log-likelihood of each option (the embedded model always has log-probabilities),
//! and the same questions answered by constrained generation of the JSON answer.

mod common;
use common::*;
use mediflow::eval::predictions;
use mediflow::eval::report::Results;

fn results(out: &std::path::Path) -> Results {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

#[test]
fn embedded_model_scores_multiple_choice_by_loglikelihood_and_by_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let tasks: Vec<String> = [
        "evals/icd10cm_description_to_code.yaml",
        "evals/icd10cm_code_to_description.yaml",
    ]
    .iter()
    .map(|t| repo().join(t).display().to_string())
    .collect();
    let out = tmp.path().join("ll");
    let o = run(&[
        "eval",
        "--model",
        "embedded",
        "--tasks",
        &tasks.join(","),
        "--out",
        out.to_str().unwrap(),
        "--limit",
        "4",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let preds = predictions::read(&out).unwrap();
    assert_eq!(preds.len(), 8);
    for p in &preds {
        assert_eq!(p.mode, "loglikelihood");
        let lp = p.option_logprobs.as_ref().unwrap();
        assert_eq!(lp.len(), 4);
        assert!(lp.iter().all(|x| x.is_finite() && *x < 0.0), "{lp:?}");
        // The answer is the most likely option; accuracy says whether it is the right one.
        let best = (0..4).max_by(|&a, &b| lp[a].total_cmp(&lp[b])).unwrap();
        let letter = ["A", "B", "C", "D"][best];
        assert_eq!(p.answer.as_ref().unwrap()["answer"], letter);
        let right = p.reference["answer"] == letter;
        assert_eq!(p.scores["accuracy"], Some(if right { 1.0 } else { 0.0 }));
        assert!(p.malformed.is_none());
    }
    let r = results(&out);
    for t in &r.tasks {
        assert_eq!(t.modes.get("loglikelihood"), Some(&4));
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert!(t.metrics.contains_key("accuracy_norm"));
    }

    // Generation of the JSON answer, constrained by the schema: never malformed.
    let gen_task = tmp.path().join("gen.yaml");
    let text = std::fs::read_to_string(&tasks[0])
        .unwrap()
        .replace("scoring: auto", "scoring: generate")
        .replace(
            "../taxonomy",
            &repo().join("taxonomy").display().to_string(),
        );
    std::fs::write(&gen_task, text).unwrap();
    let out = tmp.path().join("gen");
    let o = run(&[
        "eval",
        "--model",
        "embedded",
        "--tasks",
        gen_task.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--limit",
        "3",
        "--constrain",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let preds = predictions::read(&out).unwrap();
    assert_eq!(preds.len(), 3);
    for p in &preds {
        assert_eq!(p.mode, "generate");
        assert!(p.malformed.is_none(), "{p:?}");
        let a = p.answer.as_ref().unwrap()["answer"].as_str().unwrap();
        assert!(["A", "B", "C", "D"].contains(&a));
        assert!(p.completion_tokens > 0 && p.prompt_tokens > 0);
    }
    assert_eq!(results(&out).tasks[0].malformed, 0);
}
