//! The Deployment controller (kube-controller-manager's `deployment-controller`): rolls a
//! Deployment's pod template out through ReplicaSets named `{deployment}-{pod-template-hash}`
//! (RollingUpdate within maxSurge/maxUnavailable, or Recreate), keeps revisions in
//! annotations for `kubectl rollout history/undo`, scales proportionally, honours
//! `spec.paused`, prunes to `revisionHistoryLimit`, and reports status with the Available and
//! Progressing conditions `kubectl rollout status` reads.
//!
//! - [`util`]: the arithmetic (fenceposts, hash, annotations, proportions, status).
//! - [`rollout`]: one sync, with its writes.

pub mod rollout;
pub mod util;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use serde_json::Value;

use super::pods::{self, claim, controller_ref, namespace, terminating, Selector};
use crate::api_error::ApiError;
use crate::controller::{controller_of, Action, Ctx, Lister, ObjectKey, Reconciler, Watched};
use rollout::Rollout;

/// The informers' copies the event mappings need: Deployments and ReplicaSets.
type Copies = Rc<RefCell<Option<(Lister, Lister)>>>;

/// The controller; keys are Deployments.
#[derive(Default)]
pub struct Deployments {
    /// Known once the first reconcile ran; by then every Deployment was queued by the
    /// first list.
    copies: Copies,
}

impl Deployments {
    pub fn new() -> Self {
        Deployments::default()
    }
}

fn push_unique(keys: &mut Vec<ObjectKey>, key: ObjectKey) {
    if !keys.contains(&key) {
        keys.push(key);
    }
}

/// A ReplicaSet's Deployment: its controller, or for an orphan every Deployment that may
/// adopt it.
fn deployments_of_rs(copies: &Copies, rs: &Value, keys: &mut Vec<ObjectKey>) {
    if controller_ref(rs).is_some() {
        if let Some(key) = controller_of(rs, "Deployment") {
            push_unique(keys, key);
        }
        return;
    }
    let copies = copies.borrow();
    let Some((deployments, _)) = copies.as_ref() else { return };
    for d in deployments.list(Some(namespace(rs))) {
        if Selector::of(&d).matches(rs) {
            if let Some(key) = ObjectKey::of(&d) {
                push_unique(keys, key);
            }
        }
    }
}

/// A pod's Deployment, when that Deployment recreates (it waits for old pods to go).
fn recreating_deployment_of_pod(copies: &Copies, pod: &Value, keys: &mut Vec<ObjectKey>) {
    let copies = copies.borrow();
    let Some((deployments, replica_sets)) = copies.as_ref() else { return };
    let Some(rs) = controller_of(pod, "ReplicaSet").and_then(|key| replica_sets.get(&key)) else { return };
    let Some(key) = controller_of(&rs, "Deployment") else { return };
    if deployments.get(&key).is_some_and(|d| util::is_recreate(&d)) {
        push_unique(keys, key);
    }
}

impl Reconciler for Deployments {
    fn name(&self) -> &'static str {
        "deployment"
    }

    fn watches(&self) -> Vec<Watched> {
        let copies = self.copies.clone();
        let rs_keys = move |rs: &Value, old: Option<&Value>| {
            let mut keys = Vec::new();
            for rs in std::iter::once(rs).chain(old) {
                deployments_of_rs(&copies, rs, &mut keys);
            }
            keys
        };
        let copies = self.copies.clone();
        let pod_keys = move |pod: &Value, old: Option<&Value>| {
            let mut keys = Vec::new();
            for pod in std::iter::once(pod).chain(old) {
                recreating_deployment_of_pod(&copies, pod, &mut keys);
            }
            keys
        };
        vec![
            Watched::objects(pods::deployments()),
            Watched::with(pods::replica_sets(), rs_keys),
            Watched::with(pods::pods(), pod_keys),
        ]
    }

    fn reconcile(self: Rc<Self>, ctx: Ctx, key: ObjectKey) -> LocalBoxFuture<'static, Result<Action, ApiError>> {
        Box::pin(async move {
            let listers = (
                ctx.lister(pods::deployments()).cloned(),
                ctx.lister(pods::replica_sets()).cloned(),
                ctx.lister(pods::pods()).cloned(),
            );
            let (Some(deployments), Some(replica_sets), Some(pod_lister)) = listers else {
                return Ok(Action::Done);
            };
            *self.copies.borrow_mut() = Some((deployments.clone(), replica_sets.clone()));
            let Some(d) = deployments.get(&key) else { return Ok(Action::Done) };
            let ns = key.namespace.as_deref();
            let selector = Selector::of(&d);
            let mut rollout = Rollout::new(&ctx, (*d).clone());
            if selector.is_everything() {
                rollout.refuse_selecting_all().await?;
                return Ok(Action::Done);
            }
            let claimed = claim(&ctx, pods::replica_sets(), &d, "Deployment", &selector, replica_sets.list(ns)).await?;
            let mut rses: Vec<Value> = claimed.iter().map(|rs| (**rs).clone()).collect();
            if terminating(&d) {
                rollout.sync_status_only(&mut rses).await?;
                return Ok(Action::Done);
            }
            rollout.check_paused_conditions().await?;
            let paused = rollout.d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
            if paused || rollout.is_scaling_event(&mut rses).await? {
                rollout.sync(&mut rses).await?;
            } else if util::is_recreate(&rollout.d) {
                let pods = pods_by_replica_set(&pod_lister, ns, &selector, &rses);
                rollout.recreate(&mut rses, &pods).await?;
            } else {
                rollout.rolling(&mut rses).await?;
            }
            Ok(rollout.requeue.map_or(Action::Done, Action::RequeueAfter))
        })
    }
}

/// The Deployment's pods by the uid of the ReplicaSet that controls them.
fn pods_by_replica_set(
    pods: &Lister,
    ns: Option<&str>,
    selector: &Selector,
    rses: &[Value],
) -> HashMap<String, Vec<Arc<Value>>> {
    let mut by_rs: HashMap<String, Vec<Arc<Value>>> = HashMap::new();
    for pod in pods.list_where(ns, |p| selector.matches(p)) {
        let Some(owner) = controller_ref(&pod).and_then(|r| r.get("uid")).and_then(Value::as_str) else { continue };
        if rses.iter().any(|rs| pods::uid(rs) == owner) {
            by_rs.entry(owner.to_string()).or_default().push(pod.clone());
        }
    }
    by_rs
}
