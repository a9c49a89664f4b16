//! The failover benchmark: SIGKILL the leader of a 3-member cluster (separate processes on
//! loopback) again and again, and time each kill until the first acknowledged write through
//! a survivor; Flotilla's store and etcd side by side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chaos::FlotillaCluster;
use hdrhistogram::Histogram;

use super::etcd::EtcdCluster;

#[derive(clap::Args)]
pub struct FailoverBenchArgs {
    /// Systems to measure: flotilla, etcd.
    #[arg(long, value_delimiter = ',', default_value = "flotilla,etcd")]
    targets: Vec<Target>,
    /// Leader kills per system.
    #[arg(long, default_value_t = 50)]
    kills: usize,
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Flotilla's Raft timings (`flotilla server` flags; these are its defaults).
    #[arg(long, default_value_t = 40)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 100)]
    election_timeout_min_ms: u64,
    #[arg(long, default_value_t = 200)]
    election_timeout_max_ms: u64,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Where data dirs and member logs go (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Flotilla,
    Etcd,
}

/// How long one write attempt may take before the next member is tried.
const ATTEMPT: Duration = Duration::from_millis(100);

pub async fn run(args: FailoverBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut rows = Vec::new();
    for &target in &args.targets {
        let base = work.join(format!("failover-{target:?}").to_lowercase());
        std::fs::create_dir_all(&base)?;
        eprintln!("{target:?}: {} leader kills, {} members; work dir {}", args.kills, args.members, base.display());
        let times = match target {
            Target::Flotilla => flotilla(&args, &base).await?,
            Target::Etcd => etcd(&args, &base).await?,
        };
        rows.push((target, times));
    }
    println!("| system | kills | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (target, times) in &rows {
        let q = |q: f64| times.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {target:?} | {} | {:.0} | {:.0} | {:.0} |",
            times.len(),
            q(0.5),
            q(0.99),
            times.max() as f64 / 1000.0
        );
    }
    Ok(())
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 120_000_000, 3)?)
}

fn record(times: &mut Histogram<u64>, kill: usize, took: Duration) -> anyhow::Result<()> {
    eprintln!("  kill {kill}: first acknowledged write after {:.0} ms", took.as_secs_f64() * 1000.0);
    times.record(took.as_micros().max(1) as u64)?;
    Ok(())
}

async fn flotilla(args: &FailoverBenchArgs, base: &std::path::Path) -> anyhow::Result<Histogram<u64>> {
    let me = std::env::current_exe()?;
    let timings = [
        "--heartbeat-ms".to_string(),
        args.heartbeat_ms.to_string(),
        "--election-timeout-min-ms".to_string(),
        args.election_timeout_min_ms.to_string(),
        "--election-timeout-max-ms".to_string(),
        args.election_timeout_max_ms.to_string(),
    ];
    let timings: Vec<&str> = timings.iter().map(String::as_str).collect();
    let mut cluster = FlotillaCluster::start(&me, base, args.members as u64, &timings)?;
    let mut times = histogram()?;
    for kill in 0..args.kills {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let survivors: Vec<_> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != leader)
            .map(|id| cluster.client(id))
            .collect::<Result<_, _>>()?;
        // A write through the leader first: the clients' connections are up before the kill.
        survivors[0].put(format!("/failover/warm/{kill}"), "x").await?;
        let killed = Instant::now();
        cluster.kill(leader)?;
        let mut attempt = 0usize;
        loop {
            let client = &survivors[attempt % survivors.len()];
            attempt += 1;
            let put = client.put(format!("/failover/{kill}"), "x");
            match tokio::time::timeout(ATTEMPT, put).await {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => tracing::debug!(attempt, at = ?killed.elapsed(), error = %e, "write refused"),
                Err(_) => tracing::debug!(attempt, at = ?killed.elapsed(), "write timed out"),
            }
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "no write acknowledged 60 s after kill {kill}");
        }
        record(&mut times, kill, killed.elapsed())?;
        cluster.restart(leader)?;
        settle(&cluster).await?;
    }
    Ok(times)
}

/// Waits until every member agrees on a leader and has applied everything it committed:
/// the next kill then starts from a quiet cluster, not from one still catching up.
async fn settle(cluster: &FlotillaCluster) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        cluster.client(leader)?.put("/failover/settle", "x").await?;
        let wanted = cluster.client(leader)?.status().await?.applied_index;
        let mut behind = false;
        for id in cluster.ids() {
            behind |= cluster.client(id)?.status().await?.applied_index < wanted;
        }
        if !behind {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the cluster did not settle within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn etcd(args: &FailoverBenchArgs, base: &std::path::Path) -> anyhow::Result<Histogram<u64>> {
    let mut cluster = EtcdCluster::start(&args.etcd_bin, base, args.members).await?;
    let mut times = histogram()?;
    for kill in 0..args.kills {
        let leader = cluster.leader(Duration::from_secs(30)).await?;
        let mut survivors = Vec::new();
        for (i, endpoint) in cluster.endpoints.iter().enumerate().filter(|(i, _)| *i != leader) {
            let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
                .await
                .with_context(|| format!("connecting to etcd member {i}"))?;
            survivors.push(client.kv_client());
        }
        survivors[0].put(format!("/failover/warm/{kill}"), "x", None).await?;
        let killed = Instant::now();
        cluster.kill(leader)?;
        let mut attempt = 0usize;
        loop {
            let n = survivors.len();
            let client = &mut survivors[attempt % n];
            attempt += 1;
            let put = client.put(format!("/failover/{kill}"), "x", None);
            if let Ok(Ok(_)) = tokio::time::timeout(ATTEMPT, put).await {
                break;
            }
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "no write acknowledged 60 s after kill {kill}");
        }
        record(&mut times, kill, killed.elapsed())?;
        cluster.restart(leader).await?;
    }
    Ok(times)
}
