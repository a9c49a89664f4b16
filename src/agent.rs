//! `flotilla agent`: the node agent's flags, handed to [`node_agent::run`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use node_agent::quantity::{parse_cpu, parse_memory};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    action: Option<AgentAction>,
    /// Kubeconfig with the credentials (and CA) to reach the API server.
    #[arg(long, env = "KUBECONFIG", required = true)]
    kubeconfig: Option<PathBuf>,
    /// API server endpoints to fail over between (comma-separated or repeated); default:
    /// the kubeconfig's server.
    #[arg(long = "server", value_delimiter = ',', value_name = "URL")]
    servers: Vec<String>,
    /// The node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's InternalIP (default: the address this host reaches the API server from).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Run simulated nodes with an in-memory runtime (pods go Running without containers).
    #[arg(long)]
    hollow: bool,
    /// How many hollow nodes.
    #[arg(long, default_value_t = 1, requires = "hollow")]
    count: usize,
    /// Hollow node `i` is named PREFIX + i.
    #[arg(long, default_value = "hollow-", requires = "hollow")]
    name_prefix: String,
    /// Each hollow node's CPU capacity.
    #[arg(long, default_value = "4", requires = "hollow")]
    hollow_cpu: String,
    /// Each hollow node's memory capacity.
    #[arg(long, default_value = "16Gi", requires = "hollow")]
    hollow_memory: String,
    /// Seconds between Lease renewals and node status checks (kubelet: 10).
    #[arg(long, default_value_t = 10)]
    heartbeat_secs: u64,
    /// Port of the kubelet endpoint (/metrics/resource); hollow node i gets PORT + i.
    /// Default: 10250, or any free port for each hollow node.
    #[arg(long)]
    kubelet_port: Option<u16>,
    /// Pods this node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Where a real node keeps its private containerd, pod volumes and container logs.
    #[arg(long, default_value = node_agent::agent::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Run no service proxy (kube-proxy's iptables rules for Service cluster IPs and node
    /// ports); a real node runs one by default, hollow nodes never do.
    #[arg(long)]
    no_service_proxy: bool,
    /// The cluster domain Service and pod names are under.
    #[arg(long, default_value = node_agent::cluster_dns::DEFAULT_DOMAIN)]
    cluster_domain: String,
    /// The nameserver pods with dnsPolicy ClusterFirst get, where this agent serves cluster
    /// DNS (default: the node bridge's gateway); with --no-cluster-dns, a DNS server elsewhere
    /// (like CoreDNS behind a Service).
    #[arg(long, value_name = "ADDRESS")]
    cluster_dns: Option<IpAddr>,
    /// Serve no cluster DNS (Service and pod names for the node's pods); ClusterFirst pods
    /// then get the host's resolv.conf, or --cluster-dns. Hollow nodes never serve it.
    #[arg(long)]
    no_cluster_dns: bool,
}

#[derive(clap::Subcommand)]
enum AgentAction {
    /// Stop and remove every pod the agent of STATE_DIR runs, stop its containerd, and remove
    /// the service proxy's iptables rules.
    Reset {
        #[arg(long, default_value = node_agent::agent::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

/// `flotilla images import FILE`: images for a node that pulls from no registry.
#[derive(clap::Args)]
pub struct ImagesArgs {
    #[command(subcommand)]
    action: ImagesAction,
}

#[derive(clap::Subcommand)]
enum ImagesAction {
    /// Import an image archive (docker-archive or OCI layout tar) into the node's containerd.
    Import {
        file: PathBuf,
        #[arg(long, default_value = node_agent::agent::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
}

pub async fn images(args: ImagesArgs) -> anyhow::Result<()> {
    match args.action {
        ImagesAction::Import { file, state_dir } => {
            let socket = node_agent::runtime::containerd::Layout::new(&state_dir).socket();
            anyhow::ensure!(
                socket.exists(),
                "no containerd serving at {} (is `flotilla agent` or `flotilla up` running?)",
                socket.display()
            );
            node_agent::runtime::images::import(&socket, &file).await?;
            println!("imported {}", file.display());
            Ok(())
        }
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    if let Some(AgentAction::Reset { state_dir }) = args.action {
        let removed = node_agent::agent::reset(&state_dir).await?;
        println!("removed {removed} pod sandboxes; containerd of {} stopped", state_dir.display());
        return Ok(());
    }
    let kubeconfig = args.kubeconfig.context("--kubeconfig is required")?;
    let hollow = if args.hollow {
        Some(node_agent::Hollow {
            count: args.count,
            name_prefix: args.name_prefix,
            cpu_millis: parse_cpu(&args.hollow_cpu).context("--hollow-cpu")?,
            memory_bytes: parse_memory(&args.hollow_memory).context("--hollow-memory")?,
        })
    } else {
        None
    };
    let config = node_agent::Config {
        kubeconfig,
        servers: args.servers,
        node_name: args.node_name,
        node_ip: args.node_ip,
        hollow,
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        kubelet_port: args.kubelet_port,
        max_pods: args.max_pods,
        state_dir: args.state_dir,
        service_proxy: !args.no_service_proxy,
        cluster_domain: args.cluster_domain,
        cluster_dns: args.cluster_dns,
        dns_server: !args.no_cluster_dns,
        prometheus: Some(crate::member::agent_metrics(&api_gateway::install_prometheus()?)),
    };
    node_agent::run(config).await?;
    Ok(())
}
