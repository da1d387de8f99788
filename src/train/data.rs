//! The training examples: an `sft-messages` export's rows (`jsonl/<split>-*.jsonl`, or
//! `data/<split>-*.parquet` when the JSONL twins are gone), rendered with the base model's
//! own chat template and tokenized, with the tokens that carry loss marked: each
//! assistant turn's answer and the end-of-turn token the template closes it with (an
//! end-of-sequence token is added only when the template writes none, so never twice).

use super::model::Batch;
use crate::teacher::embedded::chat_template::ChatTemplate;
use crate::teacher::embedded::tokenizer::TextTokenizer;
use crate::teacher::Message;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One tokenized conversation; `target[p]`: token `p` is predicted with loss.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub target: Vec<bool>,
}

impl Example {
    pub fn scored(&self) -> usize {
        self.target.iter().filter(|&&t| t).count()
    }
}

/// The files of one split, sorted (JSONL twins preferred, else Parquet).
fn split_files(dir: &Path, split: &str) -> Vec<(PathBuf, bool)> {
    let pick = |sub: &str, ext: &str| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{split}-")) && n.ends_with(ext))
            })
            .collect();
        v.sort();
        v
    };
    let jsonl = pick("jsonl", ".jsonl");
    if !jsonl.is_empty() || dir.join("jsonl").is_dir() {
        return jsonl.into_iter().map(|p| (p, true)).collect();
    }
    pick("data", ".parquet")
        .into_iter()
        .map(|p| (p, false))
        .collect()
}

/// A row's conversation; other export formats are refused by name.
fn row_messages(row: &Value, file: &Path, line: usize) -> Result<Vec<Message>> {
    let at = || format!("{} row {line}", file.display());
    if let Some(list) = row.get("messages").and_then(Value::as_array) {
        return list
            .iter()
            .map(|m| {
                let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                Ok(Message {
                    role: s("role")
                        .with_context(|| format!("{}: a message without a role", at()))?,
                    content: s("content")
                        .with_context(|| format!("{}: a message without content", at()))?,
                })
            })
            .collect();
    }
    if row.get("chosen").is_some() {
        bail!(
            "{}: a DPO export; `train sft` reads an `sft-messages` export (`train dpo` is not \
             implemented yet)",
            at()
        );
    }
    if row.get("completion").is_some() {
        bail!(
            "{}: an `sft-prompt-completion` export; `train sft` reads an `sft-messages` export \
             (`mediflow export --format sft-messages`)",
            at()
        );
    }
    bail!("{}: no `messages` field (not an sft-messages export)", at())
}

/// The conversations of `split` in the export at `dir` (empty when the split is absent).
pub fn read_split(dir: &Path, split: &str) -> Result<Vec<Vec<Message>>> {
    if !dir.is_dir() {
        bail!("export directory {} not found", dir.display());
    }
    if !dir.join("jsonl").is_dir() && !dir.join("data").is_dir() {
        bail!(
            "{} is not an export (no jsonl/ or data/ folder; make one with `mediflow export \
             --format sft-messages`)",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for (f, is_jsonl) in split_files(dir, split) {
        let rows: Vec<Value> = if is_jsonl {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| {
                    serde_json::from_str(l)
                        .with_context(|| format!("{} line {}: invalid JSON", f.display(), i + 1))
                })
                .collect::<Result<_>>()?
        } else {
            crate::export::write::read_parquet_rows(&f)?
        };
        for (i, r) in rows.iter().enumerate() {
            out.push(row_messages(r, &f, i + 1)?);
        }
    }
    Ok(out)
}

/// Renders and tokenizes conversations for one model.
pub struct Encoder<'a> {
    pub template: &'a ChatTemplate,
    pub tok: &'a TextTokenizer,
}

impl Encoder<'_> {
    /// Tokenize `messages`: the text before each assistant answer is what the template's
    /// generation prompt renders and is tokenized alone (as a prompt is at inference);
    /// the answer's tokens carry loss up to and including the first end-of-turn token.
    /// An answer that ends with the eos text itself has it removed first.
    pub fn encode(&self, messages: &[Message]) -> Result<Example> {
        let msgs: Vec<Message> = messages
            .iter()
            .map(|m| {
                let mut m = m.clone();
                if m.role == "assistant" && !self.tok.eos_text.is_empty() {
                    let t = m.content.trim_end();
                    if let Some(s) = t.strip_suffix(self.tok.eos_text.as_str()) {
                        m.content = s.to_string();
                    }
                }
                m
            })
            .collect();
        if !msgs.iter().any(|m| m.role == "assistant") {
            bail!("a conversation without an assistant turn");
        }
        let full = self.template.render_with(&msgs, false)?;
        let (mut ids, mut target) = (Vec::new(), Vec::new());
        let mut done = 0; // bytes of `full` already tokenized
        let push = |text: &str, scored: bool, ids: &mut Vec<u32>, target: &mut Vec<bool>| {
            let t = self.tok.encode(text)?;
            let mut open = scored;
            for id in t {
                ids.push(id);
                target.push(open);
                if open && self.tok.stop_ids.contains(&id) {
                    open = false;
                }
            }
            if open {
                // The template closed the turn without an end token: add exactly one.
                ids.push(self.tok.eos);
                target.push(true);
            }
            anyhow::Ok(())
        };
        for (i, m) in msgs.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let prompt = self.template.render_with(&msgs[..i], true)?;
            let upto = self.template.render_with(&msgs[..=i], false)?;
            if !full.starts_with(&upto) || !upto.starts_with(&prompt) || prompt.len() < done {
                bail!(
                    "the chat template does not render this conversation as its prompt \
                     followed by the answer, so the answer's tokens cannot be found"
                );
            }
            push(&full[done..prompt.len()], false, &mut ids, &mut target)?;
            push(&full[prompt.len()..upto.len()], true, &mut ids, &mut target)?;
            done = upto.len();
        }
        if done < full.len() {
            push(&full[done..], false, &mut ids, &mut target)?;
        }
        Ok(Example { ids, target })
    }
}

