//! `flotilla bench`: benchmarks kept in the repo; figures go to BENCHMARKS.md.

mod api;
mod crds;
mod etcd;
mod failover;
mod pods;
mod scheduler;
mod store;
mod webhook;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Puts and linearizable gets against Flotilla's store and etcd, side by side.
    Store(store::StoreBenchArgs),
    /// Creates, gets, lists and watches over HTTPS against a `flotilla up` it starts.
    Api(api::ApiBenchArgs),
    /// Schedules pods onto nodes in one process (scheduler_perf's SchedulingBasic).
    Scheduler(scheduler::SchedulerBenchArgs),
    /// ConfigMap creates without and with one validating admission webhook: the latency it adds.
    Webhook(webhook::WebhookBenchArgs),
    /// SIGKILL the leader again and again: time to the first acknowledged write, vs etcd.
    Failover(failover::FailoverBenchArgs),
    /// Pod startup latency (create to Running) on this machine's containerd or hollow nodes.
    Pods(pods::PodsBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Store(args) => store::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
        BenchCommand::Webhook(args) => webhook::run(args).await,
        BenchCommand::Failover(args) => failover::run(args).await,
        BenchCommand::Pods(args) => pods::run(args).await,
    }
}
