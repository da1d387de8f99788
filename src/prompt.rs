//! Prompt rendering: a minijinja environment over `templates_dir` with strict undefined
//! variables. Each template defines a `system` and a `user` block, rendered separately
//! into the chat messages of one teacher request; a template may also define
//! `example_user` and `example_assistant`, a worked example sent as a prior turn pair
//! between the two (system, example user, example assistant, user).
//!
//! Two profiles select the files (`[templates] profile`):
//! - `full` (the default): the templates at the top of `templates_dir`, with the detailed
//!   rules a capable teacher follows.
//! - `compact`: `templates_dir/compact/`, mirroring the full tree's names, for small
//!   teachers: a short system prompt and one short worked example per task or document
//!   family, no rule lists (a 135M model imitates an example far better than it follows
//!   instructions). Every lookup tries the compact tree first, most specific name first,
//!   then the full tree the same way: a stage compact has no template for uses the full
//!   one, so a compact tree may cover only some stages, and a user's own copy of
//!   `templates_dir` can override either profile.

use crate::config::TemplateProfile;
use crate::error::Problem;
use crate::plan::PlanItem;
use crate::schemas::Schemas;
use crate::taxonomy::Taxonomy;
use crate::teacher::Message;
use crate::util;
use minijinja::{Environment, UndefinedBehavior};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The pipeline stages that call the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Document,
    Instruction,
    Answer,
    Repair,
    Judge,
    /// `mediflow dpo --strategy error_injection`: rewrite an answer with one error.
    Inject,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Document => "document",
            Stage::Instruction => "instruction",
            Stage::Answer => "answer",
            Stage::Repair => "repair",
            Stage::Judge => "judge",
            Stage::Inject => "inject",
        }
    }
}

pub struct Prompts {
    env: Environment<'static>,
    dir: PathBuf,
    /// Template name -> short content hash of the file.
    hashes: HashMap<String, String>,
    pub hash: String,
    profile: TemplateProfile,
    /// The worked examples' names, numbers and phrases, for the `example_copy` filter.
    pub examples: crate::quality::examples::Examples,
}

/// Where the compact profile's templates live, under `templates_dir`.
pub const COMPACT_DIR: &str = "compact";

