//! The sample browser: the sampled records, each a collapsible row (id, task, document
//! type, outcome, mean judge score, reviewers' verdicts) opening onto document,
//! instruction and answer side by side, with the filters the page's script applies.

use super::collect::{scores_of, Collected};
use super::highlight::marked;
use super::html::{esc, note};
use super::sample::Item;
use crate::review::journal::Decision;
use std::collections::{BTreeMap, BTreeSet};

/// The reviewers' latest decisions per record.
pub type Reviews = BTreeMap<String, BTreeMap<String, Decision>>;

fn pretty(output: &str, format: &str) -> String {
    if format == "json" {
        if let Ok(v) = crate::schemas::extract_json(output) {
            return serde_json::to_string_pretty(&v).unwrap_or_else(|_| output.to_string());
        }
    }
    output.to_string()
}

/// The instruction as the teacher wrote it; the task schema the engine appended is named,
/// not repeated (it is the same for every record of the task).
fn instruction(text: &str) -> String {
    let bare = crate::record::bare_instruction(text);
    match bare.len() < text.len() {
        true => format!(
            "{}<span class=\"note\">\n\n[+ the task's JSON Schema]</span>",
            esc(bare)
        ),
        false => esc(text),
    }
}

fn reason(it: &Item) -> &str {
    it.rejected
        .as_ref()
        .map_or("accepted", |o| o.reason.as_str())
}

fn item(it: &Item, reviews: &Reviews) -> String {
    let r = &it.record;
    let score = scores_of(r).map(|s| s.iter().sum::<f64>() / 5.0);
    let mut head = format!(
        "<code>{}</code> · {} · {} · {} · difficulty {}",
        esc(&r.id),
        esc(&r.task_type),
        esc(&r.input_data),
        esc(&r.output_format),
        r.difficulty_level
    );
    match &it.rejected {
        None => head.push_str(" <span class=\"tag ok\">accepted</span>"),
        Some(o) if o.stage.is_empty() => head.push_str(&format!(
            " <span class=\"tag bad\">{}</span>",
            esc(&o.reason)
        )),
        Some(o) => head.push_str(&format!(
            " <span class=\"tag bad\">{}: {}</span>",
            esc(&o.stage),
            esc(&o.reason)
        )),
    }
    if let Some(s) = score {
        head.push_str(&format!(" · judge mean {s:.2}"));
    }
    for (who, d) in reviews.get(&r.id).into_iter().flatten() {
        head.push_str(&format!(
            " <span class=\"tag\">{}: {:?}</span>",
            esc(who),
            d.decision
        ));
    }
    let mut notes = String::new();
    let doc = match &it.source {
        Some((file, line)) if r.input.is_empty() && r.output.is_empty() => esc(&format!(
            "audited row {file}:{line}: not readable any more (an audit keeps no text)"
        )),
        Some((file, line)) => {
            notes.push_str(&note(&format!("audited row {file}:{line}")));
            marked(&r.input, &it.grounded)
        }
        None => marked(&r.input, &it.grounded),
    };
    if let Some(o) = &it.rejected {
        notes.push_str(&note(&o.detail));
    }
    if let Some(why) = &r.judge_rationale {
        notes.push_str(&note(&format!("judge: {why}")));
    }
    if it.cut {
        notes.push_str(&note(&format!(
            "long fields cut to {} characters for this page",
            super::sample::MAX_FIELD_CHARS
        )));
    }
    format!(
        "<details class=\"item {kind}\" data-task=\"{task}\" data-doc=\"{doc_t}\" \
         data-reason=\"{reason}\" data-score=\"{score}\"><summary>{head}</summary>\
         <div class=\"cols\"><div><h4>Document (input){marks}</h4><pre>{doc}</pre></div>\
         <div><h4>Instruction</h4><pre>{instr}</pre></div>\
         <div><h4>Answer (output)</h4><pre>{answer}</pre></div></div>{notes}</details>\n",
        kind = if it.rejected.is_some() {
            "rejected"
        } else {
            "accepted"
        },
        task = esc(&r.task_type),
        doc_t = esc(&r.input_data),
        reason = esc(reason(it)),
        score = score.map(|s| format!("{s:.3}")).unwrap_or_default(),
        marks = if it.grounded.is_empty() {
            ""
        } else {
            ": <mark>verbatim answer spans</mark>"
        },
        instr = instruction(&r.instruction),
        answer = esc(&pretty(&r.output, &r.output_format)),
    )
}

fn select(id: &str, label: &str, values: &BTreeSet<&str>) -> String {
    let opts: String = values
        .iter()
        .map(|v| format!("<option value=\"{0}\">{0}</option>", esc(v)))
        .collect();
    format!(
        "<label>{label} <select id=\"{id}\"><option value=\"\">all</option>{opts}</select></label>"
    )
}

/// The browser section's body.
pub fn browser(c: &Collected, reviews: &Reviews) -> String {
    let items: Vec<&Item> = c.accepted_sample.iter().chain(&c.rejected_sample).collect();
    let set = |f: fn(&Item) -> &str| -> BTreeSet<&str> {
        items
            .iter()
            .map(|i| f(i))
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut s = note(&format!(
        "Showing {} of {} accepted and {} of {} rejected records: a seeded sample, stratified \
         by task (the same run gives the same sample). Grounded spans (what the answer quotes \
         verbatim from the document, as the grounding filter checks it) are highlighted.",
        c.accepted_sample.len(),
        c.accepted_seen,
        c.rejected_sample.len(),
        c.rejected_seen,
    ));
    s.push_str("<div class=\"filters\">");
    s.push_str(&select("f-task", "task", &set(|i| &i.record.task_type)));
    s.push_str(&select(
        "f-doc",
        "document type",
        &set(|i| &i.record.input_data),
    ));
    s.push_str(&select("f-reason", "outcome", &set(reason)));
    s.push_str(
        "<label>judge mean ≥ <input id=\"f-score\" type=\"number\" min=\"1\" max=\"5\" \
         step=\"0.5\" size=\"4\"></label><span id=\"shown\" class=\"note\"></span></div>\n",
    );
    for it in items {
        s.push_str(&item(it, reviews));
    }
    s
}
