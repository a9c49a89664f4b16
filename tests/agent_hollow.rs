//! End-to-end: `flotilla agent --hollow --count 20` against `flotilla up`: 20 Nodes register
//! Ready (kubelet's labels, capacity, nodeInfo, a kubelet endpoint port) and renew their
//! Leases in `kube-node-lease`; a Deployment of 60 is scheduled onto them and every pod goes
//! Running and Ready with a distinct pod IP from its node's pod CIDR; deleting the
//! Deployment removes the pods (the agent deletes them with grace 0); once the agent is
//! killed its Leases stop being renewed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kubelet::{items, until};
use common::Up;
use serde_json::Value;

const NODES: usize = 20;
const REPLICAS: usize = 60;

/// The agent process; killed when dropped.
struct Agent(Child);

impl Agent {
    fn start(dir: &Path) -> Agent {
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["agent", "--hollow", "--count", &NODES.to_string(), "--heartbeat-secs", "1"])
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent(child)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)?["status"].as_str()
}

fn hollow_nodes(list: &Value) -> Vec<Value> {
    items(list).into_iter().filter(|n| n["metadata"]["name"].as_str().unwrap_or("").starts_with("hollow-")).collect()
}

/// Each Lease's renewTime, by name.
fn renew_times(list: &Value) -> BTreeMap<String, String> {
    items(list)
        .iter()
        .map(|l| (l["metadata"]["name"].as_str().unwrap_or("").to_string(), l["spec"]["renewTime"].to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_heartbeat_and_run_a_deployments_pods() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    up.wait_ready();
    let mut agent = Agent::start(dir.path());
    let log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();

    // Every node registers and is Ready, as kubelet reports it.
    let nodes = until(&up, "20 hollow nodes Ready", &["get", "nodes", "-o", "json"], |list| {
        let nodes = hollow_nodes(list);
        nodes.len() == NODES && nodes.iter().all(|n| condition(n, "Ready") == Some("True"))
    });
    let node = hollow_nodes(&nodes).into_iter().find(|n| n["metadata"]["name"] == "hollow-0").unwrap();
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "hollow-0", "{node}");
    assert_eq!(node["metadata"]["labels"]["kubernetes.io/os"], "linux");
    assert_eq!(node["status"]["capacity"]["cpu"], "4");
    assert_eq!(node["status"]["capacity"]["memory"], "16Gi");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert_eq!(node["status"]["nodeInfo"]["containerRuntimeVersion"], "hollow://0.1");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0-flotilla");
    assert_eq!(node["status"]["addresses"][0]["type"], "InternalIP");
    assert!(node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap() > 0, "{node}");
    for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        assert_eq!(condition(&node, kind), Some("False"), "{kind}: {node}");
    }

    // One Lease per node, held by it and renewed every heartbeat.
    let leases = ["get", "leases", "-n", "kube-node-lease", "-o", "json"];
    let first = until(&up, "20 leases", &leases, |list| {
        let all = items(list);
        all.len() == NODES && all.iter().all(|l| l["spec"]["holderIdentity"] == l["metadata"]["name"])
    });
    let before = renew_times(&first);
    until(&up, "every lease renewed", &leases, |list| {
        let now = renew_times(list);
        now.len() == NODES && now.iter().all(|(name, at)| before.get(name) != Some(at))
    });

    // The scheduler binds 60 pods to the hollow nodes and the agent runs them.
    up.kubectl(&["create", "deployment", "web", "--image=registry.invalid/web:1", &format!("--replicas={REPLICAS}")]);
    let pods_args = ["get", "pods", "-l", "app=web", "-o", "json"];
    let pods = until(&up, "60 pods Running and Ready", &pods_args, |list| {
        let pods = items(list);
        pods.len() == REPLICAS
            && pods.iter().all(|p| {
                p["status"]["phase"] == "Running"
                    && condition(p, "Ready") == Some("True")
                    && p["status"]["podIP"].as_str().is_some_and(|ip| !ip.is_empty())
            })
    });
    let pods = items(&pods);
    let ips: HashSet<&str> = pods.iter().map(|p| p["status"]["podIP"].as_str().unwrap()).collect();
    assert_eq!(ips.len(), REPLICAS, "pod IPs are distinct");
    let cidrs: BTreeMap<String, String> = hollow_nodes(&up_json(&up, &["get", "nodes", "-o", "json"]))
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap().to_string(),
                n["spec"]["podCIDR"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for pod in &pods {
        let node = pod["spec"]["nodeName"].as_str().unwrap();
        assert!(node.starts_with("hollow-"), "{pod}");
        let status = &pod["status"];
        assert!(status["containerStatuses"][0]["state"]["running"].is_object(), "{pod}");
        assert_eq!(status["containerStatuses"][0]["ready"], true, "{pod}");
        assert!(status["startTime"].is_string(), "{pod}");
        assert_eq!(status["hostIP"], node_address(&nodes, node), "{pod}");
        // The node IPAM controller gave each node a /24: its pods' addresses are in it.
        let cidr = &cidrs[node];
        let prefix = cidr.trim_end_matches("0/24");
        assert!(!cidr.is_empty() && status["podIP"].as_str().unwrap().starts_with(prefix), "{cidr}: {pod}");
    }

    // Deleted, the pods go: the agent removes them once "stopped".
    up.kubectl(&["delete", "deployment", "web"]);
    until(&up, "the Deployment's pods gone", &pods_args, |list| list.is_object() && items(list).is_empty());

    // Killed, the agent renews nothing more.
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let stopped = renew_times(&up_json(&up, &leases));
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        // Three heartbeats' time, looked at all along: no renewal may land.
        assert_eq!(renew_times(&up_json(&up, &leases)), stopped, "a lease was renewed after the kill\n{}", log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn up_json(up: &Up, args: &[&str]) -> Value {
    serde_json::from_str(&up.kubectl(args)).unwrap()
}

fn node_address(nodes: &Value, name: &str) -> Value {
    let node = items(nodes).into_iter().find(|n| n["metadata"]["name"] == name).unwrap();
    node["status"]["addresses"][0]["address"].clone()
}
