//! `flotilla up` and `flotilla server`: run a control-plane member until SIGINT/SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use raft_store::client::StoreClient;
use raft_store::node::CompactionPolicy;
use raft_store::{NodeId, StoreConfig, StoreNode};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the cluster keeps its data: the store, the certificates (DATA_DIR/pki/) and the
    /// admin kubeconfig (DATA_DIR/kubeconfig, for `kubectl --kubeconfig`).
    #[arg(long, default_value = "./flotilla-data")]
    data_dir: PathBuf,
    /// Port of the HTTPS API server (the Kubernetes API, /version, /livez, /readyz, /metrics).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Address the API server binds, as kube-apiserver's flag: all interfaces by default, so
    /// that pods reach it (through the `kubernetes` Service) and kubectl on 127.0.0.1.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address the `kubernetes` Service's endpoints give for this API server (pods reach
    /// it there); in the serving certificate too. Defaults to --bind-address when that is a
    /// specific non-loopback address, else to this host's primary IPv4 address.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// Extra DNS name or IP address for the serving certificate (repeatable); localhost,
    /// 127.0.0.1, ::1, kubernetes[.default[.svc[.cluster.local]]], the `kubernetes` Service's
    /// cluster IP and the advertise address are always in it.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Static bearer tokens, as kube-apiserver's flag: CSV lines `token,user,uid,"group1,group2"`.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// Address of the store's gRPC endpoint.
    #[arg(long, default_value = "127.0.0.1:2380")]
    store_listen: SocketAddr,
    /// The scheduler's KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1, YAML):
    /// its profiles (scheduler names) and extenders.
    #[arg(long, value_name = "FILE")]
    scheduler_config: Option<PathBuf>,
    /// Run no node: the control plane only (by default this machine joins as a node whose
    /// pods run in a private containerd under DATA_DIR/node).
    #[arg(long)]
    no_node: bool,
    /// Port of the node's kubelet endpoint (logs, exec, port-forward, metrics).
    #[arg(long, default_value_t = node_agent::agent::KUBELET_PORT)]
    kubelet_port: u16,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// This member's id (unique in the cluster, > 0).
    #[arg(long)]
    id: NodeId,
    #[arg(long)]
    data_dir: PathBuf,
    /// Address the store's gRPC server binds (member traffic and store clients).
    #[arg(long, default_value = "127.0.0.1:2380")]
    listen: SocketAddr,
    /// Address other members use to reach this one (defaults to --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Bootstrap a new cluster: every initial member gets the same list, `id=host:port,...`.
    #[arg(long, conflicts_with = "join")]
    initial_cluster: Option<String>,
    /// Join an existing cluster through any of its members (`host:port`).
    #[arg(long)]
    join: Option<String>,
    /// Address of the health and metrics endpoints (/livez, /readyz, /metrics) over plain HTTP,
    /// without TLS or authentication; off when not given.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// Address of this member's HTTPS Kubernetes API server; off when not given. Every member
    /// serves the whole API: writes go through the Raft leader, reads and watches are served
    /// from this member's store.
    #[arg(long)]
    api_addr: Option<SocketAddr>,
    /// The address the `kubernetes` Service's endpoints give for this member's API server
    /// (with the --api-addr port). Defaults to --api-addr's address when that is a specific
    /// non-loopback one, else to this host's primary IPv4 address (pods reach a member bound
    /// to loopback only through an --api-addr on 0.0.0.0). Added to the serving certificate
    /// only when given here: members sharing --pki-dir would otherwise each issue it again.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The cluster's certificates (CA, serving, admin, front-proxy): one directory that every
    /// member shares (copy it to other machines); made here when missing. Defaults to
    /// DATA_DIR/pki.
    #[arg(long)]
    pki_dir: Option<PathBuf>,
    /// Extra DNS name or IP address for the serving certificate (repeatable), as for `up`.
    #[arg(long = "tls-san", value_name = "NAME")]
    tls_sans: Vec<String>,
    /// Static bearer tokens, as for `up`.
    #[arg(long, value_name = "FILE")]
    token_auth_file: Option<PathBuf>,
    /// The scheduler's KubeSchedulerConfiguration, as for `up`.
    #[arg(long, value_name = "FILE")]
    scheduler_config: Option<PathBuf>,
    /// Raft timings: leader heartbeats, and the randomised election timeout after which a
    /// follower that heard nothing stands for election (etcd's are 100 ms and 1 s). Failover
    /// takes about two election timeouts: a voter refuses votes for the maximum timeout after
    /// its last heartbeat (openraft's leader lease), so the first round fails
    /// (BENCHMARKS.md: p99 about 0.4 s with these, 0.65 s with 150-300 ms).
    #[arg(long, default_value_t = 40)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 100)]
    election_timeout_min_ms: u64,
    #[arg(long, default_value_t = 200)]
    election_timeout_max_ms: u64,
    /// Build a Raft snapshot after this many log entries.
    #[arg(long, default_value_t = 20_000)]
    snapshot_after_logs: u64,
    /// Automatic compaction: keep this many newest revisions (0 turns compaction off).
    #[arg(long, default_value_t = 10_000)]
    compaction_retain: i64,
    /// Automatic compaction: how often the leader checks, in seconds.
    #[arg(long, default_value_t = 60)]
    compaction_interval_secs: u64,
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.scheduler_config {
        actors::scheduler::config::install(actors::scheduler::config::SchedulerConfig::load(path)?);
    }
    let prometheus = api_gateway::install_prometheus()?;
    let advertise = args.advertise_address.unwrap_or_else(|| default_advertise_address(args.bind_address));
    let names: Vec<String> = args.tls_sans.iter().cloned().chain([advertise.to_string()]).collect();
    let pki = api_gateway::pki::load_or_create(&args.data_dir.join("pki"), &names)?;
    let tokens = match &args.token_auth_file {
        Some(path) => api_gateway::Tokens::load(path)?,
        None => api_gateway::Tokens::default(),
    };
    let mut cfg = StoreConfig::new(1, args.data_dir.join("store"), args.store_listen);
    cfg.advertise = Some(args.store_listen.to_string());
    let node = StoreNode::start(cfg).await.context("starting the store")?;
    node.initialize(&BTreeMap::from([(1, node.addr().to_string())])).await?;
    let bind = SocketAddr::new(args.bind_address, args.port);
    let serving = pki.clone();
    let root_ca = pki.ca.cert_pem.clone();
    let store = node.clone();
    let node_metrics = agent_metrics(&prometheus);
    let api = crate::gateway::start(node.clone(), prometheus, move |health, prometheus| {
        let kinds = start_control_plane(&store, root_ca);
        api_gateway::serve(bind, &serving, tokens, health, kinds, prometheus)
    })?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    // kubectl on this machine reaches an API bound to every interface on loopback.
    let local = if api.ip().is_unspecified() { SocketAddr::new(Ipv4Addr::LOCALHOST.into(), api.port()) } else { api };
    api_gateway::kubeconfig::write(&kubeconfig, &format!("https://{local}"), &pki)?;
    wait_for_leader(&node).await?;
    create_initial_namespaces(&node).await?;
    create_kubernetes_service(&node, api.port()).await?;
    let endpoints = crate::kubernetes_endpoints::run(node.clone(), advertise, api.port());
    if !args.no_node {
        start_node(&kubeconfig, &args.data_dir.join("node"), args.kubelet_port, node_metrics);
    }
    eprintln!(
        "flotilla is up: API at https://{local} (advertised to pods as {advertise}), store at {}, data in {}\n  kubectl --kubeconfig {} get --raw /readyz",
        node.addr(),
        args.data_dir.display(),
        kubeconfig.display()
    );
    run_until_signal(node, endpoints).await
}

