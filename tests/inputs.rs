//! Bad input is reported clearly (file, problem), with exit code 2, before any teacher
//! call: every config here points at a port where nothing listens, so reaching the teacher
//! would fail differently (exit 4).

mod common;
use common::*;
use std::path::Path;

const DEAD_URL: &str = "http://127.0.0.1:9/v1";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn expect_input_error(cfg: &Path, needles: &[&str]) {
    let c = cfg.to_str().unwrap();
    for (cmd, args) in [
        ("check", vec!["check", "--config", c]),
        ("run", vec!["run", "--config", c, "--quiet"]),
    ] {
        let o = run(&args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{cmd}: expected exit 2, stderr: {}",
            stderr(&o)
        );
        for n in needles {
            assert!(
                stderr(&o).contains(n),
                "{cmd}: {n:?} missing from: {}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn malformed_config_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("items = 4", "items = = 4");
    std::fs::write(&cfg, text).unwrap();
    expect_input_error(&cfg, &["run.toml:3:"]);
}

#[test]
fn unknown_and_invalid_config_values_are_all_reported_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, "colour = 1\n");
    expect_input_error(&cfg, &["unknown field `colour`"]);
    let cfg = config(tmp.path(), "ftp://x", 0, "shard_size = 0\n");
    expect_input_error(
        &cfg,
        &[
            "`items` must be at least 1",
            "not an http(s) URL",
            "`engine.shard_size` must be at least 1",
        ],
    );
    // The quality gate's tables are checked the same way, all at once.
    let gate = "\n[filters]\ndisable = [\"nope\"]\n\n[judge]\nenabled = true\nsamples = 0\n\
                min = { tone = 3 }\n\n[dedup]\nthreshold = 1.5\n\n[quota]\ntarget_accepted = 0\n";
    let cfg = config(tmp.path(), DEAD_URL, 4, gate);
    expect_input_error(
        &cfg,
        &[
            "nope",
            "`judge.samples` must be at least 1",
            "unknown dimension \"tone\"",
            "threshold",
            "`quota.target_accepted` must be at least 1",
        ],
    );
    // A judge verdict schema that is not there is an input error too (before any call).
    let bad = tmp.path().join("verdict.schema.json");
    std::fs::write(&bad, "{ not json").unwrap();
    let judge = format!(
        "\n[judge]\nenabled = true\nschema = {:?}\n",
        bad.display().to_string()
    );
    let cfg = config(tmp.path(), DEAD_URL, 4, &judge);
    expect_input_error(&cfg, &["verdict.schema.json", "invalid JSON"]);
}

#[test]
fn broken_taxonomy_template_and_schema_are_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["taxonomy", "templates", "schemas"] {
        copy_dir(&repo().join(d), &tmp.path().join(d));
    }
    // Taxonomy: drop the last document (97 instead of 98).
    let docs = tmp.path().join("taxonomy/documents.toml");
    let text = std::fs::read_to_string(&docs).unwrap();
    let cut = text.rfind("[[document]]").unwrap();
    std::fs::write(&docs, &text[..cut]).unwrap();
    // Template: an undefined variable.
    let tpl = tmp.path().join("templates/repair.j2");
    let text = std::fs::read_to_string(&tpl).unwrap().replacen(
        "{%- block user -%}",
        "{%- block user -%}{{ no_such_variable }}",
        1,
    );
    assert!(
        text.contains("no_such_variable"),
        "repair.j2 layout changed; update this test"
    );
    std::fs::write(&tpl, text).unwrap();
    // Schema: invalid JSON.
    std::fs::write(
        tmp.path().join("schemas/summarization.schema.json"),
        "{ \"type\": \"object\",\n  oops }",
    )
    .unwrap();

    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &repo().join("taxonomy").display().to_string(),
            &tmp.path().join("taxonomy").display().to_string(),
        )
        .replace(
            &repo().join("templates").display().to_string(),
            &tmp.path().join("templates").display().to_string(),
        )
        .replace(
            &repo().join("schemas").display().to_string(),
            &tmp.path().join("schemas").display().to_string(),
        );
    std::fs::write(&cfg, text).unwrap();
    expect_input_error(
        &cfg,
        &["documents.toml: expected exactly 98 document types, found 97"],
    );

    // Restore the taxonomy: now the template and the schema problems show, both at once.
    std::fs::write(
        &docs,
        std::fs::read_to_string(repo().join("taxonomy/documents.toml")).unwrap(),
    )
    .unwrap();
    expect_input_error(
        &cfg,
        &[
            "summarization.schema.json:2: invalid JSON",
            "repair.j2",
            "no_such_variable",
        ],
    );
}

#[test]
fn unreachable_teacher_fails_the_probe_with_its_own_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    let o = run(&["run", "--config", cfg.to_str().unwrap(), "--quiet"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("teacher unavailable"));
    assert!(
        !tmp.path().join("outputs/test/manifest.json").exists(),
        "nothing written before the probe passes"
    );
}

#[test]
fn dpo_refuses_a_broken_inject_template_before_any_call() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = tmp.path().join("templates");
    copy_dir(&repo().join("templates"), &templates);
    std::fs::write(
        templates.join("dpo/inject.j2"),
        "{% block system %}{{ no_such_variable }}{% endblock %}{% block user %}x{% endblock %}",
    )
    .unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    edit(
        &cfg,
        &format!("templates_dir = \"{}\"", repo().join("templates").display()),
        &format!("templates_dir = \"{}\"", templates.display()),
    );
    let run_dir = tmp.path().join("run");
    std::fs::create_dir_all(&run_dir).unwrap();
    let o = run(&[
        "dpo",
        "--run",
        run_dir.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--strategy",
        "error_injection",
    ]);
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("inject.j2"), "{}", stderr(&o));
}

