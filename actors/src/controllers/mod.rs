//! The controllers of kube-controller-manager (and the scheduler), each a plain struct
//! implementing [`crate::controller::Reconciler`], run by the controller runtime.
//!
//! - [`service_account`]: a `default` ServiceAccount in every namespace.
//!
//! [`start_all`] starts every controller of a member.

pub mod service_account;

use raft_store::StoreNode;

use crate::controller::Controllers;
use crate::kind_actor::KindActors;

/// Starts every controller on the current actix arbiter; they work while this member leads.
pub fn start_all(actors: KindActors, node: StoreNode) -> actix::Addr<Controllers> {
    Controllers::new(actors, node).with(|| service_account::ServiceAccounts).run()
}
