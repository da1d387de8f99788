//! The ICD-10-CM code table shipped in `taxonomy/icd10cm/` (derived from the CMS release;
//! see `taxonomy/icd10cm/ORIGIN.md`): code, description, billable flag, chapter and block.

use crate::error::Problem;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct IcdCode {
    pub code: String,
    pub description: String,
    pub billable: bool,
    pub chapter: String,
    pub block: String,
}

#[derive(Debug, Clone, Default)]
pub struct IcdTable {
    pub codes: Vec<IcdCode>,
    index: HashMap<String, usize>,
}

struct Range {
    first: String,
    last: String,
    label: String,
}

impl IcdTable {
    pub fn len(&self) -> usize {
        self.codes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
    pub fn billable_count(&self) -> usize {
        self.codes.iter().filter(|c| c.billable).count()
    }
    /// Look a code up (with or without its dot, any case).
    pub fn get(&self, code: &str) -> Option<&IcdCode> {
        let key = code.trim().to_ascii_uppercase().replace('.', "");
        self.index.get(&key).map(|&i| &self.codes[i])
    }

    /// Load every `codes*.tsv` and `blocks.tsv` under `dir`.
    pub fn load(dir: &Path) -> Result<IcdTable, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut chapters = Vec::new();
        let mut blocks = Vec::new();
        let blocks_path = dir.join("blocks.tsv");
        match std::fs::read_to_string(&blocks_path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate().skip(1) {
                    let f: Vec<&str> = line.split('\t').collect();
                    if f.len() != 5 {
                        problems.push(Problem::at(
                            &blocks_path,
                            Some(i + 1),
                            "expected 5 tab-separated fields",
                        ));
                        continue;
                    }
                    let r = Range {
                        first: f[1].into(),
                        last: f[2].into(),
                        label: String::new(),
                    };
                    match f[0] {
                        "chapter" => chapters.push(Range {
                            label: f[4].to_string(),
                            ..r
                        }),
                        "block" => blocks.push(Range {
                            label: format!("{} ({}-{})", f[4], f[1], f[2]),
                            ..r
                        }),
                        k => problems.push(Problem::at(
                            &blocks_path,
                            Some(i + 1),
                            format!("unknown kind {k:?}"),
                        )),
                    }
                }
            }
            Err(e) => problems.push(Problem::new(&blocks_path, format!("cannot read: {e}"))),
        }
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    n.starts_with("codes") && n.ends_with(".tsv")
                })
                .collect(),
            Err(e) => {
                problems.push(Problem::new(
                    dir,
                    format!("cannot read ICD-10-CM folder: {e}"),
                ));
                return Err(problems);
            }
        };
        files.sort();
        if files.is_empty() {
            problems.push(Problem::new(dir, "no codes*.tsv file"));
        }
        let mut table = IcdTable::default();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(Problem::new(&path, format!("cannot read: {e}")));
                    continue;
                }
            };
            for (i, line) in text.lines().enumerate().skip(1) {
                let f: Vec<&str> = line.split('\t').collect();
                if f.len() != 3 || f[0].is_empty() {
                    problems.push(Problem::at(
                        &path,
                        Some(i + 1),
                        "expected `code<TAB>description<TAB>billable`",
                    ));
                    continue;
                }
                let key = f[0].replace('.', "");
                let cat = &key[..key.len().min(3)];
                let find = |rs: &[Range]| {
                    rs.iter()
                        .find(|r| cat >= r.first.as_str() && cat <= r.last.as_str())
                        .map(|r| r.label.clone())
                        .unwrap_or_default()
                };
                table.index.insert(key.clone(), table.codes.len());
                table.codes.push(IcdCode {
                    code: f[0].to_string(),
                    description: f[1].to_string(),
                    billable: f[2] == "1",
                    chapter: find(&chapters),
                    block: find(&blocks),
                });
            }
        }
        if problems.is_empty() {
            Ok(table)
        } else {
            Err(problems)
        }
    }
}
