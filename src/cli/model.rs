//! `mediflow model pull|list`: obtain the default embedded model into the cache, and show
//! what is cached.

use clap::{Args, Subcommand};
use mediflow::error::Error;
use mediflow::teacher::embedded::{config::default_cache_dir, pull};
use std::path::PathBuf;

#[derive(Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub cmd: ModelCmd,
    /// Cache directory (default: $MEDIFLOW_CACHE or ~/.cache/mediflow).
    #[arg(long, global = true)]
    pub cache: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Obtain the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) and verify its checksum.
    Pull,
    /// List the cached models (path, size, checksum verified).
    List,
}

pub fn exec(a: ModelArgs) -> Result<(), Error> {
    let cache = a.cache.unwrap_or_else(default_cache_dir);
    match a.cmd {
        ModelCmd::Pull => {
            let path = pull::pull(&cache).map_err(Error::Other)?;
            println!("{}", path.display());
        }
        ModelCmd::List => {
            let models = pull::list(&cache);
            if models.is_empty() {
                println!(
                    "no models in {} (run `mediflow model pull`)",
                    pull::models_dir(&cache).display()
                );
            }
            for (path, size, ok) in models {
                println!(
                    "{}  {:.1} MB  {}",
                    path.display(),
                    size as f64 / 1e6,
                    if ok {
                        "checksum ok"
                    } else {
                        "checksum unknown or wrong"
                    }
                );
            }
        }
    }
    Ok(())
}