/// What to do with an example longer than `--max-seq-len`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Overlong {
    /// Leave it out.
    Drop,
    /// Keep its first `--max-seq-len` tokens (left out if no answer token remains).
    Cut,
}

/// Examples within the length limit, and how many were cut or dropped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fitted {
    #[serde(skip)]
    pub examples: Vec<Example>,
    pub rows: usize,
    pub kept: usize,
    pub cut: usize,
    pub dropped: usize,
    pub longest: usize,
    pub tokens: usize,
    pub scored_tokens: usize,
}

pub fn fit(all: Vec<Example>, max_len: usize, how: Overlong) -> Fitted {
    let mut f = Fitted {
        rows: all.len(),
        ..Default::default()
    };
    for mut e in all {
        f.longest = f.longest.max(e.ids.len());
        if e.ids.len() > max_len {
            if how == Overlong::Drop {
                f.dropped += 1;
                continue;
            }
            e.ids.truncate(max_len);
            e.target.truncate(max_len);
            // The first token is never predicted, so it cannot be the only scored one.
            if e.target.iter().skip(1).all(|t| !t) {
                f.dropped += 1;
                continue;
            }
            f.cut += 1;
        }
        f.tokens += e.ids.len();
        f.scored_tokens += e.target.iter().skip(1).filter(|&&t| t).count();
        f.examples.push(e);
    }
    f.kept = f.examples.len();
    f
}

