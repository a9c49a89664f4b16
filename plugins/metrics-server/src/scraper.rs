//! The scrape loop: every interval, list the Nodes and Pods from the API server, fetch each
//! node's kubelet `/metrics/resource` (all at once, each within a deadline), and hand the
//! merged batch to the [`Store`]. What requests are answered from lives in [`State`].

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::Client;
use crate::format::now_nanos;
use crate::prometheus::{self, Batch};
use crate::store::Store;

/// A Node as this server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its kubelet's `host:port` (IPv6 bracketed), when it has an address of a wanted type.
    pub kubelet: Option<String>,
}

/// A Pod as this server needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// What the API serves from: the usage store and the Nodes and Pods of the last listing.
#[derive(Debug)]
pub struct State {
    pub store: Store,
    /// Sorted by name.
    pub nodes: Vec<NodeInfo>,
    /// Sorted by namespace, then name.
    pub pods: Vec<PodInfo>,
    /// When the last scrape cycle ended (liveness).
    pub last_scrape: Option<Instant>,
}

pub type Shared = Arc<RwLock<State>>;

/// How to find and scrape kubelets.
#[derive(Debug, Clone)]
pub struct Options {
    pub interval: Duration,
    /// Used when a Node's `status.daemonEndpoints.kubeletEndpoint.Port` is 0.
    pub kubelet_port: u16,
    /// Node address types, most preferred first (`Hostname`, `InternalIP`, ...).
    pub address_types: Vec<String>,
    /// The most one kubelet may take to answer.
    pub timeout: Duration,
}

/// A new, empty state for scrapes `interval` apart.
pub fn state(interval: Duration) -> Shared {
    let resolution = i64::try_from(interval.as_nanos()).unwrap_or(i64::MAX);
    Arc::new(RwLock::new(State {
        store: Store::new(resolution),
        nodes: Vec::new(),
        pods: Vec::new(),
        last_scrape: None,
    }))
}

/// Scrapes forever, one cycle per interval (a slow cycle delays the next; none overlap).
pub async fn run(api: Client, kubelets: Client, options: Options, state: Shared) {
    let mut ticker = actix_rt::time::interval(options.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        cycle(&api, &kubelets, &options, &state).await;
    }
}

/// One cycle; a failed listing leaves the state as it was (and liveness then fails).
pub async fn cycle(api: &Client, kubelets: &Client, options: &Options, state: &Shared) {
    let nodes = match api.get("/api/v1/nodes").await {
        Ok(list) => nodes_of(&list, &options.address_types, options.kubelet_port),
        Err(e) => return tracing::warn!("listing nodes: {e}"),
    };
    let pods = match api.get("/api/v1/pods").await {
        Ok(list) => pods_of(&list),
        Err(e) => return tracing::warn!("listing pods: {e}"),
    };
    let started = Instant::now();
    let scrapes = nodes.iter().map(|node| scrape(kubelets, node, options.timeout));
    let mut batch = Batch::default();
    for (node, result) in nodes.iter().zip(futures::future::join_all(scrapes).await) {
        match result {
            Ok(scraped) => merge(&mut batch, scraped, &node.name),
            Err(e) => tracing::warn!(node = node.name, "scraping the kubelet: {e}"),
        }
    }
    tracing::debug!(nodes = batch.nodes.len(), pods = batch.pods.len(), took = ?started.elapsed(), "scraped");
    let mut state = state.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    state.store.store(batch);
    state.nodes = nodes;
    state.pods = pods;
    state.last_scrape = Some(Instant::now());
}

/// Adds one node's scrape; a pod reported by two nodes keeps its first report.
fn merge(batch: &mut Batch, scraped: Batch, node: &str) {
    batch.nodes.extend(scraped.nodes);
    for (pod, containers) in scraped.pods {
        if batch.pods.contains_key(&pod) {
            tracing::warn!(node, namespace = pod.namespace, pod = pod.name, "pod reported by two nodes; ignored");
            continue;
        }
        batch.pods.insert(pod, containers);
    }
}

/// One kubelet's resource metrics.
async fn scrape(kubelets: &Client, node: &NodeInfo, timeout: Duration) -> Result<Batch, String> {
    let kubelet = node.kubelet.as_deref().ok_or("the node has no address of the preferred types")?;
    let requested = now_nanos();
    let url = format!("https://{kubelet}/metrics/resource");
    let body = actix_rt::time::timeout(timeout, kubelets.get_bytes(&url, "text/plain"))
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    prometheus::decode(&String::from_utf8_lossy(&body), requested, &node.name).map_err(|e| format!("{url}: {e}"))
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

fn items(list: &Value) -> &[Value] {
    list.get("items").and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The Nodes of a NodeList, sorted, with their kubelets' addresses.
pub fn nodes_of(list: &Value, address_types: &[String], default_port: u16) -> Vec<NodeInfo> {
    let mut nodes: Vec<NodeInfo> = items(list)
        .iter()
        .filter(|node| !text(node, "/metadata/name").is_empty())
        .map(|node| {
            let port = node
                .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .unwrap_or(default_port);
            let addresses = node.pointer("/status/addresses").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            // The first address of the most preferred type that the node has.
            let address = address_types.iter().find_map(|wanted| {
                addresses
                    .iter()
                    .find(|a| text(a, "/type") == wanted)
                    .map(|a| text(a, "/address"))
                    .filter(|a| !a.is_empty())
            });
            let kubelet =
                address.map(|a| if a.contains(':') { format!("[{a}]:{port}") } else { format!("{a}:{port}") });
            NodeInfo { name: text(node, "/metadata/name").to_string(), labels: labels_of(node), kubelet }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes
}

/// The Pods of a PodList, sorted by namespace and name.
pub fn pods_of(list: &Value) -> Vec<PodInfo> {
    let mut pods: Vec<PodInfo> = items(list)
        .iter()
        .map(|pod| PodInfo {
            namespace: text(pod, "/metadata/namespace").to_string(),
            name: text(pod, "/metadata/name").to_string(),
            labels: labels_of(pod),
        })
        .filter(|pod| !pod.name.is_empty())
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    pods
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_nodes_kubelet_is_found_at_its_preferred_address_and_status_port() {
        let list = json!({"items": [
            {"metadata": {"name": "b", "labels": {"zone": "z1"}},
             "status": {"addresses": [{"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.2"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}},
            {"metadata": {"name": "a"}, "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}]}},
            {"metadata": {"name": "c"}, "status": {"addresses": [{"type": "Hostname", "address": "c"}]}},
        ]});
        let types: Vec<String> = ["InternalIP", "ExternalIP"].map(String::from).to_vec();
        let nodes = nodes_of(&list, &types, 10250);
        let found: Vec<_> = nodes.iter().map(|n| (n.name.as_str(), n.kubelet.as_deref())).collect();
        assert_eq!(found, [("a", Some("[fd00::1]:10250")), ("b", Some("10.0.0.2:10251")), ("c", None)]);
        assert_eq!(nodes[1].labels["zone"], "z1");
    }

    #[test]
    fn pods_are_listed_in_namespace_then_name_order() {
        let list = json!({"items": [
            {"metadata": {"namespace": "b", "name": "x"}},
            {"metadata": {"namespace": "a", "name": "y", "labels": {"app": "web"}}},
        ]});
        let pods = pods_of(&list);
        assert_eq!((pods[0].namespace.as_str(), pods[0].labels["app"].as_str()), ("a", "web"));
    }
}
