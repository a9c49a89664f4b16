//! A node as the agent reports it (kubelet's `initialNode` and `setNodeStatus`): the Node
//! to register, its status (capacity, allocatable, conditions, addresses, nodeInfo, the
//! kubelet endpoint), whether the status on the server needs a new post, and its Lease.
//! Plain functions of [`NodeFacts`] and the time; the loops that post them are in
//! [`crate::heartbeat`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::host::{self, HostFacts};
use crate::quantity::{format_cpu, format_memory};

/// The version this agent reports as kubelet's.
pub const KUBELET_VERSION: &str = "v1.32.0-flotilla";
/// The namespace of node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// kubelet's default `nodeLeaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// kubelet's default hard eviction threshold `memory.available<100Mi`, held back from
/// allocatable.
const EVICTION_HARD_MEMORY: u64 = 100 << 20;

/// Everything a node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub address: IpAddr,
    pub hostname: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub max_pods: u32,
    /// The port of the kubelet endpoint (`/metrics/resource`).
    pub kubelet_port: u16,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub container_runtime_version: String,
}

impl NodeFacts {
    /// A real node: this machine's CPUs, memory and ids.
    pub fn from_host(name: &str, address: IpAddr, host: &HostFacts, max_pods: u32, kubelet_port: u16) -> NodeFacts {
        NodeFacts {
            name: name.to_string(),
            address,
            hostname: host.hostname.clone(),
            cpu_millis: u64::from(host.cpus) * 1000,
            memory_bytes: host.memory_bytes,
            max_pods,
            kubelet_port,
            kernel_version: host.kernel_version.clone(),
            os_image: host.os_image.clone(),
            machine_id: host.machine_id.clone(),
            system_uuid: host.machine_id.clone(),
            boot_id: host.boot_id.clone(),
            // No container runtime yet: pods bound to a real node wait for the CRI slice.
            container_runtime_version: "none://0.0".into(),
        }
    }

    /// A hollow node: the given size, the host's kernel and OS, ids made from the name.
    pub fn hollow(name: &str, address: IpAddr, host: &HostFacts, cpu_millis: u64, memory_bytes: u64) -> NodeFacts {
        let id = format!("hollow-{name}");
        NodeFacts {
            name: name.to_string(),
            address,
            hostname: name.to_string(),
            cpu_millis,
            memory_bytes,
            max_pods: 110,
            kubelet_port: 0,
            kernel_version: host.kernel_version.clone(),
            os_image: host.os_image.clone(),
            machine_id: id.clone(),
            system_uuid: id.clone(),
            boot_id: id,
            container_runtime_version: "hollow://0.1".into(),
        }
    }

    /// The labels kubelet sets on its Node.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kubernetes.io/hostname".to_string(), self.hostname.clone()),
            ("kubernetes.io/os".to_string(), "linux".to_string()),
            ("kubernetes.io/arch".to_string(), host::go_arch().to_string()),
            ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
            ("beta.kubernetes.io/arch".to_string(), host::go_arch().to_string()),
        ])
    }

    /// The Node to create: labels, kubelet's annotations, and a first status.
    pub fn registration(&self, now: Timestamp) -> Node {
        let annotations = BTreeMap::from([
            ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
            ("volumes.kubernetes.io/controller-managed-attach-detach".to_string(), "true".to_string()),
        ]);
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(self.status(now, None)),
        }
    }

    /// The status to post now. Conditions keep the transition time they have in `previous`
    /// when their status is the same.
    pub fn status(&self, now: Timestamp, previous: Option<&NodeStatus>) -> NodeStatus {
        let capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity(format_cpu(self.cpu_millis))),
            ("memory".to_string(), Quantity(format_memory(self.memory_bytes))),
            ("pods".to_string(), Quantity(self.max_pods.to_string())),
        ]);
        let mut allocatable = capacity.clone();
        allocatable
            .insert("memory".into(), Quantity(format_memory(self.memory_bytes.saturating_sub(EVICTION_HARD_MEMORY))));
        let condition = |kind: &str, status: &str, reason: &str, message: &str| {
            let before = previous
                .and_then(|s| s.conditions.as_ref())
                .and_then(|list| list.iter().find(|c| c.type_ == kind))
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone());
            NodeCondition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(before.unwrap_or(Time(now))),
            }
        };
        NodeStatus {
            capacity: Some(capacity),
            allocatable: Some(allocatable),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                ),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ]),
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: self.address.to_string() },
                NodeAddress { type_: "Hostname".into(), address: self.hostname.clone() },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(self.kubelet_port) }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: host::go_arch().into(),
                boot_id: self.boot_id.clone(),
                container_runtime_version: self.container_runtime_version.clone(),
                kernel_version: self.kernel_version.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: self.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: self.os_image.clone(),
                system_uuid: self.system_uuid.clone(),
                swap: None,
            }),
            ..NodeStatus::default()
        }
    }

    /// The node's Lease, held by the node and owned by its Node (so it goes with it).
    pub fn lease(&self, node_uid: &str, now: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(LEASE_NAMESPACE.into()),
                owner_references: (!node_uid.is_empty()).then(|| {
                    vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: self.name.clone(),
                        uid: node_uid.to_string(),
                        ..OwnerReference::default()
                    }]
                }),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.name.clone()),
                lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                renew_time: Some(MicroTime(now)),
                ..LeaseSpec::default()
            }),
        }
    }
}

