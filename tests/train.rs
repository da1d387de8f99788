//! `mediflow train sft` on a tiny random llama GGUF written by the test and an export made
//! with the project's own pieces (a run's sinks + `mediflow export`): the loss falls,
//! the outputs are in PEFT's layout, a stopped training resumes on the same loss curve,
//! and the error cases say what is wrong.

mod common;
use common::*;
use mediflow::record::Record;
use mediflow::sink::Sinks;
use mediflow::teacher::embedded::tiny::{self, TinySpec};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A record with short texts of its own (so no two are near duplicates).
fn rec(k: usize) -> Record {
    let words = |tag: &str| -> String {
        (0..6)
            .map(|i| format!("{tag}{k}x{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Record {
        id: format!("r{k:03}"),
        task_type: "summarization".into(),
        input_data: "progress_note".into(),
        difficulty_level: 2,
        output_format: "plain_text".into(),
        document_family: "notes".into(),
        instruction: format!("Summarise {}.", words("i")),
        input: words("n"),
        output: format!("Stable; {}.", words("a")),
        teacher_model: "mock".into(),
        ..Default::default()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    model: PathBuf,
    export: PathBuf,
}

/// A tiny model and an sft-messages export of `n` records (80/10/10 splits).
fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let spec = TinySpec {
        hidden: 64,
        ffn: 128,
        ffn_dtype: candle_core::quantized::GgmlDType::Q8_0,
        embed_dtype: candle_core::quantized::GgmlDType::Q8_0,
        ..Default::default()
    };
    tiny::write(&model, &spec).unwrap();
    let run_dir = dir.path().join("run");
    let mut sinks = Sinks::open(&run_dir, 16, |_| {}).unwrap();
    for k in 0..n {
        sinks.accept(rec(k)).unwrap();
    }
    sinks.finish().unwrap();
    let export = dir.path().join("export");
    let o = run(&[
        "export",
        "--run",
        run_dir.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
        "--format",
        "sft-messages",
        "--splits",
        "0.8,0.1,0.1",
    ]);
    assert!(o.status.success(), "export: {}", stderr(&o));
    Fixture { dir, model, export }
}

/// `train sft` on the fixture into `out` with `extra`, and the test's defaults for the
/// flags `extra` does not give.
fn train(f: &Fixture, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "sft",
        "--data",
        f.export.to_str().unwrap(),
        "--base",
        f.model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let defaults = [
        ("--batch-size", "4"),
        ("--lr", "0.01"),
        ("--lora-rank", "4"),
        ("--lora-alpha", "8"),
        ("--max-seq-len", "512"),
    ];
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend(extra);
    run(&args)
}

fn log(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("train_log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn losses(out: &Path) -> Vec<f64> {
    log(out)
        .iter()
        .filter_map(|v| v.get("loss").and_then(Value::as_f64))
        .collect()
}

#[test]
fn loss_falls_and_the_adapter_is_in_peft_layout() {
    let f = fixture(20);
    let out = f.dir.path().join("sft");
    let o = train(
        &f,
        &out,
        &["--max-steps", "8", "--eval-every", "4", "--warmup", "1"],
    );
    assert!(o.status.success(), "train: {}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["steps"], 8);
    assert_eq!(summary["train"]["kept"], 16);
    assert_eq!(summary["architecture"], "llama");
    let lines = log(&out);
    let steps: Vec<&Value> = lines.iter().filter(|v| v.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 8);
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s["step"], i + 1);
        assert!(s["lr"].as_f64().unwrap() >= 0.0);
        assert!(s["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(steps[0]["lr"], 0.0, "warmup starts at 0");
    let l = losses(&out);
    eprintln!("losses {l:?}, tokens/s {}", summary["tokens_per_s"]);
    assert!(
        l[7] < 0.7 * l[0],
        "the loss should fall over 8 steps: {l:?}"
    );
    let evals: Vec<f64> = lines
        .iter()
        .filter_map(|v| v.get("eval_loss").and_then(Value::as_f64))
        .collect();
    assert_eq!(evals.len(), 2, "eval at steps 4 and 8");
    assert!(evals[1] < l[0]);

    let tensors = candle_core::safetensors::load(
        out.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    // 2 layers x 7 projections x (A, B).
    assert_eq!(tensors.len(), 28);
    let a = &tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    assert_eq!(a.dims(), &[4, 64]);
    let b = &tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"];
    assert_eq!(b.dims(), &[64, 4]);
    let nonzero = b
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(nonzero > 0.0, "B has been trained");
    let cfg: Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!([
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj"
        ])
    );
    assert!(out.join("checkpoint/state.json").is_file());
}

#[test]
fn a_stopped_training_resumes_on_the_same_loss_curve() {
    let f = fixture(20);
    let common = [
        "--max-steps",
        "6",
        "--save-every",
        "3",
        "--grad-accum",
        "2",
        "--batch-size",
        "2",
    ];
    let whole = f.dir.path().join("whole");
    let o = train(&f, &whole, &common);
    assert!(o.status.success(), "train: {}", stderr(&o));
    let parts = f.dir.path().join("parts");
    // Stopped after step 4 as if killed: the checkpoint is step 3's, step 4 is logged.
    let mut args = common.to_vec();
    args.extend(["--stop-after", "4"]);
    let o = train(&f, &parts, &args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("stopped after step 4"),
        "{}",
        stderr(&o)
    );
    assert_eq!(losses(&parts).len(), 4);
    let o = train(&f, &parts, &common);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["resumed_from"], 3);
    let (a, b) = (losses(&whole), losses(&parts));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6, "step 4's first line is replaced, not repeated");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
    let read = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).unwrap();
    let (ta, tb) = (
        candle_core::safetensors::load_buffer(&read(&whole), &candle_core::Device::Cpu).unwrap(),
        candle_core::safetensors::load_buffer(&read(&parts), &candle_core::Device::Cpu).unwrap(),
    );
    for (k, x) in &ta {
        let d = (x - &tb[k]).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() < 1e-5, "{k}");
    }
    // Resuming with other settings is refused (exit 3), naming what differs.
    let o = train(
        &f,
        &parts,
        &["--max-steps", "6", "--save-every", "3", "--lr", "0.02"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("lr"), "{}", stderr(&o));
}

/// A training killed (SIGKILL) at whatever point it reached after its first checkpoint
/// resumes from the checkpoint and ends on the uninterrupted training's losses.
#[test]
fn a_killed_training_resumes_from_its_last_checkpoint() {
    let f = fixture(20);
    let flags = [
        "--max-steps",
        "16",
        "--save-every",
        "2",
        "--batch-size",
        "2",
    ];
    let whole = f.dir.path().join("whole");
    let o = train(&f, &whole, &flags);
    assert!(o.status.success(), "train: {}", stderr(&o));
    let killed = f.dir.path().join("killed");
    let mut args: Vec<String> = [
        "train",
        "sft",
        "--data",
        f.export.to_str().unwrap(),
        "--base",
        f.model.to_str().unwrap(),
        "--out",
        killed.to_str().unwrap(),
        "--lr",
        "0.01",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--max-seq-len",
        "512",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(flags.iter().map(|s| s.to_string()));
    let mut child = std::process::Command::new(bin())
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !killed.join("checkpoint/state.json").is_file() {
        assert!(t0.elapsed().as_secs() < 60, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let state: Value = serde_json::from_slice(
        &std::fs::read(killed.join("checkpoint/state.json")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    eprintln!(
        "killed at checkpoint {:?}, {} steps logged",
        state["step"],
        losses(&killed).len()
    );
    let o = train(&f, &killed, &flags);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(summary["resumed_from"].as_u64().unwrap() >= 2);
    let (a, b) = (losses(&whole), losses(&killed));
    assert_eq!(a.len(), 16);
    assert_eq!(b.len(), 16, "{b:?}");
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
    }
}

#[test]
fn errors_name_the_problem() {
    let f = fixture(10);
    let out = |n: &str| f.dir.path().join(n);
    // Every row longer than --max-seq-len.
    let o = train(
        &f,
        &out("long"),
        &["--max-steps", "1", "--max-seq-len", "40"],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("all 8 train rows are longer than --max-seq-len 40"),
        "{e}"
    );
    assert!(e.contains("--overlong cut"), "{e}");
    // Cut instead: the rows are kept, and the summary says how many were cut.
    let o = train(
        &f,
        &out("cut"),
        &[
            "--max-steps",
            "1",
            "--max-seq-len",
            "240",
            "--overlong",
            "cut",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        s["train"]["cut"].as_u64().unwrap() + s["train"]["dropped"].as_u64().unwrap(),
        8
    );
    assert!(
        stderr(&o).contains("longer than --max-seq-len 240"),
        "{}",
        stderr(&o)
    );

    // An empty export.
    let empty = out("empty-export");
    std::fs::create_dir_all(empty.join("jsonl")).unwrap();
    let fx = Fixture {
        dir: tempfile::tempdir().unwrap(),
        model: f.model.clone(),
        export: empty,
    };
    let o = train(&fx, &out("e"), &["--max-steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no train rows"), "{}", stderr(&o));

    // Longer than the model's context (the tiny model's is 2048).
    let o = train(
        &f,
        &out("ctx"),
        &["--max-steps", "1", "--max-seq-len", "4096"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("exceeds the model's context length 2048"),
        "{}",
        stderr(&o)
    );

    // A run directory instead of its export.
    std::fs::write(f.dir.path().join("run/manifest.json"), "{}").unwrap();
    let fr = Fixture {
        dir: tempfile::tempdir().unwrap(),
        model: f.model.clone(),
        export: f.dir.path().join("run"),
    };
    let o = train(&fr, &out("r"), &["--max-steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("a run directory, not an export"),
        "{}",
        stderr(&o)
    );

    // Another export format.
    let pc = out("pc-export");
    let o = run(&[
        "export",
        "--run",
        f.dir.path().join("run").to_str().unwrap(),
        "--out",
        pc.to_str().unwrap(),
        "--format",
        "sft-prompt-completion",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fp = Fixture {
        dir: tempfile::tempdir().unwrap(),
        model: f.model.clone(),
        export: pc,
    };
    let o = train(&fp, &out("pc"), &["--max-steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("sft-prompt-completion"),
        "{}",
        stderr(&o)
    );

    // Another architecture.
    let qwen = out("qwen.gguf");
    {
        use candle_core::quantized::gguf_file::{self, Value as V};
        let arch = V::String("qwen2".into());
        let mut w = std::fs::File::create(&qwen).unwrap();
        gguf_file::write(&mut w, &[("general.architecture", &arch)], &[]).unwrap();
    }
    let fq = Fixture {
        dir: tempfile::tempdir().unwrap(),
        model: qwen,
        export: f.export.clone(),
    };
    let o = train(&fq, &out("q"), &["--max-steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("unsupported architecture \"qwen2\"") && e.contains("llama"),
        "{e}"
    );

    // An output directory with other files in it.
    std::fs::create_dir_all(out("busy")).unwrap();
    std::fs::write(out("busy").join("x.txt"), "x").unwrap();
    let o = train(&f, &out("busy"), &["--max-steps", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no checkpoint"), "{}", stderr(&o));
}
