//! Pods of a real node, as containers through CRI (kubelet's pod workers).
//!
//! [`run`] is the shell: the node's pod watch feeds one [`worker`] task per pod; at the
//! first list, sandboxes this agent made for pods that no longer exist (deleted while the
//! agent was down) are removed, and running ones of existing pods are adopted by their
//! workers. The parts:
//! - [`config`]: the CRI sandbox and container configs of a pod spec;
//! - [`env`] and [`volumes`]: container environments and pod volumes; [`tokens`]: the
//!   projected ServiceAccount tokens of those volumes (TokenRequest, renewed at 80%);
//! - [`probes`], [`status`], [`events`]: what kubelet's prober, status manager and
//!   recorder do; [`registry`]: where containers are, for the kubelet endpoint;
//!   [`stats`]: the containers' CPU and memory for `/metrics/resource`.

pub mod config;
pub mod env;
pub mod events;
pub mod probes;
pub mod registry;
pub mod stats;
pub mod status;
pub mod tokens;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{mpsc, watch};

use crate::pods::{self, Message};
use config::{LABEL_MANAGED, LABEL_POD_UID};
use worker::NodeContext;

/// Runs the pods bound to `node.name` until the process ends.
pub async fn run(node: Arc<NodeContext>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(pods::watch(node.api.clone(), format!("spec.nodeName={}", node.name), tx));
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut first_list = true;
    while let Some(message) = rx.recv().await {
        match message {
            Message::Listed(list) => {
                let present: HashSet<String> = list.iter().map(|p| config::uid(p).to_string()).collect();
                if first_list {
                    first_list = false;
                    remove_orphans(&node, &present).await;
                }
                for (uid, sender) in workers.iter() {
                    if !present.contains(uid) {
                        let _ = sender.send(None);
                    }
                }
                workers.retain(|uid, _| present.contains(uid));
                for pod in list {
                    deliver(&node, &mut workers, pod);
                }
            }
            Message::Changed(pod) => deliver(&node, &mut workers, *pod),
            Message::Deleted(uid) => {
                if let Some(sender) = workers.remove(&uid) {
                    let _ = sender.send(None);
                }
            }
            Message::Done { .. } => {}
        }
    }
}

/// Hands `pod` to its worker, starting one for a pod seen the first time.
fn deliver(node: &Arc<NodeContext>, workers: &mut HashMap<String, watch::Sender<Option<Pod>>>, pod: Pod) {
    let uid = config::uid(&pod).to_string();
    if uid.is_empty() || pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node.name.as_str()) {
        return;
    }
    match workers.get(&uid) {
        Some(sender) => {
            let _ = sender.send(Some(pod));
        }
        None => {
            let (sender, receiver) = watch::channel(Some(pod));
            tokio::spawn(worker::run(node.clone(), receiver));
            workers.insert(uid, sender);
        }
    }
}

/// Removes the sandboxes (and their containers) this agent made for pods not in `present`.
async fn remove_orphans(node: &NodeContext, present: &HashSet<String>) {
    let managed = HashMap::from([(LABEL_MANAGED.to_string(), "true".to_string())]);
    let sandboxes = match node.cri.list_pod_sandboxes(managed).await {
        Ok(sandboxes) => sandboxes,
        Err(error) => {
            tracing::warn!(%error, "listing sandboxes for orphans failed");
            return;
        }
    };
    for sandbox in sandboxes {
        let uid = sandbox.labels.get(LABEL_POD_UID).cloned().unwrap_or_default();
        if present.contains(&uid) {
            continue;
        }
        let name = sandbox.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        tracing::info!(pod = %name, %uid, sandbox = %sandbox.id, "removing the sandbox of a pod that is gone");
        if let Err(error) = node.cri.stop_and_remove_pod_sandbox(&sandbox.id).await {
            tracing::warn!(%error, sandbox = %sandbox.id, "removing an orphaned sandbox failed");
        }
        if !uid.is_empty() {
            let _ = tokio::fs::remove_dir_all(node.pods_dir.join(&uid)).await;
        }
    }
}