/// The process's metrics for the node agent's `/metrics` (the API server's `/metrics` shows
/// the same: one recorder per process).
pub fn agent_metrics(prometheus: &api_gateway::PrometheusHandle) -> node_agent::Prometheus {
    let handle = prometheus.clone();
    node_agent::Prometheus(std::sync::Arc::new(move || handle.render()))
}

/// This machine as the cluster's node: the node agent in this process (its containerd and
/// the pods outlive it). Without containerd the control plane still serves, with a warning.
fn start_node(kubeconfig: &Path, state_dir: &Path, kubelet_port: u16, prometheus: node_agent::Prometheus) {
    let config = node_agent::Config {
        kubeconfig: kubeconfig.to_path_buf(),
        servers: Vec::new(),
        node_name: None,
        node_ip: None,
        hollow: None,
        heartbeat: Duration::from_secs(10),
        kubelet_port: Some(kubelet_port),
        max_pods: 110,
        state_dir: state_dir.to_path_buf(),
        service_proxy: true,
        cluster_domain: node_agent::cluster_dns::DEFAULT_DOMAIN.into(),
        cluster_dns: None,
        dns_server: true,
        prometheus: Some(prometheus),
    };
    tokio::spawn(async move {
        if let Err(error) = node_agent::run(config).await {
            tracing::warn!(%error, "this machine runs no pods: the node agent stopped (flotilla up --no-node runs none)");
        }
    });
}