/// Pad `rows` to the longest (with token 0) into one batch; position `p` is scored when
/// token `p + 1` is a target.
pub fn batch(rows: &[&Example]) -> Batch {
    let len = rows.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let mut b = Batch {
        ids: Vec::with_capacity(rows.len() * len),
        rows: rows.len(),
        len,
        pos: Vec::new(),
        next: Vec::new(),
        tokens: 0,
    };
    for (r, e) in rows.iter().enumerate() {
        b.ids.extend_from_slice(&e.ids);
        b.ids.resize((r + 1) * len, 0);
        b.tokens += e.ids.len();
        for p in 1..e.ids.len() {
            if e.target[p] {
                b.pos.push((r * len + p - 1) as u32);
                b.next.push(e.ids[p]);
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::embedded::chat_template::CHATML;
    use crate::teacher::embedded::{model as emodel, tiny};

    fn tokenizer() -> (tempfile::TempDir, TextTokenizer) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tiny.gguf");
        tiny::write(&p, &tiny::TinySpec::default()).unwrap();
        let (ct, _) = emodel::read_gguf(&p).unwrap();
        let vocab = emodel::model_config(&ct).unwrap().vocab;
        (dir, TextTokenizer::load(&ct, None, vocab).unwrap())
    }

    fn conv(answer: &str) -> Vec<Message> {
        vec![
            Message::system("Be brief."),
            Message::user("Note: BP 120/80."),
            Message::assistant(answer),
        ]
    }

    #[test]
    fn only_the_answer_and_one_end_token_carry_loss() {
        let (_d, tok) = tokenizer();
        let t = ChatTemplate::new(CHATML, &tok.bos_text, &tok.eos_text).unwrap();
        let enc = Encoder {
            template: &t,
            tok: &tok,
        };
        let e = enc.encode(&conv("Normal BP.")).unwrap();
        let im_end = tok.inner.token_to_id("<|im_end|>").unwrap();
        let scored: Vec<u32> = e
            .ids
            .iter()
            .zip(&e.target)
            .filter(|(_, &t)| t)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(*scored.last().unwrap(), im_end);
        assert_eq!(tok.decode(&scored).unwrap(), "Normal BP.");
        // The prompt, the assistant marker and the newline after <|im_end|> carry none.
        let prompt = t.render_with(&conv("x")[..2], true).unwrap();
        let n_prompt = tok.encode(&prompt).unwrap().len();
        assert!(e.target[..n_prompt].iter().all(|t| !t));
        assert_eq!(e.target.iter().filter(|&&t| t).count(), scored.len());
        assert!(
            !e.target.last().unwrap(),
            "the trailing newline is not scored"
        );
        assert_eq!(e.ids.iter().filter(|&&i| i == im_end).count(), 3);
        // An answer that already ends with the eos text gets no second end token.
        let twice = enc
            .encode(&conv(&format!("Normal BP.{}", tok.eos_text)))
            .unwrap();
        assert_eq!(twice, e);
    }

    #[test]
    fn a_template_without_end_token_gets_exactly_one() {
        let (_d, tok) = tokenizer();
        let src = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}\
                   {% if add_generation_prompt %}assistant: {% endif %}";
        let t = ChatTemplate::new(src, "", &tok.eos_text).unwrap();
        let enc = Encoder {
            template: &t,
            tok: &tok,
        };
        let e = enc.encode(&conv("ok")).unwrap();
        let scored: Vec<u32> = e
            .ids
            .iter()
            .zip(&e.target)
            .filter(|(_, &t)| t)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(scored.iter().filter(|&&i| i == tok.eos).count(), 1);
        assert_eq!(*scored.last().unwrap(), tok.eos);
    }

    #[test]
    fn overlong_rows_are_cut_or_dropped_and_batches_shift_targets() {
        let ex = |n: usize, from: usize| Example {
            ids: (0..n as u32).collect(),
            target: (0..n).map(|i| i >= from).collect(),
        };
        let f = fit(vec![ex(4, 2), ex(10, 3), ex(10, 8)], 6, Overlong::Cut);
        assert_eq!((f.kept, f.cut, f.dropped, f.longest), (2, 1, 1, 10));
        let f = fit(vec![ex(4, 2), ex(10, 3)], 6, Overlong::Drop);
        assert_eq!((f.kept, f.cut, f.dropped), (1, 0, 1));
        let (a, b) = (ex(3, 1), ex(2, 1));
        let bt = batch(&[&a, &b]);
        assert_eq!((bt.rows, bt.len, bt.tokens), (2, 3, 5));
        assert_eq!(bt.ids, vec![0, 1, 2, 0, 1, 0]);
        assert_eq!(bt.pos, vec![0, 1, 3]);
        assert_eq!(bt.next, vec![1, 2, 1]);
    }

    #[test]
    fn every_assistant_turn_of_a_conversation_is_scored() {
        let (_d, tok) = tokenizer();
        let t = ChatTemplate::new(CHATML, &tok.bos_text, &tok.eos_text).unwrap();
        let enc = Encoder {
            template: &t,
            tok: &tok,
        };
        let msgs = vec![
            Message::user("a?"),
            Message::assistant("one"),
            Message::user("b?"),
            Message::assistant("two"),
        ];
        let e = enc.encode(&msgs).unwrap();
        let im_end = tok.inner.token_to_id("<|im_end|>").unwrap();
        let scored: Vec<u32> = e
            .ids
            .iter()
            .zip(&e.target)
            .filter(|(_, &t)| t)
            .map(|(&i, _)| i)
            .collect();
        assert_eq!(tok.decode(&scored).unwrap(), "onetwo");
        assert_eq!(scored.iter().filter(|&&i| i == im_end).count(), 2);
        let text = t.render_with(&msgs, false).unwrap();
        assert_eq!(
            tok.decode(&e.ids).unwrap(),
            tok.decode(&tok.encode(&text).unwrap()).unwrap()
        );
    }

    /// On the real default model when it is cached (SmolLM2's own template, which adds a
    /// default system turn when there is none): the answer and `<|im_end|>` are scored.
    #[test]
    fn smollm2_template_scores_the_answer_only() {
        use crate::teacher::embedded::{chat_template::template_source, pull, EmbeddedConfig};
        let path = pull::default_model_path(&EmbeddedConfig::default().cache());
        if !path.is_file() {
            eprintln!("skipped: {} is not cached", path.display());
            return;
        }
        let (ct, _) = emodel::read_gguf(&path).unwrap();
        let vocab = emodel::model_config(&ct).unwrap().vocab;
        let tok = TextTokenizer::load(&ct, None, vocab).unwrap();
        let t = ChatTemplate::new(&template_source(&ct), &tok.bos_text, &tok.eos_text).unwrap();
        let enc = Encoder {
            template: &t,
            tok: &tok,
        };
        let im_end = tok.inner.token_to_id("<|im_end|>").unwrap();
        for msgs in [
            conv("Normal blood pressure."),
            conv("Normal blood pressure.")[1..].to_vec(),
        ] {
            let e = enc.encode(&msgs).unwrap();
            let scored: Vec<u32> = e
                .ids
                .iter()
                .zip(&e.target)
                .filter(|(_, &t)| t)
                .map(|(&i, _)| i)
                .collect();
            assert_eq!(tok.decode(&scored).unwrap(), "Normal blood pressure.");
            assert_eq!(*scored.last().unwrap(), im_end);
            assert_eq!(scored.iter().filter(|&&i| i == im_end).count(), 1);
            let text = tok.decode(&e.ids[..e.target.iter().position(|&t| t).unwrap()]);
            assert!(text.unwrap().ends_with("assistant\n"));
        }
    }
}
