//! `mediflow init [DIR]`: the run.toml it writes loads and passes `mediflow check` as
//! written, every setting it shows commented out is a real one (all uncommented at once,
//! the file still loads and validates), and an existing run.toml is kept unless --force.

mod common;
use common::*;
use mediflow::config::{Overrides, RunConfig, TeacherKind};

/// `text` with every commented-out setting (`#key = value`) uncommented.
fn uncommented(text: &str) -> (String, usize) {
    let mut n = 0;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let setting = l.strip_prefix('#').filter(|rest| {
                rest.starts_with(|c: char| c.is_ascii_lowercase())
                    && rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            });
            match setting {
                Some(s) => {
                    n += 1;
                    s.to_string()
                }
                None => l.to_string(),
            }
        })
        .collect();
    (out.join("\n"), n)
}

#[test]
fn init_writes_a_config_that_checks_as_written_and_keeps_an_existing_one() {
    for (teacher, kind) in [
        ("openai", TeacherKind::Openai),
        ("embedded", TeacherKind::Embedded),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("my study");
        let d = dir.to_str().unwrap();
        let o = run(&["init", d, "--teacher", teacher]);
        assert!(o.status.success(), "{teacher}: {}", stderr(&o));
        let file = dir.join("run.toml");
        let f = file.to_str().unwrap();
        assert!(stdout(&o).contains(f), "{}", stdout(&o));

        // As written: `check` passes (run from the repository, where its folders are).
        let o = run(&["check", "--config", f, "--no-probe"]);
        assert!(o.status.success(), "{teacher}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("plan has 100 items"),
            "{teacher}: {}",
            stdout(&o)
        );
        let cfg = RunConfig::load(&file, &Overrides::default()).unwrap();
        assert_eq!(cfg.name, "my-study");
        assert_eq!(cfg.teacher.kind, kind);

        // Every commented-out setting is a real one, with a valid value.
        let text = std::fs::read_to_string(&file).unwrap();
        let (all, n) = uncommented(&text);
        assert!(n >= 15, "{teacher}: only {n} commented settings");
        let every = tmp.path().join("every.toml");
        std::fs::write(&every, &all).unwrap();
        RunConfig::load(&every, &Overrides::default())
            .unwrap_or_else(|e| panic!("{teacher}: uncommented settings: {e}\n{all}"));

        // An existing run.toml is kept...
        std::fs::write(&file, "# mine\n").unwrap();
        let o = run(&["init", d]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(f) && stderr(&o).contains("--force"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "# mine\n");
        // ...unless --force.
        let o = run(&[
            "init",
            d,
            "--teacher",
            teacher,
            "--force",
            "--name",
            "trial-2",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let cfg = RunConfig::load(&file, &Overrides::default()).unwrap();
        assert_eq!(cfg.name, "trial-2");
    }
}
