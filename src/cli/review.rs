//! `mediflow review --run DIR --reviewer NAME`: the physician review web app (see
//! mediflow::review_app); prints the URL to open and serves until interrupted.

use clap::Args;
use mediflow::error::Error;
use mediflow::review_app::server::{self, Options};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReviewArgs {
    /// A run directory (e.g. outputs/quickstart).
    #[arg(long)]
    pub run: PathBuf,
    /// Address to listen on (port 0 picks a free port). Any non-loopback address needs
    /// --token.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub addr: std::net::SocketAddr,
    /// Who decides: every decision carries this name.
    #[arg(long)]
    pub reviewer: String,
    /// Require this token on every API call (`Authorization: Bearer T`; the printed URL
    /// carries it as `?token=`).
    #[arg(long, env = "MEDIFLOW_REVIEW_TOKEN")]
    pub token: Option<String>,
    /// Add a seeded sample of this many of the run's rejects to the queue (judge-vs-human
    /// agreement on both sides); a decision on a reject does not export it.
    #[arg(long, default_value_t = 0)]
    pub include_rejects: usize,
    /// Seed of the rejects sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub async fn exec(a: ReviewArgs) -> Result<(), Error> {
    let srv = server::bind(Options {
        run: a.run,
        addr: a.addr,
        reviewer: a.reviewer,
        token: a.token,
        include_rejects: a.include_rejects,
        seed: a.seed,
    })
    .await?;
    eprintln!("{} records to review; Ctrl-C stops", srv.items);
    println!("review: open {}", srv.url);
    let _ = std::io::stdout().flush();
    srv.serve(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
