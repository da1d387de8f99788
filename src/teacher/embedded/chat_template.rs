//! Turning chat messages into the exact prompt text the model was trained on. The
//! model's own Jinja chat template (GGUF `tokenizer.chat_template`) is rendered with
//! minijinja, configured like Hugging Face's renderer (trim/lstrip blocks, Python string
//! methods, `raise_exception`), so prompts match what an OpenAI-compatible server would
//! build from the same file.

use crate::teacher::Message;
use anyhow::{anyhow, Context, Result};
use minijinja::{context, Environment, Error, ErrorKind};

/// ChatML, for models that carry no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + \
    '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if \
    add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The model's own template (GGUF `tokenizer.chat_template`), else ChatML.
pub fn template_source(ct: &candle_core::quantized::gguf_file::Content) -> String {
    ct.metadata
        .get("tokenizer.chat_template")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_else(|| CHATML.to_string())
}

pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

fn raise_exception(msg: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn strftime_now(fmt: String) -> String {
    chrono::Local::now().format(&fmt).to_string()
}

impl ChatTemplate {
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        minijinja_contrib::add_to_environment(&mut env);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| anyhow!("invalid chat template: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// The prompt for `messages`, ending where the assistant's answer begins.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        self.render_with(messages, true)
    }

    pub fn render_with(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").expect("added in new");
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| anyhow!("{e:#}"))
        .context("cannot render the chat template")
    }
}
