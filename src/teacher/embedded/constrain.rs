//! JSON-Schema-constrained decoding with llguidance: at every step the tokens that
//! cannot continue a document valid against the schema are masked out, so structure is
//! guaranteed (content is still only as good as the model). One `ParserFactory` (the
//! token trie and lexer slices, ~100 ms to build) serves every request; each request gets
//! its own `Matcher` compiled from its schema (~1 ms).

use super::tokenizer::TextTokenizer;
use anyhow::{anyhow, Result};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::Arc;

/// llguidance's view of our tokenizer: a trie of token bytes plus real tokenization.
struct Env {
    trie: TokTrie,
    tok: Arc<TextTokenizer>,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => match self.tok.encode(text) {
                Ok(ids) => ids,
                Err(_) => self.trie.greedy_tokenize(s),
            },
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

pub struct Constrainer {
    factory: ParserFactory,
}

impl Constrainer {
    pub fn new(tok: Arc<TextTokenizer>) -> Result<Self> {
        let info = TokRxInfo {
            vocab_size: tok.vocab_size() as u32,
            tok_eos: tok.eos,
            tok_bos: tok.bos,
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &tok.token_bytes);
        let env: TokEnv = Arc::new(Env { trie, tok });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| anyhow!("cannot set up constrained decoding: {e}"))?;
        factory.quiet();
        Ok(Constrainer { factory })
    }

    /// A fresh matcher for one request. The schema gets compact-JSON defaults (single
    /// spaces after `,` and `:`, no free whitespace, which small models otherwise fill
    /// forever) unless it carries its own `x-guidance` options.
    pub fn matcher(&self, schema: &Value) -> Result<Matcher> {
        let mut schema = schema.clone();
        if let Some(obj) = schema.as_object_mut() {
            obj.entry("x-guidance").or_insert_with(|| {
                json!({
                    "whitespace_flexible": false,
                    "item_separator": ", ",
                    "key_separator": ": ",
                    "lenient": true,
                })
            });
        }
        let grammar = TopLevelGrammar::from_json_schema(schema);
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| anyhow!("cannot compile the JSON schema for decoding: {e}"))?;
        let m = Matcher::new(Ok(parser));
        if let Some(e) = m.get_error() {
            return Err(anyhow!("cannot compile the JSON schema for decoding: {e}"));
        }
        Ok(m)
    }
}

/// Set every logit the matcher does not allow next to -inf (only the end-of-sequence
/// token is allowed once the document is complete). Fails when the matcher is in an
/// error state.
pub fn apply_mask(m: &mut Matcher, logits: &mut [f32]) -> Result<()> {
    let mask = m
        .compute_mask_or_eos()
        .map_err(|e| anyhow!("constraint failed: {e}"))?;
    let mut masked = vec![f32::NEG_INFINITY; logits.len()];
    let n = logits.len();
    mask.iter_set_entries(|i| {
        if i < n {
            masked[i] = logits[i];
        }
    });
    logits.copy_from_slice(&masked);
    Ok(())
}
