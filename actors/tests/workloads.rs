//! The ReplicaSet and Deployment controllers over a real single-member store, with the test
//! as the kubelet (it marks pods Ready through the status subresource): ReplicaSets scale,
//! release and adopt pods; a Deployment gets its ReplicaSet and pods; rolling updates keep
//! enough pods available at every observed step and end on the new ReplicaSet; Recreate
//! removes old pods before new ones start; undo, pause and the progress deadline.

#![allow(clippy::unwrap_used)]

mod common;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actors::kinds::find;
use actors::patch::PatchKind;
use actors::{Create, FieldValidation, Get, KindActors, List, Part, Patch, ResourceKind, Watch, WatchStart};
use futures::StreamExt;
use serde_json::{json, Value};

use common::single_member;

const DEADLINE: Duration = Duration::from_secs(30);
const NS: &str = "default";

fn pods() -> &'static ResourceKind {
    find("", "v1", "pods").unwrap()
}
fn replica_sets() -> &'static ResourceKind {
    find("apps", "v1", "replicasets").unwrap()
}
fn deployments() -> &'static ResourceKind {
    find("apps", "v1", "deployments").unwrap()
}

/// A store, its kind actors and every controller.
struct Cluster {
    kinds: KindActors,
    controllers: actix::Addr<actors::controller::Controllers>,
    node: raft_store::StoreNode,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let node = single_member(dir.path()).await;
        let kinds = KindActors::start(&node);
        let controllers = actors::controllers::start_all(kinds.clone(), node.clone(), None);
        let cluster = Cluster { kinds, controllers, node, _dir: dir };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        let _ = cluster.kinds.get(find("", "v1", "namespaces").unwrap()).unwrap().send(create(None, ns)).await.unwrap();
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

    async fn patch(&self, kind: &ResourceKind, name: &str, part: Part, patch_kind: PatchKind, body: Value) -> Value {
        let msg = Patch {
            namespace: Some(NS.into()),
            name: name.into(),
            patch_kind,
            body: body.to_string().into_bytes(),
            field_manager: Some("test".into()),
            force: false,
            part,
            field_validation: FieldValidation::Ignore,
        };
        self.kinds.get(kind).unwrap().send(msg).await.unwrap().unwrap().obj
    }

    async fn merge(&self, kind: &ResourceKind, name: &str, body: Value) -> Value {
        self.patch(kind, name, Part::Main, PatchKind::Merge, body).await
    }

    /// What the kubelet does once a pod's containers are up: Running, Ready.
    async fn mark_ready(&self, pod: &str) {
        let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
        ]}});
        let msg = Patch {
            namespace: Some(NS.into()),
            name: pod.into(),
            patch_kind: PatchKind::Merge,
            body: status.to_string().into_bytes(),
            field_manager: Some("kubelet".into()),
            force: false,
            part: Part::Status,
            field_validation: FieldValidation::Ignore,
        };
        // The pod may be gone already.
        let _ = self.kinds.get(pods()).unwrap().send(msg).await.unwrap();
    }

    /// Active pods (not being deleted) whose labels include `labels`.
    async fn pods_with(&self, labels: &Value) -> Vec<Value> {
        let mut found: Vec<Value> =
            self.list(pods()).await.into_iter().filter(|p| is_active(p) && has_labels(p, labels)).collect();
        found.sort_by(|a, b| name(a).cmp(name(b)));
        found
    }

    /// The ReplicaSets `d` controls, oldest revision first.
    async fn replica_sets_of(&self, d: &Value) -> Vec<Value> {
        let mut rses: Vec<Value> = self.list(replica_sets()).await.into_iter().filter(|rs| owned_by(rs, d)).collect();
        rses.sort_by_key(revision);
        rses
    }

    /// A fake kubelet: marks every active pod Ready until `stop` is set.
    fn kubelet(self: &Rc<Self>, stop: Rc<Cell<bool>>) {
        let cluster = self.clone();
        actix_rt::spawn(async move {
            while !stop.get() {
                for pod in cluster.list(pods()).await {
                    if is_active(&pod) && !is_ready(&pod) {
                        cluster.mark_ready(name(&pod)).await;
                    }
                }
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    /// Watches pods from now: every pod first, then each change.
    async fn watch_pods(&self) -> WatchStart {
        self.kinds
            .get(pods())
            .unwrap()
            .send(Watch { namespace: Some(NS.into()), ..Default::default() })
            .await
            .unwrap()
            .unwrap()
    }
}

fn create(ns: Option<&str>, obj: Value) -> Create {
    Create { namespace: ns.map(String::from), obj, field_manager: Some("test".into()) }
}

fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn is_active(pod: &Value) -> bool {
    pod["metadata"].get("deletionTimestamp").is_none()
}

fn is_ready(pod: &Value) -> bool {
    let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn has_labels(obj: &Value, labels: &Value) -> bool {
    labels.as_object().unwrap().iter().all(|(k, v)| obj["metadata"]["labels"].get(k) == Some(v))
}

fn owned_by(obj: &Value, owner: &Value) -> bool {
    let refs = obj["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
    refs.iter().any(|r| r["uid"] == owner["metadata"]["uid"] && r["controller"] == true)
}

fn revision(rs: &Value) -> i64 {
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"].as_str().unwrap_or("0").parse().unwrap_or(0)
}

fn image(obj: &Value) -> &str {
    let spec = if obj["kind"] == "Pod" { &obj["spec"] } else { &obj["spec"]["template"]["spec"] };
    spec["containers"][0]["image"].as_str().unwrap_or("")
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

fn replica_set(name: &str, replicas: i64, app: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}},
        },
    })
}

fn deployment(name: &str, replicas: i64, strategy: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
        },
    })
}

