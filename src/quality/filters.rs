//! Heuristic filters (placeholder: to be written).

use crate::record::Record;
use crate::schemas::Schemas;
use crate::taxonomy::Taxonomy;
use serde::{Deserialize, Serialize};

/// `[filters]` in the run config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub disable: Vec<String>,
}

impl FiltersConfig {
    pub fn validate(&self) -> Vec<String> {
        vec![]
    }
}

pub struct FilterCtx<'a> {
    pub tax: &'a Taxonomy,
    pub schemas: &'a Schemas,
    pub cfg: &'a FiltersConfig,
}

/// Why a filter dropped a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub filter: &'static str,
    pub reason: &'static str,
    pub detail: String,
}

/// The filters in the order they run, each with the reasons it can drop for.
pub const FILTERS: &[(&str, &[&str])] = &[];

/// Run every enabled filter in order; the first drop wins.
pub fn check(_rec: &Record, _cx: &FilterCtx) -> Result<(), Drop> {
    Ok(())
}
