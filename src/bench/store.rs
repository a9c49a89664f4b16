//! The store benchmark: N concurrent clients doing 256-byte puts, then linearizable gets,
//! against Flotilla members (separate processes) and an etcd cluster, on loopback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chaos::FlotillaCluster;
use hdrhistogram::Histogram;
use raft_store::client::StoreClient;
use raft_store::RangeRequest;

use super::etcd::EtcdCluster;

#[derive(clap::Args)]
pub struct StoreBenchArgs {
    /// Systems to measure: flotilla, etcd.
    #[arg(long, value_delimiter = ',', default_value = "flotilla,etcd")]
    targets: Vec<Target>,
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    members: Vec<usize>,
    /// Numbers of concurrent clients.
    #[arg(long, value_delimiter = ',', default_value = "1,256")]
    clients: Vec<usize>,
    /// Measured seconds per data point (after one second of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Distinct keys written (each client cycles through its share).
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Send every request to the leader instead of spreading clients over all members.
    #[arg(long)]
    leader_only: bool,
    /// Where data dirs and member logs go (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Target {
    Flotilla,
    Etcd,
}

#[derive(Clone)]
enum Client {
    Flotilla(StoreClient),
    Etcd(Box<etcd_client::KvClient>),
}

impl Client {
    async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Client::Flotilla(c) => c.put(key, value).await.map(|_| ())?,
            Client::Etcd(c) => c.put(key, value, None).await.map(|_| ())?,
        }
        Ok(())
    }

    async fn get(&mut self, key: Vec<u8>) -> anyhow::Result<()> {
        match self {
            Client::Flotilla(c) => c.range(&RangeRequest::key(key), true).await.map(|_| ())?,
            // etcd's default range is linearizable.
            Client::Etcd(c) => c.get(key, None).await.map(|_| ())?,
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
}

struct Outcome {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latency_us: Histogram<u64>,
}

pub async fn run(args: StoreBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let work = args.work_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&work)?;
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    eprintln!(
        "store benchmark: {}-byte values, {} keys, {} s per point; work dir {}",
        args.value_size,
        args.keys,
        args.seconds,
        work.display()
    );
    for &members in &args.members {
        for &target in &args.targets {
            let base = work.join(format!("{target:?}-{members}").to_lowercase());
            std::fs::create_dir_all(&base)?;
            // Keep the cluster alive while its clients run.
            let (_flotilla, _etcd, clients) = match target {
                Target::Flotilla => {
                    let cluster = FlotillaCluster::start(&me, &base, members as u64, &[])?;
                    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
                    let ids = if args.leader_only { vec![leader] } else { cluster.ids() };
                    let clients = ids
                        .into_iter()
                        .map(|id| Ok(Client::Flotilla(cluster.client(id)?)))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    (Some(cluster), None, clients)
                }
                Target::Etcd => {
                    let cluster = EtcdCluster::start(&args.etcd_bin, &base, members).await?;
                    let mut clients = Vec::new();
                    for endpoint in &cluster.endpoints {
                        let mut c = etcd_client::Client::connect([format!("http://{endpoint}")], None)
                            .await
                            .with_context(|| format!("connecting to etcd at {endpoint}"))?;
                        let status = c.status().await?;
                        let is_leader = status.header().is_some_and(|h| h.member_id() == status.leader());
                        if args.leader_only && !is_leader {
                            continue;
                        }
                        clients.push(Client::Etcd(Box::new(c.kv_client())));
                    }
                    (None, Some(cluster), clients)
                }
            };
            for &n in &args.clients {
                for op in [Op::Put, Op::Get] {
                    let name = if op == Op::Put { "put" } else { "get (linearizable)" };
                    eprint!("{target:?} members={members} clients={n} {name} ... ");
                    let out = measure(&clients, n, op, &args).await;
                    let row = Row { target, members, clients: n, op: name, out };
                    eprintln!("{}", row.summary());
                    rows.push(row);
                }
            }
        }
    }
    println!("| system | members | clients | op | ops/s | p50 ms | p99 ms | p99.9 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.markdown());
    }
    Ok(())
}

/// Runs `n` clients (spread over the members' connections) for a warm-up second, then for
/// `args.seconds`, and returns what the measured part did.
async fn measure(clients: &[Client], n: usize, op: Op, args: &StoreBenchArgs) -> Outcome {
    let value = Arc::new(vec![b'x'; args.value_size]);
    let keys_each = (args.keys / n).max(1);
    let warm_until = Instant::now() + Duration::from_secs(1);
    let stop_at = warm_until + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..n)
        .map(|t| {
            let mut client = clients[t % clients.len()].clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new(3).expect("3 significant figures is valid");
                let (mut ops, mut errors, mut i) = (0u64, 0u64, 0usize);
                loop {
                    let key = format!("/bench/{t}/{}", i % keys_each).into_bytes();
                    i += 1;
                    let started = Instant::now();
                    if started >= stop_at {
                        break;
                    }
                    let result = match op {
                        Op::Put => client.put(key, value.to_vec()).await,
                        Op::Get => client.get(key).await,
                    };
                    if started < warm_until {
                        continue;
                    }
                    match result {
                        Ok(()) => {
                            ops += 1;
                            let _ = hist.record(started.elapsed().as_micros() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (ops, errors, hist)
            })
        })
        .collect();
    let mut total = Outcome {
        ops: 0,
        errors: 0,
        elapsed: Duration::from_secs(args.seconds),
        latency_us: Histogram::new(3).expect("valid"),
    };
    for task in tasks {
        if let Ok((ops, errors, hist)) = task.await {
            total.ops += ops;
            total.errors += errors;
            let _ = total.latency_us.add(hist);
        }
    }
    total
}

struct Row {
    target: Target,
    members: usize,
    clients: usize,
    op: &'static str,
    out: Outcome,
}

impl Row {
    fn rate(&self) -> f64 {
        self.out.ops as f64 / self.out.elapsed.as_secs_f64()
    }

    fn ms(&self, q: f64) -> f64 {
        self.out.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    fn summary(&self) -> String {
        format!(
            "{:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} errors",
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.out.errors
        )
    }

    fn markdown(&self) -> String {
        format!(
            "| {:?} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |",
            self.target,
            self.members,
            self.clients,
            self.op,
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.out.errors
        )
    }
}