/// Starts what serves and runs the cluster's objects on this member: the kind actors with
/// their admission chain, the CRD controller, and the controllers and scheduler (which work
/// only while this member leads). Runs inside the gateway's actix system, where the kind
/// actors live.
fn start_control_plane(store: &StoreNode, root_ca: String) -> actors::KindActors {
    let kinds = actors::KindActors::start(store);
    // Built-in plugins, with the admission webhooks before ResourceQuota (as kube orders them).
    let webhooks = std::sync::Arc::new(api_gateway::admission_webhooks::Webhooks::start(kinds.clone()));
    kinds.set_admission(std::sync::Arc::new(actors::admission::builtin::chain_with_webhooks(store.clone(), webhooks)));
    actors::CrdController::start_supervised(store.clone(), kinds.clone());
    actors::controllers::start_all(kinds.clone(), store.clone(), Some(root_ca));
    kinds
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let prometheus = api_gateway::install_prometheus()?;
    let mut cfg = StoreConfig::new(args.id, args.data_dir.clone(), args.listen);
    cfg.advertise = args.advertise.clone();
    cfg.heartbeat_ms = args.heartbeat_ms;
    cfg.election_timeout_min_ms = args.election_timeout_min_ms;
    cfg.election_timeout_max_ms = args.election_timeout_max_ms;
    cfg.snapshot_after_logs = args.snapshot_after_logs;
    cfg.compaction = (args.compaction_retain > 0).then(|| CompactionPolicy {
        interval: Duration::from_secs(args.compaction_interval_secs.max(1)),
        retain: args.compaction_retain,
    });
    let node = StoreNode::start(cfg).await.context("starting the store")?;
    if let Some(list) = &args.initial_cluster {
        let members = parse_initial_cluster(list)?;
        if !members.contains_key(&args.id) {
            bail!("--initial-cluster does not name this member (id {})", args.id);
        }
        node.initialize(&members).await?;
    } else if let Some(seed) = &args.join {
        join(&node, seed).await?;
    }
    if let Some(http) = args.http_addr {
        let bound = crate::gateway::start(node.clone(), prometheus.clone(), move |health, prometheus| {
            api_gateway::serve_health_http(http, health, prometheus)
        })?;
        tracing::info!(%bound, "serving /livez, /readyz, /metrics over plain HTTP");
    }
    if let Some(bind) = args.api_addr {
        if let Some(path) = &args.scheduler_config {
            actors::scheduler::config::install(actors::scheduler::config::SchedulerConfig::load(path)?);
        }
        let pki_dir = args.pki_dir.clone().unwrap_or_else(|| args.data_dir.join("pki"));
        let names: Vec<String> =
            args.tls_sans.iter().cloned().chain(args.advertise_address.map(|a| a.to_string())).collect();
        let pki = api_gateway::pki::load_or_create(&pki_dir, &names)?;
        let advertise = args.advertise_address.unwrap_or_else(|| default_advertise_address(bind.ip()));
        let tokens = match &args.token_auth_file {
            Some(path) => api_gateway::Tokens::load(path)?,
            None => api_gateway::Tokens::default(),
        };
        let store = node.clone();
        let api = crate::gateway::start(node.clone(), prometheus, move |health, prometheus| {
            let kinds = start_control_plane(&store, pki.ca.cert_pem.clone());
            api_gateway::serve(bind, &pki, tokens, health, kinds, prometheus)
        })?;
        tracing::info!(%api, "serving the Kubernetes API");
        // Not spawned: admission futures are not Send. It runs beside the signal wait.
        return run_until_signal(node.clone(), bootstrap_objects(node, advertise, api.port())).await;
    }
    run_until_signal(node, async {}).await
}

/// The objects every cluster starts with, made (if absent) once a leader is known; any
/// member may make them, the others then find them. Retried until the store takes them.
async fn bootstrap_objects(node: StoreNode, advertise: IpAddr, api_port: u16) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let made = async {
            wait_for_leader(&node).await?;
            create_initial_namespaces(&node).await?;
            create_kubernetes_service(&node, api_port).await
        };
        match made.await {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "the initial objects are not made yet; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    crate::kubernetes_endpoints::run(node, advertise, api_port).await
}

/// kube-apiserver's default advertise address: the bound address when it is a specific
/// non-loopback one, else this host's primary IPv4 address: the source address of its
/// default route (a UDP socket's "connect" picks it; no packet is sent), else of a private
/// range's route, else loopback (pods then cannot reach the API; a warning says so).
pub fn default_advertise_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() && !bind.is_loopback() {
        return bind;
    }
    for target in ["203.0.113.1:9", "10.255.255.1:9", "172.31.255.1:9", "192.168.255.1:9"] {
        let ip = node_agent::host::address_towards(target);
        if !ip.is_loopback() && !ip.is_unspecified() {
            return ip;
        }
    }
    tracing::warn!("this host has no non-loopback IPv4 route: the API is advertised on 127.0.0.1, which pods cannot reach (--advertise-address)");
    Ipv4Addr::LOCALHOST.into()
}

