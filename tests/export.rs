//! `mediflow export`: every format's Parquet reads back to its JSONL rows and matches the
//! card's declared features and split counts; splits are stratified, deterministic and
//! decontaminated; mixing honours the ratio; the template check flags planted failures.

mod common;
use arrow::datatypes::{DataType, Field};
use common::*;
use mediflow::dpo::{Pair, Scores};
use mediflow::quality::dedup::{record_text, Dedup, DedupConfig};
use mediflow::record::Record;
use mediflow::sink::{JsonlAppender, Sinks};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

const CELLS: [(&str, &str, u8, &str); 4] = [
    ("summarization", "discharge_summary", 3, "plain_text"),
    ("clinical_coding", "progress_note", 5, "json"),
    ("question_answering", "radiology_report", 2, "plain_text"),
    ("summarization", "operative_note", 6, "plain_text"),
];

/// A record of cell `c` whose texts are unrelated to every other (c, k).
fn rec(c: usize, k: usize) -> Record {
    let (task, doc, difficulty, format) = CELLS[c];
    let judged = k.is_multiple_of(3);
    Record {
        id: format!("r{c}-{k:03}"),
        task_type: task.into(),
        input_data: doc.into(),
        difficulty_level: difficulty,
        output_format: format.into(),
        document_family: format!("family{}", c % 2),
        instruction: format!(
            "Task {c} {k}: summarise the findings of note {c}x{k} for the ward team."
        ),
        input: (0..60)
            .map(|i| format!("c{c}k{k}w{i}"))
            .collect::<Vec<_>>()
            .join(" "),
        output: format!("Answer for {c} {k}."),
        quality: judged.then_some(4.0),
        alignment: judged.then_some(4.0),
        coherence: judged.then_some(5.0),
        realism: judged.then_some(3.0),
        difficulty: judged.then_some(2.0),
        judge_samples: if judged { 3 } else { 0 },
        teacher_model: "mock".into(),
        ..Default::default()
    }
}

fn write_run(dir: &Path, recs: &[Record]) {
    let mut sinks = Sinks::open(dir, 16, |_| {}).unwrap();
    for r in recs {
        sinks.accept(r.clone()).unwrap();
    }
    sinks.finish().unwrap();
}

fn pair(r: &Record, variant: usize) -> Pair {
    let s = |q: f64| Scores {
        quality: q,
        alignment: q,
        coherence: q,
        realism: q,
        difficulty: 3.0,
    };
    Pair {
        id: format!("p-{}-{variant}", r.id),
        record_id: r.id.clone(),
        strategy: "error_injection".into(),
        task_type: r.task_type.clone(),
        input_data: r.input_data.clone(),
        output_format: r.output_format.clone(),
        difficulty_level: r.difficulty_level,
        instruction: r.instruction.clone(),
        input: r.input.clone(),
        output: r.output.clone(),
        rejected_output: format!("{} (with an injected error {variant})", r.output),
        error_type: Some(["wrong_dose", "wrong_laterality"][variant % 2].into()),
        chosen_scores: (variant == 0).then(|| s(4.0)),
        rejected_scores: (variant == 0).then(|| s(2.0)),
        margin: (variant == 0).then_some(2.0),
        chosen_model: "reference".into(),
        rejected_model: "mock".into(),
        judge_model: (variant == 0).then(|| "mock".into()),
    }
}

/// Three cells of 25 records, one of 8; DPO pairs for every third record (two for some).
fn clean_run(dir: &Path) -> Vec<Record> {
    let mut recs: Vec<Record> = (0..3)
        .flat_map(|c| (0..25).map(move |k| rec(c, k)))
        .collect();
    recs.extend((0..8).map(|k| rec(3, k)));
    write_run(dir, &recs);
    std::fs::create_dir_all(dir.join("dpo")).unwrap();
    let mut w = JsonlAppender::open(&dir.join("dpo/error_injection.jsonl")).unwrap();
    for (i, r) in recs.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        w.append(&pair(r, 0)).unwrap();
        if i % 2 == 0 {
            w.append(&pair(r, 1)).unwrap();
        }
    }
    recs
}

fn export(run: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "export",
        "--run",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    common::run(&args)
}

