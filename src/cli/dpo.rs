//! `mediflow dpo`: preference pairs from a finished run, with the run config's teacher and
//! judge (and, for `on_policy`, a student model).

use super::run::{build_teacher, probe};
use super::ConfigArgs;
use clap::Args;
use mediflow::check;
use mediflow::config::TeacherKind;
use mediflow::engine::dpo::{self as build, Options, Strategy, Student};
use mediflow::engine::Shared;
use mediflow::error::{Error, Problem};
use mediflow::schemas;
use std::path::PathBuf;
use tokio::sync::Semaphore;

#[derive(Args)]
pub struct DpoArgs {
    /// The run directory whose accepted records the pairs are built from.
    #[arg(long)]
    pub run: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[arg(long, value_parser = Strategy::NAMES)]
    pub strategy: String,
    /// Pairs file (default: `<run>/dpo/<strategy>.jsonl`); pairs already there are kept.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only the first N records without a pair.
    #[arg(long)]
    pub limit: Option<usize>,
    /// The student (`on_policy`): an OpenAI-compatible base URL; overrides `[dpo.student]`.
    #[arg(long, requires = "student_model")]
    pub student_url: Option<String>,
    /// The student's model name (with --student-url).
    #[arg(long, requires = "student_url")]
    pub student_model: Option<String>,
}

pub async fn exec(a: DpoArgs) -> Result<(), Error> {
    let strategy = Strategy::from_name(&a.strategy).expect("clap checked the name");
    let l = check::load(&a.config.config, &a.config.overrides())?;
    check::api_keys(&l.cfg, &a.config.config)?;
    let input = |m: String| Error::Input(vec![Problem::new(&a.config.config, m)]);
    let student_cfg = match (&a.student_url, &a.student_model) {
        (Some(url), Some(model)) => {
            let mut t = l.cfg.dpo.student.clone().unwrap_or_else(|| {
                let mut t = l.cfg.teacher.clone();
                t.api_key_env = None;
                t
            });
            t.kind = TeacherKind::Openai;
            t.base_urls = vec![url.clone()];
            t.model = model.clone();
            if let Some(m) = t.validate().into_iter().next() {
                return Err(input(format!("--student-url/--student-model: {m}")));
            }
            Some(t)
        }
        _ => l.cfg.dpo.student.clone(),
    };
    if strategy == Strategy::OnPolicy {
        match &student_cfg {
            None => {
                return Err(input(
                    "on_policy needs a student: `[dpo.student]` or --student-url with \
                     --student-model"
                        .into(),
                ))
            }
            Some(t) if t.kind == TeacherKind::Openai => {
                if let Err(m) = t.api_key() {
                    return Err(input(format!("dpo.student: {m}")));
                }
            }
            Some(_) => {}
        }
    }
    // The pair builders' templates must render before any teacher call.
    let problems = mediflow::check::smoke_render(
        &l.tax,
        &l.schemas,
        &l.prompts,
        &[
            mediflow::prompt::Stage::Judge,
            mediflow::prompt::Stage::Inject,
        ],
    );
    if !problems.is_empty() {
        return Err(Error::Input(problems));
    }
    // Pairs are always judged, whether or not the run itself was.
    let judge_schema = match l.judge_schema {
        Some(s) => s,
        None => {
            let path = l
                .cfg
                .judge
                .schema
                .clone()
                .unwrap_or_else(|| l.cfg.schemas_dir.join("judge.schema.json"));
            schemas::compile(&path).map_err(|p| Error::Input(vec![p]))?
        }
    };
    let teacher = build_teacher(&l.cfg.teacher).await?;
    probe(&*teacher).await?;
    let judge_teacher = match &l.cfg.judge.teacher {
        Some(t) => {
            let jt = build_teacher(t).await?;
            probe(&*jt).await?;
            Some(jt)
        }
        None => None,
    };
    let student = match student_cfg.filter(|_| strategy == Strategy::OnPolicy) {
        Some(cfg) => {
            let teacher = build_teacher(&cfg).await?;
            probe(&*teacher).await?;
            Some(Student {
                teacher,
                requests: Semaphore::new(l.cfg.engine.concurrency),
                cfg,
            })
        }
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| {
        a.run
            .join(mediflow::dpo::DPO_DIR)
            .join(format!("{}.jsonl", strategy.name()))
    });
    let sh = Shared::new(l.cfg, l.tax, l.schemas, l.prompts, teacher)
        .with_judge(judge_teacher, judge_schema);
    let opts = Options {
        strategy,
        out,
        limit: a.limit,
        student,
    };
    let summary = build::build(&sh, &a.run, &opts).await?;
    super::print_json(&summary);
    Ok(())
}
