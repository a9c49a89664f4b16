//! `flotilla cluster up`: a local multi-process control plane for trying HA (and for the
//! chaos suite): N `flotilla server` members on loopback, bootstrapped together, sharing one
//! certificate directory, with an admin kubeconfig that has one context per member.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Start members 1..=N as child processes and run until SIGINT/SIGTERM.
    Up(UpArgs),
    /// Make the certificates every member of a cluster shares (CA, serving, admin,
    /// front-proxy) in DIR, if missing; then copy DIR to each machine and start each member
    /// with `flotilla server --pki-dir DIR`.
    Pki {
        #[arg(long)]
        dir: PathBuf,
        /// Extra DNS name or IP address for the serving certificate (repeatable): the
        /// members' addresses when they are not on loopback.
        #[arg(long = "tls-san", value_name = "NAME")]
        tls_sans: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct UpArgs {
    /// How many members: 3 or 5 for a cluster that survives one or two failures.
    #[arg(long, default_value_t = 3)]
    members: u64,
    /// Where the cluster keeps its data: DATA_DIR/member-N (store and log of each member),
    /// DATA_DIR/pki (the shared certificates), DATA_DIR/kubeconfig.
    #[arg(long, default_value = "./flotilla-cluster")]
    data_dir: PathBuf,
    /// Member N serves the Kubernetes API on 127.0.0.1:(API_PORT + N - 1).
    #[arg(long, default_value_t = 6443)]
    api_port: u16,
    /// Member N's store (Raft) endpoint is 127.0.0.1:(STORE_PORT + N - 1).
    #[arg(long, default_value_t = 2380)]
    store_port: u16,
    /// Raft election timeout range (ms); heartbeats every third of the minimum.
    #[arg(long, default_value_t = 100)]
    election_timeout_min_ms: u64,
    #[arg(long, default_value_t = 200)]
    election_timeout_max_ms: u64,
}

pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Up(args) => up(args).await,
        ClusterCommand::Pki { dir, tls_sans } => {
            api_gateway::pki::load_or_create(&dir, &tls_sans)?;
            eprintln!("the cluster's certificates are in {}", dir.display());
            Ok(())
        }
    }
}

/// One member's addresses.
struct Member {
    id: u64,
    api: SocketAddr,
    store: SocketAddr,
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.members == 0 || args.members > 7 {
        bail!("--members must be between 1 and 7 (3 or 5 for HA)");
    }
    let members: Vec<Member> = (1..=args.members)
        .map(|id| {
            let offset = u16::try_from(id - 1).unwrap_or(0);
            Member {
                id,
                api: ([127, 0, 0, 1], args.api_port + offset).into(),
                store: ([127, 0, 0, 1], args.store_port + offset).into(),
            }
        })
        .collect();
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    // Made once here, before the members start, so that they share one CA.
    let pki_dir = args.data_dir.join("pki");
    let pki = api_gateway::pki::load_or_create(&pki_dir, &[])?;
    let servers: Vec<(String, String)> =
        members.iter().map(|m| (format!("member-{}", m.id), format!("https://{}", m.api))).collect();
    let kubeconfig = args.data_dir.join("kubeconfig");
    api_gateway::kubeconfig::write_contexts(&kubeconfig, &servers, &pki)?;

    let initial: Vec<String> = members.iter().map(|m| format!("{}={}", m.id, m.store)).collect();
    let exe = std::env::current_exe().context("finding the flotilla binary")?;
    let mut children = Vec::new();
    for m in &members {
        let child = spawn_member(&exe, &args, m, &initial.join(","), &pki_dir)?;
        children.push((m.id, child));
    }
    let started = Instant::now();
    for m in &members {
        wait_for_port(m.api, Duration::from_secs(60))
            .with_context(|| format!("member {} did not serve its API; see its log", m.id))?;
        eprintln!("  member {} serving https://{} ({:.1} s)", m.id, m.api, started.elapsed().as_secs_f64());
    }
    eprintln!(
        "flotilla cluster is up: {} members, data in {}\n  kubectl --kubeconfig {} --context member-N get --raw /readyz",
        members.len(),
        args.data_dir.display(),
        kubeconfig.display()
    );
    let result = supervise(&mut children).await;
    for (id, child) in &mut children {
        stop(*id, child);
    }
    result
}

fn spawn_member(exe: &Path, args: &UpArgs, m: &Member, initial: &str, pki_dir: &Path) -> anyhow::Result<Child> {
    let dir = args.data_dir.join(format!("member-{}", m.id));
    let log_path = args.data_dir.join(format!("member-{}.log", m.id));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let heartbeat = (args.election_timeout_min_ms / 3).max(10);
    Command::new(exe)
        .arg("server")
        .args(["--id", &m.id.to_string()])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--listen", &m.store.to_string(), "--initial-cluster", initial])
        .args(["--api-addr", &m.api.to_string()])
        .arg("--pki-dir")
        .arg(pki_dir)
        .args(["--heartbeat-ms", &heartbeat.to_string()])
        .args(["--election-timeout-min-ms", &args.election_timeout_min_ms.to_string()])
        .args(["--election-timeout-max-ms", &args.election_timeout_max_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting member {}", m.id))
}

/// Polls until `addr` accepts connections (a server starting up), within `timeout`.
fn wait_for_port(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Runs until SIGINT/SIGTERM, reporting members that exit (killed to try failover, say).
async fn supervise(children: &mut [(u64, Child)]) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut reported = vec![false; children.len()];
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for ((id, child), reported) in children.iter_mut().zip(reported.iter_mut()) {
            if let (Ok(Some(status)), false) = (child.try_wait(), *reported) {
                eprintln!("  member {id} exited ({status}); the others carry on");
                *reported = true;
            }
        }
    }
}

/// Stops a member with SIGTERM (it shuts its store down cleanly), SIGKILL after 10 s.
fn stop(id: u64, child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::warn!(member = id, "did not stop within 10 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}