fn export_ok(run: &Path, out: &Path, extra: &[&str]) -> Value {
    let o = export(run, out, extra);
    assert!(o.status.success(), "export failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// A JSON value without null object members (arrow-json leaves null columns out).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

fn parquet_rows(p: &Path) -> Vec<Value> {
    let file = std::fs::File::open(p).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let mut buf = Vec::new();
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&batch.unwrap()).unwrap();
        w.finish().unwrap();
        drop(w);
        for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line).unwrap());
        }
    }
    out
}

fn jsonl_rows(p: &Path) -> Vec<Value> {
    mediflow::sink::read_jsonl(p, false).unwrap()
}

/// Rows per split name (from the JSONL twins).
fn split_rows(out: &Path) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in files(&out.join("jsonl"), "jsonl") {
        let name = f.file_name().unwrap().to_str().unwrap();
        let split = name.split('-').next().unwrap().to_string();
        m.entry(split).or_default().extend(jsonl_rows(&f));
    }
    m
}

/// The YAML front matter of a dataset card.
fn front_matter(out: &Path) -> Value {
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    let yaml = card
        .strip_prefix("---\n")
        .and_then(|s| s.split_once("\n---\n"))
        .expect("front matter")
        .0;
    serde_norway::from_str(yaml).unwrap()
}

/// The Hugging Face feature of an Arrow field, written out independently of the exporter.
fn assert_feature(f: &Value, field: &Field) {
    assert_eq!(f["name"], field.name().as_str(), "{f}");
    assert_type(f, field.data_type(), field.name());
}

fn assert_type(f: &Value, t: &DataType, name: &str) {
    let fields = |v: &Value, fs: &arrow::datatypes::Fields| {
        let list = v.as_array().unwrap_or_else(|| panic!("{name}: {v}"));
        assert_eq!(list.len(), fs.len(), "{name}");
        for (x, fld) in list.iter().zip(fs.iter()) {
            assert_feature(x, fld);
        }
    };
    match t {
        DataType::List(item) => match item.data_type() {
            DataType::Struct(fs) => fields(&f["list"], fs),
            other => panic!("{name}: unexpected list item {other}"),
        },
        DataType::Struct(fs) => fields(&f["struct"], fs),
        prim => {
            let want = match prim {
                DataType::Utf8 => "string",
                DataType::UInt8 => "uint8",
                DataType::UInt32 => "uint32",
                DataType::UInt64 => "uint64",
                DataType::Float64 => "float64",
                DataType::Boolean => "bool",
                other => panic!("{name}: unexpected type {other}"),
            };
            assert_eq!(f["dtype"], want, "{name}");
        }
    }
}

