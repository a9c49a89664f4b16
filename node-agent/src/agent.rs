//! One agent process: its nodes (one real node, or N hollow ones), each with its kubelet
//! endpoint and heartbeat loops; a real node's pods run as containers in the agent's
//! private containerd, hollow nodes' pods in the hollow runtime. [`run`] starts them all
//! and returns on SIGINT or SIGTERM (a real node's containers keep running).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

use crate::client::{self, ApiClient};
use crate::cri_pods::registry::Registry;
use crate::cri_pods::stats;
use crate::cri_pods::worker::NodeContext;
use crate::heartbeat::{self, OnNode};
use crate::host::{self, HostFacts};
use crate::kubelet_api::{self, Endpoint, Pods};
use crate::metrics::{self, Source};
use crate::node::NodeFacts;
use crate::runtime::containerd::{self, Containerd};
use crate::runtime::hollow::HollowRuntime;
use crate::runtime::images;
use crate::{cluster_dns, cni, cri_pods, pods, service_proxy};

/// Where a real node keeps its containerd, pod volumes and logs by default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flotilla/agent";

/// kubelet's default port.
pub const KUBELET_PORT: u16 = 10250;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Credentials and CA (and, without `servers`, the API server).
    pub kubeconfig: PathBuf,
    /// API server endpoints to fail over between; empty: the kubeconfig's.
    pub servers: Vec<String>,
    /// The real node's name; default: the host name.
    pub node_name: Option<String>,
    /// The nodes' InternalIP; default: the address this host reaches the API server from.
    pub node_ip: Option<IpAddr>,
    /// Simulated nodes instead of this machine.
    pub hollow: Option<Hollow>,
    /// How often Leases are renewed and statuses looked at (kubelet: 10 s each).
    pub heartbeat: Duration,
    /// The kubelet endpoint's port; hollow node `i` gets this plus `i`. Default: 10250 for
    /// a real node, any free port for each hollow one.
    pub kubelet_port: Option<u16>,
    /// Pods a real node takes (kubelet's `--max-pods`).
    pub max_pods: u32,
    /// A real node's containerd, pod volumes and logs.
    pub state_dir: PathBuf,
    /// Run the service proxy (a real node only; hollow nodes never do).
    pub service_proxy: bool,
    /// The cluster domain (kubelet's `--cluster-domain`).
    pub cluster_domain: String,
    /// The nameserver ClusterFirst pods get (kubelet's `--cluster-dns`); default: the node
    /// bridge's gateway, where this agent serves cluster DNS.
    pub cluster_dns: Option<IpAddr>,
    /// Serve cluster DNS on this node, at `cluster_dns` or the bridge's gateway (a real node
    /// only; hollow nodes never do).
    pub dns_server: bool,
    /// The process's own Prometheus metrics, served at the kubelet endpoint's `/metrics`
    /// (kubelet's); none: that path is not found.
    pub prometheus: Option<Prometheus>,
}

/// Renders the process's Prometheus metrics on each scrape (the binary installs the recorder).
#[derive(Clone)]
pub struct Prometheus(pub Source);

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prometheus(..)")
    }
}

