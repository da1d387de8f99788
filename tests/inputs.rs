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
