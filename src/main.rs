//! The `flotilla` binary: assembles the crates into the commands users run.
//!
//! `up` runs the embedded single-node cluster, `server` runs one control-plane member,
//! `cluster up` runs a local multi-member control plane, `store` pokes a member's store API,
//! `bench` runs the benchmarks kept in the repo, `agent` runs a node agent (or hollow nodes).

mod agent;
mod bench;
mod chaos_cmd;
mod cluster;
mod gateway;
mod kubernetes_endpoints;
mod logging;
mod member;
mod member_cmd;
mod store_cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "flotilla", version, about = "A Kubernetes-compatible control plane")]
struct Cli {
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text", env = "FLOTILLA_LOG_FORMAT")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded single-node cluster: one control-plane member, data in one directory.
    Up(member::UpArgs),
    /// Run one member of a (possibly multi-member) control plane.
    Server(member::ServerArgs),
    /// Run a local multi-member control plane (one process per member).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The control plane's members: list, add, remove (online).
    Member(member_cmd::MemberArgs),
    /// Talk to a member's store: status, get, put, membership.
    Store(store_cmd::StoreArgs),
    /// Run a benchmark.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Chaos tools: check a recorded history.
    #[command(subcommand)]
    Chaos(chaos_cmd::ChaosCommand),
    /// Run a node agent: register a Node, heartbeat, run its pods (`--hollow`: simulated nodes).
    Agent(agent::AgentArgs),
    /// Images of the local node (it pulls from no registry): import.
    Images(agent::ImagesArgs),
}

/// mimalloc instead of glibc's malloc: a member allocates and frees per request and per
/// Raft message from several threads, and glibc's allocator took ~13% of the store
/// benchmark's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => member::up(args).await,
            Command::Server(args) => member::server(args).await,
            Command::Cluster(cmd) => cluster::run(cmd).await,
            Command::Member(args) => member_cmd::run(args).await,
            Command::Store(args) => store_cmd::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
            Command::Chaos(cmd) => chaos_cmd::run(cmd).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Images(args) => agent::images(args).await,
        }
    })
}
