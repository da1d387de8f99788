//! `--check-template`: render every exported SFT example with a target chat template,
//! tokenize it, and report the length distribution and the failure modes that spoil SFT
//! data silently: a doubled end-of-sequence token, the prompt repeated in the completion,
//! empty turns, and rendered text without the template's assistant marker.

use crate::record::bare_instruction;
use crate::teacher::embedded::chat_template::{template_source, ChatTemplate};
use crate::teacher::embedded::tokenizer::TextTokenizer;
use crate::teacher::embedded::{model, resolve_model_path, EmbeddedConfig};
use crate::teacher::Message;
use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use tokenizers::Tokenizer;

/// The failure modes, in report order.
pub const MODES: [&str; 5] = [
    "double_eos",
    "prompt_in_completion",
    "empty_turn",
    "missing_assistant_marker",
    "render_error",
];

/// Ids listed per failure mode in the report.
const LIST_IDS: usize = 10;

/// A chat template with the tokenizer that goes with it.
pub struct Target {
    pub name: String,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    eos: String,
    /// What the template puts before an assistant turn (the generation prompt).
    marker: String,
}

/// A token given as a string or as an added-token object (`{"content": ...}`).
fn token_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

impl Target {
    /// `dir`: a directory with `tokenizer_config.json` (`chat_template`, `bos_token`,
    /// `eos_token`) and `tokenizer.json`; None: the embedded teacher's default model (its
    /// GGUF chat template and tokenizer; pulled into the cache when missing).
    pub fn load(dir: Option<&Path>) -> Result<Target> {
        let (name, source, tokenizer, bos, eos) = match dir {
            Some(d) => {
                let p = d.join("tokenizer_config.json");
                let cfg: Value = serde_json::from_slice(
                    &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                )
                .with_context(|| format!("parsing {}", p.display()))?;
                let source = match &cfg["chat_template"] {
                    Value::String(s) => s.clone(),
                    Value::Array(list) => list
                        .iter()
                        .find(|t| t["name"] == "default")
                        .and_then(|t| t["template"].as_str())
                        .map(str::to_string)
                        .with_context(|| format!("{}: no default chat_template", p.display()))?,
                    _ => anyhow::bail!("{}: no chat_template", p.display()),
                };
                let tp = d.join("tokenizer.json");
                let tok = Tokenizer::from_file(&tp)
                    .map_err(|e| anyhow!("cannot load {}: {e}", tp.display()))?;
                let (bos, eos) = (token_text(&cfg["bos_token"]), token_text(&cfg["eos_token"]));
                (d.display().to_string(), source, tok, bos, eos)
            }
            None => {
                let path = resolve_model_path(&EmbeddedConfig::default())?;
                let (ct, _) = model::read_gguf(&path)?;
                let vocab = model::model_config(&ct)?.vocab;
                let tok = TextTokenizer::load(&ct, None, vocab)?;
                let source = template_source(&ct);
                let name = path.display().to_string();
                (name, source, tok.inner, tok.bos_text, tok.eos_text)
            }
        };
        let template = ChatTemplate::new(&source, &bos, &eos)?;
        let probe = [Message::system("s"), Message::user("u")];
        let with = template.render_with(&probe, true)?;
        let without = template.render_with(&probe, false)?;
        let marker = with
            .strip_prefix(&without)
            .unwrap_or_default()
            .trim()
            .to_string();
        Ok(Target {
            name,
            template,
            tokenizer,
            eos,
            marker,
        })
    }
}

/// One exported SFT example: its conversation, the instruction (with any schema note) and
/// the input document (empty for mixed general rows, whose user turn is checked instead).
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub messages: Vec<Message>,
    pub instruction: String,
    pub input: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lengths {
    pub min: usize,
    pub median: usize,
    pub p95: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub template: String,
    pub assistant_marker: String,
    pub examples: usize,
    pub tokens: Option<Lengths>,
    pub max_length: usize,
    pub over_max_length: usize,
    /// Examples per failure mode.
    pub failures: BTreeMap<&'static str, usize>,
    /// The first ids per failure mode.
    pub flagged: BTreeMap<&'static str, Vec<String>>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "template check: {} ({} examples)\n",
            self.template, self.examples
        );
        if let Some(t) = &self.tokens {
            s += &format!(
                "  tokens              min {} / median {} / p95 {} / max {}\n",
                t.min, t.median, t.p95, t.max
            );
        }
        s += &format!(
            "  {:<28} {}\n",
            format!("over {} tokens", self.max_length),
            self.over_max_length
        );
        for m in MODES {
            s += &format!("  {m:<28} {}\n", self.failures[m]);
        }
        s
    }
}

