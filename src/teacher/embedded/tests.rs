//! Tests of the embedded teacher against the real default model (SmolLM2-135M-Instruct),
//! pulled into the cache on first use, and against tiny random llama GGUF files written
//! here (`tiny.rs`) for the quantized paths, which are too slow on the real model in the
//! unoptimized test profile. Answers are kept short so the suite stays quick on a small
//! CPU.

use super::engine::GenParams;
use super::sampler::SamplingParams;
use super::*;
use crate::teacher::{ChatRequest, Message, Teacher, TeacherError};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The default model, pulled into the cache if missing.
fn model() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| pull::pull(&config::default_cache_dir()).expect("pull the default model"))
        .clone()
}

fn cfg(weights: Weights) -> EmbeddedConfig {
    EmbeddedConfig {
        path: Some(model()),
        device: config::Device::Cpu,
        weights,
        max_batch: 8,
        ..EmbeddedConfig::default()
    }
}

/// One f32 teacher shared by the tests that do not count steps. A mild repetition
/// penalty keeps the 135M model out of greedy loops (it otherwise repeats a fragment
/// until a string's maxLength).
fn teacher() -> &'static EmbeddedTeacher {
    static T: OnceLock<EmbeddedTeacher> = OnceLock::new();
    T.get_or_init(|| {
        let c = EmbeddedConfig {
            repetition_penalty: 1.1,
            ..cfg(Weights::F32)
        };
        EmbeddedTeacher::load(&c).expect("load the model")
    })
}

fn greedy(max_tokens: usize) -> GenParams {
    GenParams {
        max_tokens,
        ..GenParams::default()
    }
}

fn req(messages: Vec<Message>, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        messages,
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(1),
        json_schema: None,
        stage: "test",
    }
}

#[test]
fn tokenizer_round_trips_and_chat_markers() {
    let t = teacher().tokenizer();
    for text in [
        "Café, naïve résumé; Ærø — São Paulo, Zürich",
        "Temp 38.5 °C, SpO₂ ≥ 95 %, dose ± 0.5 µg/mL → © ™ ½",
        "患者は頭痛を訴えた。高血压，糖尿病。환자",
        "🙂🩺💊 emoji, ZWJ 👩‍⚕️ and flags 🇫🇷",
        "  leading spaces,\ttabs\nand\r\nnewlines  ",
        "Ελληνικά και русский текст",
    ] {
        let ids = t.encode(text).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), text, "decode(encode({text:?}))");
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| t.bytes_of(i).to_vec()).collect();
        assert_eq!(bytes, text.as_bytes(), "token bytes of {text:?}");
    }
    // digits are split one by one (SmolLM2's pre-tokenizer)
    assert_eq!(t.encode("2024").unwrap().len(), 4);
    let start = t.encode("<|im_start|>").unwrap();
    let end = t.encode("<|im_end|>").unwrap();
    assert_eq!(start.len(), 1);
    assert_eq!(end, vec![t.eos]);
    assert!(t.is_special(start[0]) && t.is_special(end[0]));
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>\n").unwrap();
    assert_eq!(ids.first(), Some(&start[0]));
    assert!(ids.contains(&end[0]));
    assert_eq!(t.eos_text, "<|im_end|>");
}

