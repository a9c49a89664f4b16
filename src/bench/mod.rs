//! `flotilla bench`: benchmarks kept in the repo; figures go to BENCHMARKS.md.

mod api;
mod crds;
mod etcd;
mod scheduler;
mod store;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Puts and linearizable gets against Flotilla's store and etcd, side by side.
    Store(store::StoreBenchArgs),
    /// Creates, gets, lists and watches over HTTPS against a `flotilla up` it starts.
    Api(api::ApiBenchArgs),
    /// Schedules pods onto nodes in one process (scheduler_perf's SchedulingBasic).
    Scheduler(scheduler::SchedulerBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
    }
}
