//! Nodes and what follows them, over a real single-member store, with the test as the
//! kubelets (a fake one renews the Leases of the nodes it runs, marks their pods Ready and
//! removes their deleted pods): a node whose Lease stops turns `Unknown`, is tainted, and its
//! pods go as they tolerate it, then heals; a `NoExecute` taint evicts pods at once; nodes
//! get distinct pod CIDRs and reuse freed ones; DaemonSets run one pod per eligible node and
//! roll updates out one node at a time.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::controller::Controllers;
use actors::controllers::daemon_set::DaemonSets;
use actors::controllers::node_ipam::NodeIpam;
use actors::controllers::node_lifecycle::{NodeLifecycle, TaintEviction};
use actors::kinds::find;
use actors::patch::PatchKind;
use actors::{
    Create, Delete, DeleteOptions, FieldValidation, Get, KindActors, List, Part, Patch, ResourceKind, Watch, WatchStart,
};
use futures::StreamExt;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use common::single_member;

const DEADLINE: Duration = Duration::from_secs(30);
const NS: &str = "default";
const LEASES: &str = "kube-node-lease";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn kind(group: &str, resource: &str) -> &'static ResourceKind {
    find(group, "v1", resource).unwrap()
}
fn pods() -> &'static ResourceKind {
    kind("", "pods")
}
fn nodes() -> &'static ResourceKind {
    kind("", "nodes")
}
fn daemon_sets() -> &'static ResourceKind {
    kind("apps", "daemonsets")
}

