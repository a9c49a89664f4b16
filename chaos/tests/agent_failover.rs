//! A node agent fails over between the API servers of a 3-process control plane:
//! `flotilla agent --hollow --count 3 --server A,B,C` registers 3 Ready nodes through
//! member A; after SIGKILL of member A (the agent's endpoint) the Leases keep being renewed
//! through the others; member A comes back, then the Raft leader is killed, and the
//! renewals go on through that too. The nodes stay Ready all along.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chaos::{flotilla_binary, FlotillaCluster, FAST_ELECTIONS};
use raft_store::NodeId;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);
const NODES: usize = 3;

/// The agent process; killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An admin kubeconfig for the cluster's shared PKI, pointing at `server`.
fn write_kubeconfig(cluster: &FlotillaCluster, server: &str, path: &Path) {
    let pki = cluster.pki_dir();
    let file = |name: &str| pki.join(name).display().to_string();
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: flotilla
  cluster: {{server: '{server}', certificate-authority: '{ca}'}}
users:
- name: admin
  user: {{client-certificate: '{cert}', client-key: '{key}'}}
contexts:
- name: admin
  context: {{cluster: flotilla, user: admin}}
current-context: admin
",
        ca = file("ca.crt"),
        cert = file("admin.crt"),
        key = file("admin.key"),
    );
    std::fs::write(path, text).unwrap();
}

/// `kubectl -o json` through member `id`; `Null` when it fails.
fn kubectl_json(cluster: &FlotillaCluster, kubeconfig: &Path, id: NodeId, args: &[&str]) -> Value {
    let out = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--server={}", cluster.api(id).unwrap()))
        .arg("--request-timeout=5s")
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("kubectl runs");
    if !out.status.success() {
        return Value::Null;
    }
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The hollow Leases' renewTimes through member `id`.
fn renewals(cluster: &FlotillaCluster, kubeconfig: &Path, id: NodeId) -> Option<BTreeMap<String, String>> {
    let list = kubectl_json(cluster, kubeconfig, id, &["get", "leases", "-n", "kube-node-lease"]);
    let leases = items(&list);
    (leases.len() == NODES).then(|| {
        leases
            .iter()
            .map(|l| (l["metadata"]["name"].as_str().unwrap_or("").to_string(), l["spec"]["renewTime"].to_string()))
            .collect()
    })
}

/// Waits until every Lease was renewed `times` times after `since` (as read through `id`).
fn renewed(
    cluster: &FlotillaCluster,
    kubeconfig: &Path,
    id: NodeId,
    since: &BTreeMap<String, String>,
    what: &str,
    log: &Path,
) {
    let deadline = Instant::now() + DEADLINE;
    let mut seen: BTreeMap<String, Vec<String>> = since.iter().map(|(k, v)| (k.clone(), vec![v.clone()])).collect();
    loop {
        if let Some(now) = renewals(cluster, kubeconfig, id) {
            for (name, at) in now {
                let times = seen.entry(name).or_default();
                if times.last() != Some(&at) {
                    times.push(at);
                }
            }
            // The first entry is `since`: two more are two renewals after it.
            if seen.len() == NODES && seen.values().all(|t| t.len() >= 3) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: leases not renewed through member {id}: {seen:?}\nagent log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Leases' renewTimes through member `id`, once it serves all of them.
fn current_renewals(cluster: &FlotillaCluster, kubeconfig: &Path, id: NodeId) -> BTreeMap<String, String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(now) = renewals(cluster, kubeconfig, id) {
            return now;
        }
        assert!(Instant::now() < deadline, "member {id} never served {NODES} leases\n{}", cluster.log_tail(id, 30));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready_nodes(cluster: &FlotillaCluster, kubeconfig: &Path, id: NodeId) -> usize {
    let list = kubectl_json(cluster, kubeconfig, id, &["get", "nodes"]);
    items(&list)
        .iter()
        .filter(|n| {
            let conditions = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_go_on_through_a_member_kill_and_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    let bin = flotilla_binary().unwrap();
    let mut cluster = FlotillaCluster::start_with_api(&bin, base, 3, &FAST_ELECTIONS).unwrap();
    let kubeconfig: PathBuf = base.join("kubeconfig");
    write_kubeconfig(&cluster, cluster.api(1).unwrap(), &kubeconfig);
    let deadline = Instant::now() + DEADLINE;
    for id in cluster.ids() {
        while kubectl_json(&cluster, &kubeconfig, id, &["get", "namespace", "kube-node-lease"]).is_null() {
            assert!(Instant::now() < deadline, "member {id} never served the API\n{}", cluster.log_tail(id, 30));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let servers: Vec<String> = cluster.ids().iter().map(|id| cluster.api(*id).unwrap().to_string()).collect();
    let log = base.join("agent.log");
    let out = std::fs::File::create(&log).unwrap();
    let _agent = Agent(
        Command::new(&bin)
            .args(["agent", "--hollow", "--count", &NODES.to_string(), "--heartbeat-secs", "1"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--server")
            .arg(servers.join(","))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + DEADLINE;
    while ready_nodes(&cluster, &kubeconfig, 2) < NODES {
        let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(Instant::now() < deadline, "the hollow nodes never became Ready\n{agent_log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = current_renewals(&cluster, &kubeconfig, 2);
    renewed(&cluster, &kubeconfig, 2, &before, "before any kill", &log);

    // The agent's endpoint (the first of --server) dies: it moves on.
    let before = current_renewals(&cluster, &kubeconfig, 2);
    cluster.kill(1).unwrap();
    renewed(&cluster, &kubeconfig, 2, &before, "after killing member 1", &log);
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(agent_log.contains("failed over"), "no failover logged:\n{agent_log}");

    // Member 1 back, then the leader dies: renewals go on through the new one.
    cluster.restart(1).unwrap();
    let leader = cluster.wait_for_leader(DEADLINE).await.unwrap();
    let survivor = cluster.ids().into_iter().find(|id| *id != leader).unwrap();
    let before = current_renewals(&cluster, &kubeconfig, survivor);
    cluster.kill(leader).unwrap();
    renewed(&cluster, &kubeconfig, survivor, &before, &format!("after killing the leader (member {leader})"), &log);
    assert_eq!(ready_nodes(&cluster, &kubeconfig, survivor), NODES, "the nodes stayed Ready");
}
