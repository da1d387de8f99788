//! The modules import downwards only: no circle of `crate::` imports between the top-level
//! modules of src/, nor between the files of one module folder (docs/architecture.md has
//! the layers). Test code (`#[cfg(test)]` modules, `tests.rs`, `*_tests.rs`) may reach
//! anywhere and is not read.

use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<PathBuf>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's code without its test module(s).
fn code(p: &Path) -> Option<String> {
    let name = p.file_stem().unwrap().to_str().unwrap();
    if name == "tests" || name.ends_with("_tests") {
        return None;
    }
    let s = std::fs::read_to_string(p).unwrap();
    Some(match s.find("\n#[cfg(test)]") {
        Some(i) => s[..i].to_string(),
        None => s,
    })
}

/// The first path segments `prefix` leads to in `src`: `crate::a::x`, and each name at
/// the first level of `use crate::{a, b::{c}}`.
fn targets(src: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let path = Regex::new(&format!(r"\b{prefix}::(\w+)")).unwrap();
    out.extend(path.captures_iter(src).map(|c| c[1].to_string()));
    let group = Regex::new(&format!(r"\b{prefix}::\{{")).unwrap();
    for m in group.find_iter(src) {
        let (mut depth, mut at_start) = (1, true);
        let mut word = String::new();
        for ch in src[m.end()..].chars() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 1 => at_start = true,
                c if (c.is_alphanumeric() || c == '_') && depth == 1 && at_start => word.push(c),
                _ => {
                    if !word.is_empty() {
                        out.insert(std::mem::take(&mut word));
                        at_start = false;
                    }
                }
            }
            if depth == 0 {
                break;
            }
        }
        if !word.is_empty() {
            out.insert(word);
        }
    }
    out
}

/// A circle in `g`, as the modules along it, if there is one.
fn circle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_string(), 1);
        stack.push(v.to_string());
        for w in g
            .get(v)
            .map(|e| e.keys().cloned().collect())
            .unwrap_or(Vec::new())
        {
            match state.get(&w).copied().unwrap_or(0) {
                1 => {
                    let i = stack.iter().position(|x| *x == w).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(w);
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(&w, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(v.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(v, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn explain(g: &Graph, c: &[String]) -> String {
    c.windows(2)
        .map(|w| {
            let files: Vec<String> = g[&w[0]][&w[1]]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!("  {} -> {} ({})", w[0], w[1], files.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module a path under `dir` belongs to (its first component, without `.rs`).
fn module_of(dir: &Path, p: &Path) -> String {
    let first = p.strip_prefix(dir).unwrap().components().next().unwrap();
    let s = first.as_os_str().to_str().unwrap();
    s.strip_suffix(".rs").unwrap_or(s).to_string()
}

#[test]
fn top_level_modules_import_downwards_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let tops: BTreeSet<String> = files
        .iter()
        .map(|p| module_of(&src, p))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut g = Graph::new();
    for p in &files {
        let m = module_of(&src, p);
        let Some(code) = code(p) else { continue };
        for t in targets(&code, "crate") {
            if t != m && tops.contains(&t) {
                g.entry(m.clone())
                    .or_default()
                    .entry(t)
                    .or_default()
                    .insert(p.strip_prefix(&src).unwrap().to_path_buf());
            }
        }
    }
    // The check sees real imports (it would fail on this crate before the modules were
    // untangled): config -> teacher, engine -> plan.
    assert!(g["config"].contains_key("teacher") && g["engine"].contains_key("plan"));
    if let Some(c) = circle(&g) {
        panic!(
            "a circle of imports between top-level modules: {}\n{}",
            c.join(" -> "),
            explain(&g, &c)
        );
    }
}

#[test]
fn files_of_a_module_folder_import_downwards_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = 0;
    for e in std::fs::read_dir(&src).unwrap() {
        let dir = e.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let top = dir.file_name().unwrap().to_str().unwrap().to_string();
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let children: BTreeSet<String> = files
            .iter()
            .map(|p| module_of(&dir, p))
            .filter(|m| m != "mod")
            .collect();
        let mut g = Graph::new();
        for p in &files {
            let m = module_of(&dir, p);
            let Some(code) = code(p) else { continue };
            // A direct child of the folder names its siblings `super::x`; any file names
            // them `crate::top::x`.
            let direct = p.parent() == Some(dir.as_path());
            let mut t = targets(&code, &format!("crate::{top}"));
            if direct && m != "mod" {
                t.extend(targets(&code, "super"));
            }
            for t in t {
                if m != "mod" && t != m && children.contains(&t) {
                    g.entry(m.clone())
                        .or_default()
                        .entry(t)
                        .or_default()
                        .insert(p.strip_prefix(&src).unwrap().to_path_buf());
                }
            }
        }
        found += g.len();
        if let Some(c) = circle(&g) {
            panic!(
                "a circle of imports inside src/{top}/: {}\n{}",
                c.join(" -> "),
                explain(&g, &c)
            );
        }
    }
    assert!(
        found > 0,
        "no imports between the files of a module folder seen"
    );
}

#[test]
fn the_circle_finder_finds_circles() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(PathBuf::from(format!("{a}.rs")));
    }
    assert_eq!(circle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().remove("a");
    assert_eq!(circle(&g), None);
    let uses = targets(
        "use crate::{config::X, teacher::{a, b}, util};\nlet x = crate::plan::Cell;",
        "crate",
    );
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        ["config", "plan", "teacher", "util"]
    );
}
