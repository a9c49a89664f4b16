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
    /// Operations to measure, in this order: put, get (linearizable).
    #[arg(long, value_delimiter = ',', default_value = "put,get")]
    ops: Vec<Op>,
    /// Send every request to the leader instead of spreading clients over all members.
    #[arg(long)]
    leader_only: bool,
    /// Where data dirs and member logs go (a temporary dir by default).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Drive a running Flotilla cluster at these member addresses (`host:port`) instead of
    /// starting one (`--members` and `--targets` are then ignored; no CPU figures).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Op {
    Put,
    Get,
}

impl Op {
    /// The operation's name in the results.
    fn label(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get (linearizable)",
        }
    }
}

struct Outcome {
    ops: u64,
    errors: u64,
    /// The first error a client saw, so that a run with errors says what they were.
    first_error: Option<String>,
    elapsed: Duration,
    latency_us: Histogram<u64>,
    /// CPU time the members (all together) and this process (the clients) used while measured.
    server_cpu: Duration,
    client_cpu: Duration,
}

/// User plus system CPU time of process `pid` so far (`None` once it is gone).
fn process_cpu(pid: &str, ticks_per_second: u64) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / ticks_per_second.max(1)))
}

fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// CPU time of the servers `pids` (summed) and of this process.
fn cpu_now(pids: &[u32], ticks: u64) -> (Duration, Duration) {
    let servers = pids.iter().filter_map(|pid| process_cpu(&pid.to_string(), ticks)).sum();
    (servers, process_cpu("self", ticks).unwrap_or_default())
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
    if !args.endpoints.is_empty() {
        let clients = args
            .endpoints
            .iter()
            .map(|addr| Ok(Client::Flotilla(StoreClient::new(addr)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let what = format!("Flotilla at {}", args.endpoints.join(","));
        rows.extend(measure_all(&clients, &[], Target::Flotilla, clients.len(), &what, &args).await);
    }
    for &members in args.members.iter().filter(|_| args.endpoints.is_empty()) {
        for &target in &args.targets {
            let base = work.join(format!("{target:?}-{members}").to_lowercase());
            std::fs::create_dir_all(&base)?;
            // Keep the cluster alive while its clients run.
            let (_flotilla, _etcd, clients, pids) = match target {
                Target::Flotilla => {
                    let cluster = FlotillaCluster::start(&me, &base, members as u64, &[])?;
                    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
                    let ids = if args.leader_only { vec![leader] } else { cluster.ids() };
                    let clients = ids
                        .into_iter()
                        .map(|id| Ok(Client::Flotilla(cluster.client(id)?)))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let pids = cluster.pids();
                    (Some(cluster), None, clients, pids)
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
                    let pids = cluster.pids();
                    (None, Some(cluster), clients, pids)
                }
            };
            let what = format!("{target:?} members={members}");
            rows.extend(measure_all(&clients, &pids, target, members, &what, &args).await);
        }
    }
    println!(
        "| system | members | clients | op | ops/s | p50 ms | p99 ms | p99.9 ms | errors | servers' CPU µs/op | clients' CPU µs/op |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        println!("{}", row.markdown());
    }
    Ok(())
}

/// Measures every client count and operation of `args` against one cluster (`what` names
/// it in the progress lines), a row each.
async fn measure_all(
    clients: &[Client],
    pids: &[u32],
    target: Target,
    members: usize,
    what: &str,
    args: &StoreBenchArgs,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for &n in &args.clients {
        for &op in &args.ops {
            eprint!("{what} clients={n} {} ... ", op.label());
            let out = measure(clients, pids, n, op, args).await;
            let row = Row { target, members, clients: n, op: op.label(), out };
            eprintln!("{}", row.summary());
            rows.push(row);
        }
    }
    rows
}

/// Runs `n` clients (spread over the members' connections) for a warm-up second, then for
/// `args.seconds`, and returns what the measured part did, with the CPU time used by the
/// server processes `pids` and by this one meanwhile.
async fn measure(clients: &[Client], pids: &[u32], n: usize, op: Op, args: &StoreBenchArgs) -> Outcome {
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
                let mut first_error = None;
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
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                (ops, errors, first_error, hist)
            })
        })
        .collect();
    // A benchmark's clock, not a test's synchronisation: CPU is read when measuring starts and ends.
    let ticks = ticks_per_second();
    tokio::time::sleep_until(warm_until.into()).await;
    let (server_start, client_start) = cpu_now(pids, ticks);
    tokio::time::sleep_until(stop_at.into()).await;
    let (server_end, client_end) = cpu_now(pids, ticks);
    let mut total = Outcome {
        ops: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::from_secs(args.seconds),
        latency_us: Histogram::new(3).expect("valid"),
        server_cpu: server_end.saturating_sub(server_start),
        client_cpu: client_end.saturating_sub(client_start),
    };
    for task in tasks {
        if let Ok((ops, errors, first_error, hist)) = task.await {
            total.ops += ops;
            total.errors += errors;
            total.first_error = total.first_error.or(first_error);
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

    /// CPU microseconds per completed operation.
    fn cpu_per_op(&self, cpu: Duration) -> f64 {
        cpu.as_micros() as f64 / self.out.ops.max(1) as f64
    }

    fn summary(&self) -> String {
        let first = self.out.first_error.as_ref().map(|e| format!(" (first: {e})")).unwrap_or_default();
        format!(
            "{:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, {} errors{first}, CPU/op: servers {:.0} us, clients {:.0} us",
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.out.errors,
            self.cpu_per_op(self.out.server_cpu),
            self.cpu_per_op(self.out.client_cpu),
        )
    }

    fn markdown(&self) -> String {
        format!(
            "| {:?} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {:.0} |",
            self.target,
            self.members,
            self.clients,
            self.op,
            self.rate(),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.out.errors,
            self.cpu_per_op(self.out.server_cpu),
            self.cpu_per_op(self.out.client_cpu),
        )
    }
}
