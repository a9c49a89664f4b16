//! The controllers of kube-controller-manager (and the scheduler), each a plain struct
//! implementing [`crate::controller::Reconciler`], run by the controller runtime.
//!
//! - [`service_account`]: a `default` ServiceAccount in every namespace.
//! - [`root_ca`]: the `kube-root-ca.crt` ConfigMap (the cluster CA) in every namespace.
//! - [`garbage_collector`]: dependents whose owners are gone are deleted; `Orphan` and
//!   `Foreground` propagation (the `orphan` and `foregroundDeletion` finalizers).
//! - [`namespace`]: a terminating namespace's content is deleted, then its `kubernetes` finalizer.
//! - [`endpoints`]: Endpoints and EndpointSlices of each Service with a selector, from its pods.
//! - [`expectations`]: the writes a ReplicaSet or DaemonSet reconcile made, until seen.
//! - [`replica_set`]: ReplicaSets keep their number of pods (create, delete, adopt, release).
//! - [`deployment`]: Deployments roll their template out through ReplicaSets.
//! - [`job`]: Jobs run their pods to completion (parallelism, completions, Indexed, backoff,
//!   deadline, suspend; pods counted through the `job-tracking` finalizer).
//! - [`node_lifecycle`]: nodes without a heartbeat turn `Unknown` and tainted; the taint
//!   manager evicts pods that do not tolerate `NoExecute` taints.
//! - [`node_ipam`]: every node gets its own pod CIDR.
//! - [`daemon_set`]: DaemonSets run one pod per eligible node and roll updates out.
//! - [`cron_job`]: CronJobs create Jobs on their schedule (time zone, concurrency policy,
//!   starting deadline, history limits).
//! - [`ttl_after_finished`]: finished Jobs are deleted `ttlSecondsAfterFinished` later.
//! - [`pod_gc`]: pods of Nodes that are gone, and finished pods past a threshold, are deleted.
//! - [`resource_quota`]: ResourceQuotas' `status.used`, recounted from their namespaces.
//! - [`stateful_set`]: StatefulSets run ordinal pods with their own claims, in order, and roll
//!   updates out through ControllerRevisions.
//! - [`disruption`]: PodDisruptionBudgets' status (healthy, expected and allowed disruptions).
//! - [`pods`]: what the workload controllers share (readiness, owners, selectors, conditions).
//!
//! [`start_all`] starts every controller of a member.

pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod expectations;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod pods;
pub mod replica_set;
pub mod resource_quota;
pub mod root_ca;
pub mod service_account;
pub mod stateful_set;
pub mod ttl_after_finished;

use raft_store::StoreNode;

use crate::controller::Controllers;
use crate::kind_actor::KindActors;

/// Starts every controller on the current actix arbiter; they work while this member leads.
/// With the cluster CA (`root_ca`, PEM), every namespace gets it as `kube-root-ca.crt`.
pub fn start_all(actors: KindActors, node: StoreNode, root_ca: Option<String>) -> actix::Addr<Controllers> {
    let mut controllers = Controllers::new(actors, node);
    if let Some(ca_pem) = root_ca {
        controllers = controllers.with(move || root_ca::RootCaPublisher { ca_pem: ca_pem.clone() });
    }
    controllers
        .with(|| service_account::ServiceAccounts)
        .with(garbage_collector::GarbageCollector::default)
        .with(|| namespace::Namespaces)
        .with(|| endpoints::EndpointsController)
        .with(|| endpoints::EndpointSliceController)
        .with(replica_set::ReplicaSets::new)
        .with(deployment::Deployments::new)
        .with(daemon_set::DaemonSets::new)
        .with(node_lifecycle::NodeLifecycle::default)
        .with(node_lifecycle::TaintEviction::default)
        .with(node_ipam::NodeIpam::default)
        .with(job::Jobs::new)
        .with(cron_job::CronJobs::new)
        .with(|| ttl_after_finished::TtlAfterFinished)
        .with(pod_gc::PodGc::new)
        .with(resource_quota::ResourceQuotaController::default)
        .with(stateful_set::StatefulSets::new)
        .with(disruption::Disruption::default)
        .with(disruption::StalePodDisruption::default)
        .with(crate::scheduler::Scheduler::default)
        .run()
}