/// The merge patch that renews a Lease now.
pub fn lease_renewal(holder: &str, now: Timestamp) -> Value {
    serde_json::json!({"spec": {
        "holderIdentity": holder,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": MicroTime(now),
    }})
}

/// Whether the server's status differs from `ours` in anything the agent owns, heartbeat
/// times aside (kubelet posts then, and otherwise only every report interval).
pub fn status_differs(server: Option<&NodeStatus>, ours: &NodeStatus) -> bool {
    let Some(server) = server else { return true };
    let without_heartbeats = |status: &NodeStatus| -> Value {
        let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
        if let Some(list) = value.get_mut("conditions").and_then(Value::as_array_mut) {
            for condition in list.iter_mut().filter_map(Value::as_object_mut) {
                condition.remove("lastHeartbeatTime");
            }
            list.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
        }
        value
    };
    let (server, ours) = (without_heartbeats(server), without_heartbeats(ours));
    let Some(fields) = ours.as_object() else { return true };
    fields.iter().any(|(field, value)| match field.as_str() {
        // Only our conditions: others (NetworkUnavailable) belong to other writers.
        "conditions" => {
            let theirs = server["conditions"].as_array().cloned().unwrap_or_default();
            value.as_array().into_iter().flatten().any(|c| !theirs.contains(c))
        }
        _ => server.get(field) != Some(value),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::Ipv4Addr;

    use super::*;

    fn facts() -> NodeFacts {
        let host = HostFacts {
            hostname: "box".into(),
            cpus: 8,
            memory_bytes: 16 << 30,
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
        };
        let mut facts = NodeFacts::hollow("hollow-3", IpAddr::V4(Ipv4Addr::LOCALHOST), &host, 4000, 16 << 30);
        facts.kubelet_port = 10250;
        facts
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_registered_node_carries_labels_capacity_addresses_and_a_ready_status() {
        let node = serde_json::to_value(facts().registration(at(0))).unwrap();
        assert_eq!(node["metadata"]["name"], "hollow-3");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "hollow-3");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
        let status = &node["status"];
        assert_eq!(status["capacity"], serde_json::json!({"cpu": "4", "memory": "16Gi", "pods": "110"}));
        assert_eq!(status["allocatable"]["memory"], "16284Mi");
        assert_eq!(status["addresses"][0], serde_json::json!({"type": "InternalIP", "address": "127.0.0.1"}));
        assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(status["nodeInfo"]["containerRuntimeVersion"], "hollow://0.1");
        assert_eq!(status["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_their_status_holds() {
        let facts = facts();
        let first = facts.status(at(0), None);
        let later = facts.status(at(60), Some(&first));
        let ready =
            |s: &NodeStatus| s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").cloned().unwrap();
        assert_eq!(ready(&later).last_transition_time, Some(Time(at(0))));
        assert_eq!(ready(&later).last_heartbeat_time, Some(Time(at(60))));
        // An Unknown Ready (the node lifecycle controller's) transitions anew.
        let mut unknown = first.clone();
        for c in unknown.conditions.as_mut().unwrap() {
            c.status = "Unknown".into();
        }
        assert_eq!(ready(&facts.status(at(90), Some(&unknown))).last_transition_time, Some(Time(at(90))));
    }

    #[test]
    fn only_changes_other_than_heartbeats_call_for_a_post() {
        let facts = facts();
        let server = facts.status(at(0), None);
        assert!(!status_differs(Some(&server), &facts.status(at(10), Some(&server))));
        assert!(status_differs(None, &server));
        let mut unknown = server.clone();
        unknown.conditions.as_mut().unwrap()[3].status = "Unknown".into();
        assert!(status_differs(Some(&unknown), &facts.status(at(10), Some(&unknown))));
        let mut other_writer = server.clone();
        other_writer.conditions.as_mut().unwrap().push(NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            ..NodeCondition::default()
        });
        assert!(!status_differs(Some(&other_writer), &facts.status(at(10), Some(&other_writer))));
        let mut moved = facts.clone();
        moved.kubelet_port = 10251;
        assert!(status_differs(Some(&server), &moved.status(at(10), Some(&server))));
    }

    #[test]
    fn a_lease_is_held_by_its_node_and_owned_by_the_node_object() {
        let lease = serde_json::to_value(facts().lease("uid-1", at(0))).unwrap();
        assert_eq!(lease["metadata"]["namespace"], LEASE_NAMESPACE);
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(lease["spec"]["holderIdentity"], "hollow-3");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(lease["spec"]["renewTime"], "2027-01-15T08:00:00.000000Z");
        assert_eq!(lease_renewal("n", at(1))["spec"]["renewTime"], "2027-01-15T08:00:01.000000Z");
    }
}
