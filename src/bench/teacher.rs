//! `mediflow bench teacher`: prompt and generation tokens/s of the embedded teacher, single
//! stream and aggregate at several batch sizes, peak memory; and, in the same run when
//! given the path of llama.cpp's `llama-bench`, that on the same GGUF and thread count
//! (scripts/bench-teacher.sh builds it), with the ratios.

use super::{outln, peak_rss_mb, Report};
use crate::error::Error;
use crate::teacher::embedded::config::{EmbeddedConfig, Weights};
use crate::teacher::embedded::engine::GenParams;
use crate::teacher::embedded::sampler::SamplingParams;
use crate::teacher::embedded::EmbeddedTeacher;
use crate::teacher::Message;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
#[derive(Debug, Clone)]
pub struct TeacherOptions {
    /// GGUF file (None: the default model, pulled if missing).
    pub model_path: Option<PathBuf>,
    pub weights: Weights,
    /// CPU threads (also passed to llama-bench).
    pub threads: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    /// Context already in each sequence while generating (prompt tokens; 0 = a one-line
    /// prompt).
    pub gen_context: usize,
    /// Batch sizes for the aggregate generation figure.
    pub batches: Vec<usize>,
    /// Path of llama.cpp's llama-bench, to measure the reference in the same run.
    pub llama_bench: Option<PathBuf>,
}

fn params(max_tokens: usize, seed: u64) -> GenParams {
    GenParams {
        sampling: SamplingParams {
            temperature: 0.8,
            top_p: 0.95,
            seed: Some(seed),
            ..Default::default()
        },
        max_tokens,
        ignore_eos: true,
        ..Default::default()
    }
}

