//! A node as the scheduler sees it (kube's `framework.NodeInfo`): what the Node object
//! says (labels, taints, `unschedulable`, allocatable) and what the pods bound or assumed
//! on it use (requests, pod count, host ports).

use std::collections::HashMap;

use serde_json::Value;

use super::pod_info::{HostPort, PodInfo, Taint};
use super::resources::{value, Resources};

/// What the scheduler reads of a Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObj {
    pub labels: Value,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
}

impl NodeObj {
    /// `status.allocatable`, or `status.capacity` where a node has no allocatable (API
    /// defaulting copies one to the other).
    pub fn parse(node: &Value) -> NodeObj {
        let status = node.get("status").unwrap_or(&Value::Null);
        let allocatable = status.get("allocatable").filter(|a| a.is_object()).or_else(|| status.get("capacity"));
        NodeObj {
            labels: node.pointer("/metadata/labels").cloned().unwrap_or(Value::Null),
            taints: node
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .map(|t| t.iter().map(Taint::parse).collect())
                .unwrap_or_default(),
            unschedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
            allocatable: Resources::of_list(allocatable),
            allowed_pods: allocatable.and_then(|a| a.get("pods")).map(value).unwrap_or(0),
        }
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).and_then(Value::as_str)
    }
}

/// What the pods on a node use.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub requested: Resources,
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: i64,
    /// (protocol, port) -> the host IPs using it (one entry per use).
    ports: HashMap<(String, i64), Vec<String>>,
}

impl Usage {
    pub fn add(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.non_zero_cpu = self.non_zero_cpu.saturating_add(pod.non_zero_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_add(pod.non_zero_memory);
        self.pods += 1;
        for p in &pod.host_ports {
            self.ports.entry((p.protocol.clone(), p.port)).or_default().push(p.ip.clone());
        }
    }

    pub fn remove(&mut self, pod: &PodInfo) {
        self.requested.subtract(&pod.requests);
        self.non_zero_cpu = self.non_zero_cpu.saturating_sub(pod.non_zero_cpu);
        self.non_zero_memory = self.non_zero_memory.saturating_sub(pod.non_zero_memory);
        self.pods -= 1;
        for p in &pod.host_ports {
            let key = (p.protocol.clone(), p.port);
            if let Some(ips) = self.ports.get_mut(&key) {
                if let Some(at) = ips.iter().position(|ip| *ip == p.ip) {
                    ips.swap_remove(at);
                }
                if ips.is_empty() {
                    self.ports.remove(&key);
                }
            }
        }
    }

    /// kube's `HostPortInfo.CheckConflict`: `0.0.0.0` conflicts with any IP on the same
    /// protocol and port, and any IP with `0.0.0.0`.
    pub fn port_conflict(&self, wanted: &HostPort) -> bool {
        let Some(ips) = self.ports.get(&(wanted.protocol.clone(), wanted.port)) else { return false };
        wanted.ip == "0.0.0.0" || ips.iter().any(|ip| ip == "0.0.0.0" || *ip == wanted.ip)
    }

    pub fn is_empty(&self) -> bool {
        self.pods == 0
    }
}

/// One node of the cache: the object (none while only pods name it) and its usage.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<NodeObj>,
    pub usage: Usage,
}