/// The simulated nodes of `--hollow`.
#[derive(Debug, Clone)]
pub struct Hollow {
    pub count: usize,
    /// Node `i` is named prefix + i.
    pub name_prefix: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    KubeletApi(#[from] kubelet_api::Error),
    #[error(transparent)]
    Containerd(#[from] containerd::Error),
    #[error(transparent)]
    Images(#[from] images::Error),
    /// `--count 0`.
    #[error("--count must be at least 1")]
    NoNodes,
    /// The state dir's path cannot be made absolute.
    #[error("state dir: {0}")]
    StateDir(std::io::Error),
    /// Waiting for a signal failed.
    #[error("signal handling: {0}")]
    Signal(#[from] std::io::Error),
}

/// The nodes this process runs, before their kubelet ports are known.
fn nodes(config: &Config, address: IpAddr, host: &HostFacts) -> Vec<NodeFacts> {
    match &config.hollow {
        Some(h) => (0..h.count)
            .map(|i| NodeFacts::hollow(&format!("{}{i}", h.name_prefix), address, host, h.cpu_millis, h.memory_bytes))
            .collect(),
        None => {
            let name = config.node_name.clone().unwrap_or_else(|| host.hostname.to_lowercase());
            vec![NodeFacts::from_host(&name, address, host, config.max_pods, KUBELET_PORT)]
        }
    }
}

/// The port node `i` asks for.
fn kubelet_port(config: &Config, i: usize) -> u16 {
    match (config.kubelet_port, config.hollow.is_some()) {
        (Some(port), true) => port.saturating_add(i as u16),
        (Some(port), false) => port,
        (None, true) => 0,
        (None, false) => KUBELET_PORT,
    }
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(mut config: Config) -> Result<(), Error> {
    // containerd wants absolute paths in its config.
    config.state_dir = std::path::absolute(&config.state_dir).map_err(Error::StateDir)?;
    if config.hollow.as_ref().is_some_and(|h| h.count == 0) {
        return Err(Error::NoNodes);
    }
    let api = Arc::new(ApiClient::from_kubeconfig(&config.kubeconfig, &config.servers).await?);
    let address = config.node_ip.unwrap_or_else(|| host::address_towards(api.urls()[0]));
    let host = HostFacts::read();
    let mut facts = nodes(&config, address, &host);
    let since = Timestamp::now();
    let runtime = config.hollow.as_ref().map(|_| {
        let nodes: Vec<(String, IpAddr)> = facts.iter().map(|f| (f.name.clone(), f.address)).collect();
        Arc::new(Mutex::new(HollowRuntime::new(&nodes)))
    });
    // A real node: the private containerd with the node's own images.
    let real = match &runtime {
        Some(_) => None,
        None => {
            let containerd = Containerd::start(&config.state_dir).await?;
            images::import_node_images(&containerd.layout.socket(), &config.state_dir).await?;
            if let (Some(node), Ok(version)) = (facts.first_mut(), containerd.cri.version().await) {
                // "containerd 1.6.20~ds1" -> "containerd://1.6.20~ds1", as kubelet reports it.
                node.container_runtime_version = version.replacen(' ', "://", 1);
            }
            Some((containerd, Registry::default()))
        }
    };

    // The kubelet endpoints first: their ports go into the Nodes' status.
    let mut names: Vec<String> = facts.iter().map(|f| f.name.clone()).collect();
    names.extend([host.hostname.clone(), address.to_string(), "localhost".into()]);
    let tls = kubelet_api::tls_acceptor(&names, api.ca_certs())?;
    let bind_ip = if address.is_loopback() { address } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
    for (i, node) in facts.iter_mut().enumerate() {
        let listener = kubelet_api::bind(SocketAddr::new(bind_ip, kubelet_port(&config, i))).await?;
        node.kubelet_port = listener.local_addr().map_err(Error::Signal)?.port();
        let source: Source = match &runtime {
            Some(runtime) => {
                let (runtime, name) = (runtime.clone(), node.name.clone());
                Arc::new(move || {
                    let pods = runtime.lock().unwrap_or_else(PoisonError::into_inner).pods_on(&name);
                    metrics::render(&metrics::hollow_sample(&pods, since, Timestamp::now()))
                })
            }
            None => match &real {
                Some((containerd, _)) => {
                    let latest = stats::Latest::default();
                    tokio::spawn(stats::refresh(containerd.cri.clone(), latest.clone()));
                    Arc::new(move || latest.text())
                }
                None => Arc::new(|| "resource_scrape_error 1\n".to_string()),
            },
        };
        let pods = real
            .as_ref()
            .map(|(containerd, registry)| Pods { cri: containerd.cri.clone(), registry: registry.clone() });
        let prometheus = config.prometheus.as_ref().map(|p| p.0.clone());
        tokio::spawn(kubelet_api::serve(listener, tls.clone(), Endpoint { metrics: source, prometheus, pods }));
    }

    // The cluster DNS address: fixed, or the bridge's gateway once the pod CIDR is known.
    let dns_address = tokio::sync::watch::Sender::new(config.cluster_dns);
    let pod_dns = tokio::sync::watch::Sender::new(cluster_dns::resolv::ClusterDns {
        nameserver: config.cluster_dns.filter(|_| config.hollow.is_none()),
        domain: config.cluster_domain.clone(),
    });
    let on_node: OnNode = match (&runtime, &real) {
        (Some(runtime), _) => {
            let runtime = runtime.clone();
            Arc::new(move |node: &Node| {
                let (Some(name), Some(cidr)) =
                    (node.metadata.name.as_deref(), node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()))
                else {
                    return;
                };
                runtime.lock().unwrap_or_else(PoisonError::into_inner).set_pod_cidr(name, cidr);
            })
        }
        (None, Some((containerd, _))) => {
            // The pod network follows the node's pod CIDR (containerd reloads the config).
            let (conf_dir, ipam_dir) = (containerd.layout.cni_conf_dir(), config.state_dir.join("cni-ipam"));
            let (dns_address, pod_dns) = (dns_address.clone(), pod_dns.clone());
            let gateway_dns = config.dns_server && config.cluster_dns.is_none();
            Arc::new(move |node: &Node| {
                let (Some(name), Some(cidr)) =
                    (node.metadata.name.as_deref(), node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()))
                else {
                    return;
                };
                if let Some(gateway) = cluster_dns::gateway(cidr).filter(|_| gateway_dns) {
                    dns_address.send_if_modified(|a| a.replace(gateway) != Some(gateway));
                    pod_dns.send_if_modified(|d| d.nameserver.replace(gateway) != Some(gateway));
                }
                match cni::write_node_conflist(&conf_dir, &cni::node_conflist(name, cidr, &ipam_dir)) {
                    Ok(true) => tracing::info!(%cidr, bridge = %cni::bridge_name(name), "pod network configured"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "writing the CNI config failed"),
                }
            })
        }
        (None, None) => Arc::new(|_: &Node| {}),
    };
    let count = facts.len() as u32;
    tracing::info!(
        nodes = count,
        hollow = runtime.is_some(),
        servers = ?api.urls(),
        %address,
        "node agent starting"
    );
    if let Some(runtime) = &runtime {
        let addresses: HashMap<String, IpAddr> = facts.iter().map(|f| (f.name.clone(), f.address)).collect();
        tokio::spawn(pods::run(api.clone(), runtime.clone(), addresses));
    }
    if let (Some((containerd, registry)), Some(node)) = (&real, facts.first()) {
        let context = NodeContext {
            name: node.name.clone(),
            host_ip: address.to_string(),
            cri: containerd.cri.clone(),
            api: api.clone(),
            pods_dir: config.state_dir.join("pods"),
            logs_dir: config.state_dir.join("logs").display().to_string(),
            registry: registry.clone(),
            dns: pod_dns.subscribe(),
        };
        tokio::spawn(cri_pods::run(Arc::new(context)));
        if config.service_proxy {
            tokio::spawn(service_proxy::run(api.clone(), cni::bridge_name(&node.name)));
        }
        if config.dns_server {
            tokio::spawn(cluster_dns::run(api.clone(), config.cluster_domain.clone(), dns_address.subscribe()));
        }
    }
    for (i, node) in facts.into_iter().enumerate() {
        // Spread the nodes' beats over the interval.
        let offset = config.heartbeat * i as u32 / count;
        tokio::spawn(heartbeat::run(api.clone(), node, config.heartbeat, offset, on_node.clone()));
    }
    shutdown_signal().await?;
    tracing::info!("node agent stopping");
    if let Some((mut containerd, _)) = real {
        containerd.stop().await;
    }
    Ok(())
}

/// Stops and removes every pod sandbox the agent of `state_dir` made (their containers
/// with them), stops its containerd and removes the service proxy's rules: what
/// `flotilla agent reset` does. The number of sandboxes removed.
pub async fn reset(state_dir: &std::path::Path) -> Result<usize, Error> {
    match service_proxy::remove_rules().await {
        Ok(chains) => tracing::info!(chains, "service proxy rules removed"),
        Err(error) => tracing::warn!(%error, "removing the service proxy rules failed"),
    }
    let mut containerd = Containerd::start(state_dir).await?;
    let managed = HashMap::from([(cri_pods::config::LABEL_MANAGED.to_string(), "true".to_string())]);
    let sandboxes = containerd.cri.list_pod_sandboxes(managed).await.unwrap_or_default();
    for sandbox in &sandboxes {
        if let Err(error) = containerd.cri.stop_and_remove_pod_sandbox(&sandbox.id).await {
            tracing::warn!(%error, sandbox = %sandbox.id, "removing sandbox failed");
        }
    }
    containerd.stop_any().await;
    Ok(sandboxes.len())
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hollow: bool, port: Option<u16>) -> Config {
        Config {
            kubeconfig: PathBuf::new(),
            servers: Vec::new(),
            node_name: Some("worker-1".into()),
            node_ip: None,
            hollow: hollow.then(|| Hollow {
                count: 3,
                name_prefix: "hollow-".into(),
                cpu_millis: 4000,
                memory_bytes: 1 << 34,
            }),
            heartbeat: Duration::from_secs(10),
            kubelet_port: port,
            max_pods: 110,
            state_dir: PathBuf::new(),
            service_proxy: true,
            cluster_domain: cluster_dns::DEFAULT_DOMAIN.into(),
            cluster_dns: None,
            dns_server: true,
            prometheus: None,
        }
    }

    #[test]
    fn hollow_nodes_are_numbered_and_get_a_port_each() {
        let host = HostFacts::read();
        let address = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let names: Vec<String> = nodes(&config(true, None), address, &host).into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["hollow-0", "hollow-1", "hollow-2"]);
        assert_eq!(kubelet_port(&config(true, None), 2), 0);
        assert_eq!(kubelet_port(&config(true, Some(20000)), 2), 20002);
        let real = nodes(&config(false, None), address, &host);
        assert_eq!(real.len(), 1);
        assert_eq!(real[0].name, "worker-1");
        assert_eq!(kubelet_port(&config(false, None), 0), KUBELET_PORT);
    }
}
