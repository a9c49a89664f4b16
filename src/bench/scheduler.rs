//! The scheduler benchmark (`scheduler_perf`'s SchedulingBasic, in one process):
//! `actors::scheduler::bench` on an actix system of its own, printed as a markdown row for
//! BENCHMARKS.md.

/// kube-scheduler's `scheduler_perf` threshold for SchedulingBasic on 5000 nodes (pods/s).
const KUBE_THRESHOLD: f64 = 680.0;

#[derive(clap::Args, Clone)]
pub struct SchedulerBenchArgs {
    /// Nodes (4 cpu, 8Gi, 110 pods each).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Pods (100m cpu, 64Mi), created as fast as the store takes them.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
}

pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let (nodes, pods) = (args.nodes, args.pods);
    let thread =
        std::thread::spawn(move || actix_rt::System::new().block_on(actors::scheduler::bench::run(nodes, pods)));
    let report = thread.join().map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))??;
    println!(
        "| nodes | pods | pods/s bound | pods/s created | p50 | p99 | max | vs kube's {KUBE_THRESHOLD:.0} pods/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.1?} | {:.1?} | {:.1?} | {:.2}x |",
        report.nodes,
        report.pods,
        report.pods_per_sec,
        report.creates_per_sec,
        report.p50,
        report.p99,
        report.max,
        report.pods_per_sec / KUBE_THRESHOLD
    );
    Ok(())
}
