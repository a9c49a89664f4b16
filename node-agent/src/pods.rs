//! The pods bound to this process's nodes: one list+watch for all of them (so 200 hollow
//! nodes open one watch, not 200), and per pod what kubelet's pod workers and status manager
//! do with the hollow runtime: start it and post a Running status; when it is being deleted,
//! stop it and remove it (a delete with grace period 0, as kubelet does once the containers
//! stopped).
//!
//! [`PodSync`] holds the decisions (a plain struct); [`run`] is the shell: a watch task, a
//! loop that feeds [`PodSync`], and API writes bounded by a semaphore.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use crate::client::ApiClient;
use crate::list_watch;
use crate::pod_status::{running_patch, shows_running};
use crate::runtime::hollow::HollowRuntime;

/// How many pod writes may be in flight at once.
const MAX_WRITES: usize = 64;
/// A failed write is decided anew after this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A write the agent owes a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Post this strategic merge patch to `pods/status`.
    Status { namespace: String, name: String, uid: String, patch: Value },
    /// Delete with grace period 0, on the condition that the uid still matches.
    Delete { namespace: String, name: String, uid: String },
}

impl Action {
    pub fn uid(&self) -> &str {
        match self {
            Action::Status { uid, .. } | Action::Delete { uid, .. } => uid,
        }
    }
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// What the agent knows of its pods and which writes it owes them.
pub struct PodSync {
    runtime: Arc<Mutex<HollowRuntime>>,
    /// This process's nodes and their addresses.
    nodes: HashMap<String, IpAddr>,
    /// The latest version seen of each of our pods, by uid.
    pods: HashMap<String, Pod>,
    /// Pods with a write in flight: they are decided again when it ends.
    in_flight: HashSet<String>,
    /// In-flight pods that changed meanwhile.
    changed: HashSet<String>,
}

impl PodSync {
    pub fn new(runtime: Arc<Mutex<HollowRuntime>>, nodes: HashMap<String, IpAddr>) -> PodSync {
        PodSync { runtime, nodes, pods: HashMap::new(), in_flight: HashSet::new(), changed: HashSet::new() }
    }

    fn runtime(&self) -> std::sync::MutexGuard<'_, HollowRuntime> {
        self.runtime.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A pod was added or changed: the write it needs, unless one is in flight.
    pub fn observe(&mut self, pod: Pod, now: Timestamp) -> Option<Action> {
        let id = uid(&pod).to_string();
        if !self.nodes.contains_key(node_name(&pod)) {
            self.forget(&id);
            return None;
        }
        self.pods.insert(id.clone(), pod);
        if self.in_flight.contains(&id) {
            self.changed.insert(id);
            return None;
        }
        self.decide(&id, now)
    }

    /// A pod is gone from the API: its runtime record goes too.
    pub fn forget(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.changed.remove(uid);
        self.runtime().stop(uid);
    }

    /// A fresh list replaced the watch: pods not in it are gone; the others are observed.
    pub fn relisted(&mut self, pods: Vec<Pod>, now: Timestamp) -> Vec<Action> {
        let present: HashSet<String> = pods.iter().map(|p| uid(p).to_string()).collect();
        let gone: Vec<String> = self.pods.keys().filter(|u| !present.contains(*u)).cloned().collect();
        for id in gone {
            self.forget(&id);
        }
        pods.into_iter().filter_map(|p| self.observe(p, now)).collect()
    }

    /// A write ended. After a failure, or if the pod changed meanwhile, it is decided anew.
    pub fn done(&mut self, uid: &str, ok: bool, now: Timestamp) -> Option<Action> {
        self.in_flight.remove(uid);
        let changed = self.changed.remove(uid);
        if ok && !changed {
            return None;
        }
        self.decide(uid, now)
    }

