//! `flotilla bench`: benchmarks kept in the repo; figures go to BENCHMARKS.md.

#[derive(clap::Subcommand)]
pub enum BenchCommand {}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
