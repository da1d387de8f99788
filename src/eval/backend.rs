//! The model under evaluation: a teacher config (`[teacher]` of a TOML file, as in run
//! configs) or a name (`embedded`, or an OpenAI-compatible base URL plus a model name).
//! Besides chat, a backend may score continuations by log-likelihood: the embedded model
//! always can; an OpenAI-compatible server can when its legacy completions endpoint
//! honours `echo` + `logprobs` (vLLM does). Whether it does is found
//! out on the first such request; where it does not, multiple choice falls back to
//! generation and the results say so.

use crate::config::{TeacherConfig, TeacherKind};
use crate::error::{Error, Problem};
use crate::teacher::embedded::EmbeddedTeacher;
use crate::teacher::http::HttpTeacher;
use crate::teacher::{Message, Teacher, TeacherError};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The teacher settings `--model` names (and `--model-name` for a URL).
pub fn teacher_config(model: &str, name: Option<&str>) -> Result<TeacherConfig, Error> {
    let text = if model == "embedded" {
        "kind = \"embedded\"\nmodel = \"embedded\"".to_string()
    } else if model.starts_with("http://") || model.starts_with("https://") {
        let Some(name) = name else {
            return Err(Error::Input(vec![Problem::new(
                model,
                "an OpenAI-compatible URL needs --model-name (the served model)",
            )]));
        };
        format!("kind = \"openai\"\nbase_urls = [{model:?}]\nmodel = {name:?}")
    } else {
        return from_file(Path::new(model));
    };
    let cfg: TeacherConfig = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cfg)
}

/// `[teacher]` of a TOML file (a run config, or a file with only that table).
fn from_file(path: &Path) -> Result<TeacherConfig, Error> {
    let bad = |m: String| Error::Input(vec![Problem::new(path, m)]);
    if !path.is_file() {
        return Err(bad(
            "not found: --model takes a TOML file with a [teacher] table, `embedded`, or an \
             http(s) URL"
                .into(),
        ));
    }
    let v: toml::Table = crate::util::load_toml(path).map_err(|p| Error::Input(vec![p]))?;
    let Some(t) = v.get("teacher").cloned() else {
        return Err(bad("no [teacher] table".into()));
    };
    let cfg: TeacherConfig = t
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("[teacher]: {}", e.message())))?;
    let problems = cfg.validate();
    if !problems.is_empty() {
        return Err(Error::Input(
            problems
                .into_iter()
                .map(|m| Problem::new(path, m))
                .collect(),
        ));
    }
    Ok(cfg)
}

/// What the model is, for manifests and results (a resumed eval must name the same).
pub fn describe(cfg: &TeacherConfig) -> Value {
    json!({
        "kind": cfg.kind, "model": cfg.model,
        "embedded": (cfg.kind == TeacherKind::Embedded).then(|| json!({
            "path": cfg.embedded.path, "weights": cfg.embedded.weights,
        })),
    })
}

pub struct Backend {
    pub chat: Arc<dyn Teacher>,
    scorer: Scorer,
    /// Why log-likelihood scoring is unavailable (set on the first refusal).
    unsupported: Mutex<Option<String>>,
}

enum Scorer {
    Embedded(Arc<EmbeddedTeacher>),
    Completions(Completions),
}

/// The legacy completions endpoint, asked to echo the prompt with log-probabilities.
struct Completions {
    client: reqwest::Client,
    base: String,
    model: String,
    api_key: Option<String>,
}

/// What a log-likelihood request gave.
pub enum LogLik {
    /// Summed log-probability of each option.
    Scores(Vec<f64>),
    /// The backend cannot score (the reason; the caller generates instead).
    Unsupported(String),
}

impl Backend {
    pub async fn build(cfg: &TeacherConfig) -> Result<Backend, Error> {
        let timeout = Duration::from_secs_f64(cfg.timeout_secs);
        let (chat, scorer): (Arc<dyn Teacher>, Scorer) = match cfg.kind {
            TeacherKind::Embedded => {
                let ec = cfg.embedded.clone();
                let t = tokio::task::spawn_blocking(move || EmbeddedTeacher::load(&ec))
                    .await
                    .map_err(anyhow::Error::from)?
                    .map_err(|e| Error::TeacherUnavailable(format!("{e:#}")))?;
                let t = Arc::new(t);
                (t.clone(), Scorer::Embedded(t))
            }
            TeacherKind::Openai => {
                let chat = HttpTeacher::new(cfg).map_err(Error::Other)?;
                let api_key = cfg.api_key().map_err(anyhow::Error::msg)?;
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(anyhow::Error::from)?;
                let scorer = Scorer::Completions(Completions {
                    client,
                    base: cfg.base_urls[0].trim_end_matches('/').to_string(),
                    model: cfg.model.clone(),
                    api_key,
                });
                (Arc::new(chat), scorer)
            }
        };
        let b = Backend {
            chat,
            scorer,
            unsupported: Mutex::new(None),
        };
        b.chat.probe().await.map_err(Error::TeacherUnavailable)?;
        Ok(b)
    }

    /// Why log-likelihood scoring is unavailable, once a request found out.
    pub fn unsupported(&self) -> Option<String> {
        self.unsupported.lock().expect("not poisoned").clone()
    }

