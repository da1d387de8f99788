//! `mediflow init [DIR]`: write a commented `run.toml` to start from. Settings a new run
//! usually changes are written out; others are there commented out (`#key = value`, at
//! their default or an example value), each a real setting, so uncommenting one is
//! enough. The file passes `mediflow check` as written, and still loads with every
//! commented setting uncommented (tests/init.rs checks both).

use clap::{Args, ValueEnum};
use mediflow::error::{Error, Problem};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct InitArgs {
    /// Where to write `run.toml` (created if missing).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Which teacher the config starts with.
    #[arg(long, value_enum, default_value = "openai")]
    pub teacher: InitTeacher,
    /// The run's name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Overwrite an existing `run.toml`.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitTeacher {
    /// An OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp, Ollama).
    Openai,
    /// The in-process model (SmolLM2-135M-Instruct unless a GGUF file is named).
    Embedded,
}

const HEADER: &str = r#"# mediflow run configuration, written by `mediflow init`. Check it (add --no-probe to
# leave the teacher out), see the plan and its estimated work, then generate (running
# the same command again resumes):
#   mediflow check --config @FILE@
#   mediflow plan --config @FILE@
#   mediflow run --config @FILE@
# Relative paths are resolved against the directory mediflow runs in. Settings commented
# out as `#key = value` are real ones, at their default or an example value: uncomment
# one to use it.

# Outputs go to <out_root>/<name> (or `run --out DIR`).
name = "@NAME@"
# The plan, the item ids and the per-request seeds follow from the seed.
seed = 42
# Work items to plan (`--items N` overrides it): one document, instruction and answer each.
items = 100
#taxonomy_dir = "taxonomy"
#templates_dir = "templates"
#schemas_dir = "schemas"
#out_root = "outputs"

[templates]
# "full": detailed rules, for capable teachers. "compact": short prompts with one worked
# example each, for small models.
profile = "@PROFILE@"

# Restrict the taxonomy (empty = all of it; `mediflow taxonomy` lists the ids).
[plan]
#tasks = ["question_answering", "summarization"]
#families = ["clinical_note"]
#documents = ["discharge_summary"]
#formats = ["plain_text", "json"]
#difficulties = [1, 2, 3]

"#;

const OPENAI: &str = r#"[teacher]
kind = "openai"
# One or more OpenAI-compatible servers, each URL ending in /v1 (`--teacher-url` overrides).
base_urls = ["http://127.0.0.1:8000/v1"]
# The model name the server serves.
model = "meta-llama/Llama-3.1-8B-Instruct"
# The environment variable that holds the API key, if the server wants one (the key itself
# is never written anywhere); a variable named but unset stops the run before any request.
#api_key_env = "MEDIFLOW_API_KEY"
temperature = 0.8
top_p = 0.95
#send_seed = true
timeout_secs = 120
# How a task's JSON Schema reaches the teacher for `json` items: "server"
# (response_format, falling back to the prompt if refused), "prompt" or "off".
response_format = "server"

# Token caps per stage (a document's cap also follows its type's length). Each must fit
# the server's context (its max_model_len, where /models gives one).
[teacher.max_tokens]
document = 1200
instruction = 400
answer = 1024

# Requests in flight adapt per server between min and max (`--concurrency N` fixes them).
[teacher.adaptive]
#enabled = true
#min = 1
#initial = 8
#max = 256

"#;

const EMBEDDED: &str = r#"[teacher]
kind = "embedded"
# A name for provenance; the model itself is `teacher.embedded.path`.
model = "SmolLM2-135M-Instruct"
temperature = 0.1
top_p = 0.9
timeout_secs = 600
response_format = "server"

# Token caps per stage (a document's cap also follows its type's length). Each must fit
# the model's context (from its GGUF metadata).
[teacher.max_tokens]
document = 160
instruction = 40
answer = 96

[teacher.embedded]
# A local GGUF file (llama-family); without one, the default model is pulled into the
# cache on first use (`mediflow model pull`).
#path = "models/model.gguf"
#device = "auto"
#weights = "auto"
#max_batch = 16
repetition_penalty = 1.1
repetition_last_n = 64

"#;

const FOOTER: &str = r#"[engine]
#concurrency = 16
# Attempts per teacher call before the item is rejected, and repair rounds for `json`
# answers that do not parse or validate.
#max_attempts = 4
#repair_attempts = 1
#shard_size = 10000

# Exact yields: refill each cell until it has its planned number of accepted records
# (`"plan"`) or this many, within budget_factor times its items.
[quota]
#target_accepted = "plan"
#budget_factor = 3.0

# An LLM judge scores each record 1-5 on five dimensions; see the README on calibrating
# it before letting its scores select.
[judge]
#enabled = false
"#;

/// The text of a `run.toml` named `name` for `teacher`, to be written as `file`.
pub fn render(name: &str, teacher: InitTeacher, file: &str) -> String {
    let (section, profile) = match teacher {
        InitTeacher::Openai => (OPENAI, "full"),
        InitTeacher::Embedded => (EMBEDDED, "compact"),
    };
    format!("{HEADER}{section}{FOOTER}")
        .replace("@NAME@", name)
        .replace("@PROFILE@", profile)
        .replace("@FILE@", file)
}

/// A run name from a directory: its last component, with what a name may not hold
/// replaced.
fn name_from(dir: &Path) -> String {
    let base = std::path::absolute(dir)
        .ok()
        .and_then(|d| {
            d.components()
                .filter_map(|c| match c {
                    std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                    _ => None,
                })
                .next_back()
        })
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| match c {
            c if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' => c,
            _ => '-',
        })
        .collect();
    match clean.trim_matches(['-', '.']) {
        "" => "my-run".to_string(),
        s => s.to_string(),
    }
}

pub fn exec(a: InitArgs) -> Result<(), Error> {
    let file = a.dir.join("run.toml");
    if file.exists() && !a.force {
        return Err(Error::Input(vec![Problem::new(
            &file,
            "exists already; use --force to overwrite it",
        )]));
    }
    let name = a.name.clone().unwrap_or_else(|| name_from(&a.dir));
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| Error::io(format!("creating {}", a.dir.display()), e))?;
    let text = render(&name, a.teacher, &file.display().to_string());
    std::fs::write(&file, text).map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
    println!("wrote {}", file.display());
    println!("next: mediflow check --config {}", file.display());
    if !Path::new("taxonomy").is_dir() {
        eprintln!(
            "note: taxonomy/, templates/ and schemas/ are looked up in the current directory, \
             where there is no taxonomy/; run mediflow from its repository or set \
             taxonomy_dir, templates_dir and schemas_dir"
        );
    }
    Ok(())
}
