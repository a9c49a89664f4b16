//! Where each pod's containers and logs are, by namespace and name: written by the pod
//! workers, read by the kubelet endpoint (logs, exec, attach, port-forward).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

/// One container's current run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEntry {
    pub id: String,
    pub attempt: u32,
    pub running: bool,
}

/// One pod on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub uid: String,
    pub sandbox_id: String,
    /// The pod's log directory: `{container}/{attempt}.log` below it.
    pub log_dir: String,
    pub containers: BTreeMap<String, ContainerEntry>,
}

/// The node's pods; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<RwLock<HashMap<(String, String), PodEntry>>>);

impl Registry {
    pub fn put(&self, namespace: &str, name: &str, entry: PodEntry) {
        let mut pods = self.0.write().unwrap_or_else(PoisonError::into_inner);
        pods.insert((namespace.to_string(), name.to_string()), entry);
    }

    /// Forgets the pod, if the entry is still this uid's (a new pod of the same name may
    /// have taken it).
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut pods = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let key = (namespace.to_string(), name.to_string());
        if pods.get(&key).is_some_and(|e| e.uid == uid) {
            pods.remove(&key);
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        let pods = self.0.read().unwrap_or_else(PoisonError::into_inner);
        pods.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
