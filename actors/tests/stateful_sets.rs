//! The StatefulSet and disruption controllers over a real single-member store, with the test
//! as the kubelet (it marks pods Running and Ready through the status subresource) and a pod
//! watch checking the order of every step: an `OrderedReady` set creates `web-0`, its claim
//! first, and `web-1` only once `web-0` is Ready; scale-down removes the highest ordinal first
//! and keeps the claims; a template change rolls from the highest ordinal down, each pod back
//! Ready before the next, a partition holding the lower ordinals; `Parallel` creates every pod
//! at once and `whenScaled: Delete` takes the claims of removed pods along; a
//! PodDisruptionBudget's figures over a Deployment's pods with percentages.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::kinds::find;
use actors::patch::PatchKind;
use actors::{
    Create, FieldValidation, Get, KindActors, List, Part, Patch, ResourceKind, Watch, WatchEvent, WatchStart,
};
use futures::StreamExt;
use serde_json::{json, Value};

use common::single_member;

const DEADLINE: Duration = Duration::from_secs(30);
const NS: &str = "default";
const REVISION_HASH: &str = "controller-revision-hash";

fn kind(group: &str, resource: &str) -> &'static ResourceKind {
    find(group, "v1", resource).unwrap()
}
fn pods() -> &'static ResourceKind {
    kind("", "pods")
}
fn claims() -> &'static ResourceKind {
    kind("", "persistentvolumeclaims")
}
fn stateful_sets() -> &'static ResourceKind {
    kind("apps", "statefulsets")
}

