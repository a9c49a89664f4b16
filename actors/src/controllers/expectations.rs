//! Expectations, as upstream's `ControllerExpectations`: after a controller creates or
//! deletes pods for an owner, it does not manage that owner again until its pod informer
//! has shown those writes (or [`EXPECTATIONS_TIMEOUT`] passed), so that it never acts twice
//! on a stale copy. Shared by the ReplicaSet and DaemonSet controllers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pods;
use crate::controller::informer::resource_version;
use crate::controller::{Lister, ObjectKey};
use crate::deletion::being_deleted;

/// Expectations not met by then are forgotten (upstream waits 5 minutes).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes one reconcile made that the informer has not shown yet.
#[derive(Debug)]
struct Expectation {
    /// The highest resourceVersion among the pods it created.
    created: i64,
    /// The pods it deleted (name, uid).
    deleted: Vec<(String, String)>,
    since: Instant,
}

/// The expectations of one controller, by owner.
#[derive(Default)]
pub struct Expectations {
    pending: RefCell<HashMap<ObjectKey, Expectation>>,
    /// The highest pod resourceVersion the pod informer has applied.
    seen_pods: Rc<Cell<i64>>,
}

impl Expectations {
    /// What the pod informer's key function calls with each pod it applies.
    pub fn observer(&self) -> impl Fn(&Value) + 'static {
        let seen = self.seen_pods.clone();
        move |pod: &Value| {
            if let Some(rv) = resource_version(pod) {
                seen.set(seen.get().max(rv));
            }
        }
    }

    /// Whether the writes of the last reconcile of `key` are all seen in `pods` (forgets
    /// them if so).
    pub fn satisfied(&self, key: &ObjectKey, pods: &Lister) -> bool {
        let mut pending = self.pending.borrow_mut();
        let Some(e) = pending.get(key) else { return true };
        let seen_creates = self.seen_pods.get() >= e.created;
        let seen_deletes = e.deleted.iter().all(|(pod, uid)| {
            pods.get(&ObjectKey::new(key.namespace.as_deref(), pod))
                .is_none_or(|p| pods::uid(&p) != uid || being_deleted(&p))
        });
        let done = (seen_creates && seen_deletes) || e.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if done {
            pending.remove(key);
        }
        done
    }

    /// Records a reconcile's writes: the highest resourceVersion it created, the pods it deleted.
    pub fn expect(&self, key: &ObjectKey, created: i64, deleted: Vec<(String, String)>) {
        if created == 0 && deleted.is_empty() {
            return;
        }
        self.pending.borrow_mut().insert(key.clone(), Expectation { created, deleted, since: Instant::now() });
    }

    /// Forgets the expectations of `key` (its owner is gone).
    pub fn forget(&self, key: &ObjectKey) {
        self.pending.borrow_mut().remove(key);
    }
}