#[test]
fn chat_template_matches_smollm2_format() {
    let t = teacher();
    let got = t
        .render(&[
            Message::system("You are a careful clinician."),
            Message::user("Summarize: BP 150/95."),
        ])
        .unwrap();
    assert_eq!(
        got,
        "<|im_start|>system\nYou are a careful clinician.<|im_end|>\n\
         <|im_start|>user\nSummarize: BP 150/95.<|im_end|>\n<|im_start|>assistant\n"
    );
    // without a system message the template adds SmolLM's own
    let got = t.render(&[Message::user("Hi")]).unwrap();
    assert!(got.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"));
    assert!(got.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
}

#[tokio::test]
async fn same_seed_same_text() {
    let t = teacher();
    let msgs = [Message::user("Write one sentence about hypertension.")];
    let run = |seed| {
        let p = GenParams {
            sampling: SamplingParams {
                temperature: 0.9,
                top_p: 0.95,
                seed: Some(seed),
                ..SamplingParams::default()
            },
            max_tokens: 20,
            ..GenParams::default()
        };
        t.generate(&msgs, p)
    };
    let (a, b, c, d) = tokio::join!(run(7), run(7), run(8), run(9));
    let (a, b, c, d) = (a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap());
    assert!(!a.tokens.is_empty());
    assert_eq!(a.text, b.text);
    assert_eq!(a.tokens, b.tokens);
    assert!(
        a.text != c.text || a.text != d.text,
        "different seeds, same text"
    );
    // and once more alone (not batched with its twin)
    assert_eq!(run(7).await.unwrap().tokens, a.tokens);
}

#[tokio::test]
async fn batched_greedy_equals_solo() {
    // Its own engine, so the step count is ours alone.
    let t = EmbeddedTeacher::load(&cfg(Weights::F32)).unwrap();
    batch_equals_solo(&t, Weights::F32).await;
}

/// The same with quantized weights, on a tiny model stored in Q8_0 / Q4_K / Q6_K: as
/// stored (candle's quantized matmul) and requantized to Q8_0 at load.
#[tokio::test]
async fn batched_greedy_equals_solo_quantized() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), &tiny::TinySpec::default());
    for w in [Weights::Native, Weights::Q8_0] {
        let t = EmbeddedTeacher::load(&tiny_cfg(&path, w)).unwrap();
        assert!(t.describe().contains("stored Q4K"), "{}", t.describe());
        batch_equals_solo(&t, w).await;
    }
}

/// A tiny random llama GGUF at `dir/tiny.gguf`.
fn tiny_model(dir: &Path, spec: &tiny::TinySpec) -> PathBuf {
    let p = dir.join("tiny.gguf");
    tiny::write(&p, spec).expect("write the tiny model");
    p
}

fn tiny_cfg(path: &Path, weights: Weights) -> EmbeddedConfig {
    EmbeddedConfig {
        path: Some(path.to_path_buf()),
        device: config::Device::Cpu,
        weights,
        max_batch: 8,
        ..EmbeddedConfig::default()
    }
}

async fn batch_equals_solo(t: &EmbeddedTeacher, w: Weights) {
    let prompts = [
        vec![Message::user("Name a vitamin.")],
        vec![
            Message::system("You are a medical scribe. Answer briefly."),
            Message::user(
                "The patient is a 67-year-old man with a history of type 2 diabetes, \
                 hypertension and chronic kidney disease stage 3, presenting with two days \
                 of worsening shortness of breath and ankle swelling. What is the most \
                 likely diagnosis?",
            ),
        ],
        vec![Message::user("What does BP stand for in a clinical note?")],
    ];
    let steps = || t.stats().steps.load(std::sync::atomic::Ordering::Relaxed);
    let before = steps();
    let mut solo = Vec::new();
    for p in &prompts {
        solo.push(t.generate(p, greedy(16)).await.unwrap().tokens);
    }
    let solo_steps = steps() - before;
    let together = futures::future::join_all(prompts.iter().map(|p| t.generate(p, greedy(16))))
        .await
        .into_iter()
        .map(|g| g.unwrap().tokens)
        .collect::<Vec<_>>();
    let batched_steps = steps() - before - solo_steps;
    assert!(
        batched_steps < solo_steps,
        "not batched: {batched_steps} steps vs {solo_steps} solo"
    );
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert!(!a.is_empty());
        assert_eq!(a, b, "{w:?}, prompt {i}: batched output differs from solo");
    }
}

fn schema_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{name}.schema.json"))
}