impl Prompts {
    pub fn load(dir: &Path) -> Result<Prompts, Vec<Problem>> {
        if !dir.is_dir() {
            return Err(vec![Problem::new(dir, "templates folder not found")]);
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_loader(minijinja::path_loader(dir));
        env.set_trim_blocks(true);
        env.set_keep_trailing_newline(false);
        let mut hashes = HashMap::new();
        let mut problems = Vec::new();
        for p in util::files_with_extension(dir, "j2") {
            let name = p
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            match std::fs::read(&p) {
                Ok(bytes) => match std::str::from_utf8(&bytes) {
                    Ok(_) => {
                        hashes.insert(name, util::short_hash(bytes));
                    }
                    // Named here: minijinja's loader would report it against the folder.
                    Err(e) => {
                        let at = e.valid_up_to();
                        problems.push(Problem::at(
                            &p,
                            Some(util::line_of(&String::from_utf8_lossy(&bytes[..at]), at)),
                            format!("not UTF-8 text (invalid byte at offset {at})"),
                        ))
                    }
                },
                Err(e) => problems.push(Problem::new(&p, format!("cannot read: {e}"))),
            }
        }
        let prompts = Prompts {
            env,
            dir: dir.to_path_buf(),
            hashes,
            hash: util::hash_dir(dir),
            profile: TemplateProfile::Full,
            examples: crate::quality::examples::Examples::from_dir(dir),
        };
        let mut names: Vec<&String> = prompts.hashes.keys().collect();
        names.sort();
        for name in names {
            if let Err(e) = prompts.env.get_template(name) {
                problems.push(prompts.problem(&e));
            }
        }
        if problems.is_empty() {
            Ok(prompts)
        } else {
            Err(problems)
        }
    }

    fn problem(&self, e: &minijinja::Error) -> Problem {
        let file = e
            .name()
            .map(|n| self.dir.join(n))
            .unwrap_or_else(|| self.dir.clone());
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        // Quote the offending line: minijinja's message does not name the variable.
        if let Some(src) = e.line().and_then(|l| {
            std::fs::read_to_string(&file)
                .ok()?
                .lines()
                .nth(l - 1)
                .map(String::from)
        }) {
            msg.push_str(&format!(" in `{}`", src.trim()));
        }
        Problem::at(file, e.line(), msg)
    }

    /// The same templates rendered with `profile`.
    pub fn with_profile(mut self, profile: TemplateProfile) -> Self {
        self.profile = profile;
        self
    }

    pub fn profile(&self) -> TemplateProfile {
        self.profile
    }

    /// Which template a stage of an item uses: with the compact profile the compact tree
    /// first, then the full one; within a tree, document- and task-specific files win
    /// (`document/<document>.j2`, `document/<family>.j2`; `instruction/<task>.j2`,
    /// `instruction/_default.j2`; `answer/<task>.j2`, `answer/_default.j2`). When none
    /// exists the name is the full tree's expected one, which `check` reports missing.
    pub fn template_for(&self, stage: Stage, item: &PlanItem) -> String {
        let names: Vec<String> = match stage {
            Stage::Document => vec![
                format!("document/{}.j2", item.document),
                format!("document/{}.j2", item.family),
            ],
            Stage::Instruction => vec![
                format!("instruction/{}.j2", item.task),
                "instruction/_default.j2".into(),
            ],
            Stage::Answer => vec![
                format!("answer/{}.j2", item.task),
                "answer/_default.j2".into(),
            ],
            Stage::Repair => vec!["repair.j2".into()],
            Stage::Judge => vec!["judge.j2".into()],
            Stage::Inject => vec!["dpo/inject.j2".into()],
        };
        let compact = match self.profile {
            TemplateProfile::Compact => {
                names.iter().map(|n| format!("{COMPACT_DIR}/{n}")).collect()
            }
            TemplateProfile::Full => Vec::new(),
        };
        // The expected name: every stage has one; an instruction has no full default.
        let expected = match stage {
            Stage::Instruction => names[0].clone(),
            _ => names.last().cloned().expect("every stage names a template"),
        };
        compact
            .into_iter()
            .chain(names)
            .find(|n| self.hashes.contains_key(n))
            .unwrap_or(expected)
    }

    /// `name@hash` provenance tag for a template.
    pub fn tag(&self, name: &str) -> String {
        format!(
            "{name}@{}",
            self.hashes
                .get(name)
                .map(String::as_str)
                .unwrap_or("missing")
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn exists(&self, name: &str) -> bool {
        self.hashes.contains_key(name)
    }

    /// Render a template's `system` and `user` blocks into chat messages, with its worked
    /// example (`example_user`, `example_assistant`) as a prior turn pair where it has one.
    pub fn render(&self, name: &str, ctx: &Value) -> Result<Vec<Message>, Problem> {
        let tmpl = self.env.get_template(name).map_err(|e| self.problem(&e))?;
        // `eval_to_state` runs `extends` and keeps the state so each block renders alone.
        #[allow(deprecated)]
        let mut state = tmpl.eval_to_state(ctx).map_err(|e| self.problem(&e))?;
        let empty = |b: &str| {
            Problem::new(
                self.dir.join(name),
                format!("block `{b}` rendered to empty text"),
            )
        };
        // `None`: the template has no such block.
        let mut block = |b: &str| -> Result<Option<String>, Problem> {
            match state.render_block(b) {
                Ok(text) if text.trim().is_empty() => Err(empty(b)),
                Ok(text) => Ok(Some(text.trim().to_string())),
                Err(e) if e.kind() == minijinja::ErrorKind::UnknownBlock => Ok(None),
                Err(e) => Err(self.problem(&e)),
            }
        };
        let required = |b: &str, text: Option<String>| {
            text.ok_or_else(|| Problem::new(self.dir.join(name), format!("no block `{b}`")))
        };
        let system = required("system", block("system")?)?;
        let user = required("user", block("user")?)?;
        let mut messages = vec![Message::system(system)];
        match (block("example_user")?, block("example_assistant")?) {
            (Some(u), Some(a)) => {
                messages.push(Message::user(u));
                messages.push(Message::assistant(a));
            }
            (None, None) => {}
            _ => {
                return Err(Problem::new(
                    self.dir.join(name),
                    "a worked example needs both blocks, `example_user` and `example_assistant`",
                ))
            }
        }
        messages.push(Message::user(user));
        Ok(messages)
    }
}

/// The context every stage sees. Stage outputs (`document`, `instruction`, ...) are added
/// by the caller as they become available; strict mode rejects anything else.
pub fn base_context(tax: &Taxonomy, schemas: &Schemas, item: &PlanItem) -> Value {
    let task = tax.task(&item.task).expect("planned task exists");
    let doc = tax
        .document(&item.document)
        .expect("planned document exists");
    let family = tax
        .family(&doc.family)
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let diff = tax
        .difficulty(item.difficulty)
        .expect("planned difficulty exists");
    let schema = schemas
        .get(&item.task)
        .map(|s| s.pretty.clone())
        .unwrap_or_default();
    let s = &item.seed;
    json!({
        "task": { "id": task.id, "name": task.name, "description": task.description },
        "doc": {
            "id": doc.id, "name": doc.name, "family": doc.family, "family_name": family,
            "description": doc.description, "sections": doc.sections,
            "min_words": doc.length_words[0], "max_words": doc.length_words[1],
        },
        "difficulty": { "level": diff.level, "name": diff.name, "description": diff.description },
        "format": item.format,
        "schema": schema,
        "people": people(&item.id, &s.sex),
        "seed": {
            "specialty": s.specialty, "age_band": s.age_band, "sex": s.sex,
            "care_setting": s.care_setting, "writing_style": s.writing_style,
            "concept": {
                "code": s.concept_code, "description": s.concept_description,
                "chapter": s.concept_chapter, "block": s.concept_block,
            },
        },
    })
}

const FEMALE: &[&str] = &[
    "Ana", "Beatriz", "Carmen", "Deborah", "Elena", "Farah", "Gloria", "Hannah", "Irene", "Janet",
    "Keiko", "Lucia", "Margaret", "Nadia", "Olivia", "Paula", "Rosa", "Sandra", "Teresa",
    "Valerie", "Wendy", "Yasmin", "Zoe", "Amina", "Brenda", "Chloe", "Diane",
];
const MALE: &[&str] = &[
    "Aaron", "Bernard", "Carlos", "Daniel", "Edward", "Felix", "George", "Henry", "Ivan", "Jorge",
    "Kevin", "Louis", "Martin", "Nathan", "Oscar", "Peter", "Raymond", "Stefan", "Thomas",
    "Victor", "William", "Yusuf", "Andre", "Brian", "Colin", "Dennis", "Eric",
];
const SURNAMES: &[&str] = &[
    "Abbott",
    "Baker",
    "Castillo",
    "Dawson",
    "Evans",
    "Fischer",
    "Garcia",
    "Hoffman",
    "Ibrahim",
    "Jordan",
    "Kowalski",
    "Larsen",
    "Moreno",
    "Nguyen",
    "O'Brien",
    "Pereira",
    "Quinn",
    "Reyes",
    "Schmidt",
    "Thompson",
    "Usman",
    "Vasquez",
    "Wallace",
    "Yamamoto",
    "Zimmerman",
    "Bennett",
    "Chowdhury",
    "Delgado",
    "Foster",
    "Gupta",
    "Harper",
    "Khan",
    "Lindqvist",
    "Murphy",
    "Nakamura",
    "Ortega",
    "Petrov",
    "Russo",
    "Sullivan",
    "Tanaka",
    "Warren",
    "Young",
];

/// Invented people for an item's document, the same on every run of it (by its id): the
/// patient (by the seed's sex), two clinicians and a record number. Small teachers copy
/// the names of a prompt's worked example unless the request gives them their own; no
/// name here is an example's (`people_are_not_the_examples`).
pub fn people(item_id: &str, sex: &str) -> Value {
    let h = crate::quality::vocab::hash(item_id);
    let n = SURNAMES.len() as u64;
    // Three different surnames, so no clinician shares the patient's name.
    let a = h % n;
    let b = (a + 1 + (h >> 8) % (n - 1)) % n;
    let c = (0..n)
        .map(|k| (b + 1 + (h >> 16) + k) % n)
        .find(|x| *x != a && *x != b)
        .unwrap_or(a);
    let first = |list: &[&'static str], shift: u32| list[((h >> shift) as usize) % list.len()];
    let patient_first = first(if sex == "male" { MALE } else { FEMALE }, 24);
    json!({
        "patient": format!("{patient_first} {}", SURNAMES[a as usize]),
        "clinician": format!("Dr. {} {}", first(FEMALE, 32), SURNAMES[b as usize]),
        "colleague": format!("Dr. {} {}", first(MALE, 40), SURNAMES[c as usize]),
        "mrn": format!("{:07}", (h >> 44) % 9_000_000 + 1_000_000),
    })
}

/// Add stage outputs to a context.
pub fn with(mut ctx: Value, pairs: &[(&str, &str)]) -> Value {
    let obj = ctx.as_object_mut().expect("context is an object");
    for (k, v) in pairs {
        obj.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    ctx
}

/// Estimated tokens of `text` for a SmolLM2/GPT-2-style byte-level BPE, without loading a
/// tokenizer: each digit is its own token (SmolLM2 splits numbers into digits), each word
/// of letters one token per `CHARS_PER_WORD_TOKEN` characters (at least one), each run of
/// punctuation or symbols one token per two characters, each line break one, and each run
/// of two or more spaces one. Fitted to the embedded SmolLM2 tokenizer on the rendered
/// prompts of both profiles: within 30% on any one prompt and 10% over all of them
/// (`estimate_tokens_tracks_the_real_tokenizer`); rare long words (drug names) are where
/// it counts low, common long words where it counts high.
pub fn estimate_tokens(text: &str) -> u64 {
    #[derive(PartialEq)]
    enum Run {
        None,
        Letters,
        Symbols,
        Spaces,
    }
    let (mut tokens, mut run, mut len) = (0u64, Run::None, 0usize);
    let close = |run: &Run, len: usize| -> u64 {
        match run {
            Run::Letters => len.div_ceil(CHARS_PER_WORD_TOKEN).max(1) as u64,
            Run::Symbols => len.div_ceil(2) as u64,
            Run::Spaces => u64::from(len >= 2),
            Run::None => 0,
        }
    };
    for c in text.chars() {
        let kind = if c.is_alphabetic() {
            Run::Letters
        } else if c == ' ' {
            Run::Spaces
        } else if c.is_whitespace() || c.is_numeric() {
            Run::None
        } else {
            Run::Symbols
        };
        if kind != run || kind == Run::None {
            tokens += close(&run, len);
            len = 0;
        }
        if c.is_numeric() || c == '\n' {
            tokens += 1;
        }
        run = kind;
        len += 1;
    }
    tokens + close(&run, len)
}

/// Characters of a word per token in `estimate_tokens`.
const CHARS_PER_WORD_TOKEN: usize = 8;

/// Chat-template tokens around each message (`<|im_start|>role\n ... <|im_end|>\n`).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 5;

/// Estimated prompt tokens of a rendered request.
pub fn estimate_prompt_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| estimate_tokens(&m.content) + MESSAGE_OVERHEAD_TOKENS)
        .sum::<u64>()
        + 3
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
