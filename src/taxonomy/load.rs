//! Loading and checking the taxonomy folder. Every problem is collected, none stops the
//! others from being found.

use super::*;
use crate::error::Problem;
use crate::util;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksFile {
    task: Vec<Task>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentsFile {
    family: Vec<Family>,
    document: Vec<Document>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AxesFile {
    difficulty: Vec<Difficulty>,
    format: Vec<Format>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompatEntry {
    families: BTreeMap<String, f64>,
    #[serde(default)]
    documents: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompatFile {
    task: BTreeMap<String, CompatEntry>,
}

/// Load `dir` (the taxonomy folder), check it, and return it or every problem found.
pub fn load(dir: &Path) -> Result<Taxonomy, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut get = |name: &str| -> Option<std::path::PathBuf> {
        let p = dir.join(name);
        if p.is_file() {
            Some(p)
        } else {
            problems.push(Problem::new(&p, "missing taxonomy file"));
            None
        }
    };
    let (tasks_p, docs_p, axes_p, compat_p, seeds_p) = (
        get("tasks.toml"),
        get("documents.toml"),
        get("axes.toml"),
        get("compatibility.toml"),
        get("seeds.toml"),
    );
    fn parse<T: serde::de::DeserializeOwned>(
        p: &Option<std::path::PathBuf>,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let p = p.as_ref()?;
        util::load_toml(p).map_err(|e| problems.push(e)).ok()
    }
    let tasks: Option<TasksFile> = parse(&tasks_p, &mut problems);
    let docs: Option<DocumentsFile> = parse(&docs_p, &mut problems);
    let axes: Option<AxesFile> = parse(&axes_p, &mut problems);
    let compat: Option<CompatFile> = parse(&compat_p, &mut problems);
    let seeds: Option<Seeds> = parse(&seeds_p, &mut problems);
    let icd = IcdTable::load(&dir.join("icd10cm"))
        .map_err(|ps| problems.extend(ps))
        .ok();

    let (Some(tasks), Some(docs), Some(axes), Some(compat), Some(seeds), Some(icd)) =
        (tasks, docs, axes, compat, seeds, icd)
    else {
        return Err(problems);
    };
    let (tasks_p, docs_p, axes_p, compat_p, seeds_p) = (
        tasks_p.unwrap(),
        docs_p.unwrap(),
        axes_p.unwrap(),
        compat_p.unwrap(),
        seeds_p.unwrap(),
    );

    // Tasks.
    let tasks = tasks.task;
    if tasks.len() != EXPECTED_TASKS {
        problems.push(Problem::new(
            &tasks_p,
            format!(
                "expected exactly {EXPECTED_TASKS} task types, found {}",
                tasks.len()
            ),
        ));
    }
    dupes(
        tasks.iter().map(|t| &t.id),
        &tasks_p,
        "task id",
        &mut problems,
    );
    let format_ids: HashSet<&str> = axes.format.iter().map(|f| f.id.as_str()).collect();
    for t in &tasks {
        if t.weight <= 0.0 {
            problems.push(Problem::new(
                &tasks_p,
                format!("task {}: weight must be positive", t.id),
            ));
        }
        if t.formats.is_empty() {
            problems.push(Problem::new(
                &tasks_p,
                format!("task {}: no output formats", t.id),
            ));
        }
        for f in &t.formats {
            if !format_ids.contains(f.as_str()) {
                problems.push(Problem::new(
                    &tasks_p,
                    format!("task {}: unknown output format {f:?}", t.id),
                ));
            }
        }
    }

    // Families and documents.
    let (families, documents) = (docs.family, docs.document);
    dupes(
        families.iter().map(|f| &f.id),
        &docs_p,
        "family id",
        &mut problems,
    );
    dupes(
        documents.iter().map(|d| &d.id),
        &docs_p,
        "document id",
        &mut problems,
    );
    if documents.len() != EXPECTED_DOCUMENTS {
        problems.push(Problem::new(
            &docs_p,
            format!(
                "expected exactly {EXPECTED_DOCUMENTS} document types, found {}",
                documents.len()
            ),
        ));
    }
    let family_ids: HashSet<&str> = families.iter().map(|f| f.id.as_str()).collect();
    for d in &documents {
        if !family_ids.contains(d.family.as_str()) {
            problems.push(Problem::new(
                &docs_p,
                format!("document {}: unknown family {:?}", d.id, d.family),
            ));
        }
        let [lo, hi] = d.length_words;
        if lo == 0 || lo > hi {
            problems.push(Problem::new(
                &docs_p,
                format!("document {}: bad length_words [{lo}, {hi}]", d.id),
            ));
        }
        if d.sections.is_empty() {
            problems.push(Problem::new(
                &docs_p,
                format!("document {}: no sections", d.id),
            ));
        }
    }

    // Axes.
    if axes.difficulty.len() != EXPECTED_DIFFICULTIES {
        problems.push(Problem::new(
            &axes_p,
            format!(
                "expected exactly {EXPECTED_DIFFICULTIES} difficulty levels, found {}",
                axes.difficulty.len()
            ),
        ));
    }
    let mut levels: Vec<u8> = axes.difficulty.iter().map(|d| d.level).collect();
    levels.sort();
    if levels != (1..=axes.difficulty.len() as u8).collect::<Vec<_>>() {
        problems.push(Problem::new(
            &axes_p,
            format!(
                "difficulty levels must be 1..={} without gaps, found {levels:?}",
                axes.difficulty.len()
            ),
        ));
    }
    if axes.format.len() != EXPECTED_FORMATS {
        problems.push(Problem::new(
            &axes_p,
            format!(
                "expected exactly {EXPECTED_FORMATS} output formats, found {}",
                axes.format.len()
            ),
        ));
    }
    for f in &axes.format {
        if f.id != "plain_text" && f.id != "json" {
            problems.push(Problem::new(
                &axes_p,
                format!(
                    "unknown output format {:?} (expected plain_text or json)",
                    f.id
                ),
            ));
        }
    }
    for w in axes
        .difficulty
        .iter()
        .map(|d| d.weight)
        .chain(axes.format.iter().map(|f| f.weight))
    {
        if w <= 0.0 {
            problems.push(Problem::new(&axes_p, "weights must be positive"));
            break;
        }
    }

    // Compatibility matrix.
    let mut matrix = vec![vec![0.0; documents.len()]; tasks.len()];
    for (name, _) in compat.task.iter() {
        if !tasks.iter().any(|t| &t.id == name) {
            problems.push(Problem::new(
                &compat_p,
                format!("[task.{name}]: unknown task"),
            ));
        }
    }
    for (ti, t) in tasks.iter().enumerate() {
        let Some(entry) = compat.task.get(&t.id) else {
            problems.push(Problem::new(&compat_p, format!("no [task.{}] table", t.id)));
            continue;
        };
        for (fam, w) in &entry.families {
            if !family_ids.contains(fam.as_str()) {
                problems.push(Problem::new(
                    &compat_p,
                    format!("[task.{}]: unknown family {fam:?}", t.id),
                ));
            }
            if *w < 0.0 {
                problems.push(Problem::new(
                    &compat_p,
                    format!("[task.{}]: negative weight for {fam}", t.id),
                ));
            }
        }
        for (doc, w) in &entry.documents {
            if !documents.iter().any(|d| &d.id == doc) {
                problems.push(Problem::new(
                    &compat_p,
                    format!("[task.{}]: unknown document {doc:?}", t.id),
                ));
            }
            if *w < 0.0 {
                problems.push(Problem::new(
                    &compat_p,
                    format!("[task.{}]: negative weight for {doc}", t.id),
                ));
            }
        }
        for (di, d) in documents.iter().enumerate() {
            let w = entry
                .documents
                .get(&d.id)
                .or_else(|| entry.families.get(&d.family))
                .copied()
                .unwrap_or(0.0);
            matrix[ti][di] = w.max(0.0);
        }
        if matrix[ti].iter().all(|w| *w == 0.0) {
            problems.push(Problem::new(
                &compat_p,
                format!("task {} is compatible with no document", t.id),
            ));
        }
    }
    for (di, d) in documents.iter().enumerate() {
        if matrix.iter().all(|row| row[di] == 0.0) {
            problems.push(Problem::new(
                &compat_p,
                format!("document {} is compatible with no task", d.id),
            ));
        }
    }

    // Seeds.
    for (name, list) in [
        ("specialties", &seeds.specialties),
        ("age_bands", &seeds.age_bands),
        ("sexes", &seeds.sexes),
        ("care_settings", &seeds.care_settings),
        ("writing_styles", &seeds.writing_styles),
        ("concept_chapters", &seeds.concept_chapters),
    ] {
        if list.is_empty() {
            problems.push(Problem::new(&seeds_p, format!("`{name}` is empty")));
        }
    }
    if !icd.codes.iter().any(|c| {
        c.billable
            && seeds
                .concept_chapters
                .iter()
                .any(|ch| c.code.starts_with(ch.as_str()))
    }) {
        problems.push(Problem::new(
            dir.join("icd10cm"),
            "no billable code matches `concept_chapters` in seeds.toml",
        ));
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Taxonomy {
        tasks,
        families,
        documents,
        difficulties: {
            let mut d = axes.difficulty;
            d.sort_by_key(|d| d.level);
            d
        },
        formats: axes.format,
        seeds,
        compat: matrix,
        icd,
        hash: util::hash_dir(dir),
    })
}

fn dupes<'a>(
    ids: impl Iterator<Item = &'a String>,
    file: &Path,
    what: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            problems.push(Problem::new(file, format!("duplicate {what} {id:?}")));
        }
    }
}
