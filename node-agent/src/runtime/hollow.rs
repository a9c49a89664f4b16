//! The hollow runtime: pods "run" as records in memory, each with an address from its
//! node's pod CIDR, so hundreds of simulated nodes fit in one process (kubemark's hollow
//! kubelet). Nothing is executed; a pod runs until it is deleted.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::RunningPod;

/// Why a pod cannot start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The pod is bound to a node this runtime does not simulate.
    #[error("node {0} is not simulated here")]
    UnknownNode(String),
    /// Every address of the node's pod CIDR is taken.
    #[error("no free pod address on node {node} ({cidr})")]
    NoAddress { node: String, cidr: String },
}

/// An IPv4 block, `base/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    base: u32,
    prefix: u8,
}

impl Block {
    fn parse(cidr: &str) -> Option<Block> {
        let (addr, prefix) = cidr.split_once('/')?;
        let addr: Ipv4Addr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| (8..=30).contains(p))?;
        let mask = u32::MAX << (32 - prefix);
        Some(Block { base: u32::from(addr) & mask, prefix })
    }

    /// The pod addresses: past the network address and the bridge's (`.1`, as host-local
    /// IPAM leaves it), short of the broadcast address.
    fn hosts(&self) -> std::ops::RangeInclusive<u32> {
        let size = 1u32 << (32 - self.prefix);
        self.base + 2..=self.base + size - 2
    }
}

impl std::fmt::Display for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

/// A simulated node's network.
#[derive(Debug)]
struct NodeNet {
    host_ip: IpAddr,
    block: Block,
    /// Whether `block` came from `spec.podCIDR` (else it is the fallback).
    assigned: bool,
    used: BTreeSet<u32>,
}