/// A store, its kind actors and every controller.
struct Cluster {
    kinds: KindActors,
    node: raft_store::StoreNode,
    _controllers: actix::Addr<actors::controller::Controllers>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let node = single_member(dir.path()).await;
        let kinds = KindActors::start(&node);
        let controllers = actors::controllers::start_all(kinds.clone(), node.clone(), None);
        let cluster = Cluster { kinds, node, _controllers: controllers, _dir: dir };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        let _ = cluster.kinds.get(kind("", "namespaces")).unwrap().send(create(None, ns)).await.unwrap();
        cluster
    }

    /// Stops the store before the process exits (its threads must not outlive main).
    async fn stop(&self) {
        self.node.shutdown().await;
    }

    async fn create(&self, kind: &ResourceKind, obj: Value) -> Value {
        self.kinds.get(kind).unwrap().send(create(Some(NS), obj)).await.unwrap().unwrap()
    }

    async fn get(&self, kind: &ResourceKind, name: &str) -> Option<Value> {
        let msg = Get { namespace: Some(NS.into()), name: name.into() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().ok()
    }

    async fn list(&self, kind: &ResourceKind) -> Vec<Value> {
        let msg = List { namespace: Some(NS.into()), ..Default::default() };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap().items().unwrap()
    }

    async fn patch(&self, kind: &ResourceKind, name: &str, part: Part, body: Value) -> Result<Value, actors::ApiError> {
        let msg = Patch {
            namespace: Some(NS.into()),
            name: name.into(),
            patch_kind: PatchKind::Merge,
            body: body.to_string().into_bytes(),
            field_manager: Some("test".into()),
            force: false,
            part,
            field_validation: FieldValidation::Ignore,
        };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().map(|w| w.obj)
    }

    async fn merge(&self, kind: &ResourceKind, name: &str, body: Value) -> Value {
        self.patch(kind, name, Part::Main, body).await.unwrap()
    }

    /// What the kubelet does once a pod's containers are up (or one stops being ready).
    async fn set_ready(&self, pod: &str, ready: bool) {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        let ready = if ready { "True" } else { "False" };
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
        ]}});
        // The pod may be gone already.
        let _ = self.patch(pods(), pod, Part::Status, status).await;
    }

    /// A fake kubelet: marks every active pod Ready until `stop` is set.
    fn kubelet(self: &Rc<Self>, stop: Rc<Cell<bool>>) {
        let cluster = self.clone();
        actix_rt::spawn(async move {
            while !stop.get() {
                for pod in cluster.list(pods()).await {
                    if is_active(&pod) && !is_ready(&pod) {
                        cluster.set_ready(name(&pod), true).await;
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    /// Watches pods from now: every pod first, then each change.
    async fn watch_pods(&self) -> WatchStart {
        let msg = Watch { namespace: Some(NS.into()), ..Default::default() };
        self.kinds.get(pods()).unwrap().send(msg).await.unwrap().unwrap()
    }

    /// Follows the pods through `watch`, calling `check` with each event and the pods as they
    /// were before it, and (when `kubelet`) marking each new pod Ready once seen; returns the
    /// pods once `done` holds of them.
    async fn follow(
        &self,
        watch: &mut WatchStart,
        kubelet: bool,
        mut check: impl FnMut(&WatchEvent, &BTreeMap<String, Value>),
        done: impl Fn(&BTreeMap<String, Value>) -> bool,
    ) -> BTreeMap<String, Value> {
        let mut current: BTreeMap<String, Value> = BTreeMap::new();
        let mut marked: HashSet<String> = HashSet::new();
        let deadline = Instant::now() + DEADLINE;
        let mut pending: Vec<WatchEvent> = std::mem::take(&mut watch.initial);
        loop {
            for e in pending.drain(..) {
                check(&e, &current);
                let key = name(&e.object).to_string();
                if e.event_type == "DELETED" {
                    current.remove(&key);
                } else {
                    current.insert(key, e.object);
                }
            }
            if kubelet {
                for pod in current.values().filter(|p| is_active(p) && !is_ready(p)) {
                    if marked.insert(uid(pod).to_string()) {
                        self.set_ready(name(pod), true).await;
                    }
                }
            }
            if done(&current) {
                return current;
            }
            assert!(Instant::now() < deadline, "never done; pods: {:?}", current.keys());
            match actix_rt::time::timeout(Duration::from_millis(200), watch.rest.next()).await {
                Ok(Some(e)) => pending.push(e),
                Ok(None) => panic!("the pod watch ended"),
                Err(_) => {}
            }
        }
    }
}

fn create(ns: Option<&str>, obj: Value) -> Create {
    Create { namespace: ns.map(String::from), obj, field_manager: Some("test".into()) }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

fn revision(pod: &Value) -> &str {
    pod["metadata"]["labels"][REVISION_HASH].as_str().unwrap_or("")
}

fn is_active(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
}

fn is_ready(pod: &Value) -> bool {
    let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn image(obj: &Value) -> &str {
    obj["spec"]["containers"][0]["image"].as_str().unwrap_or("")
}

/// The ordinal of a pod named `web-N`.
fn ordinal(pod_name: &str) -> i64 {
    pod_name.rsplit_once('-').and_then(|(_, n)| n.parse().ok()).unwrap_or(-1)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == kind)
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

fn stateful_set(name: &str, replicas: i64, policy: &str, retention: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "podManagementPolicy": policy,
            "persistentVolumeClaimRetentionPolicy": retention,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    })
}

/// The set once its status says every replica is ready at one revision, for its generation.
async fn settled(cluster: &Cluster, set: &str) -> Value {
    eventually(&format!("statefulset {set} settled"), || async {
        let s = cluster.get(stateful_sets(), set).await?;
        let (status, replicas) = (&s["status"], s["spec"]["replicas"].as_i64().unwrap());
        let count = |f: &str| status[f].as_i64().unwrap_or(0);
        let done = s["metadata"]["generation"] == status["observedGeneration"]
            && count("replicas") == replicas
            && count("readyReplicas") == replicas
            && count("updatedReplicas") == replicas
            && status["currentRevision"] == status["updateRevision"];
        done.then_some(s)
    })
    .await
}

#[actix_rt::test]
async fn ordered_pods_come_up_in_order_with_their_claims_and_scale_down_from_the_top() {
    let cluster = Cluster::start().await;
    let mut watch = cluster.watch_pods().await;
    let set = cluster.create(stateful_sets(), stateful_set("web", 3, "OrderedReady", json!({}))).await;
    let mut created = Vec::new();
    let mut claims_seen = Vec::new();
    let pods = cluster
        .follow(
            &mut watch,
            true,
            |e, before| {
                if e.event_type != "ADDED" {
                    return;
                }
                let n = ordinal(name(&e.object));
                let rv: u64 = e.object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                created.push((name(&e.object).to_string(), rv));
                for lower in 0..n {
                    let ready = before.get(&format!("web-{lower}")).is_some_and(is_ready);
                    assert!(ready, "web-{n} created while web-{lower} was not Ready");
                }
            },
            |pods| pods.len() == 3 && pods.values().all(is_ready),
        )
        .await;
    let order: Vec<&str> = created.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(order, ["web-0", "web-1", "web-2"]);
    for (i, pod) in pods.values().enumerate() {
        let pod_name = format!("web-{i}");
        assert_eq!(name(pod), pod_name);
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], pod_name.as_str());
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string().as_str());
        assert!(labels[REVISION_HASH].as_str().unwrap().starts_with("web-"));
        assert_eq!(
            (pod["spec"]["hostname"].as_str(), pod["spec"]["subdomain"].as_str()),
            (Some(&*pod_name), Some("nginx"))
        );
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["uid"].as_str(), owner["controller"].as_bool()),
            (Some("StatefulSet"), Some(uid(&set)), Some(true))
        );
        let volume = &pod["spec"]["volumes"][0];
        assert_eq!(
            (volume["name"].as_str(), volume["persistentVolumeClaim"]["claimName"].as_str()),
            (Some("data"), Some(&*format!("data-{pod_name}")))
        );
        // The claim was made before its pod (its version is its creation's: nothing changed it).
        let claim = cluster.get(claims(), &format!("data-{pod_name}")).await.unwrap();
        let claim_rv: u64 = claim["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
        assert!(claim_rv < created[i].1, "{pod_name} created before its claim");
        assert_eq!(claim["metadata"]["labels"]["app"], "web");
        assert!(claim["metadata"].get("ownerReferences").is_none(), "retained: no owner");
        claims_seen.push(name(&claim).to_string());
    }
    let set = settled(&cluster, "web").await;
    assert_eq!(set["status"]["availableReplicas"], 3);
    assert_eq!(set["status"]["currentReplicas"], 3);
    assert_eq!(set["status"]["collisionCount"], 0);
    let events = cluster.list(kind("", "events")).await;
    let said = |reason: &str, message: &str| events.iter().any(|e| e["reason"] == reason && e["message"] == message);
    assert!(said("SuccessfulCreate", "create Pod web-0 in StatefulSet web successful"), "{events:?}");
    assert!(said("SuccessfulCreate", "create Claim data-web-2 Pod web-2 in StatefulSet web success"));

    // Scaled down to 1: web-2 goes, then web-1; every claim stays.
    let mut watch = cluster.watch_pods().await;
    cluster.merge(stateful_sets(), "web", json!({"spec": {"replicas": 1}})).await;
    let mut deleted = Vec::new();
    cluster
        .follow(
            &mut watch,
            true,
            |e, before| {
                if e.event_type == "DELETED" || !is_active(&e.object) {
                    let n = ordinal(name(&e.object));
                    let higher: Vec<&String> = before.keys().filter(|k| ordinal(k) > n).collect();
                    assert!(higher.is_empty(), "web-{n} deleted before {higher:?}");
                    if e.event_type == "DELETED" {
                        deleted.push(name(&e.object).to_string());
                    }
                }
            },
            |pods| pods.len() == 1,
        )
        .await;
    assert_eq!(deleted, ["web-2", "web-1"]);
    settled(&cluster, "web").await;
    let left: Vec<String> = cluster.list(claims()).await.iter().map(|c| name(c).to_string()).collect();
    assert_eq!(left, claims_seen);
    let events = cluster.list(kind("", "events")).await;
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "SuccessfulDelete"
                && e["message"] == "delete Pod web-2 in StatefulSet web successful")
    );
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_template_change_rolls_from_the_top_down_and_a_partition_holds_lower_ordinals() {
    let cluster = Rc::new(Cluster::start().await);
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    cluster.create(stateful_sets(), stateful_set("web", 3, "OrderedReady", json!({}))).await;
    let before = settled(&cluster, "web").await;
    let old = before["status"]["updateRevision"].as_str().unwrap().to_string();
    let originals: BTreeMap<String, Value> =
        cluster.list(pods()).await.into_iter().map(|p| (name(&p).to_string(), p)).collect();
    stop.set(true);

    // Partition 2: only web-2 moves to the new template.
    let mut watch = cluster.watch_pods().await;
    let change = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
        "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.28"}]}},
    }});
    cluster.merge(stateful_sets(), "web", change).await;
    let pods = cluster
        .follow(
            &mut watch,
            true,
            |_, _| {},
            |pods| pods.get("web-2").is_some_and(|p| image(p) == "nginx:1.28" && is_ready(p)),
        )
        .await;
    let set = eventually("the partitioned rollout in the status", || async {
        let s = cluster.get(stateful_sets(), "web").await?;
        (s["status"]["updatedReplicas"] == 1
            && s["status"]["readyReplicas"] == 3
            && s["status"]["observedGeneration"] == s["metadata"]["generation"])
            .then_some(s)
    })
    .await;
    let new = set["status"]["updateRevision"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(set["status"]["currentRevision"], old.as_str(), "not every pod is updated");
    assert_eq!(set["status"]["currentReplicas"], 2);
    assert_eq!(revision(&pods["web-2"]), new);
    for held in ["web-0", "web-1"] {
        let pod = cluster.get(self::pods(), held).await.unwrap();
        assert_eq!(
            (uid(&pod), revision(&pod), image(&pod)),
            (uid(&originals[held]), old.as_str(), "nginx:1.27"),
            "{held}"
        );
    }

    // Partition 0: web-1 then web-0, each after the one above is back Ready.
    let mut watch = cluster.watch_pods().await;
    cluster
        .merge(stateful_sets(), "web", json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}))
        .await;
    let mut rolled = Vec::new();
    cluster
        .follow(
            &mut watch,
            true,
            |e, before| {
                if e.event_type != "DELETED" {
                    return;
                }
                let n = ordinal(name(&e.object));
                rolled.push(name(&e.object).to_string());
                for higher in (n + 1)..3 {
                    let pod = &before[&format!("web-{higher}")];
                    assert!(
                        revision(pod) == new && is_ready(pod),
                        "web-{n} deleted before web-{higher} was updated and Ready"
                    );
                }
            },
            |pods| pods.len() == 3 && pods.values().all(|p| revision(p) == new && is_ready(p)),
        )
        .await;
    assert_eq!(rolled, ["web-1", "web-0"]);
    let set = settled(&cluster, "web").await;
    assert_eq!(set["status"]["currentRevision"], new.as_str());
    // Both templates are in the history, as `kubectl rollout history` lists it.
    let revisions = cluster.list(kind("apps", "controllerrevisions")).await;
    let mut numbers: Vec<(i64, String)> =
        revisions.iter().map(|r| (r["revision"].as_i64().unwrap(), name(r).to_string())).collect();
    numbers.sort();
    assert_eq!(numbers, [(1, old.clone()), (2, new.clone())]);
    assert!(revisions.iter().all(|r| r["metadata"]["ownerReferences"][0]["uid"] == set["metadata"]["uid"]));

    // Undo (what kubectl does): the first revision's patch back; it becomes revision 3.
    let first = revisions.iter().find(|r| name(r) == old).unwrap();
    let mut undo = first["data"].clone();
    undo["spec"]["template"].as_object_mut().unwrap().remove("$patch");
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    cluster.merge(stateful_sets(), "web", json!({"spec": {"template": undo["spec"]["template"]}})).await;
    let set = eventually("rolled back", || async {
        let s = settled(&cluster, "web").await;
        (s["status"]["updateRevision"] == old.as_str()).then_some(s)
    })
    .await;
    stop.set(true);
    assert_eq!(set["status"]["currentRevision"], old.as_str());
    let renumbered = cluster.get(kind("apps", "controllerrevisions"), &old).await.unwrap();
    assert_eq!(renumbered["revision"], 3);
    assert!(cluster.list(self::pods()).await.iter().all(|p| image(p) == "nginx:1.27"));
    cluster.stop().await;
}