/// llama-bench's JSON: one entry per test; `n_prompt` > 0 is prompt processing, `n_gen` > 0 generation.
fn run_llama_bench(
    bin: &PathBuf,
    model: &std::path::Path,
    a: &TeacherOptions,
) -> anyhow::Result<(f64, f64)> {
    let out = std::process::Command::new(bin)
        .args([
            "-m",
            &model.display().to_string(),
            "-t",
            &a.threads.to_string(),
        ])
        .args([
            "-p",
            &a.prompt_tokens.to_string(),
            "-n",
            &a.gen_tokens.to_string(),
            "-r",
            "3",
            "-o",
            "json",
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "llama-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut pp = 0.0;
    let mut tg = 0.0;
    for t in v.as_array().into_iter().flatten() {
        let ts = t["avg_ts"].as_f64().unwrap_or(0.0);
        if t["n_prompt"].as_u64().unwrap_or(0) > 0 {
            pp = ts;
        } else if t["n_gen"].as_u64().unwrap_or(0) > 0 {
            tg = ts;
        }
    }
    Ok((pp, tg))
}

/// `filler` repeated until the prompt holds at least `tokens` tokens ("" for 0).
fn text_of_tokens(teacher: &EmbeddedTeacher, filler: &str, tokens: usize) -> Result<String, Error> {
    let mut text = String::new();
    while tokens > 0 && teacher.prompt_ids(&[Message::user(text.clone())])?.len() < tokens {
        text.push_str(filler);
    }
    Ok(text)
}

/// Load the model (its description goes to stderr), measure, and report.
pub async fn run(a: TeacherOptions) -> Result<Report, Error> {
    let cfg = EmbeddedConfig {
        path: a.model_path.clone(),
        weights: a.weights,
        threads: a.threads,
        max_batch: a.batches.iter().copied().max().unwrap_or(16),
        ..Default::default()
    };
    let teacher = Arc::new(
        tokio::task::spawn_blocking(move || EmbeddedTeacher::load(&cfg))
            .await
            .map_err(anyhow::Error::from)??,
    );
    eprintln!("{}", teacher.describe());

    // Prompt processing: a prompt of ~prompt_tokens tokens, one generated token.
    let filler =
        "The patient was admitted with community-acquired pneumonia and treated with antibiotics. ";
    let long = vec![Message::user(text_of_tokens(
        &teacher,
        filler,
        a.prompt_tokens,
    )?)];
    let n_prompt = teacher.prompt_ids(&long)?.len();
    let mut pp_best: f64 = 0.0;
    for i in 0..3 {
        let t0 = Instant::now();
        teacher.generate(&long, params(1, i)).await?;
        pp_best = pp_best.max(n_prompt as f64 / t0.elapsed().as_secs_f64());
    }

    // Generation: `gen_tokens` each after a prompt of ~gen_context tokens; aggregate = all
    // generated tokens / wall (prefill included).
    let context = text_of_tokens(&teacher, filler, a.gen_context)?;
    let short = |i: usize| {
        vec![Message::user(format!(
            "{context}Write a clinical progress note for patient number {i}."
        ))]
    };
    let mut rows = Vec::new();
    for &b in &a.batches {
        let t0 = Instant::now();
        let futs: Vec<_> = (0..b)
            .map(|i| {
                let t = teacher.clone();
                let m = short(i);
                let p = params(a.gen_tokens, i as u64);
                tokio::spawn(async move { t.generate(&m, p).await })
            })
            .collect();
        let mut generated = 0;
        let mut ttft_max = 0.0f64;
        for f in futs {
            let g = f.await.map_err(anyhow::Error::from)??;
            generated += g.tokens.len();
            ttft_max = ttft_max.max(g.time_to_first_token.as_secs_f64());
        }
        let wall = t0.elapsed().as_secs_f64();
        // Single-stream decode speed excludes the prefill (time to first token).
        let decode_tps = if b == 1 {
            generated as f64 / (wall - ttft_max).max(1e-9)
        } else {
            generated as f64 / wall
        };
        rows.push((b, generated, wall, decode_tps));
    }
    let llama = match &a.llama_bench {
        Some(bin) => Some(run_llama_bench(bin, teacher.model_path(), &a)?),
        None => None,
    };
    let single = rows.iter().find(|r| r.0 == 1).map(|r| r.3);
    let best_aggregate = rows.iter().map(|r| r.3).fold(0.0, f64::max);
    let json = json!({
        "model": teacher.describe(),
        "threads": a.threads,
        "gen_context": a.gen_context,
        "load_secs": teacher.load_time().as_secs_f64(),
        "prompt_tokens": n_prompt,
        "prompt_tok_s": pp_best,
        "generation": rows.iter().map(|(b, n, w, t)| json!({"batch": b, "generated": n, "wall_s": w, "tok_s": t})).collect::<Vec<_>>(),
        "peak_rss_mb": peak_rss_mb(),
        "llama_bench": llama.map(|(pp, tg)| json!({"prompt_tok_s": pp, "gen_tok_s": tg})),
        "ratios": llama.map(|(pp, tg)| json!({
            "prompt": pp_best / pp,
            "single_stream_gen": single.map(|s| s / tg),
            "best_aggregate_gen": best_aggregate / tg,
        })),
    });
    let mut out = String::new();
    outln!(out, "embedded teacher: {}", teacher.describe());
    outln!(
        out,
        "load {:.2}s, peak RSS {:.0} MB, {} threads",
        teacher.load_time().as_secs_f64(),
        peak_rss_mb(),
        a.threads
    );
    outln!(
        out,
        "prompt processing ({n_prompt} tokens): {pp_best:.1} tok/s"
    );
    for (b, n, w, t) in &rows {
        outln!(
            out,
            "generation batch {b:>2}: {n:>5} tokens in {w:>6.2}s = {t:>7.1} tok/s{}",
            if *b == 1 {
                " (decode only)"
            } else {
                " (aggregate)"
            }
        );
    }
    if let Some((pp, tg)) = llama {
        outln!(out, "llama.cpp llama-bench (same file, {} threads): prompt {pp:.1} tok/s, generation {tg:.1} tok/s", a.threads);
        outln!(out, "ratio prompt: {:.2}x", pp_best / pp);
        if let Some(s) = single {
            outln!(
                out,
                "ratio single-stream generation: {:.2}x (goal >= 0.8x: {})",
                s / tg,
                if s / tg >= 0.8 { "met" } else { "NOT met" }
            );
        }
        outln!(
            out,
            "ratio best aggregate generation: {:.2}x (goal >= 1.0x: {})",
            best_aggregate / tg,
            if best_aggregate / tg >= 1.0 {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    Ok(Report { json, text: out })
}