/// `1=127.0.0.1:2380,2=127.0.0.1:2381` -> {1: "127.0.0.1:2380", 2: ...}
pub fn parse_initial_cluster(list: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut out = BTreeMap::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part.split_once('=').with_context(|| format!("{part:?} is not id=host:port"))?;
        let id: NodeId = id.trim().parse().with_context(|| format!("member id {id:?} is not a number"))?;
        if id == 0 || out.insert(id, addr.trim().to_string()).is_some() {
            bail!("member id {id} is zero or given twice");
        }
    }
    if out.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(out)
}

/// Adds this member as a learner through `seed`, then makes it a voter. A member that
/// restarts as a voter (its membership is on disk) does not ask again: the seed may be
/// long gone, replaced like any other member.
async fn join(node: &StoreNode, seed: &str) -> anyhow::Result<()> {
    if node.cluster_id().is_some() {
        // Joined before: once Raft has loaded the membership from disk, see if it names us.
        let me = node.id();
        let voter = node
            .raft()
            .wait(Some(Duration::from_secs(2)))
            .metrics(|m| m.membership_config.membership().voter_ids().any(|id| id == me), "restored as a voter")
            .await
            .is_ok();
        if voter {
            tracing::info!(seed, "restarted as a voting member; not asking the seed again");
            return Ok(());
        }
    }
    let client = StoreClient::new(seed)?;
    let status = client.status().await.with_context(|| format!("asking {seed} for the cluster's members"))?;
    if let Some(id) = &status.cluster_id {
        node.adopt_cluster_id(id)?;
    }
    if status.voters.contains(&node.id()) {
        tracing::info!("already a voting member; not joining again");
        return Ok(());
    }
    client.add_learner(node.id(), node.addr()).await.context("adding this member as a learner")?;
    let voters: BTreeSet<NodeId> = status.voters.iter().copied().chain([node.id()]).collect();
    client.change_membership(voters).await.context("promoting this member to voter")?;
    tracing::info!(seed, "joined the cluster");
    Ok(())
}

async fn wait_for_leader(node: &StoreNode) -> anyhow::Result<()> {
    node.raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .context("no leader elected")?;
    Ok(())
}

/// The namespaces every cluster starts with, made if absent.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_initial_namespaces(node: &StoreNode) -> anyhow::Result<()> {
    let kind = actors::kinds::find("", "v1", "namespaces").context("no namespaces kind")?;
    for name in INITIAL_NAMESPACES {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match actors::object_store::create(node, kind, None, obj, Some("flotilla")).await {
            Ok(_) | Err(actors::ApiError::AlreadyExists(_)) => {}
            Err(e) => bail!("creating namespace {name}: {e}"),
        }
    }
    Ok(())
}

/// The `default/kubernetes` Service at the first service IP (what in-cluster clients reach
/// through `KUBERNETES_SERVICE_HOST`); its endpoints are [`crate::kubernetes_endpoints`]'.
async fn create_kubernetes_service(node: &StoreNode, api_port: u16) -> anyhow::Result<()> {
    let ip = actors::service_ips::api_server_ip().to_string();
    let service = serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]},
    });
    let kind = actors::kinds::find("", "v1", "services").context("no such kind")?;
    match actors::object_store::create(node, kind, Some("default"), service, Some("flotilla")).await {
        Ok(_) | Err(actors::ApiError::AlreadyExists(_)) => Ok(()),
        Err(e) => bail!("creating the kubernetes Service: {e}"),
    }
}

/// Runs `beside` (to its end) until SIGINT/SIGTERM, then shuts the store down.
async fn run_until_signal(node: StoreNode, beside: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let beside = async {
        beside.await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        _ = beside => {}
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertise_address_is_a_specific_bind_address_or_a_host_address() {
        let specific: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(default_advertise_address(specific), specific);
        for bind in [IpAddr::from([0, 0, 0, 0]), IpAddr::from([127, 0, 0, 1])] {
            let ip = default_advertise_address(bind);
            assert!(ip.is_ipv4() && !ip.is_unspecified(), "{ip}");
        }
    }

    #[test]
    fn initial_cluster_lists_parse_and_bad_ones_are_refused() {
        let m = parse_initial_cluster("1=127.0.0.1:2380, 2=127.0.0.1:2381").unwrap();
        assert_eq!(m[&2], "127.0.0.1:2381");
        for bad in ["", "1", "x=a:1", "0=a:1", "1=a:1,1=b:2"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad:?}");
        }
    }
}
