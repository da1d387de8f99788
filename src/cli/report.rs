//! `mediflow report --run DIR [--out FILE]`: the report of a run directory or an audit
//! output, as one self-contained HTML file.

use clap::Args;
use mediflow::error::Error;
use mediflow::report::{report, Options, SAMPLE_ACCEPTED, SAMPLE_REJECTED};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct ReportArgs {
    /// A run directory (`mediflow run`) or an audit output (`mediflow audit --out`).
    #[arg(long = "run")]
    pub dir: PathBuf,
    /// Where to write the page (default: DIR/report.html).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Accepted records the sample browser embeds at most.
    #[arg(long, default_value_t = SAMPLE_ACCEPTED)]
    pub sample_accepted: usize,
    /// Rejected records the sample browser embeds at most.
    #[arg(long, default_value_t = SAMPLE_REJECTED)]
    pub sample_rejected: usize,
    /// The sample's seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: ReportArgs) -> Result<(), Error> {
    let t0 = Instant::now();
    let opts = Options {
        out: a.out,
        sample_accepted: a.sample_accepted,
        sample_rejected: a.sample_rejected,
        seed: a.seed,
        ..Options::new(a.dir)
    };
    let w = report(&opts)?;
    if a.json {
        super::print_json(&w);
    } else {
        println!(
            "wrote {} ({} KB, {} report of {} records, {} in the sample browser, {} review decisions) in {:.1} s",
            w.path.display(),
            w.bytes / 1024,
            w.kind,
            w.records,
            w.sampled,
            w.decisions,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
