//! Text <-> token ids for the embedded model. GGUF files carry their tokenizer as
//! metadata (vocabulary, merges, token types), so a `tokenizers::Tokenizer` is rebuilt
//! from it and no separate `tokenizer.json` is needed; one can still be given. Also keeps
//! the raw bytes of every token, which the constrained decoder's trie and the streaming
//! stop-string check both work on.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file;
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// Token ids that end an answer when sampled.
const END_MARKERS: &[&str] = &[
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end|>",
    "</s>",
];

pub struct TextTokenizer {
    pub inner: Tokenizer,
    /// Raw bytes of each token id (special tokens start with 0xFF, as toktrie expects),
    /// padded with empty entries up to the model's vocabulary size.
    pub token_bytes: Vec<Vec<u8>>,
    pub eos: u32,
    pub bos: Option<u32>,
    pub eos_text: String,
    pub bos_text: String,
    /// Every id that ends generation (eos plus the usual end-of-turn markers present).
    pub stop_ids: Vec<u32>,
    /// Ids of special (control) tokens, which add no text to an answer.
    special: Vec<bool>,
}

fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    ct.metadata.get(key)
}

fn md_strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>> {
    let v = md(ct, key).with_context(|| format!("GGUF metadata has no {key}"))?;
    v.to_vec()
        .map_err(|e| anyhow!("{key}: {e}"))?
        .iter()
        .map(|x| x.to_string().cloned().map_err(|e| anyhow!("{key}: {e}")))
        .collect()
}

fn md_u32(ct: &gguf_file::Content, key: &str) -> Option<u32> {
    let v = md(ct, key)?;
    v.to_u32()
        .ok()
        .or_else(|| v.to_i32().ok().map(|x| x as u32))
        .or_else(|| v.to_u64().ok().map(|x| x as u32))
}

/// Build the tokenizer from GGUF metadata (byte-level BPE vocabularies only).
pub fn tokenizer_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let model = md(ct, "tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    if model != "gpt2" {
        bail!(
            "cannot build a tokenizer from GGUF metadata of type {model:?} (only byte-level \
             BPE, \"gpt2\"); give a tokenizer.json with teacher.embedded.tokenizer"
        );
    }
    let pre = md(ct, "tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| "default".into());
    let tokens = md_strings(ct, "tokenizer.ggml.tokens")?;
    let merges = md_strings(ct, "tokenizer.ggml.merges")?;
    let types: Vec<i32> = match md(ct, "tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()
            .map_err(|e| anyhow!("token_type: {e}"))?
            .iter()
            .map(|x| x.to_i32().unwrap_or(1))
            .collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("malformed merge {m:?} in GGUF metadata"))
        })
        .collect::<Result<_>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow!("cannot build BPE model: {e}"))?;
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tok: PreTokenizerWrapper = match pre.as_str() {
        // SmolLM: every digit its own pre-token, then GPT-2's byte-level split.
        "smollm" => Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])
        .into(),
        "default" | "gpt2" | "gpt-2" => byte_level.into(),
        other => bail!(
            "GGUF pre-tokenizer {other:?} is not supported; give a tokenizer.json with \
             teacher.embedded.tokenizer"
        ),
    };
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens must come out as single ids.
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter())
        .filter(|(_, &t)| t == 3 || t == 4)
        .map(|(s, &t)| AddedToken::from(s.clone(), t == 3))
        .collect();
    tok.add_special_tokens(specials)
        .map_err(|e| anyhow!("cannot register control tokens: {e}"))?;
    Ok(tok)
}

impl TextTokenizer {
    /// From a `tokenizer.json` when given, else from the GGUF metadata.
    pub fn load(ct: &gguf_file::Content, json: Option<&Path>, model_vocab: usize) -> Result<Self> {
        let inner = match json {
            Some(p) => Tokenizer::from_file(p)
                .map_err(|e| anyhow!("cannot load tokenizer {}: {e}", p.display()))?,
            None => tokenizer_from_gguf(ct)?,
        };
        let text = |id: Option<u32>| id.and_then(|i| inner.id_to_token(i));
        let eos = md_u32(ct, "tokenizer.ggml.eos_token_id")
            .or_else(|| inner.token_to_id("<|im_end|>"))
            .or_else(|| inner.token_to_id("<|endoftext|>"))
            .context("the model defines no end-of-sequence token")?;
        let bos = md_u32(ct, "tokenizer.ggml.bos_token_id");
        let eos_text = text(Some(eos)).unwrap_or_default();
        let bos_text = text(bos).unwrap_or_default();
        let json: serde_json::Value = serde_json::from_str(
            &inner
                .to_string(false)
                .map_err(|e| anyhow!("cannot serialize tokenizer: {e}"))?,
        )?;
        let mut token_bytes = llguidance::token_bytes_from_tokenizer_json(&json)
            .context("cannot derive token bytes from the tokenizer")?;
        if token_bytes.len() > model_vocab {
            bail!(
                "tokenizer has {} tokens but the model only {model_vocab}",
                token_bytes.len()
            );
        }
        token_bytes.resize(model_vocab, Vec::new());
        let mut stop_ids = vec![eos];
        for m in END_MARKERS {
            if let Some(id) = inner.token_to_id(m) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let mut special = vec![false; model_vocab];
        for (id, t) in inner.get_added_tokens_decoder() {
            if t.special && (id as usize) < model_vocab {
                special[id as usize] = true;
            }
        }
        Ok(TextTokenizer {
            inner,
            token_bytes,
            special,
            eos,
            bos,
            eos_text,
            bos_text,
            stop_ids,
        })
    }

    /// Encode text; special-token markers in it (`<|im_start|>`) become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, false)
            .map_err(|e| anyhow!("tokenize: {e}"))?
            .get_ids()
            .to_vec())
    }

    /// Decode ids, dropping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| anyhow!("detokenize: {e}"))
    }

    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Raw bytes a token adds to the output (empty for special tokens).
    pub fn bytes_of(&self, id: u32) -> &[u8] {
        match self.token_bytes.get(id as usize) {
            Some(b) if !self.is_special(id) => b,
            _ => &[],
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }
}