/// `mediflow ARGS` with `vars` set (or removed, for `None`) in its environment.
fn run_env(args: &[&str], vars: &[(&str, Option<&str>)]) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.args(args).env("NO_COLOR", "1");
    for (k, v) in vars {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.output().unwrap()
}

#[test]
fn an_api_key_variable_that_is_unset_or_empty_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    const VAR: &str = "MEDIFLOW_TEST_API_KEY_9F3";
    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    edit(
        &cfg,
        "model = \"mock\"",
        &format!("model = \"mock\"\napi_key_env = \"{VAR}\""),
    );
    let c = cfg.to_str().unwrap();
    for (value, says) in [(None, "is not set"), (Some(""), "is empty")] {
        for args in [
            vec!["check", "--config", c, "--no-probe"],
            vec!["run", "--config", c, "--quiet"],
        ] {
            let o = run_env(&args, &[(VAR, value)]);
            assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
            let err = stderr(&o);
            assert!(
                err.contains("run.toml")
                    && err.contains(&format!("`teacher.api_key_env` names ${VAR}, which {says}")),
                "{args:?}: {err}"
            );
        }
    }
    // Set, it passes the checks (and the run gets as far as the probe of a dead server).
    let o = run_env(&["check", "--config", c, "--no-probe"], &[(VAR, Some("k"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_env(&["run", "--config", c, "--quiet"], &[(VAR, Some("k"))]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    // A judge on its own server is held to its key the same way.
    let judge = format!(
        "\n[judge]\nenabled = true\n\n[judge.teacher]\nkind = \"openai\"\nbase_urls = \
         [\"{DEAD_URL}\"]\nmodel = \"judge\"\napi_key_env = \"{VAR}_JUDGE\"\n"
    );
    let cfg = config(tmp.path(), DEAD_URL, 4, &judge);
    let o = run_env(
        &["check", "--config", cfg.to_str().unwrap(), "--no-probe"],
        &[(&format!("{VAR}_JUDGE"), None)],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "judge.teacher: `teacher.api_key_env` names ${VAR}_JUDGE"
        )),
        "{}",
        stderr(&o)
    );
}

fn with_caps(answer: u64) -> String {
    format!("\n[teacher.max_tokens]\ndocument = 100\ninstruction = 50\nanswer = {answer}\n")
}

#[test]
fn a_token_cap_beyond_any_context_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, &with_caps(4_000_000_000));
    expect_input_error(
        &cfg,
        &[
            "run.toml",
            "`teacher.max_tokens.answer` = 4000000000 is beyond any model's context: at most 1048576",
        ],
    );
}

#[test]
fn a_token_cap_beyond_the_servers_max_model_len_is_refused_before_any_request() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mock(&[]);
    let cfg = config(tmp.path(), &m.url, 4, &with_caps(40_000));
    expect_input_error(
        &cfg,
        &[
            "run.toml",
            "`teacher.max_tokens.answer` = 40000 does not fit the teacher's context of 32768 \
             tokens (the server's max_model_len in /models)",
        ],
    );
    assert_eq!(mock_stats(&m.url)["served"], 0, "no chat request was made");
    assert!(!tmp.path().join("outputs/test/manifest.json").exists());
    // Within it, the same config runs.
    let cfg = config(tmp.path(), &m.url, 2, &with_caps(30_000));
    let o = run(&["run", "--config", cfg.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_token_cap_beyond_the_gguf_context_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    let spec = mediflow::teacher::embedded::tiny::TinySpec {
        context: 256,
        ..Default::default()
    };
    mediflow::teacher::embedded::tiny::write(&gguf, &spec).unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, &with_caps(1000));
    edit(&cfg, "kind = \"openai\"", "kind = \"embedded\"");
    edit(
        &cfg,
        "[engine]",
        &format!(
            "[teacher.embedded]\npath = \"{}\"\ndevice = \"cpu\"\n\n[engine]",
            gguf.display()
        ),
    );
    expect_input_error(
        &cfg,
        &[
            "run.toml",
            &format!(
                "`teacher.max_tokens.answer` = 1000 does not fit the teacher's context of 256 \
                 tokens ({}, from its GGUF metadata)",
                gguf.display()
            ),
        ],
    );
    // The document cap (100) and instruction cap (50) fit: only the answer is named.
    let o = run(&["check", "--config", cfg.to_str().unwrap(), "--no-probe"]);
    assert!(
        !stderr(&o).contains("max_tokens.document"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_template_that_is_not_utf8_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let templates = tmp.path().join("templates");
    copy_dir(&repo().join("templates"), &templates);
    let bad = templates.join("document/research.j2");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.extend_from_slice(b"\nline two \xff\xfe\n");
    let line = 1 + bytes[..bytes.len() - 3]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    std::fs::write(&bad, bytes).unwrap();
    let cfg = config(tmp.path(), DEAD_URL, 4, "");
    edit(
        &cfg,
        &format!("templates_dir = \"{}\"", repo().join("templates").display()),
        &format!("templates_dir = \"{}\"", templates.display()),
    );
    expect_input_error(
        &cfg,
        &[&format!("{}:{line}: not UTF-8 text", bad.display())],
    );
}