/// Words joined by single spaces, padded with a space on each side.
fn padded_words(words: &[&str]) -> String {
    format!(" {} ", words.join(" "))
}

/// The completion holds the whole instruction (of at least 5 words), or a contiguous run of
/// at least 90% of the input's words (inputs of at least 20 words), verbatim up to spacing.
pub fn prompt_in_completion(instruction: &str, input: &str, completion: &str) -> bool {
    let c = padded_words(&completion.split_whitespace().collect::<Vec<_>>());
    let ins: Vec<&str> = bare_instruction(instruction).split_whitespace().collect();
    if ins.len() >= 5 && c.contains(&padded_words(&ins)) {
        return true;
    }
    let inp: Vec<&str> = input.split_whitespace().collect();
    let n = inp.len();
    if n < 20 {
        return false;
    }
    let k = (n as f64 * 0.9).ceil() as usize;
    (0..=n - k).any(|s| c.contains(&padded_words(&inp[s..s + k])))
}

/// The answer ends with the eos text, or the rendered text has it twice after the answer.
fn double_eos(rendered: &str, answer: &str, eos: &str) -> bool {
    if eos.is_empty() {
        return false;
    }
    if answer.trim_end().ends_with(eos) {
        return true;
    }
    let Some(at) = rendered.rfind(answer) else {
        return false;
    };
    let tail = rendered[at + answer.len()..].trim_start();
    tail.strip_prefix(eos)
        .is_some_and(|rest| rest.trim_start().starts_with(eos))
}

/// Nearest-rank percentile of sorted values.
fn pct(sorted: &[usize], q: f64) -> usize {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn check(target: &Target, items: &[Item], max_length: usize) -> Report {
    let mut failures: BTreeMap<&'static str, usize> = MODES.iter().map(|m| (*m, 0)).collect();
    let mut flagged: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut lens = Vec::with_capacity(items.len());
    for it in items {
        let mut modes: Vec<&'static str> = Vec::new();
        if it.messages.iter().any(|m| m.content.trim().is_empty()) {
            modes.push("empty_turn");
        }
        let answer = it
            .messages
            .iter()
            .rfind(|m| m.role == "assistant")
            .map_or("", |m| m.content.as_str());
        let input = match it.input.is_empty() {
            true => it
                .messages
                .iter()
                .find(|m| m.role == "user")
                .map_or("", |m| m.content.as_str()),
            false => &it.input,
        };
        if prompt_in_completion(&it.instruction, input, answer) {
            modes.push("prompt_in_completion");
        }
        match target.template.render_with(&it.messages, false) {
            Ok(text) => {
                if double_eos(&text, answer, &target.eos) {
                    modes.push("double_eos");
                }
                if target.marker.is_empty() || !text.contains(&target.marker) {
                    modes.push("missing_assistant_marker");
                }
                let n = target
                    .tokenizer
                    .encode_fast(text.as_str(), false)
                    .map_or(0, |e| e.get_ids().len());
                lens.push(n);
            }
            Err(_) => modes.push("render_error"),
        }
        for m in modes {
            *failures.get_mut(m).expect("a known mode") += 1;
            let ids = flagged.entry(m).or_default();
            if ids.len() < LIST_IDS {
                ids.push(it.id.clone());
            }
        }
    }
    lens.sort_unstable();
    let tokens = (!lens.is_empty()).then(|| Lengths {
        min: lens[0],
        median: pct(&lens, 0.5),
        p95: pct(&lens, 0.95),
        max: lens[lens.len() - 1],
    });
    Report {
        template: target.name.clone(),
        assistant_marker: target.marker.clone(),
        examples: items.len(),
        tokens,
        max_length,
        over_max_length: lens.iter().filter(|&&n| n > max_length).count(),
        failures,
        flagged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_copies_are_found() {
        let input: String = (0..40).map(|i| format!("w{i} ")).collect();
        let ins = "List every diagnosis in the note.";
        assert!(prompt_in_completion(ins, &input, &format!("Sure. {ins}")));
        assert!(prompt_in_completion(ins, &input, &format!("x {input} y")));
        let most: String = (3..40).map(|i| format!("w{i} ")).collect();
        assert!(prompt_in_completion(ins, &input, &most));
        let half: String = (0..20).map(|i| format!("w{i} ")).collect();
        assert!(!prompt_in_completion(ins, &input, &half));
        assert!(!prompt_in_completion(ins, "short input", "short input"));
    }

    #[test]
    fn double_eos_is_found() {
        assert!(double_eos("a<|im_end|><|im_end|>", "a", "<|im_end|>"));
        assert!(double_eos("a<|im_end|>\n", "a<|im_end|>", "<|im_end|>"));
        assert!(!double_eos("a<|im_end|>\n<|im_start|>", "a", "<|im_end|>"));
    }
}
