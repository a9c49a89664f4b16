//! `flotilla chaos`: long chaos runs and the history checkers from the command line.
//!
//! `run` starts a multi-process cluster (every member serving the API), the workload of
//! `chaos::workload`, and faults in rotation (SIGKILL of the leader, SIGKILL of a follower, a
//! partition isolating the leader, SIGSTOP of the leader, a follower replaced by a new
//! member) until the duration is up; then it checks the history and writes it, a summary and
//! the members' logs to the output directory.
//! `check` runs the checkers over a history directory again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chaos::{CheckOptions, FlotillaCluster, History, Report, Verdict, Workload, WorkloadConfig};

#[derive(clap::Subcommand)]
pub enum ChaosCommand {
    /// A chaos run: workload and faults for a while, then the checkers.
    Run(RunArgs),
    /// Check a recorded history: linearizability, lost writes, watches.
    Check {
        /// The run's history directory.
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long, default_value_t = 3)]
    members: u64,
    /// How long faults go on, e.g. `90s`, `30m`.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    duration: Duration,
    /// Where the history, the summary and the members' data and logs go.
    #[arg(long, default_value = "./flotilla-chaos")]
    out: PathBuf,
    /// Workload clients and watchers.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    #[arg(long, default_value_t = 3)]
    watchers: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `90s`, `30m`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90s or 30m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("{text:?}: the unit is s, m or h")),
    }
}

pub async fn run(cmd: ChaosCommand) -> anyhow::Result<()> {
    match cmd {
        ChaosCommand::Run(args) => chaos_run(args).await,
        ChaosCommand::Check { dir } => {
            let report = Report::check_dir(&dir, &CheckOptions::default())?;
            println!("{report}");
            anyhow::ensure!(report.verdict() != Verdict::Invalid, "{} violations", report.violations());
            Ok(())
        }
    }
}

/// The faults, in the order a run injects them.
#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillFollower,
    PartitionLeader,
    PauseLeader,
    /// A follower taken out of the voters and a new member joined in its place.
    ReplaceFollower,
}

const FAULTS: [Fault; 7] = [
    Fault::KillLeader,
    Fault::KillLeader,
    Fault::KillFollower,
    Fault::KillLeader,
    Fault::PartitionLeader,
    Fault::PauseLeader,
    Fault::ReplaceFollower,
];

/// How long the workload may make no progress after a fault before the run fails.
const STALL: Duration = Duration::from_secs(60);

