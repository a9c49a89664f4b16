//! `flotilla bench`: benchmarks kept in the repo; figures go to BENCHMARKS.md.

mod etcd;
mod store;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Puts and linearizable gets against Flotilla's store and etcd, side by side.
    Store(store::StoreBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(args) => store::run(args).await,
    }
}
