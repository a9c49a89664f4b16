//! The controllers of kube-controller-manager (and the scheduler), each a plain struct
//! implementing [`crate::controller::Reconciler`], run by the controller runtime.
//!
//! - [`service_account`]: a `default` ServiceAccount in every namespace.
//! - [`garbage_collector`]: dependents whose owners are gone are deleted; `Orphan` and
//!   `Foreground` propagation (the `orphan` and `foregroundDeletion` finalizers).
//! - [`namespace`]: a terminating namespace's content is deleted, then its `kubernetes` finalizer.
//! - [`endpoints`]: Endpoints and EndpointSlices of each Service with a selector, from its pods.
//! - [`replica_set`]: ReplicaSets keep their number of pods (create, delete, adopt, release).
//! - [`deployment`]: Deployments roll their template out through ReplicaSets.
//! - [`pods`]: what the workload controllers share (readiness, owners, selectors, conditions).
//!
//! [`start_all`] starts every controller of a member.

pub mod deployment;
pub mod endpoints;
pub mod garbage_collector;
pub mod namespace;
pub mod pods;
pub mod replica_set;
pub mod service_account;

use raft_store::StoreNode;

use crate::controller::Controllers;
use crate::kind_actor::KindActors;

/// Starts every controller on the current actix arbiter; they work while this member leads.
pub fn start_all(actors: KindActors, node: StoreNode) -> actix::Addr<Controllers> {
    Controllers::new(actors, node)
        .with(|| service_account::ServiceAccounts)
        .with(garbage_collector::GarbageCollector::default)
        .with(|| namespace::Namespaces)
        .with(|| endpoints::EndpointsController)
        .with(|| endpoints::EndpointSliceController)
        .with(replica_set::ReplicaSets::new)
        .with(deployment::Deployments::new)
        .with(crate::scheduler::Scheduler::default)
        .run()
}