    /// The write `uid` needs now, marking it in flight.
    fn decide(&mut self, uid: &str, now: Timestamp) -> Option<Action> {
        let pod = self.pods.get(uid)?;
        let (namespace, name) =
            (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let action = if pod.metadata.deletion_timestamp.is_some() {
            self.runtime().stop(uid);
            Some(Action::Delete { namespace, name, uid: uid.to_string() })
        } else if matches!(phase, Some("Succeeded" | "Failed")) {
            self.runtime().stop(uid);
            None
        } else {
            let host_ip = self.nodes.get(node_name(pod)).map(IpAddr::to_string).unwrap_or_default();
            let mut runtime = self.runtime.lock().unwrap_or_else(PoisonError::into_inner);
            let running = match runtime.get(uid).cloned().or_else(|| runtime.adopt(pod)) {
                Some(running) => Ok(running),
                None => runtime.start(pod, now),
            };
            drop(runtime);
            match running {
                Ok(running) if shows_running(pod, &running) => None,
                Ok(running) => {
                    let patch = running_patch(pod, &running, &host_ip, now);
                    Some(Action::Status { namespace, name, uid: uid.to_string(), patch })
                }
                Err(error) => {
                    // The next change of the pod (or a relist) tries again.
                    tracing::warn!(%namespace, %name, %error, "hollow pod cannot start");
                    None
                }
            }
        };
        if action.is_some() {
            self.in_flight.insert(uid.to_string());
        }
        action
    }
}

/// What the watch task and the writers tell the sync loop.
pub(crate) enum Message {
    Listed(Vec<Pod>),
    Changed(Box<Pod>),
    Deleted(String),
    Done { uid: String, ok: bool },
}

/// Runs the pods of `nodes` (name, address) with `runtime` until the process ends.
pub async fn run(api: Arc<ApiClient>, runtime: Arc<Mutex<HollowRuntime>>, nodes: HashMap<String, IpAddr>) {
    // One node: the server filters; many: every bound pod, sorted out here.
    let selector = match nodes.keys().next() {
        Some(only) if nodes.len() == 1 => format!("spec.nodeName={only}"),
        _ => "spec.nodeName!=".to_string(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(watch(api.clone(), selector, tx.clone()));
    let mut sync = PodSync::new(runtime, nodes);
    let writes = Arc::new(Semaphore::new(MAX_WRITES));
    while let Some(message) = rx.recv().await {
        let now = Timestamp::now();
        let actions = match message {
            Message::Listed(pods) => sync.relisted(pods, now),
            Message::Changed(pod) => sync.observe(*pod, now).into_iter().collect(),
            Message::Deleted(uid) => {
                sync.forget(&uid);
                Vec::new()
            }
            Message::Done { uid, ok } => sync.done(&uid, ok, now).into_iter().collect(),
        };
        for action in actions {
            let (api, writes, tx) = (api.clone(), writes.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(_permit) = writes.acquire().await else { return };
                let ok = write(&api, &action).await;
                if !ok {
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                let _ = tx.send(Message::Done { uid: action.uid().to_string(), ok });
            });
        }
    }
}

/// Performs one write; whether it succeeded (a pod already gone counts as done).
async fn write(api: &ApiClient, action: &Action) -> bool {
    let result =
        match action {
            Action::Status { namespace, name, patch, .. } => api
                .call("patch pod status", |c| {
                    let patch = Patch::Strategic(patch);
                    async move {
                        Api::<Pod>::namespaced(c, namespace).patch_status(name, &PatchParams::default(), &patch).await
                    }
                })
                .await
                .map(|_| ()),
            Action::Delete { namespace, name, uid } => {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                api.call("delete pod", |c| {
                    let params = &params;
                    async move { Api::<Pod>::namespaced(c, namespace).delete(name, params).await }
                })
                .await
                .map(|_| ())
            }
        };
    match result {
        Ok(()) => true,
        // Gone, or a different pod of that name now: nothing left to do.
        Err(e) if e.is_not_found() || (e.is_conflict() && matches!(action, Action::Delete { .. })) => true,
        Err(error) => {
            tracing::warn!(uid = action.uid(), %error, "pod write failed");
            false
        }
    }
}

/// Lists, then watches the pods that `selector` (a field selector) picks, for ever (see
/// [`crate::list_watch`]), sending them as [`Message`]s.
pub(crate) async fn watch(api: Arc<ApiClient>, selector: String, tx: mpsc::UnboundedSender<Message>) {
    list_watch::watch(api, "pods", Some(selector), tx, message).await
}

fn message(event: list_watch::Event<Pod>) -> Message {
    match event {
        list_watch::Event::Listed(pods) => Message::Listed(pods),
        list_watch::Event::Applied(pod) => Message::Changed(Box::new(pod)),
        list_watch::Event::Deleted(pod) => Message::Deleted(uid(&pod).to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn sync() -> PodSync {
        let host: IpAddr = "192.168.1.5".parse().unwrap();
        let runtime = Arc::new(Mutex::new(HollowRuntime::new(&[("n0".into(), host)])));
        PodSync::new(runtime, HashMap::from([("n0".to_string(), host)]))
    }

    fn pod(uid: &str, node: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{uid}"), "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Pending"},
        }))
        .unwrap()
    }

    /// The pod as the server has it after a status patch.
    fn patched(pod: &Pod, action: &Action) -> Pod {
        let Action::Status { patch, .. } = action else { panic!("not a status write: {action:?}") };
        let mut value = serde_json::to_value(pod).unwrap();
        value["status"] = patch["status"].clone();
        serde_json::from_value(value).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn a_bound_pod_is_started_once_and_left_alone_once_its_status_shows_it_running() {
        let mut s = sync();
        let p = pod("a", "n0");
        let action = s.observe(p.clone(), now()).unwrap();
        assert!(matches!(&action, Action::Status { name, .. } if name == "p-a"));
        // Events while the write is in flight wait for it.
        assert_eq!(s.observe(p.clone(), now()), None);
        // It landed, but the pod changed meanwhile (still the old status): written again.
        let again = s.done("a", true, now()).unwrap();
        assert_eq!(again, action);
        assert_eq!(s.done("a", true, now()), None);
        // The watch shows the written status: nothing more to do.
        assert_eq!(s.observe(patched(&p, &action), now()), None);
        assert_eq!(s.runtime().len(), 1);
    }

    #[test]
    fn pods_of_other_nodes_and_unbound_pods_are_ignored() {
        let mut s = sync();
        assert_eq!(s.observe(pod("a", "elsewhere"), now()), None);
        assert_eq!(s.observe(pod("b", ""), now()), None);
        assert!(s.runtime().is_empty());
    }

    #[test]
    fn a_failed_write_is_tried_again() {
        let mut s = sync();
        let action = s.observe(pod("a", "n0"), now()).unwrap();
        assert_eq!(s.done("a", false, now()), Some(action));
    }

    #[test]
    fn a_pod_being_deleted_is_stopped_and_deleted_with_its_uid() {
        let mut s = sync();
        let p = pod("a", "n0");
        let action = s.observe(p.clone(), now()).unwrap();
        s.done("a", true, now());
        let mut deleting = patched(&p, &action);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        let delete = s.observe(deleting, now()).unwrap();
        assert_eq!(delete, Action::Delete { namespace: "default".into(), name: "p-a".into(), uid: "a".into() });
        assert!(s.runtime().is_empty(), "stopped");
        s.done("a", true, now());
        s.forget("a");
        assert!(s.pods.is_empty());
    }

    #[test]
    fn a_relist_forgets_pods_that_went_away_meanwhile() {
        let mut s = sync();
        s.observe(pod("a", "n0"), now()).unwrap();
        s.done("a", true, now());
        let actions = s.relisted(vec![pod("b", "n0")], now());
        assert_eq!(actions.len(), 1);
        assert_eq!(actions[0].uid(), "b");
        assert!(s.runtime().get("a").is_none());
        assert!(s.runtime().get("b").is_some());
    }

    #[test]
    fn a_pod_that_runs_already_is_adopted_without_a_write() {
        let mut s = sync();
        let mut p = pod("a", "n0");
        let action = s.observe(p.clone(), now()).unwrap();
        let running = patched(&p, &action);
        // A new agent process: a fresh runtime sees the running pod.
        let mut fresh = sync();
        assert_eq!(fresh.observe(running.clone(), now()), None);
        assert_eq!(fresh.runtime().get("a").unwrap().ip.to_string(), "10.128.0.2");
        p.metadata.uid = Some("b".into());
        assert!(fresh.observe(p, now()).is_some());
        assert_eq!(fresh.runtime().get("b").unwrap().ip.to_string(), "10.128.0.3");
    }
}