async fn chaos_run(args: RunArgs) -> anyhow::Result<()> {
    let cluster_dir = args.out.join("cluster");
    std::fs::create_dir_all(&cluster_dir).with_context(|| format!("creating {}", cluster_dir.display()))?;
    let me = std::env::current_exe()?;
    let mut cluster = FlotillaCluster::start_with_api(&me, &cluster_dir, args.members, &[])?;
    let urls: Vec<String> =
        cluster.ids().iter().map(|id| cluster.api(*id).map(String::from)).collect::<Result<_, _>>()?;
    cluster.wait_for_leader(STALL).await?;
    let config =
        WorkloadConfig { clients: args.clients, watchers: args.watchers, seed: args.seed, ..Default::default() };
    let workload = Workload::start(&urls, &cluster.pki_dir(), config)?;
    progress(&workload, 20).await.context("the workload never started")?;
    eprintln!("chaos run: {} members, {:?}, output in {}", args.members, args.duration, args.out.display());

    let started = Instant::now();
    let mut faults: Vec<(Fault, u64, u64)> = Vec::new(); // (fault, member, ns since the workload began)
    let mut turn = 0usize;
    while started.elapsed() < args.duration {
        let fault = FAULTS[turn % FAULTS.len()];
        turn += 1;
        let leader = cluster.wait_for_leader(STALL).await?;
        let follower = cluster.ids().into_iter().find(|id| *id != leader).unwrap_or(leader);
        let at = workload.now_ns();
        match fault {
            Fault::KillLeader => cluster.kill(leader)?,
            Fault::KillFollower => cluster.kill(follower)?,
            Fault::PartitionLeader => cluster.partition(&[leader])?,
            Fault::PauseLeader => cluster.pause(leader)?,
            Fault::ReplaceFollower => {
                let new = cluster.replace(follower, leader, &[], STALL).await?;
                eprintln!("  member {follower} replaced by member {new}");
                let urls: Vec<String> =
                    cluster.ids().iter().map(|id| cluster.api(*id).map(String::from)).collect::<Result<_, _>>()?;
                workload.set_members(&urls, &cluster.pki_dir())?;
            }
        }
        let member = if matches!(fault, Fault::KillFollower | Fault::ReplaceFollower) { follower } else { leader };
        faults.push((fault, member, at));
        progress(&workload, 20).await.with_context(|| format!("no progress after {fault:?} of member {member}"))?;
        match fault {
            Fault::KillLeader | Fault::KillFollower => cluster.restart(member)?,
            Fault::PartitionLeader => cluster.heal()?,
            Fault::PauseLeader => cluster.resume(member)?,
            Fault::ReplaceFollower => {}
        }
        progress(&workload, 20).await.with_context(|| format!("no progress after undoing {fault:?}"))?;
        eprintln!(
            "  [{:>5.0} s] {fault:?} of member {member}: {} operations acknowledged",
            started.elapsed().as_secs_f64(),
            workload.acknowledged()
        );
    }
    cluster.wait_for_leader(STALL).await?;
    let history = workload.finish().await;
    history.save(&args.out.join("history"))?;
    let report = Report::check(&history, &CheckOptions::default());
    let summary = summary(&faults, &history, &report);
    std::fs::write(args.out.join("summary.txt"), &summary)?;
    println!("{summary}");
    write_logs(&cluster, &args.out)?;
    anyhow::ensure!(report.verdict() == Verdict::Valid, "the run failed its checks; see {}", args.out.display());
    Ok(())
}

/// Waits until `more` operations are acknowledged, within [`STALL`].
async fn progress(workload: &Workload, more: usize) -> anyhow::Result<()> {
    let target = workload.acknowledged() + more;
    let deadline = Instant::now() + STALL;
    while workload.acknowledged() < target {
        anyhow::ensure!(Instant::now() < deadline, "no progress within {STALL:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// The faults, the time from each to the first write invoked after it and acknowledged
/// (failover), and the checkers' report.
fn summary(faults: &[(Fault, u64, u64)], history: &History, report: &Report) -> String {
    let mut out = String::new();
    let mut failovers = Vec::new();
    for (fault, member, at) in faults {
        let first = history
            .ops
            .iter()
            .filter(|op| op.kind.is_write() && op.is_ok() && op.invoked_ns >= *at)
            .filter_map(|op| op.completed_ns)
            .min();
        let took = first.map(|done| (done - at) as f64 / 1e6);
        if matches!(fault, Fault::KillLeader) {
            failovers.extend(took);
        }
        let took = took.map_or("never".to_string(), |ms| format!("{ms:.0} ms"));
        out.push_str(&format!(
            "{:>10.1} s  {fault:?} of member {member}: first acknowledged write after {took}\n",
            *at as f64 / 1e9
        ));
    }
    failovers.sort_by(f64::total_cmp);
    let q = |q: f64| failovers.get(((failovers.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    out.push_str(&format!(
        "\n{} faults; leader kills: {}, failover (kill -> first acknowledged write) p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms\n\n",
        faults.len(),
        failovers.len(),
        q(0.5),
        q(0.99),
        failovers.last().copied().unwrap_or(0.0)
    ));
    out.push_str(&report.to_string());
    out
}

/// Copies the members' logs next to the history (the cluster directory has them too).
fn write_logs(cluster: &FlotillaCluster, out: &Path) -> anyhow::Result<()> {
    for id in cluster.ids() {
        std::fs::write(out.join(format!("member-{id}.log.tail")), cluster.log_tail(id, 200))?;
    }
    Ok(())
}