/// The pods of every simulated node of this process, by uid.
#[derive(Debug, Default)]
pub struct HollowRuntime {
    nodes: HashMap<String, NodeNet>,
    pods: HashMap<String, RunningPod>,
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

impl HollowRuntime {
    /// A runtime for these nodes (name, host IP). Until the node IPAM controller gives a node
    /// its `spec.podCIDR`, node `i` hands out addresses of `10.(128 + i / 256).(i % 256).0/24`,
    /// outside the default cluster CIDR `10.244.0.0/16`.
    pub fn new(nodes: &[(String, IpAddr)]) -> HollowRuntime {
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, (name, host_ip))| {
                let base = u32::from(Ipv4Addr::new(10, 128 + (i / 256 % 128) as u8, (i % 256) as u8, 0));
                let net = NodeNet {
                    host_ip: *host_ip,
                    block: Block { base, prefix: 24 },
                    assigned: false,
                    used: BTreeSet::new(),
                };
                (name.clone(), net)
            })
            .collect();
        HollowRuntime { nodes, pods: HashMap::new() }
    }

    /// Whether `node` is simulated here.
    pub fn has_node(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The node's `spec.podCIDR`: new pods get addresses from it (running ones keep theirs).
    pub fn set_pod_cidr(&mut self, node: &str, cidr: &str) {
        let (Some(net), Some(block)) = (self.nodes.get_mut(node), Block::parse(cidr)) else { return };
        if !net.assigned || net.block != block {
            tracing::debug!(node, %block, "hollow node: pod CIDR");
            net.block = block;
            net.assigned = true;
        }
    }

    pub fn get(&self, uid: &str) -> Option<&RunningPod> {
        self.pods.get(uid)
    }

    /// Starts `pod` on its node: an address from the node's block (the node's own for
    /// `hostNetwork` pods), its containers running from `now`.
    pub fn start(&mut self, pod: &Pod, now: Timestamp) -> Result<RunningPod, Error> {
        if let Some(running) = self.pods.get(uid(pod)) {
            return Ok(running.clone());
        }
        let node = node_name(pod);
        let net = self.nodes.get_mut(node).ok_or_else(|| Error::UnknownNode(node.to_string()))?;
        let ip = if host_network(pod) {
            net.host_ip
        } else {
            let free = net.block.hosts().find(|a| !net.used.contains(a));
            let addr = free.ok_or_else(|| Error::NoAddress { node: node.to_string(), cidr: net.block.to_string() })?;
            net.used.insert(addr);
            IpAddr::V4(Ipv4Addr::from(addr))
        };
        Ok(self.record(pod, ip, now))
    }

    /// Takes over a pod that already runs on one of our nodes (its status says Running, with
    /// an address and a start time: the agent restarted), keeping its address.
    pub fn adopt(&mut self, pod: &Pod) -> Option<RunningPod> {
        let status = pod.status.as_ref()?;
        if status.phase.as_deref() != Some("Running") {
            return None;
        }
        let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
        let started = status.start_time.as_ref()?.0;
        let net = self.nodes.get_mut(node_name(pod))?;
        if let IpAddr::V4(v4) = ip {
            let addr = u32::from(v4);
            if !host_network(pod) && !net.used.insert(addr) {
                return None;
            }
        }
        Some(self.record(pod, ip, started))
    }

    fn record(&mut self, pod: &Pod, ip: IpAddr, started: Timestamp) -> RunningPod {
        let running = RunningPod {
            uid: uid(pod).to_string(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            node: node_name(pod).to_string(),
            ip,
            started,
            containers: pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect(),
        };
        self.pods.insert(running.uid.clone(), running.clone());
        running
    }

    /// Stops a pod and frees its address.
    pub fn stop(&mut self, uid: &str) -> Option<RunningPod> {
        let running = self.pods.remove(uid)?;
        if let (Some(net), IpAddr::V4(v4)) = (self.nodes.get_mut(&running.node), running.ip) {
            if IpAddr::V4(v4) != net.host_ip {
                net.used.remove(&u32::from(v4));
            }
        }
        Some(running)
    }

    /// The pods running on `node`, by namespace and name.
    pub fn pods_on(&self, node: &str) -> Vec<RunningPod> {
        let mut pods: Vec<RunningPod> = self.pods.values().filter(|p| p.node == node).cloned().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// How many pods run in all.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pod(uid: &str, node: &str, host_network: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("p-{uid}"), "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": [{"name": "app"}, {"name": "side"}]},
        }))
        .unwrap()
    }

    fn runtime() -> HollowRuntime {
        let host: IpAddr = "192.168.1.5".parse().unwrap();
        HollowRuntime::new(&[("n0".into(), host), ("n1".into(), host)])
    }

    #[test]
    fn pods_get_distinct_addresses_from_their_nodes_fallback_block_then_the_pod_cidr() {
        let mut rt = runtime();
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(rt.start(&pod("a", "n0", false), now).unwrap().ip.to_string(), "10.128.0.2");
        assert_eq!(rt.start(&pod("b", "n0", false), now).unwrap().ip.to_string(), "10.128.0.3");
        assert_eq!(rt.start(&pod("c", "n1", false), now).unwrap().ip.to_string(), "10.128.1.2");
        rt.set_pod_cidr("n1", "10.244.7.0/24");
        assert_eq!(rt.start(&pod("d", "n1", false), now).unwrap().ip.to_string(), "10.244.7.2");
        // Starting again is the same pod.
        assert_eq!(rt.start(&pod("a", "n0", false), now).unwrap().ip.to_string(), "10.128.0.2");
        assert_eq!(rt.start(&pod("e", "n0", true), now).unwrap().ip.to_string(), "192.168.1.5");
        assert_eq!(rt.start(&pod("f", "elsewhere", false), now), Err(Error::UnknownNode("elsewhere".into())));
        assert_eq!(rt.pods_on("n1").len(), 2);
        assert_eq!(rt.pods_on("n0")[0].containers, ["app", "side"]);
    }

    #[test]
    fn a_stopped_pods_address_is_reused_and_a_full_block_refuses() {
        let mut rt = runtime();
        rt.set_pod_cidr("n0", "10.244.0.0/30");
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(rt.start(&pod("a", "n0", false), now).unwrap().ip.to_string(), "10.244.0.2");
        assert!(matches!(rt.start(&pod("b", "n0", false), now), Err(Error::NoAddress { .. })));
        rt.stop("a").unwrap();
        assert_eq!(rt.start(&pod("b", "n0", false), now).unwrap().ip.to_string(), "10.244.0.2");
        assert!(rt.stop("zzz").is_none());
        assert_eq!(rt.len(), 1);
    }

    #[test]
    fn a_running_pod_is_adopted_with_its_address_after_a_restart() {
        let mut rt = runtime();
        let mut p = pod("a", "n0", false);
        assert!(rt.adopt(&p).is_none(), "not running yet");
        p.status = serde_json::from_value(
            serde_json::json!({"phase": "Running", "podIP": "10.128.0.2", "startTime": "2026-01-01T00:00:00Z"}),
        )
        .unwrap();
        let adopted = rt.adopt(&p).unwrap();
        assert_eq!(adopted.ip.to_string(), "10.128.0.2");
        assert_eq!(adopted.started.to_string(), "2026-01-01T00:00:00Z");
        // Its address is taken.
        assert_eq!(rt.start(&pod("b", "n0", false), Timestamp::UNIX_EPOCH).unwrap().ip.to_string(), "10.128.0.3");
    }
}
