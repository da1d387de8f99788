//! The report's chart sections, each rendered from the collected aggregates: overview,
//! coverage, yield funnel, judge scores and calibration, usage, duplicates, preference
//! pairs and quota fill.

use super::collect::{Bins, Collected, Kind, Log2};
use super::html::{esc, note, table};
use super::svg::{bars, heatmap, histogram, Bar, Cell};
use crate::quality::judge::DIMENSIONS;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const BLUE: &str = "#4a7ab8";
const RED: &str = "#c8553d";
const GREEN: &str = "#4f9a5a";
/// The most rows a table or bar chart shows (the note says how many there were).
const MAX_ROWS: usize = 40;

fn pct(a: u64, b: u64) -> String {
    match b {
        0 => "–".into(),
        _ => format!("{:.1}%", 100.0 * a as f64 / b as f64),
    }
}

fn figure(caption: &str, svg: String) -> String {
    format!(
        "<figure><figcaption>{}</figcaption>{svg}</figure>",
        esc(caption)
    )
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

pub fn overview(c: &Collected) -> String {
    let s = &c.stats;
    let attempted = s.accepted + s.rejected;
    let mut rows = vec![vec!["".to_string(), "count".to_string()]];
    let mut row = |k: &str, v: String| rows.push(vec![esc(k), v]);
    match c.stats_file.as_ref().map(|f| u(&f["planned"])) {
        Some(p) if c.kind == Kind::Run => row("planned items", p.to_string()),
        _ => {}
    }
    row(
        match c.kind {
            Kind::Run => "attempted",
            Kind::Audit => "rows audited",
        },
        attempted.to_string(),
    );
    row(
        "accepted",
        format!("{} ({})", s.accepted, pct(s.accepted, attempted)),
    );
    row("rejected", s.rejected.to_string());
    if c.kind == Kind::Run {
        row(
            "rejected: transient (server failed)",
            s.rejected_transient.to_string(),
        );
        row("rejected: content", s.rejected_content.to_string());
        let t = &s.teacher;
        row(
            "teacher calls (retries and repairs included)",
            t.calls.to_string(),
        );
        row(
            "prompt / completion tokens",
            format!("{} / {}", t.prompt_tokens, t.completion_tokens),
        );
    }
    let mut out = String::new();
    if let Some(m) = &c.manifest {
        out.push_str(&note(&format!(
            "mediflow {}, teacher {} ({}), status {}, created {}",
            m["mediflow_version"].as_str().unwrap_or("?"),
            m["config"]["teacher"]["model"].as_str().unwrap_or("?"),
            m["teacher_backend"].as_str().unwrap_or("?"),
            m["status"].as_str().unwrap_or("?"),
            m["created_at"].as_str().unwrap_or("?"),
        )));
    }
    if c.kind == Kind::Run && c.stats_file.is_none() {
        out.push_str(&note("no stats.json (the run did not finish): planned counts and quotas are unknown; every other figure is counted from the records"));
    }
    out.push_str(&table(&rows));
    out
}

/// Planned (quota target, or attempted items without quotas) and accepted per task x
/// document family, from the cells of `stats.json` and the records.
pub fn coverage(c: &Collected) -> String {
    if c.kind == Kind::Audit {
        let by_task = c.summary.as_ref().map(|s| &s["by_task"]);
        let Some(Value::Object(m)) = by_task else {
            return note("no summary.json");
        };
        let rows: Vec<String> = m.keys().cloned().collect();
        let svg = heatmap(&rows, &["rows".to_string()], |i, _| {
            let t = &m[&rows[i]];
            let (a, n) = (u(&t["accepted"]), u(&t["rows"]));
            Some(Cell {
                shade: (n > 0).then(|| a as f64 / n as f64),
                text: format!("{a}/{n}"),
                title: format!("{}: {a} of {n} rows accepted", rows[i]),
            })
        });
        return format!(
            "{}{svg}",
            note("An audit has no plan: accepted of audited rows per task.")
        );
    }
    let planned_cells = c.stats_file.as_ref().map(|s| &s["cells"]);
    let mut grid: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (key, cell) in &c.stats.cells {
        let mut parts = key.splitn(3, '/');
        let (task, doc) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let family = c
            .families
            .get(doc)
            .cloned()
            .unwrap_or_else(|| doc.to_string());
        let planned = planned_cells
            .map(|p| &p[key])
            .and_then(|p| p["target_accepted"].as_u64().or(p["attempted"].as_u64()))
            .unwrap_or(cell.attempted);
        let g = grid.entry((task.to_string(), family)).or_default();
        g.0 += planned;
        g.1 += cell.accepted;
    }
    let tasks: Vec<String> = grid
        .keys()
        .map(|k| k.0.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fams: Vec<String> = grid
        .keys()
        .map(|k| k.1.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let svg = heatmap(&tasks, &fams, |i, j| {
        let &(p, a) = grid.get(&(tasks[i].clone(), fams[j].clone()))?;
        Some(Cell {
            shade: (p > 0).then(|| a as f64 / p as f64),
            text: format!("{a}/{p}"),
            title: format!("{} x {}: {a} accepted of {p} planned", tasks[i], fams[j]),
        })
    });
    format!(
        "{}{svg}",
        note("accepted / planned per task (rows) and document family (columns); planned is the quota target with exact quotas, else the items planned. Green: all planned accepted, red: none.")
    )
}

pub fn funnel(c: &Collected) -> String {
    let stages = match c.kind {
        Kind::Run => serde_json::to_value(&c.stats.stages).unwrap_or_default(),
        Kind::Audit => c
            .stats_file
            .as_ref()
            .map(|s| s["stages"].clone())
            .unwrap_or_default(),
    };
    let mut out = String::new();
    if let Value::Object(st) = &stages {
        let b: Vec<Bar> = st
            .iter()
            .filter(|(_, v)| u(&v["total"]) > 0)
            .map(|(name, v)| Bar {
                label: name.clone(),
                value: u(&v["kept"]) as f64,
                note: format!("{} kept of {}", u(&v["kept"]), u(&v["total"])),
            })
            .collect();
        out.push_str(&figure(
            "records kept after each stage",
            bars(&b, None, BLUE),
        ));
    }
    let mut reasons: Vec<(&String, &u64)> = c.stats.rejected_by_reason.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let b: Vec<Bar> = reasons
        .iter()
        .take(MAX_ROWS)
        .map(|(r, n)| Bar {
            label: r.to_string(),
            value: **n as f64,
            note: format!("{n} ({})", pct(**n, c.stats.rejected)),
        })
        .collect();
    if b.is_empty() {
        out.push_str(&note("no rejects"));
    } else {
        out.push_str(&figure("rejects by reason", bars(&b, None, RED)));
    }
    format!("<div class=\"charts\">{out}</div>")
}

fn score_bins(b: &Bins) -> Vec<(String, u64)> {
    b.counts
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{}", b.lo + b.width * i as f64), *n))
        .collect()
}

pub fn judge(c: &Collected) -> String {
    let judged = c.spread.total();
    if judged == 0 {
        return note("no record was judged (no `[judge]` in this run, or every verdict failed)");
    }
    let mut out = note(&format!(
        "{judged} records judged. Scores are the medians over the judge's samples; spread is a record's largest max - min of a dimension over the samples."
    ));
    out.push_str("<div class=\"charts\">");
    for (dim, b) in DIMENSIONS.iter().zip(&c.scores) {
        let mean = b
            .counts
            .iter()
            .enumerate()
            .map(|(i, n)| (b.lo + b.width * i as f64) * *n as f64)
            .sum::<f64>()
            / judged as f64;
        out.push_str(&figure(
            &format!("{dim} (mean {mean:.2})"),
            histogram(&score_bins(b), BLUE),
        ));
    }
    out.push_str(&figure(
        "judge spread",
        histogram(&score_bins(&c.spread), RED),
    ));
    out.push_str("</div>");
    let selection = c.stats_file.as_ref().map(|s| &s["judge"]["selection"]);
    match selection {
        Some(s) if s["thresholds_applied"] == true => out.push_str(&note(&format!(
            "selection: the judge's thresholds applied (calibration {}, mean-score AUC {})",
            s["calibration"], s["auc_mean"]
        ))),
        Some(s) => out.extend(s["why"].as_str().map(|w| note(&format!("selection: {w}")))),
        None => {}
    }
    match &c.calibration {
        None => out.push_str(&note(
            "calibration: unknown (no calibration.json for this judge)",
        )),
        Some(cal) => {
            out.push_str(&note(&format!(
                "calibration of {} ({}) on {} labelled rows ({} good, {} junk): {}. {}",
                cal.judge_model, cal.template, cal.n, cal.n_good, cal.n_junk, cal.verdict, cal.rule
            )));
            let mut rows = vec![[
                "score",
                "AUC",
                "threshold",
                "accuracy",
                "good kept",
                "junk rejected",
            ]
            .map(String::from)
            .to_vec()];
            for (d, s) in &cal.dimensions {
                rows.push(vec![
                    esc(d),
                    format!("{:.3}", s.auc),
                    format!("{:.2}", s.threshold),
                    format!("{:.3}", s.accuracy),
                    format!("{:.3}", s.good_kept),
                    format!("{:.3}", s.junk_rejected),
                ]);
            }
            out.push_str(&table(&rows));
        }
    }
    out
}

fn log2_bins(h: &Log2) -> Vec<(String, u64)> {
    let first = h.counts.iter().position(|&n| n > 0);
    let last = h.counts.iter().rposition(|&n| n > 0);
    let (Some(a), Some(b)) = (first, last) else {
        return Vec::new();
    };
    (a..=b)
        .map(|k| {
            let label = match k {
                0 => "0".to_string(),
                1 => "1".to_string(),
                k => format!("{}–{}", 1u128 << (k - 1), (1u128 << k) - 1),
            };
            (label, h.counts[k])
        })
        .collect()
}

pub fn usage(c: &Collected) -> String {
    if c.kind == Kind::Audit {
        return note("an audit's verdicts carry no token counts or latencies");
    }
    let mut out = note("per record, summed over its teacher calls (retries and repairs included); bins double in width");
    out.push_str("<div class=\"charts\">");
    for (t, h) in [
        ("prompt tokens", &c.prompt_tokens),
        ("completion tokens", &c.completion_tokens),
        ("latency (ms)", &c.latency_ms),
    ] {
        out.push_str(&figure(t, histogram(&log2_bins(h), BLUE)));
    }
    out.push_str("</div>");
    out
}

pub fn duplicates(c: &Collected) -> String {
    if c.clusters.is_empty() {
        return note("no exact or near duplicates were removed");
    }
    let mut cl: Vec<_> = c.clusters.iter().collect();
    cl.sort_by(|a, b| {
        (b.1.exact + b.1.near)
            .cmp(&(a.1.exact + a.1.near))
            .then(a.0.cmp(b.0))
    });
    let mut rows = vec![["kept record", "exact", "near", "duplicates (first few)"]
        .map(String::from)
        .to_vec()];
    for (of, k) in cl.iter().take(MAX_ROWS) {
        let members: Vec<String> = k
            .members
            .iter()
            .map(|(id, t)| format!("<code>{}</code> {}", esc(id), esc(t)))
            .collect();
        rows.push(vec![
            format!("<code>{}</code>", esc(of)),
            k.exact.to_string(),
            k.near.to_string(),
            members.join("<br>"),
        ]);
    }
    format!(
        "{}{}",
        note(&format!("{} clusters: a kept record and the rejects that duplicate it (largest first, {} shown)", cl.len(), cl.len().min(MAX_ROWS))),
        table(&rows)
    )
}

pub fn dpo(c: &Collected) -> String {
    if c.margins.is_empty() {
        return note("no preference pairs (dpo/*.jsonl); `mediflow dpo` builds them");
    }
    let mut out = String::from("<div class=\"charts\">");
    for (strategy, m) in &c.margins {
        let cap = format!(
            "{strategy}: {} pairs{}",
            m.pairs,
            if m.without > 0 {
                format!(", {} without a margin", m.without)
            } else {
                String::new()
            }
        );
        match m.bins.total() {
            0 => out.push_str(&note(&cap)),
            _ => out.push_str(&figure(&cap, histogram(&score_bins(&m.bins), GREEN))),
        }
        if !m.by_error.is_empty() {
            let b: Vec<Bar> = m
                .by_error
                .iter()
                .map(|(e, n)| Bar {
                    label: e.clone(),
                    value: *n as f64,
                    note: n.to_string(),
                })
                .collect();
            out.push_str(&figure(
                &format!("{strategy}: injected error types"),
                bars(&b, None, GREEN),
            ));
        }
    }
    out.push_str("</div>");
    format!(
        "{}{out}",
        note("margin: the chosen answer's score minus the rejected one's")
    )
}

pub fn quotas(c: &Collected) -> String {
    let Some(Value::Object(cells)) = c.stats_file.as_ref().map(|s| &s["cells"]) else {
        return note("no stats.json: quotas unknown");
    };
    let mut fill: Vec<(&String, u64, u64, &str)> = cells
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k,
                u(&v["accepted"]),
                v["target_accepted"].as_u64()?,
                v["status"].as_str().unwrap_or(""),
            ))
        })
        .collect();
    if fill.is_empty() {
        return note("no exact quotas in this run (`[quotas]`)");
    }
    let met = fill.iter().filter(|f| f.1 >= f.2).count();
    fill.sort_by(|a, b| {
        ((a.1 as f64) / (a.2.max(1) as f64))
            .total_cmp(&((b.1 as f64) / (b.2.max(1) as f64)))
            .then(a.0.cmp(b.0))
    });
    let b: Vec<Bar> = fill
        .iter()
        .take(MAX_ROWS)
        .map(|(k, a, t, st)| Bar {
            label: k.to_string(),
            value: *a as f64 / (*t).max(1) as f64,
            note: format!("{a}/{t} {st}"),
        })
        .collect();
    format!(
        "{}{}",
        note(&format!(
            "{met} of {} cells met their quota; the {} least filled shown (accepted / target)",
            fill.len(),
            b.len()
        )),
        bars(&b, Some(1.0), GREEN)
    )
}