    /// Log-likelihood of each option as the answer to `messages`.
    pub async fn loglikelihood(
        &self,
        messages: &[Message],
        options: &[String],
    ) -> Result<LogLik, TeacherError> {
        if let Some(why) = self.unsupported() {
            return Ok(LogLik::Unsupported(why));
        }
        let r = match &self.scorer {
            Scorer::Embedded(t) => t
                .logprobs(messages, options)
                .await
                .map(LogLik::Scores)
                .map_err(|e| TeacherError::Server {
                    status: 500,
                    body: format!("{e:#}"),
                    retry_after: None,
                }),
            Scorer::Completions(c) => c.score(messages, options).await,
        };
        if let Ok(LogLik::Unsupported(why)) = &r {
            self.unsupported
                .lock()
                .expect("not poisoned")
                .get_or_insert_with(|| why.clone());
        }
        r
    }
}

/// The plain-text context of a chat prompt for a completions endpoint (and for
/// lm-evaluation-harness): the system text, a blank line, the user text.
pub fn plain_context(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Completions {
    async fn score(
        &self,
        messages: &[Message],
        options: &[String],
    ) -> Result<LogLik, TeacherError> {
        let ctx = plain_context(messages);
        let mut out = Vec::with_capacity(options.len());
        for opt in options {
            match self.one(&ctx, &format!(" {opt}")).await? {
                Ok(lp) => out.push(lp),
                Err(why) => return Ok(LogLik::Unsupported(why)),
            }
        }
        Ok(LogLik::Scores(out))
    }

    /// Log-probability of `cont` after `ctx`, or why the server cannot tell.
    async fn one(&self, ctx: &str, cont: &str) -> Result<Result<f64, String>, TeacherError> {
        let url = format!("{}/completions", self.base);
        let body = json!({
            "model": self.model, "prompt": format!("{ctx}{cont}"), "max_tokens": 1,
            "temperature": 0, "echo": true, "logprobs": 1,
        });
        let mut rb = self
            .client
            .post(&url)
            .header("X-Mediflow-Stage", "eval")
            .json(&body);
        if let Some(k) = &self.api_key {
            rb = rb.bearer_auth(k);
        }
        let resp = rb.send().await.map_err(|e| {
            if e.is_timeout() {
                TeacherError::Timeout
            } else {
                TeacherError::Connection(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| TeacherError::Connection(e.to_string()))?;
        match status {
            200..=299 => {}
            429 => return Err(TeacherError::RateLimited { retry_after: None }),
            500..=599 => {
                return Err(TeacherError::Server {
                    status,
                    body: text.chars().take(300).collect(),
                    retry_after: None,
                })
            }
            _ => {
                return Ok(Err(format!(
                    "{url} answered {status} to an echo + logprobs request"
                )))
            }
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| TeacherError::BadResponse(format!("not JSON: {e}")))?;
        Ok(echo_logprob(
            &v,
            ctx.chars().count(),
            (ctx.chars().count() + cont.chars().count()) as u64,
        )
        .ok_or_else(|| {
            format!("{url} gave no prompt log-probabilities (echo + logprobs unsupported)")
        }))
    }
}

/// The sum of the echoed prompt tokens' log-probabilities whose text starts within
/// `[from, to)` (character offsets), from a completions response. None when the response
/// has no echoed continuation tokens: a server that gives log-probabilities of generated
/// tokens only (llama.cpp's) is not mistaken for one that scores every option 0.
fn echo_logprob(v: &Value, from: usize, to: u64) -> Option<f64> {
    let lp = &v["choices"][0]["logprobs"];
    let offsets = lp["text_offset"].as_array()?;
    let values = lp["token_logprobs"].as_array()?;
    let mut sum = 0.0;
    let mut any = false;
    for (o, l) in offsets.iter().zip(values) {
        let o = o.as_u64()?;
        if o >= from as u64 && o < to {
            sum += l.as_f64()?;
            any = true;
        }
    }
    any.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_logprob_sums_the_continuation_tokens() {
        // "Q: x A" + " B" + one generated token: offsets 0, 2, 4 (ctx, len 6), 6, 8 (cont).
        let v = json!({"choices": [{"logprobs": {
            "text_offset": [0, 2, 4, 6, 8],
            "token_logprobs": [null, -1.0, -2.0, -0.5, -3.0]}}]});
        assert_eq!(echo_logprob(&v, 6, 8), Some(-0.5));
        assert_eq!(echo_logprob(&v, 4, 9), Some(-5.5));
        assert_eq!(
            echo_logprob(&json!({"choices": [{"text": "x"}]}), 6, 8),
            None
        );
    }

    #[test]
    fn model_names_and_files() {
        let e = teacher_config("embedded", None).unwrap();
        assert_eq!(e.kind, TeacherKind::Embedded);
        let h = teacher_config("http://127.0.0.1:9/v1", Some("m")).unwrap();
        assert_eq!((h.kind, h.model.as_str()), (TeacherKind::Openai, "m"));
        assert!(matches!(
            teacher_config("http://x/v1", None),
            Err(Error::Input(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.toml");
        std::fs::write(
            &f,
            "[teacher]\nkind = \"openai\"\nbase_urls = []\nmodel = \"m\"\n",
        )
        .unwrap();
        let Err(Error::Input(p)) = teacher_config(f.to_str().unwrap(), None) else {
            panic!("empty base_urls accepted")
        };
        assert_eq!(p[0].file, f);
        std::fs::write(
            &f,
            "[teacher]\nkind = \"openai\"\nbogus = 1\nmodel = \"m\"\n",
        )
        .unwrap();
        assert!(matches!(
            teacher_config(f.to_str().unwrap(), None),
            Err(Error::Input(_))
        ));
    }
}