/// `kubectl rollout status`'s test: the latest spec observed, every replica updated and
/// available, no old ones left.
async fn rolled_out(cluster: &Cluster, name: &str) -> Value {
    eventually(&format!("deployment {name} rolled out"), || async {
        let d = cluster.get(deployments(), name).await?;
        let (s, replicas) = (&d["status"], d["spec"]["replicas"].as_i64().unwrap());
        let count = |f: &str| s[f].as_i64().unwrap_or(0);
        let done = d["metadata"]["generation"].as_i64() <= s["observedGeneration"].as_i64()
            && count("updatedReplicas") == replicas
            && count("replicas") == replicas
            && count("availableReplicas") == replicas
            && condition(&d, "Progressing").is_some_and(|c| c["reason"] == "NewReplicaSetAvailable");
        done.then_some(d)
    })
    .await
}

/// Follows the pods of `app` through a watch, calling `check` with the current pods after
/// every event, until `done` says the rollout is over.
async fn observe(
    cluster: &Cluster,
    watch: &mut WatchStart,
    app: &str,
    mut check: impl FnMut(&BTreeMap<String, Value>),
) {
    let mut current: BTreeMap<String, Value> = BTreeMap::new();
    let labels = json!({"app": app});
    let deadline = Instant::now() + DEADLINE;
    let apply = |e: actors::WatchEvent, current: &mut BTreeMap<String, Value>| {
        if !has_labels(&e.object, &labels) {
            return;
        }
        let key = name(&e.object).to_string();
        if e.event_type == "DELETED" {
            current.remove(&key);
        } else {
            current.insert(key, e.object);
        }
    };
    for e in std::mem::take(&mut watch.initial) {
        apply(e, &mut current);
    }
    check(&current);
    loop {
        let next = actix_rt::time::timeout(Duration::from_millis(200), watch.rest.next()).await;
        match next {
            Ok(Some(e)) => {
                apply(e, &mut current);
                check(&current);
            }
            Ok(None) => panic!("the pod watch ended"),
            Err(_) => {
                // Quiet: over if the Deployment says so.
                let d = cluster.get(deployments(), app).await.unwrap();
                let s = &d["status"];
                let replicas = d["spec"]["replicas"].as_i64().unwrap();
                if d["metadata"]["generation"] == s["observedGeneration"]
                    && s["updatedReplicas"].as_i64() == Some(replicas)
                    && s["replicas"].as_i64() == Some(replicas)
                    && s["availableReplicas"].as_i64() == Some(replicas)
                {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "the rollout of {app} never finished");
    }
}

#[actix_rt::test]
async fn replica_sets_scale_release_and_adopt_pods() {
    let cluster = Cluster::start().await;
    let rs = cluster.create(replica_sets(), replica_set("front", 3, "front")).await;
    let labels = json!({"app": "front"});
    let three = eventually("3 pods", || async {
        let pods = cluster.pods_with(&labels).await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    for pod in &three {
        assert!(owned_by(pod, &rs), "{pod}");
        assert!(name(pod).starts_with("front-"));
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["blockOwnerDeletion"].as_bool()), (Some("ReplicaSet"), Some(true)));
    }

    // One Ready pod: ready and available in the status.
    let kept = name(&three[1]).to_string();
    cluster.mark_ready(&kept).await;
    eventually("status counts the ready pod", || async {
        let rs = cluster.get(replica_sets(), "front").await?;
        let s = &rs["status"];
        (s["replicas"] == 3
            && s["readyReplicas"] == 1
            && s["availableReplicas"] == 1
            && s["fullyLabeledReplicas"] == 3
            && s["observedGeneration"] == 1)
            .then_some(())
    })
    .await;

    // Scaled down to 1: the not-ready pods go first.
    cluster.merge(replica_sets(), "front", json!({"spec": {"replicas": 1}})).await;
    let left = eventually("1 pod left", || async {
        let pods = cluster.pods_with(&labels).await;
        (pods.len() == 1).then_some(pods)
    })
    .await;
    assert_eq!(name(&left[0]), kept, "the ready pod stays");

    // Relabelled, the pod is released and replaced.
    cluster.merge(pods(), &kept, json!({"metadata": {"labels": {"app": "elsewhere"}}})).await;
    eventually("the pod released and replaced", || async {
        let released = cluster.get(pods(), &kept).await?;
        let others = cluster.pods_with(&labels).await;
        (released["metadata"].get("ownerReferences").is_none() && others.len() == 1).then_some(())
    })
    .await;

    // Matching again, it is adopted; the surplus not-ready replacement goes.
    cluster.merge(pods(), &kept, json!({"metadata": {"labels": {"app": "front"}}})).await;
    eventually("the pod adopted, the replacement deleted", || async {
        let pods = cluster.pods_with(&labels).await;
        (pods.len() == 1 && name(&pods[0]) == kept && owned_by(&pods[0], &rs)).then_some(())
    })
    .await;

    // Scaled up again.
    cluster.merge(replica_sets(), "front", json!({"spec": {"replicas": 4}})).await;
    eventually("4 pods", || async { (cluster.pods_with(&labels).await.len() == 4).then_some(()) }).await;
    let rs = eventually("4 replicas observed", || async {
        let rs = cluster.get(replica_sets(), "front").await?;
        (rs["status"]["replicas"] == 4 && rs["status"]["observedGeneration"] == rs["metadata"]["generation"])
            .then_some(rs)
    })
    .await;
    assert!(condition(&rs, "ReplicaFailure").is_none());
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_deployment_of_five_gets_a_replica_set_with_five_pods_and_rolls_out() {
    let cluster = Rc::new(Cluster::start().await);
    let d = cluster.create(deployments(), deployment("web", 5, json!({}))).await;
    let rs = eventually("a replica set of 5", || async {
        let rses = cluster.replica_sets_of(&d).await;
        (rses.len() == 1 && rses[0]["spec"]["replicas"] == 5).then(|| rses[0].clone())
    })
    .await;
    let hash = rs["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_string();
    assert_eq!(name(&rs), format!("web-{hash}"));
    assert_eq!(rs["spec"]["selector"]["matchLabels"], json!({"app": "web", "pod-template-hash": hash}));
    assert_eq!(rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    let annotations = &rs["metadata"]["annotations"];
    assert_eq!(annotations["deployment.kubernetes.io/revision"], "1");
    assert_eq!(annotations["deployment.kubernetes.io/desired-replicas"], "5");
    assert_eq!(annotations["deployment.kubernetes.io/max-replicas"], "7", "25% of 5 surges by 2");
    let pods = eventually("5 pods", || async {
        let pods = cluster.pods_with(&json!({"app": "web"})).await;
        (pods.len() == 5).then_some(pods)
    })
    .await;
    assert!(pods.iter().all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str()));

    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    let d = rolled_out(&cluster, "web").await;
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    let s = &d["status"];
    assert_eq!((s["readyReplicas"].as_i64(), s.get("unavailableReplicas")), (Some(5), None));
    let available = condition(&d, "Available").unwrap();
    assert_eq!(
        (available["status"].as_str(), available["reason"].as_str()),
        (Some("True"), Some("MinimumReplicasAvailable"))
    );
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(
        progressing["message"].as_str().unwrap(),
        format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
    );

    // Scaled: the one ReplicaSet follows.
    cluster.merge(deployments(), "web", json!({"spec": {"replicas": 2}})).await;
    eventually("2 pods", || async { (cluster.pods_with(&json!({"app": "web"})).await.len() == 2).then_some(()) }).await;
    rolled_out(&cluster, "web").await;
    let rses = cluster.replica_sets_of(&d).await;
    assert_eq!(rses.len(), 1);
    assert_eq!(rses[0]["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "2");
    stop.set(true);
    cluster.stop().await;
}

/// Creates Deployment `web` of `replicas`, rolls it out, then changes its image while a
/// watch checks every step with `check`; returns the Deployment once the update rolled out.
async fn update_image(
    cluster: &Rc<Cluster>,
    replicas: i64,
    strategy: Value,
    check: impl FnMut(&BTreeMap<String, Value>),
) -> Value {
    let d = cluster.create(deployments(), deployment("web", replicas, strategy)).await;
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    rolled_out(cluster, "web").await;
    let mut watch = cluster.watch_pods().await;
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    cluster.merge(deployments(), "web", update).await;
    observe(cluster, &mut watch, "web", check).await;
    let d2 = rolled_out(cluster, "web").await;
    stop.set(true);
    assert_eq!(d2["metadata"]["uid"], d["metadata"]["uid"]);
    d2
}

#[actix_rt::test]
async fn a_rolling_update_keeps_enough_pods_available_and_ends_on_the_new_replica_set() {
    let cluster = Rc::new(Cluster::start().await);
    // 4 replicas, 25%: at most 1 unavailable and 1 extra.
    let mut steps = 0;
    let d = update_image(&cluster, 4, json!({}), |pods| {
        let available = pods.values().filter(|p| is_active(p) && is_ready(p)).count() as i64;
        steps += 1;
        assert!(available >= 3, "only {available} available pods at step {steps}: {:?}", pods.keys());
    })
    .await;
    assert!(steps > 8, "the watch saw the rollout ({steps} steps)");
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");

    let rses = cluster.replica_sets_of(&d).await;
    assert_eq!(rses.len(), 2);
    let (old, new) = (&rses[0], &rses[1]);
    assert_eq!((old["spec"]["replicas"].as_i64(), new["spec"]["replicas"].as_i64()), (Some(0), Some(4)));
    assert_eq!((image(old), image(new)), ("nginx:1.27", "nginx:1.28"));
    let pods = cluster.pods_with(&json!({"app": "web"})).await;
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| image(p) == "nginx:1.28"));
    cluster.stop().await;
}

#[actix_rt::test]
async fn recreate_removes_every_old_pod_before_a_new_one_starts() {
    let cluster = Rc::new(Cluster::start().await);
    let mut saw_new = false;
    let d = update_image(&cluster, 3, json!({"type": "Recreate"}), |pods| {
        let new = pods.values().filter(|p| image(p) == "nginx:1.28").count();
        let old = pods.values().filter(|p| image(p) == "nginx:1.27").count();
        assert!(new == 0 || old == 0, "{old} old pods still there with {new} new ones");
        saw_new |= new > 0;
    })
    .await;
    assert!(saw_new);
    let rses = cluster.replica_sets_of(&d).await;
    assert_eq!(rses.iter().map(|rs| rs["spec"]["replicas"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 3]);
    cluster.stop().await;
}

#[actix_rt::test]
async fn undo_patches_the_previous_template_back_and_its_replica_set_becomes_the_newest_revision() {
    let cluster = Rc::new(Cluster::start().await);
    let d = update_image(&cluster, 3, json!({}), |_| {}).await;
    // What `kubectl rollout undo` does: the previous revision's template, without its hash
    // label, patched into the Deployment.
    let rses = cluster.replica_sets_of(&d).await;
    let previous = rses.iter().find(|rs| revision(rs) == 1).unwrap().clone();
    let mut template = previous["spec"]["template"].clone();
    template["metadata"]["labels"].as_object_mut().unwrap().remove("pod-template-hash");
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    cluster.patch(deployments(), "web", Part::Main, PatchKind::Json, undo).await;

    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    let d = rolled_out(&cluster, "web").await;
    stop.set(true);
    assert_eq!(d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
    assert_eq!(image(&d), "nginx:1.27");
    let rses = cluster.replica_sets_of(&d).await;
    assert_eq!(rses.len(), 2, "the old ReplicaSet came back; none was created");
    let back = &rses[1];
    assert_eq!(name(back), name(&previous));
    assert_eq!(revision(back), 3);
    assert_eq!(back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    assert_eq!((rses[0]["spec"]["replicas"].as_i64(), back["spec"]["replicas"].as_i64()), (Some(0), Some(3)));
    let pods = cluster.pods_with(&json!({"app": "web"})).await;
    assert!(pods.len() == 3 && pods.iter().all(|p| image(p) == "nginx:1.27"));
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_paused_deployment_rolls_out_only_once_resumed() {
    let cluster = Rc::new(Cluster::start().await);
    let d = cluster.create(deployments(), deployment("web", 2, json!({}))).await;
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    rolled_out(&cluster, "web").await;

    cluster.merge(deployments(), "web", json!({"spec": {"paused": true}})).await;
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    let changed = cluster.merge(deployments(), "web", update).await;
    let generation = changed["metadata"]["generation"].clone();
    let paused = eventually("the paused spec observed", || async {
        let d = cluster.get(deployments(), "web").await?;
        (d["status"]["observedGeneration"] == generation).then_some(d)
    })
    .await;
    let progressing = condition(&paused, "Progressing").unwrap();
    assert_eq!(
        (progressing["status"].as_str(), progressing["reason"].as_str()),
        (Some("Unknown"), Some("DeploymentPaused"))
    );
    assert_eq!(cluster.replica_sets_of(&d).await.len(), 1, "no rollout while paused");

    cluster.merge(deployments(), "web", json!({"spec": {"paused": false}})).await;
    let d = rolled_out(&cluster, "web").await;
    stop.set(true);
    assert_eq!(image(&d), "nginx:1.28");
    let rses = cluster.replica_sets_of(&d).await;
    assert_eq!(rses.len(), 2);
    assert_eq!(image(&rses[1]), "nginx:1.28");
    cluster.stop().await;
}

#[actix_rt::test]
async fn a_rollout_without_ready_pods_exceeds_its_progress_deadline() {
    let cluster = Cluster::start().await;
    let mut slow = deployment("slow", 2, json!({}));
    slow["spec"]["progressDeadlineSeconds"] = json!(1);
    cluster.create(deployments(), slow).await;
    let d = eventually("ProgressDeadlineExceeded", || async {
        let d = cluster.get(deployments(), "slow").await?;
        condition(&d, "Progressing").is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded").then_some(d)
    })
    .await;
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing["status"], "False");
    assert!(progressing["message"].as_str().unwrap().ends_with("has timed out progressing."));
    let available = condition(&d, "Available").unwrap();
    assert_eq!(
        (available["status"].as_str(), available["reason"].as_str()),
        (Some("False"), Some("MinimumReplicasUnavailable"))
    );
    assert_eq!(d["status"]["unavailableReplicas"], 2);
    cluster.stop().await;
}

#[actix_rt::test]
async fn ready_pods_count_as_available_only_after_min_ready_seconds() {
    let cluster = Cluster::start().await;
    let mut rs = replica_set("slow-start", 1, "slow-start");
    rs["spec"]["minReadySeconds"] = json!(1);
    cluster.create(replica_sets(), rs).await;
    let labels = json!({"app": "slow-start"});
    let pod = eventually("a pod", || async { cluster.pods_with(&labels).await.into_iter().next() }).await;
    let ready_at = Instant::now();
    cluster.mark_ready(name(&pod)).await;
    let status = eventually("available", || async {
        let s = cluster.get(replica_sets(), "slow-start").await?["status"].clone();
        (s["availableReplicas"] == 1).then_some(s)
    })
    .await;
    assert!(ready_at.elapsed() >= Duration::from_secs(1), "available too soon: {status}");
    assert_eq!(status["readyReplicas"], 1);
    cluster.stop().await;
}

#[actix_rt::test]
async fn controllers_killed_mid_reconcile_start_again_and_the_deployment_converges() {
    let cluster = Rc::new(Cluster::start().await);
    let stop = Rc::new(Cell::new(false));
    cluster.kubelet(stop.clone());
    let kill = || async {
        for name in ["deployment", "replicaset"] {
            assert!(cluster.controllers.send(actors::controller::PanicController(name)).await.unwrap());
        }
    };
    cluster.create(deployments(), deployment("web", 5, json!({}))).await;
    // Killed while the first reconciles of the new Deployment are under way, and again
    // once its pods start to appear.
    kill().await;
    eventually("a first pod", || async { (!cluster.pods_with(&json!({"app": "web"})).await.is_empty()).then_some(()) })
        .await;
    kill().await;
    rolled_out(&cluster, "web").await;
    eventually("exactly 5 pods", || async {
        (cluster.pods_with(&json!({"app": "web"})).await.len() == 5).then_some(())
    })
    .await;
    stop.set(true);
    cluster.stop().await;
}
