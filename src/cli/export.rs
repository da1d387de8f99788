//! `mediflow export RUN_DIR --format F`: a run as a training dataset (see mediflow::export).

use clap::Args;
use mediflow::error::{Error, Problem};
use mediflow::export::splits::{parse_ratios, Decontaminate};
use mediflow::export::{self, Format, Mix, Options};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// A run directory (e.g. outputs/quickstart).
    #[arg(long)]
    pub run: PathBuf,
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output directory (default: `<RUN>/export/<format>`); must be absent or empty.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// train,validation,test ratios (sum 1), stratified by taxonomy cell.
    #[arg(long, default_value = "0.9,0.05,0.05")]
    pub splits: String,
    /// Seed of the split assignment and of the mixing.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validation / test examples that duplicate a train example: move them to train, or drop them.
    #[arg(long, value_enum, default_value = "move")]
    pub decontaminate: Decontaminate,
    /// DPO: prompt / chosen / rejected as message lists instead of strings.
    #[arg(long)]
    pub conversational: bool,
    /// General-domain rows (JSONL or Parquet with a `messages` field) to mix into train
    /// (sft-messages only).
    #[arg(long, requires = "mix_ratio")]
    pub mix: Option<PathBuf>,
    /// Share of the final train rows that are general rows, in [0, 1).
    #[arg(long, requires = "mix")]
    pub mix_ratio: Option<f64>,
    /// Render every SFT example with a chat template and report lengths and failure modes:
    /// the embedded default model's GGUF template, or a directory with
    /// tokenizer_config.json + tokenizer.json.
    #[arg(long, value_name = "TOKENIZER_DIR", num_args = 0..=1)]
    pub check_template: Option<Option<PathBuf>>,
    /// Token count over which the template check counts an example as too long.
    #[arg(long, default_value_t = 4096)]
    pub max_length: usize,
    /// With --check-template: fail (exit 1) when any failure mode is found.
    #[arg(long, requires = "check_template")]
    pub strict: bool,
}

pub fn exec(a: ExportArgs) -> Result<(), Error> {
    let ratios =
        parse_ratios(&a.splits).map_err(|m| Error::Input(vec![Problem::new(&a.run, m)]))?;
    let opts = Options {
        run: a.run,
        format: a.format,
        out: a.out,
        ratios,
        seed: a.seed,
        decontaminate: a.decontaminate,
        conversational: a.conversational,
        mix: a
            .mix
            .zip(a.mix_ratio)
            .map(|(file, ratio)| Mix { file, ratio }),
        check_template: a.check_template,
        max_length: a.max_length,
    };
    let summary = export::export(&opts)?;
    if let Some(r) = &summary.template_check {
        eprint!("{}", r.table());
    }
    super::print_json(&summary);
    match &summary.template_check {
        Some(r) if a.strict && r.failed() > 0 => Err(Error::Other(anyhow::anyhow!(
            "template check: {} failure(s) found (--strict)",
            r.failed()
        ))),
        _ => Ok(()),
    }
}
