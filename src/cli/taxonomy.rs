//! `mediflow taxonomy`: counts per family, tasks per document, cells.

use clap::Args;
use mediflow::error::Error;
use std::path::PathBuf;

#[derive(Args)]
pub struct TaxonomyArgs {
    /// The taxonomy folder.
    #[arg(long, default_value = "taxonomy")]
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: TaxonomyArgs) -> Result<(), Error> {
    let tax = mediflow::taxonomy::load(&a.dir).map_err(Error::Input)?;
    let s = tax.summary();
    if a.json {
        super::print_json(&s);
        return Ok(());
    }
    println!(
        "taxonomy {}: {} task types x {} document types ({} families) x {} difficulty levels x {} formats",
        a.dir.display(),
        tax.tasks.len(),
        tax.documents.len(),
        tax.families.len(),
        tax.difficulties.len(),
        tax.formats.len()
    );
    println!(
        "compatible cells (task x document x difficulty x format): {}",
        tax.cell_count()
    );
    println!(
        "ICD-10-CM codes: {} ({} billable)\n",
        tax.icd.len(),
        tax.icd.billable_count()
    );
    println!("{:<22} {:>5}  name", "family", "docs");
    for f in &tax.families {
        let n = tax.documents.iter().filter(|d| d.family == f.id).count();
        println!("{:<22} {:>5}  {}", f.id, n, f.name);
    }
    println!("\n{:<28} {:>6} {:>6}  formats", "task", "docs", "weight");
    for (ti, t) in tax.tasks.iter().enumerate() {
        let n = tax.compat[ti].iter().filter(|w| **w > 0.0).count();
        println!(
            "{:<28} {:>6} {:>6.2}  {}",
            t.id,
            n,
            t.weight,
            t.formats.join(", ")
        );
    }
    let tp = &s["tasks_per_document"];
    println!(
        "\ntasks per document: min {} / mean {} / max {}",
        tp["min"], tp["mean"], tp["max"]
    );
    Ok(())
}
