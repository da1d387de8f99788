//! `mediflow bench dedup`: generates N synthetic clinical texts (seeded) with planted near
//! and exact duplicates, runs the streaming deduplicator over them in id order (one thread,
//! as in the engine) and reports time, memory, duplicates found and recall of the planted
//! ones. It can write the records for scripts/dedup_reference.py (datasketch) and read
//! that script's results to compare (scripts/bench-dedup.sh does both).

use super::{outln, peak_rss_mb, Report};
use crate::error::Error;
use crate::quality::dedup::{for_each_shingle, Dedup, DedupConfig};
use crate::text::normalize;
use anyhow::Context;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What to generate and compare with.
#[derive(Debug, Clone)]
pub struct DedupOptions {
    /// Records to generate.
    pub records: usize,
    pub seed: u64,
    /// Fraction of records that are an earlier record with 1-3 words changed.
    pub near_fraction: f64,
    /// Fraction of records that are an earlier record in upper case (same normalised text).
    pub exact_fraction: f64,
    /// Write the records as JSONL (`{"id": .., "text": ..}`) for the reference.
    pub export: Option<PathBuf>,
    /// Results of scripts/dedup_reference.py on the exported records, to compare with.
    pub reference_results: Option<PathBuf>,
}

const SUBJECTS: &[&str] = &[
    "The patient",
    "A 54-year-old man",
    "The elderly woman",
    "The child",
    "The nurse",
    "The attending physician",
    "The resident",
    "The surgeon",
    "The cardiologist",
    "His wife",
    "The pharmacist",
    "The physical therapist",
    "A 71-year-old woman",
    "The teenager",
    "The primary care provider",
    "The consulting nephrologist",
];
const VERBS: &[&str] = &[
    "reported",
    "denied",
    "presented with",
    "was treated for",
    "developed",
    "complained of",
    "was evaluated for",
    "was discharged after",
    "was started on therapy for",
    "noted worsening",
    "described intermittent",
    "documented new",
    "was admitted with",
    "was counselled about",
    "reviewed the history of",
];
const FINDINGS: &[&str] = &[
    "chest pain",
    "shortness of breath",
    "productive cough",
    "fever and chills",
    "abdominal pain",
    "nausea and vomiting",
    "lower extremity edema",
    "headache",
    "dizziness",
    "palpitations",
    "fatigue",
    "hyperglycemia",
    "acute kidney injury",
    "urinary tract infection",
    "community-acquired pneumonia",
    "atrial fibrillation",
    "poorly controlled hypertension",
    "cellulitis of the left leg",
    "a pruritic rash",
    "low back pain",
    "syncope",
    "melena",
    "confusion",
    "dysuria",
    "wheezing",
];
const MODIFIERS: &[&str] = &[
    "for three days",
    "since yesterday",
    "after a fall at home",
    "despite oral antibiotics",
    "without relief from ibuprofen",
    "on exertion",
    "at rest",
    "overnight",
    "in the emergency department",
    "during the night shift",
    "after the procedure",
    "and blood cultures were drawn",
    "and a chest radiograph was ordered",
    "and metformin was held",
    "with a normal troponin",
    "and was given intravenous fluids",
    "according to the family",
    "with no prior episodes",
    "and the plan was discussed",
];
const SWAPS: &[&str] = &[
    "severe",
    "mild",
    "left",
    "right",
    "chronic",
    "acute",
    "recurrent",
    "bilateral",
    "sudden",
    "progressive",
    "stable",
    "improving",
];

