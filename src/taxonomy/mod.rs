//! The taxonomy: 14 task types x 98 document types (in families) x 6 difficulty levels x
//! 2 output formats, a task x document compatibility matrix, seed attributes for diversity,
//! and the ICD-10-CM code table. Loaded from `taxonomy/` and checked as a whole.

mod icd;
mod load;

pub use icd::{IcdCode, IcdTable};
pub use load::load;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const EXPECTED_TASKS: usize = 14;
pub const EXPECTED_DOCUMENTS: usize = 98;
pub const EXPECTED_DIFFICULTIES: usize = 6;
pub const EXPECTED_FORMATS: usize = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub id: String,
    pub name: String,
    pub description: String,
    pub formats: Vec<String>,
    pub schema: String,
    pub weight: f64,
    #[serde(default)]
    pub keywords: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    pub id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub id: String,
    pub name: String,
    pub family: String,
    pub description: String,
    pub sections: Vec<String>,
    pub length_words: [u32; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difficulty {
    pub level: u8,
    pub name: String,
    pub description: String,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Format {
    pub id: String,
    pub description: String,
    pub weight: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seeds {
    pub specialties: Vec<String>,
    pub age_bands: Vec<String>,
    pub sexes: Vec<String>,
    pub care_settings: Vec<String>,
    pub writing_styles: Vec<String>,
    pub concept_chapters: Vec<String>,
}

/// The loaded, checked taxonomy.
#[derive(Debug, Clone)]
pub struct Taxonomy {
    pub tasks: Vec<Task>,
    pub families: Vec<Family>,
    pub documents: Vec<Document>,
    pub difficulties: Vec<Difficulty>,
    pub formats: Vec<Format>,
    pub seeds: Seeds,
    /// compat[task index][document index] = weight (0 = incompatible).
    pub compat: Vec<Vec<f64>>,
    pub icd: IcdTable,
    /// SHA-256 over every file of the taxonomy directory (for the manifest).
    pub hash: String,
}

impl Taxonomy {
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == id)
    }
    pub fn document(&self, id: &str) -> Option<&Document> {
        self.documents.iter().find(|d| d.id == id)
    }
    pub fn family(&self, id: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.id == id)
    }
    pub fn difficulty(&self, level: u8) -> Option<&Difficulty> {
        self.difficulties.iter().find(|d| d.level == level)
    }

    /// Number of compatible (task, document, difficulty, format) cells.
    pub fn cell_count(&self) -> usize {
        let mut n = 0;
        for (ti, t) in self.tasks.iter().enumerate() {
            let docs = self.compat[ti].iter().filter(|w| **w > 0.0).count();
            let fmts = self
                .formats
                .iter()
                .filter(|f| t.formats.contains(&f.id))
                .count();
            n += docs * fmts * self.difficulties.len();
        }
        n
    }

    /// A machine-readable summary (what `mediflow taxonomy --json` prints).
    pub fn summary(&self) -> serde_json::Value {
        let mut per_family: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &self.documents {
            *per_family.entry(d.family.as_str()).or_default() += 1;
        }
        let docs_per_task: BTreeMap<&str, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                (
                    t.id.as_str(),
                    self.compat[ti].iter().filter(|w| **w > 0.0).count(),
                )
            })
            .collect();
        let tasks_per_doc: Vec<usize> = (0..self.documents.len())
            .map(|di| self.compat.iter().filter(|row| row[di] > 0.0).count())
            .collect();
        let mean_tasks_per_doc =
            tasks_per_doc.iter().sum::<usize>() as f64 / tasks_per_doc.len().max(1) as f64;
        serde_json::json!({
            "tasks": self.tasks.len(),
            "families": self.families.len(),
            "documents": self.documents.len(),
            "difficulties": self.difficulties.len(),
            "formats": self.formats.len(),
            "cells": self.cell_count(),
            "documents_per_family": per_family,
            "documents_per_task": docs_per_task,
            "tasks_per_document": {
                "min": tasks_per_doc.iter().min(), "max": tasks_per_doc.iter().max(),
                "mean": (mean_tasks_per_doc * 100.0).round() / 100.0,
            },
            "icd10cm_codes": self.icd.len(),
            "icd10cm_billable": self.icd.billable_count(),
            "hash": self.hash,
        })
    }
}