fn now() -> String {
    time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

/// A store, its kind actors, the node controllers (with a grace period of `grace`), the
/// DaemonSet controller and the scheduler; and the nodes whose fake kubelet is alive.
struct Cluster {
    kinds: KindActors,
    node: raft_store::StoreNode,
    alive: RefCell<HashSet<String>>,
    stop: std::cell::Cell<bool>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(grace: Duration) -> Rc<Cluster> {
        let dir = tempfile::tempdir().unwrap();
        let node = single_member(dir.path()).await;
        let kinds = KindActors::start(&node);
        Controllers::new(kinds.clone(), node.clone())
            .with(move || NodeLifecycle::with_grace(grace))
            .with(TaintEviction::default)
            .with(NodeIpam::default)
            .with(DaemonSets::new)
            .with(actors::scheduler::Scheduler::default)
            .run();
        let cluster =
            Rc::new(Cluster { kinds, node, alive: RefCell::default(), stop: std::cell::Cell::new(false), _dir: dir });
        for ns in [NS, LEASES] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            cluster.create(kind("", "namespaces"), None, obj).await;
        }
        cluster.kubelet();
        cluster
    }

    async fn stop(&self) {
        self.stop.set(true);
        self.node.shutdown().await;
    }

    async fn create(&self, kind: &ResourceKind, ns: Option<&str>, obj: Value) -> Value {
        let msg = Create { namespace: ns.map(String::from), obj, field_manager: Some("test".into()) };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap()
    }

    async fn get(&self, kind: &ResourceKind, ns: Option<&str>, name: &str) -> Option<Value> {
        let msg = Get { namespace: ns.map(String::from), name: name.into() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().ok()
    }

    async fn list(&self, kind: &ResourceKind, ns: Option<&str>) -> Vec<Value> {
        let msg = List { namespace: ns.map(String::from), ..Default::default() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap().items().unwrap()
    }

    async fn patch(&self, kind: &ResourceKind, ns: Option<&str>, name: &str, part: Part, body: Value) -> Option<Value> {
        let msg = Patch {
            namespace: ns.map(String::from),
            name: name.into(),
            patch_kind: PatchKind::Merge,
            body: body.to_string().into_bytes(),
            field_manager: Some("test".into()),
            force: false,
            part,
            field_validation: FieldValidation::Ignore,
        };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().ok().map(|w| w.obj)
    }

    async fn delete(&self, kind: &ResourceKind, ns: Option<&str>, name: &str, grace: Option<i64>) {
        let options = DeleteOptions { grace_period_seconds: grace, ..Default::default() };
        let msg = Delete { namespace: ns.map(String::from), name: name.into(), options };
        let _ = self.kinds.get(kind).unwrap().send(msg).await.unwrap();
    }

    /// A node with room for 110 pods, Ready, with a Lease; its kubelet alive.
    async fn add_node(&self, name: &str, labels: Value, taints: Value) {
        let mut labels = labels;
        labels["kubernetes.io/hostname"] = json!(name);
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}});
        self.create(nodes(), None, node).await;
        self.post_status(name).await;
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASES},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()}});
        self.create(kind("coordination.k8s.io", "leases"), Some(LEASES), lease).await;
        self.alive.borrow_mut().insert(name.to_string());
    }

    /// What a kubelet posts: Ready, with a fresh heartbeat.
    async fn post_status(&self, name: &str) {
        let status = json!({"status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        }});
        self.patch(nodes(), None, name, Part::Status, status).await.unwrap();
    }

    /// The fake kubelets: for each live node, renew its Lease, mark its pods Running and
    /// Ready, remove its deleted pods.
    fn kubelet(self: &Rc<Self>) {
        let cluster = self.clone();
        actix_rt::spawn(async move {
            while !cluster.stop.get() {
                let alive: Vec<String> = cluster.alive.borrow().iter().cloned().collect();
                for name in &alive {
                    let renew = json!({"spec": {"renewTime": micro_now()}});
                    cluster.patch(kind("coordination.k8s.io", "leases"), Some(LEASES), name, Part::Main, renew).await;
                }
                for pod in cluster.list(pods(), None).await {
                    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
                    if !alive.iter().any(|a| a == node) {
                        continue;
                    }
                    let (ns, name) = (pod["metadata"]["namespace"].as_str().unwrap(), name(&pod));
                    if pod["metadata"].get("deletionTimestamp").is_some() {
                        cluster.delete(pods(), Some(ns), name, Some(0)).await;
                    } else if !is_ready(&pod) {
                        let status = json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": now()}]}});
                        cluster.patch(pods(), Some(ns), name, Part::Status, status).await;
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    /// A pod bound to `node` (as if scheduled there) with these tolerations.
    async fn pod_on(&self, name: &str, node: &str, tolerations: Value) {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "tolerations": tolerations, "containers": [{"name": "c", "image": "nginx"}]}});
        self.create(pods(), Some(NS), pod).await;
    }

    async fn pod(&self, name: &str) -> Option<Value> {
        self.get(pods(), Some(NS), name).await
    }

    async fn node_obj(&self, name: &str) -> Value {
        self.get(nodes(), None, name).await.unwrap()
    }

    /// The active (not deleted) pods whose labels include `app`, by name.
    async fn pods_of(&self, app: &str) -> Vec<Value> {
        let mut found: Vec<Value> = self
            .list(pods(), Some(NS))
            .await
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == app && !deleted(p))
            .collect();
        found.sort_by(|a, b| name(a).cmp(name(b)));
        found
    }

    async fn watch_pods(&self) -> WatchStart {
        let msg = Watch { namespace: Some(NS.into()), ..Default::default() };
        self.kinds.get(pods()).unwrap().send(msg).await.unwrap().unwrap()
    }
}

fn micro_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let micros = now.microsecond();
    format!("{}.{micros:06}Z", now.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap().trim_end_matches('Z'))
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn deleted(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_some_and(|t| !t.is_null())
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
}

fn is_ready(pod: &Value) -> bool {
    condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

fn has_taint(node: &Value, key: &str, effect: &str) -> bool {
    node["spec"]["taints"].as_array().into_iter().flatten().any(|t| t["key"] == key && t["effect"] == effect)
}

fn image(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"].as_str().unwrap_or("")
}

/// Polls `check` until it gives a value, failing with `what` after [`DEADLINE`].
async fn eventually<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tolerate_unreachable(seconds: Option<i64>) -> Value {
    let mut t = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    json!([t])
}

#[actix_rt::test]
async fn a_node_that_stops_renewing_its_lease_turns_unknown_and_its_pods_go_as_they_tolerate() {
    let cluster = Cluster::start(Duration::from_secs(3)).await;
    cluster.add_node("n1", json!({}), json!([])).await;
    cluster.add_node("n2", json!({}), json!([])).await;
    cluster.pod_on("plain", "n1", json!([])).await;
    cluster.pod_on("brief", "n1", tolerate_unreachable(Some(2))).await;
    cluster.pod_on("forever", "n1", tolerate_unreachable(None)).await;
    let plain = cluster.pod("plain").await.unwrap();
    let defaults: Vec<&Value> = plain["spec"]["tolerations"].as_array().unwrap().iter().collect();
    assert_eq!(defaults.len(), 2, "DefaultTolerationSeconds: {defaults:?}");
    assert!(defaults.iter().all(|t| t["tolerationSeconds"] == 300 && t["effect"] == "NoExecute"));
    eventually("the pods ready", || async {
        let mut ready = true;
        for p in ["plain", "brief", "forever"] {
            ready &= cluster.pod(p).await.is_some_and(|p| is_ready(&p));
        }
        ready.then_some(())
    })
    .await;

    // n1's kubelet dies: within the grace period n1 is Unknown and tainted.
    cluster.alive.borrow_mut().remove("n1");
    let stopped = Instant::now();
    let node = eventually("n1 unreachable", || async {
        let n = cluster.node_obj("n1").await;
        (has_taint(&n, UNREACHABLE, "NoExecute") && has_taint(&n, UNREACHABLE, "NoSchedule")).then_some(n)
    })
    .await;
    let tainted = Instant::now();
    assert!(stopped.elapsed() >= Duration::from_secs(2), "tainted before the grace period: {:?}", stopped.elapsed());
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str(), ready["message"].as_str()),
        (Some("Unknown"), Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status."))
    );
    let no_execute = node["spec"]["taints"].as_array().unwrap().iter().find(|t| t["effect"] == "NoExecute").unwrap();
    assert!(no_execute["timeAdded"].is_string());
    let n2 = cluster.node_obj("n2").await;
    assert!(n2["spec"]["taints"].as_array().is_none_or(Vec::is_empty), "n2 is fine: {n2}");
    assert!(!cluster.pod("brief").await.is_some_and(|p| deleted(&p)), "brief tolerates it for 2 s");

    // Its pods are marked not ready; brief goes after its 2 s, the others stay.
    eventually("the pods of n1 not ready", || async {
        let mut not_ready = true;
        for p in ["plain", "forever"] {
            not_ready &= cluster.pod(p).await.is_some_and(|p| condition(&p, "Ready").unwrap()["status"] == "False");
        }
        not_ready.then_some(())
    })
    .await;
    let brief = eventually("brief evicted", || async { cluster.pod("brief").await.filter(deleted) }).await;
    assert!(tainted.elapsed() >= Duration::from_millis(900), "evicted too soon: {:?}", tainted.elapsed());
    let disruption = condition(&brief, "DisruptionTarget").unwrap();
    assert_eq!(disruption["reason"], "DeletionByTaintManager");
    let events = cluster.list(kind("", "events"), Some(NS)).await;
    assert!(events.iter().any(|e| e["reason"] == "TaintManagerEviction" && e["involvedObject"]["name"] == "brief"));
    assert!(events.iter().any(|e| e["reason"] == "NodeNotReady" && e["involvedObject"]["name"] == "n1"));
    for p in ["plain", "forever"] {
        assert!(!deleted(&cluster.pod(p).await.unwrap()), "{p} stays");
    }

    // A NoExecute taint of its own on n2: a pod that does not tolerate it goes at once.
    cluster.pod_on("victim", "n2", json!([])).await;
    cluster.pod_on("guest", "n2", json!([{"key": "dedicated", "operator": "Exists"}])).await;
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}});
    cluster.patch(nodes(), None, "n2", Part::Main, taint).await.unwrap();
    eventually("victim evicted", || async { cluster.pod("victim").await.is_none_or(|p| deleted(&p)).then_some(()) })
        .await;
    assert!(!deleted(&cluster.pod("guest").await.unwrap()));

    // n1's kubelet comes back: Ready again, the taints go.
    cluster.post_status("n1").await;
    cluster.alive.borrow_mut().insert("n1".into());
    eventually("n1 healed", || async {
        let n = cluster.node_obj("n1").await;
        let clean = !has_taint(&n, UNREACHABLE, "NoExecute") && !has_taint(&n, UNREACHABLE, "NoSchedule");
        (clean && condition(&n, "Ready").unwrap()["status"] == "True").then_some(())
    })
    .await;
    let n2 = cluster.node_obj("n2").await;
    assert!(has_taint(&n2, "dedicated", "NoExecute"), "a user's taint stays");
    assert!(!deleted(&cluster.pod("plain").await.unwrap()));
    cluster.stop().await;
}