fn sentence(rng: &mut ChaCha8Rng) -> String {
    if rng.random_bool(0.25) {
        return format!(
            "Vitals: BP {}/{}, HR {}, SpO2 {}%, temperature {}.{} C.",
            rng.random_range(90..180),
            rng.random_range(50..110),
            rng.random_range(48..130),
            rng.random_range(85..100),
            rng.random_range(36..40),
            rng.random_range(0..10)
        );
    }
    let pick = |rng: &mut ChaCha8Rng, l: &[&'static str]| *l.choose(rng).expect("non-empty");
    format!(
        "{} {} {} {}.",
        pick(rng, SUBJECTS),
        pick(rng, VERBS),
        pick(rng, FINDINGS),
        pick(rng, MODIFIERS)
    )
}

/// A planted duplicate: the index of the record it copies and whether it is exact.
struct Planted {
    of: usize,
    exact: bool,
}

/// `a.records` records `(id, text)` in id order, and the planted duplicates by index.
fn generate(a: &DedupOptions) -> (Vec<(String, String)>, HashMap<usize, Planted>) {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut items: Vec<(String, String)> = Vec::with_capacity(a.records);
    let mut originals: Vec<usize> = Vec::new();
    let mut planted = HashMap::new();
    for i in 0..a.records {
        let roll: f64 = rng.random();
        let text = if originals.is_empty() || roll >= a.near_fraction + a.exact_fraction {
            originals.push(i);
            let target = rng.random_range(60..=120);
            let mut t = String::new();
            while t.split(' ').count() < target {
                if !t.is_empty() {
                    t.push(' ');
                }
                t.push_str(&sentence(&mut rng));
            }
            t
        } else {
            let of = *originals.choose(&mut rng).expect("non-empty");
            let exact = roll < a.exact_fraction;
            planted.insert(i, Planted { of, exact });
            let src = &items[of].1;
            if exact {
                src.to_uppercase()
            } else {
                let mut words: Vec<&str> = src.split(' ').collect();
                for _ in 0..rng.random_range(1..=3) {
                    let k = rng.random_range(0..words.len());
                    words[k] = SWAPS.choose(&mut rng).expect("non-empty");
                }
                words.join(" ")
            }
        };
        items.push((format!("r{i:09}"), text));
    }
    (items, planted)
}

/// Jaccard similarity of the shingle sets of two texts.
fn jaccard(a: &str, b: &str, n: usize) -> f64 {
    let set = |t: &str| {
        let mut s = HashSet::new();
        for_each_shingle(&normalize(t), n, |h| {
            s.insert(h);
        });
        s
    };
    let (x, y) = (set(a), set(b));
    x.intersection(&y).count() as f64 / x.union(&y).count() as f64
}

/// Fraction of the planted duplicates that `found` holds, over those `which` selects.
fn recall(
    planted: &HashMap<usize, Planted>,
    items: &[(String, String)],
    found: &HashSet<&str>,
    which: impl Fn(usize, &Planted) -> bool,
) -> f64 {
    let sel: Vec<usize> = planted
        .iter()
        .filter(|(i, p)| which(**i, p))
        .map(|(i, _)| *i)
        .collect();
    let hit = sel
        .iter()
        .filter(|i| found.contains(items[**i].0.as_str()))
        .count();
    hit as f64 / sel.len().max(1) as f64
}

/// Generate, deduplicate and compare. The text of the report ends with its JSON on one
/// line (the command prints both).
pub fn run(a: DedupOptions) -> Result<Report, Error> {
    let cfg = DedupConfig::default();
    let (bands, rows) = cfg.lsh_params();
    let t0 = Instant::now();
    let (items, planted) = generate(&a);
    eprintln!(
        "generated {} records ({} planted duplicates) in {:.1}s",
        items.len(),
        planted.len(),
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.export {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(f);
        for (id, text) in &items {
            serde_json::to_writer(&mut w, &json!({"id": id, "text": text}))
                .map_err(anyhow::Error::from)?;
            w.write_all(b"\n")
                .map_err(|e| Error::io("writing the export", e))?;
        }
        w.flush().map_err(|e| Error::io("writing the export", e))?;
    }

    let rss_before = peak_rss_mb();
    let t0 = Instant::now();
    let mut d = Dedup::new(&cfg);
    let mut exact = 0;
    let mut ours: HashSet<&str> = HashSet::new();
    for (id, text) in &items {
        if let Err(dup) = d.check_insert(id, text) {
            exact += usize::from(dup.reason == "exact_duplicate");
            ours.insert(id);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let peak = peak_rss_mb();
    let bytes_per_kept = d.index_bytes() as f64 / d.kept().max(1) as f64;

    // Planted near duplicates whose true Jaccard reaches the threshold.
    let above: HashSet<usize> = planted
        .iter()
        .filter(|(i, p)| {
            !p.exact && jaccard(&items[**i].1, &items[p.of].1, cfg.shingle_words) >= cfg.threshold
        })
        .map(|(i, _)| *i)
        .collect();
    let recalls = |found: &HashSet<&str>| {
        json!({
            "near": recall(&planted, &items, found, |_, p| !p.exact),
            "near_jaccard_at_least_threshold": recall(&planted, &items, found, |i, _| above.contains(&i)),
            "exact": recall(&planted, &items, found, |_, p| p.exact),
        })
    };
    let n = items.len();
    let mut report = json!({
        "records": n,
        "planted_near": planted.values().filter(|p| !p.exact).count(),
        "planted_near_jaccard_at_least_threshold": above.len(),
        "planted_exact": planted.values().filter(|p| p.exact).count(),
        "num_perm": cfg.num_perm, "bands": bands, "rows": rows, "threshold": cfg.threshold,
        "shingle_words": cfg.shingle_words,
        "mediflow": {
            "seconds": secs,
            "records_per_s": n as f64 / secs,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak,
            "kept": d.kept(),
            "index_bytes_per_kept_record": bytes_per_kept,
            "exact_duplicates": exact,
            "near_duplicates": ours.len() - exact,
            "recall": recalls(&ours),
        },
    });
    let mut rows_out = vec![
        ("seconds (signatures + LSH)", format!("{secs:.1}"), None),
        ("records/s", format!("{:.0}", n as f64 / secs), None),
        ("RSS before dedup, MB", format!("{rss_before:.0}"), None),
        ("peak RSS, MB", format!("{peak:.0}"), None),
        ("exact duplicates", exact.to_string(), None),
        ("near duplicates", (ours.len() - exact).to_string(), None),
    ];
    if let Some(path) = &a.reference_results {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let r: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if r["records"].as_u64() != Some(n as u64) {
            return Err(Error::Other(anyhow::anyhow!(
                "the reference ran on {} records, this run has {n}: compare the same --records and --seed",
                r["records"]
            )));
        }
        let theirs: HashSet<&str> = r["duplicate_ids"]
            .as_array()
            .context("reference results: no duplicate_ids")?
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        let both = ours.intersection(&theirs).count();
        let union = ours.union(&theirs).count();
        let rs = r["seconds"].as_f64().unwrap_or(f64::NAN);
        let cell = |k: &str| r[k].to_string();
        for (row, v) in rows_out.iter_mut().zip([
            format!("{rs:.1}"),
            format!("{:.0}", n as f64 / rs),
            cell("rss_before_mb"),
            cell("peak_rss_mb"),
            cell("exact_duplicates"),
            cell("near_duplicates"),
        ]) {
            row.2 = Some(v);
        }
        report["reference"] = json!({
            "tool": r["tool"], "records": r["records"], "seconds": rs,
            "rss_before_mb": r["rss_before_mb"], "peak_rss_mb": r["peak_rss_mb"],
            "exact_duplicates": r["exact_duplicates"], "near_duplicates": r["near_duplicates"],
            "recall": recalls(&theirs),
        });
        report["comparison"] = json!({
            "time_ratio_reference_over_ours": rs / secs,
            "duplicate_ids_jaccard": both as f64 / union.max(1) as f64,
            "only_ours": ours.len() - both,
            "only_reference": theirs.len() - both,
        });
    }

    let mut out = String::new();
    let reference = report
        .get("reference")
        .map(|r| r["tool"].as_str().unwrap_or("reference").to_string());
    outln!(
        out,
        "dedup bench: {n} records, num_perm {}, {bands} bands x {rows} rows, threshold {}, {}-word shingles",
        cfg.num_perm, cfg.threshold, cfg.shingle_words
    );
    outln!(
        out,
        "{:<32} {:>14} {:>14}",
        "",
        "mediflow",
        reference.as_deref().unwrap_or("")
    );
    for (name, ours, theirs) in &rows_out {
        outln!(
            out,
            "{name:<32} {ours:>14} {:>14}",
            theirs.as_deref().unwrap_or("")
        );
    }
    for (name, key) in [
        ("recall planted near", "near"),
        (
            "recall planted near, J >= thr",
            "near_jaccard_at_least_threshold",
        ),
        ("recall planted exact", "exact"),
    ] {
        let f = |side: &str| {
            report[side]["recall"][key]
                .as_f64()
                .map_or(String::new(), |x| format!("{x:.4}"))
        };
        outln!(
            out,
            "{name:<32} {:>14} {:>14}",
            f("mediflow"),
            f("reference")
        );
    }
    outln!(
        out,
        "{:<32} {:>14.0}",
        "index bytes per kept record",
        bytes_per_kept
    );
    if let Some(c) = report.get("comparison") {
        outln!(
        out,
            "time ratio reference/ours {:.1}x; duplicate-id sets: Jaccard {:.4}, only ours {}, only reference {}",
            c["time_ratio_reference_over_ours"].as_f64().unwrap_or(f64::NAN),
            c["duplicate_ids_jaccard"].as_f64().unwrap_or(f64::NAN),
            c["only_ours"],
            c["only_reference"]
        );
    }
    outln!(out, "{report}");
    Ok(Report {
        json: report,
        text: out,
    })
}
