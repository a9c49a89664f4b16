//! `flotilla bench`: benchmarks kept in the repo; figures go to BENCHMARKS.md.

mod api;
mod crds;
mod etcd;
mod store;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Puts and linearizable gets against Flotilla's store and etcd, side by side.
    Store(store::StoreBenchArgs),
    /// Creates, gets, lists and watches over HTTPS against a `flotilla up` it starts.
    Api(api::ApiBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
    }
}