#[actix_rt::test]
async fn nodes_get_distinct_pod_cidrs_and_a_freed_one_is_reused() {
    let cluster = Cluster::start(Duration::from_secs(60)).await;
    for n in ["a", "b", "c", "d"] {
        cluster.add_node(n, json!({}), json!([])).await;
    }
    let cidrs = eventually("every node has a pod CIDR", || async {
        let mut cidrs = BTreeMap::new();
        for n in cluster.list(nodes(), None).await {
            let cidr = n["spec"]["podCIDR"].as_str()?.to_string();
            assert_eq!(n["spec"]["podCIDRs"], json!([cidr]));
            cidrs.insert(name(&n).to_string(), cidr);
        }
        (cidrs.len() == 4).then_some(cidrs)
    })
    .await;
    let distinct: HashSet<&String> = cidrs.values().collect();
    assert_eq!(distinct.len(), 4, "{cidrs:?}");
    assert!(cidrs.values().all(|c| c.starts_with("10.244.") && c.ends_with(".0/24")), "{cidrs:?}");

    let freed = cidrs["b"].clone();
    cluster.delete(nodes(), None, "b", None).await;
    cluster.alive.borrow_mut().remove("b");
    eventually("b gone", || async { cluster.get(nodes(), None, "b").await.is_none().then_some(()) }).await;
    cluster.add_node("e", json!({}), json!([])).await;
    let e = eventually("e has a pod CIDR", || async {
        cluster.node_obj("e").await["spec"]["podCIDR"].as_str().map(String::from)
    })
    .await;
    assert!(!cidrs.values().any(|c| *c == e && *c != freed), "{e} is another node's");
    assert_eq!(e, freed, "the lowest free block is the freed one");
    cluster.stop().await;
}

