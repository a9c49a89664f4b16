//! `flotilla chaos check DIR`: runs the history checkers over a chaos run's directory (what
//! a failed run keeps: `ops.jsonl`, `watch.jsonl`, `final.json`) and prints the report.

use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ChaosCommand {
    /// Check a recorded history: linearizability, lost writes, watches.
    Check {
        /// The run's history directory.
        dir: PathBuf,
    },
}

pub async fn run(cmd: ChaosCommand) -> anyhow::Result<()> {
    match cmd {
        ChaosCommand::Check { dir } => {
            let report = chaos::Report::check_dir(&dir, &chaos::CheckOptions::default())?;
            println!("{report}");
            if report.verdict() == chaos::Verdict::Invalid {
                anyhow::bail!("{} violations", report.violations());
            }
            Ok(())
        }
    }
}