#[tokio::test]
async fn constrained_output_validates_against_task_schemas() {
    let t = teacher();
    let doc = "Discharge note: 58-year-old woman admitted with community-acquired pneumonia. \
               History of type 2 diabetes and essential hypertension. Treated with \
               ceftriaxone; chest X-ray showed right lower lobe consolidation.";
    let cases = [
        (
            "clinical_coding",
            "List the ICD-10-CM codes for this note as JSON.",
        ),
        (
            "named_entity_recognition",
            "Extract the clinical entities of this note as JSON.",
        ),
        (
            "classification",
            "Classify the urgency of this note as JSON.",
        ),
    ];
    let futs = cases.iter().map(|(name, task)| async move {
        let schema = crate::schemas::compile(&schema_path(name)).unwrap();
        let mut r = req(
            vec![
                Message::system("You answer with one short JSON object."),
                Message::user(format!("{task}\n\n{doc}")),
            ],
            400,
        );
        r.json_schema = Some(schema.value.clone());
        let resp = t.chat(&r).await;
        (name, schema, resp)
    });
    let mut bad = Vec::new();
    for (name, schema, resp) in futures::future::join_all(futs).await {
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                bad.push(format!("{name}: {e:?}"));
                continue;
            }
        };
        assert_eq!(resp.finish_reason, "stop");
        match serde_json::from_str::<serde_json::Value>(&resp.content) {
            Err(e) => bad.push(format!("{name}: not JSON ({e}): {}", resp.content)),
            Ok(v) => {
                if let Err(e) = crate::schemas::validate(&schema, &v) {
                    bad.push(format!("{name}: invalid ({e}): {}", resp.content));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{bad:?}");
}

#[tokio::test]
async fn token_cap_is_reported_as_truncation() {
    let t = teacher();
    let r = req(vec![Message::user("Describe the heart in detail.")], 4);
    match t.chat(&r).await {
        Err(TeacherError::Truncated { partial, usage }) => {
            assert!(!partial.is_empty());
            assert_eq!(usage.completion_tokens, 4);
        }
        other => panic!("expected truncation, got {other:?}"),
    }
    let schema = crate::schemas::compile(&schema_path("classification")).unwrap();
    let mut r = req(vec![Message::user("Classify: chest pain.")], 6);
    r.json_schema = Some(schema.value.clone());
    match t.chat(&r).await {
        Err(TeacherError::Truncated { partial, .. }) => assert!(partial.starts_with('{')),
        other => panic!("expected truncation, got {other:?}"),
    }
}

#[tokio::test]
async fn own_greedy_answer_outscores_a_random_string() {
    let t = teacher();
    let msgs = [Message::user("What organ pumps blood through the body?")];
    let own = t.generate(&msgs, greedy(10)).await.unwrap().text;
    let scores = t
        .logprobs(
            &msgs,
            &[own.clone(), "zebra quantum marmalade 7 kettle".to_string()],
        )
        .await
        .unwrap();
    assert!(
        scores.iter().all(|s| s.is_finite() && *s < 0.0),
        "{scores:?}"
    );
    assert!(scores[0] > scores[1], "{own:?}: {scores:?}");
}

#[tokio::test]
async fn probe_describes_the_model() {
    let t = teacher();
    assert_eq!(t.backend(), "embedded");
    let d = t.probe().await.unwrap();
    assert!(
        d.contains("SmolLM2-135M-Instruct") && d.contains("llama") && d.contains("f32"),
        "{d}"
    );
}

#[test]
fn pulled_model_is_listed_and_verified() {
    let p = model();
    let cache = p.parent().unwrap().parent().unwrap();
    let listed = pull::list(cache);
    assert!(listed
        .iter()
        .any(|(q, size, ok)| *q == p && *size == pull::DEFAULT_MODEL.size && *ok));
    let missing = EmbeddedConfig {
        path: Some(PathBuf::from("/nonexistent/model.gguf")),
        ..EmbeddedConfig::default()
    };
    let err = EmbeddedTeacher::load(&missing).err().unwrap().to_string();
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}

/// The model the figure-producing tests below measure: `MEDIFLOW_BENCH_MODEL` (e.g. the
/// pulled default model, for real figures) or else a tiny quantized model written into
/// `dir`, on which they check the same paths quickly.
fn bench_model(dir: &Path) -> PathBuf {
    match std::env::var_os("MEDIFLOW_BENCH_MODEL") {
        Some(p) => PathBuf::from(p),
        None => tiny_model(dir, &tiny::TinySpec::default()),
    }
}

/// Throughput figures: `MEDIFLOW_BENCH_MODEL=<gguf> MEDIFLOW_BENCH_WEIGHTS=f32|native
/// cargo test --release --lib embedded::tests::bench -- --nocapture` (one weight mode per
/// process, so the peak RSS is that mode's). Without a model named it runs on the tiny
/// quantized model as stored, and checks what it counts: every stream gets its tokens,
/// the engine steps once per batched token.
#[tokio::test]
async fn bench() {
    let w = match std::env::var("MEDIFLOW_BENCH_WEIGHTS").as_deref() {
        Ok("f32") => Weights::F32,
        Ok("q8_0") => Weights::Q8_0,
        Ok("f16") => Weights::F16,
        _ => Weights::Native,
    };
    let gen_tokens: usize = std::env::var("MEDIFLOW_BENCH_TOKENS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let mut c = tiny_cfg(&bench_model(dir.path()), w);
    c.max_batch = 16;
    c.threads = std::env::var("MEDIFLOW_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let t = EmbeddedTeacher::load(&c).unwrap();
    println!("{}", t.describe());
    println!("load: {:.2}s", t.load_time().as_secs_f64());
    let long =
        "The patient reported intermittent chest pain radiating to the left arm. ".repeat(16);
    let msgs = [Message::user(format!("Summarize: {long}"))];
    let p = GenParams {
        max_tokens: 1,
        ..GenParams::default()
    };
    for _ in 0..2 {
        let t0 = std::time::Instant::now();
        let g = t.generate(&msgs, p.clone()).await.unwrap();
        let s = t0.elapsed().as_secs_f64();
        assert_eq!(g.tokens.len(), 1);
        assert_eq!(g.prompt_tokens, t.prompt_ids(&msgs).unwrap().len());
        println!(
            "prompt: {} tokens in {:.3}s = {:.0} tok/s",
            g.prompt_tokens,
            s,
            g.prompt_tokens as f64 / s
        );
    }
    for b in [1usize, 4, 16] {
        let p = |seed| GenParams {
            sampling: SamplingParams {
                temperature: 0.8,
                seed: Some(seed),
                ..SamplingParams::default()
            },
            max_tokens: gen_tokens,
            ignore_eos: true,
            ..GenParams::default()
        };
        let msgs = [Message::user("Write a long essay about the human heart.")];
        let st = t.stats();
        let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let (s0, f0) = (ld(&st.steps), ld(&st.forward_ns));
        let t0 = std::time::Instant::now();
        let gens = futures::future::join_all((0..b as u64).map(|i| t.generate(&msgs, p(i)))).await;
        let wall = t0.elapsed().as_secs_f64();
        let gens: Vec<_> = gens.into_iter().map(|g| g.unwrap()).collect();
        let n: usize = gens.iter().map(|g| g.tokens.len()).sum();
        assert_eq!(n, b * gen_tokens, "batch {b}: every stream runs to its cap");
        let ttft = gens
            .iter()
            .map(|g| g.time_to_first_token.as_secs_f64())
            .fold(0.0, f64::max);
        println!(
            "batch {b:2}: {n} tokens in {wall:.2}s; decode {:.1} tok/s aggregate, {:.1} per \
             stream (first token after {ttft:.2}s)",
            n as f64 / (wall - ttft),
            n as f64 / (wall - ttft) / b as f64
        );
        let (ds, df) = (ld(&st.steps) - s0, ld(&st.forward_ns) - f0);
        // Streams decode together: about one step per token of the longest, not per token.
        assert!(
            (ds as usize) < gen_tokens + 2 * b,
            "batch {b}: {ds} steps for {n} tokens"
        );
        println!(
            "          {ds} steps, forward {:.1} ms/step, other {:.1} ms/step",
            df as f64 / 1e6 / ds as f64,
            (wall * 1e3 - df as f64 / 1e6) / ds as f64
        );
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for l in status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
    {
        println!("{l}");
    }
}

/// Decode-step time of the bare model (no engine) at 1, 4 and 16 rows:
/// `MEDIFLOW_BENCH_MODEL=<gguf> cargo test --release --lib embedded::tests::profile_forward
/// -- --nocapture`. On the tiny model (weights as stored, quantized) it checks that every
/// row of a batch gets the logits it gets alone, and that the quantized product stays
/// close to the dense one.
#[test]
fn profile_forward() {
    let dev = candle_core::Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let path = bench_model(dir.path());
    let (ct, mut f) = model::read_gguf(&path).unwrap();
    let m = model::Model::load(&ct, &mut f, Weights::Native, &dev).unwrap();
    let (ct, mut f) = model::read_gguf(&path).unwrap();
    let dense = model::Model::load(&ct, &mut f, Weights::F32, &dev).unwrap();
    let prompt: Vec<u32> = (100..150).collect();
    let toks = vec![42u32; 1];
    let step = |m: &model::Model, caches: &mut [model::SeqCache]| {
        let mut rows: Vec<_> = caches
            .iter_mut()
            .map(|c| model::Row {
                cache: c,
                tokens: &toks,
                want: model::Want::Last,
            })
            .collect();
        m.forward(&mut rows).unwrap()
    };
    let prefill = |m: &model::Model, b: usize| {
        let mut caches: Vec<_> = (0..b).map(|_| m.new_cache(256).unwrap()).collect();
        for c in caches.iter_mut() {
            let mut rows = [model::Row {
                cache: c,
                tokens: &prompt,
                want: model::Want::None,
            }];
            m.forward(&mut rows).unwrap();
        }
        caches
    };
    let to_vec = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let alone = to_vec(step(&m, &mut prefill(&m, 1))[0].as_ref().unwrap());
    assert_eq!(alone.len(), m.cfg.vocab);
    assert!(alone.iter().all(|x| x.is_finite()));
    for b in [1usize, 4, 16] {
        let mut caches = prefill(&m, b);
        let t0 = std::time::Instant::now();
        let n = 10;
        for k in 0..n {
            let out = step(&m, &mut caches);
            if k == 0 {
                for (i, l) in out.iter().enumerate() {
                    assert_eq!(to_vec(l.as_ref().unwrap()), alone, "b={b}, row {i}");
                }
            }
        }
        let s = t0.elapsed().as_secs_f64() / n as f64;
        println!(
            "decode step b={b}: {:.1} ms = {:.1} tok/s",
            s * 1e3,
            b as f64 / s
        );
    }
    // Quantized vs dense on the same weights: the same ranking of the logits, nearly.
    let exact = to_vec(step(&dense, &mut prefill(&dense, 1))[0].as_ref().unwrap());
    let dot: f32 = alone.iter().zip(&exact).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let cosine = dot / (norm(&alone) * norm(&exact));
    println!("quantized vs dense logits: cosine {cosine:.5}");
    assert!(cosine > 0.99, "quantized vs dense logits: cosine {cosine}");
}

#[test]
fn other_architectures_are_refused_clearly() {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-qwen2.gguf");
    let arch = gguf_file::Value::String("qwen2".into());
    let t = candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap();
    let q = QTensor::quantize(&t, GgmlDType::F32).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &q)],
    )
    .unwrap();
    drop(f);
    let c = EmbeddedConfig {
        path: Some(path),
        device: config::Device::Cpu,
        ..EmbeddedConfig::default()
    };
    let err = format!("{:#}", EmbeddedTeacher::load(&c).err().unwrap());
    assert!(err.contains("unsupported architecture \"qwen2\""), "{err}");
}

#[tokio::test]
async fn every_weight_mode_loads_and_generates() {
    // f32 is covered above; these are slow in the unoptimized dev profile, so 3 tokens.
    for w in [Weights::Native, Weights::Q8_0, Weights::F16] {
        let t = EmbeddedTeacher::load(&cfg(w)).unwrap();
        assert!(
            t.describe().contains(&format!("weights {}", w.as_str())),
            "{}",
            t.describe()
        );
        let g = t.generate(&[Message::user("Hi")], greedy(3)).await.unwrap();
        assert!(!g.tokens.is_empty(), "{w:?}");
    }
}

#[test]
fn chunked_prefill_and_decode_match_one_pass() {
    // Rectangular masks (new tokens after cached ones) must give what one pass gives.
    let dev = candle_core::Device::Cpu;
    let (ct, mut f) = model::read_gguf(&model()).unwrap();
    let m = model::Model::load(&ct, &mut f, Weights::F32, &dev).unwrap();
    let text = "The patient, a 71-year-old retired teacher, reports chest tightness on exertion. "
        .repeat(12);
    let ids = teacher().tokenizer().encode(&text).unwrap();
    let ids = &ids[..ids.len().min(300)];
    let last = |c: &mut model::SeqCache, toks: &[u32], want| {
        let mut rows = [model::Row {
            cache: c,
            tokens: toks,
            want,
        }];
        m.forward(&mut rows).unwrap().remove(0)
    };
    let mut one = m.new_cache(8).unwrap(); // also exercises cache growth
    let a = last(&mut one, ids, model::Want::Last).unwrap();
    let mut parts = m.new_cache(8).unwrap();
    let n = ids.len();
    assert!(last(&mut parts, &ids[..200], model::Want::None).is_none());
    assert!(last(&mut parts, &ids[200..n - 1], model::Want::None).is_none());
    let b = last(&mut parts, &ids[n - 1..], model::Want::Last).unwrap();
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-3, "max logit difference {diff}");
}