fn daemon_set(name: &str, tolerations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "tolerations": tolerations,
                "containers": [{"name": "c", "image": "agent:1"}],
            }},
        },
    })
}

/// `kubectl rollout status ds`'s test.
async fn rolled_out(cluster: &Cluster, name: &str, desired: i64) -> Value {
    eventually(&format!("daemon set {name} rolled out on {desired} nodes"), || async {
        let ds = cluster.get(daemon_sets(), Some(NS), name).await?;
        let s = &ds["status"];
        let count = |f: &str| s[f].as_i64().unwrap_or(0);
        let done = ds["metadata"]["generation"].as_i64() <= s["observedGeneration"].as_i64()
            && count("desiredNumberScheduled") == desired
            && count("updatedNumberScheduled") == desired
            && count("numberAvailable") == desired
            && count("numberReady") == desired;
        done.then_some(ds)
    })
    .await
}

#[actix_rt::test]
async fn a_daemon_set_runs_one_pod_per_eligible_node_and_rolls_updates_one_node_at_a_time() {
    let cluster = Cluster::start(Duration::from_secs(60)).await;
    cluster.add_node("a", json!({}), json!([])).await;
    cluster.add_node("b", json!({}), json!([])).await;
    cluster.add_node("c", json!({}), json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}])).await;
    let ds = cluster.create(daemon_sets(), Some(NS), daemon_set("agent", json!([]))).await;

    // One pod on each untainted node, bound there by the scheduler.
    let ds_status = rolled_out(&cluster, "agent", 2).await;
    assert_eq!(ds_status["status"]["currentNumberScheduled"], 2);
    assert_eq!(ds_status["status"]["numberMisscheduled"], 0);
    let placed = cluster.pods_of("agent").await;
    let on: Vec<&str> = placed.iter().map(|p| p["spec"]["nodeName"].as_str().unwrap()).collect();
    assert_eq!(on.iter().copied().collect::<HashSet<_>>(), HashSet::from(["a", "b"]), "{on:?}");
    for p in &placed {
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str()),
            (Some("DaemonSet"), ds["metadata"]["uid"].as_str())
        );
        let term = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0];
        assert_eq!(term["values"], json!([p["spec"]["nodeName"]]));
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations.iter().any(|t| t["key"] == UNREACHABLE && t.get("tolerationSeconds").is_none()));
        assert!(p["metadata"]["labels"]["controller-revision-hash"].is_string());
    }
    let revisions = cluster.list(kind("apps", "controllerrevisions"), Some(NS)).await;
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0]["revision"], 1);
    assert_eq!(revisions[0]["metadata"]["ownerReferences"][0]["name"], "agent");

    // A DaemonSet that tolerates the taint runs on c too.
    let tolerant = daemon_set("infra", json!([{"key": "dedicated", "operator": "Exists"}]));
    cluster.create(daemon_sets(), Some(NS), tolerant).await;
    rolled_out(&cluster, "infra", 3).await;

    // A new node gets its pod.
    cluster.add_node("d", json!({}), json!([])).await;
    rolled_out(&cluster, "agent", 3).await;

    // A new image rolls out with at most one node without an available pod.
    let mut watch = cluster.watch_pods().await;
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent:2"}]}}}});
    cluster.patch(daemon_sets(), Some(NS), "agent", Part::Main, update).await.unwrap();
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    let mut steps = 0;
    let check = |current: &BTreeMap<String, Value>, steps: &mut usize| {
        let mut available: HashSet<&str> = HashSet::new();
        let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
        for p in current.values().filter(|p| p["metadata"]["labels"]["app"] == "agent" && !deleted(p)) {
            let node = p["spec"]["nodeName"].as_str().unwrap_or("");
            *per_node.entry(node).or_default() += 1;
            if is_ready(p) && !node.is_empty() {
                available.insert(node);
            }
        }
        *steps += 1;
        assert!(per_node.values().all(|n| *n <= 1), "two pods on one node at step {steps}: {per_node:?}");
        assert!(available.len() >= 2, "only {available:?} available at step {steps}");
    };
    for e in std::mem::take(&mut watch.initial) {
        current.insert(name(&e.object).to_string(), e.object);
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        match actix_rt::time::timeout(Duration::from_millis(200), watch.rest.next()).await {
            Ok(Some(e)) => {
                let key = name(&e.object).to_string();
                if e.event_type == "DELETED" {
                    current.remove(&key);
                } else {
                    current.insert(key, e.object);
                }
                check(&current, &mut steps);
            }
            Ok(None) => panic!("the pod watch ended"),
            Err(_) => {
                let ds = cluster.get(daemon_sets(), Some(NS), "agent").await.unwrap();
                let s = &ds["status"];
                if ds["metadata"]["generation"] == s["observedGeneration"]
                    && s["updatedNumberScheduled"] == 3
                    && s["numberAvailable"] == 3
                {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "the rollout never finished");
    }
    assert!(steps > 6, "the watch saw the rollout ({steps} steps)");
    let rolled = cluster.pods_of("agent").await;
    assert_eq!(rolled.len(), 3);
    assert!(rolled.iter().all(|p| image(p) == "agent:2"), "{rolled:?}");
    let mut numbers: Vec<i64> = cluster
        .list(kind("apps", "controllerrevisions"), Some(NS))
        .await
        .iter()
        .filter(|r| r["metadata"]["ownerReferences"][0]["name"] == "agent")
        .map(|r| r["revision"].as_i64().unwrap())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2], "kubectl rollout history lists both");

    // OnDelete: a new template waits until a pod is deleted by hand.
    let on_delete = json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null},
        "template": {"spec": {"containers": [{"name": "c", "image": "agent:3"}]}}}});
    let changed = cluster.patch(daemon_sets(), Some(NS), "agent", Part::Main, on_delete).await.unwrap();
    let generation = changed["metadata"]["generation"].clone();
    eventually("the OnDelete spec observed", || async {
        let ds = cluster.get(daemon_sets(), Some(NS), "agent").await?;
        (ds["status"]["observedGeneration"] == generation && ds["status"].get("updatedNumberScheduled").is_none())
            .then_some(())
    })
    .await;
    assert!(cluster.pods_of("agent").await.iter().all(|p| image(p) == "agent:2"));
    let first = name(&cluster.pods_of("agent").await[0]).to_string();
    cluster.delete(pods(), Some(NS), &first, None).await;
    eventually("a replacement of the new template", || async {
        let pods = cluster.pods_of("agent").await;
        let new = pods.iter().filter(|p| image(p) == "agent:3").count();
        (pods.len() == 3 && new == 1).then_some(())
    })
    .await;
    cluster.stop().await;
}