#[actix_rt::test]
async fn parallel_sets_create_every_pod_at_once_and_delete_claims_with_scaled_down_pods() {
    let cluster = Cluster::start().await;
    let retention = json!({"whenDeleted": "Retain", "whenScaled": "Delete"});
    cluster.create(stateful_sets(), stateful_set("db", 3, "Parallel", retention)).await;
    // No kubelet: nothing is Ready, and every pod still comes.
    let pods = eventually("3 pods at once", || async {
        let pods = cluster.list(pods()).await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    assert!(pods.iter().all(|p| !is_ready(p)));
    let names: Vec<&str> = pods.iter().map(name).collect();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    eventually("3 claims", || async { (cluster.list(claims()).await.len() == 3).then_some(()) }).await;

    cluster.merge(stateful_sets(), "db", json!({"spec": {"replicas": 1}})).await;
    let left = eventually("the claims of db-1 and db-2 gone with their pods", || async {
        let claims: Vec<String> = cluster.list(claims()).await.iter().map(|c| name(c).to_string()).collect();
        let pods = cluster.list(self::pods()).await;
        (claims.len() == 1 && pods.len() == 1).then_some(claims)
    })
    .await;
    assert_eq!(left, ["data-db-0"]);
    let kept = cluster.get(claims(), "data-db-0").await.unwrap();
    assert!(kept["metadata"].get("ownerReferences").is_none(), "db-0 is in range: no owner");
    cluster.stop().await;
}

fn deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "front"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "front"}},
            "template": {"metadata": {"labels": {"app": "front"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}},
        },
    })
}

