//! `flotilla agent`: the node agent's flags, handed to [`node_agent::run`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use node_agent::quantity::{parse_cpu, parse_memory};

#[derive(clap::Args)]
pub struct AgentArgs {
    /// Kubeconfig with the credentials (and CA) to reach the API server.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
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
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
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
        kubeconfig: args.kubeconfig,
        servers: args.servers,
        node_name: args.node_name,
        node_ip: args.node_ip,
        hollow,
        heartbeat: Duration::from_secs(args.heartbeat_secs.max(1)),
        kubelet_port: args.kubelet_port,
        max_pods: args.max_pods,
    };
    node_agent::run(config).await?;
    Ok(())
}
