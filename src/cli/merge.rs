//! `mediflow merge`: combine the shards of a sharded run (`run --shard I/N`) into one
//! dataset in the run directory.

use super::ConfigArgs;
use clap::Args;
use mediflow::check;
use mediflow::error::Error;
use mediflow::merge;
use std::path::PathBuf;

#[derive(Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The run directory holding `shards/` (default: `<out_root>/<name>` from the config).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn exec(a: MergeArgs) -> Result<(), Error> {
    let l = check::load(&a.config.config, &a.config.overrides())?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| l.cfg.out_root.join(&l.cfg.name));
    let s = merge::merge(&l, &out)?;
    if a.json {
        super::print_json(&s);
    } else {
        println!(
            "merged {} shards: {} accepted, {} rejected ({} planned; {} dropped as duplicates across shards)",
            s.shards, s.accepted, s.rejected, s.planned, s.cross_shard_duplicates
        );
        println!("output: {}", s.out_dir.display());
    }
    Ok(())
}