fn budget(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "front"}});
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec})
}

/// The budget's (expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed) once its
/// status is for its generation and matches `want`.
async fn figures(cluster: &Cluster, name: &str, want: (i64, i64, i64, i64)) -> Value {
    eventually(&format!("pdb {name} at {want:?}"), || async {
        let pdb = cluster.get(kind("policy", "poddisruptionbudgets"), name).await?;
        let s = &pdb["status"];
        let n = |f: &str| s[f].as_i64().unwrap_or(-1);
        let got = (n("expectedPods"), n("desiredHealthy"), n("currentHealthy"), n("disruptionsAllowed"));
        (got == want && s["observedGeneration"] == pdb["metadata"]["generation"]).then_some(pdb)
    })
    .await
}

#[actix_rt::test]
async fn budgets_count_a_deployments_pods_against_its_scale() {
    let cluster = Rc::new(Cluster::start().await);
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    cluster.create(kind("apps", "deployments"), deployment(4)).await;
    let pdbs = kind("policy", "poddisruptionbudgets");
    cluster.create(pdbs, budget("half", json!({"minAvailable": "50%"}))).await;
    cluster.create(pdbs, budget("quarter", json!({"maxUnavailable": "25%"}))).await;
    cluster.create(pdbs, budget("all", json!({"minAvailable": 4}))).await;

    // 50% of 4 must stay: 2 may go; 25% of 4 may be unavailable: 1 may go; all 4 must stay.
    let half = figures(&cluster, "half", (4, 2, 4, 2)).await;
    let cond = condition(&half, "DisruptionAllowed").unwrap();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("True"), Some("SufficientPods")));
    figures(&cluster, "quarter", (4, 3, 4, 1)).await;
    let all = figures(&cluster, "all", (4, 4, 4, 0)).await;
    let cond = condition(&all, "DisruptionAllowed").unwrap();
    assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("False"), Some("InsufficientPods")));

    // One pod stops being ready.
    stop.set(true);
    let pod = cluster.list(pods()).await.into_iter().find(is_active).unwrap();
    cluster.set_ready(name(&pod), false).await;
    figures(&cluster, "half", (4, 2, 3, 1)).await;
    let quarter = figures(&cluster, "quarter", (4, 3, 3, 0)).await;
    assert_eq!(condition(&quarter, "DisruptionAllowed").unwrap()["reason"], "InsufficientPods");

    // The Deployment scaled to 8: percentages follow its scale.
    cluster.merge(kind("apps", "deployments"), "front", json!({"spec": {"replicas": 8}})).await;
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    figures(&cluster, "half", (8, 4, 8, 4)).await;
    figures(&cluster, "quarter", (8, 6, 8, 2)).await;
    stop.set(true);
    cluster.stop().await;
}
