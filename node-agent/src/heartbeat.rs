//! A node's life on the API server: registration (kubelet's `registerWithAPIServer`), then
//! two loops: the Lease in `kube-node-lease` renewed every heartbeat (kubelet's node lease
//! controller), and the status looked at every heartbeat and posted when it changed or the
//! report interval passed (kubelet's `syncNodeStatus` with `nodeStatusReportFrequency`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::client::{ApiClient, Result};
use crate::node::{lease_renewal, status_differs, NodeFacts, LEASE_NAMESPACE};

/// kubelet's `nodeStatusReportFrequency`: an unchanged status is posted this often.
const REPORT_EVERY: Duration = Duration::from_secs(300);
/// The longest pause between registration tries.
const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(7);

/// Called with the Node as the server has it after each status look (the pod CIDR for the
/// runtime).
pub type OnNode = Arc<dyn Fn(&Node) + Send + Sync>;

/// Registers the node, retrying until it is; returns its uid.
pub async fn register(api: &ApiClient, facts: &NodeFacts) -> String {
    let mut backoff = Duration::from_millis(100);
    loop {
        match try_register(api, facts).await {
            Ok(uid) => {
                tracing::info!(node = %facts.name, "node registered");
                return uid;
            }
            Err(error) => {
                tracing::warn!(node = %facts.name, %error, "registering the node failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_REGISTER_BACKOFF);
            }
        }
    }
}

/// Creates the Node; if it exists (this node registered before), adds the labels it lacks.
async fn try_register(api: &ApiClient, facts: &NodeFacts) -> Result<String> {
    let node = facts.registration(Timestamp::now());
    let created = api
        .call("create node", |c| {
            let node = &node;
            async move { Api::<Node>::all(c).create(&PostParams::default(), node).await }
        })
        .await;
    let node = match created {
        Ok(node) => node,
        Err(e) if e.is_conflict() => {
            let name = facts.name.as_str();
            let existing = api.call("get node", |c| async move { Api::<Node>::all(c).get(name).await }).await?;
            let labels = existing.metadata.labels.clone().unwrap_or_default();
            let missing: serde_json::Map<String, serde_json::Value> = facts
                .labels()
                .into_iter()
                .filter(|(k, _)| !labels.contains_key(k))
                .map(|(k, v)| (k, json!(v)))
                .collect();
            if missing.is_empty() {
                existing
            } else {
                let patch = json!({"metadata": {"labels": missing}});
                api.call("label node", |c| {
                    let patch = Patch::Merge(&patch);
                    async move { Api::<Node>::all(c).patch(name, &PatchParams::default(), &patch).await }
                })
                .await?
            }
        }
        Err(e) => return Err(e),
    };
    Ok(node.metadata.uid.unwrap_or_default())
}

/// Renews the node's Lease, creating it when missing.
pub async fn renew_lease(api: &ApiClient, facts: &NodeFacts, node_uid: &str) -> Result<()> {
    let name = facts.name.as_str();
    let patch = lease_renewal(name, Timestamp::now());
    let renewed = api
        .call("renew lease", |c| {
            let patch = Patch::Merge(&patch);
            async move { Api::<Lease>::namespaced(c, LEASE_NAMESPACE).patch(name, &PatchParams::default(), &patch).await }
        })
        .await;
    match renewed {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let lease = facts.lease(node_uid, Timestamp::now());
            let created = api
                .call("create lease", |c| {
                    let lease = &lease;
                    async move { Api::<Lease>::namespaced(c, LEASE_NAMESPACE).create(&PostParams::default(), lease).await }
                })
                .await;
            match created {
                // Another writer made it meanwhile: the next renewal updates it.
                Err(e) if !e.is_conflict() => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

/// Looks at the node's status on the server and posts ours when it differs or the report
/// interval passed since `last_post`; returns whether it posted.
pub async fn sync_status(
    api: &ApiClient,
    facts: &NodeFacts,
    last_post: Option<Instant>,
    on_node: &OnNode,
) -> Result<bool> {
    let name = facts.name.as_str();
    let server = api.call("get node", |c| async move { Api::<Node>::all(c).get(name).await }).await?;
    on_node(&server);
    let ours = facts.status(Timestamp::now(), server.status.as_ref());
    let due = last_post.is_none_or(|t| t.elapsed() >= REPORT_EVERY);
    if !due && !status_differs(server.status.as_ref(), &ours) {
        return Ok(false);
    }
    let patch = json!({"status": ours});
    api.call("patch node status", |c| {
        let patch = Patch::Strategic(&patch);
        async move { Api::<Node>::all(c).patch_status(name, &PatchParams::default(), &patch).await }
    })
    .await?;
    Ok(true)
}

/// Registers the node and keeps its Lease and status fresh every `interval`, for ever.
/// `offset` delays the first beat (spreading many hollow nodes over the interval).
pub async fn run(api: Arc<ApiClient>, facts: NodeFacts, interval: Duration, offset: Duration, on_node: OnNode) {
    let uid = register(&api, &facts).await;
    let lease = {
        let (api, facts, uid) = (api.clone(), facts.clone(), uid.clone());
        async move {
            tokio::time::sleep(offset).await;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(error) = renew_lease(&api, &facts, &uid).await {
                    tracing::warn!(node = %facts.name, %error, "renewing the node lease failed");
                }
            }
        }
    };
    let status = async move {
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_post = None;
        loop {
            tick.tick().await;
            match sync_status(&api, &facts, last_post, &on_node).await {
                Ok(true) => last_post = Some(Instant::now()),
                Ok(false) => {}
                Err(e) if e.is_not_found() => {
                    // As kubelet: a deleted Node is not registered again until a restart.
                    tracing::warn!(node = %facts.name, "the Node was deleted");
                }
                Err(error) => tracing::warn!(node = %facts.name, %error, "updating the node status failed"),
            }
        }
    };
    tokio::join!(lease, status);
}