/// Parquet = JSONL row for row; the card's features = the Parquet schema; the card's
/// splits and data files = the files.
fn assert_consistent(out: &Path) {
    let fm = front_matter(out);
    let features = fm["dataset_info"]["features"].as_array().unwrap();
    let parquets = files(&out.join("data"), "parquet");
    assert!(!parquets.is_empty());
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in &parquets {
        let name = p.file_stem().unwrap().to_str().unwrap();
        let twin = out.join("jsonl").join(format!("{name}.jsonl"));
        let pq: Vec<Value> = parquet_rows(p);
        let js: Vec<Value> = jsonl_rows(&twin).into_iter().map(strip_nulls).collect();
        assert_eq!(pq.len(), js.len(), "{name}");
        assert_eq!(pq, js, "{name}: parquet rows differ from jsonl rows");
        let schema = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap())
            .unwrap()
            .schema()
            .clone();
        assert_eq!(schema.fields().len(), features.len());
        for (f, field) in features.iter().zip(schema.fields()) {
            assert_feature(f, field);
        }
        *counts
            .entry(name.split('-').next().unwrap().into())
            .or_default() += pq.len();
    }
    let declared: BTreeMap<String, usize> = fm["dataset_info"]["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["num_examples"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(declared, counts);
    let mut listed: Vec<String> = fm["configs"][0]["data_files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| {
            d["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    let on_disk: Vec<String> = parquets
        .iter()
        .map(|p| format!("data/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn every_format_round_trips_and_matches_its_card() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let recs = clean_run(&run);
    for (format, extra) in [
        ("sft-messages", vec![]),
        ("sft-prompt-completion", vec![]),
        ("dpo", vec![]),
        ("dpo", vec!["--conversational"]),
    ] {
        let out = tmp.path().join(format!("{format}{}", extra.len()));
        let mut args = vec!["--format", format];
        args.extend(extra.iter().copied());
        let summary = export_ok(&run, &out, &args);
        assert_consistent(&out);
        let rows = split_rows(&out);
        let total: usize = rows.values().map(Vec::len).sum();
        assert_eq!(summary["input"], total);
        let first = &rows["train"][0];
        match format {
            "sft-messages" => {
                assert_eq!(total, recs.len());
                let m = first["messages"].as_array().unwrap();
                let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
                assert_eq!(roles, ["system", "user", "assistant"]);
                let r = recs.iter().find(|r| r.id == first["id"]).unwrap();
                assert!(m[0]["content"].as_str().unwrap().ends_with(&r.instruction));
                assert_eq!(m[1]["content"], r.input.as_str());
                assert_eq!(m[2]["content"], r.output.as_str());
            }
            "sft-prompt-completion" => {
                let r = recs.iter().find(|r| r.id == first["id"]).unwrap();
                let prompt = first["prompt"].as_str().unwrap();
                assert!(prompt.contains(&r.instruction) && prompt.ends_with(&r.input));
                assert_eq!(first["completion"], r.output.as_str());
            }
            _ if extra.is_empty() => {
                assert!(first["prompt"].is_string() && first["chosen"].is_string());
                assert_eq!(first["strategy"], "error_injection");
                assert!(first["error_type"].is_string());
            }
            _ => {
                assert_eq!(first["prompt"].as_array().unwrap().len(), 2);
                assert_eq!(first["chosen"][0]["role"], "assistant");
                assert_eq!(first["rejected"].as_array().unwrap().len(), 1);
            }
        }
        // Exporting into the same (now non-empty) directory is refused as an input error.
        let o = export(&run, &out, &args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    }
    // DPO pairs of one source record share a split.
    let rows = split_rows(&tmp.path().join("dpo0"));
    let mut split_of: HashMap<String, String> = HashMap::new();
    for (split, rs) in &rows {
        for r in rs {
            let prev = split_of.insert(r["record_id"].as_str().unwrap().into(), split.clone());
            assert!(
                prev.is_none_or(|p| &p == split),
                "pairs of a record in two splits"
            );
        }
    }
}

/// Split -> sorted ids.
fn assignment(out: &Path) -> BTreeMap<String, BTreeSet<String>> {
    split_rows(out)
        .into_iter()
        .map(|(s, rows)| {
            (
                s,
                rows.iter()
                    .map(|r| r["id"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn splits_are_stratified_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let recs = clean_run(&run);
    let a = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        export_ok(&run, &out, &["--format", "sft-messages", "--seed", seed]);
        assignment(&out)
    };
    let first = a("a", "7");
    assert_eq!(first, a("b", "7"), "same seed, same assignment");
    assert_ne!(first, a("c", "8"), "another seed, another assignment");
    let cell: HashMap<&str, String> = recs
        .iter()
        .map(|r| (r.id.as_str(), r.cell().key()))
        .collect();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    for r in &recs {
        *sizes.entry(r.cell().key()).or_default() += 1;
    }
    for (c, n) in sizes.iter().filter(|(_, n)| **n >= 20) {
        for split in ["train", "validation", "test"] {
            let k = first[split]
                .iter()
                .filter(|id| &cell[id.as_str()] == c)
                .count();
            // 25 items at 0.9 / 0.05 / 0.05: 23 / 1 / 1 (largest remainder).
            let want = if split == "train" { n - 2 } else { 1 };
            assert_eq!(k, want, "cell {c} in {split}");
        }
    }
}

#[test]
fn decontamination_moves_or_drops_duplicates_of_train() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut recs: Vec<Record> = (0..3)
        .flat_map(|c| (0..25).map(move |k| rec(c, k)))
        .collect();
    // Planted in another cell: exact copies (case and punctuation aside) of cell 0's
    // records and near copies (last word changed) of cell 1's.
    for k in 0..12 {
        let mut d = rec(3, k);
        let src = rec(0, k);
        d.instruction = src.instruction.to_uppercase();
        d.input = src.input.replace(' ', ", ");
        recs.push(d);
        let mut n = rec(3, 100 + k);
        let src = rec(1, k);
        n.instruction = src.instruction.clone();
        n.input = src.input.replace(&format!("c1k{k}w59"), "changed");
        recs.push(n);
    }
    write_run(&run, &recs);
    let by_id: HashMap<String, &Record> = recs.iter().map(|r| (r.id.clone(), r)).collect();
    let splits = [
        "--format",
        "sft-prompt-completion",
        "--splits",
        "0.5,0.25,0.25",
    ];

    let out = tmp.path().join("move");
    let summary = export_ok(&run, &out, &splits);
    let moved = summary["decontamination"]["moved_from_validation"]
        .as_u64()
        .unwrap()
        + summary["decontamination"]["moved_from_test"]
            .as_u64()
            .unwrap();
    assert!(
        moved > 0,
        "planted duplicates were split apart and moved: {summary}"
    );
    let a = assignment(&out);
    assert_eq!(a.values().map(BTreeSet::len).sum::<usize>(), recs.len());
    assert_clean(&a, &by_id);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("moved_from_test"),
        "the card reports decontamination"
    );

    let out = tmp.path().join("drop");
    let mut args = splits.to_vec();
    args.extend(["--decontaminate", "drop"]);
    let summary = export_ok(&run, &out, &args);
    let dropped = summary["decontamination"]["dropped_from_validation"]
        .as_u64()
        .unwrap()
        + summary["decontamination"]["dropped_from_test"]
            .as_u64()
            .unwrap();
    assert_eq!(
        dropped, moved,
        "one pass finds what the first move pass found"
    );
    let a = assignment(&out);
    assert_eq!(
        a.values().map(BTreeSet::len).sum::<usize>() as u64,
        recs.len() as u64 - dropped
    );
    assert_clean(&a, &by_id);
}

/// No validation or test record is an exact or near duplicate of a train record.
fn assert_clean(a: &BTreeMap<String, BTreeSet<String>>, by_id: &HashMap<String, &Record>) {
    let mut train = Dedup::new(&DedupConfig::default());
    for id in &a["train"] {
        train.insert(id, &record_text(by_id[id]));
    }
    for split in ["validation", "test"] {
        for id in a.get(split).into_iter().flatten() {
            assert!(
                train.check(&record_text(by_id[id])).is_ok(),
                "{split} record {id} duplicates train"
            );
        }
    }
}

fn write_mix(path: &Path, n: usize) {
    let mut w = JsonlAppender::open(path).unwrap();
    for i in 0..n {
        w.append(&serde_json::json!({
            "messages": [
                {"role": "user", "content": format!("general question {i}")},
                {"role": "assistant", "content": format!("general answer {i}")},
            ],
            "other": i,
        }))
        .unwrap();
    }
}

#[test]
fn mixing_honours_the_ratio() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    clean_run(&run);
    let mix = tmp.path().join("general.jsonl");
    write_mix(&mix, 40);
    for (name, ratio, replacement) in [("a", "0.25", false), ("b", "0.6", true)] {
        let out = tmp.path().join(name);
        let args = [
            "--format",
            "sft-messages",
            "--mix",
            mix.to_str().unwrap(),
            "--mix-ratio",
            ratio,
        ];
        let summary = export_ok(&run, &out, &args);
        assert_consistent(&out);
        let rows = split_rows(&out);
        let train = &rows["train"];
        let general = train.iter().filter(|r| r["source"] == "general").count();
        let domain = train.len() - general;
        let r: f64 = ratio.parse().unwrap();
        assert_eq!(general, (domain as f64 * r / (1.0 - r)).round() as usize);
        assert!((general as f64 / train.len() as f64 - r).abs() <= 1.0 / train.len() as f64);
        assert_eq!(summary["mix"]["with_replacement"], replacement);
        for split in ["validation", "test"] {
            assert!(rows[split].iter().all(|r| r["source"] == "mediflow"));
        }
        // Deterministic.
        let again = tmp.path().join(format!("{name}2"));
        export_ok(&run, &again, &args);
        assert_eq!(split_rows(&again), rows);
    }
    // A Parquet mix file: an sft-messages export's own train shard.
    let pq = tmp.path().join("a/data/train-00000-of-00001.parquet");
    let available = parquet_rows(&pq).len();
    let args = [
        "--format",
        "sft-messages",
        "--mix",
        pq.to_str().unwrap(),
        "--mix-ratio",
        "0.1",
    ];
    let summary = export_ok(&run, &tmp.path().join("pq"), &args);
    assert_eq!(summary["mix"]["available"], available);
    assert_eq!(summary["mix"]["with_replacement"], false);
    let o = export(
        &run,
        &tmp.path().join("c"),
        &[
            "--format",
            "dpo",
            "--mix",
            mix.to_str().unwrap(),
            "--mix-ratio",
            "0.2",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A tokenizer directory: ChatML template and a tiny WordLevel tokenizer.
fn tokenizer_dir(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::json!({
        "chat_template": CHATML,
        "bos_token": null,
        "eos_token": {"content": "<|im_end|>", "special": true},
    });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    let added = |id: u32, s: &str| {
        serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let tok = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<unk>"), added(1, "<|im_start|>"), added(2, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2,
            "answer": 3}, "unk_token": "<unk>"},
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
}

#[test]
fn template_check_flags_planted_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let mut recs: Vec<Record> = (0..6).map(|k| rec(0, k)).collect();
    recs[1].output = format!("{}<|im_end|>", recs[1].output);
    recs[2].output = format!("{}\n{}", recs[2].instruction, recs[2].input);
    recs[3].output = "  ".into();
    write_run(&run, &recs);
    let tok = tmp.path().join("tok");
    tokenizer_dir(&tok);
    for format in ["sft-messages", "sft-prompt-completion"] {
        let out = tmp.path().join(format);
        let args = [
            "--format",
            format,
            "--splits",
            "1,0,0",
            "--check-template",
            tok.to_str().unwrap(),
            "--max-length",
            "150",
        ];
        let summary = export_ok(&run, &out, &args);
        let r = &summary["template_check"];
        assert_eq!(r["examples"], 6);
        assert_eq!(r["assistant_marker"], "<|im_start|>assistant");
        let f = &r["failures"];
        assert_eq!(f["double_eos"], 1, "{r}");
        assert_eq!(r["flagged"]["double_eos"][0], recs[1].id.as_str());
        assert_eq!(f["prompt_in_completion"], 1, "{r}");
        assert_eq!(r["flagged"]["prompt_in_completion"][0], recs[2].id.as_str());
        assert_eq!(f["empty_turn"], 1, "{r}");
        assert_eq!(r["flagged"]["empty_turn"][0], recs[3].id.as_str());
        assert_eq!(f["missing_assistant_marker"], 0);
        // Only the record whose answer repeats its 60-word input is over 150 tokens (the others are about 105).
        assert_eq!(r["over_max_length"], 1, "{r}");
        let t = &r["tokens"];
        assert!(
            t["min"].as_u64() <= t["median"].as_u64() && t["p95"].as_u64() <= t["max"].as_u64()
        );
        // --strict turns the report into a failure.
        let mut strict = args.to_vec();
        strict.push("--strict");
        let o = export(&run, &tmp.path().join(format!("{format}-strict")), &strict);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("double_eos"),
            "the table is printed: {}",
            stderr(&o)
        );
    }
    // Clean records pass --strict.
    let clean = tmp.path().join("clean");
    write_run(&clean, &[rec(0, 0), rec(0, 1)]);
    let o = export(
        &clean,
        &tmp.path().join("clean-out"),
        &[
            "--format",
            "sft-messages",
            "--check-template",
            tok.to_str().unwrap(),
            "--strict",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The default target (the embedded default model's GGUF template), only when a previous
/// test run (tests/embedded_run.rs) left the model in the cache: no download here.
#[test]
fn template_check_with_the_cached_default_model() {
    let cache = mediflow::teacher::embedded::config::default_cache_dir();
    if !mediflow::teacher::embedded::pull::default_model_path(&cache).exists() {
        eprintln!("default model not cached in {}: skipped", cache.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    write_run(&run, &[rec(0, 0), rec(0, 1)]);
    let summary = export_ok(
        &run,
        &tmp.path().join("out"),
        &["--format", "sft-messages", "--check-template"],
    );
    let r = &summary["template_check"];
    assert_eq!(r["examples"], 2);
    assert_eq!(r["assistant_marker"], "<|im_start|>assistant");
    assert_eq!(r["failures"]["missing_assistant_marker"], 0);
    assert!(r["tokens"]["min"].as_u64().unwrap() > 60);
}
